"""Transposed, depthwise and separable convolutions (Keras 3 arguments, weights and shapes):
Conv1DTranspose, Conv2DTranspose, DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D,
SeparableConv2D.

All run on 2-D NHWC kernels (``kernels.conv_transpose``, ``kernels.depthwise``): a 1-D layer
views ``(batch, steps, channels)`` as a one-row image ``(batch, 1, steps, channels)`` and its
kernel as a one-row kernel; a ``channels_first`` input is transposed to channels_last on the way
in and its output back on the way out (its gradients likewise).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import activations, constraints, initializers, kernels, regularizers, runtime
from fastnn.kernels.forms import Forms
from fastnn.kernels.geometry import padding_amounts, transpose_axis
from fastnn.kernels.workspace import Workspace, scratch
from fastnn.layers.base import Layer, kept, shape_error
from fastnn.layers.convolutional import activated_output, pre_activation_grad
from fastnn.layers.core import biased_product
from fastnn.layers.geometry import standardize_padding, standardize_tuple


def _positive_int(value, name: str) -> int:
    """``filters`` / ``depth_multiplier``: a strictly positive int, else Keras's error."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(
            f"Invalid value for argument `{name}`. Expected a strictly positive value. "
            f"Received {name}={value}."
        )
    return int(value)


def _data_format(value) -> str:
    """'channels_last' (also for None, Keras's default) or 'channels_first', else Keras's error."""
    name = value.lower() if isinstance(value, str) else value
    if name is None:
        return "channels_last"
    if name not in ("channels_last", "channels_first"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={value!r}"
        )
    return name


def _output_padding(value, rank: int, strides: tuple):
    """None, or a tuple of ``rank`` ints in [0, stride) (Keras's checks and errors)."""
    if value is None:
        return None
    message = (
        f"The `output_padding` argument must be a tuple of {rank} integers. "
        f"Received output_padding={value}"
    )
    values = (value,) * rank if isinstance(value, (int, np.integer)) else value
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(message) from None
    if len(values) != rank or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
    ):
        raise ValueError(message)
    values = tuple(int(v) for v in values)
    if any(v < 0 for v in values):
        bad = {v for v in values if v < 0}
        raise ValueError(f"{message}, including values {bad} that do not satisfy `value >= 0`")
    for i, (op, s) in enumerate(zip(values, strides)):
        if op >= s:
            raise ValueError(
                "`output_padding` must be strictly less than `strides` for all dimensions. "
                f"At dimension {i}, `output_padding` is {op} but `strides` is {s}. "
                f"Received: output_padding={values}, strides={strides}"
            )
    return values


def conv_axis(
    size: int | None, kernel: int, stride: int, dilation: int, padding: str
) -> tuple[int | None, int]:
    """(output size, padding before) of a convolution along one axis (TensorFlow's 'same' rule
    on the dilated kernel's extent); None for an unknown size."""
    if size is None:
        return None, 0
    out, before, _ = padding_amounts(size, (kernel - 1) * dilation + 1, stride, padding)
    return out, before


