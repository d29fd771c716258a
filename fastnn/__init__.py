"""fastnn: a minimal, fast deep-learning engine for the CPU with a Keras-compatible API.

``import fastnn as keras`` and ``from fastnn import layers`` port a Keras program.
"""

from fastnn import (
    activations,
    callbacks,
    config,
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

__version__ = "0.1.0"

__all__ = [
    "Input",
    "Layer",
    "Model",
    "Sequential",
    "activations",
    "callbacks",
    "config",
    "initializers",
    "layers",
    "losses",
    "metrics",
    "models",
    "optimizers",
    "regularizers",
    "saving",
    "utils",
]
