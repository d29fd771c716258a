"""ONNX converters written as formulas of basic operators: GroupNormalization,
UnitNormalization, Normalization, Dot, CategoryEncoding, IntegerLookup, and TimeDistributed
around any converted layer."""

from __future__ import annotations

import string

import numpy as np

from fastnn.export.builder import GraphBuilder, Value
from fastnn.export.convert_core import normalized
from fastnn.export.registry import Call, convert, converter
from fastnn.layers import (
    lookup,
    merging,
    normalization,
    preprocessing,
    unit_normalization,
    wrappers_time,
)


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


@converter(lookup.IntegerLookup)
def _integer_lookup(call: Call):
    """Each id against the vocabulary (``Equal`` on a new last axis, ``ArgMax`` for where it
    matched), OOV ids to their index (``Mod`` for several), the mask token to 0; the
    encodings as comparisons with every index, reduced over the ids; ``invert`` a ``Gather``
    of the vocabulary."""
    layer, b, hint = call.layer, call.builder, call.hint
    if layer.num_oov_indices == 0 and not layer.invert:
        raise call.refuse("num_oov_indices=0 raises on ids outside the vocabulary; ONNX cannot")
    x = b.native(call.x, hint)
    ids = b.op("Cast", [x.name], f"{hint}/ids", to=7)  # INT64, truncated as the layer casts
    if layer.invert:
        return [Value(_inverted_lookup(b, layer, ids, hint), call.output_shapes[0])]
    keys = b.ints(list(layer._index), f"{hint}/keys")
    matches = b.op("Equal", [b.unsqueeze(ids, [-1], hint), keys], hint)
    matches = b.op("Cast", [matches], hint, to=6)  # INT32: ArgMax's
    found = b.op("Cast", [b.reduce("ReduceMax", matches, [-1], hint, keepdims=False)], hint, to=9)
    index = b.op("Add", [b.op("ArgMax", [matches], hint, axis=-1, keepdims=0),
                         b.ints(layer._token_start(), f"{hint}/start")], hint)  # fmt: skip
    oov = b.ints(layer._oov_start(), f"{hint}/oov")
    if layer.num_oov_indices > 1:  # floormod: the divisor's sign, as numpy's %
        buckets = b.op("Mod", [ids, b.ints(layer.num_oov_indices, f"{hint}/buckets")], hint)
        oov = b.op("Add", [buckets, oov], hint)
    index = b.op("Where", [found, index, oov], hint)
    if layer.mask_token is not None:  # index 0 in int mode, counted nowhere in the others
        masked = b.op("Equal", [ids, b.ints(layer.mask_token, f"{hint}/mask")], hint)
        fill = b.ints(0 if layer.output_mode == "int" else -1, f"{hint}/masked")
        index = b.op("Where", [masked, fill, index], hint)
    if layer.output_mode == "int":
        return [Value(index, call.output_shapes[0])]
    return [Value(_lookup_encoding(b, layer, index, x.rank, hint), call.output_shapes[0])]


def _lookup_encoding(b: GraphBuilder, layer, index: str, rank: int, hint: str) -> str:
    """The ``one_hot``, ``multi_hot``, ``count`` or ``tf_idf`` encoding of indices (-1
    nowhere), as the layer's ``encode_ids`` gives it."""
    depth = layer.max_tokens if layer.pad_to_max_tokens else layer.vocabulary_size()
    if layer.output_mode == "one_hot" and rank > 1:  # a last axis of 1 is replaced
        index = b.op("Squeeze", [index, b.ints([-1], f"{hint}/last")], hint)
    hot = b.op(
        "Equal", [b.unsqueeze(index, [-1], hint), b.ints(list(range(depth)), f"{hint}/all")], hint
    )
    hot = b.op("Cast", [hot], hint, to=7)
    if layer.output_mode == "one_hot":
        return hot
    reduce = "ReduceMax" if layer.output_mode == "multi_hot" else "ReduceSum"
    counts = b.reduce(reduce, hot, [-2], hint, keepdims=False)
    if layer.output_mode != "tf_idf":
        return counts
    weights = b.const(layer._idf[:depth], f"{hint}/idf")
    return b.op("Mul", [b.cast(counts, b.dtype, hint), weights], hint)


def _inverted_lookup(b: GraphBuilder, layer, ids: str, hint: str) -> str:
    """Each index's token: the vocabulary gathered, the OOV token past its ends."""
    vocabulary = layer.get_vocabulary()
    table = b.ints(vocabulary, f"{hint}/table")
    inside = b.op("And", [b.op("GreaterOrEqual", [ids, b.ints(0, f"{hint}/zero")], hint),
                          b.op("Less", [ids, b.ints(len(vocabulary), f"{hint}/size")], hint)],
                  hint)  # fmt: skip
    clipped = b.op(
        "Clip", [ids, b.ints(0, f"{hint}/zero"), b.ints(len(vocabulary) - 1, f"{hint}/top")], hint
    )
    gathered = b.op("Gather", [table, clipped], hint, axis=0)
    return b.op("Where", [inside, gathered, b.ints(layer.oov_token, f"{hint}/oov_token")], hint)
