"""Transposed 2-D convolution, NHWC: BLAS GEMMs between Numba scatter (col2im) and gather
(im2col) loops.

A transposed conv of x (N,H,W,C) by a kernel (kh,kw,F,C) (Keras's layout) is the input gradient
of a conv of y (N,OH,OW,F) by the same kernel: input pixel (i, j) and tap (p, q) meet output
pixel (i*sh + p*dh - top, j*sw + q*dw - left), where ``top`` / ``left`` are how many rows and
columns of the full output ((H-1)*sh + (kh-1)*dh + 1 rows) are cropped before the first kept one
(the layer derives them, and the output size, from Keras's padding rules). So:

- forward: ``cols = x2d @ kernel2d.T`` (N*H*W, kh*kw*F), then ``scatter_images`` adds each
  row's taps into y (col2im), then bias and activation;
- backward: ``gather_rows`` reads dy's windows (im2col), then ``dx = cols @ kernel2d`` and
  ``dkernel += cols.T @ x2d``.

Both run per chunk of whole images (``CHUNK_ELEMENTS`` of cols at most), so cols stays in cache,
on up to ``threads`` threads (``kernels.gemm.row_blocks``). GEMMs run in the wrappers, never
inside ``njit``.
"""

import numpy as np
from numba import njit

from .activations import bias_activation_rows, column_sums_add
from .gemm import row_blocks

# Elements of cols per chunk (1 MB in float32): a chunk's GEMM and scatter share data in cache.
# A chunk holds at least one image.
CHUNK_ELEMENTS = 1 << 18


@njit(cache=True, nogil=True)
def scatter_images(cols, kh, kw, sh, sw, dh, dw, top, left, in_h, in_w, y, start, stop):
    """y[start:stop] (N,OH,OW,F) = col2im of cols ((stop-start)*in_h*in_w, kh*kw*F): row (n,i,j),
    column (p,q,f) adds into y[n, i*sh + p*dh - top, j*sw + q*dw - left, f] when inside;
    overwritten."""
    out_h, out_w, f = y.shape[1], y.shape[2], y.shape[3]
    for n in range(start, stop):
        img = y[n]
        img[:, :, :] = 0
        base = (n - start) * in_h * in_w
        for i in range(in_h):
            for j in range(in_w):
                row = cols[base + i * in_w + j]
                for p in range(kh):
                    oh = i * sh + p * dh - top
                    if oh < 0 or oh >= out_h:
                        continue
                    for q in range(kw):
                        ow = j * sw + q * dw - left
                        if ow < 0 or ow >= out_w:
                            continue
                        # views indexed by the loop variable, so the loop vectorizes
                        dst = img[oh, ow]
                        src = row[(p * kw + q) * f : (p * kw + q + 1) * f]
                        for t in range(f):
                            dst[t] += src[t]


@njit(cache=True, nogil=True)
def gather_rows(y, kh, kw, sh, sw, dh, dw, top, left, in_h, in_w, cols, start, stop):
    """cols ((stop-start)*in_h*in_w, kh*kw*F) = im2col of y (N,OH,OW,F) for images start..stop-1:
    row (n,i,j), column (p,q,f) = y[n, i*sh + p*dh - top, j*sw + q*dw - left, f], 0 outside."""
    out_h, out_w, f = y.shape[1], y.shape[2], y.shape[3]
    for n in range(start, stop):
        img = y[n]
        base = (n - start) * in_h * in_w
        for i in range(in_h):
            for j in range(in_w):
                row = cols[base + i * in_w + j]
                for p in range(kh):
                    oh = i * sh + p * dh - top
                    for q in range(kw):
                        ow = j * sw + q * dw - left
                        dst = row[(p * kw + q) * f : (p * kw + q + 1) * f]
                        if oh < 0 or oh >= out_h or ow < 0 or ow >= out_w:
                            for t in range(f):
                                dst[t] = 0
                        else:
                            src = img[oh, ow]
                            for t in range(f):
                                dst[t] = src[t]


