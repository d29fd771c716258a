"""Every op's gradient, one entry per op, siblings side by side.

``defvjp(name, saves, *vjps)`` gives op ``name`` one VJP per input: ``vjp(g, ans, *inputs,
**params)`` returns that input's gradient from ``g``, the gradient of the op's output. ``saves``
names the values the VJPs read (``ans`` and/or inputs): the tape keeps only those, by reference;
the others arrive as Specs holding shape and dtype. Ops taking any number of inputs give one VJP
with ``*xs`` and a keyword ``argnum``. Binary rules reduce broadcast gradients with
``unbroadcast``. Rules are written with fastnn.ops, so an outer tape records them (gradients of
gradients); masks from comparisons are constants, as the ops are piecewise there.
"""

from __future__ import annotations

import math

import numpy as np

from fastnn.ops import linalg, nn, nn_extra
from fastnn.ops import numpy as fnp
from fastnn.ops import numpy_extra as fnpx
from fastnn.ops.numpy import _along
from fastnn.ops.tape import RULES, OpError, Rule, unwrap


def defvjp(name: str, saves: str, *vjps) -> None:
    """Register op ``name``'s VJPs (one per input) and the values they read."""
    RULES[name] = Rule(name, saves, vjps)


#: (gradient shape, operand shape) -> the axes unbroadcast sums over (a bounded cache).
_SUMMED_AXES: dict[tuple, tuple] = {}


def unbroadcast(g, shape: tuple):
    """Sum ``g`` down to ``shape``: the gradient of broadcasting a ``shape`` value to g's shape."""
    if type(shape) is not tuple:
        shape = tuple(shape)
    if g.shape == shape:
        return g
    axes = _SUMMED_AXES.get((g.shape, shape))
    if axes is None:
        lead = len(g.shape) - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1
        )
        if len(_SUMMED_AXES) < 4096:
            _SUMMED_AXES[g.shape, shape] = axes
    if type(g) is np.ndarray:  # off any tape: numpy's own (a gradient of gradients records)
        return g.sum(axis=axes).reshape(shape)
    return fnp.reshape(fnp.sum(g, axis=axes), shape)


def _kept_shape(shape: tuple, axis) -> list:
    axes = range(len(shape)) if axis is None else [a % len(shape) for a in np.atleast_1d(axis)]
    return [1 if i in axes else n for i, n in enumerate(shape)]


def _kept(g, shape: tuple, axis):
    """The gradient of a reduction over ``axis``, shaped to broadcast against its input."""
    return fnp.reshape(g, _kept_shape(shape, axis))


def _count(shape: tuple, axis) -> int:
    axes = range(len(shape)) if axis is None else [a % len(shape) for a in np.atleast_1d(axis)]
    return math.prod(shape[a] for a in axes)


def _mask(condition, g) -> np.ndarray:
    """A constant 0/1 array in g's dtype."""
    return np.asarray(unwrap(condition), dtype=g.dtype)


def _zero(g, ans, *xs, argnum, **params):
    """The gradient of a piecewise-constant op (sign, floor, round, floor_divide): zeros."""
    return np.zeros(xs[argnum].shape, g.dtype)


# ---- elementwise, one input ------------------------------------------------------------------
defvjp("negative", "", lambda g, ans, x: -g)
defvjp("abs", "x", lambda g, ans, x: g * fnp.sign(x))
defvjp("square", "x", lambda g, ans, x: g * (2 * x))
defvjp("sqrt", "ans", lambda g, ans, x: g / (2 * ans))
defvjp("rsqrt", "ans", lambda g, ans, x: g * (-0.5 * ans**3))
defvjp("reciprocal", "ans", lambda g, ans, x: -g * ans * ans)
defvjp("exp", "ans", lambda g, ans, x: g * ans)
defvjp("expm1", "ans", lambda g, ans, x: g * (ans + 1))
defvjp("log", "x", lambda g, ans, x: g / x)
defvjp("log1p", "x", lambda g, ans, x: g / (1 + x))
defvjp("log2", "x", lambda g, ans, x: g / (x * math.log(2)))
defvjp("log10", "x", lambda g, ans, x: g / (x * math.log(10)))
defvjp("sin", "x", lambda g, ans, x: g * fnp.cos(x))
defvjp("cos", "x", lambda g, ans, x: -g * fnp.sin(x))
defvjp("tan", "ans", lambda g, ans, x: g * (1 + ans * ans))
defvjp("sinh", "x", lambda g, ans, x: g * fnp.cosh(x))
defvjp("cosh", "x", lambda g, ans, x: g * fnp.sinh(x))
defvjp("tanh", "ans", lambda g, ans, x: g * (1 - ans * ans))
defvjp("arcsin", "x", lambda g, ans, x: g / fnp.sqrt(1 - x * x))
defvjp("arccos", "x", lambda g, ans, x: -g / fnp.sqrt(1 - x * x))
defvjp("arctan", "x", lambda g, ans, x: g / (1 + x * x))
defvjp("arcsinh", "x", lambda g, ans, x: g / fnp.sqrt(x * x + 1))
defvjp("arccosh", "x", lambda g, ans, x: g / fnp.sqrt(x * x - 1))
defvjp("arctanh", "x", lambda g, ans, x: g / (1 - x * x))
defvjp("erf", "x", lambda g, ans, x: g * (2 / math.sqrt(math.pi) * fnp.exp(-x * x)))
for _name in ("sign", "floor", "ceil", "trunc", "round"):
    defvjp(_name, "", _zero)

