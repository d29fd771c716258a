"""Dropout kernels vs a numpy reference (float32 and float64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import dropout as K

DTYPES = [np.float32, np.float64]


def ref_dropout(x, u, rate):
    return np.where(u >= rate, x / (1 - rate), 0).astype(x.dtype)


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=4),
    rate=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
)
def test_forward_and_backward(shape, rate, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, shape).astype(dtype)
    g = rng.normal(0, 1, shape).astype(dtype)
    u = rng.random(shape, dtype=dtype)
    out = np.full_like(x, np.nan)
    gx = np.full_like(x, np.nan)
    K.dropout_forward(x.reshape(-1), u.reshape(-1), dtype(rate), out.reshape(-1))
    K.dropout_backward(g.reshape(-1), u.reshape(-1), dtype(rate), gx.reshape(-1))
    assert out.dtype == gx.dtype == dtype
    r = dtype(rate)
    np.testing.assert_allclose(
        out, ref_dropout(x, u, r), rtol=3e-7 if dtype == np.float32 else 1e-15
    )
    np.testing.assert_allclose(
        gx, ref_dropout(g, u, r), rtol=3e-7 if dtype == np.float32 else 1e-15
    )
    np.testing.assert_array_equal(out == 0, (u < r) | (x == 0))


def test_in_place_rate_zero_and_rate_one():
    x = np.arange(1, 7, dtype=np.float32)
    u = np.linspace(0, 0.99, 6).astype(np.float32)
    y = x.copy()
    K.dropout_forward(y, u, np.float32(0.0), y)
    np.testing.assert_array_equal(y, x)
    K.dropout_forward(y, u, np.float32(1.0), y)
    np.testing.assert_array_equal(y, 0)


def test_dropped_inf_is_zero_like_keras():
    x = np.array([np.inf, 1.0], np.float32)
    out = np.empty_like(x)
    K.dropout_forward(x, np.array([0.1, 0.9], np.float32), np.float32(0.5), out)
    np.testing.assert_array_equal(out, [0.0, 2.0])


def test_float64_uniform_with_float32_x():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 100).astype(np.float32)
    u = rng.random(100)
    out = np.empty_like(x)
    K.dropout_forward(x, u, 0.3, out)
    np.testing.assert_allclose(out, ref_dropout(x, u, np.float32(0.3)), rtol=3e-7)


@pytest.mark.parametrize("kernel", [K.dropout_forward, K.dropout_backward])
def test_float32_stays_float32(kernel):
    x = np.ones(8, np.float32)
    assert float64_ops(kernel, x, x, np.float32(0.5), np.empty_like(x)) == []


@pytest.mark.parametrize("kernel", [K.dropout_forward, K.dropout_backward])
def test_in_place_equals_into_another_array(kernel):
    """The in-place loop (one array, so it vectorizes) computes what the two-array one does."""
    rng = np.random.default_rng(0)
    x, u = rng.standard_normal(1000).astype(np.float32), rng.random(1000).astype(np.float32)
    apart, same = np.empty_like(x), x.copy()
    kernel(x, u, 0.3, apart)
    kernel(same, u, 0.3, same)
    np.testing.assert_array_equal(same, apart)
