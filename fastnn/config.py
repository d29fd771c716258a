"""Process-level settings: thread counts for Numba kernels and BLAS.

Numba picks its threading layer by priority tbb > omp > workqueue; fastnn depends on the
``tbb`` package (x86_64) so TBB is used: safe under concurrent calls and fork, and it does not
busy-wait against BLAS threads as the OpenMP layer does. Set NUMBA_THREADING_LAYER to override.
"""

from __future__ import annotations


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in Numba kernels and in BLAS (when threadpoolctl is installed)."""
    import numba  # here, not at module level: `import fastnn` stays free of numba's start-up

    if not isinstance(n, int) or not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(
            f"`n` must be an integer in 1..{numba.config.NUMBA_NUM_THREADS}; got n={n!r}"
        )
    numba.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n, user_api="blas")


def get_num_threads() -> int:
    """Threads Numba kernels use."""
    import numba

    return numba.get_num_threads()


def floatx() -> str:
    """The default float dtype of weights and inputs."""
    return "float32"
