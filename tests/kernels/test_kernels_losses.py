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


# ---- the other Keras losses: references (float64, as Keras's torch backend computes them) ----


def ref_huber(p, t, delta):
    e = p - t
    quad = np.abs(e) <= delta
    loss = np.where(quad, 0.5 * e**2, delta * np.abs(e) - 0.5 * delta**2)
    return loss.mean(-1), np.where(quad, e, delta * np.sign(e)) / p.shape[-1]


def ref_log_cosh(p, t):
    x = p - t
    return np.log(np.cosh(x)).mean(-1), np.tanh(x) / p.shape[-1]


def ref_kl_divergence(p, t, dtype=np.float64):
    lo = float(dtype(EPS))
    tc, q = np.clip(t, lo, 1), np.clip(p, lo, 1)
    return (tc * np.log(tc / q)).sum(-1), np.where((p >= lo) & (p <= 1), -tc / q, 0.0)


def ref_poisson(p, t):
    return (p - t * np.log(p + EPS)).mean(-1), (1 - t / (p + EPS)) / p.shape[-1]


def ref_hinge(p, t, squared):
    margin = np.maximum(1 - t * p, 0)
    if squared:
        return (margin**2).mean(-1), -2 * t * margin / p.shape[-1]
    return margin.mean(-1), np.where(margin > 0, -t, 0.0) / p.shape[-1]


def ref_categorical_hinge(p, t):
    pos = (t * p).sum(-1)
    neg_terms = (1 - t) * p
    worst = neg_terms.argmax(-1)
    loss = np.maximum(neg_terms.max(-1) - pos + 1, 0)
    grad = -t.copy()
    grad[np.arange(len(p)), worst] += 1 - t[np.arange(len(p)), worst]
    return loss, np.where((loss > 0)[:, None], grad, 0.0)


def ref_mape(p, t):
    denom = np.maximum(np.abs(t), EPS)
    return 100 * (np.abs(t - p) / denom).mean(-1), 100 * np.sign(p - t) / denom / p.shape[-1]


def ref_msle(p, t):
    d = np.log(np.maximum(p, EPS) + 1) - np.log(np.maximum(t, EPS) + 1)
    grad = np.where(p > EPS, 2 * d / (np.maximum(p, EPS) + 1), 0.0) / p.shape[-1]
    return (d**2).mean(-1), grad


def ref_cosine_similarity(p, t):
    pn = np.sqrt((p * p).sum(-1, keepdims=True))
    tn = np.sqrt((t * t).sum(-1, keepdims=True))
    u, y = t / tn, p / pn
    return -(u * y).sum(-1), -(u - (u * y).sum(-1, keepdims=True) * y) / pn


def ref_binary_focal(x, t, from_logits, balanced, alpha, gamma, dtype=np.float64):
    """Loss and gradient by the chain rule written out in numpy, all float64."""
    lo, hi = clip_bounds(dtype)
    s = 1 / (1 + np.exp(-x)) if from_logits else x
    q = np.clip(s, lo, hi)
    bce = -(t * np.log(q) + (1 - t) * np.log(1 - q))
    d_bce = np.where((s >= lo) & (s <= hi), (q - t) / (q * (1 - q)), 0.0)
    base = 1 - (t * s + (1 - t) * (1 - s))
    weight = t * alpha + (1 - t) * (1 - alpha) if balanced else 1.0
    d = weight * (gamma * base ** (gamma - 1) * (1 - 2 * t) * bce + base**gamma * d_bce)
    if from_logits:
        d = d * s * (1 - s)
    return (weight * base**gamma * bce).mean(-1), d / x.shape[-1]


def ref_categorical_focal(x, t, from_logits, alpha, gamma, dtype=np.float64):
    lo, hi = clip_bounds(dtype)
    if from_logits:
        e = np.exp(x - x.max(-1, keepdims=True))
        s = e / e.sum(-1, keepdims=True)
    else:
        s = x
    total = s.sum(-1, keepdims=True)
    o = s / total
    c = np.clip(o, lo, hi)
    loss = (alpha * (1 - c) ** gamma * -t * np.log(c)).sum(-1)
    d_c = alpha * t * (gamma * (1 - c) ** (gamma - 1) * np.log(c) - (1 - c) ** gamma / c)
    d_c = np.where((o >= lo) & (o <= hi), d_c, 0.0)
    d_s = (d_c - (d_c * o).sum(-1, keepdims=True)) / total
    if from_logits:
        d_s = s * (d_s - (d_s * s).sum(-1, keepdims=True))
    return loss, d_s


def _signed(t):
    return np.where(t > 0.5, 1.0, -1.0).astype(t.dtype)


def _onehot_like(labels, p):
    return np.eye(p.shape[1], dtype=p.dtype)[labels]


