"""A concatenation along the last axis and its gradient's split, as 2-D arrays: (M, k_i) parts
side by side in (M, sum k_i). numpy copies the bands in runs of one part's width (16 or 32
channels of an image: 3x slower than a plain copy of the same bytes); these loops fill or read
each whole row at once, on up to ``threads`` threads by blocks of rows."""

import numpy as np
from numba import njit

from .gemm import row_blocks

# Rows per thread's block: a block must be worth waking a thread for (~100k values).
MIN_ROWS_PER_BLOCK = 4096


def concatenate(parts: tuple, out, threads=1):
    """out (M, K) = the parts (M, k_i), a tuple of C-contiguous arrays, side by side."""
    run = lambda i, j: _rows(parts, out, True, i, j)  # noqa: E731
    row_blocks(run, len(out), threads, MIN_ROWS_PER_BLOCK)
    return out


def split(values, parts: tuple, threads=1):
    """The parts (M, k_i), a tuple of C-contiguous arrays, = values (M, K)'s bands of columns."""
    run = lambda i, j: _rows(parts, values, False, i, j)  # noqa: E731
    row_blocks(run, len(values), threads, MIN_ROWS_PER_BLOCK)
    return parts


@njit(cache=True, nogil=True, error_model="numpy")
def _rows(parts, wide, into_wide, start, stop):
    """Rows [start, stop): wide's row = the parts' rows side by side, or the reverse. Part by
    part over the rows, through flat views at unsigned indices: a signed index gets Numba's
    check for a negative one, which kept the copies scalar (a row's view and a loop per part and
    row ran 2.8x slower at 4096 rows of 16 + 16 channels, 1.4x at 131072)."""
    k, flat, offset = wide.shape[1], wide.reshape(-1), 0
    for part in parts:
        width, band = part.shape[1], part.reshape(-1)
        for r in range(start, stop):
            at, part_at = r * k + offset, r * width
            if into_wide:
                for j in range(width):
                    flat[np.uint64(at + j)] = band[np.uint64(part_at + j)]
            else:
                for j in range(width):
                    band[np.uint64(part_at + j)] = flat[np.uint64(at + j)]
        offset += width
