"""Activation functions by Keras 3 name, with the kernel code that layers fuse into their epilogue.

On arrays the functions run the fused kernels (those with arguments Keras's defaults do not
cover run the activation layers' kernels, or the ops); on values a GradientTape tracks (a
``call()`` layer's, a custom loop's) they are fastnn.ops, so they record. ``swish`` is ``silu``
and ``hard_swish`` is ``hard_silu``, and they serialize as those, as in Keras.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fastnn import kernels
from fastnn.kernels import codes
from fastnn.ops import nn as ops_nn
from fastnn.ops import nn_extra as ops_nn_extra
from fastnn.ops import numpy as ops_numpy
from fastnn.ops.tensor import TensorOps
from fastnn.saving.registry import get_registered_object, registered_key


def _rows(x) -> np.ndarray:
    """x as a contiguous float array (float32 unless float64) of rows over its last axis."""
    x = np.asarray(x)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    flat = np.ascontiguousarray(x, dtype=dtype)
    return flat.reshape(-1, flat.shape[-1]) if flat.ndim else flat.reshape(1, 1)


def _apply(x, code: int):
    if isinstance(x, TensorOps):  # a tensor or Variable: record on the tapes that track it
        return _OPS[code](x)
    shape = np.shape(x)
    rows = _rows(x)
    out = np.empty_like(rows)
    if rows.size:
        kernels.activations.bias_activation_forward(rows, np.empty(0, rows.dtype), code, out)
    return out.reshape(shape)


def _last_axis(x, axis) -> bool:
    return isinstance(axis, (int, np.integer)) and axis in (-1, np.ndim(x) - 1)


def linear(x):
    """Identity."""
    return x if isinstance(x, TensorOps) else np.asarray(x)


def relu(x, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0):
    """max(x, 0); with arguments, Keras's: x above ``threshold`` (else 0), clipped to
    ``max_value``, plus ``negative_slope * (x - threshold)`` below the threshold."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return _apply(x, codes.RELU)
    if isinstance(x, TensorOps):
        return _relu_ops(x, negative_slope, max_value, threshold)
    flat = _rows(x).reshape(-1)
    out = np.empty_like(flat)
    kernels.activations.relu_forward(flat, negative_slope, max_value, threshold, out)
    return out.reshape(np.shape(x))


def _relu_ops(x, negative_slope, max_value, threshold):
    """Keras's relu with arguments, step by step in fastnn.ops (so it records)."""
    if negative_slope != 0 and max_value is None and threshold == 0:
        return ops_nn.leaky_relu(x, negative_slope=negative_slope)
    if negative_slope != 0:
        negative_part = ops_nn.relu(ops_numpy.subtract(threshold, x))
    clip_max = max_value is not None
    if threshold != 0:
        y = ops_numpy.where(ops_numpy.greater(x, threshold), x, ops_numpy.zeros_like(x))
    elif max_value == 6:
        y, clip_max = ops_nn.relu6(x), False
    else:
        y = ops_nn.relu(x)
    if clip_max:
        y = ops_numpy.clip(y, 0.0, max_value)
    if negative_slope != 0:
        y = ops_numpy.subtract(y, ops_numpy.multiply(negative_part, negative_slope))
    return y


def leaky_relu(x, negative_slope: float = 0.2):
    """x if x > 0 else negative_slope * x."""
    if negative_slope == codes.LEAKY_RELU_SLOPE:
        return _apply(x, codes.LEAKY_RELU)
    if isinstance(x, TensorOps):
        return ops_nn.leaky_relu(x, negative_slope=negative_slope)
    return relu(x, negative_slope=negative_slope)


def relu6(x):
    """min(max(x, 0), 6)."""
    return _apply(x, codes.RELU6)


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _apply(x, codes.SIGMOID)


def tanh(x):
    """Hyperbolic tangent."""
    return _apply(x, codes.TANH)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) over ``axis`` (an int or a tuple of ints)."""
    if _last_axis(x, axis):
        return _apply(x, codes.SOFTMAX)
    return ops_nn.softmax(x, axis=axis)


def log_softmax(x, axis=-1):
    """x - log(sum(exp(x))) over ``axis``."""
    if _last_axis(x, axis):
        return _apply(x, codes.LOG_SOFTMAX)
    return ops_nn.log_softmax(x, axis=axis)


def elu(x, alpha: float = 1.0):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    if alpha == 1:
        return _apply(x, codes.ELU)
    if isinstance(x, TensorOps):
        return ops_nn.elu(x, alpha=alpha)
    flat = _rows(x).reshape(-1)
    out = np.empty_like(flat)
    kernels.activations.elu_forward(flat, alpha, out)
    return out.reshape(np.shape(x))


def selu(x):
    """scale * elu(x, alpha) with Klambauer et al.'s scale and alpha."""
    return _apply(x, codes.SELU)


