"""Embedding kernels against numpy, and the fused cell kernels' float32 code: no float64 inside
the float32 step kernels, and the vectorizable float32 tanh / sigmoid against numpy's.

These do not run the sequence time loops, so they live apart from test_kernels_recurrent.py,
whose tests run once for each time loop.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from numba_checks import float64_ops

from fastnn.kernels import embedding as E
from fastnn.kernels import fastmath
from fastnn.kernels import recurrent as R

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
SETTINGS = settings(max_examples=10, deadline=None)


# ---------------------------------------------------------------- embedding


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("parallel", [False, True])
def test_embedding_forward_gathers_rows(dtype, parallel, monkeypatch):
    monkeypatch.setattr(E, "PARALLEL_MIN_VALUES", 0 if parallel else 2**62)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((7, 5)).astype(dtype)
    ids = np.array([3, 0, 6, 3, 1], dtype=np.int64)
    out = np.empty((5, 5), dtype)
    E.embedding_forward(table, ids, out)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, table[ids])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 5, 40])
def test_embedding_backward_scatter_adds_and_accumulates_repeats(dtype, width):
    rng = np.random.default_rng(1)
    ids = np.array([2, 0, 2, 2, 5, 0], dtype=np.int64)
    grad = rng.standard_normal((6, width)).astype(dtype)
    dtable = rng.standard_normal((6, width)).astype(dtype)
    expected = dtable.astype(np.float64)
    np.add.at(expected, ids, grad.astype(np.float64))
    E.embedding_backward(grad, ids, dtable)
    assert dtable.dtype == dtype
    np.testing.assert_allclose(dtable, expected, **TOL[dtype])


@SETTINGS
@given(ids=st.lists(st.integers(0, 11), max_size=40).map(lambda v: np.array(v, dtype=np.int64)))
def test_distinct_ids_lists_each_id_once_in_first_seen_order(ids):
    used, inverse = np.empty(len(ids), np.int64), np.empty(len(ids), np.int64)
    used = used[: E.distinct_ids(ids, np.zeros(12, np.int64), used, inverse)]
    _, first = np.unique(ids, return_index=True)
    np.testing.assert_array_equal(used, ids[np.sort(first)])
    np.testing.assert_array_equal(used[inverse], ids)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [1, 5, 40])
@pytest.mark.parametrize("with_sums", [False, True])
def test_sum_rows_by_id_sums_each_distinct_ids_rows_and_the_columns(dtype, width, with_sums):
    rng = np.random.default_rng(width)
    ids = rng.integers(0, 9, 30)
    used, inverse = np.empty(30, np.int64), np.empty(30, np.int64)
    count = E.distinct_ids(ids, np.zeros(9, np.int64), used, inverse)
    grad = rng.standard_normal((30, width)).astype(dtype)
    out = np.full((count, width), np.nan, dtype)  # a row's first id writes it: no zeroing
    start = rng.standard_normal(width).astype(dtype)
    sums = start.copy() if with_sums else np.empty(0, dtype)
    E.sum_rows_by_id(grad, inverse, out, sums)
    expected = np.zeros((count, width))
    np.add.at(expected, inverse, grad.astype(np.float64))
    np.testing.assert_allclose(out, expected, **TOL[dtype])
    if with_sums:
        np.testing.assert_allclose(sums, start + grad.sum(axis=0, dtype=np.float64), **TOL[dtype])


# ---------------------------------------------------------------- no float64 inside float32 kernels


def step_args(kind, dtype):
    n, u = 2, 3
    f = lambda *shape: np.zeros(shape, dtype)  # noqa: E731
    mask = np.ones(n, bool)
    if kind == "lstm_forward":
        return R.lstm_step_forward, (
            f(n, 4 * u),
            f(n, 4 * u),
            f(n, u),
            f(n, u),
            mask,
            3,
            2,
            f(n, 4 * u),
            f(n, u),
            f(n, u),
        )
    if kind == "lstm_backward":
        return R.lstm_step_backward, (
            f(n, u),
            f(n, u),
            f(n, u),
            f(n, u),
            f(n, u),
            f(n, u),
            f(n, 4 * u),
            mask,
            3,
            2,
            f(n, 4 * u),
        )
    if kind == "gru_forward":
        return R.gru_step_forward, (
            f(n, 3 * u),
            f(n, 3 * u),
            f(3 * u),
            f(n, u),
            mask,
            3,
            2,
            f(n, 4 * u),
            f(n, u),
        )
    return R.gru_step_backward, (
        f(n, u),
        f(n, u),
        f(n, u),
        f(n, u),
        f(n, 4 * u),
        mask,
        3,
        2,
        f(n, 3 * u),
        f(n, 3 * u),
    )


@pytest.mark.parametrize("kind", ["lstm_forward", "lstm_backward", "gru_forward", "gru_backward"])
def test_fused_cell_kernels_stay_float32(kind):
    kernel, args = step_args(kind, np.float32)
    assert float64_ops(kernel, *args) == []


def test_embedding_kernels_stay_float32():
    table = np.zeros((4, 3), np.float32)
    ids = np.zeros(2, np.int64)
    out = np.zeros((2, 3), np.float32)
    assert float64_ops(E._gather_rows, table, ids, out, 0, 2) == []
    assert float64_ops(E._gather_parallel, table, ids, out) == []
    grad = np.zeros((2, 3), np.float32)
    assert float64_ops(E._scatter_add_columns, grad, ids, table, 1) == []


# ---------------------------------------------------------------- float32 gate functions


@njit
def _apply_gate_functions(x, tanh_out, sigmoid_out):
    for k in range(x.size):
        tanh_out[k] = fastmath.tanh32(x[k])
        sigmoid_out[k] = fastmath.sigmoid32(x[k])


def test_float32_tanh_and_sigmoid_match_numpy():
    """The vectorizable float32 tanh/sigmoid of the default LSTM path stay within 5e-7 of the
    float64 functions everywhere, are odd/symmetric, saturate, and propagate NaN."""
    x = np.concatenate(
        [np.linspace(-30, 30, 600_001), [0.0, 1e-30, -1e-30, np.inf, -np.inf]]
    ).astype(np.float32)
    tanh, sigmoid = np.empty_like(x), np.empty_like(x)
    _apply_gate_functions(x, tanh, sigmoid)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(tanh, np.tanh(exact), rtol=0, atol=5e-7)
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-exact)), rtol=0, atol=5e-7)
    small = np.abs(x) < 1e-3
    np.testing.assert_allclose(tanh[small], x[small], rtol=1e-6)  # accurate near 0, not just 5e-7
    assert np.all(np.abs(tanh) <= 1) and np.all((sigmoid >= 0) & (sigmoid <= 1))
    grid = np.linspace(-30, 30, 600_001).astype(np.float32)
    t_grid, s_grid = np.empty_like(grid), np.empty_like(grid)
    _apply_gate_functions(grid, t_grid, s_grid)
    np.testing.assert_array_equal(t_grid, -t_grid[::-1])  # odd, as tanh is
    nan = np.array([np.nan], np.float32)
    out_t, out_s = np.empty_like(nan), np.empty_like(nan)
    _apply_gate_functions(nan, out_t, out_s)
    assert np.isnan(out_t[0]) and np.isnan(out_s[0])
