"""2-D convolution, NHWC: Numba kernels (direct loops, im2col / col2im, fused pools) and the
plain-Python wrappers that run them with BLAS GEMMs and a fused epilogue.

Which algorithm runs each part of a conv (direct loops, a float32 forward's SIMD micro-kernels
in ``conv_simd``, Winograd's F(2x2, 3x3) in ``winograd``, im2col + GEMM, or a 1x1 kernel's one
GEMM) is decided in one place, ``plan_conv2d``, which the
forward and backward wrappers share: see its docstring, and
tests/kernels/test_kernels_plans.py for the table of shapes and what they run.

The kernel layout is Keras's ``(kh, kw, in_ch, out_ch)``. An im2col row holds one output pixel's
receptive field in ``(kh, kw, C)`` row-major order, so
``cols @ kernel.reshape(kh * kw * C, out_ch)`` is the cross-correlation Keras computes. Padding
follows TensorFlow's rule (the odd extra row or column of ``'same'`` padding goes at the bottom /
right).

GEMMs run in the plain-Python wrappers (``conv2d_forward`` / ``conv2d_backward``), never inside
``njit`` (BLAS inside ``prange`` would oversubscribe the cores); the wrappers take ``threads``, how
many threads their chunks and products may use (``kernels.gemm``). The Numba kernels take
C-contiguous arrays; the wrappers make sure of it.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from . import conv_simd, forms, matmul_simd, winograd
from .activations import (
    _activate_row,
    activate,
    add_activation_forward,
    bias_activation_forward,
    bias_activation_rows,
    column_sums_add,
)
from .codes import EPILOGUE, LINEAR, RELU, SOFTMAX
from .gemm import matmul, matmul_bias, matmuls, row_blocks
from .geometry import conv_geometry, padding_amounts  # noqa: F401 (kernels.conv's name too)
from .normalization import batchnorm_moments
from .pooling import (
    avgpool2d_forward,
    first_max4,
    max_2x2_row,
    max_2x2_row_codes,
    max_pool_2x2,
    max_unpool_2x2_row,
    max_unpool_2x2_rows,
    mean_2x2_row,
)
from .simd import BIAS, BIAS_RELU, LANES


@njit(cache=True, parallel=True)
def im2col(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols):
    """cols (N*oh*ow, kh*kw*C) = x (N,H,W,C)'s windows: row (n,i,j), column (p,q,c); 0 = padding."""
    for r in prange(x.shape[0] * out_h):
        _im2col_row(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols[r * out_w :], r)


@njit(cache=True, nogil=True)
def im2col_rows(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols, start, stop):
    """cols ((stop-start)*ow, kh*kw*C) = ``im2col``'s rows for output rows start..stop-1 of N*oh,
    serially (for a caller's threads; cols may be a small buffer reused chunk after chunk)."""
    for r in range(start, stop):
        _im2col_row(
            x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols[(r - start) * out_w :], r
        )


@njit(cache=True)
def _im2col_row(x, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, cols, r):
    """cols[:ow] = the im2col rows of output row r = n * oh + i."""
    _, h, w, c = x.shape
    run = kw * c  # taps (p, 0..kw-1) are one contiguous run in both x's row and the cols row
    n = r // out_h
    h0 = (r % out_h) * sh - pad_top
    img = x[n].reshape(h, w * c)
    for ow in range(out_w):
        row = cols[ow]
        w0 = ow * sw - pad_left
        lo = max(0, -w0)  # first in-bounds tap column
        hi_q = min(kw, w - w0)  # one past the last in-bounds tap column
        for p in range(kh):
            hi = h0 + p
            dst = row[p * run : (p + 1) * run]
            if hi < 0 or hi >= h or hi_q <= lo:
                for t in range(run):
                    dst[t] = 0
                continue
            # views indexed from 0 by the loop variable: a computed index would cost a
            # negative-index check per element and keep the copy from vectorizing
            src = img[hi, (w0 + lo) * c : (w0 + hi_q) * c]
            if run == 9 and lo == 0 and hi_q == kw:  # 3x3 on RGB, all inside
                _copy9(dst, src)
                continue
            inside = dst[lo * c : hi_q * c]
            for t in range(lo * c):
                dst[t] = 0
            for t in range((hi_q - lo) * c):
                inside[t] = src[t]
            for t in range(hi_q * c, run):
                dst[t] = 0


@njit(cache=True, inline="always")
def _copy9(dst, src):
    """dst[:9] = src[:9], unrolled: a loop of 9 spent more on its set-up than on copying."""
    dst[0], dst[1], dst[2] = src[0], src[1], src[2]
    dst[3], dst[4], dst[5] = src[3], src[4], src[5]
    dst[6], dst[7], dst[8] = src[6], src[7], src[8]


@njit(cache=True, parallel=True)
def col2im(dcols, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx):
    """dx (N,H,W,C) = im2col's adjoint of dcols (N*oh*ow, kh*kw*C); overwritten, overlaps add."""
    pixels = out_h * out_w
    for n in prange(dx.shape[0]):
        _col2im_image(dcols[n * pixels :], kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx, n)


@njit(cache=True, nogil=True)
def col2im_images(dcols, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx, start, stop):
    """``col2im`` for images start..stop-1 only, from dcols ((stop-start)*oh*ow, kh*kw*C) holding
    just their rows, serially (for a caller's threads)."""
    pixels = out_h * out_w
    for n in range(start, stop):
        _col2im_image(
            dcols[(n - start) * pixels :], kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx, n
        )


@njit(cache=True)
def _col2im_image(dcols, kh, kw, sh, sw, pad_top, pad_left, out_h, out_w, dx, n):
    """dx[n] from dcols[:oh*ow], its rows."""
    _, h, w, c = dx.shape
    run = kw * c
    img = dx[n].reshape(h, w * c)
    img[:, :] = 0
    for oh in range(out_h):
        h0 = oh * sh - pad_top
        for ow in range(out_w):
            row = dcols[oh * out_w + ow]
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
                # views indexed by the loop variable: a computed index would cost a
                # negative-index check per element and keep the loop from vectorizing
                dst = img[hi, d0 : d0 + length]
                src = row[p * run + lo * c : p * run + lo * c + length]
                for t in range(length):
                    dst[t] += src[t]


# Fused multiply-adds: without this LLVM keeps each product and sum apart (one rounding fewer).
_CONTRACT = {"contract"}

# Direct kernels measured 1.5x faster than tiled im2col + GEMM at 9 taps (3x3 on one channel);
# at 27 taps (3x3 on RGB) the generic direct loops are 1.1-1.3x slower than the GEMM path, so only
# the forward of a 3x3 stride-1 RGB kernel runs direct, in its own unrolled kernel.
DIRECT_MAX_TAPS = 16


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_direct(x, kernel, bias, sh, sw, pad_top, pad_left, code, out):
    """out (N,oh,ow,F) = act(x (N,H,W,C) conv kernel (kh,kw,C,F) + bias (F,) or (0,)), no im2col."""
    out_h = out.shape[1]
    for r in prange(x.shape[0] * out_h):
        n = r // out_h
        h0 = (r % out_h) * sh - pad_top
        _direct_conv_row(x[n], kernel, bias, h0, sw, pad_left, code, out[n, r % out_h])


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_direct_max_pool(
    x, kernel, bias, sh, sw, pad_top, pad_left, code, out_w, out, codes, average=False
):
    """out (N,oh//2,ow//2,F) = 2x2 stride-2 'valid' max pool of ``conv2d_direct``'s output
    (N,oh,ow,F), whose ow is ``out_w``, row pair by row pair: its rows never leave the cache.
    codes (same shape, uint8) gets where each maximum was (``max_2x2_row_codes``) unless empty.
    With ``average``, the 2x2 mean instead (codes unread), for any activation code."""
    pooled_h = out.shape[1]
    for r in prange(x.shape[0] * pooled_h):
        n, p = r // pooled_h, r % pooled_h
        rows = np.empty((2, out_w, kernel.shape[3]), dtype=out.dtype)
        for k in range(2):
            h0 = (2 * p + k) * sh - pad_top
            _direct_conv_row(x[n], kernel, bias, h0, sw, pad_left, code, rows[k])
            if code not in EPILOGUE:  # the direct rows apply EPILOGUE's codes only
                conv_simd.activate_pixels(rows[k], bias, code)
        if average:
            mean_2x2_row(rows[0], rows[1], out[n, p])
        elif codes.shape[0] == 0:
            max_2x2_row(rows[0], rows[1], out[n, p])
        else:
            max_2x2_row_codes(rows[0], rows[1], out[n, p], codes[n, p])


