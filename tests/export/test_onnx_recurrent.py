"""LSTM, GRU and SimpleRNN as ONNX's recurrent operators: every option that changes the
computation, Bidirectional's merge modes, initial states, and masks (post-padded only)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import assert_matches, export_and_check, run_both
from test_onnx_layers import data, ids, with_random_weights

import fastnn
from fastnn import layers
from fastnn.export import ExportError

KINDS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}


def sequence_model(layer, steps=5, features=3):
    inputs = fastnn.Input((steps, features))
    outputs = layer(inputs)
    return with_random_weights(fastnn.Model(inputs, outputs)), data(steps, features)


OPTIONS = {
    "default": {},
    "sequences": {"return_sequences": True},
    "state": {"return_state": True},
    "backwards": {"go_backwards": True},
    "backwards-sequences": {"go_backwards": True, "return_sequences": True},
    "relu-no-bias": {"activation": "relu", "use_bias": False},
    # Affine(1, 0); gates stay sigmoid: linear gates make outputs grow without bound, where
    # float32 rounding alone moves them by more than 1e-5.
    "linear-activation": {"activation": "linear"},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_recurrent_layer(kind, option, tmp_path):
    options = OPTIONS[option]
    model, x = sequence_model(KINDS[kind](4, **options))
    proto = assert_matches(model, x, tmp_path)
    ops = {node.op_type for node in proto.graph.node}
    assert {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "RNN"}[kind] in ops
    assert "Loop" not in ops and "Scan" not in ops


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_reset_after_and_before(reset_after, tmp_path):
    layer = layers.GRU(4, reset_after=reset_after, recurrent_activation="tanh")
    model, x = sequence_model(layer)
    proto = assert_matches(model, x, tmp_path)
    gru = next(node for node in proto.graph.node if node.op_type == "GRU")
    linear_before_reset = next(a.i for a in gru.attribute if a.name == "linear_before_reset")
    assert linear_before_reset == int(reset_after)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional(merge_mode, tmp_path):
    layer = layers.Bidirectional(layers.LSTM(3, return_sequences=True), merge_mode=merge_mode)
    model, x = sequence_model(layer)
    proto = assert_matches(model, x, tmp_path)
    lstm = next(node for node in proto.graph.node if node.op_type == "LSTM")
    assert next(a.s for a in lstm.attribute if a.name == "direction") == b"bidirectional"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_bidirectional_last_output_and_states(kind, tmp_path):
    model, x = sequence_model(layers.Bidirectional(KINDS[kind](3, return_state=True)))
    assert_matches(model, x, tmp_path)


@pytest.mark.parametrize("sequences", [False, True])
def test_bidirectional_over_a_backwards_layer(sequences, tmp_path):
    """Bidirectional(LSTM(go_backwards=True)): ONNX's forward direction runs the backward_layer."""
    inner = layers.LSTM(2, go_backwards=True, return_sequences=sequences, return_state=True)
    x_in, *states = [fastnn.Input((4, 3))] + [fastnn.Input((2,)) for _ in range(4)]
    out = layers.Bidirectional(inner, merge_mode=None)(x_in, initial_state=states)
    model = with_random_weights(fastnn.Model([x_in, *states], out))
    assert_matches(model, [data(4, 3)] + [data(2) for _ in range(4)], tmp_path)


def test_initial_states_as_inputs(tmp_path):
    x_in, h_in, c_in = fastnn.Input((4, 3)), fastnn.Input((2,)), fastnn.Input((2,))
    y = layers.LSTM(2, return_sequences=True)(x_in, initial_state=[h_in, c_in])
    model = with_random_weights(fastnn.Model([x_in, h_in, c_in], y))
    assert_matches(model, [data(4, 3), data(2), data(2)], tmp_path)


def masked_model(rnn, masking=False):
    if masking:
        inputs = fastnn.Input((6, 2))
        x = layers.Masking()(inputs)
    else:
        inputs = fastnn.Input((6,))
        x = layers.Embedding(7, 3, mask_zero=True)(inputs)
    x = layers.Dropout(0.2)(x)  # passes the mask on
    return with_random_weights(fastnn.Model(inputs, rnn(x)))


