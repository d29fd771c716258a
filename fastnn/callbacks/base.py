"""The Callback base class with Keras's hooks, and the History every fit returns."""

from __future__ import annotations

import numbers
import sys


def is_interactive() -> bool:
    """True when stdout is a terminal (progress bars redraw in place there)."""
    return bool(getattr(sys.stdout, "isatty", lambda: False)())


class Callback:
    """Base class: override the ``on_*`` hooks; ``self.model`` and ``self.params`` are set.

    As in Keras, every hook gets a logs dict (``{}`` when there is nothing to report), and
    ``on_batch_begin`` / ``on_batch_end`` are the training batch hooks' older names.
    """

    #: Under a DataParallel distribution only rank 0 runs it: it prints or writes files.
    main_rank_only = False

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


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
