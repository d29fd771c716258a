"""Layers and models as Keras 3's ``{"class_name", "registered_name", "config"}`` dicts, and back.

A class name resolves only against the registry (fastnn's classes and those registered with
``fastnn.saving.register_serializable``) and the caller's ``custom_objects``: nothing named in a
config is imported or evaluated.
"""

from __future__ import annotations

import inspect

import numpy as np

from fastnn.layers.base import Layer
from fastnn.saving.registry import (
    builtin_classes,
    custom_object_scope,
    get_registered_object,
    registered_key,
)

#: The kinds of fastnn classes a Keras object config may name, by the module it names.
_KINDS = ("losses", "metrics", "optimizers", "initializers", "regularizers")


def serialize_layer(layer: Layer) -> dict:
    """``{"class_name", "registered_name", "config"}`` of a layer, as Keras serializes it."""
    cls = type(layer)
    data = {
        "class_name": "Functional" if cls.__name__ == "Model" else cls.__name__,
        "registered_name": registered_key(cls),
        "config": _nested_objects_serialized(layer.get_config()),
    }
    # what a subclassed model or a layer with its own get_build_config was built with
    if type(layer).get_build_config is not Layer.get_build_config:
        build_config = layer.get_build_config()
        if build_config is not None:
            data["build_config"] = build_config
    return data


def _nested_objects_serialized(value):
    """A config with the objects in it (a user's layer may hold layers, regularizers,
    initializers) as ``serialize_keras_object`` writes them, as Keras does; the rest as is."""
    if isinstance(value, dict):
        return {k: _nested_objects_serialized(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_nested_objects_serialized(v) for v in value)
    if isinstance(value, Layer) or (hasattr(value, "get_config") and not isinstance(value, type)):
        return serialize_keras_object(value)
    return value


def deserialize_layer(config: dict, custom_objects: dict | None = None) -> Layer:
    """A layer from ``serialize_layer``'s dict; the class must be fastnn's, registered with
    ``fastnn.saving.register_serializable`` or given in ``custom_objects``."""
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"A layer config must be a dict with a 'config' dict; got {config!r:.120}")
    cls = resolve_layer_class(config, custom_objects)
    inner = config.get("config", {})
    # the names inside the config (a user's activation function) resolve against them too
    with custom_object_scope(custom_objects or {}):
        if "custom_objects" in inspect.signature(cls.from_config).parameters:
            layer = cls.from_config(inner, custom_objects=custom_objects)
        else:
            layer = cls.from_config(inner)  # a user's from_config(cls, config), as Keras's
    build_config = config.get("build_config")
    if isinstance(build_config, dict) and hasattr(layer, "build_from_config"):
        layer.build_from_config(build_config)
    return layer


def resolve_layer_class(config: dict, custom_objects: dict | None = None) -> type:
    """The Layer class a ``{"class_name", "registered_name", ...}`` config names."""
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


# ---- any object, as Keras's serialize_keras_object / deserialize_keras_object -----------------
def serialize_keras_object(obj):
    """A JSON-able form of ``obj`` as Keras writes it: ``{"module", "class_name", "config",
    "registered_name"}`` for layers, losses, metrics, optimizers, initializers, regularizers
    and a user's registered classes (``get_config``) and functions; plain values as they are."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [serialize_keras_object(x) for x in obj]
    if isinstance(obj, dict):
        return {k: serialize_keras_object(v) for k, v in obj.items()}
    if isinstance(obj, (np.ndarray, np.generic)):
        array = np.asarray(obj)
        return {"class_name": "__numpy__", "config": {"value": array.tolist(),
                                                       "dtype": array.dtype.name}}  # fmt: skip
    if isinstance(obj, Layer):
        return {"module": _module_of(type(obj)), **serialize_layer(obj)}
    if inspect.isfunction(obj):
        registered = registered_key(obj)
        return {
            "module": _module_of(obj),
            "class_name": "function",
            "config": obj.__name__,
            "registered_name": registered or obj.__name__,
        }
    if hasattr(obj, "get_config"):
        cls = type(obj)
        return {
            "module": _module_of(cls),
            "class_name": cls.__name__,
            "config": serialize_keras_object(obj.get_config()),
            "registered_name": registered_key(cls) or (None if _is_fastnn(cls) else cls.__name__),
        }
    raise TypeError(f"Cannot serialize {obj!r}: it has no get_config()")


def deserialize_keras_object(config, custom_objects: dict | None = None, safe_mode=True, **kwargs):
    """The object ``serialize_keras_object`` described. Classes and functions resolve only
    against fastnn's own, the registered ones (``register_keras_serializable``,
    ``get_custom_objects``, ``custom_object_scope``) and ``custom_objects``: nothing named in a
    config is imported (``safe_mode`` is accepted for Keras compatibility)."""
    if config is None or isinstance(config, (bool, int, float)):
        return config
    if isinstance(config, str):
        found = get_registered_object(config, custom_objects)
        return config if found is None else found
    if isinstance(config, (list, tuple)):
        return [deserialize_keras_object(x, custom_objects) for x in config]
    if not isinstance(config, dict):
        raise TypeError(f"Cannot deserialize {config!r}")
    if "class_name" not in config:
        return {k: deserialize_keras_object(v, custom_objects) for k, v in config.items()}
    class_name, inner = config["class_name"], config.get("config")
    if class_name == "__numpy__":
        return np.asarray(inner["value"], dtype=inner["dtype"])
    if class_name == "function":
        name = config.get("registered_name") or inner
        function = get_registered_object(name, custom_objects)
        if function is None:
            raise ValueError(
                f"Unknown function {name!r}: register it with "
                "fastnn.saving.register_keras_serializable() or pass it in custom_objects"
            )
        return function
    cls = _resolve_class(config, custom_objects)
    if issubclass(cls, Layer):
        return deserialize_layer(config, custom_objects)
    inner = deserialize_keras_object(inner or {}, custom_objects)
    return cls.from_config(inner) if hasattr(cls, "from_config") else cls(**inner)


def _resolve_class(config: dict, custom_objects: dict | None) -> type:
    class_name, registered = config.get("class_name"), config.get("registered_name")
    for key in (registered, class_name):
        if isinstance(key, str):
            found = get_registered_object(key, custom_objects)
            if isinstance(found, type):
                return found
    module = str(config.get("module") or "")
    kinds = [k for k in _KINDS if module.endswith(k)] or ["layers", *_KINDS]
    for kind in kinds:
        found = builtin_classes(kind).get(class_name)
        if found is not None:
            return found
    raise ValueError(
        f"Unknown class {class_name!r}: not a fastnn class, not registered with "
        "fastnn.saving.register_keras_serializable() and not in custom_objects"
    )


def _module_of(obj) -> str | None:
    module = getattr(obj, "__module__", None)
    if module and module.startswith("fastnn."):
        return ".".join(module.split(".")[:2])  # fastnn.layers.core -> fastnn.layers
    return None


def _is_fastnn(cls: type) -> bool:
    return cls.__module__.startswith("fastnn.")
