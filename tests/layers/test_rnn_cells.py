"""RNN over cells and stateful recurrent layers: beyond the harness rows (rows_rnn_cells.py).

RNN(built-in cell) against the layer with the same weights (same kernels, same numbers); masks,
``zero_output_for_mask`` and ``initial_state`` on each path (fused kernels, a user's cell on the
tape, stacks) against Keras 3; float64 gradients with masks and initial states; ``stateful=True``
on LSTM, GRU, SimpleRNN and RNN over batches of predict and fit against Keras, ``reset_states``,
and the errors.
"""

import os

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradcheck import check_gradients, randomize_weights  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn  # noqa: E402
from fastnn import layers as L  # noqa: E402
from fastnn import ops  # noqa: E402

keras = pytest.importorskip("keras")
kops = keras.ops

F64 = "float64"


class PeepCell(L.Layer):
    """A user's cell with two states: ``h = tanh(x @ kernel + h @ recurrent + c)``, ``c = c / 2 +
    h``; the output is ``h``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent = self.add_weight(shape=(self.units, self.units), name="recurrent")

    def call(self, inputs, states):
        h, c = states
        h = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(h, self.recurrent) + c)
        return h, [h, c * 0.5 + h]


class KerasPeepCell(keras.layers.Layer):
    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent = self.add_weight(shape=(self.units, self.units), name="recurrent")

    def call(self, inputs, states):
        h, c = states
        h = kops.tanh(kops.matmul(inputs, self.kernel) + kops.matmul(h, self.recurrent) + c)
        return h, [h, c * 0.5 + h]


#: name -> (our cell(s), Keras's) for each way RNN runs a cell.
CELLS = {
    "lstm_cell": (lambda d: L.LSTMCell(3, dtype=d), lambda: keras.layers.LSTMCell(3)),
    "gru_cell": (lambda d: L.GRUCell(3, dtype=d), lambda: keras.layers.GRUCell(3)),
    "simple_rnn_cell": (
        lambda d: L.SimpleRNNCell(3, dtype=d),
        lambda: keras.layers.SimpleRNNCell(3),
    ),
    "lstm_cell-softsign (tape)": (
        lambda d: L.LSTMCell(3, activation="softsign", dtype=d),
        lambda: keras.layers.LSTMCell(3, activation="softsign"),
    ),
    "user_cell (tape)": (lambda d: PeepCell(3, dtype=d), lambda: KerasPeepCell(3)),
    "stacked": (
        lambda d: [L.GRUCell(2, dtype=d), L.LSTMCell(3, dtype=d)],
        lambda: [keras.layers.GRUCell(2), keras.layers.LSTMCell(3)],
    ),
    "stacked-mixed (tape)": (
        lambda d: [PeepCell(2, dtype=d), L.SimpleRNNCell(3, dtype=d)],
        lambda: [KerasPeepCell(2), keras.layers.SimpleRNNCell(3)],
    ),
}


def flat(value) -> list:
    return [np.asarray(kops.convert_to_numpy(t)) for t in keras.tree.flatten(value)]


def pair(name, dtype="float32", seed=0, **kwargs):
    """Our RNN over ``CELLS[name]`` and Keras's, built on (batch, 5, 4) inputs, same weights."""
    ours_cell, keras_cell = CELLS[name]
    ours = L.RNN(ours_cell(dtype), dtype=dtype, **kwargs)
    ours(fastnn.Input((5, 4), dtype=dtype))
    randomize_weights(ours, seed)
    theirs = keras.layers.RNN(keras_cell(), **kwargs)
    theirs(keras.Input((5, 4)))
    theirs.set_weights(ours.get_weights())
    return ours, theirs


