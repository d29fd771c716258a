"""More nn ops with keras.ops's names: transposed, depthwise and separable convs (on the layers'
Numba kernels), normalizations, shrink-style activations, adaptive pooling, pixel shuffles,
sparsemax and CTC. Primitives record under their own rule (``rules.py``); the rest compose ops.
"""

from __future__ import annotations

import math

import numpy as np

from fastnn import backend, kernels, runtime
from fastnn.kernels.geometry import padding_amounts, transpose_axis
from fastnn.ops import numpy as fnp
from fastnn.ops.nn import _channels_last, _spatial, conv, log_softmax, one_hot, sigmoid
from fastnn.ops.numpy import _as_float, _float
from fastnn.ops.tape import OpError, apply, as_array, unwrap

__all__ = [
    "adaptive_average_pool", "adaptive_max_pool", "celu", "conv_transpose", "ctc_decode",
    "ctc_loss", "depth_to_space", "depthwise_conv", "glu", "hard_shrink", "in_top_k",
    "layer_normalization", "multi_hot", "psnr", "rms_normalization", "separable_conv",
    "soft_shrink", "space_to_depth", "sparse_plus", "sparse_sigmoid", "sparsemax", "squareplus",
    "tanh_shrink", "threshold",
]  # fmt: skip


# ---- activations -------------------------------------------------------------------------------
def _piecewise(x, pieces, otherwise):
    """``pieces`` [(mask_fn, value)] tried in order on x's values, ``otherwise`` elsewhere; the
    masks are constants (the ops are piecewise there)."""
    values = _float(x)
    out = otherwise
    for condition, value in reversed(pieces):
        out = fnp.where(condition(values), value, out)
    return out


def celu(x, alpha: float = 1.0):
    """max(x, 0) + alpha * expm1(min(x, 0) / alpha) elementwise: (...) -> (...)."""
    x = _as_float(x)
    negative = fnp.minimum(x, 0.0)
    return fnp.add(fnp.maximum(x, 0.0), fnp.multiply(fnp.expm1(fnp.divide(negative, alpha)), alpha))


def glu(x, axis: int = -1):
    """Gated linear unit: a * sigmoid(b) for x split in halves a, b along ``axis``:
    (..., 2n, ...) -> (..., n, ...)."""
    shape = np.shape(unwrap(x))
    if not shape or shape[axis] % 2:
        raise OpError(
            f"glu: axis size must be divisible by 2. Received: x.shape={shape} with axis={axis}"
        )
    a, b = fnp.split(_as_float(x), 2, axis=axis)
    return fnp.multiply(a, sigmoid(b))


def hard_shrink(x, threshold: float = 0.5):
    """x where |x| > threshold, else 0: (...) -> (...)."""
    x = _as_float(x)
    return fnp.where(np.abs(_float(x)) > threshold, x, 0.0)


def soft_shrink(x, threshold: float = 0.5):
    """x - threshold above it, x + threshold below -threshold, 0 between: (...) -> (...)."""
    x = _as_float(x)
    return _piecewise(
        x,
        [(lambda v: v > threshold, fnp.subtract(x, threshold)),
         (lambda v: v < -threshold, fnp.add(x, threshold))],
        0.0,
    )  # fmt: skip


def tanh_shrink(x):
    """x - tanh(x) elementwise: (...) -> (...)."""
    x = _as_float(x)
    return fnp.subtract(x, fnp.tanh(x))


def squareplus(x, b: float = 4):
    """(x + sqrt(x**2 + b)) / 2 elementwise: (...) -> (...)."""
    x = _as_float(x)
    return fnp.multiply(fnp.add(x, fnp.sqrt(fnp.add(fnp.square(x), float(b)))), 0.5)


def sparse_plus(x):
    """0 for x <= -1, (x + 1)**2 / 4 for -1 < x < 1, x from 1: (...) -> (...)."""
    x = _as_float(x)
    middle = fnp.multiply(fnp.square(fnp.add(x, 1.0)), 0.25)
    return _piecewise(x, [(lambda v: v <= -1, 0.0), (lambda v: v < 1, middle)], x)


def sparse_sigmoid(x):
    """0 for x <= -1, (x + 1) / 2 between, 1 from 1: (...) -> (...)."""
    x = _as_float(x)
    middle = fnp.multiply(fnp.add(x, 1.0), 0.5)
    return _piecewise(x, [(lambda v: v <= -1, 0.0), (lambda v: v >= 1, 1.0)], middle)


def threshold(x, threshold, default_value):
    """x where x > threshold, else ``default_value``: (...) -> (...)."""
    value = as_array(x)
    default = np.asarray(unwrap(default_value), value.dtype)
    return fnp.where(value > unwrap(threshold), x, default)


def sparsemax(x, axis: int = -1):
    """The Euclidean projection of x onto the simplex along ``axis`` (Martins & Astudillo):
    (...) -> (...), sparse probabilities summing to 1."""
    return apply("sparsemax", _sparsemax, x, axis=axis)


