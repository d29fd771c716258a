"""keras.utils: seeding and session helpers, ``to_categorical``, ``normalize``,
``pad_sequences``, ``split_dataset``, ``timeseries_dataset_from_array``, ``PyDataset``; on first
use ``get_file`` (the download cache), ``plot_model``, ``model_to_dot``, ``plot_history`` and
the image helpers (``load_img``, ``img_to_array``, ``array_to_img``, ``save_img``)."""

from __future__ import annotations

import importlib

import numpy as np

from fastnn import seeding
from fastnn.backend import clear_session  # noqa: F401 (keras.utils.clear_session)
from fastnn.saving.registry import (  # noqa: F401 (keras.utils's names for them)
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
)
from fastnn.saving.registry import register_serializable as register_keras_serializable  # noqa: F401
from fastnn.saving.serialization import (  # noqa: F401
    deserialize_keras_object,
    serialize_keras_object,
)
from fastnn.training.data_adapters import PyDataset
from fastnn.utils.dataset_utils import split_dataset, timeseries_dataset_from_array  # noqa: F401
from fastnn.utils.numerical_utils import normalize, to_categorical  # noqa: F401
from fastnn.utils.sequence_utils import pad_sequences  # noqa: F401

Sequence = PyDataset  # Keras 3 keeps tf.keras's name for it


def set_random_seed(seed: int) -> None:
    """Seed fastnn (initial weights, dropout masks, shuffling) and numpy's global generator."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got seed={seed!r}")
    seeding.set_seed(int(seed))
    np.random.seed(int(seed) % 2**32)


_PLOTTING = ("model_to_dot", "plot_history", "plot_model")
#: Names imported on first use, for start-up time: file_utils' imports (tarfile, zipfile,
#: hashlib, tempfile, urllib) would add ~15 ms to `import fastnn`, which imports this module.
_FILE_UTILS = ("get_file",)
#: The image helpers (Pillow, the ``fastnn[image]`` extra), also imported on first use.
_IMAGE_UTILS = ("array_to_img", "img_to_array", "load_img", "save_img")


def __getattr__(name: str):
    """``fastnn.utils.plot_model``, ``get_file`` and friends (as keras.utils has them), imported
    on first use."""
    if name in _PLOTTING:
        # here, not at module level, for start-up time: plotting's imports (subprocess, html,
        # shutil) would add ~4 ms to `import fastnn`, which imports this module
        from fastnn import plotting

        return getattr(plotting, name)
    if name in _FILE_UTILS:
        return getattr(importlib.import_module("fastnn.utils.file_utils"), name)
    if name in _IMAGE_UTILS:
        return getattr(importlib.import_module("fastnn.utils.image_utils"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PLOTTING, *_FILE_UTILS, *_IMAGE_UTILS])
