"""Saving and loading models: configs, weights, and the registry of custom classes."""

from fastnn.saving.registry import (
    get_registered_name,
    get_registered_object,
    register_serializable,
)

#: Keras's name for ``register_serializable``.
register_keras_serializable = register_serializable

__all__ = [
    "get_registered_name",
    "get_registered_object",
    "register_keras_serializable",
    "register_serializable",
]
