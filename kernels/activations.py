"""Elementwise and row-wise activations over 2-D ``(rows, features)`` arrays, forward and backward.

Activations are identified by small integer codes so one compiled kernel serves them all and the
layer can fuse the bias add into the same pass (the GEMM epilogue). The backward of most codes
reads the forward's output y; the codes in ``codes.FROM_INPUT`` read its input z instead, which
``bias_activation_forward_keep_input`` leaves in place.

The layers with arguments (ReLU's slope, bound and threshold, ELU's alpha, PReLU's weights) have
kernels of their own over flat or 2-D arrays at the end.
"""

import math

import numpy as np
from numba import njit, prange

from .codes import (
    ELU,
    EPILOGUE,
    EXPONENTIAL,
    GELU,
    GELU_TANH,
    HARD_SIGMOID,
    HARD_SILU,
    LEAKY_RELU,
    LEAKY_RELU_SLOPE,
    LINEAR,
    LOG_SOFTMAX,
    MISH,
    RELU,
    RELU6,
    ROW_WISE,
    SELU,
    SIGMOID,
    SILU,
    SOFTMAX,
    SOFTPLUS,
    SOFTSIGN,
    TANH,
)
from .fastmath import sigmoid, tanh

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_COEF = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(cache=True, inline="always")
def _activate_row(row, code):
    """row (N,) = act(row) in place for the codes in ``codes.EPILOGUE``."""
    n = row.shape[0]
    zero = row.dtype.type(0)
    if code == RELU:
        for j in range(n):
            v = row[j]
            row[j] = zero if v < zero else v  # a select, not a conditional store: vectorizes
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


@njit(cache=True, inline="always")
def _softplus(z, zero, one):
    return max(z, zero) + np.log1p(np.exp(-abs(z)))


# Called, not inlined, and never from _activate_row (see codes.EPILOGUE).
@njit(cache=True, nogil=True, error_model="numpy")
def _activate_row_more(row, code):
    """The codes outside codes.EPILOGUE, in place on one row (N,)."""
    n = row.shape[0]
    t = row.dtype.type
    zero, one, six = t(0), t(1), t(6)
    if code == SIGMOID:
        for j in range(n):
            row[j] = sigmoid(row[j])
    elif code == TANH:
        for j in range(n):
            row[j] = tanh(row[j])
    elif code == ELU:
        for j in range(n):
            v = row[j]
            row[j] = v if v > zero else np.expm1(v)
    elif code == SELU:
        scale, scaled_alpha = t(SELU_SCALE), t(SELU_SCALE * SELU_ALPHA)
        for j in range(n):
            v = row[j]
            row[j] = scale * v if v > zero else scaled_alpha * np.expm1(v)
    elif code == SOFTPLUS:
        for j in range(n):
            row[j] = _softplus(row[j], zero, one)
    elif code == SOFTSIGN:
        for j in range(n):
            row[j] = row[j] / (one + abs(row[j]))
    elif code == HARD_SIGMOID:
        for j in range(n):
            row[j] = min(max(row[j] + t(3), zero), six) / six
    elif code == EXPONENTIAL:
        for j in range(n):
            row[j] = np.exp(row[j])
    elif code == LEAKY_RELU:
        slope = t(LEAKY_RELU_SLOPE)
        for j in range(n):
            v = row[j]
            row[j] = v if v > zero else slope * v
    elif code == RELU6:
        for j in range(n):
            row[j] = min(max(row[j], zero), six)
    elif code == LOG_SOFTMAX:
        peak = row[0]
        for j in range(1, n):
            peak = max(peak, row[j])
        total = zero
        for j in range(n):
            total += np.exp(row[j] - peak)
        shift = peak + np.log(total)
        for j in range(n):
            row[j] -= shift
    elif code == GELU:
        half, inv_sqrt_2 = t(0.5), t(INV_SQRT_2)
        for j in range(n):
            v = row[j]
            row[j] = half * v * (one + math.erf(v * inv_sqrt_2))
    elif code == GELU_TANH:
        half, k, c = t(0.5), t(SQRT_2_OVER_PI), t(GELU_TANH_COEF)
        for j in range(n):
            v = row[j]
            row[j] = half * v * (one + tanh(k * (v + c * v * v * v)))
    elif code == SILU:
        for j in range(n):
            row[j] = row[j] * sigmoid(row[j])
    elif code == HARD_SILU:
        for j in range(n):
            v = row[j]
            row[j] = v * min(max(v + t(3), zero), six) / six
    elif code == MISH:
        for j in range(n):
            v = row[j]
            row[j] = v * tanh(_softplus(v, zero, one))


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


