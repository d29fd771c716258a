"""fastnn.kernels.matmul_simd: the SIMD products equal numpy's, and gemm.matmul hands them the
long float32 products."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import runtime
from fastnn.kernels import forms, gemm, matmul_simd
from fastnn.kernels.codes import LINEAR, RELU, TANH
from fastnn.kernels.simd import ACCUMULATE, ACCUMULATE_RELU, BIAS, BIAS_RELU


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 130),  # row tiles of 48 and blocks of 12, 8, 4, 2, 1
    k=st.one_of(
        st.integers(1, 40), st.integers(matmul_simd.K_BLOCK - 6, 2 * matmul_simd.K_BLOCK + 90)
    ),
    n=st.sampled_from([1, 7, 16, 17, 32, 40, 70]),  # one or more panels of 16 or 32, cut
    epilogue=st.sampled_from([BIAS, BIAS_RELU, ACCUMULATE, ACCUMULATE_RELU]),
    transposed=st.booleans(),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_matmul_matches_numpy(m, k, n, epilogue, transposed, threads, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((n, k)).astype(np.float32).T if transposed else None
    b = rng.standard_normal((k, n)).astype(np.float32) if b is None else b
    bias = rng.standard_normal(n).astype(np.float32)
    out = rng.standard_normal((m, n)).astype(np.float32)
    before = out.astype(np.float64)
    product = a.astype(np.float64) @ b.astype(np.float64)
    expected = {
        BIAS: product + bias,
        BIAS_RELU: np.maximum(product + bias, 0),
        ACCUMULATE: before + product,
        ACCUMULATE_RELU: np.maximum(before + product, 0),
    }[epilogue]
    with runtime.serial_blas():
        matmul_simd.matmul(a, matmul_simd.pack(b), bias, epilogue, out, threads)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.sqrt(k))


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(1, 300),
    n=st.integers(1, 300),
    layout=st.sampled_from(["rows", "columns", "sliced"]),
    buffered=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_pack_of_any_layout_matches_numpy(k, n, layout, buffered, seed):
    """Panels of b read along its rows (vectors), its columns (a transposed view) or any
    strides, serially and (from PACK_PARALLEL_MIN_VALUES) on Numba's threads, into a buffer
    of garbage too: the lanes past N are zeros."""
    rng = np.random.default_rng(seed)
    if layout == "rows":
        b = rng.standard_normal((k, n)).astype(np.float32)
    elif layout == "columns":
        b = rng.standard_normal((n, k)).astype(np.float32).T
    else:
        b = rng.standard_normal((2 * k, n + 3)).astype(np.float32)[::2, 1 : n + 1]
    size = matmul_simd.packed_size(k, n)
    buffer = np.full(size + 5, np.nan, np.float32) if buffered else None
    panels = matmul_simd.pack(b, buffer)
    lanes = matmul_simd.lanes_for(n)
    expected = np.zeros((panels.shape[0], k, lanes), np.float32)
    for block in range(panels.shape[0]):
        columns = b[:, block * lanes : (block + 1) * lanes]
        expected[block, :, : columns.shape[1]] = columns
    np.testing.assert_array_equal(panels, expected.reshape(panels.shape))


def test_pack_pads_the_last_panel_with_zeros():
    b = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    panels = matmul_simd.pack(b)
    assert panels.shape == (1, 3 * 16)
    rows = panels.reshape(3, 16)
    np.testing.assert_array_equal(rows[:, :4], b)
    assert not rows[:, 4:].any()


@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_runs_long_float32_products_on_simd(monkeypatch, accumulate):
    calls = []
    real = matmul_simd.product
    monkeypatch.setattr(matmul_simd, "product", lambda *args: calls.append(1) or real(*args))
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4096, 64)).astype(np.float32)  # 64 times b's longer side
    b = rng.standard_normal((64, 48)).astype(np.float32)
    out = rng.standard_normal((4096, 48)).astype(np.float32)
    expected = a.astype(np.float64) @ b + (out if accumulate else 0)
    with runtime.serial_blas():
        gemm.matmul(a, b, out, accumulate, threads=2)
        gemm.matmul(a[:100], b, out[:100].copy())  # short: numpy's
        gemm.matmul(a.astype(np.float64), b.astype(np.float64), np.empty((4096, 48)))
    assert calls == [1]
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transposed", [False, True])
def test_gemm_runs_few_rows_by_a_mid_sized_b_on_simd(monkeypatch, transposed):
    """A Dense layer's products in training (8 to 256 rows by a 512 x 512 kernel, or by its
    transpose) pack b at the call and run there; one row by it runs on numpy's."""
    calls = []
    real = matmul_simd.product
    monkeypatch.setattr(matmul_simd, "product", lambda *args: calls.append(1) or real(*args))
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((512, 512)).astype(np.float32)
    b = kernel.T if transposed else kernel
    for rows in (32, 1):
        a = rng.standard_normal((rows, 512)).astype(np.float32)
        out = np.empty((rows, 512), np.float32)
        with runtime.serial_blas():
            gemm.matmul(a, b, out, threads=2)
        np.testing.assert_allclose(out, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    assert calls == [1]


@pytest.mark.parametrize("kept", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_matmul_bias_adds_the_bias_and_relu_in_the_products_pass(kept, relu):
    """A Dense layer's product, bias and relu in one pass where the product runs on the SIMD
    kernels (a kernel kept packed at inference, or packed at the call in training)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((64, 512)).astype(np.float32)
    b = rng.standard_normal((512, 512)).astype(np.float32)
    bias = rng.standard_normal(512).astype(np.float32)
    out = np.empty((64, 512), np.float32)
    with runtime.serial_blas():
        code = RELU if relu else LINEAR
        assert gemm.matmul_bias(a, forms.Forms(b) if kept else b, bias, code, out, threads=2)
    expected = a.astype(np.float64) @ b + bias
    expected = np.maximum(expected, 0) if relu else expected
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-3)


def test_matmul_bias_declines_what_the_simd_kernels_do_not_take():
    """Float64, a bias of another length or dtype, a short product, an activation outside the
    epilogue: False, out untouched."""
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((64, 512)), rng.standard_normal((512, 512))
    bias = np.zeros(512, np.float32)
    cases = [
        (a, b, bias.astype(np.float64), np.empty((64, 512))),
        (a.astype(np.float32), b.astype(np.float32), bias[:10], np.empty((64, 512), np.float32)),
        (a.astype(np.float32), b.astype(np.float32), bias.astype(np.float64), None),
        (a[:2, :8].astype(np.float32), b[:8, :8].astype(np.float32), bias[:8], None),
    ]
    for x, w, v, out in cases:
        out = np.full((len(x), w.shape[1]), 7, x.dtype) if out is None else out
        out[...] = 7
        assert not gemm.matmul_bias(x, w, v, RELU, out, threads=2)
        assert (out == 7).all()
    out = np.full((64, 512), 7, np.float32)
    assert not gemm.matmul_bias(a.astype(np.float32), b.astype(np.float32), bias, TANH, out)
    assert (out == 7).all()


@settings(max_examples=200, deadline=None)
@given(
    m=st.integers(1, 5000),
    k=st.integers(1, 2048),
    n=st.integers(1, 2048),
    kept=st.booleans(),
)
def test_may_run_simd_holds_wherever_simd_wins(m, k, n, kept):
    """The quick test that spares small Dense layers the rest never turns a SIMD product away."""
    a, b, out = (np.empty(shape, np.float32) for shape in ((1, 1), (1, 1), (1, 1)))
    if gemm._simd_wins(a, b, out, m, k, n, kept):
        assert gemm.may_run_simd(m, k, n)
