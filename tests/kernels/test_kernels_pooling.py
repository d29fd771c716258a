"""fastnn.kernels.pooling against plain-numpy loop references (TF padding semantics)."""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.kernels import pooling
from fastnn.kernels.conv import padding_amounts

DTYPES = [np.float32, np.float64]


def geometry(h, w, ph, pw, sh, sw, padding):
    oh, pt, _ = padding_amounts(h, ph, sh, padding)
    ow, pl, _ = padding_amounts(w, pw, sw, padding)
    return oh, ow, pt, pl


def windows(h, w, ph, pw, sh, sw, padding):
    """Yield (i, j, rows, cols) of each output pixel's window, clipped to the input."""
    oh, ow, pt, pl = geometry(h, w, ph, pw, sh, sw, padding)
    for i in range(oh):
        for j in range(ow):
            r0, c0 = i * sh - pt, j * sw - pl
            rows = range(max(r0, 0), min(r0 + ph, h))
            cols = range(max(c0, 0), min(c0 + pw, w))
            yield i, j, rows, cols


def ref_pool(x, ph, pw, sh, sw, padding, mode):
    n, h, w, c = x.shape
    oh, ow, _, _ = geometry(h, w, ph, pw, sh, sw, padding)
    out = np.zeros((n, oh, ow, c), dtype=x.dtype)
    for i, j, rows, cols in windows(h, w, ph, pw, sh, sw, padding):
        win = x[:, rows.start : rows.stop, cols.start : cols.stop, :]
        out[:, i, j] = win.max(axis=(1, 2)) if mode == "max" else win.mean(axis=(1, 2))
    return out


def ref_pool_backward(x, g, ph, pw, sh, sw, padding, mode):
    n, h, w, c = x.shape
    dx = np.zeros_like(x)
    for i, j, rows, cols in windows(h, w, ph, pw, sh, sw, padding):
        win = x[:, rows.start : rows.stop, cols.start : cols.stop, :]
        if mode == "avg":
            share = g[:, i, j, :] / (len(rows) * len(cols))
            dx[:, rows.start : rows.stop, cols.start : cols.stop, :] += share[:, None, None, :]
            continue
        flat = win.reshape(n, -1, c).argmax(axis=1)  # first max in row-major order
        for b in range(n):
            for ch in range(c):
                r, q = divmod(int(flat[b, ch]), len(cols))
                dx[b, rows.start + r, cols.start + q, ch] += g[b, i, j, ch]
    return dx


@st.composite
def pool_cases(draw):
    padding = draw(st.sampled_from(["valid", "same"]))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    top = 4 if padding == "same" else 1
    ph = draw(st.integers(1, min(4, max(h, top))))
    pw = draw(st.integers(1, min(4, max(w, top))))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dtype = draw(st.sampled_from(DTYPES))
    return (n, h, w, c), (ph, pw), strides, padding, dtype


@contextlib.contextmanager
def on_threads(parallel: bool):
    """The window pools' parallel shells (from any size), or their serial loops (at any)."""
    saved = pooling.PARALLEL_MIN_ELEMENTS
    pooling.PARALLEL_MIN_ELEMENTS = 0 if parallel else 2**62
    try:
        yield
    finally:
        pooling.PARALLEL_MIN_ELEMENTS = saved


def run_max(x, ph, pw, sh, sw, padding):
    n, h, w, c = x.shape
    oh, ow, pt, pl = geometry(h, w, ph, pw, sh, sw, padding)
    out = np.full((n, oh, ow, c), np.nan, dtype=x.dtype)
    argmax = np.full((n, oh, ow, c), -7, dtype=np.int32)
    pooling.maxpool2d_forward(x, ph, pw, sh, sw, pt, pl, out, argmax)
    return out, argmax


def run_avg(x, ph, pw, sh, sw, padding):
    n, h, w, c = x.shape
    oh, ow, pt, pl = geometry(h, w, ph, pw, sh, sw, padding)
    out = np.full((n, oh, ow, c), np.nan, dtype=x.dtype)
    pooling.avgpool2d_forward(x, ph, pw, sh, sw, pt, pl, out)
    return out


