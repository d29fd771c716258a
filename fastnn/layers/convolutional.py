"""Convolution layers: Conv1D and Conv2D (Keras 3 arguments and weight layout).

Conv1D runs on the Conv2D kernels: a ``(batch, steps, channels)`` input is viewed as a one-row
image ``(batch, 1, steps, channels)`` and its ``(k, in, out)`` kernel as ``(1, k, in, out)``.
``data_format='channels_first'`` inputs are transposed to channels_last at the layer's edges
(the weights are the same in both formats, as in Keras).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import activations, constraints, initializers, kernels, regularizers, runtime
from fastnn.kernels.forms import Forms
from fastnn.kernels.workspace import Workspace, scratch
from fastnn.layers.base import Layer, kept, kernel_for, shape_error
from fastnn.layers.geometry import (
    channels_last_shape,
    check_data_format,
    from_channels_last,
    shape_in_format,
    spatial_output_shape,
    standardize_padding,
    standardize_tuple,
    temporal_output_length,
    to_channels_last,
)
from fastnn.ops import nn as ops_nn
from fastnn.ops import numpy as ops_numpy


def _check_filters(filters) -> int:
    if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters <= 0:
        raise ValueError(
            "Invalid value for argument `filters`. Expected a strictly positive value. "
            f"Received filters={filters}."
        )
    return int(filters)


def activated_output(z, code: int, workspace=None) -> tuple:
    """(output, what the backward reads) of a conv kernel's channels-last output z, which has
    the activation ``code`` unless its gradient reads z (kernels.codes.FROM_INPUT: then it is
    applied here, into the workspace's array)."""
    if code not in kernels.codes.FROM_INPUT:
        return z, z
    rows = (-1, z.shape[-1])
    y = scratch(workspace, "activated", z.shape, z.dtype)
    empty = np.empty(0, z.dtype)
    kernels.activations.bias_activation_forward(z.reshape(rows), empty, code, y.reshape(rows))
    return y, z


def pre_activation_grad(grad, saved, code: int, workspace=None) -> np.ndarray:
    """dL/dz (contiguous, saved's dtype) from dL/dy of a conv's channels-last output through
    its activation ``code``; saved is the output y, or z for kernels.codes.FROM_INPUT."""
    grad = np.ascontiguousarray(grad, dtype=saved.dtype)
    if code == kernels.codes.LINEAR:
        return grad
    rows = (-1, saved.shape[-1])
    grad_z = scratch(workspace, "grad_z", grad.shape, grad.dtype)
    kernels.activations.activation_backward(
        grad.reshape(rows), saved.reshape(rows), code, grad_z.reshape(rows)
    )
    return grad_z


class _Conv(Layer):
    """Arguments, weights, activation gradient and config shared by Conv1D and Conv2D."""

    rank = 2

    def __init__(
        self,
        filters,
        kernel_size,
        strides,
        padding,
        data_format,
        dilation_rate,
        groups,
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
        super().__init__(**kwargs)
        rank = self.rank
        self.filters = _check_filters(filters)
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.padding = standardize_padding(padding, allow_causal=rank == 1)
        self.data_format = check_data_format(self, data_format, rank)
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "`strides > 1` not supported in conjunction with `dilation_rate > 1`. "
                f"Received: strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups <= 0:
            raise ValueError(
                f"The number of groups must be a positive integer. Received: groups={groups}."
            )
        if self.filters % groups:
            raise ValueError(
                "The number of filters must be evenly divisible by the number of groups. "
                f"Received: groups={groups}, filters={self.filters}."
            )
        self.groups = int(groups)
        self.activation = activations.get_name(activation)
        self._code = activations.code(self.activation)  # what the channels_last kernels apply
        # Keras applies a softmax over the output's last axis: the width when channels_first,
        # so that one runs after the transpose back (_in_format), outside the kernels.
        self._last_axis_code = kernels.codes.LINEAR
        if self.data_format == "channels_first" and self._code in kernels.codes.ROW_WISE:
            self._last_axis_code, self._code = self._code, kernels.codes.LINEAR
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    @property
    def _span(self) -> tuple:
        """The kernel's extent on the input, its taps ``dilation_rate`` apart: (k - 1) * d + 1."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))

    def _layout(self):
        spatial = "height, width" if self.rank == 2 else "steps"
        if self.data_format == "channels_first":
            return f"(batch, channels, {spatial})"
        return f"(batch, {spatial}, channels)"

    def build(self, input_shape):
        self.compute_output_shape(input_shape)
        channels = channels_last_shape(input_shape, self.data_format)[-1]
        if channels is None:
            raise shape_error(
                self, "the channel axis must be known", self._layout(), tuple(input_shape)
            )
        if channels % self.groups:
            raise ValueError(
                "The number of input channels must be evenly divisible by the number of groups. "
                f"Received groups={self.groups}, but the input has {channels} channels (full "
                f"input shape is {tuple(input_shape)})."
            )
        self.kernel = self.add_weight(
            (*self.kernel_size, channels // self.groups, self.filters),
            self.kernel_initializer,
            "kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                (self.filters,),
                self.bias_initializer,
                "bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def check_input_shape(self, input_shape):
        channels = self.kernel.shape[-2] * self.groups
        shape = channels_last_shape(input_shape, self.data_format)
        if len(shape) != self.rank + 2 or shape[-1] != channels:
            expected = self._layout().replace("channels", str(channels))
            raise shape_error(self, "incompatible input shape", expected, tuple(input_shape))
        self.compute_output_shape(input_shape)

    def _in_format(self, y: np.ndarray) -> tuple:
        """(output, what ``_grad_channels_last`` reads) of the channels_last output ``y``: in
        the layer's data_format, after the activation Keras applies over its last axis."""
        y = from_channels_last(y, self.data_format)
        code = self._last_axis_code
        if code == kernels.codes.LINEAR:
            return y, None
        rows = y.reshape(-1, y.shape[-1])
        kernels.activations.bias_activation_forward(rows, np.empty(0, y.dtype), code, rows)
        return y, y

    def _grad_channels_last(self, grad_outputs, activated) -> np.ndarray:
        """The output gradient through ``_in_format``: channels_last, as the kernels take it."""
        if activated is not None:
            grad = np.ascontiguousarray(grad_outputs, dtype=activated.dtype)
            rows = grad.reshape(-1, grad.shape[-1])
            grad_z = np.empty_like(rows)
            last = activated.reshape(rows.shape)
            kernels.activations.activation_backward(rows, last, self._last_axis_code, grad_z)
            grad_outputs = grad_z.reshape(grad.shape)
        return to_channels_last(grad_outputs, self.data_format)

    def _activated(self, z, workspace=None, code=None) -> tuple:
        """``activated_output`` with ``code``, else the layer's activation."""
        return activated_output(z, self._code if code is None else code, workspace)

    def _activation_grad(self, grad_outputs, saved, workspace=None, code=None):
        """``pre_activation_grad`` with ``code``, else the layer's activation."""
        return pre_activation_grad(
            grad_outputs, saved, self._code if code is None else code, workspace
        )

    def convolution_op(self, inputs, kernel):
        """``inputs`` convolved with ``kernel`` by ``fastnn.ops.conv`` (no bias, no activation),
        as Keras's hook: a subclass may override it, or call it from a call() of its own."""
        return ops_nn.conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            data_format=self.data_format,
            dilation_rate=self.dilation_rate,
        )

    def call(self, inputs):
        """Keras's convolution on fastnn.ops, run by a subclass that overrides
        ``convolution_op`` or calls ``super().call(x)`` (the layer itself runs its kernels)."""
        y = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            channels_first = self.data_format == "channels_first"
            bias = self.bias
            if channels_first:
                bias = ops_numpy.reshape(bias, (-1, *[1] * (len(self.kernel_size))))
            y = y + bias
        return activations.get(self.activation)(y)

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
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class Conv1D(_Conv):
    """1-D convolution (cross-correlation, as Keras) over sequences, plus bias and activation.

    Args:
        filters: number of output channels.
        kernel_size: int or (k,).
        strides: int or (s,), default 1.
        padding: 'valid' (no padding), 'same' (output ceil(steps / stride); the odd extra step
            of padding goes at the end, TensorFlow's rule) or 'causal' (k - 1 zeros before the
            first step, so output t sees only inputs <= t).
        dilation_rate: int or tuple, default 1: the kernel's taps that far apart (stride 1 only,
            as in Keras).
        groups: default 1: the channels split into this many groups, each convolved with its
            own filters // groups filters (a kernel of channels // groups input channels).
        activation: an activation name (``fastnn.activations``; softmax is over channels) or
            None, fused.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            kernel_constraint, bias_constraint: as Keras.
        data_format: 'channels_last' (default) or 'channels_first' (transposed to channels_last
            around the kernels).

    Input shape: ``(batch, steps, channels)`` (channels_first: ``(batch, channels, steps)``).
    Output shape: ``(batch, new_steps, filters)`` (channels_first: ``(batch, filters, ...)``).
    Weights: ``kernel`` ``(k, channels, filters)`` then ``bias`` ``(filters,)``.

    Example: ``Conv1D(64, 5, padding="causal", activation="relu")(x)``.
    """

    rank = 1

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        groups=1,
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
            filters,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            groups,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            kernel_constraint,
            bias_constraint,
            **kwargs,
        )

    def compute_output_shape(self, input_shape):
        shape = channels_last_shape(input_shape, self.data_format)
        steps = temporal_output_length(
            self, shape, self._span[0], self.strides[0], self.padding, "kernel_size"
        )
        return shape_in_format((shape[0], steps, self.filters), self.data_format)

    def forward(self, inputs, training, workspace=None, activation_code=None):
        """The layer's forward (``workspace`` unused); with ``activation_code`` (a channels_last
        layer without activation: the activation layer after it, fused), that activation."""
        code = self._code if activation_code is None else activation_code
        inputs = to_channels_last(inputs, self.data_format)
        n, steps, c = inputs.shape
        k = self._span[0]
        x, padding = inputs, self.padding
        if padding == "causal":  # left zero padding, then a 'valid' convolution
            x = np.zeros((n, steps + k - 1, c), dtype=inputs.dtype)
            x[:, k - 1 :] = inputs
            padding = "valid"
        x4 = np.ascontiguousarray(x).reshape(n, 1, x.shape[1], c)
        bias = self.bias.value if self.use_bias else None
        kernel = self.kernel.value.reshape(1, *self.kernel.shape)
        z = kernels.conv.conv2d_forward(
            x4, kernel, bias, (1, self.strides[0]), padding, kernels.codes.kernel_applied(code),
            threads=runtime.threads(), dilation=(1, self.dilation_rate[0]), groups=self.groups,
        )  # fmt: skip
        y, saved = self._activated(z, code=code)
        y, activated = self._in_format(y.reshape(n, y.shape[2], self.filters))
        return y, (x4, saved, padding, activated, code)

    def inference_call(self, inputs, activation_code=None):
        """``Layer.inference_call`` (the conv of a one-row image on the SIMD kernels, for a
        channels_last layer without causal padding, dilation or groups); with
        ``activation_code`` as ``forward``'s."""
        code = self._code if activation_code is None else activation_code
        plain = self.dilation_rate == (1,) and self.groups == 1 and self.padding != "causal"
        if self.data_format != "channels_last" or not plain or code in kernels.codes.FROM_INPUT:
            return None
        image = (len(inputs), 1, *inputs.shape[1:])
        kernel = kept(self, "image kernel", (self.kernel.value,), _image_kernel)
        bias = self.bias.value if self.use_bias else None
        x4 = np.ascontiguousarray(inputs).reshape(image)
        conv = kernels.conv.conv2d_forward_call(
            x4, kernel, bias, (1, self.strides[0]), self.padding, code, runtime.threads()
        )
        if conv is None:
            return None
        return lambda inputs: _row_of(conv(np.ascontiguousarray(inputs).reshape(image)))

    skips_input_grad = True

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        x4, saved, padding, activated, code = ctx
        grad_outputs = self._grad_channels_last(grad_outputs, activated)
        x4_shape = x4.shape
        grad = self._activation_grad(grad_outputs, saved, code=code).reshape(saved.shape)
        kernel = self.kernel.value.reshape(1, *self.kernel.shape)
        dkernel = self.kernel.grad.reshape(kernel.shape) if self.trainable else None
        dbias = self.bias.grad if self.trainable and self.use_bias else None
        dx = kernels.conv.conv2d_backward(
            grad, x4, kernel, (1, self.strides[0]), padding, dkernel, dbias,
            need_dx=need_input_grad, threads=runtime.threads(),
            dilation=(1, self.dilation_rate[0]), groups=self.groups,
        )  # fmt: skip
        if dx is None:  # a model's first layer: no input gradient wanted
            return None
        dx = dx.reshape(x4_shape[0], x4_shape[2], x4_shape[3])
        if self.padding == "causal":
            dx = dx[:, self._span[0] - 1 :]
        return from_channels_last(dx, self.data_format)


