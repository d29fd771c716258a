"""Callbacks with Keras's hooks, the History every fit returns, and the progress display."""

from __future__ import annotations

import csv
import numbers
import os
import sys
import time
import warnings

import numpy as np


def is_interactive() -> bool:
    """True when stdout is a terminal (progress bars redraw in place there)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class Callback:
    """Base class: override the ``on_*`` hooks; ``self.model`` and ``self.params`` are set.

    As in Keras, every hook gets a logs dict (``{}`` when there is nothing to report), and
    ``on_batch_begin`` / ``on_batch_end`` are the training batch hooks' older names.
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): ...
    def on_train_end(self, logs=None): ...
    def on_epoch_begin(self, epoch, logs=None): ...
    def on_epoch_end(self, epoch, logs=None): ...
    def on_batch_begin(self, batch, logs=None): ...
    def on_batch_end(self, batch, logs=None): ...

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_begin(self, logs=None): ...
    def on_test_end(self, logs=None): ...
    def on_test_batch_begin(self, batch, logs=None): ...
    def on_test_batch_end(self, batch, logs=None): ...
    def on_predict_begin(self, logs=None): ...
    def on_predict_end(self, logs=None): ...
    def on_predict_batch_begin(self, batch, logs=None): ...
    def on_predict_batch_end(self, batch, logs=None): ...


class History(Callback):
    """Records each epoch's logs: ``history.history["loss"]`` is the list of epoch losses."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)
        if self.model is not None:
            self.model.history = self


class ProgbarLogger(Callback):
    """Keras-style progress: verbose=1 redraws a bar per epoch, verbose=2 prints one line.

    fit, evaluate and predict add one when their ``verbose`` is not 0; one passed in
    ``callbacks`` replaces it and, as in Keras, takes its verbosity from the call's. The same
    display covers ``evaluate`` (test steps, ending with the metrics) and ``predict`` (predict
    steps); inside ``fit`` the validation pass draws nothing, as in Keras. ``count_mode`` and
    ``stateful_metrics`` are tf.keras's arguments: progress is counted in steps and every log
    is shown as given (both what Keras 3 does), so only ``count_mode="steps"`` or None is
    accepted. ``verbose`` fixes the verbosity and ``stream`` the output (stdout by default).
    """

    def __init__(self, count_mode=None, stateful_metrics=None, *, verbose=None, stream=None):
        super().__init__()
        if count_mode not in (None, "steps"):
            raise ValueError(
                "ProgbarLogger: fastnn counts progress in steps, as Keras 3 does; "
                f"count_mode must be None or 'steps', got count_mode={count_mode!r}"
            )
        self.count_mode, self.stateful_metrics = count_mode, stateful_metrics
        self._fixed_verbose = verbose
        self.verbose = 1 if verbose is None else verbose
        self.stream = stream
        self._in_fit = False

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        if self._fixed_verbose is None and "verbose" in params:
            self.verbose = 1 if params["verbose"] == "auto" else params["verbose"]

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stdout
        stream.write(text)
        stream.flush()

    def _begin(self) -> None:
        self._start = self._drawn = time.perf_counter()
        self._steps_done = 0

    def on_train_begin(self, logs=None):
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False

    def on_epoch_begin(self, epoch, logs=None):
        self._begin()
        self._epoch = epoch
        epochs = self.params.get("epochs", 1)
        if self.verbose and epochs > 1:  # as Keras 3: no "Epoch 1/1" line
            self._write(f"Epoch {epoch + 1}/{epochs}\n")

    def on_train_batch_end(self, batch, logs=None):
        self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._finish(logs)

    def on_test_begin(self, logs=None):
        if not self._in_fit:
            self._begin()

    def on_test_batch_end(self, batch, logs=None):
        if not self._in_fit:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if not self._in_fit:
            self._finish(logs)

    def on_predict_begin(self, logs=None):
        self._begin()

    def on_predict_batch_end(self, batch, logs=None):
        self._update(batch, None)  # like Keras: the bar shows no prediction values

    def on_predict_end(self, logs=None):
        self._finish(None)

    def _update(self, batch, logs) -> None:
        # Redraw at most 20 times a second: a tiny model runs thousands of steps per second.
        self._steps_done = batch + 1
        now = time.perf_counter()
        if self.verbose == 1 and now - self._drawn >= 0.05:
            self._drawn = now
            self._write("\r" + self._line(batch + 1, logs or {}, bar=True))

    def _finish(self, logs) -> None:
        if self.verbose == 1:
            line = self._line(self._steps_done, logs or {}, bar=True)
            self._write("\r" + line + "\x1b[K\n")  # clear what a longer redraw left behind
        elif self.verbose == 2:
            self._write(self._line(self._steps_done, logs or {}, bar=False) + "\n")

    def _line(self, done: int, logs: dict, bar: bool) -> str:
        steps = self.params.get("steps") or done
        elapsed = time.perf_counter() - self._start
        per_step = elapsed / max(done, 1)
        width = len(str(steps))
        parts = [f"{done:>{width}}/{steps}"]
        if bar:
            filled = int(20 * done / max(steps, 1))
            parts[0] += " " + "━" * filled + "─" * (20 - filled)
        parts.append(f"{elapsed:.0f}s {_format_time(per_step)}/step")
        parts += [f"{k}: {_scalar(v):.4f}" for k, v in sorted(logs.items())]
        return " - ".join(parts)


def _scalar(value) -> float:
    """A logged value as the progress line shows it: an array result (F1Score per class, a
    metric at several thresholds) by its mean, as Keras's Progbar does."""
    if isinstance(value, float):
        return value
    return sum(value.flat) / value.size if hasattr(value, "flat") else float(value)


