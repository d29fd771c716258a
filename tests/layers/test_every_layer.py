"""Every built-in layer through the one harness (tests/layer_harness.py): shapes, weights, config
round trip, float64 gradients, float32 kept, Keras parity, fused == unfused.

A row per code path: arguments that change what runs (padding, strides, activations, return
modes, merge modes, training-only behaviour) get rows of their own. InputLayer is not a layer one
calls, so it has none.
"""

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from layer_harness import CHECKS, check_layer, row

import fastnn
from fastnn import layers as L


def first_two_doubled(x):
    """A Lambda's function that numpy and Keras's torch tensors both run."""
    return x[:, :2] * 2.0


def padded(arrays):
    """The inputs with their last two steps all zeros (Masking's padding)."""
    arrays[0][:, -2:] = 0
    return arrays


def with_initial_state(layer, x, training):
    """Keras takes an RNN's initial states by keyword, not in the inputs list."""
    return layer(x[0], initial_state=x[1:], training=training)


def relu_after(dtype):
    """The follower of the BN + activation fusion rule."""
    return L.Activation("relu", dtype=dtype)


def bn_after(dtype):
    """The follower of the conv + BN fusion rule."""
    return L.BatchNormalization(dtype=dtype)


def pool_2x2(dtype):
    """The follower of the conv + max pool fusion rule."""
    return L.MaxPooling2D(2, dtype=dtype)


def rnn_reader(cls, *args, **kwargs):
    """A follower for Embedding's fusion rule: ``cls(*args, **kwargs)``."""
    return lambda dtype: cls(*args, dtype=dtype, **kwargs)


def td(inner, *args, **kwargs):
    """make(dtype) of ``TimeDistributed(inner(*args, **kwargs))``."""
    return lambda dtype: L.TimeDistributed(inner(*args, dtype=dtype, **kwargs))


def bi(inner, *args, merge_mode="concat", **kwargs):
    """make(dtype) of ``Bidirectional(inner(*args, **kwargs), merge_mode)``."""
    return lambda dtype: L.Bidirectional(inner(*args, dtype=dtype, **kwargs), merge_mode=merge_mode)


NO_FD_AT_PADDING = (
    "a padded step is where Masking's output jumps (moving one value unmasks the step), so "
    "central differences are undefined there; the 'masking' row checks the gradient"
)
KERAS_TORCH_PADS_BY_REPLICATION = (
    "Keras's torch backend pads uneven 'same' average pooling by edge replication, TensorFlow and "
    "fastnn leave the padding out of the mean: test_layers_conv_pool.py checks this against that"
)
NO_KERAS = "Keras is not installed (the dev extra has it)"
HAS_KERAS = importlib.util.find_spec("keras") is not None  # imported only by the checks
RNNS = {"lstm": L.LSTM, "gru": L.GRU, "simple_rnn": L.SimpleRNN}

