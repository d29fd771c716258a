"""Global settings ``keras.backend`` has: the default float dtype, epsilon, image data format.

fastnn.ops reads them (Python floats become ``floatx()`` arrays, losses clip by ``epsilon()``,
``conv`` and the poolings take ``image_data_format()`` when given no data_format).
"""

from __future__ import annotations

from fastnn import naming

_FLOATS = ("float16", "float32", "float64")
_FORMATS = ("channels_last", "channels_first")

_settings = {"floatx": "float32", "epsilon": 1e-7, "image_data_format": "channels_last"}


def backend() -> str:
    """The name of the engine under the Keras API: 'fastnn'."""
    return "fastnn"


def floatx() -> str:
    """The default float dtype, 'float32' unless ``set_floatx`` changed it."""
    return _settings["floatx"]


def set_floatx(value: str) -> None:
    """Make ``value`` ('float16', 'float32' or 'float64') the default float dtype."""
    if value not in _FLOATS:
        raise ValueError(f"Unknown `floatx` value: {value!r}. Expected one of {_FLOATS}")
    _settings["floatx"] = str(value)


def epsilon() -> float:
    """The fuzz factor losses and ``normalize`` use (1e-7 unless ``set_epsilon`` changed it)."""
    return _settings["epsilon"]


def set_epsilon(value: float) -> None:
    """Make ``value`` the fuzz factor."""
    _settings["epsilon"] = float(value)


def image_data_format() -> str:
    """'channels_last' (the default) or 'channels_first'."""
    return _settings["image_data_format"]


def set_image_data_format(data_format: str) -> None:
    """Make ``data_format`` the default of conv and pooling ops."""
    if data_format not in _FORMATS:
        raise ValueError(f"Unknown `data_format`: {data_format!r}. Expected one of {_FORMATS}")
    _settings["image_data_format"] = data_format


def standardize_data_format(data_format: str | None) -> str:
    """``data_format``, or the default when None; refuses unknown formats."""
    if data_format is None:
        return image_data_format()
    if data_format not in _FORMATS:
        raise ValueError(
            f"The `data_format` argument must be one of {_FORMATS}. Received: {data_format!r}"
        )
    return data_format


def clear_session() -> None:
    """Restart automatic layer naming ('dense', 'dense_1', ...), as Keras's does."""
    naming.reset_names()
