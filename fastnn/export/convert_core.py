"""ONNX converters of the core layers: Dense, activations, shaping, merging, normalization,
Embedding, and the layers that do nothing at inference (Dropout and the noise layers)."""

from __future__ import annotations

import math

import numpy as np

from fastnn.export.builder import CHANNELS_FIRST, GraphBuilder, Value, position
from fastnn.export.registry import Call, converter
from fastnn.layers import activations as activation_layers
from fastnn.layers import (
    core,
    embedding,
    merging,
    normalization,
    preprocessing,
    preprocessing_image,
    regularization,
    reshaping,
)

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# ---- activations --------------------------------------------------------------------------------
def activation(call: Call, x: Value, name: str, hint: str | None = None) -> Value:
    """``x`` through the Keras activation ``name`` (any layout: softmax runs over Keras's last
    axis wherever the layout keeps it)."""
    if name == "linear":
        return x
    if name not in _ACTIVATIONS:
        raise call.refuse(f"the activation {name!r} has no ONNX form in this exporter")
    out = _ACTIVATIONS[name](call.builder, x.name, hint or call.hint, position(x, -1))
    return Value(out, x.shape, x.layout)


def _unary(op_type, **attrs):
    return lambda b, x, hint, axis: b.op(op_type, [x], hint, **attrs)


def _clip(b: GraphBuilder, x: str, low, high, hint: str) -> str:
    low_name = "" if low is None else b.const(low, f"{hint}/min")
    high_name = "" if high is None else b.const(high, f"{hint}/max")
    return b.op("Clip", [x, low_name, high_name], hint)


def _gelu(b: GraphBuilder, x: str, hint: str, axis: int) -> str:
    """Gelu from opset 20; before, 0.5 x (1 + erf(x / sqrt(2)))."""
    if b.opset >= 20:
        return b.op("Gelu", [x], hint)
    scaled = b.op("Mul", [x, b.const(1 / math.sqrt(2), f"{hint}/k")], hint)
    gate = b.op("Add", [b.op("Erf", [scaled], hint), b.const(1.0, f"{hint}/one")], hint)
    return b.op("Mul", [b.op("Mul", [x, b.const(0.5, f"{hint}/half")], hint), gate], hint)


def _silu(b: GraphBuilder, x: str, hint: str, axis: int) -> str:
    return b.op("Mul", [x, b.op("Sigmoid", [x], hint)], hint)


def _hard_silu(b: GraphBuilder, x: str, hint: str, axis: int) -> str:
    """HardSwish from opset 14; before, x * hard_sigmoid(x)."""
    if b.opset >= 14:
        return b.op("HardSwish", [x], hint)
    return b.op("Mul", [x, b.op("HardSigmoid", [x], hint, alpha=1 / 6, beta=0.5)], hint)


def _mish(b: GraphBuilder, x: str, hint: str, axis: int) -> str:
    """Mish from opset 18; before, x * tanh(softplus(x))."""
    if b.opset >= 18:
        return b.op("Mish", [x], hint)
    return b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x], hint)], hint)], hint)


#: Keras's activations (fastnn.activations' names) as ONNX: fn(builder, x, hint, axis).
_ACTIVATIONS = {
    "relu": _unary("Relu"),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "softmax": lambda b, x, hint, axis: b.op("Softmax", [x], hint, axis=axis),
    "log_softmax": lambda b, x, hint, axis: b.op("LogSoftmax", [x], hint, axis=axis),
    "elu": _unary("Elu", alpha=1.0),
    "selu": _unary("Selu", alpha=SELU_ALPHA, gamma=SELU_SCALE),
    "softplus": _unary("Softplus"),
    "softsign": _unary("Softsign"),
    "hard_sigmoid": _unary("HardSigmoid", alpha=1 / 6, beta=0.5),  # relu6(x + 3) / 6
    "exponential": _unary("Exp"),
    "leaky_relu": _unary("LeakyRelu", alpha=0.2),
    "relu6": lambda b, x, hint, axis: _clip(b, x, 0.0, 6.0, hint),
    "gelu": _gelu,
    "silu": _silu,
    "hard_silu": _hard_silu,
    "mish": _mish,
}
#: Every activation name the exporter converts.
ACTIVATION_NAMES = frozenset({"linear", *_ACTIVATIONS})


@converter(core.Activation)
def _activation_layer(call: Call):
    return [activation(call, call.x, call.layer.activation)]


