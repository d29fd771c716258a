"""Float32 transcendental functions as straight-line arithmetic that LLVM vectorizes (kernels
inline them): tanh32, sigmoid32; ``tanh`` and ``sigmoid`` pick them for float32 at compile time
and keep numpy's exact forms for float64."""

import numpy as np
from numba import njit, types
from numba.extending import overload

# Float32 tanh as a rational function x * P(x^2) / Q(x^2) on [-9, 9] (tanh rounds to +-1 beyond),
# fitted as a minimax approximation for fastnn: |error| < 4e-7, under 7 float32 ulps near 1.
# Unlike tanhf/expf calls it is straight-line arithmetic, so LLVM vectorizes the loops using it
# (8 lanes with AVX2), where tanhf is a scalar libm call (40x slower than numpy's SIMD tanh).
# float64 kernels keep np.tanh/np.exp.
_T_CLAMP = np.float32(9.0)
_T_P1, _T_P2, _T_P3, _T_P4 = (
    np.float32(c) for c in (1.3381605e-01, 3.4962662e-03, 2.0619766e-05, 1.3368299e-08)
)
_T_Q1, _T_Q2, _T_Q3, _T_Q4 = (
    np.float32(c) for c in (4.6714923e-01, 2.5879588e-02, 3.2867247e-04, 7.7824035e-07)
)
F32_ONE = np.float32(1.0)
F32_HALF = np.float32(0.5)


@njit(cache=True, inline="always")
def tanh32(x):
    """tanh of a float32 scalar, within 4e-7."""
    x = min(max(x, -_T_CLAMP), _T_CLAMP)
    x2 = x * x
    p = (((_T_P4 * x2 + _T_P3) * x2 + _T_P2) * x2 + _T_P1) * x2 + F32_ONE
    q = (((_T_Q4 * x2 + _T_Q3) * x2 + _T_Q2) * x2 + _T_Q1) * x2 + F32_ONE
    t = min(max(x * p / q, -F32_ONE), F32_ONE)
    return F32_ONE if x >= _T_CLAMP else -F32_ONE if x <= -_T_CLAMP else t  # as tanhf rounds


@njit(cache=True, inline="always")
def sigmoid32(x):
    """1 / (1 + exp(-x)) of a float32 scalar, as 0.5 + 0.5 tanh(x / 2)."""
    return F32_HALF + F32_HALF * tanh32(F32_HALF * x)


def tanh(x):
    """tanh of a scalar in a kernel: ``tanh32`` for float32, numpy's otherwise."""
    return np.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)) of a scalar in a kernel: ``sigmoid32`` for float32, otherwise split by
    sign so exp never overflows."""
    return 1 / (1 + np.exp(-x))


@overload(tanh)
def _tanh_of(x):
    if x == types.float32:
        return lambda x: tanh32(x)
    return lambda x: np.tanh(x)


@overload(sigmoid)
def _sigmoid_of(x):
    if x == types.float32:
        return lambda x: sigmoid32(x)

    def split_by_sign(x):
        if x >= 0:
            return 1 / (1 + np.exp(-x))
        e = np.exp(x)
        return e / (1 + e)

    return split_by_sign
