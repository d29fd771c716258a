"""Callbacks of a few lines each: LambdaCallback, CSVLogger, TerminateOnNaN."""

from __future__ import annotations

import csv
import os

import numpy as np

from fastnn.callbacks.base import Callback


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

    main_rank_only = True  # under DataParallel, rank 0 alone prints / writes

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
