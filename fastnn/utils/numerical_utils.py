"""keras.utils's ``to_categorical`` and ``normalize`` on numpy arrays."""

from __future__ import annotations

import numpy as np


def to_categorical(x, num_classes: int | None = None, dtype="float64") -> np.ndarray:
    """One-hot encode integer labels: (N,) or (N, 1) -> (N, num_classes); (..., 1) -> (...,
    num_classes). Float64 as Keras 3 returns it (``dtype`` is tf.keras's argument)."""
    x = np.array(x, dtype="int64")
    shape = x.shape
    if shape and shape[-1] == 1 and len(shape) > 1:
        shape = shape[:-1]
    x = x.reshape(-1)
    if not num_classes:
        if x.size == 0:
            raise ValueError("to_categorical: got no labels; pass `num_classes` for empty input")
        num_classes = int(np.max(x)) + 1
    num_classes = int(num_classes)
    outside = (x >= num_classes) | (x < -num_classes)
    if outside.any():
        raise IndexError(
            f"to_categorical: label {x[np.argmax(outside)]} is out of range for "
            f"num_classes={num_classes} (labels are 0 to {num_classes - 1})"
        )
    categorical = np.zeros((x.shape[0], num_classes), dtype=dtype)
    categorical[np.arange(x.shape[0]), x] = 1  # a negative label counts from the end, as in Keras
    return categorical.reshape(shape + (num_classes,))


def normalize(x, axis: int = -1, order: int = 2) -> np.ndarray:
    """``x`` divided by its ``order``-norm along ``axis`` (zero norms left as 1), as Keras does
    for numpy arrays: a 1-D ``x`` of shape (n,) comes back as (1, n)."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, axis)
