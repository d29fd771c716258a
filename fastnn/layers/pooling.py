"""Pooling layers, Keras 3 arguments; ``data_format='channels_first'`` inputs are transposed to
channels_last at the layer's edges.

1-D: MaxPooling1D, AveragePooling1D (on the 2-D kernels: ``(batch, steps, channels)`` is viewed as
``(batch, 1, steps, channels)``), GlobalAveragePooling1D (averages only unmasked steps when a mask
arrives), GlobalMaxPooling1D (ignores masks, as Keras 3). 2-D: MaxPooling2D, AveragePooling2D,
GlobalAveragePooling2D.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import kernels
from fastnn.kernels.workspace import Workspace, scratch
from fastnn.layers.base import Layer, shape_error
from fastnn.layers.geometry import (
    channels_last_shape,
    check_data_format,
    from_channels_last,
    padding_amounts,
    shape_in_format,
    spatial_output_shape,
    standardize_padding,
    standardize_tuple,
    temporal_output_length,
    to_channels_last,
)


class _Pooling2D(Layer):
    """Shared arguments, shapes and config of the windowed 2-D pooling layers."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = standardize_tuple(pool_size, 2, "pool_size")
        self.strides = standardize_tuple(pool_size if strides is None else strides, 2, "strides")
        self.padding = standardize_padding(padding)
        self.data_format = check_data_format(self, data_format)

    def compute_output_shape(self, input_shape):
        shape = channels_last_shape(input_shape, self.data_format)
        out_h, out_w = spatial_output_shape(
            self, shape, self.pool_size, self.strides, self.padding, "pool_size"
        )
        return shape_in_format((shape[0], out_h, out_w, shape[3]), self.data_format)

    def _geometry(self, x_shape):
        """(out_shape, pad_top, pad_left) for a concrete input shape."""
        n, h, w, c = x_shape
        out_h, pad_top, _ = padding_amounts(h, self.pool_size[0], self.strides[0], self.padding)
        out_w, pad_left, _ = padding_amounts(w, self.pool_size[1], self.strides[1], self.padding)
        return (n, out_h, out_w, c), pad_top, pad_left

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }


class MaxPooling2D(_Pooling2D):
    """Maximum over each pool_size window; padded positions never win ('same', as TensorFlow).

    Args:
        pool_size: int or (ph, pw), default (2, 2).
        strides: int, (sh, sw) or None (= pool_size).
        padding: 'valid' or 'same' (output ceil(in / stride); extra padding at bottom / right).

    Input shape: ``(batch, height, width, channels)``.
    Output shape: ``(batch, pooled_height, pooled_width, channels)``.

    Example: ``MaxPooling2D(2)(x)`` halves height and width.
    """

    uses_workspace = True

    def forward(self, inputs, training, workspace=None):
        x = np.ascontiguousarray(to_channels_last(inputs, self.data_format))
        out_shape, pad_top, pad_left = self._geometry(x.shape)
        out = scratch(workspace, "y", out_shape, x.dtype)
        argmax = scratch(workspace, "argmax", out_shape, np.int32)
        ph, pw = self.pool_size
        sh, sw = self.strides
        kernels.pooling.maxpool2d_forward(x, ph, pw, sh, sw, pad_top, pad_left, out, argmax)
        out = from_channels_last(out, self.data_format)
        return out, _MaxSaved(argmax, x.shape, x.dtype, workspace)

    def backward(self, ctx, grad_outputs):
        grad = to_channels_last(grad_outputs, self.data_format)
        grad = np.ascontiguousarray(grad, dtype=ctx.dtype)
        dx = scratch(ctx.workspace, "dx", ctx.x_shape, ctx.dtype)
        kernels.pooling.maxpool2d_backward(grad, ctx.argmax, dx)
        return from_channels_last(dx, self.data_format)


class _MaxSaved(NamedTuple):
    """What MaxPooling2D's forward keeps for its backward."""

    argmax: np.ndarray  # int32 (batch, oh, ow, c): each maximum's place in its window
    x_shape: tuple
    dtype: np.dtype
    workspace: Workspace | None  # the node's, or None


