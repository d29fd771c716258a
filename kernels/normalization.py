"""Batch, layer and group normalization kernels.

Batch normalization over 2-D ``(M, C)`` arrays: statistics per column ``C``, near bandwidth.

The caller reshapes NHWC activations to ``(N*H*W, C)``. Training forward is two passes over x:
one gathers per-column sums of ``d = x - x[0]`` and ``d**2`` in float64 (per-block partials over
rows, added at the end), one normalizes, scales, shifts and optionally applies relu. Shifting by
the first row keeps ``E[d**2] - E[d]**2`` accurate for inputs with a large mean, and float64
accumulators keep float32 sums exact enough for millions of rows. Backward is two passes too: the
two per-column reductions (sum dy, sum dy * (x - mean)) and dx; on float32 rows of up to
``LANES_MAX_COLUMNS`` both run on 16-lane vectors (``simd.batchnorm_grad_sums`` and
``batchnorm_grad_x``: the same operations, the sums held in registers). With ``code == RELU`` the
forward writes ``relu(z)`` and the backward masks dy by the sign of ``z``, recomputed from x
exactly as the forward computed it, so no extra array is kept; ``RELU6`` clips z to [0, 6] and
masks dy where z is outside (0, 6) (MobileNetV2's activation).

Inputs of at least ``PARALLEL_MIN_ELEMENTS`` run the parallel shells (``prange`` over blocks of
rows); smaller ones run the serial row kernels, whose launch costs nothing.

When a Keras layer has ``center=False`` / ``scale=False`` the caller passes beta = zeros and
gamma = ones.
"""

import numpy as np
from numba import njit, prange

from .activations import long_rows
from .codes import RELU, RELU6
from .simd import LANES, batchnorm_grad_sums, batchnorm_grad_x

# A parallel launch costs ~10 us and may wait for a scheduler slice on a busy machine: below
# this many elements the serial kernels run.
PARALLEL_MIN_ELEMENTS = 1 << 16
PARALLEL_BLOCKS = 64


# The row reductions of layer and group normalization may be reassociated: the float64 sums of a
# row then vectorize (2.7x faster on rows of 64 float32s, measured).
_REASSOC = {"reassoc", "contract"}


# Rows per block of the statistics' partial sums at least: each block's (C,) float64 sums are
# zeroed and added up after, as much work as its rows where C is wide (a Dense layer's 128 x
# 512 outputs in 64 blocks of 2 rows took 10x as long as in one).
MIN_ROWS_PER_BLOCK = 64


