"""Batch-norm kernels vs numpy references (float32 and float64) and finite differences (float64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import normalization as K

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
ATOL = {np.float32: 1e-5, np.float64: 1e-11}

# Rows up to 200 cover one block, several blocks and a ragged last block (block = 64 rows).
shapes = st.tuples(st.integers(1, 200), st.integers(1, 5))
seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)


def _inputs(seed, shape, dtype):
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, shape).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    beta = rng.normal(0, 1, shape[1]).astype(dtype)
    return x, gamma, beta, rng


def forward_train(x, gamma, beta, eps):
    y = np.empty_like(x)
    mean = np.empty(x.shape[1], x.dtype)
    invstd = np.empty(x.shape[1], x.dtype)
    K.batchnorm_forward_train(x, gamma, beta, x.dtype.type(eps), y, mean, invstd)
    assert y.dtype == mean.dtype == invstd.dtype == x.dtype
    return y, mean, invstd


def ref_forward(x, gamma, beta, eps):
    mean = x.mean(0)
    invstd = 1 / np.sqrt(x.var(0) + eps)
    return (x - mean) * invstd * gamma + beta, mean, invstd


def ref_backward(dy, x, gamma, mean, invstd):
    xhat = (x - mean) * invstd
    dbeta = dy.sum(0)
    dgamma = (dy * xhat).sum(0)
    dx = gamma * invstd * (dy - dbeta / len(x) - xhat * dgamma / len(x))
    return dx, dgamma, dbeta


def _close(got, want, dtype):
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=ATOL[dtype])


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds, dtype=dtypes)
def test_forward_train(shape, seed, dtype):
    x, gamma, beta, _ = _inputs(seed, shape, dtype)
    got = forward_train(x, gamma, beta, 1e-3)
    want = ref_forward(*(a.astype(np.float64) for a in (x, gamma, beta)), 1e-3)
    for g, w in zip(got, want, strict=True):
        _close(g, w, dtype)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds, dtype=dtypes)
def test_forward_infer(shape, seed, dtype):
    x, gamma, beta, rng = _inputs(seed, shape, dtype)
    mm = rng.normal(0, 1, shape[1]).astype(dtype)
    mv = rng.uniform(0.1, 3, shape[1]).astype(dtype)
    y = np.empty_like(x)
    K.batchnorm_forward_infer(x, gamma, beta, mm, mv, dtype(1e-3), y)
    assert y.dtype == dtype
    w = [a.astype(np.float64) for a in (x, gamma, beta, mm, mv)]
    _close(y, (w[0] - w[3]) / np.sqrt(w[4] + 1e-3) * w[1] + w[2], dtype)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds, dtype=dtypes)
def test_backward_overwrites_grad_x_and_adds_into_dgamma_dbeta(shape, seed, dtype):
    x, gamma, beta, rng = _inputs(seed, shape, dtype)
    _, mean, invstd = forward_train(x, gamma, beta, 1e-3)
    dy = rng.normal(0, 1, shape).astype(dtype)
    dx = np.full_like(x, np.nan)
    dgamma0 = rng.normal(0, 1, shape[1]).astype(dtype)
    dbeta0 = rng.normal(0, 1, shape[1]).astype(dtype)
    dgamma, dbeta = dgamma0.copy(), dbeta0.copy()
    K.batchnorm_backward(dy, x, gamma, mean, invstd, dx, dgamma, dbeta)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    w = ref_backward(*(a.astype(np.float64) for a in (dy, x, gamma, mean, invstd)))
    # dx is a difference of nearly equal terms: compare against the scale of its parts.
    scale = np.abs(w[0]).max() + np.abs(gamma * invstd).max() * np.abs(dy).max()
    np.testing.assert_allclose(dx, w[0], rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    _close(dgamma, dgamma0 + w[1], dtype)
    _close(dbeta, dbeta0 + w[2], dtype)


@settings(max_examples=10, deadline=None)
@given(shape=st.tuples(st.integers(2, 70), st.integers(1, 3)), seed=seeds)
def test_backward_matches_finite_differences(shape, seed):
    """d/d(x, gamma, beta) of sum(w * y) with y the training-mode output, in float64."""
    x, gamma, beta, rng = _inputs(seed, shape, np.float64)
    w = rng.normal(0, 1, shape)

    def objective(x, gamma, beta):
        return (w * forward_train(x, gamma, beta, 1e-3)[0]).sum()

    _, mean, invstd = forward_train(x, gamma, beta, 1e-3)
    dx = np.empty_like(x)
    dgamma, dbeta = np.zeros_like(gamma), np.zeros_like(beta)
    K.batchnorm_backward(w, x, gamma, mean, invstd, dx, dgamma, dbeta)
    h = 1e-6
    params = [x, gamma, beta]
    for which, grad in enumerate([dx, dgamma, dbeta]):
        arr = params[which]
        # Check a few entries of x (all of them would be slow), every entry of gamma and beta.
        idxs = list(np.ndindex(*arr.shape))[:: max(1, arr.size // 12)]
        for idx in idxs:
            up = [p.copy() for p in params]
            down = [p.copy() for p in params]
            up[which][idx] += h
            down[which][idx] -= h
            fd = (objective(*up) - objective(*down)) / (2 * h)
            np.testing.assert_allclose(grad[idx], fd, rtol=1e-5, atol=1e-6)


def test_float32_statistics_are_accurate_for_many_rows():
    rng = np.random.default_rng(1)
    x = rng.normal(100.0, 0.1, (50_000, 3)).astype(np.float32)
    ones, zeros = np.ones(3, np.float32), np.zeros(3, np.float32)
    y, mean, invstd = forward_train(x, ones, zeros, 1e-3)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(0), rtol=2e-7)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(x64.var(0) + 1e-3), rtol=1e-4)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-3)


@pytest.mark.parametrize(
    "name",
    [
        "_block_sums",
        "_pairwise_total",
        "batchnorm_forward_train",
        "batchnorm_forward_infer",
        "batchnorm_backward",
    ],
)
def test_float32_stays_float32(name):
    f = np.float32
    x, gamma, beta, _ = _inputs(0, (70, 3), f)
    c = np.ones(3, f)
    args = {
        "_block_sums": (x, c, np.empty((2, 3), f), np.empty((2, 3), f)),
        "_pairwise_total": (np.ones((5, 3), f), c.copy()),
        "batchnorm_forward_train": (x, gamma, beta, f(1e-3), np.empty_like(x), c.copy(), c.copy()),
        "batchnorm_forward_infer": (x, gamma, beta, c, c, f(1e-3), np.empty_like(x)),
        "batchnorm_backward": (x, x, gamma, c, c, np.empty_like(x), c.copy(), c.copy()),
    }[name]
    assert float64_ops(getattr(K, name), *args) == []