class AveragePooling2D(_Pooling2D):
    """Mean over each pool_size window; 'same' padding is not counted in the divisor (as Keras).

    Args:
        pool_size: int or (ph, pw), default (2, 2).
        strides: int, (sh, sw) or None (= pool_size).
        padding: 'valid' or 'same' (output ceil(in / stride); extra padding at bottom / right).

    Input shape: ``(batch, height, width, channels)``.
    Output shape: ``(batch, pooled_height, pooled_width, channels)``.

    Example: ``AveragePooling2D(pool_size=3, strides=1, padding="same")(x)``.
    """

    uses_workspace = True

    def forward(self, inputs, training, workspace=None):
        x = np.ascontiguousarray(to_channels_last(inputs, self.data_format))
        out_shape, pad_top, pad_left = self._geometry(x.shape)
        out = scratch(workspace, "y", out_shape, x.dtype)
        ph, pw = self.pool_size
        sh, sw = self.strides
        kernels.pooling.avgpool2d_forward(x, ph, pw, sh, sw, pad_top, pad_left, out)
        out = from_channels_last(out, self.data_format)
        return out, _AverageSaved(x.shape, x.dtype, pad_top, pad_left, workspace)

    def backward(self, ctx, grad_outputs):
        grad = to_channels_last(grad_outputs, self.data_format)
        grad = np.ascontiguousarray(grad, dtype=ctx.dtype)
        dx = scratch(ctx.workspace, "dx", ctx.x_shape, ctx.dtype)
        ph, pw = self.pool_size
        sh, sw = self.strides
        args = (ph, pw, sh, sw, ctx.pad_top, ctx.pad_left)
        kernels.pooling.avgpool2d_backward(grad, *args, dx)
        return from_channels_last(dx, self.data_format)


class _AverageSaved(NamedTuple):
    """What AveragePooling2D's forward keeps for its backward."""

    x_shape: tuple
    dtype: np.dtype
    pad_top: int
    pad_left: int
    workspace: Workspace | None  # the node's, or None


class _GlobalPooling2D(Layer):
    """Pooling over height and width: ``(batch, h, w, c) -> (batch, c)``, or ``(batch, 1, 1, c)``
    with ``keepdims``."""

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(self, data_format)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            layout = "(batch, height, width, channels)"
            if self.data_format == "channels_first":
                layout = "(batch, channels, height, width)"
            raise shape_error(self, "expects a 4-D input", layout, input_shape)
        shape = channels_last_shape(input_shape, self.data_format)
        if self.keepdims:
            return shape_in_format((shape[0], 1, 1, shape[3]), self.data_format)
        return (shape[0], shape[3])

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over height and width: ``(batch, h, w, c) -> (batch, c)`` (or (batch, 1, 1, c)).

    Args:
        keepdims: keep the spatial axes with length 1 (default False).

    Example: ``GlobalAveragePooling2D()(x)`` before a Dense classifier.
    """

    uses_workspace = True  # the backward's image-sized gradient

    def forward(self, inputs, training, workspace=None):
        ctx = (inputs.shape, workspace)
        if self.data_format == "channels_first":  # the mean over each contiguous plane
            return inputs.mean(axis=(2, 3), keepdims=self.keepdims), ctx
        n, h, w, c = inputs.shape
        out = _mean_over_steps(inputs.reshape(n, h * w, c))
        return (out.reshape(n, 1, 1, c) if self.keepdims else out), ctx

    def backward(self, ctx, grad_outputs):
        in_shape, workspace = ctx
        n, h, w, c = channels_last_shape(in_shape, self.data_format)
        grad_shape = shape_in_format((n, 1, 1, c), self.data_format)
        grad = np.asarray(grad_outputs, dtype=self.dtype).reshape(grad_shape)
        dx = scratch(workspace, "dx", in_shape, grad.dtype)
        dx[...] = grad * grad.dtype.type(1.0 / (h * w))
        return dx


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Maximum over height and width: ``(batch, h, w, c) -> (batch, c)`` (or (batch, 1, 1, c)).

    The gradient goes to the first maximum of each channel (row-major order) on ties.

    Args:
        keepdims: keep the spatial axes with length 1 (default False).

    Example: ``GlobalMaxPooling2D()(Conv2D(64, 3, activation="relu")(x))``.
    """

    def forward(self, inputs, training):
        x = to_channels_last(inputs, self.data_format)
        n, h, w, c = x.shape
        out, index = _first_max(x.reshape(n, h * w, c))
        out = out.reshape(n, 1, 1, c) if self.keepdims else out[:, 0]
        return from_channels_last(out, self.data_format), (x.shape, x.dtype, index)

    def backward(self, ctx, grad_outputs):
        (n, h, w, c), dtype, index = ctx
        grad = to_channels_last(np.asarray(grad_outputs), self.data_format)
        dx = _to_first_max(grad, index, (n, h * w, c), dtype).reshape(n, h, w, c)
        return from_channels_last(dx, self.data_format)


def _mean_over_steps(x):
    """(N, C): the mean over axis 1 of x (N, K, C)."""
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], x.shape[2]), x.dtype)
    kernels.pooling.global_mean(x, out)
    return out


