"""2-D max and average pooling, NHWC, forward and backward, with TensorFlow's padding semantics.

Windows are clipped to the input: padded positions never win a max and are not counted in an
average's divisor (as TF / Keras 'same' pooling). Use ``fastnn.kernels.geometry.padding_amounts``
for the output size and the top / left padding. ``argmax`` holds, per output element, the flat
index ``h * W + w`` of the winning input pixel in its (sample, channel) plane, or -1 for an empty
window.
"""

import numpy as np
from numba import njit, prange

# Below this much work (elements of x, or of the output times the window), pooling runs on the
# calling thread: engaging Numba's second thread costs ~10 us, 10-25 us once it sleeps (between
# the layers of a batch-1 predict, where a LeNet's 28x28x6 average pool took 25 us, 5 alone).
PARALLEL_MIN_ELEMENTS = 1 << 16


def maxpool2d_forward(x, ph, pw, sh, sw, pad_top, pad_left, out, argmax):
    """out, argmax (N,oh,ow,C) = max of x (N,H,W,C) over each clipped window, and its h*W+w."""
    args = (x, ph, pw, sh, sw, pad_top, pad_left, out, argmax)
    if out.size * ph * pw >= PARALLEL_MIN_ELEMENTS:
        _maxpool_parallel(*args)
    else:
        _maxpool_rows(*args, 0, out.shape[0] * out.shape[1])


@njit(cache=True, parallel=True, error_model="numpy")
def _maxpool_parallel(x, ph, pw, sh, sw, pad_top, pad_left, out, argmax):
    for r in prange(out.shape[0] * out.shape[1]):
        _maxpool_rows(x, ph, pw, sh, sw, pad_top, pad_left, out, argmax, r, r + 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _maxpool_rows(x, ph, pw, sh, sw, pad_top, pad_left, out, argmax, start, stop):
    """Output rows [start, stop) of N*oh of ``maxpool2d_forward``."""
    h, out_h = x.shape[1], out.shape[1]
    for r in range(start, stop):
        n, oh = r // out_h, r % out_h
        h0 = oh * sh - pad_top
        _maxpool_row(x[n], max(h0, 0), min(h0 + ph, h), pw, sw, pad_left, out[n, oh], argmax[n, oh])


@njit(cache=True, error_model="numpy")
def _maxpool_row(img, hs, he, pw, sw, pad_left, orow, arow):
    """orow, arow (ow,C): one output row of max pooling over img (H,W,C) rows hs..he-1."""
    w = img.shape[1]
    for ow in range(orow.shape[0]):
        w0 = ow * sw - pad_left
        ws = max(w0, 0)
        we = min(w0 + pw, w)
        if hs >= he or ws >= we:
            orow[ow] = 0
            arow[ow] = -1
        elif he - hs == 2 and we - ws == 2:  # the common 2x2 window, unrolled
            top, bottom = img[hs], img[hs + 1]
            i = hs * w + ws
            _argmax4(top[ws], top[ws + 1], bottom[ws], bottom[ws + 1], i, i + w, orow[ow], arow[ow])
        else:
            _window_max(img, hs, he, ws, we, orow[ow], arow[ow])


# The helpers below are called, not inlined, and branch-free (selects instead of conditional
# stores): so their channel loops vectorize. The unrolled 2x2 case halved the forward time.
@njit(cache=True, error_model="numpy")
def _argmax4(p0, p1, p2, p3, i, i_below, o, a):
    """o, a (C,) = max of a 2x2 window's pixels p0, p1 (at i, i+1), p2, p3 (at i_below, +1)."""
    for ch in range(o.shape[0]):
        m = p0[ch]
        k = i
        v = p1[ch]
        better = v > m
        m = v if better else m
        k = i + 1 if better else k
        v = p2[ch]
        better = v > m
        m = v if better else m
        k = i_below if better else k
        v = p3[ch]
        better = v > m
        m = v if better else m
        k = i_below + 1 if better else k
        o[ch] = m
        a[ch] = k


@njit(cache=True, error_model="numpy")
def _window_max(img, hs, he, ws, we, o, a):
    """o, a (C,) = max over img[hs:he, ws:we] (H, W, C) and its h*W+w (the first one on ties)."""
    w = img.shape[1]
    src = img[hs, ws]
    first = hs * w + ws
    for ch in range(o.shape[0]):
        o[ch] = src[ch]
        a[ch] = first
    for hi in range(hs, he):
        for wi in range(ws, we):
            src = img[hi, wi]
            idx = hi * w + wi
            for ch in range(o.shape[0]):
                v = src[ch]
                better = v > o[ch]
                o[ch] = v if better else o[ch]
                a[ch] = idx if better else a[ch]


@njit(cache=True, nogil=True, error_model="numpy")
def max_pool_2x2(y, out, codes):
    """out (N,H//2,W//2,C) = max of each 2x2 stride-2 window of y (N,H,W,C), 'valid' (a last odd
    row or column is dropped), serially: the pool of a fused conv (``conv2d_forward_max_pool``).
    codes (N,H//2,W//2,C) uint8 gets ``max_2x2_row_codes``'s positions, unless it is empty."""
    for n in range(out.shape[0]):
        for p in range(out.shape[1]):
            if codes.shape[0] == 0:
                max_2x2_row(y[n, 2 * p], y[n, 2 * p + 1], out[n, p])
            else:
                max_2x2_row_codes(y[n, 2 * p], y[n, 2 * p + 1], out[n, p], codes[n, p])


@njit(cache=True, nogil=True, error_model="numpy")
def mean_pool_2x2(y, out):
    """out (N,H//2,W//2,C) = the mean of each 2x2 stride-2 window of y (N,H,W,C), 'valid' (a
    last odd row or column is dropped), serially: the pool of a fused conv
    (``conv2d_forward_average_pool``)."""
    for n in range(out.shape[0]):
        for p in range(out.shape[1]):
            mean_2x2_row(y[n, 2 * p], y[n, 2 * p + 1], out[n, p])


@njit(cache=True, error_model="numpy")
def mean_2x2_row(top, bottom, orow):
    """orow (W//2,C) = the mean of each 2x2 stride-2 window of the rows top, bottom (W,C), its
    values summed in ``avgpool2d_forward``'s order and times 1/4, as there."""
    quarter = orow.dtype.type(0.25)
    for ow in range(orow.shape[0]):
        a, b, c, d = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
        o = orow[ow]
        for ch in range(o.shape[0]):
            o[ch] = (a[ch] + b[ch] + c[ch] + d[ch]) * quarter


@njit(cache=True, error_model="numpy")
def max_2x2_row(top, bottom, orow):
    """orow (W//2,C) = max of each 2x2 stride-2 window of the two rows top, bottom (W,C)."""
    for ow in range(orow.shape[0]):
        a, b, c, d = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
        o = orow[ow]
        for ch in range(o.shape[0]):
            o[ch] = max(max(a[ch], b[ch]), max(c[ch], d[ch]))


@njit(cache=True, error_model="numpy")
def max_2x2_row_codes(top, bottom, orow, crow):
    """``max_2x2_row``, and crow (W//2,C) uint8 = where each maximum was: 0, 1 (top left, right),
    2, 3 (bottom left, right), the first on ties (as ``maxpool2d_forward``'s argmax)."""
    for ow in range(orow.shape[0]):
        a, b, c, d = top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1]
        o, k = orow[ow], crow[ow]
        for ch in range(o.shape[0]):
            o[ch], k[ch] = first_max4(a[ch], b[ch], c[ch], d[ch])


