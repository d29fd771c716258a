"""SimpleRNN, Bidirectional and Masking: kernels, float64 gradient checks, Keras 3 parity, learning.

Parity runs Keras 3 on the torch backend with the same weights (``set_weights``): SimpleRNN in every
mode, Bidirectional(LSTM / GRU / SimpleRNN) in every merge mode with and without masks, states,
Masking -> LSTM in a model (the mask flows through the graph), and one Adam ``train_on_batch``.
"""

import os

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradcheck import check_gradients, numeric_gradient, randomize_weights  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from numba_checks import float64_ops  # noqa: E402

import fastnn  # noqa: E402
from fastnn.kernels import activations as A  # noqa: E402
from fastnn.kernels import recurrent as R  # noqa: E402
from fastnn.layers.core import Dense  # noqa: E402
from fastnn.layers.embedding import Embedding  # noqa: E402
from fastnn.layers.recurrent import GRU, LSTM, Masking, SimpleRNN  # noqa: E402
from fastnn.layers.wrappers import Bidirectional  # noqa: E402

keras = pytest.importorskip("keras")

F64 = "float64"
SETTINGS = settings(max_examples=12, deadline=None)
RNNS = {"SimpleRNN": (SimpleRNN, 1), "LSTM": (LSTM, 2), "GRU": (GRU, 1)}
MERGE_MODES = ["concat", "sum", "mul", "ave", None]
ACTS = {"tanh": A.TANH, "relu": A.RELU, "sigmoid": A.SIGMOID, "linear": A.LINEAR}


def normal(rng, *shape, scale=1.0):
    return scale * rng.standard_normal(shape)


def as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


# ---------------------------------------------------------------- SimpleRNN kernels


def simple_rnn_reference(x, kernel, recurrent_kernel, bias, h0, mask, act):
    fn = {
        "tanh": np.tanh,
        "relu": lambda z: np.maximum(z, 0),
        "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
        "linear": lambda z: z,
    }[act]
    hs = [h0]
    for t in range(x.shape[0]):
        h = fn(x[t] @ kernel + hs[-1] @ recurrent_kernel + (0 if bias is None else bias))
        hs.append(np.where(mask[t][:, None], h, hs[-1]))
    return np.stack(hs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("use_bias", [False, True])
def test_simple_rnn_forward_matches_numpy(dtype, act, use_bias):
    rng = np.random.default_rng(0)
    x = normal(rng, 5, 3, 4).astype(dtype)
    kernel, rec, bias = normal(rng, 4, 6), normal(rng, 6, 6, scale=0.4), normal(rng, 6)
    kernel, rec, bias = kernel.astype(dtype), rec.astype(dtype), bias.astype(dtype)
    h0 = normal(rng, 3, 6).astype(dtype)
    mask = rng.random((5, 3)) < 0.6
    bias = bias if use_bias else None
    (hs,) = R.simple_rnn_forward(x, kernel, rec, bias, h0, mask, ACTS[act])
    assert hs.dtype == dtype
    expected = simple_rnn_reference(x, kernel, rec, bias, h0, mask, act)
    np.testing.assert_allclose(hs, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_simple_rnn_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    x, kernel, rec = normal(rng, 4, 2, 3), normal(rng, 3, 2), normal(rng, 2, 2, scale=0.5)
    bias, h0, dh_last = normal(rng, 2), normal(rng, 2, 2), normal(rng, 2, 2)
    dy = normal(rng, 4, 2, 2)
    mask = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], bool)

    def objective():
        (hs,) = R.simple_rnn_forward(x, kernel, rec, bias, h0, mask, A.TANH)
        return np.sum(hs[1:] * dy) + np.sum(hs[-1] * dh_last)

    grads = [np.zeros_like(kernel), np.zeros_like(rec), np.zeros_like(bias)]
    (hs,) = R.simple_rnn_forward(x, kernel, rec, bias, h0, mask, A.TANH)
    dx, dh0 = R.simple_rnn_backward(x, kernel, rec, hs, mask, A.TANH, dy, dh_last, *grads)
    for analytic, array in zip([dx, dh0, *grads], [x, h0, kernel, rec, bias]):
        np.testing.assert_allclose(analytic, numeric_gradient(objective, array), atol=1e-7)


