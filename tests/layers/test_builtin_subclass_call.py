"""A user's subclass of a built-in layer that writes ``call()`` runs that call, as Keras
does (``super().call(x)`` is the built-in's pass, one tape entry): in eager calls, in models,
in training; its output shape comes from the call; no fusion rule swallows it."""

import numpy as np
import pytest
from gradcheck import check_layer_gradients
from keras_twin import copy_weights, keras_module, to_numpy

import fastnn
from fastnn import layers, ops

RNG = np.random.default_rng(0)


def scaled_dense_class(k):
    class ScaledDense(k.layers.Dense):
        """Dense times a fixed, non-trainable scale per unit."""

        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.scale = self.add_weight(
                shape=(units,), initializer="ones", trainable=False, name="scale"
            )

        def call(self, inputs):
            return super().call(inputs) * (self.scale + 1.0)

    return ScaledDense


class Doubled(layers.Dense):
    """Its call changes the output shape: the built-in's pass twice, side by side."""

    def call(self, inputs):
        y = super().call(inputs)
        return ops.concatenate([y, ops.tanh(y)], axis=-1)


class HalfConv(layers.Conv2D):
    def call(self, inputs):
        return super().call(inputs) * 0.5


def test_the_user_s_call_runs_eagerly_in_a_model_and_in_training():
    ScaledDense = scaled_dense_class(fastnn)
    dense = ScaledDense(3)
    x = RNG.random((4, 5)).astype("float32")
    y = dense(x)
    np.testing.assert_allclose(y, 2 * (x @ dense.kernel.numpy() + dense.bias.numpy()), rtol=1e-6)

    inputs = fastnn.Input((5,))
    model = fastnn.Model(inputs, Doubled(3)(inputs))
    assert model.output_shape == (None, 6)  # from its call, not Dense's compute_output_shape
    layer = model.layers[1]
    y = x @ layer.kernel.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), np.c_[y, np.tanh(y)], rtol=1e-5)
    model.compile(optimizer="sgd", loss="mse")
    before = layer.kernel.numpy().copy()
    model.fit(x, np.zeros((4, 6)), verbose=0)
    assert not np.array_equal(before, layer.kernel.numpy())


def test_gradients_in_float64():
    layer = Doubled(2, dtype="float64")
    check_layer_gradients(layer, RNG.normal(size=(3, 4)))
    ScaledDense = scaled_dense_class(fastnn)
    check_layer_gradients(ScaledDense(2, dtype="float64"), RNG.normal(size=(3, 4)))


def test_a_conv_subclass_is_not_fused_with_its_pool():
    inputs = fastnn.Input((6, 6, 2))
    half = fastnn.Model(inputs, layers.MaxPooling2D(2)(HalfConv(3, 3, padding="same")(inputs)))
    plain_conv = layers.Conv2D(3, 3, padding="same")
    plain = fastnn.Model(inputs, layers.MaxPooling2D(2)(plain_conv(inputs)))
    plain_conv.set_weights(half.layers[1].get_weights())
    x = RNG.random((2, 6, 6, 2)).astype("float32")
    np.testing.assert_allclose(
        half.predict(x, verbose=0), 0.5 * plain.predict(x, verbose=0), rtol=1e-5
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_subclass_with_call_trains_as_keras(optimizer):
    keras = keras_module()
    models = []
    for k in (fastnn, keras):
        inputs = k.Input((5,))
        models.append(k.Model(inputs, scaled_dense_class(k)(3)(inputs)))
    ours, theirs = models
    copy_weights(theirs, ours)
    x, y = RNG.random((8, 5)).astype("float32"), RNG.random((8, 3)).astype("float32")
    # atol: float32 sums of five products, one near 0 (a relative tolerance alone failed there)
    predicted = ours.predict(x, verbose=0)
    np.testing.assert_allclose(predicted, to_numpy(theirs.predict(x)), rtol=1e-5, atol=1e-6)
    for model in (ours, theirs):
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-4, atol=1e-6)


class ScaledKernelConv(layers.Conv2D):
    """Overrides Keras's convolution_op hook alone: Conv's call runs it, then bias and relu."""

    def convolution_op(self, inputs, kernel):
        return ops.conv(inputs, kernel * 2.0, strides=self.strides, padding=self.padding)


def test_a_conv_subclass_overriding_convolution_op_runs_it():
    conv = ScaledKernelConv(2, 3, activation="relu", dtype="float64")
    x = RNG.normal(size=(2, 5, 5, 3))
    plain = layers.Conv2D(2, 3, activation="relu", dtype="float64")
    plain.build(x.shape)
    conv.build(x.shape)
    plain.set_weights([2.0 * conv.kernel.numpy(), conv.bias.numpy()])
    np.testing.assert_allclose(conv(x), plain(x), rtol=1e-10)
    check_layer_gradients(ScaledKernelConv(2, 3, dtype="float64"), x)


def test_add_metric_raises_keras_3_s_error():
    keras = keras_module()
    for k in (fastnn, keras):
        with pytest.raises(
            NotImplementedError, match=r"Layer `add_metric\(\)` method is deprecated"
        ):
            k.layers.Dense(1).add_metric(1.0, name="m")
