"""The last of keras.ops' numpy-family names: complex parts, distances, nan-aware extrema,
integer number theory, histogram, saturating casts, segment products and fold/unfold
(im2col, channels_first as torch).

Compositions of recorded ops where a gradient exists; ``i0`` records without a rule, so a
gradient through it raises; integer and index results are plain arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fastnn.ops import numpy as fnp
from fastnn.ops import tensor as _tensor
from fastnn.ops.core import _get_item
from fastnn.ops.numpy import _as_float, _float
from fastnn.ops.numpy_extra import _segments, _wide_float
from fastnn.ops.tape import OpError, apply, as_array, unwrap

__all__ = [
    "angle", "cdist", "conj", "conjugate", "corrcoef", "fmax", "fmin", "fold", "gcd",
    "histogram", "i0", "imag", "isreal", "lcm", "ldexp", "nextafter", "polar", "real",
    "saturate_cast", "segment_prod", "sinc", "unfold", "view_as_complex", "view_as_real",
]  # fmt: skip


def _shape(x) -> tuple:
    return np.shape(unwrap(x))


# ---- complex parts (real arrays pass through) --------------------------------------------------
def real(x):
    """The real part (a real array itself, gradient passing)."""
    return x if as_array(x).dtype.kind != "c" else np.real(as_array(x))


def imag(x):
    """The imaginary part (zeros for a real array)."""
    value = as_array(x)
    return np.imag(value) if value.dtype.kind == "c" else np.zeros_like(value)


def conj(x):
    """The complex conjugate (a real array itself)."""
    return x if as_array(x).dtype.kind != "c" else np.conj(as_array(x))


conjugate = conj


def angle(x):
    """The argument of each entry, floats (0 or pi for real values)."""
    value = as_array(x)
    if value.dtype.kind == "c":
        return np.angle(value)
    return np.angle(_float(value)).astype(_float(value).dtype)


def isreal(x) -> np.ndarray:
    """True where the imaginary part is 0."""
    return np.isreal(as_array(x))


def polar(abs_, angle):  # noqa: A002 (Keras's name)
    """abs_ * exp(i angle), complex (no gradient)."""
    magnitude, phase = as_array(abs_), as_array(angle)
    return (magnitude * np.exp(1j * phase)).astype(np.result_type(magnitude, np.complex64))


def view_as_complex(x) -> np.ndarray:
    """(..., 2) real pairs as complex values (..., )."""
    value = np.ascontiguousarray(as_array(x))
    if value.shape[-1:] != (2,):
        raise OpError(f"view_as_complex: the last axis must have 2 entries; got {value.shape}")
    return value.view(np.complex128 if value.dtype == np.float64 else np.complex64)[..., 0]


def view_as_real(x) -> np.ndarray:
    """Complex values (...) as (..., 2) real pairs."""
    value = np.asarray(as_array(x))
    return np.stack([value.real, value.imag], axis=-1)


# ---- elementwise ---------------------------------------------------------------------------------
def sinc(x):
    """sin(pi x) / (pi x), 1 at 0: (...) -> (...)."""
    x = _as_float(x)
    zero = as_array(x) == 0
    safe = fnp.where(zero, np.ones((), as_array(x).dtype), x)
    scaled = fnp.multiply(safe, math.pi)
    return fnp.where(zero, 1.0, fnp.divide(fnp.sin(scaled), scaled))


def i0(x):
    """The modified Bessel function of the first kind, order 0 (no gradient: it raises)."""
    return apply("i0", lambda v: np.i0(_wide_float(v)).astype(_wide_float(v).dtype), x)


def ldexp(x1, x2):
    """x1 * 2**x2 (x2 integers): (...), (...) -> (...)."""
    exponent = as_array(x2)
    if exponent.dtype.kind not in "iub":
        raise OpError(f"ldexp: x2 must hold integers; got {exponent.dtype}")
    x1 = _as_float(x1)
    return fnp.multiply(x1, np.ldexp(np.ones((), as_array(x1).dtype), exponent))


def nextafter(x1, x2):
    """The next float after x1 towards x2 (gradient 1 in x1, 0 in x2)."""
    a, b = fnp._promote(_float(x1), _float(x2))
    step = np.nextafter(a, b) - a
    return fnp.add(_as_float(x1), step.astype(np.result_type(a)))


def fmax(x1, x2):
    """Elementwise maximum that ignores NaNs (NaN only where both are), broadcast."""
    return _nan_aware(fnp.maximum, x1, x2)


def fmin(x1, x2):
    """Elementwise minimum that ignores NaNs (NaN only where both are), broadcast."""
    return _nan_aware(fnp.minimum, x1, x2)


def _nan_aware(pick: Callable, x1, x2):
    a, b = as_array(x1), as_array(x2)
    if a.dtype.kind not in "fc" and b.dtype.kind not in "fc":
        return pick(x1, x2)
    a_nan, b_nan = np.isnan(_float(a)), np.isnan(_float(b))
    return pick(fnp.where(a_nan, x2, x1), fnp.where(b_nan, x1, x2))


def gcd(x1, x2) -> np.ndarray:
    """Greatest common divisor of integers, broadcast."""
    return np.gcd(as_array(x1), as_array(x2))


def lcm(x1, x2) -> np.ndarray:
    """Least common multiple of integers, broadcast."""
    return np.lcm(as_array(x1), as_array(x2))


def saturate_cast(x, dtype):
    """``x`` clipped to ``dtype``'s range, then cast (no wrap-around); float to float records
    (the gradient passes inside the range)."""
    value, target = as_array(x), np.dtype(dtype)
    if target.kind == "f" and value.dtype.kind == "f":
        info = np.finfo(target)
        return fnp.cast(fnp.clip(x, float(info.min), float(info.max)), target)
    if target.kind in "iub":
        info = np.iinfo(target) if target.kind != "b" else None
        if info is not None and value.dtype.kind in "fc":
            value = np.clip(value, info.min, info.max)
        elif info is not None:
            value = np.clip(value, max(info.min, np.iinfo(value.dtype).min),
                            min(info.max, np.iinfo(value.dtype).max))  # fmt: skip
    return value.astype(target)


# ---- distances and statistics ------------------------------------------------------------------
def cdist(x, y):
    """Euclidean distances between the rows of x and y: (..., n, d), (..., m, d) ->
    (..., n, m)."""
    xs, ys = _shape(x), _shape(y)
    if len(xs) < 2 or len(ys) < 2 or xs[-1] != ys[-1]:
        raise OpError(f"cdist: expected (..., n, d) and (..., m, d); got {xs} and {ys}")
    diff = fnp.subtract(fnp.expand_dims(x, -2), fnp.expand_dims(y, -3))
    return fnp.sqrt(fnp.sum(fnp.square(diff), axis=-1))


def corrcoef(x):
    """Pearson correlation coefficients of the rows of x: (k, n) -> (k, k)."""
    x = x if as_array(x).dtype.kind in "fc" else _wide_float(x)
    if np.ndim(unwrap(x)) == 1:
        x = fnp.expand_dims(x, 0)
    centred = fnp.subtract(x, fnp.mean(x, axis=1, keepdims=True))
    cov = fnp.matmul(centred, fnp.transpose(centred))
    scale = fnp.sqrt(fnp.diagonal(cov))
    return fnp.divide(cov, fnp.multiply(fnp.expand_dims(scale, 1), fnp.expand_dims(scale, 0)))


def histogram(x, bins: int = 10, range=None) -> tuple:  # noqa: A002 (Keras's names)
    """(counts, bin edges) of the flattened x over ``bins`` equal bins."""
    value = _float(x)
    counts, edges = np.histogram(value, bins=bins, range=range)
    return counts.astype(value.dtype), edges.astype(value.dtype)


def segment_prod(data, segment_ids, num_segments=None, sorted: bool = False):  # noqa: A002
    """Products of data's rows per segment id (1 for empty segments): (n, ...) ->
    (num_segments, ...)."""
    ids, count = _segments("segment_prod", data, segment_ids, num_segments)
    kept = (ids >= 0) & (ids < count)
    rows, ids = np.nonzero(kept)[0], ids[kept]
    order = np.argsort(ids, kind="stable")
    rows, ids = rows[order], ids[order]
    width = int(np.bincount(ids, minlength=count).max(initial=0)) if len(ids) else 0
    rank = np.arange(len(ids)) - np.searchsorted(ids, ids)  # position within the segment
    slots = np.full((count, max(width, 1)), _shape(data)[0], np.int64)  # the padding row
    slots[ids, rank] = rows
    padded = fnp.concatenate([data, np.ones((1, *_shape(data)[1:]), as_array(data).dtype)], 0)
    return fnp.prod(fnp.take(padded, slots, axis=0), axis=1)


# ---- fold / unfold (torch's im2col, channels first) --------------------------------------------
def _pair(name: str, value, what: str) -> tuple:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(int(v) < 0 for v in pair):
        raise OpError(f"{name}: {what} must be an int or 2 non-negative ints; got {value}")
    return tuple(int(v) for v in pair)


def _blocks(name, size, kernel_size, dilation, padding, stride) -> tuple:
    """Per axis: (blocks, the padded positions each block's taps read (blocks, k))."""
    k, d = _pair(name, kernel_size, "kernel_size"), _pair(name, dilation, "dilation")
    p, s = _pair(name, padding, "padding"), _pair(name, stride, "stride")
    taps = []
    for n, ki, di, pi, si in zip(size, k, d, p, s):
        count = (n + 2 * pi - di * (ki - 1) - 1) // si + 1
        if count < 1:
            raise OpError(f"{name}: the kernel {k} (dilation {d}) does not fit size {size}")
        taps.append(np.arange(count)[:, None] * si + np.arange(ki)[None, :] * di)
    return taps, p, k


def unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    """Sliding blocks as columns (torch's unfold): (N, C, H, W) -> (N, C*kh*kw, L)."""
    shape = _shape(x)
    if len(shape) != 4:
        raise OpError(f"unfold: expected (N, C, H, W); got shape {shape}")
    (rows, cols), (ph, pw), (kh, kw) = _blocks(
        "unfold", shape[2:], kernel_size, dilation, padding, stride
    )
    padded = fnp.pad(x, [(0, 0), (0, 0), (ph, ph), (pw, pw)])
    index = (slice(None), slice(None), rows[:, None, :, None], cols[None, :, None, :])
    patches = apply("get_item", _get_item, padded, index=index)  # (N, C, oh, ow, kh, kw)
    moved = fnp.transpose(patches, (0, 1, 4, 5, 2, 3))
    return fnp.reshape(moved, (shape[0], shape[1] * kh * kw, -1))


def fold(x, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Columns of sliding blocks summed back into images (torch's fold, the adjoint of
    unfold): (N, C*kh*kw, L) -> (N, C, oh, ow)."""
    shape = _shape(x)
    size = _pair("fold", output_size, "output_size")
    (rows, cols), (ph, pw), (kh, kw) = _blocks("fold", size, kernel_size, dilation, padding, stride)
    if len(shape) != 3 or shape[1] % (kh * kw) or shape[2] != len(rows) * len(cols):
        raise OpError(
            f"fold: expected (N, C*{kh}*{kw}, {len(rows) * len(cols)}) for output_size {size}; "
            f"got shape {shape}"
        )
    n, channels = shape[0], shape[1] // (kh * kw)
    blocks = fnp.transpose(fnp.reshape(x, (n, channels, kh, kw, len(rows), len(cols))),
                           (0, 1, 4, 5, 2, 3))  # fmt: skip
    padded_shape = (n, channels, size[0] + 2 * ph, size[1] + 2 * pw)
    index = (slice(None), slice(None), rows[:, None, :, None], cols[None, :, None, :])
    padded = fnp._index_add(blocks, padded_shape, index)
    return fnp.get_item(padded, (slice(None), slice(None), slice(ph, ph + size[0]),
                                 slice(pw, pw + size[1])))  # fmt: skip


# numpy's functions and ufuncs of these names on a Tensor or Variable route here (tensor.py)
_tensor.OPERATIONS.update((name, globals()[name]) for name in __all__)