def _first_max(x):
    """(max (N, 1, C), index (N, C)): the first maximum over axis 1 of x (N, K, C) and where."""
    x = np.ascontiguousarray(x)
    out = np.empty((x.shape[0], x.shape[2]), x.dtype)
    index = np.empty((x.shape[0], x.shape[2]), np.int64)
    kernels.pooling.global_max_pool(x, out, index)
    return out[:, None], index


def _to_first_max(grad, index, shape, dtype):
    """dx (N, K, C) = zeros but grad (N, C) or (N, 1, C) at ``_first_max``'s index."""
    dx = np.empty(shape, dtype=dtype)
    grad = np.ascontiguousarray(grad, dtype=dtype).reshape(index.shape)
    kernels.pooling.global_max_pool_backward(grad, index, dx)
    return dx


# ------------------------------------------------------------------------------------------ 1-D


class _Pooling1D(Layer):
    """Shared arguments, shapes and config of MaxPooling1D and AveragePooling1D."""

    def __init__(self, pool_size=2, strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = standardize_tuple(pool_size, 1, "pool_size")
        self.strides = standardize_tuple(pool_size if strides is None else strides, 1, "strides")
        self.padding = standardize_padding(padding)
        self.data_format = check_data_format(self, data_format, rank=1)

    def compute_output_shape(self, input_shape):
        shape = channels_last_shape(input_shape, self.data_format)
        steps = temporal_output_length(
            self, shape, self.pool_size[0], self.strides[0], self.padding, "pool_size"
        )
        return shape_in_format((shape[0], steps, shape[2]), self.data_format)

    def _geometry(self, x_shape):
        """(out_shape as (n, 1, steps, c), pad_left) for a concrete (n, steps, c) input."""
        n, steps, c = x_shape
        out, pad_left, _ = padding_amounts(steps, self.pool_size[0], self.strides[0], self.padding)
        return (n, 1, out, c), pad_left

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }


class MaxPooling1D(_Pooling1D):
    """Maximum over each window of ``pool_size`` steps; padding never wins ('same').

    Args:
        pool_size: int or (p,), default 2.
        strides: int, (s,) or None (= pool_size).
        padding: 'valid' or 'same' (output ceil(steps / stride); extra padding at the end).

    Input shape: ``(batch, steps, channels)``.
    Output shape: ``(batch, pooled_steps, channels)``.

    Example: ``MaxPooling1D(2)(x)`` halves the number of steps.
    """

    def forward(self, inputs, training):
        inputs = to_channels_last(inputs, self.data_format)
        n, steps, c = inputs.shape
        x = np.ascontiguousarray(inputs).reshape(n, 1, steps, c)
        out_shape, pad_left = self._geometry(inputs.shape)
        out = np.empty(out_shape, dtype=x.dtype)
        argmax = np.empty(out_shape, dtype=np.int32)
        p, s = self.pool_size[0], self.strides[0]
        kernels.pooling.maxpool2d_forward(x, 1, p, 1, s, 0, pad_left, out, argmax)
        out = from_channels_last(out.reshape(n, out_shape[2], c), self.data_format)
        return out, (argmax, x.shape, x.dtype)

    def backward(self, ctx, grad_outputs):
        argmax, x_shape, dtype = ctx
        grad = to_channels_last(grad_outputs, self.data_format)
        grad = np.ascontiguousarray(grad, dtype=dtype).reshape(argmax.shape)
        dx = np.empty(x_shape, dtype=dtype)
        kernels.pooling.maxpool2d_backward(grad, argmax, dx)
        dx = dx.reshape(x_shape[0], x_shape[2], x_shape[3])
        return from_channels_last(dx, self.data_format)


class AveragePooling1D(_Pooling1D):
    """Mean over each window of ``pool_size`` steps; 'same' padding is not counted (as Keras).

    Args:
        pool_size: int or (p,), default 2 (Keras 3 requires it).
        strides: int, (s,) or None (= pool_size).
        padding: 'valid' or 'same' (output ceil(steps / stride); extra padding at the end).

    Input shape: ``(batch, steps, channels)``.
    Output shape: ``(batch, pooled_steps, channels)``.

    Example: ``AveragePooling1D(pool_size=3, strides=1, padding="same")(x)``.
    """

    def forward(self, inputs, training):
        inputs = to_channels_last(inputs, self.data_format)
        n, steps, c = inputs.shape
        x = np.ascontiguousarray(inputs).reshape(n, 1, steps, c)
        out_shape, pad_left = self._geometry(inputs.shape)
        out = np.empty(out_shape, dtype=x.dtype)
        p, s = self.pool_size[0], self.strides[0]
        kernels.pooling.avgpool2d_forward(x, 1, p, 1, s, 0, pad_left, out)
        out = from_channels_last(out.reshape(n, out_shape[2], c), self.data_format)
        return out, (x.shape, x.dtype, pad_left)

    def backward(self, ctx, grad_outputs):
        x_shape, dtype, pad_left = ctx
        n, _, steps, c = x_shape
        grad = to_channels_last(grad_outputs, self.data_format)
        grad = np.ascontiguousarray(grad, dtype=dtype)
        grad = grad.reshape(n, 1, grad.shape[1], c)
        dx = np.empty(x_shape, dtype=dtype)
        p, s = self.pool_size[0], self.strides[0]
        kernels.pooling.avgpool2d_backward(grad, 1, p, 1, s, 0, pad_left, dx)
        return from_channels_last(dx.reshape(n, steps, c), self.data_format)


