"""Arguments and shapes of windowed layers (convolutions and poolings): Keras's argument
checks for sizes, padding and data format, and the output shape of a window sliding over an input.
"""

from __future__ import annotations

import numpy as np

from fastnn import backend
from fastnn.kernels.geometry import padding_amounts
from fastnn.layers.base import Layer, shape_error


def standardize_tuple(value, n: int, name: str) -> tuple:
    """An int or an iterable of n positive ints as a tuple of n ints (Keras's argument check)."""
    message = f"The `{name}` argument must be a tuple of {n} integers. Received {name}={value}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(message) from None
        if len(values) != n or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
        ):
            raise ValueError(message)
        values = tuple(int(v) for v in values)
    bad = {v for v in values if v <= 0}
    if bad:
        raise ValueError(f"{message}, including values {bad} that do not satisfy `value > 0`")
    return values


def standardize_padding(padding, allow_causal: bool = False) -> str:
    """'valid' or 'same' (or 'causal' if allowed; any case), else Keras's error."""
    allowed = ("valid", "same", "causal") if allow_causal else ("valid", "same")
    value = padding.lower() if isinstance(padding, str) else padding
    if value not in allowed:
        names = ", ".join(repr(a) for a in allowed)
        raise ValueError(
            f"The `padding` argument must be one of {{{names}}}. Received: padding={padding!r}"
        )
    return value


def check_data_format(layer: Layer, data_format, rank: int = 2) -> str:
    """'channels_last' or 'channels_first' (None: ``fastnn.backend.image_data_format()``, as
    Keras), else Keras's error."""
    value = data_format.lower() if isinstance(data_format, str) else data_format
    if value is None:
        return backend.image_data_format()
    if value in ("channels_last", "channels_first"):
        return value
    raise ValueError(
        "The `data_format` argument must be one of {'channels_first', 'channels_last'}. "
        f"Received: data_format={data_format!r}"
    )


def to_channels_last(x: np.ndarray, data_format: str) -> np.ndarray:
    """A (batch, channels, ...) array as a C-contiguous (batch, ..., channels) one when
    ``data_format`` is channels_first (the layers run channels_last kernels); else ``x``."""
    if data_format == "channels_last":
        return x
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def from_channels_last(y: np.ndarray, data_format: str) -> np.ndarray:
    """A (batch, ..., channels) result in ``data_format``'s layout (``to_channels_last``'s
    inverse); a 2-D (batch, channels) one stays as it is."""
    if data_format == "channels_last" or y.ndim < 3:
        return y
    return np.ascontiguousarray(np.moveaxis(y, -1, 1))


def channels_last_shape(shape, data_format: str) -> tuple:
    """An input shape in ``data_format`` as its channels_last shape."""
    shape = tuple(shape)
    if data_format == "channels_last" or len(shape) < 3:
        return shape
    return (shape[0], *shape[2:], shape[1])


def shape_in_format(shape, data_format: str) -> tuple:
    """A channels_last shape in ``data_format``'s layout (``channels_last_shape``'s inverse)."""
    shape = tuple(shape)
    if data_format == "channels_last" or len(shape) < 3:
        return shape
    return (shape[0], shape[-1], *shape[1:-1])


def spatial_output_shape(layer: Layer, input_shape, window, strides, padding, what) -> tuple:
    """(out_h, out_w) of a 2-D window op on (batch, H, W, C); None stays None; errors name layer."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
        raise shape_error(
            layer, "expects a 4-D input", "(batch, height, width, channels)", input_shape
        )
    out = []
    for size, k, s in zip(input_shape[1:3], window, strides, strict=True):
        if size is None:
            out.append(None)
            continue
        out.append(padding_amounts(size, k, s, padding)[0])
    if any(d is not None and d <= 0 for d in out):
        raise shape_error(
            layer,
            f"computed output size would be zero or negative for {what}={tuple(window)}, "
            f"strides={tuple(strides)}, padding='{padding}'",
            f"height >= {window[0]} and width >= {window[1]}",
            input_shape,
        )
    return tuple(out)


def temporal_output_length(layer: Layer, input_shape, window, stride, padding, what):
    """Output steps of a 1-D window op on (batch, steps, channels); None stays None."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise shape_error(layer, "expects a 3-D input", "(batch, steps, channels)", input_shape)
    steps = input_shape[1]
    if steps is None:
        return None
    if padding == "causal":
        out = padding_amounts(steps + window - 1, window, stride, "valid")[0]
    else:
        out = padding_amounts(steps, window, stride, padding)[0]
    if out <= 0:
        raise shape_error(
            layer,
            f"computed output size would be zero or negative for {what}=({window},), "
            f"strides=({stride},), padding='{padding}'",
            f"steps >= {window}",
            input_shape,
        )
    return out
