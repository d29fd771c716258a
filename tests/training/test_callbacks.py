"""Callbacks behave as Keras's: early stopping, learning-rate control, CSV logs, lambdas."""

import csv

import numpy as np
import pytest

import fastnn
from fastnn import callbacks, layers


def small_model(lr=0.01):
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, layers.Dense(1)(layers.Dense(4, activation="tanh")(inputs)))
    model.compile(optimizer=fastnn.optimizers.SGD(lr), loss="mse")
    return model


DATA = np.random.default_rng(0).random((32, 3)).astype("float32")
TARGET = DATA.sum(axis=1, keepdims=True)


class Scripted(callbacks.Callback):
    """Replaces the monitored value with a scripted sequence, one per epoch."""

    def __init__(self, values, key="val_loss"):
        super().__init__()
        self.values, self.key = values, key

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    model = small_model()
    snapshots = []
    record = callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: snapshots.append(model.get_weights())
    )
    stop = callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(
        DATA, TARGET, epochs=10, verbose=0, callbacks=[Scripted([5, 3, 4, 4, 1, 0]), record, stop]
    )
    assert len(history.history["loss"]) == 4  # best at epoch 1, two epochs without improvement
    assert stop.stopped_epoch == 3 and stop.best_epoch == 1
    for restored, best in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(restored, best)


def test_early_stopping_on_accuracy_maximizes():
    stop = callbacks.EarlyStopping(monitor="val_accuracy")
    assert stop.mode == "max"
    with pytest.raises(ValueError, match="mode"):
        callbacks.EarlyStopping(mode="upwards")


def test_learning_rate_scheduler_sets_and_logs_the_rate():
    model = small_model(lr=0.1)
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5)
    history = model.fit(DATA, TARGET, epochs=3, verbose=0, callbacks=[scheduler])
    assert history.history["learning_rate"] == pytest.approx([0.05, 0.025, 0.0125])
    assert model.optimizer.learning_rate == pytest.approx(0.0125)
    one_arg = callbacks.LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    model.fit(DATA, TARGET, epochs=2, verbose=0, callbacks=[one_arg])
    assert model.optimizer.learning_rate == pytest.approx(0.02)


