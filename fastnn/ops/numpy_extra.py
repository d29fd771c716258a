"""More numpy-like ops with keras.ops's names: stacking and splitting, matrix helpers, special
functions, quantiles and nan-reductions, products, search and set ops, scatters and segments,
array makers, bitwise ops, rearrange and window functions.

Most compose the recorded ops of ``numpy.py``, so their gradients come from those rules; the new
primitives (cbrt, exp2, erfc, erfinv, hypot, logaddexp2, fmod, copy, segment_max/min) have rules
in ``rules.py``. Integer, boolean and index results are plain arrays with no gradient.
"""

from __future__ import annotations

import builtins
import math
import re

import numpy as np

from fastnn import backend
from fastnn.ops import numpy as fnp
from fastnn.ops import tensor as _tensor
from fastnn.ops.core import convert_to_tensor
from fastnn.ops.numpy import _as_float, _binary, _erf, _float, _unary
from fastnn.ops.tape import OpError, apply, as_array, unwrap

__all__ = [
    "allclose", "append", "argpartition", "array", "array_split", "bartlett", "bincount",
    "bitwise_and", "bitwise_invert", "bitwise_left_shift", "bitwise_not", "bitwise_or",
    "bitwise_right_shift", "bitwise_xor", "blackman", "cbrt", "copy", "correlate", "cross",
    "deg2rad", "diag", "diagflat", "diff", "digitize", "divide_no_nan", "dsplit", "dstack",
    "empty", "empty_like", "erfc", "erfinv", "exp2", "fabs", "fliplr", "flipud", "fmod",
    "geomspace", "hamming", "hanning", "heaviside", "hsplit", "hstack", "hypot", "inner", "isin",
    "isneginf", "isposinf", "kaiser", "kron", "left_shift", "logaddexp2", "logspace", "median",
    "meshgrid", "nan_to_num", "nanargmax", "nanargmin", "nancumprod", "nancumsum", "nanmax",
    "nanmean", "nanmedian", "nanmin", "nanpercentile", "nanprod", "nanquantile", "nanstd",
    "nansum", "nanvar", "nonzero", "percentile", "ptp", "quantile", "rad2deg", "rearrange",
    "right_shift", "rot90", "scatter", "scatter_update", "searchsorted", "segment_max",
    "segment_min", "segment_sum", "select", "signbit", "tri", "trace", "trapezoid", "unique",
    "unravel_index", "vander", "vdot", "view", "vsplit", "vstack",
]  # fmt: skip


def _ndim(x) -> int:
    return np.ndim(unwrap(x))


def _shape(x) -> tuple:
    return np.shape(unwrap(x))


# ---- special functions -------------------------------------------------------------------------
def _erfc(x: np.ndarray) -> np.ndarray:
    return np.asarray(_ERFC(x), dtype=x.dtype)


_ERFC = np.frompyfunc(math.erfc, 1, 1)  # exact in the tails, where 1 - erf(x) is not


def _erfinv(y: np.ndarray) -> np.ndarray:
    """erf^-1 by Giles's approximation, then Newton steps on math.erf (no scipy)."""
    w = -np.log(np.maximum((1.0 - y) * (1.0 + y), 1e-300))
    central = w - 2.5
    x = 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
              -0.00417768164, 0.246640727, 1.50140941):  # fmt: skip
        x = c + x * central
    tail = np.sqrt(w) - 3.0
    z = -0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
              0.00943887047, 1.00167406, 2.83297682):  # fmt: skip
        z = c + z * tail
    x = np.where(w < 5.0, x, z) * y
    inside = np.abs(y) < 1
    for _ in range(2):
        step = (_erf(np.where(inside, x, 0.0)) - y) * (math.sqrt(math.pi) / 2) * np.exp(x * x)
        x = np.where(inside, x - step, x)
    return np.where(np.abs(y) == 1, np.sign(y) * np.inf, np.where(np.abs(y) > 1, np.nan, x))


def _wide_float(x) -> np.ndarray:
    """x as floats: int64 as float64, other integers and bools as floatx (Keras's cbrt and
    deg2rad)."""
    x = as_array(x)
    return x.astype(np.float64) if x.dtype in (np.int64, np.uint64) else _float(x)


def cbrt(x):
    """Cube root elementwise: (...) -> (...)."""
    return apply("cbrt", lambda v: np.cbrt(_wide_float(v)), x)


exp2 = _unary("exp2", "2**x elementwise: (...) -> (...).", np.exp2)
erfc = _unary("erfc", "1 - erf(x) elementwise, exact in the tails: (...) -> (...).", _erfc)
erfinv = _unary(
    "erfinv",
    "The inverse error function elementwise (+-inf at +-1): (...) -> (...).",
    lambda x: _erfinv(x.astype(np.float64)).astype(x.dtype),
)
fmod = _binary("fmod", "x1 mod x2 with the sign of x1 (C's fmod), broadcast.", np.fmod)


def _as_floats(fn):
    """fn on two operands promoted, integers as floatx (as Keras's float ops)."""
    return lambda a, b: fn(*(_float(v) for v in fnp._promote(a, b)))


hypot = _binary(
    "hypot", "sqrt(x1**2 + x2**2), broadcast and without overflow.", _as_floats(np.hypot)
)
logaddexp2 = _binary(
    "logaddexp2", "log2(2**x1 + 2**x2), broadcast and stable.", _as_floats(np.logaddexp2)
)