class _SpatialConv(Layer):
    """What the convolutions here share: window arguments, the data format and the 1-D view,
    shape checks, the activation's gradient."""

    rank = 2
    uses_workspace = True
    skips_input_grad = True

    def __init__(
        self,
        kernel_size,
        strides,
        padding,
        data_format,
        dilation_rate,
        activation,
        use_bias,
        bias_initializer,
        bias_regularizer,
        constraint_args: dict,
        **kwargs,
    ):
        super().__init__(**kwargs)
        rank = self.rank
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.padding = standardize_padding(padding)
        self.data_format = _data_format(data_format)
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        self.activation = activations.get_name(activation)
        self._code = activations.code(self.activation)  # what the NHWC kernels apply
        # Keras applies a softmax over the output's last axis: the width when channels_first,
        # so that one runs on the layer's output (_output), outside the kernels.
        self._last_axis_code = kernels.codes.LINEAR
        if self.data_format == "channels_first" and self._code in kernels.codes.ROW_WISE:
            self._last_axis_code, self._code = self._code, kernels.codes.LINEAR
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self._constraint_names = tuple(constraint_args)
        for name, value in constraint_args.items():  # kernel_constraint=... as attributes
            setattr(self, name, constraints.get(value))

    # ---- shapes ---------------------------------------------------------------------------------
    def _layout(self, channels="channels") -> str:
        spatial = "height, width" if self.rank == 2 else "steps"
        if self.data_format == "channels_last":
            return f"(batch, {spatial}, {channels})"
        return f"(batch, {channels}, {spatial})"

    def _split(self, input_shape):
        """(batch, spatial sizes, channels) of an input shape, checked for its rank."""
        shape = tuple(input_shape)
        if len(shape) != self.rank + 2:
            raise shape_error(
                self, f"expects a {self.rank + 2}-D input", self._layout(), tuple(input_shape)
            )
        if self.data_format == "channels_last":
            return shape[0], shape[1:-1], shape[-1]
        return shape[0], shape[2:], shape[1]

    def _join(self, batch, spatial, channels) -> tuple:
        if self.data_format == "channels_last":
            return (batch, *spatial, channels)
        return (batch, channels, *spatial)

    def _channels(self, input_shape) -> int:
        channels = self._split(input_shape)[2]
        if channels is None:
            raise shape_error(
                self, "the channel axis must be known", self._layout(), tuple(input_shape)
            )
        return channels

    def check_input_shape(self, input_shape):
        channels = self._split(input_shape)[2]
        if channels != self._built_channels:
            expected = self._layout(str(self._built_channels))
            raise shape_error(self, "incompatible input shape", expected, tuple(input_shape))
        self.compute_output_shape(input_shape)

    def _checked_sizes(self, input_shape, sizes, expected) -> tuple:
        """``sizes`` (the output's spatial sizes), or a shape error if one is not positive."""
        if any(size is not None and size <= 0 for size in sizes):
            raise shape_error(
                self,
                f"computed output size would be zero or negative for kernel_size="
                f"{self.kernel_size}, strides={self.strides}, dilation_rate={self.dilation_rate}, "
                f"padding='{self.padding}'",
                expected,
                tuple(input_shape),
            )
        return tuple(sizes)

    # ---- the 2-D NHWC view -----------------------------------------------------------------------
    def _as_2d(self, values: tuple) -> tuple:
        """A 1-D layer's per-axis values as the one-row image's (rows: 1)."""
        return values if self.rank == 2 else (1, *values)

    def _geometry(self, sizes) -> tuple[tuple, tuple]:
        """(output sizes, offsets) along each spatial axis: a subclass's window arithmetic."""
        raise NotImplementedError

    def _nhwc_geometry(self, x) -> tuple[tuple, tuple]:
        """(output size, offsets) of the 2-D view of x (NHWC): one row, offset 0, for 1-D."""
        sizes, offsets = self._geometry(x.shape[3 - self.rank : 3])
        return (sizes, offsets) if self.rank == 2 else ((1, *sizes), (0, *offsets))

    def _kernel_2d(self, array):
        """A kernel (or its gradient) as the one-row kernel of the 2-D view, for 1-D."""
        return array if self.rank == 2 else array.reshape(1, *array.shape)

    def _to_nhwc(self, x) -> np.ndarray:
        """An input (or output gradient) as a C-contiguous (batch, height, width, channels)."""
        if self.data_format == "channels_first":
            x = np.moveaxis(x, 1, -1)
        x = np.ascontiguousarray(x)
        return x if self.rank == 2 else x.reshape(x.shape[0], 1, *x.shape[1:])

    def _from_nhwc(self, y: np.ndarray) -> np.ndarray:
        """An NHWC result in the layer's layout."""
        if self.rank == 1:
            y = y.reshape(y.shape[0], *y.shape[2:])
        if self.data_format == "channels_first":
            y = np.ascontiguousarray(np.moveaxis(y, -1, 1))
        return y

    def _output(self, y: np.ndarray) -> np.ndarray:
        """The kernels' NHWC output in the layer's layout, after the activation Keras applies
        over its last axis when that is not the channels' (``_last_axis_code``)."""
        out = self._from_nhwc(y)  # a new array whenever _last_axis_code is set
        code = self._last_axis_code
        if code != kernels.codes.LINEAR:
            rows = out.reshape(-1, out.shape[-1])
            kernels.activations.bias_activation_forward(rows, np.empty(0, out.dtype), code, rows)
        return out

    def _output_grad(self, grad_outputs, saved) -> np.ndarray:
        """dL/dy (NHWC) from the output's gradient through ``_output``'s activation, whose
        output is made again from ``saved`` (the kernels' output, unactivated then)."""
        code = self._last_axis_code
        if code != kernels.codes.LINEAR:
            y = self._output(saved)
            grad = np.ascontiguousarray(grad_outputs, dtype=y.dtype)
            rows = grad.reshape(-1, grad.shape[-1])
            grad_y = np.empty_like(rows)
            kernels.activations.activation_backward(rows, y.reshape(rows.shape), code, grad_y)
            grad_outputs = grad_y.reshape(grad.shape)
        return self._to_nhwc(grad_outputs)

    def _activated(self, z, workspace=None, code=None) -> tuple:
        """``activated_output`` of the NHWC output z with ``code``, else the layer's."""
        return activated_output(z, self._code if code is None else code, workspace)

    def _activation_grad(self, grad, saved, workspace=None, code=None) -> np.ndarray:
        """``pre_activation_grad`` (NHWC) with ``code``, else the layer's activation."""
        return pre_activation_grad(grad, saved, self._code if code is None else code, workspace)

    def _bias_grad(self):
        return self.bias.grad if self.trainable and self.use_bias else None

    def _add_bias(self, size: int):
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                (size,),
                self.bias_initializer,
                "bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            **{name: constraints.serialize(getattr(self, name)) for name in self._constraint_names},
        }


