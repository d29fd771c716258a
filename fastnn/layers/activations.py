"""Activation layers with arguments: ReLU, LeakyReLU, PReLU, ELU and Softmax (Keras 3's).

Each keeps its input (and ELU its output) for the backward; the elementwise ones run the kernels
of ``fastnn.kernels.activations`` over the flat arrays, Softmax its row kernel over the axes it
normalizes, moved last.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from fastnn import constraints, initializers, kernels, regularizers
from fastnn.layers.base import Layer, shape_error


def _check_non_negative(layer: Layer, name: str, value, allow_none: bool = False):
    """Keras's argument check: a number >= 0 (or None where allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or value < 0:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}': `{name}` must be "
            f"{'None or ' if allow_none else ''}a number >= 0; received {name}={value!r}"
        )
    return value


def _contiguous(array, dtype) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=dtype)


class ReLU(Layer):
    """Keras's relu with arguments, elementwise: x above ``threshold`` (else 0), clipped to
    ``max_value``, plus ``negative_slope * (x - threshold)`` below the threshold.

    Input and output shape: any. Example: ``ReLU(max_value=6.0)(x)``.
    """

    passes_mask = True

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = _check_non_negative(self, "max_value", max_value, allow_none=True)
        self.negative_slope = _check_non_negative(self, "negative_slope", negative_slope)
        self.threshold = _check_non_negative(self, "threshold", threshold)

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, inputs, training):
        x = _contiguous(inputs, self.dtype)
        y = np.empty_like(x)
        kernels.activations.relu_forward(
            x.reshape(-1), self.negative_slope, self.max_value, self.threshold, y.reshape(-1)
        )
        return y, x

    def backward(self, ctx, grad_outputs):
        x = ctx
        grad = _contiguous(grad_outputs, x.dtype)
        out = np.empty_like(x)
        kernels.activations.relu_backward(
            grad.reshape(-1), x.reshape(-1), self.negative_slope, self.max_value, self.threshold,
            out.reshape(-1),
        )  # fmt: skip
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }


class LeakyReLU(ReLU):
    """x if x > 0 else ``negative_slope * x``, elementwise (Keras's default slope is 0.3 here,
    0.2 in ``activations.leaky_relu``).

    Input and output shape: any. Example: ``LeakyReLU(negative_slope=0.1)(x)``.
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:  # Keras 2's name, which Keras 3 still takes
            negative_slope = kwargs.pop("alpha")
            warnings.warn(
                "Argument `alpha` is deprecated. Use `negative_slope` instead.", stacklevel=2
            )
        super().__init__(negative_slope=negative_slope, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["max_value"], config["threshold"]
        return config


class ELU(Layer):
    """x if x > 0 else ``alpha * (exp(x) - 1)``, elementwise.

    Input and output shape: any. Example: ``ELU(alpha=0.5)(x)``.
    """

    passes_mask = True

    def __init__(self, alpha=1.0, **kwargs):
        super().__init__(**kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)):
            raise ValueError(f"ELU '{self.name}': `alpha` must be a number; received {alpha!r}")
        self.alpha = alpha

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, inputs, training):
        x = _contiguous(inputs, self.dtype)
        y = np.empty_like(x)
        kernels.activations.elu_forward(x.reshape(-1), self.alpha, y.reshape(-1))
        return y, (x, y)

    def backward(self, ctx, grad_outputs):
        x, y = ctx
        grad = _contiguous(grad_outputs, x.dtype)
        out = np.empty_like(x)
        kernels.activations.elu_backward(
            grad.reshape(-1), x.reshape(-1), y.reshape(-1), self.alpha, out.reshape(-1)
        )
        return out

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """x if x > 0 else ``alpha * x``, with ``alpha`` a trainable weight of the input's shape
    (batch axis aside), of size 1 along ``shared_axes``.

    Input and output shape: ``(batch, ...)``. Weights: ``alpha`` (input_shape[1:] with 1 on the
    shared axes). Example: ``PReLU(shared_axes=[1, 2])(images)``: one alpha per channel.
    """

    passes_mask = True

    def __init__(
        self,
        alpha_initializer="Zeros",
        alpha_regularizer=None,
        alpha_constraint=None,
        shared_axes=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            axes = list(shared_axes) if isinstance(shared_axes, (list, tuple)) else [shared_axes]
            if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
                raise ValueError(
                    f"PReLU '{self.name}': `shared_axes` must be axis numbers (1 is the first "
                    f"after the batch axis); received shared_axes={shared_axes!r}"
                )
            self.shared_axes = [int(a) for a in axes]

    def _check_shared_axes(self, input_shape) -> None:
        for axis in self.shared_axes or ():
            if not 1 <= axis < len(input_shape):
                raise shape_error(
                    self,
                    f"shared_axes={self.shared_axes} names an axis the input lacks (the batch "
                    "axis 0 cannot be shared)",
                    f"axes in 1..{len(input_shape) - 1}",
                    tuple(input_shape),
                )

    def build(self, input_shape):
        self._check_shared_axes(input_shape)
        shape = [
            1 if i in (self.shared_axes or ()) else n for i, n in enumerate(input_shape[1:], 1)
        ]
        if None in shape:
            raise shape_error(
                self,
                "every axis but the batch axis and the shared ones must be known",
                "(batch, known sizes...)",
                tuple(input_shape),
            )
        self.alpha = self.add_weight(
            shape,
            self.alpha_initializer,
            "alpha",
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
        )

    def check_input_shape(self, input_shape):
        shared = self.shared_axes or ()
        sizes = [None if i in shared else n for i, n in enumerate(self.alpha.shape, 1)]
        if len(input_shape) != len(sizes) + 1 or any(
            s is not None and s != n for s, n in zip(sizes, input_shape[1:])
        ):
            raise shape_error(self, "incompatible input shape", (None, *sizes), tuple(input_shape))

    def compute_output_shape(self, input_shape):
        return input_shape

    def _alpha_row(self, sample_shape) -> np.ndarray:
        """alpha over one sample's values, flat: (prod(sample_shape),)."""
        alpha = self.alpha.value
        if alpha.shape == sample_shape:
            return alpha.reshape(-1)
        return np.ascontiguousarray(np.broadcast_to(alpha, sample_shape)).reshape(-1)

    def forward(self, inputs, training):
        x = _contiguous(inputs, self.dtype)
        rows = x.reshape(len(x), -1)
        alpha = self._alpha_row(x.shape[1:])
        y = np.empty_like(x)
        kernels.activations.prelu_forward(rows, alpha, y.reshape(rows.shape))
        return y, (x, alpha)

    def backward(self, ctx, grad_outputs):
        x, alpha = ctx
        rows = x.reshape(len(x), -1)
        grad = _contiguous(grad_outputs, x.dtype).reshape(rows.shape)
        out = np.empty_like(x)
        grad_alpha = np.zeros_like(alpha)
        kernels.activations.prelu_backward(grad, rows, alpha, out.reshape(rows.shape), grad_alpha)
        if self.trainable:
            shared = tuple(a - 1 for a in self.shared_axes or ())
            grad_alpha = grad_alpha.reshape(x.shape[1:]).sum(axis=shared, keepdims=True)
            self.alpha.grad += grad_alpha
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        }


