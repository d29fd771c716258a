"""Layer.get_build_config / build_from_config, as Keras: the input shape a layer was built
for, and what a user's layer adds to build with more arguments, which saved files keep."""

import numpy as np
import pytest

import fastnn as keras
from fastnn import ops


@keras.saving.register_keras_serializable(package="tests_build_config")
class BuiltWithInit(keras.layers.Layer):
    """Builds with an extra argument, kept by its get_build_config."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape, layer_init):
        super().build(input_shape)
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer=layer_init)
        self.layer_init = layer_init

    def call(self, inputs):
        return ops.matmul(inputs, self.w)

    def get_config(self):
        return dict(units=self.units, **super().get_config())

    def get_build_config(self):
        return {**super().get_build_config(), "layer_init": self.layer_init}

    def build_from_config(self, config):
        self.build(config["input_shape"], config["layer_init"])


def test_a_layer_tells_the_shape_it_was_built_for():
    dense = keras.layers.Dense(2)
    assert dense.get_build_config() is None
    dense(np.ones((3, 5), "float32"))
    assert dense.get_build_config() == {"input_shape": [3, 5]}
    other = keras.layers.Dense(2)
    other.build_from_config(dense.get_build_config())
    assert other.built and other.kernel.shape == (5, 2)
    layer = BuiltWithInit()
    layer.build(input_shape=(None, 4), layer_init="ones")
    assert layer.get_build_config() == {"input_shape": [None, 4], "layer_init": "ones"}


@pytest.mark.parametrize("suffix", [".keras", ".fastnn"])
def test_files_keep_a_user_layer_s_build_arguments(tmp_path, suffix):
    layer = BuiltWithInit(units=2)
    layer.build(input_shape=(4,), layer_init="random_normal")
    model = keras.Sequential([layer, keras.layers.Dense(1)])
    x = np.random.default_rng(0).random((3, 4)).astype("float32")
    expected = model(x)
    path = str(tmp_path / f"model{suffix}")
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.layers[0].layer_init == "random_normal" and restored.built
    np.testing.assert_allclose(restored(x), expected, rtol=1e-6)
