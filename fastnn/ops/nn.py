"""nn ops with keras.ops's names and arguments: activations, conv and pooling, normalization,
cross-entropies, attention. Primitives record under their own rule; the rest are compositions."""

from __future__ import annotations

import math

import numpy as np

from fastnn import backend
from fastnn.ops import numpy as fnp
from fastnn.ops import windows
from fastnn.ops.numpy import _float, tanh
from fastnn.ops.tape import OpError, apply, as_array, unwrap

__all__ = [
    "average_pool", "batch_normalization", "binary_crossentropy", "categorical_crossentropy",
    "conv", "dot_product_attention", "elu", "gelu", "hard_sigmoid", "hard_silu", "hard_swish",
    "hard_tanh", "leaky_relu", "log_sigmoid", "log_softmax", "max_pool", "moments", "normalize",
    "one_hot", "relu", "relu6", "selu", "sigmoid", "silu", "softmax", "softplus", "softsign",
    "sparse_categorical_crossentropy", "swish", "tanh",
]  # fmt: skip


# ---- activations -------------------------------------------------------------------------------
def relu(x):
    """max(x, 0) elementwise (gradient 0 at 0): (...) -> (...)."""
    return apply("relu", lambda v: np.maximum(as_array(v), 0), x)


def relu6(x):
    """min(max(x, 0), 6) elementwise: (...) -> (...)."""
    return apply("relu6", lambda v: np.clip(as_array(v), 0, 6), x)


def sigmoid(x):
    """1 / (1 + exp(-x)) elementwise, without overflow: (...) -> (...)."""
    return apply("sigmoid", _sigmoid, x)


def _sigmoid(x):
    x = _float(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def softplus(x):
    """log(1 + exp(x)) elementwise, without overflow: (...) -> (...)."""
    return apply("softplus", lambda v: np.logaddexp(_float(v), 0), x)


def softsign(x):
    """x / (1 + |x|) elementwise: (...) -> (...)."""
    return apply("softsign", lambda v: _float(v) / (1 + np.abs(_float(v))), x)


def silu(x):
    """x * sigmoid(x) elementwise (swish): (...) -> (...)."""
    return apply("silu", lambda v: _float(v) * _sigmoid(v), x)


swish = silu


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x) elementwise: (...) -> (...)."""
    return fnp.negative(softplus(fnp.negative(x)))


def elu(x, alpha: float = 1.0):
    """x if x > 0 else alpha * (exp(x) - 1), elementwise: (...) -> (...)."""
    return apply("elu", _elu, x, alpha=alpha)


def _elu(x, alpha):
    x = _float(x)
    return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x):
    """Scaled ELU (Klambauer et al.): (...) -> (...)."""
    return fnp.multiply(elu(x, alpha=1.6732632423543772), 1.0507009873554805)


def gelu(x, approximate: bool = True):
    """Gaussian error linear unit; the tanh approximation by default, as Keras: (...) -> (...)."""
    return apply("gelu", _gelu, x, approximate=bool(approximate))


def _gelu(x, approximate):
    x = _float(x)
    if approximate:
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1 + np.tanh(inner))
    return 0.5 * x * (1 + fnp._erf(x / math.sqrt(2)))


def leaky_relu(x, negative_slope: float = 0.2):
    """x if x > 0 else negative_slope * x, elementwise: (...) -> (...)."""
    return apply("leaky_relu", _leaky_relu, x, negative_slope=negative_slope)


def _leaky_relu(x, negative_slope):
    x = _float(x)
    return np.where(x > 0, x, negative_slope * x)


def hard_sigmoid(x):
    """relu6(x + 3) / 6 elementwise (gradient 0 at -3 and 3, as torch): (...) -> (...)."""
    return fnp.divide(relu6(fnp.add(x, 3.0)), 6.0)


def hard_silu(x):
    """x * hard_sigmoid(x) elementwise: (...) -> (...)."""
    return fnp.multiply(x, hard_sigmoid(x))


hard_swish = hard_silu


def hard_tanh(x):
    """clip(x, -1, 1) elementwise (gradient 0 at -1 and 1, as torch): (...) -> (...)."""
    return apply("hard_tanh", lambda v: np.clip(_float(v), -1, 1), x)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) over ``axis``, without overflow: (...) -> (...)."""
    return apply("softmax", _softmax, x, axis=_axis(axis))