@converter(activation_layers.ReLU, activation_layers.LeakyReLU)
def _relu_layer(call: Call):
    layer, b, x = call.layer, call.builder, call.x
    slope, cap, threshold = layer.negative_slope, layer.max_value, layer.threshold
    if threshold == 0 and slope == 0:
        out = b.op("Relu", [x.name], call.hint)
    elif threshold == 0:
        out = b.op("LeakyRelu", [x.name], call.hint, alpha=float(slope))
    else:  # x where x >= threshold, slope * (x - threshold) below
        above = b.op("GreaterOrEqual", [x.name, b.const(threshold, f"{call.hint}/t")], call.hint)
        shifted = b.op("Sub", [x.name, b.const(threshold, f"{call.hint}/t")], call.hint)
        below = b.op("Mul", [shifted, b.const(slope, f"{call.hint}/slope")], call.hint)
        out = b.op("Where", [above, x.name, below], call.hint)
    if cap is not None:
        out = _clip(b, out, None, float(cap), call.hint)
    return [Value(out, x.shape, x.layout)]


@converter(activation_layers.ELU)
def _elu_layer(call: Call):
    out = call.builder.op("Elu", [call.x.name], call.hint, alpha=float(call.layer.alpha))
    return [Value(out, call.x.shape, call.x.layout)]


@converter(activation_layers.PReLU)
def _prelu_layer(call: Call):
    b = call.builder
    x = b.native(call.x, call.hint)
    alpha = b.const(call.layer.alpha.value, f"{call.hint}/alpha")
    return [Value(b.op("PRelu", [x.name, alpha], call.hint), x.shape)]


@converter(activation_layers.Softmax)
def _softmax_layer(call: Call):
    b = call.builder
    x = b.native(call.x, call.hint)
    axes = sorted({a % x.rank for a in np.atleast_1d(call.layer.axis).tolist()})
    if len(axes) == 1:
        return [Value(b.op("Softmax", [x.name], call.hint, axis=axes[0]), x.shape)]
    peak = b.reduce("ReduceMax", x.name, axes, call.hint)
    e = b.op("Exp", [b.op("Sub", [x.name, peak], call.hint)], call.hint)
    out = b.op("Div", [e, b.reduce("ReduceSum", e, axes, call.hint)], call.hint)
    return [Value(out, x.shape)]


# ---- Dense -------------------------------------------------------------------------------------
def folded_weights(call: Call, kernel: np.ndarray, bias: np.ndarray | None):
    """The kernel and bias with ``call.folded_bn`` folded in along the kernel's last axis
    (float64 arithmetic); unchanged if there is no BN to fold."""
    if call.folded_bn is None:
        return kernel, bias
    scale, shift = bn_scale_shift(call.folded_bn)
    bias = np.zeros(kernel.shape[-1]) if bias is None else bias.astype(np.float64)
    return kernel.astype(np.float64) * scale, bias * scale + shift


def bn_scale_shift(bn) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNormalization as ``x * scale + shift`` (float64, per channel)."""
    mean = bn.moving_mean.value.astype(np.float64)
    variance = bn.moving_variance.value.astype(np.float64)
    gamma = bn.gamma.value.astype(np.float64) if bn.scale else np.ones_like(mean)
    beta = bn.beta.value.astype(np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return scale, beta - mean * scale


@converter(core.Dense, folds_bn=True)
def _dense(call: Call):
    layer, b = call.layer, call.builder
    x = call.x
    if position(x, -1) != x.rank - 1:  # the features must be the last axis (time-major is)
        x = b.native(x, call.hint)
    bias = layer.bias.value if layer.use_bias else None
    kernel, bias = folded_weights(call, layer.kernel.value, bias)
    if x.permuted is not None:  # e.g. a channels-first map flattened: reorder the rows
        name, order = x.permuted
        x, kernel = Value(name, x.shape), kernel[order]
    w = b.const(kernel, f"{call.hint}/kernel")
    if x.rank == 2 and bias is not None:
        out = b.op("Gemm", [x.name, w, b.const(bias, f"{call.hint}/bias")], call.hint)
    else:
        out = b.op("MatMul", [x.name, w], call.hint)
        if bias is not None:
            out = b.op("Add", [out, b.const(bias, f"{call.hint}/bias")], call.hint)
    shape = call.output_shapes[0]
    return [activation(call, Value(out, shape, x.layout), layer.activation)]


def _channels_first_order(shape: tuple) -> np.ndarray:
    """For each feature of a channels-first flattening of ``(..., channels)``, its index in
    Keras's (channels-last) flattening."""
    keras_index = np.arange(int(np.prod(shape))).reshape(shape)
    return np.moveaxis(keras_index, -1, 0).reshape(-1)