def _images_per_chunk(in_h, in_w, taps):
    return max(1, CHUNK_ELEMENTS // (in_h * in_w * taps))


def conv2d_transpose_forward(
    x, kernel, bias, strides, dilation, crops, out_size, activation_code, out=None, threads=1
):
    """y (N,OH,OW,F) = act(transposed conv of x (N,H,W,C) by kernel (kh,kw,F,C) + bias (F,) or
    None); ``crops`` = (top, left), ``out_size`` = (OH, OW) (see the module's docstring); ``out``
    a buffer of y's shape to reuse. Chunks of images run on up to ``threads`` threads."""
    x = np.ascontiguousarray(x)
    n, in_h, in_w, c = x.shape
    kh, kw, filters, _ = kernel.shape
    taps = kh * kw * filters
    if out is None:
        out = np.empty((n, *out_size, filters), dtype=x.dtype)
    k2d = np.ascontiguousarray(kernel).reshape(taps, c)
    x2d = x.reshape(-1, c)
    y2d = out.reshape(n, -1, filters)
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    geometry = (kh, kw, *strides, *dilation, *crops, in_h, in_w)
    pixels, step = in_h * in_w, _images_per_chunk(in_h, in_w, taps)

    def run(start, stop):
        cols = np.empty((min(step, stop - start) * pixels, taps), dtype=x.dtype)
        for n0 in range(start, stop, step):
            n1 = min(stop, n0 + step)
            chunk = cols[: (n1 - n0) * pixels]
            np.matmul(x2d[n0 * pixels : n1 * pixels], k2d.T, out=chunk)
            scatter_images(chunk, *geometry, out, n0, n1)
            rows = y2d[n0:n1].reshape(-1, filters)
            bias_activation_rows(rows, b, activation_code)

    row_blocks(run, n, threads, 1)
    return out


def conv2d_transpose_backward(
    grad_z, x, kernel, strides, dilation, crops, dkernel, dbias, dx=None, need_dx=True, threads=1
):
    """dx (N,H,W,C) of ``conv2d_transpose_forward`` from grad_z (N,OH,OW,F) = dL/dz (the
    activation's gradient applied) and its input x; adds into dkernel (kh,kw,F,C) and dbias
    (F,) unless None. ``dx`` a buffer shaped like x to reuse; with ``need_dx=False`` dx is skipped
    and None returned. Chunks of images run on up to ``threads`` threads."""
    x = np.ascontiguousarray(x)
    grad_z = np.ascontiguousarray(grad_z)
    n, in_h, in_w, c = x.shape
    kh, kw, filters, _ = kernel.shape
    taps = kh * kw * filters
    if dbias is not None:
        column_sums_add(grad_z.reshape(-1, filters), dbias)
    if not need_dx:
        dx = None
    elif dx is None:
        dx = np.empty(x.shape, dtype=grad_z.dtype)
    if dx is None and dkernel is None:
        return None
    k2d = np.ascontiguousarray(kernel).reshape(taps, c)
    x2d = x.reshape(-1, c)
    dx2d = None if dx is None else dx.reshape(-1, c)
    geometry = (kh, kw, *strides, *dilation, *crops, in_h, in_w)
    pixels, step = in_h * in_w, _images_per_chunk(in_h, in_w, taps)
    parts = []

    def run(start, stop):
        cols = np.empty((min(step, stop - start) * pixels, taps), dtype=grad_z.dtype)
        part = None if dkernel is None else np.zeros((taps, c), dtype=grad_z.dtype)
        for n0 in range(start, stop, step):
            n1 = min(stop, n0 + step)
            chunk = cols[: (n1 - n0) * pixels]
            gather_rows(grad_z, *geometry, chunk, n0, n1)
            if dx2d is not None:
                np.matmul(chunk, k2d, out=dx2d[n0 * pixels : n1 * pixels])
            if part is not None:
                part += chunk.T @ x2d[n0 * pixels : n1 * pixels]
        if part is not None:
            parts.append(part)

    row_blocks(run, n, threads, 1)
    if parts:
        dkernel += sum(parts).reshape(dkernel.shape)
    return dx
