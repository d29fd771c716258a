"""Every op's gradient rule against central finite differences, in float64.

Hypothesis draws the shapes, broadcasting, axes and keyword arguments; values come from a
generator it seeds, inside each op's smooth domain (kinks such as relu's 0 are kept a margin
away). ``check_grads`` differentiates sum(f(...) * u) for a random u, so every output entry
counts, and compares with the tape's gradient of every float input.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastnn import ops
from fastnn.ops import GradientTape

FAST = settings(max_examples=8, deadline=None, derandomize=True)
SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
NONEMPTY = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3)
SEEDS = st.integers(0, 2**16)


def sample(rng, shape, domain="any"):
    """float64 values in an op's smooth domain."""
    low, high = {"any": (-2, 2), "pos": (0.5, 2.5), "unit": (-0.9, 0.9), "gt1": (1.2, 3)}.get(
        domain, (0.2, 2)
    )
    x = rng.uniform(low, high, size=shape)
    if domain == "away0":  # |x| in [0.2, 2], either sign: clear of kinks at 0
        x *= rng.choice([-1.0, 1.0], size=shape)
    return np.asarray(x, dtype=np.float64)


def numeric_grad(f, args, i, u, eps=1e-6):
    """d sum(f(*args) * u) / d args[i] by central differences."""
    x = args[i]
    grad = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        hi = np.sum(np.asarray(f(*args[:i], plus, *args[i + 1 :])) * u)
        lo = np.sum(np.asarray(f(*args[:i], minus, *args[i + 1 :])) * u)
        grad[idx] = (hi - lo) / (2 * eps)
    return grad


def check_grads(f, *args, rng=None, atol=1e-5, rtol=1e-3, wrt=None):
    """The tape's gradients of f at args (arrays) match finite differences."""
    rng = rng or np.random.default_rng(0)
    args = [np.asarray(a, dtype=np.float64) for a in args]
    wrt = range(len(args)) if wrt is None else wrt
    u = rng.standard_normal(np.shape(f(*args)))
    with GradientTape() as tape:
        watched = [tape.watch(a) if i in wrt else a for i, a in enumerate(args)]
        out = f(*watched)
    grads = tape.gradient(out, [watched[i] for i in wrt], output_gradients=u)
    for i, grad in zip(wrt, grads):
        expected = numeric_grad(f, args, i, u)
        assert grad is not None, f"no gradient for input {i}"
        assert np.shape(grad) == args[i].shape
        np.testing.assert_allclose(np.asarray(grad), expected, atol=atol, rtol=rtol)


