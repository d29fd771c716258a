"""Keras 2's legacy HDF5 weights (``.h5``, ``.hdf5``): what ``keras.applications`` downloads and
``model.save("m.h5")`` wrote. Read only, as in Keras 3 (needs h5py).

The root group (or its ``model_weights`` group, in a whole-model file) lists its layers in the
attribute ``layer_names``; each layer's group lists its arrays in ``weight_names`` (both may be
split into ``layer_names0``, ``layer_names1``, ... when long), in Keras 2's order: trainable
weights, then non-trainable ones. As in Keras, weights load in order (the file's layers that
hold weights, one by one, into the model's layers that have weights) or, with ``by_name=True``,
into the layers of the same name. Every count and shape is checked before any weight changes,
and the file gets the checks of ``keras_format``: no links, no data outside the file, no
dataset declaring more bytes than it stores.
"""

from __future__ import annotations

import os

import numpy as np

from fastnn.layers.base import assign_all
from fastnn.saving import api
from fastnn.saving.files import MissingFileError, remove_stale_temporaries
from fastnn.saving.keras_format import _failure, _h5_errors, _h5py, _self_contained_bytes

#: The group of a whole-model ``.h5`` file that holds its weights.
MODEL_WEIGHTS = "model_weights"
#: The group of the weights a model holds itself, beside its layers'.
TOP_LEVEL = "top_level_model_weights"


def load_legacy_h5_weights(model, filepath, by_name: bool = False) -> None:
    """Assign the weights of a Keras 2 ``.h5`` file to ``model``: in order, or by layer name
    with ``by_name=True`` (file layers no model layer is named after are skipped). All are
    checked before any is assigned."""
    h5py = _h5py()
    path = os.fspath(filepath)
    if not os.path.isfile(path):
        raise MissingFileError(f"No such file: '{path}'")
    remove_stale_temporaries(path)
    fail = _failure(path)
    with _h5_errors(path), h5py.File(path, "r") as f:
        _self_contained_bytes(h5py, f, fail)
        root = _weights_root(h5py, f, fail)
        match = _match_by_name if by_name else _match_in_order
        pairs = match(h5py, root, model, fail)
        pairs += _top_level(h5py, root, model, fail)
        variables, arrays = _read_all(h5py, pairs, fail)
    assign_all(variables, arrays, f"Cannot load '{path}':", lambda var: var.path)


def legacy_weights(layer) -> list:
    """A layer's weights in Keras 2's order: trainable first, then non-trainable."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _weights_root(h5py, f, fail):
    if not _has_attribute(f, "layer_names") and MODEL_WEIGHTS in f:
        root = f[MODEL_WEIGHTS]
        if not isinstance(root, h5py.Group):
            raise fail(f"'{MODEL_WEIGHTS}' is a dataset, not a group of layers")
        f = root
    if not _has_attribute(f, "layer_names"):
        raise fail(
            "it is not a Keras 2 HDF5 weights file (no 'layer_names' attribute); Keras 3's "
            "weights files end in '.weights.h5'"
        )
    return f


def _has_attribute(group, name: str) -> bool:
    return name in group.attrs or f"{name}0" in group.attrs


def _names(group, name: str, fail) -> list[str]:
    """The strings of attribute ``name``, or of its chunks ``name0``, ``name1``, ..."""
    if name in group.attrs:
        chunks = [name]
    else:
        chunks = []
        while f"{name}{len(chunks)}" in group.attrs:
            chunks.append(f"{name}{len(chunks)}")
    values = []
    for chunk in chunks:
        raw = np.asarray(group.attrs[chunk])
        if raw.size == 0:  # a layer without weights: Keras writes an empty float array
            continue
        if raw.dtype.kind not in "SUO" or raw.ndim > 1:
            raise fail(f"attribute '{chunk}' of '{group.name}' is not a list of names")
        for item in raw.reshape(-1):
            if isinstance(item, (bytes, np.bytes_)):
                item = item.decode("utf8")
            if not isinstance(item, str):
                raise fail(f"attribute '{chunk}' of '{group.name}' holds {item!r}, not a name")
            values.append(item)
    return values


def _child(h5py, group, name: str, kind, fail):
    """``group``'s member at the relative path ``name``, which must be a ``kind``."""
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") for part in parts):
        raise fail(f"'{name}' in '{group.name}' is not a valid member name")
    member = group
    for part in parts:
        if not isinstance(member, h5py.Group) or part not in member:
            raise fail(f"'{group.name.rstrip('/')}/{name}' is listed but missing")
        member = member[part]
    if not isinstance(member, kind):
        what = "group" if kind is h5py.Group else "dataset"
        raise fail(f"'{member.name}' is not a {what}")
    return member


