"""A user's layer config holding objects (layers, regularizers) and clone_model of user layers
whose get_config omits the name: what keras-io's saving guide does."""

import numpy as np

import fastnn as keras
from fastnn import ops


class Scale(keras.layers.Layer):
    """Its config has no 'name' key, as the guide's CustomLayer."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"factor": self.factor}


class Holder(keras.layers.Layer):
    def __init__(self, inner, regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner
        self.regularizer = regularizer

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 2), regularizer=self.regularizer)

    def call(self, x):
        return self.inner(ops.matmul(x, self.kernel))

    def get_config(self):
        return {**super().get_config(), "inner": self.inner, "regularizer": self.regularizer}

    @classmethod
    def from_config(cls, config):
        config["inner"] = keras.layers.deserialize(config["inner"])
        return cls(**config)


def test_layers_and_objects_in_a_config_are_serialized_as_keras_does():
    layer = Holder(keras.layers.Dense(3), regularizer=keras.regularizers.L1L2(l1=1e-5, l2=1e-4))
    config = keras.layers.serialize(layer)["config"]
    assert config["inner"]["class_name"] == "Dense"
    assert config["inner"]["config"]["units"] == 3
    assert config["regularizer"]["class_name"] == "L1L2"
    assert config["regularizer"]["config"] == {"l1": 1e-5, "l2": 1e-4}


def test_a_functional_model_with_a_layer_holding_a_layer_rebuilds_from_its_config():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, Holder(keras.layers.Dense(3), regularizer="l2")(inputs))
    config = model.get_config()
    new_model = keras.Model.from_config(config, custom_objects={"Holder": Holder})
    new_layer = new_model.layers[-1]
    assert isinstance(new_layer.inner, keras.layers.Dense) and new_layer.inner.units == 3
    assert new_model.predict(np.ones((2, 4)), verbose=0).shape == (2, 3)


def test_clone_model_clones_user_layers_whose_config_has_no_name():
    for make in (
        lambda: keras.Sequential([keras.Input((4,)), Scale(0.5), keras.layers.Dense(1)]),
        lambda: keras.Model(*_functional(Scale(0.5))),
    ):
        model = make()
        clone = keras.models.clone_model(model)
        assert [type(x).__name__ for x in clone.layers] == [type(x).__name__ for x in model.layers]
        scales = [x for x in clone.layers if isinstance(x, Scale)]
        assert scales and scales[0] is not model.layers[-2] and scales[0].factor == 0.5


def _functional(layer):
    inputs = keras.Input((4,))
    return inputs, keras.layers.Dense(1)(layer(inputs))