# The grey and RGB 3x3 stride-1 forms of conv2d_direct_max_pool and of the pooled kernel gradient
# (linear or relu): four outputs per pooled pixel from one 4x4 patch. Kernels of their own, so a
# model compiles the rows it runs only (both in one kernel put 8 s on seed_cnn's cold first step).
@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_grey_3x3_max_pool(x, k9, bias, pad_top, pad_left, relu, out, codes):
    """``conv2d_direct_max_pool`` of a 3x3 stride-1 kernel k9 (9,F) on x (N,H,W,1), bias (F,),
    linear or relu: out (N,oh//2,ow//2,F) and codes (same shape, unless empty)."""
    for r in prange(x.shape[0] * out.shape[1]):
        n, p = r // out.shape[1], r % out.shape[1]
        _pool_row_grey_3x3(x[n], k9, bias, 2 * p - pad_top, pad_left, relu, out, codes, n, p)


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_rgb_3x3_max_pool(x, k27, bias, pad_top, pad_left, relu, out, codes):
    """``conv2d_grey_3x3_max_pool`` on x (N,H,W,3), k27 (27,F) in (row, column, channel) order."""
    for r in prange(x.shape[0] * out.shape[1]):
        n, p = r // out.shape[1], r % out.shape[1]
        _pool_row_rgb_3x3(x[n], k27, bias, 2 * p - pad_top, pad_left, relu, out, codes, n, p)


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_grey_3x3_dkernel_max_pooled(x, grad, codes, pad_top, pad_left, partial):
    """partial (B,9,F): the kernel gradient of ``conv2d_grey_3x3_max_pool`` from grad
    (N,oh//2,ow//2,F) at the maxima ``codes`` marks, summed per block of pooled rows."""
    rows, blocks = x.shape[0] * grad.shape[1], partial.shape[0]
    for b in prange(blocks):
        partial[b] = 0
        for r in range(b * rows // blocks, (b + 1) * rows // blocks):
            n, p = r // grad.shape[1], r % grad.shape[1]
            _dkernel_pool_row_grey_3x3(
                x[n], grad[n, p], codes[n, p], 2 * p - pad_top, pad_left, partial[b]
            )


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_rgb_3x3_dkernel_max_pooled(x, grad, codes, pad_top, pad_left, partial):
    """``conv2d_grey_3x3_dkernel_max_pooled`` on x (N,H,W,3), partial (B,27,F)."""
    rows, blocks = x.shape[0] * grad.shape[1], partial.shape[0]
    for b in prange(blocks):
        partial[b] = 0
        masked = np.empty((4, grad.shape[3]), dtype=grad.dtype)
        for r in range(b * rows // blocks, (b + 1) * rows // blocks):
            n, p = r // grad.shape[1], r % grad.shape[1]
            _dkernel_pool_row_rgb_3x3(
                x[n], grad[n, p], codes[n, p], 2 * p - pad_top, pad_left, partial[b], masked
            )


# Inlined in Numba's IR, not called: a row function called from the two kernels (one more level of
# linked code for LLVM to optimize) made their first compile 1.5x slower.
@njit(cache=True, inline="always")
def _direct_conv_row(img, kernel, bias, h0, sw, pad_left, code, orow):
    """orow (ow,F) = act(bias + img (H,W,C)'s windows from row h0 conv kernel (kh,kw,C,F))."""
    taps = kernel.reshape(-1, kernel.shape[3])  # (taps, F); used when there are 9 or 27
    unrolled = kernel.shape[0] == kernel.shape[1] == 3 and bias.shape[0] > 0
    if unrolled and kernel.shape[2] == 1:
        _direct_row_grey_3x3(img, taps, bias, h0, sw, pad_left, code == RELU, orow)
    elif unrolled and kernel.shape[2] == 3 and sw == 1:
        _direct_row_rgb_3x3(img, taps, bias, h0, pad_left, code == RELU, orow)
    else:
        unrolled = False
        _direct_row(img, kernel, bias, h0, sw, pad_left, orow)
    if not (unrolled and code == RELU):  # the unrolled rows apply relu themselves
        for ow in range(orow.shape[0]):
            _activate_row(orow[ow], code)


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_direct_dkernel(x, grad, sh, sw, pad_top, pad_left, partial):
    """partial (B,kh,kw,C,F): for each of B blocks of output rows, the sum over the block of
    x (N,H,W,C)'s windows times grad (N,oh,ow,F); dkernel is partial.sum(0)."""
    out_h = grad.shape[1]
    rows = x.shape[0] * out_h
    blocks = partial.shape[0]
    grey_3x3 = partial.shape[1] == partial.shape[2] == 3 and partial.shape[3] == 1
    for b in prange(blocks):
        acc = partial[b]
        acc[...] = 0
        acc9 = acc.reshape(-1, acc.shape[3])  # (taps, F); used when there are 9
        for r in range(b * rows // blocks, (b + 1) * rows // blocks):
            n = r // out_h
            h0 = (r % out_h) * sh - pad_top
            _dkernel_row_any(x[n], grad[n, r % out_h], h0, sw, pad_left, grey_3x3, acc, acc9)


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_direct_dkernel_max_pooled(x, grad, codes, sh, sw, pad_top, pad_left, out_w, partial):
    """``conv2d_direct_dkernel`` given the gradient of the conv's output through a 2x2 max pool:
    grad (N,oh//2,ow//2,F) at the maxima ``codes`` marks (``max_2x2_row_codes``), ow = out_w.
    Each block unpools its output rows one at a time into a row that stays in cache."""
    pooled_h = grad.shape[1]
    rows = x.shape[0] * pooled_h  # pairs of output rows; a last odd one has no gradient
    blocks = partial.shape[0]
    grey_3x3 = partial.shape[1] == partial.shape[2] == 3 and partial.shape[3] == 1
    for b in prange(blocks):
        acc = partial[b]
        acc[...] = 0
        acc9 = acc.reshape(-1, acc.shape[3])  # (taps, F); used when there are 9
        grow = np.empty((out_w, grad.shape[3]), dtype=grad.dtype)
        for r in range(b * rows // blocks, (b + 1) * rows // blocks):
            n, p = r // pooled_h, r % pooled_h
            for k in range(2):
                max_unpool_2x2_row(grad[n, p], codes[n, p], k, grow)
                h0 = (2 * p + k) * sh - pad_top
                _dkernel_row_any(x[n], grow, h0, sw, pad_left, grey_3x3, acc, acc9)


@njit(cache=True, inline="always")
def _dkernel_row_any(img, grow, h0, sw, pad_left, grey_3x3, acc, acc9):
    """acc (kh,kw,C,F) += img's windows for output row h0.. times grow (ow,F); acc9 is acc as
    (taps, F), which the unrolled grey 3x3 row takes."""
    if grey_3x3:
        _dkernel_row_grey_3x3(img, grow, h0, sw, pad_left, acc9)
    else:
        _dkernel_row(img, grow, h0, sw, pad_left, acc)


# The row functions are called, not inlined, and index with loop variables on views (a computed
# flat index costs a negative-index check per element): so their channel loops vectorize.
@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _direct_row(img, kernel, bias, h0, sw, pad_left, orow):
    """orow (ow,F) = bias + sum over taps of img (H,W,C)'s row h0.. window times kernel."""
    h, w, c = img.shape
    kh, kw, _, f = kernel.shape
    for ow in range(orow.shape[0]):
        dst = orow[ow]
        for j in range(f):
            dst[j] = bias[j] if bias.shape[0] > 0 else 0
    for p in range(kh):
        hi = h0 + p
        if hi < 0 or hi >= h:
            continue
        for q in range(kw):
            lo, hi_w = _tap_columns(q, sw, pad_left, w, orow.shape[0])
            for ch in range(c):
                taps = kernel[p, q, ch]
                for ow in range(lo, hi_w):
                    v = img[hi, ow * sw - pad_left + q, ch]
                    dst = orow[ow]
                    for j in range(f):
                        dst[j] += v * taps[j]


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _direct_row_grey_3x3(img, k9, bias, h0, sw, pad_left, relu, orow):
    """``_direct_row`` for a 3x3 kernel on one channel (a model's first layer on grey images),
    k9 (9, F), and relu applied too if ``relu``: the 9 taps gathered once per pixel, then one
    fused loop over the filters, which halved the layer's time (the generic row loops per tap)."""
    # Rows by index: unpacked with `= k9` they lose their C layout and the loop stops vectorizing
    # (measured 2-3x slower).
    k0, k1, k2, k3, k4, k5, k6, k7, k8 = (
        k9[0],
        k9[1],
        k9[2],
        k9[3],
        k9[4],
        k9[5],
        k9[6],
        k9[7],
        k9[8],
    )
    zero = orow.dtype.type(0)
    for ow in range(orow.shape[0]):
        v0, v1, v2, v3, v4, v5, v6, v7, v8 = _grey_3x3_window(img, h0, ow * sw - pad_left)
        dst = orow[ow]
        for j in range(dst.shape[0]):
            z = (
                bias[j] + v0 * k0[j] + v1 * k1[j] + v2 * k2[j] + v3 * k3[j] + v4 * k4[j]
                + v5 * k5[j] + v6 * k6[j] + v7 * k7[j] + v8 * k8[j]
            )  # fmt: skip
            dst[j] = zero if relu and z < zero else z


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _direct_row_rgb_3x3(img, k27, bias, h0, pad_left, relu, orow):
    """``_direct_row`` for a 3x3 stride-1 kernel on three channels (a model's first layer on
    colour images), k27 (27, F), and relu applied too if ``relu``: inside the image, one fused
    loop over the filters sums all 27 taps (1.4-1.7x faster than im2col + GEMM, whose K = 27 is
    too thin); windows that cross the border take the generic loops."""
    h, w = img.shape[0], img.shape[1]
    zero = orow.dtype.type(0)
    rows_inside = h0 >= 0 and h0 + 3 <= h
    for ow in range(orow.shape[0]):
        dst = orow[ow]
        w0 = ow - pad_left
        if rows_inside and w0 >= 0 and w0 + 3 <= w:
            top, middle, bottom = img[h0], img[h0 + 1], img[h0 + 2]
            a0, a1, a2 = top[w0], top[w0 + 1], top[w0 + 2]
            b0, b1, b2 = middle[w0], middle[w0 + 1], middle[w0 + 2]
            c0, c1, c2 = bottom[w0], bottom[w0 + 1], bottom[w0 + 2]
            for j in range(dst.shape[0]):
                z = bias[j]
                z += a0[0] * k27[0, j] + a0[1] * k27[1, j] + a0[2] * k27[2, j]
                z += a1[0] * k27[3, j] + a1[1] * k27[4, j] + a1[2] * k27[5, j]
                z += a2[0] * k27[6, j] + a2[1] * k27[7, j] + a2[2] * k27[8, j]
                z += b0[0] * k27[9, j] + b0[1] * k27[10, j] + b0[2] * k27[11, j]
                z += b1[0] * k27[12, j] + b1[1] * k27[13, j] + b1[2] * k27[14, j]
                z += b2[0] * k27[15, j] + b2[1] * k27[16, j] + b2[2] * k27[17, j]
                z += c0[0] * k27[18, j] + c0[1] * k27[19, j] + c0[2] * k27[20, j]
                z += c1[0] * k27[21, j] + c1[1] * k27[22, j] + c1[2] * k27[23, j]
                z += c2[0] * k27[24, j] + c2[1] * k27[25, j] + c2[2] * k27[26, j]
                dst[j] = zero if relu and z < zero else z
            continue
        for j in range(dst.shape[0]):
            dst[j] = bias[j]
        for p in range(3):
            hi = h0 + p
            if hi < 0 or hi >= h:
                continue
            for q in range(3):
                wi = w0 + q
                if wi < 0 or wi >= w:
                    continue
                src = img[hi, wi]
                for ch in range(3):
                    tap = k27[9 * p + 3 * q + ch]
                    v = src[ch]
                    for j in range(dst.shape[0]):
                        dst[j] += v * tap[j]
        if relu:
            for j in range(dst.shape[0]):
                dst[j] = zero if dst[j] < zero else dst[j]


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _dkernel_row_grey_3x3(img, grow, h0, sw, pad_left, acc9):
    """``_dkernel_row`` for a 3x3 kernel on one channel, acc9 (9, F): one loop over the filters
    per pixel instead of one per tap."""
    # Rows by index: unpacked with `= acc9` they lose their C layout and the loop stops vectorizing
    # (measured 2-3x slower).
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = (
        acc9[0],
        acc9[1],
        acc9[2],
        acc9[3],
        acc9[4],
        acc9[5],
        acc9[6],
        acc9[7],
        acc9[8],
    )
    for ow in range(grow.shape[0]):
        v0, v1, v2, v3, v4, v5, v6, v7, v8 = _grey_3x3_window(img, h0, ow * sw - pad_left)
        g = grow[ow]
        for j in range(g.shape[0]):
            gj = g[j]
            a0[j] += v0 * gj
            a1[j] += v1 * gj
            a2[j] += v2 * gj
            a3[j] += v3 * gj
            a4[j] += v4 * gj
            a5[j] += v5 * gj
            a6[j] += v6 * gj
            a7[j] += v7 * gj
            a8[j] += v8 * gj


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _pool_row_grey_3x3(img, k9, bias, h0, pad_left, relu, out, codes, n, p):
    """out[n, p] (ow//2,F) = the 2x2 max pools of a 3x3 stride-1 conv's output rows h0 and h0+1
    on one channel, k9 (9,F), bias (F,), relu if ``relu``, and codes[n, p] where each maximum was
    (``pooling.max_2x2_row_codes``'s codes) unless codes is empty. Each pooled pixel's four
    outputs come from one 4x4 patch in one loop over the filters, each tap loaded once for all
    four: 2.5x faster than the conv's rows followed by the pool."""
    # Rows by index: unpacked with `= k9` they lose their C layout and the loop stops vectorizing.
    k0, k1, k2, k3, k4, k5, k6, k7, k8 = (
        k9[0], k9[1], k9[2], k9[3], k9[4], k9[5], k9[6], k9[7], k9[8],
    )  # fmt: skip
    orow = out[n, p]
    zero = orow.dtype.type(0)
    for q in range(orow.shape[0]):
        patch = _grey_4x4_patch(img, h0, 2 * q - pad_left)
        o = orow[q]
        if codes.shape[0] == 0:
            for j in range(o.shape[0]):
                taps = (k0[j], k1[j], k2[j], k3[j], k4[j], k5[j], k6[j], k7[j], k8[j])
                o[j] = _pooled(_quad_outputs(patch, taps, bias[j]), relu, zero)[0]
            continue
        crow = codes[n, p, q]
        for j in range(o.shape[0]):  # two stores in one loop: it still vectorizes, measured
            taps = (k0[j], k1[j], k2[j], k3[j], k4[j], k5[j], k6[j], k7[j], k8[j])
            o[j], crow[j] = _pooled(_quad_outputs(patch, taps, bias[j]), relu, zero)


@njit(cache=True, inline="always")
def _pooled(outputs, relu, zero):
    """(maximum, place as ``first_max4``) of a pool window's four conv outputs, relu first if
    ``relu``: the first maximum of the relu's outputs, as the layers unfused."""
    z00, z01, z10, z11 = outputs
    if relu:
        z00, z01, z10, z11 = max(z00, zero), max(z01, zero), max(z10, zero), max(z11, zero)
    return first_max4(z00, z01, z10, z11)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _pool_row_rgb_3x3(img, k27, bias, h0, pad_left, relu, out, codes, n, p):
    """``_pool_row_grey_3x3`` on three channels, k27 (27,F) in (row, column, channel) order:
    108 multiply-adds per filter and pooled pixel from one 4x4x3 patch, each tap loaded once."""
    # Rows by index: unpacked with `= k27` they lose their C layout and the loop stops vectorizing.
    (
        t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t16, t17, t18, t19,
        t20, t21, t22, t23, t24, t25, t26,
    ) = (
        k27[0], k27[1], k27[2], k27[3], k27[4], k27[5], k27[6], k27[7], k27[8], k27[9], k27[10],
        k27[11], k27[12], k27[13], k27[14], k27[15], k27[16], k27[17], k27[18], k27[19], k27[20],
        k27[21], k27[22], k27[23], k27[24], k27[25], k27[26],
    )  # fmt: skip
    window = np.empty((4, 4, 3), dtype=img.dtype)
    orow = out[n, p]
    zero = orow.dtype.type(0)
    for q in range(orow.shape[0]):
        patch = _rgb_4x4_patch(img, h0, 2 * q - pad_left, window)
        o = orow[q]
        if codes.shape[0] == 0:
            for j in range(o.shape[0]):
                taps = (
                    t0[j], t1[j], t2[j], t3[j], t4[j], t5[j], t6[j], t7[j], t8[j], t9[j], t10[j],
                    t11[j], t12[j], t13[j], t14[j], t15[j], t16[j], t17[j], t18[j], t19[j], t20[j],
                    t21[j], t22[j], t23[j], t24[j], t25[j], t26[j],
                )  # fmt: skip
                o[j] = _pooled(_quad_outputs_rgb(patch, taps, bias[j]), relu, zero)[0]
            continue
        crow = codes[n, p, q]
        for j in range(o.shape[0]):
            taps = (
                t0[j], t1[j], t2[j], t3[j], t4[j], t5[j], t6[j], t7[j], t8[j], t9[j], t10[j],
                t11[j], t12[j], t13[j], t14[j], t15[j], t16[j], t17[j], t18[j], t19[j], t20[j],
                t21[j], t22[j], t23[j], t24[j], t25[j], t26[j],
            )  # fmt: skip
            o[j], crow[j] = _pooled(_quad_outputs_rgb(patch, taps, bias[j]), relu, zero)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _dkernel_pool_row_rgb_3x3(img, grow, crow, h0, pad_left, acc27, masked):
    """``_dkernel_pool_row_grey_3x3`` on three channels, acc27 (27,F) in (row, column, channel)
    order: per pooled pixel the gradient at each of its four outputs (masked (4,F), scratch),
    then one loop over the filters per tap (27 stores in one loop would run scalar)."""
    (
        a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19,
        a20, a21, a22, a23, a24, a25, a26,
    ) = (
        acc27[0], acc27[1], acc27[2], acc27[3], acc27[4], acc27[5], acc27[6], acc27[7], acc27[8],
        acc27[9], acc27[10], acc27[11], acc27[12], acc27[13], acc27[14], acc27[15], acc27[16],
        acc27[17], acc27[18], acc27[19], acc27[20], acc27[21], acc27[22], acc27[23], acc27[24],
        acc27[25], acc27[26],
    )  # fmt: skip
    g00, g01, g10, g11 = masked[0], masked[1], masked[2], masked[3]
    window = np.empty((4, 4, 3), dtype=img.dtype)
    zero = acc27.dtype.type(0)
    for q in range(grow.shape[0]):
        patch = _rgb_4x4_patch(img, h0, 2 * q - pad_left, window)
        g, c = grow[q], crow[q]
        for j in range(g.shape[0]):
            g00[j] = g[j] if c[j] == 0 else zero
        for j in range(g.shape[0]):
            g01[j] = g[j] if c[j] == 1 else zero
        for j in range(g.shape[0]):
            g10[j] = g[j] if c[j] == 2 else zero
        for j in range(g.shape[0]):
            g11[j] = g[j] if c[j] == 3 else zero
        v00, v01, v10, v11 = patch[0], patch[3], patch[12], patch[15]
        for j in range(g00.shape[0]):
            a0[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[1], patch[4], patch[13], patch[16]
        for j in range(g00.shape[0]):
            a1[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[2], patch[5], patch[14], patch[17]
        for j in range(g00.shape[0]):
            a2[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[3], patch[6], patch[15], patch[18]
        for j in range(g00.shape[0]):
            a3[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[4], patch[7], patch[16], patch[19]
        for j in range(g00.shape[0]):
            a4[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[5], patch[8], patch[17], patch[20]
        for j in range(g00.shape[0]):
            a5[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[6], patch[9], patch[18], patch[21]
        for j in range(g00.shape[0]):
            a6[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[7], patch[10], patch[19], patch[22]
        for j in range(g00.shape[0]):
            a7[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[8], patch[11], patch[20], patch[23]
        for j in range(g00.shape[0]):
            a8[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[12], patch[15], patch[24], patch[27]
        for j in range(g00.shape[0]):
            a9[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[13], patch[16], patch[25], patch[28]
        for j in range(g00.shape[0]):
            a10[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[14], patch[17], patch[26], patch[29]
        for j in range(g00.shape[0]):
            a11[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[15], patch[18], patch[27], patch[30]
        for j in range(g00.shape[0]):
            a12[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[16], patch[19], patch[28], patch[31]
        for j in range(g00.shape[0]):
            a13[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[17], patch[20], patch[29], patch[32]
        for j in range(g00.shape[0]):
            a14[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[18], patch[21], patch[30], patch[33]
        for j in range(g00.shape[0]):
            a15[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[19], patch[22], patch[31], patch[34]
        for j in range(g00.shape[0]):
            a16[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[20], patch[23], patch[32], patch[35]
        for j in range(g00.shape[0]):
            a17[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[24], patch[27], patch[36], patch[39]
        for j in range(g00.shape[0]):
            a18[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[25], patch[28], patch[37], patch[40]
        for j in range(g00.shape[0]):
            a19[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[26], patch[29], patch[38], patch[41]
        for j in range(g00.shape[0]):
            a20[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[27], patch[30], patch[39], patch[42]
        for j in range(g00.shape[0]):
            a21[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[28], patch[31], patch[40], patch[43]
        for j in range(g00.shape[0]):
            a22[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[29], patch[32], patch[41], patch[44]
        for j in range(g00.shape[0]):
            a23[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[30], patch[33], patch[42], patch[45]
        for j in range(g00.shape[0]):
            a24[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[31], patch[34], patch[43], patch[46]
        for j in range(g00.shape[0]):
            a25[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11
        v00, v01, v10, v11 = patch[32], patch[35], patch[44], patch[47]
        for j in range(g00.shape[0]):
            a26[j] += g00[j] * v00 + g01[j] * v01 + g10[j] * v10 + g11[j] * v11


@njit(cache=True, inline="always")
def _rgb_4x4_patch(img, h0, w0, window):
    """The 48 values of img (H, W, 3) from (h0, w0), row by row, pixel by pixel; 0 in the
    padding (through window (4, 4, 3), scratch)."""
    h, w = img.shape[0], img.shape[1]
    if not (h0 >= 0 and h0 + 4 <= h and w0 >= 0 and w0 + 4 <= w):
        for r in range(4):
            for c in range(4):
                inside = 0 <= h0 + r < h and 0 <= w0 + c < w
                for ch in range(3):
                    window[r, c, ch] = img[h0 + r, w0 + c, ch] if inside else 0
        img, h0, w0 = window, 0, 0
    r0, r1 = img[h0, w0 : w0 + 4], img[h0 + 1, w0 : w0 + 4]
    r2, r3 = img[h0 + 2, w0 : w0 + 4], img[h0 + 3, w0 : w0 + 4]
    return (
        r0[0, 0], r0[0, 1], r0[0, 2], r0[1, 0], r0[1, 1], r0[1, 2],
        r0[2, 0], r0[2, 1], r0[2, 2], r0[3, 0], r0[3, 1], r0[3, 2],
        r1[0, 0], r1[0, 1], r1[0, 2], r1[1, 0], r1[1, 1], r1[1, 2],
        r1[2, 0], r1[2, 1], r1[2, 2], r1[3, 0], r1[3, 1], r1[3, 2],
        r2[0, 0], r2[0, 1], r2[0, 2], r2[1, 0], r2[1, 1], r2[1, 2],
        r2[2, 0], r2[2, 1], r2[2, 2], r2[3, 0], r2[3, 1], r2[3, 2],
        r3[0, 0], r3[0, 1], r3[0, 2], r3[1, 0], r3[1, 1], r3[1, 2],
        r3[2, 0], r3[2, 1], r3[2, 2], r3[3, 0], r3[3, 1], r3[3, 2],
    )  # fmt: skip


@njit(cache=True, inline="always")
def _quad_outputs_rgb(patch, taps, bias):
    """``_quad_outputs`` on three channels: a 3x3 kernel's 27 taps (row, column, channel) over a
    4x4 patch of 48 values (``_rgb_4x4_patch``)."""
    return (
        bias
        + patch[0] * taps[0] + patch[1] * taps[1] + patch[2] * taps[2]
        + patch[3] * taps[3] + patch[4] * taps[4] + patch[5] * taps[5]
        + patch[6] * taps[6] + patch[7] * taps[7] + patch[8] * taps[8]
        + patch[12] * taps[9] + patch[13] * taps[10] + patch[14] * taps[11]
        + patch[15] * taps[12] + patch[16] * taps[13] + patch[17] * taps[14]
        + patch[18] * taps[15] + patch[19] * taps[16] + patch[20] * taps[17]
        + patch[24] * taps[18] + patch[25] * taps[19] + patch[26] * taps[20]
        + patch[27] * taps[21] + patch[28] * taps[22] + patch[29] * taps[23]
        + patch[30] * taps[24] + patch[31] * taps[25] + patch[32] * taps[26],
        bias
        + patch[3] * taps[0] + patch[4] * taps[1] + patch[5] * taps[2]
        + patch[6] * taps[3] + patch[7] * taps[4] + patch[8] * taps[5]
        + patch[9] * taps[6] + patch[10] * taps[7] + patch[11] * taps[8]
        + patch[15] * taps[9] + patch[16] * taps[10] + patch[17] * taps[11]
        + patch[18] * taps[12] + patch[19] * taps[13] + patch[20] * taps[14]
        + patch[21] * taps[15] + patch[22] * taps[16] + patch[23] * taps[17]
        + patch[27] * taps[18] + patch[28] * taps[19] + patch[29] * taps[20]
        + patch[30] * taps[21] + patch[31] * taps[22] + patch[32] * taps[23]
        + patch[33] * taps[24] + patch[34] * taps[25] + patch[35] * taps[26],
        bias
        + patch[12] * taps[0] + patch[13] * taps[1] + patch[14] * taps[2]
        + patch[15] * taps[3] + patch[16] * taps[4] + patch[17] * taps[5]
        + patch[18] * taps[6] + patch[19] * taps[7] + patch[20] * taps[8]
        + patch[24] * taps[9] + patch[25] * taps[10] + patch[26] * taps[11]
        + patch[27] * taps[12] + patch[28] * taps[13] + patch[29] * taps[14]
        + patch[30] * taps[15] + patch[31] * taps[16] + patch[32] * taps[17]
        + patch[36] * taps[18] + patch[37] * taps[19] + patch[38] * taps[20]
        + patch[39] * taps[21] + patch[40] * taps[22] + patch[41] * taps[23]
        + patch[42] * taps[24] + patch[43] * taps[25] + patch[44] * taps[26],
        bias
        + patch[15] * taps[0] + patch[16] * taps[1] + patch[17] * taps[2]
        + patch[18] * taps[3] + patch[19] * taps[4] + patch[20] * taps[5]
        + patch[21] * taps[6] + patch[22] * taps[7] + patch[23] * taps[8]
        + patch[27] * taps[9] + patch[28] * taps[10] + patch[29] * taps[11]
        + patch[30] * taps[12] + patch[31] * taps[13] + patch[32] * taps[14]
        + patch[33] * taps[15] + patch[34] * taps[16] + patch[35] * taps[17]
        + patch[39] * taps[18] + patch[40] * taps[19] + patch[41] * taps[20]
        + patch[42] * taps[21] + patch[43] * taps[22] + patch[44] * taps[23]
        + patch[45] * taps[24] + patch[46] * taps[25] + patch[47] * taps[26],
    )  # fmt: skip


@njit(cache=True, inline="always")
def _quad_outputs(patch, taps, bias):
    """The 2x2 outputs (top left, top right, bottom left, bottom right) of a 3x3 kernel's taps
    (9) over a 4x4 patch (16 values, row by row) of one channel, plus bias."""
    a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3 = patch
    t0, t1, t2, t3, t4, t5, t6, t7, t8 = taps
    return (
        bias + a0 * t0 + a1 * t1 + a2 * t2 + b0 * t3 + b1 * t4 + b2 * t5 + c0 * t6 + c1 * t7
        + c2 * t8,
        bias + a1 * t0 + a2 * t1 + a3 * t2 + b1 * t3 + b2 * t4 + b3 * t5 + c1 * t6 + c2 * t7
        + c3 * t8,
        bias + b0 * t0 + b1 * t1 + b2 * t2 + c0 * t3 + c1 * t4 + c2 * t5 + d0 * t6 + d1 * t7
        + d2 * t8,
        bias + b1 * t0 + b2 * t1 + b3 * t2 + c1 * t3 + c2 * t4 + c3 * t5 + d1 * t6 + d2 * t7
        + d3 * t8,
    )  # fmt: skip


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _dkernel_pool_row_grey_3x3(img, grow, crow, h0, pad_left, acc9):
    """acc9 (9,F) += the kernel gradient of a 3x3 stride-1 conv on one channel over its output
    rows h0 and h0+1, given as grow (ow//2,F), the gradient of their 2x2 max pool, at the maxima
    crow marks: per pooled pixel one loop over the filters from its 4x4 patch (2.5x faster than
    unpooling the rows first)."""
    t0, t1, t2, t3, t4, t5, t6, t7, t8 = (
        acc9[0], acc9[1], acc9[2], acc9[3], acc9[4], acc9[5], acc9[6], acc9[7], acc9[8],
    )  # fmt: skip
    zero = acc9.dtype.type(0)
    for q in range(grow.shape[0]):
        a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3, d0, d1, d2, d3 = _grey_4x4_patch(
            img, h0, 2 * q - pad_left
        )
        g, c = grow[q], crow[q]
        for j in range(g.shape[0]):
            gj, cj = g[j], c[j]
            g00, g01 = gj if cj == 0 else zero, gj if cj == 1 else zero
            g10, g11 = gj if cj == 2 else zero, gj if cj == 3 else zero
            t0[j] += g00 * a0 + g01 * a1 + g10 * b0 + g11 * b1
            t1[j] += g00 * a1 + g01 * a2 + g10 * b1 + g11 * b2
            t2[j] += g00 * a2 + g01 * a3 + g10 * b2 + g11 * b3
            t3[j] += g00 * b0 + g01 * b1 + g10 * c0 + g11 * c1
            t4[j] += g00 * b1 + g01 * b2 + g10 * c1 + g11 * c2
            t5[j] += g00 * b2 + g01 * b3 + g10 * c2 + g11 * c3
            t6[j] += g00 * c0 + g01 * c1 + g10 * d0 + g11 * d1
            t7[j] += g00 * c1 + g01 * c2 + g10 * d1 + g11 * d2
            t8[j] += g00 * c2 + g01 * c3 + g10 * d2 + g11 * d3


@njit(cache=True, inline="always")
def _grey_4x4_patch(img, h0, w0):
    """The 16 pixels of img (H, W, 1) from (h0, w0), row by row, 0 in the padding."""
    h, w = img.shape[0], img.shape[1]
    if h0 >= 0 and h0 + 4 <= h and w0 >= 0 and w0 + 4 <= w:
        r0, r1 = img[h0, w0 : w0 + 4, 0], img[h0 + 1, w0 : w0 + 4, 0]
        r2, r3 = img[h0 + 2, w0 : w0 + 4, 0], img[h0 + 3, w0 : w0 + 4, 0]
        return (r0[0], r0[1], r0[2], r0[3], r1[0], r1[1], r1[2], r1[3],
                r2[0], r2[1], r2[2], r2[3], r3[0], r3[1], r3[2], r3[3])  # fmt: skip
    return (
        _pixel(img, h0, w0), _pixel(img, h0, w0 + 1), _pixel(img, h0, w0 + 2),
        _pixel(img, h0, w0 + 3), _pixel(img, h0 + 1, w0), _pixel(img, h0 + 1, w0 + 1),
        _pixel(img, h0 + 1, w0 + 2), _pixel(img, h0 + 1, w0 + 3), _pixel(img, h0 + 2, w0),
        _pixel(img, h0 + 2, w0 + 1), _pixel(img, h0 + 2, w0 + 2), _pixel(img, h0 + 2, w0 + 3),
        _pixel(img, h0 + 3, w0), _pixel(img, h0 + 3, w0 + 1), _pixel(img, h0 + 3, w0 + 2),
        _pixel(img, h0 + 3, w0 + 3),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _grey_3x3_window(img, h0, w0):
    """The 9 pixels of img (H, W, 1) from (h0, w0), row by row, 0 in the padding."""
    return (
        _pixel(img, h0, w0), _pixel(img, h0, w0 + 1), _pixel(img, h0, w0 + 2),
        _pixel(img, h0 + 1, w0), _pixel(img, h0 + 1, w0 + 1), _pixel(img, h0 + 1, w0 + 2),
        _pixel(img, h0 + 2, w0), _pixel(img, h0 + 2, w0 + 1), _pixel(img, h0 + 2, w0 + 2),
    )  # fmt: skip


@njit(cache=True, inline="always")
def _pixel(img, hi, wi):
    """img[hi, wi, 0], or 0 in the padding."""
    if 0 <= hi < img.shape[0] and 0 <= wi < img.shape[1]:
        return img[hi, wi, 0]
    return img.dtype.type(0)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _dkernel_row(img, grow, h0, sw, pad_left, acc):
    """acc (kh,kw,C,F) += img (H,W,C)'s windows for output row h0.. times grow (ow,F)."""
    h, w, c = img.shape
    kh, kw, _, f = acc.shape
    for p in range(kh):
        hi = h0 + p
        if hi < 0 or hi >= h:
            continue
        for q in range(kw):
            lo, hi_w = _tap_columns(q, sw, pad_left, w, grow.shape[0])
            for ch in range(c):
                a = acc[p, q, ch]
                for ow in range(lo, hi_w):
                    v = img[hi, ow * sw - pad_left + q, ch]
                    g = grow[ow]
                    for j in range(f):
                        a[j] += v * g[j]


@njit(cache=True, inline="always")
def _tap_columns(q, sw, pad_left, w, out_w):
    """(lo, hi): the output columns whose tap q falls inside the image (0 <= ow*sw-pad+q < w)."""
    lo = 0
    while lo < out_w and lo * sw - pad_left + q < 0:
        lo += 1
    hi = out_w
    while hi > lo and (hi - 1) * sw - pad_left + q >= w:
        hi -= 1
    return lo, hi


# ---- few filters: along the output row ----------------------------------------------------------
# The GEMM and the direct kernels above run their innermost loop over the filters: with fewer than
# FEW_FILTERS (LeNet's 6) most vector lanes idle and a GEMM with N = 6 runs at 2-8 GFLOP/s. These
# run it along an output row instead, filter by filter, on the row's input gathered per channel
# (zero padded, split by stride phase so every loop has unit stride); rows are computed ROW_LANES
# wide so the loops need no scalar remainder. With more than FEW_CHANNELS input channels the
# im2col GEMM (K = kh*kw*C) is faster again.
FEW_FILTERS = 16
FEW_CHANNELS = 4
ROW_LANES = 8
ROW_BLOCKS = 64  # blocks of output rows the parallel loops split into (each has its buffers)


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_rows(x, kernel, bias, sh, sw, pad_top, pad_left, code, out):
    """out (N,oh,ow,F) = act(x (N,H,W,C) conv kernel (kh,kw,C,F) + bias (F,) or (0,)), each
    output row filter by filter along the row (for few filters)."""
    out_h, out_w, filters = out.shape[1], out.shape[2], out.shape[3]
    rows = x.shape[0] * out_h
    blocks = min(rows, ROW_BLOCKS)
    wide = -(-out_w // ROW_LANES) * ROW_LANES
    for b in prange(blocks):
        window = np.empty((sw, wide + (kernel.shape[1] - 1) // sw), dtype=x.dtype)
        acc = np.empty((filters, wide), dtype=x.dtype)
        for r in range(b * rows // blocks, (b + 1) * rows // blocks):
            n, oh = r // out_h, r % out_h
            _rows_conv_row(x[n], kernel, bias, oh * sh - pad_top, sw, pad_left, window, acc)
            _rows_store(acc, code, out[n, oh])


@njit(cache=True, parallel=True, error_model="numpy")
def conv2d_rows_dkernel(x, grad, sh, sw, pad_top, pad_left, partial):
    """partial (B,kh,kw,C,F): for each of B blocks of output rows, the sum over the block of
    x (N,H,W,C)'s windows times grad (N,oh,ow,F), along the rows; dkernel is partial.sum(0)."""
    out_h, out_w, filters = grad.shape[1], grad.shape[2], grad.shape[3]
    rows = x.shape[0] * out_h
    blocks = partial.shape[0]
    wide = -(-out_w // ROW_LANES) * ROW_LANES
    for b in prange(blocks):
        acc = partial[b]
        acc[...] = 0
        window = np.empty((sw, wide + (partial.shape[2] - 1) // sw), dtype=x.dtype)
        grad_t = np.zeros((filters, wide), dtype=grad.dtype)  # the row's grad, transposed
        for r in range(b * rows // blocks, (b + 1) * rows // blocks):
            n, oh = r // out_h, r % out_h
            grow = grad[n, oh]
            for o in range(out_w):
                for j in range(filters):
                    grad_t[j, o] = grow[o, j]
            _rows_dkernel_row(x[n], grad_t, oh * sh - pad_top, sw, pad_left, window, acc)


@njit(cache=True, inline="always")
def _rows_window(img, hi, ch, pad_left, window):
    """window (sw, n)[phase, i] = img[hi, i * sw + phase - pad_left, ch], zero outside the image:
    output column o's tap q reads window[q % sw, o + q // sw]."""
    w = img.shape[1]
    sw = window.shape[0]
    for phase in range(sw):
        for i in range(window.shape[1]):
            wi = i * sw + phase - pad_left
            window[phase, i] = img[hi, wi, ch] if 0 <= wi < w else 0


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _rows_conv_row(img, kernel, bias, h0, sw, pad_left, window, acc):
    """acc (F, wide) = bias + img (H,W,C)'s windows from row h0 conv kernel (kh,kw,C,F)."""
    kh, kw, c, filters = kernel.shape
    wide = acc.shape[1]
    for j in range(filters):
        start = bias[j] if bias.shape[0] > 0 else 0
        for o in range(wide):
            acc[j, o] = start
    for p in range(kh):
        hi = h0 + p
        if hi < 0 or hi >= img.shape[0]:
            continue
        for ch in range(c):
            _rows_window(img, hi, ch, pad_left, window)
            for q in range(kw):
                source = window[q % sw, q // sw :]
                for j in range(filters):
                    tap = kernel[p, q, ch, j]
                    row = acc[j]
                    for o in range(wide):
                        row[o] += tap * source[o]


@njit(cache=True, error_model="numpy")
def _rows_store(acc, code, orow):
    """orow (ow,F) = act(acc (F, wide)), transposed; a softmax over each output pixel's F."""
    out_w, filters = orow.shape
    row_wise = code == SOFTMAX
    if not row_wise:
        for j in range(filters):
            _activate_row(acc[j, :out_w], code)
    for o in range(out_w):
        for j in range(filters):
            orow[o, j] = acc[j, o]
    if row_wise:
        for o in range(out_w):
            _activate_row(orow[o], code)


# Sums along the row: reassociation lets them vectorize (the order of a float sum changes).
@njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _rows_dkernel_row(img, grad_t, h0, sw, pad_left, window, acc):
    """acc (kh,kw,C,F) += img (H,W,C)'s windows from row h0 times grad_t (F, wide)."""
    kh, kw, c, filters = acc.shape
    wide = grad_t.shape[1]
    for p in range(kh):
        hi = h0 + p
        if hi < 0 or hi >= img.shape[0]:
            continue
        for ch in range(c):
            _rows_window(img, hi, ch, pad_left, window)
            for q in range(kw):
                source = window[q % sw, q // sw :]
                for j in range(filters):
                    g = grad_t[j]
                    total = acc.dtype.type(0)
                    for o in range(wide):
                        total += source[o] * g[o]
                    acc[p, q, ch, j] += total


# ---- planning: which algorithm runs each part of a conv of one shape ---------------------------
# DIRECT: Numba loops over the input's windows (no im2col); WINOGRAD: F(2x2, 3x3) (``winograd``);
# IM2COL: im2col rows + GEMM per chunk of output rows (or images), on the caller's threads;
# POINTWISE: a 1x1 stride-1 kernel, one GEMM on x's own rows.
DIRECT, WINOGRAD, IM2COL, POINTWISE = "direct", "winograd", "im2col", "pointwise"
ROWS = "rows"  # few filters: along the output row, filter by filter
SIMD = "simd"  # float32 forward: register-blocked direct conv on SIMD micro-kernels (conv_simd)
# The float32 forward runs SIMD where it measured faster (on Numba's threads, 2 threads, batch
# 32-256). 3x3 stride 1 on 16 to 32 channels 1.2-2.4x over Winograd, and on 48 or more into 16 to
# 32 filters 1.0-1.1x; from 48 channels into more filters Winograd's fewer multiplications win
# (0.5-0.85x) once the conv is worth its transforms: below SIMD_MAX_WINOGRAD_FLOPS SIMD ran
# 1.0-1.4x faster (8x8x64 or 4x4x128 images at batch 32). Where im2col would run, SIMD takes
# any kernel under SIMD_MAX_TAPS taps (5x5 on 6 to 16 channels 2-3.5x), up to SIMD_MAX_ROW_TAPS
# for output rows of at least SIMD_MIN_ROW_PIXELS pixels (3x3 stride 2 on 64 to 128 channels,
# 5x5 on 64: 1.1-1.6x), and any on rows of SIMD_LONG_ROW_PIXELS at stride 1 (7x7 on 64, 5x5 on
# 128: 1.1-1.6x). Short rows leave its 12-pixel blocks part empty: with 256 channels into 4x4 or
# 8x8 outputs the GEMMs ran 1.5-5x faster. A 1x1 stride-1 kernel is one product on x's rows,
# run by ``matmul_simd`` with the bias and relu in its epilogue: from up to 256 channels into 16
# or more filters on SIMD_MIN_POINTWISE_ROWS pixels it ran 1.04-1.2x faster than OpenBLAS's
# GEMM and its epilogue pass (and 1.1-2x faster than conv_simd's rows); from 512 channels, or on
# 200 pixels or fewer, 0.8-1.0x. Into fewer filters (memory-bound, a filter block's lanes left
# empty) and one filter stay on the GEMMs.
SIMD_MAX_WINOGRAD_CHANNELS = 48
SIMD_MAX_WINOGRAD_FILTERS = 32  # or fewer filters, from any number of channels
SIMD_MAX_WINOGRAD_FLOPS = 160_000_000
SIMD_MAX_TAPS = 576
SIMD_MAX_ROW_TAPS = 1600
SIMD_MIN_ROW_PIXELS = 8
SIMD_LONG_ROW_PIXELS = 16
SIMD_MAX_POINTWISE_CHANNELS = 256
SIMD_MIN_POINTWISE_FILTERS = 16
SIMD_MIN_POINTWISE_ROWS = 256
SIMD_MIN_FILTERS = 2
# The float32 backward of a stride-1 kernel (but 1x1) computes its kernel gradient by SIMD
# (``conv_simd.kernel_gradient``, 1.2-2.7x faster than Winograd or im2col for 3x3 and 5x5 on 3
# to 64 channels; on grey images 1.0-1.2x over ROWS, 1.4-4x over DIRECT); where Winograd would
# have run, its input gradient too, as the SIMD conv of grad_z with the flipped kernel (both:
# 1.1-1.6x faster than Winograd's from 16 to 128 channels, 2.9x at 256 on 4x4 images). The
# input gradient of a 1x1 stride-1 kernel into fewer than 16 filters from 16 or more channels,
# a GEMM thin in K, runs as the 1x1 SIMD conv of grad_z (U-Net's last conv, 16 -> 1: 3.3x
# faster; 16 -> 3 1.1x; from 16 filters on par or slower).
# Where im2col would run, the input gradient of a kernel on SIMD_MIN_INPUT_GRADIENT_CHANNELS or
# more channels runs SIMD too (5x5 and 7x7 on 16 to 64 channels 1.35-1.6x; on 3 or 6 channels,
# a filter block's lanes mostly empty, 0.55-0.9x).
SIMD_MIN_INPUT_GRADIENT_CHANNELS = 16
# A strided kernel's gradient runs by SIMD onto SIMD_MIN_STRIDED_GRADIENT_PIXELS or more output
# pixels per image: at batch 32 on 2 threads 3x3 stride 2 onto 16x16 1.7-2x faster than im2col,
# 4x4 onto 16x16 and 7x7 stride 3 onto 19x19 1.4x, 5x5 onto 12x12 1.7x; onto 8x8 (or 8x16)
# 0.65-0.9x (a thread's share of the images too small to pay for its part of the gradient).
# Its input gradient stays on im2col: as stride-1 SIMD convs of grad_z per phase of the input's
# pixels (their taps few, 1 to 4 for 3x3 stride 2), 0.5-1.0x.
SIMD_MIN_STRIDED_GRADIENT_PIXELS = 144
SIMD_GRADIENTS = True  # False: float32 backward plans as float64's (their own tests' paths)


class ConvPlan(NamedTuple):
    """How a conv of one shape runs (``plan_conv2d``), and its geometry."""

    forward: str  # SIMD, DIRECT, ROWS, WINOGRAD, IM2COL or POINTWISE
    dkernel: str  # the kernel gradient: SIMD, DIRECT, ROWS, WINOGRAD, IM2COL or POINTWISE
    dx: str  # the input gradient: SIMD, WINOGRAD, IM2COL or POINTWISE
    quads: bool  # fused with a 2x2 max pool, DIRECT runs the 4x4-patch kernels (see below)
    out_h: int
    out_w: int
    pad_top: int
    pad_left: int


# With a 2x2 max pool, the grey and RGB 3x3 stride-1 direct convs run kernels of their own that
# compute a pooled pixel's four outputs from one 4x4 patch: always for the kernel gradient, for the
# forward with a linear or relu activation only (the activation is applied before the maximum).
QUAD_ACTIVATIONS = (LINEAR, RELU)


def plan_conv2d(
    x_shape, kernel_shape, strides, padding, pooled: bool = False, dtype=np.float32
) -> ConvPlan:
    """The algorithms of a conv of x (N,H,W,C) with kernel (kh,kw,C,F), forward and backward,
    alone or (``pooled``) fused with a 2x2 stride-2 max pool; ValueError if it does not fit.

    A strided 1x1 kernel is planned as the 1x1 stride-1 conv of the pixels it reads, which the
    wrappers run (``_strided_1x1``). The forward of a float32 conv runs SIMD where it measured
    faster (``_simd_wins``: see the SIMD_ constants), fused with a max pool too (but where the
    direct kernels would run). Unpooled, a float32 stride-1 kernel (but 1x1) takes its kernel
    gradient by SIMD, and its input gradient where Winograd would run or im2col from
    SIMD_MIN_INPUT_GRADIENT_CHANNELS channels; a 1x1 one into fewer than 16 filters from 16 or
    more channels its input gradient; a strided one onto SIMD_MIN_STRIDED_GRADIENT_PIXELS or
    more output pixels per image its kernel gradient. Otherwise (float64 too) as follows.

    A kernel with few taps (``kh * kw * C <= DIRECT_MAX_TAPS``, such as a model's first 3x3 layer
    on a grey image) makes a GEMM too thin to pay for im2col: it runs DIRECT, forward and kernel
    gradient. The forward of a 3x3 stride-1 kernel on RGB runs DIRECT too (its kernel gradient
    as well when pooled, from 4x4x3 patches); unpooled, its backward runs im2col + GEMM. A 3x3
    stride-1 kernel on ``winograd.MIN_CHANNELS`` or more channels runs WINOGRAD throughout. The
    input gradient of a DIRECT conv runs im2col + GEMM. Unpooled, a stride-1 kernel with fewer
    than ``FEW_FILTERS`` filters on at most ``FEW_CHANNELS`` channels (but 1x1) runs ROWS,
    forward and kernel gradient (strided, ROWS measured no faster than im2col).
    """
    out_h, out_w, pad_top, pad_left = conv_geometry(x_shape, kernel_shape, strides, padding)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"conv2d: kernel {tuple(kernel_shape[:2])} with strides {tuple(strides)} and padding "
            f"{padding!r} does not fit input of shape {tuple(x_shape)}"
        )
    if _strided_1x1(kernel_shape, strides):  # the stride-1 conv of the pixels it reads
        sampled = (x_shape[0], out_h, out_w, x_shape[3])
        return plan_conv2d(sampled, kernel_shape, (1, 1), "valid", pooled, dtype)
    kh, kw, c, filters = kernel_shape
    stride_1 = tuple(strides) == (1, 1)
    pointwise = kh == kw == 1 and stride_1
    few_taps = kh * kw * c <= DIRECT_MAX_TAPS and not pointwise
    few_filters = filters < FEW_FILTERS and c <= FEW_CHANNELS and stride_1 and not pooled
    few_filters = few_filters and not pointwise  # a 1x1 kernel is one GEMM on x's rows
    rgb_3x3 = (kh, kw, c) == (3, 3, 3) and stride_1
    dx = WINOGRAD if winograd.applies(kernel_shape, strides) else POINTWISE if pointwise else IM2COL
    forward = ROWS if few_filters else DIRECT if few_taps or rgb_3x3 else dx
    dkernel = ROWS if few_filters else DIRECT if few_taps or (rgb_3x3 and pooled) else dx
    if np.dtype(dtype) == np.float32:
        # pooled, the direct 4x4-patch kernels pool in registers: SIMD a pass later. Pooled
        # Winograd gives way to SIMD where unpooled does (measured the same way, 1.05-4.8x)
        simd_pool = forward != DIRECT
        simd_args = (kernel_shape, x_shape[0] * out_h * out_w, out_w, stride_1)
        forward = SIMD if (simd_pool or not pooled) and _simd_wins(*simd_args, forward) else forward
        if SIMD_GRADIENTS and not pooled and stride_1 and dkernel != POINTWISE:
            wide = dx == IM2COL and c >= SIMD_MIN_INPUT_GRADIENT_CHANNELS
            dkernel, dx = SIMD, SIMD if dx == WINOGRAD or wide else dx
        strided = SIMD_GRADIENTS and not pooled and not stride_1
        if strided and out_h * out_w >= SIMD_MIN_STRIDED_GRADIENT_PIXELS:
            dkernel = SIMD
        # dx = grad_z (.., F) @ kernel.T: a GEMM thin in K below 16 filters, a 1x1 conv by SIMD
        thin = filters < SIMD_MIN_POINTWISE_FILTERS <= c
        dx = SIMD if SIMD_GRADIENTS and not pooled and pointwise and thin else dx
    quads = pooled and (kh, kw, c) in ((3, 3, 1), (3, 3, 3)) and stride_1
    return ConvPlan(forward, dkernel, dx, quads, out_h, out_w, pad_top, pad_left)


def _strided_1x1(kernel_shape, strides) -> bool:
    """A 1x1 kernel with a stride: it reads every stride-th pixel and pads none, so it runs as
    the 1x1 stride-1 conv of those pixels (``_sampled``; ResNet's shortcuts: 3-10x faster than
    its windows by im2col)."""
    return tuple(kernel_shape[:2]) == (1, 1) and tuple(strides) != (1, 1)


def _sampled(x, strides):
    """The pixels (N, ceil(H/sh), ceil(W/sw), C) a strided 1x1 kernel reads, contiguous."""
    return np.ascontiguousarray(x[:, :: strides[0], :: strides[1]])


def _unsampled(d_sampled, strides, x_shape, dx=None):
    """dx (x_shape, made if None) = d_sampled at the pixels a strided 1x1 kernel read, 0
    elsewhere; None for no d_sampled."""
    if d_sampled is None:
        return None
    dx = np.empty(x_shape, d_sampled.dtype) if dx is None else dx
    dx[...] = 0
    dx[:, :: strides[0], :: strides[1]] = d_sampled
    return dx


def _simd_wins(kernel_shape, outputs: int, out_w: int, stride_1: bool, forward: str) -> bool:
    """Whether the float32 forward of this kernel (kh,kw,C,F) into ``outputs`` pixels (N*oh*ow)
    in rows of ``out_w`` runs SIMD rather than ``forward`` (see the SIMD_ constants)."""
    kh, kw, c, filters = kernel_shape
    if filters < SIMD_MIN_FILTERS:
        return False
    if forward == WINOGRAD:
        small = 2 * outputs * kh * kw * c * filters < SIMD_MAX_WINOGRAD_FLOPS
        return small or c < SIMD_MAX_WINOGRAD_CHANNELS or filters <= SIMD_MAX_WINOGRAD_FILTERS
    if forward == POINTWISE:
        wide = c <= SIMD_MAX_POINTWISE_CHANNELS and filters >= SIMD_MIN_POINTWISE_FILTERS
        return wide and outputs >= SIMD_MIN_POINTWISE_ROWS
    taps = kh * kw * c
    if taps < SIMD_MAX_TAPS or (out_w >= SIMD_LONG_ROW_PIXELS and stride_1):
        return True
    return out_w >= SIMD_MIN_ROW_PIXELS and taps <= SIMD_MAX_ROW_TAPS


# Rows of cols per chunk of an im2col pass: ~1 MB of cols at 288 taps, so a chunk's im2col,
# GEMM and epilogue work on data still in cache.
TILE_ROWS = 1024


def conv2d_forward(
    x,
    kernel,
    bias,
    strides,
    padding,
    activation_code,
    out=None,
    threads=1,
    dilation=(1, 1),
    groups=1,
    residual=None,
):
    """y (N,oh,ow,F) = act(x (N,H,W,C) conv kernel (kh,kw,C,F) + bias (F,) or None), by
    ``plan_conv2d``'s algorithm; ``out`` is a buffer of y's shape to reuse. On up to ``threads``
    threads: im2col, GEMM and epilogue run together per chunk of output rows, each chunk's
    im2col rows in a small buffer that stays in cache; Winograd per chunk of images. With
    ``dilation`` (stride 1), the taps are that far apart (``dilated_phases``). With ``groups``,
    kernel is (kh,kw,C/groups,F) and each group of C/groups channels makes F/groups filters.
    With ``residual`` (y's shape), y = act(conv + bias + residual): a residual block's sum,
    added as the SIMD kernels write each row, else in one pass with the activation after."""
    rows_args = (x, kernel, strides, padding, dilation, groups)
    if residual is not None and not _simd_rows(*rows_args):
        args = (x, kernel, bias, strides, padding, LINEAR, out, threads, dilation, groups)
        return _add_activated(conv2d_forward(*args), residual, activation_code)
    if activation_code not in EPILOGUE and not _simd_rows(*rows_args):
        args = (x, kernel, bias, strides, padding, LINEAR, out, threads, dilation, groups)
        y = conv2d_forward(*args)  # the conv, then the activation as a pass of its own
        activate(y, activation_code)
        return y
    if _strided_1x1(kernel.shape, strides) and groups == 1 and tuple(dilation) == (1, 1):
        args = (bias, (1, 1), "valid", activation_code, out, threads)
        return conv2d_forward(_sampled(x, strides), kernel, *args)
    kernel, kept = forms.split(kernel)
    if groups > 1:
        args = (x, kernel, bias, strides, padding, activation_code, out, threads, dilation)
        return _grouped_forward(*args, groups)
    if tuple(dilation) != (1, 1):
        return _dilated_forward(x, kernel, bias, dilation, padding, activation_code, out, threads)
    x = np.ascontiguousarray(x)
    n, _, _, c = x.shape
    kh, kw, _, filters = kernel.shape
    plan = plan_conv2d(x.shape, kernel.shape, strides, padding, dtype=x.dtype)
    if out is None:
        out = np.empty((n, plan.out_h, plan.out_w, filters), dtype=x.dtype)
    if plan.forward == SIMD or _kept_pointwise(plan, kept, x.dtype):
        geometry = (strides, plan.pad_top, plan.pad_left)
        args = (activation_code, out, threads, kept)
        return _simd_conv(x, kernel, bias, *geometry, *args, residual=residual)
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    if plan.forward in (DIRECT, ROWS):
        kernel, b = _direct_arguments(kernel, bias, x.dtype)
        geometry = (*strides, plan.pad_top, plan.pad_left)
        direct = conv2d_direct if plan.forward == DIRECT else conv2d_rows
        direct(x, kernel, b, *geometry, activation_code, out)
        return out
    if plan.forward == WINOGRAD:
        args = (plan.pad_top, plan.pad_left, activation_code, out)
        return winograd.forward(x, _winograd_u(kernel, kept), b, *args, threads=threads)
    y2d = out.reshape(n * plan.out_h * plan.out_w, filters)
    k2d = np.ascontiguousarray(kernel).reshape(kh * kw * c, filters)
    if plan.forward == POINTWISE:  # the bias and a relu in the product's epilogue where it can
        x2d = x.reshape(-1, c)
        if not (b.shape[0] > 0 and matmul_bias(x2d, k2d, b, activation_code, y2d, threads)):
            matmul(x2d, k2d, y2d, threads=threads)
            bias_activation_forward(y2d, b, activation_code, y2d)
        return out
    geometry = _geometry(kernel.shape, strides, plan)
    out_w = plan.out_w

    def run(start, stop):
        step = max(1, TILE_ROWS // out_w)
        chunk = np.empty((min(step, stop - start) * out_w, kh * kw * c), dtype=x.dtype)
        for r0 in range(start, stop, step):
            r1 = min(stop, r0 + step)
            y = y2d[r0 * out_w : r1 * out_w]
            _conv_rows(x, geometry, k2d, b, activation_code, chunk, r0, r1, y)

    row_blocks(run, n * plan.out_h, threads)
    return out


def _add_activated(y, residual, code):
    """y = act(y + residual) in place (y, residual (N,oh,ow,F)); returns y."""
    if code in (LINEAR, RELU):
        rows = (-1, y.shape[-1])
        add_activation_forward(y.reshape(rows), residual.reshape(rows), code, y.reshape(rows))
    else:
        y += residual
        activate(y, code)
    return y


def conv2d_forward_call(
    x, kernel, bias, strides, padding, activation_code, threads=1, residual=None
):
    """``conv2d_forward`` for arrays of x's (and ``residual``'s) shape and dtype, the kernel a
    ``forms.Forms`` kept the same, its choices made now: a function (x, residual=None) -> y,
    y a buffer of its own that each call rewrites; None where the conv would not run on the SIMD
    kernels (or with groups or dilation, which take ``conv2d_forward``)."""
    array, kept = forms.split(kernel)
    if kept is None or x.dtype != np.float32:
        return None
    if _strided_1x1(array.shape, strides):  # the 1x1 stride-1 conv of the pixels it reads
        pixels = conv2d_forward_call(
            _sampled(x, strides), kernel, bias, (1, 1), "valid", activation_code, threads
        )
        if pixels is None or residual is not None:
            return None
        return lambda x, residual=None: pixels(_sampled(x, strides))
    plan = plan_conv2d(x.shape, array.shape, strides, padding, dtype=x.dtype)
    rows = plan.forward == SIMD and array.shape[:2] != (1, 1)  # _simd_rows
    if residual is not None and not rows:
        return None
    if activation_code not in EPILOGUE and not rows:  # the conv, then the activation's pass
        conv = conv2d_forward_call(x, kernel, bias, strides, padding, LINEAR, threads)
        return None if conv is None else _then_activated(conv, activation_code)
    if not (plan.forward == SIMD or _kept_pointwise(plan, kept, x.dtype)):
        return None
    out = np.empty((x.shape[0], plan.out_h, plan.out_w, array.shape[3]), np.float32)
    geometry = (strides, plan.pad_top, plan.pad_left)
    return _simd_conv_call(x.shape, array, bias, *geometry, activation_code, out, threads, kept)


def _then_activated(conv, code):
    """A conv's call (x, residual=None) -> y followed by the activation ``code``'s pass."""

    def run(x, residual=None):
        y = conv(x)
        activate(y, code)
        return y

    return run


def _kept_pointwise(plan, kept, dtype) -> bool:
    """Whether a float32 1x1 stride-1 conv whose kernel is ``kept`` packed (inference) runs its
    product on the SIMD micro-kernels at any number of pixels, as a Dense layer's does (packed
    once, the bias and relu in its epilogue): one image of 4x4 or 8x8 pixels by 64 to 256
    channels ran 1.1-1.55x faster than OpenBLAS's GEMM and its bias pass, 14x14x256 and eight
    4x4x256 images 2x, four 8x8x128 images 1.0x."""
    return plan.forward == POINTWISE and kept is not None and dtype == np.float32


def _simd_rows(x, kernel, strides, padding, dilation, groups) -> bool:
    """Whether ``conv2d_forward`` runs this conv on ``conv_simd.forward``'s rows, which apply
    any activation as each row is written (other algorithms take EPILOGUE's codes only)."""
    shape = forms.split(kernel)[0].shape
    if x.dtype != np.float32 or groups > 1 or tuple(dilation) != (1, 1) or shape[:2] == (1, 1):
        return False
    return plan_conv2d(x.shape, shape, strides, padding, dtype=x.dtype).forward == SIMD


def conv2d_forward_moments(x, kernel, bias, strides, padding, moments, out=None, threads=1):
    """``conv2d_forward`` without activation, and in moments (2, F) the mean and the biased
    variance of each filter's outputs (a BatchNormalization's batch statistics): gathered as
    the SIMD kernels write y's rows, else in a pass over y."""
    x = np.ascontiguousarray(x)
    array, kept = forms.split(kernel)
    plan = plan_conv2d(x.shape, array.shape, strides, padding, dtype=x.dtype)
    if plan.forward == SIMD and array.shape[:2] != (1, 1):
        if out is None:
            out = np.empty((len(x), plan.out_h, plan.out_w, array.shape[3]), x.dtype)
        geometry = (strides, plan.pad_top, plan.pad_left)
        return _simd_conv(x, array, bias, *geometry, LINEAR, out, threads, kept, moments)
    y = conv2d_forward(x, kernel, bias, strides, padding, LINEAR, out, threads)
    rows = y.reshape(-1, y.shape[3])
    mean, var, invstd = (np.empty(rows.shape[1], y.dtype) for _ in range(3))
    batchnorm_moments(rows, y.dtype.type(0), mean, var, invstd)
    moments[0], moments[1] = mean, var
    return y


def conv2d_forward_average_pool(
    x, kernel, bias, strides, padding, activation_code, out=None, threads=1
):
    """y (N,oh//2,ow//2,F) = 2x2 stride-2 'valid' average pool of ``conv2d_forward``'s y, for
    inference: where the conv runs by SIMD (in bands of pooled rows) or by the direct kernels (a
    pair of rows at a time) its output stays in cache and only the pooled output reaches
    memory; elsewhere (an algorithm that runs whole images) the conv, then the pool. Any
    activation code (applied before the pool). ``out``: a buffer of the pooled shape to reuse."""
    array, kept = forms.split(kernel)
    x = np.ascontiguousarray(x)
    plan = plan_conv2d(x.shape, array.shape, strides, padding, dtype=x.dtype)
    out_shape = (len(x), plan.out_h // 2, plan.out_w // 2, array.shape[3])
    out = np.empty(out_shape, x.dtype) if out is None else out
    if not _strided_1x1(array.shape, strides):
        args = (plan, array, kept, bias, strides, activation_code, out, None, threads)
        banded = _banded_pool_call(*args)
        if banded is not None:
            return banded(x)
    y = conv2d_forward(x, kernel, bias, strides, padding, activation_code, threads=threads)
    avgpool2d_forward(y, 2, 2, 2, 2, 0, 0, out)
    return out


def conv2d_pooled_call(x, kernel, bias, strides, padding, activation_code, average, threads=1):
    """``conv2d_forward_average_pool`` (``average``) or ``conv2d_forward_max_pool`` without
    codes for arrays of x's shape and dtype, the kernel a ``forms.Forms`` kept the same, its
    choices made now: a function x -> the pooled output (a buffer of its own); None where the
    conv runs by another algorithm than SIMD's bands or the direct kernels' row pairs."""
    array, kept = forms.split(kernel)
    if kept is None or _strided_1x1(array.shape, strides):
        return None
    if not average and activation_code not in EPILOGUE:
        return None
    plan = plan_conv2d(x.shape, array.shape, strides, padding, not average, x.dtype)
    out = np.empty((len(x), plan.out_h // 2, plan.out_w // 2, array.shape[3]), x.dtype)
    codes = None if average else _NO_CODES
    banded = _banded_pool_call(
        plan, array, kept, bias, strides, activation_code, out, codes, threads
    )
    return None if banded is None else lambda x: banded(np.ascontiguousarray(x))


def _banded_pool_call(plan, kernel, kept, bias, strides, code, out, codes, threads):
    """The conv of ``plan`` and its 2x2 pool into out, by SIMD's bands or the direct kernels'
    row pairs: a function x (C-contiguous) -> out; None for the other algorithms and the grey
    or RGB 3x3 kernels' quads. ``codes`` None: the average pool; else the maximum, where it
    was into ``codes`` unless empty."""
    if plan.forward == SIMD:
        args = (kernel, bias, strides, plan, code, out, codes, threads, kept)
        return lambda x: _simd_conv_max_pool(x, *args)
    average = codes is None
    quads = not average and plan.quads and code in QUAD_ACTIVATIONS
    if plan.forward != DIRECT or quads:
        return None
    k, b = _direct_arguments(kernel, bias, out.dtype)
    geometry = (*strides, plan.pad_top, plan.pad_left, code, plan.out_w, out)
    where = _NO_CODES if average else codes

    def run(x):
        conv2d_direct_max_pool(x, k, b, *geometry, where, average)
        return out

    return run


def conv2d_forward_max_pool(
    x, kernel, bias, strides, padding, activation_code, out=None, codes=None, threads=1
):
    """y (N,oh//2,ow//2,F) = 2x2 stride-2 'valid' max pool of ``conv2d_forward``'s y: per chunk
    of images (or pair of rows, for direct kernels) the conv's output stays in cache and only
    the pooled output reaches memory.

    ``out`` is a buffer of that shape to reuse. For training, pass ``codes``, a uint8 buffer of
    that shape: it gets where each maximum was (``max_2x2_row_codes``), which is all that
    ``conv2d_backward_max_pooled`` needs besides x. Chunks of images run on up to ``threads``
    threads. An activation outside ``codes.EPILOGUE`` runs unfused: the conv, then the pool.
    """
    if _strided_1x1(kernel.shape, strides):
        args = (bias, (1, 1), "valid", activation_code, out, codes, threads)
        return conv2d_forward_max_pool(_sampled(x, strides), kernel, *args)
    if activation_code not in EPILOGUE:
        y = conv2d_forward(x, kernel, bias, strides, padding, activation_code, threads=threads)
        n, out_h, out_w, filters = y.shape
        if out is None:
            out = np.empty((n, out_h // 2, out_w // 2, filters), dtype=y.dtype)
        max_pool_2x2(y, out, _NO_CODES if codes is None else codes)
        return out
    kernel, kept = forms.split(kernel)
    x = np.ascontiguousarray(x)
    n, _, _, c = x.shape
    kh, kw, _, filters = kernel.shape
    plan = plan_conv2d(x.shape, kernel.shape, strides, padding, pooled=True, dtype=x.dtype)
    out_h, out_w = plan.out_h, plan.out_w
    if out is None:
        out = np.empty((n, out_h // 2, out_w // 2, filters), dtype=x.dtype)
    if codes is None:
        codes = _NO_CODES
    args = (plan, kernel, kept, bias, strides, activation_code, out, codes, threads)
    banded = _banded_pool_call(*args)
    if banded is not None:
        return banded(x)
    if plan.forward == DIRECT:  # the grey or RGB 3x3 kernels' quads
        kernel, b = _direct_arguments(kernel, bias, x.dtype)
        quads = conv2d_grey_3x3_max_pool if c == 1 else conv2d_rgb_3x3_max_pool
        taps = kernel.reshape(-1, filters)
        relu = activation_code == RELU
        quads(x, taps, b, plan.pad_top, plan.pad_left, relu, out, codes)
        return out
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    if plan.forward == WINOGRAD:
        args = (plan.pad_top, plan.pad_left, activation_code, out)
        u = _winograd_u(kernel, kept)
        return winograd.forward(x, u, b, *args, threads=threads, pooled=True, codes=codes)
    k2d = np.ascontiguousarray(kernel).reshape(kh * kw * c, filters)
    geometry = _geometry(kernel.shape, strides, plan)
    pointwise = plan.forward == POINTWISE
    pixels = out_h * out_w
    per_chunk = max(1, TILE_ROWS // pixels)  # whole images: pooling never crosses a chunk

    def run(start, stop):
        images = min(per_chunk, stop - start)
        y = np.empty((images * pixels, filters), dtype=x.dtype)
        cols = None if pointwise else np.empty((images * pixels, kh * kw * c), dtype=x.dtype)
        for i0 in range(start, stop, per_chunk):
            i1 = min(stop, i0 + per_chunk)
            chunk = y[: (i1 - i0) * pixels]
            _conv_rows(x, geometry, k2d, b, activation_code, cols, i0 * out_h, i1 * out_h, chunk)
            pooled = chunk.reshape(i1 - i0, out_h, out_w, filters)
            max_pool_2x2(pooled, out[i0:i1], codes[i0:i1])

    row_blocks(run, n, threads, 1)
    return out


_NO_CODES = np.empty((0, 0, 0, 0), dtype=np.uint8)  # the kernels' "no codes wanted"


# A SIMD conv (on Numba's threads, whose launch costs ~10 us), fused with a pool too, runs on a
# thread per this many flops, its filters' empty lanes counted: 1.15-1.8x faster on 2 threads
# from 2.5 MFLOP (a LeNet conv at batch 4 to 32), 0.4-0.75x below 1.2 MFLOP; a batch-1
# predict of cifar_cnn (its first conv 1.8 MFLOP) 1.05x faster on 2, of lenet5 (0.3 and 0.5
# MFLOP) 1.06x faster on 1.
SIMD_MIN_FLOPS_PER_THREAD = 750_000


# Output pixels at most per band of a SIMD conv's fused pool: its buffer (~200 KB at 6 filters)
# stays in the L2 cache.
SIMD_POOL_CHUNK_PIXELS = 8192


def _simd_conv_max_pool(x, kernel, bias, strides, plan, code, out, codes, threads, kept=None):
    """``conv2d_forward_max_pool`` by SIMD (``conv_simd.forward_max_pool``), in bands of pooled
    rows that fit SIMD_POOL_CHUNK_PIXELS, and that give every thread BLOCKS_PER_THREAD bands;
    codes None: the average pool (``conv_simd.forward_average_pool``)."""
    n, pooled_h = out.shape[:2]
    threads = _simd_threads(kernel.shape, n * plan.out_h * plan.out_w, threads)
    per_thread = -(-n * pooled_h // (conv_simd.BLOCKS_PER_THREAD * threads))
    band = max(1, min(SIMD_POOL_CHUNK_PIXELS // (2 * plan.out_w), per_thread, pooled_h))
    panels, b = _simd_arguments(kernel, bias, kept)
    geometry = (kernel.shape, strides, (plan.pad_top, plan.pad_left), (plan.out_h, plan.out_w))
    if codes is None:
        return conv_simd.forward_average_pool(x, panels, b, *geometry, code, out, band, threads)
    return conv_simd.forward_max_pool(x, panels, b, *geometry, code, out, codes, band, threads)


def _simd_input_gradient(grad_z, kernel, plan, dx, threads):
    """dx (N,H,W,C) of a stride-1 conv: the SIMD conv of grad_z (N,oh,ow,F) with the kernel
    flipped and transposed (kh,kw,F,C), grad_z kh-1-pad_top rows down."""
    kh, kw = kernel.shape[:2]
    flipped = kernel[::-1, ::-1].transpose(0, 1, 3, 2)
    pads = (kh - 1 - plan.pad_top, kw - 1 - plan.pad_left)
    return _simd_conv(grad_z, flipped, None, (1, 1), *pads, LINEAR, dx, threads)


def _simd_arguments(kernel, bias, kept=None):
    """(panels, bias) as ``conv_simd`` takes them: the packed kernel (packed once for
    ``kept``, the kernel's ``forms.Forms``), a float32 bias (zeros for none)."""
    filters = kernel.shape[3]
    b = np.zeros(filters, np.float32) if bias is None else np.ascontiguousarray(bias, np.float32)
    return forms.derived(kept, kernel, "simd", conv_simd.pack_kernel), b


def _winograd_u(kernel, kept=None):
    """Winograd's transform of the kernel (made once for ``kept``, its ``forms.Forms``)."""
    return forms.derived(kept, kernel, "winograd", winograd.kernel_transform)


def _simd_threads(kernel_shape, pixels: int, threads: int) -> int:
    """Threads a SIMD conv of kernel (kh,kw,C,F) onto ``pixels`` output pixels is worth, up to
    ``threads`` (SIMD_MIN_FLOPS_PER_THREAD, its filters' empty lanes counted)."""
    kh, kw, c, filters = kernel_shape
    lanes = -(-filters // LANES) * LANES  # what the micro-kernels compute, empty lanes too
    return max(1, min(threads, 2 * pixels * kh * kw * c * lanes // SIMD_MIN_FLOPS_PER_THREAD))


def _simd_conv(
    x, kernel, bias, strides, pad_top, pad_left, code, out, threads, kept=None, moments=None,
    residual=None,
):  # fmt: skip
    """``conv_simd.forward`` (any activation code; a 1x1 kernel's product a code in
    ``EPILOGUE``, a softmax after it, over all filters), on as many threads as its work is worth
    (SIMD_MIN_FLOPS_PER_THREAD); ``moments`` and ``residual`` as there (not for a 1x1
    kernel)."""
    y = out if out.flags.c_contiguous else np.empty(out.shape, np.float32)
    geometry = (strides, pad_top, pad_left)
    _simd_conv_call(x.shape, kernel, bias, *geometry, code, y, threads, kept, moments)(x, residual)
    if y is not out:
        out[...] = y
    return out


def _simd_conv_call(
    x_shape, kernel, bias, strides, pad_top, pad_left, code, out, threads, kept=None, moments=None
):  # fmt: skip
    """``_simd_conv`` for an x of ``x_shape`` into out (C-contiguous), its choices made now:
    a function (x, residual=None) -> out."""
    threads = _simd_threads(kernel.shape, out.size // kernel.shape[3], threads)
    panels, b = _simd_arguments(kernel, bias, kept)
    if kernel.shape[:2] == (1, 1) and tuple(strides) == (1, 1):  # one product on x's rows
        rows = out.reshape(-1, kernel.shape[3])
        epilogue = BIAS_RELU if code == RELU else BIAS
        product = matmul_simd.matmul_call(len(rows), panels, b, epilogue, rows, threads)

        def run(x, residual=None):
            product(np.ascontiguousarray(x).reshape(-1, x.shape[3]))
            if code == SOFTMAX:
                activate(out, code)
            return out

        return run
    geometry = (kernel.shape, strides, pad_top, pad_left)
    conv = conv_simd.forward_call(x_shape, panels, b, *geometry, code, out, threads, moments)

    def run(x, residual=None):
        added = None if residual is None else np.ascontiguousarray(residual, np.float32)
        return conv(np.ascontiguousarray(x), added)

    return run


def _geometry(kernel_shape, strides, plan):
    """(kh, kw, sh, sw, pad_top, pad_left, out_h, out_w): im2col's and col2im's arguments."""
    kh, kw = kernel_shape[:2]
    return (kh, kw, *strides, plan.pad_top, plan.pad_left, plan.out_h, plan.out_w)


def _conv_rows(x, geometry, k2d, bias, code, cols, r0, r1, y):
    """y ((r1-r0)*ow, F) = act(the im2col rows of output rows r0..r1-1 of N*oh @ k2d + bias),
    those rows built in the buffer ``cols``; None for a 1x1 stride-1 kernel (x's own rows)."""
    out_w = geometry[7]
    if cols is None:
        cols = x.reshape(-1, x.shape[3])[r0 * out_w : r1 * out_w]
    else:
        cols = cols[: len(y)]
        im2col_rows(x, *geometry, cols, r0, r1)
    np.matmul(cols, k2d, out=y)
    bias_activation_rows(y, bias, code)


def _direct_arguments(kernel, bias, dtype):
    """(kernel, bias) as the direct kernels take them: contiguous, and zeros for no bias (the
    unrolled 3x3 rows take a bias: zeros cost less than the generic loops)."""
    kernel = np.ascontiguousarray(kernel)
    return kernel, np.zeros(kernel.shape[3], dtype=dtype) if bias is None else bias


def conv2d_backward(
    grad_z,
    x,
    kernel,
    strides,
    padding,
    dkernel,
    dbias,
    dx=None,
    need_dx=True,
    threads=1,
    dilation=(1, 1),
    groups=1,
):
    """dx (N,H,W,C) from grad_z (N,oh,ow,F) = dL/dz and the conv's input x; adds into dkernel
    (kh,kw,C,F), dbias (F,), by ``plan_conv2d``'s algorithms.

    ``dkernel`` / ``dbias`` may be None (frozen weights, no bias) to skip that gradient. Pass
    ``dx`` (shaped like x) to reuse a workspace. With ``need_dx=False`` (a model's first layer)
    dx is skipped and None returned. On up to ``threads`` threads: im2col, both GEMMs and col2im
    run together per chunk of images, in small buffers that stay in cache. ``dilation`` and
    ``groups`` as in ``conv2d_forward``.
    """
    if groups > 1:
        args = (grad_z, x, kernel, strides, padding, dkernel, dbias, dx, need_dx, threads)
        return _grouped_backward(*args, dilation, groups)
    if tuple(dilation) != (1, 1):
        args = (grad_z, x, kernel, dilation, padding, dkernel, dbias, dx, need_dx, threads)
        return _dilated_backward(*args)
    if _strided_1x1(kernel.shape, strides):
        args = (kernel, (1, 1), "valid", dkernel, dbias, None, need_dx, threads)
        d_sampled = conv2d_backward(grad_z, _sampled(x, strides), *args)
        return _unsampled(d_sampled, strides, x.shape, dx)
    x = np.ascontiguousarray(x)
    c, filters = kernel.shape[2:]
    grad_z = np.ascontiguousarray(grad_z)
    g2d = grad_z.reshape(-1, filters)
    plan = plan_conv2d(x.shape, kernel.shape, strides, padding, dtype=x.dtype)
    geometry = _geometry(kernel.shape, strides, plan)
    if dbias is not None:
        column_sums_add(g2d, dbias)
    if dkernel is not None and plan.dkernel in (DIRECT, ROWS):
        _direct_dkernel(x, grad_z, None, geometry, dkernel, rows=plan.dkernel == ROWS)
        dkernel = None  # done
    if dkernel is not None and plan.dkernel == SIMD:
        kernel_shape, pads = kernel.shape, (plan.pad_top, plan.pad_left)
        conv_simd.kernel_gradient(x, grad_z, kernel_shape, strides, *pads, dkernel, threads)
        dkernel = None
    if not need_dx:
        if dkernel is None:
            return None
        dx = None
    elif dx is None:
        dx = np.empty(x.shape, dtype=grad_z.dtype)
    # the kernel gradient not yet summed, and dx with it unless SIMD computes dx on its own
    method, joint = (plan.dkernel, None) if plan.dx == SIMD else (plan.dx, dx)
    if method == WINOGRAD:
        winograd.backward(grad_z, None, x, kernel, *geometry[4:], dkernel, joint, threads)
    elif method == POINTWISE:
        x2d, k2d = x.reshape(-1, c), np.ascontiguousarray(kernel).reshape(c, filters)
        products = [] if dkernel is None else [(x2d.T, g2d, dkernel.reshape(c, filters), True)]
        if joint is not None:
            products.append((g2d, k2d.T, joint.reshape(-1, c), False))
        matmuls(products, threads)  # side by side when both are wanted and worth a thread
    elif dkernel is not None or joint is not None:
        _im2col_backward(g2d, x, kernel, geometry, dkernel, joint, threads)
    if plan.dx == SIMD and dx is not None:
        _simd_input_gradient(grad_z, kernel, plan, dx, threads)
    return dx


def conv2d_backward_max_pooled(
    grad, codes, x, kernel, strides, padding, dkernel, dbias, dx=None, need_dx=True, threads=1
):
    """``conv2d_backward`` after ``conv2d_forward_max_pool(..., codes=codes)``: grad
    (N,oh//2,ow//2,F) is dL/dz at the pool's maxima (the activation's gradient applied, which
    there needs only the pooled output), codes where they were. dz, 0 but at the maxima, is
    unpooled row by row where it is read (direct kernels, Winograd, im2col chunks), so no array
    of the conv output's size is made; x (N,H,W,C) is the conv's input; other arguments as there.
    """
    if _strided_1x1(kernel.shape, strides):
        args = (kernel, (1, 1), "valid", dkernel, dbias, None, need_dx, threads)
        d_sampled = conv2d_backward_max_pooled(grad, codes, _sampled(x, strides), *args)
        return _unsampled(d_sampled, strides, x.shape, dx)
    filters = kernel.shape[3]
    x = np.ascontiguousarray(x)
    grad = np.ascontiguousarray(grad)
    plan = plan_conv2d(x.shape, kernel.shape, strides, padding, pooled=True)
    geometry = _geometry(kernel.shape, strides, plan)
    if dbias is not None:
        column_sums_add(grad.reshape(-1, filters), dbias)
    if dkernel is not None and plan.dkernel == DIRECT:
        _direct_dkernel(x, grad, codes, geometry, dkernel, plan.quads)
        dkernel = None  # done
    if dkernel is None and not need_dx:
        return None
    if not need_dx:
        dx = None
    elif dx is None:
        dx = np.empty(x.shape, dtype=grad.dtype)
    if plan.dx == WINOGRAD:
        return winograd.backward(grad, codes, x, kernel, *geometry[4:], dkernel, dx, threads)
    if plan.dx == IM2COL:
        _im2col_backward((grad, codes), x, kernel, geometry, dkernel, dx, threads)
        return dx
    out_h = plan.out_h
    dz = np.empty((x.shape[0], out_h, plan.out_w, filters), dtype=grad.dtype)
    max_unpool_2x2_rows(grad, codes, out_h, 0, x.shape[0] * out_h, dz.reshape(-1, filters))
    return conv2d_backward(dz, x, kernel, strides, padding, dkernel, None, dx, need_dx, threads)


def _direct_dkernel(x, grad, codes, geometry, dkernel, quads=False, rows=False):
    """dkernel += the kernel gradient of a direct conv, from x and grad_z (N,oh,ow,F), or from
    the gradient at its 2x2 max pool's maxima and their ``codes`` (no cols), by the 4x4-patch
    kernels with ``quads``; along the output rows (ROWS) with ``rows``."""
    _, _, sh, sw, pad_top, pad_left, _, out_w = geometry
    blocks = min(grad.shape[0] * grad.shape[1], 16)
    partial = np.empty((blocks, *dkernel.shape), dtype=grad.dtype)
    if rows:
        conv2d_rows_dkernel(x, grad, sh, sw, pad_top, pad_left, partial)
    elif codes is None:
        conv2d_direct_dkernel(x, grad, sh, sw, pad_top, pad_left, partial)
    elif quads:
        grey = x.shape[3] == 1
        quads = conv2d_grey_3x3_dkernel_max_pooled if grey else conv2d_rgb_3x3_dkernel_max_pooled
        taps = partial.reshape(len(partial), 9 * x.shape[3], dkernel.shape[3])
        quads(x, grad, codes, pad_top, pad_left, taps)
    else:
        args = (sh, sw, pad_top, pad_left, out_w, partial)
        conv2d_direct_dkernel_max_pooled(x, grad, codes, *args)
    dkernel += partial.sum(axis=0)


def _im2col_backward(grad, x, kernel, geometry, dkernel, dx, threads):
    """The im2col backward per chunk of whole images, on up to ``threads`` threads: each chunk's
    im2col rows of x and input-gradient columns live in one small buffer, and each block sums
    its own part of dkernel (None: not wanted), dx (None: not wanted) its own images. grad is
    g2d (N*oh*ow, F), or (pooled gradient, codes) to unpool per chunk."""
    kh, kw, c, filters = kernel.shape
    out_h, out_w = geometry[-2:]
    pixels, taps = out_h * out_w, kh * kw * c
    k2d = np.ascontiguousarray(kernel).reshape(taps, filters)
    pooled = grad if isinstance(grad, tuple) else None
    dtype = grad.dtype if pooled is None else pooled[0].dtype
    dkernel_parts = []

    def run(start, stop):
        # Blocks come in output rows; an image belongs to the block holding its first row, so
        # no two threads add into the same image of dx.
        first, last = -(-start // out_h), -(-stop // out_h)
        if first >= last:
            return
        step = max(1, TILE_ROWS // pixels)
        chunk = np.empty((min(step, last - first) * pixels, taps), dtype=dtype)
        unpooled = None if pooled is None else np.empty((len(chunk), filters), dtype=dtype)
        part = None if dkernel is None else np.zeros((taps, filters), dtype=dtype)
        for n0 in range(first, last, step):
            n1 = min(last, n0 + step)
            chunk_cols = chunk[: (n1 - n0) * pixels]
            if pooled is None:
                g = grad[n0 * pixels : n1 * pixels]
            else:
                g = unpooled[: (n1 - n0) * pixels]
                max_unpool_2x2_rows(*pooled, out_h, n0 * out_h, n1 * out_h, g)
            if part is not None:
                im2col_rows(x, *geometry, chunk_cols, n0 * out_h, n1 * out_h)
                part += chunk_cols.T @ g
            if dx is not None:
                np.matmul(g, k2d.T, out=chunk_cols)
                col2im_images(chunk_cols, *geometry, dx, n0, n1)
        if part is not None:
            dkernel_parts.append(part)

    row_blocks(run, x.shape[0] * out_h, threads)
    if dkernel_parts:
        dkernel += sum(dkernel_parts).reshape(dkernel.shape)


# ---- dilated kernels: undilated convs over the input's phases ---------------------------------
def dilated_phases(x_shape, kernel_shape, dilation, padding):
    """How a stride-1 conv whose taps are ``dilation`` (dh, dw) apart runs as undilated ones:
    (padded input shape, pad_top, pad_left, phases). Output pixel (i, j) reads the padded
    input's rows i + p*dh and columns j + q*dw, so the outputs of one phase (a, b) = (i % dh,
    j % dw) form a 'valid' undilated conv of the padded input's rows a::dh and columns b::dw."""
    kh, kw, c, f = kernel_shape
    dh, dw = dilation
    span = ((kh - 1) * dh + 1, (kw - 1) * dw + 1, c, f)
    out_h, out_w, pad_top, pad_left = conv_geometry(x_shape, span, (1, 1), padding)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"conv2d: kernel {(kh, kw)} with dilation {tuple(dilation)} and padding {padding!r} "
            f"does not fit input of shape {tuple(x_shape)}"
        )
    padded = (x_shape[0], out_h + span[0] - 1, out_w + span[1] - 1, c)
    phases = [(a, b) for a in range(min(dh, out_h)) for b in range(min(dw, out_w))]
    return padded, pad_top, pad_left, phases


def _padded(x, padded_shape, pad_top, pad_left):
    """x (N,H,W,C) in a zero array of ``padded_shape`` at (pad_top, pad_left)."""
    xp = np.zeros(padded_shape, dtype=x.dtype)
    h, w = x.shape[1:3]
    xp[:, pad_top : pad_top + h, pad_left : pad_left + w] = x
    return xp


def _dilated_forward(x, kernel, bias, dilation, padding, code, out, threads):
    padded, pad_top, pad_left, phases = dilated_phases(x.shape, kernel.shape, dilation, padding)
    xp = _padded(x, padded, pad_top, pad_left)
    (dh, dw), (kh, kw) = dilation, kernel.shape[:2]
    shape = (x.shape[0], padded[1] - (kh - 1) * dh, padded[2] - (kw - 1) * dw, kernel.shape[3])
    y = np.empty(shape, dtype=x.dtype) if out is None else out
    for a, b in phases:
        phase = np.ascontiguousarray(xp[:, a::dh, b::dw])
        y[:, a::dh, b::dw] = conv2d_forward(
            phase, kernel, bias, (1, 1), "valid", code, None, threads
        )
    return y


def _dilated_backward(grad_z, x, kernel, dilation, padding, dkernel, dbias, dx, need_dx, threads):
    padded, pad_top, pad_left, phases = dilated_phases(x.shape, kernel.shape, dilation, padding)
    xp = _padded(x, padded, pad_top, pad_left)
    dxp = np.zeros(padded, dtype=grad_z.dtype) if need_dx else None
    if dbias is not None:
        column_sums_add(np.ascontiguousarray(grad_z).reshape(-1, kernel.shape[3]), dbias)
    dh, dw = dilation
    for a, b in phases:
        phase = np.ascontiguousarray(xp[:, a::dh, b::dw])
        grad = np.ascontiguousarray(grad_z[:, a::dh, b::dw])
        args = (grad, phase, kernel, (1, 1), "valid", dkernel, None)
        dphase = conv2d_backward(*args, need_dx=need_dx, threads=threads)
        if need_dx:  # the phases read disjoint rows and columns of the padded input
            dxp[:, a::dh, b::dw] = dphase
    if not need_dx:
        return None
    h, w = x.shape[1:3]
    inner = dxp[:, pad_top : pad_top + h, pad_left : pad_left + w]
    if dx is None:
        return np.ascontiguousarray(inner)
    dx[...] = inner
    return dx


# ---- grouped kernels: one conv per group of channels --------------------------------------------
def _group(x, kernel, g, groups):
    """Group g's input channels (contiguous), kernel (kh,kw,C/groups,F/groups) and filters."""
    c, f = kernel.shape[2], kernel.shape[3] // groups
    x_g = np.ascontiguousarray(x[..., g * c : (g + 1) * c])
    return x_g, np.ascontiguousarray(kernel[..., g * f : (g + 1) * f]), slice(g * f, (g + 1) * f)


def _grouped_forward(x, kernel, bias, strides, padding, code, out, threads, dilation, groups):
    parts = []
    for g in range(groups):
        x_g, k_g, filters = _group(x, kernel, g, groups)
        args = (x_g, k_g, None if bias is None else bias[filters], strides, padding, LINEAR)
        parts.append(conv2d_forward(*args, threads=threads, dilation=dilation))
    y = np.concatenate(parts, axis=-1, out=out)
    if code != LINEAR:  # after the groups meet: a softmax acts on all channels
        activate(y, code)
    return y


def _grouped_backward(
    grad_z, x, kernel, strides, padding, dkernel, dbias, dx, need_dx, threads, dilation, groups
):
    grad_z = np.ascontiguousarray(grad_z)
    if dbias is not None:
        column_sums_add(grad_z.reshape(-1, kernel.shape[3]), dbias)
    parts = []
    for g in range(groups):
        x_g, k_g, filters = _group(x, kernel, g, groups)
        dk_g = None if dkernel is None else np.zeros_like(k_g)
        grad_g = np.ascontiguousarray(grad_z[..., filters])
        args = (grad_g, x_g, k_g, strides, padding, dk_g, None)
        parts.append(conv2d_backward(*args, need_dx=need_dx, threads=threads, dilation=dilation))
        if dkernel is not None:
            dkernel[..., filters] += dk_g
    if not need_dx:
        return None
    return np.concatenate(parts, axis=-1, out=dx)
