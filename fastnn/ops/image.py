"""keras.ops.image: resizing, padding, cropping, patches, grayscale and affine transforms of
image batches (N, H, W, C) or single images (H, W, C), channels_first on request.

Each op is a composition of recorded ops (resizing is one interpolation matrix per spatial
axis, applied with einsum), so gradients flow to the images (and to nothing else).
"""

from __future__ import annotations

import numpy as np

from fastnn import backend
from fastnn.ops import numpy as fnp
from fastnn.ops.core import slice as block
from fastnn.ops.nn import conv
from fastnn.ops.numpy import _float
from fastnn.ops.tape import OpError, as_array, unwrap

__all__ = [
    "affine_transform", "crop_images", "extract_patches", "pad_images", "resize",
    "rgb_to_grayscale",
]  # fmt: skip

_RESIZE_METHODS = ("bilinear", "nearest")


def _batched(name: str, images, data_format) -> tuple:
    """(images as a channels_last batch, how to undo that): single images get a batch axis."""
    shape = np.shape(unwrap(images))
    if len(shape) not in (3, 4):
        raise OpError(
            f"{name}: Invalid images rank: expected rank 3 (single image) or rank 4 (batch of "
            f"images). Received input with shape: images.shape={shape}"
        )
    first = backend.standardize_data_format(data_format) == "channels_first"
    x = images if len(shape) == 4 else fnp.expand_dims(images, 0)
    if first:
        x = fnp.moveaxis(x, 1, -1)

    def undo(y):
        if first:
            y = fnp.moveaxis(y, -1, 1)
        return y if len(shape) == 4 else fnp.squeeze(y, 0)

    return x, undo


def _as_float(x):
    return x if as_array(x).dtype.kind in "fc" else fnp.cast(x, backend.floatx())


# ---- resize ----------------------------------------------------------------------------------
def _interpolation(size: int, out: int, method: str, antialias: bool) -> np.ndarray:
    """The (out, size) matrix of weights that resizes one axis, as torch's interpolate with
    align_corners=False (what Keras's torch backend calls)."""
    scale = size / out
    rows = np.arange(out)
    weights = np.zeros((out, size))
    if method == "nearest":  # torch's 'nearest-exact'
        weights[rows, np.minimum(np.floor((rows + 0.5) * scale).astype(int), size - 1)] = 1
        return weights
    if antialias and scale > 1:  # a triangle filter widened to the down-scaling factor
        centre = scale * (rows + 0.5)
        low = np.maximum((centre - scale + 0.5).astype(int), 0)
        high = np.minimum((centre + scale + 0.5).astype(int), size)
        for i in rows:
            taps = np.arange(low[i], high[i])
            w = np.maximum(0.0, 1 - np.abs((taps - centre[i] + 0.5) / scale))
            weights[i, taps] = w / w.sum()
        return weights
    source = np.maximum((rows + 0.5) * scale - 0.5, 0)
    below = np.floor(source).astype(int)
    above = np.minimum(below + 1, size - 1)
    fraction = source - below
    np.add.at(weights, (rows, below), 1 - fraction)
    np.add.at(weights, (rows, above), fraction)
    return weights


def resize(
    images, size, interpolation: str = "bilinear", antialias: bool = False,
    crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
    fill_mode: str = "constant", fill_value: float = 0.0, data_format=None,
):  # fmt: skip
    """Images resized to ``size`` (height, width) by bilinear or nearest interpolation, with
    half-pixel centres as Keras: (N, H, W, C) -> (N, height, width, C)."""
    if interpolation not in _RESIZE_METHODS:
        raise OpError(
            f"resize: interpolation must be one of {_RESIZE_METHODS}; got {interpolation!r}"
        )
    if fill_mode != "constant":
        raise OpError(f"resize: only fill_mode='constant' is supported; got {fill_mode!r}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise OpError(
            "resize: Only one of `pad_to_aspect_ratio` & `crop_to_aspect_ratio` can be True"
        )
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise OpError(f"resize: size must be two positive ints (height, width); got {size}")
    x, undo = _batched("resize", images, data_format)
    x = _as_float(x)
    if crop_to_aspect_ratio:
        x = _crop_to_aspect(x, size)
    elif pad_to_aspect_ratio:
        x = _pad_to_aspect(x, size, fill_value)
    _, height, width, _ = np.shape(unwrap(x))
    dtype = as_array(x).dtype
    rows = _interpolation(height, size[0], interpolation, antialias).astype(dtype)
    cols = _interpolation(width, size[1], interpolation, antialias).astype(dtype)
    return undo(fnp.einsum("oh,nhwc,pw->nopc", rows, x, cols))