# Elementwise passes over rows of fewer values than this run on longer rows of the same
# contiguous values: a LeNet conv's tanh over rows of 6 filters ran 10x slower per value than
# over rows of 16 (the per-row loop and its dispatch cost more than the values).
LONG_ROW = 64


def long_rows(*arrays):
    """C-contiguous (M, N) arrays of one shape, elementwise operands, as (M/k, N*k) views with
    rows of at least ``LONG_ROW`` values where k divides M (else as they are)."""
    m, n = arrays[0].shape
    if n >= LONG_ROW or not all(a.flags.c_contiguous for a in arrays):
        return arrays
    least = -(-LONG_ROW // n)
    for k in range(least, min(m, 4 * least) + 1):  # k divides m: none past m (batch 1)
        if m % k == 0:
            return tuple(a.reshape(m // k, n * k) for a in arrays)
    return arrays


def bias_activation_forward(z, bias, code, out):
    """out[m, :] = act(z[m, :] + bias); z, out (M, N), bias (N,) or (0,) for none; out may be z."""
    if code not in ROW_WISE:  # elementwise: any rows will do, the bias repeated along them
        in_place, columns = out is z, z.shape[1]
        z, out = long_rows(z, out)
        out = z if in_place else out  # the same view: the in-place kernels below
        if bias.shape[0] and z.shape[1] != columns:
            bias = np.tile(bias, z.shape[1] // columns)
    if code not in EPILOGUE:  # the bias, then the activation as a pass of its own
        if bias.shape[0] > 0 or out is not z:
            bias_activation_forward(z, bias, LINEAR, out)
        if code not in ROW_WISE:
            (out,) = long_rows(out)
        if out.size >= PARALLEL_MIN_ELEMENTS:
            _activate_more_parallel(out, code)
        else:
            activate_rows_more(out, code, 0, out.shape[0])
        return
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


def add_activation_forward(a, b, code, out):
    """out (M, N) = act(a + b) in one pass; a, b (M, N); act relu or none (code RELU or LINEAR)."""
    a, b, out = long_rows(a, b, out)
    if out.size >= PARALLEL_MIN_ELEMENTS * CHEAP_PARALLEL_FACTOR:
        _add_activation_parallel(a, b, code, out)
    else:
        _add_activation_rows(a, b, code, out, 0, out.shape[0])


def bias_activation_forward_keep_input(z, bias, code, out):
    """z[m, :] += bias in place, then out = act(z): z stays the pre-activation that
    ``activation_backward`` reads for the codes in ``codes.FROM_INPUT``; z, out (M, N) apart."""
    if bias.shape[0] > 0:
        bias_activation_forward(z, bias, LINEAR, z)
    bias_activation_forward(z, bias[:0], code, out)


def activation_backward(grad_y, saved, code, out):
    """out = dL/dz given dL/dy, where saved is y = act(z), or z itself for the codes in
    ``codes.FROM_INPUT``; all (M, N); out may be grad_y."""
    if code not in ROW_WISE:
        grad_y, saved, out = long_rows(grad_y, saved, out)
    if saved.size >= PARALLEL_MIN_ELEMENTS:
        _activation_backward_parallel(grad_y, saved, code, out)
    else:
        _activation_backward_rows(grad_y, saved, code, out, 0, saved.shape[0])


def column_sums_add(grad, out):
    """out[n] += sum_m grad[m, n]; grad (M, N), out (N,): the bias gradient."""
    (wide,) = long_rows(grad)
    if wide is not grad:  # short rows: the sums of long ones, then each column's among them
        sums = np.zeros(wide.shape[1], out.dtype)
        column_sums_add(wide, sums)
        out += sums.reshape(-1, grad.shape[1]).sum(axis=0)
        return
    if grad.size >= PARALLEL_MIN_ELEMENTS * COLUMN_SUMS_PARALLEL_FACTOR:
        _column_sums_add_parallel(grad, out)
    else:
        _column_sums_add_rows(grad, out, 0, grad.shape[0])


@njit(cache=True, nogil=True, error_model="numpy")
def _bias_activation_rows(z, bias, code, out, start, stop):
    has_bias = bias.shape[0] > 0
    for i in range(start, stop):
        row = out[i]
        for j in range(z.shape[1]):
            row[j] = z[i, j] + bias[j] if has_bias else z[i, j]
        _activate_row(row, code)


@njit(cache=True, parallel=True, error_model="numpy")
def _bias_activation_parallel(z, bias, code, out):
    rows = z.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        _bias_activation_rows(z, bias, code, out, b * rows // blocks, (b + 1) * rows // blocks)


@njit(cache=True, nogil=True, error_model="numpy")
def _add_activation_rows(a, b, code, out, start, stop):
    zero = out.dtype.type(0)
    for i in range(start, stop):
        row = out[i]
        for j in range(row.shape[0]):
            v = a[i, j] + b[i, j]
            row[j] = zero if code == RELU and v < zero else v


@njit(cache=True, parallel=True, error_model="numpy")
def _add_activation_parallel(a, b, code, out):
    rows = out.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for k in prange(blocks):
        _add_activation_rows(a, b, code, out, k * rows // blocks, (k + 1) * rows // blocks)


# In place, the bias and activation loops vectorize: with a separate input array that is y itself,
# LLVM's runtime overlap check fails and falls back to scalar loops (4x slower at 32 columns).
@njit(cache=True, nogil=True, error_model="numpy")
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


def activate(y, code):
    """y (..., N) = act(y) in place over its last axis, for any code; y contiguous."""
    rows = y.reshape(-1, y.shape[-1])
    bias_activation_forward(rows, np.empty(0, y.dtype), code, rows)


def bias_activation_rows(y, bias, code):
    """y (M, N) = act(y + bias) in place, serially (on a caller's thread), for any code."""
    epilogue = code if code in EPILOGUE else LINEAR
    bias_activation_inplace_rows(y, bias, epilogue, 0, y.shape[0])
    if epilogue != code:
        activate_rows_more(y, code, 0, y.shape[0])


@njit(cache=True, nogil=True, error_model="numpy")
def activate_rows_more(y, code, start, stop):
    """Rows start..stop of y (M, N) = act(them) in place, for a code outside codes.EPILOGUE."""
    for i in range(start, stop):
        _activate_row_more(y[i], code)


@njit(cache=True, parallel=True, error_model="numpy")
def _activate_more_parallel(y, code):
    rows = y.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        activate_rows_more(y, code, b * rows // blocks, (b + 1) * rows // blocks)


@njit(cache=True, parallel=True, error_model="numpy")
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
    elif code == SOFTMAX:
        dot = zero
        for j in range(cols):
            dot += grad_y[i, j] * y[i, j]
        for j in range(cols):
            out[i, j] = y[i, j] * (grad_y[i, j] - dot)
    else:
        _activation_backward_row_more(grad_y[i], y[i], code, out[i])


@njit(cache=True, nogil=True, error_model="numpy")
def _activation_backward_row_more(g, s, code, out):
    """The codes after SOFTMAX on one row (N,): s is y = act(z), or z for ``FROM_INPUT``."""
    n = s.shape[0]
    t = s.dtype.type
    zero, one, six = t(0), t(1), t(6)
    if code == ELU:
        for j in range(n):
            out[j] = g[j] if s[j] > zero else g[j] * (s[j] + one)
    elif code == SELU:
        scale, scaled_alpha = t(SELU_SCALE), t(SELU_SCALE * SELU_ALPHA)
        for j in range(n):
            out[j] = g[j] * scale if s[j] > zero else g[j] * (s[j] + scaled_alpha)
    elif code == SOFTPLUS:  # sigmoid(z) = 1 - exp(-y)
        for j in range(n):
            out[j] = -g[j] * np.expm1(-s[j])
    elif code == SOFTSIGN:  # 1 / (1 + |z|)^2 = (1 - |y|)^2
        for j in range(n):
            d = one - abs(s[j])
            out[j] = g[j] * d * d
    elif code == HARD_SIGMOID:
        sixth = one / six
        for j in range(n):
            out[j] = g[j] * sixth if zero < s[j] < one else zero
    elif code == EXPONENTIAL:
        for j in range(n):
            out[j] = g[j] * s[j]
    elif code == LEAKY_RELU:
        slope = t(LEAKY_RELU_SLOPE)
        for j in range(n):
            out[j] = g[j] if s[j] > zero else g[j] * slope
    elif code == RELU6:
        for j in range(n):
            out[j] = g[j] if zero < s[j] < six else zero
    elif code == LOG_SOFTMAX:
        total = zero
        for j in range(n):
            total += g[j]
        for j in range(n):
            out[j] = g[j] - np.exp(s[j]) * total
    elif code == GELU:
        half, inv_sqrt_2, inv_sqrt_2pi = t(0.5), t(INV_SQRT_2), t(INV_SQRT_2PI)
        for j in range(n):
            v = s[j]
            cdf = half * (one + math.erf(v * inv_sqrt_2))
            out[j] = g[j] * (cdf + v * np.exp(-half * v * v) * inv_sqrt_2pi)
    elif code == GELU_TANH:
        half, k, c = t(0.5), t(SQRT_2_OVER_PI), t(GELU_TANH_COEF)
        for j in range(n):
            v = s[j]
            th = np.tanh(k * (v + c * v * v * v))  # exact: 1 - th * th amplifies an error
            slope = k * (one + t(3) * c * v * v)
            out[j] = g[j] * half * (one + th + v * (one - th * th) * slope)
    elif code == SILU:
        for j in range(n):
            sig = sigmoid(s[j])
            out[j] = g[j] * sig * (one + s[j] * (one - sig))
    elif code == HARD_SILU:
        for j in range(n):
            v = s[j]
            if v < t(-3):
                out[j] = zero
            elif v <= t(3):
                out[j] = g[j] * (t(2) * v + t(3)) / six
            else:
                out[j] = g[j]
    elif code == MISH:
        for j in range(n):
            v = s[j]
            th = np.tanh(_softplus(v, zero, one))  # exact: 1 - th * th amplifies an error
            out[j] = g[j] * (th + v * (one - th * th) * sigmoid(v))


# Inlined, not a call to a rows kernel as above: out is often grad_y, and only inside the parfor
# do the loops vectorize then (a separate kernel's overlap check fails and runs them scalar, 3x
# slower).
@njit(cache=True, parallel=True, error_model="numpy")
def _activation_backward_parallel(grad_y, y, code, out):
    for i in prange(y.shape[0]):
        _activation_backward_row(grad_y, y, code, out, i)


@njit(cache=True, nogil=True, error_model="numpy")
def _activation_backward_rows(grad_y, y, code, out, start, stop):
    for i in range(start, stop):
        _activation_backward_row(grad_y, y, code, out, i)


@njit(cache=True, nogil=True, error_model="numpy")
def _column_sums_add_rows(grad, out, start, stop):
    for i in range(start, stop):
        for j in range(grad.shape[1]):
            out[j] += grad[i, j]


@njit(cache=True, parallel=True, error_model="numpy")
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


# ---- the activation layers with arguments ------------------------------------------------------


def relu_forward(x, negative_slope, max_value, threshold, out):
    """out = Keras's relu(x, negative_slope, max_value, threshold) elementwise (max_value None:
    no bound); x, out flat (N,) of one dtype."""
    args = _relu_args(x, negative_slope, max_value, threshold)
    if x.size >= PARALLEL_MIN_ELEMENTS * CHEAP_PARALLEL_FACTOR:
        _relu_parallel(x, *args, out)
    else:
        _relu_span(x, *args, out, 0, x.size)


def relu_backward(grad_y, x, negative_slope, max_value, threshold, out):
    """out = dL/dx of ``relu_forward`` given dL/dy and its input x; all flat (N,); out may be
    grad_y."""
    args = _relu_args(x, negative_slope, max_value, threshold)
    if x.size >= PARALLEL_MIN_ELEMENTS * CHEAP_PARALLEL_FACTOR:
        _relu_backward_parallel(grad_y, x, *args, out)
    else:
        _relu_backward_span(grad_y, x, *args, out, 0, x.size)


def _relu_args(x, negative_slope, max_value, threshold):
    t = x.dtype.type
    bound = t(np.inf if max_value is None else max_value)
    return t(negative_slope), bound, t(threshold), max_value is not None


@njit(cache=True, inline="always")
def _relu_value_and_slope(v, slope, bound, threshold, bounded, zero, one):
    """Keras's relu of v as (y, dy/dv): v where v > threshold (else 0), clipped to [0, bound]
    when bounded, minus slope * (threshold - v) below the threshold. At the kinks, Keras's
    gradients: a leaky relu's (threshold 0, unbounded) is the slope at 0, relu6's 0 at 6."""
    y, d = (v, one) if v > threshold else (zero, zero)
    if bounded:
        if y > bound or (y == bound and bound == 6):
            y, d = bound, zero
        elif y < zero:  # a negative threshold lets v < 0 through; the clip stops it
            y, d = zero, zero
    leaky_kink = v == threshold and threshold == zero and not bounded
    if slope != zero and (v < threshold or leaky_kink):
        y += slope * (v - threshold)
        d += slope
    return y, d


@njit(cache=True, nogil=True, error_model="numpy")
def _relu_span(x, slope, bound, threshold, bounded, out, start, stop):
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for i in range(start, stop):
        out[i] = _relu_value_and_slope(x[i], slope, bound, threshold, bounded, zero, one)[0]


@njit(cache=True, parallel=True, error_model="numpy")
def _relu_parallel(x, slope, bound, threshold, bounded, out):
    n = x.size
    for b in prange(PARALLEL_BLOCKS):
        start, stop = b * n // PARALLEL_BLOCKS, (b + 1) * n // PARALLEL_BLOCKS
        _relu_span(x, slope, bound, threshold, bounded, out, start, stop)


@njit(cache=True, nogil=True, error_model="numpy")
def _relu_backward_span(grad_y, x, slope, bound, threshold, bounded, out, start, stop):
    zero, one = x.dtype.type(0), x.dtype.type(1)
    for i in range(start, stop):
        d = _relu_value_and_slope(x[i], slope, bound, threshold, bounded, zero, one)[1]
        out[i] = grad_y[i] * d


@njit(cache=True, parallel=True, error_model="numpy")
def _relu_backward_parallel(grad_y, x, slope, bound, threshold, bounded, out):
    n = x.size
    for b in prange(PARALLEL_BLOCKS):
        start, stop = b * n // PARALLEL_BLOCKS, (b + 1) * n // PARALLEL_BLOCKS
        _relu_backward_span(grad_y, x, slope, bound, threshold, bounded, out, start, stop)


def elu_forward(x, alpha, out):
    """out = x if x > 0 else alpha * (exp(x) - 1), elementwise; x, out flat (N,)."""
    if x.size >= PARALLEL_MIN_ELEMENTS:
        _elu_parallel(x, x.dtype.type(alpha), out)
    else:
        _elu_span(x, x.dtype.type(alpha), out, 0, x.size)


def elu_backward(grad_y, x, y, alpha, out):
    """out = dL/dx of ``elu_forward`` given dL/dy, its input x and output y; all flat (N,); out
    may be grad_y."""
    if x.size >= PARALLEL_MIN_ELEMENTS * CHEAP_PARALLEL_FACTOR:
        _elu_backward_parallel(grad_y, x, y, x.dtype.type(alpha), out)
    else:
        _elu_backward_span(grad_y, x, y, x.dtype.type(alpha), out, 0, x.size)


@njit(cache=True, nogil=True, error_model="numpy")
def _elu_span(x, alpha, out, start, stop):
    zero = x.dtype.type(0)
    for i in range(start, stop):
        v = x[i]
        out[i] = v if v > zero else alpha * np.expm1(v)


@njit(cache=True, parallel=True, error_model="numpy")
def _elu_parallel(x, alpha, out):
    n = x.size
    for b in prange(PARALLEL_BLOCKS):
        _elu_span(x, alpha, out, b * n // PARALLEL_BLOCKS, (b + 1) * n // PARALLEL_BLOCKS)


@njit(cache=True, nogil=True, error_model="numpy")
def _elu_backward_span(grad_y, x, y, alpha, out, start, stop):
    zero = x.dtype.type(0)
    for i in range(start, stop):  # alpha * exp(x) = y + alpha below 0
        out[i] = grad_y[i] if x[i] > zero else grad_y[i] * (y[i] + alpha)


@njit(cache=True, parallel=True, error_model="numpy")
def _elu_backward_parallel(grad_y, x, y, alpha, out):
    n = x.size
    for b in prange(PARALLEL_BLOCKS):
        start, stop = b * n // PARALLEL_BLOCKS, (b + 1) * n // PARALLEL_BLOCKS
        _elu_backward_span(grad_y, x, y, alpha, out, start, stop)


def prelu_forward(x, alpha, out):
    """out[m, n] = x if x > 0 else alpha[n] * x; x, out (M, N), alpha (N,)."""
    if x.size >= PARALLEL_MIN_ELEMENTS * CHEAP_PARALLEL_FACTOR:
        _prelu_parallel(x, alpha, out)
    else:
        _prelu_rows(x, alpha, out, 0, x.shape[0])


def prelu_backward(grad_y, x, alpha, grad_x, grad_alpha):
    """grad_x = dL/dx of ``prelu_forward`` (None: skipped) and grad_alpha[n] += sum over m of
    dL/dy * min(x, 0); grad_y, x, grad_x (M, N), alpha, grad_alpha (N,)."""
    need_x = grad_x is not None
    grad_x = grad_y[:0] if grad_x is None else grad_x
    if x.size >= PARALLEL_MIN_ELEMENTS * COLUMN_SUMS_PARALLEL_FACTOR:
        _prelu_backward_parallel(grad_y, x, alpha, need_x, grad_x, grad_alpha)
    else:
        _prelu_backward_rows(grad_y, x, alpha, need_x, grad_x, grad_alpha, 0, x.shape[0])


@njit(cache=True, nogil=True, error_model="numpy")
def _prelu_rows(x, alpha, out, start, stop):
    zero = x.dtype.type(0)
    for i in range(start, stop):
        for j in range(x.shape[1]):
            v = x[i, j]
            out[i, j] = v if v > zero else alpha[j] * v


@njit(cache=True, parallel=True, error_model="numpy")
def _prelu_parallel(x, alpha, out):
    rows = x.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        _prelu_rows(x, alpha, out, b * rows // blocks, (b + 1) * rows // blocks)


@njit(cache=True, nogil=True, error_model="numpy")
def _prelu_backward_rows(grad_y, x, alpha, need_x, grad_x, grad_alpha, start, stop):
    zero = x.dtype.type(0)
    for i in range(start, stop):
        for j in range(x.shape[1]):
            v, g = x[i, j], grad_y[i, j]
            if v < zero:
                grad_alpha[j] += g * v
            if need_x:
                grad_x[i, j] = g if v > zero else (g * alpha[j] if v < zero else zero)


@njit(cache=True, parallel=True, error_model="numpy")
def _prelu_backward_parallel(grad_y, x, alpha, need_x, grad_x, grad_alpha):
    """By row blocks: one partial alpha gradient per block, then added."""
    rows, cols = x.shape
    blocks = min(rows, 64)
    partial = np.zeros((blocks, cols), dtype=grad_alpha.dtype)
    for b in prange(blocks):
        start, stop = b * rows // blocks, (b + 1) * rows // blocks
        _prelu_backward_rows(grad_y, x, alpha, need_x, grad_x, partial[b], start, stop)
    for b in range(blocks):
        for j in range(cols):
            grad_alpha[j] += partial[b, j]
