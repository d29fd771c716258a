"""keras-io's guide "Save, serialize, and export models" (guides/serialization_and_saving.py,
Keras 3 version, Apache 2.0) run on fastnn with only the imports changed, in a temporary folder.

Changed besides the imports: fewer samples.
"""

import numpy as np
import pytest

import fastnn as keras
from fastnn import ops


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def clean_registry():
    saved = dict(keras.saving.get_custom_objects())
    yield
    keras.saving.get_custom_objects().clear()
    keras.saving.get_custom_objects().update(saved)


def test_saving_and_loading_a_whole_model():
    def get_model():
        # Create a simple model.
        inputs = keras.Input(shape=(32,))
        outputs = keras.layers.Dense(1)(inputs)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer=keras.optimizers.Adam(), loss="mean_squared_error")
        return model

    model = get_model()
    test_input = np.random.random((128, 32))
    test_target = np.random.random((128, 1))
    model.fit(test_input, test_target)
    model.save("my_model.keras")
    reconstructed_model = keras.models.load_model("my_model.keras")
    np.testing.assert_allclose(model.predict(test_input), reconstructed_model.predict(test_input))
    # the optimizer comes back with its state: training resumes where it stopped
    assert reconstructed_model.optimizer.iterations == model.optimizer.iterations == 4


def custom_objects_model_functions():
    """The guide's registered CustomLayer and custom_fn, and its get_model / train_model."""

    @keras.saving.register_keras_serializable(package="MyLayers")
    class CustomLayer(keras.layers.Layer):
        def __init__(self, factor):
            super().__init__()
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {"factor": self.factor}

    @keras.saving.register_keras_serializable(package="my_package", name="custom_fn")
    def custom_fn(x):
        return x**2

    def get_model():
        inputs = keras.Input(shape=(4,))
        mid = CustomLayer(0.5)(inputs)
        outputs = keras.layers.Dense(1, activation=custom_fn)(mid)
        model = keras.Model(inputs, outputs)
        model.compile(optimizer="rmsprop", loss="mean_squared_error")
        return model

    def train_model(model):
        input = np.random.random((4, 4))
        target = np.random.random((4, 1))
        model.fit(input, target)
        return model

    return CustomLayer, custom_fn, get_model, train_model


def test_custom_objects_registered_passed_or_in_a_scope(clean_registry):
    # Clear all previously registered custom objects
    keras.saving.get_custom_objects().clear()
    CustomLayer, custom_fn, get_model, train_model = custom_objects_model_functions()
    assert keras.saving.get_registered_name(CustomLayer) == "MyLayers>CustomLayer"
    assert keras.saving.get_registered_name(custom_fn) == "my_package>custom_fn"
    test_input = np.random.random((4, 4))

    model = get_model()
    model = train_model(model)
    model.save("custom_model.keras")
    # Now, we can simply load without worrying about our custom objects.
    reconstructed_model = keras.models.load_model("custom_model.keras")
    np.testing.assert_allclose(model.predict(test_input), reconstructed_model.predict(test_input))

    keras.saving.get_custom_objects().clear()  # now only what the loader is given resolves
    model = get_model()
    model = train_model(model)
    model.save("custom_model.keras")
    with pytest.raises(ValueError, match="CustomLayer"):
        keras.models.load_model("custom_model.keras")
    custom_objects = {"CustomLayer": CustomLayer, "custom_fn": custom_fn}
    reconstructed_model = keras.models.load_model(
        "custom_model.keras", custom_objects=custom_objects
    )
    np.testing.assert_allclose(model.predict(test_input), reconstructed_model.predict(test_input))

    model = get_model()
    model = train_model(model)
    model.save("custom_model.keras")
    with keras.saving.custom_object_scope(custom_objects):
        reconstructed_model = keras.models.load_model("custom_model.keras")
    np.testing.assert_allclose(model.predict(test_input), reconstructed_model.predict(test_input))

    # In-memory model cloning: the same architecture, fresh weights (the registry being
    # cleared above, custom_fn resolves in a scope, as Keras needs it to)
    with keras.saving.custom_object_scope(custom_objects):
        new_model = keras.models.clone_model(model)
    assert [type(x) for x in new_model.layers] == [type(x) for x in model.layers]
    assert new_model.layers[1] is not model.layers[1] and new_model.layers[1].factor == 0.5


