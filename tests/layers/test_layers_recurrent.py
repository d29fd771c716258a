"""Embedding, LSTM and GRU layers: float64 gradient checks, Keras 3 parity, shapes, errors.

Parity runs Keras 3 on the torch backend with the same weights (``set_weights``): outputs of every
mode (return_sequences, return_state, go_backwards, initial_state, masks from a Keras
``Embedding(mask_zero=True)``) and the seed document's text model, whose predictions and one Adam
``train_on_batch`` must match.
"""

import functools
import os

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import


import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradcheck import (  # noqa: E402
    check_gradients,
    check_model_gradients,
    check_model_gradients_at_fixed_ids,
    randomize_weights,
)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn  # noqa: E402
from fastnn import fusion, layers  # noqa: E402
from fastnn.fusion.embedded_rnn import EmbeddedRNN  # noqa: E402
from fastnn.graph import Graph  # noqa: E402
from fastnn.layers.embedding import Embedding  # noqa: E402
from fastnn.layers.recurrent import GRU, LSTM  # noqa: E402

keras = pytest.importorskip("keras")

F64 = "float64"
SETTINGS = settings(max_examples=12, deadline=None)
RNNS = {
    "lstm": (LSTM, 2),
    "gru": (GRU, 1),
    "gru_reset_before": (functools.partial(GRU, reset_after=False), 1),
}


def keras_rnn(kind, *args, **kwargs):
    """The Keras layer of ``RNNS[kind]``."""
    if kind == "gru_reset_before":
        return keras.layers.GRU(*args, reset_after=False, **kwargs)
    return getattr(keras.layers, kind.upper())(*args, **kwargs)


def normal(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def random_mask(rng, n, steps):
    return rng.random((n, steps)) < 0.6


# ---------------------------------------------------------------- gradient checks (float64)


def check_rnn(layer, x, states=(), mask=None, seed=0, **kwargs):
    """Gradient check of ``layer.forward(..., mask=mask)`` w.r.t. x, the states and the weights."""
    given_states = len(states) > 0

    def forward(xs):
        inputs = list(xs) if given_states else xs[0]
        out, ctx = layer.forward(inputs, True, mask=mask)
        return (out if isinstance(out, list) else [out]), ctx

    def backward(ctx, grads):
        g = layer.backward(ctx, grads if layer.return_state else grads[0])
        return g if given_states else [g]

    what = f"{type(layer).__name__} '{layer.name}'"
    return check_gradients(
        forward, backward, [x, *states], layer.trainable_weights, seed=seed, what=what, **kwargs
    )


@pytest.mark.parametrize("kind", list(RNNS))
@SETTINGS
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 4),
    in_dim=st.integers(1, 3),
    units=st.integers(1, 3),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    go_backwards=st.booleans(),
    with_state=st.booleans(),
    masked=st.booleans(),
    use_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_rnn_gradients(
    kind,
    batch,
    steps,
    in_dim,
    units,
    return_sequences,
    return_state,
    go_backwards,
    with_state,
    masked,
    use_bias,
    seed,
):
    cls, n_states = RNNS[kind]
    layer = cls(
        units,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        use_bias=use_bias,
        dtype=F64,
    )
    rng = np.random.default_rng(seed)
    x = normal(rng, batch, steps, in_dim)
    states = [normal(rng, batch, units, scale=0.5) for _ in range(n_states)] if with_state else []
    layer._maybe_build([x.shape, *(s.shape for s in states)] if states else x.shape)
    randomize_weights(layer, seed)
    mask = random_mask(rng, batch, steps) if masked else None
    check_rnn(layer, x, states, mask, seed=seed)