def _softmax(x, axis):
    x = _float(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    """x - logsumexp(x) over ``axis``: (...) -> (...)."""
    return apply("log_softmax", _log_softmax, x, axis=_axis(axis))


def _log_softmax(x, axis):
    x = _float(x)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _axis(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def one_hot(x, num_classes: int, axis: int = -1, dtype=None, sparse: bool = False) -> np.ndarray:
    """Integer labels -> one-hot rows (float32); a negative label gives a row of zeros."""
    if sparse:
        raise OpError("one_hot: fastnn has no sparse tensors")
    x = as_array(x).astype(np.int64)
    out = (x[..., None] == np.arange(num_classes)).astype(dtype or "float32")
    return out if axis == -1 else np.moveaxis(out, -1, axis)


# ---- convolution and pooling -------------------------------------------------------------------
def _spatial(name: str, value, d: int, what: str) -> tuple:
    value = (value,) * d if isinstance(value, (int, np.integer)) else tuple(value)
    if len(value) != d or not all(isinstance(v, (int, np.integer)) and v > 0 for v in value):
        raise OpError(f"{name}: `{what}` must be a positive int or {d} of them; got {value}")
    return tuple(int(v) for v in value)


def _channels_last(name: str, x, data_format) -> tuple:
    if np.ndim(unwrap(x)) < 3:
        raise OpError(
            f"{name}: inputs must be (batch, *spatial, channels); got shape {np.shape(unwrap(x))}"
        )
    first = backend.standardize_data_format(data_format) == "channels_first"
    return (fnp.moveaxis(x, 1, -1) if first else x), first


def conv(inputs, kernel, strides=1, padding: str = "valid", data_format=None, dilation_rate=1):
    """N-D cross-correlation as keras.ops.conv: (N, *S, C), (*K, C, O) -> (N, *o, O)
    (channels_last; (N, C, *S) -> (N, O, *o) with data_format='channels_first')."""
    x, first = _channels_last("conv", inputs, data_format)
    d = np.ndim(unwrap(x)) - 2
    k_shape, x_shape = np.shape(unwrap(kernel)), np.shape(unwrap(x))
    if len(k_shape) != d + 2 or k_shape[-2] != x_shape[-1]:
        raise OpError(
            f"conv: kernel of shape {k_shape} does not fit inputs of shape {x_shape}: expected "
            f"(*{d} window sizes, {x_shape[-1]} input channels, output channels)"
        )
    params = {
        "strides": _spatial("conv", strides, d, "strides"),
        "padding": str(padding).lower(),
        "dilation": _spatial("conv", dilation_rate, d, "dilation_rate"),
    }
    y = _conv(x, kernel, **params)
    return fnp.moveaxis(y, -1, 1) if first else y


def _conv(x, kernel, **params):
    return apply("conv", lambda v, k, **p: windows.conv(_float(v), as_array(k), **p), x, kernel,
                 **params)  # fmt: skip


def _conv_input_grad(g, kernel, x_shape, **params):
    return apply("conv_input_grad", windows.conv_input_grad, g, kernel, x_shape=x_shape, **params)


def _conv_kernel_grad(x, g, kernel_shape, **params):
    return apply("conv_kernel_grad", windows.conv_kernel_grad, x, g, kernel_shape=kernel_shape,
                 **params)  # fmt: skip


def _pool_params(name: str, x, pool_size, strides, padding) -> dict:
    d = np.ndim(unwrap(x)) - 2
    pool = _spatial(name, pool_size, d, "pool_size")
    return {
        "pool_size": pool,
        "strides": pool if strides is None else _spatial(name, strides, d, "strides"),
        "padding": str(padding).lower(),
    }


def max_pool(inputs, pool_size, strides=None, padding: str = "valid", data_format=None):
    """Window maxima: (N, *S, C) -> (N, *o, C); strides default to pool_size."""
    x, first = _channels_last("max_pool", inputs, data_format)
    params = _pool_params("max_pool", x, pool_size, strides, padding)
    y = apply("max_pool", lambda v, **p: windows.max_pool(_float(v), **p), x, **params)
    return fnp.moveaxis(y, -1, 1) if first else y


def _max_pool_grad(g, x, **params):
    return apply("max_pool_grad", windows.max_pool_grad, g, x, **params)


def _max_pool_gather(h, x, **params):
    return apply("max_pool_gather", windows.max_pool_gather, h, x, **params)


def average_pool(inputs, pool_size, strides=None, padding: str = "valid", data_format=None):
    """Window means ('same' padding not counted): (N, *S, C) -> (N, *o, C)."""
    x, first = _channels_last("average_pool", inputs, data_format)
    params = _pool_params("average_pool", x, pool_size, strides, padding)
    y = _average_pool(x, **params)
    return fnp.moveaxis(y, -1, 1) if first else y


def _average_pool(x, **params):
    return apply("average_pool", lambda v, **p: windows.average_pool(_float(v), **p), x, **params)


def _average_pool_grad(g, x_shape, **params):
    return apply("average_pool_grad", windows.average_pool_grad, g, x_shape=x_shape, **params)


# ---- normalization -----------------------------------------------------------------------------
def moments(x, axes, keepdims: bool = False, synchronized: bool = False) -> tuple:
    """(mean, variance) of ``x`` over ``axes``: (...) -> reduced, reduced."""
    if synchronized:
        raise OpError("moments: synchronized=True needs a distribution strategy")
    axes = _axis(axes)
    mean = fnp.mean(x, axis=axes, keepdims=True)
    variance = fnp.mean(fnp.square(fnp.subtract(x, mean)), axis=axes, keepdims=True)
    if not keepdims:
        mean, variance = fnp.squeeze(mean, axes), fnp.squeeze(variance, axes)
    return mean, variance


def normalize(x, axis=-1, order: int = 2, epsilon=None):
    """x / max(norm(x), epsilon) over ``axis`` (the order-norm): (...) -> (...)."""
    if not isinstance(order, int) or order < 1:
        raise OpError(f"normalize: `order` must be an int >= 1; got order={order!r}")
    epsilon = backend.epsilon() if epsilon is None else epsilon
    if np.ndim(unwrap(x)) == 0:
        x = fnp.expand_dims(x, 0)
    if order == 2:
        inv = fnp.rsqrt(fnp.sum(fnp.square(x), axis=axis, keepdims=True))
        return fnp.multiply(x, fnp.minimum(inv, 1.0 / epsilon))
    norm = fnp.power(fnp.sum(fnp.power(fnp.abs(x), order), axis=axis, keepdims=True), 1 / order)
    return fnp.divide(x, fnp.maximum(norm, epsilon))


def batch_normalization(x, mean, variance, axis, offset=None, scale=None, epsilon=1e-3):
    """(x - mean) / sqrt(variance + epsilon) * scale + offset, the 1-D stats along ``axis``."""
    shape = [1] * np.ndim(unwrap(x))
    shape[axis] = -1
    inv = fnp.rsqrt(fnp.add(fnp.reshape(variance, shape), epsilon))
    if scale is not None:
        inv = fnp.multiply(inv, fnp.reshape(scale, shape))
    shift = fnp.negative(fnp.multiply(fnp.reshape(mean, shape), inv))
    if offset is not None:
        shift = fnp.add(shift, fnp.reshape(offset, shape))
    return fnp.add(fnp.multiply(x, inv), shift)


# ---- losses ------------------------------------------------------------------------------------
def _same_shape(name: str, target, output) -> None:
    t, o = np.shape(unwrap(target)), np.shape(unwrap(output))
    if t != o:
        raise OpError(f"{name}: target and output must have the same shape; got {t} and {o}")


def binary_crossentropy(target, output, from_logits: bool = False):
    """-(t log p + (1 - t) log(1 - p)) elementwise, p clipped to [eps, 1 - eps]; from logits
    without clipping, as the stable max(x, 0) - x t + log(1 + exp(-|x|))."""
    _same_shape("binary_crossentropy", target, output)
    if from_logits:
        return apply("sigmoid_cross_entropy", _sigmoid_cross_entropy, target, output)
    eps = backend.epsilon()
    p = fnp.clip(output, eps, 1.0 - eps)
    ll = fnp.add(
        fnp.multiply(target, fnp.log(p)),
        fnp.multiply(fnp.subtract(1.0, target), fnp.log(fnp.subtract(1.0, p))),
    )
    return fnp.negative(ll)


def _sigmoid_cross_entropy(t, x):
    t, x = fnp._promote(t, _float(x))
    return np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))


