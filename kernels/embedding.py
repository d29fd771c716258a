"""Embedding lookup: a row gather forward, a scatter-add of rows backward.

``ids`` are int64 and already range-checked by the caller (the layer raises a clear error before
any gather); the kernels do not check bounds. The backward splits the table's columns among
threads, so repeated ids accumulate without races.
"""

from numba import get_num_threads, njit, prange


@njit(cache=True, parallel=True)
def embedding_forward(table, ids, out):
    """out[m, :] = table[ids[m], :]; table (V, D), ids int64 (M,), out (M, D)."""
    width = table.shape[1]
    for m in prange(ids.shape[0]):
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