# ---- elementwise -----------------------------------------------------------------------------
UNARY = {
    "exp": (ops.exp, "any"), "expm1": (ops.expm1, "any"), "log": (ops.log, "pos"),
    "log1p": (ops.log1p, "pos"), "log2": (ops.log2, "pos"), "log10": (ops.log10, "pos"),
    "sqrt": (ops.sqrt, "pos"), "rsqrt": (ops.rsqrt, "pos"), "square": (ops.square, "any"),
    "abs": (ops.abs, "away0"), "negative": (ops.negative, "any"),
    "reciprocal": (ops.reciprocal, "pos"), "sin": (ops.sin, "any"), "cos": (ops.cos, "any"),
    "tan": (ops.tan, "unit"), "sinh": (ops.sinh, "any"), "cosh": (ops.cosh, "any"),
    "tanh": (ops.tanh, "any"), "arcsin": (ops.arcsin, "unit"), "arccos": (ops.arccos, "unit"),
    "arctan": (ops.arctan, "any"), "arcsinh": (ops.arcsinh, "any"),
    "arccosh": (ops.arccosh, "gt1"), "arctanh": (ops.arctanh, "unit"), "erf": (ops.erf, "any"),
    "sign": (ops.sign, "away0"), "floor": (lambda x: ops.floor(x + 0.5), "unit"),
    "round": (ops.round, "unit"), "relu": (ops.relu, "away0"), "relu6": (ops.relu6, "away0"),
    "sigmoid": (ops.sigmoid, "any"), "softplus": (ops.softplus, "any"),
    "softsign": (ops.softsign, "away0"), "silu": (ops.silu, "any"), "elu": (ops.elu, "away0"),
    "selu": (ops.selu, "away0"), "gelu": (ops.gelu, "any"),
    "gelu_exact": (lambda x: ops.gelu(x, approximate=False), "any"),
    "leaky_relu": (ops.leaky_relu, "away0"), "log_sigmoid": (ops.log_sigmoid, "any"),
    "hard_sigmoid": (ops.hard_sigmoid, "away0"), "hard_silu": (ops.hard_silu, "away0"),
    "clip": (lambda x: ops.clip(x, -1.0, 1.0), "away1"),
    "power_const": (lambda x: x**3 + ops.power(ops.abs(x), 1.5) + x**0, "away0"),
    "rdiv": (lambda x: 2.0 / x - x / 3.0, "away0"), "pos": (lambda x: +x - (1 - x), "any"),
    "mod": (lambda x: ops.mod(x, 0.7), "any"),
    "ceil_trunc": (lambda x: ops.ceil(x) + ops.trunc(x) * x, "away0"),
    "hard_tanh": (ops.hard_tanh, "away1"),
}  # fmt: skip


@pytest.mark.parametrize("name", UNARY)
@FAST
@given(shape=SHAPES, seed=SEEDS)
def test_unary(name, shape, seed):
    fn, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    x = sample(rng, shape, "away0" if domain == "away1" else domain)
    if domain == "away1":  # clear of clip's bounds at +-1
        x = np.where(np.abs(np.abs(x) - 1) < 0.1, x * 0.8, x)
    if name == "mod":
        x = np.where(np.abs(np.mod(x, 0.7) - 0.35) > 0.3, x + 0.1, x)
    check_grads(fn, x, rng=rng)


BINARY = {
    "add": (ops.add, "any", "any"), "subtract": (ops.subtract, "any", "any"),
    "multiply": (ops.multiply, "any", "any"), "divide": (ops.divide, "any", "away0"),
    "power": (ops.power, "pos", "any"), "maximum": (ops.maximum, "any", "any"),
    "minimum": (ops.minimum, "any", "any"), "arctan2": (ops.arctan2, "away0", "away0"),
    "logaddexp": (ops.logaddexp, "any", "any"),
    "floor_divide": (lambda a, b: ops.floor_divide(a, b) + a * b, "any", "away0"),
    "operators": (lambda a, b: a * b - a / b + a**2 + 1 - b, "any", "away0"),
    "where": (lambda a, b: ops.where(np.sin(np.arange(np.size(a))).reshape(np.shape(a)) > 0,
                                     a, b), "any", "any"),
}  # fmt: skip


@pytest.mark.parametrize("name", BINARY)
@FAST
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=3, max_side=3), seed=SEEDS)
def test_binary_broadcasting(name, shapes, seed):
    fn, d1, d2 = BINARY[name]
    a_shape, b_shape = shapes.input_shapes
    if name == "where":
        a_shape = shapes.result_shape
    rng = np.random.default_rng(seed)
    check_grads(fn, sample(rng, a_shape, d1), sample(rng, b_shape, d2), rng=rng)


# ---- reductions --------------------------------------------------------------------------------
REDUCTIONS = {
    "sum": (ops.sum, "any"), "mean": (ops.mean, "any"), "var": (ops.var, "any"),
    "std": (ops.std, "any"), "prod": (ops.prod, "away0"), "max": (ops.max, "any"),
    "min": (ops.min, "any"), "logsumexp": (ops.logsumexp, "any"),
    "norm": (ops.norm, "away0"), "norm1": (lambda x, **k: ops.norm(x, ord=1, **k), "away0"),
}  # fmt: skip


