"""fastnn.kernels.unit_norm against numpy (Keras's normalize: x * min(rsqrt(sum x^2), bound))."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.kernels import unit_norm

BOUND = 1e12


@settings(max_examples=5, deadline=None)
@given(
    rows=st.integers(1, 5),
    width=st.integers(1, 7),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 99),
)
def test_unit_norm_forward_and_backward_match_numpy(rows, width, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, width)).astype(dtype)
    x[0] = 0  # a zero row: the bound holds
    grad = rng.standard_normal((rows, width)).astype(dtype)
    bound = dtype(BOUND)
    y, scale = np.empty_like(x), np.empty(rows, dtype)
    unit_norm.unit_norm_forward(x, bound, y, scale)
    x64 = x.astype(np.float64)
    with np.errstate(divide="ignore"):
        want_scale = np.minimum(1 / np.sqrt(np.sum(x64 * x64, axis=1)), float(bound))
    tol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(scale, want_scale, rtol=tol)
    np.testing.assert_allclose(y, x64 * want_scale[:, None], rtol=tol, atol=tol)
    grad_x = np.full_like(x, np.nan)
    unit_norm.unit_norm_backward(grad, y, scale, bound, grad_x)
    y64, g64 = x64 * want_scale[:, None], grad.astype(np.float64)
    free = want_scale < float(bound)
    along = np.sum(g64 * y64, axis=1) * free
    want = (g64 - y64 * along[:, None]) * want_scale[:, None]
    np.testing.assert_allclose(grad_x, want, rtol=10 * tol, atol=10 * tol)
    assert y.dtype == grad_x.dtype == dtype
    np.testing.assert_array_equal(grad_x[0], grad[0] * bound)  # a linear map at the bound
