"""ONNX converters of the convolution family: Conv1D/2D, their depthwise, separable and
transposed forms, pooling, global pooling, zero padding, cropping and upsampling.

They work channels-first (ONNX's layout for Conv and the pools); the builder puts a Transpose
where a value enters or leaves such a chain, once per value. A channels_first layer's input is
in that layout already.
"""

from __future__ import annotations

import math

import numpy as np

from fastnn.export.builder import CHANNELS_FIRST, NATIVE, Value, position
from fastnn.export.convert_core import activation, folded_weights
from fastnn.export.registry import Call, converter
from fastnn.kernels.geometry import transpose_axis
from fastnn.layers import convolutional, convolutional_extra, pooling, reshaping


def _is_channels_first(call: Call) -> bool:
    return getattr(call.layer, "data_format", "channels_last") == "channels_first"


def _operand(call: Call) -> tuple[Value, list, str]:
    """The input as ONNX's (batch, channels, ...), its spatial sizes, and the layout a result
    in that arrangement has: a channels_last layer's input is transposed (once per value), a
    channels_first layer's is already so."""
    b = call.builder
    if _is_channels_first(call):
        x = b.native(call.x, call.hint)
        return x, list(x.shape[2:]), NATIVE
    return b.channels_first(call.x, call.hint), list(call.x.shape[1:-1]), CHANNELS_FIRST


def _spatial_axes(call: Call) -> tuple[Value, list[int]]:
    """The input (in a layout this layer can use) and where its spatial axes sit in it."""
    if _is_channels_first(call):
        x = call.builder.native(call.x, call.hint)
        return x, list(range(2, x.rank))
    x = call.x
    return x, [position(x, axis) for axis in range(1, x.rank - 1)]