@pytest.mark.parametrize("name", REDUCTIONS)
@FAST
@given(data=st.data(), shape=NONEMPTY, seed=SEEDS, keepdims=st.booleans())
def test_reduction_axes(name, data, shape, seed, keepdims):
    fn, domain = REDUCTIONS[name]
    axis = data.draw(st.none() | hnp.valid_tuple_axes(len(shape), min_size=1) | st.integers(
        -len(shape), len(shape) - 1))  # fmt: skip
    rng = np.random.default_rng(seed)
    x = sample(rng, shape, domain)
    if name == "std" and np.size(np.sum(x, axis=axis)) == x.size:
        return  # the std of one value is sqrt(0): no derivative
    check_grads(lambda v: fn(v, axis=axis, keepdims=keepdims), x, rng=rng)


def test_prod_with_a_zero():
    x = np.array([[2.0, 0.0, 3.0], [1.0, 4.0, 0.5]])
    check_grads(lambda v: ops.prod(v, axis=1), x)


def test_ties_share_the_gradient():
    """Finite differences cannot see ties: maxima and minima split the gradient (torch, JAX)."""
    x, y = np.array([1.0, 3.0, 3.0, 2.0]), np.array([0.0, 3.0, 4.0, 2.0])
    with GradientTape(persistent=True) as tape:
        xt, yt = tape.watch(x), tape.watch(y)
        top, pair, low = ops.max(xt), ops.maximum(xt, yt), ops.minimum(xt, yt)
    np.testing.assert_array_equal(tape.gradient(top, x), [0, 0.5, 0.5, 0])
    np.testing.assert_array_equal(tape.gradient(pair, [x, y]), [[1, 0.5, 0, 0.5], [0, 0.5, 1, 0.5]])
    np.testing.assert_array_equal(tape.gradient(low, [x, y]), [[0, 0.5, 1, 0.5], [1, 0.5, 0, 0.5]])


AXIS_OPS = {
    "cumsum": (ops.cumsum, "any"), "cumprod": (ops.cumprod, "pos"),
    "softmax": (ops.softmax, "any"), "log_softmax": (ops.log_softmax, "any"),
    "sort": (ops.sort, "any"), "normalize": (ops.normalize, "away0"),
    "normalize3": (lambda x, axis: ops.normalize(x, axis=axis, order=3), "away0"),
    "flip": (ops.flip, "any"), "roll": (lambda x, axis: ops.roll(x, 2, axis=axis), "any"),
    "squeeze_expand": (lambda x, axis: ops.squeeze(ops.expand_dims(x, axis), axis), "any"),
    "split": (lambda x, axis: ops.split(x, [1], axis=axis)[-1] * 2, "any"),
    "repeat": (lambda x, axis: ops.repeat(x, 2, axis=axis), "any"),
    "take": (lambda x, axis: ops.take(x, [0, -1, 0], axis=axis), "any"),
    "take_along_axis": (
        lambda x, axis: ops.take_along_axis(x, np.zeros_like(x, dtype=int), axis=axis), "any"
    ),
    "unstack": (lambda x, axis: ops.stack(ops.unstack(x, axis=axis)[::-1], axis=axis), "any"),
    "moments": (lambda x, axis: ops.add(*ops.moments(x, axes=[axis])), "any"),
}  # fmt: skip


@pytest.mark.parametrize("name", AXIS_OPS)
@FAST
@given(data=st.data(), shape=NONEMPTY, seed=SEEDS)
def test_ops_along_an_axis(name, data, shape, seed):
    fn, domain = AXIS_OPS[name]
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    if name == "split" and shape[axis] < 2:
        shape = tuple(2 if i == axis % len(shape) else n for i, n in enumerate(shape))
    rng = np.random.default_rng(seed)
    check_grads(lambda x: fn(x, axis=axis), sample(rng, shape, domain), rng=rng)


