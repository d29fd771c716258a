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
from fastnn.ops.linalg import solve
from fastnn.ops.nn import conv
from fastnn.ops.nn_extra import depthwise_conv
from fastnn.ops.numpy import _as_float, _float
from fastnn.ops.random import normal
from fastnn.ops.tape import OpError, as_array, unwrap

__all__ = [
    "affine_transform", "crop_images", "elastic_transform", "extract_patches",
    "extract_patches_3d", "gaussian_blur",
    "hsv_to_rgb", "map_coordinates", "pad_images", "perspective_transform", "resize",
    "rgb_to_grayscale", "rgb_to_hsv", "scale_and_translate", "sobel_edges", "ssim",
]  # fmt: skip

_RESIZE_METHODS = ("bilinear", "nearest")
_RESIZE_INTERPOLATIONS = ("bilinear", "nearest", "bicubic")


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


def _in_dtype_of(images, result, how: str = "round"):
    """``result`` in integer images' dtype, as Keras's torch backend returns it: rounded
    ('round'), truncated ('truncate') or wrapped around ('wrap', integer arithmetic); float
    images' results as they are."""
    dtype = as_array(images).dtype
    if dtype.kind not in "iub":
        return result
    value = np.asarray(unwrap(result))
    if how == "round":
        value = np.round(value)
    return value.astype(np.int64).astype(dtype) if how == "wrap" else value.astype(dtype)


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
    if antialias and (scale > 1 or method == "bicubic"):  # torch's antialiasing filters,
        widen = max(scale, 1.0)  # widened to the down-scaling factor; bicubic's a = -0.5
        support = widen * (2.0 if method == "bicubic" else 1.0)
        centre = scale * (rows + 0.5)
        low = np.maximum((centre - support + 0.5).astype(int), 0)
        high = np.minimum((centre + support + 0.5).astype(int), size)
        for i in rows:
            taps = np.arange(low[i], high[i])
            distance = np.abs((taps - centre[i] + 0.5) / widen)
            w = _cubic(distance, -0.5) if method == "bicubic" else np.maximum(0.0, 1 - distance)
            weights[i, taps] = w / w.sum()
        return weights
    if method == "bicubic":  # torch's cubic convolution (a = -0.75), edge pixels repeated
        source = (rows + 0.5) * scale - 0.5
        below = np.floor(source).astype(int)
        fraction = source - below
        for offset in (-1, 0, 1, 2):
            taps = np.clip(below + offset, 0, size - 1)
            np.add.at(weights, (rows, taps), _cubic(np.abs(fraction - offset), -0.75))
        return weights
    source = np.maximum((rows + 0.5) * scale - 0.5, 0)
    below = np.floor(source).astype(int)
    above = np.minimum(below + 1, size - 1)
    fraction = source - below
    np.add.at(weights, (rows, below), 1 - fraction)
    np.add.at(weights, (rows, above), fraction)
    return weights