# ---- elementwise, two inputs (broadcast) -----------------------------------------------------
defvjp(
    "add", "",
    lambda g, ans, x1, x2: unbroadcast(g, x1.shape),
    lambda g, ans, x1, x2: unbroadcast(g, x2.shape),
)  # fmt: skip
defvjp(
    "subtract", "",
    lambda g, ans, x1, x2: unbroadcast(g, x1.shape),
    lambda g, ans, x1, x2: unbroadcast(-g, x2.shape),
)  # fmt: skip
defvjp(
    "multiply", "x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g * x2, x1.shape),
    lambda g, ans, x1, x2: unbroadcast(g * x1, x2.shape),
)  # fmt: skip
defvjp(
    "divide", "x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g / x2, x1.shape),
    lambda g, ans, x1, x2: unbroadcast(-g * x1 / (x2 * x2), x2.shape),
)  # fmt: skip


def _power_base(g, ans, x1, x2):
    if isinstance(x2, (int, float)):  # a constant exponent: x ** 0 has gradient 0, even at 0
        return fnp.zeros_like(g) if x2 == 0 else unbroadcast(g * x2 * x1 ** (x2 - 1), x1.shape)
    d = fnp.where(unwrap(x2) == 0, 0.0, x2 * x1 ** (x2 - 1))
    return unbroadcast(g * d, x1.shape)


def _power_exponent(g, ans, x1, x2):  # x ** y log x, taken as 0 where x == 0
    base = fnp.where(unwrap(x1) == 0, 1.0, x1)
    return unbroadcast(g * x1**x2 * fnp.log(base), x2.shape)


defvjp("power", "x1 x2", _power_base, _power_exponent)


def _share(a, b, g) -> np.ndarray:
    """1 where a wins, 0.5 at ties, 0 where b wins: ties split the gradient (torch, JAX)."""
    a, b = unwrap(a), unwrap(b)
    return (_mask(a > b, g) + 0.5 * _mask(a == b, g)).astype(g.dtype)


defvjp(
    "maximum", "x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g * _share(x1, x2, g), x1.shape),
    lambda g, ans, x1, x2: unbroadcast(g * _share(x2, x1, g), x2.shape),
)  # fmt: skip
defvjp(
    "minimum", "x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g * _share(x2, x1, g), x1.shape),
    lambda g, ans, x1, x2: unbroadcast(g * _share(x1, x2, g), x2.shape),
)  # fmt: skip
defvjp(
    "mod", "x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g, x1.shape),
    lambda g, ans, x1, x2: unbroadcast(-g * fnp.floor_divide(x1, x2), x2.shape),
)  # fmt: skip
defvjp("floor_divide", "", _zero, _zero)
defvjp(
    "arctan2", "x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g * x2 / (x1 * x1 + x2 * x2), x1.shape),
    lambda g, ans, x1, x2: unbroadcast(-g * x1 / (x1 * x1 + x2 * x2), x2.shape),
)  # fmt: skip
defvjp(
    "logaddexp", "ans x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g * fnp.exp(x1 - ans), x1.shape),
    lambda g, ans, x1, x2: unbroadcast(g * fnp.exp(x2 - ans), x2.shape),
)  # fmt: skip
defvjp(
    "clip", "x",
    lambda g, ans, x, x_min, x_max: g * _mask((unwrap(x) >= x_min) & (unwrap(x) <= x_max), g),
)  # fmt: skip
defvjp(
    "where", "",
    lambda g, ans, x1, x2, condition: unbroadcast(fnp.where(condition, g, 0), x1.shape),
    lambda g, ans, x1, x2, condition: unbroadcast(fnp.where(condition, 0, g), x2.shape),
)  # fmt: skip
defvjp("cast", "", lambda g, ans, x, dtype: fnp.cast(g, x.dtype))

