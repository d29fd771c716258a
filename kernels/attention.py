"""Attention's core: the scores, their masked softmax over the last axis of ``(B, H, Tq, Tv)``
(one pass a row), the weights' product with the values, and the backward of all three.

The mask is a ``(B, Tq, Tv)`` boolean array shared by the heads (True: attend), or a
``(0, 0, 0)`` array for none; ``causal`` also masks key positions after the query's
(``j > i``). Keras masks two ways, and both are kept:

* ``MASK_REPLACE`` (MultiHeadAttention, through Keras's ``Softmax`` layer): a masked score
  becomes -1e9 and its weight is then set to 0, so a row masked entirely has weights 0;
* ``MASK_SUBTRACT`` (``Attention``, ``AdditiveAttention``): a masked score loses 1e9, so a row
  masked entirely keeps the softmax of its scores shifted alike.

Rows run in parallel blocks from ``PARALLEL_MIN_ELEMENTS`` scores on; ``attend`` and
``attend_backward`` run the products and the softmax in blocks of batch rows on fastnn's
threads instead (numpy's stacked per-head products use one thread). The backward is the
softmax's: ``dz = y * (dy - sum(dy * y))`` per row, whatever the mask (a masked weight is 0 or a
constant's, and a weight set to 0 passes no gradient).
"""

import numpy as np
from numba import njit, prange

from .dropout import dropout_backward
from .fastmath import exp, row_max
from .gemm import row_blocks
from .matmul_simd import lanes_for, pack_into, panel_rows
from .simd import BIAS, wide_vectors

MASK_REPLACE = 0
MASK_SUBTRACT = 1
PARALLEL_MIN_ELEMENTS = 1 << 15
PARALLEL_BLOCKS = 64


# Sums may be reassociated so the exp-and-sum and dot-product loops vectorize.
_REASSOC = {"reassoc", "contract"}


@njit(cache=True, nogil=True, error_model="numpy")
def _softmax_rows(scores, mask, causal, mode, out, start, stop):
    """Rows [start, stop) of the (B * H * Tq, Tv) row view: masked softmax into out (both
    C-contiguous)."""
    heads, steps, keys = scores.shape[1], scores.shape[2], scores.shape[3]
    flat_scores, flat_out = scores.ravel(), out.ravel()
    in_place = flat_out.ctypes.data == flat_scores.ctypes.data
    for r in range(start, stop):
        src, row = flat_scores[r * keys : (r + 1) * keys], flat_out[r * keys : (r + 1) * keys]
        _softmax_row(src, row, in_place, r // (heads * steps), r % steps, mask, causal, mode)


# A function of its own, not inlined: its loops keep its fastmath flags and 512-bit vectors.
@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REASSOC)
def _softmax_row(src, row, in_place, b, i, mask, causal, mode):
    """row (Tv,) = the masked softmax of src, query i of batch row b; src may be row itself
    (``in_place``)."""
    wide_vectors()
    keys = row.shape[0]
    has_mask = mask.shape[0] > 0
    big = row.dtype.type(1e9)
    zero = row.dtype.type(0)
    if causal or has_mask:
        for j in range(keys):
            v = src[j]
            if (causal and j > i) or (has_mask and not mask[b, i, j]):
                v = -big if mode == MASK_REPLACE else v - big
            row[j] = v
    elif not in_place:
        for j in range(keys):
            row[j] = src[j]
    # From here on only row is read and written: a loop reading src and writing row stays
    # scalar when they are the same memory (out is scores), as LLVM cannot rule out the
    # overlap; and in place, copying it onto itself cost a third of the time.
    peak = row_max(row)
    total = zero
    for j in range(keys):
        e = exp(row[j] - peak)
        row[j] = e
        total += e
    inv = row.dtype.type(1) / total
    for j in range(keys):
        row[j] *= inv
    if mode == MASK_REPLACE and (causal or has_mask):
        for j in range(keys):
            if (causal and j > i) or (has_mask and not mask[b, i, j]):
                row[j] = zero


