"""A user's activation function in Dense and Activation, as Keras takes it: a callable, the
name it is registered under, or the config Keras saves it as; the layer trains and saves with
it, and no fusion rule swallows it."""

import numpy as np
import pytest
from keras_twin import keras_module

import fastnn
from fastnn import layers, ops


@fastnn.saving.register_keras_serializable(package="tests", name="squared")
def squared(x):
    return x**2


def shifted_relu(x):  # not registered
    return ops.relu(x - 0.5)


def test_dense_applies_the_function_after_its_linear_map():
    dense = layers.Dense(2, activation=squared)
    x = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    y = dense(x)
    z = x @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(y, z**2, rtol=1e-6)
    assert y.dtype == np.float32
    np.testing.assert_allclose(layers.Activation(shifted_relu)(x), np.maximum(x - 0.5, 0))


def test_the_config_is_keras_s_and_loads_back_by_registered_name():
    keras = keras_module()

    @keras.saving.register_keras_serializable(package="tests", name="squared")
    def keras_squared(x):
        return x**2

    ours = layers.Dense(1, activation=squared).get_config()["activation"]
    theirs = keras.layers.Dense(1, activation=keras_squared).get_config()["activation"]
    assert ours == theirs
    plain = layers.Activation(shifted_relu).get_config()["activation"]
    assert plain == keras.layers.Activation(shifted_relu).get_config()["activation"]
    assert (
        layers.Dense.from_config(layers.Dense(1, activation=squared).get_config()).activation
        is squared
    )
    assert layers.Dense(1, activation="tests>squared").activation is squared
    with fastnn.saving.custom_object_scope({"shifted_relu": shifted_relu}):
        assert layers.Activation.from_config({"activation": plain}).activation is shifted_relu
    with pytest.raises(ValueError, match="Unknown activation function 'shifted_relu'"):
        layers.Activation.from_config({"activation": plain})


def test_a_model_with_the_function_trains_saves_and_loads(tmp_path):
    fastnn.utils.set_random_seed(0)  # the model is quartic in its inputs: not any start trains
    inputs = fastnn.Input((4,))
    x = layers.Dense(8, activation=squared)(inputs)
    skip = layers.Dense(8)(inputs)
    x = layers.Activation(squared)(layers.add([x, skip]))  # an Add + Activation: not fused
    outputs = layers.Dense(1)(x)
    model = fastnn.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    data, target = rng.normal(size=(32, 4)), rng.normal(size=(32, 1))

    def by_hand(xs):
        w = model.get_weights()
        h = (xs @ w[0] + w[1]) ** 2
        return ((h + xs @ w[2] + w[3]) ** 2) @ w[4] + w[5]

    np.testing.assert_allclose(model.predict(data, verbose=0), by_hand(data), rtol=1e-4)
    model.compile(optimizer=fastnn.optimizers.SGD(1e-4), loss="mse")
    history = model.fit(data, target, epochs=3, batch_size=8, verbose=0)
    assert history.history["loss"][2] < history.history["loss"][0]
    np.testing.assert_allclose(model.predict(data, verbose=0), by_hand(data), rtol=1e-4)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = fastnn.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(data, verbose=0), model.predict(data, verbose=0))


def test_gradients_under_a_user_tape_come_through_the_function():
    dense = layers.Dense(2, activation=squared, dtype="float64")
    x = np.random.default_rng(2).normal(size=(3, 4))
    dense.build(x.shape)
    with fastnn.GradientTape() as tape:
        y = ops.sum(dense(x))
    grad_kernel, grad_bias = tape.gradient(y, [dense.kernel, dense.bias])
    z = x @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(grad_kernel, x.T @ (2 * z), rtol=1e-10)
    np.testing.assert_allclose(grad_bias, (2 * z).sum(axis=0), rtol=1e-10)


def test_a_function_that_changes_the_shape_is_refused():
    dense = layers.Dense(3, activation=lambda x: ops.sum(x, axis=-1))
    with pytest.raises(ValueError, match="must keep its input's shape: \\(2, 3\\) became \\(2,\\)"):
        dense(np.ones((2, 4), "float32"))


def test_layers_that_fuse_their_activation_say_which_take_a_function():
    with pytest.raises(TypeError, match="Dense and Activation also take a function of yours"):
        layers.Conv2D(2, 3, activation=squared)


def test_a_file_with_an_unregistered_function_loads_with_custom_objects(tmp_path):
    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, layers.Dense(2, activation=shifted_relu)(inputs))
    path = str(tmp_path / "model.keras")
    model.save(path)
    with pytest.raises(Exception, match="Unknown activation function 'shifted_relu'"):
        fastnn.models.load_model(path)
    loaded = fastnn.models.load_model(path, custom_objects={"shifted_relu": shifted_relu})
    assert loaded.layers[-1].activation is shifted_relu
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
