"""2-D convolution, NHWC: im2col / col2im in Numba, one BLAS GEMM in plain Python, fused epilogue.

The kernel layout is Keras's ``(kh, kw, in_ch, out_ch)``. An im2col row holds one output pixel's
receptive field in ``(kh, kw, C)`` row-major order, so
``cols @ kernel.reshape(kh * kw * C, out_ch)`` is the cross-correlation Keras computes. Padding
follows TensorFlow's rule (the odd extra row or column of ``'same'`` padding goes at the bottom /
right).

GEMMs run in the plain-Python wrappers (``conv2d_forward`` / ``conv2d_backward``), never inside
``njit`` (BLAS inside ``prange`` would oversubscribe the cores). The Numba kernels take C-contiguous
arrays; the wrappers make sure of it.
"""

import numpy as np
from numba import njit, prange

from .activations import bias_activation_forward, column_sums_add
from .gemm import matmul as numpy_matmul


def padding_amounts(in_size, k, stride, padding):
    """(out_size, pad_before, pad_after) along one axis, by TensorFlow's 'valid' / 'same' rule."""
    if padding == "same":
        out = -(-in_size // stride)
        total = max((out - 1) * stride + k - in_size, 0)
        before = total // 2
        return out, before, total - before
    if padding == "valid":
        return (in_size - k) // stride + 1, 0, 0
    raise ValueError(f"padding must be 'valid' or 'same'; got {padding!r}")


@njit(cache=True, parallel=True)
def im2col(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols):
    """cols (N*oh*ow, kh*kw*C) = x (N,H,W,C)'s windows: row (n,i,j), column (p,q,c); 0 = padding."""
    n_batch, h, w, c = x.shape
    run = kw * c  # taps (p, 0..kw-1) are one contiguous run in both x's row and the cols row
    xr = x.reshape(n_batch, h, w * c)
    for r in prange(n_batch * out_h):
        n = r // out_h
        h0 = (r % out_h) * sh - pad_top
        for ow in range(out_w):
            row = cols[r * out_w + ow]
            w0 = ow * sw - pad_left
            lo = max(0, -w0)  # first in-bounds tap column
            hi_q = min(kw, w - w0)  # one past the last in-bounds tap column
            for p in range(kh):
                hi = h0 + p
                base = p * run
                if hi < 0 or hi >= h or hi_q <= lo:
                    for t in range(run):
                        row[base + t] = 0
                    continue
                src = xr[n, hi]
                s0 = (w0 + lo) * c
                if c >= 8:  # long runs: slice copies (memcpy) measured 3x faster than loops
                    row[base : base + lo * c] = 0
                    row[base + lo * c : base + hi_q * c] = src[s0 : s0 + (hi_q - lo) * c]
                    row[base + hi_q * c : base + run] = 0
                    continue
                for t in range(lo * c):
                    row[base + t] = 0
                for t in range((hi_q - lo) * c):
                    row[base + lo * c + t] = src[s0 + t]
                for t in range(hi_q * c, run):
                    row[base + t] = 0


@njit(cache=True, parallel=True)
def col2im(dcols, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx):
    """dx (N,H,W,C) = im2col's adjoint of dcols (N*oh*ow, kh*kw*C); overwritten, overlaps add."""
    n_batch, h, w, c = dx.shape
    run = kw * c
    dxr = dx.reshape(n_batch, h, w * c)
    for n in prange(n_batch):
        img = dxr[n]
        for hh in range(h):
            for t in range(w * c):
                img[hh, t] = 0
        for oh in range(out_h):
            h0 = oh * sh - pad_top
            for ow in range(out_w):
                row = dcols[(n * out_h + oh) * out_w + ow]
                w0 = ow * sw - pad_left
                lo = max(0, -w0)
                hi_q = min(kw, w - w0)
                if hi_q <= lo:
                    continue
                d0 = (w0 + lo) * c
                length = (hi_q - lo) * c
                for p in range(kh):
                    hi = h0 + p
                    if hi < 0 or hi >= h:
                        continue
                    dst = img[hi]
                    s0 = p * run + lo * c
                    for t in range(length):
                        dst[d0 + t] += row[s0 + t]


def conv_geometry(x_shape, kernel_shape, strides, padding):
    """(out_h, out_w, pad_top, pad_left) of a conv of x (N,H,W,C) with kernel (kh,kw,C,F)."""
    _, h, w, _ = x_shape
    kh, kw = kernel_shape[0], kernel_shape[1]
    out_h, pad_top, _ = padding_amounts(h, kh, strides[0], padding)
    out_w, pad_left, _ = padding_amounts(w, kw, strides[1], padding)
    return out_h, out_w, pad_top, pad_left


def _is_pointwise(kernel_shape, strides):
    return kernel_shape[0] == kernel_shape[1] == 1 and tuple(strides) == (1, 1)


def conv2d_forward(
    x, kernel, bias, strides, padding, activation_code, out=None, cols=None, matmul=numpy_matmul
):
    """(y, cols): y (N,oh,ow,F) = act(x (N,H,W,C) conv kernel (kh,kw,C,F) + bias (F,) or None).

    ``cols`` (N*oh*ow, kh*kw*C) is what ``conv2d_backward`` needs; pass ``out`` / ``cols``
    buffers of those shapes to reuse a workspace (``cols`` is unused for 1x1 stride-1 kernels,
    whose cols is a view of x). ``matmul(a, b, out, accumulate=False)`` runs the GEMM.
    """
    x = np.ascontiguousarray(x)
    n, _, _, c = x.shape
    kh, kw, _, filters = kernel.shape
    out_h, out_w, pad_top, pad_left = conv_geometry(x.shape, kernel.shape, strides, padding)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"conv2d: kernel {kernel.shape[:2]} with strides {tuple(strides)} and padding "
            f"{padding!r} does not fit input of shape {x.shape}"
        )
    if _is_pointwise(kernel.shape, strides):
        cols = x.reshape(n * out_h * out_w, c)
    else:
        if cols is None:
            cols = np.empty((n * out_h * out_w, kh * kw * c), dtype=x.dtype)
        im2col(x, kh, kw, strides[0], strides[1], pad_top, pad_left, out_h, out_w, cols)
    if out is None:
        out = np.empty((n, out_h, out_w, filters), dtype=x.dtype)
    y2d = out.reshape(n * out_h * out_w, filters)
    matmul(cols, np.ascontiguousarray(kernel).reshape(kh * kw * c, filters), y2d)
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    bias_activation_forward(y2d, b, activation_code, y2d)
    return out, cols


