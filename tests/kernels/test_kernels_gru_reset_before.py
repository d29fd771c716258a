"""The reset_after=False GRU kernels against a numpy transcription of Keras 3's cell, float32 and
float64: forward states, backward vs central differences (masks and per-gate dropout included),
blocks of rows, and TableRows input.

Its time loop is always Python's (two products per step), so unlike test_kernels_recurrent.py
these tests run once, not once per time loop.
"""

import numpy as np
import pytest
from gradcheck import numeric_gradient
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernels_recurrent import TOL, act, gate_dropout, small_blocks  # noqa: F401
from test_kernels_recurrent import problem as gru_problem

from fastnn.kernels import activations as A
from fastnn.kernels import recurrent as R

SETTINGS = settings(max_examples=12, deadline=None)


def reference(x, W, U, b, h, mask, a=A.TANH, ra=A.SIGMOID, dropout=None):
    """hs (T+1, N, u) of Keras's GRUCell with reset_after=False, bias (3u,) or None; dropout =
    (keep_x (3, N, in) or None, keep_h (3, N, u)) as its implementation 1."""
    keep_x, keep_h = (None, None) if dropout is None else dropout
    Wz, Wr, Wh = np.split(W, 3, axis=1)
    Uz, Ur, Uh = np.split(U, 3, axis=1)
    bz, br, bh = (0, 0, 0) if b is None else np.split(b, 3)
    hs = [h]
    for t in range(x.shape[0]):
        xs = [x[t] if keep_x is None else x[t] * keep_x[g] for g in range(3)]
        h_z, h_r, h_h = [h if keep_h is None else h * keep_h[g] for g in range(3)]
        z = act(xs[0] @ Wz + bz + h_z @ Uz, ra)
        r = act(xs[1] @ Wr + br + h_r @ Ur, ra)
        hh = act(xs[2] @ Wh + bh + (r * h_h) @ Uh, a)
        h_new = z * h + (1 - z) * hh
        keep = np.ones(len(h), bool) if mask is None else mask[t]
        h = np.where(keep[:, None], h_new, h)
        hs.append(h)
    return np.stack(hs)


def problem(seed, dtype, steps, batch, in_dim, units, use_bias=True, masked=False):
    """test_kernels_recurrent's GRU problem with reset_after=False's one bias (3u,)."""
    p = gru_problem(seed, dtype, "gru", steps, batch, in_dim, units, use_bias, masked)
    p["b"] = None if p["b"] is None else np.ascontiguousarray(p["b"][0])
    return p


def run(p, dy, dlast, a=A.TANH, ra=A.SIGMOID, **options):
    """(hs, dx, dh0, dW, dU, db) from the kernels."""
    dW, dU = np.zeros_like(p["W"]), np.zeros_like(p["U"])
    db = None if p["b"] is None else np.zeros_like(p["b"])
    args = p["x"], p["W"], p["U"]
    hs, gates = R.gru_reset_before_forward(*args, p["b"], p["h"], p["mask"], a, ra, **options)
    dx, dh0 = R.gru_reset_before_backward(
        *args, hs, gates, p["mask"], a, ra, dy, dlast, dW, dU, db, **options
    )
    return hs, dx, dh0, dW, dU, db


sizes = dict(
    steps=st.integers(1, 5),
    batch=st.integers(1, 3),
    in_dim=st.integers(1, 4),
    units=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    use_bias=st.booleans(),
    masked=st.booleans(),
    dropped=st.sampled_from([None, "state", "inputs and state"]),
)


def dropout_for(dropped, seed, batch, in_dim, units, dtype):
    if dropped is None:
        return None
    return gate_dropout(seed, "gru", batch, in_dim, units, dtype, dropped == "inputs and state")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@SETTINGS
@given(**sizes)
def test_forward_matches_numpy(dtype, steps, batch, in_dim, units, seed, use_bias, masked, dropped):
    p = problem(seed, dtype, steps, batch, in_dim, units, use_bias, masked)
    dropout = dropout_for(dropped, seed + 1, batch, in_dim, units, dtype)
    hs, gates = R.gru_reset_before_forward(
        p["x"], p["W"], p["U"], p["b"], p["h"], p["mask"], A.TANH, A.SIGMOID, dropout=dropout
    )
    wide = {k: None if p[k] is None else p[k].astype(np.float64) for k in "xWUbh"}
    masks = (
        None if dropout is None else tuple(None if m is None else m.astype(float) for m in dropout)
    )
    expected = reference(*(wide[k] for k in "xWUbh"), p["mask"], dropout=masks)
    assert hs.dtype == gates.dtype == dtype
    assert gates.shape == (steps, batch, 4 * units)
    np.testing.assert_allclose(hs, expected, **TOL[dtype])


