"""Image preprocessing and augmentation layers, with Keras 3's names, arguments and configs.

``Resizing`` and ``CenterCrop`` always apply. The random layers (``RandomFlip``,
``RandomRotation``, ``RandomZoom``, ``RandomTranslation``, ``RandomCrop``, ``RandomContrast``,
``RandomBrightness``) augment while training (inside ``fit``, or called with ``training=True``)
and are the identity at inference (``predict``, ``training=False``); RandomCrop then crops the
centre, as its Keras docstring says. As in Keras, a layer called by itself on arrays, outside
any model call, augments unless told ``training=False``.

Images are (batch, height, width, channels) or one image (height, width, channels); with
``data_format="channels_first"``, channels come before height and width. Every layer samples as
Keras 3 does on its torch backend (half-pixel resizing, ``map_coordinates`` for the affine
layers), draws its randomness from a generator of its own (``seed``, as ``Dropout``), and has a
backward, so gradients can flow through it. Outputs are of the layer's dtype (integer images
become floats).
"""

from __future__ import annotations

import numbers

import numpy as np

from fastnn import kernels
from fastnn.layers import custom
from fastnn.layers.base import Layer, shape_error
from fastnn.layers.reshaping import standardize_data_format
from fastnn.nodes import is_symbolic
from fastnn.seeding import make_rng

_FILL_MODES = ("reflect", "wrap", "constant", "nearest")
_FILL_CODES = {"constant": 0, "nearest": 1, "wrap": 2, "reflect": 3}  # kernels.affine's codes
_INTERPOLATIONS = ("nearest", "bilinear")
HORIZONTAL, VERTICAL = "horizontal", "vertical"
HORIZONTAL_AND_VERTICAL = "horizontal_and_vertical"


class UnsupportedArgument(ValueError, NotImplementedError):
    """A bad ``fill_mode`` or ``interpolation``: Keras raises NotImplementedError; a ValueError
    too, as for fastnn's other bad arguments."""


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_choice(layer_name: str, argument: str, value, choices) -> str:
    if value not in choices:
        raise UnsupportedArgument(
            f"{layer_name}: Unknown `{argument}` {value}. Expected of one {choices}."
        )
    return value


def _check_size(layer_name: str, height, width) -> tuple:
    for label, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(
                f"{layer_name}: `{label}` must be a positive integer. Received: {label}={value!r}"
            )
    return int(height), int(width)


def _aspect_crop_box(height: int, width: int, target_h: int, target_w: int) -> tuple:
    """(top, left, crop height, crop width): the largest centred window of the target's aspect
    ratio (Keras's ``crop_to_aspect_ratio`` and ``smart_resize`` arithmetic)."""
    crop_h = max(min(height, int(float(width * target_h) / target_w)), 1)
    crop_w = max(min(width, int(float(height * target_w) / target_h)), 1)
    return int(float(height - crop_h) / 2), int(float(width - crop_w) / 2), crop_h, crop_w


def _aspect_pad(height: int, width: int, target_h: int, target_w: int) -> tuple:
    """(rows, columns) of padding on each side for ``pad_to_aspect_ratio`` (as Keras's torch
    backend: the same amount on both sides)."""
    pad_h = max(height, int(float(width * target_h) / target_w))
    pad_w = max(width, int(float(height * target_w) / target_h))
    return int(float(pad_h - height) / 2), int(float(pad_w - width) / 2)


# ---- resampling steps on NHWC arrays: each forward returns (output, ctx) for its backward -----


