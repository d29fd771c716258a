"""Callbacks with Keras 3's names, arguments and hooks: the History every fit returns, the
progress display, early stopping, checkpoints and backups, learning-rate control, CSV and
TensorBoard logs.

``base`` holds ``Callback`` and ``History``; ``callback_list`` the container fit, evaluate
and predict dispatch through; each other module a family of callbacks.
"""

import importlib

from fastnn.callbacks.base import Callback, History, is_interactive
from fastnn.callbacks.callback_list import CallbackList
from fastnn.callbacks.learning_rate import LearningRateScheduler, ReduceLROnPlateau
from fastnn.callbacks.monitor import EarlyStopping, ModelCheckpoint
from fastnn.callbacks.progbar import ProgbarLogger
from fastnn.callbacks.simple import CSVLogger, LambdaCallback, TerminateOnNaN

#: Callbacks whose modules cost start-up time (zipfile, socket): imported on first use.
_LAZY = {
    "BackupAndRestore": "fastnn.callbacks.backup",
    "TensorBoard": "fastnn.callbacks.tensorboard",
}

__all__ = [
    "BackupAndRestore",
    "CSVLogger",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ProgbarLogger",
    "ReduceLROnPlateau",
    "TensorBoard",
    "TerminateOnNaN",
    "is_interactive",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastnn.callbacks' has no attribute {name!r}")
