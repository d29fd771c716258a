"""Embedding lookup: a row gather forward, a scatter-add of rows backward.

``ids`` are int64 and already range-checked by the caller (the layer raises a clear error before
any gather); the kernels do not check bounds. The backward splits the table's columns among
threads, so repeated ids accumulate without races.
"""

import numpy as np
from numba import get_num_threads, njit, prange

# Below this many values gathered, the forward runs on the calling thread: a copy that short
# (~10 us) costs less than engaging Numba's second thread (~10 us, 10-25 us once it sleeps: an
# LSTM's 80-token gather took 46 us at batch 1 on both threads).
PARALLEL_MIN_VALUES = 1 << 17


def embedding_forward(table, ids, out):
    """out[m, :] = table[ids[m], :]; table (V, D), ids int64 (M,), out (M, D)."""
    if out.size >= PARALLEL_MIN_VALUES:
        _gather_parallel(table, ids, out)
    else:
        _gather_rows(table, ids, out, 0, len(ids))


@njit(cache=True, parallel=True)
def _gather_parallel(table, ids, out):
    for m in prange(ids.shape[0]):
        _gather_rows(table, ids, out, m, m + 1)


@njit(cache=True, nogil=True)
def _gather_rows(table, ids, out, start, stop):
    """out[m, :] = table[ids[m], :] for m in [start, stop)."""
    width = table.shape[1]
    for m in range(start, stop):
        row = table[ids[m]]
        dst = out[m]
        for d in range(width):
            dst[d] = row[d]


def embedding_backward(grad, ids, dtable):
    """dtable[ids[m], :] += grad[m, :] for every m (repeats add); grad (M, D), dtable (V, D)."""
    # One column block per thread: long contiguous inner loops (vectorized) over each row.
    blocks = max(1, min(get_num_threads(), grad.shape[1] // 16))
    _scatter_add_columns(grad, ids, dtable, blocks)


@njit(cache=True, parallel=True)
def _scatter_add_columns(grad, ids, dtable, blocks):
    width = grad.shape[1]
    for b in prange(blocks):
        lo = b * width // blocks
        hi = (b + 1) * width // blocks
        for m in range(ids.shape[0]):
            src = grad[m, lo:hi]  # views indexed from 0 by the loop variable: the loop vectorizes
            dst = dtable[ids[m], lo:hi]
            for d in range(hi - lo):
                dst[d] += src[d]


def sum_rows_by_id(grad, inverse, out, column_sums):
    """out[p, :] = the sum of grad[m, :] over m with inverse[m] == p, and column_sums += grad's
    column sums; grad (M, D), inverse int64 (M,) in first-seen order (as ``distinct_ids`` makes
    it: each p first appears after 0..p-1), out (U, D) not zeroed (a row's first id writes it),
    column_sums (D,), or (0,) for none (summed in float64)."""
    blocks = max(1, min(get_num_threads(), grad.shape[1] // 16))
    _sum_rows_by_id_columns(grad, inverse, out, column_sums, blocks)


@njit(cache=True, parallel=True)
def _sum_rows_by_id_columns(grad, inverse, out, column_sums, blocks):
    width = grad.shape[1]
    with_sums = column_sums.shape[0] > 0
    for b in prange(blocks):
        lo = b * width // blocks
        hi = (b + 1) * width // blocks
        sums = np.zeros(hi - lo, np.float64)
        first_unseen = 0
        for m in range(inverse.shape[0]):
            src = grad[m, lo:hi]
            dst = out[inverse[m], lo:hi]
            if inverse[m] == first_unseen:
                first_unseen += 1
                for d in range(hi - lo):
                    dst[d] = src[d]
            else:
                for d in range(hi - lo):
                    dst[d] += src[d]
            if with_sums:
                for d in range(hi - lo):
                    sums[d] += src[d]
        if with_sums:
            for d in range(hi - lo):
                column_sums[lo + d] += sums[d]


@njit(cache=True)
def distinct_ids(ids, position, used, inverse):
    """How many distinct ids (U) ids int64 (M,) holds; fills used[:U] with them in first-seen
    order and inverse (M,) with used[inverse] == ids. position (V,) int64 is scratch."""
    position[:] = -1
    count = 0
    for m in range(ids.shape[0]):
        i = ids[m]
        if position[i] < 0:
            position[i] = count
            used[count] = i
            count += 1
        inverse[m] = position[i]
    return count
