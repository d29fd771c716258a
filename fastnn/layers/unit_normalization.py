"""UnitNormalization: scales each sample's vectors to unit L2 norm (Keras 3's layer).

Kept apart from normalization.py (BatchNormalization and its kernels), which another change was
editing when this layer was written.
"""

from __future__ import annotations

import numpy as np

from fastnn.layers.base import Layer

#: Keras's lower bound on the norm: ``ops.normalize(..., epsilon=1e-12)``.
EPSILON = 1e-12


class UnitNormalization(Layer):
    """``x * min(1 / ||x||, 1 / epsilon)`` with the L2 norm over ``axis`` (epsilon 1e-12).

    Args:
        axis: an int or a list of ints, the axes the norm runs over.

    Example: ``UnitNormalization()(Dense(16)(x))`` gives rows of norm 1.
    """

    passes_mask = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            self.axis = [int(a) for a in axis]
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            self.axis = int(axis)
        else:
            raise TypeError(
                "Invalid value for `axis` argument: "
                "expected an int or a list/tuple of ints. "
                f"Received: axis={axis}"
            )
        self._axes = tuple(self.axis) if isinstance(self.axis, list) else (self.axis,)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        for axis in self._axes:
            if axis >= len(input_shape) or axis < -len(input_shape):
                raise ValueError(
                    f"Axis {self.axis} is out of bounds for input shape {input_shape}."
                )
        return input_shape

    def _squares(self, a, b):
        """sum(a * b) over the axes, kept as size-1 axes (one pass for the last axis)."""
        if self._axes in ((-1,), (a.ndim - 1,)):
            return np.einsum("...i,...i->...", a, b)[..., None]
        return np.sum(a * b, axis=self._axes, keepdims=True)

    def forward(self, inputs, training):
        x = inputs
        with np.errstate(divide="ignore"):
            scale = 1 / np.sqrt(self._squares(x, x))
        np.minimum(scale, x.dtype.type(1 / EPSILON), out=scale)
        y = x * scale
        return y, (y, scale)

    def backward(self, ctx, grad_outputs):
        y, scale = ctx
        # Where the bound holds, the output is x / epsilon: a linear map.
        free = scale < y.dtype.type(1 / EPSILON)
        along = self._squares(grad_outputs, y) * free
        grad = grad_outputs - y * along
        grad *= scale
        return grad

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
