"""Saving and loading by file name: a path's suffix picks the file format.

``Model.save``, ``Model.save_weights``, ``Model.load_weights``, ``fastnn.models.load_model`` and
``fastnn.saving.load_model`` call the functions here. Each file format registers its suffix when
its module is imported (``import fastnn`` imports them): ``native`` reads and writes ``.fastnn``
and ``.weights.npz``, ``keras_format`` ``.keras`` and ``.weights.h5``, ``legacy_h5`` Keras 2's
``.h5`` and ``.hdf5`` weights (read only); the longest matching suffix wins. The formats import
models; this module imports no format, so models import it without an import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple


class Format(NamedTuple):
    """A file format: the suffix of its files, its name in errors, how to save and load."""

    suffix: str
    name: str
    save: Callable[..., None]
    load: Callable[..., Any]


#: Formats of whole models: ``save(model, path, overwrite, include_optimizer)`` and
#: ``load(path, custom_objects, compile)``; errors list them in the order registered.
MODEL_FORMATS: dict[str, Format] = {}
#: Formats of weights alone: ``save(model, path, overwrite)`` and ``load(model, path)``.
WEIGHTS_FORMATS: dict[str, Format] = {}
#: The weights suffixes whose ``load`` also takes ``by_name`` (Keras 2's legacy files).
BY_NAME_SUFFIXES = (".h5", ".hdf5")


def register_model_format(suffix: str, name: str, save: Callable, load: Callable) -> None:
    """Save and load whole models in files whose name ends in ``suffix``."""
    MODEL_FORMATS[suffix] = Format(suffix, name, save, load)


def register_weights_format(suffix: str, name: str, save: Callable, load: Callable) -> None:
    """Save and load a model's weights in files whose name ends in ``suffix``."""
    WEIGHTS_FORMATS[suffix] = Format(suffix, name, save, load)


def save_model(model, filepath, overwrite: bool = True, include_optimizer: bool = True) -> None:
    """Save architecture, weights, compile arguments and optimizer state to ``filepath``:
    ``.fastnn`` (fastnn's zip) or ``.keras`` (Keras 3's format, needs h5py)."""
    path = os.fspath(filepath)
    _format(MODEL_FORMATS, path, "Model.save").save(model, path, overwrite, include_optimizer)


def load_model(filepath, custom_objects: dict | None = None, compile: bool = True, safe_mode=True):
    """The model saved at ``filepath`` (``.fastnn`` or Keras 3's ``.keras``).

    Loading never runs code from the file: classes resolve only against fastnn's layers, those
    registered with ``fastnn.saving.register_serializable`` and ``custom_objects``
    (``safe_mode`` is accepted for Keras compatibility; fastnn is always safe).
    """
    path = os.fspath(filepath)
    return _format(MODEL_FORMATS, path, "load_model").load(path, custom_objects, compile)


def save_weights(model, filepath, overwrite: bool = True) -> None:
    """Save the weights: ``.weights.npz`` (numpy only) or ``.weights.h5`` (Keras's layout)."""
    path = os.fspath(filepath)
    _format(WEIGHTS_FORMATS, path, "save_weights").save(model, path, overwrite)


def load_weights(model, filepath, skip_mismatch: bool = False, *, by_name=None) -> None:
    """Load weights saved by ``save_weights`` (or Keras's ``.weights.h5``, or Keras 2's ``.h5``,
    by layer name with ``by_name=True``); every shape is checked before any weight changes."""
    if skip_mismatch:
        raise NotImplementedError("load_weights(skip_mismatch=True) is not supported")
    path = os.fspath(filepath)
    format_ = _format(WEIGHTS_FORMATS, path, "load_weights")
    if by_name is None:
        format_.load(model, path)
    elif format_.suffix in BY_NAME_SUFFIXES:
        format_.load(model, path, by_name=bool(by_name))
    else:
        raise ValueError(
            f"`by_name` only supports loading legacy '.h5' or '.hdf5' files. Received: {path}"
        )


def _format(formats: dict[str, Format], path: str, caller: str) -> Format:
    matches = [suffix for suffix in formats if path.endswith(suffix)]
    if matches:  # the longest: '.weights.h5' before '.h5'
        return formats[max(matches, key=len)]
    choices = " or ".join(f"'{f.suffix}' ({f.name})" for f in formats.values())
    raise ValueError(
        f"{caller}(): cannot tell the format of '{path}'; the file name must end in {choices}"
    )
