"""BackupAndRestore, TerminateOnNaN, LambdaCallback, CSVLogger, ProgbarLogger and the monitor
callbacks against Keras 3 (the epochs EarlyStopping stops at, the rates ReduceLROnPlateau sets)."""

import csv
import functools
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
    seen = callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: batches.append(batch))
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
    with pytest.raises(ValueError, match="not a zip file"):
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


# ---- monitor callbacks: Keras 3 on the same scripted sequence ------------------------------------


def keras_module():
    return pytest.importorskip("keras")


def scripted(base, values, key="val_loss"):
    """A callback (on Keras's or fastnn's base) that logs ``values[epoch]`` under ``key``."""

    class Scripted(base):
        def on_epoch_end(self, epoch, logs=None):
            logs[key] = values[epoch]

    return Scripted()


def tiny(K, lr=1.0, metrics=None):
    model = K.Sequential([K.Input((3,)), K.layers.Dense(1)])
    model.compile(optimizer=K.optimizers.SGD(lr), loss="mse", metrics=metrics)
    return model


def run_early_stopping(K, values, key="val_loss", **kwargs):
    model = tiny(K, lr=0.01, metrics=["accuracy"] if key == "val_accuracy" else None)
    weights = []
    record = K.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights.append(model.get_weights())
    )
    stop = K.callbacks.EarlyStopping(monitor=key, **kwargs)
    history = model.fit(
        X, Y, epochs=len(values), batch_size=16, verbose=0,
        callbacks=[scripted(K.callbacks.Callback, values, key), record, stop],
    )  # fmt: skip
    restored = None
    final = model.get_weights()
    for epoch, snapshot in enumerate(weights):
        if all(np.array_equal(a, b) for a, b in zip(snapshot, final)):
            restored = epoch
    return len(history.history["loss"]), stop.stopped_epoch, stop.best_epoch, restored


LOSSES = [1.0, 0.8, 0.85, 0.79, 0.9, 0.95, 0.7, 0.71, 0.72, 0.73, 0.74, 0.75]
ACCURACIES = [0.5, 0.6, 0.6, 0.61, 0.65, 0.64, 0.63, 0.66, 0.6, 0.6]


@pytest.mark.parametrize(
    "values, key, kwargs",
    [
        (LOSSES, "val_loss", {"patience": 2}),
        (LOSSES, "val_loss", {"patience": 1, "min_delta": 0.02}),
        (LOSSES, "val_loss", {"patience": 2, "baseline": 0.75}),
        (LOSSES, "val_loss", {"patience": 1, "start_from_epoch": 4}),
        (LOSSES, "val_loss", {"patience": 2, "restore_best_weights": True}),
        (LOSSES, "val_loss", {"patience": 0, "restore_best_weights": True, "start_from_epoch": 2}),
        (ACCURACIES, "val_accuracy", {"patience": 2, "min_delta": 0.015}),
        (ACCURACIES, "val_score", {"patience": 2, "mode": "max", "restore_best_weights": True}),
        (LOSSES, "val_loss", {"patience": 3, "mode": "max"}),
    ],
)
def test_early_stopping_stops_where_keras_stops(values, key, kwargs):
    keras = keras_module()
    assert run_early_stopping(fastnn, values, key, **kwargs) == run_early_stopping(
        keras, values, key, **kwargs
    )


def run_reduce_lr(K, values, lr=1.0, **kwargs):
    model = tiny(K, lr=lr)
    reduce = K.callbacks.ReduceLROnPlateau(monitor="val_loss", **kwargs)
    history = model.fit(
        X, Y, epochs=len(values), batch_size=32, verbose=0,
        callbacks=[scripted(K.callbacks.Callback, values), reduce],
    )  # fmt: skip
    return history.history["learning_rate"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patience": 1},
        {"patience": 2, "factor": 0.5, "cooldown": 2},
        {"patience": 1, "factor": 0.2, "min_lr": 0.05},
        {"patience": 1, "factor": 0.5, "min_delta": 0.1},
        {"patience": 0, "factor": 0.5, "mode": "max"},
    ],
)
def test_reduce_lr_on_plateau_sets_the_rates_keras_sets(kwargs):
    keras = keras_module()
    ours = run_reduce_lr(fastnn, LOSSES, **kwargs)
    np.testing.assert_allclose(ours, run_reduce_lr(keras, LOSSES, **kwargs), rtol=1e-6)
    assert len(set(ours)) > 1  # the script makes it reduce