def softplus(x):
    """log(1 + exp(x))."""
    return _apply(x, codes.SOFTPLUS)


def softsign(x):
    """x / (1 + |x|)."""
    return _apply(x, codes.SOFTSIGN)


def gelu(x, approximate: bool = False):
    """x * P(X <= x) for X ~ N(0, 1): exact (erf) by default, the tanh approximation if
    ``approximate``."""
    return _apply(x, codes.GELU_TANH if approximate else codes.GELU)


def silu(x):
    """x * sigmoid(x) (also called swish)."""
    return _apply(x, codes.SILU)


def hard_sigmoid(x):
    """relu6(x + 3) / 6."""
    return _apply(x, codes.HARD_SIGMOID)


def hard_silu(x):
    """x * relu6(x + 3) / 6 (also called hard_swish)."""
    return _apply(x, codes.HARD_SILU)


def exponential(x):
    """exp(x)."""
    return _apply(x, codes.EXPONENTIAL)


def mish(x):
    """x * tanh(softplus(x))."""
    return _apply(x, codes.MISH)


swish = silu
hard_swish = hard_silu


# Keras's activations with no kernel code: fastnn.ops on arrays and tensors alike. Dense and
# Activation run them on a tape, as they run a user's function; they serialize by name.
def celu(x, alpha: float = 1.0):
    """x above 0, else alpha * (exp(x / alpha) - 1)."""
    return ops_nn_extra.celu(x, alpha)


def glu(x, axis: int = -1):
    """a * sigmoid(b) of x's two halves along ``axis`` (halves that axis)."""
    return ops_nn_extra.glu(x, axis)


def hard_shrink(x, threshold: float = 0.5):
    """x where |x| > threshold, else 0."""
    return ops_nn_extra.hard_shrink(x, threshold)


def hard_tanh(x):
    """x clipped to [-1, 1]."""
    return ops_nn.hard_tanh(x)


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x)."""
    return ops_nn.log_sigmoid(x)


def soft_shrink(x, threshold: float = 0.5):
    """x - threshold above it, x + threshold below -threshold, else 0."""
    return ops_nn_extra.soft_shrink(x, threshold)


def sparse_plus(x):
    """0 below -1, x above 1, (x + 1)^2 / 4 between."""
    return ops_nn_extra.sparse_plus(x)


def sparse_sigmoid(x):
    """0 below -1, 1 above 1, (x + 1) / 2 between."""
    return ops_nn_extra.sparse_sigmoid(x)


def sparsemax(x, axis: int = -1):
    """The Euclidean projection of x onto the probability simplex along ``axis``."""
    return ops_nn_extra.sparsemax(x, axis)


def squareplus(x, b: float = 4):
    """(x + sqrt(x^2 + b)) / 2."""
    return ops_nn_extra.squareplus(x, b)


def tanh_shrink(x):
    """x - tanh(x)."""
    return ops_nn_extra.tanh_shrink(x)


def threshold(x, threshold, default_value):
    """x where x > threshold, else default_value."""
    return ops_nn_extra.threshold(x, threshold, default_value)


_ON_OPS: dict[str, Callable] = {
    fn.__name__: fn
    for fn in (
        celu,
        glu,
        hard_shrink,
        hard_tanh,
        log_sigmoid,
        soft_shrink,
        sparse_plus,
        sparse_sigmoid,
        sparsemax,
        squareplus,
        tanh_shrink,
        threshold,
    )  # fmt: skip
}


def _mish_ops(x):
    return ops_numpy.multiply(x, ops_numpy.tanh(ops_nn.softplus(x)))


# What each code records on a tape: fastnn.ops with Keras's default arguments.
_OPS: dict[int, Callable] = {
    codes.RELU: ops_nn.relu,
    codes.SIGMOID: ops_nn.sigmoid,
    codes.TANH: ops_numpy.tanh,
    codes.SOFTMAX: ops_nn.softmax,
    codes.ELU: ops_nn.elu,
    codes.SELU: ops_nn.selu,
    codes.SOFTPLUS: ops_nn.softplus,
    codes.SOFTSIGN: ops_nn.softsign,
    codes.HARD_SIGMOID: ops_nn.hard_sigmoid,
    codes.EXPONENTIAL: ops_numpy.exp,
    codes.LEAKY_RELU: ops_nn.leaky_relu,
    codes.RELU6: ops_nn.relu6,
    codes.LOG_SOFTMAX: ops_nn.log_softmax,
    codes.GELU: lambda x: ops_nn.gelu(x, approximate=False),
    codes.GELU_TANH: lambda x: ops_nn.gelu(x, approximate=True),
    codes.SILU: ops_nn.silu,
    codes.HARD_SILU: ops_nn.hard_silu,
    codes.MISH: _mish_ops,
}

_FUNCTIONS: dict[str, Callable] = {
    "linear": linear,
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
    "elu": elu,
    "selu": selu,
    "softplus": softplus,
    "softsign": softsign,
    "hard_sigmoid": hard_sigmoid,
    "exponential": exponential,
    "leaky_relu": leaky_relu,
    "relu6": relu6,
    "log_softmax": log_softmax,
    "gelu": gelu,
    "silu": silu,
    "hard_silu": hard_silu,
    "mish": mish,
}
_ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}  # Keras serializes them as these


def get_name(identifier) -> str:
    """The canonical name of an activation given by name, function or None (linear)."""
    if identifier is None:
        return "linear"
    if isinstance(identifier, str):
        name = _ALIASES.get(identifier.lower(), identifier.lower())
        if name not in codes.CODES and name not in _ON_OPS:
            raise ValueError(
                f"Unknown activation {identifier!r}. Valid activations: "
                f"{sorted([*codes.CODES, *_ALIASES, *_ON_OPS])}"
            )
        return name
    for name, fn in (*_FUNCTIONS.items(), *_ON_OPS.items()):
        if identifier is fn:
            return name
    raise TypeError(
        f"Unsupported activation {identifier!r}: this layer fuses its activation into its "
        f"kernels, so pass one of {sorted(codes.CODES)} by name or as fastnn.activations' "
        "function; Dense and Activation also take a function of yours (written with fastnn.ops)"
    )


def is_user_function(identifier) -> bool:
    """Whether ``identifier`` is a user's activation function: a callable not in this module."""
    return (
        callable(identifier)
        and not isinstance(identifier, type)
        and all(identifier is not fn for fn in (*_FUNCTIONS.values(), *_ON_OPS.values()))
    )