class _GlobalPooling1D(Layer):
    """Shared arguments, shapes and config of the global 1-D pooling layers."""

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(self, data_format, rank=1)
        self.keepdims = bool(keepdims)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            layout = "(batch, steps, features)"
            if self.data_format == "channels_first":
                layout = "(batch, features, steps)"
            raise shape_error(self, "expects a 3-D input", layout, input_shape)
        shape = channels_last_shape(input_shape, self.data_format)
        if self.keepdims:
            return shape_in_format((shape[0], 1, shape[2]), self.data_format)
        return (shape[0], shape[2])

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class GlobalAveragePooling1D(_GlobalPooling1D):
    """Mean over the steps axis: ``(batch, steps, features) -> (batch, features)``.

    With a ``(batch, steps)`` mask (from ``Embedding(mask_zero=True)`` in a model, or ``mask=``
    on an array call) only the unmasked steps are averaged, as Keras does; the output carries no
    mask. A sample whose steps are all masked gives zeros (Keras: 0 / 0 = NaN).

    Args:
        keepdims: keep the steps axis with length 1 (default False).

    Example: ``GlobalAveragePooling1D()(Embedding(1000, 16, mask_zero=True)(ids))``.
    """

    supports_masking = True

    uses_workspace = True  # the backward's sequence-sized gradient

    def forward(self, inputs, training, mask=None, workspace=None):
        out, ctx = self._forward_last(to_channels_last(inputs, self.data_format), mask)
        return from_channels_last(out, self.data_format), (*ctx, workspace)

    def _forward_last(self, inputs, mask):
        if mask is None:
            out = _mean_over_steps(inputs)
            out = out[:, None] if self.keepdims else out
            return out, (inputs.shape, inputs.dtype, None)
        if mask.shape != inputs.shape[:2]:
            raise shape_error(
                self, "mask must be (batch, steps)", inputs.shape[:2], tuple(mask.shape)
            )
        dtype = inputs.dtype
        weights = mask.astype(dtype)
        counts = np.maximum(weights.sum(axis=1, keepdims=True), dtype.type(1))
        weights /= counts  # (batch, steps): 1 / count at unmasked steps, 0 elsewhere
        out = np.einsum("ntc,nt->nc", inputs, weights)
        return (out[:, None] if self.keepdims else out), (inputs.shape, dtype, weights)

    def backward(self, ctx, grad_outputs):
        (n, steps, c), dtype, weights, workspace = ctx
        grad = to_channels_last(np.asarray(grad_outputs, dtype=dtype), self.data_format)
        grad = grad.reshape(n, 1, c)
        if weights is None:
            dx = scratch(workspace, "dx", (n, steps, c), dtype)
            dx[...] = grad * dtype.type(1.0 / steps)
        else:
            dx = grad * weights[:, :, None]
        return from_channels_last(dx, self.data_format)

    makes_masks = False  # it ends a mask: none leaves it

    def compute_mask(self, inputs, mask=None):
        return None


class GlobalMaxPooling1D(_GlobalPooling1D):
    """Maximum over the steps axis: ``(batch, steps, features) -> (batch, features)``.

    As in Keras 3 it does not support masking: masked steps are included and the mask stops here.

    Args:
        keepdims: keep the steps axis with length 1 (default False).

    Example: ``GlobalMaxPooling1D()(Conv1D(64, 5, activation="relu")(x))``.
    """

    def forward(self, inputs, training):
        x = to_channels_last(inputs, self.data_format)
        out, index = _first_max(x)
        out = from_channels_last(out if self.keepdims else out[:, 0], self.data_format)
        return out, (x.shape, x.dtype, index)

    def backward(self, ctx, grad_outputs):
        x_shape, dtype, index = ctx
        grad = to_channels_last(np.asarray(grad_outputs), self.data_format)
        return from_channels_last(_to_first_max(grad, index, x_shape, dtype), self.data_format)
