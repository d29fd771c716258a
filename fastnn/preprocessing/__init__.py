"""keras.preprocessing: ``sequence.pad_sequences``, ``timeseries_dataset_from_array``
(``fastnn.utils`` holds them) and, on first use, ``image`` (load_img, smart_resize, ...)."""

import importlib

from fastnn.preprocessing import sequence
from fastnn.utils.dataset_utils import timeseries_dataset_from_array

__all__ = ["image", "sequence", "timeseries_dataset_from_array"]


def __getattr__(name: str):
    if name == "image":  # Pillow's import waits for the first use
        return importlib.import_module("fastnn.preprocessing.image")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
