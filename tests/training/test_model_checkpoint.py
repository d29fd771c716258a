"""ModelCheckpoint: file names from logs, best-only saving, weights-only files, batch frequency."""

import numpy as np
import pytest

import fastnn
from fastnn import layers
from fastnn.callbacks import ModelCheckpoint


def _model():
    fastnn.utils.set_random_seed(0)
    model = fastnn.Sequential(
        [layers.Dense(4, activation="relu", input_shape=(3,)), layers.Dense(1)]
    )
    model.compile(optimizer="sgd", loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    return x, x.sum(axis=1, keepdims=True)


def test_saves_every_epoch_with_formatted_names(tmp_path):
    x, y = _data()
    model = _model()
    pattern = str(tmp_path / "m-{epoch:02d}-{loss:.4f}.fastnn")
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[ModelCheckpoint(pattern)])
    names = sorted(p.name for p in tmp_path.iterdir())
    expected = [
        f"m-{e + 1:02d}-{loss:.4f}.fastnn" for e, loss in enumerate(history.history["loss"])
    ]
    assert names == expected
    last = fastnn.models.load_model(tmp_path / expected[-1])
    np.testing.assert_array_equal(last.predict(x, verbose=0), model.predict(x, verbose=0))


def test_save_best_only_keeps_the_best_epoch(tmp_path):
    x, y = _data()
    model = _model()
    path = tmp_path / "best.fastnn"
    checkpoint = ModelCheckpoint(path, monitor="val_loss", save_best_only=True)
    history = model.fit(x, y, epochs=5, validation_split=0.25, verbose=0, callbacks=[checkpoint])
    val = history.history["val_loss"]
    assert checkpoint.best == min(val)
    best = fastnn.models.load_model(path)
    xv, yv = x[30:], y[30:]
    assert best.evaluate(xv, yv, verbose=0) == pytest.approx(min(val), rel=1e-6)


def test_mode_max_and_missing_monitor_warns(tmp_path):
    x, y = _data()
    model = _model()
    checkpoint = ModelCheckpoint(tmp_path / "m.fastnn", monitor="val_nope", save_best_only=True)
    with pytest.warns(UserWarning, match="val_nope"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
    assert not (tmp_path / "m.fastnn").exists()
    assert ModelCheckpoint(tmp_path / "m.fastnn", monitor="val_accuracy").mode == "max"


def test_weights_only_and_batch_frequency(tmp_path):
    x, y = _data()
    model = _model()
    pattern = str(tmp_path / "w-{epoch}-{batch}.weights.npz")
    checkpoint = ModelCheckpoint(pattern, save_weights_only=True, save_freq=2)
    model.fit(x, y, epochs=1, batch_size=10, verbose=0, callbacks=[checkpoint])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-1-2.weights.npz", "w-1-4.weights.npz"]
    other = _model()
    other.load_weights(tmp_path / "w-1-4.weights.npz")
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"filepath": "m.h5"}, "must end in .fastnn or .keras"),
        ({"filepath": "m.fastnn", "save_weights_only": True}, "weights.npz"),
        ({"filepath": "m.fastnn", "save_freq": 0}, "save_freq"),
        ({"filepath": "m.fastnn", "mode": "up"}, "mode"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelCheckpoint(**kwargs)


def test_unknown_field_in_filepath_names_the_fields(tmp_path):
    x, y = _data()
    model = _model()
    checkpoint = ModelCheckpoint(str(tmp_path / "m-{val_acc}.fastnn"))
    with pytest.raises(KeyError, match="val_acc"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[checkpoint])
