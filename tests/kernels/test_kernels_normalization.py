"""Batch-norm kernels vs numpy references (float32 and float64) and finite differences (float64)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import normalization as K
from fastnn.kernels.codes import LINEAR, RELU, RELU6

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-4, np.float64: 1e-10}
ATOL = {np.float32: 1e-5, np.float64: 1e-11}

# Rows up to 200 cover one block, several blocks and a ragged last block (up to 64 blocks).
# up to 40 columns: float32 rows of up to LANES_MAX_COLUMNS run in blocks of 16 lanes (the last
# one partial), wider ones on the loops (test_vector_backward_matches_the_loops covers both)
shapes = st.tuples(st.integers(1, 200), st.integers(1, 40))
seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)


def _inputs(seed, shape, dtype, code=LINEAR):
    """x, gamma, beta, the rng; for RELU6 a gamma that takes outputs past 6."""
    rng = np.random.default_rng(seed)
    x = rng.normal(3.0, 2.0, shape).astype(dtype)
    gamma = (rng.uniform(0.5, 2.0, shape[1]) * (4 if code == RELU6 else 1)).astype(dtype)
    beta = rng.normal(0, 1, shape[1]).astype(dtype)
    return x, gamma, beta, rng


def forward_train(x, gamma, beta, eps, code=LINEAR):
    y = np.empty_like(x)
    mean, var, invstd = (np.empty(x.shape[1], x.dtype) for _ in range(3))
    K.batchnorm_forward_train(x, gamma, beta, x.dtype.type(eps), code, y, mean, var, invstd)
    assert y.dtype == mean.dtype == var.dtype == invstd.dtype == x.dtype
    np.testing.assert_allclose(var, x.astype(np.float64).var(0), rtol=1e-4, atol=1e-6)
    return y, mean, invstd


def ref_forward(x, gamma, beta, eps, code=LINEAR):
    mean = x.mean(0)
    invstd = 1 / np.sqrt(x.var(0) + eps)
    y = (x - mean) * invstd * gamma + beta
    return ref_activation(y, code), mean, invstd


def ref_activation(y, code):
    """relu (RELU), relu6 (RELU6) or y itself."""
    return np.clip(y, 0, {RELU: np.inf, RELU6: 6}[code]) if code != LINEAR else y


def ref_backward(dy, x, gamma, beta, mean, invstd, code=LINEAR):
    xhat = (x - mean) * invstd
    if code != LINEAR:  # the activation passes dy where it is not clipped
        z = xhat * gamma + beta
        dy = np.where((z > 0) & (z < (6 if code == RELU6 else np.inf)), dy, 0)
    dbeta = dy.sum(0)
    dgamma = (dy * xhat).sum(0)
    dx = gamma * invstd * (dy - dbeta / len(x) - xhat * dgamma / len(x))
    return dx, dgamma, dbeta


@pytest.fixture(params=["serial", "parallel"])
def split(request, monkeypatch):
    """Runs a test on the serial kernels and again on the parallel ones (any size)."""
    if request.param == "parallel":
        monkeypatch.setattr(K, "PARALLEL_MIN_ELEMENTS", 1)
        monkeypatch.setattr(K, "MIN_ROWS_PER_BLOCK", 1)


codes = st.sampled_from([LINEAR, RELU, RELU6])
FIXTURE = HealthCheck.function_scoped_fixture  # split only patches a constant: safe to share


def _close(got, want, dtype):
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=ATOL[dtype])


@settings(max_examples=25, deadline=None, suppress_health_check=[FIXTURE])
@given(shape=shapes, seed=seeds, dtype=dtypes, code=codes)
def test_forward_train(split, shape, seed, dtype, code):
    x, gamma, beta, _ = _inputs(seed, shape, dtype, code)
    got = forward_train(x, gamma, beta, 1e-3, code)
    want = ref_forward(*(a.astype(np.float64) for a in (x, gamma, beta)), 1e-3, code)
    for g, w in zip(got, want, strict=True):
        _close(g, w, dtype)


@settings(max_examples=25, deadline=None, suppress_health_check=[FIXTURE])
@given(shape=shapes, seed=seeds, dtype=dtypes, code=codes)
def test_forward_infer(split, shape, seed, dtype, code):
    x, gamma, beta, rng = _inputs(seed, shape, dtype, code)
    mm = rng.normal(0, 1, shape[1]).astype(dtype)
    mv = rng.uniform(0.1, 3, shape[1]).astype(dtype)
    y = np.empty_like(x)
    K.batchnorm_forward_infer(x, gamma, beta, mm, mv, dtype(1e-3), code, y)
    assert y.dtype == dtype
    w = [a.astype(np.float64) for a in (x, gamma, beta, mm, mv)]
    want = (w[0] - w[3]) / np.sqrt(w[4] + 1e-3) * w[1] + w[2]
    _close(y, ref_activation(want, code), dtype)


@settings(max_examples=25, deadline=None, suppress_health_check=[FIXTURE])
@given(shape=shapes, seed=seeds, dtype=dtypes, code=codes)
def test_backward_overwrites_grad_x_and_adds_into_dgamma_dbeta(split, shape, seed, dtype, code):
    x, gamma, beta, rng = _inputs(seed, shape, dtype, code)
    _, mean, invstd = forward_train(x, gamma, beta, 1e-3)
    dy = rng.normal(0, 1, shape).astype(dtype)
    dx = np.full_like(x, np.nan)
    dgamma0 = rng.normal(0, 1, shape[1]).astype(dtype)
    dbeta0 = rng.normal(0, 1, shape[1]).astype(dtype)
    dgamma, dbeta = dgamma0.copy(), dbeta0.copy()
    K.batchnorm_backward(dy, x, gamma, beta, mean, invstd, code, dx, dgamma, dbeta)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    w = ref_backward(*(a.astype(np.float64) for a in (dy, x, gamma, beta, mean, invstd)), code)
    # dx is a difference of nearly equal terms: compare against the scale of its parts.
    scale = np.abs(w[0]).max() + np.abs(gamma * invstd).max() * np.abs(dy).max()
    np.testing.assert_allclose(dx, w[0], rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    _close(dgamma, dgamma0 + w[1], dtype)
    _close(dbeta, dbeta0 + w[2], dtype)


@settings(max_examples=10, deadline=None)
@given(shape=st.tuples(st.integers(2, 70), st.integers(1, 3)), seed=seeds, code=codes)
def test_backward_matches_finite_differences(shape, seed, code):
    """d/d(x, gamma, beta) of sum(w * y) with y the training-mode output, in float64."""
    x, gamma, beta, rng = _inputs(seed, shape, np.float64, code)
    w = rng.normal(0, 1, shape)

    def objective(x, gamma, beta):
        return (w * forward_train(x, gamma, beta, 1e-3, code)[0]).sum()

    _, mean, invstd = forward_train(x, gamma, beta, 1e-3, code)
    dx = np.empty_like(x)
    dgamma, dbeta = np.zeros_like(gamma), np.zeros_like(beta)
    K.batchnorm_backward(w, x, gamma, beta, mean, invstd, code, dx, dgamma, dbeta)
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


def test_float32_statistics_are_accurate_for_a_large_mean(split):
    """Keras's moments in float64 on an input whose mean dwarfs its spread."""
    rng = np.random.default_rng(2)
    x = rng.normal(1e4, 1.0, (20_000, 4)).astype(np.float32)
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.float32)
    y, mean, invstd = forward_train(x, ones, zeros, 1e-3)
    want = ref_forward(x.astype(np.float64), 1.0, 0.0, 1e-3)
    np.testing.assert_allclose(invstd, want[2], rtol=1e-5)
    np.testing.assert_allclose(y, want[0], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "name", ["_apply_rows", "_apply_parallel", "_grad_x_rows", "_grad_x_parallel"]
)
def test_float32_stays_float32(name):
    """The passes that write float32 arrays compute in float32 (the statistics' accumulators
    are float64 by design)."""
    f = np.float32
    x, gamma, beta, _ = _inputs(0, (70, 3), f)
    c = np.ones(3, f)
    args = {
        "_apply_rows": (x, c, gamma, beta, RELU, np.empty_like(x), 0, 70),
        "_apply_parallel": (x, c, gamma, beta, RELU, np.empty_like(x)),
        "_grad_x_rows": (x, x, c, gamma, beta, RELU, c, c, c, np.empty_like(x), 0, 70),
        "_grad_x_parallel": (x, x, c, gamma, beta, RELU, c, c, c, np.empty_like(x)),
    }[name]
    assert float64_ops(getattr(K, name), *args) == []


