"""Elementwise and row-wise activations over 2-D ``(rows, features)`` arrays, forward and backward.

Activations are identified by small integer codes so one compiled kernel serves them all and the
layer can fuse the bias add into the same pass (the GEMM epilogue).
"""

import numpy as np
from numba import njit, prange

from .codes import LINEAR, RELU, SIGMOID, SOFTMAX, TANH


@njit(cache=True, inline="always")
def _sigmoid(z, one):
    # Split by sign so exp never overflows.
    if z >= 0:
        return one / (one + np.exp(-z))
    e = np.exp(z)
    return e / (one + e)


@njit(cache=True, inline="always")
def _activate_row(row, code):
    n = row.shape[0]
    zero = row.dtype.type(0)
    if code == RELU:
        for j in range(n):
            v = row[j]
            row[j] = zero if v < zero else v  # a select, not a conditional store: vectorizes
    elif code == SIGMOID:
        one = row.dtype.type(1)
        for j in range(n):
            row[j] = _sigmoid(row[j], one)
    elif code == TANH:
        for j in range(n):
            row[j] = np.tanh(row[j])
    elif code == SOFTMAX:
        peak = row[0]
        for j in range(1, n):
            if row[j] > peak:
                peak = row[j]
        total = zero
        for j in range(n):
            row[j] = np.exp(row[j] - peak)
            total += row[j]
        for j in range(n):
            row[j] /= total


# Below this many elements a parallel launch (~4 us) costs more than it saves: small layers (an
# MLP's Dense at batch 32) run the serial kernel on all rows at once.
PARALLEL_MIN_ELEMENTS = 16384
# A bias with no activation or relu, and the bias gradient, take a few cycles an element: their
# parallel kernels pay off only from 16x / 32x as many (serial 3 us against parallel 11-13 us at
# 256 x 64; even at 2048 x 128 for the bias + relu, 1-4 million elements for the column sums).
CHEAP_PARALLEL_FACTOR = 16
COLUMN_SUMS_PARALLEL_FACTOR = 32
# Each kernel but the activation backward (see there) is a serial one over rows [start, stop)
# that the parallel shell calls per block of rows: the shell then compiles in a third of the
# time (Numba's parfor passes see one call, not the inlined activation branches), and the serial
# path shares the compiled rows kernel.
PARALLEL_BLOCKS = 256


def bias_activation_forward(z, bias, code, out):
    """out[m, :] = act(z[m, :] + bias); z, out (M, N), bias (N,) or (0,) for none; out may be z."""
    cheap = code in (LINEAR, RELU)
    parallel = z.size >= PARALLEL_MIN_ELEMENTS * (CHEAP_PARALLEL_FACTOR if cheap else 1)
    if out is z:
        if parallel:
            _bias_activation_inplace_parallel(z, bias, code)
        else:
            bias_activation_inplace_rows(z, bias, code, 0, z.shape[0])
    elif parallel:
        _bias_activation_parallel(z, bias, code, out)
    else:
        _bias_activation_rows(z, bias, code, out, 0, z.shape[0])


def activation_backward(grad_y, y, code, out):
    """out = dL/dz given dL/dy and y = act(z); all (M, N); out may be grad_y."""
    if y.size >= PARALLEL_MIN_ELEMENTS:
        _activation_backward_parallel(grad_y, y, code, out)
    else:
        _activation_backward_rows(grad_y, y, code, out, 0, y.shape[0])


def column_sums_add(grad, out):
    """out[n] += sum_m grad[m, n]; grad (M, N), out (N,): the bias gradient."""
    if grad.size >= PARALLEL_MIN_ELEMENTS * COLUMN_SUMS_PARALLEL_FACTOR:
        _column_sums_add_parallel(grad, out)
    else:
        _column_sums_add_rows(grad, out, 0, grad.shape[0])


