"""Batch normalization over 2-D ``(M, C)`` arrays: statistics per column ``C``, near bandwidth.

The caller reshapes NHWC activations to ``(N*H*W, C)``. Training forward is two passes over x:
one gathers per-column sums of ``d = x - x[0]`` and ``d**2`` in float64 (per-block partials over
rows, added at the end), one normalizes, scales, shifts and optionally applies relu. Shifting by
the first row keeps ``E[d**2] - E[d]**2`` accurate for inputs with a large mean, and float64
accumulators keep float32 sums exact enough for millions of rows. Backward is two passes too: the
two per-column reductions (sum dy, sum dy * (x - mean)) and dx. With ``code == RELU`` the
forward writes ``relu(z)`` and the backward masks dy by the sign of ``z``, recomputed from x
exactly as the forward computed it, so no extra array is kept.

Inputs of at least ``PARALLEL_MIN_ELEMENTS`` run the parallel shells (``prange`` over blocks of
rows); smaller ones run the serial row kernels, whose launch costs nothing.

When a Keras layer has ``center=False`` / ``scale=False`` the caller passes beta = zeros and
gamma = ones.
"""

import numpy as np
from numba import njit, prange

from .codes import RELU

# A parallel launch costs ~10 us and may wait for a scheduler slice on a busy machine: below
# this many elements the serial kernels run.
PARALLEL_MIN_ELEMENTS = 1 << 16
PARALLEL_BLOCKS = 64


def _blocks(rows, cols):
    return min(rows, PARALLEL_BLOCKS) if rows * cols >= PARALLEL_MIN_ELEMENTS else 1


@njit(cache=True, nogil=True, error_model="numpy")
def _moment_rows(x, shift, acc, acc_sq, start, stop):
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
        _moment_rows(x, shift, partial[b], partial_sq[b], start, stop)


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
    """y = act((x - mean) * scale + beta) over rows [start, stop); act relu or identity."""
    zero = x.dtype.type(0)
    if code == RELU:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                v = (x[i, j] - mean[j]) * scale[j] + beta[j]
                y[i, j] = zero if v < zero else v
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
    """y = act((x - mean) * scale + beta); x, y (M, C); mean, scale, beta (C,); act relu or none."""
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
        _moment_rows(x, shift, partial[0], partial_sq[0], 0, rows)
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
    """acc_b += sum dz, acc_g += sum dz * (x - mean), float64; dz = dy, masked by relu's z > 0."""
    zero = x.dtype.type(0)
    if code == RELU:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                d = x[i, j] - mean[j]
                dz = grad_y[i, j] if d * scale[j] + beta[j] > zero else zero
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


@njit(cache=True, nogil=True, error_model="numpy")
def _grad_x_rows(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x, start, stop):
    """grad_x = k_dy * dz - k_x * (x - mean) + k_0 over rows [start, stop)."""
    zero = x.dtype.type(0)
    if code == RELU:
        for i in range(start, stop):
            for j in range(x.shape[1]):
                d = x[i, j] - mean[j]
                dz = grad_y[i, j] if d * scale[j] + beta[j] > zero else zero
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


def batchnorm_backward(grad_y, x, gamma, beta, mean, invstd, code, grad_x, dgamma, dbeta):
    """grad_x (M, C) overwritten; dgamma, dbeta (C,) added into; mean, invstd from the forward;
    code RELU: the forward applied relu after the affine map, its gradient is taken here."""
    rows, cols = x.shape
    blocks = _blocks(rows, cols)
    scale = invstd * gamma  # as the forward computed it: the relu mask matches bit for bit
    part_b = np.zeros((blocks, cols))
    part_g = np.zeros((blocks, cols))
    if blocks > 1:
        _grad_sums_parallel(grad_y, x, mean, scale, beta, code, part_b, part_g)
    else:
        _grad_sum_rows(grad_y, x, mean, scale, beta, code, part_b[0], part_g[0], 0, rows)
    k_dy, k_x, k_0 = (np.empty(cols, x.dtype) for _ in range(3))
    _grad_coefficients(part_b, part_g, gamma, invstd, rows, dgamma, dbeta, k_dy, k_x, k_0)
    if blocks > 1:
        _grad_x_parallel(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x)
    else:
        _grad_x_rows(grad_y, x, mean, scale, beta, code, k_dy, k_x, k_0, grad_x, 0, rows)