# ---- layer normalization -------------------------------------------------------------------


def ref_layernorm(x, gamma, beta, eps, rms):
    """numpy LayerNorm over the last axis in float64; rms: Keras's rms_scaling."""
    mean = x.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt(x.var(-1, keepdims=True) + eps)
    y = x * rstd * gamma if rms else (x - mean) * rstd * gamma + beta
    return y, mean[:, 0], rstd[:, 0]


def ref_layernorm_backward(dy, x, gamma, eps, rms):
    """The gradients of sum(dy * y) by the chain rule, written out in numpy (float64)."""
    d = x.shape[1]
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    rstd = 1 / np.sqrt((xc**2).mean(-1, keepdims=True) + eps)
    u = x * rstd if rms else xc * rstd
    g = dy * gamma
    # dy/drstd through the variance: d rstd / d x_j = -rstd**3 * xc_j / d
    grad_rstd = (g * (x if rms else xc)).sum(-1, keepdims=True)
    dx = g * rstd - rstd**3 * xc / d * grad_rstd
    if not rms:
        dx -= (g * rstd).mean(-1, keepdims=True)  # through the mean
    return dx, (dy * u).sum(0), dy.sum(0)


ln_shapes = st.tuples(st.integers(1, 150), st.integers(1, 9))
flags = st.booleans()


