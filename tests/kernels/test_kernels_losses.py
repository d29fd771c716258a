"""Loss kernels vs numpy references (float32, float64) and central finite differences (float64)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import losses as K

EPS = 1e-7
DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-13}

shapes = st.tuples(st.integers(1, 6), st.integers(2, 6))
seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)


def _run(kernel, pred, target, *extra):
    """Call a loss kernel with fresh output buffers of pred's dtype; return (loss, grad)."""
    loss = np.full(pred.shape[0], np.nan, pred.dtype)
    grad = np.full(pred.shape, np.nan, pred.dtype)
    kernel(pred, target, *extra, loss, grad)
    assert loss.dtype == pred.dtype and grad.dtype == pred.dtype
    return loss, grad


def _inputs(seed, shape, dtype, lo=0.05, hi=1.0):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(lo, hi, shape)
    target = rng.uniform(0, 1, shape)
    labels = rng.integers(0, shape[1], shape[0])
    return pred.astype(dtype), target.astype(dtype), labels


# ---- numpy references (float64), written the way Keras's torch backend computes them ----


def clip_bounds(dtype, eps=EPS):
    """The clip interval [eps, 1 - eps] as the kernel sees it in ``dtype``, widened to float64."""
    return float(dtype(eps)), float(dtype(1) - dtype(eps))


def ref_cce(p, t, dtype=np.float64):
    lo, hi = clip_bounds(dtype)
    s = p.sum(-1, keepdims=True)
    pn = p / s
    q = np.clip(pn, lo, hi)
    g = np.where((pn >= lo) & (pn <= hi), -t / q, 0.0)
    return -(t * np.log(q)).sum(-1), (g - (g * pn).sum(-1, keepdims=True)) / s


def ref_softmax_ce(z, t):
    zs = z - z.max(-1, keepdims=True)
    logp = zs - np.log(np.exp(zs).sum(-1, keepdims=True))
    return -(t * logp).sum(-1), np.exp(logp) * t.sum(-1, keepdims=True) - t


def ref_bce(p, t, dtype=np.float64):
    lo, hi = clip_bounds(dtype)
    q = np.clip(p, lo, hi)
    inside = (p >= lo) & (p <= hi)
    g = np.where(inside, (q - t) / (q * (1 - q)), 0.0) / p.shape[-1]
    return -(t * np.log(q) + (1 - t) * np.log(1 - q)).mean(-1), g


def ref_bce_logits(z, t):
    loss = np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))
    return loss.mean(-1), (1 / (1 + np.exp(-z)) - t) / z.shape[-1]


def ref_mse(p, t):
    return ((p - t) ** 2).mean(-1), 2 * (p - t) / p.shape[-1]


def ref_mae(p, t):
    return np.abs(p - t).mean(-1), np.sign(p - t) / p.shape[-1]


def onehot(labels, c):
    return np.eye(c)[labels]


def _check(got, want, dtype):
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=RTOL[dtype], atol=ATOL[dtype])


# ---- values and gradients vs the references ----


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds, dtype=dtypes)
def test_categorical_crossentropy(shape, seed, dtype):
    p, t, labels = _inputs(seed, shape, dtype)
    want = ref_cce(p.astype(np.float64), t.astype(np.float64))
    _check(_run(K.categorical_crossentropy, p, t, dtype(EPS)), want, dtype)
    want = ref_cce(p.astype(np.float64), onehot(labels, shape[1]))
    _check(_run(K.sparse_categorical_crossentropy, p, labels, dtype(EPS)), want, dtype)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds, dtype=dtypes)
def test_softmax_cross_entropy_logits(shape, seed, dtype):
    z, t, labels = _inputs(seed, shape, dtype, lo=-5, hi=5)
    want = ref_softmax_ce(z.astype(np.float64), t.astype(np.float64))
    _check(_run(K.softmax_cross_entropy_logits, z, t), want, dtype)
    want = ref_softmax_ce(z.astype(np.float64), onehot(labels, shape[1]))
    _check(_run(K.sparse_softmax_cross_entropy_logits, z, labels), want, dtype)


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=seeds, dtype=dtypes)
def test_binary_crossentropy(shape, seed, dtype):
    p, t, _ = _inputs(seed, shape, dtype, lo=0.02, hi=0.98)
    want = ref_bce(p.astype(np.float64), t.astype(np.float64))
    _check(_run(K.binary_crossentropy, p, t, dtype(EPS)), want, dtype)
    z = (p - dtype(0.5)) * dtype(12)
    want = ref_bce_logits(z.astype(np.float64), t.astype(np.float64))
    _check(_run(K.binary_crossentropy_logits, z, t), want, dtype)


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(1, 6), st.integers(1, 6)), seed=seeds, dtype=dtypes)
def test_regression_losses(shape, seed, dtype):
    p, t, _ = _inputs(seed, shape, dtype, lo=-3, hi=3)
    want = ref_mse(p.astype(np.float64), t.astype(np.float64))
    _check(_run(K.mean_squared_error, p, t), want, dtype)
    want = ref_mae(p.astype(np.float64), t.astype(np.float64))
    _check(_run(K.mean_absolute_error, p, t), want, dtype)


