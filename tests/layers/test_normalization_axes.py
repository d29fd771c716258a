"""Normalization on axes other than the last: BatchNormalization(axis=1) after a convolution is not
folded into it (the fold scales the conv's filters), BN + relu still fuses, and LayerNormalization
and GroupNormalization on channels-first maps agree with Keras 3 (torch) in a model."""

import os

import numpy as np
import pytest
from gradcheck import check_model_gradients, randomize_weights
from layer_harness import fused_names

import fastnn
from fastnn import layers as L

os.environ.setdefault("KERAS_BACKEND", "torch")


def test_conv_then_batch_norm_on_another_axis_is_not_folded_and_matches_unfused():
    x = fastnn.Input((4, 4, 4), dtype="float64")
    h = L.Conv2D(4, 3, padding="same", dtype="float64")(x)
    y = L.BatchNormalization(axis=1, dtype="float64")(h)  # the rows axis, of the conv's size too
    model = fastnn.Model(x, L.Activation("relu", dtype="float64")(y))
    assert all("conv2d" not in name for name in fused_names(model))
    randomize_weights(model, 2)
    data = np.random.default_rng(0).standard_normal((3, 4, 4, 4))
    check_model_gradients(model, [data])
    conv, bn = model.layers[1], model.layers[2]
    h_val = conv(data)
    mean = bn.moving_mean.value[None, :, None, None]
    scale = (bn.gamma.value / np.sqrt(bn.moving_variance.value + bn.epsilon))[None, :, None, None]
    want = np.maximum((h_val - mean) * scale + bn.beta.value[None, :, None, None], 0)
    np.testing.assert_allclose(model.predict(data, verbose=0), want, rtol=1e-12, atol=1e-12)


def test_channels_first_batch_norm_trains_as_keras():
    keras = pytest.importorskip("keras")

    def build(lib):
        x = lib.Input((3, 4, 2))
        h = lib.layers.BatchNormalization(axis=1, momentum=0.5)(x)
        h = lib.layers.GroupNormalization(groups=3, axis=1)(h)
        h = lib.layers.LayerNormalization(axis=[2, 3])(h)
        return lib.Model(x, lib.layers.Dense(2)(lib.layers.Flatten()(h)))

    ours, theirs = build(fastnn), build(keras)
    randomize_weights(ours)
    theirs.set_weights(ours.get_weights())
    rng = np.random.default_rng(1)
    data, target = rng.standard_normal((8, 3, 4, 2)).astype("float32"), rng.random((8, 2))
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="mse")
        model.fit(data, target, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        ours.predict(data, verbose=0), theirs.predict(data, verbose=0), rtol=1e-4, atol=1e-5
    )
