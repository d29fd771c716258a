"""Activation kernels against plain numpy references, float32 and float64, serial and parallel."""

import contextlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import activations as K
from fastnn.kernels import codes

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
ALL_CODES = sorted({*codes.CODES.values(), codes.GELU_TANH})
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
GELU_K = math.sqrt(2 / math.pi)
_erf = np.vectorize(math.erf)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# Each code's function of z (float64), and its derivative in z: the backward's reference, however
# the kernel gets there (from y, or from z for codes.FROM_INPUT).
FORWARD = {
    codes.LINEAR: lambda z: z,
    codes.RELU: lambda z: np.maximum(z, 0),
    codes.SIGMOID: _sigmoid,
    codes.TANH: np.tanh,
    codes.SOFTMAX: _softmax,
    codes.ELU: lambda z: np.where(z > 0, z, np.expm1(z)),
    codes.SELU: lambda z: SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(z)),
    codes.SOFTPLUS: lambda z: np.logaddexp(z, 0),
    codes.SOFTSIGN: lambda z: z / (1 + np.abs(z)),
    codes.HARD_SIGMOID: lambda z: np.clip(z + 3, 0, 6) / 6,
    codes.EXPONENTIAL: np.exp,
    codes.LEAKY_RELU: lambda z: np.where(z > 0, z, 0.2 * z),
    codes.RELU6: lambda z: np.clip(z, 0, 6),
    codes.LOG_SOFTMAX: lambda z: np.log(_softmax(z)),
    codes.GELU: lambda z: 0.5 * z * (1 + _erf(z / math.sqrt(2))),
    codes.GELU_TANH: lambda z: 0.5 * z * (1 + np.tanh(GELU_K * (z + 0.044715 * z**3))),
    codes.SILU: lambda z: z * _sigmoid(z),
    codes.HARD_SILU: lambda z: z * np.clip(z + 3, 0, 6) / 6,
    codes.MISH: lambda z: z * np.tanh(np.logaddexp(z, 0)),
}


def _gelu_tanh_slope(z):
    t = np.tanh(GELU_K * (z + 0.044715 * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * GELU_K * (1 + 3 * 0.044715 * z * z)


def _mish_slope(z):
    t = np.tanh(np.logaddexp(z, 0))
    return t + z * (1 - t * t) * _sigmoid(z)


SLOPE = {  # elementwise codes: dy/dz
    codes.LINEAR: lambda z: np.ones_like(z),
    codes.RELU: lambda z: (z > 0) * 1.0,
    codes.SIGMOID: lambda z: _sigmoid(z) * (1 - _sigmoid(z)),
    codes.TANH: lambda z: 1 - np.tanh(z) ** 2,
    codes.ELU: lambda z: np.where(z > 0, 1, np.exp(z)),
    codes.SELU: lambda z: SELU_SCALE * np.where(z > 0, 1, SELU_ALPHA * np.exp(z)),
    codes.SOFTPLUS: _sigmoid,
    codes.SOFTSIGN: lambda z: 1 / (1 + np.abs(z)) ** 2,
    codes.HARD_SIGMOID: lambda z: ((z > -3) & (z < 3)) / 6,
    codes.EXPONENTIAL: np.exp,
    codes.LEAKY_RELU: lambda z: np.where(z > 0, 1, 0.2),
    codes.RELU6: lambda z: ((z > 0) & (z < 6)) * 1.0,
    codes.GELU: lambda z: (
        0.5 * (1 + _erf(z / math.sqrt(2))) + z * np.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    ),
    codes.GELU_TANH: _gelu_tanh_slope,
    codes.SILU: lambda z: _sigmoid(z) * (1 + z * (1 - _sigmoid(z))),
    codes.HARD_SILU: lambda z: np.where(z < -3, 0, np.where(z > 3, 1, (2 * z + 3) / 6)),
    codes.MISH: _mish_slope,
}


def reference_backward(g, z, code):
    """dL/dz from dL/dy = g at z, in float64."""
    if code == codes.SOFTMAX:
        y = _softmax(z)
        return y * (g - (g * y).sum(axis=1, keepdims=True))
    if code == codes.LOG_SOFTMAX:
        return g - _softmax(z) * g.sum(axis=1, keepdims=True)
    return g * SLOPE[code](z)


# From 32 rows of a few values the elementwise passes run on longer rows (``long_rows``).
shapes = st.tuples(st.sampled_from([1, 2, 3, 5, 7, 32, 60]), st.integers(1, 9))
PATHS = ["serial", "parallel"]


@contextlib.contextmanager
def kernel_path(path):
    """Run the activation kernels' parallel or serial twins whatever the array size."""
    saved = K.PARALLEL_MIN_ELEMENTS
    K.PARALLEL_MIN_ELEMENTS = 0 if path == "parallel" else 2**62
    try:
        yield
    finally:
        K.PARALLEL_MIN_ELEMENTS = saved


def test_every_code_has_a_reference_and_names_are_unique():
    assert set(FORWARD) == set(ALL_CODES)
    assert set(SLOPE) | set(codes.ROW_WISE) == set(ALL_CODES)
    assert set(codes.FROM_INPUT) & set(codes.ROW_WISE) == set()
    assert len(set(codes.CODES.values())) == len(codes.CODES)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", ALL_CODES)
@settings(max_examples=5, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), with_bias=st.booleans(), in_place=st.booleans())
def test_bias_activation_forward_matches_numpy(path, dtype, code, shape, seed, with_bias, in_place):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    bias = rng.standard_normal(shape[1]).astype(dtype) if with_bias else np.empty(0, dtype)
    expected = FORWARD[code]((z + (bias if with_bias else 0)).astype(np.float64))
    out = z if in_place else np.empty_like(z)  # in place runs its own kernels
    with kernel_path(path):
        K.bias_activation_forward(z, bias, code, out)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, **TOL[dtype])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", ALL_CODES)