@njit(cache=True, parallel=True, error_model="numpy")
def _softmax_parallel(scores, mask, causal, mode, out):
    rows = scores.shape[0] * scores.shape[1] * scores.shape[2]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        _softmax_rows(scores, mask, causal, mode, out, b * rows // blocks, (b + 1) * rows // blocks)


def masked_softmax(scores, mask, causal, mode, out, parallel=True):
    """out (B, H, Tq, Tv) = softmax over Tv of ``scores`` (B, H, Tq, Tv), masked by ``mask``
    (B, Tq, Tv) bool or (0, 0, 0), and by ``j > i`` when ``causal``; ``mode`` MASK_REPLACE or
    MASK_SUBTRACT (see the module). out may be scores; both C-contiguous. ``parallel=False``
    keeps it on the calling thread."""
    if not (scores.flags.c_contiguous and out.flags.c_contiguous):
        raise ValueError("masked_softmax: scores and out must be C-contiguous")
    if parallel and scores.size >= PARALLEL_MIN_ELEMENTS:
        _softmax_parallel(scores, mask, causal, mode, out)
    else:
        rows = scores.shape[0] * scores.shape[1] * scores.shape[2]
        _softmax_rows(scores, mask, causal, mode, out, 0, rows)


def attend(q, k, v, mask, causal, mode, weights, out, threads=1):
    """weights (B, H, Tq, Tk) = ``masked_softmax`` of q (B, H, Tq, D) @ k (B, H, Tk, D)^T and,
    unless v is None, out (B, H, Tq, Dv) = weights @ v (B, H, Tk, Dv); all C-contiguous.

    Blocks of batch rows run on up to ``threads`` threads, each block's products (numpy's, one
    thread) and softmax on one: the products of small heads run serially otherwise.
    """
    has_mask = mask.shape[0] > 0
    one_block = min(threads, q.shape[0]) <= 1  # then its softmax may use Numba's threads

    def run(start, stop):
        scores = weights[start:stop]
        np.matmul(q[start:stop], k[start:stop].transpose(0, 1, 3, 2), out=scores)
        block_mask = mask[start:stop] if has_mask else mask
        masked_softmax(scores, block_mask, causal, mode, scores, parallel=one_block)
        if v is not None:
            np.matmul(scores, v[start:stop], out=out[start:stop])

    row_blocks(run, q.shape[0], threads, 1)


def attend_backward(grad_out, q, k, v, weights, dropout, extra, grad_q, grad_k, grad_v, threads=1):
    """The gradients of ``attend`` (with dropout on the weights) from grad_out (B, H, Tq, Dv):
    grad_v = dropped^T @ grad_out; through the dropout and the softmax to the scores' dS;
    grad_q = dS @ k, grad_k = dS^T @ q (all (B, H, ., .), C-contiguous).

    ``dropout`` is (dropped weights, uniforms (B*H*Tq*Tk,), rate), or None without dropout;
    ``extra`` (B, H, Tq, Tk) or None is a gradient of the weights themselves (when the layer
    returned them). In blocks of batch rows on up to ``threads`` threads, as ``attend``.
    """
    dropped = weights if dropout is None else dropout[0]
    one_block = min(threads, q.shape[0]) <= 1

    def run(start, stop):
        block = slice(start, stop)
        np.matmul(dropped[block].transpose(0, 1, 3, 2), grad_out[block], out=grad_v[block])
        grad_w = np.matmul(grad_out[block], v[block].transpose(0, 1, 3, 2))
        if dropout is not None:
            uniform = dropout[1].reshape(weights.shape)[block]
            flat = grad_w.reshape(-1)
            dropout_backward(flat, uniform.reshape(-1), dropout[2], flat)
        if extra is not None:
            grad_w += extra[block]
        rows = grad_w.reshape(-1, grad_w.shape[-1])
        y = weights[block].reshape(rows.shape)
        softmax_backward(rows, y, rows, parallel=one_block)
        np.matmul(grad_w, k[block], out=grad_q[block])
        np.matmul(grad_w.transpose(0, 1, 3, 2), q[block], out=grad_k[block])

    row_blocks(run, q.shape[0], threads, 1)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=_REASSOC)
def _softmax_grad_rows(grad_y, y, out, start, stop):
    in_place = out.ctypes.data == grad_y.ctypes.data  # then read and write one array: a loop
    for i in range(start, stop):  # reading grad_y and writing out, the same memory, stays scalar
        dot = y.dtype.type(0)
        for j in range(y.shape[1]):
            dot += grad_y[i, j] * y[i, j]
        if in_place:
            for j in range(y.shape[1]):
                out[i, j] = y[i, j] * (out[i, j] - dot)
        else:
            for j in range(y.shape[1]):
                out[i, j] = y[i, j] * (grad_y[i, j] - dot)


