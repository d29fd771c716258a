"""Direct float32 NHWC convolution on SIMD micro-kernels (``simd.block_product``), no im2col.

An output row runs in blocks of pixels; each block of pixels by 16 or 32 filters is one
micro-kernel call whose accumulators stay in registers over the whole window: in NHWC the
kw * C inputs a pixel's window takes from one input row are contiguous, the next pixel's start
sw * C further on and the next input row's a row further, for any stride. Each block of rows
copies the input rows under it, an image at a time, into a zero-bordered buffer (in cache: all
of a 34x34x16 image is 74 KB), so every window lies inside it and the padding costs no
branches. Bias and a relu are applied as a block leaves its registers, any other activation to
each output row while it is in cache. Fused with a 2x2 max or average pool
(``forward_max_pool``, ``forward_average_pool``), a band of an image's rows at a time is
convolved into a buffer that stays in cache and pooled from there; a small batch splits its
images into several bands, so it runs on all threads too.

The kernel gradient (``kernel_gradient``, any stride) is the same micro-kernel the other
way round: a block of 12 of a tap's channels by a block of filters sums over all of an image's
output pixels, reading the zero-bordered image in NHWC an output pixel (sw * C values) apart
(``simd.block_product(..., strided=True)``), and is added into the gradient as it leaves its
registers. (Copied channel by channel into planes, each channel's run contiguous, it ran
1.3-1.7x slower at 16 to 128 channels: the copy's transpose and twelve streams a plane apart.)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .activations import activate_rows_more, bias_activation_inplace_rows
from .codes import LINEAR, RELU, ROW_WISE, SOFTMAX
from .matmul_simd import block_rows, lanes_for, micro_kernel, pack, strided_micro_kernel
from .normalization import moment_rows
from .pooling import max_pool_2x2, mean_pool_2x2
from .simd import ACCUMULATE, BIAS, BIAS_RELU

# Pixels per block (``matmul_simd.PIXELS``): 12 x 16 and 12 x 32 keep 12 and 24 accumulators of
# the 32 vector registers (a 1-thread product of 8 pixels by 32 filters ran at 174 GFLOP/s, 12
# by 16 at 136, where OpenBLAS's sgemm peaks at ~150; as a conv, 12 pixels by 32 filters beat 8
# by 1.05-1.2x). A row's last pixels run in blocks of 8, 4, 2 and 1.

# Output rows per block: a row is at least a few thousand multiply-adds.
MIN_ROWS_PER_BLOCK = 2
# Blocks per thread: Numba's threads (TBB) take the blocks as they come free, so a thread slowed
# by the other process's work does not hold the rest up.
BLOCKS_PER_THREAD = 4
# Pixels at least in a part of a row (rows too few to share out, ``_row_parts``): each part
# copies the input rows under its row whole.
MIN_PIXELS_PER_PART = 24


def pack_kernel(kernel: np.ndarray) -> np.ndarray:
    """kernel (kh,kw,C,F) as the micro-kernels' panels (ceil(F/lanes), kh*kw*C*lanes) float32,
    lanes = ``lanes_for(F)``, the filters past F zero."""
    return pack(kernel.reshape(-1, kernel.shape[3]))


def forward(
    x, panels, bias, kernel_shape, strides, pad_top, pad_left, code, out, threads=1, moments=None,
    residual=None,
):  # fmt: skip
    """out (N,oh,ow,F) = act(x (N,H,W,C) conv kernel + bias (F,)), act the activation ``code``
    (any: a relu as a block leaves its registers, the others on each output row while it is in
    cache); float32, the kernel packed by ``pack_kernel``; on up to ``threads`` of Numba's
    threads by blocks of output rows. With ``moments`` ((2, F), linear only), also the mean and
    the biased variance of each filter's outputs, gathered as each row is written (a
    BatchNormalization's batch statistics without a pass of their own over out). With
    ``residual`` (out's shape, C-contiguous), out = act(conv + bias + residual), the residual
    added to each row while it is in cache (a residual block's sum, no pass of its own)."""
    geometry = (kernel_shape, strides, pad_top, pad_left)
    run = forward_call(x.shape, panels, bias, *geometry, code, out, threads, moments)
    return run(x, residual)


def forward_call(
    x_shape, panels, bias, kernel_shape, strides, pad_top, pad_left, code, out, threads=1,
    moments=None,
):  # fmt: skip
    """``forward`` for an x of ``x_shape``, its choices made now: a function (x, residual=None)
    -> out (moments, if given, written at each call)."""
    n, out_h, out_w, filters = out.shape
    kh, kw = kernel_shape[:2]
    rows = out.reshape(n * out_h, out_w, filters)
    geometry = (kh, kw, strides[0], strides[1], pad_top, pad_left)
    head = (panels, bias, *geometry, code, out_h, rows)
    blocks = min(BLOCKS_PER_THREAD * threads, n * out_h // MIN_ROWS_PER_BLOCK)
    blocks = blocks if threads > 1 and blocks > 1 else 1
    parts = _row_parts(len(rows), out_w, threads) if blocks < 2 * threads else 1
    tasks = len(rows) * parts if parts > 1 else blocks
    sums, gather = np.zeros((tasks, 3, filters)), moments is not None
    if parts > 1:
        counts = np.tile(np.diff(np.arange(parts + 1) * out_w // parts), len(rows))
    else:
        counts = np.diff(np.arange(blocks + 1) * len(rows) // blocks) * out_w
    width = (out_w - 1) * strides[1] + kw  # band_buffer's, for a whole image
    image = np.empty(((out_h - 1) * strides[0] + kh) * width * x_shape[3], np.float32)

    def run(x, residual=None):
        added = _NO_RESIDUAL if residual is None else residual.reshape(rows.shape)
        if parts > 1:
            _conv_row_parts(x, *head, added, sums, gather, parts)
        elif blocks > 1:
            _conv_blocks(x, *head, added, sums, gather, blocks)
        else:
            _conv_rows(x, *head, added, image, 0, 0, len(rows), sums[0], gather, 0, out_w)
        if gather:
            _combine_moments(sums, counts, moments)
        return out

    return run


def _row_parts(rows: int, out_w: int, threads: int) -> int:
    """Spans of pixels each output row runs in where ``rows`` are too few to share out on
    ``threads`` (1: rows stay whole): about BLOCKS_PER_THREAD tasks a thread, each of at
    least MIN_PIXELS_PER_PART pixels."""
    if threads < 2:
        return 1
    wanted = -(-BLOCKS_PER_THREAD * threads // rows)
    return max(1, min(wanted, out_w // MIN_PIXELS_PER_PART))


_NO_RESIDUAL = np.empty((0, 0, 0), np.float32)


@njit(cache=True, parallel=True, error_model="numpy")
def _conv_blocks(
    x, panels, bias, kh, kw, sh, sw, pad_top, pad_left, code, out_h, out, residual, sums, gather,
    blocks,
):  # fmt: skip
    """``_conv_rows`` over all of out's rows in ``blocks`` blocks, on Numba's threads; with
    ``gather``, block b's moments' sums into sums[b]."""
    rows, out_w = out.shape[:2]
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        image = band_buffer(x, kh, kw, sh, sw, out_h, out_w, stop - start)
        _conv_rows(
            x, panels, bias, kh, kw, sh, sw, pad_top, pad_left, code, out_h, out, residual,
            image, 0, start, stop, sums[b], gather, 0, out_w,
        )  # fmt: skip


@njit(cache=True, parallel=True, error_model="numpy")
def _conv_row_parts(
    x, panels, bias, kh, kw, sh, sw, pad_top, pad_left, code, out_h, out, residual, sums, gather,
    parts,
):  # fmt: skip
    """``_conv_rows`` over each of out's rows in ``parts`` spans of its pixels (rows too few to
    share out: a Conv1D's at batch 1), on Numba's threads; with ``gather``, task t's moments'
    sums into sums[t], t = row * parts + part."""
    rows, out_w = out.shape[:2]
    for t in prange(rows * parts):
        row, part = t // parts, t % parts
        image = band_buffer(x, kh, kw, sh, sw, out_h, out_w, 1)
        _conv_rows(
            x, panels, bias, kh, kw, sh, sw, pad_top, pad_left, code, out_h, out, residual,
            image, 0, row, row + 1, sums[t], gather, part * out_w // parts,
            (part + 1) * out_w // parts,
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _add_row_sums(row, sums, first):
    """sums (3, F) float64: a shift per filter (row's first pixel, the first time), then the
    sums of (value - shift) and of its square over row (ow, F), as BatchNormalization's own
    statistics sum them (``normalization.moment_rows``)."""
    if first:
        for f in range(row.shape[1]):
            sums[0, f] = row[0, f]
    moment_rows(row, sums[0], sums[1], sums[2], 0, row.shape[0])


@njit(cache=True, nogil=True, error_model="numpy")
def _combine_moments(sums, counts, moments):
    """moments (2, F) = the mean and biased variance from blocks' shifted sums (B, 3, F) of
    counts[b] values each (Chan et al.'s pairwise combination, in float64)."""
    total = counts.sum()
    for f in range(sums.shape[2]):
        mean = 0.0
        for b in range(sums.shape[0]):
            mean += (sums[b, 0, f] + sums[b, 1, f] / counts[b]) * counts[b]
        mean /= total
        m2 = 0.0
        for b in range(sums.shape[0]):
            block_mean = sums[b, 0, f] + sums[b, 1, f] / counts[b]
            m2 += sums[b, 2, f] - sums[b, 1, f] ** 2 / counts[b]
            m2 += counts[b] * (block_mean - mean) ** 2
        moments[0, f] = mean
        moments[1, f] = max(m2 / total, 0.0)


def forward_max_pool(
    x, panels, bias, kernel_shape, strides, pads, conv_shape, code, out, codes, band, threads
):
    """out (N,oh//2,ow//2,F) = the 2x2 stride-2 max pool of ``forward``'s output (oh, ow) =
    ``conv_shape``, activated by ``code`` (LINEAR, RELU or SOFTMAX), and codes (out's shape,
    uint8, or empty) where each maximum was: per band of ``band`` pooled rows of an image, the
    conv into a buffer that stays in cache, then its pool; bands on up to ``threads`` of
    Numba's threads."""
    args = (x, panels, bias, kernel_shape, strides, pads, conv_shape, code, out, codes, band)
    return _pooled(*args, threads, False)


def forward_average_pool(
    x, panels, bias, kernel_shape, strides, pads, conv_shape, code, out, band, threads
):
    """``forward_max_pool`` with the 2x2 mean for the maximum, for any activation ``code`` (the
    band activated before its pool), no codes."""
    args = (x, panels, bias, kernel_shape, strides, pads, conv_shape, code, out, _NO_CODES, band)
    return _pooled(*args, threads, True)


_NO_CODES = np.empty((0, 0, 0, 0), np.uint8)


def _pooled(
    x, panels, bias, kernel_shape, strides, pads, conv_shape, code, out, codes, band, threads,
    average,
):  # fmt: skip
    kh, kw = kernel_shape[:2]
    args = (x, panels, bias, kh, kw, *strides, *pads, *conv_shape, code, out, codes, band)
    bands = x.shape[0] * -(-out.shape[1] // band)
    if threads > 1 and bands > 1:
        _pooled_bands_parallel(*args, average, min(bands, BLOCKS_PER_THREAD * threads))
    else:
        _pooled_bands(*args, average, 0, bands)
    return out


@njit(cache=True, parallel=True, error_model="numpy")
def _pooled_bands_parallel(
    x, panels, bias, kh, kw, sh, sw, pt, pl, out_h, out_w, code, out, codes, band, average, blocks
):
    """``_pooled_bands`` over all bands in ``blocks`` blocks, on Numba's threads."""
    bands = x.shape[0] * -(-out.shape[1] // band)
    for b in prange(blocks):
        first, last = b * bands // blocks, (b + 1) * bands // blocks
        _pooled_bands(
            x, panels, bias, kh, kw, sh, sw, pt, pl, out_h, out_w, code, out, codes, band,
            average, first, last,
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _pooled_bands(
    x, panels, bias, kh, kw, sh, sw, pt, pl, out_h, out_w, code, out, codes, band, average, first,
    last,
):  # fmt: skip
    """Bands [first, last) of ``band`` pooled rows (numbered image * bands per image + band of
    the image): the conv's rows under it, their activation, their pool (the 2x2 mean with
    ``average``, else the maximum)."""
    n, pooled_h, pooled_w, filters = out.shape
    per_image = -(-pooled_h // band)
    y = np.empty((2 * band, out_w, filters), np.float32)
    image = band_buffer(x, kh, kw, sh, sw, out_h, out_w, 2 * band)
    no_sums = np.zeros((3, filters))
    pooled_rows = out.reshape(n * pooled_h, pooled_w, filters)
    code_rows = codes.reshape(codes.shape[0] * codes.shape[1], pooled_w, codes.shape[3])
    for unit in range(first, last):
        i, p0 = unit // per_image, unit % per_image * band
        p1 = min(pooled_h, p0 + band)
        rows = 2 * (p1 - p0)
        start = i * out_h + 2 * p0
        conv = y[:rows]
        _conv_rows(
            x, panels, bias, kh, kw, sh, sw, pt, pl, code, out_h, conv, _NO_RESIDUAL, image,
            start, start, start + rows, no_sums, False, 0, out_w,
        )  # fmt: skip
        at = i * pooled_h + p0
        target = pooled_rows[at : at + p1 - p0].reshape(1, p1 - p0, pooled_w, filters)
        if average:
            mean_pool_2x2(conv.reshape(1, rows, out_w, filters), target)
            continue
        where = code_rows[at : at + p1 - p0].reshape(target.shape) if codes.shape[0] else codes
        max_pool_2x2(conv.reshape(1, rows, out_w, filters), target, where)


@njit(cache=True, nogil=True, inline="always")
def band_buffer(x, kh, kw, sh, sw, out_h, out_w, rows):
    """A buffer for the zero-bordered input rows under up to ``rows`` output rows of an image."""
    width = (out_w - 1) * sw + kw
    return np.empty(((min(rows, out_h) - 1) * sh + kh) * width * x.shape[3], np.float32)


@njit(cache=True, nogil=True, error_model="numpy")
def _conv_rows(
    x, panels, bias, kh, kw, sh, sw, pad_top, pad_left, code, out_h, out, residual, image, first,
    start, stop, sums, gather, p0, p1,
):  # fmt: skip
    """Output rows [start, stop) of the conv of x (N,H,W,C), rows numbered n * out_h + y, into
    out (rows, ow, F) at row - first, activated by ``code``; a non-empty ``residual`` (rows of
    out's numbering) added before the activation. Each image's input rows under them are
    copied into ``image`` (``band_buffer``), zero-bordered, first. With ``gather``, each row's
    moments' sums are added into sums (3, F) as it is written (``_add_row_sums``). Only the
    pixels [p0, p1) of each row."""
    lanes = lanes_for(out.shape[2])
    c = x.shape[3]
    out_w, filters = out.shape[1], out.shape[2]
    width = (out_w - 1) * sw + kw
    flat_out, flat_x = out.reshape(-1), x.reshape(-1)
    run, loaded, top = kw * c, -1, 0
    added = residual.shape[0] > 0
    epilogue = BIAS_RELU if code == RELU and not added else BIAS
    for row in range(start, stop):
        n, y, top = row_in_band(
            flat_x, x.shape, image, stop, out_h, sh, kh, width, pad_top, pad_left, row, loaded, top
        )
        loaded = n
        for block in range(panels.shape[0]):
            f0 = block * lanes
            count = min(lanes, filters - f0)
            x0 = p0
            while x0 < p1:
                pixels = block_rows(p1 - x0)
                at = ((row - first) * out_w + x0) * filters + f0
                a_start = ((y * sh - top) * width + x0 * sw) * c
                args = (pixels, flat_out, at, filters, count, bias, f0, epilogue, image, a_start)
                micro_kernel(lanes, (*args, sw * c, width * c, panels[block], 0, run, kh))
                x0 += pixels
        written = out[row - first, p0:p1]
        if added:
            _add_activated(written, residual[row, p0:p1], code, bias)
        elif code != LINEAR and code != RELU:
            activate_pixels(written, bias, code)
        if gather:
            _add_row_sums(written, sums, row == start)


@njit(cache=True, nogil=True, error_model="numpy")
def _add_activated(pixels, addend, code, bias):
    """pixels (P, F) = act(pixels + addend (P, F)) in place."""
    flat, more = pixels.reshape(-1), addend.reshape(-1)
    if code == RELU:
        for i in range(flat.size):
            flat[i] = max(flat[i] + more[i], np.float32(0))
        return
    for i in range(flat.size):
        flat[i] += more[i]
    if code != LINEAR:
        activate_pixels(pixels, bias, code)


@njit(cache=True, nogil=True, error_model="numpy")
def activate_pixels(pixels, bias, code):
    """pixels (P, F) = act(pixels) in place for an activation the micro-kernels' epilogue does
    not apply: over each pixel's filters for softmax and log_softmax, else as one long row (a
    call per pixel of 6 or 16 values ran a LeNet's fused conv and pool 0.7x)."""
    if code == SOFTMAX:
        bias_activation_inplace_rows(pixels, bias[:0], code, 0, pixels.shape[0])
    elif code in ROW_WISE:
        activate_rows_more(pixels, code, 0, pixels.shape[0])
    else:
        activate_rows_more(pixels.reshape(1, -1), code, 0, 1)


def kernel_gradient(x, grad, kernel_shape, strides, pad_top, pad_left, dkernel, threads=1):
    """dkernel (kh,kw,C,F) += the kernel gradient of a conv of x (N,H,W,C) with ``strides``
    whose output gradient is grad (N,oh,ow,F), float32: per image, each block of a tap's
    channels by a block of filters sums over all output pixels in registers. On up to
    ``threads`` of Numba's threads by blocks of images, each summing its own part."""
    kh, kw = kernel_shape[:2]
    args = (x, grad, kh, kw, *strides, pad_top, pad_left)
    blocks = min(threads, x.shape[0])
    if blocks > 1:
        parts = np.zeros((blocks, *dkernel.shape), np.float32)
        _kernel_gradient_blocks(*args, parts)
        dkernel += parts.sum(axis=0)
    else:
        part = np.zeros(dkernel.shape, np.float32)
        _kernel_gradient_images(*args, part, 0, x.shape[0])
        dkernel += part
    return dkernel


@njit(cache=True, parallel=True, error_model="numpy")
def _kernel_gradient_blocks(x, grad, kh, kw, sh, sw, pad_top, pad_left, parts):
    """parts[b] (kh,kw,C,F) = ``_kernel_gradient_images`` of block b of the images, on Numba's
    threads."""
    n, blocks = x.shape[0], parts.shape[0]
    for b in prange(blocks):
        start, stop = b * n // blocks, (b + 1) * n // blocks
        _kernel_gradient_images(x, grad, kh, kw, sh, sw, pad_top, pad_left, parts[b], start, stop)


# Inlined into its callers at Numba's level: compiled in a process as a function of its own
# (before the parallel shell, or when the shell was compiled there rather than loaded from the
# cache), the shell ran it 2.3x slower (6.1 ms against 2.6 ms for 32 images of 32x32x32).
@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _kernel_gradient_images(x, grad, kh, kw, sh, sw, pad_top, pad_left, dkernel, start, stop):
    """dkernel += the kernel gradient from images [start, stop): each image copied into a
    zero-bordered buffer, still NHWC; each block of filters of its gradient packed (oh*ow,
    lanes). A call of the micro-kernel sums, over the output pixels (sw * C apart in the
    buffer), a block of a tap's channels or, with fewer channels than kw, of a channel's row of
    taps."""
    c = x.shape[3]
    _, out_h, out_w, filters = grad.shape
    lanes = lanes_for(filters)
    height, width = (out_h - 1) * sh + kh, (out_w - 1) * sw + kw
    pixels = out_h * out_w
    image = np.empty(height * width * c, np.float32)
    flat_x, flat_grad, flat_dkernel = x.reshape(-1), grad.reshape(-1), dkernel.reshape(-1)
    packed = flat_grad if filters == lanes else np.zeros(pixels * lanes, np.float32)
    # Blocks of the rows of dkernel there are more of: a tap's channels, or a row of taps (a
    # grey or RGB image's 3 or 5 taps, where blocks of 1 to 3 channels ran 2-4x slower).
    by_channels = c >= kw
    rows = c if by_channels else kw
    lda = 1 if by_channels else c  # between a block's rows in the image
    ldo = filters if by_channels else c * filters  # and in dkernel
    for n in range(start, stop):
        _load_band(flat_x, n, x.shape, image, 0, height, width, pad_top, pad_left)
        for f0 in range(0, filters, lanes):
            count = min(lanes, filters - f0)
            b_start = n * pixels * filters  # the image's own gradient when it has lanes filters
            if filters != lanes:
                _pack_filters(flat_grad, b_start, pixels, filters, f0, count, lanes, packed)
                b_start = 0
            for fixed in range(kh * kw if by_channels else kh * c):
                if by_channels:  # a tap: a block of its channels
                    i, j = fixed // kw, fixed % kw
                    a_base, at_base = (i * width + j) * c, fixed * c * filters
                else:  # a channel's row of taps
                    i, ch = fixed // c, fixed % c
                    a_base, at_base = i * width * c + ch, (i * kw * c + ch) * filters
                r0 = 0
                while r0 < rows:
                    block = block_rows(rows - r0)
                    at = at_base + r0 * ldo + f0
                    args = (block, flat_dkernel, at, ldo, count, packed, 0, ACCUMULATE, image)
                    a_at = a_base + r0 * lda
                    args_b = (a_at, lda, sh * width * c, packed, b_start, out_w, out_h, sw * c)
                    strided_micro_kernel(lanes, (*args, *args_b))
                    r0 += block


@njit(cache=True, nogil=True, inline="always")
def _pack_filters(flat_grad, start, pixels, filters, f0, count, lanes, packed):
    """packed (pixels*lanes) = filters f0..f0+count-1 of the (pixels, filters) rows at start."""
    for p in range(pixels):
        source = start + p * filters + f0
        for j in range(count):
            packed[p * lanes + j] = flat_grad[source + j]


@njit(cache=True, nogil=True, inline="always")
def row_in_band(
    flat_x, shape, image, stop, out_h, sh, kh, width, pad_top, pad_left, row, loaded, top
):
    """(image n, output row y, the first padded input row in ``image``) of output ``row``
    (numbered n * out_h + y) of a block of rows ending at ``stop``: where ``row`` starts
    another image than the ``loaded`` one, that image's input rows under the rest of the block
    are loaded into ``image`` (``_load_band``) first; else ``top`` stays."""
    n, y = row // out_h, row % out_h
    if n != loaded:
        top, last = y * sh, min(stop - n * out_h, out_h) - 1
        _load_band(flat_x, n, shape, image, top, last * sh + kh, width, pad_top, pad_left)
    return n, y, top


@njit(cache=True, nogil=True, inline="always")
def _load_band(flat_x, n, shape, image, top, bottom, width, pad_top, pad_left):
    """image ((bottom-top)*width*C, flat) = rows [top, bottom) of image n of x (N,H,W,C) put at
    (pad_top, pad_left) inside a zero border ``width`` pixels wide."""
    _, h, w, c = shape
    cols = min(w, width - pad_left)
    line = width * c
    for padded in range(top, bottom):
        base, r = (padded - top) * line, padded - pad_top
        if r < 0 or r >= h:
            image[base : base + line] = 0
            continue
        source, target = (n * h + r) * w * c, base + pad_left * c
        image[base:target] = 0
        image[target : target + cols * c] = flat_x[source : source + cols * c]
        image[target + cols * c : base + line] = 0