# ---- gradients vs central finite differences, float64 ----

FD_CASES = {
    "categorical_crossentropy": (K.categorical_crossentropy, (EPS,), "dense", (0.05, 1.0)),
    "sparse_categorical_crossentropy": (
        K.sparse_categorical_crossentropy,
        (EPS,),
        "labels",
        (0.05, 1.0),
    ),
    "softmax_cross_entropy_logits": (K.softmax_cross_entropy_logits, (), "dense", (-4, 4)),
    "sparse_softmax_cross_entropy_logits": (
        K.sparse_softmax_cross_entropy_logits,
        (),
        "labels",
        (-4, 4),
    ),
    "binary_crossentropy": (K.binary_crossentropy, (EPS,), "dense", (0.05, 0.95)),
    "binary_crossentropy_logits": (K.binary_crossentropy_logits, (), "dense", (-4, 4)),
    "mean_squared_error": (K.mean_squared_error, (), "dense", (-2, 2)),
    "mean_absolute_error": (K.mean_absolute_error, (), "dense", (-2, 2)),
}


@pytest.mark.parametrize("name", sorted(FD_CASES))
@settings(max_examples=10, deadline=None)
@given(shape=shapes, seed=seeds)
def test_gradient_finite_differences(name, shape, seed):
    kernel, extra, kind, (lo, hi) = FD_CASES[name]
    p, t, labels = _inputs(seed, shape, np.float64, lo, hi)
    target = labels if kind == "labels" else t
    _, grad = _run(kernel, p, target, *extra)
    h = 1e-6
    fd = np.empty_like(p)
    for idx in np.ndindex(*p.shape):
        up, down = p.copy(), p.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (_run(kernel, up, target, *extra)[0] - _run(kernel, down, target, *extra)[0])[
            idx[0]
        ] / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


# ---- edge cases ----


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipped_probabilities_have_zero_gradient(dtype):
    p = np.array([[0.0, 0.3, 0.7], [1.0, 0.0, 0.0]], dtype)
    t = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype)
    loss, grad = _run(K.categorical_crossentropy, p, t, dtype(EPS))
    want = ref_cce(p.astype(np.float64), t.astype(np.float64), dtype)
    _check((loss, grad), want, dtype)
    assert np.isclose(loss[0], -np.log(dtype(EPS)), rtol=1e-5)
    loss, grad = _run(K.binary_crossentropy, p, t, dtype(EPS))
    assert grad[0, 0] == 0 and grad[1, 0] == 0 and np.all(np.isfinite(loss))
    _check((loss, grad), ref_bce(p.astype(np.float64), t.astype(np.float64), dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logit_losses_are_stable_for_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], dtype)
    t = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype)
    loss, grad = _run(K.softmax_cross_entropy_logits, z, t)
    np.testing.assert_allclose(loss, [2e4, 0.0], rtol=1e-6)
    np.testing.assert_allclose(grad, [[1, -1, 0], [0, 0, 0]], atol=1e-6)
    loss2, grad2 = _run(K.sparse_softmax_cross_entropy_logits, z, np.array([1, 2]))
    np.testing.assert_allclose(loss2, loss, rtol=1e-6)
    np.testing.assert_allclose(grad2, grad, atol=1e-6)
    loss, grad = _run(K.binary_crossentropy_logits, z, t)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, [(2e4 + np.log(2)) / 3, 0.0], rtol=1e-6)


def test_mean_absolute_error_gradient_is_zero_at_ties():
    p = np.array([[1.0, 2.0]], np.float32)
    loss, grad = _run(K.mean_absolute_error, p, np.array([[1.0, 3.0]], np.float32))
    np.testing.assert_array_equal(grad, [[0.0, -0.5]])
    np.testing.assert_array_equal(loss, [0.5])


def test_python_float_eps_does_not_promote():
    p, t, _ = _inputs(0, (3, 4), np.float32)
    a = _run(K.categorical_crossentropy, p, t, 1e-7)
    b = _run(K.categorical_crossentropy, p, t, np.float32(1e-7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# ---- no silent float64 inside the float32 specializations ----


@pytest.mark.parametrize("name", sorted(FD_CASES))
def test_float32_stays_float32(name):
    kernel, extra, kind, _ = FD_CASES[name]
    p, t, labels = _inputs(0, (3, 4), np.float32)
    target = labels if kind == "labels" else t
    args = (p, target, *(np.float32(e) for e in extra), np.empty(3, np.float32), np.empty_like(p))
    assert float64_ops(kernel, *args) == []
