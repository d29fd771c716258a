"""LSTM, GRU and SimpleRNN sequence kernels against plain numpy references, float32 and float64.

Forward passes are compared with a step-by-step numpy transcription of Keras 3's math; backward
passes with central differences of that reference in float64, and in float32 with the float64
kernel. Every test runs with each time loop (the ``time_loop`` fixture); the embedding kernels
and the float32 checks of the cell kernels are in test_kernels_embedding_cells.py.
"""

import functools

import numpy as np
import pytest
from gradcheck import numeric_gradient
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import runtime
from fastnn.kernels import activations as A
from fastnn.kernels import gemm
from fastnn.kernels import recurrent as R

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
SETTINGS = settings(max_examples=10, deadline=None)
CODES = [A.LINEAR, A.RELU, A.SIGMOID, A.TANH]


def act(z, code):
    if code == A.SIGMOID:
        return 1 / (1 + np.exp(-z))
    if code == A.TANH:
        return np.tanh(z)
    if code == A.RELU:
        return np.maximum(z, 0)
    return z


# ---------------------------------------------------------------- numpy references (Keras math)


def gate_products(x_t, h, W, U, dropout):
    """(x_t @ W, h @ U), or with dropout = (keep_x (G, N, in) or None, keep_h (G, N, u)) each
    gate's columns from its own masked inputs, as Keras's implementation 1."""
    if dropout is None:
        return x_t @ W, h @ U
    keep_x, keep_h = dropout
    gates = len(keep_h)
    xs = [x_t if keep_x is None else x_t * keep_x[g] for g in range(gates)]
    return (
        np.concatenate([xg @ Wg for xg, Wg in zip(xs, np.split(W, gates, axis=1))], axis=1),
        np.concatenate([(h * kg) @ Ug for kg, Ug in zip(keep_h, np.split(U, gates, axis=1))], 1),
    )