def test_simple_rnn_step_kernels_stay_float32():
    f = np.zeros((3, 4), np.float32)
    mask = np.ones(3, np.bool_)
    assert float64_ops(R.simple_rnn_step_forward, f, f, f, mask, A.TANH, f.copy()) == []
    assert float64_ops(R.simple_rnn_step_backward, f, f, f.copy(), f, mask, A.SIGMOID, f) == []


# ---------------------------------------------------------------- gradient checks (float64)


def check_sequence_layer(layer, x, states=(), mask=None, seed=0, **kwargs):
    """Gradient check of ``layer.forward(..., mask=mask)`` w.r.t. x, the states and weights."""
    given_states = len(states) > 0

    def forward(xs):
        out, ctx = layer.forward(list(xs) if given_states else xs[0], True, mask=mask)
        return as_list(out), (ctx, isinstance(out, list))

    def backward(ctx, grads):
        ctx, out_is_list = ctx
        g = layer.backward(ctx, grads if out_is_list else grads[0])
        return g if given_states else [g]

    what = f"{type(layer).__name__} '{layer.name}'"
    return check_gradients(
        forward, backward, [x, *states], layer.trainable_weights, seed=seed, what=what, **kwargs
    )


@SETTINGS
@given(
    batch=st.integers(1, 3),
    steps=st.integers(1, 4),
    in_dim=st.integers(1, 3),
    units=st.integers(1, 3),
    activation=st.sampled_from(list(ACTS)),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    go_backwards=st.booleans(),
    zero_output_for_mask=st.booleans(),
    with_state=st.booleans(),
    masked=st.booleans(),
    use_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_simple_rnn_gradients(
    batch,
    steps,
    in_dim,
    units,
    activation,
    return_sequences,
    return_state,
    go_backwards,
    zero_output_for_mask,
    with_state,
    masked,
    use_bias,
    seed,
):
    layer = SimpleRNN(
        units,
        activation=activation,
        use_bias=use_bias,
        return_sequences=return_sequences,
        return_state=return_state,
        go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask,
        dtype=F64,
    )
    rng = np.random.default_rng(seed)
    x = normal(rng, batch, steps, in_dim)
    states = [normal(rng, batch, units, scale=0.5)] if with_state else []
    layer._maybe_build([x.shape, states[0].shape] if states else x.shape)
    randomize_weights(layer, seed)
    mask = rng.random((batch, steps)) < 0.6 if masked else None
    check_sequence_layer(layer, x, states, mask, seed=seed)


@SETTINGS
@given(
    kind=st.sampled_from(list(RNNS)),
    merge_mode=st.sampled_from(MERGE_MODES),
    batch=st.integers(1, 3),
    steps=st.integers(1, 4),
    in_dim=st.integers(1, 3),
    units=st.integers(1, 2),
    return_sequences=st.booleans(),
    return_state=st.booleans(),
    with_state=st.booleans(),
    masked=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_bidirectional_gradients(
    kind,
    merge_mode,
    batch,
    steps,
    in_dim,
    units,
    return_sequences,
    return_state,
    with_state,
    masked,
    seed,
):
    cls, n_states = RNNS[kind]
    rnn = cls(units, return_sequences=return_sequences, return_state=return_state, dtype=F64)
    layer = Bidirectional(rnn, merge_mode=merge_mode)
    rng = np.random.default_rng(seed)
    x = normal(rng, batch, steps, in_dim)
    states = [normal(rng, batch, units, scale=0.5) for _ in range(2 * n_states * with_state)]
    layer._maybe_build([x.shape, *(s.shape for s in states)] if states else x.shape)
    assert len(layer.trainable_weights) == 2 * len(rnn.weights) or not rnn.built
    randomize_weights(layer, seed)
    mask = rng.random((batch, steps)) < 0.6 if masked else None
    check_sequence_layer(layer, x, states, mask, seed=seed)


@pytest.mark.parametrize("merge_mode", MERGE_MODES)
def test_bidirectional_model_gradients_with_masking(merge_mode):
    """Masking -> Bidirectional(LSTM, sequences) -> Bidirectional(GRU) -> Dense, as a Model.

    Only the entries of unmasked timesteps are free (perturbing a padding step would unmask it),
    so the check runs over them; padding steps must get zero gradient (Keras's ``where``).
    """
    inputs = fastnn.Input((5, 2))
    x = Masking(0.5, dtype=F64)(inputs)
    x = Bidirectional(LSTM(2, return_sequences=True, dtype=F64), merge_mode=merge_mode)(x)
    if merge_mode is None:
        x = fastnn.layers.Concatenate(dtype=F64)(x)
    x = Bidirectional(GRU(2, dtype=F64), merge_mode=merge_mode)(x)
    if merge_mode is None:
        x = fastnn.layers.Add(dtype=F64)(x)
    model = fastnn.Model(inputs, Dense(1, dtype=F64)(x))
    randomize_weights(model, 1)
    rng = np.random.default_rng(2)
    data = normal(rng, 3, 5, 2)
    keep = np.array([[1, 1, 0, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], bool)
    data[~keep] = 0.5

    def forward(xs):
        full = data.copy()
        full[keep] = xs[0]
        return model._graph.forward([full], True)

    def backward(tape, grads):
        (g,) = model._graph.backward(tape, grads)
        assert np.all(g[~keep] == 0)
        return [g[keep]]

    check_gradients(forward, backward, [data[keep]], model.trainable_weights, model.weights)


# ---------------------------------------------------------------- Keras parity (float32)


def keras_numpy(value):
    if isinstance(value, (list, tuple)):
        return [keras_numpy(v) for v in value]
    return np.asarray(keras.ops.convert_to_numpy(value))


def perturbed_weights(keras_layer, seed=0):
    rng = np.random.default_rng(seed)
    return [w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in keras_layer.get_weights()]


def assert_outputs_close(ours, theirs, rtol=1e-5, atol=1e-6):
    ours, theirs = as_list(ours), as_list(keras_numpy(theirs))
    assert len(ours) == len(theirs)
    for o, t in zip(ours, theirs):
        assert o.dtype == np.float32 and o.shape == t.shape
        np.testing.assert_allclose(o, t, rtol=rtol, atol=atol)


def paired(ours, theirs, x_shape, seed=0):
    """Build both layers and give them the same (perturbed Keras) weights."""
    theirs.build(x_shape)
    weights = perturbed_weights(theirs, seed)
    theirs.set_weights(weights)
    ours._maybe_build(x_shape)
    assert [w.shape for w in ours.weights] == [w.shape for w in weights]
    ours.set_weights(weights)


SIMPLE_CONFIGS = [
    {},
    {"return_sequences": True},
    {"go_backwards": True, "return_sequences": True},
    {"return_state": True, "go_backwards": True},
    {"use_bias": False},
    {"activation": "relu"},
    {"activation": None, "return_sequences": True},
]


@pytest.mark.parametrize("config", SIMPLE_CONFIGS, ids=str)
@pytest.mark.parametrize("masked", [False, True])
def test_simple_rnn_matches_keras(config, masked):
    ours, theirs = SimpleRNN(5, **config), keras.layers.SimpleRNN(5, **config)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 7, 3)).astype("float32")
    paired(ours, theirs, x.shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    kw = {"mask": rng.random((4, 7)) < 0.6} if masked else {}
    assert_outputs_close(ours(x, **kw), theirs(x, **kw))


def test_simple_rnn_initial_state_matches_keras():
    opts = dict(return_sequences=True, return_state=True)
    ours, theirs = SimpleRNN(5, **opts), keras.layers.SimpleRNN(5, **opts)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 6, 3)).astype("float32")
    h0 = rng.standard_normal((4, 5)).astype("float32")
    paired(ours, theirs, x.shape)
    mask = np.array([[0, 0, 1, 1, 0, 1], [1] * 6, [0, 1, 0, 0, 1, 0], [0] * 6], bool)
    assert_outputs_close(
        ours(x, initial_state=[h0], mask=mask), theirs(x, initial_state=[h0], mask=mask)
    )


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("return_sequences", [False, True])
def test_zero_output_for_mask_matches_keras(kind, return_sequences):
    opts = dict(return_sequences=return_sequences, zero_output_for_mask=True, go_backwards=True)
    ours, theirs = RNNS[kind][0](4, **opts), getattr(keras.layers, kind)(4, **opts)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 5, 2)).astype("float32")
    paired(ours, theirs, x.shape)
    assert ours.get_config()["zero_output_for_mask"] is True
    mask = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
    assert_outputs_close(ours(x, mask=mask), theirs(x, mask=mask))


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=str)
@pytest.mark.parametrize("return_sequences", [False, True])
def test_bidirectional_matches_keras(kind, merge_mode, return_sequences):
    opts = dict(return_sequences=return_sequences)
    ours = Bidirectional(RNNS[kind][0](4, **opts), merge_mode=merge_mode)
    theirs = keras.layers.Bidirectional(getattr(keras.layers, kind)(4, **opts), merge_mode)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 2)).astype("float32")
    paired(ours, theirs, x.shape)
    assert [w.name for w in ours.weights] == [w.name for w in theirs.weights]
    assert ours.count_params() == theirs.count_params()
    assert_outputs_close(ours(x), theirs(x))
    mask = np.array([[1, 1, 1, 0, 0, 0], [0, 1, 1, 0, 1, 1], [0] * 6], bool)
    assert_outputs_close(ours(x, mask=mask), theirs(x, mask=mask))


