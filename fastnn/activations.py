"""Activation functions by name, with the kernel code that layers fuse into their epilogue."""

from __future__ import annotations

import numpy as np

from fastnn import kernels
from fastnn.kernels import codes


def _apply(x, code):
    x = np.asarray(x)
    flat = np.ascontiguousarray(x, dtype=x.dtype if x.dtype.kind == "f" else "float32")
    rows = flat.reshape(-1, flat.shape[-1]) if flat.ndim else flat.reshape(1, 1)
    out = np.empty_like(rows)
    kernels.activations.bias_activation_forward(rows, np.empty(0, rows.dtype), code, out)
    return out.reshape(flat.shape)


def linear(x):
    """Identity."""
    return np.asarray(x)


def relu(x):
    """max(x, 0), elementwise."""
    return _apply(x, codes.RELU)


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise."""
    return _apply(x, codes.SIGMOID)


def tanh(x):
    """Hyperbolic tangent, elementwise."""
    return _apply(x, codes.TANH)


def softmax(x):
    """exp(x) / sum(exp(x)) over the last axis."""
    return _apply(x, codes.SOFTMAX)


_FUNCTIONS = {"linear": linear, "relu": relu, "sigmoid": sigmoid, "tanh": tanh, "softmax": softmax}


def get_name(identifier) -> str:
    """The canonical name of an activation given by name, function or None (linear)."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        name = identifier.lower()
        if name not in codes.CODES:
            raise ValueError(
                f"Unknown activation {identifier!r}. Valid activations: {sorted(codes.CODES)}"
            )
        return name
    for name, fn in _FUNCTIONS.items():
        if identifier is fn:
            return name
    raise TypeError(
        f"Unsupported activation {identifier!r}: fastnn fuses activations into its kernels, so "
        f"pass one of {sorted(codes.CODES)} by name (or an Activation layer)."
    )


def get(identifier):
    """The activation function for a name or function."""
    return _FUNCTIONS[get_name(identifier)]


def code(identifier) -> int:
    """The kernel code of an activation (for ``bias_activation_forward``)."""
    return codes.CODES[get_name(identifier)]
