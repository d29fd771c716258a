"""fastnn's runtime: the thread bound, the serial-BLAS section, products on fastnn's threads, and
Numba's threading layer (with its fork guard). ``fastnn.config`` holds the user's settings and
calls in here; layers ask ``threads()`` and hand the kernels what they need as plain values.

Threading layer: Numba picks one by priority tbb > omp > workqueue when its threads start; fastnn
depends on the ``tbb`` package (x86_64) so TBB is used: safe under concurrent calls and in
``fork`` children, and it does not busy-wait against BLAS threads as the OpenMP layer does. The
package's library sits where the dynamic loader does not look (a virtualenv's ``lib``), so
``fastnn._tbb`` loads it just before Numba is imported. fastnn starts Numba's threads at its
first call and, if the layer is not TBB though nothing chose another, warns once, naming the
layer and what it means for ``fork``. Under GNU OpenMP a fork child of a process whose Numba
threads started cannot run a parallel kernel (Numba terminates it): there fastnn raises
RuntimeError instead. Set the environment variable NUMBA_THREADING_LAYER (before the first
kernel runs) to choose another layer; ``threading_layer()`` tells which one is in use.

Threads: ``set_num_threads(n)`` bounds Numba's kernels and BLAS (through threadpoolctl, when it is
installed) for the whole process. Numba's own count is per calling thread, so the serial-BLAS
section re-applies the bound in whichever thread enters it.

The serial-BLAS section (``serial_blas()``) is entered once per public call: ``fit``,
``evaluate``, ``predict``, ``train_on_batch``, ``test_on_batch``, ``predict_on_batch``, and a
model or layer called on arrays. Inside it BLAS runs one thread, and ``threads()`` is the bound:
fastnn's passes alternate GEMMs with Numba kernels, and threaded OpenBLAS keeps its threads
busy-waiting after each GEMM against the Numba kernel that follows on the same cores (a Conv2D
forward measured 3-4x slower than its parts, LSTM time loops 3-6x). So fastnn splits large
products over threads of its own that sleep when idle (``fastnn.kernels.gemm``, which the
kernels call with ``threads()`` as a plain int; ``matmul`` / ``matmuls`` here do it for layers).
Outside a section ``threads()`` is 1 and a product is one ``np.matmul`` on BLAS's own threads.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings

import numpy as np

from fastnn import _tbb
from fastnn.kernels import gemm as _gemm

_lock = threading.Lock()
_bound: int | None = None  # set_num_threads(n); None: Numba's default in each thread, BLAS's own
_controller = None  # threadpoolctl.ThreadpoolController, or False without threadpoolctl
#: Numba's thread count in each thread when it last entered the section (``count``): asking
#: Numba takes a lock, too dear for every product of a small layer.
_entered = threading.local()


# ---- the thread bound ------------------------------------------------------------------------
def set_num_threads(n: int) -> None:
    """Bound Numba's threads (in this thread; the section applies it in others) and BLAS's
    (process-wide; at the end of the section if one is running) by ``n``, a valid count."""
    import numba  # here, not at module level: `import fastnn` stays free of numba

    global _bound, _controller
    with _lock:
        numba.set_num_threads(n)
        _bound = n
        if _controller:
            _controller = None  # look again: a BLAS may have been loaded since
        if _SECTION.depth == 0:  # else the section applies it when it ends
            _limit_blas(n)


def get_num_threads() -> int:
    """The thread bound: ``set_num_threads``'s, else Numba's count in the calling thread."""
    if _bound is not None:
        return _bound
    import numba

    return numba.get_num_threads()


def threads() -> int:
    """Threads fastnn's kernels may use now: the bound inside a section where BLAS runs one
    thread, else 1 (products then run on BLAS's own threads, unsplit)."""
    if not _SECTION.active:
        return 1
    if _bound is not None:
        return _bound
    count = getattr(_entered, "count", None)
    if count is not None:
        return count
    import numba

    return numba.get_num_threads()


def _apply_bound() -> None:
    """Bound Numba's threads in the calling thread (Numba's count is thread-local: a thread that
    never called numba.set_num_threads uses all of them), and note its count for ``threads``."""
    import numba

    n = _bound
    if n is not None and numba.get_num_threads() != n:
        numba.set_num_threads(n)
    _entered.count = numba.get_num_threads()


# ---- the serial-BLAS section -----------------------------------------------------------------
class _SerialBLAS:
    """Context manager: BLAS runs one thread inside; on leaving, the last user restores the
    ``set_num_threads`` bound, or BLAS's own count if none was set.

    Entering also checks that Numba's kernels may run here (the fork guard), starts Numba's
    threads and applies the bound in the calling thread. Reference counted under the module's
    lock, so concurrent and nested calls never leave BLAS limited. threadpoolctl lets only one
    thread (the first to set a limit) change OpenBLAS's process-wide count; in others the
    section changes nothing and ``active`` stays False, so products are not split on top of
    BLAS's threads.
    """

    def __init__(self):
        self.depth = 0
        self.active = False  # BLAS is on one thread because of this section
        self._restore = []  # (library controller, its thread count before the section)

    def __enter__(self):
        _ensure_threads()  # before the lock: it may import Numba and start its threads
        _apply_bound()
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
                    lib.set_num_threads(count if _bound is None else _bound)
                self._restore = []
                self.active = False


_SECTION = _SerialBLAS()


def serial_blas() -> _SerialBLAS:
    """The serial-BLAS section, a context manager: entered once per public call (``fit``,
    ``predict``, ``model(x)``, ...), nested calls cost a lock and a counter."""
    return _SECTION


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


# ---- products on fastnn's threads ------------------------------------------------------------
def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, accumulate: bool = False) -> np.ndarray:
    """out (M,N) = a (M,K) @ b (K,N), or ``out += a @ b``, on ``threads()`` threads; returns out."""
    return _gemm.matmul(a, b, out, accumulate, threads())


def matmul_bias(a: np.ndarray, b, bias: np.ndarray, code: int, out: np.ndarray) -> bool:
    """out = act(a @ b + bias) in one pass (act linear or relu, an activation ``code``) where
    the product runs on the SIMD kernels, on ``threads()`` threads; False where it does not
    (``kernels.gemm.matmul_bias``)."""
    return _gemm.matmul_bias(a, b, bias, code, out, threads())


def matmuls(products: list) -> None:
    """Independent ``(a, b, out, accumulate)`` products on ``threads()`` threads: side by side
    when there are as many as threads and they are of about one size (``kernels.gemm.matmuls``)."""
    _gemm.matmuls(products, threads())


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
    """numpy's OpenBLAS as a ctypes library (the one the section keeps on one thread), or None:
    the one a numpy wheel bundles, else the only OpenBLAS loaded."""
    controller = _blas()
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


# ---- Numba's threading layer and the fork guard ------------------------------------------------
class ThreadingLayerWarning(RuntimeWarning):
    """Numba's threads run on another layer than TBB although nothing chose one."""


def threading_layer() -> str:
    """Numba's threading layer in use: 'tbb', 'omp' or 'workqueue' (starts Numba's threads)."""
    _check_layer()
    import numba

    return numba.threading_layer()


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
    """Before a call: refuse in a fork child where kernels would die; start Numba's threads
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
    calls and kernels with a RuntimeError (Numba would terminate the child at the first
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


_tbb.install()  # TBB loads before Numba, whoever imports it
os.register_at_fork(after_in_child=_after_fork_in_child)
