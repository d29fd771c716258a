"""ConvLSTM1D and ConvLSTM2D beyond the harness rows (tests/layers/rows_conv_lstm.py): training
as Keras trains, stateful calls, Keras's files both ways, frozen layers and errors."""

from __future__ import annotations

import numpy as np
import pytest
from keras_twin import keras_module, to_numpy

import fastnn
from fastnn import layers as L
from fastnn.saving import load_model

RNG = np.random.default_rng(5)
FRAMES = RNG.normal(size=(6, 3, 5, 5, 2)).astype(np.float32)
TARGETS = RNG.normal(size=(6, 2)).astype(np.float32)


def _model(K):
    inputs = K.Input((3, 5, 5, 2))
    h = K.layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(inputs)
    h = K.layers.ConvLSTM2D(2, 3, strides=2)(h)
    return K.Model(inputs, K.layers.Dense(2)(K.layers.Flatten()(h)))


def _copy(theirs, ours):
    ours.set_weights([to_numpy(w) for w in theirs.get_weights()])


def test_training_matches_keras():
    keras = keras_module()
    theirs, ours = _model(keras), _model(fastnn)
    _copy(theirs, ours)
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    ours.compile(optimizer=fastnn.optimizers.SGD(0.1), loss="mse")
    for model in (theirs, ours):
        model.fit(FRAMES, TARGETS, epochs=2, batch_size=3, shuffle=False, verbose=0)
    for i, (a, b) in enumerate(zip(ours.get_weights(), theirs.get_weights(), strict=True)):
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-4, atol=1e-6, err_msg=f"weight {i}")


def test_keras_files_both_ways(tmp_path):
    keras = keras_module()
    theirs = _model(keras)
    theirs.save(tmp_path / "theirs.keras")
    ours = load_model(tmp_path / "theirs.keras")
    want = to_numpy(theirs.predict(FRAMES, verbose=0))
    np.testing.assert_allclose(ours.predict(FRAMES, verbose=0), want, rtol=1e-5, atol=1e-6)
    ours.save(tmp_path / "ours.keras")
    again = keras.saving.load_model(tmp_path / "ours.keras")
    got = to_numpy(again.predict(FRAMES, verbose=0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _stateful(K):
    inputs = K.Input((2, 4, 1), batch_size=2)
    return K.Model(inputs, K.layers.ConvLSTM1D(2, 3, padding="same", stateful=True)(inputs))


def test_stateful_carries_states_between_calls_as_keras():
    keras = keras_module()
    theirs, ours = _stateful(keras), _stateful(fastnn)
    _copy(theirs, ours)
    x = RNG.normal(size=(2, 2, 4, 1)).astype(np.float32)
    outputs = []
    for model in (theirs, ours):
        first = to_numpy(model.predict(x, verbose=0))
        second = to_numpy(model.predict(x, verbose=0))
        model.layers[1].reset_state()
        outputs.append((first, second, to_numpy(model.predict(x, verbose=0))))
    (k1, k2, k3), (f1, f2, f3) = outputs
    assert not np.allclose(f1, f2)
    for a, b in ((f1, k1), (f2, k2), (f3, k3)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f3, f1, rtol=1e-6)
    assert ours.layers[1].states[0].shape == (2, 4, 2)


def test_frozen_layer_keeps_its_weights():
    model = _model(fastnn)
    model.layers[1].trainable = False
    before = [w.copy() for w in model.layers[1].get_weights()]
    model.compile(optimizer="sgd", loss="mse")
    model.fit(FRAMES, TARGETS, epochs=1, batch_size=3, verbose=0)
    for a, b in zip(before, model.layers[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dropout_masks_only_in_training():
    layer = L.ConvLSTM2D(2, 3, padding="same", dropout=0.5, recurrent_dropout=0.5, seed=2)
    x = FRAMES[:2]
    inference = layer(x)
    np.testing.assert_array_equal(inference, layer(x, training=False))
    assert not np.allclose(layer(x, training=True), inference)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: L.ConvLSTM2D(0, 3), ValueError, r"Received filters=0"),
        (lambda: L.ConvLSTM2D(2, 3, strides=2, dilation_rate=2), ValueError, "dilation_rate > 1"),
        (lambda: L.ConvLSTM2D(2, 3, activation="softmax"), ValueError, "`activation` must be"),
        (lambda: L.ConvLSTM1D(2, 3, padding="causal"), ValueError, "padding='causal'"),
        (lambda: L.ConvLSTM2D(2, 3, dropout=1.5), ValueError, r"`dropout` must be a float"),
        (lambda: L.ConvLSTM2D(2, 3)(fastnn.Input((3, None, 5, 2))), ValueError, "static"),
        (lambda: L.ConvLSTM2D(2, 3)(fastnn.Input((3, 5, 2))), ValueError, "expects a 5-D input"),
        (lambda: L.ConvLSTM2D(2, 3)(fastnn.Input((3, 2, 2, 1))), ValueError, "zero or negative"),
    ],
)  # fmt: skip
def test_bad_arguments_and_shapes_raise(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_initial_state_of_the_wrong_shape_is_refused():
    layer = L.ConvLSTM2D(2, 3, padding="same", name="clstm")
    wrong = fastnn.Input((5, 5, 3))
    with pytest.raises(ValueError, match=r"'clstm'.*initial state 'h'.*\(None, 5, 5, 2\)"):
        layer(fastnn.Input((3, 5, 5, 2)), initial_state=[wrong, wrong])


def test_stateful_needs_a_fixed_batch_size():
    with pytest.raises(ValueError, match="batch size must be static"):
        L.ConvLSTM2D(2, 3, stateful=True)(fastnn.Input((3, 5, 5, 2)))
