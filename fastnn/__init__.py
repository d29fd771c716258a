"""fastnn: a minimal, fast deep-learning engine for the CPU with a Keras-compatible API.

``import fastnn as keras`` and ``from fastnn import layers`` port a Keras program.
"""

from fastnn import (
    activations,
    callbacks,
    config,
    constraints,
    export,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    saving,
    utils,
)
from fastnn.layers import Input, Layer
from fastnn.models import Model, Sequential

# The file formats register their suffixes with fastnn.saving.api (which Model.save calls).
from fastnn.saving import keras_format as _keras_format  # noqa: F401
from fastnn.saving import legacy_h5 as _legacy_h5  # noqa: F401
from fastnn.saving import native as _native  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "Input",
    "Layer",
    "Model",
    "Sequential",
    "activations",
    "callbacks",
    "config",
    "constraints",
    "export",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "regularizers",
    "saving",
    "utils",
    "GradientTape",
    "Variable",
    "applications",
    "backend",
    "datasets",
    "distribution",
    "ops",
    "preprocessing",
    "random",
]

_LAZY = {  # name -> (module, attribute): imported on first use
    "GradientTape": ("fastnn.ops.tape", "GradientTape"),
    "Variable": ("fastnn.ops.variables", "Variable"),
    "applications": ("fastnn.applications", None),
    "backend": ("fastnn.backend", None),
    "datasets": ("fastnn.datasets", None),
    "distribution": ("fastnn.distribution", None),
    "ops": ("fastnn.ops", None),
    "preprocessing": ("fastnn.preprocessing", None),
    "random": ("fastnn.random", None),
}


def __getattr__(name: str):
    """``fastnn.ops``, ``backend``, ``random``, ``datasets``, ``distribution``,
    ``preprocessing``, ``applications``, ``GradientTape`` and ``Variable``, on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    import importlib

    module, attribute = _LAZY[name]
    value = importlib.import_module(module)
    return value if attribute is None else getattr(value, attribute)