def test_reduce_lr_on_plateau_refuses_a_schedule_as_keras_does():
    keras = keras_module()
    errors = []
    for K in (fastnn, keras):
        model = K.Sequential([K.Input((3,)), K.layers.Dense(1)])
        schedule = K.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
        model.compile(optimizer=K.optimizers.SGD(schedule), loss="mse")
        reduce = K.callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=1e9)
        with pytest.raises(TypeError) as error:
            model.fit(X, Y, epochs=3, verbose=0, callbacks=[reduce])
        errors.append(str(error.value))
    assert errors[0] == errors[1]


def auto_mode(K, metric, monitor):
    model = tiny(K, lr=0.01, metrics=[metric])
    stop = K.callbacks.EarlyStopping(monitor=monitor, patience=5)
    try:
        model.fit(X, Y, epochs=1, verbose=0, validation_data=(X, Y), callbacks=[stop])
    except ValueError as error:
        return "error" if "automatically determine" in str(error) else repr(error)
    return "max" if stop._is_improvement(2.0, 1.0) else "min"


@pytest.mark.parametrize(
    "metric, monitor",
    [("mae", "val_mae"), ("mse", "mse"), ("auc", "val_auc"), ("r2_score", "val_r2_score"),
     ("cosine_similarity", "val_cosine_similarity"), ("true_positives", "val_true_positives"),
     ("mae", "val_something_else")],
)  # fmt: skip
def test_auto_mode_follows_the_metric_direction_as_keras(metric, monitor):
    keras = keras_module()
    expected = auto_mode(keras, metric, monitor)
    stop = callbacks.EarlyStopping(monitor=monitor, patience=5)
    model = tiny(fastnn, lr=0.01, metrics=[metric])
    if expected == "error":
        with pytest.raises(ValueError, match="automatically determine"):
            model.fit(X, Y, epochs=1, verbose=0, validation_data=(X, Y), callbacks=[stop])
    else:
        model.fit(X, Y, epochs=1, verbose=0, validation_data=(X, Y), callbacks=[stop])
        assert stop.mode == expected


def checkpoint_epochs(K, folder, values, **kwargs):
    model = tiny(K, lr=0.01)
    path = os.path.join(folder, "m-{epoch}.weights.h5")
    checkpoint = K.callbacks.ModelCheckpoint(
        path, save_weights_only=True, save_best_only=True, **kwargs
    )
    model.fit(
        X, Y, epochs=len(values), verbose=0,
        callbacks=[scripted(K.callbacks.Callback, values), checkpoint],
    )  # fmt: skip
    return sorted(int(name[2:].split(".")[0]) for name in os.listdir(folder))


def test_model_checkpoint_initial_value_threshold_as_keras(tmp_path):
    pytest.importorskip("h5py")
    keras = keras_module()
    for i, threshold in enumerate([None, 0.8, 0.75]):
        ours, theirs = tmp_path / f"ours{i}", tmp_path / f"keras{i}"
        ours.mkdir(), theirs.mkdir()
        kwargs = {"initial_value_threshold": threshold}
        assert checkpoint_epochs(fastnn, ours, LOSSES, **kwargs) == checkpoint_epochs(
            keras, theirs, LOSSES, **kwargs
        )