class Softmax(Layer):
    """exp(x) / sum(exp(x)) over ``axis`` (an int or a list of ints); with ``mask`` (bool, or
    numbers > 0.5 kept, broadcastable to the input) masked values get 0 and are left out of
    the sums, as Keras.

    Input and output shape: any. Example: ``Softmax()(scores, mask=keep)``.
    """

    supports_masking = True
    passes_mask = True

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        axes = axis if isinstance(axis, (list, tuple)) else [axis]
        if not axes or not all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes
        ):
            raise ValueError(
                f"Softmax '{self.name}': `axis` must be an int or a list of ints; received "
                f"axis={axis!r}"
            )
        self.axis = list(axis) if isinstance(axis, (list, tuple)) else int(axis)

    def _axes(self, ndim: int, shape) -> tuple:
        """The softmax axes, non-negative and sorted."""
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if any(not -ndim <= a < ndim for a in axes):
            rank = max(a + 1 if a >= 0 else -a for a in axes)
            raise shape_error(
                self, f"axis={self.axis} is out of range", f"a shape of rank >= {rank}", shape
            )
        return tuple(sorted({a % ndim for a in axes}))

    def compute_output_shape(self, input_shape):
        self._axes(len(input_shape), tuple(input_shape))
        return input_shape

    def standardize_mask(self, inputs, mask) -> np.ndarray:
        mask = np.asarray(mask)
        mask = mask if mask.dtype == bool else mask > 0.5
        return self._check_mask(inputs.shape, mask)

    def _check_mask(self, shape, mask) -> np.ndarray:
        fits = mask.ndim <= len(shape) and all(
            m in (1, n) for m, n in zip(mask.shape[::-1], shape[::-1])
        )
        if not fits:
            raise ValueError(
                f"Softmax '{self.name}': the mask must be broadcastable to the inputs (each of "
                "its axes 1 or the input's, no more axes than it); "
                f"got inputs.shape={tuple(shape)}, mask.shape={mask.shape}"
            )
        return mask

    def forward(self, inputs, training, mask=None):
        x = inputs
        if mask is not None:
            mask = self._check_mask(x.shape, np.asarray(mask, dtype=bool))
            x = np.where(mask, x, x.dtype.type(-1e9))
        axes = self._axes(x.ndim, x.shape)
        rows, restore = _axes_last(x, axes)
        out = np.empty_like(rows)
        kernels.activations.bias_activation_forward(
            rows, np.empty(0, rows.dtype), kernels.codes.SOFTMAX, out
        )
        y = restore(out)
        if mask is not None:
            y *= mask
        return y, (y, axes)

    def backward(self, ctx, grad_outputs):
        # Where the mask is off y is 0, so softmax's gradient y * (g - sum(g * y)) is 0 there
        # too: the mask needs no step of its own.
        y, axes = ctx
        y_rows, restore = _axes_last(y, axes)
        grad_rows, _ = _axes_last(_contiguous(grad_outputs, y.dtype), axes)
        out = np.empty_like(grad_rows)
        kernels.activations.activation_backward(grad_rows, y_rows, kernels.codes.SOFTMAX, out)
        return restore(out)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _axes_last(x, axes: tuple):
    """(rows, restore): x with ``axes`` moved last, as contiguous rows over them, and the
    function that puts an array of those rows back in x's layout (a contiguous array)."""
    ndim = x.ndim
    if axes == tuple(range(ndim - len(axes), ndim)):  # already last: no copy
        rows = _contiguous(x, x.dtype)
        size = math.prod(x.shape[ndim - len(axes) :])
        return rows.reshape(-1, size), lambda r: r.reshape(x.shape)
    order = [a for a in range(ndim) if a not in axes] + list(axes)
    moved = np.ascontiguousarray(np.transpose(x, order))
    inverse = np.argsort(order)

    def restore(r):
        return np.ascontiguousarray(np.transpose(r.reshape(moved.shape), inverse))

    return moved.reshape(-1, math.prod(moved.shape[ndim - len(axes) :])), restore