def test_rnn_over_each_built_in_cell_runs_its_layers_kernels():
    for cell, layer in ((L.LSTMCell, L.LSTM), (L.GRUCell, L.GRU), (L.SimpleRNNCell, L.SimpleRNN)):
        rnn = L.RNN(cell(2))
        rnn(fastnn.Input((3, 4)))
        assert [type(e) for e in rnn._engines] == [layer]
        _, ctx = rnn.forward(np.ones((2, 3, 4), "float32"), True)
        assert not ctx.on_tape
    stacked = L.RNN([L.LSTMCell(2), L.GRUCell(3, reset_after=False)])
    stacked(fastnn.Input((3, 4)))
    assert [type(e) for e in stacked._engines] == [L.LSTM, L.GRU]
    for on_tape in (L.RNN(L.LSTMCell(2, activation="gelu")), L.RNN(PeepCell(2))):
        on_tape(fastnn.Input((3, 4)))
        assert on_tape._engines is None
        assert on_tape.forward(np.ones((2, 3, 4), "float32"), True)[1].on_tape


@pytest.mark.parametrize(
    "cell, layer, kwargs",
    [
        (L.LSTMCell, L.LSTM, {}),
        (L.GRUCell, L.GRU, {"reset_after": False}),
        (L.SimpleRNNCell, L.SimpleRNN, {"activation": "relu"}),
    ],
)
@pytest.mark.parametrize("go_backwards", [False, True])
def test_rnn_of_a_cell_equals_the_layer_with_the_same_weights(cell, layer, kwargs, go_backwards):
    """Outputs, input and weight gradients, with a mask and initial states, in float64."""
    rng = np.random.default_rng(1)
    options = {"return_sequences": True, "return_state": True, "go_backwards": go_backwards}
    rnn = L.RNN(cell(3, dtype=F64, **kwargs), dtype=F64, **options)
    full = layer(3, dtype=F64, **kwargs, **options)
    n_states = len(full.state_names)
    x = rng.standard_normal((2, 4, 2))
    states = [rng.standard_normal((2, 3)) for _ in range(n_states)]
    mask = np.array([[True, False, True, True], [True, True, False, False]])
    for lay in (rnn, full):
        lay._maybe_build([x.shape] + [s.shape for s in states])
    randomize_weights(rnn, 2)
    full.set_weights(rnn.get_weights())
    results = []
    for lay in (rnn, full):
        for w in lay.weights:
            w.grad[...] = 0
        out, ctx = lay.forward([x, *states], True, mask=mask)
        grads = lay.backward(ctx, [np.cos(o) for o in out])
        results.append((out, grads, [w.grad.copy() for w in lay.weights]))
    for got, want in zip(*results):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masks_match_keras(name, zero_output_for_mask):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 4)).astype("float32")
    mask = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1], [1, 0, 0, 0, 0]], bool)
    for return_sequences in (False, True):
        ours, theirs = pair(
            name,
            return_sequences=return_sequences,
            return_state=True,
            go_backwards=return_sequences,
            zero_output_for_mask=zero_output_for_mask,
        )
        got = ours(x, mask=mask)
        want = flat(theirs(x, mask=mask))
        assert len(got) == len(want)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", ["user_cell (tape)", "stacked", "stacked-mixed (tape)"])