def test_model_serialization(capsys):
    layer = keras.layers.Dense(3, activation="relu")
    layer_config = layer.get_config()
    print(layer_config)
    assert layer_config["units"] == 3 and layer_config["activation"] == "relu"
    new_layer = keras.layers.Dense.from_config(layer_config)
    assert new_layer.get_config() == layer_config

    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(1)])
    config = model.get_config()
    new_model = keras.Sequential.from_config(config)
    assert new_model.output_shape == (None, 1)

    inputs = keras.Input((32,))
    outputs = keras.layers.Dense(1)(inputs)
    model = keras.Model(inputs, outputs)
    config = model.get_config()
    new_model = keras.Model.from_config(config)
    assert new_model.output_shape == (None, 1)

    model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(1)])
    json_config = model.to_json()
    new_model = keras.models.model_from_json(json_config)
    assert new_model.count_params() == 33

    my_reg = keras.regularizers.L1(0.005)
    config = keras.saving.serialize_keras_object(my_reg)
    print(config)
    assert config["class_name"] == "L1" and config["config"] == {"l1": 0.005}
    new_reg = keras.saving.deserialize_keras_object(config)
    assert isinstance(new_reg, keras.regularizers.L1) and new_reg.l1 == 0.005


def test_weights_in_memory_and_on_disk(capsys):
    def create_layer():
        layer = keras.layers.Dense(64, activation="relu", name="dense_2")
        layer.build((None, 784))
        return layer

    layer_1 = create_layer()
    layer_2 = create_layer()
    # Copy weights from layer 1 to layer 2
    layer_2.set_weights(layer_1.get_weights())
    for a, b in zip(layer_1.get_weights(), layer_2.get_weights()):
        np.testing.assert_array_equal(a, b)

    # Create a simple functional model
    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = keras.layers.Dense(10, name="predictions")(x)
    functional_model = keras.Model(inputs=inputs, outputs=outputs, name="3_layer_mlp")

    # Define a subclassed model with the same architecture
    class SubclassedModel(keras.Model):
        def __init__(self, output_dim, name=None):
            super().__init__(name=name)
            self.output_dim = output_dim
            self.dense_1 = keras.layers.Dense(64, activation="relu", name="dense_1")
            self.dense_2 = keras.layers.Dense(64, activation="relu", name="dense_2")
            self.dense_3 = keras.layers.Dense(output_dim, name="predictions")

        def call(self, inputs):
            x = self.dense_1(inputs)
            x = self.dense_2(x)
            x = self.dense_3(x)
            return x

        def get_config(self):
            return {"output_dim": self.output_dim, "name": self.name}

    subclassed_model = SubclassedModel(10)
    # Call the subclassed model once to create the weights.
    subclassed_model(np.ones((1, 784)))
    # Copy weights from functional_model to subclassed_model.
    subclassed_model.set_weights(functional_model.get_weights())
    assert len(functional_model.weights) == len(subclassed_model.weights)
    for a, b in zip(functional_model.weights, subclassed_model.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy())

    # The case of stateless layers
    inputs = keras.Input(shape=(784,), name="digits")
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
    x = keras.layers.Dropout(0.5)(x)  # Add a dropout layer, which does not contain any weights.
    outputs = keras.layers.Dense(10, name="predictions")(x)
    functional_model_with_dropout = keras.Model(inputs=inputs, outputs=outputs, name="3_layer_mlp")
    functional_model_with_dropout.set_weights(functional_model.get_weights())
    x = np.random.random((2, 784))
    np.testing.assert_allclose(
        functional_model_with_dropout.predict(x, verbose=0),
        functional_model.predict(x, verbose=0),
        rtol=1e-6,
    )

    sequential_model = keras.Sequential(
        [
            keras.Input(shape=(784,), name="digits"),
            keras.layers.Dense(64, activation="relu", name="dense_1"),
            keras.layers.Dense(64, activation="relu", name="dense_2"),
            keras.layers.Dense(10, name="predictions"),
        ]
    )
    sequential_model.save_weights("my_model.weights.h5")
    sequential_model.load_weights("my_model.weights.h5")

    class NestedDenseLayer(keras.layers.Layer):
        def __init__(self, units, name=None):
            super().__init__(name=name)
            self.dense_1 = keras.layers.Dense(units, name="dense_1")
            self.dense_2 = keras.layers.Dense(units, name="dense_2")

        def call(self, inputs):
            return self.dense_2(self.dense_1(inputs))

    nested_model = keras.Sequential([keras.Input((784,)), NestedDenseLayer(10, "nested")])
    variable_names = [v.name for v in nested_model.weights]
    print(f"variables: {variable_names}")
    print("\nChanging trainable status of one of the nested layers...")
    nested_model.get_layer("nested").dense_1.trainable = False
    variable_names_2 = [v.name for v in nested_model.weights]
    print(f"\nvariables: {variable_names_2}")
    print("variable ordering changed:", variable_names != variable_names_2)
    out = capsys.readouterr().out
    assert "variables: ['kernel', 'bias', 'kernel', 'bias']" in out  # as Keras 3 prints
    assert "variable ordering changed: False" in out

    def create_functional_model():
        inputs = keras.Input(shape=(784,), name="digits")
        x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
        x = keras.layers.Dense(64, activation="relu", name="dense_2")(x)
        outputs = keras.layers.Dense(10, name="predictions")(x)
        return keras.Model(inputs=inputs, outputs=outputs, name="3_layer_mlp")

    functional_model = create_functional_model()
    functional_model.save_weights("pretrained.weights.h5")
    # In a separate program:
    pretrained_model = create_functional_model()
    pretrained_model.load_weights("pretrained.weights.h5")
    for a, b in zip(functional_model.get_weights(), pretrained_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    # Create a new model by extracting layers from the original model:
    extracted_layers = pretrained_model.layers[:-1]
    extracted_layers.append(keras.layers.Dense(5, name="dense_3"))
    model = keras.Sequential(extracted_layers)
    model.summary()
    assert model.output_shape == (None, 5)
    assert "Total params: 54,725" in capsys.readouterr().out


def test_config_methods_of_custom_objects(clean_registry, capsys):
    @keras.saving.register_keras_serializable(package="MyLayers", name="KernelMult")
    class MyDense(keras.layers.Layer):
        def __init__(
            self,
            units,
            *,
            kernel_regularizer=None,
            kernel_initializer=None,
            nested_model=None,
            **kwargs,
        ):
            super().__init__(**kwargs)
            self.hidden_units = units
            self.kernel_regularizer = kernel_regularizer
            self.kernel_initializer = kernel_initializer
            self.nested_model = nested_model

        def get_config(self):
            config = super().get_config()
            # Update the config with the custom layer's parameters
            config.update(
                {
                    "units": self.hidden_units,
                    "kernel_regularizer": self.kernel_regularizer,
                    "kernel_initializer": self.kernel_initializer,
                    "nested_model": self.nested_model,
                }
            )
            return config

        def build(self, input_shape):
            input_units = input_shape[-1]
            self.kernel = self.add_weight(
                name="kernel",
                shape=(input_units, self.hidden_units),
                regularizer=self.kernel_regularizer,
                initializer=self.kernel_initializer,
            )

        def call(self, inputs):
            return ops.matmul(inputs, self.kernel)

    layer = MyDense(units=16, kernel_regularizer="l1", kernel_initializer="ones")
    layer3 = MyDense(units=64, nested_model=layer)
    config = keras.layers.serialize(layer3)
    print(config)
    nested = config["config"]["nested_model"]  # serialized, as Keras does
    assert nested["registered_name"] == "MyLayers>KernelMult"
    assert nested["config"]["units"] == 16 and nested["config"]["kernel_regularizer"] == "l1"
    new_layer = keras.layers.deserialize(config)
    print(new_layer)
    assert isinstance(new_layer, MyDense) and new_layer.hidden_units == 64

    @keras.saving.register_keras_serializable(package="ComplexModels")
    class CustomModel(keras.layers.Layer):
        def __init__(self, first_layer, second_layer=None, **kwargs):
            super().__init__(**kwargs)
            self.first_layer = first_layer
            if second_layer is not None:
                self.second_layer = second_layer
            else:
                self.second_layer = keras.layers.Dense(8)

        def get_config(self):
            config = super().get_config()
            config.update({"first_layer": self.first_layer, "second_layer": self.second_layer})
            return config

        @classmethod
        def from_config(cls, config):
            # Note that you can also use `keras.saving.deserialize_keras_object` here
            config["first_layer"] = keras.layers.deserialize(config["first_layer"])
            config["second_layer"] = keras.layers.deserialize(config["second_layer"])
            return cls(**config)

        def call(self, inputs):
            return self.first_layer(self.second_layer(inputs))

    # Let's make our first layer the custom layer from the previous example (MyDense)
    inputs = keras.Input((32,))
    outputs = CustomModel(first_layer=layer)(inputs)
    model = keras.Model(inputs, outputs)
    config = model.get_config()
    new_model = keras.Model.from_config(config)
    custom = new_model.layers[-1]
    assert isinstance(custom.first_layer, MyDense) and custom.first_layer.hidden_units == 16
    assert isinstance(custom.second_layer, keras.layers.Dense)
    assert new_model.output_shape == (None, 16)

    layer = MyDense(
        units=16,
        kernel_regularizer=keras.regularizers.L1L2(l1=1e-5, l2=1e-4),
        kernel_initializer="ones",
    )
    config = keras.layers.serialize(layer)
    print(config)
    assert config["registered_name"] == "MyLayers>KernelMult"
    assert config["class_name"] == "MyDense"
    regularizer = config["config"]["kernel_regularizer"]
    assert regularizer["class_name"] == "L1L2"
    assert regularizer["config"] == {"l1": 1e-5, "l2": 1e-4}