def _pads(call: Call, sizes, kernel, strides, dilations) -> dict:
    """Conv/pool padding attributes for Keras's 'valid', 'same' (TensorFlow's: the odd pixel
    after) and 'causal' (all before), on spatial ``sizes``."""
    padding = call.layer.padding
    rank = len(kernel)
    if padding == "valid":
        return {"pads": [0] * (2 * rank)}
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if padding == "causal":
        return {"pads": [spans[0] - 1, 0]}
    if any(size is None and stride > 1 for size, stride in zip(sizes, strides)):
        return {"auto_pad": "SAME_UPPER"}  # pads that depend on the size (no dilation here)
    before, after = [], []
    for size, span, stride in zip(sizes, spans, strides):
        if stride == 1:  # span - 1 whatever the size
            total = span - 1
        else:
            total = max((math.ceil(size / stride) - 1) * stride + span - size, 0)
        before.append(total // 2)
        after.append(total - total // 2)
    return {"pads": before + after}


def _conv(call: Call, kernel: np.ndarray, bias, group: int) -> Value:
    """A channels-first Conv of ``call.x`` with a Keras kernel ``(k..., in/group, out)``."""
    layer, b = call.layer, call.builder
    if _is_channels_first(call) and layer.activation in ("softmax", "log_softmax"):
        raise call.refuse(f"activation={layer.activation!r} with data_format='channels_first'")
    x, sizes, layout = _operand(call)
    kernel, bias = folded_weights(call, kernel, bias)
    rank = kernel.ndim - 2
    weight = np.transpose(kernel, (rank + 1, rank, *range(rank)))  # (out, in/group, k...)
    inputs = [x.name, b.const(weight, f"{call.hint}/kernel")]
    if bias is not None:
        inputs.append(b.const(bias, f"{call.hint}/bias"))
    dilations = list(getattr(layer, "dilation_rate", (1,) * rank))
    out = b.op(
        "Conv",
        inputs,
        call.hint,
        kernel_shape=list(kernel.shape[:rank]),
        strides=list(layer.strides),
        dilations=dilations,
        group=group,
        **_pads(call, sizes, kernel.shape[:rank], layer.strides, dilations),
    )
    return activation(call, Value(out, call.output_shapes[0], layout), layer.activation)


@converter(convolutional.Conv1D, convolutional.Conv2D, folds_bn=True)
def _convolution(call: Call):
    layer = call.layer
    bias = layer.bias.value if layer.use_bias else None
    return [_conv(call, layer.kernel.value, bias, layer.groups)]


@converter(convolutional_extra.DepthwiseConv1D, convolutional_extra.DepthwiseConv2D, folds_bn=True)
def _depthwise(call: Call):
    layer = call.layer
    kernel = layer.kernel.value  # (k..., channels, multiplier)
    rank = kernel.ndim - 2
    channels, multiplier = kernel.shape[-2:]
    # Output channel c * multiplier + m is input channel c's filter m: a grouped conv.
    grouped = kernel.reshape(*kernel.shape[:rank], 1, channels * multiplier)
    bias = layer.bias.value if layer.use_bias else None
    return [_conv(call, grouped, bias, channels)]


@converter(convolutional_extra.SeparableConv1D, convolutional_extra.SeparableConv2D)
def _separable(call: Call):
    layer, b = call.layer, call.builder
    depthwise = layer.depthwise_kernel.value
    rank = depthwise.ndim - 2
    channels, multiplier = depthwise.shape[-2:]
    grouped = depthwise.reshape(*depthwise.shape[:rank], 1, channels * multiplier)
    linear = Call(b, _Linear(layer), call.inputs, call.output_shapes, options=call.options)
    middle = _conv(linear, grouped, None, channels)
    pointwise = Call(b, _Pointwise(layer), [middle], call.output_shapes, options=call.options)
    bias = layer.bias.value if layer.use_bias else None
    return [_conv(pointwise, layer.pointwise_kernel.value, bias, 1)]


class _Linear:
    """A separable conv's depthwise half: the layer's geometry, no activation."""

    activation = "linear"

    def __init__(self, layer):
        self.name, self.data_format = layer.name, layer.data_format
        self.padding, self.strides, self.dilation_rate = (
            layer.padding,
            layer.strides,
            layer.dilation_rate,
        )


class _Pointwise:
    """A separable conv's 1x1 half: unit strides, the layer's activation."""

    padding = "valid"

    def __init__(self, layer):
        self.name, self.activation, self.data_format = (
            layer.name,
            layer.activation,
            layer.data_format,
        )
        self.strides = self.dilation_rate = (1,) * len(layer.strides)


@converter(convolutional_extra.Conv1DTranspose, convolutional_extra.Conv2DTranspose)
def _conv_transpose(call: Call):
    layer, b = call.layer, call.builder
    if _is_channels_first(call) and layer.activation in ("softmax", "log_softmax"):
        raise call.refuse(f"activation={layer.activation!r} with data_format='channels_first'")
    x, sizes, layout = _operand(call)
    if any(size is None for size in sizes):
        raise call.refuse("its output size needs the input's spatial sizes; give them in Input")
    begin, end, extra = [], [], []
    paddings = layer.output_padding or (None,) * len(sizes)
    for size, k, s, d, op in zip(
        sizes, layer.kernel_size, layer.strides, layer.dilation_rate, paddings
    ):
        out, crop = transpose_axis(size, k, s, d, layer.padding, op)
        # ONNX: (size - 1) * s + extent + output_padding - pads; Keras cuts `crop` before and
        # cuts, or extends, the end to `out`.
        trim = (size - 1) * s + (k - 1) * d + 1 - crop - out
        begin.append(crop)
        end.append(max(trim, 0))
        extra.append(max(-trim, 0))
    kernel = layer.kernel.value  # (k..., filters, channels)
    rank = kernel.ndim - 2
    weight = np.transpose(kernel, (rank + 1, rank, *range(rank)))  # (channels, filters, k...)
    inputs = [x.name, b.const(weight, f"{call.hint}/kernel")]
    if layer.use_bias:
        inputs.append(b.const(layer.bias.value, f"{call.hint}/bias"))
    out = b.op(
        "ConvTranspose",
        inputs,
        call.hint,
        kernel_shape=list(layer.kernel_size),
        strides=list(layer.strides),
        dilations=list(layer.dilation_rate),
        pads=begin + end,
        output_padding=extra,
    )
    return [activation(call, Value(out, call.output_shapes[0], layout), layer.activation)]


# ---- pooling -----------------------------------------------------------------------------------
@converter(
    pooling.MaxPooling1D, pooling.MaxPooling2D, pooling.AveragePooling1D, pooling.AveragePooling2D
)
def _pool(call: Call):
    layer, b = call.layer, call.builder
    x, sizes, layout = _operand(call)
    rank = len(layer.pool_size)
    pads = _pads(call, sizes, layer.pool_size, layer.strides, (1,) * rank)
    is_max = isinstance(layer, (pooling.MaxPooling1D, pooling.MaxPooling2D))
    extra = {} if is_max else {"count_include_pad": 0}  # Keras's 'same' averages real pixels
    out = b.op(
        "MaxPool" if is_max else "AveragePool",
        [x.name],
        call.hint,
        kernel_shape=list(layer.pool_size),
        strides=list(layer.strides),
        **pads,
        **extra,
    )
    return [Value(out, call.output_shapes[0], layout)]


@converter(
    pooling.GlobalAveragePooling1D,
    pooling.GlobalAveragePooling2D,
    pooling.GlobalMaxPooling1D,
    pooling.GlobalMaxPooling2D,
)
def _global_pool(call: Call):
    layer, b = call.layer, call.builder
    is_max = isinstance(layer, (pooling.GlobalMaxPooling1D, pooling.GlobalMaxPooling2D))
    x, axes = _spatial_axes(call)  # in either layout: no Transpose needed
    out = b.reduce("ReduceMax" if is_max else "ReduceMean", x.name, axes, call.hint,
                   keepdims=layer.keepdims)  # fmt: skip
    layout = x.layout if layer.keepdims else NATIVE
    return [Value(out, call.output_shapes[0], layout)]


# ---- padding, cropping, upsampling -------------------------------------------------------------
@converter(reshaping.ZeroPadding1D, reshaping.ZeroPadding2D)
def _zero_padding(call: Call):
    b = call.builder
    x, axes = _spatial_axes(call)
    begin, end = [0] * x.rank, [0] * x.rank
    for axis, (before, after) in zip(axes, call.layer._edges()):
        begin[axis], end[axis] = before, after
    out = b.op("Pad", [x.name, b.ints(begin + end, f"{call.hint}/pads")], call.hint)
    return [Value(out, call.output_shapes[0], x.layout)]


@converter(reshaping.Cropping1D, reshaping.Cropping2D)
def _cropping(call: Call):
    b = call.builder
    x, axes = _spatial_axes(call)
    edges = list(call.layer._edges())
    starts = [before for before, _ in edges]
    ends = [-after if after else np.iinfo(np.int64).max for _, after in edges]
    out = b.slice(x.name, starts, ends, axes, call.hint)
    return [Value(out, call.output_shapes[0], x.layout)]


@converter(reshaping.UpSampling1D, reshaping.UpSampling2D)
def _upsampling(call: Call):
    layer, b = call.layer, call.builder
    interpolation = getattr(layer, "interpolation", "nearest")
    if interpolation not in ("nearest", "bilinear"):
        raise call.refuse(f"interpolation={interpolation!r} has no converter")
    x, _, layout = _operand(call)
    sizes = tuple(np.atleast_1d(layer.size).tolist())
    scales = b.const(np.array([1.0, 1.0, *sizes], np.float32), f"{call.hint}/scales",
                     dtype=np.float32)  # fmt: skip
    if interpolation == "nearest":  # each pixel repeated
        modes = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                 "nearest_mode": "floor"}  # fmt: skip
    else:  # half-pixel centers, edges clamped
        modes = {"mode": "linear", "coordinate_transformation_mode": "half_pixel"}
    out = b.op("Resize", [x.name, "", scales], call.hint, **modes)
    return [Value(out, call.output_shapes[0], layout)]
