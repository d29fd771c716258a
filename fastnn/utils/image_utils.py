"""keras.utils's image helpers: ``load_img``, ``img_to_array``, ``array_to_img``, ``save_img``
and ``smart_resize``, with Keras 3's arguments and defaults. Images are PIL images (the
``fastnn[image]`` extra: Pillow); arrays are (height, width, channels), or channels first.
Loading decodes the file's pixels and nothing else.
"""

from __future__ import annotations

import io
import pathlib
import warnings

import numpy as np

from fastnn import backend
from fastnn.layers import Resizing

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "hamming", "box", "lanczos")
COLOR_MODES = ("grayscale", "rgb", "rgba")


def _pil():
    """PIL.Image, or an ImportError saying which extra brings it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(
            "fastnn's image utilities need Pillow: pip install 'fastnn[image]'"
        ) from None
    return Image


def _data_format(data_format) -> str:
    data_format = backend.image_data_format() if data_format is None else data_format
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            "data_format must be 'channels_last' or 'channels_first'; "
            f"received data_format={data_format!r}"
        )
    return data_format


def array_to_img(x, data_format=None, scale: bool = True, dtype=None):
    """A PIL image of ``x`` (H, W, C) or (C, H, W) with C in 1, 3, 4; with ``scale`` its values
    are stretched to 0..255 (the minimum to 0, the maximum to 255)."""
    image = _pil()
    x = np.array(x, dtype=dtype or backend.floatx())
    if x.ndim != 3:
        raise ValueError(
            f"Expected image array to have rank 3 (single image). Got array with shape: {x.shape}"
        )
    if _data_format(data_format) == "channels_first":
        x = x.transpose(1, 2, 0)
    if scale:
        x -= x.min()
        top = x.max()
        if top != 0:
            x /= top
        x *= 255
    channels = x.shape[2]
    if channels in (3, 4):
        return image.fromarray(x.astype("uint8"), "RGB" if channels == 3 else "RGBA")
    if channels == 1:
        if x.max() > 255:  # a 32-bit grayscale image (PIL's mode "I")
            return image.fromarray(x[:, :, 0].astype("int32"), "I")
        return image.fromarray(x[:, :, 0].astype("uint8"), "L")
    raise ValueError(f"Unsupported channel number: {channels}")


def img_to_array(img, data_format=None, dtype=None) -> np.ndarray:
    """The pixels of a PIL image as an array (H, W, C), or (C, H, W) channels first."""
    x = np.asarray(img, dtype=dtype or backend.floatx())
    channels_first = _data_format(data_format) == "channels_first"
    if x.ndim == 2:
        return x[None] if channels_first else x[:, :, None]
    if x.ndim == 3:
        return x.transpose(2, 0, 1) if channels_first else x
    raise ValueError(f"Unsupported image shape: {x.shape}")


def save_img(path, x, data_format=None, file_format=None, scale: bool = True, **kwargs) -> None:
    """Write the image array ``x`` to ``path`` (or a file object) through PIL; the format from
    the file name unless ``file_format`` says (``"jpg"`` as ``"jpeg"``)."""
    if file_format is not None and file_format.lower() == "jpg":
        file_format = "jpeg"
    img = array_to_img(x, data_format=data_format, scale=scale)
    if img.mode == "RGBA" and file_format == "jpeg":
        warnings.warn(
            "The JPEG format does not support RGBA images, converting to RGB.", stacklevel=2
        )
        img = img.convert("RGB")
    img.save(path, format=file_format, **kwargs)


def load_img(
    path, color_mode="rgb", target_size=None, interpolation="nearest", keep_aspect_ratio=False
):
    """The image at ``path`` (a path, or an io.BytesIO) as a PIL image in ``color_mode``
    ('grayscale', 'rgb' or 'rgba'), resized to ``target_size`` (height, width) if given, after
    a centred crop to its aspect ratio with ``keep_aspect_ratio``."""
    image = _pil()
    if color_mode not in COLOR_MODES:
        raise ValueError('color_mode must be "grayscale", "rgb", or "rgba"')
    if isinstance(path, io.BytesIO):
        img = image.open(path)
    elif isinstance(path, (pathlib.Path, str, bytes)):
        with open(path, "rb") as f:
            img = image.open(io.BytesIO(f.read()))
    else:
        raise TypeError(f"path should be path-like or io.BytesIO, not {type(path)}")
    if color_mode == "grayscale":
        if img.mode not in ("L", "I;16", "I"):
            img = img.convert("L")
    elif img.mode != color_mode.upper():
        img = img.convert(color_mode.upper())
    if target_size is None:
        return img
    size = (target_size[1], target_size[0])  # PIL's (width, height)
    if img.size == size:
        return img
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"Invalid interpolation method {interpolation} specified. Supported methods are "
            f"{', '.join(INTERPOLATIONS)}"
        )
    resample = getattr(image.Resampling, interpolation.upper())
    if not keep_aspect_ratio:
        return img.resize(size, resample)
    width, height = img.size
    crop_h = min(height, (width * size[1]) // size[0])
    crop_w = min(width, (height * size[0]) // size[1])
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return img.resize(size, resample, box=(left, top, left + crop_w, top + crop_h))


def smart_resize(x, size, interpolation="bilinear", data_format="channels_last") -> np.ndarray:
    """Images (H, W, C) or (N, H, W, C) cropped to the largest centred window of ``size``'s
    aspect ratio, then resized to ``size`` (height, width): ``layers.Resizing`` with
    ``crop_to_aspect_ratio=True``."""
    x = np.asarray(x)
    if len(size) != 2:
        raise ValueError(f"Expected `size` to be a tuple of 2 integers, but got: {size}.")
    if x.ndim not in (3, 4):
        raise ValueError(
            "Expected an image array with shape `(height, width, channels)`, or "
            f"`(batch_size, height, width, channels)`, but got input with incorrect rank, of "
            f"shape {x.shape}."
        )
    layer = Resizing(
        *size, interpolation=interpolation, crop_to_aspect_ratio=True, data_format=data_format
    )
    return np.asarray(layer(x.astype(backend.floatx(), copy=False)))
