"""``fastnn.Variable``: keras.Variable on top of the Variable layers and optimizers already use.

It adds Keras's constructor, ``assign_add``/``assign_sub`` and the Tensor operators (so
``v * 2 + b`` records on a tape that watches ``v``). Layer weights (``layers.base.Variable``)
work with every op and tape as they are; only Python operators need this class.
"""

from __future__ import annotations

import numpy as np

from fastnn import backend, initializers
from fastnn.layers.base import Variable as _Weight
from fastnn.layers.base import unique_name
from fastnn.ops.tape import TensorOps, as_array, unwrap


class Variable(_Weight, TensorOps):
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

    def assign(self, value) -> np.ndarray:
        """Overwrite the value in place (same shape); returns it."""
        super().assign(unwrap(value))
        return self.value

    def assign_add(self, delta) -> np.ndarray:
        """Add ``delta`` to the value in place; returns it."""
        return self.assign(self.value + unwrap(delta))

    def assign_sub(self, delta) -> np.ndarray:
        """Subtract ``delta`` from the value in place; returns it."""
        return self.assign(self.value - unwrap(delta))

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