@SETTINGS
@given(**sizes, with_dy=st.booleans())
def test_backward_matches_finite_differences(
    steps, batch, in_dim, units, seed, use_bias, masked, dropped, with_dy
):
    p = problem(seed, np.float64, steps, batch, in_dim, units, use_bias, masked)
    dropout = dropout_for(dropped, seed + 1, batch, in_dim, units, np.float64)
    rng = np.random.default_rng(seed + 2)
    dy = rng.standard_normal((steps, batch, units)) if with_dy else None
    dlast = rng.standard_normal((batch, units))
    _, dx, dh0, dW, dU, db = run(p, dy, dlast, dropout=dropout)

    def objective():
        hs = reference(p["x"], p["W"], p["U"], p["b"], p["h"], p["mask"], dropout=dropout)
        return (0.0 if dy is None else float(np.sum(dy * hs[1:]))) + float(np.sum(dlast * hs[-1]))

    for name, grad in zip("xhWUb", [dx, dh0, dW, dU, db]):
        if p[name] is not None:
            np.testing.assert_allclose(
                grad, numeric_gradient(objective, p[name]), rtol=1e-5, atol=1e-7, err_msg=name
            )


@pytest.mark.parametrize("a", [A.RELU, A.LINEAR, A.SIGMOID])
@pytest.mark.parametrize("ra", [A.SIGMOID, A.TANH])
def test_other_activations(a, ra):
    p = problem(5, np.float64, 3, 2, 3, 2, masked=True)
    dy = np.random.default_rng(6).standard_normal((3, 2, 2))
    dlast = np.ones((2, 2))
    hs, dx, dh0, dW, dU, db = run(p, dy, dlast, a, ra)
    np.testing.assert_allclose(hs, reference(*(p[k] for k in "xWUbh"), p["mask"], a, ra))

    def objective():
        hs = reference(*(p[k] for k in "xWUbh"), p["mask"], a, ra)
        return float(np.sum(dy * hs[1:]) + np.sum(dlast * hs[-1]))

    for name, grad in zip("xhWUb", [dx, dh0, dW, dU, db]):
        np.testing.assert_allclose(
            grad, numeric_gradient(objective, p[name]), rtol=1e-5, atol=1e-7, err_msg=name
        )


def test_float32_backward_matches_float64():
    p64 = problem(7, np.float64, 6, 3, 4, 5, masked=True)
    p32 = {k: v if v.dtype == bool else v.astype(np.float32) for k, v in p64.items()}
    rng = np.random.default_rng(8)
    dy, dlast = rng.standard_normal((6, 3, 5)), rng.standard_normal((3, 5))
    got = run(p32, dy.astype(np.float32), dlast.astype(np.float32))
    for g, e in zip(got, run(p64, dy, dlast)):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("dropped", [False, True])
def test_blocks_of_rows_match_one_block(dropped):
    p = problem(3, np.float64, 6, 7, 5, 4, masked=True)
    rng = np.random.default_rng(4)
    dy, dlast = rng.standard_normal((6, 7, 4)), rng.standard_normal((7, 4))
    dropout = gate_dropout(5, "gru", 7, 5, 4, np.float64) if dropped else None
    whole = run(p, dy, dlast, dropout=dropout)
    for got, want in zip(run(p, dy, dlast, threads=3, dropout=dropout), whole):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_table_rows_input_matches_its_gathered_rows(dtype):
    p = problem(7, dtype, 4, 3, 2, 3, masked=True)
    rng = np.random.default_rng(8)
    table = rng.standard_normal((5, 2)).astype(dtype)
    ids = rng.integers(0, 5, (4, 3))
    dy = rng.standard_normal((4, 3, 3)).astype(dtype)
    dlast = rng.standard_normal((3, 3)).astype(dtype)
    hs, dx, *ref = run(dict(p, x=np.ascontiguousarray(table[ids])), dy, dlast)
    dtable = np.zeros_like(table)
    got_hs, none, *got = run(dict(p, x=R.table_rows(table, ids, dtable)), dy, dlast)
    assert none is None
    for g, e in zip([got_hs, *got], [hs, *ref]):
        np.testing.assert_allclose(g, e, **TOL[dtype])
    expected = np.zeros_like(table)
    np.add.at(expected, ids.reshape(-1), dx.reshape(-1, 2))
    np.testing.assert_allclose(dtable, expected, **TOL[dtype])
