"""Saving and loading models: configs, weights, and the registry of custom classes.

Layers import ``registry`` (a leaf) and ``serialization``, so this package imports only modules
that import no layer beyond ``layers.base``: ``api`` dispatches by file suffix to the formats,
``native`` (``.fastnn``, ``.weights.npz``) and ``keras_format`` (``.keras``, ``.weights.h5``),
which import models and register with ``api`` when ``import fastnn`` imports them.
"""

from fastnn.saving.api import load_model, save_model
from fastnn.saving.files import FileFormatError
from fastnn.saving.registry import (
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
    get_registered_name,
    get_registered_object,
    register_serializable,
)

#: Keras's name for ``register_serializable``.
register_keras_serializable = register_serializable

__all__ = [
    "CustomObjectScope",
    "FileFormatError",
    "custom_object_scope",
    "deserialize_keras_object",
    "get_custom_objects",
    "load_model",
    "save_model",
    "get_registered_name",
    "get_registered_object",
    "register_keras_serializable",
    "register_serializable",
    "serialize_keras_object",
]

_LAZY = ("serialize_keras_object", "deserialize_keras_object")


def __getattr__(name: str):
    """``serialize_keras_object`` and ``deserialize_keras_object``, from ``serialization``
    (which imports layers, which import this package's registry): looked up on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'fastnn.saving' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module("fastnn.saving.serialization"), name)