@settings(max_examples=5, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), in_place=st.booleans())
def test_activation_backward_matches_numpy(path, dtype, code, shape, seed, in_place):
    """From y = act(z), or from z for the codes in FROM_INPUT; out may be grad_y."""
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    y = FORWARD[code](z.astype(np.float64)).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    expected = reference_backward(g.astype(np.float64), z.astype(np.float64), code)
    out = g if in_place else np.empty_like(g)
    with kernel_path(path):
        K.activation_backward(g, z if code in codes.FROM_INPUT else y, code, out)
    assert out.dtype == dtype
    tol = TOL[dtype]
    if dtype == np.float32:  # float32 tanh/sigmoid (within 4e-7) times |z| up to ~10 where a
        tol = {**tol, "atol": 4e-6}  # gradient multiplies by z (mish, silu), near-cancelling
    np.testing.assert_allclose(out, expected, **tol)


def test_long_rows_reflows_short_contiguous_rows_only():
    a, b = np.zeros((64, 6)), np.ones((64, 6))
    long_a, long_b = K.long_rows(a, b)
    assert long_a.shape == long_b.shape == (4, 96) and np.shares_memory(long_a, a)
    assert K.long_rows(np.zeros((7, 6)))[0].shape == (7, 6)  # no k from 11 divides 7
    assert K.long_rows(np.zeros((64, 64)))[0].shape == (64, 64)
    assert K.long_rows(np.zeros((64, 12))[:, :6])[0].shape == (64, 6)  # not contiguous


@pytest.mark.parametrize("code", sorted(codes.FROM_INPUT))
def test_from_input_codes_cannot_be_inverted_from_the_output(code):
    """Two inputs with one output and different slopes: why these codes read z."""
    f = FORWARD[code]
    grid = np.linspace(-4, 0, 4001)
    y = f(grid)
    low = np.argmin(y)  # the function dips, then comes back toward 0
    assert 0 < low < len(grid) - 1 and y[low] < y[0] and y[low] < y[-1]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", [codes.LINEAR, codes.RELU])
