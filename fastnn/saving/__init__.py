"""Saving and loading models: configs, weights, and the registry of custom classes.

Layers import ``registry`` (a leaf) and ``serialization``, so this package imports only modules
that import no layer beyond ``layers.base``: ``api`` dispatches by file suffix to the formats,
``native`` (``.fastnn``, ``.weights.npz``) and ``keras_format`` (``.keras``, ``.weights.h5``),
which import models and register with ``api`` when ``import fastnn`` imports them.
"""

from fastnn.saving.api import load_model, save_model
from fastnn.saving.files import FileFormatError
from fastnn.saving.registry import (
    get_registered_name,
    get_registered_object,
    register_serializable,
)

#: Keras's name for ``register_serializable``.
register_keras_serializable = register_serializable

__all__ = [
    "FileFormatError",
    "load_model",
    "save_model",
    "get_registered_name",
    "get_registered_object",
    "register_keras_serializable",
    "register_serializable",
]