def _cubic(distance: np.ndarray, a: float) -> np.ndarray:
    """Keys's cubic convolution kernel with parameter ``a`` at |distance|."""
    d = np.abs(distance)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def resize(
    images, size, interpolation: str = "bilinear", antialias: bool = False,
    crop_to_aspect_ratio: bool = False, pad_to_aspect_ratio: bool = False,
    fill_mode: str = "constant", fill_value: float = 0.0, data_format=None,
):  # fmt: skip
    """Images resized to ``size`` (height, width) by bilinear, nearest or bicubic
    interpolation, with half-pixel centres as Keras: (N, H, W, C) -> (N, height, width, C)."""
    if interpolation not in _RESIZE_INTERPOLATIONS:
        raise OpError(
            f"resize: interpolation must be one of {_RESIZE_INTERPOLATIONS}; got {interpolation!r}"
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
    resized = fnp.einsum("oh,nhwc,pw->nopc", rows, x, cols)
    if interpolation == "bicubic" and as_array(images).dtype == np.uint8:  # overshoots
        resized = fnp.clip(resized, 0.0, 255.0)
    return undo(_in_dtype_of(images, resized))


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
    patches = conv(_as_float(x), kernel, strides or patch, padding, None, dilation_rate)
    return undo(_in_dtype_of(images, patches))


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
    grey = fnp.cast(fnp.matmul(_as_float(x), weights), _float(x).dtype)
    return undo(_in_dtype_of(images, grey, "truncate"))


# ---- affine transforms -------------------------------------------------------------------------
def affine_transform(
    images, transform, interpolation: str = "bilinear", fill_mode: str = "constant",
    fill_value=0, data_format=None,
):  # fmt: skip
    """Images resampled by projective transforms [a0, a1, a2, b0, b1, b2, c0, c1] (one, or
    one per image; Keras's order): output pixel (x, y) reads the input at
    ((a0 x + a1 y + a2) / k, (b0 x + b1 y + b2) / k), k = c0 x + c1 y + 1, by bilinear or
    nearest interpolation; outside, ``fill_value`` or map_coordinates' other fill modes."""
    if interpolation not in _RESIZE_METHODS:
        raise OpError(
            f"affine_transform: interpolation must be one of {_RESIZE_METHODS}; got "
            f"{interpolation!r}"
        )
    if fill_mode not in _INDEX_FIXERS:
        raise OpError(
            f"affine_transform: fill_mode must be one of {sorted(_INDEX_FIXERS)}; got {fill_mode!r}"
        )
    x, undo = _batched("affine_transform", images, data_format)
    t = _float(transform).reshape(-1, 8)  # its dtype, as Keras: ties round alike
    shapes = np.shape(unwrap(transform)), np.shape(unwrap(images))
    warped = _projected(x, t, interpolation, fill_value, *shapes, fill_mode=fill_mode)
    return undo(_in_dtype_of(images, warped))


def _projected(x, t, interpolation, fill_value, t_shape, images_shape, fill_mode="constant"):
    """x (N, H, W, C) sampled where the transforms t (1 or N, 8) send each output pixel."""
    n, height, width, channels = np.shape(unwrap(x))
    if len(t) not in (1, n):
        raise OpError(
            f"affine_transform: transform of shape {t_shape} needs 8 values per image for "
            f"images of shape {images_shape}"
        )
    t = np.broadcast_to(t, (n, 8))
    rows, cols = np.meshgrid(*(np.arange(n, dtype=t.dtype) for n in (height, width)), indexing="ij")
    k = t[:, 6, None, None] * cols + t[:, 7, None, None] * rows + 1
    src_x = (t[:, 0, None, None] * cols + t[:, 1, None, None] * rows + t[:, 2, None, None]) / k
    src_y = (t[:, 3, None, None] * cols + t[:, 4, None, None] * rows + t[:, 5, None, None]) / k
    x = _as_float(x)
    if fill_mode != "constant":
        order = 0 if interpolation == "nearest" else 1
        return _sampled(x, src_y, src_x, order, fill_mode, fill_value)
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
    return fnp.reshape(out, (n, height, width, channels))


def perspective_transform(
    images, start_points, end_points, interpolation: str = "bilinear", fill_value=0,
    data_format=None,
):  # fmt: skip
    """Images warped so that the 4 ``start_points`` (x, y) land on ``end_points``: the
    homography from end to start points, solved per image, then ``affine_transform``'s
    sampling: (N, H, W, C), (N or 1, 4, 2) x 2 -> (N, H, W, C)."""
    start, end = as_array(start_points), as_array(end_points)
    if as_array(images).dtype.kind in "iub":  # Keras's torch backend casts them so
        start, end = start.astype(as_array(images).dtype), end.astype(as_array(images).dtype)
    start, end = _float(start), _float(end)
    if start.shape[-2:] != (4, 2) or start.ndim not in (2, 3) or start.shape != end.shape:
        raise OpError(
            "perspective_transform: start_points and end_points must both be (4, 2) or "
            f"(N, 4, 2); got {start.shape} and {end.shape}"
        )
    if interpolation not in _RESIZE_METHODS:
        raise OpError(
            f"perspective_transform: interpolation must be one of {_RESIZE_METHODS}; got "
            f"{interpolation!r}"
        )
    x, undo = _batched("perspective_transform", images, data_format)
    x = _as_float(x)
    t = _homography(start.reshape(-1, 4, 2), end.reshape(-1, 4, 2)).astype(as_array(x).dtype)
    shapes = start.shape, np.shape(unwrap(images))
    return undo(_in_dtype_of(images, _projected(x, t, interpolation, fill_value, *shapes)))


def _homography(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The 8 coefficients (N, 8) sending each end point to its start point."""
    ex, ey, sx, sy = end[..., 0], end[..., 1], start[..., 0], start[..., 1]
    one, zero = np.ones_like(ex), np.zeros_like(ex)
    rows_x = np.stack([ex, ey, one, zero, zero, zero, -sx * ex, -sx * ey], -1)
    rows_y = np.stack([zero, zero, zero, ex, ey, one, -sy * ex, -sy * ey], -1)
    system = np.stack([rows_x, rows_y], 2).reshape(len(start), 8, 8)
    targets = np.stack([sx, sy], 2).reshape(len(start), 8)
    return solve(system.astype(np.float64), targets.astype(np.float64))


# ---- map_coordinates (scipy.ndimage's, orders 0 and 1) ----------------------------------------
def _mirror(index, size):
    s = max(size - 1, 1)
    return np.abs((index + s) % (2 * s) - s)


_INDEX_FIXERS = {
    "constant": lambda i, n: np.clip(i, 0, n - 1),
    "nearest": lambda i, n: np.clip(i, 0, n - 1),
    "wrap": lambda i, n: i % n,
    "mirror": _mirror,
    "reflect": lambda i, n: (_mirror(2 * i + 1, 2 * n + 1) - 1) // 2,
}


def map_coordinates(inputs, coordinates, order: int, fill_mode: str = "constant", fill_value=0):
    """``inputs`` (any rank) read at ``coordinates`` (rank, ...) by nearest (order 0) or
    linear (order 1) interpolation; outside, per fill_mode (constant, nearest, wrap, mirror,
    reflect): -> coordinates.shape[1:]."""
    shape = np.shape(unwrap(inputs))
    coords = np.asarray(as_array(coordinates), np.float64)
    if coords.shape[:1] != (len(shape),):
        raise OpError(
            f"map_coordinates: coordinates of shape {coords.shape} must lead with the input's "
            f"rank {len(shape)} (input shape {shape})"
        )
    if order not in (0, 1):
        raise OpError(f"map_coordinates: order must be 0 or 1; got {order}")
    if fill_mode not in _INDEX_FIXERS:
        raise OpError(f"map_coordinates: fill_mode must be one of {sorted(_INDEX_FIXERS)}")
    per_axis = []
    for c, size in zip(coords, shape):
        if order == 0:
            nodes = [(np.round(c).astype(np.int64), 1.0)]
        else:
            low = np.floor(c)
            nodes = [(low.astype(np.int64), 1 - (c - low)), (low.astype(np.int64) + 1, c - low)]
        per_axis.append([(_INDEX_FIXERS[fill_mode](i, size), (i >= 0) & (i < size), w)
                         for i, w in nodes])  # fmt: skip
    flat = fnp.reshape(inputs, (-1,))
    dtype = _float(inputs).dtype if as_array(inputs).dtype.kind != "f" else as_array(inputs).dtype
    out, filled = None, np.zeros(coords.shape[1:])
    for corner in _corners(per_axis):
        index = np.ravel_multi_index(tuple(i for i, _, _ in corner), shape)
        weight = np.prod([np.broadcast_to(w, coords.shape[1:]) for _, _, w in corner], axis=0)
        valid = np.all([v for _, v, _ in corner], axis=0) if fill_mode == "constant" else True
        filled += np.where(valid, 0.0, weight)
        term = fnp.multiply(fnp.take(flat, index), np.where(valid, weight, 0.0).astype(dtype))
        out = term if out is None else fnp.add(out, term)
    out = fnp.add(out, (filled * float(fill_value)).astype(dtype))
    if as_array(inputs).dtype.kind in "iub":
        return np.round(as_array(out)).astype(as_array(inputs).dtype)
    return out


def _corners(per_axis: list):
    if not per_axis:
        yield ()
        return
    for rest in _corners(per_axis[1:]):
        for node in per_axis[0]:
            yield (node, *rest)


# ---- filters -----------------------------------------------------------------------------------
def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(images, kernel_size=(3, 3), sigma=(1.0, 1.0), data_format=None):
    """Each channel convolved with a Gaussian (zero padding of kernel_size[0] // 2 on both
    axes, as Keras's torch backend)."""
    size = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    spread = (sigma, sigma) if isinstance(sigma, (int, float)) else tuple(sigma)
    x, undo = _batched("gaussian_blur", images, data_format)
    x = _as_float(x)
    channels = np.shape(unwrap(x))[-1]
    # torch's outer(k_y, k_x) laid out as (kernel_size[0], kernel_size[1]), as Keras's backend
    kernel = np.outer(_gaussian(size[1], spread[1]), _gaussian(size[0], spread[0]))
    kernel = kernel.reshape(size[0], size[1], 1, 1)
    kernel = np.tile(kernel, (1, 1, channels, 1)).astype(as_array(x).dtype)
    pad = size[0] // 2
    padded = fnp.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    return undo(depthwise_conv(padded, kernel))


_SOBEL_Y = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)


def sobel_edges(images, data_format=None):
    """Sobel gradients of each channel, (dy, dx) on a new last axis: (N, H, W, C) ->
    (N, H, W, C, 2) (zero padding)."""
    shape = np.shape(unwrap(images))
    if len(shape) != 4:
        raise OpError(f"sobel_edges: expected a batch of images (N, H, W, C); got shape {shape}")
    x, _ = _batched("sobel_edges", images, data_format)
    x = _as_float(x)
    channels = np.shape(unwrap(x))[-1]
    dtype = as_array(x).dtype
    padded = fnp.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    edges = []
    for k in (_SOBEL_Y, _SOBEL_Y.T):
        kernel = np.tile(k.reshape(3, 3, 1, 1), (1, 1, channels, 1)).astype(dtype)
        edges.append(depthwise_conv(padded, kernel))
    stacked = _in_dtype_of(images, fnp.stack(edges, axis=-1), "wrap")  # (N, H, W, C, 2)
    if backend.standardize_data_format(data_format) == "channels_first":
        return fnp.moveaxis(stacked, 3, 1)
    return stacked


# ---- colour spaces -----------------------------------------------------------------------------
def _channel_planes(name: str, images, data_format) -> tuple:
    shape = np.shape(unwrap(images))
    axis = -3 if backend.standardize_data_format(data_format) == "channels_first" else -1
    if len(shape) not in (3, 4) or shape[axis] != 3:
        raise OpError(
            f"{name}: expected images (..., 3) (channels first: (..., 3, H, W)); got shape {shape}"
        )
    if as_array(images).dtype.kind != "f":
        raise OpError(f"{name}: expected float images; got {as_array(images).dtype}")
    planes = [fnp.take(images, i, axis=axis) for i in range(3)]
    return planes, axis


def rgb_to_hsv(images, data_format=None):
    """RGB in [0, 1] to hue, saturation, value in [0, 1] (piecewise; gradients through the
    pieces)."""
    (r, g, b), axis = _channel_planes("rgb_to_hsv", images, data_format)
    eps = np.finfo(as_array(images).dtype).eps
    r, g, b = (fnp.where(np.abs(as_array(p)) < eps, 0.0, p) for p in (r, g, b))
    value = fnp.maximum(fnp.maximum(r, g), b)
    spread = fnp.subtract(value, fnp.minimum(fnp.minimum(r, g), b))
    v, s_ = as_array(value), as_array(spread)
    saturation = fnp.where(v > 0, fnp.divide(spread, fnp.where(v > 0, value, 1.0)), 0.0)
    norm = fnp.divide(1.0, fnp.multiply(fnp.where(s_ > 0, spread, 1.0), 6.0))
    hue = fnp.where(v == as_array(g), fnp.add(fnp.multiply(norm, fnp.subtract(b, r)), 2 / 6),
                    fnp.add(fnp.multiply(norm, fnp.subtract(r, g)), 4 / 6))  # fmt: skip
    hue = fnp.where(v == as_array(r), fnp.multiply(norm, fnp.subtract(g, b)), hue)
    hue = fnp.where(s_ > 0, hue, 0.0)
    hue = fnp.add(hue, (as_array(hue) < 0).astype(as_array(hue).dtype))
    return fnp.stack([hue, saturation, value], axis=axis)


def hsv_to_rgb(images, data_format=None):
    """Hue, saturation, value in [0, 1] to RGB in [0, 1]."""
    (h, s_, v), axis = _channel_planes("hsv_to_rgb", images, data_format)
    dh = fnp.multiply(fnp.mod(h, 1.0), 6.0)
    dr = fnp.clip(fnp.subtract(fnp.abs(fnp.subtract(dh, 3.0)), 1.0), 0.0, 1.0)
    dg = fnp.clip(fnp.subtract(2.0, fnp.abs(fnp.subtract(dh, 2.0))), 0.0, 1.0)
    db = fnp.clip(fnp.subtract(2.0, fnp.abs(fnp.subtract(dh, 4.0))), 0.0, 1.0)
    grey = fnp.subtract(1.0, s_)
    planes = [fnp.multiply(v, fnp.add(grey, fnp.multiply(s_, d))) for d in (dr, dg, db)]
    return fnp.stack(planes, axis=axis)


# ---- similarity and 3-D patches ----------------------------------------------------------------
def ssim(
    image1, image2, max_val=1.0, filter_size: int = 11, filter_sigma=1.5, k1=0.01, k2=0.03,
    data_format=None,
):  # fmt: skip
    """Structural similarity per image (Gaussian window, 'valid'), averaged over channels:
    (N, H, W, C) x 2 -> (N,)."""
    s1, s2 = np.shape(unwrap(image1)), np.shape(unwrap(image2))
    if s1 != s2:
        raise OpError(f"ssim: image1 and image2 must have one shape; got {s1} and {s2}")
    a, undo = _batched("ssim", image1, data_format)
    b, _ = _batched("ssim", image2, data_format)
    a, b = _as_float(a), _as_float(b)
    n, height, width, channels = np.shape(unwrap(a))
    dtype = as_array(a).dtype
    g = _gaussian(filter_size, filter_sigma)
    kernel = np.outer(g, g).reshape(filter_size, filter_size, 1, 1).astype(dtype)

    def blur(z):
        per_channel = fnp.reshape(fnp.transpose(z, (0, 3, 1, 2)), (-1, height, width, 1))
        return depthwise_conv(per_channel, kernel)

    mu1, mu2 = blur(a), blur(b)
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    var1 = fnp.subtract(blur(fnp.multiply(a, a)), fnp.multiply(mu1, mu1))
    var2 = fnp.subtract(blur(fnp.multiply(b, b)), fnp.multiply(mu2, mu2))
    cov = fnp.subtract(blur(fnp.multiply(a, b)), fnp.multiply(mu1, mu2))
    top = fnp.multiply(fnp.add(fnp.multiply(fnp.multiply(mu1, mu2), 2.0), c1),
                       fnp.add(fnp.multiply(cov, 2.0), c2))  # fmt: skip
    bottom = fnp.multiply(
        fnp.add(fnp.add(fnp.multiply(mu1, mu1), fnp.multiply(mu2, mu2)), c1),
        fnp.add(fnp.add(var1, var2), c2),
    )
    per_map = fnp.mean(fnp.divide(top, bottom), axis=(1, 2, 3))
    result = fnp.mean(fnp.reshape(per_map, (n, channels)), axis=-1)
    return result if len(s1) == 4 else fnp.squeeze(result, 0)


def extract_patches_3d(
    volumes, size, strides=None, dilation_rate=1, padding: str = "valid", data_format=None
):
    """Each 3-D window's voxels as one vector: (N, D, H, W, C) -> (N, od, oh, ow,
    d * h * w * C)."""
    patch = (size,) * 3 if isinstance(size, (int, np.integer)) else tuple(size)
    shape = np.shape(unwrap(volumes))
    if len(patch) != 3 or len(shape) not in (4, 5):
        raise OpError(
            f"extract_patches_3d: expected size of 3 and volumes (N, D, H, W, C); got "
            f"size={size} and shape {shape}"
        )
    first = backend.standardize_data_format(data_format) == "channels_first"
    x = volumes if len(shape) == 5 else fnp.expand_dims(volumes, 0)
    x = fnp.moveaxis(x, 1, -1) if first else x
    channels = np.shape(unwrap(x))[-1]
    depth = patch[0] * patch[1] * patch[2] * channels
    kernel = np.eye(depth, dtype=_float(x).dtype).reshape(*patch, channels, depth)
    y = _in_dtype_of(volumes, conv(_as_float(x), kernel, strides or patch, padding, None,
                                   dilation_rate))  # fmt: skip
    y = fnp.moveaxis(y, -1, 1) if first else y
    return y if len(shape) == 5 else fnp.squeeze(y, 0)


def elastic_transform(
    images, alpha=20.0, sigma=5.0, interpolation: str = "bilinear", fill_mode: str = "reflect",
    fill_value=0.0, seed=None, data_format=None,
):  # fmt: skip
    """Images resampled along a random smooth displacement field (Simard et al.), as Keras:
    per image, N(0, sigma**2) noise blurred by a Gaussian of width int(6 sigma) | 1 and
    scaled by ``alpha`` moves each pixel's read position (keras.random's seeds; the field is
    a constant, the images get gradients)."""
    if interpolation not in _RESIZE_METHODS:
        raise OpError(
            f"elastic_transform: interpolation must be one of {_RESIZE_METHODS}; got "
            f"{interpolation!r}"
        )
    x, undo = _batched("elastic_transform", images, data_format)
    x = _as_float(x)
    n, height, width, channels = np.shape(unwrap(x))
    dtype = as_array(x).dtype
    size = int(6 * sigma) | 1
    field = normal((2 * n, height, width, 1), stddev=float(sigma), dtype=dtype, seed=seed)
    field = as_array(gaussian_blur(field, (size, size), (sigma, sigma), "channels_last"))
    dy, dx = (alpha * field[i * n : (i + 1) * n, ..., 0] for i in (1, 0))
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    order = 0 if interpolation == "nearest" else 1
    return undo(_sampled(x, rows + dy, cols + dx, order, fill_mode, fill_value))


def _sampled(x, src_y, src_x, order: int, fill_mode: str, fill_value):
    """x (N, H, W, C) read at the (N, H, W) positions (src_y, src_x) of each image, every
    channel alike, by map_coordinates."""
    shape = np.shape(unwrap(x))
    n, channels = shape[0], shape[-1]
    coordinates = np.stack([
        np.broadcast_to(np.arange(n)[:, None, None, None], shape),
        np.broadcast_to(src_y[..., None], shape),
        np.broadcast_to(src_x[..., None], shape),
        np.broadcast_to(np.arange(channels), shape),
    ])  # fmt: skip
    return map_coordinates(x, coordinates, order, fill_mode, fill_value)


# ---- scale_and_translate (jax.image's) ---------------------------------------------------------
def _lanczos(radius: float):
    def kernel(x):
        with np.errstate(divide="ignore", invalid="ignore"):
            y = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius) / (np.pi**2 * x**2)
        return np.where(x > radius, 0.0, np.where(x > 1e-3, y, 1.0))

    return kernel


def _keys_cubic(x):
    near = ((1.5 * x - 2.5) * x) * x + 1.0
    far = ((-0.5 * x + 2.5) * x - 4.0) * x + 2.0
    return np.where(x >= 2.0, 0.0, np.where(x >= 1.0, far, near))


_SCALE_KERNELS = {
    "linear": lambda x: np.maximum(0.0, 1 - np.abs(x)), "cubic": _keys_cubic,
    "lanczos3": _lanczos(3.0), "lanczos5": _lanczos(5.0),
}  # fmt: skip
_SCALE_METHODS = {"bilinear": "linear", "trilinear": "linear", "triangle": "linear",
                  "bicubic": "cubic", "tricubic": "cubic"}  # fmt: skip


def _scale_weights(size: int, out: int, scale: float, shift: float, kernel, antialias: bool):
    """The (size, out) resampling matrix of one axis (jax.image.scale_and_translate's)."""
    inverse = 1.0 / scale
    widen = max(inverse, 1.0) if antialias else 1.0
    sample = (np.arange(out) + 0.5) * inverse - shift * inverse - 0.5
    weights = kernel(np.abs(sample[None, :] - np.arange(size)[:, None]) / widen)
    total = weights.sum(axis=0, keepdims=True)
    weights = np.where(np.abs(total) > 1000 * np.finfo(np.float32).eps,
                       weights / np.where(total != 0, total, 1), 0.0)  # fmt: skip
    return np.where(((sample >= -0.5) & (sample <= size - 0.5))[None, :], weights, 0.0)


def scale_and_translate(
    images, output_shape, scale, translation, spatial_dims, method: str, antialias: bool = True
):
    """``images`` resampled along ``spatial_dims`` to ``output_shape``: output position o of
    an axis reads the input at (o + 0.5 - translation) / scale - 0.5 through the method's
    kernel (linear, cubic, lanczos3, lanczos5), widened when down-scaling with antialias."""
    kernel = _SCALE_KERNELS.get(_SCALE_METHODS.get(method, method))
    if kernel is None:
        raise OpError(
            f"scale_and_translate: method must be one of {sorted(_SCALE_KERNELS)} (or "
            f"{sorted(_SCALE_METHODS)}); got {method!r}"
        )
    shape = np.shape(unwrap(images))
    scales, shifts = np.atleast_1d(unwrap(scale)), np.atleast_1d(unwrap(translation))
    if len(output_shape) != len(shape) or not len(scales) == len(shifts) == len(spatial_dims):
        raise OpError(
            f"scale_and_translate: output_shape {tuple(output_shape)} must have images' rank "
            f"(shape {shape}) and scale, translation one entry per spatial dim {spatial_dims}"
        )
    integer = as_array(images).dtype.kind in "iub"
    out = _as_float(images)
    dtype = as_array(out).dtype
    for i, d in enumerate(spatial_dims):
        d %= len(shape)
        w = _scale_weights(shape[d], int(output_shape[d]), float(scales[i]), float(shifts[i]),
                           kernel, antialias)  # fmt: skip
        out = fnp.moveaxis(fnp.tensordot(out, w.astype(dtype), axes=([d], [0])), -1, d)
    if integer:
        value = as_array(images)
        rounded = np.clip(np.round(as_array(out)), value.min(), value.max())
        return rounded.astype(value.dtype)
    return out
