"""ONNX converters of the attention layers. MultiHeadAttention: the four projections as MatMul,
scaled dot-product attention per head, causal and attention masks as ``Where`` (masked scores
-1e9 before the softmax, their weights 0 after it, as the layer computes them). Attention (dot
or concat scores) and AdditiveAttention: their scores, a causal mask subtracting 1e9."""

from __future__ import annotations

import math

import numpy as np

from fastnn.export.builder import Value
from fastnn.export.registry import Call, converter
from fastnn.layers import attention

_MASKED_SCORE = -1e9


def _heads(call: Call, x: Value, weights, dim: int, hint: str) -> str:
    """``x (B, T, features) @ kernel + bias`` as heads ``(B, H, T, dim)``."""
    b = call.builder
    kernel, bias = weights
    flat = kernel.value.reshape(kernel.shape[0], -1)
    out = b.op("MatMul", [x.name, b.const(flat, f"{hint}/kernel")], hint)
    if bias is not None:
        out = b.op("Add", [out, b.const(bias.value.reshape(-1), f"{hint}/bias")], hint)
    out = b.reshape(out, [0, 0, call.layer.num_heads, dim], hint)
    return b.transpose(out, [0, 2, 1, 3], hint)


def _causal(call: Call, scores: str, last_axes=(2, 4)) -> str:
    """The (Tq, Tv) lower-triangular bool mask of ``scores``'s last two axes (``last_axes``:
    where they sit in its shape, as a slice)."""
    call.need_opset(14, "use_causal_mask (Trilu)")
    b, hint = call.builder, f"{call.hint}/causal"
    size = b.slice(b.op("Shape", [scores], hint), [last_axes[0]], [last_axes[1]], [0], hint)
    ones = b.op(
        "ConstantOfShape",
        [size],
        hint,
        value=b.onnx.helper.make_tensor("one", b.onnx.TensorProto.FLOAT, [1], [1.0]),
    )
    return b.op("Cast", [b.op("Trilu", [ones], hint, upper=0)], hint, to=9)  # BOOL


@converter(attention.MultiHeadAttention)
def _multi_head_attention(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    options = layer._options
    inputs = [b.native(v, hint) for v in call.inputs]
    query, value = inputs[0], inputs[1]
    key = inputs[2] if options.key else value
    q = _heads(call, query, layer._query, layer.key_dim, f"{hint}/query")
    q = b.op("Mul", [q, b.const(1.0 / math.sqrt(float(layer.key_dim)), f"{hint}/scale")], hint)
    k = _heads(call, key, layer._key, layer.key_dim, f"{hint}/key")
    v = _heads(call, value, layer._value, layer.value_dim, f"{hint}/value")
    scores = b.op("MatMul", [q, b.transpose(k, [0, 1, 3, 2], hint)], hint)  # (B, H, Tq, Tv)
    keep = None
    if options.attention_mask:
        given = b.op("Cast", [inputs[-1].name], hint, to=9)  # BOOL, (B, Tq, Tv)
        keep = b.unsqueeze(given, [1], hint)
    if options.causal:
        causal = _causal(call, scores)
        keep = causal if keep is None else b.op("And", [keep, causal], hint)
    if keep is not None:
        masked = b.const(_MASKED_SCORE, f"{hint}/masked")
        scores = b.op("Where", [keep, scores, masked], hint)
    weights = b.op("Softmax", [scores], hint, axis=-1)
    if keep is not None:  # a row masked entirely attends to nothing
        weights = b.op("Where", [keep, weights, b.const(0.0, f"{hint}/zero")], hint)
    heads = b.op("MatMul", [weights, v], hint)  # (B, H, Tq, dv)
    combined = b.reshape(b.transpose(heads, [0, 2, 1, 3], hint), [0, 0, -1], hint)
    kernel, bias = layer._output
    out_shape = kernel.shape[2:]
    flat = kernel.value.reshape(-1, int(np.prod(out_shape)))
    out = b.op("MatMul", [combined, b.const(flat, f"{hint}/output/kernel")], hint)
    if bias is not None:
        out = b.op("Add", [out, b.const(bias.value.reshape(-1), f"{hint}/output/bias")], hint)
    if len(out_shape) > 1:
        out = b.reshape(out, [0, 0, *out_shape], hint)
    outputs = [Value(out, call.output_shapes[0])]
    if options.scores:
        outputs.append(Value(weights, call.output_shapes[1]))
    return outputs


def _scores(call: Call, query: str, key: str) -> str:
    """The (B, Tq, Tv) scores of Attention (dot or concat) and AdditiveAttention."""
    layer, b, hint = call.layer, call.builder, call.hint
    if isinstance(layer, attention.AdditiveAttention) or layer.score_mode == "concat":
        summed = b.op(
            "Add", [b.unsqueeze(query, [2], hint), b.unsqueeze(key, [1], hint)], hint
        )  # (B, Tq, Tv, dim)
        if isinstance(layer, attention.AdditiveAttention):
            tanh = b.op("Tanh", [summed], hint)
            if layer.use_scale:
                return b.op("MatMul", [tanh, b.const(layer.scale.value, f"{hint}/scale")], hint)
            return b.reduce("ReduceSum", tanh, [-1], hint, keepdims=False)
        if layer.use_scale:
            summed = b.op("Mul", [summed, b.const(layer.scale.value, f"{hint}/scale")], hint)
        total = b.reduce("ReduceSum", b.op("Tanh", [summed], hint), [-1], hint, keepdims=False)
        weight = b.const(layer.concat_score_weight.value, f"{hint}/concat_score_weight")
        return b.op("Mul", [total, weight], hint)
    scores = b.op("MatMul", [query, b.transpose(key, [0, 2, 1], hint)], hint)
    if layer.use_scale:
        scores = b.op("Mul", [scores, b.const(layer.scale.value, f"{hint}/scale")], hint)
    return scores


@converter(attention.Attention, attention.AdditiveAttention)
def _attention(call: Call):
    layer, b, hint = call.layer, call.builder, call.hint
    options = layer._options
    inputs = [b.native(v, hint) for v in call.inputs]
    query, value = inputs[0].name, inputs[1].name
    key = inputs[2].name if options.key else value
    scores = _scores(call, query, key)
    if options.causal:  # a masked score loses 1e9 (no row is masked entirely)
        lowered = b.op("Sub", [scores, b.const(-_MASKED_SCORE, f"{hint}/big")], hint)
        scores = b.op("Where", [_causal(call, scores, last_axes=(1, 3)), scores, lowered], hint)
    weights = b.op("Softmax", [scores], hint, axis=-1)
    out = b.op("MatMul", [weights, value], hint)
    outputs = [Value(out, call.output_shapes[0])]
    if options.scores:
        outputs.append(Value(weights, call.output_shapes[1]))
    return outputs