def deg2rad(x):
    """Degrees to radians elementwise: (...) -> (...)."""
    x = x if _is_float(x) else _wide_float(x)
    return fnp.multiply(x, math.pi / 180)


def rad2deg(x):
    """Radians to degrees elementwise: (...) -> (...)."""
    x = x if _is_float(x) else _wide_float(x)
    return fnp.multiply(x, 180 / math.pi)


def fabs(x):
    """|x| elementwise, as floats: (...) -> (...)."""
    return fnp.abs(_as_float(x))


def divide_no_nan(x1, x2):
    """x1 / x2, and 0 where x2 == 0 (the gradient too), broadcast."""
    if isinstance(x2, (int, float)):  # a Python scalar stays weak, as in Keras
        return fnp.multiply(x1, 0.0) if x2 == 0 else fnp.divide(x1, x2)
    zero = as_array(x2) == 0
    safe = fnp.where(zero, np.ones((), as_array(x2).dtype), x2)
    return fnp.where(zero, 0.0, fnp.divide(x1, safe))


def nan_to_num(x, nan=0.0, posinf=None, neginf=None):
    """``x`` with NaN, +inf and -inf replaced (by the dtype's extremes unless given)."""
    value = as_array(x)
    if value.dtype.kind not in "fc":
        return x
    info = np.finfo(value.dtype)
    posinf = info.max if posinf is None else posinf
    neginf = info.min if neginf is None else neginf
    replaced = np.where(np.isnan(value), nan, np.where(value > 0, posinf, neginf))
    return fnp.where(np.isfinite(value), x, replaced.astype(value.dtype))


def heaviside(x1, x2):
    """0 where x1 < 0, x2 where x1 == 0, 1 where x1 > 0, broadcast (no gradient)."""
    a, b = fnp._promote(as_array(x1), as_array(x2))
    if a.dtype.kind not in "fc":
        a, b = a.astype(backend.floatx()), np.asarray(b, backend.floatx())
    return np.heaviside(a, b)


def signbit(x) -> np.ndarray:
    """True where the sign bit is set (negative values, -0.0): (...) -> (...)."""
    return np.signbit(as_array(x))


def isposinf(x) -> np.ndarray:
    """True where ``x`` is +inf."""
    return np.isposinf(as_array(x))


def isneginf(x) -> np.ndarray:
    """True where ``x`` is -inf."""
    return np.isneginf(as_array(x))


def allclose(x1, x2, rtol=1e-5, atol=1e-8, equal_nan=False) -> np.ndarray:
    """True if |x1 - x2| <= atol + rtol * |x2| everywhere."""
    return np.asarray(np.allclose(as_array(x1), as_array(x2), rtol, atol, equal_nan))


def copy(x):
    """A copy of ``x`` (the gradient passes through)."""
    return apply("copy", lambda v: np.array(as_array(v)), x)


def view(x, dtype=None) -> np.ndarray:
    """``x``'s bytes as ``dtype`` (no gradient)."""
    value = as_array(x)
    return value if dtype is None else value.view(np.dtype(dtype))


# ---- stacking and splitting -------------------------------------------------------------------
def _at_least(x, ndim: int, where: tuple):
    """``x`` with size-1 axes added as np.atleast_2d/3d do (``where`` per missing count)."""
    n = _ndim(x)
    if n >= ndim:
        return x
    return fnp.reshape(x, where[n](_shape(x)))


_ATLEAST_2D = (lambda s: (1, 1), lambda s: (1, *s))
_ATLEAST_3D = (lambda s: (1, 1, 1), lambda s: (1, *s, 1), lambda s: (*s, 1))


def hstack(xs):
    """Arrays joined along axis 1 (axis 0 for 1-D arrays)."""
    xs = list(xs)
    return fnp.concatenate(xs, axis=0 if builtins.all(_ndim(x) <= 1 for x in xs) else 1)


def vstack(xs):
    """Arrays joined along axis 0, 1-D ones as rows."""
    return fnp.concatenate([_at_least(x, 2, _ATLEAST_2D) for x in xs], axis=0)


def dstack(xs):
    """Arrays joined along axis 2, lower-rank ones as np.atleast_3d makes them."""
    return fnp.concatenate([_at_least(x, 3, _ATLEAST_3D) for x in xs], axis=2)


def append(x1, x2, axis=None):
    """``x2`` after ``x1`` along ``axis`` (both flattened when None)."""
    if axis is None:
        return fnp.concatenate([fnp.ravel(x1), fnp.ravel(x2)], axis=0)
    return fnp.concatenate([x1, x2], axis=axis)


