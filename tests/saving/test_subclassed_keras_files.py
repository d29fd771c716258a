"""A subclassed model (registered, with get_config) in a Keras 3 ``.keras`` file: fastnn writes
it as Keras does (its own config, build config, compile config, weights), Keras reads it, and
fastnn reads the file Keras writes."""

import numpy as np
from keras_twin import keras_module, to_numpy

import fastnn

X = np.random.default_rng(0).random((2, 4)).astype("float32")


def twin_class(k):
    """The same subclassed model in module ``k``, registered under one name."""

    @k.saving.register_keras_serializable(package="tests_subclassed_files")
    class Mlp(k.Model):
        def __init__(self, units=3, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.hidden = k.layers.Dense(5, activation="relu")
            self.out = k.layers.Dense(units)

        def call(self, x):
            return self.out(self.hidden(x))

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return Mlp


def test_fastnn_writes_what_keras_reads_and_reads_what_keras_writes(tmp_path):
    keras = keras_module()
    ours_cls, theirs_cls = twin_class(fastnn), twin_class(keras)

    ours = ours_cls(units=2)
    ours(X)
    ours.compile(optimizer="adam", loss="mse")
    ours.fit(X, np.ones((2, 2)), verbose=0)
    path = str(tmp_path / "ours.keras")
    ours.save(path)
    mine_again = fastnn.models.load_model(path)
    np.testing.assert_allclose(mine_again(X), ours(X), rtol=1e-6)
    assert mine_again.units == 2 and mine_again.optimizer.iterations == 1
    read_by_keras = keras.models.load_model(path)
    np.testing.assert_allclose(to_numpy(read_by_keras(X)), ours(X), rtol=1e-5, atol=1e-6)

    theirs = theirs_cls(units=2)
    theirs(X)
    path = str(tmp_path / "theirs.keras")
    theirs.save(path)
    read_by_us = fastnn.models.load_model(path)
    np.testing.assert_allclose(read_by_us(X), to_numpy(theirs(X)), rtol=1e-5, atol=1e-6)


@fastnn.saving.register_keras_serializable(package="tests_subclassed_files")
def small_square_sum_loss(y_true, y_pred):
    return fastnn.ops.sum(fastnn.ops.square(y_pred - y_true) / 10.0, axis=1)


@fastnn.saving.register_keras_serializable(package="tests_subclassed_files")
class WithOwnCompile(fastnn.Model):
    """keras-io's ModelWithCustomCompile (customizing saving guide), taking **kwargs."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense1 = fastnn.layers.Dense(8, activation="relu")
        self.dense2 = fastnn.layers.Dense(4, activation="softmax")

    def call(self, inputs):
        return self.dense2(self.dense1(inputs))

    def compile(self, optimizer, loss_fn, metrics):
        super().compile(optimizer=optimizer, loss=loss_fn, metrics=metrics)
        self.model_optimizer = optimizer
        self.loss_fn = loss_fn
        self.loss_metrics = metrics

    def get_compile_config(self):
        return {
            "model_optimizer": self.model_optimizer,
            "loss_fn": self.loss_fn,
            "metric": self.loss_metrics,
        }

    def compile_from_config(self, config):
        optimizer = fastnn.utils.deserialize_keras_object(config["model_optimizer"])
        loss_fn = fastnn.utils.deserialize_keras_object(config["loss_fn"])
        metrics = fastnn.utils.deserialize_keras_object(config["metric"])
        self.compile(optimizer=optimizer, loss_fn=loss_fn, metrics=metrics)


def test_a_model_s_own_compile_config_is_saved_serialized_and_read_by_its_method(tmp_path):
    model = WithOwnCompile()
    model.compile(optimizer="SGD", loss_fn=small_square_sum_loss, metrics=["accuracy"])
    x, y = np.random.random((4, 8)), np.random.random((4, 4))
    model.fit(x, y, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    restored = fastnn.models.load_model(path)
    assert restored.model_optimizer == "SGD"
    assert restored.loss_fn is small_square_sum_loss
    assert restored.loss_metrics == ["accuracy"]
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0))
    restored.fit(x, y, verbose=0)  # compiled by its compile_from_config
