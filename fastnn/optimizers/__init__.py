"""Optimizers with Keras 3 names, arguments, defaults and update math, applied in place by fused
kernels (``fastnn.kernels.optimizers``), and the learning-rate ``schedules``.

``base`` holds the ``Optimizer`` base class (learning rate, clipping, weight decay, EMA,
gradient accumulation, state); one module per family holds the optimizers: ``sgd`` (SGD, Lion),
``adam`` (Adam, AdamW, Nadam, Adamax), ``adaptive`` (RMSprop, Adagrad, Adadelta), ``ftrl``.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> w = SimpleNamespace(value=np.ones(3, np.float32), grad=np.full(3, 0.5, np.float32))
>>> opt = get("adam")
>>> opt.apply([w])
>>> opt.iterations
1
"""

from __future__ import annotations

from fastnn.optimizers import schedules
from fastnn.optimizers.adam import Adam, Adamax, AdamW, Nadam
from fastnn.optimizers.adaptive import Adadelta, Adagrad, RMSprop
from fastnn.optimizers.base import Optimizer
from fastnn.optimizers.ftrl import Ftrl
from fastnn.optimizers.sgd import SGD, Lion
from fastnn.saving.registry import get_registered_object, register_builtins

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Ftrl",
    "Lion",
    "Nadam",
    "Optimizer",
    "RMSprop",
    "deserialize",
    "get",
    "schedules",
    "serialize",
    "valid_names",
]

_CLASSES = {
    cls.__name__.lower(): cls
    for cls in (SGD, Adam, AdamW, Nadam, Adamax, RMSprop, Adagrad, Adadelta, Lion, Ftrl)
}


def valid_names() -> list[str]:
    return sorted(_CLASSES)


def serialize(optimizer: Optimizer) -> dict:
    """``{"class_name", "config"}`` of an optimizer (a learning-rate function cannot be saved)."""
    config = optimizer.get_config()
    if callable(config["learning_rate"]):
        raise ValueError(
            f"The learning rate of optimizer '{optimizer.name}' is a Python function "
            f"({config['learning_rate']!r}) and cannot be saved"
        )
    return {"class_name": type(optimizer).__name__, "config": config}


def deserialize(config: dict, custom_objects: dict | None = None) -> Optimizer:
    """The optimizer of a ``{"class_name", "config"}`` dict: fastnn's (any case), or a
    subclass registered with ``fastnn.saving.register_keras_serializable`` or in
    ``custom_objects``."""
    name = config.get("class_name")
    cls = None
    for key in (config.get("registered_name"), name):
        if isinstance(key, str) and cls is None:
            cls = get_registered_object(key, custom_objects)
    if cls is None:
        cls = _CLASSES.get(str(name).lower())
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise ValueError(
            f"Could not interpret optimizer config {config!r}: unknown class_name. "
            f"Valid names: {valid_names()}"
        )
    return cls.from_config(config.get("config", {}), custom_objects=custom_objects)


def get(identifier) -> Optimizer:
    """An optimizer from a name ('adam', 'adamw', 'sgd', ...; any case), a ``{"class_name",
    "config"}`` dict, an Optimizer class or an instance (returned as is).
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier.lower())
        if cls is None:
            raise ValueError(
                f"Could not interpret optimizer identifier: {identifier!r}. "
                f"Valid names: {valid_names()}"
            )
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Pass a name "
        f"({valid_names()}) or an Optimizer instance."
    )


# Saved configs (fastnn.saving.deserialize_keras_object) may name these classes.
register_builtins({cls.__name__: cls for cls in _CLASSES.values()}, kind="optimizers")
