"""Every op's forward against numpy (or a plain-loop reference), and a sample against keras.ops.

The Keras half runs keras.ops on the torch backend on the same inputs: values, dtypes where
Keras defines them, and the gradients Keras's backends define at the edges (ties, bounds, kinks)
through torch's autograd.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import fastnn
from fastnn import ops
from fastnn import random as frandom
from fastnn.ops import GradientTape

RNG = np.random.default_rng(0)
A = RNG.standard_normal((3, 4))
B = RNG.standard_normal((3, 4))
P = RNG.uniform(0.5, 2.0, (3, 4))
U = RNG.uniform(-0.9, 0.9, (3, 4))
erf = np.vectorize(math.erf)
ALPHA, SCALE = 1.6732632423543772, 1.0507009873554805  # selu's


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


UNARY = {  # op -> (numpy reference, input)
    "exp": (np.exp, A), "expm1": (np.expm1, A), "log": (np.log, P), "log1p": (np.log1p, P),
    "log2": (np.log2, P), "log10": (np.log10, P), "sqrt": (np.sqrt, P),
    "rsqrt": (lambda x: 1 / np.sqrt(x), P), "reciprocal": (np.reciprocal, P), "sin": (np.sin, A),
    "cos": (np.cos, A), "tan": (np.tan, U), "sinh": (np.sinh, A), "cosh": (np.cosh, A),
    "tanh": (np.tanh, A), "arcsin": (np.arcsin, U), "arccos": (np.arccos, U),
    "arctan": (np.arctan, A), "arcsinh": (np.arcsinh, A), "arccosh": (np.arccosh, P + 1),
    "arctanh": (np.arctanh, U), "erf": (erf, A), "negative": (np.negative, A), "abs": (np.abs, A),
    "square": (np.square, A), "sign": (np.sign, A), "floor": (np.floor, A), "ceil": (np.ceil, A),
    "trunc": (np.trunc, A), "round": (np.round, A * 3), "relu": (lambda x: np.maximum(x, 0), A),
    "relu6": (lambda x: np.clip(x, 0, 6), A * 5), "sigmoid": (sigmoid, A * 10),
    "softplus": (lambda x: np.log1p(np.exp(x)), A), "softsign": (lambda x: x / (1 + abs(x)), A),
    "silu": (lambda x: x * sigmoid(x), A), "swish": (lambda x: x * sigmoid(x), A),
    "elu": (lambda x: np.where(x > 0, x, np.expm1(x)), A),
    "selu": (lambda x: SCALE * np.where(x > 0, x, ALPHA * np.expm1(x)), A),
    "gelu": (lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))), A),
    "leaky_relu": (lambda x: np.where(x > 0, x, 0.2 * x), A),
    "log_sigmoid": (lambda x: np.log(sigmoid(x)), A),
    "hard_sigmoid": (lambda x: np.clip(x / 6 + 0.5, 0, 1), A * 4),
    "hard_silu": (lambda x: x * np.clip(x / 6 + 0.5, 0, 1), A * 4),
    "hard_tanh": (lambda x: np.clip(x, -1, 1), A * 2), "softmax": (softmax, A),
    "log_softmax": (lambda x: np.log(softmax(x)), A), "ravel": (np.ravel, A),
    "transpose": (np.transpose, A), "flip": (np.flip, A), "sort": (np.sort, A),
    "cumsum": (np.cumsum, A), "cumprod": (np.cumprod, A), "logical_not": (np.logical_not, A > 0),
    "isnan": (np.isnan, A), "isinf": (np.isinf, A), "isfinite": (np.isfinite, A),
    "zeros_like": (np.zeros_like, A), "ones_like": (np.ones_like, A),
}  # fmt: skip


@pytest.mark.parametrize("name", UNARY)
def test_unary_forward(name):
    reference, x = UNARY[name]
    got = getattr(ops, name)(x)
    np.testing.assert_allclose(got, reference(x), rtol=1e-12, atol=1e-12)
    assert np.shape(got) == np.shape(reference(x))


def test_gelu_exact_and_large_inputs():
    np.testing.assert_allclose(ops.gelu(A, approximate=False), A * (1 + erf(A / np.sqrt(2))) / 2)
    big = np.array([-800.0, -30.0, 0.0, 30.0, 800.0])
    np.testing.assert_allclose(ops.sigmoid(big), [0, sigmoid(-30.0), 0.5, sigmoid(30.0), 1])
    np.testing.assert_allclose(ops.softplus(big), [0, np.log1p(np.exp(-30)), np.log(2), 30, 800])
    np.testing.assert_allclose(ops.log_softmax(np.array([0.0, 1000.0])), [-1000, 0])
    np.testing.assert_allclose(ops.logsumexp(np.array([-np.inf, -np.inf])), -np.inf)


BINARY = {
    "add": np.add, "subtract": np.subtract, "multiply": np.multiply, "divide": np.divide,
    "true_divide": np.divide, "maximum": np.maximum, "minimum": np.minimum, "mod": np.mod,
    "floor_divide": np.floor_divide, "arctan2": np.arctan2, "logaddexp": np.logaddexp,
    "equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
    "greater": np.greater, "greater_equal": np.greater_equal, "matmul": np.matmul,
    "logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor,
}  # fmt: skip


@pytest.mark.parametrize("name", BINARY)
def test_binary_forward_broadcasts(name):
    x, y = A, B[:1] if name != "matmul" else B.T
    np.testing.assert_allclose(getattr(ops, name)(x, y), BINARY[name](x, y), rtol=1e-12)
    if name != "matmul":
        np.testing.assert_allclose(getattr(ops, name)(x, 1.5), BINARY[name](x, 1.5), rtol=1e-12)


def test_power_and_operators_on_arrays():
    np.testing.assert_allclose(ops.power(P, B), P**B)
    np.testing.assert_allclose(ops.power(2.0, A), 2.0**A)
    np.testing.assert_allclose(ops.isclose(A, A + 1e-9), np.ones_like(A, bool))


REDUCTIONS = {
    "sum": np.sum, "mean": np.mean, "var": np.var, "std": np.std, "prod": np.prod,
    "max": np.max, "min": np.min, "amax": np.max, "amin": np.min, "all": np.all, "any": np.any,
    "argmax": np.argmax, "argmin": np.argmin,
    "logsumexp": lambda x, axis=None, keepdims=False: np.log(
        np.sum(np.exp(x), axis=axis, keepdims=keepdims)),
}  # fmt: skip


@pytest.mark.parametrize("name", REDUCTIONS)
@pytest.mark.parametrize("axis", [None, 0, -1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reductions(name, axis, keepdims):
    if name in ("argmax", "argmin") and isinstance(axis, tuple):
        return
    x = A if name not in ("all", "any") else A > 0
    got = getattr(ops, name)(x, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(got, REDUCTIONS[name](x, axis=axis, keepdims=keepdims), rtol=1e-12)


def test_axis_ops():
    for axis in (0, 1, -1):
        np.testing.assert_allclose(ops.cumsum(A, axis), np.cumsum(A, axis))
        np.testing.assert_allclose(ops.cumprod(A, axis), np.cumprod(A, axis))
        np.testing.assert_allclose(ops.sort(A, axis), np.sort(A, axis))
        np.testing.assert_array_equal(ops.argsort(A, axis), np.argsort(A, axis, kind="stable"))
        np.testing.assert_allclose(ops.softmax(A, axis), softmax(A, axis))
        np.testing.assert_allclose(ops.flip(A, axis), np.flip(A, axis))
        np.testing.assert_allclose(ops.roll(A, 2, axis), np.roll(A, 2, axis))
    np.testing.assert_allclose(ops.roll(A, -3), np.roll(A, -3))
    np.testing.assert_allclose(ops.roll(A, (1, 2), (0, 1)), np.roll(A, (1, 2), (0, 1)))
    np.testing.assert_array_equal(ops.count_nonzero(A > 0, axis=0), np.count_nonzero(A > 0, 0))
    np.testing.assert_allclose(
        ops.average(A, 1, np.arange(1.0, 5)), np.average(A, 1, np.arange(1.0, 5))
    )
    np.testing.assert_allclose(ops.norm(A), np.linalg.norm(A))
    np.testing.assert_allclose(ops.norm(A, ord=1, axis=1), np.linalg.norm(A, 1, axis=1))


def test_products():
    x, y = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((4, 5))
    np.testing.assert_allclose(ops.matmul(x, y), x @ y)
    np.testing.assert_allclose(ops.dot(x, y), np.dot(x, y))
    z = RNG.standard_normal((2, 4, 3))
    np.testing.assert_allclose(ops.dot(A, z), np.dot(A, z))  # numpy's N-D rule, not matmul's
    np.testing.assert_allclose(ops.dot(A, B[0]), np.dot(A, B[0]))
    np.testing.assert_allclose(ops.dot(2.0, A), 2 * A)
    np.testing.assert_allclose(ops.tensordot(x, y, 1), np.tensordot(x, y, 1))
    np.testing.assert_allclose(
        ops.tensordot(x, x, ([0, 2], [0, 2])), np.tensordot(x, x, ([0, 2], [0, 2]))
    )
    np.testing.assert_allclose(ops.einsum("bij,jk->bki", x, y), np.einsum("bij,jk->bki", x, y))
    np.testing.assert_allclose(ops.einsum("ii", A[:, :3]), np.trace(A[:, :3]))
    np.testing.assert_allclose(ops.outer(A[0], B[1]), np.outer(A[0], B[1]))


def test_shapes_and_indexing():
    x = np.arange(24.0).reshape(2, 3, 4)
    assert ops.reshape(x, (4, -1)).shape == (4, 6) and ops.reshape(x, 24).shape == (24,)
    # a first None keeps the batch axis: the size ops.shape(x)[0] gives a model's tensor
    assert ops.reshape(x, (None, -1, 2)).shape == (2, 6, 2)
    symbolic = fastnn.Input((3, 4))
    assert ops.reshape(symbolic, (ops.shape(symbolic)[0], -1, 2)).shape == (None, 6, 2)
    assert ops.expand_dims(x, (0, -1)).shape == (1, 2, 3, 4, 1)
    assert ops.squeeze(x[:1, :, :1]).shape == (3,) and ops.squeeze(x[:1], 0).shape == (3, 4)
    np.testing.assert_array_equal(ops.transpose(x, (2, 0, 1)), x.transpose(2, 0, 1))
    np.testing.assert_array_equal(ops.swapaxes(x, 0, 2), x.swapaxes(0, 2))
    np.testing.assert_array_equal(ops.moveaxis(x, [0, 1], [-1, 0]), np.moveaxis(x, [0, 1], [-1, 0]))
    np.testing.assert_array_equal(
        ops.broadcast_to(x[0, 0], (2, 4)), np.broadcast_to(x[0, 0], (2, 4))
    )
    np.testing.assert_array_equal(ops.concatenate([x, x], axis=1), np.concatenate([x, x], 1))
    np.testing.assert_array_equal(ops.stack([x, x], axis=-1), np.stack([x, x], -1))
    for got, want in zip(ops.split(x, 2, axis=2), np.split(x, 2, axis=2)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(ops.split(x, [1, 3], axis=-1), np.split(x, [1, 3], axis=-1)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ops.unstack(x, axis=1)[2], x[:, 2])
    np.testing.assert_array_equal(
        ops.take(x, [[0, 2], [1, 1]], axis=1), np.take(x, [[0, 2], [1, 1]], axis=1)
    )
    np.testing.assert_array_equal(ops.take(x, [5, -1]), np.take(x, [5, -1]))
    idx = np.array([[[0, 2, 2, 1]], [[2, 2, 0, 0]]])
    np.testing.assert_array_equal(ops.take_along_axis(x, idx, 1), np.take_along_axis(x, idx, 1))
    np.testing.assert_array_equal(
        ops.take_along_axis(x, idx[..., :1], 2), np.take_along_axis(x, idx[..., :1], 2)
    )
    for index in [(0,), (slice(None), [2, 0]), (Ellipsis, 1), (x > 10,), (None, 1, slice(1, 3))]:
        np.testing.assert_array_equal(ops.get_item(x, index), x[index])
    np.testing.assert_array_equal(ops.tile(x[0], (2, 1, 3)), np.tile(x[0], (2, 1, 3)))
    np.testing.assert_array_equal(ops.repeat(x, [1, 0, 2], axis=1), np.repeat(x, [1, 0, 2], 1))
    np.testing.assert_array_equal(ops.repeat(x, 2), np.repeat(x, 2))
    for mode in ("constant", "edge", "reflect", "symmetric", "wrap", "mean"):
        np.testing.assert_array_equal(
            ops.pad(x, [[0, 1], [2, 1], [1, 0]], mode), np.pad(x, [[0, 1], [2, 1], [1, 0]], mode)
        )
    np.testing.assert_array_equal(ops.pad(x, 1, constant_values=7), np.pad(x, 1, constant_values=7))
    np.testing.assert_array_equal(ops.tril(x, -1), np.tril(x, -1))
    np.testing.assert_array_equal(ops.triu(x, 1), np.triu(x, 1))
    for args in [(0, 0, 1), (1, 1, 2), (-1, 2, 0)]:
        np.testing.assert_array_equal(ops.diagonal(x, *args), np.diagonal(x, *args))
    np.testing.assert_array_equal(ops.slice(x, (1, 0, 1), (1, 2, 2)), x[1:2, 0:2, 1:3])
    updated = x.copy()
    updated[0, 1:3, 2:4] = -1
    np.testing.assert_array_equal(ops.slice_update(x, (0, 1, 2), -np.ones((1, 2, 2))), updated)
    np.testing.assert_array_equal(ops.where(x > 5, x, -x), np.where(x > 5, x, -x))
    np.testing.assert_array_equal(ops.where(x > 20)[0], np.nonzero(x > 20)[0])
    np.testing.assert_array_equal(ops.clip(x, 3, 7.5), np.clip(x, 3, 7.5))
    assert ops.shape(x) == (2, 3, 4) and ops.size(x) == 24 and ops.ndim(x) == 3
    assert ops.dtype(x) == "float64" and ops.cast(x, "float32").dtype == np.float32


def test_top_k_and_control_flow():
    values, indices = ops.top_k(np.array([[1.0, 5, 3, 5], [0, -1, 2, 1]]), 2)
    np.testing.assert_array_equal(values, [[5, 5], [2, 1]])
    np.testing.assert_array_equal(indices, [[1, 3], [2, 3]])  # ties: the lower index first (TF)
    assert indices.dtype == np.int32
    assert ops.cond(A[0, 0] > 100, lambda: "yes", lambda: "no") == "no"
    assert ops.switch(5, [lambda v: v, lambda v: -v], 2.0) == -2.0
    assert ops.fori_loop(0, 4, lambda i, v: v + i, 10) == 16
    assert ops.while_loop(lambda a, b: a < 5, lambda a, b: (a + 1, b * 2), (0, 1)) == (5, 32)
    assert ops.while_loop(lambda a: a < 10, lambda a: a + 3, 0, maximum_iterations=2) == 6
    np.testing.assert_allclose(ops.map(ops.sum, A), A.sum(1))
    np.testing.assert_allclose(ops.vectorized_map(lambda t: t[0] @ t[1], (A, B)), (A * B).sum(1))
    carry, ys = ops.scan(lambda c, x: (c + x, c * x), 0.0, np.arange(4.0))
    assert carry == 6 and ys.tolist() == [0, 0, 2, 9]
    carry, ys = ops.scan(lambda c, x: (c + 1, c), 0, length=3, reverse=True)
    assert carry == 3 and ys.tolist() == [2, 1, 0]


def test_making_arrays():
    assert ops.zeros((2, 3)).dtype == np.float32 and ops.ones(3).sum() == 3
    np.testing.assert_array_equal(ops.full((2,), 7), [7, 7])
    np.testing.assert_array_equal(ops.full_like(A, 2, dtype="int32"), np.full_like(A, 2, "int32"))
    assert ops.arange(5).dtype == np.int32 and ops.arange(0.0, 1, 0.25).dtype == np.float32
    np.testing.assert_allclose(ops.linspace(0, 1, 5), np.linspace(0, 1, 5))
    np.testing.assert_array_equal(ops.eye(2, 3, 1), np.eye(2, 3, 1))
    np.testing.assert_array_equal(ops.identity(3), np.eye(3))
    np.testing.assert_array_equal(ops.one_hot([0, 2, -1], 3), [[1, 0, 0], [0, 0, 1], [0, 0, 0]])
    assert ops.one_hot(np.array([[1]]), 2, axis=0).shape == (2, 1, 1)
    x = ops.convert_to_tensor([[1.0, 2.0]])
    assert x.dtype == np.float32 and ops.is_tensor(x) and not ops.is_tensor([1.0])
    np.testing.assert_array_equal(ops.convert_to_numpy(x), x)
    assert ops.convert_to_tensor(np.ones(2), dtype="float16").dtype == np.float16


# ---- nn ----------------------------------------------------------------------------------------
def conv_reference(x, k, stride, padding):
    """2-D cross-correlation by loops: x (N, H, W, C), k (KH, KW, C, O)."""
    kh, kw = k.shape[:2]
    if padding == "same":
        oh, ow = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
        ph = max((oh - 1) * stride + kh - x.shape[1], 0)
        pw = max((ow - 1) * stride + kw - x.shape[2], 0)
        x = np.pad(x, [(0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)])
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, k.shape[-1]))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, i, j] = np.tensordot(patch, k, axes=3)
    return out


@pytest.mark.parametrize("stride,padding", [(1, "valid"), (1, "same"), (2, "same"), (2, "valid")])
def test_conv_against_loops(stride, padding):
    x, k = RNG.standard_normal((2, 7, 6, 3)), RNG.standard_normal((3, 2, 3, 4))
    np.testing.assert_allclose(
        ops.conv(x, k, stride, padding), conv_reference(x, k, stride, padding)
    )
    first = ops.conv(np.moveaxis(x, -1, 1), k, stride, padding, data_format="channels_first")
    np.testing.assert_allclose(np.moveaxis(first, 1, -1), conv_reference(x, k, stride, padding))


def test_pooling_against_loops():
    x = RNG.standard_normal((2, 5, 4, 3))
    pooled = ops.max_pool(x, 2)
    assert pooled.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(pooled[:, 1, 1], x[:, 2:4, 2:4].max(axis=(1, 2)))
    same = ops.average_pool(x, 2, padding="same")
    assert same.shape == (2, 3, 2, 3)
    np.testing.assert_allclose(same[:, 2, 0], x[:, 4, 0:2].mean(axis=1))  # the pad is not counted
    np.testing.assert_allclose(
        ops.max_pool(x, (3, 2), (1, 2), "same")[:, 0, 0], x[:, :2, :2].max(axis=(1, 2))
    )


def test_normalization_losses_and_attention():
    mean, variance = ops.moments(A, axes=[0])
    np.testing.assert_allclose(mean, A.mean(0))
    np.testing.assert_allclose(variance, A.var(0))
    np.testing.assert_allclose(ops.normalize(A), A / np.linalg.norm(A, axis=-1, keepdims=True))
    np.testing.assert_allclose(ops.normalize(A, 0, 1), A / np.abs(A).sum(0))
    np.testing.assert_allclose(
        ops.batch_normalization(A, A.mean(0), A.var(0), -1, epsilon=0), (A - A.mean(0)) / A.std(0)
    )
    t, p = RNG.random((3, 4)), RNG.uniform(0.01, 0.99, (3, 4))
    np.testing.assert_allclose(
        ops.binary_crossentropy(t, p), -(t * np.log(p) + (1 - t) * np.log(1 - p))
    )
    np.testing.assert_allclose(
        ops.binary_crossentropy(t, A, from_logits=True),
        -(t * np.log(sigmoid(A)) + (1 - t) * np.log(1 - sigmoid(A))),
    )
    np.testing.assert_allclose(
        ops.categorical_crossentropy(t, p), -(t * np.log(p / p.sum(-1, keepdims=True))).sum(-1)
    )
    np.testing.assert_allclose(
        ops.categorical_crossentropy(t, A, True), -(t * np.log(softmax(A))).sum(-1)
    )
    labels = np.array([1, 0, 3])
    np.testing.assert_allclose(
        ops.sparse_categorical_crossentropy(labels, A, True),
        -np.log(softmax(A))[np.arange(3), labels],
    )
    q = RNG.standard_normal((2, 3, 4, 5))
    k, v = RNG.standard_normal((2, 6, 2, 5)), RNG.standard_normal((2, 6, 2, 5))
    logits = np.einsum("btnh,bsnh->bnts", q, np.repeat(k, 2, axis=2)) / np.sqrt(5)
    expected = np.einsum("bnts,bsnh->btnh", softmax(logits), np.repeat(v, 2, axis=2))
    np.testing.assert_allclose(ops.dot_product_attention(q, k, v), expected)


def test_backend_settings():
    from fastnn import backend

    assert (backend.floatx(), backend.epsilon(), backend.image_data_format()) == (
        "float32", 1e-7, "channels_last")  # fmt: skip
    try:
        backend.set_floatx("float64")
        backend.set_epsilon(1e-3)
        backend.set_image_data_format("channels_first")
        assert ops.ones(2).dtype == np.float64 and ops.convert_to_tensor(1.0).dtype == np.float64
        np.testing.assert_allclose(ops.binary_crossentropy(np.ones(1), np.ones(1)), -np.log(0.999))
        assert ops.max_pool(np.ones((1, 3, 4, 4)), 2).shape == (1, 3, 2, 2)
        with pytest.raises(ValueError, match="Unknown `floatx` value: 'float8'"):
            backend.set_floatx("float8")
    finally:
        backend.set_floatx("float32")
        backend.set_epsilon(1e-7)
        backend.set_image_data_format("channels_last")
    backend.clear_session()
    assert backend.backend() == "fastnn"


def test_random_functions():
    assert frandom.normal((2, 3), seed=1).dtype == np.float32
    np.testing.assert_array_equal(frandom.uniform((4,), seed=7), frandom.uniform((4,), seed=7))
    gen = frandom.SeedGenerator(3)
    first, second = frandom.normal((3,), seed=gen), frandom.normal((3,), seed=gen)
    assert not np.array_equal(first, second)
    assert np.array_equal(first, frandom.normal((3,), seed=frandom.SeedGenerator(3)))
    ints = frandom.randint((100,), 2, 5, seed=0)
    assert ints.dtype == np.int32 and ints.min() == 2 and ints.max() == 4
    dropped = frandom.dropout(np.ones((200, 50)), 0.25, seed=0)
    assert set(np.unique(dropped)) == {0.0, 1 / 0.75} and abs((dropped == 0).mean() - 0.25) < 0.02
    shared = frandom.dropout(np.ones((4, 6)), 0.5, noise_shape=(None, 1), seed=1)
    assert (shared == shared[:, :1]).all()
    np.testing.assert_array_equal(np.sort(frandom.shuffle(np.arange(10), seed=0)), np.arange(10))
    assert np.abs(frandom.truncated_normal((1000,), seed=0)).max() <= 2


# ---- against keras.ops (torch backend) ---------------------------------------------------------
X32 = RNG.standard_normal((2, 3, 4)).astype(np.float32)
T32 = RNG.random((2, 3, 4)).astype(np.float32)
PARITY = {  # name -> f(ops module): the same call on fastnn.ops and keras.ops
    "softmax_axis": lambda o: o.softmax(X32, axis=1),
    "log_softmax": lambda o: o.log_softmax(X32),
    "gelu": lambda o: o.gelu(X32), "gelu_exact": lambda o: o.gelu(X32, approximate=False),
    "silu": lambda o: o.silu(X32), "elu": lambda o: o.elu(X32, 0.5),
    "selu": lambda o: o.selu(X32), "leaky_relu": lambda o: o.leaky_relu(X32),
    "softplus": lambda o: o.softplus(X32 * 30), "hard_sigmoid": lambda o: o.hard_sigmoid(X32 * 4),
    "relu6": lambda o: o.relu6(X32 * 8), "log_sigmoid": lambda o: o.log_sigmoid(X32 * 20),
    "argmax_ties": lambda o: o.argmax(np.array([[1, 3, 3, 2], [5, 5, 1, 0]]), axis=-1),
    "argmin": lambda o: o.argmin(X32, axis=1), "argsort_ties": lambda o: o.argsort(
        np.array([[1.0, 3, 3, 2], [5, 5, 1, 0]])),
    "sort_axis0": lambda o: o.sort(X32, axis=0), "cumsum": lambda o: o.cumsum(X32, axis=1),
    "cumprod_flat": lambda o: o.cumprod(X32[0]), "max_keepdims": lambda o: o.max(
        X32, axis=(0, 2), keepdims=True),
    "var": lambda o: o.var(X32, axis=-1), "std": lambda o: o.std(X32),
    "logsumexp": lambda o: o.logsumexp(X32, axis=1), "one_hot": lambda o: o.one_hot(
        np.array([0, 2, -1]), 3),
    "clip_int_float_bounds": lambda o: o.clip(np.arange(5), 1.5, 3.5),
    "round_half_even": lambda o: o.round(np.array([0.5, 1.5, 2.5, -0.5])),
    "floor_int": lambda o: o.floor(np.arange(3)), "arange": lambda o: o.arange(5),
    "arange_float": lambda o: o.arange(0, 2, 0.5), "full": lambda o: o.full((2,), 3),
    "linspace": lambda o: o.linspace(0, 1, 5), "eye": lambda o: o.eye(3, 4, 1),
    "mean_int": lambda o: o.mean(np.arange(4)), "exp_int": lambda o: o.exp(np.arange(3)),
    "divide_int": lambda o: o.divide(np.arange(1, 3), np.arange(1, 3)),
    "int32_plus_float": lambda o: o.add(np.arange(3, dtype="int32"), 0.5),
    "take": lambda o: o.take(X32, np.array([[0, 2], [1, 1]]), axis=1),
    "take_along_axis": lambda o: o.take_along_axis(X32, np.zeros((2, 1, 4), "int64"), axis=1),
    "repeat": lambda o: o.repeat(X32, 2, axis=1), "tile": lambda o: o.tile(X32[0], (2, 1)),
    "pad_reflect": lambda o: o.pad(X32, [[0, 0], [1, 1], [2, 0]], mode="reflect"),
    "einsum": lambda o: o.einsum("bij,bkj->bik", X32, X32), "tensordot": lambda o: o.tensordot(
        X32, X32, ([0, 1], [0, 1])),
    "dot": lambda o: o.dot(X32[0], X32[1].T), "split": lambda o: o.split(
        X32, [1, 3], axis=-1)[1],
    "moments": lambda o: o.moments(X32, axes=[0, 1])[1],
    "normalize": lambda o: o.normalize(X32, axis=1),
    "bce": lambda o: o.binary_crossentropy(T32, X32 * 0.4 + 0.5),
    "bce_logits": lambda o: o.binary_crossentropy(T32, X32 * 10, from_logits=True),
    "cce": lambda o: o.categorical_crossentropy(T32, np.abs(X32)),
    "cce_logits_axis": lambda o: o.categorical_crossentropy(T32, X32, True, axis=1),
    "sparse_cce": lambda o: o.sparse_categorical_crossentropy(
        np.array([[0, 3, 1], [2, 2, 0]]), X32, from_logits=True),
    "conv1d_same_stride": lambda o: o.conv(X32, np.ones((3, 4, 2), "float32"), 2, "same"),
    "conv2d_dilated": lambda o: o.conv(X32[..., None], np.ones((2, 2, 1, 3), "float32") * X32[
        0, :2, :2, None, None], 1, "valid", dilation_rate=(1, 2)),
    "conv2d_same_stride2": lambda o: o.conv(RNG_IMG, KERNEL, 2, "same"),
    "max_pool_same": lambda o: o.max_pool(RNG_IMG, 3, 2, "same"),
    "average_pool_same": lambda o: o.average_pool(RNG_IMG, 3, 2, "same"),
    "average_pool_1d": lambda o: o.average_pool(X32, 2, 1, "valid"),
    "attention_causal": lambda o: o.dot_product_attention(Q, KV, KV, is_causal=True),
    "attention_mask": lambda o: o.dot_product_attention(
        Q, KV, KV, mask=np.tril(np.ones((3, 5), bool), 1)),
    "attention_bias": lambda o: o.dot_product_attention(Q, KV, KV, bias=BIAS),
    "attention_gqa": lambda o: o.dot_product_attention(Q, KV[:, :, :1], KV[:, :, :1], scale=0.3),
}  # fmt: skip
RNG_IMG = RNG.standard_normal((2, 7, 7, 3)).astype(np.float32)  # 'same' pads both sides alike
KERNEL = RNG.standard_normal((3, 3, 3, 4)).astype(np.float32)
Q = RNG.standard_normal((2, 3, 2, 4)).astype(np.float32)
KV = RNG.standard_normal((2, 5, 2, 4)).astype(np.float32)
BIAS = RNG.standard_normal((1, 2, 3, 5)).astype(np.float32)


@pytest.mark.parametrize("name", PARITY)
def test_forward_matches_keras(keras_ops, name):
    ours, theirs = PARITY[name](ops), keras_ops.convert_to_numpy(PARITY[name](keras_ops))
    assert np.shape(ours) == theirs.shape
    assert np.result_type(ours) == theirs.dtype, f"dtype {np.result_type(ours)} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-6)


EDGE_GRADIENTS = {  # Keras's backends decide these: compared with torch's autograd
    "clip_at_bounds": (lambda o, x: o.clip(x, -1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 2.0]),
    "relu_at_0": (lambda o, x: o.relu(x), [-1.0, 0.0, 1.0]),
    "relu6_at_bounds": (lambda o, x: o.relu6(x), [0.0, 3.0, 6.0, 7.0]),
    "abs_at_0": (lambda o, x: o.abs(x), [-1.0, 0.0, 2.0]),
    "leaky_relu_at_0": (lambda o, x: o.leaky_relu(x), [-1.0, 0.0, 1.0]),
    "elu_at_0": (lambda o, x: o.elu(x), [-1.0, 0.0, 1.0]),
    "maximum_ties": (lambda o, x: o.maximum(x, 1.0), [0.0, 1.0, 2.0]),
    "max_ties": (lambda o, x: o.max(x), [1.0, 3.0, 3.0, 2.0]),
    "sort": (lambda o, x: o.sort(x) * o.arange(4.0), [3.0, 1.0, 2.0, 0.5]),
    "sqrt": (lambda o, x: o.sqrt(x), [0.25, 1.0, 4.0]),
    "hard_sigmoid": (lambda o, x: o.hard_sigmoid(x), [-4.0, -3.0, 0.0, 3.0, 4.0]),
    "hard_tanh": (lambda o, x: o.hard_tanh(x), [-2.0, -1.0, 0.0, 1.0, 2.0]),
    "hard_silu": (lambda o, x: o.hard_silu(x), [-4.0, -3.0, 0.5, 3.0, 4.0]),
    "softmax": (lambda o, x: o.softmax(x) * o.arange(3.0), [0.1, 2.0, -1.0]),
    "bce_logits": (
        lambda o, x: o.binary_crossentropy(o.ones_like(x) * 0.3, x, True),
        [-50.0, 0.0, 50.0],
    ),
    "norm": (lambda o, x: o.norm(x), [3.0, -4.0]),
}


@pytest.mark.parametrize("name", EDGE_GRADIENTS)
def test_edge_gradients_match_keras(keras_ops, name):
    import torch

    fn, values = EDGE_GRADIENTS[name]
    x = np.array(values, np.float32)
    with GradientTape() as tape:
        xt = tape.watch(x)
        y = ops.sum(fn(ops, xt))
    ours = tape.gradient(y, x)
    xt = torch.tensor(x, requires_grad=True)
    keras_ops.sum(fn(keras_ops, xt)).backward()
    np.testing.assert_allclose(ours, xt.grad.numpy(), rtol=1e-6, atol=1e-7)