ROWS = {
    # ---- core
    "dense": row(L.Dense, (4,), 3),
    "dense-relu-no_bias": row(L.Dense, (4,), 3, activation="relu", use_bias=False),
    "dense-softmax-3d": row(L.Dense, (2, 4), 3, activation="softmax"),
    "dense-sigmoid": row(L.Dense, (4,), 2, activation="sigmoid"),
    "dense-frozen": row(L.Dense, (4,), 2, trainable=False),
    **{f"activation-{a}": row(L.Activation, (2, 5), a) for a in ("relu", "sigmoid", "tanh")},
    "activation-softmax": row(L.Activation, (5,), "softmax"),
    "activation-linear": row(L.Activation, (5,), "linear"),
    "flatten-3d": row(L.Flatten, (3, 2)),
    "flatten-4d": row(L.Flatten, (2, 3, 2)),
    "dropout": replace(row(L.Dropout, (3, 4), 0.4, seed=3), random=True),
    "dropout-rate_0": row(L.Dropout, (5,), 0.0),
    "lambda": replace(
        row(L.Lambda, (4,), first_two_doubled),  # its tape differentiates it (indexing, *)
        no_config="fastnn files never hold code (Keras's CVE-2024-3660)",
        keras=lambda keras: keras.layers.Lambda(first_two_doubled),
    ),
    # ---- reshaping
    "reshape": row(L.Reshape, (6,), (2, 3)),
    "reshape-infer": row(L.Reshape, (2, 6), (-1, 4)),
    "repeat_vector": row(L.RepeatVector, (3,), 4),
    # ---- convolutions
    "conv1d-valid": row(L.Conv1D, (7, 2), 3, 3),
    "conv1d-same-relu": row(L.Conv1D, (7, 2), 3, 3, padding="same", activation="relu"),
    "conv1d-causal": row(L.Conv1D, (6, 2), 2, 3, padding="causal", activation="tanh"),
    "conv1d-strides_2": row(L.Conv1D, (8, 2), 3, 2, strides=2, use_bias=False),
    "conv1d-same-even_kernel-strides_2": row(L.Conv1D, (7, 2), 2, 4, strides=2, padding="same"),
    "conv1d-causal-dilated": row(L.Conv1D, (9, 2), 3, 3, padding="causal", dilation_rate=2),
    "conv1d-same-dilated": row(L.Conv1D, (9, 2), 2, 2, padding="same", dilation_rate=3),
    "conv2d-same-dilated-relu": row(
        L.Conv2D, (7, 8, 2), 3, 3, padding="same", dilation_rate=(2, 3), activation="relu"
    ),
    "conv2d-valid-dilated": row(L.Conv2D, (7, 6, 3), 2, 2, dilation_rate=2, use_bias=False),
    "conv2d-same-groups-softmax": row(
        L.Conv2D, (5, 6, 4), 6, 3, padding="same", groups=2, activation="softmax"
    ),
    "conv1d-causal-dilated-groups": row(
        L.Conv1D, (9, 6), 3, 2, padding="causal", dilation_rate=2, groups=3, use_bias=False
    ),
    "conv2d-valid": replace(row(L.Conv2D, (6, 7, 2), 3, 3), fused_with=pool_2x2),
    "conv2d-same-relu": replace(
        row(L.Conv2D, (6, 6, 2), 3, 3, padding="same", activation="relu"), fused_with=pool_2x2
    ),
    "conv2d-softmax": replace(
        row(L.Conv2D, (5, 5, 2), 3, 2, activation="softmax"), fused_with=pool_2x2
    ),
    "conv2d-sigmoid-rect": replace(
        row(L.Conv2D, (5, 6, 2), 2, (2, 3), padding="same", activation="sigmoid", use_bias=False),
        fused_with=pool_2x2,
    ),
    "conv2d-strides_2": row(L.Conv2D, (7, 7, 2), 3, 3, strides=2, activation="tanh"),
    "conv2d-same-strides_2": replace(
        row(L.Conv2D, (6, 5, 1), 2, 3, strides=(2, 1), padding="same"), fused_with=bn_after
    ),
    "conv2d-no_bias-bn": replace(
        row(L.Conv2D, (6, 6, 3), 4, 3, padding="same", use_bias=False), fused_with=bn_after
    ),
    # ---- pooling
    "max_pool1d": row(L.MaxPooling1D, (6, 2)),
    "max_pool1d-same-strides_1": row(L.MaxPooling1D, (5, 2), 3, strides=1, padding="same"),
    "max_pool1d-same-strides_2": row(L.MaxPooling1D, (5, 2), 2, padding="same"),
    "avg_pool1d": row(L.AveragePooling1D, (6, 2), 3),
    "avg_pool1d-same": row(L.AveragePooling1D, (5, 2), 2, padding="same"),
    "max_pool2d": row(L.MaxPooling2D, (4, 6, 2)),
    "max_pool2d-odd": row(L.MaxPooling2D, (5, 5, 2)),
    "max_pool2d-same-strides_1": row(L.MaxPooling2D, (4, 5, 2), 3, strides=1, padding="same"),
    "avg_pool2d": row(L.AveragePooling2D, (4, 4, 2)),
    "avg_pool2d-same-strides_1": row(L.AveragePooling2D, (5, 4, 2), 3, strides=1, padding="same"),
    "avg_pool2d-same-uneven": replace(
        row(L.AveragePooling2D, (5, 4, 2), (2, 3), strides=2, padding="same"),
        no_keras_parity=KERAS_TORCH_PADS_BY_REPLICATION,
    ),
    "global_avg_pool1d": row(L.GlobalAveragePooling1D, (4, 3)),
    "global_avg_pool1d-keepdims": row(L.GlobalAveragePooling1D, (4, 3), keepdims=True),
    "global_max_pool1d": row(L.GlobalMaxPooling1D, (4, 3)),
    "global_max_pool1d-keepdims": row(L.GlobalMaxPooling1D, (4, 3), keepdims=True),
    "global_avg_pool2d": row(L.GlobalAveragePooling2D, (3, 4, 2)),
    "global_avg_pool2d-keepdims": row(L.GlobalAveragePooling2D, (3, 4, 2), keepdims=True),
    "global_max_pool2d": row(L.GlobalMaxPooling2D, (3, 4, 2)),
    "global_max_pool2d-keepdims": row(L.GlobalMaxPooling2D, (3, 4, 2), keepdims=True),
    # ---- normalization
    "batch_norm-2d": row(L.BatchNormalization, (4,)),
    "batch_norm-4d": replace(
        row(L.BatchNormalization, (3, 2, 3), momentum=0.9), fused_with=relu_after
    ),
    "batch_norm-no_center_no_scale": replace(
        row(L.BatchNormalization, (2, 3), center=False, scale=False),
        fused_with=relu_after,
    ),
    "batch_norm-frozen": replace(
        row(L.BatchNormalization, (3,), trainable=False), fused_with=relu_after
    ),
    # ---- merging
    "add": row(L.Add, [(3,), (3,)]),
    "add-3_inputs": row(L.Add, [(2, 3), (2, 3), (2, 3)]),
    "subtract": row(L.Subtract, [(4,), (4,)]),
    "multiply": row(L.Multiply, [(3,), (3,), (3,)]),
    "multiply-broadcast": row(L.Multiply, [(4,), (1,)]),
    "add-ranks_3_and_2": row(L.Add, [(2, 3), (3,)]),
    "subtract-broadcast": row(L.Subtract, [(2, 1), (2, 3)]),
    "average": row(L.Average, [(3,), (3,)]),
    "maximum": row(L.Maximum, [(3,), (3,), (3,)]),
    "minimum": row(L.Minimum, [(3,), (3,), (3,)]),
    "concatenate": row(L.Concatenate, [(2,), (3,)]),
    "concatenate-axis_1": row(L.Concatenate, [(2, 3), (1, 3)], axis=1),
    "concatenate-one_input": row(L.Concatenate, [(3,)]),
    # ---- embedding (and its fusion with a recurrent layer that reads it)
    "embedding": replace(row(L.Embedding, (4,), 7, 3), ids=7),
    "embedding-mask_zero": replace(row(L.Embedding, (5,), 6, 2, mask_zero=True), ids=6),
    "embedding-2d_ids": replace(row(L.Embedding, (2, 3), 5, 2), ids=5),
    "embedding+lstm": replace(
        row(L.Embedding, (4,), 7, 3), ids=7, fused_with=rnn_reader(L.LSTM, 2)
    ),
    "embedding+gru-backwards-sequences": replace(
        row(L.Embedding, (4,), 7, 3),
        ids=7,
        fused_with=rnn_reader(L.GRU, 2, go_backwards=True, return_sequences=True),
    ),
    "embedding+gru-reset_before-mask": replace(
        row(L.Embedding, (5,), 5, 3, mask_zero=True),
        ids=5,
        fused_with=rnn_reader(L.GRU, 2, reset_after=False),
    ),
    "embedding+simple_rnn-state-dropout": replace(
        row(L.Embedding, (4,), 6, 2),
        ids=6,
        fused_with=rnn_reader(L.SimpleRNN, 3, return_state=True, dropout=0.3),
    ),
    # ---- recurrent
    **{f"{name}": row(cls, (4, 3), 2) for name, cls in RNNS.items()},
    **{
        f"{name}-sequences": row(cls, (4, 3), 3, return_sequences=True)
        for name, cls in RNNS.items()
    },
    **{
        f"{name}-state-backwards": row(cls, (3, 2), 2, return_state=True, go_backwards=True)
        for name, cls in RNNS.items()
    },
    **{
        f"{name}-initial_state": replace(
            row(cls, [(3, 2), *[(2,)] * len(cls.state_names)], 2, return_sequences=True),
            keras_call=with_initial_state,
        )
        for name, cls in RNNS.items()
    },
    **{
        f"{name}-dropout": replace(
            row(cls, (3, 2), 2, dropout=0.3, recurrent_dropout=0.2, seed=1), random=True
        )
        for name, cls in RNNS.items()
    },
    "lstm-no_forget_bias-relu": row(L.LSTM, (3, 2), 2, unit_forget_bias=False, activation="relu"),
    "lstm-sequences-state-backwards": row(
        L.LSTM, (3, 2), 2, return_sequences=True, return_state=True, go_backwards=True
    ),
    "gru-sigmoid-recurrent_tanh": row(
        L.GRU, (3, 2), 2, activation="sigmoid", recurrent_activation="tanh"
    ),
    "gru-reset_before": row(L.GRU, (4, 3), 2, reset_after=False),
    "gru-reset_before-sequences-backwards": row(
        L.GRU, (4, 3), 2, reset_after=False, return_sequences=True, go_backwards=True
    ),
    "simple_rnn-relu-no_bias": row(L.SimpleRNN, (4, 3), 2, activation="relu", use_bias=False),
    "masking": row(L.Masking, (4, 3)),
    "masking-padded": replace(row(L.Masking, (4, 3)), data=padded, no_gradient=NO_FD_AT_PADDING),
    # ---- wrappers
    "bidirectional-lstm": row(bi(L.LSTM, 2), (3, 2)),
    "bidirectional-gru-sum-sequences": row(
        bi(L.GRU, 2, merge_mode="sum", return_sequences=True), (3, 2)
    ),
    "bidirectional-simple_rnn-none": row(bi(L.SimpleRNN, 2, merge_mode=None), (3, 2)),
    "bidirectional-lstm-initial_state": replace(
        row(bi(L.LSTM, 2, return_sequences=True), [(3, 2), (2,), (2,), (2,), (2,)]),
        keras_call=with_initial_state,
    ),
    "bidirectional-gru-backward_layer": row(
        lambda dtype: L.Bidirectional(
            L.GRU(2, dtype=dtype), backward_layer=L.GRU(2, go_backwards=True, dtype=dtype)
        ),
        (3, 2),
    ),
    "bidirectional-lstm-mul-state": row(bi(L.LSTM, 2, merge_mode="mul", return_state=True), (3, 2)),
    "bidirectional-gru_reset_before-ave": row(
        bi(L.GRU, 2, merge_mode="ave", reset_after=False, return_sequences=True), (3, 2)
    ),
    "time_distributed-dense": row(td(L.Dense, 3, activation="relu"), (3, 4)),
    "time_distributed-conv2d": row(td(L.Conv2D, 2, 2), (2, 3, 3, 1)),
    "time_distributed-dropout": replace(row(td(L.Dropout, 0.5, seed=2), (3, 2)), random=True),
}