# ---------------------------------------------------------------------------------- transposed


class _ConvTranspose(_SpatialConv):
    """Conv1DTranspose and Conv2DTranspose."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides,
        padding,
        output_padding,
        data_format,
        dilation_rate,
        activation,
        use_bias,
        kernel_initializer,
        bias_initializer,
        kernel_regularizer,
        bias_regularizer,
        kernel_constraint,
        bias_constraint,
        **kwargs,
    ):
        constraint_args = {
            "kernel_constraint": kernel_constraint,
            "bias_constraint": bias_constraint,
        }
        super().__init__(
            kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            bias_initializer, bias_regularizer, constraint_args, **kwargs,
        )  # fmt: skip
        self.filters = _positive_int(filters, "filters")
        self.output_padding = _output_padding(output_padding, self.rank, self.strides)
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)

    def _geometry(self, sizes) -> tuple[tuple, tuple]:
        """(output sizes, crops) along each spatial axis."""
        paddings = self.output_padding or (None,) * self.rank
        axes = [
            transpose_axis(size, k, s, d, self.padding, op)
            for size, k, s, d, op in zip(
                sizes, self.kernel_size, self.strides, self.dilation_rate, paddings
            )
        ]
        return tuple(a[0] for a in axes), tuple(a[1] for a in axes)

    def compute_output_shape(self, input_shape):
        batch, sizes, _ = self._split(input_shape)
        out_sizes = self._checked_sizes(
            input_shape, self._geometry(sizes)[0], "a larger input or output_padding"
        )
        return self._join(batch, out_sizes, self.filters)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.compute_output_shape(input_shape)
        self._built_channels = channels
        self.kernel = self.add_weight(
            (*self.kernel_size, self.filters, channels),
            self.kernel_initializer,
            "kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self._add_bias(self.filters)

    def forward(self, inputs, training, workspace=None, activation_code=None):
        """The layer's forward; with ``activation_code`` (a channels_last layer without
        activation: the activation layer after it, fused), that activation."""
        code = self._code if activation_code is None else activation_code
        x = self._to_nhwc(inputs)
        out_size, crops = self._nhwc_geometry(x)
        out = scratch(workspace, "y", (len(x), *out_size, self.filters), self.kernel.dtype)
        z = kernels.conv_transpose.conv2d_transpose_forward(
            x, self._kernel_2d(self.kernel.value), self.bias.value if self.use_bias else None,
            self._as_2d(self.strides), self._as_2d(self.dilation_rate), crops, out_size,
            kernels.codes.kernel_applied(code), out, threads=runtime.threads(),
        )  # fmt: skip
        y, saved = self._activated(z, workspace, code)
        return self._output(y), _Saved(x, saved, crops, workspace, code)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        x, saved, crops, workspace, code = ctx
        grad = self._output_grad(grad_outputs, saved)
        grad = self._activation_grad(grad, saved, workspace, code)
        dkernel = self._kernel_2d(self.kernel.grad) if self.trainable else None
        dx = kernels.conv_transpose.conv2d_transpose_backward(
            grad, x, self._kernel_2d(self.kernel.value), self._as_2d(self.strides),
            self._as_2d(self.dilation_rate), crops, dkernel, self._bias_grad(),
            dx=scratch(workspace, "dx", x.shape, grad.dtype) if need_input_grad else None,
            need_dx=need_input_grad, threads=runtime.threads(),
        )  # fmt: skip
        return None if dx is None else self._from_nhwc(dx)

    def get_config(self):
        config = super().get_config()
        return {
            **config,
            "filters": self.filters,
            "output_padding": self.output_padding,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
        }


class Conv2DTranspose(_ConvTranspose):
    """Transposed 2-D convolution (the input gradient of a Conv2D, often called deconvolution),
    plus bias and activation: up-samples by ``strides``.

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1.
        padding: 'valid' (output (in - 1) * stride + max(kernel, stride)) or 'same' (output
            in * stride), as Keras 3.
        output_padding: None, or an int or (oh, ow) in [0, stride): rows / columns added to
            the output (its size is then (in - 1) * stride + kernel + output_padding for
            'valid', (in - 1) * stride + kernel % 2 + output_padding for 'same').
        data_format: 'channels_last' (default) or 'channels_first'.
        dilation_rate: int or (dh, dw); > 1 only with strides 1.
        activation: an activation name (``fastnn.activations``; softmax is over channels) or
            None, fused.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer:
            the constraints (``fastnn.constraints``): as Keras.

    Input shape: ``(batch, height, width, channels)`` (channels_first: channels second).
    Output shape: ``(batch, new_height, new_width, filters)``.
    Weights: ``kernel`` ``(kh, kw, filters, channels)`` then ``bias`` ``(filters,)``.

    Example: ``Conv2DTranspose(64, 4, strides=2, padding="same", activation="relu")(x)``.
    """

    rank = 2

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        output_padding=None,
        data_format: str | None = None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, kernel_constraint, bias_constraint, **kwargs,
        )  # fmt: skip


class Conv1DTranspose(_ConvTranspose):
    """Transposed 1-D convolution over sequences, plus bias and activation: up-samples the steps
    by ``strides``. Arguments, padding and output_padding rules as ``Conv2DTranspose``, per axis.

    Input shape: ``(batch, steps, channels)`` (channels_first: ``(batch, channels, steps)``).
    Output shape: ``(batch, new_steps, filters)``.
    Weights: ``kernel`` ``(k, filters, channels)`` then ``bias`` ``(filters,)``.

    Example: ``Conv1DTranspose(32, 3, strides=2, padding="same")(x)``.
    """

    rank = 1

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        output_padding=None,
        data_format: str | None = None,
        dilation_rate=1,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            filters, kernel_size, strides, padding, output_padding, data_format, dilation_rate,
            activation, use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
            bias_regularizer, kernel_constraint, bias_constraint, **kwargs,
        )  # fmt: skip


class _Saved(NamedTuple):
    """What a transposed or depthwise conv's forward keeps for its backward."""

    x: np.ndarray  # the input, NHWC
    saved: np.ndarray  # the output, NHWC, or the pre-activation for kernels.codes.FROM_INPUT
    offsets: tuple  # (top, left): crops (transposed) or padding before (depthwise)
    workspace: Workspace | None  # the node's, or None
    code: int  # the activation the forward applied


