"""LSTM, GRU and SimpleRNN over whole sequences, forward and backward through time (Keras 3 math).

Layout: the sequence wrappers take time-major input ``x (T, N, in)`` in processing order (the
caller reverses it for ``go_backwards``) and a per-step boolean ``mask (T, N)`` or None. At a
masked step (``mask[t, n]`` False) the state is carried through unchanged; the step's output is
the state, so the caller gets Keras's "repeat the previous output" by reading the states.

Work per sequence: one GEMM projects the inputs of every step (``x @ kernel + bias``); each step
does one GEMM for the recurrent part (``h @ recurrent_kernel``, numpy) and one fused Numba kernel
for the gate nonlinearities and state update, which saves the gates backward needs. Where the
time loop runs in Numba with numpy's cblas gemm (what the layers pass) and x is an array, each
step projects its own inputs in the loop instead (``*_steps_forward_projecting``, two gemm calls
a step): the (T, N, G) projections never reach memory (26 MB for an LSTM(64) over 100 steps at
batch 256), and LSTM forwards measured 1.1-1.6x faster at batch 16-256, GRU 1.0-1.2x. Backward
mirrors it: a fused kernel per step for the gate derivatives, one GEMM per step back to ``h``, then
one GEMM each for the kernel, recurrent-kernel and input gradients over all steps at once.

Gate order and formulas follow Keras 3:
LSTM (i, f, c, o): ``c = f * c + i * act(z_c)``, ``h = o * act(c)``, gates by ``rec_act``.
GRU, reset_after=True (z, r, h), bias (2, 3u) = (input bias, recurrent bias):
``hh = act(x_h + r * (h @ U_h + b_rh))``, ``h = z * h_prev + (1 - z) * hh``.
GRU, reset_after=False, bias (3u,) on the input side: ``hh = act(x_h + (r * h_prev) @ U_h)``;
its step needs two products (h @ U_zr, then (r * h) @ U_h), each followed by a fused kernel.
SimpleRNN: ``h = act(x @ kernel + h_prev @ recurrent_kernel + bias)``.
Activations are the integer codes of ``kernels.codes`` (linear, relu, sigmoid, tanh).
Each sequence function also takes ``x`` as ``TableRows``, rows of a table picked by ids (an
Embedding's output): the projection is then done once per distinct row (the LSTM's Numba loop
reads each step's rows of it directly), and backward returns None for dx after adding the
table's gradient into ``TableRows.dtable``. Every sequence function takes a ``workspace``
(``kernels.workspace``) for the arrays it uses and returns (None: new arrays): a layer passes its
node's, so steps of one shape reuse them and pay no page faults.
``dropout=GateDropout(...)`` gives Keras 3's per-gate masks of the inputs and of the state (its
cells' implementation 1, which ``recurrent_dropout`` selects): the projection then runs one GEMM
per gate, and each step's recurrent product one per gate, in the Numba time loop.

The per-step kernels are serial on purpose: a step holds only N * units elements (2048 for a
batch of 32 and 64 units); ``prange`` measured no faster on 2 cores. The caller runs BLAS on one
thread (threaded BLAS between the short steps is slow) and passes ``threads``, how many threads
the big GEMMs before and after the loop (split by ``gemm.matmul``) and the time loop may use: the
samples of a batch are independent through time, so the one driver, ``_time_loop``, runs the
loop on blocks of rows at once (``gemm.row_blocks``; the step kernels release the GIL). How the
loop runs is ``plan_sequence``'s choice, the same for forward and backward: one Numba call per
block (``lstm_steps_forward`` / ``lstm_steps_backward`` and the GRU's and SimpleRNN's) when the
caller passes ``cblas``, numpy's cblas gemm for the steps' products, under recurrent dropout, or
for an LSTM's small batches; else a Python loop with a numpy product per step.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from .activations import bias_activation_forward, column_sums_add
from .codes import LINEAR, RELU, SIGMOID, TANH
from .embedding import distinct_ids, embedding_backward, embedding_forward, sum_rows_by_id
from .fastmath import F32_ONE, sigmoid32, tanh32
from .gemm import matmul, matmuls, row_blocks
from .workspace import scratch, scratch_copy, scratch_zeros


@njit(cache=True, inline="always")
def _act(z, code, zero, one):
    if code == SIGMOID:
        if z >= zero:  # split by sign so exp never overflows
            return one / (one + np.exp(-z))
        e = np.exp(z)
        return e / (one + e)
    if code == TANH:
        return np.tanh(z)
    if code == RELU:
        return z if z > zero else zero
    return z


@njit(cache=True, inline="always")
def _dact(y, code, zero, one):
    # The derivative of the activation, written in terms of its output y.
    if code == SIGMOID:
        return y * (one - y)
    if code == TANH:
        return one - y * y
    if code == RELU:
        return one if y > zero else zero
    return one


@njit(cache=True, inline="always")
def _fast_gates(act, rec_act, array):
    """True for Keras's default LSTM/GRU activations in float32: the vectorized path."""
    return act == TANH and rec_act == SIGMOID and array.itemsize == 4


# ---------------------------------------------------------------- LSTM


# The row kernels are called, not inlined into the batch loop: inlined there, LLVM left the row
# loop scalar (measured 6x slower); as separate functions each row loop vectorizes. They take the
# step's 2-D arrays and the row's index, not row views: a view per array and row cost a third of
# the time of a 16 x 64 step. They are arithmetic-bound (five tanh per unit), so they contract
# multiply-adds into FMAs (``_ROW_MATH``): a row of 64 units forward 4.3 -> 3.4 us. Only
# contraction: NaN and infinity rules are kept.
_ROW_MATH = {"contract"}


@njit(cache=True, error_model="numpy", fastmath=_ROW_MATH)
def _lstm_row32(xp, rec, c_prev, gates, h, c, b, u):
    """Row b of ``lstm_step_forward`` for tanh/sigmoid in float32."""
    for j in range(u):
        i = sigmoid32(xp[b, j] + rec[b, j])
        f = sigmoid32(xp[b, u + j] + rec[b, u + j])
        g = tanh32(xp[b, 2 * u + j] + rec[b, 2 * u + j])
        o = sigmoid32(xp[b, 3 * u + j] + rec[b, 3 * u + j])
        cc = f * c_prev[b, j] + i * g
        gates[b, j] = i
        gates[b, u + j] = f
        gates[b, 2 * u + j] = g
        gates[b, 3 * u + j] = o
        c[b, j] = cc
        h[b, j] = o * tanh32(cc)


@njit(
    cache=True, nogil=True, error_model="numpy"
)  # no ZeroDivisionError branch: the loops vectorize
def lstm_step_forward(xp, rec, h_prev, c_prev, mask, act, rec_act, gates, h, c):
    """One LSTM step: z = xp + rec (N, 4u) -> gates (N, 4u) [i, f, g, o], h, c (N, u)."""
    n, u = h.shape
    zero = h.dtype.type(0)
    one = h.dtype.type(1)
    fast = _fast_gates(act, rec_act, h)
    for b in range(n):
        if not mask[b]:
            for j in range(4 * u):
                gates[b, j] = zero
            for j in range(u):
                h[b, j] = h_prev[b, j]
                c[b, j] = c_prev[b, j]
            continue
        if fast:
            _lstm_row32(xp, rec, c_prev, gates, h, c, b, u)
            continue
        for j in range(u):
            i = _act(xp[b, j] + rec[b, j], rec_act, zero, one)
            f = _act(xp[b, u + j] + rec[b, u + j], rec_act, zero, one)
            g = _act(xp[b, 2 * u + j] + rec[b, 2 * u + j], act, zero, one)
            o = _act(xp[b, 3 * u + j] + rec[b, 3 * u + j], rec_act, zero, one)
            cc = f * c_prev[b, j] + i * g
            gates[b, j] = i
            gates[b, u + j] = f
            gates[b, 2 * u + j] = g
            gates[b, 3 * u + j] = o
            c[b, j] = cc
            h[b, j] = o * _act(cc, act, zero, one)