def test_learning_rate_scheduler_refuses_what_keras_refuses():
    keras = keras_module()
    for K in (fastnn, keras):
        scheduler = K.callbacks.LearningRateScheduler(lambda epoch: 1)
        with pytest.raises(ValueError, match="should be a float"):
            tiny(K).fit(X, Y, epochs=1, verbose=0, callbacks=[scheduler])
    scheduler = callbacks.LearningRateScheduler(lambda epoch, lr: np.float32(lr / 2))
    history = tiny(fastnn, lr=0.5).fit(X, Y, epochs=2, verbose=0, callbacks=[scheduler])
    assert history.history["learning_rate"] == [0.25, 0.125]


# ---- LambdaCallback, TerminateOnNaN, CSVLogger, ProgbarLogger, CallbackList ----------------------


def lambda_calls(K):
    calls = []

    def record(name, *args, **kwargs):
        calls.append((name, *[a for a in args[:1] if isinstance(a, int)], sorted(kwargs)))

    hooks = {
        name: functools.partial(record, name)
        for name in [
            "on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end",
            "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
            "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
            "on_predict_batch_begin", "on_predict_batch_end",
        ]
    }  # fmt: skip
    model = tiny(K, lr=0.01)
    cb = K.callbacks.LambdaCallback(**hooks)
    model.fit(X, Y, epochs=2, batch_size=16, verbose=0, validation_data=(X, Y), callbacks=[cb])
    model.evaluate(X, Y, batch_size=16, verbose=0, callbacks=[cb])
    model.predict(X, batch_size=16, verbose=0, callbacks=[cb])
    return calls


def test_lambda_callback_takes_every_hook_keras_calls():
    keras = keras_module()
    assert lambda_calls(fastnn) == lambda_calls(keras)
    cb = callbacks.LambdaCallback(on_epoch_end=print, note="kept as an attribute")
    assert cb.note == "kept as an attribute"
    with pytest.raises(TypeError, match="unknown hooks"):
        callbacks.LambdaCallback(on_test_batch_ending=print)


def test_terminate_on_nan_stops_or_raises():
    def nan_model():
        model = tiny(fastnn, lr=1e30)
        return model

    big = X * 1e20
    stop = callbacks.TerminateOnNaN()
    model = nan_model()
    history = model.fit(big, Y, epochs=3, batch_size=8, verbose=0, callbacks=[stop])
    assert model.stop_training and len(history.history["loss"]) == 1
    assert all(np.isfinite(w).all() for w in model.get_weights())
    with pytest.raises(RuntimeError, match="NaN or Inf loss encountered at batch 0"):
        nan_model().fit(
            big, Y, epochs=3, batch_size=8, verbose=0,
            callbacks=[callbacks.TerminateOnNaN(raise_error=True)],
        )  # fmt: skip


