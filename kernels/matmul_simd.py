"""Float32 matrix products on the SIMD micro-kernels (``simd.block_product``), on Numba's threads.

``matmul`` computes out (M,N) = a (M,K) @ b (K,N) + bias, optionally through a relu, or adds
a @ b into out, in one pass: ``gemm.matmul``'s long float32 products, and (its micro-kernel
calls and packing) the SIMD convolutions of ``conv_simd``.
b is packed first (``pack``: panels of 16 or 32 columns, K rows each, the columns past N zero),
a is read in place. The output is cut into tiles of ``ROWS_PER_TILE`` rows by one panel; a tile
runs slice by slice of K (``K_BLOCK``) its blocks of 12 rows (8 to 1 at its end), whose
accumulators stay in registers over the slice, and Numba's threads take the tiles as they come
free. Against numpy's (OpenBLAS) sgemm on 2 threads this ran 1.2-2.6x faster on long products
of a small b (see below).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import ACCUMULATE, ACCUMULATE_RELU, BIAS, BIAS_RELU, LANES, block_product, copy_lanes

WIDE = 2 * LANES
PIXELS = 12  # rows per micro-kernel call: 12 x 32 keeps 24 accumulators in registers
# Every count of rows up to 8 has a kernel: a block of 5 run as 4 and 1 read b's panel twice,
# the one-row call taking about as long as the four-row one (a kernel gradient 1.3-2.3x slower).
BLOCK_ROWS = (PIXELS, 8, 7, 6, 5, 4, 3, 2, 1)
WIDE_BLOCKS = block_product(WIDE, BLOCK_ROWS)
NARROW_BLOCKS = block_product(LANES, BLOCK_ROWS)
STRIDED_WIDE_BLOCKS = block_product(WIDE, BLOCK_ROWS, strided=True)
STRIDED_NARROW_BLOCKS = block_product(LANES, BLOCK_ROWS, strided=True)
ROWS_PER_TILE = 48
# A tile runs over K in slices this deep: a slice of b's panel (256 x 32 floats, 32 KB) stays in
# cache for all of the tile's blocks of rows. Over all of K at once, each block streamed the
# whole panel (100 KB at K = 784) from L2: on a 2-core Zen 4 1-thread products of 256 to 2048
# rows by 512x512 to 1024x1024 ran 1.8-2x faster in slices (110-116 GFLOP/s, the micro-kernel's
# in-cache speed), 2-thread 1.6x (200-220, OpenBLAS's 196-210).
K_BLOCK = 256
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
def strided_micro_kernel(lanes, args):
    """``micro_kernel`` reading a with a step along K: ``args`` are the 17 arguments of
    ``simd.block_product(..., strided=True)``'s kernels."""
    if lanes == WIDE:
        STRIDED_WIDE_BLOCKS(*args)
    else:
        STRIDED_NARROW_BLOCKS(*args)


@njit(cache=True, nogil=True, inline="always")
def block_rows(left):
    """Rows in the next micro-kernel call with ``left`` of them to go."""
    return PIXELS if left >= PIXELS else 8 if left >= 8 else left


