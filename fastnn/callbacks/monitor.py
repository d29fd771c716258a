"""Callbacks that watch a logged value: EarlyStopping, ModelCheckpoint, and the mode
(min or max) and improvement test they share with ReduceLROnPlateau, as Keras 3 decides them."""

from __future__ import annotations

import os
import warnings

import numpy as np

from fastnn.callbacks.base import Callback


def monitor_mode(monitor: str, mode: str) -> str:
    """``mode`` checked; for 'auto', what the monitor's name decides ('min' for a loss, 'max'
    for an accuracy or AUC), else 'auto' until the model's metrics decide (``resolve_mode``)."""
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
    """'up' or 'down' for the model's metric logged as ``name`` (``"mae"``, or with an output's
    prefix ``"head_mae"``); None if no metric of that name has a known direction."""
    for metric in _model_metrics(model):
        if name != metric.name and not name.endswith(f"_{metric.name}"):
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


def _model_metrics(model) -> list:
    """The metrics compiled for each output (once the first batch made them), then those the
    model holds as attributes."""
    compiled = getattr(model, "_output_metrics", None) or []
    return [m for metrics in compiled for m in metrics] + list(getattr(model, "metrics", []))


def resolve_mode(callback) -> str:
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


def beats(current, best, mode: str, min_delta=0.0) -> bool:
    """True if ``current`` improves on ``best`` (None: nothing yet) by more than ``min_delta``."""
    if best is None:
        return True
    # as Keras (ops.greater/ops.less on Python floats): the shifted value and the reference
    # are compared in float32, so 0.7 + 0.1 does not beat 0.8
    if mode == "max":
        return bool(np.float32(current - abs(min_delta)) > np.float32(best))
    return bool(np.float32(current + abs(min_delta)) < np.float32(best))


def monitored_value(callback, logs, what: str):
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
        self.mode = monitor_mode(monitor, mode)
        self.min_delta = abs(min_delta)
        self.baseline, self.restore_best_weights = baseline, restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def _better(self, value, reference) -> bool:
        return beats(value, reference, resolve_mode(self), self.min_delta)

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best_epoch = 0, 0, 0
        self.best, self.best_weights = None, None

    def on_epoch_end(self, epoch, logs=None):
        resolve_mode(self)  # as Keras: first, so a monitor no metric explains raises
        current = monitored_value(self, logs, "Early stopping")
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


class ModelCheckpoint(Callback):
    """Save the model (or its weights) every epoch, or only when ``monitor`` improves (Keras).

    ``filepath`` may hold ``str.format`` fields: ``{epoch}`` (1-based), ``{batch}`` with an
    integer ``save_freq``, and any log key such as ``{val_loss:.3f}``. A whole model goes to
    ``.fastnn`` or ``.keras``, weights alone (``save_weights_only=True``) to ``.weights.npz`` or
    ``.weights.h5``. Every write is atomic.
    """

    main_rank_only = True  # under DataParallel, rank 0 alone prints / writes

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
        self.mode = monitor_mode(monitor, mode)
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
            if not beats(current, self.best, resolve_mode(self)):
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