def _blocks(rows, cols):
    """Blocks of rows whose partial sums the statistics gather in parallel (1: serially)."""
    if rows * cols < PARALLEL_MIN_ELEMENTS:
        return 1
    return max(1, min(rows // MIN_ROWS_PER_BLOCK, PARALLEL_BLOCKS))


@njit(cache=True, nogil=True, error_model="numpy")
def moment_rows(x, shift, acc, acc_sq, start, stop):
    """acc[c] += sum of d, acc_sq[c] += sum of d**2 over rows [start, stop); d = x - shift, f64."""
    for i in range(start, stop):
        for j in range(x.shape[1]):
            d = np.float64(x[i, j]) - shift[j]
            acc[j] += d
            acc_sq[j] += d * d


@njit(cache=True, parallel=True, error_model="numpy")
def _moments_parallel(x, shift, partial, partial_sq):
    """partial[b], partial_sq[b] (B, C) float64: the sums of block b of x's rows."""
    rows = x.shape[0]
    blocks = partial.shape[0]
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        moment_rows(x, shift, partial[b], partial_sq[b], start, stop)


@njit(cache=True, nogil=True, error_model="numpy")
def _finish_moments(partial, partial_sq, shift, rows, eps, mean, var, invstd):
    """mean, var, invstd = 1 / sqrt(var + eps) (C,) from the block sums (B, C) of x - shift."""
    one = mean.dtype.type(1)
    for j in range(mean.shape[0]):
        s = 0.0
        sq = 0.0
        for b in range(partial.shape[0]):
            s += partial[b, j]
            sq += partial_sq[b, j]
        m = s / rows
        v = max(sq / rows - m * m, 0.0)
        mean[j] = shift[j] + m
        var[j] = v
        invstd[j] = one / np.sqrt(var[j] + eps)


@njit(cache=True, nogil=True, error_model="numpy")
def _apply_rows(x, mean, scale, beta, code, y, start, stop):
    """y = act((x - mean) * scale + beta) over rows [start, stop); act relu, relu6 or identity."""
    zero, six = x.dtype.type(0), x.dtype.type(6)
    if code == RELU:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                v = (x[i, j] - mean[j]) * scale[j] + beta[j]
                y[i, j] = zero if v < zero else v
    elif code == RELU6:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                v = (x[i, j] - mean[j]) * scale[j] + beta[j]
                y[i, j] = zero if v < zero else six if v > six else v
    else:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                y[i, j] = (x[i, j] - mean[j]) * scale[j] + beta[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _apply_parallel(x, mean, scale, beta, code, y):
    rows = x.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        _apply_rows(x, mean, scale, beta, code, y, b * rows // blocks, (b + 1) * rows // blocks)


def batchnorm_apply(x, mean, scale, beta, code, y):
    """y = act((x - mean) * scale + beta); x, y (M, C); mean, scale, beta (C,); act the code
    LINEAR, RELU or RELU6. Rows of fewer than 32 channels run as rows of several (``long_rows``,
    the per-channel values repeated): 16 channels 1.45x faster, 8 2.3x (2M floats)."""
    if x.shape[1] < 32:
        x_long, y_long = long_rows(x, y)
        repeats = x_long.shape[1] // x.shape[1]
        if repeats > 1:
            x, y = x_long, y_long
            mean, scale, beta = (np.tile(v, repeats) for v in (mean, scale, beta))
    if _blocks(*x.shape) > 1:
        _apply_parallel(x, mean, scale, beta, code, y)
    else:
        _apply_rows(x, mean, scale, beta, code, y, 0, x.shape[0])


def batchnorm_moments(x, eps, mean, var, invstd):
    """mean, biased var and 1 / sqrt(var + eps) (C,) of x (M, C) over its rows, in one pass."""
    rows, cols = x.shape
    blocks = _blocks(rows, cols)
    shift = x[0].astype(np.float64)
    partial = np.zeros((blocks, cols))
    partial_sq = np.zeros((blocks, cols))
    if blocks > 1:
        _moments_parallel(x, shift, partial, partial_sq)
    else:
        moment_rows(x, shift, partial[0], partial_sq[0], 0, rows)
    _finish_moments(partial, partial_sq, shift, rows, eps, mean, var, invstd)


def batchnorm_forward_train(x, gamma, beta, eps, code, y, mean, var, invstd):
    """y = act((x - mean) * invstd * gamma + beta), batch stats; x, y (M, C); the rest (C,)."""
    batchnorm_moments(x, eps, mean, var, invstd)
    batchnorm_apply(x, mean, invstd * gamma, beta, code, y)


def batchnorm_forward_infer(x, gamma, beta, moving_mean, moving_var, eps, code, y):
    """y = act((x - moving_mean) / sqrt(moving_var + eps) * gamma + beta); x, y (M, C)."""
    one = x.dtype.type(1)
    scale = one / np.sqrt(moving_var + x.dtype.type(eps)) * gamma
    batchnorm_apply(x, moving_mean, scale.astype(x.dtype), beta, code, y)


@njit(cache=True, nogil=True, error_model="numpy")
def _grad_sum_rows(grad_y, x, mean, scale, beta, code, acc_b, acc_g, start, stop):
    """acc_b += sum dz, acc_g += sum dz * (x - mean), float64; dz = dy, masked by relu's z > 0
    (relu6's 0 < z < 6)."""
    zero = x.dtype.type(0)
    if code in (RELU, RELU6):
        top = x.dtype.type(6 if code == RELU6 else np.inf)
        for i in range(start, stop):
            for j in range(x.shape[1]):
                d = x[i, j] - mean[j]
                dz = grad_y[i, j] if zero < d * scale[j] + beta[j] < top else zero
                acc_b[j] += np.float64(dz)
                acc_g[j] += np.float64(dz) * np.float64(d)
    else:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                dz = np.float64(grad_y[i, j])
                acc_b[j] += dz
                acc_g[j] += dz * np.float64(x[i, j] - mean[j])


@njit(cache=True, parallel=True, error_model="numpy")
def _grad_sums_parallel(grad_y, x, mean, scale, beta, code, part_b, part_g):
    rows = x.shape[0]
    blocks = part_b.shape[0]
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _grad_sum_rows(grad_y, x, mean, scale, beta, code, part_b[b], part_g[b], start, stop)


@njit(cache=True, inline="always")
def _lane_mask(code):
    """The vector kernels' (relu, top) for the activation ``code`` the forward applied."""
    return (1 if code in (RELU, RELU6) else 0), np.float32(6 if code == RELU6 else np.inf)


@njit(cache=True, parallel=True, error_model="numpy")
def _grad_sums_lanes_parallel(grad_y, x, mean, scale, beta, code, part_b, part_g):
    rows = x.shape[0]
    blocks = part_b.shape[0]
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _grad_sums_lanes(grad_y, x, mean, scale, beta, code, part_b[b], part_g[b], start, stop)


@njit(cache=True, nogil=True, error_model="numpy")
def _grad_sums_lanes(grad_y, x, mean, scale, beta, code, acc_b, acc_g, start, stop):
    """``_grad_sum_rows`` of float32 arrays on 16-lane vectors (``simd.batchnorm_grad_sums``):
    the float64 sums of each block of 16 columns stay in registers over the rows."""
    cols = x.shape[1]
    flat_g, flat_x = grad_y.reshape(-1), x.reshape(-1)
    relu, top = _lane_mask(code)
    chunk = max(1, CHUNK_VALUES // cols)
    for r0 in range(start, stop, chunk):
        rows = min(chunk, stop - r0)
        for c0 in range(0, cols, LANES):
            batchnorm_grad_sums(
                flat_g, flat_x, r0 * cols + c0, rows, cols, min(LANES, cols - c0), c0,
                mean, scale, beta, top, relu, acc_b, acc_g,
            )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _grad_x_rows(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x, start, stop):
    """grad_x = k_dy * dz - k_x * (x - mean) + k_0 over rows [start, stop)."""
    zero = x.dtype.type(0)
    if code in (RELU, RELU6):
        top = x.dtype.type(6 if code == RELU6 else np.inf)
        for i in range(start, stop):
            for j in range(x.shape[1]):
                d = x[i, j] - mean[j]
                dz = grad_y[i, j] if zero < d * scale[j] + beta[j] < top else zero
                grad_x[i, j] = k_dy[j] * dz - k_x[j] * d + k_0[j]
    else:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                grad_x[i, j] = k_dy[j] * grad_y[i, j] - k_x[j] * (x[i, j] - mean[j]) + k_0[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _grad_x_parallel(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x):
    rows = x.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _grad_x_rows(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x, start, stop)


@njit(cache=True, parallel=True, error_model="numpy")
def _grad_x_lanes_parallel(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x):
    rows = x.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _grad_x_lanes(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x, start, stop)


@njit(cache=True, nogil=True, error_model="numpy")
def _grad_x_lanes(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x, start, stop):
    """``_grad_x_rows`` of float32 arrays on 16-lane vectors (``simd.batchnorm_grad_x``)."""
    cols = x.shape[1]
    flat_g, flat_x, flat_out = grad_y.reshape(-1), x.reshape(-1), grad_x.reshape(-1)
    relu, top = _lane_mask(code)
    chunk = max(1, CHUNK_VALUES // cols)
    for r0 in range(start, stop, chunk):
        rows = min(chunk, stop - r0)
        for c0 in range(0, cols, LANES):
            batchnorm_grad_x(
                flat_g, flat_x, r0 * cols + c0, rows, cols, min(LANES, cols - c0), c0,
                mean, scale, beta, top, relu, k_dy, k_x, k_0, flat_out,
            )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _grad_coefficients(part_b, part_g, gamma, invstd, rows, dgamma, dbeta, k_dy, k_x, k_0):
    """Adds into dgamma, dbeta (C,); k_dy, k_x, k_0 (C,): grad_x's per-column coefficients."""
    for j in range(gamma.shape[0]):
        sb = 0.0
        sg = 0.0
        for b in range(part_b.shape[0]):
            sb += part_b[b, j]
            sg += part_g[b, j]
        inv = np.float64(invstd[j])
        dbeta[j] += sb
        dgamma[j] += sg * inv
        k = np.float64(gamma[j]) * inv
        k_dy[j] = k
        k_x[j] = k * inv * inv * sg / rows
        k_0[j] = -k * sb / rows


# The vector kernels run each block of 16 columns over a chunk of rows of this many values (4 KB
# of float32: in L1 for the next block's pass, whatever the rows' stride) before the next one.
CHUNK_VALUES = 1024
# The backward's passes (rows, parallel shell) by whether they run on 16-lane vectors: float32,
# contiguous, rows of at most LANES_MAX_COLUMNS. There the sums ran 1.3-14x and the input
# gradient 1.2-2.6x faster than the loops, whose vectorizer leaves short rows scalar (2M floats
# in rows of 8 to 48 on 2 threads); rows of 64 and 128 ran 1.5-2.7x slower (the column blocks'
# strided passes over arrays of 16 MB that come from memory).
LANES_MAX_COLUMNS = 48
_SUMS = {
    False: (_grad_sum_rows, _grad_sums_parallel),
    True: (_grad_sums_lanes, _grad_sums_lanes_parallel),
}
_GRAD_X = {False: (_grad_x_rows, _grad_x_parallel), True: (_grad_x_lanes, _grad_x_lanes_parallel)}


def batchnorm_backward(grad_y, x, gamma, beta, mean, invstd, code, grad_x, dgamma, dbeta):
    """grad_x (M, C) overwritten; dgamma, dbeta (C,) added into; mean, invstd from the forward;
    code RELU (RELU6): the forward applied relu (relu6) after the affine map, its gradient is
    taken here."""
    rows, cols = x.shape
    blocks = _blocks(rows, cols)
    scale = invstd * gamma  # as the forward computed it: the relu mask matches bit for bit
    part_b = np.zeros((blocks, cols))
    part_g = np.zeros((blocks, cols))
    lanes = x.dtype == np.float32 and cols <= LANES_MAX_COLUMNS
    lanes = lanes and all(a.flags.c_contiguous for a in (grad_y, x, grad_x))
    sums_rows, sums_parallel = _SUMS[lanes]
    if blocks > 1:
        sums_parallel(grad_y, x, mean, scale, beta, code, part_b, part_g)
    else:
        sums_rows(grad_y, x, mean, scale, beta, code, part_b[0], part_g[0], 0, rows)
    k_dy, k_x, k_0 = (np.empty(cols, x.dtype) for _ in range(3))
    _grad_coefficients(part_b, part_g, gamma, invstd, rows, dgamma, dbeta, k_dy, k_x, k_0)
    x_rows, x_parallel = _GRAD_X[lanes]
    if blocks > 1:
        x_parallel(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x)
    else:
        x_rows(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x, 0, rows)


# ---- layer normalization: statistics per row of (M, D) -----------------------------------------
#
# One row at a time: its mean, its variance around that mean (the row is in cache by then, so
# the second read is free) and the normalized row, accumulated in float64. The statistics are
# kept as float64 (M,) arrays for the backward, which is one pass per row too: the two row sums
# the input gradient needs, then the gradient, while dgamma and dbeta gather per block of rows.
# ``rms`` is Keras's deprecated ``rms_scaling``: y = x * rstd * gamma, the variance still
# centered, no beta.


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REASSOC)
def _layernorm_rows(x, gamma, beta, eps, rms, y, mean, rstd, start, stop):
    """y = (x - mean) * rstd * gamma + beta per row of rows [start, stop); rms: x * rstd * gamma."""
    cols = x.shape[1]
    for i in range(start, stop):
        total = 0.0
        for j in range(cols):
            total += x[i, j]
        m = total / cols
        sq = 0.0
        for j in range(cols):
            d = x[i, j] - m
            sq += d * d
        r = 1.0 / np.sqrt(sq / cols + eps)
        mean[i] = m
        rstd[i] = r
        mm, rr = x.dtype.type(m), x.dtype.type(r)  # the write loop in x's dtype: vectorizes
        if rms:
            for j in range(cols):
                y[i, j] = x[i, j] * rr * gamma[j]
        else:
            for j in range(cols):
                y[i, j] = (x[i, j] - mm) * rr * gamma[j] + beta[j]


@njit(cache=True, parallel=True, error_model="numpy")
def _layernorm_parallel(x, gamma, beta, eps, rms, y, mean, rstd):
    rows = x.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _layernorm_rows(x, gamma, beta, eps, rms, y, mean, rstd, start, stop)


def layernorm_forward(x, gamma, beta, eps, rms, y, mean, rstd):
    """y (M, D) = LayerNorm of x (M, D) per row with gamma, beta (D,); mean, rstd (M,) float64
    written (1 / sqrt(var + eps)); ``rms``: y = x * rstd * gamma (beta unused)."""
    if _blocks(*x.shape) > 1:
        _layernorm_parallel(x, gamma, beta, eps, rms, y, mean, rstd)
    else:
        _layernorm_rows(x, gamma, beta, eps, rms, y, mean, rstd, 0, x.shape[0])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REASSOC)
def _layernorm_grad_rows(grad_y, x, gamma, mean, rstd, rms, grad_x, dgamma, dbeta, start, stop):
    """grad_x over rows [start, stop); dgamma, dbeta (D,) float64 added into."""
    cols = x.shape[1]
    for i in range(start, stop):
        m = mean[i]
        r = rstd[i]
        sum_g = 0.0
        sum_gu = 0.0  # sum of g * u, u = d y / d gamma (x * rstd with rms, else xhat)
        for j in range(cols):
            dy = np.float64(grad_y[i, j])
            u = x[i, j] * r if rms else (x[i, j] - m) * r
            g = dy * gamma[j]
            sum_g += g
            sum_gu += g * u
            dgamma[j] += dy * u
            dbeta[j] += dy
        t = x.dtype.type
        mm, rr = t(m), t(r)
        mean_g = t(0.0) if rms else t(sum_g / cols)
        mean_gu = t(sum_gu / cols)
        for j in range(cols):
            xhat = (x[i, j] - mm) * rr
            grad_x[i, j] = rr * (grad_y[i, j] * gamma[j] - mean_g - xhat * mean_gu)


@njit(cache=True, parallel=True, error_model="numpy")
def _layernorm_grad_parallel(grad_y, x, gamma, mean, rstd, rms, grad_x, part_g, part_b):
    rows = x.shape[0]
    blocks = part_g.shape[0]
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _layernorm_grad_rows(
            grad_y, x, gamma, mean, rstd, rms, grad_x, part_g[b], part_b[b], start, stop
        )


def layernorm_backward(grad_y, x, gamma, mean, rstd, rms, grad_x, dgamma, dbeta):
    """grad_x (M, D) overwritten; dgamma, dbeta (D,) added into (dbeta: sum of grad_y, which
    ``rms`` outputs do not depend on); mean, rstd (M,) float64 from ``layernorm_forward``."""
    rows, cols = x.shape
    blocks = _blocks(rows, cols)
    part_g = np.zeros((blocks, cols))
    part_b = np.zeros((blocks, cols))
    if blocks > 1:
        _layernorm_grad_parallel(grad_y, x, gamma, mean, rstd, rms, grad_x, part_g, part_b)
    else:
        _layernorm_grad_rows(
            grad_y, x, gamma, mean, rstd, rms, grad_x, part_g[0], part_b[0], 0, rows
        )
    dgamma += part_g.sum(axis=0).astype(dgamma.dtype)
    dbeta += part_b.sum(axis=0).astype(dbeta.dtype)


# ---- group normalization: statistics per sample and group of channels ------------------------
#
# x is (N, S, C) channels-last (S: every axis between batch and channels, flattened), the C
# channels in G groups of C // G neighbours. Per sample: one read for the group sums, one for
# the centered squares, one to write; the sample's S * C values are in cache for the later ones
# when they fit. Parallel over samples.


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REASSOC)
def _groupnorm_sample(x, gamma, beta, eps, groups, y, mean, rstd, n):
    steps, channels = x.shape[1], x.shape[2]
    width = channels // groups
    count = steps * width
    acc = np.zeros(groups)
    for t in range(steps):
        for c in range(channels):
            acc[c // width] += x[n, t, c]
    for g in range(groups):
        mean[n, g] = acc[g] / count
        acc[g] = 0.0
    for t in range(steps):
        for c in range(channels):
            d = x[n, t, c] - mean[n, c // width]
            acc[c // width] += d * d
    for g in range(groups):
        rstd[n, g] = 1.0 / np.sqrt(acc[g] / count + eps)
    for t in range(steps):
        for c in range(channels):
            g = c // width
            y[n, t, c] = (x[n, t, c] - mean[n, g]) * rstd[n, g] * gamma[c] + beta[c]


@njit(cache=True, nogil=True, error_model="numpy")
def _groupnorm_serial(x, gamma, beta, eps, groups, y, mean, rstd):
    for n in range(x.shape[0]):
        _groupnorm_sample(x, gamma, beta, eps, groups, y, mean, rstd, n)


@njit(cache=True, parallel=True, error_model="numpy")
def _groupnorm_parallel(x, gamma, beta, eps, groups, y, mean, rstd):
    for n in prange(x.shape[0]):
        _groupnorm_sample(x, gamma, beta, eps, groups, y, mean, rstd, n)


def groupnorm_forward(x, gamma, beta, eps, groups, y, mean, rstd):
    """y (N, S, C) = GroupNorm of x (N, S, C) over ``groups`` groups of channels, gamma, beta
    (C,); mean, rstd (N, groups) float64 written (rstd = 1 / sqrt(var + eps))."""
    if x.shape[0] > 1 and x.size >= PARALLEL_MIN_ELEMENTS:
        _groupnorm_parallel(x, gamma, beta, eps, groups, y, mean, rstd)
    else:
        _groupnorm_serial(x, gamma, beta, eps, groups, y, mean, rstd)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REASSOC)
def _groupnorm_grad_sample(grad_y, x, gamma, mean, rstd, grad_x, dgamma, dbeta, n):
    """grad_x[n]; dgamma[n], dbeta[n] (C,) float64: this sample's parts."""
    steps, channels = x.shape[1], x.shape[2]
    groups = mean.shape[1]
    width = channels // groups
    count = steps * width
    sum_g = np.zeros(groups)
    sum_gx = np.zeros(groups)
    for t in range(steps):
        for c in range(channels):
            k = c // width
            dy = np.float64(grad_y[n, t, c])
            xhat = (x[n, t, c] - mean[n, k]) * rstd[n, k]
            g = dy * gamma[c]
            sum_g[k] += g
            sum_gx[k] += g * xhat
            dgamma[c] += dy * xhat
            dbeta[c] += dy
    for k in range(groups):
        sum_g[k] /= count
        sum_gx[k] /= count
    for t in range(steps):
        for c in range(channels):
            k = c // width
            xhat = (x[n, t, c] - mean[n, k]) * rstd[n, k]
            g = grad_y[n, t, c] * gamma[c]
            grad_x[n, t, c] = rstd[n, k] * (g - sum_g[k] - xhat * sum_gx[k])


@njit(cache=True, nogil=True, error_model="numpy")
def _groupnorm_grad_serial(grad_y, x, gamma, mean, rstd, grad_x, part_g, part_b):
    for n in range(x.shape[0]):
        _groupnorm_grad_sample(grad_y, x, gamma, mean, rstd, grad_x, part_g[0], part_b[0], n)


@njit(cache=True, parallel=True, error_model="numpy")
def _groupnorm_grad_parallel(grad_y, x, gamma, mean, rstd, grad_x, part_g, part_b):
    for n in prange(x.shape[0]):
        _groupnorm_grad_sample(grad_y, x, gamma, mean, rstd, grad_x, part_g[n], part_b[n], n)


def groupnorm_backward(grad_y, x, gamma, mean, rstd, grad_x, dgamma, dbeta):
    """grad_x (N, S, C) overwritten; dgamma, dbeta (C,) added into; mean, rstd (N, groups)
    float64 from ``groupnorm_forward``."""
    parallel = x.shape[0] > 1 and x.size >= PARALLEL_MIN_ELEMENTS
    parts = x.shape[0] if parallel else 1
    part_g = np.zeros((parts, x.shape[2]))
    part_b = np.zeros((parts, x.shape[2]))
    if parallel:
        _groupnorm_grad_parallel(grad_y, x, gamma, mean, rstd, grad_x, part_g, part_b)
    else:
        _groupnorm_grad_serial(grad_y, x, gamma, mean, rstd, grad_x, part_g, part_b)
    dgamma += part_g.sum(axis=0).astype(dgamma.dtype)
    dbeta += part_b.sum(axis=0).astype(dbeta.dtype)