def family_rows() -> dict:
    """The rows of the layer families kept in tests/layers/rows_<family>.py (a ``ROWS`` dict)."""
    rows = {}
    for path in sorted(Path(__file__).parent.glob("rows_*.py")):
        spec = importlib.util.spec_from_file_location(f"layer_rows_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        clash = rows.keys() & module.ROWS.keys() | ROWS.keys() & module.ROWS.keys()
        assert not clash, f"{path.name} repeats row names {sorted(clash)}"
        rows.update(module.ROWS)
    return rows


ROWS.update(family_rows())

#: (row, check) -> what is wrong, with the numbers: run as strict xfails until fixed.
KNOWN_BUGS: dict[tuple[str, str], str] = {}


def cases(checks):
    """pytest params ``(spec, check)`` for every row and each applicable check."""
    params = []
    for name, spec in ROWS.items():
        for check in checks:
            if check == "fused" and spec.fused_with is None:
                continue
            marks = []
            if check == "gradients" and spec.no_gradient:
                marks.append(pytest.mark.skip(reason=spec.no_gradient))
            if check == "keras" and (spec.no_keras_parity or spec.no_keras_layer or not HAS_KERAS):
                reason = spec.no_keras_parity or spec.no_keras_layer or NO_KERAS
                marks.append(pytest.mark.skip(reason=reason))
            if (name, check) in KNOWN_BUGS:
                marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name, check]))
            params.append(pytest.param(spec, check, id=f"{name}-{check}", marks=marks))
    return params