def test_initial_state_in_a_model_matches_keras(name):
    rng = np.random.default_rng(4)
    ours, theirs = pair(name, return_sequences=True)
    sizes = ours._flat_sizes
    x = rng.standard_normal((2, 5, 4)).astype("float32")
    states = [rng.standard_normal((2, s)).astype("float32") for s in sizes]
    inputs = [fastnn.Input((5, 4)), *[fastnn.Input((s,)) for s in sizes]]
    model = fastnn.Model(inputs, ours(inputs[0], initial_state=inputs[1:]))
    keras_states = states
    if name != "user_cell (tape)":  # Keras nests a stack's states per cell
        keras_states = [states[0], states[1:]] if name == "stacked" else [states[:2], states[2]]
    want = kops.convert_to_numpy(theirs(x, initial_state=keras_states))
    np.testing.assert_allclose(model.predict([x, *states], verbose=0), want, rtol=1e-5, atol=1e-6)
    nested = ours(x, initial_state=[states[0], states[1:]] if name == "stacked" else states)
    np.testing.assert_allclose(nested, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["user_cell (tape)", "stacked", "stacked-mixed (tape)"])
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), steps=st.integers(1, 4), go_backwards=st.booleans())
def test_float64_gradients_with_masks_and_initial_states(name, seed, steps, go_backwards):
    rng = np.random.default_rng(seed)
    ours_cell, _ = CELLS[name]
    rnn = L.RNN(
        ours_cell(F64), dtype=F64, return_sequences=True, return_state=True,
        go_backwards=go_backwards,
    )  # fmt: skip
    x = rng.standard_normal((2, steps, 4))
    states = [rng.standard_normal((2, s)) for s in rnn._flat_sizes]
    rnn._maybe_build([x.shape] + [s.shape for s in states])
    randomize_weights(rnn, seed)
    mask = rng.random((2, steps)) < 0.6

    def forward(xs):
        out, ctx = rnn.forward(list(xs), True, mask=mask)
        return out, ctx

    check_gradients(forward, rnn.backward, [x, *states], rnn.trainable_weights, seed=seed)


# ---- stateful ----------------------------------------------------------------------------------
def stateful_pair(kind, keras_kind=None):
    """A model over one stateful recurrent layer with a fixed batch of 4, ours and Keras's (of
    ``keras_kind`` if given)."""
    ours_layer = {
        "lstm": (lambda: L.LSTM(3, stateful=True), lambda: keras.layers.LSTM(3, stateful=True)),
        "gru": (lambda: L.GRU(3, stateful=True), lambda: keras.layers.GRU(3, stateful=True)),
        "simple_rnn": (
            lambda: L.SimpleRNN(3, stateful=True, return_sequences=True),
            lambda: keras.layers.SimpleRNN(3, stateful=True, return_sequences=True),
        ),
        "rnn-lstm_cell": (
            lambda: L.RNN(L.LSTMCell(3), stateful=True),
            lambda: keras.layers.RNN(keras.layers.LSTMCell(3), stateful=True),
        ),
        "rnn-user_cell (tape)": (
            lambda: L.RNN(PeepCell(3), stateful=True),
            lambda: keras.layers.RNN(KerasPeepCell(3), stateful=True),
        ),
    }
    ours_layer, keras_layer = ours_layer[kind][0], ours_layer[keras_kind or kind][1]
    inputs = fastnn.Input((3, 2), batch_size=4)
    ours = fastnn.Model(inputs, L.Dense(1)(ours_layer()(inputs)))
    randomize_weights(ours, 5)
    keras_inputs = keras.Input((3, 2), batch_size=4)
    theirs = keras.Model(keras_inputs, keras.layers.Dense(1)(keras_layer()(keras_inputs)))
    theirs.set_weights(ours.get_weights())
    return ours, theirs


KINDS = ["lstm", "gru", "simple_rnn", "rnn-lstm_cell", "rnn-user_cell (tape)"]


def _states(model):
    return [v.numpy() for v in model.layers[1].states]


@pytest.mark.parametrize("kind", KINDS)
def test_stateful_predict_carries_the_states_over_batches_and_calls_as_keras(kind):
    ours, theirs = stateful_pair(kind)
    x = np.random.default_rng(6).standard_normal((8, 3, 2)).astype("float32")
    for _ in range(2):  # the second call starts from the first's last states
        got = ours.predict(x, batch_size=4, verbose=0)
        np.testing.assert_allclose(got, theirs.predict(x, batch_size=4, verbose=0), 1e-5, 1e-6)
        for a, b in zip(_states(ours), _states(theirs), strict=True):
            np.testing.assert_allclose(a, b, 1e-5, 1e-6)
    assert np.abs(_states(ours)[0]).max() > 0
    ours.layers[1].reset_states()
    theirs.layers[1].reset_states()
    assert all(not s.any() for s in _states(ours))
    np.testing.assert_allclose(
        ours.predict(x[:4], verbose=0), theirs.predict(x[:4], verbose=0), 1e-5, 1e-6
    )


