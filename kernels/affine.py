"""Affine resampling of NHWC images (rotation, zoom, translation), forward and backward.

Each image ``n`` has its own inverse map ``coef[n] = (a0, a1, a2, b0, b1, b2)``: output pixel
(row ``y``, column ``x``) reads the input at column ``a0 x + a1 y + a2`` and row
``b0 x + b1 y + b2`` (Keras's ``ops.image.affine_transform`` convention, as its torch backend
samples it, via ``map_coordinates``):

- interpolation: ``bilinear`` (the four neighbours, weights from the fractional parts) or
  nearest (the coordinate rounded half to even);
- fill modes (codes below) fix each neighbour's index on its own: ``constant`` reads
  ``fill_value`` for an index outside the image, ``nearest`` clamps, ``wrap`` takes it modulo
  the size, ``reflect`` mirrors about the edge (``d c b a | a b c d | d c b a``).

The backward scatters each output's gradient into the pixels it read, with the same weights;
images are independent, so it runs one image per thread without atomics.
"""

import numpy as np
from numba import njit, prange

CONSTANT, NEAREST, WRAP, REFLECT = 0, 1, 2, 3
FILL_MODES = {"constant": CONSTANT, "nearest": NEAREST, "wrap": WRAP, "reflect": REFLECT}


@njit(cache=True, inline="always")
def _fix(index, size, mode):
    """(the index read, whether it lies inside) for a neighbour ``index`` of an axis of ``size``."""
    inside = index >= 0 and index < size
    if mode == WRAP:
        return index % size, True
    if mode == REFLECT:
        s = 2 * size  # Keras's reflect: a mirror of 2 * index + 1 over a period of 4 * size
        m = abs((2 * index + 1 + s) % (2 * s) - s)
        return (m - 1) // 2, True
    fixed = min(max(index, 0), size - 1)
    if mode == CONSTANT:
        return fixed, inside
    return fixed, True


@njit(cache=True, inline="always")
def _taps(coord, bilinear, one, half):
    """(lower index, weight of lower, weight of upper) of one coordinate; nearest: the
    coordinate rounded half to even, weight 1."""
    lo = np.floor(coord)
    frac = coord - lo
    i = np.int64(lo)
    if bilinear:
        return i, one - frac, frac
    if frac > half or (frac == half and i % 2 == 1):
        i += 1
    return i, one, frac - frac


@njit(cache=True, inline="always")
def _source_taps(coef, yf, xf, bilinear, one, half):
    """(row taps, column taps) of ``_taps`` at the input point output pixel (yf, xf) reads
    through the map ``coef`` (a0, a1, a2, b0, b1, b2): forward and backward alike."""
    src_x = yf * coef[1] + xf * coef[0] + coef[2]
    src_y = yf * coef[4] + xf * coef[3] + coef[5]
    y0, wy0, wy1 = _taps(src_y, bilinear, one, half)
    x0, wx0, wx1 = _taps(src_x, bilinear, one, half)
    return y0, wy0, wy1, x0, wx0, wx1


@njit(cache=True, parallel=True, error_model="numpy")
def affine_forward(x, coef, bilinear, fill_mode, fill_value, out):
    """out (N,OH,OW,C) = x (N,H,W,C) resampled through ``coef`` (N,6) (``x``'s dtype);
    ``bilinear`` a bool, ``fill_mode`` a code of ``FILL_MODES``, ``fill_value`` of x's dtype."""
    h, w = x.shape[1], x.shape[2]
    out_h, out_w, c = out.shape[1], out.shape[2], out.shape[3]
    kind = x.dtype.type
    fill = kind(fill_value)
    one, half = kind(1), kind(0.5)
    for r in prange(x.shape[0] * out_h):
        n = r // out_h
        i = r % out_h
        yf = kind(i)
        img = x[n]
        orow = out[n, i]
        for j in range(out_w):
            y0, wy0, wy1, x0, wx0, wx1 = _source_taps(coef[n], yf, kind(j), bilinear, one, half)
            ya, va = _fix(y0, h, fill_mode)
            xa, ua = _fix(x0, w, fill_mode)
            dst = orow[j]
            if bilinear:
                yb, vb = _fix(y0 + 1, h, fill_mode)
                xb, ub = _fix(x0 + 1, w, fill_mode)
                w00, w01 = wy0 * wx0, wy0 * wx1
                w10, w11 = wy1 * wx0, wy1 * wx1
                for k in range(c):
                    p00 = img[ya, xa, k] if va and ua else fill
                    p01 = img[ya, xb, k] if va and ub else fill
                    p10 = img[yb, xa, k] if vb and ua else fill
                    p11 = img[yb, xb, k] if vb and ub else fill
                    dst[k] = w00 * p00 + w01 * p01 + w10 * p10 + w11 * p11
            else:
                for k in range(c):
                    dst[k] = img[ya, xa, k] if va and ua else fill


@njit(cache=True, parallel=True, error_model="numpy")
def affine_backward(grad, coef, bilinear, fill_mode, grad_x):
    """grad_x (N,H,W,C) = the gradient of ``affine_forward`` given grad (N,OH,OW,C); pixels
    read as ``fill_value`` pass nothing back."""
    h, w = grad_x.shape[1], grad_x.shape[2]
    out_h, out_w, c = grad.shape[1], grad.shape[2], grad.shape[3]
    kind = grad_x.dtype.type
    one, half = kind(1), kind(0.5)
    for n in prange(grad_x.shape[0]):
        acc = grad_x[n]
        acc[:] = 0
        for i in range(out_h):
            yf = kind(i)
            for j in range(out_w):
                y0, wy0, wy1, x0, wx0, wx1 = _source_taps(coef[n], yf, kind(j), bilinear, one, half)
                g = grad[n, i, j]
                ya, va = _fix(y0, h, fill_mode)
                xa, ua = _fix(x0, w, fill_mode)
                if bilinear:
                    yb, vb = _fix(y0 + 1, h, fill_mode)
                    xb, ub = _fix(x0 + 1, w, fill_mode)
                    if va and ua:
                        _scatter(acc[ya, xa], g, wy0 * wx0)
                    if va and ub:
                        _scatter(acc[ya, xb], g, wy0 * wx1)
                    if vb and ua:
                        _scatter(acc[yb, xa], g, wy1 * wx0)
                    if vb and ub:
                        _scatter(acc[yb, xb], g, wy1 * wx1)
                elif va and ua:
                    dst = acc[ya, xa]
                    for k in range(c):
                        dst[k] += g[k]


@njit(cache=True, inline="always")
def _scatter(dst, g, weight):
    for k in range(dst.shape[0]):
        dst[k] += weight * g[k]


def nearest_taps(in_size: int, out_size: int) -> np.ndarray:
    """(out_size,) int64: the input each output reads when resizing by nearest neighbour with
    half-pixel centres (torch's ``nearest-exact``, Keras's ``"nearest"``):
    ``min(floor((i + 0.5) * in / out), in - 1)``, computed in float32 as torch computes it."""
    scale = np.float32(np.float32(in_size) / np.float32(out_size))
    centres = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale
    return np.minimum(np.floor(centres).astype(np.int64), in_size - 1)
