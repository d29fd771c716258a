"""Activation functions by name, with the kernel code that layers fuse into their epilogue.

On arrays the functions run the fused kernels; on values a GradientTape tracks (a ``call()``
layer's, a custom loop's) they are fastnn.ops, so they record. Keras's other activations are
fastnn.ops functions.
"""

from __future__ import annotations

import numpy as np

from fastnn import kernels
from fastnn.kernels import codes
from fastnn.ops import nn as ops_nn
from fastnn.ops import numpy as ops_numpy
from fastnn.ops.tensor import TensorOps


def _apply(x, code):
    if isinstance(x, TensorOps):  # a tensor or Variable: record on the tapes that track it
        return _OPS[code](x)
    x = np.asarray(x)
    flat = np.ascontiguousarray(x, dtype=x.dtype if x.dtype.kind == "f" else "float32")
    rows = flat.reshape(-1, flat.shape[-1]) if flat.ndim else flat.reshape(1, 1)
    out = np.empty_like(rows)
    kernels.activations.bias_activation_forward(rows, np.empty(0, rows.dtype), code, out)
    return out.reshape(flat.shape)


def linear(x):
    """Identity."""
    return x if isinstance(x, TensorOps) else np.asarray(x)


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


_OPS = {
    codes.RELU: ops_nn.relu,
    codes.SIGMOID: ops_nn.sigmoid,
    codes.TANH: ops_numpy.tanh,
    codes.SOFTMAX: ops_nn.softmax,
}

# Keras's other activations, as the ops compute them (on arrays and tensors alike).
elu, selu, gelu, silu, softplus, softsign = (
    ops_nn.elu, ops_nn.selu, ops_nn.gelu, ops_nn.silu, ops_nn.softplus, ops_nn.softsign
)  # fmt: skip
swish, leaky_relu, relu6 = ops_nn.silu, ops_nn.leaky_relu, ops_nn.relu6
log_softmax, exponential = ops_nn.log_softmax, ops_numpy.exp
hard_sigmoid, hard_silu, hard_swish = ops_nn.hard_sigmoid, ops_nn.hard_silu, ops_nn.hard_silu

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
