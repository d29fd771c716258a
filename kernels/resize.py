"""Bilinear resizing of NHWC images, forward and backward, with half-pixel centres.

The sampling is Keras's ``ops.image.resize(..., interpolation="bilinear")`` without antialiasing,
as torch's ``interpolate(mode="bilinear", align_corners=False)``: output pixel ``i`` of an axis
resized from ``n`` to ``m`` samples the input at ``max((i + 0.5) * n / m - 0.5, 0)``, between the
two nearest inputs (the last one twice at the far edge). Each axis is described by its taps
(``linear_taps``); the backward gathers into each input pixel from the outputs that read it
(``taps_by_input``), so rows are independent and run in parallel without atomics.
"""

import numpy as np
from numba import njit, prange


def linear_taps(in_size: int, out_size: int, dtype) -> tuple:
    """(lo, hi, frac), each (out_size,): output i = (1 - frac[i]) * in[lo[i]] + frac[i] * in[hi[i]]
    (lo, hi int64; frac of ``dtype``, computed in it as torch computes it)."""
    kind = np.dtype(dtype).type
    scale = kind(in_size) / kind(out_size)
    centres = (np.arange(out_size, dtype=kind) + kind(0.5)) * scale - kind(0.5)
    src = np.maximum(centres, kind(0))
    lo = np.minimum(src.astype(np.int64), in_size - 1)
    hi = np.where(lo < in_size - 1, lo + 1, lo)
    frac = (src - lo.astype(kind)).astype(kind)
    return lo, hi, frac


def taps_by_input(lo, hi, frac, in_size: int) -> tuple:
    """The taps grouped by input: (start (in_size + 1,), outputs, weights): input k is read by
    outputs[start[k]:start[k + 1]] with those weights."""
    outputs = np.concatenate([np.arange(lo.size), np.arange(hi.size)])
    inputs = np.concatenate([lo, hi])
    weights = np.concatenate([1 - frac, frac]).astype(frac.dtype)
    order = np.argsort(inputs, kind="stable")
    start = np.zeros(in_size + 1, np.int64)
    start[1:] = np.cumsum(np.bincount(inputs, minlength=in_size))
    return start, outputs[order], weights[order]


@njit(cache=True, parallel=True, error_model="numpy")
def bilinear_forward(x, row_lo, row_hi, row_frac, col_lo, col_hi, col_frac, out):
    """out (N,OH,OW,C) = x (N,H,W,C) resized; rows and columns given by ``linear_taps``."""
    out_h = out.shape[1]
    one = x.dtype.type(1)
    for r in prange(x.shape[0] * out_h):
        n = r // out_h
        i = r % out_h
        top = x[n, row_lo[i]]
        bottom = x[n, row_hi[i]]
        fy = row_frac[i]
        gy = one - fy
        orow = out[n, i]
        for j in range(orow.shape[0]):
            a = col_lo[j]
            b = col_hi[j]
            fx = col_frac[j]
            gx = one - fx
            for c in range(orow.shape[1]):
                orow[j, c] = gy * (gx * top[a, c] + fx * top[b, c]) + fy * (
                    gx * bottom[a, c] + fx * bottom[b, c]
                )


@njit(cache=True, parallel=True, error_model="numpy")
def bilinear_backward(grad, row_start, row_out, row_weight, col_start, col_out, col_weight, grad_x):
    """grad_x (N,H,W,C) = the gradient of ``bilinear_forward`` given grad (N,OH,OW,C); the taps
    by input (``taps_by_input``) of its rows and columns."""
    h = grad_x.shape[1]
    for r in prange(grad_x.shape[0] * h):
        n = r // h
        y = r % h
        acc = grad_x[n, y]
        acc[:] = 0
        for p in range(row_start[y], row_start[y + 1]):
            g = grad[n, row_out[p]]
            wy = row_weight[p]
            for x in range(acc.shape[0]):
                for q in range(col_start[x], col_start[x + 1]):
                    w = wy * col_weight[q]
                    gj = g[col_out[q]]
                    for c in range(acc.shape[1]):
                        acc[x, c] += w * gj[c]


# Nearest-neighbour enlarging by whole factors (UpSampling's default): each input pixel fills a
# (sh, sw) block of the output; the backward sums each block back into its pixel.
@njit(cache=True, parallel=True, error_model="numpy")
def nearest_forward(x, sh, sw, out):
    """out (N, H*sh, W*sw, C) = x (N,H,W,C) with each pixel repeated sh x sw times."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    for r in prange(x.shape[0] * h):
        n, i = r // h, r % h
        for di in range(sh):
            orow = out[n, i * sh + di]
            for j in range(w):
                src = x[n, i, j]
                for dj in range(sw):
                    dst = orow[j * sw + dj]
                    for k in range(c):
                        dst[k] = src[k]


@njit(cache=True, parallel=True, error_model="numpy")
def nearest_backward(grad, sh, sw, grad_x):
    """grad_x (N,H,W,C) = the sums of grad (N, H*sh, W*sw, C) over each pixel's block."""
    h, w, c = grad_x.shape[1], grad_x.shape[2], grad_x.shape[3]
    for r in prange(grad_x.shape[0] * h):
        n, i = r // h, r % h
        for j in range(w):
            acc = grad_x[n, i, j]
            for k in range(c):
                acc[k] = 0
            for di in range(sh):
                for dj in range(sw):
                    src = grad[n, i * sh + di, j * sw + dj]
                    for k in range(c):
                        acc[k] += src[k]