@pytest.mark.parametrize("kind", list(RNNS))
@pytest.mark.parametrize("merge_mode", ["concat", None], ids=str)
def test_bidirectional_states_match_keras(kind, merge_mode):
    opts = dict(return_sequences=True, return_state=True)
    ours = Bidirectional(RNNS[kind][0](4, **opts), merge_mode=merge_mode)
    theirs = keras.layers.Bidirectional(getattr(keras.layers, kind)(4, **opts), merge_mode)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 2)).astype("float32")
    states = [rng.standard_normal((3, 4)).astype("float32") for _ in range(2 * RNNS[kind][1])]
    paired(ours, theirs, x.shape, seed=1)
    mask = np.array([[1, 1, 0, 1, 0], [1] * 5, [0, 0, 1, 1, 1]], bool)
    expected = theirs(x, initial_state=states, mask=mask)
    assert_outputs_close(ours(x, initial_state=states, mask=mask), expected)
    assert_outputs_close(ours([x, *states], mask=mask), expected)
    assert_outputs_close(ours(x), theirs(x))


def test_masking_then_lstm_in_a_model_matches_keras():
    """The mask made by Masking flows through the graph into the LSTM and a Bidirectional GRU."""

    def build(K, L):
        inputs = K.Input((6, 3))
        x = L.Masking(mask_value=0.5, name="masking")(inputs)
        seq = L.LSTM(4, return_sequences=True, name="lstm")(x)
        out = L.Bidirectional(L.GRU(3, name="gru"), name="bi")(seq)
        return K.Model(inputs, [out, seq])

    ours_layers = type("L", (), {})
    for name, cls in [("Masking", Masking), ("LSTM", LSTM), ("GRU", GRU)]:
        setattr(ours_layers, name, cls)
    ours_layers.Bidirectional = Bidirectional
    theirs, ours = build(keras, keras.layers), build(fastnn, ours_layers)
    weights = [w + np.float32(0.1) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6, 3)).astype("float32")
    pad = np.array([[0, 0, 1, 1, 0, 1], [1, 0, 0, 0, 0, 0], [0] * 6, [1] * 6], bool)
    x[pad] = 0.5
    x[0, 3, 0] = 0.5  # one feature equal to mask_value alone does not mask the step
    expected = theirs.predict(x, verbose=0)
    got = ours.predict(x, verbose=0)
    assert_outputs_close(got, expected)
    np.testing.assert_array_equal(got[1][3], 0)  # all padding: the LSTM never steps
    np.testing.assert_array_equal(got[1][0, 3], got[1][0, 1])  # masked steps repeat the output
    x[pad] = 7.0  # without the mask the padding would change everything
    assert not np.allclose(ours.predict(x, verbose=0)[0], expected[0])