def _format_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.0f}s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms"
    return f"{seconds * 1e6:.0f}us"


def _monitor_mode(monitor: str, mode: str) -> str:
    """``mode`` checked; for 'auto', what the monitor's name decides ('min' for a loss, 'max'
    for an accuracy or AUC), else 'auto' until the model's metrics decide (``_resolve_mode``)."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"`mode` must be 'auto', 'min' or 'max'; got mode={mode!r}")
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    if name == "loss" or name.endswith("_loss"):
        return "min"
    return "max" if ("acc" in name or "auc" in name) else "auto"


#: Keras 3's metric directions (its ``_direction``), by class name; the first class in a
#: metric's MRO found here decides. Metrics in neither (Mean, Sum, TruePositives...) have none.
_METRICS_UP = frozenset(
    [
        "Accuracy",
        "BinaryAccuracy",
        "CategoricalAccuracy",
        "SparseCategoricalAccuracy",
        "TopKCategoricalAccuracy",
        "SparseTopKCategoricalAccuracy",
        "Precision",
        "Recall",
        "AUC",
        "PrecisionAtRecall",
        "RecallAtPrecision",
        "SensitivityAtSpecificity",
        "SpecificityAtSensitivity",
        "FBetaScore",
        "F1Score",
        "IoU",
        "BinaryIoU",
        "MeanIoU",
        "OneHotIoU",
        "OneHotMeanIoU",
        "CosineSimilarity",
        "R2Score",
        "PearsonCorrelation",
        "ConcordanceCorrelation",
    ]
)
_METRICS_DOWN = frozenset(
    [
        "MeanMetricWrapper",
        "KLDivergence",
        "Poisson",
        "Hinge",
        "SquaredHinge",
        "CategoricalHinge",
        "BinaryCrossentropy",
        "CategoricalCrossentropy",
        "SparseCategoricalCrossentropy",
        "MeanSquaredError",
        "MeanAbsoluteError",
        "RootMeanSquaredError",
        "MeanAbsolutePercentageError",
        "MeanSquaredLogarithmicError",
        "LogCoshError",
    ]
)


def _metric_direction(model, name: str) -> str | None:
    """'up' or 'down' for the model's compiled metric logged as ``name``; None if unknown."""
    for key, metric in _compiled_metrics(model):
        if key != name and getattr(metric, "name", None) != name:
            continue
        direction = getattr(metric, "_direction", None)
        if direction in ("up", "down"):
            return direction
        for cls in type(metric).__mro__:
            if cls.__name__ in _METRICS_UP:
                return "up"
            if cls.__name__ in _METRICS_DOWN:
                return "down"
    return None


def _compiled_metrics(model) -> list:
    """(log key, metric) for the model's compiled metrics, then the metrics it holds."""
    pairs = []
    if getattr(model, "_output_metrics", None) is not None:
        from fastnn.training import compile_spec

        pairs += compile_spec.metric_keys(
            model.output_names, model._output_metrics, model._weighted_counts
        )
    pairs += [(metric.name, metric) for metric in getattr(model, "metrics", [])]
    return pairs