def _crop_to_aspect(x, size: tuple):
    _, height, width, _ = np.shape(unwrap(x))
    crop_h = max(min(height, int(width * size[0] / size[1])), 1)
    crop_w = max(min(width, int(height * size[1] / size[0])), 1)
    top, left = int((height - crop_h) / 2), int((width - crop_w) / 2)
    return fnp.get_item(x, (slice(None), slice(top, top + crop_h), slice(left, left + crop_w)))


def _pad_to_aspect(x, size: tuple, fill_value):
    _, height, width, _ = np.shape(unwrap(x))
    pad_h = max(height, int(width * size[0] / size[1]))
    pad_w = max(width, int(height * size[1] / size[0]))
    top, left = int((pad_h - height) / 2), int((pad_w - width) / 2)
    widths = [(0, 0), (top, top), (left, left), (0, 0)]
    return fnp.pad(x, widths, constant_values=float(fill_value))


# ---- padding and cropping ----------------------------------------------------------------------
def _two_of(name: str, before, after, target, what: tuple) -> None:
    if [before, after, target].count(None) != 1:
        raise OpError(
            f"{name}: Must specify exactly two of {', '.join(what)}. Received: "
            f"{what[0]}={before}, {what[1]}={after}, {what[2]}={target}"
        )
    for value, label in zip((before, after, target), what):
        if value is not None and value < 0:
            raise OpError(f"{name}: {label} must be >= 0. Received: {label}={value}")


def pad_images(
    images, top_padding=None, left_padding=None, bottom_padding=None, right_padding=None,
    target_height=None, target_width=None, data_format=None,
):  # fmt: skip
    """Images padded with zeros; give two of (top, bottom, target height) and two of (left,
    right, target width)."""
    _two_of("pad_images", top_padding, bottom_padding, target_height,
            ("top_padding", "bottom_padding", "target_height"))  # fmt: skip
    _two_of("pad_images", left_padding, right_padding, target_width,
            ("left_padding", "right_padding", "target_width"))  # fmt: skip
    x, undo = _batched("pad_images", images, data_format)
    _, height, width, _ = np.shape(unwrap(x))
    top = target_height - bottom_padding - height if top_padding is None else top_padding
    bottom = target_height - top - height if bottom_padding is None else bottom_padding
    left = target_width - right_padding - width if left_padding is None else left_padding
    right = target_width - left - width if right_padding is None else right_padding
    for value, label in ((top, "top_padding"), (bottom, "bottom_padding"),
                         (left, "left_padding"), (right, "right_padding")):  # fmt: skip
        if value < 0:
            raise OpError(
                f"pad_images: {label} must be >= 0. Received: {label}={value} for images of "
                f"shape {np.shape(unwrap(images))}"
            )
    return undo(fnp.pad(x, [(0, 0), (top, bottom), (left, right), (0, 0)]))


def crop_images(
    images, top_cropping=None, left_cropping=None, bottom_cropping=None, right_cropping=None,
    target_height=None, target_width=None, data_format=None,
):  # fmt: skip
    """Images cropped; give two of (top, bottom, target height) and two of (left, right,
    target width)."""
    _two_of("crop_images", top_cropping, bottom_cropping, target_height,
            ("top_cropping", "bottom_cropping", "target_height"))  # fmt: skip
    _two_of("crop_images", left_cropping, right_cropping, target_width,
            ("left_cropping", "right_cropping", "target_width"))  # fmt: skip
    x, undo = _batched("crop_images", images, data_format)
    n, height, width, channels = np.shape(unwrap(x))
    top = height - target_height - bottom_cropping if top_cropping is None else top_cropping
    rows = height - bottom_cropping - top if target_height is None else target_height
    left = width - target_width - right_cropping if left_cropping is None else left_cropping
    cols = width - right_cropping - left if target_width is None else target_width
    if min(top, rows, left, cols) < 0 or top + rows > height or left + cols > width:
        raise OpError(
            f"crop_images: cropping top={top}, left={left} to {rows}x{cols} does not fit "
            f"images of shape {np.shape(unwrap(images))}"
        )
    return undo(block(x, [0, top, left, 0], [n, rows, cols, channels]))


