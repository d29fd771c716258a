"""Ops written between layers (TensorOp nodes: ``x + y``, ``x[:, 0]``, ``ops.mean(x, 1)``)
exported: each op's ONNX form run by the reference evaluator and ONNX Runtime, equal to
``model.predict``; the ops and index forms without one refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import assert_matches
from test_onnx_layers import RNG, with_random_weights

import fastnn
from fastnn import layers, ops
from fastnn.export import ExportError
from fastnn.export.convert_ops import OPS

SHAPE = (4, 5)


def _pair():
    return fastnn.Input(SHAPE, name="x"), fastnn.Input(SHAPE, name="y")


def _values(low=-1.0, high=1.0):
    return [RNG.uniform(low, high, (3, *SHAPE)).astype(np.float32) for _ in range(2)]


def check(fn, tmp_path, low=-1.0, high=1.0):
    """A model of ``fn(x, y)`` (one output or several) exported and run on values in
    [low, high)."""
    x, y = _pair()
    outputs = fn(x, y)
    model = fastnn.Model([x, y], outputs)
    return assert_matches(model, _values(low, high), tmp_path)


BINARY = {
    "operators": lambda x, y: (x + y) * 2.0 - y / 3.0 + (-x) ** 2,
    "reflected-operators": lambda x, y: 1.0 - x + 2.0 / (y + 3.0) + 2.0**x,
    "maximum-minimum": lambda x, y: ops.maximum(x, y) - ops.minimum(x, 0.25),
    "floor-divide-mod": lambda x, y: [x // 0.3, x % 0.3, ops.mod(x, -0.7)],
    "divide-no-nan": lambda x, y: ops.divide_no_nan(x, ops.round(y)),
    "comparisons": lambda x, y: [
        ops.cast(c, "float32")
        for c in (x > y, x >= 0.5, x < y, x <= 0, ops.equal(x, x), ops.not_equal(x, y))
    ],
    "logic": lambda x, y: ops.cast(
        ops.logical_xor((x > 0) | (y > 0.5), ops.logical_not(y < 0) & (x < 0.5)), "float32"
    ),
    "where": lambda x, y: ops.where(x > 0, x, y * 2.0),
    "clip": lambda x, y: [ops.clip(x, -0.5, 0.5), ops.clip(x, y, 0.75)],
    "array-constant": lambda x, y: x * np.arange(5, dtype=np.float32) + np.float32(1.5),
    "float64-scalar-promotes": lambda x, y: x * np.float64(2.0),  # numpy 2: float64 out
    "matmul": lambda x, y: ops.matmul(x, ops.transpose(y, (0, 2, 1))),
    "einsum": lambda x, y: ops.einsum("bij,bkj->bik", x, y),
    "concatenate-stack": lambda x, y: [
        ops.concatenate([x, y, x], axis=-1),
        ops.stack([x, y], axis=1),
    ],
}


@pytest.mark.filterwarnings("ignore:divide by zero")  # the reference evaluator's Div by 0
@pytest.mark.parametrize("case", sorted(BINARY))
def test_binary_ops_export(case, tmp_path):
    check(BINARY[case], tmp_path)


# name -> (the op on x, low, high of the values)
UNARY = {
    "negative": (ops.negative, -1, 1),
    "abs": (ops.abs, -1, 1),
    "absolute": (ops.absolute, -1, 1),
    "exp": (ops.exp, -1, 1),
    "log": (ops.log, 0.1, 2),
    "sqrt": (ops.sqrt, 0.1, 2),
    "rsqrt": (ops.rsqrt, 0.1, 2),
    "reciprocal": (ops.reciprocal, 0.5, 2),
    "square": (ops.square, -1, 1),
    "sin": (ops.sin, -1, 1),
    "cos": (ops.cos, -1, 1),
    "tan": (ops.tan, -1, 1),
    "arcsin": (ops.arcsin, -0.9, 0.9),
    "arccos": (ops.arccos, -0.9, 0.9),
    "arctan": (ops.arctan, -1, 1),
    "sinh": (ops.sinh, -1, 1),
    "cosh": (ops.cosh, -1, 1),
    "arcsinh": (ops.arcsinh, -1, 1),
    "arccosh": (ops.arccosh, 1.1, 3),
    "arctanh": (ops.arctanh, -0.9, 0.9),
    "tanh": (ops.tanh, -1, 1),
    "erf": (ops.erf, -1, 1),
    "floor": (ops.floor, -3, 3),
    "ceil": (ops.ceil, -3, 3),
    "sign": (ops.sign, -1, 1),
    "round": (ops.round, -3, 3),
    "log1p": (ops.log1p, 0, 2),
    "expm1": (ops.expm1, -1, 1),
    "exp2": (ops.exp2, -1, 1),
    "log2": (ops.log2, 0.1, 2),
    "log10": (ops.log10, 0.1, 2),
    "relu": (ops.relu, -1, 1),
    "relu6": (lambda x: ops.relu6(x * 8.0), -1, 1),
    "sigmoid": (ops.sigmoid, -3, 3),
    "softplus": (ops.softplus, -3, 3),
    "softsign": (ops.softsign, -3, 3),
    "silu": (ops.silu, -3, 3),
    "swish": (ops.swish, -3, 3),
    "hard_sigmoid": (ops.hard_sigmoid, -4, 4),
    "hard_silu": (ops.hard_silu, -4, 4),
    "hard_swish": (ops.hard_swish, -4, 4),
    "selu": (ops.selu, -2, 2),
    "elu": (lambda x: ops.elu(x, alpha=0.5), -2, 2),
    "leaky_relu": (lambda x: ops.leaky_relu(x, negative_slope=0.1), -2, 2),
    "gelu-tanh": (ops.gelu, -3, 3),
    "gelu-erf": (lambda x: ops.gelu(x, approximate=False), -3, 3),
    "log_sigmoid": (ops.log_sigmoid, -3, 3),
    "softmax": (lambda x: ops.softmax(x, axis=1), -3, 3),
    "log_softmax": (ops.log_softmax, -3, 3),
    "cast-to-int": (lambda x: ops.cast(x * 3.0, "int32"), -2, 2),
}


@pytest.mark.parametrize("case", sorted(UNARY))
def test_unary_ops_export(case, tmp_path):
    op, low, high = UNARY[case]
    check(lambda x, y: op(x), tmp_path, low, high)


@pytest.mark.parametrize("opset", [13, 20])
def test_tanh_gelu_before_and_from_the_gelu_operator(opset, tmp_path):
    x = fastnn.Input(SHAPE)
    model = fastnn.Model(x, ops.gelu(x))
    proto = assert_matches(model, _values()[0], tmp_path, opset=opset)
    assert ("Gelu" in {n.op_type for n in proto.graph.node}) == (opset >= 20)


REDUCTIONS = {
    "sum": lambda x: ops.sum(x, axis=1),
    "mean-keepdims": lambda x: ops.mean(x, axis=(1, 2), keepdims=True),
    "max": lambda x: ops.max(x, axis=-1),
    "min": lambda x: ops.min(x, axis=1, keepdims=True),
    "prod": lambda x: ops.prod(x, axis=2),
    "logsumexp": lambda x: ops.logsumexp(x, axis=-1),
    "var": lambda x: ops.var(x, axis=1),
    "std": lambda x: ops.std(x, axis=(1, 2), keepdims=True),
    "argmax": lambda x: ops.argmax(x, axis=1),
    "argmin": lambda x: ops.argmin(x, axis=-1, keepdims=True),
    "cumsum": lambda x: ops.cumsum(x, axis=1),
}


@pytest.mark.parametrize("case", sorted(REDUCTIONS))
def test_reductions_export(case, tmp_path):
    check(lambda x, y: REDUCTIONS[case](x), tmp_path)


SHAPING = {
    "reshape": lambda x: ops.reshape(x, (-1, 20)),
    "reshape-batch-from-shape": lambda x: ops.reshape(x, (ops.shape(x)[0], -1, 2)),
    "transpose": lambda x: ops.transpose(x, (0, 2, 1)),
    "transpose-default": lambda x: ops.transpose(x),
    "dot-T": lambda x: x.T,
    "moveaxis": lambda x: ops.moveaxis(x, 1, -1),
    "swapaxes": lambda x: ops.swapaxes(x, 1, 2),
    "expand-squeeze": lambda x: [ops.expand_dims(x, -1), ops.squeeze(ops.expand_dims(x, 1), 1)],
    "squeeze-known-ones": lambda x: ops.squeeze(x[:, :1, None]),
    "flip": lambda x: [ops.flip(x, axis=1), ops.flip(x, axis=(1, 2))],
    "tile": lambda x: [ops.tile(x, (1, 2, 1)), ops.tile(x, 2)],
    "take": lambda x: [ops.take(x, [0, 2, -1], axis=1), ops.take(x, np.array([1, 3]), axis=-1)],
    "pad": lambda x: [ops.pad(x, ((0, 0), (1, 2), (0, 1))), ops.pad(x, 1, constant_values=0.5)],
}


@pytest.mark.parametrize("case", sorted(SHAPING))
def test_shaping_ops_export(case, tmp_path):
    check(lambda x, y: SHAPING[case](x), tmp_path)


INDEXING = {
    "int": lambda x: x[:, 0],
    "last": lambda x: x[:, -1],
    "slice": lambda x: x[:, 1:3],
    "negative-slice": lambda x: x[:, -3:-1],
    "reversed": lambda x: x[..., ::-1],
    "stepped": lambda x: x[:, ::2, -1],
    "reversed-stepped": lambda x: x[:, 3:0:-2],
    "newaxis": lambda x: x[:, None, 2:],
    "ellipsis-int": lambda x: x[..., 0],
    "newaxis-last": lambda x: x[:, 1, None],
}


@pytest.mark.parametrize("case", sorted(INDEXING))
def test_basic_indexing_exports(case, tmp_path):
    check(lambda x, y: INDEXING[case](x), tmp_path)


def test_broadcast_to_with_a_fixed_batch(tmp_path):
    x = fastnn.Input(SHAPE, batch_size=3)
    model = fastnn.Model(x, ops.broadcast_to(x[:, :1], (3, *SHAPE)) + x)
    assert_matches(model, _values()[0], tmp_path, batch_size=3)


def test_ops_between_layers_of_a_cnn(tmp_path):
    """Ops on a conv's (channels-first inside the file) output, then layers again."""
    inputs = fastnn.Input((6, 6, 3))
    x = layers.Conv2D(4, 3, padding="same")(inputs)
    x = ops.relu(x) * 0.5 + x[:, :, :, :1]
    pooled = ops.mean(x, axis=(1, 2))
    out = layers.Dense(2)(ops.concatenate([pooled, ops.max(x, axis=(1, 2))], axis=-1))
    model = with_random_weights(fastnn.Model(inputs, out))
    assert_matches(model, RNG.uniform(-1, 1, (3, 6, 6, 3)).astype(np.float32), tmp_path)


