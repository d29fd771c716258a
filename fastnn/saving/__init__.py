"""Saving and loading models: configs, weights, and the registry of custom classes."""

from fastnn.saving.native import FileFormatError
from fastnn.saving.registry import (
    get_registered_name,
    get_registered_object,
    register_serializable,
)

#: Keras's name for ``register_serializable``.
register_keras_serializable = register_serializable


def save_model(model, filepath, overwrite: bool = True) -> None:
    """``model.save(filepath)``."""
    model.save(filepath, overwrite=overwrite)


def load_model(filepath, custom_objects: dict | None = None, compile: bool = True, safe_mode=True):
    """``fastnn.models.load_model``."""
    from fastnn.models import load_model  # models import this package

    return load_model(filepath, custom_objects, compile, safe_mode)


__all__ = [
    "FileFormatError",
    "load_model",
    "save_model",
    "get_registered_name",
    "get_registered_object",
    "register_keras_serializable",
    "register_serializable",
]
