"""UnitNormalization: scales each sample's vectors to unit L2 norm (Keras 3's layer).

Kept apart from normalization.py (BatchNormalization and its kernels), which another change was
editing when this layer was written.
"""

from __future__ import annotations

import numpy as np

from fastnn import kernels
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

    def _over_last_axis(self, ndim: int) -> bool:
        return self._axes in ((-1,), (ndim - 1,))

    def forward(self, inputs, training):
        x = np.ascontiguousarray(inputs)
        bound = x.dtype.type(1 / EPSILON)
        if self._over_last_axis(x.ndim):  # rows, in one kernel pass
            rows = x.reshape(-1, x.shape[-1])
            y, scale = np.empty_like(rows), np.empty(rows.shape[0], x.dtype)
            kernels.unit_norm.unit_norm_forward(rows, bound, y, scale)
            return y.reshape(x.shape), (y, scale)
        with np.errstate(divide="ignore"):
            scale = 1 / np.sqrt(np.sum(x * x, axis=self._axes, keepdims=True))
        np.minimum(scale, bound, out=scale)
        y = x * scale
        return y, (y, scale)

    def backward(self, ctx, grad_outputs):
        y, scale = ctx
        grad = np.ascontiguousarray(grad_outputs, y.dtype)
        bound = y.dtype.type(1 / EPSILON)
        if scale.ndim == 1:  # the forward ran on rows
            grad_x = np.empty_like(y)
            kernels.unit_norm.unit_norm_backward(grad.reshape(y.shape), y, scale, bound, grad_x)
            return grad_x.reshape(grad.shape)
        # Where the bound holds, the output is x * bound: a linear map.
        along = np.sum(grad * y, axis=self._axes, keepdims=True) * (scale < bound)
        grad_x = grad - y * along
        grad_x *= scale
        return grad_x

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}