@settings(max_examples=5, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_add_activation_forward_matches_numpy(path, dtype, code, shape, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(shape).astype(dtype) for _ in range(2))
    out = np.full(shape, np.nan, dtype)
    with kernel_path(path):
        K.add_activation_forward(a, b, code, out)
    expected = a + b if code == codes.LINEAR else np.maximum(a + b, 0)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_keep_input_adds_the_bias_in_place_and_activates_into_out(dtype):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((5, 3)).astype(dtype)
    bias = rng.standard_normal(3).astype(dtype)
    pre = z.astype(np.float64) + bias
    out = np.empty_like(z)
    K.bias_activation_forward_keep_input(z, bias, codes.GELU, out)
    np.testing.assert_allclose(z, pre, **TOL[dtype])
    np.testing.assert_allclose(out, FORWARD[codes.GELU](pre), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_softmax_are_stable_for_huge_inputs(dtype):
    z = np.array([[1e4, -1e4, 0.0]], dtype)
    sig = np.empty_like(z)
    K.bias_activation_forward(z, np.empty(0, dtype), K.SIGMOID, sig)
    np.testing.assert_allclose(sig, [[1.0, 0.0, 0.5]])
    soft = np.empty_like(z)
    K.bias_activation_forward(z, np.empty(0, dtype), K.SOFTMAX, soft)
    np.testing.assert_allclose(soft, [[1.0, 0.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", sorted(set(ALL_CODES) - {codes.EXPONENTIAL}))
def test_huge_inputs_give_finite_values_and_gradients(dtype, code):
    """No overflow to inf or nan (exp(1e4) is inf by definition, so exponential is left out)."""
    z = np.array([[1e4, -1e4, 0.0, 30.0, -30.0]], dtype)
    y = np.empty_like(z)
    K.bias_activation_forward(z, np.empty(0, dtype), code, y)
    assert np.isfinite(y).all(), y
    grad = np.empty_like(z)
    K.activation_backward(np.ones_like(z), z if code in codes.FROM_INPUT else y, code, grad)
    assert np.isfinite(grad).all(), grad


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_in_place_and_column_sums_accumulate(path, dtype):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((70, 4)).astype(dtype)  # more rows than the parallel sums' 64 blocks
    expected = np.maximum(z + 1, 0)
    acc = np.ones(4, dtype)
    with kernel_path(path):
        K.bias_activation_forward(z, np.ones(4, dtype), K.RELU, z)
        K.column_sums_add(z, acc)
    np.testing.assert_allclose(z, expected, **TOL[dtype])
    np.testing.assert_allclose(acc, 1 + expected.sum(axis=0), **TOL[dtype])
    assert acc.dtype == dtype


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shape", [(131072, 1), (96, 3), (60, 7), (7, 5), (64, 64)])
def test_column_sums_of_short_rows_are_each_columns_sum(path, shape):
    """Short rows are summed as long ones (``long_rows``), then each column's sums gathered:
    the bias gradient of a 1-filter conv or a Dense(3)."""
    grad = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    out = np.full(shape[1], 0.5, np.float32)
    with kernel_path(path):
        K.column_sums_add(grad, out)
    np.testing.assert_allclose(out, 0.5 + grad.astype(np.float64).sum(axis=0), rtol=1e-4, atol=1e-3)


# ---- the activation layers' kernels ------------------------------------------------------------


def reference_relu(x, negative_slope, max_value, threshold):
    """Keras 3's relu (keras.src.activations.activations.ReLU.static_call) in numpy, with its
    derivative."""
    y = np.where(x > threshold, x, 0.0)
    d = (x > threshold) * 1.0
    if max_value is not None:
        d = np.where((y > max_value) | (y < 0), 0.0, d)
        y = np.clip(y, 0, max_value)
    below = x < threshold
    y = y - negative_slope * np.where(below, threshold - x, 0.0)
    return y, d + negative_slope * below


relu_args = st.tuples(
    st.sampled_from([0.0, 0.3]),
    st.sampled_from([None, 0.5, 6.0]),
    st.sampled_from([0.0, 0.4, -0.7]),
)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=5, deadline=None)
@given(size=st.integers(1, 40), seed=st.integers(0, 2**31), args=relu_args)
def test_relu_with_arguments_matches_numpy(path, dtype, size, seed, args):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(size) * 3).astype(dtype)
    g = rng.standard_normal(size).astype(dtype)
    y_ref, d_ref = reference_relu(x.astype(np.float64), *args)
    y, dx = np.empty_like(x), np.empty_like(x)
    with kernel_path(path):
        K.relu_forward(x, *args, y)
        K.relu_backward(g, x, *args, dx)
    assert y.dtype == dx.dtype == dtype
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    np.testing.assert_allclose(dx, g * d_ref, **TOL[dtype])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alpha", [1.0, 0.3, -0.5])
def test_elu_with_alpha_matches_numpy(path, dtype, alpha):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(33) * 3).astype(dtype)
    g = rng.standard_normal(33).astype(dtype)
    x64 = x.astype(np.float64)
    y, dx = np.empty_like(x), g.copy()
    with kernel_path(path):
        K.elu_forward(x, alpha, y)
        K.elu_backward(dx, x, y, alpha, dx)  # in place on the gradient
    np.testing.assert_allclose(y, np.where(x64 > 0, x64, alpha * np.expm1(x64)), **TOL[dtype])
    np.testing.assert_allclose(dx, g * np.where(x64 > 0, 1, alpha * np.exp(x64)), **TOL[dtype])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("need_x", [True, False])
def test_prelu_matches_numpy(path, dtype, need_x):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((70, 5)).astype(dtype)  # more rows than the parallel sums' blocks
    alpha = rng.standard_normal(5).astype(dtype)
    g = rng.standard_normal((70, 5)).astype(dtype)
    y = np.empty_like(x)
    grad_x = np.empty_like(x) if need_x else None
    grad_alpha = np.ones(5, dtype)
    saved = K.COLUMN_SUMS_PARALLEL_FACTOR
    with kernel_path(path):
        K.COLUMN_SUMS_PARALLEL_FACTOR = 1
        try:
            K.prelu_forward(x, alpha, y)
            K.prelu_backward(g, x, alpha, grad_x, grad_alpha)
        finally:
            K.COLUMN_SUMS_PARALLEL_FACTOR = saved
    np.testing.assert_allclose(y, np.where(x > 0, x, alpha * x), **TOL[dtype])
    if need_x:
        np.testing.assert_allclose(grad_x, g * np.where(x > 0, 1, alpha), **TOL[dtype])
    np.testing.assert_allclose(grad_alpha, 1 + (g * np.minimum(x, 0)).sum(0), **TOL[dtype])


def test_float32_stays_float32():
    # The activation code is a runtime argument: one compile covers every activation.
    z = np.ones((3, 4), np.float32)
    bias = np.ones(4, np.float32)
    assert float64_ops(K._bias_activation_parallel, z, bias, K.SOFTMAX, np.empty_like(z)) == []
    assert float64_ops(K._bias_activation_rows, z, bias, K.SOFTMAX, np.empty_like(z), 0, 3) == []
    assert float64_ops(K._activation_backward_parallel, z, z, K.SOFTMAX, np.empty_like(z)) == []
    assert float64_ops(K._activation_backward_rows, z, z, K.SOFTMAX, np.empty_like(z), 0, 3) == []
    assert float64_ops(K._activate_row_more, z[0], K.GELU) == []
    assert float64_ops(K._activation_backward_row_more, z[0], z[0], K.GELU, z[1]) == []
    assert float64_ops(K._column_sums_add_parallel, z, bias) == []
    assert float64_ops(K._column_sums_add_rows, z, bias, 0, 3) == []
    flat, one = z.reshape(-1), np.float32(1)
    relu_args = (one, one, one, True)
    assert float64_ops(K._relu_span, flat, *relu_args, np.empty_like(flat), 0, 12) == []
    assert float64_ops(K._relu_backward_span, flat, flat, *relu_args, flat.copy(), 0, 12) == []
    assert float64_ops(K._elu_span, flat, one, np.empty_like(flat), 0, 12) == []
    assert float64_ops(K._elu_backward_span, flat, flat, flat, one, flat.copy(), 0, 12) == []
    assert float64_ops(K._prelu_rows, z, bias, np.empty_like(z), 0, 3) == []
    grads = (z, z, bias, True, np.empty_like(z), bias.copy(), 0, 3)
    assert float64_ops(K._prelu_backward_rows, *grads) == []
