"""Reshaping layers: Reshape, RepeatVector, Permute, Identity, zero padding, cropping and
up-sampling (Keras 3 arguments; masks stop here, as in Keras, but Identity passes them)."""

from __future__ import annotations

import functools
import math

import numpy as np

from fastnn import backend, kernels
from fastnn.kernels.workspace import scratch
from fastnn.layers.base import Layer, shape_error


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class Reshape(Layer):
    """Reshapes every sample to ``target_shape``; the batch axis is kept.

    Args:
        target_shape: tuple of ints, without the batch axis. One entry may be -1: it is
            inferred from the size of the sample.

    Input shape: ``(batch, ...)`` with as many elements per sample as ``target_shape``.
    Output shape: ``(batch, *target_shape)``.

    Example: ``Reshape((-1, 2))(Input((12,)))`` has shape ``(None, 6, 2)``.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            shape = tuple(target_shape)
        except TypeError:
            raise TypeError(
                "Expected a tuple of integers for `target_shape`. "
                f"Received: target_shape={target_shape!r}"
            ) from None
        if not all(_is_int(d) for d in shape):
            raise TypeError(
                "Expected a tuple of integers for `target_shape`. "
                f"Received: target_shape={target_shape!r}"
            )
        shape = tuple(int(d) for d in shape)
        if any(d < -1 for d in shape):
            raise ValueError(
                "Each dimension in `target_shape` must be a non-negative integer, or `-1` for a "
                f"single unknown dimension. Received: target_shape={shape}."
            )
        if shape.count(-1) > 1:
            raise ValueError(
                "There must be at most one unknown dimension (-1) in `target_shape`. "
                f"Received: target_shape={shape}."
            )
        self.target_shape = shape

    def _resolve(self, sample_shape, batch_shape):
        """target_shape with -1 resolved from a sample shape (None if unknown); or raise."""
        target = self.target_shape
        if any(d is None for d in sample_shape):
            return tuple(None if d == -1 else d for d in target)
        size = math.prod(sample_shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if known == 0 or size % known:
                raise shape_error(
                    self,
                    f"cannot reshape {size} elements per sample into target_shape={target}",
                    f"a number of elements divisible by {known}",
                    tuple(batch_shape),
                )
            return tuple(size // known if d == -1 else d for d in target)
        if size != known:
            raise shape_error(
                self,
                f"the total size of each sample must be unchanged by target_shape={target}",
                f"{known} elements per sample",
                f"{size} in input shape {tuple(batch_shape)}",
            )
        return target

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 1:
            raise shape_error(self, "expects a batch axis", "(batch, ...)", input_shape)
        return (input_shape[0], *self._resolve(input_shape[1:], input_shape))

    def forward(self, inputs, training):
        target = self._resolve(inputs.shape[1:], inputs.shape)
        return inputs.reshape(inputs.shape[0], *target), inputs.shape

    def backward(self, ctx, grad_outputs):
        return np.asarray(grad_outputs).reshape(ctx)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class RepeatVector(Layer):
    """Repeats each sample's vector ``n`` times: ``(batch, features) -> (batch, n, features)``.

    Args:
        n: the number of repetitions, a positive integer.

    Example: ``RepeatVector(10)(encoded)`` feeds a decoder LSTM with 10 steps.
    """

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(n):
            raise TypeError(f"Expected an integer value for `n`, got {type(n)}.")
        if n <= 0:
            raise ValueError(f"Argument `n` should be a positive integer. Received: n={n}")
        self.n = int(n)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise shape_error(self, "expects a 2-D input", "(batch, features)", input_shape)
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, inputs, training):
        n, features = inputs.shape
        out = np.empty((n, self.n, features), dtype=inputs.dtype)
        out[...] = inputs[:, None, :]
        return out, None

    def backward(self, ctx, grad_outputs):
        return np.asarray(grad_outputs).sum(axis=1)

    def get_config(self):
        return {**super().get_config(), "n": self.n}


# ---- argument checks Keras's reshaping layers share ---------------------------------------------


def standardize_tuple(value, n: int, name: str, allow_zero: bool = False) -> tuple:
    """An int or n ints as a tuple of n ints, >= 0 (``allow_zero``) or > 0 (Keras's check)."""
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if _is_int(value):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(message) from None
        if len(values) != n:
            raise ValueError(message)
        for v in values:
            if not _is_int(v):
                raise ValueError(f"{message} including element {v} of type {type(v)}")
        values = tuple(int(v) for v in values)
    bad = {v for v in values if (v < 0 if allow_zero else v <= 0)}
    if bad:
        wanted = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{message}, including values {bad} that do not satisfy `value {wanted}`")
    return values


def standardize_data_format(data_format) -> str:
    """'channels_last' or 'channels_first'; None is ``fastnn.backend.image_data_format()``."""
    if data_format is None:
        return backend.image_data_format()
    value = str(data_format).lower()
    if value not in ("channels_first", "channels_last"):
        raise ValueError(
            "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
            f"Received: data_format={data_format}"
        )
    return value


def _pairs_2d(value, name: str) -> tuple:
    """ZeroPadding2D's and Cropping2D's argument as ((top, bottom), (left, right))."""
    if _is_int(value):
        if value < 0:
            raise ValueError(f"`{name}` cannot be negative. Received: {name}={value}.")
        return ((int(value),) * 2,) * 2
    if not hasattr(value, "__len__"):
        raise ValueError(
            f"`{name}` should be either an int, a tuple of 2 ints "
            "(symmetric_height_crop, symmetric_width_crop), "
            "or a tuple of 2 tuples of 2 ints "
            "((top_crop, bottom_crop), (left_crop, right_crop)). "
            f"Received: {name}={value}."
        )
    if len(value) != 2:
        raise ValueError(f"`{name}` should have two elements. Received: {name}={value}.")
    return (
        standardize_tuple(value[0], 2, f"1st entry of {name}", allow_zero=True),
        standardize_tuple(value[1], 2, f"2nd entry of {name}", allow_zero=True),
    )


def check_rank(layer: Layer, input_shape, ndim: int, layout: str) -> tuple:
    """``input_shape`` as a tuple, or Keras's InputSpec error naming the layer."""
    input_shape = tuple(input_shape)
    if len(input_shape) != ndim:
        raise shape_error(
            layer, f"expected ndim={ndim}, found ndim={len(input_shape)}", layout, input_shape
        )
    return input_shape


def _spatial_axes(data_format: str, rank: int) -> tuple:
    """The spatial axes of a (batch, ..., channels) or (batch, channels, ...) input."""
    first = 2 if data_format == "channels_first" else 1
    return tuple(range(first, first + rank))


def layout_name(data_format: str, rank: int) -> str:
    """The expected input layout in words, for shape errors: '(batch, steps, channels)'."""
    names = ("steps",) if rank == 1 else ("height", "width")
    dims = ("channels", *names) if data_format == "channels_first" else (*names, "channels")
    return f"(batch, {', '.join(dims)})"


# ---- Permute, Identity ------------------------------------------------------------------------


class Permute(Layer):
    """Permutes the non-batch axes by ``dims`` (1-based): ``Permute((2, 1))`` swaps two axes.

    Example: ``Permute((2, 1))(Input((10, 64)))`` has shape ``(None, 64, 10)``.
    """

    def __init__(self, dims, **kwargs):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                "Invalid permutation argument `dims` for Permute Layer. "
                "The set of indices in `dims` must be consecutive and start "
                f"from 1. Received dims={dims}"
            )
        self.dims = tuple(int(d) for d in dims)
        self._axes = (0, *self.dims)
        self._inverse = tuple(int(a) for a in np.argsort(self._axes))

    def compute_output_shape(self, input_shape):
        rank = len(self.dims) + 1
        input_shape = check_rank(self, input_shape, rank, f"a {rank}-D input")
        return tuple(input_shape[a] for a in self._axes)

    def forward(self, inputs, training):
        return np.ascontiguousarray(inputs.transpose(self._axes)), None

    def backward(self, ctx, grad_outputs):
        return np.ascontiguousarray(np.asarray(grad_outputs).transpose(self._inverse))

    def get_config(self):
        return {**super().get_config(), "dims": self.dims}


