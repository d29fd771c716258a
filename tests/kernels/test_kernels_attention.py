"""Attention's masked softmax kernels vs numpy references (float32 and float64)."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import attention as K

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ATOL = {np.float32: 1e-6, np.float64: 1e-14}
FIXTURE = HealthCheck.function_scoped_fixture  # split only patches a constant: safe to share
NO_MASK = np.zeros((0, 0, 0), bool)

shapes = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 6), st.integers(1, 7))
seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)
modes = st.sampled_from([K.MASK_REPLACE, K.MASK_SUBTRACT])


@pytest.fixture(params=["serial", "parallel"])
def split(request, monkeypatch):
    """Runs a test on the serial kernel and again on the parallel one (any size)."""
    if request.param == "parallel":
        monkeypatch.setattr(K, "PARALLEL_MIN_ELEMENTS", 1)


def ref_masked_softmax(scores, mask, causal, mode):
    """numpy: Keras's Softmax-layer masking (replace, weights zeroed) or Attention's (subtract)."""
    b, h, tq, tv = scores.shape
    keep = np.ones((b, tq, tv), bool) if mask is None else mask.copy()
    if causal:
        keep &= np.tril(np.ones((tq, tv), bool))
    keep = keep[:, None]
    big = scores.dtype.type(1e9)  # in the scores' dtype: float32 rounds s - 1e9 to -1e9
    if mode == K.MASK_REPLACE:
        masked = np.where(keep, scores, -big)
    else:
        masked = np.where(keep, scores, scores - big)
    masked = masked.astype(np.float64)
    e = np.exp(masked - masked.max(-1, keepdims=True))
    weights = e / e.sum(-1, keepdims=True)
    return np.where(keep, weights, 0) if mode == K.MASK_REPLACE else weights


@settings(max_examples=5, deadline=None, suppress_health_check=[FIXTURE])
@given(
    shape=shapes,
    seed=seeds,
    dtype=dtypes,
    mode=modes,
    causal=st.booleans(),
    masked=st.booleans(),
    in_place=st.booleans(),
)
def test_masked_softmax(split, shape, seed, dtype, mode, causal, masked, in_place):
    rng = np.random.default_rng(seed)
    scores = (3 * rng.standard_normal(shape)).astype(dtype)
    mask = rng.random((shape[0], shape[2], shape[3])) > 0.3 if masked else None
    out = scores.copy() if in_place else np.full_like(scores, np.nan)
    source = out if in_place else scores  # in place, the kernel reads and writes one array
    K.masked_softmax(source, NO_MASK if mask is None else mask, causal, mode, out)
    assert out.dtype == dtype
    want = ref_masked_softmax(scores, mask, causal, mode)
    np.testing.assert_allclose(out, want, rtol=RTOL[dtype], atol=ATOL[dtype])


def test_rows_masked_entirely():
    """Keras's two behaviours: MultiHeadAttention gives weights 0, Attention the softmax of the
    shifted scores (uniform in float32, where 1e9 swallows them)."""
    scores = np.array([[[[1.0, 2.0, 3.0]]]], np.float32)
    mask = np.zeros((1, 1, 3), bool)
    out = np.empty_like(scores)
    K.masked_softmax(scores, mask, False, K.MASK_REPLACE, out)
    np.testing.assert_array_equal(out, 0)
    K.masked_softmax(scores, mask, False, K.MASK_SUBTRACT, out)
    np.testing.assert_allclose(out, 1 / 3, rtol=1e-6)


def test_in_place():
    scores = np.random.default_rng(0).standard_normal((2, 2, 3, 4))
    want = ref_masked_softmax(scores, None, True, K.MASK_REPLACE)
    K.masked_softmax(scores, NO_MASK, True, K.MASK_REPLACE, scores)
    np.testing.assert_allclose(scores, want, rtol=1e-12, atol=1e-15)


@settings(max_examples=5, deadline=None, suppress_health_check=[FIXTURE])
@given(rows=st.integers(1, 70), cols=st.integers(1, 9), seed=seeds, dtype=dtypes)
def test_softmax_backward(split, rows, cols, seed, dtype):
    rng = np.random.default_rng(seed)
    y = rng.random((rows, cols)).astype(dtype)
    y /= y.sum(-1, keepdims=True)
    dy = rng.standard_normal((rows, cols)).astype(dtype)
    out = np.full_like(y, np.nan)
    K.softmax_backward(dy, y, out)
    assert out.dtype == dtype
    y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
    # the Jacobian of softmax, diag(y) - y y^T, row by row
    want = np.einsum(
        "rij,rj->ri",
        np.einsum("ri,ij->rij", y64, np.eye(cols)) - y64[:, :, None] * y64[:, None, :],
        dy64,
    )
    np.testing.assert_allclose(out, want, rtol=RTOL[dtype] * 10, atol=ATOL[dtype] * 10)


@pytest.mark.parametrize(
    "name", ["_softmax_rows", "_softmax_parallel", "_softmax_grad_rows", "_softmax_grad_parallel"]
)
def test_float32_stays_float32(name):
    """Attention's softmax runs in the scores' dtype: float32 scores never widen to double."""
    f = np.float32
    scores = np.random.default_rng(0).standard_normal((2, 2, 3, 4)).astype(f)
    mask = np.ones((2, 3, 4), bool)
    rows, out = scores.reshape(-1, 4), np.empty((12, 4), f)
    args = {
        "_softmax_rows": (scores, mask, True, K.MASK_REPLACE, np.empty_like(scores), 0, 12),
        "_softmax_parallel": (scores, mask, True, K.MASK_SUBTRACT, np.empty_like(scores)),
        "_softmax_grad_rows": (rows, rows, out, 0, 12),
        "_softmax_grad_parallel": (rows, rows, out),
    }[name]
    assert float64_ops(getattr(K, name), *args) == []


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("with_dropout", [False, True])
def test_attend_and_its_backward_match_numpy_in_blocks(threads, with_dropout):
    """``attend`` (scores, masked softmax, weights @ v) and ``attend_backward`` in blocks of
    batch rows on several threads equal the whole-batch numpy products."""
    rng = np.random.default_rng(threads)
    b, h, tq, tk, d, dv = 5, 2, 4, 6, 3, 2
    q, k = rng.standard_normal((b, h, tq, d)), rng.standard_normal((b, h, tk, d))
    v = rng.standard_normal((b, h, tk, dv))
    mask = rng.random((b, tq, tk)) < 0.8
    weights, out = np.empty((b, h, tq, tk)), np.empty((b, h, tq, dv))
    K.attend(q, k, None if with_dropout else v, mask, True, K.MASK_REPLACE, weights, out, threads)
    want_w = ref_masked_softmax(q @ k.transpose(0, 1, 3, 2), mask, True, K.MASK_REPLACE)
    np.testing.assert_allclose(weights, want_w, rtol=1e-12, atol=1e-14)
    dropout, dropped, rate = None, weights, 0.3
    if with_dropout:
        uniform = rng.random(weights.size)
        dropped = np.where(uniform.reshape(weights.shape) >= rate, weights / (1 - rate), 0.0)
        dropout = (dropped, uniform, rate)
    else:
        np.testing.assert_allclose(out, want_w @ v, rtol=1e-12)
    grad_out, extra = rng.standard_normal((b, h, tq, dv)), rng.standard_normal(weights.shape)
    grads = [np.empty_like(a) for a in (q, k, v)]
    K.attend_backward(grad_out, q, k, v, weights, dropout, extra, *grads, threads=threads)
    grad_dropped = grad_out @ v.transpose(0, 1, 3, 2)
    grad_w = extra + (
        np.where(uniform.reshape(weights.shape) >= rate, grad_dropped / (1 - rate), 0.0)
        if with_dropout
        else grad_dropped
    )
    grad_s = weights * (grad_w - (grad_w * weights).sum(-1, keepdims=True))
    for got, want in zip(
        grads,
        (grad_s @ k, grad_s.transpose(0, 1, 3, 2) @ q, dropped.transpose(0, 1, 3, 2) @ grad_out),
    ):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13)


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    steps=st.integers(1, 30),  # blocks of 12, 8, 4, 2, 1 query rows
    keys=st.sampled_from([1, 5, 16, 17, 33, 40]),  # one or more panels of 16 or 32 keys
    dims=st.sampled_from([(1, 1), (4, 8), (16, 16), (8, 40)]),  # (d, dv): dv past a panel
    causal=st.booleans(),
    masked=st.booleans(),
    kept=st.booleans(),
    threads=st.integers(1, 3),
    seed=seeds,
)
def test_attend_heads_matches_numpy(
    batch, heads, steps, keys, dims, causal, masked, kept, threads, seed
):
    """Each head's softmax(scale * q_h k_h^T) v_h from the projections' rows, heads side by
    side, as per-head numpy products; the weights written where wanted (else an empty array
    is passed and each block keeps its own)."""
    d, dv = dims
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, steps, heads * d)).astype(np.float32)
    k = rng.standard_normal((batch, keys, heads * d)).astype(np.float32)
    v = rng.standard_normal((batch, keys, heads * dv)).astype(np.float32)
    mask = rng.random((batch, steps, keys)) > 0.3 if masked else None
    scale = 1 / np.sqrt(d)
    weights = np.full((batch, heads, steps, keys) if kept else (0, 0, 0, 0), np.nan, np.float32)
    out = np.full((batch, steps, heads * dv), np.nan, np.float32)
    K.attend_heads(
        q, k, v, heads, scale, NO_MASK if mask is None else mask, causal, K.MASK_REPLACE,
        weights, out, threads,
    )  # fmt: skip
    per_head = lambda x, dim: x.reshape(batch, -1, heads, dim).transpose(0, 2, 1, 3)  # noqa: E731
    scores = per_head(q, d).astype(np.float64) @ (scale * per_head(k, d)).transpose(0, 1, 3, 2)
    want_weights = ref_masked_softmax(scores, mask, causal, K.MASK_REPLACE)
    want = (want_weights @ per_head(v, dv)).transpose(0, 2, 1, 3).reshape(out.shape)
    if kept:
        np.testing.assert_allclose(weights, want_weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5 * np.sqrt(keys))


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 3),
    heads=st.integers(1, 3),
    steps=st.sampled_from([1, 7, 13]),
    keys=st.sampled_from([1, 5, 17, 33]),
    dims=st.sampled_from([(1, 1), (4, 8), (16, 16), (8, 40)]),
    scores_grad=st.booleans(),
    threads=st.integers(1, 3),
    seed=seeds,
)
def test_attend_heads_backward_matches_numpy(
    batch, heads, steps, keys, dims, scores_grad, threads, seed
):
    """The gradients of attend_heads, heads side by side, as per-head numpy float64 ones (a
    gradient of the weights themselves added in, as when the layer returns them)."""
    d, dv = dims
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, steps, heads * d)).astype(np.float32)
    k = rng.standard_normal((batch, keys, heads * d)).astype(np.float32)
    v = rng.standard_normal((batch, keys, heads * dv)).astype(np.float32)
    scale = 1 / np.sqrt(d)
    weights = np.empty((batch, heads, steps, keys), np.float32)
    out = np.empty((batch, steps, heads * dv), np.float32)
    K.attend_heads(q, k, v, heads, scale, NO_MASK, False, K.MASK_REPLACE, weights, out, threads)
    grad_out = rng.standard_normal(out.shape).astype(np.float32)
    extra = rng.standard_normal(weights.shape).astype(np.float32) if scores_grad else None
    grads = [np.full(x.shape, np.nan, np.float32) for x in (q, k, v)]
    K.attend_heads_backward(
        grad_out, q, k, v, heads, scale, weights, np.empty((0, 0, 0, 0), np.float32)
        if extra is None else extra, *grads, threads,
    )  # fmt: skip

    def per_head(x, dim):
        return x.reshape(batch, -1, heads, dim).transpose(0, 2, 1, 3).astype(np.float64)

    def side_by_side(x):
        return x.transpose(0, 2, 1, 3).reshape(batch, x.shape[2], -1)

    qh, kh, vh, gh = per_head(q, d), per_head(k, d), per_head(v, dv), per_head(grad_out, dv)
    w = weights.astype(np.float64)
    grad_w = gh @ vh.transpose(0, 1, 3, 2) + (0 if extra is None else extra)
    grad_s = w * (grad_w - (grad_w * w).sum(-1, keepdims=True))
    want = [
        side_by_side(scale * grad_s @ kh),
        side_by_side(scale * grad_s.transpose(0, 1, 3, 2) @ qh),
        side_by_side(w.transpose(0, 1, 3, 2) @ gh),
    ]
    for got, expected in zip(grads, want):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5 * np.sqrt(keys * steps))