@settings(max_examples=40, deadline=None)
@given(pool_cases(), st.integers(0, 2**31 - 1), st.booleans(), st.booleans())
def test_maxpool_matches_reference(case, seed, ties, parallel):
    with on_threads(parallel):
        check_maxpool(case, seed, ties)


def check_maxpool(case, seed, ties):
    shape, (ph, pw), (sh, sw), padding, dtype = case
    rng = np.random.default_rng(seed)
    # with ties (values from {0, 1, 2}) the gradient must go to the first maximum, as TensorFlow
    x = (rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    out, argmax = run_max(x, ph, pw, sh, sw, padding)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, ref_pool(x, ph, pw, sh, sw, padding, "max"))
    n, h, w, c = shape
    plane = x.reshape(n, h * w, c)
    picked = np.take_along_axis(plane, argmax.reshape(n, -1, c), axis=1).reshape(out.shape)
    np.testing.assert_array_equal(picked, out)

    g = rng.standard_normal(out.shape).astype(dtype)
    dx = np.full(shape, np.nan, dtype=dtype)
    pooling.maxpool2d_backward(g, argmax, dx)
    assert dx.dtype == dtype
    ref = ref_pool_backward(x, g, ph, pw, sh, sw, padding, "max")
    np.testing.assert_allclose(dx, ref, rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    hw=st.tuples(st.integers(2, 9), st.integers(2, 9)),
    c=st.integers(1, 20),
    ties=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_2x2_pool_codes_and_unpool_match_the_max_pool_layer_kernels(n, hw, c, ties, dtype, seed):
    """A fused conv's 2x2 stride-2 'valid' pool: its codes (0..3, the window position of the
    maximum) pick what maxpool2d_forward's argmax picks, the first maximum on ties, and
    unpooling a gradient by them is maxpool2d_backward, odd last rows and columns included."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, (n, *hw, c)) if ties else rng.standard_normal((n, *hw, c))
    y = y.astype(dtype)
    expected, argmax = run_max(y, 2, 2, 2, 2, "valid")
    out = np.full(expected.shape, np.nan, dtype)
    codes = np.full(expected.shape, 9, np.uint8)
    pooling.max_pool_2x2(y, out, codes)
    np.testing.assert_array_equal(out, expected)
    w = hw[1]
    rows, cols = np.divmod(argmax, w)
    pooled_h, pooled_w = expected.shape[1:3]
    top = 2 * np.arange(pooled_h)[None, :, None, None]
    left = 2 * np.arange(pooled_w)[None, None, :, None]
    np.testing.assert_array_equal(codes, 2 * (rows - top) + (cols - left))
    inference = np.full(expected.shape, np.nan, dtype)
    pooling.max_pool_2x2(y, inference, np.empty((0, 0, 0, 0), np.uint8))
    np.testing.assert_array_equal(inference, expected)

    g = rng.standard_normal(expected.shape).astype(dtype)
    dy = np.full(y.shape, np.nan, dtype)
    pooling.maxpool2d_backward(g, argmax, dy)
    unpooled = np.full((n * hw[0] * w, c), np.nan, dtype)
    middle = min(1, n * hw[0])  # two calls: rows [0, 1) and [1, N*H)
    pooling.max_unpool_2x2_rows(g, codes, hw[0], 0, middle, unpooled[: middle * w])
    pooling.max_unpool_2x2_rows(g, codes, hw[0], middle, n * hw[0], unpooled[middle * w :])
    np.testing.assert_array_equal(unpooled.reshape(y.shape), dy)


@settings(max_examples=25, deadline=None)
@given(pool_cases(), st.integers(0, 2**31 - 1), st.booleans())
def test_avgpool_matches_reference(case, seed, parallel):
    with on_threads(parallel):
        check_avgpool(case, seed)


def check_avgpool(case, seed):
    shape, (ph, pw), (sh, sw), padding, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    out = run_avg(x, ph, pw, sh, sw, padding)
    assert out.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out, ref_pool(x, ph, pw, sh, sw, padding, "avg"), **tol)

    n, h, w, c = shape
    _, _, pt, pl = geometry(h, w, ph, pw, sh, sw, padding)
    g = rng.standard_normal(out.shape).astype(dtype)
    dx = np.full(shape, np.nan, dtype=dtype)
    pooling.avgpool2d_backward(g, ph, pw, sh, sw, pt, pl, dx)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, ref_pool_backward(x, g, ph, pw, sh, sw, padding, "avg"), **tol)


def test_same_padding_is_asymmetric_and_not_counted():
    # H=W=5, pool 2, stride 2, 'same': out 3, padding 0 before and 1 after (TensorFlow's rule),
    # so the last row/column of windows holds one real row/column and averages only over it.
    x = np.arange(25, dtype=np.float64).reshape(1, 5, 5, 1)
    avg = run_avg(x, 2, 2, 2, 2, "same")[0, :, :, 0]
    np.testing.assert_allclose(avg[0], [3.0, 5.0, 6.5])
    np.testing.assert_allclose(avg[2], [20.5, 22.5, 24.0])
    mx, _ = run_max(-x, 2, 2, 2, 2, "same")  # all negative: a padded zero would win if counted
    np.testing.assert_array_equal(
        mx[0, :, :, 0], -np.array([[0, 2, 4], [10, 12, 14], [20, 22, 24]])
    )
    # H=5, pool 4, stride 2: padding 1 before, 2 after.
    assert geometry(5, 5, 4, 4, 2, 2, "same") == (3, 3, 1, 1)
    avg = run_avg(x, 4, 4, 2, 2, "same")[0, :, :, 0]
    assert avg[0, 0] == pytest.approx(np.mean(x[0, :3, :3, 0]))
    assert avg[2, 2] == pytest.approx(np.mean(x[0, 3:, 3:, 0]))


@settings(max_examples=8, deadline=None)
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 7),
    c=st.integers(1, 9),
    ties=st.booleans(),
    nans=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_global_max_pool_is_numpys_max_and_first_argmax(n, k, c, ties, nans, seed):
    """Values and the first maximum's step as numpy's max/argmax (NaN wins, as in argmax);
    the backward puts each gradient at that step."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (n, k, c)) if ties else rng.standard_normal((n, k, c))
    x = x.astype(np.float32)
    if nans:
        x[rng.random(x.shape) < 0.2] = np.nan
    out, index = np.empty((n, c), np.float32), np.empty((n, c), np.int64)
    pooling.global_max_pool(x, out, index)
    want_index = x.argmax(axis=1)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(out, np.take_along_axis(x, want_index[:, None], 1)[:, 0])
    grad = rng.standard_normal((n, c)).astype(np.float32)
    dx = np.full(x.shape, 7, np.float32)
    pooling.global_max_pool_backward(grad, index, dx)
    want = np.zeros_like(x)
    np.put_along_axis(want, want_index[:, None], grad[:, None], axis=1)
    np.testing.assert_array_equal(dx, want)


def test_global_max_pool_parallel_equals_serial():
    x = np.random.default_rng(0).standard_normal((8, 64, 160)).astype(np.float32)
    assert x.size >= pooling.PARALLEL_MIN_ELEMENTS
    out, index = np.empty((8, 160), np.float32), np.empty((8, 160), np.int64)
    pooling.global_max_pool(x, out, index)
    np.testing.assert_array_equal(index, x.argmax(axis=1))
    np.testing.assert_array_equal(out, x.max(axis=1))


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 7), (8, 64, 160)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_mean_is_numpys_mean_over_the_middle_axis(shape, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    out = np.empty((shape[0], shape[2]), dtype)
    pooling.global_mean(x, out)
    want = x.astype(np.float64).mean(axis=1)
    np.testing.assert_allclose(out, want, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-7)
