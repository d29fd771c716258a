"""numpy-like ops with keras.ops's names, arguments and broadcasting; each records on a tape.

Every differentiable op is ``apply(name, forward, *operands, **params)``: ``forward`` runs on
arrays, ``rules.py`` holds the VJP of ``name``. Integer and boolean results never record.
Dtypes follow Keras where it differs from numpy: Python floats and the float ops of integer
arrays give ``floatx()``, an integer array meeting a float takes the float's dtype.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable

import numpy as np

from fastnn import backend
from fastnn.ops import tensor as _tensor
from fastnn.ops.core import (  # part of this namespace: Tensor methods and numpy calls use them
    _get_item,
    cast,
    convert_to_tensor,
    shape,
    slice,
    slice_update,
    stack,
    unstack,
)
from fastnn.ops.tape import OpError, Tensor, apply, apply_binary, as_array, is_float, unwrap

__all__ = [
    "abs", "absolute", "add", "all", "amax", "amin", "any", "arange", "arccos", "arccosh",
    "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "argmax", "argmin", "argsort", "average",
    "broadcast_to", "cast", "ceil", "clip", "concatenate", "convert_to_tensor", "cos", "cosh",
    "count_nonzero", "cumprod", "cumsum", "diagonal", "divide", "dot", "einsum", "equal", "erf",
    "exp", "expand_dims", "expm1", "eye", "flip", "floor", "floor_divide", "full", "full_like",
    "get_item", "greater", "greater_equal", "identity", "isclose", "isfinite", "isinf", "isnan",
    "less", "less_equal", "linspace", "log", "log10", "log1p", "log2", "logaddexp", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logsumexp", "matmul", "max", "maximum", "mean",
    "min", "minimum", "mod", "moveaxis", "multiply", "ndim", "negative", "not_equal",
    "ones", "ones_like", "outer", "pad", "power", "prod", "ravel", "reciprocal", "repeat",
    "reshape", "roll", "round", "rsqrt", "shape", "sign", "sin", "sinh", "size", "slice",
    "slice_update", "sort", "split", "sqrt", "square", "squeeze", "stack", "std", "subtract",
    "sum", "swapaxes", "take", "take_along_axis", "tan", "tanh", "tensordot", "tile", "top_k",
    "transpose", "tril", "triu", "true_divide", "trunc", "unstack", "var", "where", "zeros",
    "zeros_like",
]  # fmt: skip

_SCALARS = (int, float, complex, np.ndarray, np.generic)


# ---- dtypes ----------------------------------------------------------------------------------
def _float(x) -> np.ndarray:
    x = as_array(x)
    return x if x.dtype.kind in "fc" else x.astype(backend.floatx())


def _as_float(x):
    """``x`` itself if float (a tensor keeps its key on the tape), else cast to floatx."""
    return x if as_array(x).dtype.kind in "fc" else cast(x, backend.floatx())


def _operand(x):
    return x if isinstance(x, _SCALARS) else as_array(x)


def _promote(a, b) -> tuple:
    """An integer or bool array meeting a float takes the float's dtype (floatx for a Python
    float), as in Keras; numpy would give float64. Python scalars stay weak."""
    if type(a) is np.ndarray and type(b) is np.ndarray and a.dtype == b.dtype:
        return a, b
    a, b = _operand(a), _operand(b)
    fa, fb = is_float(a), is_float(b)
    if fa and not fb and hasattr(b, "dtype"):
        b = b.astype(getattr(a, "dtype", backend.floatx()))
    elif fb and not fa and hasattr(a, "dtype"):
        a = a.astype(getattr(b, "dtype", backend.floatx()))
    return a, b


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


# ---- elementwise -------------------------------------------------------------------------------
def _unary(name: str, doc: str, fn: Callable, floats: bool = True) -> Callable:
    def forward(x):
        return fn(_float(x) if floats else as_array(x))

    def op(x):
        return apply(name, forward, x)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    op.__annotations__ = {"x": "ArrayLike", "return": "np.ndarray"}
    return op


def _binary(name: str, doc: str, fn: Callable) -> Callable:
    def op(x1, x2):
        return apply_binary(name, fn, _promote, x1, x2)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    op.__annotations__ = {"x1": "ArrayLike", "x2": "ArrayLike", "return": "np.ndarray"}
    return op


def _erf(x: np.ndarray) -> np.ndarray:
    return np.asarray(_ERF(x), dtype=x.dtype)


_ERF = np.frompyfunc(math.erf, 1, 1)  # exact; numpy has no vectorized erf (approximate gelu is)

exp = _unary("exp", "e**x elementwise: (...) -> (...).", np.exp)
expm1 = _unary("expm1", "e**x - 1 elementwise, exact near 0: (...) -> (...).", np.expm1)
log = _unary("log", "Natural logarithm elementwise: (...) -> (...).", np.log)
log1p = _unary("log1p", "log(1 + x) elementwise, exact near 0: (...) -> (...).", np.log1p)
log2 = _unary("log2", "Base-2 logarithm elementwise: (...) -> (...).", np.log2)
log10 = _unary("log10", "Base-10 logarithm elementwise: (...) -> (...).", np.log10)
sqrt = _unary("sqrt", "Square root elementwise: (...) -> (...).", np.sqrt)
rsqrt = _unary("rsqrt", "1 / sqrt(x) elementwise: (...) -> (...).", lambda x: 1 / np.sqrt(x))
reciprocal = _unary("reciprocal", "1 / x elementwise: (...) -> (...).", np.reciprocal)
sin = _unary("sin", "Sine elementwise: (...) -> (...).", np.sin)
cos = _unary("cos", "Cosine elementwise: (...) -> (...).", np.cos)
tan = _unary("tan", "Tangent elementwise: (...) -> (...).", np.tan)
sinh = _unary("sinh", "Hyperbolic sine elementwise: (...) -> (...).", np.sinh)
cosh = _unary("cosh", "Hyperbolic cosine elementwise: (...) -> (...).", np.cosh)
tanh = _unary("tanh", "Hyperbolic tangent elementwise: (...) -> (...).", np.tanh)
arcsin = _unary("arcsin", "Inverse sine elementwise: (...) -> (...).", np.arcsin)
arccos = _unary("arccos", "Inverse cosine elementwise: (...) -> (...).", np.arccos)
arctan = _unary("arctan", "Inverse tangent elementwise: (...) -> (...).", np.arctan)
arcsinh = _unary("arcsinh", "Inverse hyperbolic sine elementwise: (...) -> (...).", np.arcsinh)
arccosh = _unary("arccosh", "Inverse hyperbolic cosine elementwise: (...) -> (...).", np.arccosh)
arctanh = _unary("arctanh", "Inverse hyperbolic tangent elementwise: (...) -> (...).", np.arctanh)
erf = _unary("erf", "The error function elementwise: (...) -> (...).", _erf)
negative = _unary("negative", "-x elementwise: (...) -> (...).", np.negative, floats=False)
abs = _unary("abs", "|x| elementwise: (...) -> (...).", np.abs, floats=False)  # noqa: A001
absolute = abs
square = _unary("square", "x * x elementwise: (...) -> (...).", np.square, floats=False)
sign = _unary("sign", "-1, 0 or 1 elementwise (zero gradient): (...) -> (...).", np.sign, False)
floor = _unary("floor", "Round down elementwise (zero gradient): (...) -> (...).", np.floor)
ceil = _unary("ceil", "Round up elementwise (zero gradient): (...) -> (...).", np.ceil)
trunc = _unary("trunc", "Round toward 0 elementwise (zero gradient): (...) -> (...).", np.trunc)

add = _binary("add", "x1 + x2, broadcast: (...), (...) -> (...).", np.add)
subtract = _binary("subtract", "x1 - x2, broadcast: (...), (...) -> (...).", np.subtract)
multiply = _binary("multiply", "x1 * x2, broadcast: (...), (...) -> (...).", np.multiply)
power = _binary("power", "x1 ** x2, broadcast: (...), (...) -> (...).", np.power)
maximum = _binary("maximum", "Elementwise max, broadcast (ties share the gradient).", np.maximum)
minimum = _binary("minimum", "Elementwise min, broadcast (ties share the gradient).", np.minimum)
mod = _binary("mod", "x1 mod x2 with the sign of x2 (Python's %), broadcast.", np.mod)
floor_divide = _binary("floor_divide", "x1 // x2, broadcast (zero gradient).", np.floor_divide)
arctan2 = _binary("arctan2", "The angle of (x2, x1) elementwise, broadcast.", np.arctan2)
logaddexp = _binary("logaddexp", "log(exp(x1) + exp(x2)), broadcast and stable.", np.logaddexp)


def divide(x1, x2):
    """x1 / x2, broadcast; integers divide to floatx: (...), (...) -> (...)."""
    return apply("divide", _divide, x1, x2)


def _divide(x1, x2):
    x1, x2 = _promote(x1, x2)
    if not (is_float(x1) or is_float(x2)):
        x1, x2 = _float(x1), _float(x2)
    return np.divide(x1, x2)


true_divide = divide


def round(x, decimals: int = 0):  # noqa: A001 (Keras's name)
    """Round half to even to ``decimals`` places (zero gradient): (...) -> (...)."""
    return apply("round", lambda v, decimals: np.round(as_array(v), decimals), x, decimals=decimals)


def clip(x, x_min, x_max):
    """``x`` limited to [x_min, x_max]; the gradient passes where x_min <= x <= x_max."""
    return apply("clip", _clip, x, x_min=unwrap(x_min), x_max=unwrap(x_max))


def _clip(x, x_min, x_max):
    x = as_array(x)
    if not is_float(x) and (is_float(x_min) or is_float(x_max)):
        x = _float(x)  # as Keras: an integer x clipped to float bounds is floatx
    return np.clip(x, np.asarray(x_min, x.dtype), np.asarray(x_max, x.dtype))


def where(condition, x1=None, x2=None):
    """``x1`` where ``condition`` else ``x2``, broadcast; with one argument, its nonzero indices."""
    if x1 is None and x2 is None:
        return np.nonzero(as_array(condition))
    if x1 is None or x2 is None:
        raise OpError("where: give both x1 and x2, or neither")
    return apply("where", _where, x1, x2, condition=as_array(condition).astype(bool))


def _where(x1, x2, condition):
    return np.where(condition, *_promote(x1, x2))


# ---- comparisons and logic (no gradient) ----------------------------------------------------
def _compare(name: str, fn: Callable) -> Callable:
    def op(x1, x2):
        return apply(name, lambda a, b: fn(*_promote(a, b)), x1, x2)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {name} (booleans), broadcast: (...), (...) -> (...)."
    return op


equal = _compare("equal", np.equal)
not_equal = _compare("not_equal", np.not_equal)
less = _compare("less", np.less)
less_equal = _compare("less_equal", np.less_equal)
greater = _compare("greater", np.greater)
greater_equal = _compare("greater_equal", np.greater_equal)
logical_and = _compare("logical_and", np.logical_and)
logical_or = _compare("logical_or", np.logical_or)
logical_xor = _compare("logical_xor", np.logical_xor)


def logical_not(x) -> np.ndarray:
    """Elementwise not (booleans): (...) -> (...)."""
    return np.logical_not(as_array(unwrap(x)))


def isnan(x) -> np.ndarray:
    """True where ``x`` is NaN: (...) -> (...)."""
    return np.isnan(as_array(x))


def isinf(x) -> np.ndarray:
    """True where ``x`` is +-inf: (...) -> (...)."""
    return np.isinf(as_array(x))


def isfinite(x) -> np.ndarray:
    """True where ``x`` is finite: (...) -> (...)."""
    return np.isfinite(as_array(x))


def isclose(x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False) -> np.ndarray:
    """Elementwise |x1 - x2| <= atol + rtol * |x2|, broadcast."""
    return np.isclose(as_array(x1), as_array(x2), rtol, atol, equal_nan)


# ---- reductions ------------------------------------------------------------------------------
def _reduction(name: str, doc: str, fn: Callable, floats: bool = False) -> Callable:
    def forward(x, axis, keepdims):
        return fn(_float(x) if floats else as_array(x), axis=axis, keepdims=keepdims)

    def op(x, axis=None, keepdims: bool = False):
        return apply(name, forward, x, axis=_axis(axis), keepdims=keepdims)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = doc
    return op


sum = _reduction("sum", "Sum over ``axis`` (all by default): (...) -> reduced.", np.sum)  # noqa: A001
mean = _reduction("mean", "Mean over ``axis``: (...) -> reduced.", np.mean, floats=True)
var = _reduction("var", "Variance (population) over ``axis``: (...) -> reduced.", np.var, True)
_prod = _reduction("prod", "Product over ``axis``: (...) -> reduced.", np.prod)


def prod(x, axis=None, keepdims: bool = False, dtype=None):
    """Product over ``axis`` (all by default), in ``dtype`` if given: (...) -> reduced."""
    result = _prod(x, axis=axis, keepdims=keepdims)
    return result if dtype is None else cast(result, dtype)


def std(x, axis=None, keepdims: bool = False):
    """Standard deviation (population) over ``axis``: (...) -> reduced."""
    return sqrt(var(x, axis=axis, keepdims=keepdims))


def max(x, axis=None, keepdims: bool = False, initial=None):  # noqa: A001
    """Largest value over ``axis``; tied maxima share the gradient: (...) -> reduced."""
    return apply(
        "max", _extreme, x, axis=_axis(axis), keepdims=keepdims, fn=np.max, initial=initial
    )


def min(x, axis=None, keepdims: bool = False, initial=None):  # noqa: A001
    """Smallest value over ``axis``; tied minima share the gradient: (...) -> reduced."""
    return apply(
        "min", _extreme, x, axis=_axis(axis), keepdims=keepdims, fn=np.min, initial=initial
    )


amax, amin = max, min


def _extreme(x, axis, keepdims, fn, initial):
    extra = {} if initial is None else {"initial": initial}
    return fn(as_array(x), axis=axis, keepdims=keepdims, **extra)


def logsumexp(x, axis=None, keepdims: bool = False):
    """log(sum(exp(x))) over ``axis``, without overflow: (...) -> reduced."""
    return apply("logsumexp", _logsumexp, x, axis=_axis(axis), keepdims=keepdims)


def _logsumexp(x, axis, keepdims):
    x = _float(x)
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    with np.errstate(divide="ignore"):  # all -inf: log(0) = -inf, as intended
        out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def average(x, axis=None, weights=None):
    """Mean over ``axis`` weighted by ``weights`` (the shape of x, or 1-D along axis)."""
    if weights is None:
        return mean(x, axis=axis)
    w = weights
    if np.ndim(unwrap(w)) == 1 and np.ndim(unwrap(x)) > 1 and axis is not None:
        w = reshape(w, [-1 if i == axis % np.ndim(unwrap(x)) else 1 for i in range(np.ndim(x))])
    return divide(sum(multiply(x, w), axis=axis), sum(multiply(ones_like(x), w), axis=axis))


def all(x, axis=None, keepdims: bool = False) -> np.ndarray:  # noqa: A001
    """True where every value over ``axis`` is nonzero."""
    return np.all(as_array(x), axis=_axis(axis), keepdims=keepdims)


def any(x, axis=None, keepdims: bool = False) -> np.ndarray:  # noqa: A001
    """True where some value over ``axis`` is nonzero."""
    return np.any(as_array(x), axis=_axis(axis), keepdims=keepdims)


def count_nonzero(x, axis=None) -> np.ndarray:
    """The number of nonzero values over ``axis`` (int32)."""
    return np.asarray(np.count_nonzero(as_array(x), axis=_axis(axis)), dtype="int32")


def argmax(x, axis=None, keepdims: bool = False) -> np.ndarray:
    """Index (int32) of the first largest value over ``axis`` (of the flattened x by default)."""
    return np.argmax(as_array(x), axis=axis, keepdims=keepdims).astype("int32")


def argmin(x, axis=None, keepdims: bool = False) -> np.ndarray:
    """Index (int32) of the first smallest value over ``axis`` (of the flattened x by default)."""
    return np.argmin(as_array(x), axis=axis, keepdims=keepdims).astype("int32")


def cumsum(x, axis=None, dtype=None):
    """Running sum along ``axis`` (of the flattened x by default)."""
    return apply("cumsum", lambda v, axis, dtype: np.cumsum(as_array(v), axis, dtype), x,
                 axis=axis, dtype=dtype)  # fmt: skip


def cumprod(x, axis=None, dtype=None):
    """Running product along ``axis`` (of the flattened x by default)."""
    return apply("cumprod", lambda v, axis, dtype: np.cumprod(as_array(v), axis, dtype), x,
                 axis=axis, dtype=dtype)  # fmt: skip


# ---- products ----------------------------------------------------------------------------------
def matmul(x1, x2):
    """Matrix product with numpy's batch broadcasting: (..., n, k), (..., k, m) -> (..., n, m)."""
    return apply_binary("matmul", np.matmul, _promote, x1, x2)


