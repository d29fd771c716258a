"""Depthwise 2-D convolution, NHWC: direct Numba loops, forward and backward.

Each input channel c is convolved with its own ``M`` (depth multiplier) filters: kernel
(kh,kw,C,M) (Keras's layout), output channel ``c*M + m``. The Numba kernels take it as
(kh,kw,C*M), each tap's filters one contiguous row (the wrappers reshape it). Input pixel
(i*sh + p*dh - top, j*sw + q*dw - left) meets output pixel (i, j) through tap (p, q). Channels
are the innermost loop everywhere, so it vectorizes over contiguous channels; the loops run in
parallel over rows of the batch (``prange``): output rows (forward), input rows (input gradient,
gathered, so no two rows write the same place) and blocks of output rows with a partial kernel
gradient each.
"""

import numpy as np
from numba import get_num_threads, njit, prange

from .activations import _activate_row, activate, column_sums_add
from .codes import EPILOGUE, LINEAR, RELU
from .conv_simd import band_buffer, row_in_band
from .simd import LANES, depthwise_pixels, multiply_sum_lanes

# Fused multiply-adds: without this LLVM keeps each product and sum apart (one rounding fewer).
_CONTRACT = {"contract"}


@njit(cache=True, inline="always")
def _tap_span(offset, stride, size, out_size):
    """(lo, hi): the output positions o with 0 <= o*stride + offset < size."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - 1 - offset < 0 else (size - 1 - offset) // stride + 1
    return lo, min(hi, out_size)


# Below this many multiply-adds a pass runs on the calling thread: engaging Numba's second
# thread costs ~10 us, 10-25 us once it sleeps (between the layers of a batch-1 predict).
PARALLEL_MIN_TAPS = 1 << 17


def _parallel(out, kernel) -> bool:
    """Whether a pass over out (N,OH,OW,C*M)'s pixels with kernel (kh,kw,C*M) runs threaded."""
    return out.size * kernel.shape[0] * kernel.shape[1] >= PARALLEL_MIN_TAPS


def depthwise_forward(x, kernel, bias, sh, sw, dh, dw, top, left, code, out):
    """out (N,OH,OW,C*M) = act(depthwise conv of x (N,H,W,C) by kernel (kh,kw,C*M) + bias (C*M,)
    or (0,)); ``code`` an activation code."""
    depthwise_forward_call(x, kernel, bias, sh, sw, dh, dw, top, left, code, out)(x)


