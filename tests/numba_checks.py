"""Checks on compiled Numba code shared by the kernel tests."""

import warnings

import numba


def float64_ops(kernel, *args):
    """LLVM lines of ``kernel`` compiled for ``args`` that widen to double.

    The IR is that of this process's own compile when it made one (a cold Numba cache); code
    loaded from the cache cannot be inspected, so then it is a fresh, uncached compile's.
    """
    kernel(*args)  # compiles, or loads from the cache
    signature = tuple(kernel.typeof_pyval(a) for a in args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ir = kernel.inspect_llvm(signature)
    if any("cached code" in str(w.message) for w in caught):
        options = {k: v for k, v in kernel.targetoptions.items() if k not in ("cache", "nopython")}
        fresh = numba.njit(**options)(kernel.py_func)
        fresh(*args)
        ir = fresh.inspect_llvm(signature)
    return [line for line in _hot_lines(ir) if "fpext" in line or " to double" in line]


def _hot_lines(ir: str):
    """The lines of ``ir`` outside the functions that only build an error to raise (Numba's
    shape-mismatch messages format their sizes in double: never on the kernel's own path)."""
    raising = False
    for line in ir.splitlines():
        if line.startswith("define"):
            raising = "raise" in line.split("@", 1)[1].split("(", 1)[0]
        if not raising:
            yield line