# ---------------------------------------------------------------------------------- depthwise


class _Depthwise(_SpatialConv):
    """The depthwise part of DepthwiseConv* and SeparableConv*: geometry and kernel."""

    def _geometry(self, sizes) -> tuple[tuple, tuple]:
        """(output sizes, padding before) along each spatial axis."""
        axes = [
            conv_axis(size, k, s, d, self.padding)
            for size, k, s, d in zip(sizes, self.kernel_size, self.strides, self.dilation_rate)
        ]
        return tuple(a[0] for a in axes), tuple(a[1] for a in axes)

    def _output_sizes(self, input_shape) -> tuple:
        sizes = self._split(input_shape)[1]
        extents = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate)]
        expected = "spatial sizes >= " + str(tuple(extents))
        return self._checked_sizes(input_shape, self._geometry(sizes)[0], expected)


class _DepthwiseConv(_Depthwise):
    """DepthwiseConv1D and DepthwiseConv2D."""

    def __init__(
        self,
        kernel_size,
        strides,
        padding,
        depth_multiplier,
        data_format,
        dilation_rate,
        activation,
        use_bias,
        depthwise_initializer,
        bias_initializer,
        depthwise_regularizer,
        bias_regularizer,
        depthwise_constraint,
        bias_constraint,
        **kwargs,
    ):
        constraint_args = {
            "depthwise_constraint": depthwise_constraint,
            "bias_constraint": bias_constraint,
        }
        super().__init__(
            kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            bias_initializer, bias_regularizer, constraint_args, **kwargs,
        )  # fmt: skip
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier")
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)

    def compute_output_shape(self, input_shape):
        batch, _, channels = self._split(input_shape)
        out_channels = None if channels is None else channels * self.depth_multiplier
        return self._join(batch, self._output_sizes(input_shape), out_channels)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.compute_output_shape(input_shape)
        self._built_channels = channels
        self.kernel = self.add_weight(
            (*self.kernel_size, channels, self.depth_multiplier),
            self.depthwise_initializer,
            "kernel",
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
        )
        self._add_bias(channels * self.depth_multiplier)

    def forward(self, inputs, training, workspace=None, activation_code=None):
        """The layer's forward; with ``activation_code`` (a channels_last layer without
        activation: the activation layer after it, fused), that activation."""
        code = self._code if activation_code is None else activation_code
        x = self._to_nhwc(inputs)
        bias = self.bias.value if self.use_bias else None
        z, pads = self._depthwise(
            x, self.kernel.value, bias, kernels.codes.kernel_applied(code), workspace
        )
        y, saved = self._activated(z, workspace, code)
        return self._output(y), _Saved(x, saved, pads, workspace, code)

    def forward_with(self, inputs, kernel, bias, code, workspace=None):
        """This layer's output computed with ``kernel`` (its shape), ``bias`` (or None) and the
        activation ``code`` in place of its own (a composite folding a per-channel affine map
        into it)."""
        z, _ = self._depthwise(self._to_nhwc(inputs), kernel, bias, code, workspace)
        return self._from_nhwc(z)

    def inference_call(self, inputs, activation_code=None):
        """``Layer.inference_call``; with ``activation_code`` as ``forward``'s."""
        code = self._code if activation_code is None else activation_code
        bias = self.bias.value if self.use_bias else None
        return self.inference_call_with(inputs, self.kernel.value, bias, code)

    def inference_call_with(self, inputs, kernel, bias, code):
        """``inference_call`` of ``forward_with``: a function inputs -> outputs, for a 2-D
        channels_last layer whose activation its kernels apply."""
        plain = self.rank == 2 and self.data_format == "channels_last"
        last_axis = self._last_axis_code != kernels.codes.LINEAR
        if not plain or code in kernels.codes.FROM_INPUT or last_axis:
            return None
        x = np.ascontiguousarray(inputs)
        out_size, pads = self._nhwc_geometry(x)
        out = np.empty((len(x), *out_size, x.shape[3] * self.depth_multiplier), kernel.dtype)
        return kernels.depthwise.depthwise_conv2d_forward_call(
            x, kernel, bias, self.strides, self.dilation_rate, pads, code, out
        )

    def _depthwise(self, x, kernel, bias, code, workspace):
        """(act(x (N,H,W,C) depthwise-convolved with kernel + bias), the padding before it
        (top, left))."""
        out_size, pads = self._nhwc_geometry(x)
        channels = x.shape[3] * self.depth_multiplier
        out = scratch(workspace, "y", (len(x), *out_size, channels), kernel.dtype)
        z = kernels.depthwise.depthwise_conv2d_forward(
            x, self._kernel_2d(kernel), bias, self._as_2d(self.strides),
            self._as_2d(self.dilation_rate), pads, code, out,
        )  # fmt: skip
        return z, pads

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        x, saved, pads, workspace, code = ctx
        grad = self._output_grad(grad_outputs, saved)
        grad = self._activation_grad(grad, saved, workspace, code)
        dkernel = self._kernel_2d(self.kernel.grad) if self.trainable else None
        dx = kernels.depthwise.depthwise_conv2d_backward(
            grad, x, self._kernel_2d(self.kernel.value), self._as_2d(self.strides),
            self._as_2d(self.dilation_rate), pads, dkernel, self._bias_grad(),
            dx=scratch(workspace, "dx", x.shape, grad.dtype) if need_input_grad else None,
            need_dx=need_input_grad,
        )  # fmt: skip
        return None if dx is None else self._from_nhwc(dx)

    def get_config(self):
        return {
            **super().get_config(),
            "depth_multiplier": self.depth_multiplier,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
        }