MASKED = {
    "lstm": lambda: layers.LSTM(3),
    "gru-sequences": lambda: layers.GRU(3, return_sequences=True),
    "gru-sequences-zero-output": lambda: layers.GRU(
        3, return_sequences=True, zero_output_for_mask=True
    ),
    "simple-rnn-state": lambda: layers.SimpleRNN(3, return_state=True),
    "lstm-backwards-sequences": lambda: layers.LSTM(3, go_backwards=True, return_sequences=True),
    "bidirectional-gru": lambda: layers.Bidirectional(layers.GRU(3)),
    "bidirectional-over-backwards": lambda: layers.Bidirectional(
        layers.GRU(3, go_backwards=True, return_sequences=True)
    ),
    "bidirectional-lstm-sequences": lambda: layers.Bidirectional(
        layers.LSTM(3, return_sequences=True), merge_mode="sum"
    ),
}


@pytest.mark.parametrize("case", sorted(MASKED))
def test_post_padded_mask_as_sequence_lens(case, tmp_path):
    model = masked_model(MASKED[case]())
    tokens = ids(6, pad_after=[3, 6, 1])
    proto = assert_matches(model, tokens, tmp_path, assume_post_padding=True)
    rnn = next(n for n in proto.graph.node if n.op_type in ("LSTM", "GRU", "RNN"))
    assert rnn.input[4], "the mask becomes sequence_lens"


def test_masking_layer(tmp_path):
    model = masked_model(layers.LSTM(3, return_sequences=True), masking=True)
    x = data(6, 2)
    x[0, 4:] = 0.0
    x[2, 1:] = 0.0
    assert_matches(model, x, tmp_path, assume_post_padding=True)


def test_a_mask_is_refused_without_assume_post_padding(tmp_path):
    model = masked_model(layers.GRU(3))
    match = r"GRU 'gru\w*' cannot be exported to ONNX: it receives a mask"
    with pytest.raises(ExportError, match=match) as info:
        fastnn.export.onnx(model, tmp_path / "m.onnx")
    assert "assume_post_padding=True" in str(info.value)
    assert not (tmp_path / "m.onnx").exists()


def test_padding_not_at_the_end_gives_nan_not_other_numbers(tmp_path):
    model = masked_model(layers.LSTM(3))
    proto = export_and_check(model, tmp_path, assume_post_padding=True)
    tokens = ids(6, pad_after=[6, 4, 6])
    tokens[0, :2] = 0  # pre-padded
    tokens[2, 3] = 0  # a hole
    expected = model.predict(tokens, verbose=0)
    for (got,) in run_both(proto, {model.input_names[0]: tokens}):
        assert np.isnan(got[[0, 2]]).all()
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-5, atol=1e-5)


def test_stateful_is_refused(tmp_path):
    inputs = fastnn.Input((4, 3), batch_size=2)
    model = fastnn.Model(inputs, layers.LSTM(2, stateful=True)(inputs))
    with pytest.raises(ExportError, match="LSTM 'lstm\\w*' cannot be exported to ONNX: stateful"):
        fastnn.export.onnx(model, tmp_path / "m.onnx")


CELLS = {
    "lstm-cell": lambda: layers.RNN(layers.LSTMCell(3), return_sequences=True),
    "gru-cell-backwards-state": lambda: layers.RNN(
        layers.GRUCell(3), go_backwards=True, return_state=True
    ),
    "stacked-cells": lambda: layers.RNN(
        [layers.SimpleRNNCell(4), layers.LSTMCell(3)], return_state=True
    ),
    "stacked-cells-backwards-sequences": lambda: layers.RNN(
        layers.StackedRNNCells([layers.GRUCell(2), layers.GRUCell(3)]),
        go_backwards=True,
        return_sequences=True,
    ),
}


@pytest.mark.parametrize("case", sorted(CELLS))
def test_rnn_over_cells(case, tmp_path):
    model, x = sequence_model(CELLS[case]())
    assert_matches(model, x, tmp_path)


def test_rnn_over_cells_with_a_mask(tmp_path):
    model = masked_model(layers.RNN([layers.GRUCell(3), layers.LSTMCell(2)], return_sequences=True))
    tokens = ids(6, pad_after=[2, 6, 4])
    assert_matches(model, tokens, tmp_path, assume_post_padding=True)


