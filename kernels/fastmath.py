"""Float32 transcendental functions as straight-line arithmetic that LLVM vectorizes (kernels
inline them): exp32, tanh32, sigmoid32; ``exp``, ``tanh`` and ``sigmoid`` pick them for float32
at compile time and keep numpy's exact forms for float64."""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

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

# Float32 exp as Cephes's expf: x = n ln2 + r with |r| <= ln2 / 2, exp(r) by a degree-7
# polynomial, 2^n put into the exponent bits (a bit cast, not an ldexpf call). Within 2 ulps on
# [-87.3, 88.4]; 0 below, inf above, NaN kept.
_E_LOW, _E_HIGH = np.float32(-87.33654), np.float32(88.72283)
_E_LOG2E = np.float32(1.44269504088896341)
_E_LN2_HIGH, _E_LN2_LOW = np.float32(0.693359375), np.float32(-2.12194440e-4)
_E_P = tuple(
    np.float32(c)
    for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1)
)
_E_P5 = np.float32(5.0000001201e-1)
_F32_ZERO = np.float32(0.0)
_F32_INF = np.float32(np.inf)
_MAX_EXPONENT = np.float32(127.0)


@intrinsic
def _pow2(typingctx, n):
    """2.0 ** n for a float32 holding an integer n in [-126, 127], made in the exponent bits
    (in 32-bit integers: Numba's own integer arithmetic would widen them to 64)."""
    if n != types.float32:
        return None

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        biased = builder.add(builder.fptosi(args[0], i32), ir.Constant(i32, 127))
        return builder.bitcast(builder.shl(biased, ir.Constant(i32, 23)), ir.FloatType())

    return types.float32(types.float32), codegen


@njit(cache=True, inline="always")
def exp32(x):
    """exp of a float32 scalar, within 2 ulps."""
    c = min(max(x, _E_LOW), _E_HIGH)
    n = min(np.floor(c * _E_LOG2E + F32_HALF), _MAX_EXPONENT)
    r = (c - n * _E_LN2_HIGH) - n * _E_LN2_LOW
    p = (((_E_P[0] * r + _E_P[1]) * r + _E_P[2]) * r + _E_P[3]) * r + _E_P[4]
    p = (p * r + _E_P5) * r * r + r + F32_ONE
    e = p * _pow2(n)
    return _F32_ZERO if x < _E_LOW else _F32_INF if x > _E_HIGH else e if x == x else x


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


def exp(x):
    """exp of a scalar in a kernel: ``exp32`` for float32, numpy's otherwise."""
    return np.exp(x)


def tanh(x):
    """tanh of a scalar in a kernel: ``tanh32`` for float32, numpy's otherwise."""
    return np.tanh(x)


def sigmoid(x):
    """1 / (1 + exp(-x)) of a scalar in a kernel: ``sigmoid32`` for float32, otherwise split by
    sign so exp never overflows."""
    return 1 / (1 + np.exp(-x))


@overload(exp)
def _exp_of(x):
    if x == types.float32:
        return lambda x: exp32(x)
    return lambda x: np.exp(x)


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


@njit(cache=True, inline="always")
def row_max(row):
    """The largest value of a 1-D array (N >= 1), in eight independent chains: a single chain's
    compare-and-select latency bounds it otherwise (LLVM does not vectorize a float max without
    fast-math's no-NaN flag), 1.4x faster on a softmax over rows of 64."""
    n = row.shape[0]
    peak = row[0]
    j = 1
    if n >= 16:
        m0, m1, m2, m3 = row[0], row[1], row[2], row[3]
        m4, m5, m6, m7 = row[4], row[5], row[6], row[7]
        j = 8
        while j + 8 <= n:
            m0, m1, m2, m3 = (
                max(m0, row[j]),
                max(m1, row[j + 1]),
                max(m2, row[j + 2]),
                max(m3, row[j + 3]),
            )
            m4, m5, m6, m7 = (
                max(m4, row[j + 4]),
                max(m5, row[j + 5]),
                max(m6, row[j + 6]),
                max(m7, row[j + 7]),
            )
            j += 8
        peak = max(max(max(m0, m1), max(m2, m3)), max(max(m4, m5), max(m6, m7)))
    for t in range(j, n):
        peak = max(peak, row[t])
    return peak