@njit(cache=True, error_model="numpy", fastmath=_ROW_MATH)
def _lstm_row_backward32(dy, dhr, dh, dc, c_prev, c, gates, dz, b, u):
    """Row b of ``lstm_step_backward`` for tanh/sigmoid in float32."""
    one = F32_ONE
    for j in range(u):
        dh_t = dy[b, j] + dhr[b, j] + dh[b, j]
        i = gates[b, j]
        f = gates[b, u + j]
        g = gates[b, 2 * u + j]
        o = gates[b, 3 * u + j]
        tc = tanh32(c[b, j])
        dc_t = dc[b, j] + dh_t * o * (one - tc * tc)
        dz[b, j] = dc_t * g * i * (one - i)
        dz[b, u + j] = dc_t * c_prev[b, j] * f * (one - f)
        dz[b, 2 * u + j] = dc_t * i * (one - g * g)
        dz[b, 3 * u + j] = dh_t * tc * o * (one - o)
        dc[b, j] = dc_t * f
        dh[b, j] = np.float32(0.0)


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_step_backward(dy, dhr, dh, dc, c_prev, c, gates, mask, act, rec_act, dz):
    """LSTM step backward: dz (N, 4u) from dy, dhr (N, u); carries dh, dc (N, u) updated."""
    # dL/dh_t = dy + dhr + dh with dhr = dz_{t+1} @ recurrent_kernel.T; masked rows pass it on.
    n, u = c.shape
    zero = c.dtype.type(0)
    one = c.dtype.type(1)
    fast = _fast_gates(act, rec_act, c)
    for b in range(n):
        if not mask[b]:
            for j in range(u):
                dh[b, j] += dy[b, j] + dhr[b, j]
            for j in range(4 * u):
                dz[b, j] = zero
            continue
        if fast:
            _lstm_row_backward32(dy, dhr, dh, dc, c_prev, c, gates, dz, b, u)
            continue
        for j in range(u):
            dh_t = dy[b, j] + dhr[b, j] + dh[b, j]
            i = gates[b, j]
            f = gates[b, u + j]
            g = gates[b, 2 * u + j]
            o = gates[b, 3 * u + j]
            tc = _act(c[b, j], act, zero, one)
            dc_t = dc[b, j] + dh_t * o * _dact(tc, act, zero, one)
            dz[b, j] = dc_t * g * _dact(i, rec_act, zero, one)
            dz[b, u + j] = dc_t * c_prev[b, j] * _dact(f, rec_act, zero, one)
            dz[b, 2 * u + j] = dc_t * i * _dact(g, act, zero, one)
            dz[b, 3 * u + j] = dh_t * tc * _dact(o, rec_act, zero, one)
            dc[b, j] = dc_t * f
            dh[b, j] = zero


# The LSTM's whole time loop is one Numba call per block of rows, each step's h @ recurrent_kernel
# either a call of BLAS's cblas gemm (``gemm``, a ctypes function the caller passes, for the
# arrays' dtype) or, without one, loops. With no Python per step, blocks of a few rows run in
# parallel without contending for the GIL. The loops' product is slower than BLAS's once the
# per-step overhead is amortized, so without ``gemm`` only small batches and units take this
# path (measured on 2 threads, units 64: 1.1-1.2x faster than the Python loop at batch 16-48,
# slower from 64); the rest run a Python loop with a numpy product per step.
LOOP_MAX_RECURRENT_WEIGHTS = 64 * 256  # units 64 with 4 gates: 64 KiB in float32, in L2
LOOP_MAX_ROWS = 32
# Rows per block of a time loop in Numba: it holds the GIL once per block, not once per step.
LOOP_MIN_ROWS_PER_BLOCK = 8
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112  # CBLAS enums

# The cells of ``plan_sequence``: the time loops of each cell's forward and backward.
LSTM, GRU, GRU_RESET_BEFORE, SIMPLE_RNN = "lstm", "gru", "gru_reset_before", "simple_rnn"


class SequencePlan(NamedTuple):
    """How a recurrent cell's time loop runs (``plan_sequence``)."""

    in_numba: bool  # one Numba call per block of rows; else Python, a numpy product per step
    min_rows: int | None  # fewest rows per block when split over threads (None: gemm's default)


def plan_sequence(
    cell: str, batch: int, units: int, cblas: bool, recurrent_dropout: bool
) -> SequencePlan:
    """How the time loops of ``cell`` (LSTM, GRU, GRU_RESET_BEFORE or SIMPLE_RNN) run, forward
    and backward, for ``batch`` rows of ``units`` units: in one Numba call per block of rows
    with a cblas gemm (``cblas``) or under per-gate recurrent dropout, and for the LSTM also
    when its recurrent kernel and batch are small enough for the loops' own product; else in
    Python, with a numpy product per step. A reset_after=False GRU's steps run in Python."""
    if cell == GRU_RESET_BEFORE:
        in_numba = False
    elif cblas or recurrent_dropout:
        in_numba = True
    else:
        small = units * 4 * units <= LOOP_MAX_RECURRENT_WEIGHTS and batch <= LOOP_MAX_ROWS
        in_numba = cell == LSTM and small
    return SequencePlan(in_numba, LOOP_MIN_ROWS_PER_BLOCK if in_numba else None)


def _time_loop(plan, in_numba, in_python, rows, threads):
    """The one sequence driver: the time loop on blocks of rows, on up to ``threads`` threads,
    as ``plan`` says: ``in_numba(r0, r1)`` (one Numba call) or ``in_python(r0, r1)``."""
    row_blocks(in_numba if plan.in_numba else in_python, rows, threads, plan.min_rows)


@njit(cache=True, nogil=True, error_model="numpy")
def _times(a, w, out):
    """out (n, G) = a (n, k) @ w (k, G), as loops (a recurrent step's small product)."""
    for b in range(a.shape[0]):
        row = out[b]
        for j in range(w.shape[1]):
            row[j] = 0
        for k in range(a.shape[1]):
            v = a[b, k]
            wk = w[k]
            for j in range(w.shape[1]):
                row[j] += v * wk[j]


@njit(cache=True, nogil=True, error_model="numpy")
def _step_product(gemm, a, w, transpose, out, beta=0.0):
    """out (n, G) = a (n, k) @ w (k, G), or @ w.T for w (G, k) with ``transpose``, plus ``beta``
    times out; a and out are rows of C arrays. One call of ``gemm`` (cblas, row-major), or
    loops on w when it is None (then ``transpose`` and ``beta`` are ignored: pass w as (k, G))."""
    if gemm is None:
        _times(a, w, out)
        return
    n, k = a.shape
    if n == 0:
        return
    g = out.shape[1]
    item = a.itemsize
    trans = _TRANS if transpose else _NO_TRANS
    gemm(
        _ROW_MAJOR, _NO_TRANS, trans, n, g, k, 1.0, a.ctypes.data, a.strides[0] // item,
        w.ctypes.data, w.strides[0] // item, beta, out.ctypes.data, out.strides[0] // item,
    )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _recurrent_product(gemm, h, keep, r0, w, dropped, out):
    """out (n, Gu) = h (n, u) @ w (u, Gu) by ``_step_product``; with keep (G, N, u) (per-gate
    recurrent dropout) gate g's columns are (h * keep[g, r0:r0 + n]) @ w's columns of gate g,
    through ``dropped`` (n, u) dropped."""
    if keep is None:
        _step_product(gemm, h, w, False, out)
        return
    n, u = h.shape
    for g in range(keep.shape[0]):
        for b in range(n):
            for j in range(u):
                dropped[b, j] = h[b, j] * keep[g, r0 + b, j]
        _step_product(gemm, dropped, w[:, g * u : (g + 1) * u], False, out[:, g * u : (g + 1) * u])