# ---- reductions ------------------------------------------------------------------------------
defvjp(
    "sum", "",
    lambda g, ans, x, axis, keepdims: fnp.broadcast_to(_kept(g, x.shape, axis), x.shape),
)  # fmt: skip
defvjp(
    "mean", "",
    lambda g, ans, x, axis, keepdims: fnp.broadcast_to(
        _kept(g, x.shape, axis) / _count(x.shape, axis), x.shape
    ),
)  # fmt: skip
defvjp(
    "var",
    "x",
    lambda g, ans, x, axis, keepdims: (
        _kept(g, x.shape, axis)
        * (2 / _count(x.shape, axis))
        * (x - fnp.mean(x, axis=axis, keepdims=True))
    ),
)
defvjp(
    "prod", "x",
    lambda g, ans, x, axis, keepdims: _kept(g, x.shape, axis) * fnp._prod_others(x, axis),
)  # fmt: skip


def _extreme(g, ans, x, axis, keepdims, fn, initial):
    """max/min: the gradient goes to the entries equal to the result, shared among ties."""
    hit = np.equal(unwrap(x), np.reshape(unwrap(ans), _kept_shape(x.shape, axis))).astype(g.dtype)
    share = hit / np.maximum(hit.sum(axis=axis, keepdims=True), 1)
    return _kept(g, x.shape, axis) * share


defvjp("max", "ans x", _extreme)
defvjp("min", "ans x", _extreme)
defvjp(
    "logsumexp", "ans x",
    lambda g, ans, x, axis, keepdims: _kept(g, x.shape, axis)
    * fnp.exp(x - _kept(ans, x.shape, axis)),
)  # fmt: skip


def _reverse_cumsum(g, axis):
    return fnp.flip(fnp.cumsum(fnp.flip(g, axis), axis), axis)


def _cumsum(g, ans, x, axis, dtype):
    if axis is None:
        return fnp.reshape(_reverse_cumsum(g, 0), x.shape)
    return _reverse_cumsum(g, axis)


def _cumprod(g, ans, x, axis, dtype):  # x with no zeros
    if axis is None:
        return fnp.reshape(_reverse_cumsum(g * ans, 0) / fnp.reshape(x, (-1,)), x.shape)
    return _reverse_cumsum(g * ans, axis) / x


defvjp("cumsum", "", _cumsum)
defvjp("cumprod", "ans x", _cumprod)


# ---- products --------------------------------------------------------------------------------
def _matmul(g, x1, x2, argnum: int):
    """matmul's VJP, with numpy's promotion of 1-D operands and batch broadcasting."""
    if len(x1.shape) == len(x2.shape) == 2:
        other = x2 if argnum == 0 else x1
        if type(g) is np.ndarray and type(other) is np.ndarray:  # off any tape: numpy's own
            return g @ other.T if argnum == 0 else other.T @ g
        return g @ fnp.transpose(x2) if argnum == 0 else fnp.transpose(x1) @ g
    a = x1 if len(x1.shape) > 1 else fnp.reshape(x1, (1, -1))
    b = x2 if len(x2.shape) > 1 else fnp.reshape(x2, (-1, 1))
    if len(x2.shape) == 1:
        g = fnp.expand_dims(g, -1)
    if len(x1.shape) == 1:
        g = fnp.expand_dims(g, -2)
    if argnum == 0:
        return fnp.reshape(unbroadcast(fnp.matmul(g, fnp.swapaxes(b, -1, -2)), a.shape), x1.shape)
    return fnp.reshape(unbroadcast(fnp.matmul(fnp.swapaxes(a, -1, -2), g), b.shape), x2.shape)