def resolve(identifier):
    """A built-in activation's canonical name, or a user's function as Keras takes one: the
    callable, the name it is registered under (``register_keras_serializable``,
    ``custom_object_scope``), or the ``{"class_name": "function", ...}`` config it is saved as."""
    if isinstance(identifier, dict) and identifier.get("class_name") == "function":
        key = identifier.get("config")  # Keras writes the registered name there
        found = get_registered_object(key) if isinstance(key, str) else None
        if not callable(found):
            raise ValueError(
                f"Unknown activation function {key!r}: register it with "
                "fastnn.saving.register_keras_serializable() or pass it in custom_objects"
            )
        return found
    if isinstance(identifier, str) and identifier.lower() not in {*codes.CODES, *_ALIASES}:
        found = get_registered_object(identifier)
        if callable(found):
            return found
    if is_user_function(identifier):
        return identifier
    name = get_name(identifier)
    return _ON_OPS.get(name, name)  # an activation without a kernel code runs as a function


def get(identifier) -> Callable:
    """The activation function for a name, a function of this module, None (linear) or a
    user's function (returned as it is, as Keras)."""
    found = resolve(identifier)
    return found if callable(found) else _FUNCTIONS[found]


def serialize(activation) -> str | dict:
    """The name an activation is saved by (``swish`` as ``silu``), or a user's function's
    config (``{"class_name": "function", ...}``, its registered name), as Keras."""
    if is_user_function(activation):
        return {  # Keras 3's form of a function in a layer's config
            "module": "builtins",
            "class_name": "function",
            "config": registered_key(activation) or activation.__name__,
            "registered_name": "function",
        }
    return get_name(activation)


def deserialize(config) -> Callable:
    """The activation function a saved name (or a user's function's config) stands for."""
    found = resolve(config)
    return found if callable(found) else get(found)


def code(identifier) -> int:
    """The kernel code of an activation (for ``bias_activation_forward``)."""
    name = get_name(identifier)
    if name in _ON_OPS:
        raise ValueError(
            f"activation {name!r} has no fused kernel: Dense and Activation take it (it runs "
            f"on fastnn.ops); elsewhere follow the layer with Activation({name!r})"
        )
    return codes.CODES[name]