def test_cumsum_and_cumprod_flattened():
    x = sample(np.random.default_rng(1), (2, 3), "pos")
    check_grads(ops.cumsum, x)
    check_grads(ops.cumprod, x)


# ---- products --------------------------------------------------------------------------------
MATMUL_SHAPES = [
    ((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((2, 2, 3), (3, 4)),
    ((1, 2, 3), (4, 3, 2)), ((3,), (2, 3, 2)), ((2, 1, 2, 3), (3, 3, 2)),
]  # fmt: skip


@pytest.mark.parametrize("a,b", MATMUL_SHAPES)
def test_matmul(a, b):
    rng = np.random.default_rng(len(a) * 10 + len(b))
    check_grads(ops.matmul, rng.standard_normal(a), rng.standard_normal(b), rng=rng)
    check_grads(lambda x, y: x @ y, rng.standard_normal(a), rng.standard_normal(b), rng=rng)


@pytest.mark.parametrize(
    "a,b", [((), (2,)), ((3,), (3,)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((2, 2, 3), (3,)),
            ((2, 3), (2, 3, 4)), ((2, 2, 3), (1, 3, 2))],
)  # fmt: skip
def test_dot(a, b):
    rng = np.random.default_rng(2)
    check_grads(ops.dot, rng.standard_normal(a), rng.standard_normal(b), rng=rng)


@pytest.mark.parametrize(
    "a,b,axes",
    [((2, 3), (3, 4), 1), ((2, 3, 4), (3, 4, 2), 2), ((2, 3, 4), (4, 2, 3), ([1, 2], [2, 0])),
     ((2, 3), (4, 5), 0), ((3, 2), (3, 4), ([0], [0]))],
)  # fmt: skip
def test_tensordot(a, b, axes):
    rng = np.random.default_rng(3)
    check_grads(lambda x, y: ops.tensordot(x, y, axes), rng.random(a), rng.random(b), rng=rng)


@pytest.mark.parametrize(
    "spec,shapes",
    [("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 2)]),
     ("i,i->", [(3,), (3,)]), ("ij->j", [(2, 3)]), ("ij,jk", [(2, 3), (3, 2)]),
     ("i,j->ij", [(2,), (3,)]), ("ijk->kij", [(2, 3, 4)]),
     ("...ij,...jk->...ik", [(2, 2, 3), (1, 3, 2)]), ("ij,j->", [(2, 3), (3,)]),
     ("bthd,bshd->bhts", [(1, 2, 2, 3), (1, 3, 2, 3)]), ("ij,jk,kl->il", [(2, 3), (3, 2), (2, 2)])],
)  # fmt: skip
def test_einsum(spec, shapes):
    rng = np.random.default_rng(4)
    check_grads(lambda *xs: ops.einsum(spec, *xs), *(rng.random(s) for s in shapes), rng=rng)


def test_outer():
    rng = np.random.default_rng(5)
    check_grads(ops.outer, rng.random((2, 2)), rng.random(3))


# ---- shapes and indexing -----------------------------------------------------------------------
@FAST
@given(shape=NONEMPTY, seed=SEEDS, data=st.data())
def test_reshape_transpose_broadcast(shape, seed, data):
    rng = np.random.default_rng(seed)
    perm = data.draw(st.permutations(range(len(shape))))
    check_grads(lambda x: ops.transpose(x, perm), sample(rng, shape), rng=rng)
    check_grads(lambda x: ops.reshape(x, (-1,)), sample(rng, shape), rng=rng)
    check_grads(lambda x: ops.broadcast_to(x, (2, *shape)), sample(rng, shape), rng=rng)
    check_grads(lambda x: ops.swapaxes(x, 0, -1), sample(rng, shape), rng=rng)
    check_grads(lambda x: ops.moveaxis(x, 0, -1) * 1.5, sample(rng, shape), rng=rng)


@FAST
@given(shape=NONEMPTY, count=st.integers(1, 3), seed=SEEDS, data=st.data())
def test_concatenate_and_stack(shape, count, seed, data):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    rng = np.random.default_rng(seed)
    arrays = [sample(rng, shape) for _ in range(count)]
    check_grads(lambda *xs: ops.concatenate(list(xs), axis=axis), *arrays, rng=rng)
    check_grads(lambda *xs: ops.stack(list(xs), axis=axis), *arrays, rng=rng)


INDEXES = [
    (slice(None),), (0,), (slice(1, None), None, -1), (Ellipsis, 1), ([0, 0, 2],),
    (slice(None, None, -1), [1, 0, 1]), (np.array([[0, 1], [1, 1]]), slice(None, 2)),
    (np.array([True, False, True]),), (slice(None), [2, 0], [1, 1]),
]  # fmt: skip


@pytest.mark.parametrize("index", INDEXES, ids=str)
def test_get_item_basic_and_advanced(index):
    x = np.random.default_rng(6).standard_normal((3, 3, 2))
    check_grads(lambda v: v[index], x)
    check_grads(lambda v: ops.get_item(v, index) * 2, x)


def test_take_and_take_along_axis_with_repeats():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4))
    check_grads(lambda v: ops.take(v, [[1, 1], [3, 0]], axis=1), x)
    check_grads(lambda v: ops.take(v, [5, 5, 0]), x)
    check_grads(lambda v: ops.take_along_axis(v, np.array([[0, 0, 3], [1, 1, 1], [2, 0, 0]]), 1), x)
    check_grads(lambda v: ops.take_along_axis(v, np.array([[0], [0], [2]]), axis=1), x)
    check_grads(lambda v: ops.take_along_axis(v, np.array([3, 3, 0]), axis=None), x)


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "symmetric", "wrap"])
def test_pad_modes(mode):
    x = np.random.default_rng(8).standard_normal((2, 3))
    check_grads(lambda v: ops.pad(v, [[1, 2], [2, 1]], mode=mode), x)
    check_grads(lambda v: ops.pad(v, 1, mode=mode), x)


