"""Load the ``tbb`` package's TBB library before Numba picks its threading layer.

The ``tbb`` wheel puts ``libtbb.so.12`` in ``<prefix>/lib`` (a virtualenv's, a ``--user`` base's,
a conda env's), where the dynamic loader does not look. Numba's TBB layer then fails to import
and Numba falls back, silently, to OpenMP, under which a fork child that runs a kernel dies. So,
before Numba is imported (Numba picks its layer later, when its threads start), this module
finds the library through the ``tbb`` distribution's own file list (its RECORD; falling back to
the ``lib`` folders of sys.prefix, sys.base_prefix and site.USER_BASE) and loads it with
RTLD_GLOBAL: Numba's ``CDLL('libtbb.so.12')`` and its ``tbbpool`` extension then find it loaded.

``install()`` does that from a one-shot import hook on ``numba``, so ``import fastnn`` stays free
of Numba, importlib.metadata and TBB, and every path to the kernels (fastnn's layers,
``from fastnn.kernels.conv import ...``, the user's own ``import numba`` after fastnn) loads TBB
first. Nothing is loaded when NUMBA_THREADING_LAYER names another layer.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading

# The file name under which Numba loads TBB (numba.np.ufunc.parallel._check_tbb_version_compatible)
LIBRARY = {"linux": "libtbb.so.12", "darwin": "libtbb.12.dylib", "win32": "tbb12.dll"}.get(
    sys.platform
)
_OTHER_LAYERS = ("omp", "workqueue")  # NUMBA_THREADING_LAYER values that never use TBB

_lock = threading.Lock()
_outcome: str | None = None  # None: not tried yet; "" loaded; else why TBB was not loaded


def find() -> str | None:
    """The path of the ``tbb`` package's TBB library, or None when it is not installed."""
    if LIBRARY is None:
        return None
    from importlib import metadata  # Numba imports it too: no extra cost where this runs

    try:
        files = metadata.files("tbb") or []
    except metadata.PackageNotFoundError:
        files = []
    folders = [os.path.dirname(os.path.normpath(f.locate())) for f in files if f.name == LIBRARY]
    import site

    user_base = getattr(site, "USER_BASE", None) or ""
    folders += [os.path.join(base, "lib") for base in (sys.prefix, sys.base_prefix, user_base)]
    for folder in folders:
        path = os.path.join(folder, LIBRARY)
        if os.path.isfile(path):
            return path
    return None


def installed() -> bool:
    """Whether the ``tbb`` distribution is installed (whatever its library's state)."""
    from importlib import metadata

    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        return False
    return True


def load() -> str:
    """Load TBB's library once (process-wide, RTLD_GLOBAL); '' if loaded, else why not."""
    global _outcome
    with _lock:
        if _outcome is None:
            _outcome = _load()
        return _outcome


def _load() -> str:
    chosen = os.environ.get("NUMBA_THREADING_LAYER", "").strip().lower()
    if chosen in _OTHER_LAYERS:
        return f"NUMBA_THREADING_LAYER={chosen} chooses another layer"
    path = find()
    if path is None:
        if installed():
            return f"the tbb package is installed but its {LIBRARY} was not found"
        return "the tbb package is not installed (pip install tbb)"
    import ctypes

    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    except OSError as error:
        return f"loading {path} failed: {error}"
    return ""


def outcome() -> str | None:
    """None if ``load()`` has not run; '' if it loaded TBB; else why it did not."""
    return _outcome


def numba_threads_started() -> bool:
    """Whether Numba's thread pool has started (its threading layer is then fixed)."""
    numba = sys.modules.get("numba")
    if numba is None:
        return False
    try:
        numba.threading_layer()
    except ValueError:  # "Threading layer is not initialized."
        return False
    return True


class _BeforeNumba:
    """A meta path finder that finds nothing: it loads TBB when ``numba`` is first imported."""

    def find_spec(self, name, path=None, target=None):
        if name == "numba":
            _uninstall()
            load()
        return None


_hook = _BeforeNumba()


def _uninstall() -> None:
    with contextlib.suppress(ValueError):  # another thread got here first
        sys.meta_path.remove(_hook)


def install() -> None:
    """Load TBB before Numba picks its layer: now if Numba is imported, else when it is."""
    if "numba" not in sys.modules:
        if _hook not in sys.meta_path:
            sys.meta_path.insert(0, _hook)
    elif not numba_threads_started():
        load()
