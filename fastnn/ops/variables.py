"""``fastnn.Variable``: keras.Variable on top of the Variable layers and optimizers already use.

It adds Keras's constructor; operators (``v * 2 + b`` records on a tape that watches ``v``),
``assign``, ``assign_add`` and ``assign_sub`` are the layer weights' own (``layers.base.Variable``).
"""

from __future__ import annotations

import numpy as np

from fastnn import backend, initializers
from fastnn.naming import unique_name
from fastnn.ops.tensor import Variable as _Weight
from fastnn.ops.tensor import as_array


class Variable(_Weight):
    """A mutable array: ``Variable(initializer, shape=None, dtype=None, trainable=True,
    name=None)`` as keras.Variable, ``initializer`` an array-like value or, with ``shape``, an
    initializer (name or callable). A GradientTape watches it when it is trainable."""

    __slots__ = ()

    def __init__(
        self,
        initializer=None,
        shape=None,
        dtype=None,
        trainable: bool = True,
        autocast: bool = True,
        aggregation: str = "none",
        synchronization: str = "auto",
        name: str | None = None,
        initial_value=None,
    ) -> None:
        if initializer is None:
            initializer = initial_value
        if initializer is None:
            raise ValueError("Variable: give `initializer` (an initial value or initializer)")
        if name is not None and (not isinstance(name, str) or "/" in name):
            raise ValueError(f"Variable: `name` must be a string without '/'; got {name!r}")
        name = name or unique_name("variable")
        value = _initial_value(initializer, shape, dtype)
        super().__init__(value, name=name, path=name, trainable=bool(trainable), regularizer=None)

    def __repr__(self) -> str:
        return (
            f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype.name}, "
            f"value={np.array2string(self.value, threshold=20)}>"
        )


def _initial_value(initializer, shape, dtype) -> np.ndarray:
    if isinstance(initializer, str):
        initializer = initializers.get(initializer)
    if callable(initializer):
        if shape is None:
            raise ValueError(
                f"Variable: an initializer ({initializer!r}) needs `shape`; got shape=None"
            )
        dtype = np.dtype(dtype or backend.floatx())
        return np.array(initializer(tuple(shape), dtype=dtype.name), dtype=dtype)
    value = np.array(as_array(initializer, dtype))
    if shape is not None and tuple(shape) != value.shape:
        raise ValueError(f"Variable: the initial value has shape {value.shape}, not {shape}")
    return value
