"""Which classes a saved config may name: fastnn's own and those registered by the user.

Loading never imports by name from a file: a ``class_name`` resolves only against this registry
(the classes users register, and fastnn's built-in layers and models, which their packages
register when imported) and a ``custom_objects`` mapping the caller passes. A leaf: it imports
nothing from fastnn, so every module may import it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping

_lock = threading.Lock()
#: Keras's global custom objects: what ``register_serializable`` registers, and what users add.
_registered: dict[str, object] = {}
_builtins: dict[str, type] = {}


class _Scopes(threading.local):
    def __init__(self) -> None:
        self.stack: list[dict] = []  # this thread's custom_object_scope dicts, innermost last


_scopes = _Scopes()


def register_serializable(package: str = "Custom", name: str | None = None):
    """Class (or function) decorator: let saved configs name it as ``'package>name'``.

    Example::

        @fastnn.saving.register_serializable(package="my_project")
        class Scale(fastnn.layers.Layer): ...
    """
    if not isinstance(package, str) or ">" in package or not package:
        raise ValueError(f"`package` must be a non-empty string without '>'; got {package!r}")

    def decorator(cls: type) -> type:
        function = hasattr(cls, "__code__") and getattr(cls, "__name__", "") != "<lambda>"
        if not isinstance(cls, type) and not function:
            raise TypeError(
                f"register_serializable() decorates classes and named functions; got {cls!r}"
            )
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
    """The class (or function) registered under ``name``, in ``custom_objects``, in an enclosing
    ``custom_object_scope`` or in ``get_custom_objects()``, else None."""
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    for scope in reversed(_scopes.stack):
        if name in scope:
            return scope[name]
    with _lock:
        return _registered.get(name)


def get_custom_objects() -> dict:
    """Keras's global dict of custom objects (``register_serializable`` adds to it; so may
    you: ``get_custom_objects()["MyLayer"] = MyLayer``)."""
    return _registered


@contextlib.contextmanager
def custom_object_scope(*scopes: Mapping) -> Iterator[None]:
    """Inside, loading finds the objects of these dicts by name (in this thread)."""
    merged: dict = {}
    for scope in scopes:
        if scope is not None:
            merged.update(scope)
    _scopes.stack.append(merged)
    try:
        yield
    finally:
        _scopes.stack.pop()


#: Keras's class name for ``custom_object_scope``.
CustomObjectScope = custom_object_scope


#: fastnn's other classes a config may name, by kind ('losses', 'metrics', 'optimizers',
#: 'initializers', 'regularizers'): each module registers its own when imported.
_other_builtins: dict[str, dict[str, type]] = {}


def register_builtins(classes: Mapping[str, type], kind: str = "layers") -> None:
    """Let saved configs name fastnn's own ``classes`` by these names: ``fastnn.layers`` and
    ``fastnn.models`` register theirs when imported (kind 'layers'), as do the losses,
    metrics, optimizers, initializers and regularizers, so this module imports none."""
    with _lock:
        if kind == "layers":
            _builtins.update(classes)
        else:
            _other_builtins.setdefault(kind, {}).update(classes)


def builtin_classes(kind: str = "layers") -> dict[str, type]:
    """fastnn's classes of ``kind`` (layers and models by default) by their names in configs."""
    with _lock:
        return dict(_builtins if kind == "layers" else _other_builtins.get(kind, {}))