def test_terminate_on_nan_reads_the_logs_of_a_custom_train_step():
    class NaNStep(fastnn.Sequential):
        def train_step(self, data):
            return {"loss": float("nan") if self.optimizer.iterations >= 2 else 1.0}

    model = NaNStep([fastnn.Input((3,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    calls = []

    class Counter(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            calls.append(batch)
            model.optimizer.iterations += 1

    history = model.fit(
        X, Y, epochs=3, batch_size=8, verbose=0, callbacks=[Counter(), callbacks.TerminateOnNaN()]
    )
    assert calls == [0, 1, 2] and len(history.history["loss"]) == 1


def csv_rows(K, folder, validation, append_runs=1):
    path = os.path.join(folder, "log.csv")
    for _ in range(append_runs):
        model = tiny(K, lr=0.01)
        logger = K.callbacks.CSVLogger(path, separator=";", append=True)
        extra = {"validation_data": (X, Y)} if validation else {}
        model.fit(X, Y, epochs=2, verbose=0, callbacks=[logger], **extra)
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    # the values differ (other initial weights): compare the layout and the missing cells
    return [[cell if cell in ("NA", "epoch") or not row[0].isdigit() else "x" for cell in row]
            for row in rows], open(path, "rb").read().count(b"\r\n")  # fmt: skip


@pytest.mark.parametrize("validation", [False, True])
def test_csv_logger_writes_the_file_keras_writes(tmp_path, validation):
    keras = keras_module()
    (tmp_path / "ours").mkdir(), (tmp_path / "keras").mkdir()
    ours = csv_rows(fastnn, tmp_path / "ours", validation, append_runs=2)
    assert ours == csv_rows(keras, tmp_path / "keras", validation, append_runs=2)
    assert ours[0][0][0] == "epoch" and len(ours[0]) == 5  # one header, four rows


def test_csv_logger_writes_an_array_log_as_keras_does(tmp_path):
    path = tmp_path / "log.csv"
    logger = callbacks.CSVLogger(path)
    logger.set_model(tiny(fastnn))
    logger.on_train_begin()
    logger.on_epoch_end(0, {"f1": np.array([0.5, 0.25]), "loss": np.float32(1.5)})
    logger.on_train_end()
    assert path.read_text().splitlines()[1] == '0,"""[0.5, 0.25]""",1.5,NA,NA'


def test_a_progbar_logger_passed_in_takes_the_verbosity_of_fit(capsys):
    model = tiny(fastnn, lr=0.01)
    stream = io.StringIO()
    model.fit(X, Y, epochs=2, verbose=0, callbacks=[callbacks.ProgbarLogger(stream=stream)])
    assert stream.getvalue() == ""
    model.fit(X, Y, epochs=2, verbose=2, callbacks=[callbacks.ProgbarLogger(stream=stream)])
    lines = stream.getvalue().splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/2", "1/1", "Epoch 2/2", "1/1"]
    assert capsys.readouterr().out == ""  # the default logger was not added beside it
    model.fit(X, Y, epochs=1, verbose=2)
    assert not capsys.readouterr().out.startswith("Epoch")  # Keras 3 prints no "Epoch 1/1"
    with pytest.raises(ValueError, match="count_mode"):
        callbacks.ProgbarLogger(count_mode="samples")


def test_callback_list_takes_keras_arguments():
    seen = []
    record = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(dict(logs)))
    model = tiny(fastnn)
    stream_check = callbacks.CallbackList(
        [record], add_history=True, add_progbar=True, model=model, epochs=3, steps=2, verbose=0
    )
    kinds = [type(cb).__name__ for cb in stream_check.callbacks]
    assert kinds == ["LambdaCallback", "History", "ProgbarLogger"]
    assert all(cb.model is model and cb.params["epochs"] == 3 for cb in stream_check.callbacks)
    stream_check.on_train_begin()
    stream_check.on_epoch_begin(0)
    stream_check.on_epoch_end(0, {"loss": 1.0})
    stream_check.on_train_batch_end(0, logs=None)
    assert seen == [{"loss": 1.0}] and model.history.history == {"loss": [1.0]}


def test_auto_mode_finds_the_metric_of_an_output():
    inputs = fastnn.Input((3,))
    outputs = {
        "a": layers.Dense(1, name="a")(inputs),
        "b": layers.Dense(1, activation="sigmoid", name="b")(inputs),
    }
    model = fastnn.Model(inputs, outputs)
    model.compile(
        "sgd", {"a": "mse", "b": "binary_crossentropy"}, metrics={"a": "mae", "b": "r2_score"}
    )
    watching = {
        monitor: callbacks.EarlyStopping(monitor=monitor, patience=9)
        for monitor in ("val_a_mae", "val_b_r2_score", "val_b_loss")
    }
    targets = {"a": Y, "b": (Y > 1.5).astype("float32")}
    model.fit(
        X, targets, epochs=1, verbose=0, validation_split=0.25, callbacks=[*watching.values()]
    )
    modes = {monitor: cb.mode for monitor, cb in watching.items()}
    assert modes == {"val_a_mae": "min", "val_b_r2_score": "max", "val_b_loss": "min"}
