"""Pooling layers: MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D (NHWC, Keras 3 args)."""

from __future__ import annotations

import numpy as np

from fastnn.kernels import pooling as pool_kernels
from fastnn.kernels.conv import padding_amounts
from fastnn.layers.base import Layer, shape_error
from fastnn.layers.convolutional import (
    check_data_format,
    spatial_output_shape,
    standardize_padding,
    standardize_tuple,
)


class _Pooling2D(Layer):
    """Shared arguments, shapes and config of the windowed 2-D pooling layers."""

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = standardize_tuple(pool_size, 2, "pool_size")
        self.strides = standardize_tuple(pool_size if strides is None else strides, 2, "strides")
        self.padding = standardize_padding(padding)
        self.data_format = check_data_format(self, data_format)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def check_input_shape(self, input_shape):
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        out_h, out_w = spatial_output_shape(
            self, input_shape, self.pool_size, self.strides, self.padding, "pool_size"
        )
        return (input_shape[0], out_h, out_w, input_shape[3])

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

    def forward(self, inputs, training):
        x = np.ascontiguousarray(inputs)
        out_shape, pad_top, pad_left = self._geometry(x.shape)
        out = np.empty(out_shape, dtype=x.dtype)
        argmax = np.empty(out_shape, dtype=np.int64)
        ph, pw = self.pool_size
        sh, sw = self.strides
        pool_kernels.maxpool2d_forward(x, ph, pw, sh, sw, pad_top, pad_left, out, argmax)
        return out, (argmax, x.shape, x.dtype)

    def backward(self, ctx, grad_outputs):
        argmax, x_shape, dtype = ctx
        grad = np.ascontiguousarray(grad_outputs, dtype=dtype)
        dx = np.empty(x_shape, dtype=dtype)
        pool_kernels.maxpool2d_backward(grad, argmax, dx)
        return dx


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

    def forward(self, inputs, training):
        x = np.ascontiguousarray(inputs)
        out_shape, pad_top, pad_left = self._geometry(x.shape)
        out = np.empty(out_shape, dtype=x.dtype)
        ph, pw = self.pool_size
        sh, sw = self.strides
        pool_kernels.avgpool2d_forward(x, ph, pw, sh, sw, pad_top, pad_left, out)
        return out, (x.shape, x.dtype, pad_top, pad_left)

    def backward(self, ctx, grad_outputs):
        x_shape, dtype, pad_top, pad_left = ctx
        grad = np.ascontiguousarray(grad_outputs, dtype=dtype)
        dx = np.empty(x_shape, dtype=dtype)
        ph, pw = self.pool_size
        sh, sw = self.strides
        pool_kernels.avgpool2d_backward(grad, ph, pw, sh, sw, pad_top, pad_left, dx)
        return dx


class GlobalAveragePooling2D(Layer):
    """Mean over height and width: ``(batch, h, w, c) -> (batch, c)`` (or (batch, 1, 1, c)).

    Args:
        keepdims: keep the spatial axes with length 1 (default False).

    Example: ``GlobalAveragePooling2D()(x)`` before a Dense classifier.
    """

    def __init__(self, data_format=None, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.data_format = check_data_format(self, data_format)
        self.keepdims = bool(keepdims)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)

    def check_input_shape(self, input_shape):
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 4:
            raise shape_error(
                self, "expects a 4-D input", "(batch, height, width, channels)", input_shape
            )
        if self.keepdims:
            return (input_shape[0], 1, 1, input_shape[3])
        return (input_shape[0], input_shape[3])

    def forward(self, inputs, training):
        return inputs.mean(axis=(1, 2), keepdims=self.keepdims), inputs.shape

    def backward(self, ctx, grad_outputs):
        n, h, w, c = ctx
        grad = np.asarray(grad_outputs, dtype=self.dtype).reshape(n, 1, 1, c)
        dx = np.empty(ctx, dtype=grad.dtype)
        dx[...] = grad * grad.dtype.type(1.0 / (h * w))
        return dx

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}
