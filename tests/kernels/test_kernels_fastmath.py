"""kernels.fastmath's float32 exp against numpy in float64: accuracy, range ends, NaN."""

import numpy as np
from numba import njit
from numba_checks import float64_ops

from fastnn.kernels import fastmath


@njit
def _exp_all(x, out):
    for k in range(x.size):
        out[k] = fastmath.exp(x[k])


def _exp(x):
    out = np.empty_like(x)
    _exp_all(x, out)
    return out


def test_float32_exp_is_within_two_ulps_over_the_normal_range():
    x = np.linspace(-87.0, 88.5, 1_000_001).astype(np.float32)
    exact = np.exp(x.astype(np.float64))
    ulps = np.abs(_exp(x) - exact) / np.spacing(exact.astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 2.0
    assert _exp(np.float32([0.0, -0.0]))[0] == 1.0


def test_float32_exp_underflows_to_zero_overflows_to_inf_and_keeps_nan():
    x = np.float32([-88.0, -1e4, -np.inf, 88.8, 1e4, np.inf, np.nan])
    got = _exp(x)
    np.testing.assert_array_equal(got[:3], 0.0)
    assert np.all(np.isposinf(got[3:6]))
    assert np.isnan(got[6])


def test_float64_exp_is_numpys():
    x = np.linspace(-700, 700, 10_001)
    np.testing.assert_allclose(_exp(x), np.exp(x), rtol=4e-16)  # libm exp, as np.exp in a kernel


def test_float32_exp_stays_float32():
    x = np.ones(4, np.float32)
    assert float64_ops(_exp_all, x, np.empty_like(x)) == []


@njit
def _row_maxes(x, out):
    for i in range(x.shape[0]):
        out[i] = fastmath.row_max(x[i, : i + 1])


def test_row_max_is_the_largest_value_of_every_length():
    x = np.random.default_rng(0).standard_normal((70, 70)).astype(np.float32)
    out = np.empty(70, np.float32)
    _row_maxes(x, out)
    np.testing.assert_array_equal(out, [x[i, : i + 1].max() for i in range(70)])