defvjp(
    "matmul", "x1 x2",
    lambda g, ans, x1, x2: _matmul(g, x1, x2, 0),
    lambda g, ans, x1, x2: _matmul(g, x1, x2, 1),
)  # fmt: skip


def _tensordot(g, x1, x2, axes, argnum: int):
    """tensordot's VJP: contract g with the other operand over its free axes, then put the
    result's axes back in the operand's order."""
    (a_axes, b_axes), na, nb = axes, len(x1.shape), len(x2.shape)
    free_a = [i for i in range(na) if i not in a_axes]
    free_b = [i for i in range(nb) if i not in b_axes]
    g_b = list(range(len(free_a), len(free_a) + len(free_b)))
    if argnum == 0:
        d = fnp.tensordot(g, x2, axes=(g_b, free_b))
        order = free_a + [a_axes[b_axes.index(j)] for j in sorted(b_axes)]
    else:
        d = fnp.tensordot(x1, g, axes=(free_a, list(range(len(free_a)))))
        order = [b_axes[a_axes.index(j)] for j in sorted(a_axes)] + free_b
    return fnp.transpose(d, [int(i) for i in np.argsort(order)])


defvjp(
    "tensordot", "x1 x2",
    lambda g, ans, x1, x2, axes: _tensordot(g, x1, x2, axes, 0),
    lambda g, ans, x1, x2, axes: _tensordot(g, x1, x2, axes, 1),
)  # fmt: skip


def _einsum_terms(subscripts: str, count: int) -> tuple[list, str]:
    lhs, arrow, out = subscripts.partition("->")
    terms = lhs.split(",")
    if not arrow:  # numpy's implicit output: the indices seen once, sorted
        letters = lhs.replace("...", "").replace(",", "")
        once = sorted(c for c in set(letters) if letters.count(c) == 1)
        out = ("..." if "..." in lhs else "") + "".join(once)
    return terms, out


def _einsum(g, ans, *xs, argnum, subscripts):
    """einsum's VJP: g contracted with the other operands into this operand's indices; indices
    summed out of this operand alone are broadcast back, '...' dims reduced by unbroadcast."""
    terms, out = _einsum_terms(subscripts, len(xs))
    term, shape = terms[argnum], tuple(xs[argnum].shape)
    pre, _, post = term.partition("...")
    if len(set(pre + post)) != len(pre + post):
        raise OpError(f"einsum: no gradient for an index repeated within {term!r} (a diagonal)")
    others = [t for j, t in enumerate(terms) if j != argnum]
    known = set(out + "".join(others))
    kept = "".join(c for c in pre + post if c in known)
    dropped = "".join(c for c in pre + post if c not in known)
    n_ell = len(shape) - len(pre) - len(post)
    size = dict(zip(pre, shape)) | dict(zip(post, shape[len(shape) - len(post) :]))
    ell = "..." if "..." in term else ""
    spec = ",".join([out, *others]) + "->" + ell + kept
    grad = fnp.einsum(spec, g, *(x for j, x in enumerate(xs) if j != argnum))
    ell_shape = shape[len(pre) : len(pre) + n_ell]
    grad = unbroadcast(grad, ell_shape + tuple(size[c] for c in kept))
    if dropped:
        full = ell_shape + tuple(size[c] for c in kept + dropped)
        grad = fnp.broadcast_to(fnp.reshape(grad, grad.shape + (1,) * len(dropped)), full)
    have = [("...", i) for i in range(n_ell)] + [(c, 0) for c in kept + dropped]
    want = [(c, 0) for c in pre] + [("...", i) for i in range(n_ell)] + [(c, 0) for c in post]
    return fnp.transpose(grad, [have.index(w) for w in want])


defvjp("einsum", "xs", _einsum)

# ---- shapes and indexing -----------------------------------------------------------------------
for _name in ("reshape", "expand_dims", "squeeze"):
    defvjp(_name, "", lambda g, ans, x, **params: fnp.reshape(g, x.shape))
defvjp(
    "transpose", "",
    lambda g, ans, x, axes: fnp.transpose(g, None if axes is None else np.argsort(axes).tolist()),
)  # fmt: skip
defvjp("broadcast_to", "", lambda g, ans, x, shape: unbroadcast(g, x.shape))


def _concatenate(g, ans, *xs, argnum, axis):
    axis %= len(ans.shape)
    start = sum(x.shape[axis] for x in xs[:argnum])
    return fnp.get_item(g, (slice(None),) * axis + (slice(start, start + xs[argnum].shape[axis]),))