# name: (kernel, extra scalar args, reference(p, t, dtype), pred range, target maker)
MORE_KERNELS = {
    "huber": (K.huber, (0.8,), lambda p, t, d: ref_huber(p, t, 0.8), (-3, 3), None),
    "log_cosh": (K.log_cosh, (), lambda p, t, d: ref_log_cosh(p, t), (-3, 3), None),
    "kl_divergence": (K.kl_divergence, (EPS,), ref_kl_divergence, (0.05, 1.0), None),
    "poisson": (K.poisson, (EPS,), lambda p, t, d: ref_poisson(p, t), (0.05, 3), None),
    "hinge": (K.hinge, (False,), lambda p, t, d: ref_hinge(p, t, False), (-2, 2), _signed),
    "squared_hinge": (K.hinge, (True,), lambda p, t, d: ref_hinge(p, t, True), (-2, 2), _signed),
    "categorical_hinge": (
        K.categorical_hinge,
        (),
        lambda p, t, d: ref_categorical_hinge(p, t),
        (-2, 2),
        "onehot",
    ),
    "mape": (
        K.mean_absolute_percentage_error,
        (EPS,),
        lambda p, t, d: ref_mape(p, t),
        (-3, 3),
        None,
    ),
    "msle": (
        K.mean_squared_logarithmic_error,
        (EPS,),
        lambda p, t, d: ref_msle(p, t),
        (0.05, 3),
        None,
    ),
    "cosine_similarity": (
        K.cosine_similarity,
        (EPS,),
        lambda p, t, d: ref_cosine_similarity(p, t),
        (-2, 2),
        None,
    ),
    "binary_focal": (
        K.binary_focal_crossentropy,
        (False, False, 0.25, 2.0, EPS),
        lambda p, t, d: ref_binary_focal(p, t, False, False, 0.25, 2.0, d),
        (0.02, 0.98),
        None,
    ),
    "binary_focal_logits_balanced": (
        K.binary_focal_crossentropy,
        (True, True, 0.3, 1.5, EPS),
        lambda p, t, d: ref_binary_focal(p, t, True, True, 0.3, 1.5, d),
        (-4, 4),
        None,
    ),
    "categorical_focal": (
        K.categorical_focal_crossentropy,
        (False, "alpha", 2.0, EPS),
        lambda p, t, d: ref_categorical_focal(p, t, False, 0.25, 2.0, d),
        (0.05, 1.0),
        "onehot",
    ),
    "categorical_focal_logits": (
        K.categorical_focal_crossentropy,
        (True, "alpha", 1.5, EPS),
        lambda p, t, d: ref_categorical_focal(p, t, True, 0.25, 1.5, d),
        (-4, 4),
        None,
    ),
}


def _more_args(name, shape, seed, dtype):
    """(kernel, pred, target, extra args cast to ``dtype``, reference) for MORE_KERNELS[name]."""
    kernel, extra, ref, (lo, hi), target_kind = MORE_KERNELS[name]
    p, t, labels = _inputs(seed, shape, dtype, lo, hi)
    if target_kind == "onehot":
        t = _onehot_like(labels, p)
    elif target_kind is not None:
        t = target_kind(t)
    args = tuple(
        np.full(shape[1], 0.25, dtype) if e == "alpha" else e if isinstance(e, bool) else dtype(e)
        for e in extra
    )
    return kernel, p, t, args, ref


@pytest.mark.parametrize("name", sorted(MORE_KERNELS))
@settings(max_examples=5, deadline=None)
@given(shape=shapes, seed=seeds, dtype=dtypes)
def test_more_losses_match_references(name, shape, seed, dtype):
    kernel, p, t, args, ref = _more_args(name, shape, seed, dtype)
    want = ref(p.astype(np.float64), t.astype(np.float64), dtype)
    _check(_run(kernel, p, t, *args), want, dtype)


@pytest.mark.parametrize("name", sorted(MORE_KERNELS))
@settings(max_examples=5, deadline=None)
@given(shape=shapes, seed=seeds)
def test_more_losses_gradient_finite_differences(name, shape, seed):
    kernel, p, t, args, _ = _more_args(name, shape, seed, np.float64)
    _, grad = _run(kernel, p, t, *args)
    h = 1e-6
    fd = np.empty_like(p)
    for idx in np.ndindex(*p.shape):
        up, down = p.copy(), p.copy()
        up[idx] += h
        down[idx] -= h
        row = idx[0]
        fd[idx] = (_run(kernel, up, t, *args)[0][row] - _run(kernel, down, t, *args)[0][row]) / (
            2 * h
        )
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(MORE_KERNELS))
def test_more_losses_float32_stays_float32(name):
    kernel, p, t, args, _ = _more_args(name, (3, 4), 0, np.float32)
    out = (np.empty(3, np.float32), np.empty_like(p))
    assert float64_ops(kernel, p, t, *args, *out) == []


def test_cosine_similarity_of_a_zero_vector_is_zero():
    p = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    t = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    loss, grad = _run(K.cosine_similarity, p, t, EPS)
    np.testing.assert_array_equal(loss, [0.0, 0.0])
    np.testing.assert_allclose(grad[0], [-1 / EPS, 0.0, 0.0])  # the norm's inverse capped: 1/eps
    np.testing.assert_array_equal(grad[1], [0.0, 0.0, 0.0])
