"""Numba kernels: plain functions over numpy arrays, one module per family.

Kernels import only numpy and numba (``gemm``'s pool: the standard library's threads) and know
nothing of layers: they take arrays, sizes and thread counts, never callbacks into fastnn. Every
kernel works in float32 and float64 without promoting, writes into buffers the caller passes (or
a ``workspace.Workspace``'s), and is compiled lazily (``@njit(cache=True)``) on first use, never
at import time.

Importing this package imports no family, hence not Numba (which would double the time of
``import fastnn``): ``kernels.conv`` imports ``kernels/conv.py`` on first access. Callers write
``from fastnn import kernels`` and ``kernels.conv.conv2d_forward(...)`` at call time; after the
first access the family is a plain attribute of this package. In a fork child where Numba's
threads cannot run (GNU OpenMP's layer started in the parent), fastnn.runtime calls ``_refuse``:
the families that run Numba then raise RuntimeError, naming the cause, instead of the child dying.
"""

import importlib
import sys

#: Families without Numba: they load with fastnn.
_NUMBA_FREE = ("codes", "forms", "gemm", "geometry", "workspace")
_refusal: str | None = None  # set by _refuse(): why Numba's families may not run here


def __getattr__(name: str):
    """The kernel family ``name``, imported on first access. The import sets it as an attribute of
    this package, so this runs once per family; the import lock makes concurrent first accesses
    wait for one import."""
    if _refusal is not None and name not in _NUMBA_FREE and not name.startswith("_"):
        raise RuntimeError(_refusal)
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise  # the family exists but something it imports is missing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    import pkgutil

    return sorted({*globals(), *(m.name for m in pkgutil.iter_modules(__path__))})


def _refuse(message: str) -> None:
    """From now on ``kernels.<family>`` raises RuntimeError(message) for the families that run
    Numba (fastnn.runtime calls this in a fork child where Numba's threads cannot run): the loaded
    ones are dropped from this package's attributes, so their next access comes here."""
    global _refusal
    _refusal = message
    for name, module in list(vars(sys.modules[__name__]).items()):
        if getattr(module, "__name__", "") == f"{__name__}.{name}" and name not in _NUMBA_FREE:
            delattr(sys.modules[__name__], name)