# ---- layers that do nothing at inference ---------------------------------------------------------
@converter(
    core.Dropout,
    regularization.GaussianNoise,
    regularization.GaussianDropout,
    regularization.SpatialDropout1D,
    regularization.SpatialDropout2D,
    regularization.ActivityRegularization,
    reshaping.Identity,
    preprocessing_image.RandomFlip,  # the augmentations but RandomCrop, which crops
    preprocessing_image.RandomRotation,
    preprocessing_image.RandomZoom,
    preprocessing_image.RandomTranslation,
    preprocessing_image.RandomContrast,
    preprocessing_image.RandomBrightness,
)
def _inference_identity(call: Call):
    return [call.x]


# ---- shaping -----------------------------------------------------------------------------------
@converter(core.Flatten)
def _flatten(call: Call):
    b, source = call.builder, call.x
    x = b.native(source, call.hint)
    out = Value(b.op("Flatten", [x.name], call.hint, axis=1), call.output_shapes[0])
    if source.layout == CHANNELS_FIRST and None not in source.shape[1:]:
        as_stored = b.op("Flatten", [source.name], call.hint, axis=1)
        out.permuted = (as_stored, _channels_first_order(source.shape[1:]))
    return [out]


@converter(reshaping.Reshape)
def _reshape(call: Call):
    b = call.builder
    x = b.native(call.x, call.hint)
    out = b.reshape(x.name, [0, *call.layer.target_shape], call.hint)
    return [Value(out, call.output_shapes[0])]


@converter(reshaping.Permute)
def _permute(call: Call):
    b = call.builder
    x = b.native(call.x, call.hint)
    out = b.transpose(x.name, [0, *call.layer.dims], call.hint)
    return [Value(out, call.output_shapes[0])]


@converter(reshaping.RepeatVector)
def _repeat_vector(call: Call):
    b = call.builder
    x = b.unsqueeze(call.x.name, [1], call.hint)
    out = b.op("Expand", [x, b.ints([1, call.layer.n, 1], f"{call.hint}/shape")], call.hint)
    return [Value(out, call.output_shapes[0])]


# ---- merging -----------------------------------------------------------------------------------
def _same_layout(call: Call) -> list[Value]:
    """The inputs in one layout: theirs if they share one, else Keras's."""
    if len({v.layout for v in call.inputs}) == 1:
        return call.inputs
    return [call.builder.native(v, call.hint) for v in call.inputs]


def _fold_pairwise(call: Call, op_type: str) -> Value:
    values = _same_layout(call)
    out = values[0].name
    for v in values[1:]:
        out = call.builder.op(op_type, [out, v.name], call.hint)
    return Value(out, call.output_shapes[0], values[0].layout)


@converter(merging.Add)
def _add(call: Call):
    return [_fold_pairwise(call, "Add")]


@converter(merging.Subtract)
def _subtract(call: Call):
    return [_fold_pairwise(call, "Sub")]


@converter(merging.Multiply)
def _multiply(call: Call):
    return [_fold_pairwise(call, "Mul")]


@converter(merging.Maximum)
def _maximum(call: Call):
    return [_fold_pairwise(call, "Max")]


@converter(merging.Minimum)
def _minimum(call: Call):
    return [_fold_pairwise(call, "Min")]


@converter(merging.Average)
def _average(call: Call):
    total = _fold_pairwise(call, "Add")
    scale = call.builder.const(1.0 / len(call.inputs), f"{call.hint}/scale")
    out = call.builder.op("Mul", [total.name, scale], call.hint)
    return [Value(out, total.shape, total.layout)]


if hasattr(merging, "Minimum"):  # registered when the merging family has it

    @converter(merging.Minimum)
    def _minimum(call: Call):
        return [_fold_pairwise(call, "Min")]


@converter(merging.Concatenate)
def _concatenate(call: Call):
    values = _same_layout(call)
    layout = values[0].layout
    axis = position(values[0], call.layer.axis)  # where Keras's axis sits in the layout
    out = Value(call.builder.op("Concat", [v.name for v in values], call.hint, axis=axis),
                call.output_shapes[0], layout)  # fmt: skip
    out.permuted = _permuted_concat(call, values)
    return [out]


def _permuted_concat(call: Call, values: list[Value]):
    """The features of (batch, n) inputs joined with each one's stored order where it has one
    (``Value.permuted``), or None when none has or a size is unknown."""
    if values[0].rank != 2 or all(v.permuted is None for v in values):
        return None
    if any(v.shape[1] is None for v in values):
        return None
    names, orders, offset = [], [], 0
    for v in values:
        name, order = v.permuted or (v.name, np.arange(v.shape[1]))
        names.append(name)
        orders.append(order + offset)
        offset += v.shape[1]
    joined = call.builder.op("Concat", names, call.hint, axis=1)
    return joined, np.concatenate(orders)