def tensordot(x1, x2, axes=2):
    """Sum of products over ``axes`` (an int, or a pair of axis lists) as np.tensordot."""
    a_axes, b_axes = _tensordot_axes(np.ndim(unwrap(x1)), np.ndim(unwrap(x2)), axes)
    return apply("tensordot", _tensordot, x1, x2, axes=(a_axes, b_axes))


def _tensordot_axes(a_ndim: int, b_ndim: int, axes) -> tuple:
    if isinstance(axes, (int, np.integer)):
        return tuple(range(a_ndim - axes, a_ndim)), tuple(range(axes))
    a_axes, b_axes = ([x] if isinstance(x, (int, np.integer)) else list(x) for x in axes)
    return tuple(a % a_ndim for a in a_axes), tuple(b % b_ndim for b in b_axes)


def _tensordot(a, b, axes):
    return np.tensordot(*_promote(a, b), axes=axes)


def dot(x1, x2):
    """np.dot: products of scalars, inner product of vectors, matrix product, or a sum over the
    last axis of x1 and the second-to-last of x2."""
    a, b = np.ndim(unwrap(x1)), np.ndim(unwrap(x2))
    if a == 0 or b == 0:
        return multiply(x1, x2)
    if b <= 2:
        return matmul(x1, x2)
    return tensordot(x1, x2, axes=([a - 1], [b - 2]))