class DepthwiseConv2D(_DepthwiseConv):
    """Depthwise 2-D convolution: each input channel convolved with its own
    ``depth_multiplier`` filters (MobileNet's spatial step), plus bias and activation.

    Args:
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1.
        padding: 'valid' or 'same' (TensorFlow's rule: the odd extra row / column of padding
            goes at the bottom / right).
        depth_multiplier: output channels per input channel (output channel ``c * M + m``).
        data_format: 'channels_last' (default) or 'channels_first'.
        dilation_rate: int or (dh, dw).
        activation: an activation name (``fastnn.activations``; softmax is over channels) or
            None, fused.
        use_bias, depthwise_initializer, bias_initializer, depthwise_regularizer,
            bias_regularizer, depthwise_constraint, bias_constraint: as Keras.

    Input shape: ``(batch, height, width, channels)`` (channels_first: channels second).
    Output shape: ``(batch, new_height, new_width, channels * depth_multiplier)``.
    Weights: ``kernel`` ``(kh, kw, channels, depth_multiplier)`` then ``bias``
    ``(channels * depth_multiplier,)``.

    Example: ``DepthwiseConv2D(3, padding="same", activation="relu")(x)``.
    """

    rank = 2

    def __init__(
        self,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate=(1, 1),
        activation=None,
        use_bias: bool = True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
            activation, use_bias, depthwise_initializer, bias_initializer,
            depthwise_regularizer, bias_regularizer, depthwise_constraint, bias_constraint,
            **kwargs,
        )  # fmt: skip