def bi_model(K, L, Bi):
    inputs = K.Input((7,), name="ids")
    x = L.Embedding(12, 5, mask_zero=True, name="embedding")(inputs)
    x = Bi(L.LSTM(4, return_sequences=True, name="lstm"), name="bi_lstm")(x)
    x = Bi(L.GRU(3, name="gru"), merge_mode="ave", name="bi_gru")(x)
    outputs = L.Dense(1, activation="sigmoid", name="score")(x)
    return K.Model(inputs, outputs, name="bi_model")


def test_bidirectional_model_predicts_and_trains_like_keras():
    keras.utils.set_random_seed(0)
    theirs = bi_model(keras, keras.layers, keras.layers.Bidirectional)
    ours = bi_model(fastnn, fastnn.layers, Bidirectional)
    assert ours.count_params() == theirs.count_params()
    rng = np.random.default_rng(0)
    weights = [w + rng.normal(0, 0.1, w.shape).astype(w.dtype) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    ids = rng.integers(1, 12, (8, 7))
    ids[np.arange(7)[None, :] >= rng.integers(1, 8, (8, 1))] = 0  # padded at the end
    ids[0, :3] = 0  # and one padded at the start
    labels = rng.integers(0, 2, (8, 1)).astype("float32")
    ids = ids.astype("float32")
    assert_outputs_close(ours.predict(ids, verbose=0), theirs.predict(ids, verbose=0))
    theirs.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy")
    ours.compile(optimizer=fastnn.optimizers.Adam(0.01), loss="binary_crossentropy")
    expected = keras_numpy(theirs.train_on_batch(ids, labels))
    np.testing.assert_allclose(ours.train_on_batch(ids, labels), expected, rtol=1e-5)
    for var, o, t in zip(theirs.weights, ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(o, t, rtol=1e-4, atol=1e-6, err_msg=var.path)


# ---------------------------------------------------------------- learning


def padded_sequences(rng, n, steps=20, vocab=10):
    """Ids 2..vocab-1 padded with 0 after a random length; label: does token 1 occur?"""
    lengths = rng.integers(3, steps + 1, n)
    ids = rng.integers(2, vocab, (n, steps))
    ids[np.arange(steps)[None, :] >= lengths[:, None]] = 0
    labels = rng.random(n) < 0.5
    where = (rng.random(n) * lengths).astype(int)
    ids[labels, where[labels]] = 1
    return ids.astype("float32"), labels.astype("float32")[:, None]


@pytest.mark.parametrize(
    "rnn, mask_zero, bidirectional",
    [(LSTM, True, True), (LSTM, True, False), (GRU, True, False), (LSTM, False, False),
     (GRU, False, False)],
)  # fmt: skip
def test_recurrent_models_learn_whether_a_token_occurs(rnn, mask_zero, bidirectional):
    """A task that needs memory across the sequence, with and without masked padding."""
    fastnn.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x, y = padded_sequences(rng, 1024)
    x_test, y_test = padded_sequences(rng, 512)
    inputs = fastnn.Input((20,))
    h = Embedding(10, 8, mask_zero=mask_zero)(inputs)
    h = Bidirectional(rnn(8))(h) if bidirectional else rnn(8)(h)
    model = fastnn.Model(inputs, Dense(1, activation="sigmoid")(h))
    model.compile(
        optimizer=fastnn.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"]
    )
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy > 0.9


# ---------------------------------------------------------------- shapes, masks, config, errors


def test_symbolic_shapes_and_masks():
    x = fastnn.Input((5, 3))
    assert Bidirectional(LSTM(4))(x).shape == (None, 8)
    assert Bidirectional(GRU(4, return_sequences=True), merge_mode="sum")(x).shape == (None, 5, 4)
    outs = Bidirectional(LSTM(4, return_state=True), merge_mode=None)(x)
    assert [t.shape for t in outs] == [(None, 4)] * 6
    outs = Bidirectional(SimpleRNN(2, return_state=True, return_sequences=True))(x)
    assert [t.shape for t in outs] == [(None, 5, 4), (None, 2), (None, 2)]
    assert SimpleRNN(3, return_sequences=True)(x).shape == (None, 5, 3)
    assert Masking()(x).shape == (None, 5, 3)
    mask = np.array([[True, False, True, True, True]])
    bi = Bidirectional(GRU(2, return_sequences=True, return_state=True), merge_mode=None)
    assert bi.compute_mask(None, [mask, None, None]) == [mask, mask, None, None]
    assert Bidirectional(GRU(2)).compute_mask(None, mask) is None
    data = np.zeros((2, 3, 2), "float32")
    data[0, 1] = [0, 2]
    np.testing.assert_array_equal(Masking().compute_mask(data), [[0, 1, 0], [0, 0, 0]])


def test_bidirectional_copies_names_weights_and_trainable():
    rnn = LSTM(3, name="enc")
    bi = Bidirectional(rnn, name="bi")
    assert (bi.forward_layer.name, bi.backward_layer.name) == ("forward_enc", "backward_enc")
    assert not bi.forward_layer.go_backwards and bi.backward_layer.go_backwards
    bi._maybe_build((2, 4, 5))
    assert not rnn.built  # the wrapped instance only provides the config
    assert [w.path for w in bi.weights][::3] == ["bi/forward_enc/kernel", "bi/backward_enc/kernel"]
    model = fastnn.Sequential([fastnn.Input((4, 5)), bi, Dense(1)])
    assert len(model.trainable_weights) == 8
    bi.trainable = False
    assert len(model.trainable_weights) == 2 and len(model.non_trainable_weights) == 6
    assert not bi.forward_layer.trainable


def test_config_round_trips():
    for layer in [
        SimpleRNN(3, activation="relu", return_sequences=True, go_backwards=True, name="s"),
        Masking(-1.0, name="m"),
        Bidirectional(GRU(2, return_sequences=True), merge_mode="mul", name="b"),
        Bidirectional(
            LSTM(2), backward_layer=SimpleRNN(2, go_backwards=True, name="back"), merge_mode=None
        ),
    ]:
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config
    assert "recurrent_activation" not in SimpleRNN(2).get_config()
    bi = Bidirectional(LSTM(2, return_sequences=True))
    assert bi.get_config()["layer"]["config"]["zero_output_for_mask"] is True


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"merge_mode 'max'"):
        Bidirectional(LSTM(2), merge_mode="max")
    with pytest.raises(ValueError, match=r"`layer` must be a recurrent layer"):
        Bidirectional(Dense(2))
    with pytest.raises(ValueError, match=r"differ in `go_backwards`"):
        Bidirectional(LSTM(2), backward_layer=LSTM(2))
    with pytest.raises(ValueError, match=r"agree on `return_sequences`"):
        Bidirectional(LSTM(2), backward_layer=LSTM(2, go_backwards=True, return_sequences=True))
    with pytest.raises(ValueError, match=r"even number; got 1"):
        Bidirectional(GRU(2))(np.zeros((1, 3, 2)), initial_state=[np.zeros((1, 2))])
    with pytest.raises(TypeError, match="recurrent_activation"):
        SimpleRNN(2, recurrent_activation="sigmoid")
    with pytest.raises(ValueError, match="units"):
        SimpleRNN(0)
    with pytest.raises(ValueError, match=r"Masking 'pad'.*mask_value"):
        Masking("x", name="pad")


def test_mask_passes_through_elementwise_layers_to_the_rnn():
    """Masking -> Dense -> Dropout -> LSTM: the mask reaches the LSTM, as in Keras."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    x[0, 3:] = 0.0
    x[2, :2] = 0.0

    def build(lib):
        inputs = lib.Input((5, 4))
        h = lib.layers.Masking()(inputs)
        h = lib.layers.Dense(6, activation="tanh", name="d")(h)
        h = lib.layers.Dropout(0.3)(h)
        return lib.Model(inputs, lib.layers.LSTM(3, name="rnn")(h))

    theirs, ours = build(keras), build(fastnn)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