defvjp("concatenate", "", _concatenate)
defvjp(
    "stack", "",
    lambda g, ans, *xs, argnum, axis: fnp.get_item(
        g, (slice(None),) * (axis % len(ans.shape)) + (argnum,)
    ),
)  # fmt: skip
for _name in ("get_item", "take", "take_along_axis"):
    defvjp(_name, "", lambda g, ans, x, index: fnp._index_add(g, x.shape, index))
defvjp("index_add", "", lambda g, ans, x, shape, index: fnp.get_item(g, index))


def _slice_update_inputs(g, ans, x, updates, index):
    mask = np.ones(g.shape, g.dtype)
    mask[index] = 0
    return g * mask


defvjp(
    "slice_update", "",
    _slice_update_inputs,
    lambda g, ans, x, updates, index: fnp.get_item(g, index),
)  # fmt: skip


def _tile(g, ans, x, repeats):
    d = max(len(x.shape), len(repeats))
    sizes = (1,) * (d - len(x.shape)) + tuple(x.shape)
    reps = (1,) * (d - len(repeats)) + tuple(repeats)
    split = [n for pair in zip(reps, sizes) for n in pair]
    return fnp.reshape(fnp.sum(fnp.reshape(g, split), axis=tuple(range(0, 2 * d, 2))), x.shape)


defvjp("tile", "", _tile)


def _pad(g, ans, x, pad_width, mode, constant_values):
    """Slice off a constant pad; for modes that copy entries (edge, reflect, symmetric, wrap),
    pad the entries' flat positions the same way and add each padded gradient to its source."""
    if mode == "constant":
        return fnp.get_item(g, tuple(slice(a, a + n) for (a, _), n in zip(pad_width, x.shape)))
    if mode not in ("edge", "reflect", "symmetric", "wrap"):
        raise OpError(f"pad: no gradient for mode={mode!r}")
    source = np.pad(np.arange(x.size).reshape(x.shape), pad_width, mode=mode).reshape(-1)
    flat = fnp._index_add(fnp.reshape(g, (-1,)), (x.size,), source)
    return fnp.reshape(flat, x.shape)


defvjp("pad", "", _pad)
defvjp("tril", "", lambda g, ans, x, k: fnp.tril(g, k))
defvjp("triu", "", lambda g, ans, x, k: fnp.triu(g, k))


def _sort(g, ans, x, axis):
    order = np.argsort(unwrap(x), axis=axis, kind="stable")
    return fnp._index_add(g, x.shape, _along(x.shape, order, axis))


defvjp("sort", "x", _sort)


# ---- nn ----------------------------------------------------------------------------------------
defvjp("relu", "ans", lambda g, ans, x: g * _mask(unwrap(ans) > 0, g))
defvjp("relu6", "ans", lambda g, ans, x: g * _mask((unwrap(ans) > 0) & (unwrap(ans) < 6), g))
defvjp("hard_tanh", "ans", lambda g, ans, x: g * _mask(np.abs(unwrap(ans)) < 1, g))
defvjp("sigmoid", "ans", lambda g, ans, x: g * ans * (1 - ans))
defvjp("softplus", "x", lambda g, ans, x: g * nn.sigmoid(x))
defvjp("softsign", "x", lambda g, ans, x: g / fnp.square(1 + fnp.abs(x)))
defvjp(
    "silu", "x",
    lambda g, ans, x: g * nn.sigmoid(x) * (1 + x * (1 - nn.sigmoid(x))),
)  # fmt: skip
defvjp(
    "elu", "ans x",
    lambda g, ans, x, alpha: fnp.where(unwrap(x) > 0, g, g * (ans + alpha)),
)  # fmt: skip
defvjp(
    "leaky_relu", "x",
    lambda g, ans, x, negative_slope: fnp.where(unwrap(x) > 0, g, g * negative_slope),
)  # fmt: skip


def _gelu(g, ans, x, approximate):
    if not approximate:  # Phi(x) + x phi(x)
        cdf = 0.5 * (1 + fnp.erf(x / math.sqrt(2)))
        return g * (cdf + x * fnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
    c = math.sqrt(2 / math.pi)
    t = fnp.tanh(c * (x + 0.044715 * x * x * x))
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x))


