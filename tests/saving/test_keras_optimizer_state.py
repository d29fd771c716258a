"""``.keras`` files carry the optimizer's state as Keras 3 writes it (``optimizer/vars`` in
``model.weights.h5``): fastnn reads Keras's, Keras reads fastnn's, and training resumes."""

from __future__ import annotations

import io
import warnings
import zipfile

import h5py
import numpy as np
import pytest
from keras_twin import keras_module, to_numpy

import fastnn
from fastnn.saving import load_model


def _model(K, optimizer):
    model = K.Sequential([K.Input((3,)), K.layers.Dense(4, activation="tanh"), K.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32)


def _fit(model, epochs=1):
    x, y = _data()
    model.fit(x, y, epochs=epochs, batch_size=4, shuffle=False, verbose=0)


def _assert_same_state(ours, theirs):
    mine = ours.optimizer.variables
    keras_state = [to_numpy(v) for v in theirs.optimizer.variables]
    assert len(mine) == len(keras_state)
    assert int(mine[0]) == int(keras_state[0])  # iterations
    for i, (a, b) in enumerate(zip(mine[1:], keras_state[1:]), 1):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8, err_msg=f"variable {i}")


def _optimizer_group(path) -> list[np.ndarray] | None:
    with zipfile.ZipFile(path) as zf, h5py.File(io.BytesIO(zf.read("model.weights.h5"))) as f:
        group = f.get("optimizer/vars")
        return None if group is None else [group[str(i)][()] for i in range(len(group))]


def test_keras_adam_state_loads_and_training_goes_on_as_in_keras(tmp_path):
    keras = keras_module()
    theirs = _model(keras, keras.optimizers.Adam(0.01))
    _fit(theirs, epochs=2)
    theirs.save(tmp_path / "adam.keras")
    ours = load_model(tmp_path / "adam.keras")
    assert ours.optimizer.iterations == 8
    kinds = [p.rsplit("_", 1)[-1] for p in ours.optimizer.variable_paths]  # Keras's order
    assert kinds == [v.path.rsplit("_", 1)[-1] for v in theirs.optimizer.variables]
    _assert_same_state(ours, theirs)
    _fit(theirs)
    _fit(ours)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-5, atol=1e-7)


def test_fastnn_state_loads_in_keras(tmp_path):
    keras = keras_module()
    ours = _model(fastnn, fastnn.optimizers.Adam(0.01))
    _fit(ours)
    ours.save(tmp_path / "ours.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns when it skips the optimizer's variables
        theirs = keras.saving.load_model(tmp_path / "ours.keras")
    _assert_same_state(ours, theirs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: fastnn.optimizers.Adam(0.01),
        lambda: fastnn.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        lambda: fastnn.optimizers.RMSprop(0.01, use_ema=True),
    ],
    ids=["adam", "sgd_momentum", "rmsprop_ema"],
)
def test_save_load_then_fit_resumes_as_without_saving(make, tmp_path):
    fastnn.utils.set_random_seed(0)
    resumed = _model(fastnn, make())
    straight = _model(fastnn, make())
    straight.set_weights(resumed.get_weights())
    _fit(resumed)
    _fit(straight)
    resumed.save(tmp_path / "m.keras")
    resumed = load_model(tmp_path / "m.keras")
    _fit(resumed)
    _fit(straight)
    assert resumed.optimizer.iterations == straight.optimizer.iterations == 8
    for a, b in zip(resumed.get_weights(), straight.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_include_optimizer_false_and_unbuilt_optimizers(tmp_path):
    model = _model(fastnn, fastnn.optimizers.Adam(0.01))
    model.save(tmp_path / "unbuilt.keras")
    state = _optimizer_group(tmp_path / "unbuilt.keras")
    assert len(state) == 2 and int(state[0]) == 0  # iterations and the learning rate
    again = load_model(tmp_path / "unbuilt.keras")
    assert not again.optimizer.built and again.optimizer.iterations == 0
    _fit(model)
    model.save(tmp_path / "without.keras", include_optimizer=False)
    assert _optimizer_group(tmp_path / "without.keras") is None
    assert load_model(tmp_path / "without.keras").optimizer.iterations == 0


def test_a_state_that_does_not_fit_is_skipped_with_keras_warning(tmp_path):
    keras = keras_module()
    theirs = _model(keras, keras.optimizers.Adam(0.01))
    _fit(theirs)
    theirs.save(tmp_path / "adam.keras")
    ours = _model(fastnn, fastnn.optimizers.SGD(0.01))  # no slots: 2 variables, not 10
    ours.set_weights([to_numpy(w) for w in theirs.get_weights()])
    ours.save(tmp_path / "sgd.keras")
    with zipfile.ZipFile(tmp_path / "adam.keras") as zf:
        adam_weights = zf.read("model.weights.h5")
    with zipfile.ZipFile(tmp_path / "sgd.keras") as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    entries["model.weights.h5"] = adam_weights  # SGD's config, Adam's variables
    with zipfile.ZipFile(tmp_path / "mixed.keras", "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer 'sgd'"):
        model = load_model(tmp_path / "mixed.keras")
    assert model.optimizer.iterations == 0
    np.testing.assert_array_equal(model.get_weights()[0], to_numpy(theirs.get_weights()[0]))
