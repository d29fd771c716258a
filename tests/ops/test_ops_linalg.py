"""fastnn.ops.linalg: forward against keras.ops.linalg (torch backend), float64 gradients
against finite differences, and errors naming the op and the shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops_gradients import check_grads

from fastnn import ops
from fastnn.ops import GradientTape, linalg

SEEDS = st.integers(0, 2**16)
FAST = settings(max_examples=3, deadline=None, derandomize=True)
RNG = np.random.default_rng(0)
M = RNG.standard_normal((2, 3, 3)).astype(np.float32)
SPD = (M @ M.transpose(0, 2, 1) + 3 * np.eye(3)).astype(np.float32)
B_MATRIX = RNG.standard_normal((2, 3, 2)).astype(np.float32)
B_VECTOR = RNG.standard_normal((2, 3)).astype(np.float32)
T = RNG.standard_normal((4, 3)).astype(np.float32)


def _lin(o):
    """fastnn.ops.linalg or keras.ops.linalg."""
    return linalg if o is ops else o.linalg


PARITY = {
    "inv": lambda o: _lin(o).inv(M), "det": lambda o: _lin(o).det(M),
    "slogdet_sign": lambda o: o.slogdet(M)[0], "slogdet_log": lambda o: o.slogdet(M)[1],
    "logdet": lambda o: o.logdet(SPD), "solve": lambda o: _lin(o).solve(M, B_MATRIX),
    "solve_vector": lambda o: _lin(o).solve(M, B_VECTOR),
    "solve_triangular_lower": lambda o: _lin(o).solve_triangular(M, B_MATRIX, lower=True),
    "solve_triangular_upper": lambda o: _lin(o).solve_triangular(M, B_MATRIX),
    "cholesky": lambda o: _lin(o).cholesky(SPD),
    "cholesky_upper": lambda o: _lin(o).cholesky(SPD, upper=True),
    "cholesky_inverse": lambda o: _lin(o).cholesky_inverse(np.linalg.cholesky(SPD)),
    "eigh_values": lambda o: _lin(o).eigh(SPD)[0],
    "eigh_vectors_up_to_sign": lambda o: o.abs(_lin(o).eigh(SPD)[1]),
    "svd_values": lambda o: _lin(o).svd(T, compute_uv=False), "svd_s": lambda o: _lin(o).svd(T)[1],
    "svd_u_reduced_shape": lambda o: o.abs(_lin(o).svd(T, full_matrices=False)[0]),
    "qr_r_up_to_sign": lambda o: o.abs(_lin(o).qr(T)[1]),
    "qr_complete_q_shape_only": lambda o: o.abs(_lin(o).qr(T, mode="complete")[0]) * 0,
    "lstsq": lambda o: _lin(o).lstsq(T, T[:, :2]), "pinv": lambda o: _lin(o).pinv(T),
    "matrix_rank": lambda o: _lin(o).matrix_rank(T), "lu_factor": lambda o: _lin(o).lu_factor(M)[0],
    "lu_pivots": lambda o: _lin(o).lu_factor(M)[1],
    "norm_fro": lambda o: o.norm(M, axis=(1, 2)), "norm_nuc": lambda o: o.norm(M, "nuc", (1, 2)),
    "norm_2": lambda o: o.norm(M, 2, axis=(-1, -2)),
    "norm_minus1_keepdims": lambda o: o.norm(M, -1, axis=(1, 2), keepdims=True),
    "norm_inf": lambda o: o.norm(T, np.inf, axis=(0, 1)), "norm_p3": lambda o: o.norm(T, 3, 0),
    "norm_count": lambda o: o.norm(T, 0, axis=1), "norm_all": lambda o: o.norm(M),
    "norm_matrix_default_axes": lambda o: o.norm(T, 1),
    "norm_keepdims": lambda o: o.norm(M, keepdims=True),
}  # fmt: skip


@pytest.mark.parametrize("name", PARITY)
def test_forward_matches_keras(keras_ops, name):
    ours, theirs = PARITY[name](ops), keras_ops.convert_to_numpy(PARITY[name](keras_ops))
    assert np.shape(ours) == theirs.shape
    assert np.result_type(ours) == theirs.dtype, f"dtype {np.result_type(ours)} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_factorizations_reconstruct():
    x = RNG.standard_normal((2, 4, 4))
    lu, pivots = linalg.lu_factor(x)
    for m in range(2):
        lower, upper = np.tril(lu[m], -1) + np.eye(4), np.triu(lu[m])
        permuted = x[m].copy()
        for k, p in enumerate(pivots[m]):
            permuted[[k, p]] = permuted[[p, k]]
        np.testing.assert_allclose(lower @ upper, permuted, atol=1e-12)
    q, r = linalg.qr(x)
    np.testing.assert_allclose(q @ r, x, atol=1e-12)
    w, v = linalg.eigh(x + np.swapaxes(x, 1, 2))
    np.testing.assert_allclose(v @ (w[..., None] * np.swapaxes(v, 1, 2)), x + np.swapaxes(x, 1, 2),
                               atol=1e-12)  # fmt: skip


def _spd(b):
    """A symmetric positive definite matrix from any square b, differentiably."""
    return ops.matmul(b, ops.swapaxes(b, -1, -2)) + 3 * np.eye(np.shape(b)[-1])


GRADIENTS = {
    "inv": lambda b: linalg.inv(b + 3 * np.eye(3)),
    "det": lambda b: linalg.det(b),
    "slogdet": lambda b: ops.slogdet(b + 3 * np.eye(3))[1],
    "logdet": lambda b: ops.logdet(_spd(b)),
    "cholesky": lambda b: linalg.cholesky(_spd(b)),
    "cholesky_upper": lambda b: linalg.cholesky(_spd(b), upper=True),
    "cholesky_inverse": lambda b: linalg.cholesky_inverse(ops.tril(b) + 3 * np.eye(3)),
    "eigh_values": lambda b: linalg.eigh(b + ops.swapaxes(b, -1, -2))[0],
    "eigh_vectors": lambda b: ops.square(linalg.eigh(b + ops.swapaxes(b, -1, -2))[1]),
    "svd_values": lambda b: linalg.svd(b, compute_uv=False),
    "norm_fro": lambda b: ops.norm(b, "fro", axis=(-2, -1)),
    "norm_nuc": lambda b: ops.norm(b, "nuc", axis=(-2, -1)),
    "norm_2": lambda b: ops.norm(b, 2, axis=(-1, -2)),
    "norm_1": lambda b: ops.norm(b, 1, axis=(-2, -1)),
    "norm_inf_keepdims": lambda b: ops.norm(b, np.inf, axis=(1, 2), keepdims=True),
    "norm_p3": lambda b: ops.norm(b, 3, axis=-1),
}  # fmt: skip


@pytest.mark.parametrize("name", GRADIENTS)
@FAST
@given(seed=SEEDS)
def test_gradients(name, seed):
    rng = np.random.default_rng(seed)
    check_grads(GRADIENTS[name], rng.standard_normal((2, 3, 3)), rng=rng)


@pytest.mark.parametrize("vector", [False, True])
def test_solve_gradients(vector):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)
    b = rng.standard_normal((2, 3) if vector else (2, 3, 2))
    check_grads(linalg.solve, a, b, rng=rng)
    check_grads(lambda p, q: linalg.solve_triangular(p, q, lower=True), a, b, rng=rng)


def test_cholesky_reads_the_lower_triangle_only():
    """The gradient of the raw matrix is zero above the diagonal, as the forward ignores it."""
    a = np.asarray(SPD[0], np.float64)
    with GradientTape() as tape:
        x = tape.watch(a)
        loss = ops.sum(linalg.cholesky(x) * np.arange(9.0).reshape(3, 3))
    grad = tape.gradient(loss, x)
    np.testing.assert_array_equal(np.triu(grad, 1), 0)
    check_grads(lambda v: linalg.cholesky(v), a)


def test_inverse_has_second_derivatives():
    rng = np.random.default_rng(2)

    def gradient_norm(b):
        with GradientTape() as inner:
            w = inner.watch(b)
            y = ops.sum(linalg.inv(w + 3 * np.eye(3)))
        return ops.sum(ops.square(inner.gradient(y, w)))

    check_grads(gradient_norm, rng.standard_normal((3, 3)), rng=rng)


def test_forward_only_ops_refuse_gradients():
    x = np.asarray(T, np.float64)
    with GradientTape() as outer:
        w = outer.watch(x)
        with GradientTape() as inner:
            inner.watch(w)
            s = ops.sum(linalg.svd(w, compute_uv=False))
        total = ops.sum(inner.gradient(s, w))
    with pytest.raises(LookupError, match="singular_values_grad"):
        outer.gradient(total, w)
    for name, fn in (("qr", linalg.qr), ("svd", linalg.svd), ("pinv", linalg.pinv),
                     ("lstsq", lambda v: linalg.lstsq(v, x[:, :1]))):  # fmt: skip
        with GradientTape() as tape:
            w = tape.watch(x)
            with pytest.raises(ValueError, match=f"{name}: fastnn computes it forward only"):
                fn(w)


ERRORS = {
    "inv": (lambda: linalg.inv(T), r"inv.*\(4, 3\)"),
    "det": (lambda: linalg.det(B_VECTOR[0]), r"det.*\(3,\)"),
    "solve": (lambda: linalg.solve(M, T), r"solve.*\(2, 3, 3\).*\(4, 3\)"),
    "cholesky_not_pd": (lambda: linalg.cholesky(-SPD), "cholesky.*positive definite"),
    "lstsq": (lambda: linalg.lstsq(T, M), r"lstsq.*\(4, 3\).*\(2, 3, 3\)"),
    "qr_mode": (lambda: linalg.qr(T, mode="r"), "qr.*mode"),
    "norm_matrix_ord": (lambda: ops.norm(T, "fro", axis=0), "norm.*matrix norm"),
    "norm_axes": (lambda: ops.norm(M, "nuc", axis=(0, 1, 2)), r"norm.*\(2, 3, 3\)"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_op_and_shapes(name):
    fn, match = ERRORS[name]
    with pytest.raises(ValueError, match=match):
        fn()
