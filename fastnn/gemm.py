"""Matrix products and row-parallel loops of fastnn's passes, on fastnn's own threads.

Inside a serial-BLAS section (``fastnn.config.serial_blas``, held around every forward and
backward pass) BLAS runs one thread, so its threads do not busy-wait against the Numba kernels
between GEMMs; ``matmul`` then splits a large product over a small pool of threads that sleep
when idle, each block one single-threaded BLAS call (numpy releases the GIL around it).
Outside such a section it is one ``np.matmul`` with BLAS's own threads.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastnn import config
from fastnn.kernels.gemm import matmul as _product

# A block must be worth waking a thread for: at least this many flops. Products of under twice
# this ran slower split in two on this 2-core VM (an idle thread took ~50-100 us to join in: a
# 20 MFLOP dense layer 0.85x, 12.6 MFLOP 0.7x; from ~30 MFLOP 1.2-1.6x faster).
MIN_FLOPS_PER_BLOCK = 16_000_000
# Products at least this many times longer in K than either side of the output run as slices of
# K with partial sums: weight gradients such as an LSTM's hs.T @ dz (64 x 3200 x 256) or a dense
# layer's (100 x 3136 x 100) ran 1.09-1.18x faster than in halves of the output (on 2 threads;
# from K = max(M, N) down, halves of the output were faster).
MIN_K_RATIO_TO_SPLIT_K = 2
# Rows per block of row_shards: with fewer, the blocks' Python loops contend for the GIL (LSTM at
# batch 32 measured 5% slower in two blocks of 16 than in one; 8-24% faster in blocks of 64+).
MIN_ROWS_PER_SHARD = 32

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """out (M,N) = a (M,K) @ b (K,N), or ``out += a @ b`` with ``accumulate``; returns out.

    ``a`` and ``b`` may be transposed views. Blocks are rows or columns of ``out`` (its longer
    side), or slices of K with partial sums when K is long or both sides of ``out`` are short.
    """
    m, k = a.shape
    n = b.shape[1]
    worth = 2 * m * n * k // MIN_FLOPS_PER_BLOCK  # how many blocks the product is worth
    threads = 1
    if worth > 1 and config._SERIAL_BLAS.active:  # small products skip the thread count's cost
        threads = min(config.get_num_threads(), worth)
    if threads <= 1:
        _product(a, b, out, accumulate)
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


def matmuls(products: list) -> None:
    """Each ``(a, b, out, accumulate)`` of products, as ``matmul`` runs it; the products must be
    independent (no output is another's input).

    As many products as fastnn's threads, each worth a block and none over twice another's
    size, run side by side, each on one thread: two products side by side ran 1.15x faster than
    one after the other split in two (an LSTM's kernel and table-row gradients, 155 MFLOP each).
    Otherwise one after another, each by ``matmul``.
    """
    flops = [2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b, _, _ in products]
    side_by_side = (
        len(products) > 1
        and min(flops) >= MIN_FLOPS_PER_BLOCK
        and 2 * min(flops) >= max(flops)
        and config._SERIAL_BLAS.active
        and config.get_num_threads() == len(products)
    )
    if side_by_side:
        _run([(_product, *product) for product in products])
    else:
        for product in products:
            matmul(*product)


def cblas_gemm(dtype):
    """numpy's BLAS ``cblas_sgemm`` / ``cblas_dgemm`` as a ctypes function for ``dtype``
    (float32 / float64), which Numba kernels call without Python per product, or None when
    numpy's BLAS is not an OpenBLAS that exports it (the kernels then use loops)."""
    dtype = np.dtype(dtype)
    if dtype not in _CBLAS:
        _CBLAS[dtype] = _find_cblas_gemm(dtype)
    return _CBLAS[dtype]


_CBLAS: dict = {}
# Symbol names by how numpy's OpenBLAS is built: numpy 2 wheels, numpy 1.2x wheels (64-bit ints),
# and a system OpenBLAS (32-bit ints).
_CBLAS_SYMBOLS = (
    ("scipy_cblas_{}gemm64_", True),
    ("cblas_{}gemm64_", True),
    ("cblas_{}gemm", False),
)


def _find_cblas_gemm(dtype):
    prefix = {np.dtype(np.float32): "s", np.dtype(np.float64): "d"}.get(dtype)
    library = _numpy_openblas()
    if prefix is None or library is None:
        return None
    real = ctypes.c_float if prefix == "s" else ctypes.c_double
    for pattern, ilp64 in _CBLAS_SYMBOLS:
        function = getattr(library, pattern.format(prefix), None)
        if function is not None:
            index = ctypes.c_int64 if ilp64 else ctypes.c_int
            enum, pointer = ctypes.c_int, ctypes.c_void_p
            function.argtypes = [enum, enum, enum, index, index, index, real, pointer, index]
            function.argtypes += [pointer, index, real, pointer, index]
            function.restype = None
            return function
    return None


def _numpy_openblas():
    """numpy's OpenBLAS as a ctypes library (the one ``config.serial_blas`` keeps on one
    thread), or None: the one a numpy wheel bundles, else the only OpenBLAS loaded."""
    controller = config._blas()
    openblas = [lib for lib in (controller.lib_controllers if controller else [])]
    openblas = [lib for lib in openblas if lib.internal_api == "openblas"]
    bundled = [
        lib for lib in openblas if "numpy" in os.path.basename(os.path.dirname(lib.filepath))
    ]
    chosen = bundled or (openblas if len(openblas) == 1 else [])
    try:
        return ctypes.CDLL(chosen[0].filepath) if chosen else None
    except OSError:
        return None


def _blocks(size: int, parts: int) -> list:
    """``parts`` contiguous (start, stop) ranges covering range(size) as evenly as possible."""
    edges = [size * p // parts for p in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:]))


def row_shards(fn, rows: int, min_rows: int = MIN_ROWS_PER_SHARD) -> None:
    """``fn(start, stop)`` on contiguous blocks of range(rows), one block per thread.

    For work whose rows are independent, such as a recurrent layer's time loop over the samples
    of a batch: each block runs its loop with no synchronization. One block (``fn(0, rows)``)
    outside a serial-BLAS section or below ``min_rows`` rows per block (fewer for work that
    holds the GIL rarely, such as a whole time loop in one Numba call).
    """
    threads = 1
    if config._SERIAL_BLAS.active:
        threads = min(config.get_num_threads(), rows // min_rows)
    if threads <= 1:
        fn(0, rows)
    else:
        _run([(fn, i, j) for i, j in _blocks(rows, threads)])


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