def _layernorm(x, gamma, beta, eps, rms):
    y = np.full_like(x, np.nan)
    mean, rstd = np.empty(len(x)), np.empty(len(x))
    K.layernorm_forward(x, gamma, beta, eps, rms, y, mean, rstd)
    return y, mean, rstd


@settings(max_examples=5, deadline=None, suppress_health_check=[FIXTURE])
@given(shape=ln_shapes, seed=seeds, dtype=dtypes, rms=flags)
def test_layernorm_forward(split, shape, seed, dtype, rms):
    x, _, _, rng = _inputs(seed, shape, dtype)
    gamma = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    beta = rng.normal(0, 1, shape[1]).astype(dtype)
    y, mean, rstd = _layernorm(x, gamma, beta, 1e-3, rms)
    assert y.dtype == dtype
    want = ref_layernorm(*(a.astype(np.float64) for a in (x, gamma, beta)), 1e-3, rms)
    for got, ref in zip((y, mean, rstd), want, strict=True):
        _close(got, ref, dtype)


@settings(max_examples=5, deadline=None, suppress_health_check=[FIXTURE])
@given(shape=ln_shapes, seed=seeds, dtype=dtypes, rms=flags)
def test_layernorm_backward_overwrites_grad_x_and_adds_into_dgamma_dbeta(
    split, shape, seed, dtype, rms
):
    x, _, _, rng = _inputs(seed, shape, dtype)
    gamma = rng.uniform(0.5, 2.0, shape[1]).astype(dtype)
    _, mean, rstd = _layernorm(x, gamma, gamma, 1e-3, rms)
    dy = rng.normal(0, 1, shape).astype(dtype)
    dx = np.full_like(x, np.nan)
    dgamma0, dbeta0 = rng.normal(0, 1, (2, shape[1])).astype(dtype)
    dgamma, dbeta = dgamma0.copy(), dbeta0.copy()
    K.layernorm_backward(dy, x, gamma, mean, rstd, rms, dx, dgamma, dbeta)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    want = ref_layernorm_backward(*(a.astype(np.float64) for a in (dy, x, gamma)), 1e-3, rms)
    scale = np.abs(want[0]).max() + np.abs(gamma).max() * rstd.max() * np.abs(dy).max()
    np.testing.assert_allclose(dx, want[0], rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    _close(dgamma, dgamma0 + want[1], dtype)
    _close(dbeta, dbeta0 + want[2], dtype)


@settings(max_examples=5, deadline=None)
@given(shape=st.tuples(st.integers(1, 5), st.integers(2, 6)), seed=seeds, rms=flags)
def test_layernorm_backward_matches_finite_differences(shape, seed, rms):
    x, _, _, rng = _inputs(seed, shape, np.float64)
    gamma, beta = rng.uniform(0.5, 2.0, (2, shape[1]))
    w = rng.normal(0, 1, shape)
    _, mean, rstd = _layernorm(x, gamma, beta, 1e-3, rms)
    grads = [np.empty_like(x), np.zeros_like(gamma), np.zeros_like(beta)]
    K.layernorm_backward(w, x, gamma, mean, rstd, rms, *grads)
    params = [x, gamma, beta]
    for which, grad in enumerate(grads[:2] if rms else grads):  # rms: no beta in the output
        for idx in np.ndindex(*params[which].shape):
            up, down = [p.copy() for p in params], [p.copy() for p in params]
            up[which][idx] += 1e-6
            down[which][idx] -= 1e-6
            fd = (w * _layernorm(*up, 1e-3, rms)[0]).sum() - (
                w * _layernorm(*down, 1e-3, rms)[0]
            ).sum()
            np.testing.assert_allclose(grad[idx], fd / 2e-6, rtol=1e-5, atol=1e-6)


# ---- group normalization -------------------------------------------------------------------


def ref_groupnorm(x, gamma, beta, eps, groups):
    """numpy GroupNorm of x (N, S, C) in float64: statistics per sample and group."""
    n, s, c = x.shape
    grouped = x.reshape(n, s, groups, c // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    rstd = 1 / np.sqrt(grouped.var(axis=(1, 3), keepdims=True) + eps)
    y = ((grouped - mean) * rstd).reshape(x.shape) * gamma + beta
    return y, mean.reshape(n, groups), rstd.reshape(n, groups)


def ref_groupnorm_backward(dy, x, gamma, eps, groups):
    n, s, c = x.shape
    y, mean, rstd = ref_groupnorm(x, gamma, np.zeros(c), eps, groups)
    xhat = y / gamma
    g = (dy * gamma).reshape(n, s, groups, c // groups)
    xh = xhat.reshape(g.shape)
    r = rstd.reshape(n, 1, groups, 1)
    dx = r * (
        g - g.mean(axis=(1, 3), keepdims=True) - xh * (g * xh).mean(axis=(1, 3), keepdims=True)
    )
    return dx.reshape(x.shape), (dy * xhat).sum(axis=(0, 1)), dy.sum(axis=(0, 1))


gn_cases = st.tuples(
    st.integers(1, 4), st.integers(1, 7), st.sampled_from([(1, 3), (2, 2), (3, 2), (4, 1)])
)


def _gn_inputs(seed, case, dtype):
    n, s, (groups, width) = case
    x, _, _, rng = _inputs(seed, (n * s, groups * width), dtype)
    gamma, beta = rng.uniform(0.5, 2.0, (2, groups * width)).astype(dtype)
    return x.reshape(n, s, groups * width), gamma, beta, groups, rng


def _groupnorm(x, gamma, beta, eps, groups):
    y = np.full_like(x, np.nan)
    mean, rstd = np.empty((len(x), groups)), np.empty((len(x), groups))
    K.groupnorm_forward(x, gamma, beta, eps, groups, y, mean, rstd)
    return y, mean, rstd


@settings(max_examples=5, deadline=None, suppress_health_check=[FIXTURE])
@given(case=gn_cases, seed=seeds, dtype=dtypes)
def test_groupnorm_forward(split, case, seed, dtype):
    x, gamma, beta, groups, _ = _gn_inputs(seed, case, dtype)
    got = _groupnorm(x, gamma, beta, 1e-3, groups)
    assert got[0].dtype == dtype
    want = ref_groupnorm(*(a.astype(np.float64) for a in (x, gamma, beta)), 1e-3, groups)
    for g, w in zip(got, want, strict=True):
        _close(g, w, dtype)


@settings(max_examples=5, deadline=None, suppress_health_check=[FIXTURE])
@given(case=gn_cases, seed=seeds, dtype=dtypes)
def test_groupnorm_backward_overwrites_grad_x_and_adds_into_dgamma_dbeta(split, case, seed, dtype):
    x, gamma, beta, groups, rng = _gn_inputs(seed, case, dtype)
    _, mean, rstd = _groupnorm(x, gamma, beta, 1e-3, groups)
    dy = rng.normal(0, 1, x.shape).astype(dtype)
    dx = np.full_like(x, np.nan)
    dgamma0, dbeta0 = rng.normal(0, 1, (2, x.shape[2])).astype(dtype)
    dgamma, dbeta = dgamma0.copy(), dbeta0.copy()
    K.groupnorm_backward(dy, x, gamma, mean, rstd, dx, dgamma, dbeta)
    assert dx.dtype == dgamma.dtype == dbeta.dtype == dtype
    want = ref_groupnorm_backward(*(a.astype(np.float64) for a in (dy, x, gamma)), 1e-3, groups)
    scale = np.abs(want[0]).max() + np.abs(gamma).max() * rstd.max() * np.abs(dy).max()
    np.testing.assert_allclose(dx, want[0], rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    _close(dgamma, dgamma0 + want[1], dtype)
    _close(dbeta, dbeta0 + want[2], dtype)


@pytest.mark.parametrize("cols", [1, 8, 16, 20, 33, 48])
@pytest.mark.parametrize("code", [LINEAR, RELU, RELU6])
def test_vector_backward_matches_the_loops(cols, code):
    """The 16-lane passes compute what the loops compute, bit for bit: the same float32
    operations for d, z, the mask and dx, the same float64 sums (over rows in another order)."""
    x, gamma, beta, rng = _inputs(cols, (300, cols), np.float32, code)
    _, mean, invstd = forward_train(x, gamma, beta, 1e-3)
    dy = rng.normal(0, 1, x.shape).astype(np.float32)
    scale = invstd * gamma
    sums = [np.zeros(cols) for _ in range(4)]
    K._grad_sum_rows(dy, x, mean, scale, beta, code, sums[0], sums[1], 0, 300)
    K._grad_sums_lanes(dy, x, mean, scale, beta, code, sums[2], sums[3], 0, 300)
    np.testing.assert_allclose(sums[2], sums[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sums[3], sums[1], rtol=1e-12, atol=1e-12)
    k = [rng.normal(0, 1, cols).astype(np.float32) for _ in range(3)]
    loops, lanes = np.empty_like(x), np.empty_like(x)
    K._grad_x_rows(dy, x, mean, scale, beta, code, *k, loops, 0, 300)
    K._grad_x_lanes(dy, x, mean, scale, beta, code, *k, lanes, 0, 300)
    np.testing.assert_array_equal(lanes, loops)