def pack(b: np.ndarray, buffer: np.ndarray | None = None) -> np.ndarray:
    """b (K,N), any strides, as the micro-kernels' panels (ceil(N/lanes), K*lanes) float32,
    lanes = ``lanes_for(N)``, the columns past N zero; on Numba's threads from
    ``PACK_PARALLEL_MIN_VALUES`` values. Written at the start of ``buffer`` (float32, 1-D,
    large enough: ``packed_size``) if given."""
    lanes = lanes_for(b.shape[1])
    shape = (-(-b.shape[1] // lanes), b.shape[0] * lanes)
    if buffer is None:
        panels = np.empty(shape, np.float32)
    else:
        panels = buffer[: shape[0] * shape[1]].reshape(shape)
    if b.size >= PACK_PARALLEL_MIN_VALUES and panels.shape[0] > 1:
        _pack_parallel(b, lanes, panels)
    else:
        pack_into(b, lanes, panels)
    return panels


def packed_size(k: int, n: int) -> int:
    """Values of ``pack``'s panels of a (K,N) b."""
    lanes = lanes_for(n)
    return -(-n // lanes) * k * lanes


PACK_PARALLEL_MIN_VALUES = 1 << 16
PACK_COLUMN_ROWS = 64  # a transposed b is packed this many rows at a time: their lanes in L1


@njit(cache=True, nogil=True, error_model="numpy")
def pack_into(b, lanes, panels):
    """``pack``'s panels of b (K,N), any strides, written into ``panels``."""
    for block in range(panels.shape[0]):
        _pack_panel(b, lanes, panels[block], block)


@njit(cache=True, parallel=True, error_model="numpy")
def _pack_parallel(b, lanes, panels):
    for block in prange(panels.shape[0]):
        _pack_panel(b, lanes, panels[block], block)


@njit(cache=True, nogil=True, error_model="numpy")
def _pack_panel(b, lanes, panel, block):
    """Panel ``block`` of ``pack``: b's columns from block * lanes as K rows of lanes."""
    k, n = b.shape
    f0 = block * lanes
    count = min(lanes, n - f0)
    row_step, column_step = b.strides[0] // 4, b.strides[1] // 4
    if column_step == 1:  # b's rows are contiguous: a vector at a time
        for t in range(k):
            for v in range(0, lanes, LANES):
                copy_lanes(b, t * row_step + f0 + v, panel, t * lanes + v, count - v)
        return
    for t0 in range(0, k, PACK_COLUMN_ROWS):  # read along b's columns, a few rows at a time
        t1 = min(k, t0 + PACK_COLUMN_ROWS)
        for j in range(count):
            for t in range(t0, t1):
                panel[t * lanes + j] = b[t, f0 + j]
    if count < lanes:
        for t in range(k):
            panel[t * lanes + count : (t + 1) * lanes] = 0


def matmul(a, panels, bias, epilogue, out, threads=1):
    """out (M,N) = a (M,K) @ b + bias (N,) (``simd.BIAS``), the same through max(., 0)
    (``BIAS_RELU``), or out += a @ b (``ACCUMULATE``, bias unread; ``ACCUMULATE_RELU``: then
    max(., 0)); float32, a and out C-contiguous, b packed by ``pack``; tiles on up to
    ``threads`` of Numba's threads."""
    return matmul_call(a.shape[0], panels, bias, epilogue, out, threads)(a)


def matmul_call(m, panels, bias, epilogue, out, threads=1):
    """``matmul`` for an a of m rows, its choices made now: a function a -> out."""
    tiles = -(-m // ROWS_PER_TILE) * panels.shape[0]
    if threads > 1 and tiles > 1:

        def run(a):
            _tiles_parallel(a, panels, bias, epilogue, out)
            return out

    else:

        def run(a):
            _tiles(a, panels, bias, epilogue, out, 0, tiles)
            return out

    return run


def product(a, b, out, accumulate=False, threads=1, panels=None):
    """out (M,N) = a (M,K) @ b (K,N), or out += a @ b; float32, a and out C-contiguous, b any
    strides: ``matmul`` with b packed here, or given packed as ``panels``."""
    bias = np.zeros(out.shape[1], np.float32)
    panels = pack(b) if panels is None else panels
    return matmul(a, panels, bias, ACCUMULATE if accumulate else BIAS, out, threads)


@njit(cache=True, parallel=True, error_model="numpy")
def _tiles_parallel(a, panels, bias, epilogue, out):
    """The tiles on Numba's threads: a thread takes a span of row chunks (each with every
    panel: a's rows stay in cache) or, where b's panels outweigh a, a span of panels (each
    with every row chunk: read from memory once, where by chunks every thread streamed all of
    a 4 MB b from memory and ran at half speed)."""
    blocks = panels.shape[0]
    chunks = -(-a.shape[0] // ROWS_PER_TILE)
    by_panel = panels.size > a.size
    if chunks >= 8 and not by_panel:
        for chunk in prange(chunks):
            _tiles(a, panels, bias, epilogue, out, chunk * blocks, (chunk + 1) * blocks, False)
    else:
        for tile in prange(chunks * blocks):
            _tiles(a, panels, bias, epilogue, out, tile, tile + 1, by_panel)


@njit(cache=True, nogil=True, error_model="numpy")
def _tiles(a, panels, bias, epilogue, out, first, last, by_panel=False):
    """Tiles [first, last) of out, numbered row chunk * panels + panel (``by_panel``: panel *
    row chunks + row chunk), each by ``panel_rows``."""
    m, k = a.shape
    n = out.shape[1]
    lanes = lanes_for(n)
    chunks = -(-m // ROWS_PER_TILE)
    flat_a, flat_out = a.reshape(-1), out.reshape(-1)
    for tile in range(first, last):
        if by_panel:
            chunk, block = tile % chunks, tile // chunks
        else:
            chunk, block = tile // panels.shape[0], tile % panels.shape[0]
        f0 = block * lanes
        start, stop = chunk * ROWS_PER_TILE, min(m, (chunk + 1) * ROWS_PER_TILE)
        panel_rows(
            stop - start, flat_a, start * k, k, k, panels[block], lanes, min(lanes, n - f0),
            flat_out, start * n + f0, n, bias, f0, epilogue,
        )  # fmt: skip


@njit(cache=True, nogil=True, error_model="numpy")
def panel_rows(
    rows, a, a_at, lda, depth, panel, lanes, count, out, out_at, ldo, bias, bias_at, epilogue
):  # fmt: skip
    """out[out_at + r * ldo + l] = the ``epilogue`` of the sum over t < depth of
    a[a_at + r * lda + t] * panel[t * lanes + l] (+ bias[bias_at + l]), for r < rows and
    l < count: a and out flat float32, the panel one of ``pack``'s. Over the depth in slices
    of K_BLOCK, every block of the rows by one slice before the next."""
    for k0 in range(0, max(depth, 1), K_BLOCK):
        size = min(K_BLOCK, depth - k0)
        step = _slice_epilogue(epilogue, k0 == 0, k0 + size >= depth)
        r = 0
        while r < rows:
            block = block_rows(rows - r)
            args = (block, out, out_at + r * ldo, ldo, count, bias, bias_at, step, a)
            micro_kernel(lanes, (*args, a_at + r * lda + k0, lda, 0, panel, k0 * lanes, size, 1))
            r += block


@njit(cache=True, nogil=True, inline="always")
def _slice_epilogue(epilogue, first, last):
    """The epilogue of a slice of K in a product whose own is ``epilogue``: the bias with the
    first slice, the relu with the last, the sums of the others added."""
    if first and last:
        return epilogue
    if first:
        return ACCUMULATE if epilogue >= ACCUMULATE else BIAS
    if last and epilogue in (BIAS_RELU, ACCUMULATE_RELU):
        return ACCUMULATE_RELU
    return ACCUMULATE