def test_tile_repeat_tril_triu_diagonal_slices():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3))
    check_grads(lambda v: ops.tile(v, (2, 1, 2)), x)
    check_grads(lambda v: ops.tile(v, 2), x)
    check_grads(lambda v: ops.repeat(v, [1, 0, 2], axis=1), x)
    check_grads(lambda v: ops.repeat(v, 2), x)
    check_grads(lambda v: ops.tril(v, -1) + ops.triu(v, 1) * 3, x)
    check_grads(lambda v: ops.diagonal(v, 1) + ops.diagonal(v), rng.standard_normal((3, 4)))
    check_grads(lambda v: ops.diagonal(v, 0, 1, 2), rng.standard_normal((2, 3, 3)))
    check_grads(lambda v: ops.slice(v, (0, 1), (2, 2)), x)
    check_grads(lambda v, u: ops.slice_update(v, (1, 1), u), x, rng.standard_normal((1, 2)))


def test_where_average_cast_and_stop_gradient():
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((2, 3)), rng.random(3) + 0.5
    check_grads(lambda v, u: ops.average(v, axis=1, weights=u), x, w)
    check_grads(lambda v: ops.average(v), x)
    check_grads(lambda v: ops.cast(ops.cast(v, "float64"), "float64") * 2, x)
    with GradientTape() as tape:
        xt = tape.watch(x)
        y = xt * ops.stop_gradient(xt)
    np.testing.assert_allclose(tape.gradient(y, x), x)