defvjp("gelu", "x", _gelu)
defvjp(
    "softmax", "ans",
    lambda g, ans, x, axis: ans * (g - fnp.sum(g * ans, axis=axis, keepdims=True)),
)  # fmt: skip
defvjp(
    "log_softmax", "ans",
    lambda g, ans, x, axis: g - fnp.exp(ans) * fnp.sum(g, axis=axis, keepdims=True),
)  # fmt: skip
defvjp(
    "sigmoid_cross_entropy", "t x",
    lambda g, ans, t, x: -g * x,
    lambda g, ans, t, x: g * (nn.sigmoid(x) - t),
)  # fmt: skip

# conv is bilinear in (x, kernel): its two adjoints and conv close under differentiation.
defvjp(
    "conv", "x kernel",
    lambda g, ans, x, kernel, **p: nn._conv_input_grad(g, kernel, x.shape, **p),
    lambda g, ans, x, kernel, **p: nn._conv_kernel_grad(x, g, kernel.shape, **p),
)  # fmt: skip
defvjp(
    "conv_input_grad", "g kernel",
    lambda h, ans, g, kernel, x_shape, **p: nn._conv(h, kernel, **p),
    lambda h, ans, g, kernel, x_shape, **p: nn._conv_kernel_grad(h, g, kernel.shape, **p),
)  # fmt: skip
defvjp(
    "conv_kernel_grad", "x g",
    lambda h, ans, x, g, kernel_shape, **p: nn._conv_input_grad(g, h, x.shape, **p),
    lambda h, ans, x, g, kernel_shape, **p: nn._conv(x, h, **p),
)  # fmt: skip
defvjp("max_pool", "x", lambda g, ans, x, **p: nn._max_pool_grad(g, x, **p))
defvjp("max_pool_grad", "x", lambda h, ans, g, x, **p: nn._max_pool_gather(h, x, **p), None)
defvjp("max_pool_gather", "x", lambda u, ans, h, x, **p: nn._max_pool_grad(u, x, **p), None)
defvjp("average_pool", "", lambda g, ans, x, **p: nn._average_pool_grad(g, x.shape, **p))
defvjp("average_pool_grad", "", lambda h, ans, g, x_shape, **p: nn._average_pool(h, **p))


# transposed and depthwise convs are bilinear too: each with its two adjoints, as conv.
defvjp(
    "conv_transpose", "x kernel",
    lambda g, ans, x, kernel, **p: nn_extra._conv_transpose_input_grad(g, kernel, x.shape, **p),
    lambda g, ans, x, kernel, **p: nn_extra._conv_transpose_kernel_grad(x, g, kernel.shape, **p),
)  # fmt: skip
defvjp(
    "conv_transpose_input_grad", "g kernel",
    lambda h, ans, g, kernel, x_shape, **p: nn_extra._conv_transpose(h, kernel, **p),
    lambda h, ans, g, kernel, x_shape, **p: nn_extra._conv_transpose_kernel_grad(
        h, g, kernel.shape, **p
    ),
)  # fmt: skip
defvjp(
    "conv_transpose_kernel_grad", "x g",
    lambda h, ans, x, g, kernel_shape, **p: nn_extra._conv_transpose_input_grad(
        g, h, x.shape, **p
    ),
    lambda h, ans, x, g, kernel_shape, **p: nn_extra._conv_transpose(x, h, **p),
)  # fmt: skip
defvjp(
    "depthwise_conv", "x kernel",
    lambda g, ans, x, kernel, **p: nn_extra._depthwise_input_grad(g, kernel, x.shape, **p),
    lambda g, ans, x, kernel, **p: nn_extra._depthwise_kernel_grad(x, g, kernel.shape, **p),
)  # fmt: skip
defvjp(
    "depthwise_conv_input_grad", "g kernel",
    lambda h, ans, g, kernel, x_shape, **p: nn_extra._depthwise_apply(h, kernel, **p),
    lambda h, ans, g, kernel, x_shape, **p: nn_extra._depthwise_kernel_grad(
        h, g, kernel.shape, **p
    ),
)  # fmt: skip
defvjp(
    "depthwise_conv_kernel_grad", "x g",
    lambda h, ans, x, g, kernel_shape, **p: nn_extra._depthwise_input_grad(g, h, x.shape, **p),
    lambda h, ans, x, g, kernel_shape, **p: nn_extra._depthwise_apply(x, h, **p),
)  # fmt: skip