@pytest.mark.parametrize("kind", list(RNNS))
def test_rnn_gradients_with_input_dropout(kind):
    layer = RNNS[kind][0](3, dropout=0.4, return_sequences=True, seed=1, dtype=F64)
    rng = np.random.default_rng(0)
    x = normal(rng, 3, 4, 5)
    layer._maybe_build(x.shape)
    randomize_weights(layer, 2)

    def reset():
        layer._rng = np.random.default_rng(7)

    grads = check_rnn(layer, x, reset=reset, fixed=lambda ctx: ctx[1])
    reset()
    _, ctx = layer.forward(x, True)
    dropped = ctx[1] == 0  # (batch, features): the same units are dropped at every step
    assert dropped.any() and not dropped.all()
    np.testing.assert_array_equal(np.broadcast_to(dropped[:, None, :], x.shape), grads[0] == 0)


@SETTINGS
@given(
    batch=st.integers(1, 3),
    length=st.integers(1, 4),
    vocab=st.integers(1, 6),
    dim=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_embedding_gradient(batch, length, vocab, dim, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocab, (batch, length))  # repeats are likely: gradients must add up
    layer = Embedding(vocab, dim, dtype=F64)
    layer._maybe_build(ids.shape)
    randomize_weights(layer, seed)

    def forward(_):
        out, ctx = layer.forward(ids, True)
        return [out], ctx

    def backward(ctx, grads):
        assert layer.backward(ctx, grads[0]) is None
        return []

    check_gradients(forward, backward, [], layer.trainable_weights, seed=seed)


def test_text_model_gradients():
    """Embedding -> LSTM -> GRU -> Dense as a fastnn Model: the graph path, float64."""
    ids = fastnn.Input((5,))
    x = Embedding(7, 3, dtype=F64)(ids)
    x = LSTM(3, return_sequences=True, dtype=F64)(x)
    x = GRU(2, go_backwards=True, dtype=F64)(x)
    out = layers.Dense(1, activation="sigmoid", dtype=F64)(x)
    model = fastnn.Model(ids, out)
    randomize_weights(model, 3)
    data = np.random.default_rng(4).integers(0, 7, (2, 5)).astype(F64)
    check_model_gradients_at_fixed_ids(model, data)


def embedded_rnn_model(rnn, mask_zero=False, vocab=6, steps=7):
    """ids -> Embedding(vocab) -> rnn -> Dense(1), float64, random weights."""
    ids = fastnn.Input((steps,))
    x = rnn(Embedding(vocab, 3, mask_zero=mask_zero, dtype=F64)(ids))
    if rnn.return_sequences:
        x = layers.GlobalAveragePooling1D()(x)
    model = fastnn.Model(ids, layers.Dense(1, dtype=F64)(x))
    randomize_weights(model, 5)
    return model


def graph_of(model, table_rows: bool):
    """The model's graph, or one over the same layers whose Embedding hands its RNN the
    gathered rows (fusion rule 'embedded_rnn' off)."""
    if table_rows:
        return model._graph
    with fusion.disabled("embedded_rnn"):
        return Graph(model.inputs, model.outputs)


def rnn_input_of(graph, tape):
    """The input the recurrent layer ran on in the pass ``tape`` records."""
    for step, ctx in zip(graph.steps, tape[1]):
        if isinstance(step.layer, EmbeddedRNN):
            return ctx[1].xt
        if hasattr(step.layer, "forward_rows"):
            return ctx.xt
    raise AssertionError("no recurrent layer in the graph")


def forward_backward(model, data, table_rows: bool):
    """(output, weight gradients, the RNN's input as it ran) of one pass, with or without the
    Embedding's table rows handed to the RNN."""
    graph = graph_of(model, table_rows)
    for w in model.weights:
        w.grad[...] = 0
    (out,), tape = graph.forward([data], True)
    graph.backward(tape, [np.cos(out)])
    return out, [w.grad.copy() for w in model.weights], rnn_input_of(graph, tape)


RNN_CLASSES = [LSTM, GRU, functools.partial(GRU, reset_after=False), layers.SimpleRNN]


@pytest.mark.parametrize("cls", RNN_CLASSES)
@pytest.mark.parametrize("mask_zero", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_rnn_projects_the_embedding_table_once_with_the_same_results(
    cls, mask_zero, go_backwards, return_sequences
):
    """An RNN reading an Embedding projects the table's rows its ids pick instead of every step:
    the same outputs and weight gradients."""
    rnn = cls(4, go_backwards=go_backwards, return_sequences=return_sequences, dtype=F64)
    model = embedded_rnn_model(rnn, mask_zero)
    data = np.random.default_rng(0).integers(0, 6, (3, 7)).astype(F64)
    data[:, 5:] = 0
    out, grads, rnn_input = forward_backward(model, data, table_rows=True)
    assert isinstance(rnn_input, fastnn.kernels.recurrent.TableRows)
    ref_out, ref_grads, ref_input = forward_backward(model, data, table_rows=False)
    assert isinstance(ref_input, np.ndarray)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    for grad, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("cls", RNN_CLASSES)
def test_embedding_table_rows_gradients_match_finite_differences(cls):
    model = embedded_rnn_model(cls(3, go_backwards=True, dtype=F64), mask_zero=True)
    data = np.random.default_rng(1).integers(0, 6, (2, 7)).astype(F64)
    data[0, 4:] = 0
    assert isinstance(forward_backward(model, data, True)[2], fastnn.kernels.recurrent.TableRows)
    check_model_gradients_at_fixed_ids(model, data)


@pytest.mark.parametrize("cls", RNN_CLASSES)
def test_rnn_projects_only_the_table_rows_its_ids_pick(cls):
    """With fewer distinct ids than table rows, only those rows are projected; the rows no id
    picks get no gradient, and the results are those of the gathered rows."""
    model = embedded_rnn_model(cls(3, dtype=F64), vocab=50)
    data = np.random.default_rng(2).integers(0, 6, (3, 7)).astype(F64)  # 21 steps, ids < 6
    out, grads, rnn_input = forward_backward(model, data, table_rows=True)
    assert isinstance(rnn_input, fastnn.kernels.recurrent.TableRows)
    assert sorted(rnn_input.used) == sorted(set(data.astype(int).ravel()))
    ref_out, ref_grads, _ = forward_backward(model, data, table_rows=False)
    np.testing.assert_allclose(out, ref_out, rtol=1e-12, atol=1e-14)
    for grad, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-13)
    assert not grads[0][6:].any()  # the Embedding's table: rows 6.. are never picked


@pytest.mark.parametrize("cls", RNN_CLASSES)
@pytest.mark.parametrize("table_rows", [False, True])
def test_rnn_reusing_its_buffers_gives_the_results_of_fresh_ones(cls, table_rows):
    """Training steps hand the recurrent layers a workspace: a step after another (same shapes,
    buffers reused) gets the outputs and gradients that fresh arrays give."""
    rnn = cls(4, go_backwards=True, return_sequences=True, dtype=F64)
    model = embedded_rnn_model(rnn, mask_zero=True, vocab=9)
    graph = graph_of(model, table_rows)
    rng = np.random.default_rng(3)
    first, second = (rng.integers(0, 9, (3, 7)).astype(F64) for _ in range(2))
    second[1, 4:] = 0

    def step(data, reuse):
        for w in model.weights:
            w.grad[...] = 0
        (out,), tape = graph.forward([data], True, reuse=reuse)
        graph.backward(tape, [np.cos(out)])
        return out.copy(), [w.grad.copy() for w in model.weights]

    step(first, "train")
    out, grads = step(second, "train")
    ref_out, ref_grads = step(second, None)
    np.testing.assert_array_equal(out, ref_out)
    for grad, ref in zip(grads, ref_grads):
        np.testing.assert_array_equal(grad, ref)


@pytest.mark.parametrize("use_mask", [False, True])
def test_lstm_backward_after_an_inference_pass_matches_training(use_mask):
    """An inference pass keeps no gates (they never reach memory); a backward run after one all
    the same runs the forward again and gets the gradients of a training pass."""
    rng = np.random.default_rng(4)
    layer = LSTM(3, return_sequences=True, return_state=True, dtype=F64)
    x, h0, c0 = (
        rng.standard_normal((2, 5, 4)),
        rng.standard_normal((2, 3)),
        rng.standard_normal((2, 3)),
    )
    layer._maybe_build([x.shape, h0.shape, c0.shape])
    mask = (np.arange(5) < np.array([[5], [3]])) if use_mask else None
    grads = [
        rng.standard_normal((2, 5, 3)),
        rng.standard_normal((2, 3)),
        rng.standard_normal((2, 3)),
    ]

    def pass_and_backward(training):
        for w in layer.weights:
            w.grad[...] = 0
        out, ctx = layer.forward([x, h0, c0], training, mask=mask)
        return out, ctx, layer.backward(ctx, grads), [w.grad.copy() for w in layer.weights]

    out, ctx, dx, dw = pass_and_backward(False)
    assert ctx[4][2] is None  # the saved (hs, cs, gates): no gates
    ref_out, _, ref_dx, ref_dw = pass_and_backward(True)
    for got, want in zip(out + dx + dw, ref_out + ref_dx + ref_dw):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_lstm_on_table_rows_backward_after_an_inference_pass_matches_training():
    model = embedded_rnn_model(LSTM(4, go_backwards=True), mask_zero=True, vocab=9)
    data = np.random.default_rng(5).integers(0, 9, (3, 7)).astype(F64)
    data[1, 4:] = 0

    def pass_and_backward(training):
        for w in model.weights:
            w.grad[...] = 0
        (out,), tape = model._graph.forward([data], training)
        model._graph.backward(tape, [np.cos(out)])
        return [out] + [w.grad.copy() for w in model.weights]

    for got, want in zip(pass_and_backward(False), pass_and_backward(True)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_rnn_reads_gathered_rows_under_input_dropout_or_when_the_rows_are_shared():
    data = np.random.default_rng(2).integers(0, 6, (3, 7)).astype(F64)
    rnn = LSTM(2, dropout=0.5, dtype=F64)
    dropout = embedded_rnn_model(rnn)  # masks x itself in training
    rnn._rng = np.random.default_rng(0)
    out, grads, rnn_input = forward_backward(dropout, data, True)  # the LSTM gathers the rows
    assert isinstance(rnn_input, np.ndarray)
    rnn._rng = np.random.default_rng(0)
    ref_out, ref_grads, _ = forward_backward(dropout, data, False)  # the Embedding does
    np.testing.assert_array_equal(out, ref_out)
    for grad, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(grad, ref, rtol=1e-12, atol=1e-15)
    ids = fastnn.Input((7,))
    embedded = Embedding(6, 3, dtype=F64)(ids)
    pooled = layers.GlobalAveragePooling1D()(embedded)  # a second reader of the rows
    shared = fastnn.Model(ids, layers.concatenate([LSTM(2, dtype=F64)(embedded), pooled]))
    as_output = fastnn.Model(ids, [LSTM(2, dtype=F64)(embedded), embedded])
    for model in (shared, as_output):
        assert not any(isinstance(step.layer, EmbeddedRNN) for step in model._graph.steps)


def test_initial_state_through_a_model():
    """initial_state= on symbolic tensors: the states are node inputs and get gradients."""
    x, h0, c0 = fastnn.Input((4, 2)), fastnn.Input((3,)), fastnn.Input((3,))
    seq, h, c = LSTM(3, return_sequences=True, return_state=True, dtype=F64)(
        x, initial_state=[h0, c0]
    )
    assert seq.shape == (None, 4, 3) and h.shape == c.shape == (None, 3)
    out = GRU(3, dtype=F64)(seq, initial_state=h)
    model = fastnn.Model([x, h0, c0], [out, c])
    randomize_weights(model, 5)
    rng = np.random.default_rng(6)
    grads = check_model_gradients(
        model, [normal(rng, 2, 4, 2), normal(rng, 2, 3), normal(rng, 2, 3)]
    )
    assert all(np.abs(g).max() > 0 for g in grads)


# ---------------------------------------------------------------- Keras parity (float32)


def keras_numpy(value):
    if isinstance(value, (list, tuple)):
        return [keras_numpy(v) for v in value]
    return np.asarray(keras.ops.convert_to_numpy(value))


def perturbed_weights(keras_layer, seed=0):
    rng = np.random.default_rng(seed)
    return [w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in keras_layer.get_weights()]


def assert_outputs_close(ours, theirs, rtol=1e-5, atol=1e-6):
    theirs = keras_numpy(theirs)
    if isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            assert o.dtype == np.float32 and o.shape == t.shape
            np.testing.assert_allclose(o, t, rtol=rtol, atol=atol)
    else:
        assert ours.dtype == np.float32 and ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


def layer_pair(kind, **kwargs):
    ours = RNNS[kind][0](5, **kwargs)
    theirs = keras_rnn(kind, 5, **kwargs)
    return ours, theirs


CONFIGS = [
    {},
    {"return_sequences": True},
    {"go_backwards": True},
    {"go_backwards": True, "return_sequences": True},
    {"return_state": True},
    {"return_state": True, "return_sequences": True, "go_backwards": True},
    {"use_bias": False},
    {"activation": "relu", "recurrent_activation": "tanh"},
]


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_rnn_matches_keras(kind, config):
    ours, theirs = layer_pair(kind, **config)
    x = np.random.default_rng(1).standard_normal((4, 7, 3)).astype("float32")
    theirs.build(x.shape)
    weights = perturbed_weights(theirs)
    ours._maybe_build(x.shape)
    assert [w.shape for w in ours.weights] == [w.shape for w in weights]
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    assert_outputs_close(ours(x), theirs(x))


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("masked", [False, True])
def test_initial_state_matches_keras(kind, masked):
    ours, theirs = layer_pair(kind, return_sequences=True, return_state=True)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 3)).astype("float32")
    states = [rng.standard_normal((4, 5)).astype("float32") for _ in range(RNNS[kind][1])]
    theirs.build(x.shape)
    weights = perturbed_weights(theirs, 1)
    theirs.set_weights(weights)
    ours._maybe_build([x.shape] + [s.shape for s in states])
    ours.set_weights(weights)
    # Leading masked steps: Keras outputs zeros there while the state stays the initial one.
    mask = np.array([[0, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1], [0, 1, 0, 0, 1, 0], [0] * 6], bool)
    kw = {"mask": mask} if masked else {}
    expected = theirs(x, initial_state=states, **kw)
    assert_outputs_close(ours(x, initial_state=states, **kw), expected)
    assert_outputs_close(ours([x, *states], **kw), expected)


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_mask_from_embedding_matches_keras(kind, return_sequences, go_backwards):
    """Keras propagates Embedding(mask_zero=True)'s mask; fastnn gets it passed explicitly."""
    opts = dict(return_sequences=return_sequences, go_backwards=go_backwards)
    inp = keras.Input((6,))
    emb_k = keras.layers.Embedding(9, 4, mask_zero=True)
    rnn_k = keras_rnn(kind, 5, **opts)
    theirs = keras.Model(inp, rnn_k(emb_k(inp)))
    emb, rnn = Embedding(9, 4, mask_zero=True), RNNS[kind][0](5, **opts)
    ids = np.array([[3, 4, 0, 0, 0, 0], [0, 0, 5, 1, 8, 2], [1, 2, 3, 4, 5, 6], [7, 0, 2, 0, 0, 1]])
    emb._maybe_build(ids.shape)
    emb.set_weights(perturbed_weights(emb_k))
    emb_k.set_weights(emb.get_weights())
    x = emb(ids)
    rnn._maybe_build(x.shape)
    weights = perturbed_weights(rnn_k, 3)
    rnn.set_weights(weights)
    rnn_k.set_weights(weights)
    mask = emb.compute_mask(ids)
    np.testing.assert_array_equal(mask, ids != 0)
    assert (rnn.compute_mask(x, mask) is mask) == return_sequences
    assert_outputs_close(rnn(x, mask=mask), theirs(ids))
    inputs = fastnn.Input((6,))  # in a model the mask flows from the Embedding by itself
    model = fastnn.Model(inputs, rnn(emb(inputs)))
    assert_outputs_close(model.predict(ids, verbose=0), theirs(ids))