def test_integer_inputs_keep_their_dtype(tmp_path):
    ids = fastnn.Input((5,), dtype="int32", name="ids")
    model = fastnn.Model(ids, [ids + 1, ops.cast(ids, "float32") * 0.5])
    proto = assert_matches(model, RNG.integers(0, 9, (3, 5)).astype(np.int32), tmp_path)
    assert proto.graph.output[0].type.tensor_type.elem_type == 6  # INT32, as the model's


def test_a_saved_and_loaded_model_exports_the_same(tmp_path):
    x, y = _pair()
    model = fastnn.Model([x, y], ops.mean(x[:, 1:] * y[:, :-1], axis=-1))
    model.save(tmp_path / "m.keras")
    loaded = fastnn.models.load_model(tmp_path / "m.keras")
    assert_matches(loaded, _values(), tmp_path)


def refused(model, tmp_path, match):
    with pytest.raises(ExportError, match=match):
        fastnn.export.onnx(model, tmp_path / "refused.onnx")
    assert not (tmp_path / "refused.onnx").exists()


def test_an_op_without_onnx_form_is_refused_by_name(tmp_path):
    x = fastnn.Input(SHAPE)
    model = fastnn.Model(x, ops.sort(x, axis=-1))
    refused(model, tmp_path, r"TensorOp 'sort\w*' cannot be exported .*fastnn.ops.sort has no ONNX")


def test_advanced_indexing_is_refused(tmp_path):
    x = fastnn.Input(SHAPE)
    model = fastnn.Model(x, x[:, [0, 2]])
    refused(model, tmp_path, r"fastnn.ops.get_item: only basic indexing")


def test_ops_with_several_outputs_are_refused(tmp_path):
    x = fastnn.Input(SHAPE)
    parts = ops.split(x[:, :, :4], 2, axis=-1)
    model = fastnn.Model(x, parts[0])
    refused(model, tmp_path, r"fastnn.ops.split")


def test_every_converted_op_is_a_fastnn_op():
    from fastnn.layers.tensor_op import _op

    assert [name for name in OPS if _op(name) is None] == []
