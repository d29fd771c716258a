"""Process-level settings: Numba's threading layer and the threads of Numba kernels and BLAS.

Threading layer: Numba picks one by priority tbb > omp > workqueue when its threads start; fastnn
depends on the ``tbb`` package (x86_64) so TBB is used: safe under concurrent calls and in
``fork`` children, and it does not busy-wait against BLAS threads as the OpenMP layer does. The
package's library sits where the dynamic loader does not look (a virtualenv's ``lib``), so
``fastnn._tbb`` loads it just before Numba is imported. fastnn starts Numba's threads at its
first pass and, if the layer is not TBB though nothing chose another, warns once, naming the
layer and what it means for ``fork``. Under GNU OpenMP a fork child of a process whose Numba
threads started cannot run a parallel kernel (Numba terminates it): there fastnn raises
RuntimeError instead. Set the environment variable NUMBA_THREADING_LAYER (before the first
kernel runs) to choose another layer; ``threading_layer()`` tells which one is in use.

Threads: ``set_num_threads(n)`` bounds Numba's kernels and BLAS (through threadpoolctl, when it is
installed) for the whole process. Numba's own count is per calling thread, so fastnn re-applies the
bound in whichever thread calls ``fit``/``evaluate``/``predict``/``model(x)``.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings

import numpy as np

from fastnn import _tbb

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
    _check_layer()
    import numba

    return numba.threading_layer()


class ThreadingLayerWarning(RuntimeWarning):
    """Numba's threads run on another layer than TBB although nothing chose one."""


_layer_lock = threading.Lock()
_layer_checked = False  # Numba's threads were started and their layer looked at (once)
_fork_refusal: str | None = None  # set in a fork child that must not run Numba's kernels

_FORK_REFUSAL = (
    "fastnn cannot run in this process: it was forked from one whose Numba threads run on the "
    "GNU OpenMP threading layer, which is not fork-safe (Numba terminates a fork child at its "
    "first parallel kernel). Start worker processes with multiprocessing's 'spawn' or "
    "'forkserver' method, or give Numba the TBB layer (the tbb package; "
    "fastnn.config.threading_layer() says 'tbb' then), or set NUMBA_THREADING_LAYER=workqueue "
    "in the parent (fork-safe, but two threads running kernels at once abort the process)."
)
_CONSEQUENCES = {
    "omp": (
        "Under GNU OpenMP a fork() child of this process cannot run fastnn (it raises "
        "RuntimeError there: start worker processes with the 'spawn' or 'forkserver' method), "
        "and OpenMP's threads busy-wait against BLAS's (slower steps)."
    ),
    "omp-safe": "OpenMP's threads busy-wait against BLAS's (slower steps).",
    "workqueue": (
        "With workqueue, two threads running fastnn at once abort the process (fork children "
        "are fine)."
    ),
}


def _ensure_threads() -> None:
    """Before a pass: refuse in a fork child where kernels would die; start Numba's threads
    (and say once if their layer is not TBB). Two flag tests once done."""
    if _fork_refusal is not None:
        raise RuntimeError(_fork_refusal)
    if not _layer_checked:
        _check_layer()


def _check_layer() -> None:
    """Start Numba's threads; warn once if their layer is not TBB though nothing chose one."""
    global _layer_checked
    with _layer_lock:
        if _layer_checked:
            return
        import numba  # the import hook of fastnn._tbb loads TBB first

        numba.get_num_threads()  # starts the thread pool, which selects the layer
        layer = numba.threading_layer()
        _layer_checked = True
        chosen = numba.config.THREADING_LAYER != "default" or list(
            numba.config.THREADING_LAYER_PRIORITY
        ) != ["tbb", "omp", "workqueue"]
        if layer == "tbb" or chosen:
            return
        key = "omp-safe" if layer == "omp" and not _gnu_openmp() else layer
        warnings.warn(
            f"fastnn: Numba runs its parallel kernels on the {layer!r} threading layer, not TBB: "
            f"{_why_not_tbb()}. {_CONSEQUENCES.get(key, '')} Set NUMBA_THREADING_LAYER to "
            "choose a layer (and silence this); fastnn.config.threading_layer() says which runs.",
            ThreadingLayerWarning,
            stacklevel=2,
        )


def _why_not_tbb() -> str:
    """Why Numba's TBB layer is not in use, for the warning."""
    outcome = _tbb.outcome()
    if outcome is None:
        return "Numba's threads had started before fastnn could load TBB"
    if outcome:
        return outcome
    try:
        from numba.np.ufunc import tbbpool  # noqa: F401
    except ImportError as error:
        return f"TBB was loaded but Numba's TBB layer failed to import ({error})"
    return "Numba chose another layer although TBB loads"


def _gnu_openmp() -> bool:
    """Whether Numba's OpenMP layer is GNU OpenMP's, which is not fork-safe."""
    omppool = sys.modules.get("numba.np.ufunc.omppool")
    return getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _after_fork_in_child() -> None:
    """In a fork child of a process whose Numba threads run on GNU OpenMP, refuse fastnn's
    passes and kernels with a RuntimeError (Numba would terminate the child at the first
    parallel kernel). Grandchildren inherit the parent's OpenMP state, and the refusal."""
    global _fork_refusal, _layer_lock
    _layer_lock = threading.Lock()  # a thread of the parent may have held it at fork
    if _fork_refusal is not None or not _tbb.numba_threads_started():
        return
    import numba

    if numba.threading_layer() == "omp" and _gnu_openmp():
        _fork_refusal = _FORK_REFUSAL
        kernels = sys.modules.get("fastnn.kernels")
        if kernels is not None:
            kernels._refuse(_FORK_REFUSAL)


def floatx() -> str:
    """The default float dtype of weights and inputs."""
    return "float32"


def _apply_num_threads() -> None:
    """Bound Numba's threads in the calling thread by ``set_num_threads`` (Numba's count is
    thread-local: a thread that never called numba.set_num_threads uses all of them)."""
    _ensure_threads()
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
        _ensure_threads()  # before the lock: it may import Numba and start its threads
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


_tbb.install()  # TBB loads before Numba, whoever imports it
os.register_at_fork(after_in_child=_after_fork_in_child)