class Identity(Layer):
    """Passes its inputs (one array or a list) through unchanged, masks included."""

    passes_mask = True

    def forward(self, inputs, training):
        return inputs, None

    def backward(self, ctx, grad_outputs):
        return grad_outputs


# ---- padding and cropping -----------------------------------------------------------------------


class _Window(Layer):
    """Zero padding and cropping: the smaller of input and output is a box inside the larger,
    ``_edges()`` (before, after) away from its ends along each spatial axis."""

    rank = 1
    data_format = "channels_last"

    def _edges(self):
        """((before, after), ...) per spatial axis."""
        raise NotImplementedError

    def _new_size(self, size, before, after, input_shape):
        """The output size of a spatial axis of ``size``."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        input_shape = check_rank(
            self, input_shape, self.rank + 2, layout_name(self.data_format, self.rank)
        )
        shape = list(input_shape)
        for axis, (before, after) in zip(_spatial_axes(self.data_format, self.rank), self._edges()):
            if shape[axis] is not None:
                shape[axis] = self._new_size(shape[axis], before, after, input_shape)
        return tuple(shape)

    def _slices(self, big_shape):
        """The index of the small array inside the big one."""
        index = [slice(None)] * len(big_shape)
        for axis, (before, after) in zip(_spatial_axes(self.data_format, self.rank), self._edges()):
            index[axis] = slice(before, big_shape[axis] - after)
        return tuple(index)


class _Padding(_Window):
    def _edges(self):
        return self.padding if self.rank > 1 else (self.padding,)

    def _new_size(self, size, before, after, input_shape):
        return size + before + after

    def forward(self, inputs, training):
        out = np.zeros(self.compute_output_shape(inputs.shape), inputs.dtype)
        out[self._slices(out.shape)] = inputs
        return out, None

    def backward(self, ctx, grad_outputs):
        grad = np.asarray(grad_outputs)
        return np.ascontiguousarray(grad[self._slices(grad.shape)])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "data_format": self.data_format}


class ZeroPadding1D(_Padding):
    """Adds zeros before and after the steps: ``(batch, steps, features)``.

    Args:
        padding: an int (both ends), or ``(before, after)``.
        data_format: ``"channels_last"`` (``(batch, steps, features)``, the default) or
            ``"channels_first"`` (``(batch, features, steps)``).

    Example: ``ZeroPadding1D(2)`` turns ``(None, 5, 3)`` into ``(None, 9, 3)``.
    """

    rank = 1

    def __init__(self, padding=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.padding = standardize_tuple(padding, 2, "padding", allow_zero=True)


class ZeroPadding2D(_Padding):
    """Adds rows and columns of zeros around images.

    Args:
        padding: an int (all four sides), ``(rows, columns)`` (each at both ends), or
            ``((top, bottom), (left, right))``.
        data_format: ``"channels_last"`` (NHWC, the default) or ``"channels_first"`` (NCHW).

    Example: ``ZeroPadding2D(((1, 0), (2, 2)))`` turns ``(None, 4, 4, 3)`` into
    ``(None, 5, 8, 3)``.
    """

    rank = 2

    def __init__(self, padding=(1, 1), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.padding = _pairs_2d(padding, "padding")


class _Cropping(_Window):
    def _edges(self):
        return self.cropping if self.rank > 1 else (self.cropping,)

    def _new_size(self, size, before, after, input_shape):
        if before + after >= size:
            raise shape_error(
                self,
                f"`cropping` must leave some of each spatial axis; cropping={self.cropping}",
                "spatial sizes larger than the cropping",
                input_shape,
            )
        return size - before - after

    def forward(self, inputs, training):
        self.compute_output_shape(inputs.shape)  # the crop must fit
        return np.ascontiguousarray(inputs[self._slices(inputs.shape)]), inputs.shape

    def backward(self, ctx, grad_outputs):
        grad_x = np.zeros(ctx, np.asarray(grad_outputs).dtype)
        grad_x[self._slices(ctx)] = grad_outputs
        return grad_x


class Cropping1D(_Cropping):
    """Removes steps at the start and end: ``(batch, steps, features)``.

    Args:
        cropping: an int (both ends), or ``(start, end)``.

    Example: ``Cropping1D((1, 2))`` turns ``(None, 6, 3)`` into ``(None, 3, 3)``.
    """

    rank = 1

    def __init__(self, cropping=(1, 1), **kwargs):
        super().__init__(**kwargs)
        self.cropping = standardize_tuple(cropping, 2, "cropping", allow_zero=True)

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping}


class Cropping2D(_Cropping):
    """Removes rows and columns at the edges of images.

    Args:
        cropping: an int (all four sides), ``(rows, columns)`` (each at both ends), or
            ``((top, bottom), (left, right))``.
        data_format: ``"channels_last"`` (NHWC, the default) or ``"channels_first"`` (NCHW).

    Example: ``Cropping2D(((2, 2), (4, 4)))`` turns ``(None, 28, 28, 3)`` into
    ``(None, 24, 20, 3)``.
    """

    rank = 2

    def __init__(self, cropping=((0, 0), (0, 0)), data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.cropping = _pairs_2d(cropping, "cropping")

    def get_config(self):
        return {**super().get_config(), "cropping": self.cropping, "data_format": self.data_format}


# ---- up-sampling --------------------------------------------------------------------------------


class UpSampling1D(Layer):
    """Repeats each step ``size`` times: ``(batch, steps, features) -> (batch, steps * size,
    features)``.

    Example: ``UpSampling1D(2)`` turns steps ``a b`` into ``a a b b``.
    """

    def __init__(self, size: int = 2, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(size):
            raise TypeError(f"Expected an integer value for `size`, got {type(size)}.")
        if size <= 0:
            raise ValueError(f"Argument `size` should be a positive integer. Received: size={size}")
        self.size = int(size)

    def compute_output_shape(self, input_shape):
        input_shape = check_rank(self, input_shape, 3, "(batch, steps, features)")
        steps = None if input_shape[1] is None else input_shape[1] * self.size
        return (input_shape[0], steps, input_shape[2])

    def forward(self, inputs, training):
        n, steps, features = inputs.shape
        x = np.ascontiguousarray(inputs).reshape(n, 1, steps, features)
        out = np.empty((n, 1, steps * self.size, features), inputs.dtype)
        kernels.resize.nearest_forward(x, 1, self.size, out)
        return out.reshape(n, steps * self.size, features), None

    def backward(self, ctx, grad_outputs):
        n, steps, features = grad_outputs.shape
        grad = np.ascontiguousarray(grad_outputs).reshape(n, 1, steps, features)
        grad_x = np.empty((n, 1, steps // self.size, features), grad.dtype)
        kernels.resize.nearest_backward(grad, 1, self.size, grad_x)
        return grad_x.reshape(n, steps // self.size, features)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


#: ``ops.image.resize``'s interpolations: UpSampling2D accepts these names.
RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "lanczos3", "lanczos5", "bicubic", "area")


class UpSampling2D(Layer):
    """Enlarges images by ``size`` = (rows, columns) factors.

    Args:
        size: an int or ``(rows, columns)``, positive.
        data_format: ``"channels_last"`` (NHWC, the default) or ``"channels_first"`` (NCHW).
        interpolation: ``"nearest"`` (each pixel repeated) or ``"bilinear"`` (half-pixel
            centres, no antialiasing: Keras's ``ops.image.resize``, torch's
            ``interpolate(mode="bilinear", align_corners=False)``).

    Example: ``UpSampling2D(2, interpolation="bilinear")`` turns ``(None, 8, 8, 3)`` into
    ``(None, 16, 16, 3)``.
    """

    def __init__(self, size=(2, 2), data_format=None, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)
        self.size = standardize_tuple(size, 2, "size")
        if not isinstance(interpolation, str) or interpolation.lower() not in RESIZE_INTERPOLATIONS:
            raise ValueError(
                "Invalid value for argument `interpolation`. Expected of one "
                f"{RESIZE_INTERPOLATIONS}. Received: interpolation={interpolation}"
            )
        self.interpolation = interpolation.lower()
        if self.interpolation not in ("nearest", "bilinear"):
            raise NotImplementedError(
                f"UpSampling2D '{self.name}': fastnn has interpolation='nearest' and 'bilinear'; "
                f"got {interpolation!r}"
            )

    def compute_output_shape(self, input_shape):
        input_shape = check_rank(self, input_shape, 4, layout_name(self.data_format, 2))
        shape = list(input_shape)
        for axis, factor in zip(_spatial_axes(self.data_format, 2), self.size):
            if shape[axis] is not None:
                shape[axis] *= factor
        return tuple(shape)

    uses_workspace = True  # a fresh enlarged image per call costs its page faults

    def forward(self, inputs, training, workspace=None):
        ctx = (inputs.shape, workspace)
        x = self._as_nhwc(inputs)
        n, h, w, c = x.shape
        sh, sw = self.size
        out = scratch(workspace, "y", (n, h * sh, w * sw, c), x.dtype)
        if self.interpolation == "bilinear":
            kernels.resize.bilinear_forward(
                x, *_taps(h, sh, x.dtype.str), *_taps(w, sw, x.dtype.str), out
            )
        else:
            kernels.resize.nearest_forward(x, sh, sw, out)
        return out.reshape(self.compute_output_shape(inputs.shape)), ctx

    def backward(self, ctx, grad_outputs):
        in_shape, workspace = ctx
        g = self._as_nhwc(np.asarray(grad_outputs))
        n, oh, ow, c = g.shape
        (sh, sw), dtype = self.size, g.dtype.str
        h, w = oh // sh, ow // sw
        grad_x = scratch(workspace, "dx", (n, h, w, c), g.dtype)
        if self.interpolation == "bilinear":
            rows, cols = _taps_by_input(h, sh, dtype), _taps_by_input(w, sw, dtype)
            kernels.resize.bilinear_backward(g, *rows, *cols, grad_x)
        else:
            kernels.resize.nearest_backward(g, sh, sw, grad_x)
        return grad_x.reshape(in_shape)

    def _as_nhwc(self, x):
        """A channels_last view of x: NCHW planes are (N*C, H, W, 1) images."""
        if self.data_format == "channels_last":
            return np.ascontiguousarray(x)
        n, c, h, w = x.shape
        return np.ascontiguousarray(x).reshape(n * c, h, w, 1)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "data_format": self.data_format,
            "interpolation": self.interpolation,
        }


@functools.lru_cache(maxsize=64)
def _taps(size: int, factor: int, dtype: str) -> tuple:
    """The bilinear taps of an axis of ``size`` enlarged ``factor`` times, made once per shape
    (every layer and call shares them; the kernels only read them)."""
    return kernels.resize.linear_taps(size, size * factor, np.dtype(dtype))


@functools.lru_cache(maxsize=64)
def _taps_by_input(size: int, factor: int, dtype: str) -> tuple:
    return kernels.resize.taps_by_input(*_taps(size, factor, dtype), size)
