"""Activation kernels against plain numpy references, float32 and float64, serial and parallel."""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import activations as K
from fastnn.kernels import codes

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def reference_forward(z, code):
    if code == K.LINEAR:
        return z
    if code == K.RELU:
        return np.maximum(z, 0)
    if code == K.SIGMOID:
        return 1 / (1 + np.exp(-z))
    if code == K.TANH:
        return np.tanh(z)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference_backward(g, y, code):
    if code == K.LINEAR:
        return g
    if code == K.RELU:
        return g * (y > 0)
    if code == K.SIGMOID:
        return g * y * (1 - y)
    if code == K.TANH:
        return g * (1 - y * y)
    return y * (g - (g * y).sum(axis=1, keepdims=True))


shapes = st.tuples(st.integers(1, 7), st.integers(1, 9))
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


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", sorted(codes.CODES.values()))
@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31), with_bias=st.booleans(), in_place=st.booleans())
def test_bias_activation_forward_matches_numpy(path, dtype, code, shape, seed, with_bias, in_place):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    bias = rng.standard_normal(shape[1]).astype(dtype) if with_bias else np.empty(0, dtype)
    expected = reference_forward(z + (bias if with_bias else 0), code)
    out = z if in_place else np.empty_like(z)  # in place runs its own kernels
    with kernel_path(path):
        K.bias_activation_forward(z, bias, code, out)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, **TOL[dtype])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("code", sorted(codes.CODES.values()))
@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**31))
def test_activation_backward_matches_numpy(path, dtype, code, shape, seed):
    rng = np.random.default_rng(seed)
    y = reference_forward(rng.standard_normal(shape), code).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    out = np.empty_like(g)
    with kernel_path(path):
        K.activation_backward(g, y, code, out)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, reference_backward(g, y, code), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_softmax_are_stable_for_huge_inputs(dtype):
    z = np.array([[1e4, -1e4, 0.0]], dtype)
    sig = np.empty_like(z)
    K.bias_activation_forward(z, np.empty(0, dtype), K.SIGMOID, sig)
    np.testing.assert_allclose(sig, [[1.0, 0.0, 0.5]])
    soft = np.empty_like(z)
    K.bias_activation_forward(z, np.empty(0, dtype), K.SOFTMAX, soft)
    np.testing.assert_allclose(soft, [[1.0, 0.0, 0.0]])


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


def test_float32_stays_float32():
    # The activation code is a runtime argument: one compile covers every activation.
    z = np.ones((3, 4), np.float32)
    bias = np.ones(4, np.float32)
    assert float64_ops(K._bias_activation_parallel, z, bias, K.SOFTMAX, np.empty_like(z)) == []
    assert float64_ops(K._bias_activation_rows, z, bias, K.SOFTMAX, np.empty_like(z), 0, 3) == []
    assert float64_ops(K._activation_backward_parallel, z, z, K.SOFTMAX, np.empty_like(z)) == []
    assert float64_ops(K._activation_backward_rows, z, z, K.SOFTMAX, np.empty_like(z), 0, 3) == []
    assert float64_ops(K._column_sums_add_parallel, z, bias) == []
    assert float64_ops(K._column_sums_add_rows, z, bias, 0, 3) == []