class DepthwiseConv1D(_DepthwiseConv):
    """Depthwise 1-D convolution over sequences: each channel convolved with its own
    ``depth_multiplier`` filters, plus bias and activation. Arguments as ``DepthwiseConv2D``.

    Input shape: ``(batch, steps, channels)`` (channels_first: ``(batch, channels, steps)``).
    Output shape: ``(batch, new_steps, channels * depth_multiplier)``.
    Weights: ``kernel`` ``(k, channels, depth_multiplier)`` then ``bias``
    ``(channels * depth_multiplier,)``.

    Example: ``DepthwiseConv1D(5, padding="same")(x)``.
    """

    rank = 1

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate=1,
        activation=None,
        use_bias: bool = True,
        depthwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        bias_regularizer=None,
        depthwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size, strides, padding, depth_multiplier, data_format, dilation_rate,
            activation, use_bias, depthwise_initializer, bias_initializer,
            depthwise_regularizer, bias_regularizer, depthwise_constraint, bias_constraint,
            **kwargs,
        )  # fmt: skip


# ---------------------------------------------------------------------------------- separable


class _SeparableConv(_Depthwise):
    """SeparableConv1D and SeparableConv2D: a depthwise conv (no bias), then a 1x1 conv as one
    GEMM with the bias and activation in its epilogue."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides,
        padding,
        data_format,
        dilation_rate,
        depth_multiplier,
        activation,
        use_bias,
        depthwise_initializer,
        pointwise_initializer,
        bias_initializer,
        depthwise_regularizer,
        pointwise_regularizer,
        bias_regularizer,
        depthwise_constraint,
        pointwise_constraint,
        bias_constraint,
        **kwargs,
    ):
        constraint_args = {
            "depthwise_constraint": depthwise_constraint,
            "pointwise_constraint": pointwise_constraint,
            "bias_constraint": bias_constraint,
        }
        super().__init__(
            kernel_size, strides, padding, data_format, dilation_rate, activation, use_bias,
            bias_initializer, bias_regularizer, constraint_args, **kwargs,
        )  # fmt: skip
        self.filters = _positive_int(filters, "filters")
        self.depth_multiplier = _positive_int(depth_multiplier, "depth_multiplier")
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)

    def compute_output_shape(self, input_shape):
        batch = self._split(input_shape)[0]
        return self._join(batch, self._output_sizes(input_shape), self.filters)

    def build(self, input_shape):
        channels = self._channels(input_shape)
        self.compute_output_shape(input_shape)
        self._built_channels = channels
        self.depthwise_kernel = self.add_weight(
            (*self.kernel_size, channels, self.depth_multiplier),
            self.depthwise_initializer,
            "depthwise_kernel",
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
        )
        self.pointwise_kernel = self.add_weight(
            (*(1,) * self.rank, channels * self.depth_multiplier, self.filters),
            self.pointwise_initializer,
            "pointwise_kernel",
            regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint,
        )
        self._add_bias(self.filters)

    def _pointwise_2d(self, array):
        return array.reshape(-1, self.filters)

    def _pointwise_for(self, training: bool):
        """The pointwise kernel (C*M, filters); at inference as ``kernels.forms.Forms``, packed
        for the products once while it stays the same (as a Dense layer's)."""
        value = self.pointwise_kernel.value
        if training:
            return self._pointwise_2d(value)
        return kept(self, "pointwise", (value,), lambda v: Forms(self._pointwise_2d(v)))

    def forward(self, inputs, training, workspace=None):
        x = self._to_nhwc(inputs)
        dtype = self.depthwise_kernel.dtype
        bias = self.bias.value if self.use_bias else np.empty(0, dtype)
        pointwise, code = self._pointwise_for(training), kernels.codes.kernel_applied(self._code)
        z, mid, pads = self._separable(x, pointwise, bias, code, workspace)
        y, saved = self._activated(z, workspace)
        return self._output(y), _SavedSeparable(x, mid, saved, pads, workspace)

    def forward_with(self, inputs, pointwise, bias, code, workspace=None):
        """This layer's output (channels_last) from channels_last inputs computed with the
        ``pointwise`` kernel (C*M, filters) (an array or its ``Forms``), ``bias`` and the
        activation ``code`` (one of ``kernels.codes.EPILOGUE``) in place of its own (a
        composite folding an affine map into it)."""
        return self._separable(inputs, pointwise, bias, code, workspace)[0]

    def _separable(self, x, pointwise, bias, code, workspace):
        """(act(the 1x1 product of x's depthwise conv with ``pointwise`` + bias), the depthwise
        conv's output, its padding before): NHWC, ``code`` one of ``kernels.codes.EPILOGUE``
        (in the product's epilogue where it runs on the SIMD kernels)."""
        out_size, pads = self._nhwc_geometry(x)
        dtype = self.depthwise_kernel.dtype
        mid_shape = (len(x), *out_size, x.shape[3] * self.depth_multiplier)
        mid = scratch(workspace, "mid", mid_shape, dtype)
        kernels.depthwise.depthwise_conv2d_forward(
            x, self._kernel_2d(self.depthwise_kernel.value), None, self._as_2d(self.strides),
            self._as_2d(self.dilation_rate), pads, kernels.codes.LINEAR, mid,
        )  # fmt: skip
        z = scratch(workspace, "y", (*mid.shape[:3], self.filters), dtype)
        z2d, mid2d = z.reshape(-1, self.filters), mid.reshape(-1, mid.shape[3])
        if not biased_product(mid2d, pointwise, bias, code, z2d):
            runtime.matmul(mid2d, pointwise, z2d)
            if bias.shape[0] > 0 or code != kernels.codes.LINEAR:
                kernels.activations.bias_activation_forward(z2d, bias, code, z2d)
        return z, mid, pads

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        x, mid, saved, pads, workspace = ctx
        grad = self._activation_grad(self._output_grad(grad_outputs, saved), saved, workspace)
        g2d = grad.reshape(-1, self.filters)
        mid2d = mid.reshape(-1, mid.shape[3])
        bias_grad = self._bias_grad()
        if bias_grad is not None:
            kernels.activations.column_sums_add(g2d, bias_grad)
        products = []
        if self.trainable:
            dpointwise = self._pointwise_2d(self.pointwise_kernel.grad)
            products.append((mid2d.T, g2d, dpointwise, True))
        dmid = None
        if need_input_grad or self.trainable:
            dmid = scratch(workspace, "dmid", mid.shape, grad.dtype)
            pointwise = self._pointwise_2d(self.pointwise_kernel.value)
            products.append((g2d, pointwise.T, dmid.reshape(mid2d.shape), False))
        runtime.matmuls(products)
        if dmid is None:
            return None
        dkernel = self._kernel_2d(self.depthwise_kernel.grad) if self.trainable else None
        dx = kernels.depthwise.depthwise_conv2d_backward(
            dmid, x, self._kernel_2d(self.depthwise_kernel.value), self._as_2d(self.strides),
            self._as_2d(self.dilation_rate), pads, dkernel, None,
            dx=scratch(workspace, "dx", x.shape, grad.dtype) if need_input_grad else None,
            need_dx=need_input_grad,
        )  # fmt: skip
        return None if dx is None else self._from_nhwc(dx)

    def get_config(self):
        return {
            **super().get_config(),
            "depth_multiplier": self.depth_multiplier,
            "filters": self.filters,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer),
        }