@njit(cache=True, nogil=True)
def _bias_activation_rows(z, bias, code, out, start, stop):
    has_bias = bias.shape[0] > 0
    for i in range(start, stop):
        row = out[i]
        for j in range(z.shape[1]):
            row[j] = z[i, j] + bias[j] if has_bias else z[i, j]
        _activate_row(row, code)


@njit(cache=True, parallel=True)
def _bias_activation_parallel(z, bias, code, out):
    rows = z.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        _bias_activation_rows(z, bias, code, out, b * rows // blocks, (b + 1) * rows // blocks)


# In place, the bias and activation loops vectorize: with a separate input array that is y itself,
# LLVM's runtime overlap check fails and falls back to scalar loops (4x slower at 32 columns).
@njit(cache=True, nogil=True)
def bias_activation_inplace_rows(y, bias, code, start, stop):
    """y[m, :] = act(y[m, :] + bias) in place for rows start..stop; y (M, N), bias (N,) or (0,)."""
    zero = y.dtype.type(0)
    if code == RELU and bias.shape[0] > 0:  # fused, the common conv / dense epilogue
        for i in range(start, stop):
            row = y[i]
            for j in range(row.shape[0]):
                v = row[j] + bias[j]
                row[j] = zero if v < zero else v
    elif bias.shape[0] > 0:
        for i in range(start, stop):
            row = y[i]
            for j in range(row.shape[0]):
                row[j] += bias[j]
            _activate_row(row, code)
    else:
        for i in range(start, stop):
            _activate_row(y[i], code)


@njit(cache=True, parallel=True)
def _bias_activation_inplace_parallel(y, bias, code):
    rows = y.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        bias_activation_inplace_rows(y, bias, code, b * rows // blocks, (b + 1) * rows // blocks)


@njit(cache=True, inline="always")
def _activation_backward_row(grad_y, y, code, out, i):
    cols = y.shape[1]
    zero = y.dtype.type(0)
    one = y.dtype.type(1)
    if code == LINEAR:
        for j in range(cols):
            out[i, j] = grad_y[i, j]
    elif code == RELU:
        for j in range(cols):
            out[i, j] = grad_y[i, j] if y[i, j] > zero else zero
    elif code == SIGMOID:
        for j in range(cols):
            out[i, j] = grad_y[i, j] * y[i, j] * (one - y[i, j])
    elif code == TANH:
        for j in range(cols):
            out[i, j] = grad_y[i, j] * (one - y[i, j] * y[i, j])
    else:
        dot = zero
        for j in range(cols):
            dot += grad_y[i, j] * y[i, j]
        for j in range(cols):
            out[i, j] = y[i, j] * (grad_y[i, j] - dot)


# Inlined, not a call to a rows kernel as above: out is often grad_y, and only inside the parfor
# do the loops vectorize then (a separate kernel's overlap check fails and runs them scalar, 3x
# slower).
@njit(cache=True, parallel=True)
def _activation_backward_parallel(grad_y, y, code, out):
    for i in prange(y.shape[0]):
        _activation_backward_row(grad_y, y, code, out, i)


@njit(cache=True, nogil=True)
def _activation_backward_rows(grad_y, y, code, out, start, stop):
    for i in range(start, stop):
        _activation_backward_row(grad_y, y, code, out, i)


@njit(cache=True, nogil=True)
def _column_sums_add_rows(grad, out, start, stop):
    for i in range(start, stop):
        for j in range(grad.shape[1]):
            out[j] += grad[i, j]


@njit(cache=True, parallel=True)
def _column_sums_add_parallel(grad, out):
    """By row blocks: one partial sum per block, then added."""
    rows, cols = grad.shape
    blocks = min(rows, 64)
    partial = np.zeros((blocks, cols), dtype=grad.dtype)
    for b in prange(blocks):
        _column_sums_add_rows(grad, partial[b], b * rows // blocks, (b + 1) * rows // blocks)
    for b in range(blocks):
        for j in range(cols):
            out[j] += partial[b, j]
