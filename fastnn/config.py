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

    fastnn's passes alternate GEMMs with Numba kernels. Threaded OpenBLAS keeps its threads
    busy-waiting after each GEMM, against the Numba kernel that follows on the same cores: a
    Conv2D forward measured 3-4x slower than its parts, LSTM time loops 3-6x. So forward and
    backward passes run inside this section and ``fastnn.gemm.matmul`` splits large products
    over threads that sleep when idle. Reference counted under the module's lock, so concurrent
    passes never leave BLAS limited. threadpoolctl lets only one thread (the first to set a
    limit) change OpenBLAS's process-wide count; in others the section changes nothing and
    ``active`` stays False, so GEMMs are not split on top of BLAS's threads.
    """

    def __init__(self):
        self.depth = 0
        self.active = False  # BLAS is on one thread because of this section
        self._restore = []  # (library controller, its thread count before the section)

    def __enter__(self):
        with _lock:
            if self.depth == 0:
                controller = _blas()
                libraries = [
                    lib for lib in (controller.lib_controllers if controller else [])
                    if lib.user_api == "blas"
                ]  # fmt: skip
                self._restore = [(lib, lib.get_num_threads()) for lib in libraries]
                for lib in libraries:
                    lib.set_num_threads(1)
                self.active = bool(libraries) and all(
                    lib.get_num_threads() == 1 for lib in libraries
                )
            self.depth += 1
        return self

    def __exit__(self, *exc_info):
        with _lock:
            self.depth -= 1
            if self.depth == 0:
                for lib, count in self._restore:
                    lib.set_num_threads(count if _blas_threads is None else _blas_threads)
                self._restore = []
                self.active = False


_SERIAL_BLAS = _SerialBLAS()


def serial_blas() -> _SerialBLAS:
    """A context manager under which BLAS runs one thread (for kernels that interleave small
    GEMMs with Numba steps, such as the recurrent layers)."""
    return _SERIAL_BLAS
