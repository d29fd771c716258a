"""Numba kernels: plain functions over numpy arrays, one module per family.

Kernels import only numpy and numba and know nothing of layers. Every kernel works in float32 and
float64 without promoting, writes into buffers the caller passes, and is compiled lazily
(``@njit(cache=True)``) on first use, never at import time.

Importing this package imports no family, hence not Numba (which would double the time of
``import fastnn``): ``kernels.conv`` imports ``kernels/conv.py`` on first access. Callers write
``from fastnn import kernels`` and ``kernels.conv.conv2d_forward(...)`` at call time; after the
first access the family is a plain attribute of this package.
"""

import importlib


def __getattr__(name: str):
    """The kernel family ``name``, imported on first access. The import sets it as an attribute of
    this package, so this runs once per family; the import lock makes concurrent first accesses
    wait for one import."""
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
