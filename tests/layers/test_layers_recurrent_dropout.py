"""recurrent_dropout on LSTM, GRU and SimpleRNN: Keras 3's per-gate masks, float64 gradient checks,
parity with Keras 3 (torch backend) in training given the same masks, and training with fit.

Under ``recurrent_dropout`` Keras 3 switches its cells to implementation 1: each gate draws its own
mask of the state (and, with ``dropout``, of the inputs), fixed for all steps of a batch; the
GRU's final interpolation and the LSTM's carry use the undropped state.
"""

import os

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradcheck import check_gradients, randomize_weights  # noqa: E402

import fastnn  # noqa: E402
from fastnn import layers  # noqa: E402
from fastnn.kernels.recurrent import GateDropout  # noqa: E402

keras = pytest.importorskip("keras")

KINDS = {"LSTM": 4, "GRU": 3, "GRU_reset_before": 3, "SimpleRNN": 1}  # gates
VARIANTS = {"GRU_reset_before": ("GRU", {"reset_after": False})}  # kind -> (class, options)


def make(kind, module=layers, **kwargs):
    name, options = VARIANTS.get(kind, (kind, {}))
    return getattr(module, name)(3, **options, **kwargs)


def fixed_masks(kind, batch, features, units, seed, with_inputs, dtype):
    """Keep masks (0 or 1 / (1 - 0.4)) per gate: inputs (G, N, in) or None, state (G, N, u)."""
    rng = np.random.default_rng(seed)
    gates = KINDS[kind]

    def keep(shape):
        return ((rng.random(shape) >= 0.4) / 0.6).astype(dtype)

    inputs = keep((gates, batch, features)) if with_inputs else None
    return GateDropout(inputs, keep((gates, batch, units)))


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("with_inputs", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients_through_recurrent_dropout(kind, with_inputs, masked):
    dropout = 0.3 if with_inputs else 0.0
    layer = make(kind, recurrent_dropout=0.4, dropout=dropout, return_sequences=True,
                 return_state=True, seed=1, dtype="float64")  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 2))
    mask = rng.random((3, 4)) < 0.7 if masked else None
    layer._maybe_build(x.shape)
    randomize_weights(layer, 2)

    def reset():
        layer._rng = np.random.default_rng(7)

    def forward(xs):
        out, ctx = layer.forward(xs[0], True, mask=mask)
        return out, ctx

    def backward(ctx, grads):
        return [layer.backward(ctx, grads)]

    def masks(ctx):
        gate_dropout = ctx[-1]
        return np.concatenate([m.ravel() for m in gate_dropout if m is not None])

    check_gradients(forward, backward, [x], layer.trainable_weights, seed=3, what=kind,
                    reset=reset, fixed=masks)  # fmt: skip
    reset()
    _, ctx = layer.forward(x, True, mask=mask)
    gate_dropout = ctx[-1]
    assert gate_dropout.recurrent.shape == (KINDS[kind], 3, 3)
    assert (gate_dropout.inputs is None) == (not with_inputs)
    assert ctx[1] is None  # the kernels apply the per-gate input masks, not the layer


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("with_inputs", [False, True])
@pytest.mark.parametrize("config", [{}, {"return_sequences": True, "go_backwards": True}], ids=str)
def test_training_outputs_match_keras_given_the_same_masks(kind, with_inputs, config, monkeypatch):
    dropout = 0.3 if with_inputs else 0.0
    ours = make(kind, recurrent_dropout=0.4, dropout=dropout, **config)
    theirs = make(kind, keras.layers, recurrent_dropout=0.4, dropout=dropout, **config)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 5)).astype("float32")
    theirs.build(x.shape)
    weights = [w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours._maybe_build(x.shape)
    ours.set_weights(weights)
    masks = fixed_masks(kind, 4, 5, 3, 2, with_inputs, np.float32)
    monkeypatch.setattr(ours, "_gate_dropout", lambda n, features, dtype: masks)

    def keras_masks(m):  # SimpleRNN's cell keeps one mask, LSTM / GRU a list of one per gate
        tensors = [keras.ops.convert_to_tensor(g) for g in m]
        return tensors[0] if kind == "SimpleRNN" else tensors

    if with_inputs:
        theirs.cell._dropout_mask = keras_masks(masks.inputs)
    theirs.cell._recurrent_dropout_mask = keras_masks(masks.recurrent)
    expected = keras.ops.convert_to_numpy(theirs(x, training=True))
    got = ours(x, training=True)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    undropped = keras.ops.convert_to_numpy(theirs(x, training=False))
    assert not np.allclose(got, undropped, atol=1e-3)  # the masks changed something


@pytest.mark.parametrize("kind", list(KINDS))
def test_recurrent_dropout_only_in_training(kind):
    layer = make(kind, recurrent_dropout=0.5, seed=0)
    plain = make(kind)
    x = np.random.default_rng(0).standard_normal((4, 5, 6)).astype("float32")
    plain._maybe_build(x.shape)
    layer._maybe_build(x.shape)
    plain.set_weights(layer.get_weights())
    np.testing.assert_array_equal(layer(x), plain(x))
    np.testing.assert_array_equal(layer(x, training=False), plain(x))
    trained = layer(x, training=True)
    assert not np.allclose(trained, plain(x))
    assert not np.allclose(trained, layer(x, training=True))  # new masks for every batch


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_text_model_with_recurrent_dropout_trains_with_fit(kind):
    ids = np.random.default_rng(0).integers(1, 20, (64, 9))
    labels = (ids == 3).any(axis=1).astype("float32")
    inputs = fastnn.Input((9,))
    x = layers.Embedding(20, 8, mask_zero=True)(inputs)
    x = make(kind, dropout=0.2, recurrent_dropout=0.3, seed=4)(x)
    model = fastnn.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    before = model.evaluate(ids, labels, verbose=0)
    history = model.fit(ids, labels, epochs=4, batch_size=16, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert model.evaluate(ids, labels, verbose=0) < before
    assert model.get_layer(index=2).get_config()["recurrent_dropout"] == 0.3


def test_bad_recurrent_dropout_names_the_layer():
    with pytest.raises(ValueError, match=r"LSTM 'seq'.*recurrent_dropout.*\[0, 1\].*1.5"):
        layers.LSTM(3, recurrent_dropout=1.5, name="seq")