def _log_probs(output, from_logits: bool, axis):
    if from_logits:
        return log_softmax(output, axis=axis)
    eps = backend.epsilon()
    p = fnp.divide(output, fnp.sum(output, axis=axis, keepdims=True))
    return fnp.log(fnp.clip(p, eps, 1.0 - eps))


def categorical_crossentropy(target, output, from_logits: bool = False, axis: int = -1):
    """-sum(t log p) over ``axis``; p = output / sum(output) clipped, or softmax(logits):
    (..., K), (..., K) -> (...)."""
    _same_shape("categorical_crossentropy", target, output)
    if np.ndim(unwrap(output)) < 1:
        raise OpError("categorical_crossentropy: target and output must be at least 1-D")
    log_p = _log_probs(output, from_logits, axis)
    return fnp.negative(fnp.sum(fnp.multiply(target, log_p), axis=axis))


def sparse_categorical_crossentropy(target, output, from_logits: bool = False, axis: int = -1):
    """-log p[target] over ``axis`` for integer targets: (...), (..., K) -> (...)."""
    labels = as_array(target).astype(np.int64)
    o_shape = np.shape(unwrap(output))
    if labels.ndim == len(o_shape) and labels.shape[-1:] == (1,):
        labels = labels[..., 0]
    rest = tuple(n for i, n in enumerate(o_shape) if i != axis % max(len(o_shape), 1))
    if len(o_shape) < 1 or labels.shape != rest:
        raise OpError(
            "sparse_categorical_crossentropy: target must have the shape of output without "
            f"axis {axis}; got {np.shape(unwrap(target))} and {o_shape}"
        )
    bad = (labels < 0) | (labels >= o_shape[axis])
    if bad.any():
        where = tuple(int(i[0]) for i in np.nonzero(bad))
        raise OpError(
            f"sparse_categorical_crossentropy: label {labels[where]} at {where} is outside "
            f"[0, {o_shape[axis]})"
        )
    log_p = _log_probs(output, from_logits, axis)
    picked = fnp.take_along_axis(log_p, np.expand_dims(labels, axis), axis=axis)
    return fnp.negative(fnp.squeeze(picked, axis))


