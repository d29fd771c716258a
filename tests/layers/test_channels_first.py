"""``data_format='channels_first'`` convolutions and poolings beyond the harness rows
(tests/layers/rows_channels_first.py): a CNN trained as Keras trains it, the fusion rules leaving
such layers alone, the default from ``backend.image_data_format()``, errors, and Keras's files."""

from __future__ import annotations

import numpy as np
import pytest
from keras_twin import keras_module, to_numpy

import fastnn
from fastnn import backend
from fastnn import layers as L
from fastnn.saving import load_model

FIRST = {"data_format": "channels_first"}


def _cnn(K):
    inputs = K.Input((2, 8, 8))
    h = K.layers.Conv2D(4, 3, padding="same", **FIRST)(inputs)
    h = K.layers.BatchNormalization(axis=1)(h)
    h = K.layers.Activation("relu")(h)
    h = K.layers.MaxPooling2D(2, **FIRST)(h)
    h = K.layers.Conv2D(8, 3, activation="relu", **FIRST)(h)
    h = K.layers.AveragePooling2D(2, **FIRST)(h)
    h = K.layers.GlobalMaxPooling2D(**FIRST)(h)
    seq = K.layers.Reshape((2, 4))(h)
    seq = K.layers.Conv1D(3, 2, padding="causal", **FIRST)(seq)
    seq = K.layers.MaxPooling1D(2, padding="same", **FIRST)(seq)
    outputs = K.layers.GlobalAveragePooling1D(**FIRST)(seq)
    return K.Model(inputs, outputs)


def _fused_steps(model) -> list[str]:
    return [type(step.layer).__name__ for step in model._graph.steps if "+" in step.layer.name]


def test_a_channels_first_cnn_trains_as_keras():
    keras = keras_module()
    theirs, ours = _cnn(keras), _cnn(fastnn)
    ours.set_weights([to_numpy(w) for w in theirs.get_weights()])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 2, 8, 8)).astype(np.float32)
    y = rng.normal(size=(8, 3)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    theirs.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    ours.compile(optimizer=fastnn.optimizers.SGD(0.05), loss="mse")
    for model in (theirs, ours):
        model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    for i, (a, b) in enumerate(zip(ours.get_weights(), theirs.get_weights(), strict=True)):
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-4, atol=1e-6, err_msg=f"weight {i}")


def test_fusion_rules_leave_channels_first_layers_alone():
    model = _cnn(fastnn)
    assert _fused_steps(model) == ["BatchNormActivation"]  # not the conv's rules
    inputs = fastnn.Input((6, 6, 2))  # the same chain channels_last does fuse
    h = L.Conv2D(4, 3, padding="same")(inputs)
    h = L.BatchNormalization()(h)
    outputs = L.MaxPooling2D(2)(L.Activation("relu")(h))
    assert _fused_steps(fastnn.Model(inputs, outputs)) == ["LinearBatchNorm"]
    inputs = fastnn.Input((6, 6, 2))  # a channels_last conv, a channels_first pool
    outputs = L.MaxPooling2D(2, **FIRST)(L.Conv2D(6, 3, padding="same")(inputs))
    assert _fused_steps(fastnn.Model(inputs, outputs)) == []


def test_none_is_the_backend_image_data_format():
    assert L.Conv2D(2, 3).data_format == "channels_last"
    backend.set_image_data_format("channels_first")
    try:
        conv, pool = L.Conv1D(2, 3), L.GlobalMaxPooling2D()
    finally:
        backend.set_image_data_format("channels_last")
    assert conv.data_format == pool.data_format == "channels_first"
    assert conv.compute_output_shape((None, 4, 9)) == (None, 2, 7)


def test_channels_first_shape_errors_name_the_layout():
    conv = L.Conv2D(2, 3, name="cf", **FIRST)
    conv.build((None, 3, 5, 5))
    with pytest.raises(ValueError, match=r"'cf'.*\(batch, 3, height, width\).*\(2, 5, 5, 3\)"):
        conv(np.zeros((2, 5, 5, 3), np.float32))
    with pytest.raises(ValueError, match=r"must be one of \{'channels_first', 'channels_last'\}"):
        L.MaxPooling2D(data_format="NCHW")


def test_keras_channels_first_files_load(tmp_path):
    keras = keras_module()
    theirs = _cnn(keras)
    theirs.save(tmp_path / "cnn.keras")
    ours = load_model(tmp_path / "cnn.keras")
    assert ours.layers[1].data_format == "channels_first"
    x = np.random.default_rng(1).normal(size=(2, 2, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