def test_embedding_matches_keras():
    ours, theirs = Embedding(11, 4), keras.layers.Embedding(11, 4)
    ids = np.random.default_rng(0).integers(0, 11, (3, 5, 2))
    theirs.build(ids.shape)
    weights = perturbed_weights(theirs)
    theirs.set_weights(weights)
    ours._maybe_build(ids.shape)
    assert [w.name for w in ours.weights] == ["embeddings"]
    ours.set_weights(weights)
    assert_outputs_close(ours(ids), theirs(ids), rtol=0, atol=0)
    assert_outputs_close(ours(ids.astype("float32")), theirs(ids), rtol=0, atol=0)


def text_model_in(K, kind="lstm"):
    """The seed document's text branch, in keras or fastnn, with RNNS[kind] for its LSTM."""
    rnn = keras_rnn(kind, 64, name="rnn") if K is keras else RNNS[kind][0](64, name="rnn")
    inputs = K.Input((100,), name="text")
    x = K.layers.Embedding(5000, 128, name="embedding")(inputs)
    outputs = K.layers.Dense(1, activation="sigmoid", name="score")(rnn(x))
    return K.Model(inputs, outputs, name="text_model")


@pytest.mark.parametrize("kind", list(RNNS))
def test_seed_text_model_predicts_and_trains_like_keras(kind):
    keras.utils.set_random_seed(0)
    theirs, ours = text_model_in(keras, kind), text_model_in(fastnn, kind)
    assert ours.count_params() == theirs.count_params()
    rng = np.random.default_rng(0)
    weights = [w + rng.normal(0, 0.05, w.shape).astype(w.dtype) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    ids = rng.integers(0, 5000, (8, 100)).astype("float32")
    labels = rng.integers(0, 2, (8, 1)).astype("float32")
    assert_outputs_close(ours.predict(ids, verbose=0), theirs.predict(ids, verbose=0))
    theirs.compile(optimizer=keras.optimizers.Adam(), loss="binary_crossentropy")
    ours.compile(optimizer=fastnn.optimizers.Adam(), loss="binary_crossentropy")
    expected = keras_numpy(theirs.train_on_batch(ids, labels))
    got = ours.train_on_batch(ids, labels)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    for var, o, t in zip(theirs.weights, ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(o, t, rtol=1e-5, atol=1e-6, err_msg=var.path)


# ---------------------------------------------------------------- defaults, shapes, config


def test_defaults_follow_keras():
    lstm = LSTM(4)
    lstm._maybe_build((2, 3, 5))
    assert [(w.name, w.shape) for w in lstm.weights] == [
        ("kernel", (5, 16)),
        ("recurrent_kernel", (4, 16)),
        ("bias", (16,)),
    ]
    bias = lstm.bias.value
    np.testing.assert_array_equal(bias, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])
    rk = lstm.recurrent_kernel.value
    np.testing.assert_allclose(rk @ rk.T, np.eye(4), atol=1e-5)  # orthogonal rows
    gru = GRU(4)
    gru._maybe_build((2, 3, 5))
    assert [w.shape for w in gru.weights] == [(5, 12), (4, 12), (2, 12)]
    gru = GRU(4, reset_after=False)
    gru._maybe_build((2, 3, 5))
    assert [w.shape for w in gru.weights] == [(5, 12), (4, 12), (12,)]
    emb = Embedding(50, 3)
    emb._maybe_build((2, 3))
    table = emb.embeddings.value
    assert table.dtype == np.float32 and np.abs(table).max() <= 0.05 and table.std() > 0.01


@pytest.mark.parametrize("kind", list(RNNS))
def test_config_round_trip(kind):
    layer = RNNS[kind][0](
        3, return_sequences=True, go_backwards=True, dropout=0.25, activation="relu", name="rnn"
    )
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    emb = Embedding(10, 2, mask_zero=True, name="emb")
    assert Embedding.from_config(emb.get_config()).get_config() == emb.get_config()


def test_symbolic_shapes():
    ids = fastnn.Input((100,))
    x = Embedding(5000, 128)(ids)
    assert x.shape == (None, 100, 128)
    assert LSTM(64)(x).shape == (None, 64)
    assert GRU(8, return_sequences=True)(x).shape == (None, 100, 8)
    outs = GRU(8, return_state=True)(x)
    assert [t.shape for t in outs] == [(None, 8), (None, 8)]


def test_dropout_only_in_training():
    layer = LSTM(3, dropout=0.5, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 5, 6)).astype("float32")
    assert not np.allclose(layer(x, training=True), layer(x))
    np.testing.assert_array_equal(layer(x), layer(x, training=False))


