"""BackupAndRestore, TerminateOnNaN, LambdaCallback, CSVLogger, ProgbarLogger and the monitor
callbacks against Keras 3 (the epochs EarlyStopping stops at, the rates ReduceLROnPlateau sets)."""

import csv
import io
import os

import numpy as np
import pytest

import fastnn
from fastnn import callbacks, layers

os.environ.setdefault("KERAS_BACKEND", "torch")

X = np.random.default_rng(0).random((32, 3)).astype("float32")
Y = X.sum(axis=1, keepdims=True)


def small_model(seed=0, lr=0.05):
    """Momentum (optimizer state) and dropout (a random generator) make resuming exact only if
    both are restored."""
    fastnn.utils.set_random_seed(seed)
    model = fastnn.Sequential(
        [
            fastnn.Input((3,)),
            layers.Dense(8, activation="tanh"),
            layers.Dropout(0.25),
            layers.Dense(1),
        ]
    )
    model.compile(optimizer=fastnn.optimizers.SGD(lr, momentum=0.9), loss="mse")
    return model


class Interrupt(callbacks.Callback):
    """Raises when training reaches ``epoch`` (and ``batch``, if given)."""

    def __init__(self, epoch, batch=None):
        super().__init__()
        self.epoch, self.batch = epoch, batch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch
        if epoch == self.epoch and self.batch is None:
            raise RuntimeError("Interrupting!")

    def on_train_batch_begin(self, batch, logs=None):
        if self.current == self.epoch and batch == self.batch:
            raise RuntimeError("Interrupting!")


def assert_same_weights(a, b):
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


# ---- BackupAndRestore ----------------------------------------------------------------------------


def test_an_interrupted_fit_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    uninterrupted = small_model()
    uninterrupted.fit(X, Y, epochs=6, batch_size=8, verbose=0)

    backup = callbacks.BackupAndRestore(tmp_path / "backup")
    model = small_model()
    with pytest.raises(RuntimeError, match="Interrupting"):
        model.fit(X, Y, epochs=6, batch_size=8, verbose=0, callbacks=[backup, Interrupt(4)])
    assert os.listdir(tmp_path / "backup") == ["latest.fastnn"]
    # a new process: a new model, initialized otherwise, picks up the backup
    restarted = small_model(seed=7)
    epochs_run = []
    seen = callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: epochs_run.append(epoch))
    history = restarted.fit(X, Y, epochs=6, batch_size=8, verbose=0, callbacks=[backup, seen])
    assert epochs_run == [4, 5] and history.epoch == [4, 5]
    assert_same_weights(restarted, uninterrupted)
    assert restarted.optimizer.iterations == uninterrupted.optimizer.iterations == 24
    assert not os.path.exists(tmp_path / "backup")  # deleted after a fit that ended normally


def test_a_backup_every_few_batches_resumes_mid_epoch(tmp_path):
    uninterrupted = small_model()
    uninterrupted.fit(X, Y, epochs=4, batch_size=8, verbose=0)

    backup = callbacks.BackupAndRestore(tmp_path, save_freq=3, delete_checkpoint=False)
    model = small_model()
    with pytest.raises(RuntimeError, match="Interrupting"):  # last backup: epoch 2, batch 1 done
        model.fit(X, Y, epochs=4, batch_size=8, verbose=0, callbacks=[backup, Interrupt(2, 2)])
    batches = []
    seen = callbacks.LambdaCallback(
        on_train_batch_begin=lambda batch, logs: batches.append(batch)
    )
    model.fit(X, Y, epochs=4, batch_size=8, verbose=0, callbacks=[backup, seen])
    assert batches == [1, 2, 3, 0, 1, 2, 3]
    assert_same_weights(model, uninterrupted)
    assert os.path.exists(tmp_path / "latest.fastnn")  # delete_checkpoint=False keeps it


def test_the_number_of_epochs_resumed_matches_keras(tmp_path):
    keras = pytest.importorskip("keras")

    def epochs_resumed(K, folder):
        model = K.Sequential([K.Input((3,)), K.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        backup = K.callbacks.BackupAndRestore(backup_dir=str(folder))

        class Stop(K.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                if epoch == 4:
                    raise RuntimeError("Interrupting!")

        with pytest.raises(RuntimeError):
            model.fit(X, Y, epochs=10, batch_size=8, callbacks=[backup, Stop()], verbose=0)
        history = model.fit(X, Y, epochs=10, batch_size=8, callbacks=[backup], verbose=0)
        return len(history.history["loss"]), os.path.exists(folder)

    assert epochs_resumed(fastnn, tmp_path / "ours") == epochs_resumed(keras, tmp_path / "keras")


def test_a_backup_that_cannot_be_read_falls_back_to_the_previous_one(tmp_path):
    backup = callbacks.BackupAndRestore(tmp_path, double_checkpoint=True, delete_checkpoint=False)
    model = small_model()
    with pytest.raises(RuntimeError):
        model.fit(X, Y, epochs=5, batch_size=8, verbose=0, callbacks=[backup, Interrupt(3)])
    assert sorted(os.listdir(tmp_path)) == ["latest.fastnn", "latest.fastnn.bkp"]
    (tmp_path / "latest.fastnn").write_bytes(b"not a zip")
    history = small_model().fit(X, Y, epochs=5, batch_size=8, verbose=0, callbacks=[backup])
    assert history.epoch == [2, 3, 4]  # the backup of epoch 2's end
    single = callbacks.BackupAndRestore(tmp_path / "single")
    os.makedirs(tmp_path / "single")
    (tmp_path / "single" / "latest.fastnn").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a fastnn zip file"):
        small_model().fit(X, Y, epochs=1, verbose=0, callbacks=[single])


def test_a_backup_of_another_model_is_refused_before_anything_changes(tmp_path):
    backup = callbacks.BackupAndRestore(tmp_path)
    with pytest.raises(RuntimeError):
        small_model().fit(X, Y, epochs=3, verbose=0, callbacks=[backup, Interrupt(1)])
    other = fastnn.Sequential([fastnn.Input((3,)), layers.Dense(2), layers.Dense(1)])
    other.compile(optimizer="sgd", loss="mse")
    before = other.get_weights()
    with pytest.raises(ValueError, match="Cannot load"):
        other.fit(X, Y, epochs=3, verbose=0, callbacks=[backup])
    for a, b in zip(before, other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_backup_and_restore_arguments():
    with pytest.raises(ValueError, match="Empty `backup_dir`"):
        callbacks.BackupAndRestore("")
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.BackupAndRestore("somewhere", save_freq="batch")
    with pytest.raises(ValueError, match="save_freq"):
        callbacks.BackupAndRestore("somewhere", save_freq=0)