# ---- attention ---------------------------------------------------------------------------------
_LARGE_NEGATIVE = -0.7 * 3.38953e38  # what Keras puts in masked logits


def dot_product_attention(
    query, key, value, bias=None, mask=None, scale=None, is_causal: bool = False,
    flash_attention=None, attn_logits_soft_cap=None,
):  # fmt: skip
    """softmax(q k^T * scale + bias, masked) v per head: query (B, T, N, H), key and value
    (B, S, K, H) with N a multiple of K (grouped heads) -> (B, T, N, H)."""
    if flash_attention or attn_logits_soft_cap is not None:
        raise OpError("dot_product_attention: flash attention and soft caps need a GPU/TPU")
    q, k, v = (np.shape(unwrap(a)) for a in (query, key, value))
    if len(q) != 4 or len(k) != 4 or k != v or q[-1] != k[-1] or q[2] % k[2]:
        raise OpError(
            "dot_product_attention: expected query (B, T, N, H) and key, value (B, S, K, H) "
            f"with N a multiple of K; got query {q}, key {k}, value {v}"
        )
    if k[2] != q[2]:
        key, value = (fnp.repeat(a, q[2] // k[2], axis=2) for a in (key, value))
    scale = 1.0 / math.sqrt(q[-1]) if scale is None else scale
    logits = fnp.matmul(fnp.transpose(query, (0, 2, 1, 3)), fnp.transpose(key, (0, 2, 3, 1)))
    logits = fnp.multiply(logits, scale)
    if bias is not None:
        logits = fnp.add(logits, bias)
    if mask is not None or is_causal:
        keep = np.ones((q[1], k[1]), bool) if mask is None else as_array(mask).astype(bool)
        if is_causal:
            keep = keep & np.tril(np.ones((q[1], k[1]), bool))
        logits = fnp.where(keep, logits, _LARGE_NEGATIVE)
    probs = softmax(logits, axis=-1)
    return fnp.transpose(fnp.matmul(probs, fnp.transpose(value, (0, 2, 1, 3))), (0, 2, 1, 3))
