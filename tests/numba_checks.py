"""Checks on compiled Numba code shared by the kernel tests."""

import numba


def float64_ops(kernel, *args):
    """LLVM lines of a fresh (uncached) compile of ``kernel`` for ``args`` that widen to double."""
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
    fresh = numba.njit(**options)(kernel.py_func)
    fresh(*args)
    ir = "\n".join(fresh.inspect_llvm().values())
    return [line for line in ir.splitlines() if "fpext" in line or " to double" in line]