def _image_kernel(kernel: np.ndarray) -> Forms:
    """A Conv1D's kernel (k, C, F) as the one-row image's (1, k, C, F), kept packed."""
    return Forms(kernel.reshape(1, *kernel.shape))


def _row_of(y: np.ndarray) -> np.ndarray:
    """A one-row image's output (N, 1, W, F) as a Conv1D's (N, W, F)."""
    return y.reshape(y.shape[0], y.shape[2], y.shape[3])


class Conv2D(_Conv):
    """2-D convolution (cross-correlation, as Keras) over NHWC images, plus bias and activation.

    Args:
        filters: number of output channels.
        kernel_size: int or (kh, kw).
        strides: int or (sh, sw), default 1.
        padding: 'valid' (no padding) or 'same' (output size ceil(in / stride); TensorFlow's rule,
            the odd extra row / column of padding goes at the bottom / right).
        dilation_rate: int or tuple, default 1: the kernel's taps that far apart (stride 1 only,
            as in Keras).
        groups: default 1: the channels split into this many groups, each convolved with its
            own filters // groups filters (a kernel of channels // groups input channels).
        activation: an activation name (``fastnn.activations``; softmax is over channels) or
            None, fused.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer,
            kernel_constraint, bias_constraint: as Keras.
        data_format: 'channels_last' (default) or 'channels_first' (transposed to channels_last
            around the kernels).

    Input shape: ``(batch, height, width, channels)`` (channels_first: channels on axis 1).
    Output shape: ``(batch, new_height, new_width, filters)`` (channels_first: filters on
    axis 1).
    Weights: ``kernel`` ``(kh, kw, channels, filters)`` then ``bias`` ``(filters,)``.

    Example: ``Conv2D(32, 3, padding="same", activation="relu")(x)``.
    """

    rank = 2

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
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(
            filters,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            groups,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            kernel_constraint,
            bias_constraint,
            **kwargs,
        )

    def compute_output_shape(self, input_shape):
        shape = channels_last_shape(input_shape, self.data_format)
        out_h, out_w = spatial_output_shape(
            self, shape, self._span, self.strides, self.padding, "kernel_size"
        )
        return shape_in_format((shape[0], out_h, out_w, self.filters), self.data_format)

    uses_workspace = True

    def forward(self, inputs, training, workspace=None, moments=None, activation_code=None):
        """The layer's forward; with ``moments`` ((2, filters), for a channels_last conv without
        activation, dilation or groups: a BatchNormalization's), also its outputs' mean and
        biased variance per filter (``kernels.conv.conv2d_forward_moments``). With
        ``activation_code`` (a channels_last conv without activation: the activation layer
        after it, fused), that activation in the conv's epilogue."""
        inputs = to_channels_last(inputs, self.data_format)
        bias = self.bias.value if self.use_bias else None
        kernel = kernel_for(self, training)
        code = self._code if activation_code is None else activation_code
        if moments is None:
            z = self.forward_with(
                inputs, kernel, bias, kernels.codes.kernel_applied(code), workspace
            )
        else:
            plain = self._code == kernels.codes.LINEAR and self.groups == 1
            if not (plain and self.dilation_rate == (1, 1)):
                raise ValueError(
                    f"Conv2D '{self.name}': moments are gathered for a conv without "
                    "activation, dilation or groups"
                )
            z = kernels.conv.conv2d_forward_moments(
                inputs, kernel, bias, self.strides, self.padding, moments,
                self._output_buffer(inputs, workspace), threads=runtime.threads(),
            )  # fmt: skip
        y, saved = self._activated(z, workspace, code)
        y, activated = self._in_format(y)
        return y, _Saved(inputs, saved, workspace, activated, code)

    def forward_with(self, inputs, kernel, bias, code, workspace=None, residual=None):
        """This conv's output computed with ``kernel`` (an array or its ``Forms``), ``bias`` (or
        None) and the activation ``code`` in place of its own (a composite folding a per-channel
        affine map into it), ``residual`` (the output's shape) added before the activation;
        channels_last inputs and outputs whatever the layer's data_format."""
        return kernels.conv.conv2d_forward(
            inputs, kernel, bias, self.strides, self.padding, code,
            self._output_buffer(inputs, workspace), threads=runtime.threads(),
            dilation=self.dilation_rate, groups=self.groups, residual=residual,
        )  # fmt: skip

    def inference_call(self, inputs, activation_code=None):
        """``Layer.inference_call``; with ``activation_code`` as ``forward``'s."""
        code = self._code if activation_code is None else activation_code
        bias = self.bias.value if self.use_bias else None
        return self.inference_call_with(inputs, kernel_for(self, False), bias, code)

    def inference_call_with(self, inputs, kernel, bias, code, residual=None):
        """``inference_call`` of ``forward_with`` (the activation ``code`` applied whole,
        ``residual`` an example of the sum's other input): a function (inputs, residual=None)
        -> outputs, for a channels_last conv without dilation or groups on the SIMD kernels."""
        if not self._plain_channels_last() or code in kernels.codes.FROM_INPUT:
            return None
        return kernels.conv.conv2d_forward_call(
            inputs, kernel, bias, self.strides, self.padding, code, runtime.threads(), residual
        )

    def _plain_channels_last(self) -> bool:
        """A channels_last conv without dilation or groups: what the kernels' call forms take."""
        plain = self.dilation_rate == (1, 1) and self.groups == 1
        return plain and self.data_format == "channels_last"

    def pooled_inference_call(self, inputs, kernel, bias, code, average=False):
        """An inference call of ``max_pooled_with`` (or, ``average``,
        ``forward_average_pooled``) with ``kernel`` (a ``Forms``), ``bias`` and ``code``: a
        function inputs -> the 2x2-pooled outputs, where the kernels pool in their bands."""
        if not self._plain_channels_last():
            return None
        return kernels.conv.conv2d_pooled_call(
            inputs, kernel, bias, self.strides, self.padding, code, average, runtime.threads()
        )

    def _output_buffer(self, inputs, workspace):
        """The workspace's array for the conv's channels_last output (None without one)."""
        if workspace is None:
            return None
        out_h, out_w, _, _ = kernels.conv.conv_geometry(
            inputs.shape, (*self._span, *self.kernel.shape[2:]), self.strides, self.padding
        )
        return scratch(workspace, "y", (len(inputs), out_h, out_w, self.filters), self.kernel.dtype)

    def trains_max_pooled(self, activation_code=None) -> bool:
        """Whether training may run ``forward_max_pooled`` (with ``activation_code`` for the
        layer's own): the activation's gradient at a pool's maximum must follow from the pooled
        value alone (elementwise activations whose gradient reads their output: not softmax,
        nor gelu)."""
        codes = kernels.codes
        code = self._code if activation_code is None else activation_code
        return code not in codes.ROW_WISE and code not in codes.FROM_INPUT

    def forward_max_pooled(self, inputs, training, workspace=None, activation_code=None):
        """(MaxPooling2D(2)(this layer's output), ctx) in one pass: (batch, oh//2, ow//2, F),
        with ``activation_code`` for the layer's own activation (the activation layer between
        a conv without one and the pool, fused).

        The conv's output never reaches memory; ctx (None at inference) keeps the input and
        where each maximum was (uint8), which is all ``backward_max_pooled`` needs.
        """
        code = self._code if activation_code is None else activation_code
        bias = self.bias.value if self.use_bias else None
        out_h, out_w, _, _ = kernels.conv.conv_geometry(
            inputs.shape, self.kernel.shape, self.strides, self.padding
        )
        shape = (len(inputs), out_h // 2, out_w // 2, self.filters)
        codes = scratch(workspace, "codes", shape, np.uint8) if training else None
        kernel = kernel_for(self, training)
        pooled = self.max_pooled_with(inputs, kernel, bias, code, codes, workspace)
        return pooled, (_SavedPooled(pooled, codes, inputs, workspace, code) if training else None)

    def max_pooled_with(self, inputs, kernel, bias, code, codes=None, workspace=None):
        """``forward_max_pooled``'s output computed with ``kernel``, ``bias`` (or None) and the
        activation ``code`` in place of its own; ``codes`` (uint8, pooled shape) or None."""
        out_h, out_w, _, _ = kernels.conv.conv_geometry(
            inputs.shape, self.kernel.shape, self.strides, self.padding
        )
        shape = (len(inputs), out_h // 2, out_w // 2, self.filters)
        return kernels.conv.conv2d_forward_max_pool(
            inputs, kernel, bias, self.strides, self.padding, code,
            scratch(workspace, "pooled", shape, self.kernel.dtype), codes,
            threads=runtime.threads(),
        )  # fmt: skip

    def forward_average_pooled(self, inputs, workspace=None, activation_code=None):
        """AveragePooling2D(2)(this layer's output) at inference in one pass (the conv's output
        stays in cache where its kernels allow: ``kernels.conv.conv2d_forward_average_pool``):
        (batch, oh // 2, ow // 2, filters); ``activation_code`` for the layer's own."""
        code = self._code if activation_code is None else activation_code
        out_h, out_w, _, _ = kernels.conv.conv_geometry(
            inputs.shape, self.kernel.shape, self.strides, self.padding
        )
        shape = (len(inputs), out_h // 2, out_w // 2, self.filters)
        return kernels.conv.conv2d_forward_average_pool(
            inputs, kernel_for(self, False), self.bias.value if self.use_bias else None,
            self.strides, self.padding, code,
            scratch(workspace, "pooled", shape, self.kernel.dtype), threads=runtime.threads(),
        )  # fmt: skip

    def backward_max_pooled(self, ctx, grad_pooled, need_input_grad=True):
        """The input's gradient from the pooled output's, after ``forward_max_pooled``."""
        x, workspace = ctx.x, ctx.workspace
        grad = self._activation_grad(grad_pooled, ctx.pooled, workspace, ctx.code)  # at the maxima
        return kernels.conv.conv2d_backward_max_pooled(
            grad, ctx.codes, x, self.kernel.value, self.strides, self.padding,
            self.kernel.grad if self.trainable else None,
            self.bias.grad if self.trainable and self.use_bias else None,
            dx=scratch(workspace, "dx", x.shape, ctx.pooled.dtype) if need_input_grad else None,
            need_dx=need_input_grad, threads=runtime.threads(),
        )  # fmt: skip

    skips_input_grad = True

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        x, saved, workspace, activated, code = ctx
        grad_outputs = self._grad_channels_last(grad_outputs, activated)
        grad = self._activation_grad(grad_outputs, saved, workspace, code)
        dx = kernels.conv.conv2d_backward(
            grad, x, self.kernel.value, self.strides, self.padding,
            self.kernel.grad if self.trainable else None,
            self.bias.grad if self.trainable and self.use_bias else None,
            dx=scratch(workspace, "dx", x.shape, saved.dtype) if need_input_grad else None,
            need_dx=need_input_grad, threads=runtime.threads(), dilation=self.dilation_rate,
            groups=self.groups,
        )  # fmt: skip
        return None if dx is None else from_channels_last(dx, self.data_format)


class _Saved(NamedTuple):
    """What Conv2D's forward keeps for its backward."""

    x: np.ndarray  # the input (batch, h, w, c)
    saved: np.ndarray  # the output (batch, oh, ow, filters), or the pre-activation one for the
    # activations whose gradient reads it (kernels.codes.FROM_INPUT)
    workspace: Workspace | None  # the node's, or None
    activated: np.ndarray | None = None  # channels_first: the output after a softmax over its
    # last axis (Keras's), or None
    code: int | None = None  # the activation the forward applied (None: the layer's own)


class _SavedPooled(NamedTuple):
    """What Conv2D's ``forward_max_pooled`` keeps for ``backward_max_pooled``."""

    pooled: np.ndarray  # the pooled output (batch, oh // 2, ow // 2, filters)
    codes: np.ndarray  # where each maximum was: uint8, pooled's shape
    x: np.ndarray  # the input (batch, h, w, c)
    workspace: Workspace | None  # the node's, or None
    code: int  # the activation the forward applied