# ---------------------------------------------------------------- errors


def test_embedding_index_out_of_range_names_layer_index_and_input_dim():
    layer = Embedding(5, 2, name="words")
    with pytest.raises(ValueError, match=r"Embedding 'words'.*index 7.*\[0, 5\).*input_dim=5"):
        layer(np.array([[1, 7, 2]]))
    with pytest.raises(ValueError, match=r"index -1"):
        layer(np.array([[-1, 0]]))


def test_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="units"):
        LSTM(0)
    with pytest.raises(ValueError, match="input_dim"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match="elementwise"):
        GRU(3, activation="softmax")
    with pytest.raises(ValueError, match=r"LSTM 'seq'.*\(batch, timesteps, features\)"):
        LSTM(3, name="seq")(fastnn.Input((4,)))
    layer = LSTM(3, name="lstm_s")
    x = np.zeros((2, 4, 5), "float32")
    with pytest.raises(ValueError, match=r"initial_state must hold 2"):
        layer(x, initial_state=[np.zeros((2, 3), "float32")])
    with pytest.raises(ValueError, match=r"initial state 'c'.*\(2, 3\).*\(2, 4\)"):
        layer(x, initial_state=[np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"mask must be"):
        layer(x, mask=np.ones((2, 5), bool))
    with pytest.raises(ValueError, match=r"\(batch, timesteps, 5\)"):
        layer(np.zeros((2, 4, 6), "float32"))
    with pytest.raises(NotImplementedError, match="array calls"):
        layer(fastnn.Input((4, 5)), mask=np.ones((1, 4), bool))


@pytest.mark.parametrize("kind", list(RNNS))
def test_mask_zero_in_a_model_ignores_padding_in_predict_and_training(kind):
    inputs = fastnn.Input((4,))
    embedding = Embedding(10, 3, mask_zero=True)
    model = fastnn.Model(inputs, fastnn.layers.Dense(1)(RNNS[kind][0](2)(embedding(inputs))))
    model.compile(optimizer="sgd", loss="mse")
    ids = np.array([[1, 2, 0, 0], [3, 0, 0, 0], [0, 0, 5, 6]])
    before = model.predict(ids, verbose=0)
    table = embedding.embeddings.value
    table[0] = 100.0  # padding rows must not matter when masked
    np.testing.assert_allclose(model.predict(ids, verbose=0), before, rtol=1e-6)
    model.train_on_batch(ids, np.ones((3, 1)))
    np.testing.assert_array_equal(table[0], 100.0)  # no gradient reaches the padding row