def depthwise_forward_call(x, kernel, bias, sh, sw, dh, dw, top, left, code, out):
    """``depthwise_forward`` for arrays of x's shape, dtype and layout, its choices made now: a
    function x -> None that writes out."""
    rows = out.shape[0] * out.shape[1]
    if _simd_applies(x, kernel, out, sh, sw, dh, dw):
        bias = bias if bias.shape[0] else np.zeros(x.shape[3], np.float32)
        head = (kernel.reshape(-1), kernel.shape[0], bias, sh, sw, top, left, code, out)
        if _parallel(out, kernel):
            blocks = SIMD_BLOCKS_PER_THREAD * get_num_threads()
            blocks = max(1, min(blocks, rows // SIMD_MIN_ROWS_PER_BLOCK))
            return lambda x: _forward_simd_parallel(x, *head, blocks)
        return lambda x: _forward_simd_rows(x, *head, 0, rows)
    head = (kernel, bias, sh, sw, dh, dw, top, left, code, out)
    if _parallel(out, kernel):
        return lambda x: _forward_parallel(x, *head)
    return lambda x: _forward_rows(x, *head, 0, rows)


# The float32 forward of a square 3x3 or 5x5 kernel of multiplier 1 without dilation runs on
# 16-lane vectors (``simd.depthwise_pixels``): per block of output rows, each image's input rows
# under them copied into a zero-bordered buffer (``conv_simd.row_in_band``), then each block of
# 16 channels along an output row with its taps' weights in registers. At stride 1 that ran
# 1.8-4.7x faster than the pixel-by-pixel loops (7-17 GB/s on inputs that sit in cache at
# 70-90 GB/s), 5x5 at stride 2 1.7x; 3x3 at stride 2 0.5-1.0x (the copy of an input four
# times the output), left on the loops.
SIMD_KERNEL_SIZES = (3, 5)
SIMD_MIN_STRIDED_SIZE = 5
SIMD_BLOCKS_PER_THREAD = 4  # Numba's threads take blocks as they come free
SIMD_MIN_ROWS_PER_BLOCK = 2
_PIXELS_3X3, _PIXELS_5X5 = depthwise_pixels(3, 3), depthwise_pixels(5, 5)


def _simd_applies(x, kernel, out, sh, sw, dh, dw) -> bool:
    """Whether ``depthwise_forward`` runs on SIMD vectors (see SIMD_KERNEL_SIZES)."""
    kh, kw, channels = kernel.shape
    float32 = x.dtype == kernel.dtype == out.dtype == np.float32
    square = kh == kw and kh in SIMD_KERNEL_SIZES
    stride = sh == sw == 1 or kh >= SIMD_MIN_STRIDED_SIZE
    contiguous = x.flags.c_contiguous and out.flags.c_contiguous  # read and written flat
    plain = float32 and contiguous and channels == x.shape[3] and dh == dw == 1
    return plain and square and stride


@njit(cache=True, parallel=True, error_model="numpy")
def _forward_simd_parallel(x, kernel, size, bias, sh, sw, top, left, code, out, blocks):
    """``_forward_simd_rows`` over all output rows in ``blocks`` blocks, on Numba's threads."""
    rows = out.shape[0] * out.shape[1]
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _forward_simd_rows(x, kernel, size, bias, sh, sw, top, left, code, out, start, stop)


@njit(cache=True, nogil=True, error_model="numpy")
def _forward_simd_rows(x, kernel, size, bias, sh, sw, top, left, code, out, start, stop):
    """Output rows [start, stop) of N*OH of ``depthwise_forward`` for a ``size`` x ``size``
    kernel (flat: size*size*C) of multiplier 1, on SIMD vectors."""
    _, out_h, out_w, c = out.shape
    width = (out_w - 1) * sw + size
    image = band_buffer(x, size, size, sh, sw, out_h, out_w, stop - start)
    flat_x, flat_out = x.reshape(-1), out.reshape(-1)
    relu = 1 if code == RELU else 0
    loaded, first = -1, 0
    for row in range(start, stop):
        i, y, first = row_in_band(
            flat_x, x.shape, image, stop, out_h, sh, size, width, top, left, row, loaded, first
        )
        loaded = i
        a_at = (y * sh - first) * width * c
        for c0 in range(0, c, LANES):
            args = (out_w, flat_out, row * out_w * c + c0, c, min(LANES, c - c0), bias, c0, relu)
            taps = (image, a_at + c0, sw * c, c, width * c, kernel, c0, c)
            if size == 3:
                _PIXELS_3X3(*args, *taps)
            else:
                _PIXELS_5X5(*args, *taps)
        if code != LINEAR and code != RELU:
            for j in range(out_w):
                _activate_row(out[i, y, j], code)


@njit(cache=True, parallel=True, error_model="numpy")
def _forward_parallel(x, kernel, bias, sh, sw, dh, dw, top, left, code, out):
    for r in prange(x.shape[0] * out.shape[1]):
        _forward_rows(x, kernel, bias, sh, sw, dh, dw, top, left, code, out, r, r + 1)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_CONTRACT)
def _forward_rows(x, kernel, bias, sh, sw, dh, dw, top, left, code, out, start, stop):
    """Output rows [start, stop) of N*OH of ``depthwise_forward``."""
    out_h = out.shape[1]
    for r in range(start, stop):
        n, i = r // out_h, r % out_h
        _forward_row(x[n], kernel, bias, i * sh - top, sw, dh, dw, left, out[n, i])
        for j in range(out.shape[2]):
            _activate_row(out[n, i, j], code)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _forward_row(img, kernel, bias, h0, sw, dh, dw, left, orow):
    """orow (OW,C*M) = bias + the depthwise taps of img (H,W,C) from row h0."""
    h, w, c = img.shape
    kh, kw, m = kernel.shape[0], kernel.shape[1], kernel.shape[2] // c
    zero = orow.dtype.type(0)
    # Output columns whose 3x3 window lies inside the image: all nine taps summed in registers
    # and each output stored once (the tap-by-tap loops below store it nine times).
    inner_lo, inner_hi = 0, 0
    if m == 1 and kh == 3 and kw == 3 and dh == 1 and dw == 1 and h0 >= 0 and h0 + 2 < h:
        inner_lo, inner_hi = _tap_span(-left, sw, w - 2, orow.shape[0])
        _forward_3x3_inner(img, kernel, bias, h0, sw, left, inner_lo, inner_hi, orow)
    for j in range(orow.shape[0]):
        if inner_lo <= j < inner_hi:
            continue
        dst = orow[j]
        for t in range(dst.shape[0]):
            dst[t] = bias[t] if bias.shape[0] > 0 else zero
    for p in range(kh):
        hi = h0 + p * dh
        if hi < 0 or hi >= h:
            continue
        src_row = img[hi]
        for q in range(kw):
            offset = q * dw - left
            lo, hi_j = _tap_span(offset, sw, w, orow.shape[0])
            taps = kernel[p, q]
            if inner_hi > inner_lo:  # the columns on either side of those done above
                _add_tap(src_row, taps, offset, sw, m, lo, min(hi_j, inner_lo), orow)
                _add_tap(src_row, taps, offset, sw, m, max(lo, inner_hi), hi_j, orow)
            else:
                _add_tap(src_row, taps, offset, sw, m, lo, hi_j, orow)


@njit(cache=True, inline="always")
def _add_tap(src_row, taps, offset, sw, m, lo, hi, orow):
    """orow[j] += one tap's filters (C*M,) times src_row's pixel j*sw+offset, j in [lo, hi)."""
    for j in range(lo, hi):
        _multiply_add(orow[j], src_row[j * sw + offset], taps, m)


@njit(cache=True, inline="always")
def _multiply_add(dst, src, weights, m):
    """dst[c*m + k] += src[c] * weights[c*m + k]: a pixel's C channels, each to its M filters."""
    c = src.shape[0]
    if m == 1:
        for ch in range(c):
            dst[ch] += src[ch] * weights[ch]
    else:
        for ch in range(c):
            v = src[ch]
            for k in range(m):
                dst[ch * m + k] += v * weights[ch * m + k]


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _forward_3x3_inner(img, kernel, bias, h0, sw, left, lo, hi, orow):
    """orow[j] = bias + the nine taps of img rows h0..h0+2 at columns j*sw-left.. for j in
    [lo, hi), a 3x3 kernel (3,3,C) of multiplier 1, all inside the image."""
    has_bias = bias.shape[0] > 0
    r0, r1, r2 = img[h0], img[h0 + 1], img[h0 + 2]
    k00, k01, k02 = kernel[0, 0], kernel[0, 1], kernel[0, 2]
    k10, k11, k12 = kernel[1, 0], kernel[1, 1], kernel[1, 2]
    k20, k21, k22 = kernel[2, 0], kernel[2, 1], kernel[2, 2]
    for j in range(lo, hi):
        x0 = j * sw - left
        a0, a1, a2 = r0[x0], r0[x0 + 1], r0[x0 + 2]
        b0, b1, b2 = r1[x0], r1[x0 + 1], r1[x0 + 2]
        c0, c1, c2 = r2[x0], r2[x0 + 1], r2[x0 + 2]
        dst = orow[j]
        for ch in range(dst.shape[0]):
            top = a0[ch] * k00[ch] + a1[ch] * k01[ch] + a2[ch] * k02[ch]
            mid = b0[ch] * k10[ch] + b1[ch] * k11[ch] + b2[ch] * k12[ch]
            low = c0[ch] * k20[ch] + c1[ch] * k21[ch] + c2[ch] * k22[ch]
            total = top + mid + low
            dst[ch] = total + bias[ch] if has_bias else total


def depthwise_backward_input(grad, kernel, sh, sw, dh, dw, top, left, dx):
    """dx (N,H,W,C) = the input gradient of ``depthwise_forward`` from grad (N,OH,OW,C*M) =
    dL/dz, each input row gathered from the output rows its taps reach; overwritten."""
    args = (grad, kernel, sh, sw, dh, dw, top, left, dx)
    if _parallel(grad, kernel):
        _input_parallel(*args)
    else:
        _input_rows(*args, 0, dx.shape[0] * dx.shape[1])


@njit(cache=True, parallel=True, error_model="numpy")
def _input_parallel(grad, kernel, sh, sw, dh, dw, top, left, dx):
    for r in prange(dx.shape[0] * dx.shape[1]):
        _input_rows(grad, kernel, sh, sw, dh, dw, top, left, dx, r, r + 1)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_CONTRACT)