def conv2d_backward(
    grad_z,
    cols,
    x_shape,
    kernel,
    strides,
    padding,
    dkernel,
    dbias,
    dx=None,
    dcols=None,
    need_dx=True,
    matmul=numpy_matmul,
):
    """dx (N,H,W,C) from grad_z (N,oh,ow,F) = dL/dz; adds into dkernel (kh,kw,C,F), dbias (F,).

    ``cols`` is the second result of ``conv2d_forward``. ``dkernel`` / ``dbias`` may be None
    (frozen weights, no bias) to skip that gradient. Pass ``dx`` / ``dcols`` (shaped like x /
    cols) to reuse workspaces; ``dcols`` may be ``cols`` itself, which is dead once dkernel is
    updated. With ``need_dx=False`` (a model's first layer) dx is skipped and None returned.
    ``matmul(a, b, out, accumulate=False)`` runs the GEMMs.
    """
    kh, kw, c, filters = kernel.shape
    g2d = np.ascontiguousarray(grad_z).reshape(-1, filters)
    if dkernel is not None:
        matmul(cols.T, g2d, dkernel.reshape(-1, filters), accumulate=True)
    if dbias is not None:
        column_sums_add(g2d, dbias)
    if not need_dx:
        return None
    out_h, out_w, pad_top, pad_left = conv_geometry(x_shape, kernel.shape, strides, padding)
    if dx is None:
        dx = np.empty(x_shape, dtype=grad_z.dtype)
    k2d = np.ascontiguousarray(kernel).reshape(kh * kw * c, filters)
    if _is_pointwise(kernel.shape, strides):
        matmul(g2d, k2d.T, dx.reshape(-1, c))
        return dx
    if dcols is None:
        dcols = np.empty((g2d.shape[0], kh * kw * c), dtype=g2d.dtype)
    matmul(g2d, k2d.T, dcols)
    col2im(dcols, kh, kw, strides[0], strides[1], pad_top, pad_left, out_h, out_w, dx)
    return dx