# ---- nn ----------------------------------------------------------------------------------------
CONVS = [  # (x shape, kernel shape, strides, padding, dilation)
    ((2, 5, 2), (3, 2, 3), 1, "valid", 1), ((1, 6, 1), (2, 1, 2), 2, "same", 1),
    ((1, 7, 2), (3, 2, 1), 1, "same", 2), ((2, 4, 5, 2), (3, 3, 2, 2), 1, "same", 1),
    ((1, 5, 5, 1), (2, 3, 1, 2), (2, 1), "valid", 1), ((1, 6, 5, 2), (3, 2, 2, 1), 2, "same", 1),
    ((1, 7, 6, 1), (2, 2, 1, 1), 1, "valid", (2, 3)),
    ((1, 3, 4, 3, 1), (2, 2, 2, 1, 2), 1, "same", 1),
]  # fmt: skip


@pytest.mark.parametrize("x_shape,k_shape,strides,padding,dilation", CONVS)
def test_conv(x_shape, k_shape, strides, padding, dilation):
    rng = np.random.default_rng(11)

    def f(x, k):
        return ops.conv(x, k, strides=strides, padding=padding, dilation_rate=dilation)

    check_grads(f, rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng=rng)


def test_conv_channels_first():
    rng = np.random.default_rng(12)

    def f(x, k):
        return ops.conv(x, k, padding="same", data_format="channels_first")

    check_grads(f, rng.standard_normal((1, 2, 4, 3)), rng.standard_normal((3, 2, 2, 2)))


POOLS = [  # (x shape, pool, strides, padding)
    ((2, 4, 2), 2, None, "valid"), ((1, 5, 1), 3, 2, "same"), ((1, 4, 4, 2), 2, None, "valid"),
    ((1, 5, 4, 1), (3, 2), (2, 1), "same"), ((1, 3, 3, 4, 1), 2, 1, "valid"),
]  # fmt: skip


@pytest.mark.parametrize("x_shape,pool,strides,padding", POOLS)
def test_pooling(x_shape, pool, strides, padding):
    x = np.random.default_rng(13).permutation(np.prod(x_shape)).reshape(x_shape) / 7.0
    check_grads(lambda v: ops.max_pool(v, pool, strides, padding), x)
    check_grads(lambda v: ops.average_pool(v, pool, strides, padding), x)
    first = np.moveaxis(x, -1, 1)
    check_grads(lambda v: ops.average_pool(v, pool, strides, padding, "channels_first"), first)
    check_grads(lambda v: ops.max_pool(v, pool, strides, padding, "channels_first"), first)


def test_losses():
    rng = np.random.default_rng(14)
    t, p = rng.random((3, 4)), rng.uniform(0.1, 0.9, (3, 4))
    check_grads(ops.binary_crossentropy, t, p, rng=rng)
    check_grads(lambda a, b: ops.binary_crossentropy(a, b, from_logits=True), t, p * 4 - 2)
    check_grads(ops.categorical_crossentropy, t, p, rng=rng)
    check_grads(lambda a, b: ops.categorical_crossentropy(a, b, True, axis=0), t, p * 4 - 2)
    labels = np.array([0, 3, 1])
    check_grads(lambda b: ops.sparse_categorical_crossentropy(labels, b), p)
    check_grads(lambda b: ops.sparse_categorical_crossentropy(labels[:, None], b, True), p * 3)
    check_grads(lambda b: ops.sparse_categorical_crossentropy([1, 2, 0, 1], b, axis=0), p)


def test_batch_normalization_and_moments():
    rng = np.random.default_rng(15)
    x, m, v = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.random(3) + 0.5
    o, s = rng.standard_normal(3), rng.standard_normal(3)
    check_grads(lambda *a: ops.batch_normalization(*a[:3], axis=-1, offset=a[3], scale=a[4]),
                x, m, v, o, s)  # fmt: skip
    check_grads(lambda a: ops.moments(a, axes=[0, 1], keepdims=True)[1], x)