def _resize_forward(x: np.ndarray, out_h: int, out_w: int, interpolation: str):
    n, h, w, c = x.shape
    if (h, w) == (out_h, out_w):
        return x, None
    if interpolation == "nearest":
        rows = kernels.affine.nearest_taps(h, out_h)
        cols = kernels.affine.nearest_taps(w, out_w)
        return np.ascontiguousarray(x[:, rows][:, :, cols]), ("nearest", (h, w), rows, cols)
    x = np.ascontiguousarray(x)
    row_taps = kernels.resize.linear_taps(h, out_h, x.dtype)
    col_taps = kernels.resize.linear_taps(w, out_w, x.dtype)
    out = np.empty((n, out_h, out_w, c), x.dtype)
    kernels.resize.bilinear_forward(x, *row_taps, *col_taps, out)
    return out, ("bilinear", (h, w), row_taps, col_taps)


def _resize_backward(ctx, grad: np.ndarray) -> np.ndarray:
    if ctx is None:
        return grad
    kind, (h, w), rows, cols = ctx
    n, _, out_w, c = grad.shape
    if kind == "nearest":
        by_rows = np.zeros((n, h, out_w, c), grad.dtype)
        np.add.at(by_rows, (slice(None), rows), grad)
        grad_x = np.zeros((n, h, w, c), grad.dtype)
        np.add.at(grad_x, (slice(None), slice(None), cols), by_rows)
        return grad_x
    grad_x = np.empty((n, h, w, c), grad.dtype)
    kernels.resize.bilinear_backward(
        np.ascontiguousarray(grad),
        *kernels.resize.taps_by_input(*rows, h),
        *kernels.resize.taps_by_input(*cols, w),
        grad_x,
    )
    return grad_x


def _crop_backward(grad: np.ndarray, in_shape: tuple, top: int, left: int) -> np.ndarray:
    grad_x = np.zeros(in_shape, grad.dtype)
    grad_x[:, top : top + grad.shape[1], left : left + grad.shape[2]] = grad
    return grad_x


def _crop_and_resize(x: np.ndarray, box: tuple, size: tuple, interpolation: str):
    """x (NHWC) cropped to ``box`` (top, left, height, width) and resized to ``size``."""
    top, left, crop_h, crop_w = box
    cropped = x[:, top : top + crop_h, left : left + crop_w]
    out, resize_ctx = _resize_forward(cropped, *size, interpolation)
    return np.ascontiguousarray(out), (x.shape, top, left, resize_ctx)


def _crop_and_resize_backward(ctx, grad: np.ndarray) -> np.ndarray:
    in_shape, top, left, resize_ctx = ctx
    return _crop_backward(_resize_backward(resize_ctx, grad), in_shape, top, left)