def _layer_datasets(h5py, root, layer_name: str, fail) -> list:
    group = _child(h5py, root, layer_name, h5py.Group, fail)
    return [_child(h5py, group, w, h5py.Dataset, fail) for w in _names(group, "weight_names", fail)]


def _match_in_order(h5py, root, model, fail) -> list[tuple[str, list, list]]:
    """Keras's topological loading: the file's layers with weights, in the order listed, into
    the model's layers with weights, in order."""
    saved = []
    for name in _names(root, "layer_names", fail):
        datasets = _layer_datasets(h5py, root, name, fail)
        if datasets:
            saved.append((name, datasets))
    layers = [layer for layer in model.layers if legacy_weights(layer)]
    if len(saved) != len(layers):
        raise fail(
            f"it holds weights for {len(saved)} layers, the model has {len(layers)} layers "
            f"with weights (file: {_preview([n for n, _ in saved])}, model: "
            f"{_preview([layer.name for layer in layers])})"
        )
    pairs = []
    for k, ((saved_name, datasets), layer) in enumerate(zip(saved, layers)):
        label = f"layer #{k} (named '{layer.name}' in the model, '{saved_name}' in the file)"
        pairs.append((label, legacy_weights(layer), datasets))
    return pairs


def _match_by_name(h5py, root, model, fail) -> list[tuple[str, list, list]]:
    """Keras's loading by name: each file layer into the model's layers of that name."""
    by_name: dict[str, list] = {}
    for layer in model.layers:
        by_name.setdefault(layer.name, []).append(layer)
    pairs = []
    for k, name in enumerate(_names(root, "layer_names", fail)):
        if name not in by_name:
            continue
        datasets = _layer_datasets(h5py, root, name, fail)
        for layer in by_name[name]:
            pairs.append((f"layer #{k} (named '{name}')", legacy_weights(layer), datasets))
    return pairs


def _top_level(h5py, root, model, fail) -> list[tuple[str, list, list]]:
    """The weights the model holds itself (a subclassed model's own ``add_weight``)."""
    if TOP_LEVEL not in root:
        return []
    datasets = _layer_datasets(h5py, root, TOP_LEVEL, fail)
    own = list(model._weights) if model._runs_call else []
    return [("the model's top-level weights", own, datasets)]


def _read_all(h5py, pairs, fail) -> tuple[list, list]:
    """Every pair's counts, shapes and dtypes checked, then the arrays read."""
    for label, variables, datasets in pairs:
        if len(variables) != len(datasets):
            raise fail(
                f"{label} expects {len(variables)} weights "
                f"{[tuple(v.shape) for v in variables]}, the file holds {len(datasets)} "
                f"{[d.shape for d in datasets]}"
            )
        for var, data in zip(variables, datasets):
            if data.shape != tuple(var.shape):
                raise fail(
                    f"{label}: weight '{var.path}' has shape {tuple(var.shape)}, the file's "
                    f"'{data.name}' has shape {data.shape}"
                )
            if data.dtype.kind not in "fiu":
                raise fail(f"'{data.name}' holds {data.dtype}, not numbers")
    variables, arrays = [], []
    for _, owned, datasets in pairs:
        variables += owned
        arrays += [data[()] for data in datasets]
    return variables, arrays


def _preview(names: list[str]) -> str:
    shown = ", ".join(names[:4])
    return f"[{shown}{', ...' if len(names) > 4 else ''}]"


def _refuse_save(model, path, overwrite: bool = True) -> None:
    raise ValueError(
        "save_weights(): Keras 2's legacy '.h5' weights are read only (as in Keras 3); the "
        f"file name must end in '.weights.h5' or '.weights.npz'. Received: filepath={path}"
    )


for _suffix in api.BY_NAME_SUFFIXES:
    api.register_weights_format(
        _suffix, "Keras 2's legacy HDF5, read only", _refuse_save, load_legacy_h5_weights
    )
