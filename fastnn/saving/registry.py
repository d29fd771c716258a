"""Which classes a saved config may name: fastnn's own and those registered by the user.

Loading never imports by name from a file: a ``class_name`` resolves only against this registry,
fastnn's built-in layers and models, and a ``custom_objects`` mapping the caller passes.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_registered: dict[str, type] = {}


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


def builtin_classes() -> dict[str, type]:
    """fastnn's layer and model classes by the names saved configs use."""
    import fastnn.layers
    import fastnn.models  # at call time: models and layers import this module's users

    classes = {
        name: obj
        for name, obj in vars(fastnn.layers).items()
        if isinstance(obj, type) and issubclass(obj, fastnn.layers.Layer)
    }
    classes.update(
        Functional=fastnn.models.Model,
        Model=fastnn.models.Model,
        Sequential=fastnn.models.Sequential,
    )
    return classes


def resolve_layer_class(config: dict, custom_objects: dict | None = None) -> type:
    """The Layer class a ``{"class_name", "registered_name", ...}`` config names."""
    from fastnn.layers.base import Layer

    class_name = config.get("class_name")
    registered = config.get("registered_name")
    cls = None
    for key in (registered, class_name):
        if isinstance(key, str) and cls is None:
            cls = get_registered_object(key, custom_objects)
    if cls is None and isinstance(class_name, str):
        cls = builtin_classes().get(class_name)
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise ValueError(
            f"Unknown layer class {class_name!r}: not a fastnn layer, not registered with "
            "fastnn.saving.register_serializable() and not in custom_objects"
        )
    return cls
