"""Matrix products and row-parallel loops over a small pool of threads that sleep when idle.

The kernels' wrappers call these with ``threads``, a plain int: how many threads they may use
(1, the default, runs everything on the calling thread, one numpy product per call). The caller
decides it (fastnn's runtime gives its thread bound inside a section where BLAS runs one
thread, else 1): a block is one single-threaded BLAS call or one Numba call, and numpy and
the kernels release the GIL, so blocks run in parallel on the pool's threads. No Numba here:
this module loads with fastnn.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import forms
from .codes import LINEAR, RELU

# A block must be worth waking a thread for: at least this many flops. Products of under twice
# this ran slower split in two on this 2-core VM (an idle thread took ~50-100 us to join in: a
# 20 MFLOP dense layer 0.85x, 12.6 MFLOP 0.7x; from ~30 MFLOP 1.2-1.6x faster).
MIN_FLOPS_PER_BLOCK = 16_000_000
# Products at least this many times longer in K than either side of the output run as slices of
# K with partial sums: weight gradients such as an LSTM's hs.T @ dz (64 x 3200 x 256) or a dense
# layer's (100 x 3136 x 100) ran 1.09-1.18x faster than in halves of the output (on 2 threads;
# from K = max(M, N) down, halves of the output were faster).
MIN_K_RATIO_TO_SPLIT_K = 2
# Rows per block of row_blocks: with fewer, the blocks' Python loops contend for the GIL (LSTM at
# batch 32 measured 5% slower in two blocks of 16 than in one; 8-24% faster in blocks of 64+).
MIN_ROWS_PER_BLOCK = 32

# Float32 products this many times longer than b's larger side (and of SIMD_MIN_FLOPS) run on
# fastnn's SIMD micro-kernels (``matmul_simd``), 1.2-2.6x faster than OpenBLAS's there.
SIMD_ROWS_PER_SIDE = 16
SIMD_MIN_FLOPS = 4_000_000
# With b kept packed (a ``forms.Forms``: a Dense layer's kernel at inference), float32 products
# of SIMD_MIN_KEPT_FLOPS run there at any length: 1-4 rows by 512x512 to 784x512 2.4-4.8x
# faster than OpenBLAS's, 64-256 rows 1.15-1.6x; under it, Numba's thread launch cost more. So
# do products of one row by a b of SIMD_MIN_KEPT_VALUES: streamed by one thread from one
# core's cache, a 784-512-512-10 MLP's weights took 2x as long as split over both cores'.
SIMD_MIN_KEPT_FLOPS = 1_500_000
SIMD_MIN_KEPT_VALUES = 262_144
# Packed at the call, a b of SIMD_MIN_KEPT_VALUES to SIMD_MAX_PACKED_VALUES values by
# SIMD_MIN_PACKED_ROWS to SIMD_MAX_PACKED_ROWS rows runs there too (a Dense layer's products in
# training, whose kernel changes every step): 8-256 rows by 512x512 or 784x512 ran 1.1-1.6x
# OpenBLAS's speed (packing a contiguous b costs a copy; a transposed one, x @ kernel.T, more);
# 1 row and b of 1024x1024 ran slower.
SIMD_MIN_PACKED_ROWS = 8
SIMD_MAX_PACKED_ROWS = 256
SIMD_MAX_PACKED_VALUES = 1 << 19

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def matmul(
    a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False, threads: int = 1
) -> np.ndarray:
    """out (M,N) = a (M,K) @ b (K,N), or ``out += a @ b`` with ``accumulate``; returns out.

    ``a`` and ``b`` may be transposed views; ``b`` may be a ``forms.Forms`` (kept the same
    between calls: packed once). On up to ``threads`` threads, a product worth it runs in
    blocks: rows or columns of ``out`` (its longer side), or slices of K with partial sums when
    K is long or both sides of ``out`` are short.
    """
    m, k = a.shape
    n = b.shape[1]
    b, kept = forms.split(b)
    panels = _simd_panels(a, b, kept, out)
    if panels is not None:
        from . import matmul_simd

        return matmul_simd.product(a, b, out, accumulate, threads, panels)
    threads = min(threads, 2 * m * n * k // MIN_FLOPS_PER_BLOCK)  # the blocks it is worth
    if threads <= 1:  # most products of small layers: no call more than numpy's
        if accumulate:
            out += a @ b
        else:
            np.matmul(a, b, out=out)
    elif max(m, n) >= 16 * threads and k < MIN_K_RATIO_TO_SPLIT_K * max(m, n):
        spans = _blocks(max(m, n), threads)
        if m >= n:
            _run([(_product, a[i:j], b, out[i:j], accumulate) for i, j in spans])
        else:
            _run([(_product, a, b[:, i:j], out[:, i:j], accumulate) for i, j in spans])
    else:
        partials = np.empty((threads - 1, m, n), dtype=out.dtype)
        (i0, j0), *rest = _blocks(k, threads)
        _run(
            [(_product, a[:, i0:j0], b[i0:j0], out, accumulate)]
            + [(_product, a[:, i:j], b[i:j], p, False) for (i, j), p in zip(rest, partials)]
        )
        for partial in partials:
            out += partial
    return out


def may_run_simd(m: int, k: int, n: int) -> bool:
    """A quick test every product ``matmul_simd`` takes passes (b of SIMD_MIN_KEPT_VALUES
    values or SIMD_MIN_KEPT_FLOPS flops): False spares a small product the rest of the tests."""
    return k * n >= SIMD_MIN_KEPT_VALUES or 2 * m * k * n >= SIMD_MIN_KEPT_FLOPS


def matmul_bias(a: np.ndarray, b, bias: np.ndarray, code: int, out: np.ndarray, threads: int = 1):
    """out (M,N) = act(a (M,K) @ b (K,N) + bias (N,)) in one pass (the SIMD micro-kernels'
    epilogue), act the activation ``code`` (``codes.LINEAR`` or ``RELU``: the epilogue's), where
    ``matmul`` would run the product there: True; elsewhere, or for another activation, False,
    and out is untouched. ``b`` as ``matmul`` takes it."""
    run = _bias_call(a, b, bias, code, out, threads)
    if run is None:
        return False
    run(a)
    return True


def matmul_bias_call(a: np.ndarray, b, bias: np.ndarray, code: int, out: np.ndarray, threads=1):
    """``matmul_bias`` for arrays of a's shape and dtype, b a ``forms.Forms`` kept the same,
    its choices made now: a function a -> out, or None where ``matmul_bias`` returns False."""
    return None if forms.split(b)[1] is None else _bias_call(a, b, bias, code, out, threads)


def _bias_call(a, b, bias, code, out, threads):
    """``matmul_bias_call`` for any b (one packed now: good for this call only), or None."""
    n = out.shape[1]
    if code not in (LINEAR, RELU) or not may_run_simd(a.shape[0], a.shape[1], n):
        return None
    if bias.shape != (n,) or bias.dtype != np.float32 or not bias.flags.c_contiguous:
        return None
    b, kept = forms.split(b)
    panels = _simd_panels(a, b, kept, out)
    if panels is None:
        return None
    from . import matmul_simd

    epilogue = matmul_simd.BIAS_RELU if code == RELU else matmul_simd.BIAS
    return matmul_simd.matmul_call(a.shape[0], panels, bias, epilogue, out, threads)


def matmul_call(a: np.ndarray, b, out: np.ndarray, threads: int = 1):
    """``matmul`` (out = a @ b) for arrays of a's shape and dtype, b a ``forms.Forms`` kept
    the same or an array, its choices made now: a function a -> out."""
    array, kept = forms.split(b)
    if kept is not None:  # on the SIMD kernels where they take it, with a zero bias
        zeros = np.zeros(out.shape[1], out.dtype)
        run = _bias_call(a, b, zeros, LINEAR, out, threads)
        if run is not None:
            return run
    m, k = a.shape
    if min(threads, 2 * m * k * array.shape[1] // MIN_FLOPS_PER_BLOCK) <= 1:
        return lambda a: np.matmul(a, array, out=out)
    return lambda a: matmul(a, array, out, False, threads)


def _simd_panels(a, b, kept, out):
    """b packed for ``matmul_simd`` where it takes a @ b into out (``_simd_wins``), else None:
    once per ``kept`` (b's ``forms.Forms``), or now into this thread's buffer (a fresh array a
    call would cost its page faults)."""
    m, k = a.shape
    n = b.shape[1]
    if not _simd_wins(a, b, out, m, k, n, kept is not None):
        return None
    from . import matmul_simd  # Numba's: imported at the first product that runs there

    if kept is None:
        return matmul_simd.pack(b, _packing_buffer(matmul_simd.packed_size(k, n)))
    return forms.derived(kept, b, "simd", matmul_simd.pack)


_buffers = threading.local()


def _packing_buffer(size: int) -> np.ndarray:
    """This thread's float32 buffer for b's panels, at least ``size`` values."""
    buffer = getattr(_buffers, "panels", None)
    if buffer is None or buffer.size < size:
        buffer = _buffers.panels = np.empty(size, np.float32)
    return buffer


def _simd_wins(a, b, out, m: int, k: int, n: int, kept: bool = False) -> bool:
    """Whether ``matmul_simd`` takes this product: float32, a and out C-contiguous, and long
    enough for its packing of b to pay (SIMD_ROWS_PER_SIDE, SIMD_MIN_FLOPS), or of a mid-sized
    b (the SIMD_ ... PACKED constants), or, b ``kept`` packed, worth Numba's threads
    (SIMD_MIN_KEPT_FLOPS, SIMD_MIN_KEPT_VALUES)."""
    if not (a.dtype == b.dtype == out.dtype == np.float32):
        return False
    flops = 2 * m * k * n
    if kept:
        worth = flops >= SIMD_MIN_KEPT_FLOPS or k * n >= SIMD_MIN_KEPT_VALUES
    else:
        long = m >= SIMD_ROWS_PER_SIDE * max(k, n) and flops >= SIMD_MIN_FLOPS
        few_rows = SIMD_MIN_PACKED_ROWS <= m <= SIMD_MAX_PACKED_ROWS
        worth = long or few_rows and SIMD_MIN_KEPT_VALUES <= k * n <= SIMD_MAX_PACKED_VALUES
    return worth and a.flags.c_contiguous and out.flags.c_contiguous


def matmuls(products: list, threads: int = 1) -> None:
    """Each ``(a, b, out, accumulate)`` of products, as ``matmul`` runs it; the products must be
    independent (no output is another's input).

    As many products as ``threads``, each worth a block and none over twice another's size, run
    side by side, each on one thread: two products side by side ran 1.15x faster than one after
    the other split in two (an LSTM's kernel and table-row gradients, 155 MFLOP each).
    Otherwise one after another, each by ``matmul``.
    """
    if len(products) > 1 and threads == len(products):
        flops = [2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _, _ in products]
        if min(flops) >= MIN_FLOPS_PER_BLOCK and 2 * min(flops) >= max(flops):
            _run([(_product, *product) for product in products])
            return
    for product in products:
        matmul(*product, threads=threads)


def row_blocks(
    fn: Callable[[int, int], None], rows: int, threads: int = 1, min_rows: int | None = None
) -> None:
    """``fn(start, stop)`` on contiguous blocks of range(rows), up to ``threads`` at once.

    For work whose rows are independent, such as a recurrent layer's time loop over the samples
    of a batch or a conv's output rows: each block runs with no synchronization. One block
    (``fn(0, rows)``) on one thread or below ``min_rows`` rows per block (pass fewer for work
    that holds the GIL rarely, such as a whole time loop in one Numba call; None:
    ``MIN_ROWS_PER_BLOCK``).
    """
    threads = min(threads, rows // (MIN_ROWS_PER_BLOCK if min_rows is None else min_rows))
    if threads <= 1:
        fn(0, rows)
    else:
        _run([(fn, i, j) for i, j in _blocks(rows, threads)])


def _product(a, b, out, accumulate):
    """One numpy product: out = a @ b, or out += a @ b."""
    if accumulate:
        out += a @ b
    else:
        np.matmul(a, b, out=out)
    return out


def _blocks(size: int, parts: int) -> list:
    """``parts`` contiguous (start, stop) ranges covering range(size) as evenly as possible."""
    edges = [size * p // parts for p in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def _run(calls: list) -> None:
    """Each ``(fn, *args)`` of calls: the first here, the rest on the pool; waits for all."""
    futures = [_executor().submit(*call) for call in calls[1:]]
    fn, *args = calls[0]
    try:
        fn(*args)
    finally:
        for future in futures:
            future.result()


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                workers = max(1, (os.cpu_count() or 2) - 1)
                _pool = ThreadPoolExecutor(workers, thread_name_prefix="fastnn-gemm")
    return _pool


def _forget_pool() -> None:
    """A fork child has none of the pool's threads: it starts a new pool on first use."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