def lstm_reference(x, W, U, b, h, c, mask, a=A.TANH, ra=A.SIGMOID, dropout=None):
    """hs (T+1, N, u), cs: states after every step of x (T, N, in), masked steps carried."""
    hs, cs = [h], [c]
    for t in range(x.shape[0]):
        z = sum(gate_products(x[t], h, W, U, dropout)) + (0 if b is None else b)
        i, f, g, o = np.split(z, 4, axis=1)
        c_new = act(f, ra) * c + act(i, ra) * act(g, a)
        h_new = act(o, ra) * act(c_new, a)
        keep = np.ones(len(h), bool) if mask is None else mask[t]
        h = np.where(keep[:, None], h_new, h)
        c = np.where(keep[:, None], c_new, c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def gru_reference(x, W, U, b, h, mask, a=A.TANH, ra=A.SIGMOID, dropout=None):
    """hs (T+1, N, u): states after every step, reset_after=True, bias (2, 3u) or None."""
    hs = [h]
    b_in, b_rec = (0, 0) if b is None else (b[0], b[1])
    for t in range(x.shape[0]):
        x_part, h_part = gate_products(x[t], h, W, U, dropout)
        xz, xr, xh = np.split(x_part + b_in, 3, axis=1)
        rz, rr, rh = np.split(h_part + b_rec, 3, axis=1)
        z = act(xz + rz, ra)
        r = act(xr + rr, ra)
        hh = act(xh + r * rh, a)
        h_new = z * h + (1 - z) * hh  # the undropped h, as Keras
        keep = np.ones(len(h), bool) if mask is None else mask[t]
        h = np.where(keep[:, None], h_new, h)
        hs.append(h)
    return np.stack(hs)


def simple_rnn_reference(x, W, U, b, h, mask, a=A.TANH, dropout=None):
    """hs (T+1, N, u): states after every step of h = a(x W + h U + b)."""
    hs = [h]
    for t in range(x.shape[0]):
        h_new = act(sum(gate_products(x[t], h, W, U, dropout)) + (0 if b is None else b), a)
        keep = np.ones(len(h), bool) if mask is None else mask[t]
        h = np.where(keep[:, None], h_new, h)
        hs.append(h)
    return np.stack(hs)


def gate_dropout(seed, kind, batch, in_dim, units, dtype, inputs=True):
    """Keep masks (0 or 1 / (1 - 0.4)) for each gate of kind's cell, as ``R.GateDropout``."""
    rng = np.random.default_rng(seed)
    gates = {"lstm": 4, "gru": 3, "simple_rnn": 1}[kind]

    def keep(shape):
        return ((rng.random(shape) >= 0.4) / 0.6).astype(dtype)

    keep_x = keep((gates, batch, in_dim)) if inputs else None
    return R.GateDropout(keep_x, keep((gates, batch, units)))


def problem(seed, dtype, kind, steps, batch, in_dim, units, use_bias=True, masked=False):
    rng = np.random.default_rng(seed)
    g = 4 if kind == "lstm" else 3
    p = {
        "x": rng.standard_normal((steps, batch, in_dim)),
        "W": rng.standard_normal((in_dim, g * units)) * 0.5,
        "U": rng.standard_normal((units, g * units)) * 0.5,
        "b": None
        if not use_bias
        else rng.standard_normal((g * units,) if g == 4 else (2, 3 * units)),
        "h": rng.standard_normal((batch, units)) * 0.5,
        "c": rng.standard_normal((batch, units)) * 0.5,
    }
    p = {k: None if v is None else np.ascontiguousarray(v, dtype=dtype) for k, v in p.items()}
    p["mask"] = rng.random((steps, batch)) < 0.7 if masked else None
    return p


sizes = dict(
    steps=st.integers(1, 5),
    batch=st.integers(1, 3),
    in_dim=st.integers(1, 4),
    units=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    use_bias=st.booleans(),
    masked=st.booleans(),
)


@pytest.fixture(autouse=True, params=["loops", "blas", "cblas"])
def time_loop(request, monkeypatch):
    """Run every test with each time loop: the LSTM's as one Numba loop with the products as
    loops (small units); as a Python loop with a numpy product per step (large units, and the
    GRU's and SimpleRNN's without a gemm); as one Numba loop calling numpy's cblas gemm per step
    (what the layers pass)."""
    if request.param == "blas":
        monkeypatch.setattr(R, "LOOP_MAX_RECURRENT_WEIGHTS", 0)
    if request.param == "cblas":
        assert runtime.cblas_gemm(np.float32) is not None  # numpy's wheel bundles OpenBLAS
        for kind in ("lstm", "gru", "simple_rnn"):
            for name in (f"{kind}_forward", f"{kind}_backward"):
                monkeypatch.setattr(R, name, with_cblas(getattr(R, name)))
    return request.param


def with_cblas(kernel):
    """``kernel`` called with numpy's cblas gemm for its input's dtype, as the layers call it."""

    @functools.wraps(kernel)
    def call(x, *args, **kwargs):
        return kernel(x, *args, cblas=runtime.cblas_gemm(R.sequence_shape(x)[2]), **kwargs)

    return call


# ---------------------------------------------------------------- forward vs reference


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(**sizes)
def test_lstm_forward_matches_numpy(dtype, steps, batch, in_dim, units, seed, use_bias, masked):
    p = problem(seed, dtype, "lstm", steps, batch, in_dim, units, use_bias, masked)
    hs, cs, gates = R.lstm_forward(
        p["x"], p["W"], p["U"], p["b"], p["h"], p["c"], p["mask"], A.TANH, A.SIGMOID
    )
    ref = lstm_reference(
        *(p[k].astype(np.float64) if p[k] is not None else None for k in "xWUbhc"), p["mask"]
    )
    assert hs.dtype == cs.dtype == gates.dtype == dtype
    assert gates.shape == (steps, batch, 4 * units)
    np.testing.assert_allclose(hs, ref[0], **TOL[dtype])
    np.testing.assert_allclose(cs, ref[1], **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(**sizes)
def test_gru_forward_matches_numpy(dtype, steps, batch, in_dim, units, seed, use_bias, masked):
    p = problem(seed, dtype, "gru", steps, batch, in_dim, units, use_bias, masked)
    hs, gates = R.gru_forward(p["x"], p["W"], p["U"], p["b"], p["h"], p["mask"], A.TANH, A.SIGMOID)
    ref = gru_reference(
        *(p[k].astype(np.float64) if p[k] is not None else None for k in "xWUbh"), p["mask"]
    )
    assert hs.dtype == gates.dtype == dtype
    np.testing.assert_allclose(hs, ref, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(**sizes)
def test_simple_rnn_forward_matches_numpy(
    dtype, steps, batch, in_dim, units, seed, use_bias, masked
):
    p = problem(seed, dtype, "gru", steps, batch, in_dim, units, use_bias, masked)
    W, U, b = p["W"][:, :units], np.ascontiguousarray(p["U"][:, :units]), p["b"]
    b = None if b is None else np.ascontiguousarray(b[0, :units])
    W = np.ascontiguousarray(W)
    (hs,) = R.simple_rnn_forward(p["x"], W, U, b, p["h"], p["mask"], A.TANH)
    ref = simple_rnn_reference(
        *(a if a is None else a.astype(np.float64) for a in (p["x"], W, U, b, p["h"])), p["mask"]
    )
    assert hs.dtype == dtype
    np.testing.assert_allclose(hs, ref, **TOL[dtype])


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("batch", [1, 16, 40])
def test_projecting_in_the_loop_matches_projecting_up_front(kind, batch, time_loop):
    """With cblas an array input's steps project their own inputs in the time loop; a kernel
    cblas cannot read by rows (Fortran order) takes the one GEMM up front: the same states."""
    p = problem(batch, np.float32, "lstm" if kind == "lstm" else "gru", 6, batch, 5, 7, True, True)
    W, U, b = p["W"], p["U"], p["b"]
    if kind == "simple_rnn":
        W, U, b = (np.ascontiguousarray(a) for a in (W[:, :7], U[:, :7], b[0, :7]))
    cblas = runtime.cblas_gemm(np.float32)
    # the fixture's "cblas" run has wrapped the sequence functions to pass it
    options = dict(threads=2) if time_loop == "cblas" else dict(threads=2, cblas=cblas)
    outputs = []
    for kernel in (W, np.asfortranarray(W)):
        assert R._projects_in_loop(p["x"], kernel, cblas, None) == kernel.flags.c_contiguous
        if kind == "lstm":
            args = (p["x"], kernel, U, b, p["h"], p["c"], p["mask"], A.TANH, A.SIGMOID)
            outputs.append(R.lstm_forward(*args, **options)[:2])
        elif kind == "gru":
            args = (p["x"], kernel, U, b, p["h"], p["mask"], A.TANH, A.SIGMOID)
            outputs.append(R.gru_forward(*args, **options))
        else:
            args = (p["x"], kernel, U, b, p["h"], p["mask"], A.TANH)
            outputs.append(R.simple_rnn_forward(*args, **options))
    for in_loop, up_front in zip(*outputs):
        np.testing.assert_allclose(in_loop, up_front, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("a", CODES)
@pytest.mark.parametrize("ra", [A.SIGMOID, A.LINEAR])
def test_other_activations_match_numpy(a, ra):
    p = problem(3, np.float64, "lstm", 4, 2, 3, 3)
    hs, _, _ = R.lstm_forward(p["x"], p["W"], p["U"], p["b"], p["h"], p["c"], None, a, ra)
    np.testing.assert_allclose(
        hs, lstm_reference(p["x"], p["W"], p["U"], p["b"], p["h"], p["c"], None, a, ra)[0]
    )
    q = problem(3, np.float64, "gru", 4, 2, 3, 3)
    hs, _ = R.gru_forward(q["x"], q["W"], q["U"], q["b"], q["h"], None, a, ra)
    np.testing.assert_allclose(
        hs, gru_reference(q["x"], q["W"], q["U"], q["b"], q["h"], None, a, ra)
    )


# ---------------------------------------------------------------- backward vs finite differences


def run_backward(kind, p, dy, dlast, a=A.TANH, ra=A.SIGMOID, **options):
    """(dx, dstates, dW, dU, db) from the kernels; dlast = grads of the final states; options
    (threads=, dropout=) go to the forward and backward kernels."""
    dW, dU = np.zeros_like(p["W"]), np.zeros_like(p["U"])
    db = None if p["b"] is None else np.zeros_like(p["b"])
    if kind == "lstm":
        hs, cs, gates = R.lstm_forward(
            p["x"], p["W"], p["U"], p["b"], p["h"], p["c"], p["mask"], a, ra, **options
        )
        dx, dh0, dc0 = R.lstm_backward(
            p["x"], p["W"], p["U"], hs, cs, gates, p["mask"], a, ra, dy, *dlast, dW, dU, db,
            **options,
        )  # fmt: skip
        return dx, [dh0, dc0], dW, dU, db
    if kind == "simple_rnn":
        (hs,) = R.simple_rnn_forward(
            p["x"], p["W"], p["U"], p["b"], p["h"], p["mask"], a, **options
        )
        dx, dh0 = R.simple_rnn_backward(
            p["x"], p["W"], p["U"], hs, p["mask"], a, dy, dlast[0], dW, dU, db, **options
        )
        return dx, [dh0], dW, dU, db
    hs, gates = R.gru_forward(p["x"], p["W"], p["U"], p["b"], p["h"], p["mask"], a, ra, **options)
    dx, dh0 = R.gru_backward(
        p["x"], p["W"], p["U"], hs, gates, p["mask"], a, ra, dy, dlast[0], dW, dU, db, **options
    )
    return dx, [dh0], dW, dU, db


def objective(kind, p, dy, dlast, a=A.TANH, ra=A.SIGMOID, dropout=None):
    """sum(dy * hs[1:]) + sum(dlast * final states), from the numpy reference."""

    def value():
        args = (p["x"], p["W"], p["U"], p["b"], p["h"])
        if kind == "lstm":
            hs, cs = lstm_reference(*args, p["c"], p["mask"], a, ra, dropout)
            finals = [hs[-1], cs[-1]]
        elif kind == "simple_rnn":
            hs = simple_rnn_reference(*args, p["mask"], a, dropout)
            finals = [hs[-1]]
        else:
            hs = gru_reference(*args, p["mask"], a, ra, dropout)
            finals = [hs[-1]]
        total = 0.0 if dy is None else float(np.sum(dy * hs[1:]))
        return total + sum(float(np.sum(g * f)) for g, f in zip(dlast, finals))

    return value


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@SETTINGS
@given(**sizes, with_dy=st.booleans())
def test_backward_matches_finite_differences(
    kind, steps, batch, in_dim, units, seed, use_bias, masked, with_dy
):
    p = problem(seed, np.float64, kind, steps, batch, in_dim, units, use_bias, masked)
    rng = np.random.default_rng(seed + 1)
    dy = rng.standard_normal((steps, batch, units)) if with_dy else None
    dlast = [rng.standard_normal((batch, units)) for _ in range(2 if kind == "lstm" else 1)]
    dx, dstates, dW, dU, db = run_backward(kind, p, dy, dlast)
    f = objective(kind, p, dy, dlast)
    names = ["x", "h", "c"][: 1 + len(dstates)] + ["W", "U"] + (["b"] if use_bias else [])
    grads = [dx, *dstates, dW, dU] + ([db] if use_bias else [])
    for name, grad in zip(names, grads):
        np.testing.assert_allclose(
            grad, numeric_gradient(f, p[name]), rtol=1e-5, atol=1e-7, err_msg=name
        )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize("a", [A.RELU, A.LINEAR])
def test_backward_other_activations(kind, a):
    p = problem(5, np.float64, kind, 3, 2, 3, 2, masked=True)
    dy = np.random.default_rng(6).standard_normal((3, 2, 2))
    dlast = [np.ones((2, 2))] * (2 if kind == "lstm" else 1)
    dx, dstates, dW, dU, db = run_backward(kind, p, dy, dlast, a, A.SIGMOID)
    f = objective(kind, p, dy, dlast, a, A.SIGMOID)
    for name, grad in zip(["x", "W", "U", "b"], [dx, dW, dU, db]):
        np.testing.assert_allclose(
            grad, numeric_gradient(f, p[name]), rtol=1e-5, atol=1e-7, err_msg=name
        )


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_float32_backward_matches_float64(kind):
    p64 = problem(7, np.float64, kind, 6, 3, 4, 5, masked=True)
    p32 = {k: v if v is None or v.dtype == bool else v.astype(np.float32) for k, v in p64.items()}
    rng = np.random.default_rng(8)
    dy = rng.standard_normal((6, 3, 5))
    dlast = [rng.standard_normal((3, 5)) for _ in range(2 if kind == "lstm" else 1)]
    got = run_backward(kind, p32, dy.astype(np.float32), [d.astype(np.float32) for d in dlast])
    expected = run_backward(kind, p64, dy, dlast)
    flat_got = [got[0], *got[1], *got[2:]]
    flat_expected = [expected[0], *expected[1], *expected[2:]]
    for g, e in zip(flat_got, flat_expected):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_masked_rows_carry_state_and_gradient():
    p = problem(9, np.float64, "lstm", 4, 2, 3, 2)
    p["mask"] = np.array([[True, False], [False, False], [True, False], [False, False]])
    hs, cs, _ = R.lstm_forward(
        p["x"], p["W"], p["U"], p["b"], p["h"], p["c"], p["mask"], A.TANH, A.SIGMOID
    )
    np.testing.assert_array_equal(hs[:, 1], np.repeat(p["h"][1:], 5, axis=0))  # never updated
    np.testing.assert_array_equal(hs[2, 0], hs[1, 0])
    dlast = [np.ones((2, 2)), np.ones((2, 2))]
    dx, (dh0, dc0), *_ = run_backward("lstm", p, None, dlast)
    np.testing.assert_array_equal(dx[:, 1], 0)  # a fully masked sample gets no input gradient
    np.testing.assert_array_equal(dh0[1], 1)  # and its final-state gradient passes straight back
    np.testing.assert_array_equal(dc0[1], 1)


def one_gate(p):
    """A GRU problem cut to SimpleRNN's one gate."""
    p.update({k: np.ascontiguousarray(p[k][..., : p["h"].shape[1]]) for k in "WU"})
    p["b"] = None if p["b"] is None else p["b"][0, : p["h"].shape[1]].copy()
    return p


def dropout_problem(seed, dtype, kind, steps, batch, in_dim, units, use_bias, masked, inputs):
    p = problem(seed, dtype, "lstm" if kind == "lstm" else "gru", steps, batch, in_dim, units,
                use_bias, masked)  # fmt: skip
    p = one_gate(p) if kind == "simple_rnn" else p
    return p, gate_dropout(seed + 3, kind, batch, in_dim, units, dtype, inputs)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(**sizes, inputs=st.booleans())
def test_per_gate_dropout_forward_matches_numpy(
    kind, dtype, steps, batch, in_dim, units, seed, use_bias, masked, inputs
):
    p, dropout = dropout_problem(
        seed, dtype, kind, steps, batch, in_dim, units, use_bias, masked, inputs
    )
    wide = {k: None if p[k] is None else p[k].astype(np.float64) for k in "xWUbhc"}
    masks = tuple(None if m is None else m.astype(np.float64) for m in dropout)
    args = [p["x"], p["W"], p["U"], p["b"], p["h"]]
    ref_args = [wide[k] for k in "xWUbh"]
    if kind == "lstm":
        hs = R.lstm_forward(*args, p["c"], p["mask"], A.TANH, A.SIGMOID, dropout=dropout)[0]
        ref = lstm_reference(*ref_args, wide["c"], p["mask"], dropout=masks)[0]
    elif kind == "gru":
        hs = R.gru_forward(*args, p["mask"], A.TANH, A.SIGMOID, dropout=dropout)[0]
        ref = gru_reference(*ref_args, p["mask"], dropout=masks)
    else:
        (hs,) = R.simple_rnn_forward(*args, p["mask"], A.TANH, dropout=dropout)
        ref = simple_rnn_reference(*ref_args, p["mask"], dropout=masks)
    assert hs.dtype == dtype
    np.testing.assert_allclose(hs, ref, **TOL[dtype])


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@SETTINGS
@given(**sizes, inputs=st.booleans(), with_dy=st.booleans())
def test_per_gate_dropout_backward_matches_finite_differences(
    kind, steps, batch, in_dim, units, seed, use_bias, masked, inputs, with_dy
):
    p, dropout = dropout_problem(
        seed, np.float64, kind, steps, batch, in_dim, units, use_bias, masked, inputs
    )
    rng = np.random.default_rng(seed + 1)
    dy = rng.standard_normal((steps, batch, units)) if with_dy else None
    dlast = [rng.standard_normal((batch, units)) for _ in range(2 if kind == "lstm" else 1)]
    dx, dstates, dW, dU, db = run_backward(kind, p, dy, dlast, dropout=dropout)
    f = objective(kind, p, dy, dlast, dropout=dropout)
    names = ["x", "h", "c"][: 1 + len(dstates)] + ["W", "U"] + (["b"] if use_bias else [])
    grads = [dx, *dstates, dW, dU] + ([db] if use_bias else [])
    for name, grad in zip(names, grads):
        np.testing.assert_allclose(
            grad, numeric_gradient(f, p[name]), rtol=1e-5, atol=1e-7, err_msg=name
        )


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of rows as small as one row (7 rows on 3 threads: blocks of 2, 2 and 3)."""
    monkeypatch.setattr(gemm, "MIN_ROWS_PER_BLOCK", 1)
    monkeypatch.setattr(R, "LOOP_MIN_ROWS_PER_BLOCK", 1)


@pytest.mark.parametrize("kind", ["lstm", "gru", "simple_rnn"])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dropped", [False, True])
def test_time_loops_on_blocks_of_rows_match_one_block(small_blocks, kind, masked, dropped):
    """The samples of a batch are independent through time: running the loops on blocks of
    rows on several threads (``gemm.row_blocks``) changes nothing, per-gate dropout masks
    included (each block reads its own rows of them)."""
    p = problem(7, np.float64, "lstm" if kind == "lstm" else "gru", 6, 7, 5, 4, masked=masked)
    if kind == "simple_rnn":
        rng = np.random.default_rng(1)
        p["W"], p["U"], p["b"] = rng.standard_normal((5, 4)), rng.standard_normal((4, 4)), None
    rng = np.random.default_rng(2)
    dy = rng.standard_normal((6, 7, 4))
    dlast = [rng.standard_normal((7, 4)) for _ in range(2 if kind == "lstm" else 1)]
    dropout = gate_dropout(3, kind, 7, 5, 4, np.float64) if dropped else None
    whole = run_backward(kind, p, dy, dlast, a=A.TANH, dropout=dropout)
    blocks = run_backward(kind, p, dy, dlast, a=A.TANH, threads=3, dropout=dropout)
    flat = [(g, w) for got, want in zip(blocks, whole) for g, w in zip(*map(_as_list, (got, want)))]
    for got, want in flat:
        if want is not None:  # no bias: no bias gradient
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _as_list(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("kind", ["lstm", "lstm_in_python", "gru", "simple_rnn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_table_rows_input_matches_its_gathered_rows(kind, dtype, monkeypatch):
    """x as TableRows (rows of a table picked by ids): the same states and weight gradients as
    the gathered rows, and the table's gradient is the scatter-add of the gathered rows' dx.
    The LSTM's Numba loop gathers each step's projected rows itself; its Python loop (without
    BLAS for larger batches) reads them gathered first."""
    if kind == "lstm_in_python":
        monkeypatch.setattr(R, "LOOP_MAX_ROWS", 0)
        kind = "lstm"
    p = problem(7, dtype, kind if kind != "simple_rnn" else "gru", 4, 3, 2, 3, masked=True)
    p = one_gate(p) if kind == "simple_rnn" else p
    rng = np.random.default_rng(8)
    table = rng.standard_normal((5, 2)).astype(dtype)
    ids = rng.integers(0, 5, (4, 3))
    dy = rng.standard_normal((4, 3, 3)).astype(dtype)
    dlast = [rng.standard_normal((3, 3)).astype(dtype) for _ in range(2 if kind == "lstm" else 1)]
    gathered = dict(p, x=np.ascontiguousarray(table[ids]))
    dx, *ref = run_backward(kind, gathered, dy, dlast)
    dtable = np.ones_like(table)  # the backward adds into it
    rows = dict(p, x=R.table_rows(table, ids, dtable))
    none, *got = run_backward(kind, rows, dy, dlast)
    assert none is None
    for a, b in zip(got, ref):
        for x, y in zip(a, b) if isinstance(a, list) else [(a, b)]:
            np.testing.assert_allclose(x, y, **TOL[dtype])
    expected = np.ones_like(table)
    np.add.at(expected, ids.reshape(-1), dx.reshape(-1, 2))
    np.testing.assert_allclose(dtable, expected, **TOL[dtype])
