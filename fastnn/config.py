"""The user's settings: threads, Numba's threading layer (read only) and the default float dtype.

The mechanisms behind them (the thread bound in every calling thread, the serial-BLAS section,
Numba's threading layer and its fork guard) are ``fastnn.runtime``'s.
"""

from __future__ import annotations

import numpy as np

from fastnn import backend, runtime
from fastnn.runtime import ThreadingLayerWarning

__all__ = [
    "ThreadingLayerWarning",
    "floatx",
    "get_num_threads",
    "set_num_threads",
    "threading_layer",
]


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads in Numba kernels and in BLAS (BLAS needs threadpoolctl), in
    every thread that calls fastnn, for the whole process."""
    import numba  # here, not at module level: `import fastnn.config` stays free of numba

    available = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= available:
        raise ValueError(
            f"set_num_threads(): `n` must be an integer in 1..{available} (Numba's thread "
            f"pool, NUMBA_NUM_THREADS, on this machine); got n={n!r}"
        )
    runtime.set_num_threads(int(n))


def get_num_threads() -> int:
    """Threads fastnn's Numba kernels use (the ``set_num_threads`` bound, else Numba's count)."""
    return runtime.get_num_threads()


def threading_layer() -> str:
    """Numba's threading layer in use: 'tbb', 'omp' or 'workqueue' (starts Numba's threads)."""
    return runtime.threading_layer()


def floatx() -> str:
    """The default float dtype of weights and inputs: ``fastnn.backend.floatx()``."""
    return backend.floatx()