@pytest.mark.parametrize(
    "kind, keras_kind",
    [
        # Keras 3.15's stateful LSTM layer cannot train on torch (an in-place state update breaks
        # autograd); its RNN(LSTMCell) computes the same and can.
        ("lstm", "rnn-lstm_cell"),
        ("rnn-lstm_cell", None),
        ("rnn-user_cell (tape)", None),
    ],
)
def test_stateful_fit_without_shuffling_matches_keras(kind, keras_kind):
    ours, theirs = stateful_pair(kind, keras_kind)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 3, 2)).astype("float32")
    y = rng.standard_normal((8, 1)).astype("float32")
    ours.compile(optimizer=fastnn.optimizers.SGD(0.1), loss="mse")
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    got = ours.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    want = theirs.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, 1e-5, 1e-6)
    for a, b in zip(_states(ours), _states(theirs), strict=True):
        np.testing.assert_allclose(a, b, 1e-5, 1e-6)


def test_stateful_states_are_not_weights_and_layers_called_on_arrays_carry_them():
    layer = L.GRU(2, stateful=True)
    x = np.random.default_rng(8).standard_normal((3, 4, 2)).astype("float32")
    first = layer(x)
    assert len(layer.weights) == 3 and all(v.name != "rnn_state" for v in layer.weights)
    assert [v.shape for v in layer.states] == [(3, 2)] and not layer.states[0].trainable
    np.testing.assert_array_equal(layer.states[0].value, first)
    second = layer(x)
    assert not np.allclose(first, second)
    layer.reset_state()
    np.testing.assert_array_equal(layer(x), first)
    assert not layer.samples_independent and L.GRU(2).samples_independent
    assert hasattr(fastnn.Model, "reset_states") == hasattr(keras.Model, "reset_states")


def test_the_batch_size_comes_from_the_input_as_keras_gives_it():
    """``Input(batch_shape=...)``, ``InputLayer(batch_input_shape=...)`` (Keras's legacy name)
    and a Sequential's first layer's ``batch_size`` fix the states' batch."""
    inputs = fastnn.Input(batch_shape=(3, 4, 2))
    assert L.LSTM(2, stateful=True)(inputs).shape == (3, 2)
    model = fastnn.Sequential([L.InputLayer(batch_input_shape=(5, 4, 2)), L.GRU(2, stateful=True)])
    assert model.layers[-1].states[0].shape == (5, 2)
    model = fastnn.Sequential([L.SimpleRNN(2, stateful=True, batch_size=6, input_shape=(4, 2))])
    assert model.layers[-1].states[0].shape == (6, 2)


def test_stateful_errors_name_the_layer_and_the_batch_sizes():
    with pytest.raises(ValueError, match=r"LSTM 'lstm_s'.*batch size must be static"):
        L.LSTM(2, stateful=True, name="lstm_s")(fastnn.Input((3, 2)))
    with pytest.raises(ValueError, match=r"RNN 'rnn_s'.*batch size must be static"):
        L.RNN(L.GRUCell(2), stateful=True, name="rnn_s")(fastnn.Input((3, 2)))
    inputs = fastnn.Input((3, 2), batch_size=4)
    model = fastnn.Model(inputs, L.SimpleRNN(2, stateful=True, name="srnn")(inputs))
    x = np.zeros((5, 3, 2), "float32")
    with pytest.raises(ValueError, match=r"SimpleRNN 'srnn'.*expected batch size 4, got 5"):
        model.predict(x, batch_size=5, verbose=0)
    rnn = L.RNN(PeepCell(2), stateful=True, name="peep_s")
    rnn(np.zeros((2, 3, 2), "float32"))
    with pytest.raises(ValueError, match=r"RNN 'peep_s'.*expected batch size 2, got 3"):
        rnn(np.zeros((3, 3, 2), "float32"))


# ---- other errors ------------------------------------------------------------------------------
class NoStateCell(L.Layer):
    def call(self, inputs, states):
        return inputs, states