class _ImageLayer(Layer):
    """Shared by the image layers: layouts, unbatched images, the ``data_format`` config.

    Subclasses write ``_forward(x, training) -> (y, ctx)`` and ``_backward(ctx, grad)`` on
    NHWC batches."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.data_format = standardize_data_format(data_format)

    @property
    def _label(self) -> str:
        return f"{type(self).__name__} '{self.name}'"

    def _spatial(self, shape) -> tuple:
        """(height axis, width axis) of an input of ``shape``, checking its rank."""
        if len(shape) not in (3, 4):
            raise shape_error(
                self,
                "expected images of rank 3 (one image) or 4 (a batch)",
                "(height, width, channels) or (batch, height, width, channels)"
                if self.data_format == "channels_last"
                else "(channels, height, width) or (batch, channels, height, width)",
                tuple(shape),
            )
        return (-2, -1) if self.data_format == "channels_first" else (-3, -2)

    def _to_nhwc(self, x: np.ndarray) -> np.ndarray:
        self._spatial(x.shape)
        if x.ndim == 3:
            x = x[None]
        if self.data_format == "channels_first":
            x = x.transpose(0, 2, 3, 1)
        return x

    def _from_nhwc(self, y: np.ndarray, ndim: int) -> np.ndarray:
        if self.data_format == "channels_first":
            y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        return y[0] if ndim == 3 else y

    def compute_output_shape(self, input_shape):
        self._spatial(tuple(input_shape))
        return tuple(input_shape)

    def forward(self, inputs, training):
        """``training`` None (a model called on arrays without it) counts as True, Keras's
        default for these layers: ``data_augmentation(images)`` augments."""
        x = np.asarray(inputs)
        y, ctx = self._forward(self._to_nhwc(x), True if training is None else bool(training))
        if ctx is None and y is None:
            return x, None  # the identity
        return self._from_nhwc(y, x.ndim), (x.ndim, ctx)

    def backward(self, ctx, grad_outputs):
        if ctx is None:
            return grad_outputs
        ndim, inner = ctx
        grad = self._backward(inner, self._to_nhwc(np.asarray(grad_outputs)))
        return self._from_nhwc(grad, ndim)

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class _RandomImageLayer(_ImageLayer):
    """A random augmentation: a generator of its own; called by itself on arrays, outside any
    model call and without ``training``, it augments (Keras's default ``training=True``)."""

    def __init__(self, seed=None, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.seed = seed
        self._rng = make_rng(seed)

    def __call__(self, inputs, *args, **kwargs):
        if (
            not args
            and kwargs.get("training") is None
            and custom.TRAINING.get() is None
            and not is_symbolic(inputs)
        ):
            kwargs["training"] = True
        return super().__call__(inputs, *args, **kwargs)

    def _uniform(self, low, high, size, dtype) -> np.ndarray:
        return self._rng.uniform(low, high, size).astype(dtype)

    def get_config(self):
        return {**super().get_config(), "seed": self.seed}


# ---- Resizing, CenterCrop ------------------------------------------------------------------------


class Resizing(_ImageLayer):
    """Resizes images to ``(height, width)``; always applies (training or not).

    Args:
        height, width: the output's size.
        interpolation: ``"bilinear"`` (the default; half-pixel centres, no antialiasing, as
            Keras and torch) or ``"nearest"``.
        crop_to_aspect_ratio: first crop the largest centred window of the output's aspect
            ratio, so nothing is distorted.
        pad_to_aspect_ratio: first pad the short side evenly with ``fill_value`` to the
            output's aspect ratio.
        fill_mode: ``"constant"``, the only mode (of the padding).
        fill_value: the padding's value.
        antialias: must be False (no antialiasing filter).
        data_format: ``"channels_last"`` (the default) or ``"channels_first"``.

    Example: ``Resizing(72, 72)(images)`` before a ViT's patches.
    """

    def __init__(
        self,
        height,
        width,
        interpolation="bilinear",
        crop_to_aspect_ratio=False,
        pad_to_aspect_ratio=False,
        fill_mode="constant",
        fill_value=0.0,
        antialias=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = _check_size(self._label, height, width)
        if interpolation in ("bicubic", "lanczos3", "lanczos5", "area"):
            raise UnsupportedArgument(
                f"{self._label}: interpolation={interpolation!r} is not supported by fastnn; "
                f"use one of {_INTERPOLATIONS}"
            )
        self.interpolation = _check_choice(
            self._label, "interpolation", interpolation, _INTERPOLATIONS
        )
        if crop_to_aspect_ratio and pad_to_aspect_ratio:
            raise ValueError(
                f"{self._label}: Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` "
                "can be `True`."
            )
        if fill_mode != "constant":
            raise ValueError(
                f"{self._label}: Invalid value for argument `fill_mode`. Only `'constant'` "
                f"is supported. Received: fill_mode={fill_mode}"
            )
        if antialias:
            raise UnsupportedArgument(
                f"{self._label}: antialias=True is not supported by fastnn (resizing samples "
                "without an antialiasing filter)"
            )
        self.crop_to_aspect_ratio = bool(crop_to_aspect_ratio)
        self.pad_to_aspect_ratio = bool(pad_to_aspect_ratio)
        self.fill_mode = fill_mode
        self.fill_value = fill_value
        self.antialias = False

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        h_axis, w_axis = self._spatial(shape)
        shape[h_axis], shape[w_axis] = self.height, self.width
        return tuple(shape)

    def _forward(self, x, training):
        n, h, w, c = x.shape
        size = (self.height, self.width)
        if self.crop_to_aspect_ratio:
            box = _aspect_crop_box(h, w, *size)
            out, ctx = _crop_and_resize(x, box, size, self.interpolation)
            return out, ("crop", ctx)
        if self.pad_to_aspect_ratio:
            pad_h, pad_w = _aspect_pad(h, w, *size)
            if pad_h or pad_w:
                padded = np.full((n, h + 2 * pad_h, w + 2 * pad_w, c), self.fill_value, x.dtype)
                padded[:, pad_h : pad_h + h, pad_w : pad_w + w] = x
                x = padded
            out, ctx = _resize_forward(x, *size, self.interpolation)
            return np.ascontiguousarray(out), ("pad", (pad_h, pad_w, h, w, ctx))
        out, ctx = _resize_forward(x, *size, self.interpolation)
        return np.ascontiguousarray(out), ("resize", ctx)

    def _backward(self, ctx, grad):
        kind, inner = ctx
        if kind == "crop":
            return _crop_and_resize_backward(inner, grad)
        if kind == "pad":
            pad_h, pad_w, h, w, resize_ctx = inner
            grad = _resize_backward(resize_ctx, grad)
            return np.ascontiguousarray(grad[:, pad_h : pad_h + h, pad_w : pad_w + w])
        return _resize_backward(inner, grad)

    def get_config(self):
        return {
            **super().get_config(),
            "height": self.height,
            "width": self.width,
            "interpolation": self.interpolation,
            "crop_to_aspect_ratio": self.crop_to_aspect_ratio,
            "pad_to_aspect_ratio": self.pad_to_aspect_ratio,
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "antialias": self.antialias,
        }


class _CropToSize:
    """What CenterCrop and RandomCrop share: a ``(height, width)`` output, the backward of a
    crop and resize, and the config."""

    compute_output_shape = Resizing.compute_output_shape

    def _backward(self, ctx, grad):
        return _crop_and_resize_backward(ctx, grad)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


class CenterCrop(_CropToSize, _ImageLayer):
    """Crops the centre ``(height, width)`` of images; always applies. An image smaller than
    that on either side is instead cropped to the target's aspect ratio and resized
    (bilinear), as Keras's ``smart_resize``.

    Example: ``CenterCrop(224, 224)(images)``.
    """

    def __init__(self, height, width, data_format=None, **kwargs):
        super().__init__(data_format=data_format, **kwargs)
        self.height, self.width = _check_size(self._label, height, width)

    def inference_box(self, height: int, width: int) -> tuple:
        """(top, left, crop height, crop width) of an image of ``height`` x ``width``."""
        if height >= self.height and width >= self.width:
            top, left = (height - self.height) // 2, (width - self.width) // 2
            return top, left, self.height, self.width
        return _aspect_crop_box(height, width, self.height, self.width)

    def _forward(self, x, training):
        box = self.inference_box(x.shape[1], x.shape[2])
        return _crop_and_resize(x, box, (self.height, self.width), "bilinear")


# ---- RandomFlip, RandomCrop ------------------------------------------------------------------


class RandomFlip(_RandomImageLayer):
    """Flips each image of a batch, with probability 1/2, while training.

    Args:
        mode: ``"horizontal"`` (left-right), ``"vertical"`` (up-down) or
            ``"horizontal_and_vertical"`` (the default; as in Keras, one draw per image flips
            it both ways or not at all).
        seed: the seed of the layer's generator.

    Example: ``RandomFlip("horizontal")`` first in a model.
    """

    def __init__(self, mode=HORIZONTAL_AND_VERTICAL, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        modes = (HORIZONTAL, VERTICAL, HORIZONTAL_AND_VERTICAL)
        if mode not in modes:
            raise ValueError(
                f"{self._label}: RandomFlip layer {self.name} received an unknown mode "
                f"argument {mode!r}; expected one of {modes}"
            )
        self.mode = mode

    def _flip(self, x, flips):
        out = np.array(x)
        chosen = x[flips]
        if self.mode in (HORIZONTAL, HORIZONTAL_AND_VERTICAL):
            chosen = chosen[:, :, ::-1]
        if self.mode in (VERTICAL, HORIZONTAL_AND_VERTICAL):
            chosen = chosen[:, ::-1]
        out[flips] = chosen
        return out

    def _forward(self, x, training):
        if not training:
            return None, None
        flips = self._rng.uniform(size=x.shape[0]).astype(np.float32) <= 0.5
        return self._flip(x, flips), flips

    def _backward(self, ctx, grad):
        return self._flip(grad, ctx)  # a flip is its own inverse

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class RandomCrop(_CropToSize, _RandomImageLayer):
    """Crops a random ``(height, width)`` window while training (one window per batch, as in
    Keras). At inference, and while training when the image is not larger than the window on
    both sides, it crops the largest centred window of the target's aspect ratio and resizes
    it (bilinear) to ``(height, width)``.

    Example: ``RandomCrop(28, 28)`` on 32x32 images.
    """

    def __init__(self, height, width, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height, self.width = _check_size(self._label, height, width)

    def inference_box(self, height: int, width: int) -> tuple:
        """(top, left, crop height, crop width) of an image of ``height`` x ``width`` at
        inference: the largest centred window of the target's aspect ratio."""
        return _aspect_crop_box(height, width, self.height, self.width)

    def _forward(self, x, training):
        h, w = x.shape[1], x.shape[2]
        size = (self.height, self.width)
        if training and h > self.height and w > self.width:
            top = int(self._rng.integers(0, h - self.height + 1))
            left = int(self._rng.integers(0, w - self.width + 1))
            box = (top, left, *size)
        else:
            box = self.inference_box(h, w)
        return _crop_and_resize(x, box, size, "bilinear")


# ---- the affine layers: RandomRotation, RandomZoom, RandomTranslation --------------------------


class _AffineLayer(_RandomImageLayer):
    """Resamples each image through an inverse affine map of its own (``kernels.affine``)."""

    def __init__(
        self,
        fill_mode="reflect",
        interpolation="bilinear",
        seed=None,
        fill_value=0.0,
        data_format=None,
        **kwargs,
    ):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.fill_mode = _check_choice(self._label, "fill_mode", fill_mode, _FILL_MODES)
        self.interpolation = _check_choice(
            self._label, "interpolation", interpolation, _INTERPOLATIONS
        )
        if not _is_number(fill_value):
            raise ValueError(f"{self._label}: `fill_value` must be a number; got {fill_value!r}")
        self.fill_value = fill_value

    def _coefficients(self, n: int, h: int, w: int, dtype) -> np.ndarray | None:
        """(n, 6) maps (a0, a1, a2, b0, b1, b2) of ``dtype``, or None for the identity."""
        raise NotImplementedError

    def _forward(self, x, training):
        if not training:
            return None, None
        n, h, w, _ = x.shape
        coef = self._coefficients(n, h, w, x.dtype)
        if coef is None:
            return None, None
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        bilinear = self.interpolation == "bilinear"
        mode = _FILL_CODES[self.fill_mode]
        kernels.affine.affine_forward(x, coef, bilinear, mode, x.dtype.type(self.fill_value), out)
        return out, (coef, bilinear, mode)

    def _backward(self, ctx, grad):
        coef, bilinear, mode = ctx
        grad_x = np.empty(grad.shape, grad.dtype)
        kernels.affine.affine_backward(np.ascontiguousarray(grad), coef, bilinear, mode, grad_x)
        return grad_x

    def get_config(self):
        return {
            **super().get_config(),
            "fill_mode": self.fill_mode,
            "fill_value": self.fill_value,
            "interpolation": self.interpolation,
        }


def _base_factor(label: str, factor, bounds: tuple) -> tuple:
    """Keras's ``_set_factor`` of the base image layer: (lower, upper) within ``bounds``."""
    message = (
        f"{label}: The `factor` argument should be a number (or a list of two numbers) in the "
        f"range [{bounds[0]}, {bounds[1]}]. Received: factor={factor}"
    )
    if isinstance(factor, (tuple, list)):
        if len(factor) != 2 or not all(_is_number(f) for f in factor):
            raise ValueError(message)
        if factor[0] > bounds[1] or factor[1] < bounds[0]:
            raise ValueError(message)
        lower, upper = sorted(float(f) for f in factor)
    elif _is_number(factor):
        if factor < bounds[0] or factor > bounds[1]:
            raise ValueError(message)
        factor = abs(float(factor))
        lower, upper = float(max(-factor, bounds[0])), factor
    else:
        raise ValueError(message)
    return [lower, upper]  # a list: as the config's JSON gives it back


def _axis_factor(label: str, factor, name: str, open_low: bool) -> tuple:
    """RandomZoom's and RandomTranslation's (lower, upper) of ``height_factor`` or
    ``width_factor``: each value in (-1, 1] (zoom) or [-1, 1] (translation)."""
    interval = "(-1.0, 1.0]" if open_low else "[-1.0, 1.0]"
    message = (
        f"{label}: The `{name}` argument should be a number (or a list of two numbers) in "
        f"the range {interval}. Received: {name}={factor}"
    )

    def check(value):
        if not _is_number(value) or value > 1.0 or value < -1.0 or (open_low and value == -1.0):
            raise ValueError(message)

    if isinstance(factor, (tuple, list)):
        if len(factor) != 2:
            raise ValueError(message)
        check(factor[0])
        check(factor[1])
        lower, upper = sorted(float(f) for f in factor)
    else:
        check(factor)
        factor = abs(float(factor))
        lower, upper = -factor, factor
    return lower, upper


def _as_list(value):
    return list(value) if isinstance(value, tuple) else value


class RandomRotation(_AffineLayer):
    """Rotates each image by a random angle about its centre while training.

    Args:
        factor: a fraction of a full turn: ``f`` draws angles in ``[-f * 360, f * 360]``
            degrees, ``(lower, upper)`` in ``[lower * 360, upper * 360]``; positive angles turn
            counter-clockwise (``factor=(0.25, 0.25)`` is ``np.rot90``).
        fill_mode: how points outside the image are filled: ``"reflect"`` (the default),
            ``"wrap"``, ``"constant"`` (``fill_value``) or ``"nearest"``.
        interpolation: ``"bilinear"`` (the default) or ``"nearest"``.
        seed, fill_value, data_format: as the names say.

    Example: ``RandomRotation(0.1)`` (up to 36 degrees either way).
    """

    def __init__(
        self,
        factor,
        fill_mode="reflect",
        interpolation="bilinear",
        seed=None,
        fill_value=0.0,
        data_format=None,
        **kwargs,
    ):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self.factor = _base_factor(self._label, factor or 0.0, (-1, 1))

    def _coefficients(self, n, h, w, dtype):
        lower, upper = self.factor
        if lower == upper == 0:
            return None
        angle = self._uniform(lower * 360.0, upper * 360.0, n, dtype)
        return _rotation_coefficients(angle, h, w)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _rotation_coefficients(angle: np.ndarray, h: int, w: int) -> np.ndarray:
    """Keras's ``_compute_affine_matrix`` for a rotation by ``angle`` degrees about the centre,
    in the angles' dtype, in Keras's order of operations."""
    kind = angle.dtype.type
    theta = angle * kind(np.pi / 180.0)
    cos, sin = np.cos(theta), np.sin(theta)
    cx = kind(0.5) * (kind(w) - kind(1))
    cy = kind(0.5) * (kind(h) - kind(1))
    a0, a1 = cos, -sin
    b0, b1 = sin, cos
    a2 = cx - cx * a0 - cy * a1
    b2 = cy - cx * b0 - cy * b1
    return np.ascontiguousarray(np.stack([a0, a1, a2, b0, b1, b2], axis=1), dtype=kind)


class _AxisFactorsLayer(_AffineLayer):
    """RandomZoom's and RandomTranslation's ``height_factor`` and ``width_factor``: each kept
    as given (its config) and as its (lower, upper) range."""

    #: Whether -1 is outside the factors' range (a zoom by -100% has no image left).
    _open_low = False
    #: Whether ``width_factor`` may be None (RandomZoom: the height's factor for both axes).
    _width_optional = False

    def _set_factors(self, height_factor, width_factor) -> None:
        self.height_factor = _as_list(height_factor)
        self.height_lower, self.height_upper = _axis_factor(
            self._label, height_factor, "height_factor", self._open_low
        )
        self.width_factor = _as_list(width_factor)
        if width_factor is not None or not self._width_optional:
            self.width_lower, self.width_upper = _axis_factor(
                self._label, width_factor, "width_factor", self._open_low
            )

    def get_config(self):
        return {
            **super().get_config(),
            "height_factor": self.height_factor,
            "width_factor": self.width_factor,
        }


class RandomZoom(_AxisFactorsLayer):
    """Zooms each image in or out by a random amount about its centre while training.

    Args:
        height_factor: ``f`` or ``(lower, upper)``, each in (-1, 1]: the vertical zoom is
            ``1 + u``, ``u`` drawn in ``[lower, upper]`` (``[-f, f]``); positive values zoom
            out (the image shrinks), negative ones zoom in.
        width_factor: the same for the horizontal zoom; None (the default) zooms both axes by
            the same amount.
        fill_mode, interpolation, seed, fill_value, data_format: as RandomRotation's.

    Example: ``RandomZoom(0.1)``.
    """

    _open_low, _width_optional = True, True

    def __init__(
        self,
        height_factor,
        width_factor=None,
        fill_mode="reflect",
        interpolation="bilinear",
        seed=None,
        fill_value=0.0,
        data_format=None,
        **kwargs,
    ):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self._set_factors(height_factor, width_factor)

    def _coefficients(self, n, h, w, dtype):
        kind = np.dtype(dtype).type
        zoom_h = self._uniform(1.0 + self.height_lower, 1.0 + self.height_upper, n, dtype)
        if self.width_factor is not None:
            zoom_w = self._uniform(1.0 + self.width_lower, 1.0 + self.width_upper, n, dtype)
        else:
            zoom_w = zoom_h
        x_offset = ((kind(w) - kind(1)) / kind(2)) * (kind(1) - zoom_w)
        y_offset = ((kind(h) - kind(1)) / kind(2)) * (kind(1) - zoom_h)
        zeros = np.zeros(n, dtype)
        return np.ascontiguousarray(np.stack([zoom_w, zeros, x_offset, zeros, zoom_h, y_offset], 1))


class RandomTranslation(_AxisFactorsLayer):
    """Shifts each image by a random offset while training.

    Args:
        height_factor: ``f`` or ``(lower, upper)``, each in [-1, 1]: the vertical shift is
            ``u * height`` pixels, ``u`` drawn in ``[lower, upper]`` (``[-f, f]``); positive
            values move the image down.
        width_factor: the same for the horizontal shift (positive: to the right).
        fill_mode, interpolation, seed, fill_value, data_format: as RandomRotation's.

    Example: ``RandomTranslation(0.1, 0.1)``.
    """

    def __init__(
        self,
        height_factor,
        width_factor,
        fill_mode="reflect",
        interpolation="bilinear",
        seed=None,
        fill_value=0.0,
        data_format=None,
        **kwargs,
    ):
        super().__init__(fill_mode, interpolation, seed, fill_value, data_format, **kwargs)
        self._set_factors(height_factor, width_factor)

    def _coefficients(self, n, h, w, dtype):
        kind = np.dtype(dtype).type
        shift_h = self._uniform(self.height_lower, self.height_upper, n, dtype) * kind(h)
        shift_w = self._uniform(self.width_lower, self.width_upper, n, dtype) * kind(w)
        ones, zeros = np.ones(n, dtype), np.zeros(n, dtype)
        return np.ascontiguousarray(np.stack([ones, zeros, -shift_w, zeros, ones, -shift_h], 1))


# ---- RandomContrast, RandomBrightness ------------------------------------------------------------


def _check_value_range(label: str, value_range) -> list:
    pair = isinstance(value_range, (tuple, list)) and len(value_range) == 2
    if not pair or not all(_is_number(v) for v in value_range):
        raise ValueError(
            f"{label}: The `value_range` argument should be a list of two numbers. "
            f"Received: value_range={value_range}"
        )
    return list(value_range)


class RandomContrast(_RandomImageLayer):
    """Scales each image's contrast by a random factor while training: per image and channel,
    ``(x - mean) * c + mean`` (the mean over height and width), clipped to ``value_range``.

    Args:
        factor: ``f`` in [0, 1] draws ``c`` in ``[1, 1 + f]``; ``(lower, upper)`` draws it in
            ``[1 - lower, 1 + upper]`` (Keras 3's rule, kept as is).
        value_range: the images' range, (0, 255) by default; outputs are clipped to it.
        seed: the seed of the layer's generator.

    Example: ``RandomContrast(0.2, value_range=(0, 1))``.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = _base_factor(self._label, factor, (0, 1))
        self.value_range = _check_value_range(self._label, value_range)

    def _forward(self, x, training):
        if not training:
            return None, None
        lower, upper = self.factor
        c = self._uniform(1.0 - lower, 1.0 + upper, x.shape[0], x.dtype).reshape(-1, 1, 1, 1)
        mean = x.mean(axis=(1, 2), keepdims=True, dtype=x.dtype)
        out = (x - mean) * c + mean
        low, high = (x.dtype.type(v) for v in self.value_range)
        inside = (out >= low) & (out <= high)
        return np.clip(out, low, high), (c, inside)

    def _backward(self, ctx, grad):
        c, inside = ctx
        grad = np.where(inside, grad, 0).astype(grad.dtype)
        return grad * c + (1 - c) * grad.mean(axis=(1, 2), keepdims=True, dtype=grad.dtype)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}


class RandomBrightness(_RandomImageLayer):
    """Adds a random brightness offset to each image while training, clipped to
    ``value_range``.

    Args:
        factor: ``f`` in [-1, 1] draws the offset in ``[-|f|, |f|] * (max - min)`` of the value
            range; ``(lower, upper)`` in ``[lower, upper] * (max - min)``.
        value_range: the images' range, (0, 255) by default.
        seed: the seed of the layer's generator.

    Example: ``RandomBrightness(0.2, value_range=(0, 1))``.
    """

    def __init__(self, factor, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.factor = _base_factor(self._label, factor, (-1, 1))
        self.value_range = sorted(_check_value_range(self._label, value_range))

    def _forward(self, x, training):
        if not training:
            return None, None
        low, high = self.value_range
        delta = self._uniform(*self.factor, x.shape[0], np.float32) * np.float32(high - low)
        out = x + delta.astype(x.dtype).reshape(-1, 1, 1, 1)
        kind = x.dtype.type
        inside = (out >= kind(low)) & (out <= kind(high))
        return np.clip(out, kind(low), kind(high)), inside

    def _backward(self, ctx, grad):
        return np.where(ctx, grad, 0).astype(grad.dtype)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "value_range": self.value_range}