class _SavedSeparable(NamedTuple):
    """What a separable conv's forward keeps for its backward."""

    x: np.ndarray  # the input, NHWC
    mid: np.ndarray  # the depthwise output, NHWC (channels * depth_multiplier)
    saved: np.ndarray  # the output, NHWC, or the pre-activation for kernels.codes.FROM_INPUT
    pads: tuple  # (top, left) padding before
    workspace: Workspace | None  # the node's, or None


class SeparableConv2D(_SeparableConv):
    """Depthwise-separable 2-D convolution: a depthwise conv (``depth_multiplier`` filters per
    channel), then a 1x1 conv mixing channels, plus bias and activation.

    Args:
        filters: number of output channels.
        kernel_size, strides, padding, data_format, dilation_rate, depth_multiplier: the
            depthwise step's, as ``DepthwiseConv2D``.
        activation: an activation name (``fastnn.activations``; softmax is over channels) or
            None, fused.
        use_bias, depthwise_initializer, pointwise_initializer, bias_initializer,
            depthwise_regularizer, pointwise_regularizer, bias_regularizer and the
            constraints: as Keras.

    Input shape: ``(batch, height, width, channels)`` (channels_first: channels second).
    Output shape: ``(batch, new_height, new_width, filters)``.
    Weights: ``depthwise_kernel`` ``(kh, kw, channels, depth_multiplier)``,
    ``pointwise_kernel`` ``(1, 1, channels * depth_multiplier, filters)``, ``bias``
    ``(filters,)``.

    Example: ``SeparableConv2D(64, 3, padding="same", activation="relu")(x)``.
    """

    rank = 2

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=(1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate=(1, 1),
        depth_multiplier: int = 1,
        activation=None,
        use_bias: bool = True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            filters, kernel_size, strides, padding, data_format, dilation_rate,
            depth_multiplier, activation, use_bias, depthwise_initializer, pointwise_initializer,
            bias_initializer, depthwise_regularizer, pointwise_regularizer, bias_regularizer,
            depthwise_constraint, pointwise_constraint, bias_constraint, **kwargs,
        )  # fmt: skip