def test_bad_cells_and_states_are_refused_early():
    with pytest.raises(ValueError, match="`cell`.*call"):
        L.RNN("lstm")
    with pytest.raises(ValueError, match="state_size"):
        L.RNN(NoStateCell())
    with pytest.raises(ValueError, match="state_size"):
        L.StackedRNNCells([L.LSTMCell(2), NoStateCell()])
    with pytest.raises(ValueError, match="non-empty list"):
        L.StackedRNNCells([])
    rnn = L.RNN(L.LSTMCell(2), name="r")
    with pytest.raises(
        ValueError, match=r"RNN 'r': initial_state must hold 2 arrays of sizes \[2, 2\]; got 1"
    ):
        rnn(fastnn.Input((3, 4)), initial_state=[fastnn.Input((2,))])
    with pytest.raises(ValueError, match=r"RNN 'r': input must be a sequence"):
        rnn(fastnn.Input((4,)))
    rnn(fastnn.Input((3, 4)))
    with pytest.raises(
        ValueError, match=r"RNN 'r': incompatible input shape; expected \(batch, timesteps, 4\)"
    ):
        rnn(np.zeros((2, 3, 5), "float32"))
    with pytest.raises(ValueError, match="LSTMCell 'c'.*got no states"):
        L.LSTMCell(2, name="c")(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="`dropout` must be a float in"):
        L.GRUCell(2, dropout=2)
    for layer in (L.RNN(L.GRUCell(2), unroll=True, name="u"), L.GRU(2, unroll=True, name="u")):
        with pytest.raises(ValueError, match="'u': cannot unroll a RNN if the time dimension"):
            layer(fastnn.Input((None, 3)))
    assert L.RNN(L.GRUCell(2), unroll=True)(fastnn.Input((4, 3))).shape == (None, 2)


def test_a_cell_steps_as_keras_and_keeps_its_dropout_masks_for_a_sequence():
    rng = np.random.default_rng(9)
    x, h, c = (rng.standard_normal((2, s)).astype("float32") for s in (3, 2, 2))
    ours, theirs = L.LSTMCell(2), keras.layers.LSTMCell(2)
    ours(x, [h, c])
    theirs(x, [h, c])
    theirs.set_weights(ours.get_weights())
    out, (h1, c1) = ours(x, [h, c])
    want = flat(theirs(x, [h, c]))
    for a, b in zip([out, h1, c1], want):
        np.testing.assert_allclose(a, b, 1e-5, 1e-6)
    dropping = L.GRUCell(2, dropout=0.5, recurrent_dropout=0.5, seed=1)
    first = dropping(x, [h], training=True)[0]
    np.testing.assert_array_equal(dropping(x, [h], training=True)[0], first)  # the same masks
    dropping.reset_dropout_mask()
    assert not np.array_equal(dropping(x, [h], training=True)[0], first)


def test_bidirectional_over_rnn_of_a_cell_equals_bidirectional_over_the_layer():
    x = np.random.default_rng(10).standard_normal((2, 4, 3)).astype("float32")
    mask = np.array([[True] * 4, [True, True, False, False]])
    by_cell = L.Bidirectional(L.RNN(L.GRUCell(2), return_sequences=True))
    by_layer = L.Bidirectional(L.GRU(2, return_sequences=True))
    by_cell(x)
    by_layer(x)
    randomize_weights(by_cell, 3)
    by_layer.set_weights(by_cell.get_weights())
    np.testing.assert_array_equal(by_cell(x, mask=mask), by_layer(x, mask=mask))
    assert [w.path for w in by_cell.weights][:1] == [
        f"{by_cell.name}/{by_cell.forward_layer.name}/{by_cell.forward_layer.cell.name}/kernel"
    ]


def test_rnn_of_a_user_cell_trains_as_keras():
    ours, theirs = pair("stacked-mixed (tape)", return_sequences=False)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((6, 5, 4)).astype("float32")
    y = rng.standard_normal((6, 3)).astype("float32")
    model = fastnn.Sequential([fastnn.Input((5, 4)), ours])
    keras_model = keras.Sequential([keras.Input((5, 4)), theirs])
    model.compile(optimizer=fastnn.optimizers.SGD(0.1), loss="mse")
    keras_model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    model.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    keras_model.fit(x, y, batch_size=3, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), keras_model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, 1e-5, 1e-6)