def _sparsemax(x, axis):
    x = _float(x)
    ranked = -np.sort(-x, axis=axis)
    cumulative = np.cumsum(ranked, axis=axis)
    r_shape = [1] * x.ndim
    r_shape[axis] = -1
    r = np.arange(1, x.shape[axis] + 1, dtype=x.dtype).reshape(r_shape)
    support = ranked - (cumulative - 1) / r > 0
    k = np.sum(support, axis=axis, keepdims=True)
    # Keras's backends sum the cumulative sums over the support instead of taking the k-th,
    # which is right only for k == 1 (its own docstring's example gets [0, 0, .25, 0])
    tau = (np.take_along_axis(cumulative, k - 1, axis=axis) - 1) / k
    return np.maximum(x - tau, 0).astype(x.dtype, copy=False)


# ---- normalization -----------------------------------------------------------------------------
def _axes(axis, ndim: int) -> list:
    axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
    return sorted(int(a) % ndim for a in axes)


def _broadcast_param(value, x_shape: tuple, axes: list):
    """gamma/beta/scale shaped to broadcast along ``axes`` of x (as Keras reshapes them)."""
    if value is None or np.ndim(unwrap(value)) == len(x_shape) or axes == [len(x_shape) - 1]:
        return value
    return fnp.reshape(value, [n if i in axes else 1 for i, n in enumerate(x_shape)])