def array_split(x, indices_or_sections, axis: int = 0) -> list:
    """``x`` cut into sections along ``axis``: the first n % sections one longer, as numpy."""
    if not isinstance(indices_or_sections, (int, np.integer)):
        return fnp.split(x, indices_or_sections, axis=axis)
    sections = int(indices_or_sections)
    if sections <= 0:
        raise OpError(f"array_split: the number of sections must be > 0; got {sections}")
    n = _shape(x)[axis]
    sizes = [n // sections + (i < n % sections) for i in range(sections)]
    return fnp.split(x, list(np.cumsum(sizes)[:-1]), axis=axis)


def _split_along(name: str, x, indices_or_sections, axis: int, min_ndim: int) -> list:
    if _ndim(x) < min_ndim:
        raise OpError(f"{name}: needs an array of {min_ndim}+ dimensions; got shape {_shape(x)}")
    return fnp.split(x, indices_or_sections, axis=axis)


def hsplit(x, indices_or_sections) -> list:
    """``x`` split along axis 1 (axis 0 for 1-D arrays)."""
    return _split_along("hsplit", x, indices_or_sections, 1 if _ndim(x) > 1 else 0, 1)


def vsplit(x, indices_or_sections) -> list:
    """``x`` split along axis 0 (2-D and more)."""
    return _split_along("vsplit", x, indices_or_sections, 0, 2)


def dsplit(x, indices_or_sections) -> list:
    """``x`` split along axis 2 (3-D and more)."""
    return _split_along("dsplit", x, indices_or_sections, 2, 3)


# ---- matrices ------------------------------------------------------------------------------------
def diag(x, k: int = 0):
    """A 1-D array as the diagonal ``k`` of a square matrix, or a matrix's diagonal ``k``."""
    n = _ndim(x)
    if n == 2:
        return fnp.diagonal(x, offset=k)
    if n != 1:
        raise OpError(f"diag: input must be 1-D or 2-D; got shape {_shape(x)}")
    length = _shape(x)[0]
    size = length + builtins.abs(k)
    i = np.arange(length)
    rows, cols = (i, i + k) if k >= 0 else (i - k, i)
    return fnp._index_add(x, (size, size), (rows, cols))


def diagflat(x, k: int = 0):
    """The flattened ``x`` as diagonal ``k`` of a square matrix."""
    return diag(fnp.ravel(x), k)


def trace(x, offset: int = 0, axis1: int = 0, axis2: int = 1):
    """The sum of diagonal ``offset`` of the (axis1, axis2) planes."""
    if _ndim(x) < 2:
        raise OpError(f"trace: needs an array of 2+ dimensions; got shape {_shape(x)}")
    return _keep_int32(x, fnp.sum(fnp.diagonal(x, offset, axis1, axis2), axis=-1))


def _keep_int32(x, result):
    """Sums and products of int32 or bool values as int32, as Keras (numpy widens them)."""
    kind = as_array(x).dtype
    return result.astype("int32") if kind in (np.int32, np.bool_) else result


def tri(N: int, M=None, k: int = 0, dtype=None) -> np.ndarray:  # noqa: N803 (Keras's names)
    """Ones at and below diagonal ``k`` of an N x M matrix (floatx by default)."""
    return np.tri(N, M, k, dtype=dtype or backend.floatx())


def fliplr(x):
    """``x`` reversed along axis 1."""
    if _ndim(x) < 2:
        raise OpError(f"fliplr: needs an array of 2+ dimensions; got shape {_shape(x)}")
    return fnp.flip(x, 1)


def flipud(x):
    """``x`` reversed along axis 0."""
    if _ndim(x) < 1:
        raise OpError("fliplr: needs an array of 1+ dimensions; got a scalar")
    return fnp.flip(x, 0)


def rot90(array, k: int = 1, axes=(0, 1)):
    """``array`` rotated by 90 degrees ``k`` times in the plane of ``axes``."""
    n = _ndim(array)
    a, b = (int(v) % builtins.max(n, 1) for v in axes)
    if n < 2 or a == b:
        raise OpError(f"rot90: needs two different axes of an array; got {axes} of {_shape(array)}")
    k %= 4
    if k == 0:
        return array
    if k == 2:
        return fnp.flip(fnp.flip(array, a), b)
    perm = list(range(n))
    perm[a], perm[b] = perm[b], perm[a]
    if k == 1:
        return fnp.transpose(fnp.flip(array, b), perm)
    return fnp.flip(fnp.transpose(array, perm), b)


def diff(a, n: int = 1, axis: int = -1):
    """The ``n``-th differences along ``axis``: (..., m, ...) -> (..., m - n, ...)."""
    axis %= builtins.max(_ndim(a), 1)
    lead = (builtins.slice(None),) * axis
    if as_array(a).dtype == np.bool_:  # booleans differ where they change, as Keras's
        for _ in range(n):
            a = np.not_equal(as_array(a)[(*lead, builtins.slice(1, None))],
                             as_array(a)[(*lead, builtins.slice(None, -1))])  # fmt: skip
        return a
    for _ in range(n):
        a = fnp.subtract(fnp.get_item(a, (*lead, builtins.slice(1, None))),
                         fnp.get_item(a, (*lead, builtins.slice(None, -1))))  # fmt: skip
    return a


def vander(x, N=None, increasing: bool = False):  # noqa: N803 (Keras's name)
    """Columns of powers of the 1-D ``x``: (n,) -> (n, N), highest power first by default."""
    if _ndim(x) != 1:
        raise OpError(f"vander: x must be 1-D; got shape {_shape(x)}")
    count = _shape(x)[0] if N is None else int(N)
    powers = np.arange(count) if increasing else np.arange(count)[::-1]
    return fnp.power(fnp.expand_dims(x, -1), powers.astype(as_array(x).dtype))


def trapezoid(y, x=None, dx=1.0, axis: int = -1):
    """The integral of ``y`` along ``axis`` by the trapezoidal rule."""
    y = _as_float(y)
    axis %= _ndim(y)
    lead = (builtins.slice(None),) * axis
    pairs = fnp.add(fnp.get_item(y, (*lead, builtins.slice(1, None))),
                    fnp.get_item(y, (*lead, builtins.slice(None, -1))))  # fmt: skip
    if x is None:
        return fnp.sum(fnp.multiply(pairs, float(dx) / 2), axis=axis)
    widths = diff(x, axis=-1 if _ndim(x) == 1 else axis)
    if _ndim(x) == 1:
        widths = fnp.reshape(widths, [-1 if i == axis else 1 for i in range(_ndim(y))])
    return fnp.sum(fnp.multiply(pairs, fnp.multiply(widths, 0.5)), axis=axis)


# ---- quantiles and nan-reductions ------------------------------------------------------------
def _to_last(x, axis):
    """x with ``axis`` (None: all; a tuple: those, merged) as its one last axis, and the shape
    the reduced result keeps with keepdims."""
    shape, n = _shape(x), _ndim(x)
    axes = list(range(n)) if axis is None else sorted(int(a) % n for a in np.atleast_1d(axis))
    rest = [i for i in range(n) if i not in axes]
    moved = fnp.transpose(x, rest + axes)
    merged = fnp.reshape(moved, [shape[i] for i in rest] + [-1])
    return merged, [1 if i in axes else shape[i] for i in range(n)]


_METHODS = ("linear", "lower", "higher", "midpoint", "nearest")


def _quantile(name: str, x, q, axis, method: str, keepdims: bool, skip_nan: bool):
    """q-quantiles over ``axis`` by sorting (NaNs sort last); the result's leading axes are
    q's, then the kept axes, as numpy; gradients reach the (one or two) entries used."""
    if method not in _METHODS:
        raise OpError(f"{name}: method must be one of {_METHODS}; got {method!r}")
    q_values = np.asarray(unwrap(q), np.float64)
    if ((q_values < 0) | (q_values > 1)).any():
        raise OpError(f"{name}: q must lie in [0, 1] (percentiles in [0, 100]); got {q_values}")
    x = _as_float(x)
    rows, kept = _to_last(x, axis)
    ordered = fnp.sort(rows, axis=-1)
    value = as_array(ordered)
    count = value.shape[-1] - (np.isnan(value).sum(-1, keepdims=True) if skip_nan else 0)
    count = np.broadcast_to(count, (*value.shape[:-1], 1))
    q_flat = q_values.reshape(-1, *(1,) * value.ndim)  # (Q, 1..., 1)
    position = q_flat * np.maximum(count - 1, 0)  # (Q, *rest, 1)
    low, high = np.floor(position), np.ceil(position)
    weight = position - low
    if method == "lower":
        high, weight = low, weight * 0
    elif method == "higher":
        low, weight = high, weight * 0
    elif method == "nearest":
        low = high = np.where(weight > 0.5, high, np.where(weight < 0.5, low, _even(low, high)))
        weight = weight * 0
    elif method == "midpoint":
        weight = np.where(high > low, 0.5, 0.0)
    shape = np.broadcast_shapes(position.shape, (1, *value.shape[:-1], 1))
    tiled = fnp.broadcast_to(fnp.expand_dims(ordered, 0), (shape[0], *value.shape))
    at_low = fnp.take_along_axis(tiled, np.broadcast_to(low, shape).astype(np.int64), axis=-1)
    at_high = fnp.take_along_axis(tiled, np.broadcast_to(high, shape).astype(np.int64), axis=-1)
    result = fnp.add(
        at_low, fnp.multiply(fnp.subtract(at_high, at_low), weight.astype(value.dtype))
    )
    result = fnp.squeeze(result, -1)  # (Q, *rest)
    if skip_nan:
        result = fnp.where(np.broadcast_to(count[..., 0] == 0, _shape(result)), np.nan, result)
    result = fnp.reshape(result, (-1, *kept) if keepdims else (-1, *value.shape[:-1]))
    return fnp.reshape(result, (*q_values.shape, *_shape(result)[1:]))


def _even(low, high):
    return np.where(low % 2 == 0, low, high)


def quantile(x, q, axis=None, method: str = "linear", keepdims: bool = False):
    """The q-th quantiles (q in [0, 1]) over ``axis``; numpy's methods linear, lower, higher,
    midpoint, nearest: (...) -> (*q.shape, reduced)."""
    return _quantile("quantile", x, q, axis, method, keepdims, False)


def percentile(x, q, axis=None, method: str = "linear", keepdims: bool = False):
    """The q-th percentiles (q in [0, 100]) over ``axis``."""
    q = np.asarray(unwrap(q), np.float64) / 100
    return _quantile("percentile", x, q, axis, method, keepdims, False)


def median(x, axis=None, keepdims: bool = False):
    """The median over ``axis`` (the mean of the middle two for even counts)."""
    return _quantile("median", x, 0.5, axis, "linear", keepdims, False)


def nanquantile(x, q, axis=None, method: str = "linear", keepdims: bool = False):
    """``quantile`` ignoring NaNs (NaN where every entry is NaN)."""
    return _quantile("nanquantile", x, q, axis, method, keepdims, True)


def nanpercentile(x, q, axis=None, method: str = "linear", keepdims: bool = False):
    """``percentile`` ignoring NaNs."""
    q = np.asarray(unwrap(q), np.float64) / 100
    return _quantile("nanpercentile", x, q, axis, method, keepdims, True)


def nanmedian(x, axis=None, keepdims: bool = False):
    """``median`` ignoring NaNs."""
    return _quantile("nanmedian", x, 0.5, axis, "linear", keepdims, True)


def _without_nan(x, fill):
    value = as_array(x)
    if value.dtype.kind not in "fc":
        return x
    return fnp.where(np.isnan(value), np.asarray(fill, value.dtype), x)


def nansum(x, axis=None, keepdims: bool = False):
    """Sum over ``axis``, NaNs counted as 0."""
    return _keep_int32(x, fnp.sum(_without_nan(x, 0), axis=axis, keepdims=keepdims))


def nanprod(x, axis=None, keepdims: bool = False):
    """Product over ``axis``, NaNs counted as 1."""
    return _keep_int32(x, fnp.prod(_without_nan(x, 1), axis=axis, keepdims=keepdims))


def _valid_count(x, axis, keepdims: bool) -> np.ndarray:
    value = as_array(x)
    return np.sum(~np.isnan(value), axis=fnp._axis(axis), keepdims=keepdims)


def nanmean(x, axis=None, keepdims: bool = False):
    """Mean over ``axis`` of the entries that are not NaN (NaN where none is)."""
    x = _as_float(x)
    count = _valid_count(x, axis, keepdims).astype(as_array(x).dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return fnp.divide(nansum(x, axis=axis, keepdims=keepdims), count)


def nanvar(x, axis=None, keepdims: bool = False):
    """Variance over ``axis`` of the entries that are not NaN."""
    x = _as_float(x)
    centred = _without_nan(fnp.subtract(x, nanmean(x, axis=axis, keepdims=True)), 0)
    count = _valid_count(x, axis, keepdims).astype(as_array(x).dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return fnp.divide(fnp.sum(fnp.square(centred), axis=axis, keepdims=keepdims), count)


def nanstd(x, axis=None, keepdims: bool = False):
    """Standard deviation over ``axis`` of the entries that are not NaN."""
    return fnp.sqrt(nanvar(x, axis=axis, keepdims=keepdims))


def nanmax(x, axis=None, keepdims: bool = False):
    """Largest non-NaN value over ``axis`` (NaN where all are NaN)."""
    return _nan_extreme(fnp.max, -np.inf, x, axis, keepdims)


def nanmin(x, axis=None, keepdims: bool = False):
    """Smallest non-NaN value over ``axis`` (NaN where all are NaN)."""
    return _nan_extreme(fnp.min, np.inf, x, axis, keepdims)


def _nan_extreme(reduce, fill, x, axis, keepdims):
    value = as_array(x)
    if value.dtype.kind not in "fc":
        return reduce(x, axis=axis, keepdims=keepdims)
    result = reduce(_without_nan(x, fill), axis=axis, keepdims=keepdims)
    empty = _valid_count(x, axis, keepdims) == 0
    return fnp.where(empty, np.asarray(np.nan, value.dtype), result) if empty.any() else result


def nanargmax(x, axis=None, keepdims: bool = False) -> np.ndarray:
    """Index (int32) of the largest non-NaN value over ``axis``."""
    value = np.where(np.isnan(as_array(x)), -np.inf, as_array(x)) if _is_float(x) else x
    return fnp.argmax(value, axis=axis, keepdims=keepdims)


def nanargmin(x, axis=None, keepdims: bool = False) -> np.ndarray:
    """Index (int32) of the smallest non-NaN value over ``axis``."""
    value = np.where(np.isnan(as_array(x)), np.inf, as_array(x)) if _is_float(x) else x
    return fnp.argmin(value, axis=axis, keepdims=keepdims)


def _is_float(x) -> bool:
    return as_array(x).dtype.kind in "fc"


def nancumsum(x, axis=None, dtype=None):
    """Running sum along ``axis``, NaNs counted as 0."""
    result = fnp.cumsum(_without_nan(x, 0), axis=axis, dtype=dtype)
    return result if dtype is not None else _keep_int32(x, result)


def nancumprod(x, axis=None, dtype=None):
    """Running product along ``axis``, NaNs counted as 1."""
    result = fnp.cumprod(_without_nan(x, 1), axis=axis, dtype=dtype)
    return result if dtype is not None else _keep_int32(x, result)


def ptp(x, axis=None, keepdims: bool = False):
    """max - min over ``axis``."""
    return fnp.subtract(
        fnp.max(x, axis=axis, keepdims=keepdims), fnp.min(x, axis=axis, keepdims=keepdims)
    )


# ---- products ----------------------------------------------------------------------------------
def inner(x1, x2):
    """Sum of products over the last axes: (..., n), (..., n) -> (...x1, ...x2)."""
    if _ndim(x1) == 0 or _ndim(x2) == 0:
        return fnp.multiply(x1, x2)
    a, b = _shape(x1)[-1], _shape(x2)[-1]
    if a != b:
        raise OpError(f"inner: the last axes must match; got shapes {_shape(x1)} and {_shape(x2)}")
    return fnp.tensordot(x1, x2, axes=([-1], [-1]))


def vdot(x1, x2):
    """The dot product of the flattened inputs: (n...), (n...) -> ()."""
    if np.size(unwrap(x1)) != np.size(unwrap(x2)):
        raise OpError(f"vdot: sizes differ; got shapes {_shape(x1)} and {_shape(x2)}")
    return fnp.sum(fnp.multiply(fnp.ravel(x1), fnp.ravel(x2)))


def kron(x1, x2):
    """The Kronecker product: block (i, j, ...) is x1[i, j, ...] * x2."""
    n = builtins.max(_ndim(x1), _ndim(x2))
    a_shape = (1,) * (n - _ndim(x1)) + _shape(x1)
    b_shape = (1,) * (n - _ndim(x2)) + _shape(x2)
    a = fnp.reshape(x1, [v for s in a_shape for v in (s, 1)])
    b = fnp.reshape(x2, [v for s in b_shape for v in (1, s)])
    return fnp.reshape(fnp.multiply(a, b), [p * q for p, q in zip(a_shape, b_shape)])


def cross(x1, x2, axisa: int = -1, axisb: int = -1, axisc: int = -1, axis=None):
    """Cross products of 3-vectors (or 2-vectors: the z component) along the given axes."""
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = fnp.moveaxis(x1, axisa, -1), fnp.moveaxis(x2, axisb, -1)
    na, nb = _shape(a)[-1], _shape(b)[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise OpError(
            f"cross: the vector axes must have 2 or 3 entries; got shapes {_shape(x1)} and "
            f"{_shape(x2)}"
        )
    a0, a1, b0, b1 = a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    z = fnp.subtract(fnp.multiply(a0, b1), fnp.multiply(a1, b0))
    if na == nb == 2:
        return z
    a2 = a[..., 2] if na == 3 else fnp.zeros_like(a0)
    b2 = b[..., 2] if nb == 3 else fnp.zeros_like(b0)
    x = fnp.subtract(fnp.multiply(a1, b2), fnp.multiply(a2, b1))
    y = fnp.subtract(fnp.multiply(a2, b0), fnp.multiply(a0, b2))
    return fnp.moveaxis(fnp.stack([x, y, z], axis=-1), -1, axisc)


def correlate(x1, x2, mode: str = "valid"):
    """Cross-correlation of two 1-D arrays as np.correlate ('valid', 'same', 'full')."""
    if _ndim(x1) != 1 or _ndim(x2) != 1:
        raise OpError(f"correlate: needs two 1-D arrays; got shapes {_shape(x1)} and {_shape(x2)}")
    n, m = _shape(x1)[0], _shape(x2)[0]
    if mode not in ("valid", "same", "full"):
        raise OpError(f"correlate: mode must be 'valid', 'same' or 'full'; got {mode!r}")
    a, v = (x1, x2) if n >= m else (x2, x1)
    long, short = builtins.max(n, m), builtins.min(n, m)
    before = {"valid": 0, "same": short // 2, "full": short - 1}[mode]
    after = {"valid": 0, "same": short - 1 - short // 2, "full": short - 1}[mode]
    a = _as_float(a)
    padded = fnp.pad(a, [(before, after)])
    windows = np.arange(long + before + after - short + 1)[:, None] + np.arange(short)
    out = fnp.matmul(fnp.take(padded, windows, axis=0), fnp.cast(v, as_array(a).dtype))
    return out if n >= m else fnp.flip(out, 0)


# ---- search, sets, counting (no gradient but bincount's weights) ----------------------------
def isin(x1, x2, assume_unique: bool = False, invert: bool = False) -> np.ndarray:
    """True where an entry of ``x1`` is in ``x2``."""
    return np.isin(as_array(x1), as_array(x2), assume_unique=assume_unique, invert=invert)


def nonzero(x) -> tuple:
    """The indices (int32) of the nonzero entries, one array per axis."""
    return tuple(i.astype("int32") for i in np.nonzero(as_array(x)))


def unique(
    x, sorted: bool = True, return_index: bool = False, return_inverse: bool = False,  # noqa: A002
    return_counts: bool = False, axis=None, size=None, fill_value=None,
):  # fmt: skip
    """The distinct values (sorted), optionally with first indices, the inverse and counts
    (int64, as Keras's torch and numpy backends); with ``size``, padded with ``fill_value``
    (or the smallest value) to that many."""
    value = as_array(x)
    results = np.unique(value, True, True, True, axis=axis)
    values, first, inverse, counts = results
    if not sorted:
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        values, first, counts, inverse = values[order], first[order], counts[order], rank[inverse]
    if size is not None:
        pad = int(size) - len(values)
        fill = values.min() if fill_value is None and len(values) else fill_value or 0
        values = np.concatenate([values[:size], np.full(builtins.max(pad, 0), fill, values.dtype)])
        first = np.concatenate([first[:size], np.zeros(builtins.max(pad, 0), first.dtype)])
        counts = np.concatenate([counts[:size], np.zeros(builtins.max(pad, 0), counts.dtype)])
    extra = [
        a.astype(np.int64)
        for a, wanted in ((first, return_index), (inverse.reshape(value.shape) if axis is None
                          else inverse, return_inverse), (counts, return_counts))
        if wanted
    ]  # fmt: skip
    return (values, *extra) if extra else values


def bincount(x, weights=None, minlength: int = 0, sparse: bool = False):
    """Counts (int32) of each non-negative int in ``x`` (summed weights if given; 2-D x: per
    row); differentiable in the weights."""
    if sparse:
        raise OpError("bincount: fastnn has no sparse tensors")
    ids = as_array(x).astype(np.int64)
    if ids.ndim not in (1, 2) or (ids < 0).any():
        raise OpError(f"bincount: x must be 1-D or 2-D non-negative ints; got shape {ids.shape}")
    length = builtins.max(int(ids.max(initial=-1)) + 1, int(minlength))
    shape = (length,) if ids.ndim == 1 else (len(ids), length)
    index = (ids,) if ids.ndim == 1 else (np.arange(len(ids))[:, None], ids)
    if weights is None:
        counts = np.zeros(shape, "int32")
        np.add.at(counts, index, 1)
        return counts
    if _shape(weights) != ids.shape:
        raise OpError(f"bincount: weights of shape {_shape(weights)} must match x {ids.shape}")
    return fnp._index_add(weights, shape, index)


def searchsorted(sorted_sequence, values, side: str = "left") -> np.ndarray:
    """Where ``values`` would go in the 1-D ``sorted_sequence`` (int32)."""
    sequence = as_array(sorted_sequence)
    if sequence.ndim != 1:
        raise OpError(f"searchsorted: sorted_sequence must be 1-D; got shape {sequence.shape}")
    return np.searchsorted(sequence, as_array(values), side=side).astype("int32")


def digitize(x, bins) -> np.ndarray:
    """The index (int32) of the bin each entry of ``x`` falls in."""
    return np.digitize(as_array(x), as_array(bins)).astype("int32")


def argpartition(x, kth: int, axis: int = -1) -> np.ndarray:
    """Indices (int32) that put the kth entry where sorting would, smaller ones before it."""
    return np.argpartition(as_array(x), kth, axis=axis).astype("int32")


def unravel_index(indices, shape) -> tuple:
    """Flat ``indices`` as a tuple of index arrays (int32) into ``shape``."""
    return tuple(i.astype("int32") for i in np.unravel_index(as_array(indices), tuple(shape)))


# ---- scatters and segments -----------------------------------------------------------------------
def _scatter_index(indices, shape: tuple, name: str) -> tuple:
    index = as_array(indices).astype(np.int64)
    if index.ndim < 1 or index.shape[-1] > len(shape):
        raise OpError(
            f"{name}: indices of shape {index.shape} must end in at most {len(shape)} "
            f"coordinates for shape {shape}"
        )
    return tuple(np.moveaxis(index, -1, 0))


def scatter(indices, values, shape):
    """zeros(shape) with ``values`` added at ``indices`` (..., d) (repeats add up)."""
    shape = tuple(int(s) for s in shape)
    return fnp._index_add(values, shape, _scatter_index(indices, shape, "scatter"))


def scatter_update(inputs, indices, updates, reduction=None):
    """``inputs`` with ``updates`` written (reduction None) or added ('add') at ``indices``."""
    shape = _shape(inputs)
    index = _scatter_index(indices, shape, "scatter_update")
    added = fnp._index_add(updates, shape, index)
    if reduction == "add":
        return fnp.add(inputs, added)
    if reduction is not None:
        raise OpError(f"scatter_update: reduction must be None or 'add'; got {reduction!r}")
    keep = np.ones(shape, bool)
    keep[index] = False
    return fnp.add(fnp.where(keep, inputs, 0), added)


def _segments(name: str, data, segment_ids, num_segments) -> tuple:
    ids = as_array(segment_ids).astype(np.int64)
    if ids.ndim != 1 or ids.shape[0] != _shape(data)[0]:
        raise OpError(
            f"{name}: segment_ids must be 1-D and match data's first axis; got shapes "
            f"{ids.shape} and {_shape(data)}"
        )
    count = int(ids.max(initial=-1)) + 1 if num_segments is None else int(num_segments)
    return ids, count


def segment_sum(data, segment_ids, num_segments=None, sorted: bool = False):  # noqa: A002
    """Sums of data's rows per segment id: (n, ...), (n,) -> (num_segments, ...); ids outside
    [0, num_segments) are dropped."""
    ids, count = _segments("segment_sum", data, segment_ids, num_segments)
    kept = (ids >= 0) & (ids < count)
    rows = data if kept.all() else fnp.get_item(data, np.nonzero(kept)[0])
    return fnp._index_add(rows, (count, *_shape(data)[1:]), ids[kept])


def segment_max(data, segment_ids, num_segments=None, sorted: bool = False):  # noqa: A002
    """Maxima of data's rows per segment id (-inf, or the lowest int, for empty segments); tied
    maxima share the gradient."""
    ids, count = _segments("segment_max", data, segment_ids, num_segments)
    return apply("segment_max", _segment_extreme, data, ids=ids, count=count, fn=np.maximum)


def segment_min(data, segment_ids, num_segments=None, sorted: bool = False):  # noqa: A002
    """Minima of data's rows per segment id (inf, or the highest int, for empty segments)."""
    ids, count = _segments("segment_min", data, segment_ids, num_segments)
    return apply("segment_min", _segment_extreme, data, ids=ids, count=count, fn=np.minimum)


def _segment_extreme(data, ids, count, fn):
    data = as_array(data)
    if data.dtype.kind == "f":
        start = -np.inf if fn is np.maximum else np.inf
    else:
        start = np.iinfo(data.dtype).min if fn is np.maximum else np.iinfo(data.dtype).max
    out = np.full((count, *data.shape[1:]), start, data.dtype)
    kept = (ids >= 0) & (ids < count)
    fn.at(out, ids[kept], data[kept])
    return out


def select(condlist, choicelist, default=0):
    """choicelist[i] where condlist[i] first holds, else ``default``, broadcast."""
    if len(condlist) != len(choicelist):
        raise OpError(
            f"select: condlist and choicelist must be as long; got {len(condlist)} and "
            f"{len(choicelist)}"
        )
    out = default
    for condition, choice in reversed(list(zip(condlist, choicelist))):
        out = fnp.where(as_array(condition).astype(bool), choice, out)
    return out


# ---- making arrays (constants on every tape) ------------------------------------------------
def array(x, dtype=None):
    """``x`` as a new array (Python floats as floatx); a tracked tensor stays one, as
    convert_to_tensor keeps it."""
    value = convert_to_tensor(x, dtype)
    return np.array(value) if type(value) is np.ndarray else value


def empty(shape, dtype=None) -> np.ndarray:
    """An array of ``shape`` (floatx by default); zeros here (Keras leaves it uninitialized)."""
    return np.zeros(shape, dtype or backend.floatx())


def empty_like(x, dtype=None) -> np.ndarray:
    """An array of the shape (and dtype, unless given) of ``x``; zeros here."""
    return np.zeros_like(as_array(x), dtype=dtype)


def meshgrid(*x, indexing: str = "xy") -> list:
    """Coordinate grids from 1-D arrays ('xy': the first two axes swapped, as numpy)."""
    if indexing not in ("xy", "ij"):
        raise OpError(f"meshgrid: indexing must be 'xy' or 'ij'; got {indexing!r}")
    sizes = [np.size(unwrap(v)) for v in x]
    if indexing == "xy" and len(x) >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    grids = []
    for i, v in enumerate(x):
        axis = {0: 1, 1: 0}.get(i, i) if indexing == "xy" and len(x) >= 2 else i
        shape = [-1 if j == axis else 1 for j in range(len(x))]
        grids.append(fnp.broadcast_to(fnp.reshape(v, shape), sizes))
    return grids


def logspace(start, stop, num: int = 50, endpoint=True, base=10, dtype=None, axis=0):
    """``num`` values base**t for t evenly spaced from start to stop (floatx by default)."""
    return np.logspace(start, stop, num, endpoint, base, dtype or backend.floatx(), axis)


def geomspace(start, stop, num: int = 50, endpoint=True, dtype=None, axis=0):
    """``num`` values evenly spaced on a log scale from start to stop (floatx by default)."""
    return np.geomspace(start, stop, num, endpoint, dtype or backend.floatx(), axis)


# ---- bitwise (integers and booleans) ------------------------------------------------------------
def _integers(name: str, fn):
    def op(x, y):
        a, b = np.asarray(as_array(x)), np.asarray(as_array(y))
        if a.dtype.kind not in "iub" or b.dtype.kind not in "iub":
            raise OpError(f"{name}: needs integer or boolean arrays; got {a.dtype} and {b.dtype}")
        return fn(a, b)

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise {fn.__name__} of integers, broadcast: (...), (...) -> (...)."
    return op


bitwise_and = _integers("bitwise_and", np.bitwise_and)
bitwise_or = _integers("bitwise_or", np.bitwise_or)
bitwise_xor = _integers("bitwise_xor", np.bitwise_xor)
bitwise_left_shift = left_shift = _integers("bitwise_left_shift", np.left_shift)
bitwise_right_shift = right_shift = _integers("bitwise_right_shift", np.right_shift)


def bitwise_invert(x) -> np.ndarray:
    """Elementwise bitwise not of integers (logical not of booleans): (...) -> (...)."""
    value = as_array(x)
    if value.dtype.kind not in "iub":
        raise OpError(f"bitwise_invert: needs an integer or boolean array; got {value.dtype}")
    return np.invert(value)


bitwise_not = bitwise_invert


# ---- rearrange (einops-style, as keras.ops.rearrange) -------------------------------------------
_TERM = re.compile(r"\w+|\(.*?\)")


def rearrange(tensor, pattern: str, **axes_lengths):
    """Axes regrouped and reordered by an einops pattern, e.g. 'b (h w) c -> b h w c' with
    h=4: a reshape, a transpose and a reshape."""
    if "->" not in pattern:
        raise OpError(f"rearrange: pattern must be 'inputs -> outputs'; got {pattern!r}")
    left, right = re.split(r"\s*->\s*", pattern.strip())
    inputs, outputs = _TERM.findall(left), _TERM.findall(right)
    shape = _shape(tensor)
    if len(inputs) != len(shape):
        raise OpError(f"rearrange: pattern {left!r} names {len(inputs)} axes; got shape {shape}")
    sizes, names = dict(axes_lengths), []
    for term, size in zip(inputs, shape):
        group = term.strip("()").split()
        unknown = [a for a in group if a not in axes_lengths]
        known = math.prod(axes_lengths[a] for a in group if a in axes_lengths)
        if len(unknown) > 1 or (not unknown and known != size) or size % builtins.max(known, 1):
            raise OpError(
                f"rearrange: axis {term!r} of size {size} cannot be split with {axes_lengths}"
            )
        sizes.update({a: size // known for a in unknown})
        names += group
    out_groups = [t.strip("()").split() for t in outputs]
    flat = [a for g in out_groups for a in g]
    if sorted(flat) != sorted(names):
        raise OpError(f"rearrange: {right!r} must name the axes of {left!r}, each once")
    x = fnp.reshape(tensor, [sizes[a] for a in names])
    x = fnp.transpose(x, [names.index(a) for a in flat])
    return fnp.reshape(x, [math.prod(sizes[a] for a in g) for g in out_groups])


# ---- window functions (floatx) ----------------------------------------------------------------
def _window(name: str, fn):
    def op(x):
        return fn(int(unwrap(x))).astype(backend.floatx())

    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"The {name} window of length x (floatx)."
    return op


hamming = _window("hamming", np.hamming)
hanning = _window("hanning", np.hanning)
bartlett = _window("bartlett", np.bartlett)
blackman = _window("blackman", np.blackman)


def kaiser(x, beta) -> np.ndarray:
    """The Kaiser window of length x and shape ``beta`` (floatx)."""
    return np.kaiser(int(unwrap(x)), float(unwrap(beta))).astype(backend.floatx())


# numpy's functions and ufuncs of these names on a Tensor or Variable route here (tensor.py)
_tensor.OPERATIONS.update((name, globals()[name]) for name in __all__)