def _input_rows(grad, kernel, sh, sw, dh, dw, top, left, dx, start, stop):
    """Input rows [start, stop) of N*H of ``depthwise_backward_input``."""
    h = dx.shape[1]
    out_h = grad.shape[1]
    kh = kernel.shape[0]
    for r in range(start, stop):
        n, hi = r // h, r % h
        drow = dx[n, hi]
        drow[:, :] = 0
        for p in range(kh):
            num = hi + top - p * dh  # = i * sh for the output row i that tap p reaches from here
            if num < 0 or num % sh != 0 or num // sh >= out_h:
                continue
            _input_row(grad[n, num // sh], kernel[p], sw, dw, left, drow)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _input_row(grow, ktaps, sw, dw, left, drow):
    """drow (W,C) += grow (OW,C*M) through the kernel's row of taps ktaps (kw,C*M)."""
    w, c = drow.shape
    kw, m = ktaps.shape[0], ktaps.shape[1] // c
    zero = drow.dtype.type(0)
    for q in range(kw):
        offset = q * dw - left
        lo, hi_j = _tap_span(offset, sw, w, grow.shape[0])
        taps = ktaps[q]
        for j in range(lo, hi_j):
            dst, g = drow[j * sw + offset], grow[j]
            if m == 1:
                for ch in range(c):
                    dst[ch] += g[ch] * taps[ch]
            else:
                for ch in range(c):
                    s = zero
                    for k in range(m):
                        s += g[ch * m + k] * taps[ch * m + k]
                    dst[ch] += s


def depthwise_backward_kernel(x, grad, sh, sw, dh, dw, top, left, partial):
    """partial (B,kh,kw,C*M): for each of B blocks of output rows, the kernel gradient of
    ``depthwise_forward`` over the block from x (N,H,W,C) and grad (N,OH,OW,C*M) = dL/dz;
    dkernel is partial.sum(0). In float32 with multiplier 1 on rows of up to
    LANES_MAX_ROW_VALUES values, each tap's block of 16 channels sums a band of the block's
    rows in a register (``simd.multiply_sum_lanes``)."""
    args = (x, grad, sh, sw, dh, dw, top, left, partial)
    lanes = x.dtype == grad.dtype == partial.dtype == np.float32 and x.shape[3] == grad.shape[3]
    lanes = lanes and x.shape[2] * x.shape[3] <= LANES_MAX_ROW_VALUES
    if lanes and partial.shape[0] > 1:
        _kernel_lanes_parallel(*args)
    elif lanes:
        _kernel_lanes_block(*args, 0)
    elif partial.shape[0] > 1:
        _kernel_parallel(*args)
    else:
        _kernel_block(*args, 0)


@njit(cache=True, parallel=True, error_model="numpy")
def _kernel_lanes_parallel(x, grad, sh, sw, dh, dw, top, left, partial):
    for b in prange(partial.shape[0]):
        _kernel_lanes_block(x, grad, sh, sw, dh, dw, top, left, partial, b)


# The float32 kernel gradient sums a band of output rows at a time whose inputs and gradient fit
# in this many values (24 KB, in L1 for all its taps' passes), on images of at most
# LANES_MAX_ROW_VALUES values a row (W * C): 1.35-3.5x faster than the pixel-by-pixel loops
# from 16x16x16 to 32x32x32, 16x16x64 and 8x8x128; with longer rows (32x32x64 at stride 2,
# 56x56x128, 28x28x256) 0.5-0.7x, those channel blocks' 64-byte lines far apart in memory.
BAND_VALUES = 6144
LANES_MAX_ROW_VALUES = 1024


@njit(cache=True, nogil=True, error_model="numpy")
def _kernel_lanes_block(x, grad, sh, sw, dh, dw, top, left, partial, b):
    """``_kernel_block`` for float32 and multiplier 1: per band of an image's output rows
    (``BAND_VALUES``) and tap, each block of 16 channels summed over the band in one register."""
    n, h, w, c = x.shape
    out_h, out_w = grad.shape[1], grad.shape[2]
    kh, kw = partial.shape[1], partial.shape[2]
    rows, blocks = n * out_h, partial.shape[0]
    start, stop = b * rows // blocks, (b + 1) * rows // blocks
    band = max(1, BAND_VALUES // ((sh + 1) * out_w * c))
    acc = partial[b].reshape(-1)
    acc[:] = 0
    flat_x, flat_grad = x.reshape(-1), grad.reshape(-1)
    for image in range(start // out_h, -(-stop // out_h)):
        first, last = max(start - image * out_h, 0), min(stop - image * out_h, out_h)
        for r0 in range(first, last, band):
            r1 = min(last, r0 + band)
            for p in range(kh):
                i_lo, i_hi = _tap_span(p * dh - top, sh, h, out_h)
                i_lo, i_hi = max(i_lo, r0), min(i_hi, r1)
                if i_lo >= i_hi:
                    continue
                for q in range(kw):
                    offset = q * dw - left
                    lo, hi = _tap_span(offset, sw, w, out_w)
                    if lo >= hi:
                        continue
                    x_at = ((image * h + i_lo * sh + p * dh - top) * w + lo * sw + offset) * c
                    g_at = ((image * out_h + i_lo) * out_w + lo) * c
                    for c0 in range(0, c, LANES):
                        multiply_sum_lanes(
                            acc, (p * kw + q) * c + c0, min(LANES, c - c0), flat_x, x_at + c0,
                            sw * c, sh * w * c, flat_grad, g_at + c0, c, out_w * c, hi - lo,
                            i_hi - i_lo,
                        )  # fmt: skip


@njit(cache=True, parallel=True, error_model="numpy")
def _kernel_parallel(x, grad, sh, sw, dh, dw, top, left, partial):
    for b in prange(partial.shape[0]):
        _kernel_block(x, grad, sh, sw, dh, dw, top, left, partial, b)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_CONTRACT)
def _kernel_block(x, grad, sh, sw, dh, dw, top, left, partial, b):
    """partial[b] = the kernel gradient over block b of ``depthwise_backward_kernel``."""
    out_h = grad.shape[1]
    rows, blocks = x.shape[0] * out_h, partial.shape[0]
    acc = partial[b]
    acc[...] = 0
    for r in range(b * rows // blocks, (b + 1) * rows // blocks):
        n, i = r // out_h, r % out_h
        _kernel_row(x[n], grad[n, i], i * sh - top, sw, dh, dw, left, acc)


@njit(cache=True, error_model="numpy", fastmath=_CONTRACT)
def _kernel_row(img, grow, h0, sw, dh, dw, left, acc):
    """acc (kh,kw,C*M) += img (H,W,C)'s taps from row h0 times grow (OW,C*M)."""
    h, w, c = img.shape
    kh, kw, m = acc.shape[0], acc.shape[1], acc.shape[2] // c
    for p in range(kh):
        hi = h0 + p * dh
        if hi < 0 or hi >= h:
            continue
        src_row = img[hi]
        for q in range(kw):
            offset = q * dw - left
            lo, hi_j = _tap_span(offset, sw, w, grow.shape[0])
            a = acc[p, q]
            for j in range(lo, hi_j):
                _multiply_add(a, src_row[j * sw + offset], grow[j], m)


def depthwise_conv2d_forward(x, kernel, bias, strides, dilation, pads, activation_code, out):
    """out (N,OH,OW,C*M) = act(depthwise conv of x (N,H,W,C) by kernel (kh,kw,C,M) + bias (C*M,)
    or None); ``pads`` = (top, left) rows and columns of zeros before x's first; returns out."""
    geometry = (strides, dilation, pads, activation_code, out)
    return depthwise_conv2d_forward_call(x, kernel, bias, *geometry)(x)


def depthwise_conv2d_forward_call(x, kernel, bias, strides, dilation, pads, activation_code, out):
    """``depthwise_conv2d_forward`` for arrays of x's shape and dtype, its choices made now: a
    function x -> out."""
    x = np.ascontiguousarray(x)
    b = np.empty(0, dtype=x.dtype) if bias is None else bias
    epilogue = activation_code if activation_code in EPILOGUE else LINEAR
    geometry = (*strides, *dilation, *pads, epilogue, out)
    forward = depthwise_forward_call(x, _flat_taps(kernel), b, *geometry)

    def run(x):
        forward(np.ascontiguousarray(x))
        if epilogue != activation_code:  # a pass of its own (codes.EPILOGUE)
            activate(out, activation_code)
        return out

    return run


def depthwise_conv2d_backward(
    grad_z, x, kernel, strides, dilation, pads, dkernel, dbias, dx=None, need_dx=True
):
    """dx (N,H,W,C) of ``depthwise_conv2d_forward`` from grad_z (N,OH,OW,C*M) = dL/dz and its
    input x; adds into dkernel (kh,kw,C,M) and dbias (C*M,) unless None. ``dx`` a buffer shaped
    like x to reuse; with ``need_dx=False`` dx is skipped and None returned."""
    x = np.ascontiguousarray(x)
    grad_z = np.ascontiguousarray(grad_z)
    kernel = _flat_taps(kernel)
    geometry = (*strides, *dilation, *pads)
    if dbias is not None:
        column_sums_add(grad_z.reshape(-1, grad_z.shape[3]), dbias)
    if dkernel is not None:
        rows = grad_z.shape[0] * grad_z.shape[1]
        blocks = min(rows, 16) if _parallel(grad_z, kernel) else 1
        partial = np.empty((blocks, *kernel.shape), dtype=grad_z.dtype)
        depthwise_backward_kernel(x, grad_z, *geometry, partial)
        dkernel += partial.sum(axis=0).reshape(dkernel.shape)
    if not need_dx:
        return None
    if dx is None:
        dx = np.empty(x.shape, dtype=grad_z.dtype)
    kh, kw, channels = kernel.shape
    if strides == (1, 1) and dilation == (1, 1) and channels == x.shape[3]:
        # Stride 1, multiplier 1: the input gradient is the forward conv of grad_z by the
        # kernel turned half a turn, padded by what the forward's padding leaves of kh-1, kw-1
        # (and so takes the forward's fast paths).
        flipped = np.ascontiguousarray(kernel[::-1, ::-1])
        pads_dx = (kh - 1 - pads[0], kw - 1 - pads[1])
        empty = np.empty(0, dtype=grad_z.dtype)
        depthwise_forward(grad_z, flipped, empty, 1, 1, 1, 1, *pads_dx, LINEAR, dx)
        return dx
    depthwise_backward_input(grad_z, kernel, *geometry, dx)
    return dx


def _flat_taps(kernel):
    """kernel (kh,kw,C,M) as the Numba kernels take it: (kh,kw,C*M), C-contiguous."""
    kh, kw, c, m = kernel.shape
    return np.ascontiguousarray(kernel).reshape(kh, kw, c * m)