@njit(cache=True, inline="always")
def first_max4(a, b, c, d):
    """(the maximum of a, b, c, d, its place 0..3 as uint8): the first on ties, by selects (so
    a loop over channels that calls it vectorizes)."""
    m, k = a, np.uint8(0)
    better = b > m
    m, k = max(m, b), np.uint8(1) if better else k
    better = c > m
    m, k = max(m, c), np.uint8(2) if better else k
    better = d > m
    return max(m, d), np.uint8(3) if better else k


@njit(cache=True, nogil=True, error_model="numpy")
def max_unpool_2x2_rows(grad, codes, out_h, start, stop, dy):
    """dy ((stop-start)*W,C) = rows start..stop-1 of N*H of the gradient of y (N,H,W,C) from
    grad (N,H//2,W//2,C) of its 2x2 stride-2 'valid' max pool, whose maxima ``codes`` marks
    (``max_2x2_row_codes``); 0 elsewhere, and in a last odd row or column."""
    out_w = dy.shape[0] // max(stop - start, 1)
    for r in range(start, stop):
        n, i = r // out_h, r % out_h
        row = dy[(r - start) * out_w : (r - start + 1) * out_w]
        if i // 2 < grad.shape[1]:
            max_unpool_2x2_row(grad[n, i // 2], codes[n, i // 2], i % 2, row)
        else:
            row[:, :] = 0


@njit(cache=True, error_model="numpy")
def max_unpool_2x2_row(grow, crow, k, out):
    """out (W,C) = the gradient of row 2i+k of a 2x2 max pool's input from grow (W//2,C), the
    gradient of its output row i: each value at its window's maximum (crow's code 2k: left,
    2k+1: right), else 0; 0 in a last odd column."""
    zero = out.dtype.type(0)
    for ow in range(grow.shape[0]):
        g, c = grow[ow], crow[ow]
        for b in range(2):  # a loop per output pixel: storing both in one loop ran 8x slower
            dst, here = out[2 * ow + b], np.uint8(2 * k + b)
            for ch in range(g.shape[0]):
                dst[ch] = g[ch] if c[ch] == here else zero
    for w in range(2 * grow.shape[0], out.shape[0]):
        out[w, :] = zero


# The parallel kernels below call a serial kernel per image or output row, not inline loops:
# Numba's parfor passes then see one call, which compiles in a fraction of the time.
def maxpool2d_backward(grad_out, argmax, dx):
    """dx (N,H,W,C) = zeros, then grad_out (N,oh,ow,C) scatter-added at argmax (same shape)."""
    n_batch, h, w, c = dx.shape
    planes = dx.reshape(n_batch, h * w, c)  # argmax indexes its rows: no division per element
    if n_batch > 1 and dx.size >= PARALLEL_MIN_ELEMENTS:
        _maxpool_backward_parallel(grad_out, argmax, planes)
    else:
        for n in range(n_batch):
            _maxpool_backward_image(grad_out[n], argmax[n], planes[n])


@njit(cache=True, parallel=True, error_model="numpy")
def _maxpool_backward_parallel(grad_out, argmax, planes):
    for n in prange(planes.shape[0]):
        _maxpool_backward_image(grad_out[n], argmax[n], planes[n])


@njit(cache=True, error_model="numpy")
def _maxpool_backward_image(grad, argmax, plane):
    """plane (H*W, C) = zeros, then grad (oh,ow,C) scatter-added at argmax (oh,ow,C)."""
    plane[:, :] = 0
    for oh in range(grad.shape[0]):
        for ow in range(grad.shape[1]):
            g = grad[oh, ow]
            a = argmax[oh, ow]
            for ch in range(g.shape[0]):
                idx = a[ch]
                if idx >= 0:
                    plane[idx, ch] += g[ch]


def avgpool2d_forward(x, ph, pw, sh, sw, pad_top, pad_left, out):
    """out (N,oh,ow,C) = mean of x (N,H,W,C) over each clipped window (padding not counted)."""
    args = (x, ph, pw, sh, sw, pad_top, pad_left, out)
    if out.size * ph * pw >= PARALLEL_MIN_ELEMENTS:
        _avgpool_parallel(*args)
    else:
        _avgpool_rows(*args, 0, out.shape[0] * out.shape[1])


@njit(cache=True, parallel=True, error_model="numpy")
def _avgpool_parallel(x, ph, pw, sh, sw, pad_top, pad_left, out):
    for r in prange(out.shape[0] * out.shape[1]):
        _avgpool_rows(x, ph, pw, sh, sw, pad_top, pad_left, out, r, r + 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _avgpool_rows(x, ph, pw, sh, sw, pad_top, pad_left, out, start, stop):
    """Output rows [start, stop) of N*oh of ``avgpool2d_forward``."""
    h, out_h = x.shape[1], out.shape[1]
    for r in range(start, stop):
        n, oh = r // out_h, r % out_h
        h0 = oh * sh - pad_top
        _avgpool_row(x[n], max(h0, 0), min(h0 + ph, h), pw, sw, pad_left, out[n, oh])


@njit(cache=True, error_model="numpy")
def _avgpool_row(img, hs, he, pw, sw, pad_left, orow):
    """orow (ow,C): one output row of average pooling over img (H,W,C) rows hs..he-1."""
    w = img.shape[1]
    for ow in range(orow.shape[0]):
        w0 = ow * sw - pad_left
        ws = max(w0, 0)
        we = min(w0 + pw, w)
        o = orow[ow]
        for ch in range(o.shape[0]):
            o[ch] = 0
        count = (he - hs) * (we - ws)
        if count <= 0:
            continue
        for hi in range(hs, he):
            for wi in range(ws, we):
                src = img[hi, wi]
                for ch in range(o.shape[0]):
                    o[ch] += src[ch]
        scale = img.dtype.type(1) / img.dtype.type(count)
        for ch in range(o.shape[0]):
            o[ch] *= scale


def avgpool2d_backward(grad_out, ph, pw, sh, sw, pad_top, pad_left, dx):
    """dx (N,H,W,C) = zeros, then each grad_out (N,oh,ow,C) / window size added over its window."""
    args = (ph, pw, sh, sw, pad_top, pad_left)
    if dx.shape[0] > 1 and dx.size >= PARALLEL_MIN_ELEMENTS:
        _avgpool_backward_parallel(grad_out, *args, dx)
    else:
        for n in range(dx.shape[0]):
            _avgpool_backward_image(grad_out[n], *args, dx[n])


@njit(cache=True, parallel=True, error_model="numpy")
def _avgpool_backward_parallel(grad_out, ph, pw, sh, sw, pad_top, pad_left, dx):
    for n in prange(dx.shape[0]):
        _avgpool_backward_image(grad_out[n], ph, pw, sh, sw, pad_top, pad_left, dx[n])


@njit(cache=True, error_model="numpy")
def _avgpool_backward_image(grad, ph, pw, sh, sw, pad_top, pad_left, img):
    """img (H,W,C) = zeros, then each grad (oh,ow,C) / window size added over its window."""
    h, w, c = img.shape
    for hh in range(h):
        for ww in range(w):
            for ch in range(c):
                img[hh, ww, ch] = 0
    for oh in range(grad.shape[0]):
        h0 = oh * sh - pad_top
        hs = max(h0, 0)
        he = min(h0 + ph, h)
        for ow in range(grad.shape[1]):
            w0 = ow * sw - pad_left
            ws = max(w0, 0)
            we = min(w0 + pw, w)
            count = (he - hs) * (we - ws)
            if count <= 0:
                continue
            scale = img.dtype.type(1) / img.dtype.type(count)
            g = grad[oh, ow]
            for hi in range(hs, he):
                for wi in range(ws, we):
                    dst = img[hi, wi]
                    for ch in range(c):
                        dst[ch] += g[ch] * scale


# ---- global max pooling over the middle axis of (N, K, C) ----------------------------------------
# numpy's argmax over a middle axis copies x to make that axis contiguous (18x slower than the
# memory bandwidth on a 1-D conv text model's (256, 196, 128)); these run down the steps with a
# running maximum per channel, the channel loop vectorized.


@njit(cache=True, nogil=True, error_model="numpy")
def _global_max_sample(x, n, out, index):
    """out[n], index[n] (C,) = the first maximum over K of x[n] (K, C) and its step; NaN wins,
    as numpy's argmax."""
    steps, channels = x.shape[1], x.shape[2]
    best, where = out[n], index[n]
    for c in range(channels):
        best[c] = x[n, 0, c]
        where[c] = 0
    for k in range(1, steps):
        row = x[n, k]
        for c in range(channels):
            v, m = row[c], best[c]
            takes = v > m or (v != v and m == m)
            best[c] = v if takes else m
            where[c] = k if takes else where[c]


@njit(cache=True, parallel=True, error_model="numpy")
def _global_max_parallel(x, out, index):
    for n in prange(x.shape[0]):
        _global_max_sample(x, n, out, index)


def global_max_pool(x, out, index):
    """out (N, C) = max over K of x (N, K, C); index (N, C) int64 = the first maximum's step."""
    if x.shape[0] > 1 and x.size >= PARALLEL_MIN_ELEMENTS:
        _global_max_parallel(x, out, index)
    else:
        for n in range(x.shape[0]):
            _global_max_sample(x, n, out, index)


@njit(cache=True, nogil=True, error_model="numpy")
def global_max_pool_backward(grad, index, dx):
    """dx (N, K, C) = zeros but grad (N, C) at each channel's step ``index`` (N, C)."""
    dx[...] = 0
    for n in range(dx.shape[0]):
        for c in range(dx.shape[2]):
            dx[n, index[n, c], c] = grad[n, c]


# ---- global average pooling over the middle axis of (N, K, C) -----------------------------------
@njit(cache=True, nogil=True, error_model="numpy")
def _global_mean_sample(x, n, out, total):
    """out[n] (C,) = the mean over K of x[n] (K, C), summed in float64 in ``total`` (C,)."""
    steps, channels = x.shape[1], x.shape[2]
    for c in range(channels):
        total[c] = x[n, 0, c]
    for k in range(1, steps):
        row = x[n, k]
        for c in range(channels):
            total[c] += row[c]
    inv = 1.0 / steps
    for c in range(channels):
        out[n, c] = total[c] * inv


@njit(cache=True, parallel=True, error_model="numpy")
def _global_mean_parallel(x, out):
    for n in prange(x.shape[0]):
        _global_mean_sample(x, n, out, np.empty(x.shape[2]))


def global_mean(x, out):
    """out (N, C) = the mean over K of x (N, K, C), accumulated in float64."""
    if x.shape[0] > 1 and x.size >= PARALLEL_MIN_ELEMENTS:
        _global_mean_parallel(x, out)
    else:
        total = np.empty(x.shape[2])
        for n in range(x.shape[0]):
            _global_mean_sample(x, n, out, total)