class OnesStartCell(PeepCell):
    """PeepCell whose states start at ones (its ``get_initial_state``)."""

    def get_initial_state(self, batch_size=None):
        return [np.ones((batch_size, self.units), "float32")] * 2


class KerasOnesStartCell(KerasPeepCell):
    def get_initial_state(self, batch_size=None):
        return [kops.ones((batch_size, self.units))] * 2


def test_a_cells_get_initial_state_starts_the_sequence_as_in_keras():
    x = np.random.default_rng(12).standard_normal((2, 4, 3)).astype("float32")
    for ours_cells, keras_cells in (
        (lambda: OnesStartCell(2), lambda: KerasOnesStartCell(2)),
        (
            lambda: [L.GRUCell(2), OnesStartCell(2)],
            lambda: [keras.layers.GRUCell(2), KerasOnesStartCell(2)],
        ),
    ):
        ours, theirs = L.RNN(ours_cells()), keras.layers.RNN(keras_cells())
        ours(x)
        theirs(x)
        theirs.set_weights(ours.get_weights())
        np.testing.assert_allclose(ours(x), kops.convert_to_numpy(theirs(x)), 1e-5, 1e-6)


def test_stateful_bidirectional_carries_and_resets_states_as_keras():
    x = np.random.default_rng(13).standard_normal((8, 3, 2)).astype("float32")
    inputs = fastnn.Input((3, 2), batch_size=4)
    ours = fastnn.Model(inputs, L.Bidirectional(L.RNN(L.LSTMCell(2), stateful=True))(inputs))
    randomize_weights(ours, 4)
    keras_inputs = keras.Input((3, 2), batch_size=4)
    layer = keras.layers.Bidirectional(keras.layers.RNN(keras.layers.LSTMCell(2), stateful=True))
    theirs = keras.Model(keras_inputs, layer(keras_inputs))
    theirs.set_weights(ours.get_weights())
    assert not ours.samples_independent
    for _ in range(2):
        np.testing.assert_allclose(
            ours.predict(x, batch_size=4, verbose=0),
            theirs.predict(x, batch_size=4, verbose=0),
            1e-5,
            1e-6,
        )
    wrapper = ours.layers[1]
    assert len(wrapper.states) == 4 and np.abs(wrapper.states[0].value).max() > 0
    wrapper.reset_states()
    layer.reset_states()
    assert not any(s.value.any() for s in wrapper.states)
    np.testing.assert_allclose(
        ours.predict(x[:4], verbose=0), theirs.predict(x[:4], verbose=0), 1e-5, 1e-6
    )
    with pytest.raises(AttributeError, match="must be stateful"):
        L.Bidirectional(L.LSTM(2)).reset_states()


@pytest.mark.parametrize("name", ["lstm_cell", "user_cell (tape)"])
def test_a_gradient_tape_sees_through_rnn(name):
    """Called under a user's GradientTape, RNN is one tape entry whose gradient is its
    backward: the same gradients as the forward/backward pair, for x and the weights."""
    rng = np.random.default_rng(14)
    rnn = L.RNN(CELLS[name][0](F64), dtype=F64, return_sequences=True)
    x = rng.standard_normal((2, 4, 4))
    rnn(x)
    with fastnn.GradientTape() as tape:
        xt = tape.watch(x)
        loss = ops.sum(ops.sin(rnn(xt)))
    got = tape.gradient(loss, [xt, *rnn.trainable_weights])
    for w in rnn.weights:
        w.grad[...] = 0
    out, ctx = rnn.forward(x, True)
    dx = rnn.backward(ctx, np.cos(out))
    for a, b in zip(got, [dx, *[w.grad for w in rnn.trainable_weights]], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
