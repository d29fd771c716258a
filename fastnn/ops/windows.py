"""Convolution and pooling on numpy arrays, channels_last, any number of spatial axes.

Arrays in, arrays out, no tape: ``fastnn.ops.nn`` records them and ``rules.py`` pairs each with
its adjoint (conv <-> conv_input_grad, conv_kernel_grad; max_pool_grad <-> max_pool_gather;
average_pool <-> average_pool_grad). A window view is a strided view of the padded input,
(N, *out, *window, C); the adjoints loop over the window's taps (9 for 3x3), never over pixels.
Built-in layers use fastnn.kernels instead; this is the general path ``ops.conv`` takes.
"""

from __future__ import annotations

import math

import numpy as np

from fastnn.ops.tape import OpError


def geometry(name: str, x_shape: tuple, window: tuple, strides, padding, dilation) -> tuple:
    """(output spatial sizes, (before, after) pads per spatial axis), as Keras/TF compute them."""
    if padding not in ("valid", "same"):
        raise OpError(f"{name}: padding must be 'valid' or 'same'; got padding={padding!r}")
    sizes, pads = [], []
    for n, k, s, d in zip(x_shape[1:-1], window, strides, dilation):
        span = (k - 1) * d + 1
        out = (n - span) // s + 1 if padding == "valid" else -(-n // s)
        total = max((out - 1) * s + span - n, 0) if padding == "same" else 0
        sizes.append(out)
        pads.append((total // 2, total - total // 2))
    if min(sizes, default=1) <= 0:
        raise OpError(
            f"{name}: input of shape {x_shape} is smaller than the window {tuple(window)} "
            f"(dilation {tuple(dilation)}) with padding='valid'"
        )
    return tuple(sizes), tuple(pads)


def _padded(x: np.ndarray, pads: tuple, value: float = 0.0) -> np.ndarray:
    if not any(a or b for a, b in pads):
        return x
    return np.pad(x, [(0, 0), *pads, (0, 0)], constant_values=value)


def _view(xp: np.ndarray, out: tuple, window: tuple, strides, dilation) -> np.ndarray:
    """The (N, *out, *window, C) windows of padded ``xp``, a read-only strided view."""
    step = xp.strides[1:-1]
    shape = (xp.shape[0], *out, *window, xp.shape[-1])
    strides = (
        xp.strides[0],
        *(a * s for a, s in zip(step, strides)),
        *(a * d for a, d in zip(step, dilation)),
        xp.strides[-1],
    )
    return np.lib.stride_tricks.as_strided(xp, shape, strides, writeable=False)


def _scatter(dwin: np.ndarray, padded_shape: tuple, out, window, strides, dilation):
    """The adjoint of ``_view``: add each window's values back where they came from."""
    dxp = np.zeros(padded_shape, dwin.dtype)
    d = len(window)
    for tap in np.ndindex(*window):
        dst = tuple(
            slice(t * di, t * di + (o - 1) * s + 1, s)
            for t, di, o, s in zip(tap, dilation, out, strides)
        )
        dxp[(slice(None), *dst)] += dwin[(slice(None),) * (1 + d) + tap]
    return dxp


def _crop(xp: np.ndarray, pads: tuple) -> np.ndarray:
    return xp[(slice(None), *(slice(a, xp.shape[i + 1] - b) for i, (a, b) in enumerate(pads)))]


def _padded_shape(x_shape: tuple, pads: tuple) -> tuple:
    return (x_shape[0], *(n + a + b for n, (a, b) in zip(x_shape[1:-1], pads)), x_shape[-1])


# ---- convolution: x (N, *S, C), kernel (*K, C, O) -> (N, *out, O) ------------------------------
def conv(x, kernel, strides, padding, dilation):
    """Cross-correlation as keras.ops.conv (channels_last): (N, *S, C), (*K, C, O) -> (N, *o, O)."""
    window = kernel.shape[:-2]
    out, pads = geometry("conv", x.shape, window, strides, padding, dilation)
    win = _view(_padded(x, pads), out, window, strides, dilation)
    d = len(window)
    return np.tensordot(win, kernel, axes=(list(range(1 + d, 2 + 2 * d)), list(range(d + 1))))


def conv_input_grad(g, kernel, x_shape, strides, padding, dilation):
    """d conv / d x applied to ``g``: (N, *o, O), (*K, C, O) -> (N, *S, C)."""
    window = kernel.shape[:-2]
    out, pads = geometry("conv", x_shape, window, strides, padding, dilation)
    dwin = np.tensordot(g, kernel, axes=([-1], [-1]))  # (N, *out, *K, C)
    dxp = _scatter(dwin, _padded_shape(x_shape, pads), out, window, strides, dilation)
    return _crop(dxp, pads)


def conv_kernel_grad(x, g, kernel_shape, strides, padding, dilation):
    """d conv / d kernel applied to ``g``: (N, *S, C), (N, *o, O) -> (*K, C, O)."""
    window = tuple(kernel_shape[:-2])
    out, pads = geometry("conv", x.shape, window, strides, padding, dilation)
    win = _view(_padded(x, pads), out, window, strides, dilation)
    axes = list(range(1 + len(window)))
    return np.tensordot(win, g, axes=(axes, axes))


# ---- max pooling ---------------------------------------------------------------------------------
def max_pool(x, pool_size, strides, padding):
    """Window maxima: (N, *S, C) -> (N, *o, C); 'same' pads with -inf."""
    ones = (1,) * len(pool_size)
    out, pads = geometry("max_pool", x.shape, pool_size, strides, padding, ones)
    win = _view(_padded(x, pads, -np.inf), out, pool_size, strides, ones)
    return win.max(axis=tuple(range(1 + len(out), 1 + 2 * len(out))))


def _argmax_index(x, pool_size, strides, padding) -> tuple:
    """Where each window's first maximum sits in the padded input, as an index tuple."""
    ones = (1,) * len(pool_size)
    out, pads = geometry("max_pool", x.shape, pool_size, strides, padding, ones)
    win = _view(_padded(x, pads, -np.inf), out, pool_size, strides, ones)
    d = len(out)
    flat = np.moveaxis(win, -1, 1 + d).reshape(*win.shape[: 1 + d], x.shape[-1], -1)
    taps = np.unravel_index(flat.argmax(axis=-1), pool_size)  # each (N, *out, C)
    grid = np.ix_(*(np.arange(n) for n in (x.shape[0], *out, x.shape[-1])))
    spatial = tuple(o * s + t for o, s, t in zip(grid[1:-1], strides, taps))
    return (grid[0], *spatial, grid[-1]), pads


def max_pool_grad(g, x, pool_size, strides, padding):
    """d max_pool / d x applied to ``g``: each window's gradient goes to its first maximum."""
    index, pads = _argmax_index(x, pool_size, strides, padding)
    dxp = np.zeros(_padded_shape(x.shape, pads), g.dtype)
    np.add.at(dxp, index, g)
    return _crop(dxp, pads)


def max_pool_gather(h, x, pool_size, strides, padding):
    """The adjoint of ``max_pool_grad`` in g: ``h`` (shaped as x) read at each window's maximum."""
    index, pads = _argmax_index(x, pool_size, strides, padding)
    return _padded(h, pads)[index]


# ---- average pooling -----------------------------------------------------------------------------
def _counts(x_shape, pool_size, strides, padding) -> tuple:
    """How many real (unpadded) entries each window holds, (1, *o, 1), and the geometry."""
    ones = (1,) * len(pool_size)
    out, pads = geometry("average_pool", x_shape, pool_size, strides, padding, ones)
    if padding == "valid":
        return np.asarray(math.prod(pool_size)), out, pads
    probe = _padded(np.ones((1, *x_shape[1:-1], 1)), pads)
    win = _view(probe, out, pool_size, strides, ones)
    return win.sum(axis=tuple(range(1 + len(out), 1 + 2 * len(out)))), out, pads


def average_pool(x, pool_size, strides, padding):
    """Window means over real entries ('same' padding is not counted): (N, *S, C) -> (N, *o, C)."""
    counts, out, pads = _counts(x.shape, pool_size, strides, padding)
    win = _view(_padded(x, pads), out, pool_size, strides, (1,) * len(out))
    sums = win.sum(axis=tuple(range(1 + len(out), 1 + 2 * len(out))))
    return (sums / counts).astype(x.dtype, copy=False)


def average_pool_grad(g, x_shape, pool_size, strides, padding):
    """d average_pool / d x applied to ``g``: (N, *o, C) -> x_shape."""
    counts, out, pads = _counts(x_shape, pool_size, strides, padding)
    share = (g / counts).astype(g.dtype, copy=False)
    dwin = np.broadcast_to(
        share.reshape(*share.shape[:-1], *(1,) * len(out), share.shape[-1]),
        (*share.shape[:-1], *pool_size, share.shape[-1]),
    )
    dxp = _scatter(dwin, _padded_shape(x_shape, pads), out, pool_size, strides, (1,) * len(out))
    return _crop(dxp, pads)