@njit(cache=True, parallel=True, error_model="numpy")
def _softmax_grad_parallel(grad_y, y, out):
    rows = y.shape[0]
    blocks = min(rows, PARALLEL_BLOCKS)
    for b in prange(blocks):
        _softmax_grad_rows(grad_y, y, out, b * rows // blocks, (b + 1) * rows // blocks)


def softmax_backward(grad_y, y, out, parallel=True):
    """out (M, N) = y * (grad_y - sum(grad_y * y) per row): the gradient of the scores given
    that of the weights y (M, N) ``masked_softmax`` wrote; out may be grad_y. ``parallel=False``
    keeps it on the calling thread."""
    if parallel and y.size >= PARALLEL_MIN_ELEMENTS:
        _softmax_grad_parallel(grad_y, y, out)
    else:
        _softmax_grad_rows(grad_y, y, out, 0, y.shape[0])


# ---- the heads side by side: inference straight from the projections ---------------------------
BLOCKS_PER_THREAD = 4  # (batch row, head) blocks per thread: Numba's threads take them as free


def attend_heads(q, k, v, heads, scale, mask, causal, mode, weights, out, threads=1):
    """out (B, Tq, H*dv) = each head's ``masked_softmax(scale * q_h @ k_h^T) @ v_h`` in that
    head's columns, weights (B, H, Tq, Tk) the softmax, from the projections as they come: q
    (B, Tq, H*d), k (B, Tk, H*d), v (B, Tk, H*dv), a head's d (or dv) columns side by side;
    float32, C-contiguous; mask, causal and mode as ``masked_softmax``'s. Per (batch row, head)
    on up to ``threads`` of Numba's threads: k's head packed (scaled) and v's, both products by
    the SIMD micro-kernels, which read q and write out in place: no per-head copies. With
    weights empty ((0, 0, 0, 0): not wanted), each block keeps one head's (Tq, Tk) softmax at a
    time in a buffer of its own, which stays in cache (the whole weights of a batch of 256 rows
    of 64 steps by 4 heads, 16 MB, were written, read and written again, and read)."""
    pairs = q.shape[0] * heads
    blocks = min(pairs, BLOCKS_PER_THREAD * threads)
    args = (q, k, v, heads, np.float32(scale), mask, causal, mode, weights, out)
    if blocks > 1:
        _heads_parallel(*args, blocks)
    else:
        _heads(*args, 0, pairs)
    return out


@njit(cache=True, parallel=True, error_model="numpy")
def _heads_parallel(q, k, v, heads, scale, mask, causal, mode, weights, out, blocks):
    pairs = q.shape[0] * heads
    for b in prange(blocks):
        start, stop = b * pairs // blocks, (b + 1) * pairs // blocks
        _heads(q, k, v, heads, scale, mask, causal, mode, weights, out, start, stop)


@njit(cache=True, nogil=True, error_model="numpy")
def _heads(q, k, v, heads, scale, mask, causal, mode, weights, out, start, stop):
    """(batch row, head) pairs [start, stop), numbered b * heads + h."""
    steps, keys = q.shape[1], k.shape[1]
    d, dv = q.shape[2] // heads, v.shape[2] // heads
    key_panels = _panels_for(d, keys)
    value_panels = _panels_for(keys, dv)
    zeros = np.zeros(max(keys, dv), np.float32)  # the epilogue's bias
    kept = weights.shape[0] > 0
    flat_w = weights.reshape(-1) if kept else np.empty(steps * keys, np.float32)
    flat_q, flat_out = q.reshape(-1), out.reshape(-1)
    for pair in range(start, stop):
        b, h = pair // heads, pair % heads
        pack_into(k[b, :, h * d : (h + 1) * d].T, lanes_for(keys), key_panels)
        key_panels *= scale  # Keras scales the query: the same scores to float32 rounding
        q_at, w_at = b * steps * q.shape[2] + h * d, pair * steps * keys if kept else 0
        # scores (Tq, Tk) = q_h @ (scale * k_h)^T
        _product(steps, flat_q, q_at, q.shape[2], d, key_panels, keys, flat_w, w_at, keys, zeros)
        for i in range(steps):
            row = flat_w[w_at + i * keys : w_at + (i + 1) * keys]
            _softmax_row(row, row, True, b, i, mask, causal, mode)
        pack_into(v[b, :, h * dv : (h + 1) * dv], lanes_for(dv), value_panels)
        out_at = b * steps * out.shape[2] + h * dv  # out's head columns = weights @ v_h
        _product(
            steps, flat_w, w_at, keys, keys, value_panels, dv, flat_out, out_at, out.shape[2], zeros
        )


def attend_heads_backward(
    grad_out, q, k, v, heads, scale, weights, extra, grad_q, grad_k, grad_v, threads=1
):
    """The gradients of ``attend_heads`` (q, k, v, weights as it took and wrote them) from
    grad_out (B, Tq, H*dv), the heads side by side as there: grad_q (B, Tq, H*d), grad_k (B,
    Tk, H*d) and grad_v (B, Tk, H*dv), overwritten. ``extra`` (B, H, Tq, Tk) or empty is a
    gradient of the weights themselves. Per (batch row, head) by the SIMD micro-kernels, as
    the forward: dW = dO_h @ v_h^T, dS = the softmax's backward, dq_h = scale * dS @ k_h,
    dk_h = scale * dS^T @ q_h, dv_h = W^T @ dO_h."""
    pairs = q.shape[0] * heads
    blocks = min(pairs, BLOCKS_PER_THREAD * threads)
    args = (grad_out, q, k, v, heads, np.float32(scale), weights, extra, grad_q, grad_k, grad_v)
    if blocks > 1:
        _heads_backward_parallel(*args, blocks)
    else:
        _heads_backward(*args, 0, pairs)


@njit(cache=True, parallel=True, error_model="numpy")
def _heads_backward_parallel(grad_out, q, k, v, heads, scale, weights, extra, dq, dk, dv, blocks):
    pairs = q.shape[0] * heads
    for b in prange(blocks):
        start, stop = b * pairs // blocks, (b + 1) * pairs // blocks
        _heads_backward(grad_out, q, k, v, heads, scale, weights, extra, dq, dk, dv, start, stop)


@njit(cache=True, nogil=True, error_model="numpy")
def _heads_backward(grad_out, q, k, v, heads, scale, weights, extra, dq, dk, dv, start, stop):
    """Pairs [start, stop) of ``attend_heads_backward``, numbered b * heads + h."""
    steps, keys = q.shape[1], k.shape[1]
    d, d_value = q.shape[2] // heads, v.shape[2] // heads
    go, wide_q, wide_k, wide_v = grad_out.shape[2], q.shape[2], k.shape[2], v.shape[2]
    values_t = _panels_for(d_value, keys)  # v_h^T
    keys_p, queries_p = _panels_for(keys, d), _panels_for(steps, d)
    grads_p = _panels_for(steps, d_value)  # dO_h
    grad_w = np.empty((steps, keys), np.float32)
    transposed = np.empty((keys, steps), np.float32)
    zeros = np.zeros(max(keys, d, d_value), np.float32)
    flat_go, flat_gw, flat_t = grad_out.reshape(-1), grad_w.reshape(-1), transposed.reshape(-1)
    flat_dq, flat_dk, flat_dv = dq.reshape(-1), dk.reshape(-1), dv.reshape(-1)
    for pair in range(start, stop):
        b, h = pair // heads, pair % heads
        w = weights[b, h]
        go_at = b * steps * go + h * d_value
        pack_into(v[b, :, h * d_value : (h + 1) * d_value].T, lanes_for(keys), values_t)
        _product(steps, flat_go, go_at, go, d_value, values_t, keys, flat_gw, 0, keys, zeros)
        if extra.shape[0] > 0:
            grad_w += extra[b, h]
        _softmax_grad_rows(grad_w, w, grad_w, 0, steps)  # now dS
        pack_into(k[b, :, h * d : (h + 1) * d], lanes_for(d), keys_p)
        keys_p *= scale
        q_at = b * steps * wide_q + h * d
        _product(steps, flat_gw, 0, keys, keys, keys_p, d, flat_dq, q_at, wide_q, zeros)
        transposed[...] = grad_w.T
        pack_into(q[b, :, h * d : (h + 1) * d], lanes_for(d), queries_p)
        queries_p *= scale
        k_at = b * keys * wide_k + h * d
        _product(keys, flat_t, 0, steps, steps, queries_p, d, flat_dk, k_at, wide_k, zeros)
        transposed[...] = w.T
        pack_into(grad_out[b, :, h * d_value : (h + 1) * d_value], lanes_for(d_value), grads_p)
        v_at = b * keys * wide_v + h * d_value
        _product(keys, flat_t, 0, steps, steps, grads_p, d_value, flat_dv, v_at, wide_v, zeros)


@njit(cache=True, nogil=True, inline="always")
def _panels_for(depth, columns):
    """A buffer for ``pack_into``'s panels of a (depth, columns) operand."""
    lanes = lanes_for(columns)
    return np.empty((-(-columns // lanes), depth * lanes), np.float32)


@njit(cache=True, nogil=True, error_model="numpy")
def _product(rows, a, a_at, lda, depth, panels, columns, out, out_at, ldo, zeros):
    """out[out_at + r * ldo + c] = sum over t < depth of a[a_at + r * lda + t] * b[t, c] for
    r < rows, c < columns: b (depth, columns) packed in ``panels`` by ``pack_into``; a and out
    flat float32, zeros (>= columns) the epilogue's bias."""
    lanes = lanes_for(columns)
    for p in range(panels.shape[0]):
        count = min(lanes, columns - p * lanes)
        args = (rows, a, a_at, lda, depth, panels[p], lanes, count, out, out_at + p * lanes, ldo)
        panel_rows(*args, zeros, 0, BIAS)
