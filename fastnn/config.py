"""Process-level settings: Numba's threading layer and the threads of Numba kernels and BLAS.

Threading layer: Numba picks one by priority tbb > omp > workqueue when its threads start (the
first parallel kernel); fastnn depends on the ``tbb`` package (x86_64) so TBB is used: safe under
concurrent calls and in ``fork`` children, and it does not busy-wait against BLAS threads as the
OpenMP layer does. Set the environment variable NUMBA_THREADING_LAYER (before the first kernel
runs) to choose another; ``threading_layer()`` tells which one is in use.

Threads: ``set_num_threads(n)`` bounds Numba's kernels and BLAS (through threadpoolctl, when it is
installed) for the whole process. Numba's own count is per calling thread, so fastnn re-applies the
bound in whichever thread calls ``fit``/``evaluate``/``predict``/``model(x)``.
"""

from __future__ import annotations

import threading

import numpy as np

_lock = threading.Lock()
_numba_threads: int | None = None  # set_num_threads(n); None: Numba's default in each thread
_blas_threads: int | None = None  # the BLAS limit set_num_threads asked for; None: BLAS's own
_controller = None  # threadpoolctl.ThreadpoolController, or False without threadpoolctl


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads in Numba kernels and in BLAS (BLAS needs threadpoolctl)."""
    import numba  # here, not at module level: `import fastnn.config` stays free of numba

    available = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= available:
        raise ValueError(
            f"set_num_threads(): `n` must be an integer in 1..{available} (Numba's thread "
            f"pool, NUMBA_NUM_THREADS, on this machine); got n={n!r}"
        )
    global _numba_threads, _blas_threads, _controller
    with _lock:
        numba.set_num_threads(int(n))
        _numba_threads = _blas_threads = int(n)
        if _controller:
            _controller = None  # look again: a BLAS may have been loaded since
        if _SERIAL_BLAS.depth == 0:  # else the serial section applies it when it ends
            _limit_blas(_blas_threads)


def get_num_threads() -> int:
    """Threads fastnn's Numba kernels use (the ``set_num_threads`` bound, else Numba's count)."""
    if _numba_threads is not None:
        return _numba_threads
    import numba

    return numba.get_num_threads()


def threading_layer() -> str:
    """Numba's threading layer in use: 'tbb', 'omp' or 'workqueue' (starts Numba's threads)."""
    import numba

    numba.get_num_threads()  # starts the thread pool, which selects the layer
    return numba.threading_layer()


def floatx() -> str:
    """The default float dtype of weights and inputs."""
    return "float32"


def _apply_num_threads() -> None:
    """Bound Numba's threads in the calling thread by ``set_num_threads`` (Numba's count is
    thread-local: a thread that never called numba.set_num_threads uses all of them)."""
    n = _numba_threads
    if n is not None:
        import numba

        if numba.get_num_threads() != n:
            numba.set_num_threads(n)


def _blas():
    """The threadpoolctl controller of the loaded BLAS libraries, or False without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # optional at runtime: then BLAS keeps its own threads
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller


def _limit_blas(n: int):
    """Limit BLAS to ``n`` threads; the threadpoolctl limiter (None without threadpoolctl)."""
    controller = _blas()
    return controller.limit(limits=n, user_api="blas") if controller else None


class _SerialBLAS:
    """Context manager: BLAS runs one thread inside; on leaving, the last user restores the
    ``set_num_threads`` bound, or BLAS's own count if none was set.

    The recurrent kernels alternate a small GEMM with a short Numba step T times; threaded BLAS
    wakes its threads for each of those GEMMs, which measured 3-6x slower than one thread on a
    loaded 2-core machine. They run their time loops inside this context; the large GEMMs
    before and after the loop (input projection, weight gradients) stay threaded, which measured
    20-30% faster per training step than limiting the whole pass (LSTM text model, batch 32 and
    128, idle 2-core machine). Reference counted under the module's lock, so concurrent passes
    never leave BLAS limited.
    """

    def __init__(self):
        self.depth = 0
        self._limiter = None

    def __enter__(self):
        with _lock:
            if self.depth == 0:
                self._limiter = _limit_blas(1)
            self.depth += 1
        return self

    def __exit__(self, *exc_info):
        with _lock:
            self.depth -= 1
            if self.depth == 0 and self._limiter is not None:
                if _blas_threads is None:
                    self._limiter.restore_original_limits()
                else:
                    _limit_blas(_blas_threads)
                self._limiter = None


_SERIAL_BLAS = _SerialBLAS()


def serial_blas() -> _SerialBLAS:
    """A context manager under which BLAS runs one thread (for kernels that interleave small
    GEMMs with Numba steps, such as the recurrent layers)."""
    return _SERIAL_BLAS
