"""fastnn.kernels.resize against dense interpolation matrices built in plain numpy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import resize

DTYPES = [np.float32, np.float64]


def interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size): half-pixel bilinear weights, written out from the definition."""
    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        src = max((i + 0.5) * in_size / out_size - 0.5, 0.0)
        lo = int(np.floor(src))
        hi = min(lo + 1, in_size - 1)
        matrix[i, lo] += 1 - (src - lo)
        matrix[i, hi] += src - lo
    return matrix


def run_kernels(x, out_h, out_w, grad):
    n, h, w, c = x.shape
    rows = resize.linear_taps(h, out_h, x.dtype)
    cols = resize.linear_taps(w, out_w, x.dtype)
    out = np.full((n, out_h, out_w, c), np.nan, x.dtype)
    resize.bilinear_forward(x, *rows, *cols, out)
    grad_x = np.full_like(x, np.nan)
    by_rows = resize.taps_by_input(*rows, h)
    by_cols = resize.taps_by_input(*cols, w)
    resize.bilinear_backward(grad, *by_rows, *by_cols, grad_x)
    return out, grad_x


@st.composite
def resize_cases(draw):
    n = draw(st.integers(1, 2))
    h, w, c = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    out_h, out_w = draw(st.integers(1, 9)), draw(st.integers(1, 9))  # up, down, uneven
    return n, h, w, c, out_h, out_w, draw(st.sampled_from(DTYPES)), draw(st.integers(0, 99))


@settings(max_examples=5, deadline=None)
@given(resize_cases())
def test_bilinear_forward_and_backward_match_dense_interpolation(case):
    n, h, w, c, out_h, out_w, dtype, seed = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    grad = rng.standard_normal((n, out_h, out_w, c)).astype(dtype)
    rows, cols = interpolation_matrix(h, out_h), interpolation_matrix(w, out_w)
    out, grad_x = run_kernels(x, out_h, out_w, grad)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    want = np.einsum("ia,nabc,jb->nijc", rows, x.astype(np.float64), cols)
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)
    want_grad = np.einsum("ia,nijc,jb->nabc", rows, grad.astype(np.float64), cols)
    np.testing.assert_allclose(grad_x, want_grad, rtol=tol, atol=tol)
    assert out.dtype == grad_x.dtype == dtype


@pytest.mark.parametrize("in_size, out_size", [(3, 6), (4, 12), (5, 3), (1, 4)])
def test_taps_by_input_group_every_weight_of_each_input(in_size, out_size):
    lo, hi, frac = resize.linear_taps(in_size, out_size, np.float64)
    start, outputs, weights = resize.taps_by_input(lo, hi, frac, in_size)
    dense = np.zeros((out_size, in_size))
    for k in range(in_size):
        for p in range(start[k], start[k + 1]):
            dense[outputs[p], k] += weights[p]
    np.testing.assert_allclose(dense, interpolation_matrix(in_size, out_size), atol=1e-15)


def test_doubling_uses_quarter_weights_and_clamps_at_the_edges():
    """Factor 2: outputs sit a quarter pixel from the inputs, the first and last copy the edge."""
    lo, hi, frac = resize.linear_taps(3, 6, np.float32)
    np.testing.assert_array_equal(lo, [0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(hi, [1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(frac, np.float32([0, 0.25, 0.75, 0.25, 0.75, 0.25]))


def test_float32_stays_float32():
    x = np.ones((1, 2, 3, 2), np.float32)
    rows, cols = resize.linear_taps(2, 4, np.float32), resize.linear_taps(3, 6, np.float32)
    out = np.empty((1, 4, 6, 2), np.float32)
    assert float64_ops(resize.bilinear_forward, x, *rows, *cols, out) == []
    by_rows, by_cols = resize.taps_by_input(*rows, 2), resize.taps_by_input(*cols, 3)
    assert float64_ops(resize.bilinear_backward, out, *by_rows, *by_cols, x) == []


@pytest.mark.parametrize(
    "shape, factors", [((2, 3, 4, 5), (2, 2)), ((1, 1, 7, 3), (1, 3)), ((3, 2, 2, 1), (3, 1))]
)
def test_nearest_repeats_each_pixel_and_sums_its_block_back(shape, factors):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    sh, sw = factors
    n, h, w, c = shape
    out = np.empty((n, h * sh, w * sw, c))
    resize.nearest_forward(x, sh, sw, out)
    np.testing.assert_array_equal(out, x.repeat(sh, axis=1).repeat(sw, axis=2))
    grad = rng.standard_normal(out.shape)
    grad_x = np.full(shape, np.nan)
    resize.nearest_backward(grad, sh, sw, grad_x)
    want = grad.reshape(n, h, sh, w, sw, c).sum(axis=(2, 4))
    np.testing.assert_allclose(grad_x, want, rtol=1e-12)