def outer(x1, x2):
    """Outer product of the flattened inputs: (n...), (m...) -> (n, m)."""
    return multiply(reshape(x1, (-1, 1)), reshape(x2, (1, -1)))


def einsum(subscripts: str, *operands, **kwargs):
    """Einstein summation as np.einsum; the gradient handles '...' and summed-out indices."""
    return apply("einsum", _einsum, *operands, subscripts=subscripts.replace(" ", ""))


def _einsum(*operands, subscripts):
    return np.einsum(subscripts, *(as_array(x) for x in operands), optimize=len(operands) > 1)


# ---- shapes ------------------------------------------------------------------------------------
def reshape(x, newshape):
    """``x`` with shape ``newshape`` (one -1 allowed; a first None keeps x's first axis, the
    batch size ``ops.shape(x)[0]`` gives on a model's symbolic tensor)."""
    newshape = (newshape,) if isinstance(newshape, (int, np.integer)) else tuple(newshape)
    if newshape and newshape[0] is None and np.ndim(x):
        newshape = (np.shape(unwrap(x))[0], *newshape[1:])
    if isinstance(x, (np.ndarray, Tensor)) and x.shape == newshape:
        return x  # nothing to record or compute
    return apply("reshape", lambda v, newshape: np.reshape(as_array(v), newshape), x,
                 newshape=newshape)  # fmt: skip


