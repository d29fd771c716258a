"""Float32 matrix products on the SIMD micro-kernels (``simd.block_product``), on Numba's threads.

``matmul`` computes out (M,N) = a (M,K) @ b (K,N) + bias, optionally through a relu, or adds
a @ b into out, in one pass: ``gemm.matmul``'s long float32 products, and (its micro-kernel
calls and packing) the SIMD convolutions of ``conv_simd``.
b is packed first (``pack``: panels of 16 or 32 columns, K rows each, the columns past N zero),
a is read in place. The output is cut into tiles of ``ROWS_PER_TILE`` rows by one panel; each
tile runs blocks of 12 rows (8, 4, 2, 1 at its end) whose accumulators stay in registers over
all of K, and Numba's threads take the tiles as they come free. Against numpy's (OpenBLAS)
sgemm on 2 threads this ran 1.2-2.6x faster on long products of a small b (see below).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import ACCUMULATE, BIAS, LANES, block_product

WIDE = 2 * LANES
PIXELS = 12  # rows per micro-kernel call: 12 x 32 keeps 24 accumulators in registers
WIDE_BLOCKS = block_product(WIDE, (PIXELS, 8, 4, 2, 1))
NARROW_BLOCKS = block_product(LANES, (PIXELS, 8, 4, 2, 1))
ROWS_PER_TILE = 48
# Where products run here: ``gemm.SIMD_ROWS_PER_SIDE`` and ``gemm.SIMD_MIN_FLOPS``. Packing b
# costs about a tenth of a product of as many rows as b has values per side, so it pays on
# products many times longer than b's larger side (2048 to 16384 rows by 64 to 192: 1.2-2.6x
# faster, where OpenBLAS's small-N kernels are slow); with b 512 x 512, 64 to 256 rows ran
# 0.7-0.8x numpy's (packing included).


@njit(cache=True, inline="always")
def lanes_for(columns: int) -> int:
    """The panel width for ``columns`` output columns: 16 up to 16 of them, else 32."""
    return LANES if columns <= LANES else WIDE


@njit(cache=True, nogil=True, inline="always")
def micro_kernel(lanes, args):
    """One call of the micro-kernel for ``lanes`` (WIDE or LANES) on ``args``, the 16 arguments
    ``simd.block_product``'s kernels take."""
    if lanes == WIDE:
        WIDE_BLOCKS(*args)
    else:
        NARROW_BLOCKS(*args)


@njit(cache=True, nogil=True, inline="always")
def block_rows(left):
    """Rows in the next micro-kernel call with ``left`` of them to go."""
    return (
        PIXELS if left >= PIXELS else 8 if left >= 8 else 4 if left >= 4 else 2 if left >= 2 else 1
    )


def pack(b: np.ndarray) -> np.ndarray:
    """b (K,N), any strides, as the micro-kernels' panels (ceil(N/lanes), K*lanes) float32,
    lanes = ``lanes_for(N)``, the columns past N zero."""
    lanes = lanes_for(b.shape[1])
    panels = np.empty((-(-b.shape[1] // lanes), b.shape[0] * lanes), np.float32)
    pack_into(b, lanes, panels)
    return panels


@njit(cache=True, nogil=True, error_model="numpy")
def pack_into(b, lanes, panels):
    """``pack``'s panels of b (K,N), any strides, written into ``panels``."""
    k, n = b.shape
    panels[:] = 0
    for t in range(k):
        row = b[t]
        for block in range(panels.shape[0]):
            f0 = block * lanes
            panel = panels[block]
            for j in range(min(lanes, n - f0)):
                panel[t * lanes + j] = row[f0 + j]


def matmul(a, panels, bias, epilogue, out, threads=1):
    """out (M,N) = a (M,K) @ b + bias (N,) (``simd.BIAS``), the same through max(., 0)
    (``BIAS_RELU``), or out += a @ b (``ACCUMULATE``, bias unread); float32, a and out
    C-contiguous, b packed by ``pack``; tiles on up to ``threads`` of Numba's threads."""
    tiles = -(-a.shape[0] // ROWS_PER_TILE) * panels.shape[0]
    if threads > 1 and tiles > 1:
        _tiles_parallel(a, panels, bias, epilogue, out)
    else:
        _tiles(a, panels, bias, epilogue, out, 0, tiles)
    return out


def product(a, b, out, accumulate=False, threads=1, panels=None):
    """out (M,N) = a (M,K) @ b (K,N), or out += a @ b; float32, a and out C-contiguous, b any
    strides: ``matmul`` with b packed here, or given packed as ``panels``."""
    bias = np.zeros(out.shape[1], np.float32)
    panels = pack(b) if panels is None else panels
    return matmul(a, panels, bias, ACCUMULATE if accumulate else BIAS, out, threads)


@njit(cache=True, parallel=True, error_model="numpy")
def _tiles_parallel(a, panels, bias, epilogue, out):
    blocks = panels.shape[0]
    chunks = -(-a.shape[0] // ROWS_PER_TILE)
    if chunks >= 8:
        for chunk in prange(chunks):
            _tiles(a, panels, bias, epilogue, out, chunk * blocks, (chunk + 1) * blocks)
    else:
        for tile in prange(chunks * blocks):
            _tiles(a, panels, bias, epilogue, out, tile, tile + 1)


@njit(cache=True, nogil=True, error_model="numpy")
def _tiles(a, panels, bias, epilogue, out, first, last):
    """Tiles [first, last) of out, numbered row chunk * panels + panel."""
    m, k = a.shape
    n = out.shape[1]
    lanes = lanes_for(n)
    flat_a, flat_out = a.reshape(-1), out.reshape(-1)
    for tile in range(first, last):
        chunk, block = tile // panels.shape[0], tile % panels.shape[0]
        f0 = block * lanes
        count = min(lanes, n - f0)
        r, stop = chunk * ROWS_PER_TILE, min(m, (chunk + 1) * ROWS_PER_TILE)
        while r < stop:
            rows = block_rows(stop - r)
            args = (rows, flat_out, r * n + f0, n, count, bias, f0, epilogue, flat_a, r * k, k, 0)
            micro_kernel(lanes, (*args, panels[block], 0, k, 1))
            r += rows