# ---- patches and colour ------------------------------------------------------------------------
def extract_patches(
    images, size, strides=None, dilation_rate=1, padding: str = "valid", data_format=None
):
    """Each (size x size) window's pixels as one vector of channels (row, column, channel
    order): (N, H, W, C) -> (N, oh, ow, size_h * size_w * C)."""
    patch = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if len(patch) != 2:
        raise OpError(f"extract_patches: size must be an int or 2 ints; got size={size}")
    x, undo = _batched("extract_patches", images, data_format)
    channels = np.shape(unwrap(x))[-1]
    depth = patch[0] * patch[1] * channels
    kernel = np.eye(depth, dtype=_float(x).dtype).reshape(*patch, channels, depth)
    return undo(conv(_as_float(x), kernel, strides or patch, padding, None, dilation_rate))


def rgb_to_grayscale(images, data_format=None):
    """0.2989 R + 0.587 G + 0.114 B, keeping a channel axis of 1 (grayscale images are
    copied): (..., 3) -> (..., 1)."""
    x, undo = _batched("rgb_to_grayscale", images, data_format)
    channels = np.shape(unwrap(x))[-1]
    if channels not in (1, 3):
        raise OpError(
            "rgb_to_grayscale: Invalid channel size: expected 3 (RGB) or 1 (Grayscale). "
            f"Received input with shape: images.shape={np.shape(unwrap(images))}"
        )
    if channels == 1:
        return undo(fnp.multiply(x, np.ones((), as_array(x).dtype)))
    weights = np.array([0.2989, 0.587, 0.114], _float(x).dtype).reshape(3, 1)
    return undo(fnp.cast(fnp.matmul(_as_float(x), weights), _float(x).dtype))


# ---- affine transforms -------------------------------------------------------------------------
def affine_transform(
    images, transform, interpolation: str = "bilinear", fill_mode: str = "constant",
    fill_value=0, data_format=None,
):  # fmt: skip
    """Images resampled by projective transforms [a0, a1, a2, b0, b1, b2, c0, c1] (one, or
    one per image; Keras's order): output pixel (x, y) reads the input at
    ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1, by bilinear or
    nearest interpolation, ``fill_value`` outside."""
    if interpolation not in _RESIZE_METHODS:
        raise OpError(
            f"affine_transform: interpolation must be one of {_RESIZE_METHODS}; got "
            f"{interpolation!r}"
        )
    if fill_mode != "constant":
        raise OpError(f"affine_transform: fastnn fills with a constant; got {fill_mode!r}")
    x, undo = _batched("affine_transform", images, data_format)
    n, height, width, channels = np.shape(unwrap(x))
    t = _float(transform).reshape(-1, 8)  # its dtype, as Keras: ties round alike
    if len(t) not in (1, n):
        raise OpError(
            f"affine_transform: transform of shape {np.shape(unwrap(transform))} needs 8 "
            f"values per image for images of shape {np.shape(unwrap(images))}"
        )
    t = np.broadcast_to(t, (n, 8))
    rows, cols = np.meshgrid(*(np.arange(n, dtype=t.dtype) for n in (height, width)), indexing="ij")
    k = t[:, 6, None, None] * cols + t[:, 7, None, None] * rows + 1
    src_x = (t[:, 0, None, None] * cols + t[:, 1, None, None] * rows + t[:, 2, None, None]) / k
    src_y = (t[:, 3, None, None] * cols + t[:, 4, None, None] * rows + t[:, 5, None, None]) / k
    x = _as_float(x)
    flat = fnp.reshape(x, (n * height * width, channels))
    if interpolation == "nearest":
        corners = [(np.round(src_y), np.round(src_x), 1.0)]
    else:
        y0, x0 = np.floor(src_y), np.floor(src_x)
        dy, dx = src_y - y0, src_x - x0
        corners = [(y0, x0, (1 - dy) * (1 - dx)), (y0, x0 + 1, (1 - dy) * dx),
                   (y0 + 1, x0, dy * (1 - dx)), (y0 + 1, x0 + 1, dy * dx)]  # fmt: skip
    dtype = as_array(x).dtype
    out = None
    filled = np.zeros((n, height, width))
    for cy, cx, weight in corners:
        inside = (cy >= 0) & (cy < height) & (cx >= 0) & (cx < width)
        index = (np.arange(n)[:, None, None] * height + np.clip(cy, 0, height - 1)) * width
        index = (index + np.clip(cx, 0, width - 1)).astype(np.int64).reshape(-1)
        w = np.where(inside, weight, 0.0)
        filled += np.where(inside, 0.0, weight)
        term = fnp.multiply(fnp.take(flat, index, axis=0), w.reshape(-1, 1).astype(dtype))
        out = term if out is None else fnp.add(out, term)
    out = fnp.add(out, (filled.reshape(-1, 1) * float(fill_value)).astype(dtype))
    return undo(fnp.reshape(out, (n, height, width, channels)))
