"""ONNX converters written as formulas of basic operators: GroupNormalization,
UnitNormalization, Normalization, Dot, CategoryEncoding, and TimeDistributed around any
converted layer."""

from __future__ import annotations

import string

import numpy as np

from fastnn.export.builder import GraphBuilder, Value
from fastnn.export.convert_core import normalized
from fastnn.export.registry import Call, convert, converter
from fastnn.layers import merging, normalization, preprocessing, unit_normalization, wrappers_time


def _inverse_norm(b: GraphBuilder, x: str, axes, cap: float, hint: str) -> str:
    """``min(1 / sqrt(sum(x^2) over axes), cap)``, kept dims."""
    total = b.reduce("ReduceSum", b.op("Mul", [x, x], hint), axes, hint)
    inverse = b.op("Reciprocal", [b.op("Sqrt", [total], hint)], hint)
    return b.op("Min", [inverse, b.const(cap, f"{hint}/cap")], hint)


@converter(normalization.GroupNormalization)
def _group_normalization(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    x = b.native(call.x, hint)
    if layer.axis % x.rank != x.rank - 1:
        raise call.refuse(f"axis={layer.axis}: only the last (channels) axis is converted")
    channels, groups = layer._channels, layer.groups
    grouped = b.reshape(x.name, [0, -1, groups, channels // groups], hint)
    y = normalized(b, grouped, [1, 3], hint, layer.epsilon)
    y = b.op("Reshape", [y, b.op("Shape", [x.name], hint)], hint)
    if layer.scale:
        y = b.op("Mul", [y, b.const(layer.gamma.value, f"{hint}/gamma")], hint)
    if layer.center:
        y = b.op("Add", [y, b.const(layer.beta.value, f"{hint}/beta")], hint)
    return [Value(y, x.shape)]


@converter(unit_normalization.UnitNormalization)
def _unit_normalization(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    x = b.native(call.x, hint)
    axes = sorted({a % x.rank for a in np.atleast_1d(layer.axis).tolist()})
    inverse = _inverse_norm(b, x.name, axes, 1 / unit_normalization.EPSILON, hint)
    return [Value(b.op("Mul", [x.name, inverse], hint), x.shape)]


@converter(preprocessing.Normalization)
def _normalization(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    x = b.native(call.x, hint)
    mean, std = layer._statistics(b.dtype)  # the layer's own constants, broadcast shaped
    mean, std = (np.reshape(a, np.shape(a)[1:]) for a in (mean, std))  # without the batch axis
    mean, std = b.const(mean, f"{hint}/mean"), b.const(std, f"{hint}/std")
    if layer.invert:
        out = b.op("Add", [b.op("Mul", [x.name, std], hint), mean], hint)
    else:
        out = b.op("Div", [b.op("Sub", [x.name, mean], hint), std], hint)
    return [Value(out, x.shape)]


@converter(merging.Dot)
def _dot(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    x, y = (b.native(v, hint) for v in call.inputs)
    pair = [layer.axes] * 2 if isinstance(layer.axes, int) else list(layer.axes)
    a0, a1 = pair[0] % x.rank, pair[1] % y.rank
    names = [x.name, y.name]
    if layer.normalize:  # Keras's normalize: 1 / norm capped at 1 / 1e-7
        names = [
            b.op("Mul", [n, _inverse_norm(b, n, [a], 1e7, hint)], hint)
            for n, a in zip(names, (a0, a1))
        ]
    letters = iter(string.ascii_lowercase[1:])
    left = ["a"] + [next(letters) for _ in range(x.rank - 1)]
    right = ["a"] + [next(letters) for _ in range(y.rank - 1)]
    right[a1] = left[a0]
    out = ["a"] + [c for i, c in enumerate(left) if i not in (0, a0)]
    out += [c for i, c in enumerate(right) if i not in (0, a1)]
    equation = f"{''.join(left)},{''.join(right)}->{''.join(out)}"
    result = b.op("Einsum", names, hint, equation=equation)
    if len(out) == 1:  # Keras keeps (batch, 1)
        result = b.unsqueeze(result, [1], hint)
    return [Value(result, call.output_shapes[0])]


@converter(wrappers_time.TimeDistributed)
def _time_distributed(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    x = b.native(call.x, hint)
    inner_shape, out_shape = x.shape[2:], call.output_shapes[0][2:]
    if any(d is None for d in (*inner_shape, *out_shape)):
        raise call.refuse("it needs the known sizes of each step's input and output")
    steps = b.reshape(x.name, [-1, *inner_shape], hint)
    inner = Call(b, layer.layer, [Value(steps, (None, *inner_shape))],
                 [(None, *out_shape)], options=call.options)  # fmt: skip
    (result,) = convert(inner)
    result = b.native(result, hint)
    leading = b.slice(b.op("Shape", [x.name], hint), [0], [2], [0], hint)
    target = b.op("Concat", [leading, b.ints(list(out_shape), f"{hint}/shape")], hint, axis=0)
    return [Value(b.op("Reshape", [result.name, target], hint), call.output_shapes[0])]


@converter(preprocessing.CategoryEncoding)
def _category_encoding(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    x = b.native(call.x, hint)
    if layer.output_mode != "one_hot" and x.rank < 2:
        raise call.refuse(f"output_mode={layer.output_mode!r} is converted for (batch, k) ids")
    ids = b.op("Cast", [x.name], f"{hint}/ids", to=7)  # INT64
    if layer.output_mode == "one_hot" and x.rank > 1 and x.shape[-1] == 1:
        ids = b.reshape(ids, [0] * (x.rank - 1), hint)  # the trailing 1 dropped
    depth = b.ints(layer.num_tokens, f"{hint}/depth")  # a scalar
    values = b.const([0.0, 1.0], f"{hint}/values")
    hot = b.op("OneHot", [ids, depth, values], hint, axis=-1)
    if layer.output_mode != "one_hot":  # (..., k, tokens) -> (..., tokens)
        reduce = "ReduceMax" if layer.output_mode == "multi_hot" else "ReduceSum"
        hot = b.reduce(reduce, hot, [-2], hint, keepdims=False)
    return [Value(hot, call.output_shapes[0])]