def test_reduce_lr_on_plateau_reduces_after_patience_with_cooldown():
    model = small_model(lr=1.0)
    reduce = callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, cooldown=1)
    history = model.fit(
        DATA, TARGET, epochs=6, verbose=0,
        callbacks=[Scripted([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]), reduce],
    )  # fmt: skip
    # Keras 3 gives these figures for the same script: the cooldown counter runs out at the top
    # of the next epoch, so with patience=1 a cooldown of 1 does not delay the next reduction.
    assert history.history["learning_rate"] == pytest.approx([1.0, 1.0, 0.5, 0.25, 0.125, 0.0625])
    with pytest.raises(ValueError, match="factor >= 1.0"):
        callbacks.ReduceLROnPlateau(factor=2.0)


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    path = tmp_path / "log.csv"
    model = small_model()
    model.fit(DATA, TARGET, epochs=3, verbose=0, validation_split=0.25,
              callbacks=[callbacks.CSVLogger(str(path))])  # fmt: skip
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["epoch", "loss", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    model.fit(DATA, TARGET, epochs=1, verbose=0, validation_split=0.25,
              callbacks=[callbacks.CSVLogger(str(path), append=True)])  # fmt: skip
    assert len(list(csv.reader(path.open()))) == 5


def test_callback_sees_model_params_and_can_stop_training():
    seen = []

    class Stopper(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((self.params["epochs"], self.params["steps"], batch))
            if batch == 1:
                self.model.stop_training = True

    model = small_model()
    history = model.fit(DATA, TARGET, epochs=5, batch_size=8, verbose=0, callbacks=[Stopper()])
    assert seen == [(5, 4, 0), (5, 4, 1)]
    assert len(history.history["loss"]) == 1
    with pytest.raises(TypeError, match="unknown hooks"):
        callbacks.LambdaCallback(on_epoch_ending=print)


class Batches:
    """A PyDataset-style source: len() batches, indexed, with an epoch hook."""

    def __init__(self, x, y, batch_size):
        self.x, self.y, self.batch_size, self.epochs_seen = x, y, batch_size, 0

    def __len__(self):
        return -(-len(self.x) // self.batch_size)

    def __getitem__(self, i):
        part = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.x[part], self.y[part]

    def on_epoch_end(self):
        self.epochs_seen += 1


def test_fit_takes_a_pydataset_and_a_generator_like_keras():
    arrays = small_model()
    arrays.fit(DATA, TARGET, batch_size=8, epochs=2, shuffle=False, verbose=0)
    from_dataset = small_model()
    source = Batches(DATA, TARGET, 8)
    history = from_dataset.fit(source, epochs=2, verbose=0, validation_data=(DATA, TARGET))
    assert source.epochs_seen == 2 and set(history.history) == {"loss", "val_loss"}
    for a, b in zip(arrays.get_weights(), from_dataset.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)

    def endless():
        while True:
            for i in range(4):
                yield DATA[i * 8 : (i + 1) * 8], TARGET[i * 8 : (i + 1) * 8]

    from_generator = small_model()
    from_generator.fit(endless(), steps_per_epoch=4, epochs=2, verbose=0)
    for a, b in zip(arrays.get_weights(), from_generator.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with pytest.raises(ValueError, match="pass y=None"):
        from_generator.fit(endless(), TARGET, steps_per_epoch=1)
    with pytest.raises(ValueError, match="batch 0: .*needs targets y"):  # x alone: no loss
        from_generator.fit(iter([DATA]), steps_per_epoch=1, verbose=0)
    with pytest.raises(ValueError, match=r"must be \(x, y\)"):
        from_generator.fit(iter([(DATA, TARGET, TARGET, TARGET)]), steps_per_epoch=1, verbose=0)


# ---- every hook gets a logs dict, as Keras passes them -----------------------------------------


def recorder(base):
    """A callback class on ``base`` (Keras's or fastnn's Callback) that records each hook as
    (hook, index, how logs came, the logs' keys, and for predict the outputs' shape)."""

    class Recorder(base):
        def __init__(self):
            super().__init__()
            self.calls = []

        def __getattribute__(self, name):
            if not name.startswith("on_"):
                return super().__getattribute__(name)

            def hook(*args, **kwargs):
                how = "keyword" if "logs" in kwargs else "positional"
                logs = kwargs["logs"] if "logs" in kwargs else args[-1]
                index = args[0] if len(args) + len(kwargs) == 2 else None
                shapes = {k: np.shape(v) for k, v in logs.items() if k == "outputs"}
                self.calls.append((name, index, how, sorted(logs.keys()), shapes))

            return hook

    return Recorder


def run_recorded(K, base):
    model = K.Sequential([K.Input((3,)), K.layers.Dense(2, name="out")])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x, y = DATA[:5], DATA[:5, :2]
    Recorder = recorder(base)
    calls = []
    for run in (
        lambda cb: model.fit(x, y, batch_size=2, epochs=2, validation_data=(x, y), callbacks=[cb]),
        lambda cb: model.evaluate(x, y, batch_size=4, callbacks=[cb]),
        lambda cb: model.predict(x, batch_size=4, callbacks=[cb]),
    ):
        cb = Recorder()
        run(cb)
        calls += cb.calls
    return calls


def test_hooks_get_the_logs_dicts_keras_passes():
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    expected = run_recorded(keras, keras.callbacks.Callback)
    got = run_recorded(fastnn, callbacks.Callback)
    assert got == expected
    assert ("on_predict_batch_end", 1, "keyword", ["outputs"], {"outputs": (1, 2)}) in got


def test_a_callback_reading_logs_keys_in_every_hook_runs():
    model = small_model()
    Recorder = recorder(callbacks.Callback)
    cb = Recorder()
    model.fit(DATA, TARGET, epochs=1, batch_size=16, validation_split=0.5, callbacks=[cb])
    model.evaluate(DATA, TARGET, callbacks=[cb])
    model.predict(DATA, callbacks=[cb])
    assert {name for name, *_ in cb.calls} == {
        f"on_{hook}" for hook in [
            "train_begin", "train_end", "epoch_begin", "epoch_end", "train_batch_begin",
            "train_batch_end", "test_begin", "test_end", "test_batch_begin", "test_batch_end",
            "predict_begin", "predict_end", "predict_batch_begin", "predict_batch_end",
        ]
    }  # fmt: skip


def test_on_batch_begin_and_end_are_the_train_batch_hooks_older_names():
    class OldStyle(callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seen = []

        def on_batch_begin(self, batch, logs=None):
            self.seen.append(("begin", batch, dict(logs)))

        def on_batch_end(self, batch, logs=None):
            self.seen.append(("end", batch, sorted(logs)))

    cb = OldStyle()
    small_model().fit(DATA, TARGET, epochs=1, batch_size=16, verbose=0, callbacks=[cb])
    assert cb.seen == [
        ("begin", 0, {}),
        ("end", 0, ["loss"]),
        ("begin", 1, {}),
        ("end", 1, ["loss"]),
    ]