# ---- normalization -----------------------------------------------------------------------------
def _channel_constant(call: Call, x: Value, vector: np.ndarray, axis: int, hint: str) -> str:
    """``vector`` shaped to broadcast along Keras axis ``axis`` of ``x`` in its layout."""
    shape = [1] * x.rank
    shape[position(x, axis)] = vector.size
    return call.builder.const(vector.reshape(shape), hint)


@converter(normalization.BatchNormalization)
def _batch_normalization(call: Call):
    b, x = call.builder, call.x
    scale, shift = bn_scale_shift(call.layer)
    axis = call.layer.axis
    out = b.op("Mul", [x.name, _channel_constant(call, x, scale, axis, f"{call.hint}/scale")],
               call.hint)  # fmt: skip
    out = b.op("Add", [out, _channel_constant(call, x, shift, axis, f"{call.hint}/shift")],
               call.hint)  # fmt: skip
    return [Value(out, x.shape, x.layout)]


def normalized(b: GraphBuilder, x: str, axes, hint: str, epsilon: float, rms: bool = False):
    """``(x - mean) / sqrt(var + epsilon)`` over ``axes`` (``x / ...`` with ``rms``)."""
    mean = b.reduce("ReduceMean", x, axes, hint)
    centered = b.op("Sub", [x, mean], hint)
    variance = b.reduce("ReduceMean", b.op("Mul", [centered, centered], hint), axes, hint)
    spread = b.op("Sqrt", [b.op("Add", [variance, b.const(epsilon, f"{hint}/eps")], hint)], hint)
    return b.op("Div", [x if rms else centered, spread], hint)


@converter(normalization.LayerNormalization)
def _layer_normalization(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    x = b.native(call.x, hint)
    axes = sorted({a % x.rank for a in np.atleast_1d(layer.axis).tolist()})
    shape = tuple(x.shape[a] for a in axes)
    gamma = layer.gamma.value if layer.scale or layer.rms_scaling else np.ones(shape)
    beta = layer.beta.value if layer.center and not layer.rms_scaling else np.zeros(shape)
    trailing = axes == list(range(axes[0], x.rank))
    if trailing and not layer.rms_scaling and b.opset >= 17:
        out = b.op(
            "LayerNormalization",
            [x.name, b.const(gamma, f"{hint}/gamma"), b.const(beta, f"{hint}/beta")],
            hint,
            axis=axes[0],
            epsilon=float(layer.epsilon),
        )
        return [Value(out, x.shape)]
    # Other axes, rms_scaling (x / sqrt(var + eps) * gamma) or opsets before 17: the formula.
    broadcast = [x.shape[i] if i in axes else 1 for i in range(1, x.rank)]
    out = normalized(b, x.name, axes, hint, layer.epsilon, rms=layer.rms_scaling)
    out = b.op("Mul", [out, b.const(np.reshape(gamma, broadcast), f"{hint}/gamma")], hint)
    if not layer.rms_scaling:
        out = b.op("Add", [out, b.const(np.reshape(beta, broadcast), f"{hint}/beta")], hint)
    return [Value(out, x.shape)]


@converter(preprocessing.Rescaling)
def _rescaling(call: Call):
    b = call.builder
    x = b.native(call.x, call.hint)
    scaled = b.op("Mul", [x.name, b.const(call.layer.scale, f"{call.hint}/scale")], call.hint)
    out = b.op("Add", [scaled, b.const(call.layer.offset, f"{call.hint}/offset")], call.hint)
    return [Value(out, x.shape)]


# ---- Embedding ---------------------------------------------------------------------------------
def as_int64(call: Call, x: Value) -> str:
    """Token ids as int64 (floats truncated, as the layer's int64 cast)."""
    return call.builder.op("Cast", [x.name], f"{call.hint}/ids", to=7)  # INT64


@converter(embedding.Embedding)
def _embedding(call: Call):
    b = call.builder
    ids = as_int64(call, call.x)
    table = b.const(call.layer.embeddings.value, f"{call.hint}/embeddings")
    out = b.op("Gather", [table, ids], call.hint, axis=0)
    if call.layer.mask_zero:  # ids != 0 on the ids as given (0.5 is kept, as the layer)
        given = b.op("Cast", [call.x.name], f"{call.hint}/mask", to=11)  # DOUBLE: exact here
        zero = b.const(0.0, f"{call.hint}/zero", dtype=np.float64)
        equal = b.op("Equal", [given, zero], f"{call.hint}/mask")
        call.output_mask = b.op("Not", [equal], f"{call.hint}/mask")
    return [Value(out, call.output_shapes[0])]
