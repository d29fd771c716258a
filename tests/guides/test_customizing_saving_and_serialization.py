"""keras-io's guide "Customizing Saving and Serialization"
(guides/customizing_saving_and_serialization.py, Apache 2.0): the sections that run on fastnn
with only the imports changed (``tf.Variable`` is ``keras.Variable``, ``tf.matmul``
``ops.matmul``).

Not run: ``save_assets`` / ``load_assets`` (fastnn's ``.keras`` files hold no assets
folder), and the ``get_compile_config`` / ``compile_from_config`` section as written: its model's
``__init__`` takes no arguments, so the model cannot be made again from its config, and Keras 3
itself refuses to load it ("could not be deserialized properly"); with an ``__init__`` taking
``**kwargs`` it runs in tests/saving/test_subclassed_keras_files.py.
"""

import numpy as np
import pytest

import fastnn as keras
from fastnn import ops


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_save_own_variables_and_load_own_variables():
    @keras.utils.register_keras_serializable(package="my_custom_package")
    class LayerWithCustomVariables(keras.layers.Dense):
        def __init__(self, units, **kwargs):
            super().__init__(units, **kwargs)
            self.stored_variables = keras.Variable(
                np.random.random((10,)), name="special_arr", dtype="float32"
            )

        def save_own_variables(self, store):
            super().save_own_variables(store)
            # Stores the value of the `tf.Variable` upon saving
            store["variables"] = self.stored_variables.numpy()

        def load_own_variables(self, store):
            # Assigns the value of the `tf.Variable` upon loading
            self.stored_variables.assign(store["variables"])
            # Load the remaining weights
            for i, v in enumerate(self.weights):
                v.assign(store[f"{i}"])
            # Note: You must specify how all variables (including layer weights)
            # are loaded in `load_own_variables.`

        def call(self, inputs):
            return super().call(inputs) * self.stored_variables

    model = keras.Sequential([LayerWithCustomVariables(1)])
    ref_input = np.random.random((8, 10))
    # the guide's targets are (8,): its call broadcasts the (8, 1) output by the (10,)
    # variable to (8, 10), and fit refuses (8,) targets for it, in Keras 3 as in fastnn
    with pytest.raises(ValueError, match=r"y_true.shape=\(8,\) and y_pred.shape=\(8, 10\)"):
        model.compile(optimizer="adam", loss="mean_squared_error")
        model.fit(ref_input, np.random.random((8,)))
    ref_output = np.random.random((8, 10))
    model.compile(optimizer="adam", loss="mean_squared_error")
    model.fit(ref_input, ref_output)
    model.save("custom_vars_model.keras")
    restored_model = keras.models.load_model("custom_vars_model.keras")
    np.testing.assert_allclose(
        model.layers[0].stored_variables.numpy(), restored_model.layers[0].stored_variables.numpy()
    )
    np.testing.assert_allclose(
        restored_model.predict(ref_input, verbose=0), model.predict(ref_input, verbose=0)
    )


def test_get_build_config_and_build_from_config():
    @keras.saving.register_keras_serializable(package="my_custom_package")
    class LayerWithCustomBuild(keras.layers.Layer):
        def __init__(self, units=32, **kwargs):
            super().__init__(**kwargs)
            self.units = units

        def call(self, inputs):
            return ops.matmul(inputs, self.w) + self.b

        def get_config(self):
            return dict(units=self.units, **super().get_config())

        def build(self, input_shape, layer_init):
            # Note the customization in overriding `build()` adds an extra argument.
            # Therefore, we will need to manually call build with `layer_init` argument
            # before the first execution of `call()`.
            super().build(input_shape)
            self.w = self.add_weight(
                shape=(input_shape[-1], self.units),
                initializer=layer_init,
                trainable=True,
            )
            self.b = self.add_weight(
                shape=(self.units,),
                initializer=layer_init,
                trainable=True,
            )
            self.layer_init = layer_init

        def get_build_config(self):
            build_config = super().get_build_config()  # only gives `input_shape`
            build_config.update(
                {"layer_init": self.layer_init}  # Stores our initializer for `build()`
            )
            return build_config

        def build_from_config(self, config):
            # Calls `build()` with the parameters at loading time
            self.build(config["input_shape"], config["layer_init"])

    custom_layer = LayerWithCustomBuild(units=16)
    custom_layer.build(input_shape=(8,), layer_init="random_normal")
    model = keras.Sequential(
        [
            custom_layer,
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    x = np.random.random((16, 8))
    y = model(x)
    model.save("custom_build_model.keras")
    restored_model = keras.models.load_model("custom_build_model.keras")
    np.testing.assert_equal(restored_model.layers[0].layer_init, "random_normal")
    np.testing.assert_equal(restored_model.built, True)
    np.testing.assert_allclose(restored_model(x), y, rtol=1e-6)
