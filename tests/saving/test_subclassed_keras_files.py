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
    np.testing.assert_allclose(to_numpy(read_by_keras(X)), ours(X), rtol=1e-5)

    theirs = theirs_cls(units=2)
    theirs(X)
    path = str(tmp_path / "theirs.keras")
    theirs.save(path)
    read_by_us = fastnn.models.load_model(path)
    np.testing.assert_allclose(read_by_us(X), to_numpy(theirs(X)), rtol=1e-5)