class DoubleCell(fastnn.Layer):
    state_size = 2

    def call(self, x, states):
        return x, [states[0]]


def test_rnn_over_a_custom_cell_is_refused(tmp_path):
    inputs = fastnn.Input((4, 2))
    model = fastnn.Model(inputs, layers.RNN(DoubleCell(), name="mine")(inputs))
    with pytest.raises(ExportError, match="RNN 'mine' cannot be exported to ONNX: its cell is not"):
        fastnn.export.onnx(model, tmp_path / "m.onnx")


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_mask_flows_through_a_returned_sequence(wrapped, tmp_path):
    """LSTM(return_sequences) passes its mask on to the next recurrent layer, as in Keras."""
    inputs = fastnn.Input((6,))
    x = layers.Embedding(7, 3, mask_zero=True)(inputs)
    first = layers.LSTM(3, return_sequences=True)
    x = (layers.Bidirectional(first, merge_mode="sum") if wrapped else first)(x)
    x = layers.GRU(2, return_sequences=True)(x)
    model = with_random_weights(fastnn.Model(inputs, layers.SimpleRNN(2)(x)))
    proto = assert_matches(model, ids(6, pad_after=[2, 6, 4]), tmp_path, assume_post_padding=True)
    rnns = [n for n in proto.graph.node if n.op_type in ("LSTM", "GRU", "RNN")]
    assert len(rnns) == 3 and all(n.input[4] for n in rnns)


@pytest.mark.parametrize("steps", [1, 4])
def test_mask_with_unknown_steps_and_an_all_padding_sample(steps, tmp_path):
    inputs = fastnn.Input((None,))
    x = layers.Embedding(7, 3, mask_zero=True)(inputs)
    x = layers.GRU(3, return_sequences=True)(x)
    model = with_random_weights(fastnn.Model(inputs, layers.Bidirectional(layers.LSTM(2))(x)))
    tokens = ids(steps, pad_after=[0, steps, 1])  # the first sample is all padding
    assert_matches(model, tokens, tmp_path, assume_post_padding=True)


def test_stacked_sequences_stay_time_major(tmp_path):
    """Recurrent layers (and a Dense between) read one another's time-major outputs: one
    Transpose in, one out."""
    inputs = fastnn.Input((5, 3))
    x = layers.LSTM(4, return_sequences=True)(inputs)
    x = layers.Dense(3, activation="tanh")(x)
    x = layers.Bidirectional(layers.GRU(2, return_sequences=True, go_backwards=False))(x)
    x = layers.SimpleRNN(3, return_sequences=True, go_backwards=True)(x)
    model = with_random_weights(fastnn.Model(inputs, layers.LayerNormalization()(x)))
    proto = assert_matches(model, data(5, 3), tmp_path)
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 2


AFTER_A_SEQUENCE = {
    "batch-norm": lambda: layers.BatchNormalization(),
    "batch-norm-steps-axis": lambda: layers.BatchNormalization(axis=1),
    "global-pool-keepdims": lambda: layers.GlobalAveragePooling1D(keepdims=True),
    "global-max": lambda: layers.GlobalMaxPooling1D(),
    "conv1d": lambda: layers.Conv1D(2, 2, padding="causal"),
    "padding": lambda: layers.ZeroPadding1D((1, 2)),
    "cropping": lambda: layers.Cropping1D((1, 1)),
    "softmax": lambda: layers.Activation("softmax"),
    "prelu": lambda: layers.PReLU(),
    "flatten": lambda: layers.Flatten(),
}


@pytest.mark.parametrize("case", sorted(AFTER_A_SEQUENCE))
def test_layers_reading_a_time_major_sequence(case, tmp_path):
    inputs = fastnn.Input((5, 3))
    seq = layers.GRU(4, return_sequences=True)(inputs)
    x = AFTER_A_SEQUENCE[case]()(seq)
    joined = layers.Concatenate(axis=1)([x, layers.Dense(4)(inputs)]) if x.shape == seq.shape else x
    model = with_random_weights(fastnn.Model(inputs, joined))
    assert_matches(model, data(5, 3), tmp_path)