def _sparsemax(g, ans, x, axis):
    """On the support (ans > 0) g less its mean there; 0 off it."""
    support = _mask(unwrap(ans) > 0, g)
    count = np.sum(support, axis=axis, keepdims=True)
    return support * (g - fnp.sum(g * support, axis=axis, keepdims=True) / count)


defvjp("sparsemax", "ans", _sparsemax)
defvjp(
    "ctc_loss", "output",
    lambda g, ans, output, **p: fnp.multiply(
        fnp.reshape(g, (-1, 1, 1)), nn_extra._ctc_loss_grad(output, **p)
    ),
)  # fmt: skip


# ---- numpy_extra's primitives ------------------------------------------------------------------
defvjp("cbrt", "ans", lambda g, ans, x: g / (3 * ans * ans))
defvjp("exp2", "ans", lambda g, ans, x: g * ans * math.log(2))
defvjp("erfc", "x", lambda g, ans, x: g * (-2 / math.sqrt(math.pi) * fnp.exp(-x * x)))
defvjp("erfinv", "ans", lambda g, ans, x: g * (math.sqrt(math.pi) / 2 * fnp.exp(ans * ans)))
defvjp("copy", "", lambda g, ans, x: g)
defvjp(
    "hypot", "ans x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g * x1 / ans, x1.shape),
    lambda g, ans, x1, x2: unbroadcast(g * x2 / ans, x2.shape),
)  # fmt: skip
defvjp(
    "logaddexp2", "ans x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g * fnpx.exp2(x1 - ans), x1.shape),
    lambda g, ans, x1, x2: unbroadcast(g * fnpx.exp2(x2 - ans), x2.shape),
)  # fmt: skip
defvjp(
    "fmod", "x1 x2",
    lambda g, ans, x1, x2: unbroadcast(g, x1.shape),
    lambda g, ans, x1, x2: unbroadcast(-g * fnp.trunc(x1 / x2), x2.shape),
)  # fmt: skip


def _segment_extreme(g, ans, data, ids, count, fn):
    """segment_max/min: each segment's gradient to the rows equal to its result, shared among
    ties; rows with ids outside [0, count) get none."""
    kept = (ids >= 0) & (ids < count)
    safe = np.where(kept, ids, 0)
    hit = np.equal(unwrap(data), unwrap(ans)[safe]) & kept.reshape(-1, *(1,) * (data.ndim - 1))
    hit = hit.astype(g.dtype)
    ties = np.zeros(ans.shape, g.dtype)
    np.add.at(ties, safe, hit)
    return fnp.take(g, safe, axis=0) * (hit / np.maximum(ties[safe], 1))


defvjp("segment_max", "ans data", _segment_extreme)
defvjp("segment_min", "ans data", _segment_extreme)


# ---- linalg --------------------------------------------------------------------------------------
def _t(x):
    return fnp.swapaxes(x, -1, -2)


def _per_matrix(g):
    """A gradient of shape (...) as (..., 1, 1), to scale whole matrices."""
    return fnp.expand_dims(fnp.expand_dims(g, -1), -1)


defvjp("inv", "ans", lambda g, ans, x: -_t(ans) @ g @ _t(ans))
defvjp("det", "ans x", lambda g, ans, x: _per_matrix(g * ans) * _t(linalg.inv(x)))
defvjp("logabsdet", "x", lambda g, ans, x: _per_matrix(g) * _t(linalg.inv(x)))
defvjp(
    "solve", "ans a b",
    lambda g, ans, a, b: -linalg.solve(_t(a), g) @ _t(ans),
    lambda g, ans, a, b: linalg.solve(_t(a), g),
)  # fmt: skip


def _cholesky(g, ans, x):
    """Murray (2016): S = L^-T Phi(L^T g) L^-1, Phi the lower triangle with half its diagonal;
    the symmetric part, read from the lower triangle."""
    n = ans.shape[-1]
    inverse = linalg.inv(ans)
    product = _t(ans) @ g
    phi = fnp.tril(product, -1) + product * (0.5 * np.eye(n))
    s = _t(inverse) @ phi @ inverse
    return linalg.lower_triangle_grad((s + _t(s)) / 2)


defvjp("cholesky", "ans", _cholesky)
defvjp(
    "singular_values", "x",
    lambda g, ans, x: linalg._singular_values_grad(g, x),
)  # fmt: skip