def layer_normalization(x, gamma=None, beta=None, axis=-1, epsilon=None, **kwargs):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over ``axis`` (one or several):
    (...) -> (...)."""
    if kwargs.pop("rms_scaling", False):
        raise OpError("layer_normalization: rms_scaling is deprecated; use rms_normalization")
    if kwargs:
        raise OpError(f"layer_normalization: unexpected arguments {sorted(kwargs)}")
    epsilon = backend.epsilon() if epsilon is None else epsilon
    original = as_array(x).dtype
    x = _as_float(x)
    shape = np.shape(unwrap(x))
    axes = _axes(axis, len(shape))
    mean = fnp.mean(x, axis=tuple(axes), keepdims=True)
    centred = fnp.subtract(x, mean)
    variance = fnp.mean(fnp.square(centred), axis=tuple(axes), keepdims=True)
    out = fnp.multiply(centred, fnp.rsqrt(fnp.add(variance, epsilon)))
    dtype = as_array(x).dtype
    if gamma is not None:
        out = fnp.multiply(out, _cast_to(_broadcast_param(gamma, shape, axes), dtype))
    if beta is not None:
        out = fnp.add(out, _cast_to(_broadcast_param(beta, shape, axes), dtype))
    return _cast_to(out, original)  # integers back to their dtype, as Keras casts


def rms_normalization(x, scale=None, axis=-1, epsilon=None):
    """x * rsqrt(mean(x**2) + epsilon) * scale over ``axis``: (...) -> (...)."""
    epsilon = backend.epsilon() if epsilon is None else epsilon
    original = as_array(x).dtype
    x = _as_float(x)
    if np.ndim(unwrap(x)) == 0:
        x = fnp.expand_dims(x, 0)
    shape = np.shape(unwrap(x))
    axes = _axes(axis, len(shape))
    mean_square = fnp.mean(fnp.square(x), axis=tuple(axes), keepdims=True)
    out = fnp.multiply(x, fnp.rsqrt(fnp.add(mean_square, epsilon)))
    if scale is not None:
        out = fnp.multiply(out, _cast_to(_broadcast_param(scale, shape, axes), as_array(x).dtype))
    return _cast_to(out, original)  # integers back to their dtype, as Keras casts


# ---- metrics and encodings -----------------------------------------------------------------------
def psnr(x1, x2, max_val):
    """Peak signal-to-noise ratio: 20 log10(max_val) - 10 log10(mean((x1 - x2)**2)) -> ()."""
    s1, s2 = np.shape(unwrap(x1)), np.shape(unwrap(x2))
    if s1 != s2:
        raise OpError(f"psnr: Input shapes {s1} and {s2} must match for PSNR calculation.")
    mse = fnp.mean(fnp.square(fnp.subtract(x1, x2)))
    peak = 20 * math.log10(float(unwrap(max_val)))
    return fnp.subtract(peak, fnp.multiply(fnp.log10(mse), 10.0))


def in_top_k(targets, predictions, k: int) -> np.ndarray:
    """True where the target's prediction is among the ``k`` largest of its row (ties count):
    (B,), (B, K) -> (B,) booleans."""
    t, p = as_array(targets).astype(np.int64), as_array(predictions)
    if p.ndim != 2 or t.shape != p.shape[:1]:
        raise OpError(
            f"in_top_k: expected targets (batch,) and predictions (batch, classes); got "
            f"{t.shape} and {p.shape}"
        )
    kth = -np.sort(-p, axis=-1)[:, min(int(k), p.shape[1]) - 1]
    return np.take_along_axis(p, t[:, None], axis=-1)[:, 0] >= kth


def multi_hot(inputs, num_classes=None, axis=-1, dtype=None, sparse=False, **kwargs):
    """Integer labels -> multi-hot rows: (B, L) -> (B, num_classes), (L,) -> (num_classes,)."""
    num_classes = kwargs.pop("num_tokens", num_classes)
    if kwargs:
        raise OpError(f"multi_hot: unexpected arguments {sorted(kwargs)}")
    if num_classes is None:
        raise OpError("multi_hot: give num_classes")
    x = as_array(inputs)
    hot = one_hot(x, num_classes, axis=axis, dtype=dtype, sparse=sparse)
    return np.max(hot, axis=1 if x.ndim > 1 else 0)


# ---- pixel shuffles ------------------------------------------------------------------------------
def _block_layout(name: str, x, block_size: int, data_format) -> tuple:
    shape = np.shape(unwrap(x))
    if len(shape) != 4:
        raise OpError(f"{name}: expected a 4-D input (N, H, W, C); got shape {shape}")
    if not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise OpError(f"{name}: block_size must be a positive int; got {block_size!r}")
    first = backend.standardize_data_format(data_format) == "channels_first"
    return shape, first


def depth_to_space(x, block_size: int, data_format: str = "channels_last"):
    """Channels into block_size x block_size spatial blocks (pixel shuffle):
    (N, H, W, C) -> (N, H*b, W*b, C/b**2)."""
    shape, first = _block_layout("depth_to_space", x, block_size, data_format)
    b = int(block_size)
    c = shape[1] if first else shape[3]
    if c % (b * b):
        raise OpError(
            f"depth_to_space: channels {c} of shape {shape} are not a multiple of {b * b}"
        )
    if first:
        n, c, h, w = shape
        y = fnp.transpose(fnp.reshape(x, (n, c // b**2, b, b, h, w)), (0, 1, 4, 2, 5, 3))
        return fnp.reshape(y, (n, c // b**2, h * b, w * b))
    n, h, w, c = shape
    y = fnp.transpose(fnp.reshape(x, (n, h, w, b, b, c // b**2)), (0, 1, 3, 2, 4, 5))
    return fnp.reshape(y, (n, h * b, w * b, c // b**2))


def space_to_depth(x, block_size: int, data_format: str = "channels_last"):
    """block_size x block_size spatial blocks into channels (pixel unshuffle):
    (N, H, W, C) -> (N, H/b, W/b, C*b**2)."""
    shape, first = _block_layout("space_to_depth", x, block_size, data_format)
    b = int(block_size)
    h, w = shape[2:] if first else shape[1:3]
    if h % b or w % b:
        raise OpError(f"space_to_depth: spatial sizes of shape {shape} are not multiples of {b}")
    if first:
        n, c, h, w = shape
        y = fnp.transpose(fnp.reshape(x, (n, c, h // b, b, w // b, b)), (0, 1, 3, 5, 2, 4))
        return fnp.reshape(y, (n, c * b * b, h // b, w // b))
    n, h, w, c = shape
    y = fnp.transpose(fnp.reshape(x, (n, h // b, b, w // b, b, c)), (0, 1, 3, 2, 4, 5))
    return fnp.reshape(y, (n, h // b, w // b, c * b * b))


# ---- adaptive pooling ----------------------------------------------------------------------------
def _adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices (out, widest), valid (out, widest)): window i spans
    [floor(i * size / out), ceil((i + 1) * size / out)), as torch and Keras."""
    starts = (np.arange(out) * size) // out
    ends = -((-np.arange(1, out + 1) * size) // out)
    widest = int((ends - starts).max())
    offsets = np.arange(widest)
    valid = offsets[None, :] < (ends - starts)[:, None]
    return np.minimum(starts[:, None] + offsets, size - 1), valid


def _adaptive_pool(name: str, inputs, output_size, data_format, mode: str):
    x, first = _channels_last(name, inputs, data_format)
    shape = np.shape(unwrap(x))
    d = len(shape) - 2
    if d not in (1, 2, 3):
        raise OpError(f"{name}: supports 1-D, 2-D and 3-D inputs; got shape {shape}")
    sizes = _spatial(name, output_size, d, "output_size")
    x = _as_float(x)
    for axis, (size, out) in enumerate(zip(shape[1:-1], sizes), start=1):
        index, valid = _adaptive_windows(size, out)
        taken = fnp.take(x, index.reshape(-1), axis=axis)
        windows = fnp.reshape(taken, (*shape[:axis], out, index.shape[1], *shape[axis + 1 :]))
        mask = valid.reshape((1,) * axis + valid.shape + (1,) * (len(shape) - axis - 1))
        if mode == "max":
            x = fnp.max(fnp.where(mask, windows, -np.inf), axis=axis + 1)
        else:
            counts = mask.sum(axis=axis + 1)
            x = fnp.divide(fnp.sum(fnp.where(mask, windows, 0.0), axis=axis + 1), counts)
        shape = np.shape(unwrap(x))
    return fnp.moveaxis(x, -1, 1) if first else x


def adaptive_average_pool(inputs, output_size, data_format=None):
    """Means over windows that tile each spatial axis into ``output_size`` parts:
    (N, *S, C) -> (N, *output_size, C)."""
    return _adaptive_pool("adaptive_average_pool", inputs, output_size, data_format, "average")


def adaptive_max_pool(inputs, output_size, data_format=None):
    """Maxima over windows that tile each spatial axis into ``output_size`` parts:
    (N, *S, C) -> (N, *output_size, C)."""
    return _adaptive_pool("adaptive_max_pool", inputs, output_size, data_format, "max")


# ---- transposed, depthwise and separable convolutions (the layers' kernels, NHWC) ------------
def _conv_args(name: str, inputs, kernel, strides, dilation_rate, data_format) -> tuple:
    """(x channels_last, kernel, is 1-D, channels_first, strides, dilation): 1-D inputs become
    one-row images, as the layers do, for the 2-D kernels; 3-D ones stay as they are."""
    x, first = _channels_last(name, inputs, data_format)
    d = np.ndim(unwrap(x)) - 2
    k_shape = np.shape(unwrap(kernel))
    if d not in (1, 2, 3):
        raise OpError(f"{name}: supports 1-D, 2-D and 3-D inputs; got shape {np.shape(unwrap(x))}")
    if len(k_shape) != d + 2:
        raise OpError(
            f"{name}: kernel of shape {k_shape} does not fit inputs of shape "
            f"{np.shape(unwrap(x))}: expected {d} window sizes and 2 channel axes"
        )
    strides = _spatial(name, strides, d, "strides")
    dilation = _spatial(name, dilation_rate, d, "dilation_rate")
    dtype = np.result_type(_float(x).dtype, as_array(kernel).dtype)
    if dtype not in (np.float32, np.float64):
        dtype = np.dtype(backend.floatx())
    x, kernel = _cast_to(x, dtype), _cast_to(kernel, dtype)
    if d == 1:
        x, kernel = fnp.expand_dims(x, 1), fnp.expand_dims(kernel, 0)
        strides, dilation = (1, *strides), (1, *dilation)
    return x, kernel, d == 1, first, strides, dilation


def _cast_to(x, dtype):
    """x in ``dtype``, recording a cast only when it changes the dtype."""
    return x if as_array(x).dtype == dtype else fnp.cast(x, dtype)


def _conv_result(y, one_d: bool, first: bool):
    if one_d:
        y = fnp.squeeze(y, 1)
    return fnp.moveaxis(y, -1, 1) if first else y


def conv_transpose(
    inputs, kernel, strides=1, padding: str = "valid", output_padding=None, data_format=None,
    dilation_rate=1,
):  # fmt: skip
    """Transposed convolution as keras.ops.conv_transpose (1-D and 2-D on the layers' kernel,
    3-D composed): (N, *S, C), (*K, O, C) -> (N, *o, O) (channels_last)."""
    x, kernel, one_d, first, strides, dilation = _conv_args(
        "conv_transpose", inputs, kernel, strides, dilation_rate, data_format
    )
    x_shape, k_shape = np.shape(unwrap(x)), np.shape(unwrap(kernel))
    if k_shape[-1] != x_shape[-1]:
        raise OpError(
            f"conv_transpose: kernel of shape {np.shape(unwrap(kernel))} does not fit inputs of "
            f"shape {np.shape(unwrap(inputs))}: its last axis must be the {x_shape[-1]} input "
            "channels"
        )
    padding = str(padding).lower()
    if padding not in ("valid", "same"):
        raise OpError(f"conv_transpose: padding must be 'valid' or 'same'; got {padding!r}")
    extras = _output_padding(output_padding, len(strides) - one_d, strides[one_d:])
    extras = (None,) * one_d + extras
    axes = [
        transpose_axis(n, k, s, dl, padding, e)
        for n, k, s, dl, e in zip(x_shape[1:-1], k_shape[:-2], strides, dilation, extras)
    ]
    if one_d:
        axes[0] = (1, 0)
    out_size = tuple(a[0] for a in axes)
    if min(out_size) < 1:
        raise OpError(f"conv_transpose: inputs of shape {x_shape} give an empty output {out_size}")
    params = {"strides": strides, "dilation": dilation, "crops": tuple(a[1] for a in axes),
              "out_size": out_size}  # fmt: skip
    if len(out_size) == 3:
        return _conv_result(_conv_transpose_nd(x, kernel, **params), one_d, first)
    return _conv_result(_conv_transpose(x, kernel, **params), one_d, first)


def _conv_transpose_nd(x, kernel, strides, dilation, crops, out_size):
    """Any-rank transposed conv as recorded ops: each input pixel times each tap (a
    tensordot), summed where it lands in the full output (index_add), then cropped or
    zero-extended to ``out_size``: (N, *S, C), (*K, F, C) -> (N, *out_size, F)."""
    x_shape, k_shape = np.shape(unwrap(x)), np.shape(unwrap(kernel))
    d, filters = len(strides), k_shape[-2]
    products = fnp.tensordot(x, kernel, axes=([-1], [-1]))  # (N, *S, *K, F)
    full = [(n - 1) * s + (k - 1) * dl + 1
            for n, k, s, dl in zip(x_shape[1:-1], k_shape[:-2], strides, dilation)]  # fmt: skip
    rank = 2 * d + 2
    index = [np.arange(x_shape[0]).reshape((-1,) + (1,) * (rank - 1))]
    for i, (n, k, s, dl) in enumerate(zip(x_shape[1:-1], k_shape[:-2], strides, dilation)):
        pixel = np.arange(n).reshape([-1 if j == 1 + i else 1 for j in range(rank)])
        tap = np.arange(k).reshape([-1 if j == 1 + d + i else 1 for j in range(rank)])
        index.append(pixel * s + tap * dl)
    index.append(np.arange(filters).reshape((1,) * (rank - 1) + (-1,)))
    summed = fnp._index_add(products, (x_shape[0], *full, filters), tuple(index))
    extend = (
        [(0, 0)] + [(0, max(c + o - f, 0)) for c, o, f in zip(crops, out_size, full)] + [(0, 0)]
    )
    if any(after for _, after in extend):
        summed = fnp.pad(summed, extend)
    window = tuple(slice(c, c + o) for c, o in zip(crops, out_size))
    return fnp.get_item(summed, (slice(None), *window))


def _output_padding(value, rank: int, strides: tuple) -> tuple:
    if value is None:
        return (None,) * rank
    values = (value,) * rank if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != rank or any(not 0 <= v < s for v, s in zip(values, strides)):
        raise OpError(
            f"conv_transpose: output_padding must be {rank} ints in [0, stride); got "
            f"output_padding={value}, strides={strides}"
        )
    return tuple(int(v) for v in values)


def _conv_transpose(x, kernel, **params):
    return apply("conv_transpose", _conv_transpose_forward, x, kernel, **params)


def _conv_transpose_forward(x, kernel, strides, dilation, crops, out_size):
    return kernels.conv_transpose.conv2d_transpose_forward(
        x, kernel, None, strides, dilation, crops, out_size, kernels.codes.LINEAR,
        threads=runtime.threads(),
    )  # fmt: skip


def _conv_transpose_input_grad(g, kernel, x_shape, **params):
    return apply("conv_transpose_input_grad", _conv_transpose_input_grad_forward, g, kernel,
                 x_shape=x_shape, **params)  # fmt: skip


def _conv_transpose_input_grad_forward(g, kernel, x_shape, strides, dilation, crops, out_size):
    shape_only = np.empty(x_shape, g.dtype)
    return kernels.conv_transpose.conv2d_transpose_backward(
        g, shape_only, kernel, strides, dilation, crops, None, None, threads=runtime.threads()
    )


def _conv_transpose_kernel_grad(x, g, kernel_shape, **params):
    return apply("conv_transpose_kernel_grad", _conv_transpose_kernel_grad_forward, x, g,
                 kernel_shape=kernel_shape, **params)  # fmt: skip


def _conv_transpose_kernel_grad_forward(x, g, kernel_shape, strides, dilation, crops, out_size):
    dkernel = np.zeros(kernel_shape, g.dtype)
    kernels.conv_transpose.conv2d_transpose_backward(
        g, x, dkernel, strides, dilation, crops, dkernel, None, need_dx=False,
        threads=runtime.threads(),
    )  # fmt: skip
    return dkernel


def depthwise_conv(
    inputs, kernel, strides=1, padding: str = "valid", data_format=None, dilation_rate=1
):
    """Each channel convolved with its own ``M`` filters (1-D and 2-D on the layers' kernel,
    3-D composed): (N, *S, C), (*K, C, M) -> (N, *o, C*M) (channels_last)."""
    x, kernel, one_d, first, strides, dilation = _conv_args(
        "depthwise_conv", inputs, kernel, strides, dilation_rate, data_format
    )
    return _conv_result(_depthwise(x, kernel, strides, dilation, padding), one_d, first)


def _depthwise(x, kernel, strides, dilation, padding):
    """The NHWC depthwise conv of ``depthwise_conv`` and ``separable_conv``."""
    x_shape, k_shape = np.shape(unwrap(x)), np.shape(unwrap(kernel))
    if k_shape[-2] != x_shape[-1]:
        raise OpError(
            f"depthwise_conv: kernel of shape {k_shape} does not fit inputs of shape "
            f"{x_shape}: expected (*window, {x_shape[-1]} input channels, multiplier)"
        )
    padding = str(padding).lower()
    if padding not in ("valid", "same"):
        raise OpError(f"depthwise_conv: padding must be 'valid' or 'same'; got {padding!r}")
    axes = [
        padding_amounts(n, (k - 1) * dl + 1, s, padding)
        for n, k, s, dl in zip(x_shape[1:-1], k_shape[:-2], strides, dilation)
    ]
    out_size = tuple(a[0] for a in axes)
    if min(out_size) < 1:
        raise OpError(
            f"depthwise_conv: input of shape {x_shape} is smaller than the window "
            f"{k_shape[:-2]} (dilation {dilation}) with padding='valid'"
        )
    if len(out_size) == 3:  # the general conv with a block-diagonal kernel
        channels, multiplier = k_shape[-2:]
        blocks = fnp.einsum("...cm,cd->...cdm", kernel, np.eye(channels, dtype=as_array(x).dtype))
        full = fnp.reshape(blocks, (*k_shape[:-2], channels, channels * multiplier))
        return conv(x, full, strides, padding, "channels_last", dilation)
    params = {"strides": strides, "dilation": dilation, "pads": tuple(a[1] for a in axes),
              "out_size": out_size}  # fmt: skip
    return _depthwise_apply(x, kernel, **params)


def _depthwise_apply(x, kernel, **params):
    return apply("depthwise_conv", _depthwise_forward, x, kernel, **params)


def _depthwise_forward(x, kernel, strides, dilation, pads, out_size):
    out = np.empty((x.shape[0], *out_size, kernel.shape[2] * kernel.shape[3]), x.dtype)
    return kernels.depthwise.depthwise_conv2d_forward(
        x, kernel, None, strides, dilation, pads, kernels.codes.LINEAR, out
    )


def _depthwise_input_grad(g, kernel, x_shape, **params):
    return apply("depthwise_conv_input_grad", _depthwise_input_grad_forward, g, kernel,
                 x_shape=x_shape, **params)  # fmt: skip


def _depthwise_input_grad_forward(g, kernel, x_shape, strides, dilation, pads, out_size):
    shape_only = np.empty(x_shape, g.dtype)
    return kernels.depthwise.depthwise_conv2d_backward(
        g, shape_only, kernel, strides, dilation, pads, None, None
    )


def _depthwise_kernel_grad(x, g, kernel_shape, **params):
    return apply("depthwise_conv_kernel_grad", _depthwise_kernel_grad_forward, x, g,
                 kernel_shape=kernel_shape, **params)  # fmt: skip


def _depthwise_kernel_grad_forward(x, g, kernel_shape, strides, dilation, pads, out_size):
    dkernel = np.zeros(kernel_shape, g.dtype)
    kernels.depthwise.depthwise_conv2d_backward(
        g, x, dkernel, strides, dilation, pads, dkernel, None, need_dx=False
    )
    return dkernel


def separable_conv(
    inputs, depthwise_kernel, pointwise_kernel, strides=1, padding: str = "valid",
    data_format=None, dilation_rate=1,
):  # fmt: skip
    """A depthwise conv, then a 1x1 conv mixing its channels: (N, *S, C), (*K, C, M),
    (*1, C*M, O) -> (N, *o, O) (channels_last)."""
    x, kernel, one_d, first, strides, dilation = _conv_args(
        "separable_conv", inputs, depthwise_kernel, strides, dilation_rate, data_format
    )
    mid = _depthwise(x, kernel, strides, dilation, padding)
    p_shape, channels = np.shape(unwrap(pointwise_kernel)), np.shape(unwrap(mid))[-1]
    if len(p_shape) < 2 or math.prod(p_shape[:-2]) != 1 or p_shape[-2] != channels:
        raise OpError(
            f"separable_conv: pointwise_kernel of shape {p_shape} does not fit the depthwise "
            f"output's {channels} channels: expected (*1s, {channels}, filters)"
        )
    pointwise = _cast_to(fnp.reshape(pointwise_kernel, p_shape[-2:]), as_array(mid).dtype)
    return _conv_result(fnp.matmul(mid, pointwise), one_d, first)


# ---- CTC -----------------------------------------------------------------------------------------
def ctc_loss(target, output, target_length, output_length, mask_index: int = 0):
    """Connectionist temporal classification loss per sequence, from logits:
    target (B, L) ints, output (B, T, K), lengths (B,) -> (B,)."""
    labels = as_array(target).astype(np.int64)
    o_shape = np.shape(unwrap(output))
    if len(o_shape) != 3 or labels.ndim != 2 or labels.shape[0] != o_shape[0]:
        raise OpError(
            "ctc_loss: expected target (batch, max_label_length) and output (batch, max_time, "
            f"classes); got {labels.shape} and {o_shape}"
        )
    label_lengths = np.broadcast_to(as_array(target_length).astype(np.int64), labels.shape[:1])
    time_lengths = np.broadcast_to(as_array(output_length).astype(np.int64), labels.shape[:1])
    if (label_lengths > labels.shape[1]).any() or (time_lengths > o_shape[1]).any():
        raise OpError(
            f"ctc_loss: lengths {label_lengths.tolist()} and {time_lengths.tolist()} exceed "
            f"target {labels.shape} or output {o_shape}"
        )
    output = _cast_to(output, np.result_type(_float(output).dtype, np.float32))
    return apply(
        "ctc_loss", _ctc_loss_forward, output, labels=labels, label_lengths=label_lengths,
        time_lengths=time_lengths, blank=int(mask_index),
    )  # fmt: skip


def _ctc_lattice(logp, labels, label_lengths, blank):
    """The extended labels (B, S) (blanks around each label), their log-probabilities (T, B, S)
    (-inf past each sequence's 2L+1 states) and which states may skip back two (B, S)."""
    batch, length = labels.shape
    states = 2 * length + 1
    extended = np.full((batch, states), blank, np.int64)
    extended[:, 1::2] = labels
    beyond = np.arange(states)[None, :] >= 2 * label_lengths[:, None] + 1
    emit = np.take_along_axis(logp, np.broadcast_to(extended[:, None, :], (batch, logp.shape[1],
                              states)), axis=2).transpose(1, 0, 2)  # fmt: skip
    emit = np.where(beyond[None], -np.inf, emit)
    skip = np.zeros((batch, states), bool)
    skip[:, 2:] = (extended[:, 2:] != blank) & (extended[:, 2:] != extended[:, :-2])
    return extended, emit, skip


def _shifted(a, by: int):
    """a moved ``by`` states later along the last axis, -inf filling in."""
    out = np.full_like(a, -np.inf)
    out[..., by:] = a[..., :-by]
    return out


def _ctc_alpha(emit, skip, time_lengths):
    """Forward log-probabilities alpha (T, B, S); each sequence's stay fixed after its end."""
    steps, _, states = emit.shape
    alpha = np.full(emit.shape, -np.inf, emit.dtype)
    alpha[0, :, : min(2, states)] = emit[0, :, : min(2, states)]
    with np.errstate(invalid="ignore"):
        for t in range(1, steps):
            prev = alpha[t - 1]
            total = np.logaddexp(prev, _shifted(prev, 1))
            total = np.where(skip, np.logaddexp(total, _shifted(prev, 2)), total)
            alpha[t] = np.where((t < time_lengths)[:, None], total + emit[t], prev)
    return alpha


def _ctc_beta(emit, skip, time_lengths, label_lengths):
    """Backward log-probabilities beta (T, B, S), emissions at t included."""
    steps, batch, states = emit.shape
    beta = np.full(emit.shape, -np.inf, emit.dtype)
    rows = np.arange(batch)
    last = 2 * label_lengths
    skip_next = np.zeros_like(skip)
    skip_next[:, :-2] = skip[:, 2:]
    with np.errstate(invalid="ignore"):
        for t in range(steps - 1, -1, -1):
            later = beta[t + 1] if t + 1 < steps else np.full((batch, states), -np.inf)
            total = np.logaddexp(later, _shifted(later[:, ::-1], 1)[:, ::-1])
            two = _shifted(later[:, ::-1], 2)[:, ::-1]
            total = np.where(skip_next, np.logaddexp(total, two), total) + emit[t]
            ends = t == time_lengths - 1
            total[ends] = -np.inf
            total[rows[ends], last[ends]] = emit[t, rows[ends], last[ends]]
            first = np.maximum(last[ends] - 1, 0)
            total[rows[ends], first] = emit[t, rows[ends], first]
            beta[t] = np.where((t < time_lengths)[:, None], total, -np.inf)
    return beta


def _ctc_loss_forward(output, labels, label_lengths, time_lengths, blank):
    logp = unwrap(log_softmax(output, axis=-1))
    _, emit, skip = _ctc_lattice(logp, labels, label_lengths, blank)
    alpha = _ctc_alpha(emit, skip, time_lengths)
    rows = np.arange(alpha.shape[1])
    final = alpha[np.maximum(time_lengths - 1, 0), rows]
    last = 2 * label_lengths
    both = np.logaddexp(final[rows, last], final[rows, np.maximum(last - 1, 0)])
    log_likelihood = np.where(label_lengths > 0, both, final[rows, 0])
    return (-log_likelihood).astype(output.dtype)


def _ctc_loss_grad(output, **params):
    """``_ctc_loss_grad_forward`` recorded without a rule: a second derivative through the CTC
    loss raises instead of silently missing the gradient's own dependence on output."""
    return apply("ctc_loss_grad", _ctc_loss_grad_forward, output, **params)


def _ctc_loss_grad_forward(output, labels, label_lengths, time_lengths, blank):
    """d ctc_loss / d output (B, T, K): softmax(output) minus the posterior of each class over
    the lattice's paths, zero past each sequence's end."""
    logp = np.asarray(unwrap(log_softmax(output, axis=-1)))
    extended, emit, skip = _ctc_lattice(logp, labels, label_lengths, blank)
    alpha = _ctc_alpha(emit, skip, time_lengths)
    beta = _ctc_beta(emit, skip, time_lengths, label_lengths)
    log_likelihood = -_ctc_loss_forward(output, labels, label_lengths, time_lengths, blank)
    with np.errstate(invalid="ignore"):
        occupancy = np.exp(alpha + beta - emit - log_likelihood[None, :, None])  # (T, B, S)
    occupancy = np.nan_to_num(occupancy.transpose(1, 0, 2))  # (B, T, S)
    posterior = np.zeros_like(logp)
    batch, steps = logp.shape[:2]
    b_index = np.arange(batch)[:, None, None]
    t_index = np.arange(steps)[None, :, None]
    np.add.at(posterior, (b_index, t_index, extended[:, None, :]), occupancy)
    live = (np.arange(steps)[None, :] < time_lengths[:, None])[..., None]
    return np.where(live, np.exp(logp) - posterior, 0).astype(logp.dtype)


def ctc_decode(
    inputs, sequence_lengths, strategy: str = "greedy", beam_width: int = 100, top_paths: int = 1,
    merge_repeated: bool = True, mask_index: int = 0,
):  # fmt: skip
    """CTC decoding, greedy or by prefix beam search: (B, T, K) scores -> (decoded
    (top_paths, B, T) with -1 padding, scores (B, top_paths))."""
    if strategy == "beam_search":
        return _ctc_beam_search(inputs, sequence_lengths, beam_width, top_paths, mask_index)
    if strategy != "greedy":
        raise OpError(f"ctc_decode: strategy must be 'greedy' or 'beam_search'; got {strategy!r}")
    x = _float(inputs)
    x = x.astype(np.result_type(x.dtype, np.float32))
    lengths = as_array(sequence_lengths).astype(np.int64)
    batch, steps, classes = x.shape
    blank = classes - 1 if mask_index is None else int(mask_index)
    indices = np.argmax(x, axis=-1).astype("int32")
    scores = np.max(x, axis=-1)
    beyond = np.arange(steps)[None, :] >= lengths[:, None]
    indices = np.where(beyond, blank, indices)
    scores = np.where(beyond, 0.0, scores)
    if merge_repeated:
        repeat = np.pad(indices[:, 1:] == indices[:, :-1], ((0, 0), (1, 0)))
        indices = np.where(repeat, blank, indices)
    invalid = indices == blank
    indices = np.where(invalid, -1, indices)
    order = np.argsort(np.where(invalid, steps, np.arange(steps)[None, :]), axis=-1, kind="stable")
    indices = np.take_along_axis(indices, order, axis=-1)
    return indices[None], (-np.sum(scores, axis=1)[:, None]).astype(x.dtype)


def _ctc_beam_search(inputs, sequence_lengths, beam_width: int, top_paths: int, mask_index):
    """Prefix beam search over log_softmax(inputs): each prefix keeps the log-probabilities
    of its alignments ending in a blank and in its last label; the ``beam_width`` likeliest
    prefixes survive each step. A loop over steps and beams, per sequence."""
    x = _float(inputs)
    x = x.astype(np.result_type(x.dtype, np.float32))
    logp = np.asarray(unwrap(log_softmax(x, axis=-1)), np.float64)
    lengths = as_array(sequence_lengths).astype(np.int64)
    batch, steps, classes = x.shape
    blank = classes - 1 if mask_index is None else int(mask_index)
    paths = np.full((top_paths, batch, steps), -1, np.int32)
    scores = np.full((batch, top_paths), -np.inf, x.dtype)
    for b in range(batch):
        ranked = _prefix_beams(logp[b, : lengths[b]], blank, beam_width)[:top_paths]
        for i, (prefix, score) in enumerate(ranked):
            paths[i, b, : len(prefix)] = prefix
            scores[b, i] = score
    return paths, scores


def _prefix_beams(logp: np.ndarray, blank: int, beam_width: int) -> list:
    """[(prefix, log-probability)] best first, for one sequence's (T, K) log-probabilities."""
    beams = {(): (0.0, -np.inf)}  # prefix -> (ending in blank, ending in its last label)
    labels = [c for c in range(logp.shape[1]) if c != blank]
    for row in logp:
        grown: dict = {}
        for prefix, (p_blank, p_label) in beams.items():
            _add(grown, prefix, in_blank=np.logaddexp(p_blank, p_label) + row[blank])
            last = prefix[-1] if prefix else None
            for c in labels:
                if c == last:  # a repeat extends only after a blank; else it merges
                    _add(grown, prefix + (c,), in_label=p_blank + row[c])
                    _add(grown, prefix, in_label=p_label + row[c])
                else:
                    _add(grown, prefix + (c,), in_label=np.logaddexp(p_blank, p_label) + row[c])
        ranked = sorted(grown.items(), key=lambda item: -np.logaddexp(*item[1]))
        beams = dict(ranked[:beam_width])
    return [(prefix, float(np.logaddexp(*p))) for prefix, p in
            sorted(beams.items(), key=lambda item: -np.logaddexp(*item[1]))]  # fmt: skip


def _add(beams: dict, prefix: tuple, in_blank=-np.inf, in_label=-np.inf) -> None:
    """Add log-probabilities into a prefix's (ending in blank, ending in label) pair."""
    old_blank, old_label = beams.get(prefix, (-np.inf, -np.inf))
    beams[prefix] = (np.logaddexp(old_blank, in_blank), np.logaddexp(old_label, in_label))