def _resolve_mode(callback) -> str:
    """The callback's mode; 'auto' is decided as Keras 3 decides it at the first epoch end:
    by the direction of the compiled metric the monitor names, or a ValueError."""
    if callback.mode == "auto":
        direction = _metric_direction(callback.model, callback.monitor.removeprefix("val_"))
        if direction is None:
            raise ValueError(
                f"{type(callback).__name__} callback received monitor={callback.monitor}, but "
                "fastnn isn't able to automatically determine whether that metric should be "
                "maximized or minimized. Pass `mode='max'` in order to monitor based on the "
                "highest metric value, or pass `mode='min'` in order to use the lowest value."
            )
        callback.mode = "max" if direction == "up" else "min"
    return callback.mode


def _beats(current, best, mode: str, min_delta=0.0) -> bool:
    """True if ``current`` improves on ``best`` (None: nothing yet) by more than ``min_delta``."""
    if best is None:
        return True
    # as Keras (ops.greater/ops.less on Python floats): the shifted value and the reference
    # are compared in float32, so 0.7 + 0.1 does not beat 0.8
    if mode == "max":
        return bool(np.float32(current - abs(min_delta)) > np.float32(best))
    return bool(np.float32(current + abs(min_delta)) < np.float32(best))


def _monitored(callback, logs, what: str):
    """The monitored value in ``logs``; None, with Keras's warning, if it is not there."""
    logs = logs or {}
    value = logs.get(callback.monitor)
    if value is None:
        warnings.warn(
            f"{what} conditioned on metric `{callback.monitor}` which is not available. "
            f"Available metrics are: {','.join(logs)}",
            stacklevel=3,
        )
    return value


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs (Keras).

    Epochs before ``start_from_epoch`` are not watched; ``baseline`` is a value the monitor
    must beat to reset the patience; ``restore_best_weights`` puts back the weights of the best
    epoch when training stops (or ends). ``mode='auto'`` minimizes a loss and follows the
    direction of the compiled metric of that name, as Keras 3 does.
    """

    def __init__(
        self,
        monitor="val_loss",
        min_delta=0.0,
        patience=0,
        verbose=0,
        mode="auto",
        baseline=None,
        restore_best_weights=False,
        start_from_epoch=0,
    ):
        super().__init__()
        self.monitor, self.patience, self.verbose = monitor, int(patience), verbose
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta = abs(min_delta)
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def _better(self, value, reference) -> bool:
        return _beats(value, reference, _resolve_mode(self), self.min_delta)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def on_epoch_end(self, epoch, logs=None):
        _resolve_mode(self)  # as Keras: first, so a monitor no metric explains raises
        current = _monitored(self, logs, "Early stopping")
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._better(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._better(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(
                    "Restoring model weights from the end of the best epoch: "
                    f"{self.best_epoch + 1}."
                )
            self.model.set_weights(self.best_weights)


class LearningRateScheduler(Callback):
    """Set the learning rate each epoch to ``schedule(epoch, lr)`` (or ``schedule(epoch)``)."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # a schedule of the epoch only
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.floating)):  # as Keras: an int is refused too
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {lr}")
        optimizer.learning_rate = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` stalls for ``patience`` epochs.

    As in Keras, an optimizer whose learning rate is a ``LearningRateSchedule`` cannot be
    reduced: the first reduction raises its TypeError. Other keyword arguments (tf.keras's
    ``epsilon``...) are accepted and ignored, as Keras 3 does.
    """

    def __init__(
        self,
        monitor="val_loss",
        factor=0.1,
        patience=10,
        verbose=0,
        mode="auto",
        min_delta=1e-4,
        cooldown=0,
        min_lr=0.0,
        **kwargs,
    ):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(
                f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}"
            )
        self.monitor, self.factor, self.patience, self.verbose = monitor, factor, patience, verbose
        self.mode = _monitor_mode(monitor, mode)
        self.min_delta, self.cooldown, self.min_lr = abs(min_delta), cooldown, min_lr
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def on_train_begin(self, logs=None):
        self.best, self.wait, self.cooldown_counter = None, 0, 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def on_epoch_end(self, epoch, logs=None):
        _resolve_mode(self)  # as Keras: first, so a monitor no metric explains raises
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = _monitored(self, logs, "Learning rate reduction")
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if _beats(current, self.best, _resolve_mode(self), self.min_delta):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce(epoch):
                self.cooldown_counter, self.wait = self.cooldown, 0

    def _reduce(self, epoch: int) -> bool:
        optimizer = self.model.optimizer
        old_lr = float(optimizer.learning_rate)
        if not old_lr > np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new_lr}.")
        return True


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``.

    Any of Keras 3's hooks may be given (``on_epoch_begin``, ``on_train_batch_end``,
    ``on_test_begin``, ``on_predict_batch_end``, the older ``on_batch_begin``...); they are
    called as Keras calls them (batch hooks with ``logs=`` as a keyword). Other keyword
    arguments become attributes, as in Keras; a misspelt hook (an unknown ``on_*`` name) is a
    TypeError.
    """

    _HOOKS = (
        "on_epoch_begin",
        "on_epoch_end",
        "on_train_begin",
        "on_train_end",
        "on_train_batch_begin",
        "on_train_batch_end",
        "on_batch_begin",
        "on_batch_end",
        "on_test_begin",
        "on_test_end",
        "on_test_batch_begin",
        "on_test_batch_end",
        "on_predict_begin",
        "on_predict_end",
        "on_predict_batch_begin",
        "on_predict_batch_end",
    )

    def __init__(
        self,
        on_epoch_begin=None,
        on_epoch_end=None,
        on_train_begin=None,
        on_train_end=None,
        on_train_batch_begin=None,
        on_train_batch_end=None,
        **kwargs,
    ):
        super().__init__()
        unknown = sorted(k for k in kwargs if k.startswith("on_") and k not in self._HOOKS)
        if unknown:
            raise TypeError(f"LambdaCallback got unknown hooks {unknown}; valid: {self._HOOKS}")
        self.__dict__.update(kwargs)
        named = {
            "on_epoch_begin": on_epoch_begin,
            "on_epoch_end": on_epoch_end,
            "on_train_begin": on_train_begin,
            "on_train_end": on_train_end,
            "on_train_batch_begin": on_train_batch_begin,
            "on_train_batch_end": on_train_batch_end,
        }
        for hook, fn in named.items():
            if fn is not None:
                setattr(self, hook, fn)


class CSVLogger(Callback):
    """Write each epoch's logs as a CSV row, as Keras 3 does: ``epoch`` then the log keys in
    sorted order, with a ``val_`` column for each when the first epoch has no validation
    logs (``NA`` where a value is missing; an array as ``"[a, b]"``). With ``append`` the
    header is written only if the file is new or empty."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep = self.separator = separator
        self.filename, self.append = os.fspath(filename), append
        self.csv_file, self.writer, self.keys = None, None, None
        self.append_header = True

    def on_train_begin(self, logs=None):
        self.append_header = True
        if self.append and os.path.exists(self.filename):
            with open(self.filename) as f:
                self.append_header = not f.readline()
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, "a" if self.append else "w", newline="")  # noqa: SIM115
        self.writer, self.keys = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys += [f"val_{key}" for key in self.keys]
        if self.writer is None:
            self.writer = csv.writer(self.csv_file, delimiter=self.sep)
            if self.append_header:
                self.writer.writerow(["epoch", *self.keys])
        self.writer.writerow([epoch, *(_csv_value(logs.get(k, "NA")) for k in self.keys)])
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


def _csv_value(value):
    if isinstance(value, str) or np.ndim(value) == 0:
        return value
    return f'"[{", ".join(map(str, np.ravel(value)))}]"'


class TerminateOnNaN(Callback):
    """Stop training when the loss becomes NaN or infinite (``raise_error=True``: raise a
    RuntimeError instead). fit() skips the update of a step whose loss is not finite, so the
    weights stay those of the last finite step."""

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.all(np.isfinite(loss)):
            self.invalid_loss(batch, loss)

    def invalid_loss(self, batch, loss) -> None:
        """Raise, or stop training, for the non-finite ``loss`` of training batch ``batch``."""
        if self.raise_error:
            raise RuntimeError(
                f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                "Terminating training immediately."
            )
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


class CallbackList(Callback):
    """Dispatches each hook to every callback (Keras 3's container).

    ``CallbackList(callbacks, add_history=False, add_progbar=False, model=None, **params)`` as
    in Keras; fit passes its own ``history``, and ``verbose`` adds a ProgbarLogger (and goes
    in ``params``) unless one is in ``callbacks``. Every hook gets a logs dict.
    """

    def __init__(
        self,
        callbacks=None,
        add_history=False,
        add_progbar=False,
        model=None,
        *,
        history=None,
        verbose=0,
        params=None,
        **more_params,
    ):
        super().__init__()
        self.callbacks = list(callbacks or [])
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    f"callbacks must be fastnn.callbacks.Callback instances; got {cb!r}"
                )
        if (add_history or history is not None) and not any(
            isinstance(cb, History) for cb in self.callbacks
        ):
            self.callbacks.append(history if history is not None else History())
        if (add_progbar or verbose) and not any(
            isinstance(cb, ProgbarLogger) for cb in self.callbacks
        ):
            self.callbacks.append(ProgbarLogger())
        params = {**(params or {}), **more_params}
        if verbose and "verbose" not in params:
            params["verbose"] = verbose
        self.set_model(model)
        self.set_params(params)

    def append(self, callback: Callback) -> None:
        self.callbacks.append(callback)

    def set_model(self, model) -> None:
        super().set_model(model)
        for cb in self.callbacks:
            cb.set_model(model)

    def set_params(self, params: dict) -> None:
        super().set_params(params)
        if params:
            for cb in self.callbacks:
                cb.set_params(params)

    def terminates_on_nan(self) -> bool:
        return any(isinstance(cb, TerminateOnNaN) for cb in self.callbacks)

    def invalid_loss(self, batch, loss) -> None:
        """fit's step found a non-finite loss: each TerminateOnNaN raises or stops training."""
        for cb in self.callbacks:
            if isinstance(cb, TerminateOnNaN):
                cb.invalid_loss(batch, loss)

    def __getattribute__(self, name):
        """``on_<hook>([index], logs=None)`` calls it on every callback with a logs dict, as
        Keras's CallbackList does: positional for epoch and begin/end hooks, ``logs=`` for batch
        hooks."""
        if not name.startswith("on_"):
            return super().__getattribute__(name)
        per_batch = "batch" in name
        indexed = per_batch or "epoch" in name
        callbacks = super().__getattribute__("callbacks")

        def dispatch(*args, logs=None):
            index, rest = (args[:1], args[1:]) if indexed else ((), args)
            if rest:
                logs = rest[0]
            logs = logs if logs is not None else {}
            for cb in callbacks:
                if per_batch:
                    getattr(cb, name)(*index, logs=logs)
                else:
                    getattr(cb, name)(*index, logs)

        return dispatch


class ModelCheckpoint(Callback):
    """Save the model (or its weights) every epoch, or only when ``monitor`` improves (Keras).

    ``filepath`` may hold ``str.format`` fields: ``{epoch}`` (1-based), ``{batch}`` with an
    integer ``save_freq``, and any log key such as ``{val_loss:.3f}``. A whole model goes to
    ``.fastnn`` or ``.keras``, weights alone (``save_weights_only=True``) to ``.weights.npz`` or
    ``.weights.h5``. Every write is atomic.
    """

    def __init__(
        self,
        filepath,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq="epoch",
        initial_value_threshold=None,
    ):
        super().__init__()
        self.filepath = os.fspath(filepath)
        suffixes = (".weights.npz", ".weights.h5") if save_weights_only else (".fastnn", ".keras")
        if not self.filepath.endswith(suffixes):
            what = "save_weights_only=True" if save_weights_only else "a whole model"
            raise ValueError(
                f"ModelCheckpoint: with {what} the filepath must end in {' or '.join(suffixes)}; "
                f"got filepath={self.filepath!r}"
            )
        if save_freq != "epoch" and not (isinstance(save_freq, int) and save_freq > 0):
            raise ValueError(
                f"ModelCheckpoint: save_freq must be 'epoch' or a positive integer; "
                f"got save_freq={save_freq!r}"
            )
        self.monitor, self.verbose = monitor, verbose
        self.save_best_only, self.save_weights_only = save_best_only, save_weights_only
        self.mode = _monitor_mode(monitor, mode)
        self.save_freq = save_freq
        self.best = initial_value_threshold
        self._batches_seen = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_seen += 1
        if self._batches_seen % self.save_freq == 0:
            self._save(self._epoch, batch, logs or {})

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._save(epoch, None, logs or {})

    def _save(self, epoch: int, batch, logs: dict) -> None:
        path = self._path(epoch, batch, logs)
        if self.save_best_only:
            current = logs.get(self.monitor)
            if current is None:
                warnings.warn(
                    f"ModelCheckpoint: can save the best model only with {self.monitor} "
                    f"available; the logs have {sorted(logs)}. Skipping.",
                    stacklevel=2,
                )
                return
            if not _beats(current, self.best, _resolve_mode(self)):
                if self.verbose > 0:
                    print(
                        f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}"
                    )
                return
            if self.verbose > 0:
                unset = "-inf" if self.mode == "max" else "inf"
                previous = unset if self.best is None else f"{self.best:.5f}"
                print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {previous} to "
                    f"{current:.5f}, saving model to {path}"
                )
            self.best = current
        elif self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saving model to {path}")
        if self.save_weights_only:
            self.model.save_weights(path, overwrite=True)
        else:
            self.model.save(path, overwrite=True)

    def _path(self, epoch: int, batch, logs: dict) -> str:
        fields = {**logs, "epoch": epoch + 1}
        if batch is not None:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except (KeyError, IndexError, ValueError) as error:
            raise KeyError(
                f"ModelCheckpoint: failed to format filepath {self.filepath!r} with the "
                f"fields {sorted(fields)}: {error!r}"
            ) from None


class TensorBoard(Callback):
    """Write TensorBoard event files: each epoch's logs as scalars, weight histograms, and
    batch-level scalars with ``update_freq="batch"`` or an integer (Keras 3's tags and steps).

    Training logs go to ``log_dir/train`` (``epoch_loss``, ``epoch_learning_rate``, ...,
    ``batch_loss`` at the count of batches since fit began, ``<weight path>/histogram`` every
    ``histogram_freq`` epochs, and with ``write_graph`` the model's JSON under the tag ``keras``
    for TensorBoard's conceptual graph); validation logs go to ``log_dir/validation``
    (``epoch_val_loss`` written as ``epoch_loss``, and ``evaluation_loss_vs_iterations`` at the
    optimizer's step count). The files are written by ``fastnn.tensorboard_events``, without
    tensorflow. fastnn draws no op-level graph, does not profile (``profile_batch``), writes
    no weight images (``write_images``) and no projector checkpoints (``embeddings_freq``,
    ``embeddings_metadata``): those arguments are accepted for Keras's signature and warn
    when they ask for something.
    """

    def __init__(
        self,
        log_dir="logs",
        histogram_freq=0,
        write_graph=True,
        write_images=False,
        write_steps_per_second=False,
        update_freq="epoch",
        profile_batch=0,
        embeddings_freq=0,
        embeddings_metadata=None,
    ):
        super().__init__()
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and not (_is_int(update_freq) and update_freq > 0):
            raise ValueError(
                "TensorBoard: update_freq must be 'epoch', 'batch' or a positive integer; "
                f"got update_freq={update_freq!r}"
            )
        if not (_is_int(histogram_freq) and histogram_freq >= 0):
            raise ValueError(
                "TensorBoard: histogram_freq must be an integer >= 0; "
                f"got histogram_freq={histogram_freq!r}"
            )
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = histogram_freq
        self.write_graph, self.write_images = write_graph, write_images
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = update_freq
        self.profile_batch = profile_batch
        self.embeddings_freq, self.embeddings_metadata = embeddings_freq, embeddings_metadata
        for asked, what in (
            (write_images, "weight images (write_images)"),
            (profile_batch not in (0, "0", None), "profiles (profile_batch)"),
            (embeddings_freq, "embedding projector checkpoints (embeddings_freq)"),
        ):
            if asked:
                warnings.warn(f"TensorBoard: fastnn does not write {what}", stacklevel=2)
        self._writers = {}
        self._global_train_batch = 0
        self._in_fit = False

    def _writer(self, kind: str):
        """The event writer of ``train`` or ``validation``, made on first use."""
        from fastnn.tensorboard_events import EventFileWriter

        if kind not in self._writers:
            self._writers[kind] = EventFileWriter(os.path.join(self.log_dir, kind))
        return self._writers[kind]

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def set_model(self, model) -> None:
        """As Keras: each fit/evaluate/predict starts new event files; the model's JSON is
        written for the conceptual graph (Sequential and Functional models only)."""
        super().set_model(model)
        self._close_writers()
        if self.write_graph and type(model).__module__ == "fastnn.models":
            self._write_model_json(model)

    def _write_model_json(self, model) -> None:
        from fastnn.tensorboard_events import text_tensor_value

        try:
            text = model.to_json()
        except Exception as error:  # as Keras: a model that cannot be serialized is skipped
            warnings.warn(f"Model failed to serialize as JSON. Ignoring... {error}", stacklevel=3)
            return
        value = text_tensor_value("keras", text, "graph_keras_model", b"1")
        self._writer("train").add_summary(0, value)

    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False
        self._close_writers()

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        if self.write_steps_per_second:
            self._batch_start_time = time.time()

    def on_train_batch_end(self, batch, logs=None):
        step = self._global_train_batch
        if self.update_freq == "epoch" or step % self.update_freq:
            return
        scalars = {}
        if self.write_steps_per_second:
            elapsed = time.time() - self._batch_start_time
            scalars["batch_steps_per_second"] = 1.0 / max(elapsed, 1e-9)
        scalars.update((f"batch_{name}", value) for name, value in _scalars(logs))
        self._writer("train").add_scalars(step, scalars)

    def on_epoch_begin(self, epoch, logs=None):
        if self.write_steps_per_second:
            self._epoch_start_iterations = self.model.optimizer.iterations
            self._epoch_start_time = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {f"epoch_{k}": v for k, v in _scalars(logs) if not k.startswith("val_")}
        val = {f"epoch_{k[4:]}": v for k, v in _scalars(logs) if k.startswith("val_")}
        if self.model.optimizer is not None:
            train["epoch_learning_rate"] = float(self.model.optimizer.learning_rate)
        if self.write_steps_per_second:
            steps = self.model.optimizer.iterations - self._epoch_start_iterations
            elapsed = max(time.time() - self._epoch_start_time, 1e-9)
            train["epoch_steps_per_second"] = steps / elapsed
        self._writer("train").add_scalars(epoch, train)
        self._writer("validation").add_scalars(epoch, val)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_histograms(epoch)

    def _write_histograms(self, epoch: int) -> None:
        from fastnn.tensorboard_events import histogram_value

        values = [
            histogram_value(f"{weight.path.replace(':', '_')}/histogram", weight.numpy())
            for layer in self.model.layers
            for weight in layer.weights
        ]
        self._writer("train").add_summary(epoch, *values)

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            scalars = {f"evaluation_{k}_vs_iterations": v for k, v in _scalars(logs or {})}
            self._writer("validation").add_scalars(optimizer.iterations, scalars)
        if not self._in_fit:
            self._close_writers()


def _scalars(logs: dict):
    """``(name, float)`` for each log TensorBoard can show as a scalar (arrays of one value
    included; a per-class array is left out)."""
    for name, value in (logs or {}).items():
        if isinstance(value, (int, float)):
            yield name, float(value)
        elif getattr(value, "size", None) == 1:
            yield name, float(value.reshape(()) if hasattr(value, "reshape") else value)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class BackupAndRestore(Callback):
    """Back up the training state so that a ``fit`` interrupted by an error resumes where the
    last backup left it when run again with this callback (Keras 3).

    Each backup replaces ``backup_dir/latest.fastnn`` atomically: the weights, the optimizer's
    state, the layers' random generators, fit's shuffle seed, and the epoch (and, with an
    integer ``save_freq``, how many of its batches were done). The next ``fit`` restores them
    at ``on_train_begin`` and starts at that epoch, so it ends with the weights an uninterrupted
    run would have. Unlike Keras, which repeats a partly done epoch from its first batch,
    fastnn skips the batches the backup had done (that epoch's logged metrics then average the
    remaining batches only). With ``double_checkpoint`` the previous backup is kept as
    ``latest.fastnn.bkp`` and used if the latest cannot be read. ``delete_checkpoint`` removes
    the backup when fit ends normally (and the folder, once empty).
    """

    FILE_FORMAT = "fastnn.backup"

    def __init__(
        self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True
    ):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and not (_is_int(save_freq) and save_freq > 0):
            raise ValueError(
                "Invalid value for argument `save_freq`. "
                f"Received: save_freq={save_freq!r}. "
                "Expected either 'epoch' or a positive integer value."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint, self.delete_checkpoint = double_checkpoint, delete_checkpoint
        self._path = os.path.join(self.backup_dir, "latest.fastnn")
        self._previous_path = self._path + ".bkp"
        self._batches_since_backup = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._batches_since_backup = 0
        for path in (self._path, self._previous_path):
            if not os.path.exists(path):
                continue
            if not getattr(self.model, "built", True):
                raise ValueError(
                    "To use the BackupAndRestore callback, you model must be built before you "
                    f"call `fit()`. Model {self.model.name} is unbuilt. You can build it "
                    "beforehand by calling it on a batch of data."
                )
            try:
                epoch, batch = _restore_training_state(self.model, path, self.FILE_FORMAT)
            except (OSError, ValueError):
                if path == self._path and os.path.exists(self._previous_path):
                    continue  # as Keras: a backup that cannot be read falls back to the previous
                raise
            self.model._resume_at = (epoch, batch)
            return

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_backup += 1
        if self._batches_since_backup >= self.save_freq:
            self._batches_since_backup = 0
            self._back_up(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._back_up(epoch + 1, 0)

    def _back_up(self, epoch: int, batch: int) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            os.replace(self._path, self._previous_path)
        _save_training_state(self.model, self._path, self.FILE_FORMAT, epoch, batch)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        for path in (self._path, self._previous_path):
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.backup_dir) and not os.listdir(self.backup_dir):
            os.rmdir(self.backup_dir)


def _save_training_state(model, path: str, file_format: str, epoch: int, batch: int) -> None:
    """Write the weights, optimizer state, random states, shuffle seed and the position in
    training to one ``.fastnn``-style zip (JSON manifest and ``.npy`` arrays), atomically."""
    from fastnn.saving import native

    arrays = {}
    manifest = {"format": file_format, "version": native.VERSION, "epoch": epoch, "batch": batch}
    manifest["weights"] = native._add_arrays(arrays, "weights", [v.value for v in model.weights])
    manifest["names"] = [v.path for v in model.weights]
    optimizer = model.optimizer
    manifest["optimizer_variables"] = native._optimizer_variables(model, optimizer)
    manifest["optimizer_state"] = (
        None
        if optimizer is None
        else native._add_arrays(arrays, "optimizer_state", optimizer.get_state())
    )
    manifest["training_state"] = {
        "shuffle_seed": getattr(model, "_shuffle_seed", None),
        # in layer order: a model built again in a new process names its layers otherwise
        "random_states": [
            state for _, layer in native._all_layers(model) if (state := layer.get_random_state())
        ],
    }
    native._write_zip(path, manifest, arrays, overwrite=True)


def _restore_training_state(model, path: str, file_format: str) -> tuple[int, int]:
    """Read what ``_save_training_state`` wrote into ``model``; everything is checked before
    anything changes. Returns (epoch, batch)."""
    from fastnn.layers.base import assign_all
    from fastnn.saving import native

    with native._open(path) as archive:
        manifest = archive.manifest(file_format)
        position = [archive.field(manifest, key, int) for key in ("epoch", "batch")]
        if min(position) < 0:
            raise archive.error(f"the epoch and batch {position} are negative")
        stored = native._stored_order(manifest, model)
        weights = archive.arrays(manifest, "weights", [v.value for v in stored])
        optimizer_state = None
        if manifest.get("optimizer_state") is not None and model.optimizer is not None:
            optimizer_state = native._optimizer_state(archive, manifest, model, stored)
        training = archive.field(manifest, "training_state", dict)
        random_states = _checked_random_states(archive, training.get("random_states"), model)
        shuffle_seed = training.get("shuffle_seed")
        if shuffle_seed is not None and not (
            type(shuffle_seed) is int and 0 <= shuffle_seed < 2**63  # noqa: E721 (no bools)
        ):
            raise archive.error(f"the shuffle seed {shuffle_seed!r:.40} is not an integer")
    assign_all(stored, weights, f"Model '{model.name}'", lambda var: var.path)
    if optimizer_state is not None:
        model.optimizer.set_state(optimizer_state)
    for layer, state in random_states:
        layer.set_random_state(state)
    model._shuffle_seed = shuffle_seed
    return position[0], position[1]


def _checked_random_states(archive, states, model) -> list:
    """(layer, state) for each layer that draws random numbers, in order; checked."""
    from fastnn.saving import native

    drawing = [layer for _, layer in native._all_layers(model) if layer.get_random_state()]
    if not isinstance(states, list) or len(states) != len(drawing):
        raise archive.error(
            f"it holds random states for {len(states) if isinstance(states, list) else '?'} "
            f"layers, the model has {len(drawing)} layers that draw random numbers"
        )
    for layer, state in zip(drawing, states):
        try:
            np.random.default_rng().bit_generator.state = state
        except Exception as error:  # TypeError, ValueError, KeyError, OverflowError, ...
            raise archive.error(
                f"layer '{layer.name}' has an invalid random state: {error}"
            ) from None
    return list(zip(drawing, states))
