"""Layers and models as Keras 3's ``{"class_name", "registered_name", "config"}`` dicts, and back.

A class name resolves only against the registry (fastnn's classes and those registered with
``fastnn.saving.register_serializable``) and the caller's ``custom_objects``: nothing named in a
config is imported or evaluated.
"""

from __future__ import annotations

import inspect

from fastnn.layers.base import Layer
from fastnn.saving.registry import builtin_classes, get_registered_object, registered_key


def serialize_layer(layer: Layer) -> dict:
    """``{"class_name", "registered_name", "config"}`` of a layer, as Keras serializes it."""
    cls = type(layer)
    data = {
        "class_name": "Functional" if cls.__name__ == "Model" else cls.__name__,
        "registered_name": registered_key(cls),
        "config": layer.get_config(),
    }
    build_config = getattr(layer, "get_build_config", lambda: None)()
    if build_config is not None:  # a subclassed model: the input shape it was built for
        data["build_config"] = build_config
    return data


def deserialize_layer(config: dict, custom_objects: dict | None = None) -> Layer:
    """A layer from ``serialize_layer``'s dict; the class must be fastnn's, registered with
    ``fastnn.saving.register_serializable`` or given in ``custom_objects``."""
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise ValueError(f"A layer config must be a dict with a 'config' dict; got {config!r:.120}")
    cls = resolve_layer_class(config, custom_objects)
    inner = config.get("config", {})
    if "custom_objects" in inspect.signature(cls.from_config).parameters:
        layer = cls.from_config(inner, custom_objects=custom_objects)
    else:
        layer = cls.from_config(inner)  # a user's from_config(cls, config), as Keras defines it
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