@pytest.mark.parametrize("spec, check", cases([c for c in CHECKS if c != "gradients"]))
def test_layer(spec, check):
    check_layer(spec, [check])


@pytest.mark.parametrize("spec, check", cases(["gradients"]))
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), batch=st.integers(1, 3))
def test_layer_gradients(spec, check, seed, batch):
    check_layer(spec, [check], seed=seed, batch=batch)


def test_every_built_in_layer_has_a_row():
    """A layer class added to fastnn.layers without a row here fails this test (the layers
    of strings, whose inputs the harness cannot make, have test_lookup.py)."""
    tested = {type(spec.new("float32")) for spec in ROWS.values()}
    exported = {getattr(L, name) for name in L.__all__}
    classes = {c for c in exported if isinstance(c, type) and issubclass(c, L.Layer)}
    assert classes - tested == {L.Layer, L.InputLayer, L.StringLookup, L.TextVectorization}


def test_freezing_a_layer_turns_its_weights_flags_off_and_unfreezing_back_on():
    """As in Keras 3: the trainable kinds follow the layer; statistics stay non-trainable."""
    norm = L.BatchNormalization(trainable=False)
    norm.build((None, 3))
    assert [w.trainable for w in norm.weights] == [False] * 4
    norm.trainable = True
    assert [w.trainable for w in norm.weights] == [True, True, False, False]
    model = fastnn.Sequential([fastnn.Input((3,)), L.Dense(3), norm])
    model.trainable = False
    assert not any(w.trainable for w in model.weights) and model.trainable_weights == []