@pytest.mark.parametrize(
    "heads,kv_heads,mask,causal,bias",
    [(2, 2, False, False, False), (2, 1, True, False, True), (4, 2, False, True, False)],
)
def test_dot_product_attention(heads, kv_heads, mask, causal, bias):
    rng = np.random.default_rng(16)
    q = rng.standard_normal((1, 3, heads, 2))
    k, v = rng.standard_normal((1, 4, kv_heads, 2)), rng.standard_normal((1, 4, kv_heads, 2))
    keep = rng.random((3, 4)) > 0.3 if mask else None
    extra = rng.standard_normal((1, heads, 3, 4)) if bias else None

    def f(q, k, v):
        return ops.dot_product_attention(q, k, v, bias=extra, mask=keep, is_causal=causal)

    check_grads(f, q, k, v, rng=rng)


def test_top_k_and_control_flow_record():
    x = np.random.default_rng(19).permutation(12).reshape(3, 4) / 5.0
    check_grads(lambda v: ops.top_k(v, 2)[0], x)
    check_grads(lambda v: ops.scan(lambda c, r: (c * r + 1, c * 2), np.ones(4), v)[1], x)
    check_grads(lambda v: ops.fori_loop(0, 3, lambda i, c: ops.sin(c) * v, v), x)
    check_grads(lambda v: ops.map(ops.softmax, v) + ops.vectorized_map(ops.exp, v), x)


def test_dropout_and_shuffle_record():
    from fastnn import random as frandom

    x = np.random.default_rng(17).standard_normal((4, 3))
    check_grads(lambda v: frandom.dropout(v, 0.5, seed=3), x)
    check_grads(lambda v: frandom.shuffle(v, axis=1, seed=3), x)


# ---- gradients of gradients ------------------------------------------------------------------
def grad_of(f):
    """x -> the tape's gradient of sum(f(x)), computed so that an outer tape records it."""

    def g(x):
        with GradientTape() as tape:
            xt = tape.watch(x)
            y = ops.sum(f(xt))
        return tape.gradient(y, xt)

    return g


SECOND_ORDER = {
    "tanh_cubed": (lambda x: ops.tanh(x) ** 3, (2, 3)),
    "softmax": (lambda x: ops.softmax(x) * ops.arange(3.0), (2, 3)),
    "log_sigmoid_matmul": (lambda x: ops.log_sigmoid(x @ np.ones((3, 2)) * x[:, :2]), (2, 3)),
    "logsumexp": (lambda x: ops.logsumexp(x, axis=1) ** 2, (2, 3)),
    "gelu": (ops.gelu, (2, 3)),
    "conv": (lambda x: ops.conv(x, np.ones((2, 1, 2)) * 0.5, padding="same") ** 2, (1, 4, 1)),
    "max_pool": (lambda x: ops.max_pool(x * x, 2), (1, 4, 1)),
    "average_pool": (lambda x: ops.average_pool(x, 2, padding="same") ** 3, (1, 3, 1)),
    "take_pad": (lambda x: ops.pad(ops.take(x, [0, 0, 1], axis=1), 1, "reflect") ** 2, (2, 3)),
}


@pytest.mark.parametrize("wrt", [0, 1])
def test_second_order_conv_through_both_adjoints(wrt):
    """The gradient of conv w.r.t. x (conv_input_grad) or kernel (conv_kernel_grad),
    differentiated w.r.t. both x and kernel: every rule of the three."""
    rng = np.random.default_rng(20)

    def grad(x, k):
        with GradientTape() as tape:
            xt, kt = tape.watch(x), tape.watch(k)
            y = ops.sum(ops.conv(xt, kt, strides=2, padding="same") ** 2)
        return tape.gradient(y, [xt, kt][wrt])

    check_grads(grad, rng.standard_normal((1, 5, 2)), rng.standard_normal((3, 2, 2)), rng=rng)


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_second_order(name):
    f, shape = SECOND_ORDER[name]
    x = np.random.default_rng(18).permutation(np.prod(shape)).reshape(shape) / 5.0 + 0.1
    check_grads(grad_of(f), x)