class SeparableConv1D(_SeparableConv):
    """Depthwise-separable 1-D convolution over sequences: a depthwise conv, then a 1x1 conv
    mixing channels, plus bias and activation. Arguments as ``SeparableConv2D``.

    Input shape: ``(batch, steps, channels)`` (channels_first: ``(batch, channels, steps)``).
    Output shape: ``(batch, new_steps, filters)``.
    Weights: ``depthwise_kernel`` ``(k, channels, depth_multiplier)``, ``pointwise_kernel``
    ``(1, channels * depth_multiplier, filters)``, ``bias`` ``(filters,)``.

    Example: ``SeparableConv1D(32, 5, padding="same", activation="relu")(x)``.
    """

    rank = 1

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate=1,
        depth_multiplier: int = 1,
        activation=None,
        use_bias: bool = True,
        depthwise_initializer="glorot_uniform",
        pointwise_initializer="glorot_uniform",
        bias_initializer="zeros",
        depthwise_regularizer=None,
        pointwise_regularizer=None,
        bias_regularizer=None,
        depthwise_constraint=None,
        pointwise_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            filters, kernel_size, strides, padding, data_format, dilation_rate,
            depth_multiplier, activation, use_bias, depthwise_initializer, pointwise_initializer,
            bias_initializer, depthwise_regularizer, pointwise_regularizer, bias_regularizer,
            depthwise_constraint, pointwise_constraint, bias_constraint, **kwargs,
        )  # fmt: skip
