"""Convolution layers: Conv2D (NHWC, Keras 3 arguments and weight layout)."""

from __future__ import annotations

import numpy as np

from fastnn import activations, initializers, regularizers
from fastnn.kernels import activations as act_kernels
from fastnn.kernels import conv as conv_kernels
from fastnn.layers.base import Layer, shape_error


def standardize_tuple(value, n: int, name: str) -> tuple:
    """An int or an iterable of n positive ints as a tuple of n ints (Keras's argument check)."""
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(message) from None
        if len(values) != n or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
        ):
            raise ValueError(message)
        values = tuple(int(v) for v in values)
    bad = {v for v in values if v <= 0}
    if bad:
        raise ValueError(f"{message}, including values {bad} that do not satisfy `value > 0`")
    return values


def standardize_padding(padding) -> str:
    """'valid' or 'same' (any case), else Keras's error."""
    value = padding.lower() if isinstance(padding, str) else padding
    if value not in ("valid", "same"):
        raise ValueError(
            "The `padding` argument must be one of {'valid', 'same'}. "
            f"Received: padding={padding!r}"
        )
    return value


def check_data_format(layer: Layer, data_format) -> str:
    """fastnn is NHWC only: accept None / 'channels_last', explain 'channels_first'."""
    value = data_format.lower() if isinstance(data_format, str) else data_format
    if value in (None, "channels_last"):
        return "channels_last"
    if value == "channels_first":
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}': fastnn supports only "
            "data_format='channels_last' (NHWC); got 'channels_first'. Transpose the input with "
            "np.transpose(x, (0, 2, 3, 1)) instead."
        )
    raise ValueError(
        "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
        f"Received: data_format={data_format!r}"
    )


def spatial_output_shape(layer: Layer, input_shape, window, strides, padding, what) -> tuple:
    """(out_h, out_w) of a 2-D window op on (batch, H, W, C); None stays None; errors name layer."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        raise shape_error(
            layer, "expects a 4-D input", "(batch, height, width, channels)", input_shape
        )
    out = []
    for size, k, s in zip(input_shape[1:3], window, strides, strict=True):
        if size is None:
            out.append(None)
            continue
        out.append(conv_kernels.padding_amounts(size, k, s, padding)[0])
    if any(d is not None and d <= 0 for d in out):
        raise shape_error(
            layer,
            f"computed output size would be zero or negative for {what}={tuple(window)}, "
            f"strides={tuple(strides)}, padding='{padding}'",
            f"height >= {window[0]} and width >= {window[1]}",
            input_shape,
        )
    return tuple(out)


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as Keras) over NHWC images, plus bias and activation.

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1.
        padding: 'valid' (no padding) or 'same' (output size ceil(in / stride); TensorFlow's rule,
            the odd extra row / column of padding goes at the bottom / right).
        activation: 'relu', 'sigmoid', 'tanh', 'softmax' (over channels) or None, fused.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            as Keras. Only ``data_format='channels_last'``, ``dilation_rate=1`` and ``groups=1``.

    Input shape: ``(batch, height, width, channels)``.
    Output shape: ``(batch, new_height, new_width, filters)``.
    Weights: ``kernel`` ``(kh, kw, channels, filters)`` then ``bias`` ``(filters,)``.

    Example: ``Conv2D(32, 3, padding="same", activation="relu")(x)``.
    """

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding="valid",
        data_format=None,
        dilation_rate=(1, 1),
        groups=1,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters <= 0:
            raise ValueError(
                "Invalid value for argument `filters`. Expected a strictly positive value. "
                f"Received filters={filters}."
            )
        self.filters = int(filters)
        self.kernel_size = standardize_tuple(kernel_size, 2, "kernel_size")
        self.strides = standardize_tuple(strides, 2, "strides")
        self.padding = standardize_padding(padding)
        self.data_format = check_data_format(self, data_format)
        self.dilation_rate = standardize_tuple(dilation_rate, 2, "dilation_rate")
        if self.dilation_rate != (1, 1):
            raise ValueError(
                f"Conv2D '{self.name}': fastnn does not support dilated convolution yet; "
                f"expected dilation_rate=(1, 1), got dilation_rate={self.dilation_rate}"
            )
        if groups != 1:
            raise ValueError(
                f"Conv2D '{self.name}': fastnn does not support grouped convolution yet; "
                f"expected groups=1, got groups={groups}"
            )
        self.groups = 1
        self.activation = activations.get_name(activation)
        self._code = activations.code(self.activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        channels = input_shape[-1]
        if channels is None:
            raise shape_error(
                self,
                "the channel axis must be known",
                "(batch, height, width, channels)",
                tuple(input_shape),
            )
        self.kernel = self.add_weight(
            (*self.kernel_size, channels, self.filters),
            self.kernel_initializer,
            "kernel",
            regularizer=self.kernel_regularizer,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                (self.filters,), self.bias_initializer, "bias", regularizer=self.bias_regularizer
            )

    def check_input_shape(self, input_shape):
        channels = self.kernel.shape[2]
        if len(input_shape) != 4 or input_shape[-1] != channels:
            raise shape_error(
                self,
                "incompatible input shape",
                f"(batch, height, width, {channels})",
                tuple(input_shape),
            )
        self.compute_output_shape(input_shape)

    def compute_output_shape(self, input_shape):
        out_h, out_w = spatial_output_shape(
            self, input_shape, self.kernel_size, self.strides, self.padding, "kernel_size"
        )
        return (input_shape[0], out_h, out_w, self.filters)

    def forward(self, inputs, training):
        bias = self.bias.value if self.use_bias else None
        y, cols = conv_kernels.conv2d_forward(
            inputs, self.kernel.value, bias, self.strides, self.padding, self._code
        )
        return y, (cols, inputs.shape, y)

    def backward(self, ctx, grad_outputs):
        cols, x_shape, y = ctx
        grad = np.ascontiguousarray(grad_outputs, dtype=y.dtype)
        if self._code != act_kernels.LINEAR:
            grad_z = np.empty_like(grad)
            act_kernels.activation_backward(
                grad.reshape(-1, self.filters),
                y.reshape(-1, self.filters),
                self._code,
                grad_z.reshape(-1, self.filters),
            )
            grad = grad_z
        dkernel = self.kernel.grad if self.trainable else None
        dbias = self.bias.grad if self.trainable and self.use_bias else None
        # cols is dead once dkernel is done, so the input-gradient columns reuse its memory.
        dcols = cols if cols.base is None else None
        return conv_kernels.conv2d_backward(
            grad,
            cols,
            x_shape,
            self.kernel.value,
            self.strides,
            self.padding,
            dkernel,
            dbias,
            dcols=dcols,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
        }