@njit(cache=True, nogil=True, error_model="numpy")
def _recurrent_product_t(gemm, dz, keep, r0, w, part, dh):
    """dh (n, u) = dz (n, Gu) @ U.T for U (u, Gu), given as w = U with ``gemm`` or w = U.T (Gu, u)
    for the loops; with keep (G, N, u) the sum over gates g of (dz_g @ U_g.T) * keep[g, r0:r0 + n]
    (the gradient through per-gate recurrent dropout), through ``part`` (n, u) dropped."""
    if keep is None:
        _step_product(gemm, dz, w, True, dh)
        return
    n, u = dh.shape
    for g in range(keep.shape[0]):
        block = dz[:, g * u : (g + 1) * u]
        if gemm is None:
            _step_product(gemm, block, w[g * u : (g + 1) * u], True, part)
        else:
            _step_product(gemm, block, w[:, g * u : (g + 1) * u], True, part)
        for b in range(n):
            for j in range(u):
                v = part[b, j] * keep[g, r0 + b, j]
                dh[b, j] = v if g == 0 else dh[b, j] + v


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_steps_forward(
    xp, recurrent_kernel, hs, cs, mask, act, rec_act, gates, r0, r1, gemm, keep=None, rows=None
):
    """Every step of ``lstm_step_forward`` for rows r0..r1, h @ recurrent_kernel by ``gemm`` or
    loops (``_recurrent_product``, through keep (G, N, u) or None); xp (T * N, 4u) step by
    step, or with rows (T, N) int64 projected rows (R, 4u) each step gathers from
    (``_project_rows``); hs / cs (T+1, N, u), mask (T, N), gates (T, N, 4u), or (1, N, 4u)
    that each step overwrites, as ``lstm_forward``."""
    rec = np.empty((r1 - r0, recurrent_kernel.shape[1]), dtype=xp.dtype)
    dropped = np.empty((r1 - r0, recurrent_kernel.shape[0]), dtype=xp.dtype)
    gathered = np.empty((r1 - r0, recurrent_kernel.shape[1]), dtype=xp.dtype)
    steps, n = mask.shape
    for t in range(steps):
        _recurrent_product(gemm, hs[t, r0:r1], keep, r0, recurrent_kernel, dropped, rec)
        lstm_step_forward(
            _step_inputs(xp, rows, t * n + r0, t * n + r1, gathered), rec, hs[t, r0:r1],
            cs[t, r0:r1], mask[t, r0:r1], act, rec_act,
            gates[t if gates.shape[0] == steps else 0, r0:r1], hs[t + 1, r0:r1], cs[t + 1, r0:r1],
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_steps_forward_projecting(
    x, kernel, bias_rows, recurrent_kernel, hs, cs, mask, act, rec_act, gates, r0, r1, gemm
):
    """``lstm_steps_forward`` for rows r0..r1 that projects each step's inputs in the loop:
    z = x[t, r0:r1] @ kernel + h @ recurrent_kernel, two calls of ``gemm``, plus bias_rows
    (r1 - r0, 4u), the bias on every row; x (T, N, in). The (T, N, 4u) projections of
    ``lstm_forward``'s one GEMM never reach memory."""
    rec = np.empty((r1 - r0, recurrent_kernel.shape[1]), dtype=x.dtype)
    steps = mask.shape[0]
    for t in range(steps):
        _step_product(gemm, x[t, r0:r1], kernel, False, rec)
        _step_product(gemm, hs[t, r0:r1], recurrent_kernel, False, rec, 1.0)
        lstm_step_forward(
            bias_rows, rec, hs[t, r0:r1], cs[t, r0:r1], mask[t, r0:r1], act, rec_act,
            gates[t if gates.shape[0] == steps else 0, r0:r1], hs[t + 1, r0:r1], cs[t + 1, r0:r1],
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def _step_inputs(xp, rows, start, stop, out):
    """Rows start..stop of the steps' projected inputs: those of xp (T * N, G), or with rows
    (T, N) the rows of xp (R, G) that rows.reshape(-1)[start:stop] pick, gathered into out."""
    if rows is None:
        return xp[start:stop]
    picks = rows.reshape(-1)
    for b in range(stop - start):
        row = picks[start + b]
        for j in range(out.shape[1]):
            out[b, j] = xp[row, j]
    return out


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_steps_backward(
    dy, recurrent_kernel, recurrent_t, cs, gates, mask, act, rec_act, dhr, dh, dc, dz, r0, r1, gemm,
    keep=None,
):  # fmt: skip
    """Every step of ``lstm_step_backward`` for rows r0..r1, latest first, with dz @
    recurrent_kernel.T by ``gemm`` on recurrent_kernel (u, 4u), or loops on ``recurrent_t``
    (4u, u), through keep as forward; dy (T, N, u), or (1, N, u) zeros for none; dhr, dh, dc
    (N, u) carried; dz (T, N, 4u) filled."""
    steps = gates.shape[0]
    weights = recurrent_t if gemm is None else recurrent_kernel
    part = np.empty((r1 - r0, dh.shape[1]), dtype=dh.dtype)
    for t in range(steps - 1, -1, -1):
        lstm_step_backward(
            dy[t if dy.shape[0] == steps else 0, r0:r1], dhr[r0:r1], dh[r0:r1], dc[r0:r1],
            cs[t, r0:r1], cs[t + 1, r0:r1], gates[t, r0:r1], mask[t, r0:r1], act, rec_act,
            dz[t, r0:r1],
        )  # fmt: skip
        _recurrent_product_t(gemm, dz[t, r0:r1], keep, r0, weights, part, dhr[r0:r1])


class TableRows(NamedTuple):
    """A sequence input given as rows of a table, such as an Embedding's output never gathered:
    step t of sample n is ``table[ids[t, n]]``. The input projection then runs once on each
    distinct row the ids pick (at most min(V, T * N) rows, fewer when ids repeat), and the
    backward adds the table's gradient into ``dtable`` unless None, instead of returning dx.
    Make one with ``table_rows``, which finds the distinct rows and gathers them."""

    table: np.ndarray  # (V, in)
    ids: np.ndarray  # (T, N) int64, time-major
    used: np.ndarray  # (U,) int64: the distinct ids, in first-seen order
    inverse: np.ndarray  # (T * N,) int64: used[inverse] == ids.reshape(-1)
    rows: np.ndarray  # (U, in): table[used]
    dtable: np.ndarray | None = None  # (V, in)


class GateDropout(NamedTuple):
    """Keras 3's dropout under ``recurrent_dropout`` (its cells' implementation 1): each gate has
    its own masks, the same at every step. Gate g's input projection reads ``x * inputs[g]`` and
    its recurrent product ``h * recurrent[g]``; the masks hold 0 or 1 / (1 - rate)."""

    inputs: np.ndarray | None  # (G, N, in), or None for no input dropout
    recurrent: np.ndarray  # (G, N, u)


def table_rows(table, ids, dtable=None, workspace=None) -> TableRows:
    """``TableRows`` of table (V, in) picked by ids (T, N) int64, time-major, in [0, V)."""
    ids = scratch_copy(workspace, "ids", ids, np.int64)
    position = scratch(workspace, "position", (table.shape[0],), np.int64)
    used = scratch(workspace, "used", (_most_rows(table, ids),), np.int64)
    inverse = scratch(workspace, "inverse", (ids.size,), np.int64)
    count = distinct_ids(ids.reshape(-1), position, used, inverse)
    rows = scratch(workspace, "used_rows", (len(used), table.shape[1]), table.dtype)[:count]
    embedding_forward(table, used[:count], rows)
    return TableRows(table, ids, used[:count], inverse, rows, dtable)


def _most_rows(table, ids):
    """How many distinct rows ids can pick: arrays sized by it keep one shape across batches."""
    return min(table.shape[0], ids.size)


def _contiguous(x, dtype=None):
    return x if isinstance(x, TableRows) else np.ascontiguousarray(x, dtype)


def sequence_shape(x):
    """(T, N, dtype) of a sequence input: an array (T, N, in) or TableRows."""
    if isinstance(x, TableRows):
        return (*x.ids.shape, x.table.dtype)
    return (*x.shape[:2], x.dtype)


def _project(x, kernel, bias, workspace, threads, dropout=None):
    """Every step's input projection (T, N, G): x (T, N, in) or TableRows, times kernel (in, G),
    plus bias (G,) or None; one GEMM for every step (or for every distinct row of the table), or
    one per gate under ``GateDropout`` input masks."""
    xp, rows = _project_rows(x, kernel, bias, workspace, threads, dropout)
    return xp if rows is None else _gather_steps(xp, rows, workspace)


def _gather_steps(projected, rows, workspace):
    """(T, N, G) from projected rows (R, G) and rows (T, N) int64 of them."""
    xp = scratch(workspace, "xp", (rows.size, projected.shape[1]), projected.dtype)
    embedding_forward(projected, rows.reshape(-1), xp)
    return xp.reshape(*rows.shape, projected.shape[1])


def _project_rows(x, kernel, bias, workspace, threads, dropout=None):
    """``_project``'s result as (xp (T, N, G), None), or for TableRows as (the projected distinct
    rows (U, G), rows (T, N) int64): step t of sample n is projected[rows[t, n]]."""
    steps, n, dtype = sequence_shape(x)
    width = kernel.shape[1]
    keep = None if dropout is None else dropout.inputs
    if isinstance(x, TableRows):
        if keep is not None:
            raise ValueError("per-gate input dropout needs the input as an array, not TableRows")
        projected = scratch(workspace, "projected", (_most_rows(x.table, x.ids), width), dtype)
        projected = _affine(x.rows, kernel, bias, threads, projected[: len(x.rows)])
        return projected, x.inverse.reshape(steps, n)
    xp = scratch(workspace, "xp", (steps * n, width), dtype)
    if keep is None:
        _affine(x.reshape(steps * n, x.shape[2]), kernel, bias, threads, xp)
    else:
        for _, columns, x_g in _per_gate(x, keep, width, workspace, "dropped_x"):
            matmul(x_g, kernel[:, columns], xp[:, columns], threads=threads)
        if bias is not None:
            bias_activation_forward(xp, bias, LINEAR, xp)
    return xp.reshape(steps, n, width), None


def _per_gate(x, keep, width, workspace, name):
    """(g, gate g's columns of a width-G*u array, x * keep[g] as (T * N, k)) for each gate g, from
    x (T, N, k) and keep (G, N, k); the products share one buffer, overwritten for each gate."""
    gates = keep.shape[0]
    units = width // gates
    dropped = scratch(workspace, name, x.shape, x.dtype)
    flat = dropped.reshape(-1, x.shape[2])
    for g in range(gates):
        np.multiply(x, keep[g], out=dropped)
        yield g, slice(g * units, (g + 1) * units), flat


def _affine(x, kernel, bias, threads, out):
    """out (M, G) = x (M, in) @ kernel (in, G) + bias (G,) or None, on up to ``threads``."""
    matmul(x, kernel, out, threads=threads)
    if bias is not None:
        bias_activation_forward(out, bias, LINEAR, out)
    return out


def _step_grads(dy, n, units, dtype, workspace):
    """dy (T, N, u) contiguous, or for None a zero step's gradient (1, N, u) read at every step."""
    if dy is None:
        return scratch_zeros(workspace, "no_dy", (1, n, units), dtype)
    return _contiguous(dy, dtype)


def _recurrent_keep(dropout):
    """The recurrent masks (G, N, u) of a ``GateDropout``, or None."""
    return None if dropout is None else np.ascontiguousarray(dropout.recurrent)


def _all_steps(mask, steps, n, workspace):
    if mask is not None:
        return np.ascontiguousarray(mask)
    every = scratch(workspace, "every_step", (steps, n), np.bool_)
    every.fill(True)
    return every


def lstm_forward(
    x, kernel, recurrent_kernel, bias, h0, c0, mask, act, rec_act, workspace=None, threads=1,
    cblas=None, dropout=None, keep_gates=True,
):  # fmt: skip
    """(hs, cs, gates): states hs, cs (T+1, N, u) from h0, c0 (N, u) and gates (T, N, 4u), the
    gates None unless ``keep_gates`` (an inference pass, with no backward, writes no gates).

    x (T, N, in) time-major, kernel (in, 4u), recurrent_kernel (u, 4u), bias (4u,) or None,
    mask (T, N) bool or None. hs[t + 1] is the output of step t (carried over masked steps).
    ``workspace``: where the arrays used and returned come from (``workspace.scratch``; None:
    new ones). ``threads``: how many threads the products and blocks of rows may use.
    ``cblas``: numpy's cblas gemm for x's dtype (a ctypes function) for the steps' products, or
    None (loops or numpy; see ``plan_sequence``).
    ``dropout``: a ``GateDropout`` (keep masks per gate), or None; it runs the loop in Numba.
    """
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    hs = scratch(workspace, "hs", (steps + 1, n, units), dtype)
    cs = scratch(workspace, "cs", (steps + 1, n, units), dtype)
    hs[0] = h0
    cs[0] = c0
    # Without keep_gates every step writes the gates of one step: (T, N, 4u) floats never reach
    # memory (lstm_text's inference at batch 256 wrote 26 MB of them).
    gates = scratch(workspace, "gates", (steps if keep_gates else 1, n, 4 * units), dtype)
    if _projects_in_loop(x, kernel, cblas, dropout):
        bias_rows = _bias_rows(bias, n, 4 * units, dtype, workspace)

        def projecting(r0, r1):
            lstm_steps_forward_projecting(
                x, kernel, bias_rows[r0:r1], recurrent_kernel, hs, cs, mask, act, rec_act, gates,
                r0, r1, cblas,
            )  # fmt: skip

        _time_loop(plan_sequence(LSTM, n, units, True, False), projecting, None, n, threads)
        return hs, cs, (gates if keep_gates else None)
    # From an Embedding's table rows the Numba loop gathers each step's projected rows itself:
    # the (T, N, 4u) projections are never written out (26 MB at batch 256 of lstm_text).
    xp, rows = _project_rows(x, kernel, bias, workspace, threads, dropout)
    rec = scratch(workspace, "rec", (n, 4 * units), dtype)
    keep = _recurrent_keep(dropout)
    plan = plan_sequence(LSTM, n, units, cblas is not None, keep is not None)
    if rows is not None and not plan.in_numba:
        xp, rows = _gather_steps(xp, rows, workspace), None

    def in_numba(r0, r1):
        lstm_steps_forward(
            xp.reshape(-1, xp.shape[-1]), recurrent_kernel, hs, cs, mask, act, rec_act, gates,
            r0, r1, cblas, keep, rows,
        )  # fmt: skip

    def in_python(r0, r1):
        xp_, hs_, cs_, mask_, gates_ = (a[:, r0:r1] for a in (xp, hs, cs, mask, gates))
        rec_ = rec[r0:r1]
        for t in range(steps):
            np.matmul(hs_[t], recurrent_kernel, out=rec_)
            lstm_step_forward(
                xp_[t], rec_, hs_[t], cs_[t], mask_[t], act, rec_act,
                gates_[t if keep_gates else 0], hs_[t + 1], cs_[t + 1],
            )  # fmt: skip

    _time_loop(plan, in_numba, in_python, n, threads)
    return hs, cs, (gates if keep_gates else None)


def _projects_in_loop(x, kernel, cblas, dropout) -> bool:
    """Whether a forward projects each step's inputs in its Numba time loop, by ``cblas``: for
    an array x without per-gate input dropout and a C-contiguous kernel (cblas reads its rows)."""
    if cblas is None or dropout is not None or isinstance(x, TableRows):
        return False
    return kernel.flags.c_contiguous and kernel.dtype == x.dtype


def _bias_rows(bias, n, width, dtype, workspace):
    """(n, width): the bias (width,) on every row, or zeros for None."""
    rows = scratch(workspace, "bias_rows", (n, width), dtype)
    rows[...] = 0 if bias is None else bias
    return rows


def lstm_backward(
    x,
    kernel,
    recurrent_kernel,
    hs,
    cs,
    gates,
    mask,
    act,
    rec_act,
    dy,
    dh_last,
    dc_last,
    dkernel=None,
    drecurrent_kernel=None,
    dbias=None,
    workspace=None,
    threads=1,
    cblas=None,
    dropout=None,
):
    """(dx (T, N, in), dh0, dc0 (N, u)) from dy (T, N, u) or None and dh_last, dc_last (N, u).

    dy is the gradient of each step's output hs[t + 1]; dh_last / dc_last that of the final
    states. Adds into dkernel (in, 4u), drecurrent_kernel (u, 4u), dbias (4u,) unless None.
    ``dropout``: the forward's ``GateDropout``, or None; the rest as ``lstm_forward``. The
    independent weight and input gradients' products run side by side when worth it.
    """
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    dh = scratch_copy(workspace, "dh", dh_last, dtype)
    dc = scratch_copy(workspace, "dc", dc_last, dtype)
    dhr = scratch_zeros(workspace, "dhr", (n, units), dtype)
    dy = _step_grads(dy, n, units, dtype, workspace)
    dz = scratch(workspace, "dz", (steps, n, 4 * units), dtype)
    recurrent_t = (
        recurrent_kernel
        if cblas is not None
        else scratch_copy(workspace, "recurrent_t", recurrent_kernel.T, dtype)
    )  # the loops' layout; gemm reads recurrent_kernel transposed

    keep = _recurrent_keep(dropout)

    def in_numba(r0, r1):
        lstm_steps_backward(
            dy, recurrent_kernel, recurrent_t, cs, gates, mask, act, rec_act, dhr, dh, dc, dz,
            r0, r1, cblas, keep,
        )  # fmt: skip

    def in_python(r0, r1):
        cs_, gates_, mask_, dz_ = (a[:, r0:r1] for a in (cs, gates, mask, dz))
        dhr_, dh_, dc_ = dhr[r0:r1], dh[r0:r1], dc[r0:r1]
        for t in range(steps - 1, -1, -1):
            dy_t = dy[t if len(dy) == steps else 0, r0:r1]
            lstm_step_backward(
                dy_t, dhr_, dh_, dc_, cs_[t], cs_[t + 1], gates_[t], mask_[t], act, rec_act,
                dz_[t],
            )  # fmt: skip
            np.matmul(dz_[t], recurrent_t, out=dhr_)

    plan = plan_sequence(LSTM, n, units, cblas is not None, keep is not None)
    _time_loop(plan, in_numba, in_python, n, threads)
    dh += dhr
    dx = _input_side(
        x, kernel, hs, dz, dz, dkernel, drecurrent_kernel, dbias, None, workspace, threads, dropout
    )
    return dx, dh, dc


def _input_side(
    x, kernel, hs, dxp, drec, dkernel, drecurrent_kernel, dbias_in, dbias_rec, workspace, threads,
    dropout=None,
):  # fmt: skip
    """Weight gradients over all steps at once (one GEMM each, or one per gate through
    ``GateDropout`` masks) and dx = dxp @ kernel.T, the kernel's and the input's products
    side by side when worth it (``gemm.matmuls``); for TableRows input, the table's gradient is
    added into its dtable and dx is None."""
    steps, n, _ = dxp.shape
    dxp2 = dxp.reshape(steps * n, dxp.shape[2])
    drec2 = drec.reshape(steps * n, drec.shape[2])
    if drecurrent_kernel is not None:
        keep = None if dropout is None else dropout.recurrent
        _state_side(hs, drec2, keep, drecurrent_kernel, workspace, threads)
    if dbias_rec is not None:
        column_sums_add(drec2, dbias_rec)
    if isinstance(x, TableRows):
        # Each step's gradient summed into its row first (the bias gradient in the same pass):
        # then the GEMMs run on the U rows used.
        most = _most_rows(x.table, x.ids)
        per_row = scratch(workspace, "per_row", (most, dxp2.shape[1]), dxp2.dtype)[: len(x.used)]
        no_bias = np.empty(0, dxp2.dtype)
        sum_rows_by_id(dxp2, x.inverse, per_row, no_bias if dbias_in is None else dbias_in)
        products = [] if dkernel is None else [(x.rows.T, per_row, dkernel, True)]
        if x.dtable is not None:
            drows = scratch(workspace, "drows", (most, kernel.shape[0]), dxp2.dtype)[: len(x.used)]
            products.append((per_row, kernel.T, drows, False))
        matmuls(products, threads)
        if x.dtable is not None:
            embedding_backward(drows, x.used, x.dtable)
        return None
    if dbias_in is not None:
        column_sums_add(dxp2, dbias_in)
    if dropout is not None and dropout.inputs is not None:
        return _input_grads_per_gate(x, kernel, dxp2, dkernel, dropout.inputs, workspace, threads)
    dx = scratch(workspace, "dx", x.shape, x.dtype)
    x2 = x.reshape(steps * n, x.shape[2])
    products = [] if dkernel is None else [(x2.T, dxp2, dkernel, True)]
    products.append((dxp2, kernel.T, dx.reshape(x2.shape), False))
    matmuls(products, threads)
    return dx


def _state_side(hs, drec2, keep, drecurrent_kernel, workspace, threads):
    """Adds hs[:-1] (T, N, u) .T @ drec2 (T * N, Gu) into drecurrent_kernel (u, Gu): one GEMM, or
    one per gate through the states dropped by keep (G, N, u) (recurrent dropout) unless None."""
    if keep is None:
        states = hs[:-1].reshape(drec2.shape[0], hs.shape[2])
        matmul(states.T, drec2, drecurrent_kernel, accumulate=True, threads=threads)
        return
    for _, columns, h_g in _per_gate(hs[:-1], keep, drec2.shape[1], workspace, "dropped_h"):
        matmul(h_g.T, drec2[:, columns], drecurrent_kernel[:, columns], True, threads)


def _input_grads_per_gate(x, kernel, dxp2, dkernel, keep, workspace, threads):
    """dx (T, N, in) = the sum over gates g of (dxp_g @ kernel_g.T) * keep[g], adding
    (x * keep[g]).T @ dxp_g into dkernel's gate-g columns unless None (per-gate input dropout)."""
    dx = scratch_zeros(workspace, "dx", x.shape, x.dtype)
    part = scratch(workspace, "dx_gate", x.shape, x.dtype)
    for g, columns, x_g in _per_gate(x, keep, dxp2.shape[1], workspace, "dropped_x"):
        if dkernel is not None:
            matmul(x_g.T, dxp2[:, columns], dkernel[:, columns], True, threads)
        matmul(dxp2[:, columns], kernel[:, columns].T, part.reshape(x_g.shape), threads=threads)
        part *= keep[g]
        dx += part
    return dx


# ---------------------------------------------------------------- GRU


@njit(cache=True, error_model="numpy", fastmath=_ROW_MATH)
def _gru_row32(xp, rec, rbias, h_prev, gates, h, b, u):
    """Row b of ``gru_step_forward`` for tanh/sigmoid in float32."""
    one = F32_ONE
    for j in range(u):
        z = sigmoid32(xp[b, j] + (rec[b, j] + rbias[j]))
        r = sigmoid32(xp[b, u + j] + (rec[b, u + j] + rbias[u + j]))
        rh = rec[b, 2 * u + j] + rbias[2 * u + j]
        hh = tanh32(xp[b, 2 * u + j] + r * rh)
        gates[b, j] = z
        gates[b, u + j] = r
        gates[b, 2 * u + j] = hh
        gates[b, 3 * u + j] = rh
        h[b, j] = z * h_prev[b, j] + (one - z) * hh


@njit(
    cache=True, nogil=True, error_model="numpy"
)  # no ZeroDivisionError branch: the loops vectorize
def gru_step_forward(xp, rec, rbias, h_prev, mask, act, rec_act, gates, h):
    """One GRU step: xp, rec (N, 3u), rbias (3u,) -> gates (N, 4u) [z, r, hh, rh], h (N, u)."""
    n, u = h.shape
    zero = h.dtype.type(0)
    one = h.dtype.type(1)
    fast = _fast_gates(act, rec_act, h)
    for b in range(n):
        if not mask[b]:
            for j in range(4 * u):
                gates[b, j] = zero
            for j in range(u):
                h[b, j] = h_prev[b, j]
            continue
        if fast:
            _gru_row32(xp, rec, rbias, h_prev, gates, h, b, u)
            continue
        for j in range(u):
            z = _act(xp[b, j] + (rec[b, j] + rbias[j]), rec_act, zero, one)
            r = _act(xp[b, u + j] + (rec[b, u + j] + rbias[u + j]), rec_act, zero, one)
            rh = rec[b, 2 * u + j] + rbias[2 * u + j]
            hh = _act(xp[b, 2 * u + j] + r * rh, act, zero, one)
            gates[b, j] = z
            gates[b, u + j] = r
            gates[b, 2 * u + j] = hh
            gates[b, 3 * u + j] = rh
            h[b, j] = z * h_prev[b, j] + (one - z) * hh


@njit(cache=True, nogil=True)
def gru_step_backward(dy, dhr, dh, h_prev, gates, mask, act, rec_act, dxp, drec):
    """GRU step backward: dxp, drec (N, 3u) from dy, dhr (N, u); carry dh (N, u) updated."""
    # dxp / drec: gradients of the input-side / recurrent-side preactivations (they differ in
    # the candidate's third: drec_h = dxp_h * r). dL/dh_t = dy + dhr + dh as for the LSTM.
    n, u = h_prev.shape
    zero = h_prev.dtype.type(0)
    one = h_prev.dtype.type(1)
    for b in range(n):
        if not mask[b]:
            for j in range(u):
                dh[b, j] += dy[b, j] + dhr[b, j]
            for j in range(3 * u):
                dxp[b, j] = zero
                drec[b, j] = zero
            continue
        for j in range(u):
            dh_t = dy[b, j] + dhr[b, j] + dh[b, j]
            z = gates[b, j]
            r = gates[b, u + j]
            hh = gates[b, 2 * u + j]
            rh = gates[b, 3 * u + j]
            da = dh_t * (one - z) * _dact(hh, act, zero, one)
            dzp = dh_t * (h_prev[b, j] - hh) * _dact(z, rec_act, zero, one)
            drp = da * rh * _dact(r, rec_act, zero, one)
            dxp[b, j] = dzp
            dxp[b, u + j] = drp
            dxp[b, 2 * u + j] = da
            drec[b, j] = dzp
            drec[b, u + j] = drp
            drec[b, 2 * u + j] = da * r
            dh[b, j] = dh_t * z


@njit(cache=True, nogil=True, error_model="numpy")
def gru_steps_forward(
    xp, recurrent_kernel, rbias, hs, mask, act, rec_act, gates, r0, r1, gemm, keep=None
):
    """Every step of ``gru_step_forward`` for rows r0..r1, h @ recurrent_kernel by ``gemm`` or
    loops through keep as ``lstm_steps_forward``; xp (T, N, 3u), hs (T+1, N, u), mask (T, N),
    gates (T, N, 4u) as ``gru_forward``."""
    rec = np.empty((r1 - r0, recurrent_kernel.shape[1]), dtype=xp.dtype)
    dropped = np.empty((r1 - r0, recurrent_kernel.shape[0]), dtype=xp.dtype)
    for t in range(xp.shape[0]):
        _recurrent_product(gemm, hs[t, r0:r1], keep, r0, recurrent_kernel, dropped, rec)
        gru_step_forward(
            xp[t, r0:r1], rec, rbias, hs[t, r0:r1], mask[t, r0:r1], act, rec_act,
            gates[t, r0:r1], hs[t + 1, r0:r1],
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def gru_steps_forward_projecting(
    x, kernel, bias_rows, recurrent_kernel, rbias, hs, mask, act, rec_act, gates, r0, r1, gemm
):
    """``gru_steps_forward`` for rows r0..r1 that projects each step's inputs in the loop, as
    ``lstm_steps_forward_projecting``: x[t, r0:r1] @ kernel plus bias_rows (r1 - r0, 3u), the
    input bias on every row, by ``gemm``."""
    xp = np.empty((r1 - r0, kernel.shape[1]), dtype=x.dtype)
    rec = np.empty((r1 - r0, recurrent_kernel.shape[1]), dtype=x.dtype)
    for t in range(mask.shape[0]):
        xp[:] = bias_rows
        _step_product(gemm, x[t, r0:r1], kernel, False, xp, 1.0)
        _step_product(gemm, hs[t, r0:r1], recurrent_kernel, False, rec)
        gru_step_forward(
            xp, rec, rbias, hs[t, r0:r1], mask[t, r0:r1], act, rec_act, gates[t, r0:r1],
            hs[t + 1, r0:r1],
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def gru_steps_backward(
    dy, recurrent_kernel, recurrent_t, hs, gates, mask, act, rec_act, dhr, dh, dxp, drec, r0, r1,
    gemm, keep=None,
):  # fmt: skip
    """Every step of ``gru_step_backward`` for rows r0..r1, latest first, dhr = drec @
    recurrent_kernel.T by ``gemm`` on recurrent_kernel (u, 3u), or loops on ``recurrent_t``
    (3u, u), through keep as forward; dy (T, N, u), or (1, N, u) zeros for none; dhr, dh (N, u)
    carried; dxp, drec (T, N, 3u) filled."""
    steps = gates.shape[0]
    weights = recurrent_t if gemm is None else recurrent_kernel
    part = np.empty((r1 - r0, dh.shape[1]), dtype=dh.dtype)
    for t in range(steps - 1, -1, -1):
        gru_step_backward(
            dy[t if dy.shape[0] == steps else 0, r0:r1], dhr[r0:r1], dh[r0:r1], hs[t, r0:r1],
            gates[t, r0:r1], mask[t, r0:r1], act, rec_act, dxp[t, r0:r1], drec[t, r0:r1],
        )  # fmt: skip
        _recurrent_product_t(gemm, drec[t, r0:r1], keep, r0, weights, part, dhr[r0:r1])


def gru_forward(
    x, kernel, recurrent_kernel, bias, h0, mask, act, rec_act, workspace=None, threads=1,
    cblas=None, dropout=None,
):  # fmt: skip
    """(hs, gates): states hs (T+1, N, u) from h0 (N, u) and gates (T, N, 4u) [z, r, hh, rh].

    x (T, N, in) time-major, kernel (in, 3u), recurrent_kernel (u, 3u), bias (2, 3u) or None,
    mask (T, N) bool or None. hs[t + 1] is the output of step t (carried over masked steps).
    ``workspace``, ``threads``, ``cblas`` and ``dropout`` as for ``lstm_forward``.
    """
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    rbias = scratch_zeros(workspace, "rbias", (3 * units,), dtype) if bias is None else bias[1]
    hs = scratch(workspace, "hs", (steps + 1, n, units), dtype)
    hs[0] = h0
    gates = scratch(workspace, "gates", (steps, n, 4 * units), dtype)
    if _projects_in_loop(x, kernel, cblas, dropout):
        bias_rows = _bias_rows(None if bias is None else bias[0], n, 3 * units, dtype, workspace)

        def projecting(r0, r1):
            gru_steps_forward_projecting(
                x, kernel, bias_rows[r0:r1], recurrent_kernel, rbias, hs, mask, act, rec_act,
                gates, r0, r1, cblas,
            )  # fmt: skip

        _time_loop(plan_sequence(GRU, n, units, True, False), projecting, None, n, threads)
        return hs, gates
    xp = _project(x, kernel, None if bias is None else bias[0], workspace, threads, dropout)
    rec = scratch(workspace, "rec", (n, 3 * units), dtype)
    keep = _recurrent_keep(dropout)

    def in_numba(r0, r1):
        gru_steps_forward(
            xp, recurrent_kernel, rbias, hs, mask, act, rec_act, gates, r0, r1, cblas, keep
        )

    def in_python(r0, r1):
        xp_, hs_, mask_, gates_ = (a[:, r0:r1] for a in (xp, hs, mask, gates))
        rec_ = rec[r0:r1]
        for t in range(steps):
            np.matmul(hs_[t], recurrent_kernel, out=rec_)
            gru_step_forward(
                xp_[t], rec_, rbias, hs_[t], mask_[t], act, rec_act, gates_[t], hs_[t + 1]
            )

    plan = plan_sequence(GRU, n, units, cblas is not None, keep is not None)
    _time_loop(plan, in_numba, in_python, n, threads)
    return hs, gates


def gru_backward(
    x,
    kernel,
    recurrent_kernel,
    hs,
    gates,
    mask,
    act,
    rec_act,
    dy,
    dh_last,
    dkernel=None,
    drecurrent_kernel=None,
    dbias=None,
    workspace=None,
    threads=1,
    cblas=None,
    dropout=None,
):
    """(dx (T, N, in), dh0 (N, u)) from dy (T, N, u) or None and dh_last (N, u).

    Adds into dkernel (in, 3u), drecurrent_kernel (u, 3u), dbias (2, 3u) unless None.
    ``dropout``: the forward's ``GateDropout``, or None; the rest as ``lstm_backward``.
    """
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    dh = scratch_copy(workspace, "dh", dh_last, dtype)
    dhr = scratch_zeros(workspace, "dhr", (n, units), dtype)
    dy = _step_grads(dy, n, units, dtype, workspace)
    dxp = scratch(workspace, "dxp", (steps, n, 3 * units), dtype)
    drec = scratch(workspace, "drec", (steps, n, 3 * units), dtype)
    recurrent_t = (
        recurrent_kernel
        if cblas is not None
        else scratch_copy(workspace, "recurrent_t", recurrent_kernel.T, dtype)
    )  # the loops' layout; gemm reads recurrent_kernel transposed

    keep = _recurrent_keep(dropout)

    def in_numba(r0, r1):
        gru_steps_backward(
            dy, recurrent_kernel, recurrent_t, hs, gates, mask, act, rec_act, dhr, dh, dxp, drec,
            r0, r1, cblas, keep,
        )  # fmt: skip

    def in_python(r0, r1):
        hs_, gates_, mask_, dxp_, drec_ = (a[:, r0:r1] for a in (hs, gates, mask, dxp, drec))
        dhr_, dh_ = dhr[r0:r1], dh[r0:r1]
        for t in range(steps - 1, -1, -1):
            dy_t = dy[t if len(dy) == steps else 0, r0:r1]
            gru_step_backward(
                dy_t, dhr_, dh_, hs_[t], gates_[t], mask_[t], act, rec_act, dxp_[t], drec_[t]
            )
            np.matmul(drec_[t], recurrent_t, out=dhr_)

    plan = plan_sequence(GRU, n, units, cblas is not None, keep is not None)
    _time_loop(plan, in_numba, in_python, n, threads)
    dh += dhr
    db_in, db_rec = (None, None) if dbias is None else (dbias[0], dbias[1])
    return _input_side(
        x, kernel, hs, dxp, drec, dkernel, drecurrent_kernel, db_in, db_rec, workspace, threads,
        dropout,
    ), dh  # fmt: skip


# ------------------------------------------------ GRU, reset_after=False
# Keras's other convention: the reset gate scales the state before its product,
# ``hh = act(x_h + (r * h) @ U_h)``, and the one bias (3u,) is on the input side. The candidate's
# product needs r of the same step, so each step runs two products (h @ U_zr, then (r * h) @ U_h)
# with a fused kernel after each; the time loop is Python's.


@njit(cache=True, nogil=True, error_model="numpy")
def gru_reset_gates_forward(xp, rec, h_reset, rec_act, gates):
    """The update and reset gates of a reset_after=False GRU step: xp (N, 3u), rec (N, 2u) =
    h @ U_zr, h_reset (N, u) the state the reset gate scales -> gates (N, 4u) [z, r, ., r * h]."""
    n, u = h_reset.shape
    zero = h_reset.dtype.type(0)
    one = h_reset.dtype.type(1)
    for b in range(n):
        for j in range(u):
            z = _act(xp[b, j] + rec[b, j], rec_act, zero, one)
            r = _act(xp[b, u + j] + rec[b, u + j], rec_act, zero, one)
            gates[b, j] = z
            gates[b, u + j] = r
            gates[b, 3 * u + j] = r * h_reset[b, j]


@njit(cache=True, nogil=True, error_model="numpy")
def gru_candidate_forward(xp, rec_h, h_prev, mask, act, gates, h):
    """The candidate and new state of a reset_after=False GRU step: xp (N, 3u), rec_h (N, u) =
    (r * h) @ U_h, gates (N, 4u) from ``gru_reset_gates_forward`` -> gates' hh, h (N, u)."""
    n, u = h.shape
    zero = h.dtype.type(0)
    one = h.dtype.type(1)
    for b in range(n):
        if not mask[b]:
            for j in range(4 * u):
                gates[b, j] = zero
            for j in range(u):
                h[b, j] = h_prev[b, j]
            continue
        for j in range(u):
            z = gates[b, j]
            hh = _act(xp[b, 2 * u + j] + rec_h[b, j], act, zero, one)
            gates[b, 2 * u + j] = hh
            h[b, j] = z * h_prev[b, j] + (one - z) * hh


@njit(cache=True, nogil=True)
def gru_candidate_backward(dy, dhr, dh, h_prev, gates, mask, act, rec_act, dxp):
    """Backward of ``gru_candidate_forward`` and of z: dxp's z and hh thirds (N, 3u) from dy,
    dhr (N, u); the carry dh (N, u) becomes dL/dh_t's direct path, dL/dh_t * z."""
    n, u = h_prev.shape
    zero = h_prev.dtype.type(0)
    one = h_prev.dtype.type(1)
    for b in range(n):
        if not mask[b]:
            for j in range(u):
                dh[b, j] += dy[b, j] + dhr[b, j]
            for j in range(3 * u):
                dxp[b, j] = zero
            continue
        for j in range(u):
            dh_t = dy[b, j] + dhr[b, j] + dh[b, j]
            z = gates[b, j]
            hh = gates[b, 2 * u + j]
            dxp[b, j] = dh_t * (h_prev[b, j] - hh) * _dact(z, rec_act, zero, one)
            dxp[b, 2 * u + j] = dh_t * (one - z) * _dact(hh, act, zero, one)
            dh[b, j] = dh_t * z


@njit(cache=True, nogil=True)
def gru_reset_gate_backward(drh, h_reset, gates, rec_act, dxp, dh_reset):
    """Backward through r * h_reset: drh (N, u) = d(r * h_reset) -> dxp's r third (N, 3u) and
    dh_reset (N, u) = drh * r."""
    n, u = h_reset.shape
    zero = h_reset.dtype.type(0)
    one = h_reset.dtype.type(1)
    for b in range(n):
        for j in range(u):
            r = gates[b, u + j]
            dxp[b, u + j] = drh[b, j] * h_reset[b, j] * _dact(r, rec_act, zero, one)
            dh_reset[b, j] = drh[b, j] * r


def _gate_state(h, keep, g, out):
    """h (n, u), or h * keep[g] into out under recurrent dropout (keep (G, n, u) or None)."""
    return h if keep is None else np.multiply(h, keep[g], out=out)


def _gate_products(h, keep, weights, gates, out, dropped):
    """out (n, G'u) = h @ weights (u, G'u) for the first G' gates, each gate's product reading
    h * keep[g] under recurrent dropout; dropped (n, u)."""
    if keep is None:
        np.matmul(h, weights, out=out)
        return
    u = h.shape[1]
    for g in range(gates):
        columns = slice(g * u, (g + 1) * u)
        np.matmul(_gate_state(h, keep, g, dropped), weights[:, columns], out=out[:, columns])


def gru_reset_before_forward(
    x, kernel, recurrent_kernel, bias, h0, mask, act, rec_act, workspace=None, threads=1,
    cblas=None, dropout=None,
):  # fmt: skip
    """(hs, gates) of a reset_after=False GRU: as ``gru_forward`` with bias (3u,) or None and
    ``hh = act(x_h + (r * h) @ U_h)``; gates (T, N, 4u) [z, r, hh, r * h] (h dropped for the
    candidate under recurrent dropout). ``cblas`` is accepted for the common signature, unused."""
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    xp = _project(x, kernel, bias, workspace, threads, dropout)
    hs = scratch(workspace, "hs", (steps + 1, n, units), dtype)
    hs[0] = h0
    gates = scratch(workspace, "gates", (steps, n, 4 * units), dtype)
    rec = scratch(workspace, "rec", (n, 2 * units), dtype)
    rec_h = scratch(workspace, "rec_h", (n, units), dtype)
    dropped = scratch(workspace, "dropped_state", (n, units), dtype)
    keep = _recurrent_keep(dropout)
    u_zr, u_h = recurrent_kernel[:, : 2 * units], recurrent_kernel[:, 2 * units :]

    def in_python(r0, r1):
        xp_, hs_, mask_, gates_ = (a[:, r0:r1] for a in (xp, hs, mask, gates))
        rec_, rec_h_, dropped_ = rec[r0:r1], rec_h[r0:r1], dropped[r0:r1]
        keep_ = None if keep is None else keep[:, r0:r1]
        for t in range(steps):
            _gate_products(hs_[t], keep_, u_zr, 2, rec_, dropped_)
            h_reset = _gate_state(hs_[t], keep_, 2, dropped_)
            gru_reset_gates_forward(xp_[t], rec_, h_reset, rec_act, gates_[t])
            np.matmul(gates_[t][:, 3 * units :], u_h, out=rec_h_)
            gru_candidate_forward(xp_[t], rec_h_, hs_[t], mask_[t], act, gates_[t], hs_[t + 1])

    plan = plan_sequence(GRU_RESET_BEFORE, n, units, cblas is not None, keep is not None)
    _time_loop(plan, None, in_python, n, threads)
    return hs, gates


def gru_reset_before_backward(
    x, kernel, recurrent_kernel, hs, gates, mask, act, rec_act, dy, dh_last, dkernel=None,
    drecurrent_kernel=None, dbias=None, workspace=None, threads=1, cblas=None, dropout=None,
):  # fmt: skip
    """(dx (T, N, in), dh0 (N, u)) of ``gru_reset_before_forward``, as ``gru_backward``; adds
    into dkernel (in, 3u), drecurrent_kernel (u, 3u), dbias (3u,) unless None."""
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    dh = scratch_copy(workspace, "dh", dh_last, dtype)
    dhr = scratch_zeros(workspace, "dhr", (n, units), dtype)
    dy = _step_grads(dy, n, units, dtype, workspace)
    dxp = scratch(workspace, "dxp", (steps, n, 3 * units), dtype)
    drh = scratch(workspace, "drh", (n, units), dtype)
    dh_reset = scratch(workspace, "dh_reset", (n, units), dtype)
    dropped = scratch(workspace, "dropped_state", (n, units), dtype)
    keep = _recurrent_keep(dropout)
    u_zr_t = scratch_copy(workspace, "u_zr_t", recurrent_kernel[:, : 2 * units].T, dtype)
    u_h_t = scratch_copy(workspace, "u_h_t", recurrent_kernel[:, 2 * units :].T, dtype)

    def in_python(r0, r1):
        hs_, gates_, mask_, dxp_ = (a[:, r0:r1] for a in (hs, gates, mask, dxp))
        dhr_, dh_, drh_, dh_reset_ = dhr[r0:r1], dh[r0:r1], drh[r0:r1], dh_reset[r0:r1]
        dropped_ = dropped[r0:r1]
        keep_ = None if keep is None else keep[:, r0:r1]
        for t in range(steps - 1, -1, -1):
            dy_t = dy[t if len(dy) == steps else 0, r0:r1]
            gru_candidate_backward(
                dy_t, dhr_, dh_, hs_[t], gates_[t], mask_[t], act, rec_act, dxp_[t]
            )
            np.matmul(dxp_[t][:, 2 * units :], u_h_t, out=drh_)
            h_reset = _gate_state(hs_[t], keep_, 2, dropped_)
            gru_reset_gate_backward(drh_, h_reset, gates_[t], rec_act, dxp_[t], dh_reset_)
            dh_ += _gate_state(dh_reset_, keep_, 2, dropped_)
            _gate_products_t(dxp_[t][:, : 2 * units], keep_, u_zr_t, dhr_, dropped_)

    plan = plan_sequence(GRU_RESET_BEFORE, n, units, cblas is not None, keep is not None)
    _time_loop(plan, None, in_python, n, threads)
    dh += dhr
    if drecurrent_kernel is not None:
        _reset_before_recurrent_grads(hs, gates, dxp, keep, drecurrent_kernel, workspace, threads)
    dx = _input_side(
        x, kernel, hs, dxp, dxp, dkernel, None, dbias, None, workspace, threads, dropout
    )
    return dx, dh


def _gate_products_t(dz, keep, weights_t, dh, dropped):
    """dh (n, u) = dz (n, G'u) @ U.T for weights_t = U.T (G'u, u), gate g's part times keep[g]
    under recurrent dropout (keep (G, n, u) or None); dropped (n, u)."""
    if keep is None:
        np.matmul(dz, weights_t, out=dh)
        return
    u = dh.shape[1]
    for g in range(dz.shape[1] // u):
        rows = slice(g * u, (g + 1) * u)
        np.matmul(dz[:, rows], weights_t[rows], out=dropped)
        dropped *= keep[g]
        if g == 0:
            dh[...] = dropped
        else:
            dh += dropped


def _reset_before_recurrent_grads(hs, gates, dxp, keep, drecurrent_kernel, workspace, threads):
    """Adds every step's recurrent-kernel gradient into drecurrent_kernel (u, 3u): the z and r
    columns from the states (dropped per gate), the candidate's from the saved r * h."""
    steps, n, units = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
    dxp2 = dxp.reshape(steps * n, 3 * units)
    zr = slice(0, 2 * units)
    zr_keep = None if keep is None else keep[:2]
    _state_side(hs, dxp2[:, zr], zr_keep, drecurrent_kernel[:, zr], workspace, threads)
    candidate = slice(2 * units, 3 * units)
    reset_states = gates[..., 3 * units :].reshape(steps * n, units)
    matmul(reset_states.T, dxp2[:, candidate], drecurrent_kernel[:, candidate], True, threads)


# ---------------------------------------------------------------- SimpleRNN


@njit(cache=True, nogil=True)
def simple_rnn_step_forward(xp, rec, h_prev, mask, act, h):
    """One SimpleRNN step: h (N, u) = act(xp + rec) from xp, rec (N, u); rec may alias h."""
    n, u = h.shape
    zero = h.dtype.type(0)
    one = h.dtype.type(1)
    fast = act == TANH and h.itemsize == 4
    for b in range(n):
        if not mask[b]:
            for j in range(u):
                h[b, j] = h_prev[b, j]
            continue
        if fast:
            _simple_rnn_row32(xp, rec, h, b, u)
            continue
        for j in range(u):
            h[b, j] = _act(xp[b, j] + rec[b, j], act, zero, one)


@njit(cache=True, error_model="numpy", fastmath=_ROW_MATH)
def _simple_rnn_row32(xp, rec, h, b, u):
    """Row b of ``simple_rnn_step_forward`` for tanh in float32 (a row kernel, as the LSTM's)."""
    for j in range(u):
        h[b, j] = tanh32(xp[b, j] + rec[b, j])


@njit(cache=True, nogil=True)
def simple_rnn_step_backward(dy, dhr, dh, h, mask, act, dz):
    """SimpleRNN step backward: dz (N, u) from dy, dhr and the step's output h (N, u); carry dh."""
    # dL/dh_t = dy + dhr + dh as for the LSTM; dz is the gradient of the preactivation.
    n, u = h.shape
    zero = h.dtype.type(0)
    one = h.dtype.type(1)
    for b in range(n):
        if not mask[b]:
            for j in range(u):
                dh[b, j] += dy[b, j] + dhr[b, j]
                dz[b, j] = zero
            continue
        for j in range(u):
            dz[b, j] = (dy[b, j] + dhr[b, j] + dh[b, j]) * _dact(h[b, j], act, zero, one)
            dh[b, j] = zero


@njit(cache=True, nogil=True, error_model="numpy")
def simple_rnn_steps_forward(xp, recurrent_kernel, hs, mask, act, r0, r1, gemm, keep=None):
    """Every step of ``simple_rnn_step_forward`` for rows r0..r1, h @ recurrent_kernel by
    ``gemm`` or loops through keep as ``lstm_steps_forward``; xp (T, N, u), hs (T+1, N, u),
    mask (T, N) as ``simple_rnn_forward``."""
    dropped = np.empty((r1 - r0, recurrent_kernel.shape[0]), dtype=xp.dtype)
    for t in range(xp.shape[0]):
        out = hs[t + 1, r0:r1]
        _recurrent_product(gemm, hs[t, r0:r1], keep, r0, recurrent_kernel, dropped, out)
        simple_rnn_step_forward(xp[t, r0:r1], out, hs[t, r0:r1], mask[t, r0:r1], act, out)


@njit(cache=True, nogil=True, error_model="numpy")
def simple_rnn_steps_forward_projecting(
    x, kernel, bias_rows, recurrent_kernel, hs, mask, act, r0, r1, gemm
):
    """``simple_rnn_steps_forward`` for rows r0..r1 that projects each step's inputs in the
    loop, as ``lstm_steps_forward_projecting``: x[t, r0:r1] @ kernel + h @ recurrent_kernel by
    ``gemm``, plus bias_rows (r1 - r0, u)."""
    for t in range(mask.shape[0]):
        out = hs[t + 1, r0:r1]
        _step_product(gemm, x[t, r0:r1], kernel, False, out)
        _step_product(gemm, hs[t, r0:r1], recurrent_kernel, False, out, 1.0)
        simple_rnn_step_forward(bias_rows, out, hs[t, r0:r1], mask[t, r0:r1], act, out)


@njit(cache=True, nogil=True, error_model="numpy")
def simple_rnn_steps_backward(
    dy, recurrent_kernel, recurrent_t, hs, mask, act, dhr, dh, dz, r0, r1, gemm, keep=None
):
    """Every step of ``simple_rnn_step_backward`` for rows r0..r1, latest first, dhr = dz @
    recurrent_kernel.T by ``gemm`` on recurrent_kernel, or loops on ``recurrent_t``, through
    keep as forward; dy (T, N, u), or (1, N, u) zeros for none; dhr, dh (N, u) carried; dz
    (T, N, u) filled."""
    steps = dz.shape[0]
    weights = recurrent_t if gemm is None else recurrent_kernel
    part = np.empty((r1 - r0, dh.shape[1]), dtype=dh.dtype)
    for t in range(steps - 1, -1, -1):
        simple_rnn_step_backward(
            dy[t if dy.shape[0] == steps else 0, r0:r1], dhr[r0:r1], dh[r0:r1],
            hs[t + 1, r0:r1], mask[t, r0:r1], act, dz[t, r0:r1],
        )  # fmt: skip
        _recurrent_product_t(gemm, dz[t, r0:r1], keep, r0, weights, part, dhr[r0:r1])


def simple_rnn_forward(
    x, kernel, recurrent_kernel, bias, h0, mask, act, workspace=None, threads=1, cblas=None,
    dropout=None,
):  # fmt: skip
    """(hs,): states hs (T+1, N, u) from h0 (N, u); hs[t + 1] is the output of step t.

    x (T, N, in) time-major, kernel (in, u), recurrent_kernel (u, u), bias (u,) or None,
    mask (T, N) bool or None (a masked step carries the state through). ``workspace``,
    ``threads``, ``cblas`` and ``dropout`` (one gate) as for ``lstm_forward``.
    """
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    hs = scratch(workspace, "hs", (steps + 1, n, units), dtype)
    hs[0] = h0
    if _projects_in_loop(x, kernel, cblas, dropout):
        bias_rows = _bias_rows(bias, n, units, dtype, workspace)

        def projecting(r0, r1):
            simple_rnn_steps_forward_projecting(
                x, kernel, bias_rows[r0:r1], recurrent_kernel, hs, mask, act, r0, r1, cblas
            )

        plan = plan_sequence(SIMPLE_RNN, n, units, True, False)
        _time_loop(plan, projecting, None, n, threads)
        return (hs,)
    xp = _project(x, kernel, bias, workspace, threads, dropout)
    keep = _recurrent_keep(dropout)

    def in_numba(r0, r1):
        simple_rnn_steps_forward(xp, recurrent_kernel, hs, mask, act, r0, r1, cblas, keep)

    def in_python(r0, r1):
        xp_, hs_, mask_ = (a[:, r0:r1] for a in (xp, hs, mask))
        for t in range(steps):
            np.matmul(hs_[t], recurrent_kernel, out=hs_[t + 1])  # the step kernel works in place
            simple_rnn_step_forward(xp_[t], hs_[t + 1], hs_[t], mask_[t], act, hs_[t + 1])

    plan = plan_sequence(SIMPLE_RNN, n, units, cblas is not None, keep is not None)
    _time_loop(plan, in_numba, in_python, n, threads)
    return (hs,)


def simple_rnn_backward(
    x,
    kernel,
    recurrent_kernel,
    hs,
    mask,
    act,
    dy,
    dh_last,
    dkernel=None,
    drecurrent_kernel=None,
    dbias=None,
    workspace=None,
    threads=1,
    cblas=None,
    dropout=None,
):
    """(dx (T, N, in), dh0 (N, u)) from dy (T, N, u) or None and dh_last (N, u).

    Adds into dkernel (in, u), drecurrent_kernel (u, u), dbias (u,) unless None.
    ``dropout``: the forward's ``GateDropout``, or None; the rest as ``lstm_backward``.
    """
    x = _contiguous(x)
    steps, n, dtype = sequence_shape(x)
    units = recurrent_kernel.shape[0]
    mask = _all_steps(mask, steps, n, workspace)
    dh = scratch_copy(workspace, "dh", dh_last, dtype)
    dhr = scratch_zeros(workspace, "dhr", (n, units), dtype)
    dy = _step_grads(dy, n, units, dtype, workspace)
    dz = scratch(workspace, "dz", (steps, n, units), dtype)
    recurrent_t = (
        recurrent_kernel
        if cblas is not None
        else scratch_copy(workspace, "recurrent_t", recurrent_kernel.T, dtype)
    )  # the loops' layout; gemm reads recurrent_kernel transposed

    keep = _recurrent_keep(dropout)

    def in_numba(r0, r1):
        simple_rnn_steps_backward(
            dy, recurrent_kernel, recurrent_t, hs, mask, act, dhr, dh, dz, r0, r1, cblas, keep
        )

    def in_python(r0, r1):
        hs_, mask_, dz_ = (a[:, r0:r1] for a in (hs, mask, dz))
        dhr_, dh_ = dhr[r0:r1], dh[r0:r1]
        for t in range(steps - 1, -1, -1):
            dy_t = dy[t if len(dy) == steps else 0, r0:r1]
            simple_rnn_step_backward(dy_t, dhr_, dh_, hs_[t + 1], mask_[t], act, dz_[t])
            np.matmul(dz_[t], recurrent_t, out=dhr_)

    plan = plan_sequence(SIMPLE_RNN, n, units, cblas is not None, keep is not None)
    _time_loop(plan, in_numba, in_python, n, threads)
    dh += dhr
    dx = _input_side(
        x, kernel, hs, dz, dz, dkernel, drecurrent_kernel, dbias, None, workspace, threads, dropout
    )
    return dx, dh
