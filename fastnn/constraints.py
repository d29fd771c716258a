"""Weight constraints, as keras.constraints: projections the optimizer applies to a weight after
each update (``w = constraint(w)``): ``MaxNorm``, ``MinMaxNorm``, ``NonNeg``, ``UnitNorm``.

>>> import numpy as np
>>> NonNeg()(np.array([-1.0, 2.0]))
array([0., 2.])
"""

from __future__ import annotations

import inspect

import numpy as np

from fastnn import backend
from fastnn.ops.tensor import unwrap
from fastnn.saving.registry import get_registered_object, register_builtins, registered_key


class Constraint:
    """Base class: ``__call__(w)`` returns the projected weight (here: ``w`` unchanged)."""

    def __call__(self, w):
        return w

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


def _array(w) -> np.ndarray:
    """The array behind a weight (a Variable, a tensor or an array)."""
    return np.asarray(unwrap(w))


def _norms(w: np.ndarray, axis) -> np.ndarray:
    """L2 norms of ``w`` along ``axis`` (an int or a list of ints), kept as size-1 axes."""
    axis = tuple(axis) if isinstance(axis, (list, tuple)) else axis
    return np.sqrt(np.sum(np.square(w), axis=axis, keepdims=True))


def _rescaled(w: np.ndarray, desired: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``w * desired / (epsilon + norms)`` in ``w``'s dtype (Keras's ``backend.epsilon()``)."""
    scale = desired / (w.dtype.type(backend.epsilon()) + norms)
    return (w * scale).astype(w.dtype, copy=False)


class MaxNorm(Constraint):
    """Rescales the weights along ``axis`` (e.g. each unit's incoming ones) to an L2 norm of at
    most ``max_value``. For a Conv2D kernel ``(kh, kw, cin, filters)``, ``axis=[0, 1, 2]``."""

    def __init__(self, max_value=2, axis=0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w):
        w = _array(w)
        norms = _norms(w, self.axis)
        return _rescaled(w, np.clip(norms, 0, self.max_value), norms)

    def get_config(self) -> dict:
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """Sets negative weights to zero."""

    def __call__(self, w):
        return np.maximum(_array(w), 0)


class UnitNorm(Constraint):
    """Rescales the weights along ``axis`` to unit L2 norm."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        w = _array(w)
        norms = _norms(w, self.axis)
        return (w / (w.dtype.type(backend.epsilon()) + norms)).astype(w.dtype, copy=False)

    def get_config(self) -> dict:
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves the L2 norms along ``axis`` towards ``[min_value, max_value]``: each becomes
    ``rate * clip(norm, min_value, max_value) + (1 - rate) * norm``."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w):
        w = _array(w)
        norms = _norms(w, self.axis)
        clipped = np.clip(norms, self.min_value, self.max_value)
        desired = self.rate * clipped + (1 - self.rate) * norms
        return _rescaled(w, desired.astype(w.dtype, copy=False), norms)

    def get_config(self) -> dict:
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }


# Keras exports the classes under snake-case names too.
max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

_CLASSES = {cls.__name__: cls for cls in (Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm)}
_ALIASES = {
    "constraint": Constraint,
    "max_norm": MaxNorm,
    "min_max_norm": MinMaxNorm,
    "non_neg": NonNeg,
    "unit_norm": UnitNorm,
}


def serialize(constraint) -> dict | None:
    """``{"class_name", "config"}`` of a constraint (None for None); a registered class by its
    registered name; a plain function as Keras writes one (``class_name`` 'function', its
    registered name or ``__name__`` as config), which loads from ``custom_objects``."""
    if constraint is None:
        return None
    if not hasattr(constraint, "get_config"):
        if not hasattr(constraint, "__name__"):
            raise ValueError(
                f"Cannot serialize the constraint {constraint!r}: it has no get_config(); "
                "subclass fastnn.constraints.Constraint"
            )
        return {
            "module": "builtins",
            "class_name": "function",
            "config": registered_key(constraint) or constraint.__name__,
            "registered_name": "function",
        }
    cls = type(constraint)
    registered = cls.__dict__.get("_registered_name")
    return {
        "class_name": cls.__name__,
        "config": constraint.get_config(),
        **({"registered_name": registered} if registered else {}),
    }


def deserialize(config: dict, custom_objects: dict | None = None) -> Constraint:
    """The constraint a ``serialize`` (or Keras) config describes."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"Could not interpret constraint config {config!r}")
    if config["class_name"] == "function":  # a plain function, by the name it was saved under
        key = config.get("config")
        found = get_registered_object(key, custom_objects) if isinstance(key, str) else None
        if not callable(found):
            raise ValueError(
                f"Unknown constraint function {key!r}: register it with "
                "fastnn.saving.register_keras_serializable() or pass it in custom_objects"
            )
        return found
    cls = None
    for key in (config.get("registered_name"), config["class_name"]):
        if isinstance(key, str) and cls is None:
            cls = get_registered_object(key, custom_objects)
    cls = cls or _CLASSES.get(config["class_name"]) or _ALIASES.get(config["class_name"])
    if cls is None:
        raise ValueError(
            f"Unknown constraint {config['class_name']!r}. Valid names: {sorted(_CLASSES)}; "
            "pass a custom class in custom_objects"
        )
    return cls.from_config(dict(config.get("config") or {}))


def get(identifier):
    """A constraint from None, a name ('max_norm', 'NonNeg', ...), a config dict, a class, an
    instance or a callable."""
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        obj = _ALIASES.get(identifier) or _CLASSES.get(identifier)
        if obj is None:
            raise ValueError(
                f"Could not interpret constraint identifier: {identifier!r}. Valid names: "
                f"{sorted(_ALIASES)}"
            )
    else:
        obj = identifier
    if inspect.isclass(obj):
        return obj()
    if callable(obj):
        return obj
    raise ValueError(f"Could not interpret constraint identifier: {identifier!r}")


def apply(variable) -> None:
    """Project ``variable`` (a weight with ``.value``) by its ``constraint``, in place."""
    constraint = getattr(variable, "constraint", None)
    if constraint is None:
        return
    value = variable.value
    projected = np.asarray(unwrap(constraint(variable)))
    if projected.shape != value.shape:
        raise ValueError(
            f"The constraint {constraint!r} of {getattr(variable, 'path', 'a variable')!r} "
            f"returned shape {projected.shape}; expected the weight's shape {value.shape}"
        )
    value[...] = projected


# Saved configs (fastnn.saving.deserialize_keras_object) may name these classes.
register_builtins(_CLASSES, kind="constraints")