def ravel(x):
    """``x`` flattened: (...) -> (n,)."""
    return reshape(x, (-1,))


def expand_dims(x, axis):
    """``x`` with new size-1 axes at ``axis`` (an int or tuple)."""
    return apply("expand_dims", lambda v, axis: np.expand_dims(as_array(v), axis), x,
                 axis=_axis(axis))  # fmt: skip


def squeeze(x, axis=None):
    """``x`` without its size-1 axes (those of ``axis`` only, if given)."""
    return apply("squeeze", lambda v, axis: np.squeeze(as_array(v), axis), x, axis=_axis(axis))


def transpose(x, axes=None):
    """``x`` with its axes permuted (reversed by default)."""
    axes = None if axes is None else tuple(axes)
    return apply("transpose", lambda v, axes: np.transpose(as_array(v), axes), x, axes=axes)


def swapaxes(x, axis1: int, axis2: int):
    """``x`` with two axes exchanged."""
    perm = list(range(np.ndim(unwrap(x))))
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(x, perm)


def moveaxis(x, source, destination):
    """``x`` with axes ``source`` moved to ``destination``, the others in order."""
    n = np.ndim(unwrap(x))
    source = [int(s) % n for s in np.atleast_1d(source)]
    destination = [int(d) % n for d in np.atleast_1d(destination)]
    perm = [i for i in range(n) if i not in source]
    for d, s in sorted(zip(destination, source)):
        perm.insert(d, s)
    return transpose(x, perm)


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape``."""
    return apply("broadcast_to", lambda v, shape: np.broadcast_to(as_array(v), shape), x,
                 shape=tuple(shape))  # fmt: skip


def concatenate(xs, axis: int = 0):
    """Arrays joined along ``axis``: shapes equal but on that axis."""
    return apply("concatenate", lambda *vs, axis: np.concatenate(vs, axis), *xs, axis=axis)


def split(x, indices_or_sections, axis: int = 0) -> list:
    """``x`` cut along ``axis`` into equal sections, or at the given indices."""
    n = np.shape(unwrap(x))[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        if indices_or_sections <= 0 or n % indices_or_sections:
            raise OpError(
                f"split: axis {axis} of shape {np.shape(unwrap(x))} does not divide into "
                f"{indices_or_sections} equal sections"
            )
        step = n // indices_or_sections
        cuts = list(range(step, n, step))
    else:
        cuts = [int(c) for c in indices_or_sections]
    lead = (builtins.slice(None),) * (axis % np.ndim(unwrap(x)))
    bounds = zip([0, *cuts], [*cuts, n])
    return [get_item(x, (*lead, builtins.slice(a, b))) for a, b in bounds]


def get_item(x, key):
    """``x[key]``: basic and advanced indexing as numpy."""
    return apply("get_item", _get_item, x, index=_index(key))


def _index(key):
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    key = unwrap(key)
    return np.asarray(key) if isinstance(key, list) else key


def take(x, indices, axis=None):
    """Entries of ``x`` at ``indices`` along ``axis`` (of the flattened x by default)."""
    indices = as_array(indices)
    if axis is None:
        return get_item(reshape(x, (-1,)), indices)
    lead = (builtins.slice(None),) * (axis % np.ndim(unwrap(x)))
    return apply("take", _get_item, x, index=(*lead, indices))


def take_along_axis(x, indices, axis=None):
    """Entries of ``x`` at ``indices`` along ``axis``, the other axes broadcast."""
    if axis is None:
        return get_item(reshape(x, (-1,)), as_array(indices).reshape(-1))
    return apply("take_along_axis", _get_item, x, index=_along(np.shape(unwrap(x)), indices, axis))


def _along(shape: tuple, indices, axis: int) -> tuple:
    indices = as_array(indices)
    if indices.ndim != len(shape):
        raise OpError(
            f"take_along_axis: indices of shape {indices.shape} and x of shape {shape} "
            "need the same number of dimensions"
        )
    axis %= len(shape)
    grids = [
        np.arange(n).reshape([-1 if i == d else 1 for i in range(len(shape))])
        for d, n in enumerate(shape)
    ]
    return tuple(indices if d == axis else g for d, g in enumerate(grids))


def tile(x, repeats):
    """``x`` repeated ``repeats`` times along each axis (np.tile)."""
    reps = (repeats,) if isinstance(repeats, (int, np.integer)) else tuple(repeats)
    return apply("tile", lambda v, repeats: np.tile(as_array(v), repeats), x, repeats=reps)


def repeat(x, repeats, axis=None):
    """Each entry of ``x`` repeated ``repeats`` times along ``axis`` (flattened by default)."""
    if axis is None:
        x, axis = reshape(x, (-1,)), 0
    n = np.shape(unwrap(x))[axis]
    return take(x, np.repeat(np.arange(n), as_array(repeats)), axis=axis)


def flip(x, axis=None):
    """``x`` reversed along ``axis`` (all axes by default)."""
    n = np.ndim(unwrap(x))
    axes = range(n) if axis is None else [a % n for a in np.atleast_1d(axis)]
    return get_item(x, tuple(builtins.slice(None, None, -1 if i in axes else 1) for i in range(n)))


def roll(x, shift, axis=None):
    """``x`` rotated by ``shift`` along ``axis`` (flattened, then reshaped, by default)."""
    if axis is None:
        return reshape(roll(reshape(x, (-1,)), shift, 0), shape(x))
    for s, a in zip(np.broadcast_to(shift, np.shape(axis)).reshape(-1), np.atleast_1d(axis)):
        n = np.shape(unwrap(x))[a]
        x = take(x, (np.arange(n) - int(s)) % n, axis=int(a))
    return x


def pad(x, pad_width, mode: str = "constant", constant_values=None):
    """``x`` padded as np.pad; gradients for the constant, edge, reflect, symmetric and wrap
    modes."""
    if constant_values is not None and mode != "constant":
        raise OpError(f"pad: constant_values is for mode='constant', not mode={mode!r}")
    width = np.broadcast_to(np.asarray(pad_width, dtype=int), (np.ndim(unwrap(x)), 2))
    return apply("pad", _pad, x, pad_width=tuple(map(tuple, width)), mode=mode,
                 constant_values=constant_values)  # fmt: skip


def _pad(x, pad_width, mode, constant_values):
    extra = {"constant_values": constant_values} if constant_values is not None else {}
    return np.pad(as_array(x), pad_width, mode=mode, **extra)


def tril(x, k: int = 0):
    """``x`` with the entries above diagonal ``k`` zeroed (last two axes)."""
    return apply("tril", lambda v, k: np.tril(as_array(v), k), x, k=k)


def triu(x, k: int = 0):
    """``x`` with the entries below diagonal ``k`` zeroed (last two axes)."""
    return apply("triu", lambda v, k: np.triu(as_array(v), k), x, k=k)


def diagonal(x, offset: int = 0, axis1: int = 0, axis2: int = 1):
    """The diagonal ``offset`` of the (axis1, axis2) planes, as the last axis."""
    x = moveaxis(x, (axis1, axis2), (-2, -1))
    rows, cols = np.shape(unwrap(x))[-2:]
    i = np.arange(builtins.max(0, -offset), builtins.min(rows, cols - offset))
    return get_item(x, (Ellipsis, i, i + offset))


def sort(x, axis: int = -1):
    """``x`` sorted along ``axis`` (stable, as np.sort(kind='stable'))."""
    return apply("sort", lambda v, axis: np.sort(as_array(v), axis, kind="stable"), x, axis=axis)


def argsort(x, axis: int = -1) -> np.ndarray:
    """The indices (int32) that sort ``x`` along ``axis``; ties keep their order."""
    return np.argsort(as_array(x), axis=axis, kind="stable").astype("int32")


def top_k(x, k: int, sorted: bool = True) -> tuple:  # noqa: A002 (Keras's name)
    """The ``k`` largest entries along the last axis and their indices (int32, first of ties)."""
    order = np.argsort(-as_array(x), axis=-1, kind="stable")[..., :k].astype("int32")
    return take_along_axis(x, order, axis=-1), order


def size(x) -> int:
    """The number of entries of ``x``."""
    return int(np.size(unwrap(x)))


def ndim(x) -> int:
    """The number of axes of ``x``."""
    return int(np.ndim(unwrap(x)))


# ---- making arrays (constants on every tape) ------------------------------------------------
def zeros(shape, dtype=None) -> np.ndarray:
    """Zeros of ``shape`` (floatx by default)."""
    return np.zeros(shape, dtype or backend.floatx())


def ones(shape, dtype=None) -> np.ndarray:
    """Ones of ``shape`` (floatx by default)."""
    return np.ones(shape, dtype or backend.floatx())


def full(shape, fill_value, dtype=None) -> np.ndarray:
    """``fill_value`` everywhere in ``shape`` (floatx by default)."""
    return np.full(shape, unwrap(fill_value), dtype or backend.floatx())


def zeros_like(x, dtype=None) -> np.ndarray:
    """Zeros of the shape (and dtype, unless given) of ``x``."""
    return np.zeros_like(as_array(x), dtype=dtype)


def ones_like(x, dtype=None) -> np.ndarray:
    """Ones of the shape (and dtype, unless given) of ``x``."""
    return np.ones_like(as_array(x), dtype=dtype)


def full_like(x, fill_value, dtype=None) -> np.ndarray:
    """``fill_value`` in the shape (and dtype, unless given) of ``x``."""
    return np.full_like(as_array(x), unwrap(fill_value), dtype=dtype)


def arange(start, stop=None, step=None, dtype=None) -> np.ndarray:
    """Evenly spaced values in [start, stop); int32 for integer bounds, floatx for floats."""
    bounds = [b for b in (start, stop, step) if b is not None]
    if dtype is None:
        floats = builtins.any(is_float(b) for b in bounds)
        dtype = backend.floatx() if floats else "int32"
    return np.arange(start, stop, 1 if step is None else step, dtype=dtype)


def linspace(start, stop, num: int = 50, endpoint=True, retstep=False, dtype=None, axis=0):
    """``num`` evenly spaced values from start to stop (floatx by default)."""
    return np.linspace(start, stop, num, endpoint, retstep, dtype or backend.floatx(), axis)


def eye(N, M=None, k: int = 0, dtype=None) -> np.ndarray:  # noqa: N803 (Keras's names)
    """Ones on diagonal ``k`` of an N x M matrix (floatx by default)."""
    return np.eye(N, M, k, dtype=dtype or backend.floatx())


def identity(n: int, dtype=None) -> np.ndarray:
    """The n x n identity matrix (floatx by default)."""
    return eye(n, dtype=dtype)


def norm(x, ord=None, axis=None, keepdims: bool = False):  # noqa: A002 (Keras's name)
    """Vector norms (ord None/2, 1, inf) over ``axis``, or the Frobenius norm ('fro')."""
    if ord in (None, 2, "fro", "euclidean"):
        return sqrt(sum(square(x), axis=axis, keepdims=keepdims))
    if ord == 1:
        return sum(abs(x), axis=axis, keepdims=keepdims)
    if ord in (np.inf, float("inf")):
        return max(abs(x), axis=axis, keepdims=keepdims)
    raise OpError(f"norm: ord={ord!r} is not supported (None, 1, 2, 'fro', inf)")


# ---- private ops the gradient rules use ----------------------------------------------------------
def _index_add(g, shape, index):
    """zeros(shape) with ``g`` added at ``index``: the adjoint of x[index] (repeats add up)."""
    return apply("index_add", _index_add_forward, g, shape=tuple(shape), index=index)


def _index_add_forward(g, shape, index):
    g = as_array(g)
    out = np.zeros(shape, g.dtype)
    parts = index if isinstance(index, tuple) else (index,)
    if builtins.all(_unique(p) for p in parts):
        out[index] = g
    else:
        np.add.at(out, index, g)
    return out


def _unique(part) -> bool:
    """True if an index part names no entry twice (so assignment can replace add.at)."""
    if part is None or part is Ellipsis or isinstance(part, (int, np.integer, builtins.slice)):
        return True
    return isinstance(part, np.ndarray) and part.dtype == bool


def _prod_others(x, axis):
    """For each entry, the product of the others reduced with it over ``axis`` (zeros allowed)."""
    return apply("prod_others", _prod_others_forward, x, axis=axis)


def _prod_others_forward(x, axis):
    x = as_array(x)
    axes = range(x.ndim) if axis is None else [a % x.ndim for a in np.atleast_1d(axis)]
    axes = tuple(axes)
    dest = tuple(range(x.ndim - len(axes), x.ndim))
    moved = np.moveaxis(x, axes, dest)
    flat = moved.reshape(*moved.shape[: x.ndim - len(axes)], -1)
    one = np.ones_like(flat[..., :1])
    left = np.cumprod(np.concatenate([one, flat[..., :-1]], -1), -1)
    right = np.cumprod(np.concatenate([one, flat[..., :0:-1]], -1), -1)[..., ::-1]
    return np.moveaxis((left * right).reshape(moved.shape), dest, axes)


_tensor.bind_operators(globals())
