"""Which classes a saved config may name: fastnn's own and those registered by the user.

Loading never imports by name from a file: a ``class_name`` resolves only against this registry
(the classes users register, and fastnn's built-in layers and models, which their packages
register when imported) and a ``custom_objects`` mapping the caller passes. A leaf: it imports
nothing from fastnn, so every module may import it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

_lock = threading.Lock()
_registered: dict[str, type] = {}
_builtins: dict[str, type] = {}


def register_serializable(package: str = "Custom", name: str | None = None):
    """Class decorator: let saved configs name this class as ``'package>name'``.

    Example::

        @fastnn.saving.register_serializable(package="my_project")
        class Scale(fastnn.layers.Layer): ...
    """
    if not isinstance(package, str) or ">" in package or not package:
        raise ValueError(f"`package` must be a non-empty string without '>'; got {package!r}")

    def decorator(cls: type) -> type:
        if not isinstance(cls, type):
            raise TypeError(f"register_serializable() decorates classes; got {cls!r}")
        key = f"{package}>{name or cls.__name__}"
        with _lock:
            if _registered.get(key, cls) is not cls:
                raise ValueError(f"{key!r} is already registered to {_registered[key]!r}")
            _registered[key] = cls
        cls._registered_name = key
        return cls

    return decorator


def get_registered_name(cls: type) -> str:
    """``'package>name'`` for a registered class, else its class name."""
    return registered_key(cls) or cls.__name__


def registered_key(cls: type) -> str | None:
    """``'package>name'`` if ``cls`` was registered, else None."""
    key = cls.__dict__.get("_registered_name")
    with _lock:
        return key if key is not None and _registered.get(key) is cls else None


def get_registered_object(name: str, custom_objects: dict | None = None):
    """The class registered (or passed in ``custom_objects``) under ``name``, else None."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    with _lock:
        return _registered.get(name)


def register_builtins(classes: Mapping[str, type]) -> None:
    """Let saved configs name fastnn's own ``classes`` by these names: ``fastnn.layers`` and
    ``fastnn.models`` register theirs when imported, so this module imports neither."""
    with _lock:
        _builtins.update(classes)


def builtin_classes() -> dict[str, type]:
    """fastnn's layer and model classes by the names saved configs use."""
    with _lock:
        return dict(_builtins)
