"""fastnn's own files: a zip of one JSON manifest and ``.npy`` arrays, never pickle.

``.fastnn`` (a whole model) holds the model config (Keras 3's shape), the weights, the
``compile`` arguments, the optimizer's state and the random state training needs to resume
exactly. ``.weights.npz`` holds the weights alone (readable by ``numpy.load`` too). Loading
validates the manifest against the arrays and the built model before anything is assigned; the
manifest and every entry are size-capped before they are read, and a config declaring more
weights than the file stores is refused before any weight is made (``budget``).
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile

import numpy as np

from fastnn.graph import Graph
from fastnn.layers.base import assign_all
from fastnn.models import Model
from fastnn.saving import api
from fastnn.saving.budget import weights_within
from fastnn.saving.files import (
    FileFormatError,
    MissingFileError,
    atomic_write,
    backed_size,
    read_entry,
    remove_stale_temporaries,
)
from fastnn.saving.serialization import deserialize_layer, serialize_layer

MANIFEST = "fastnn.json"
#: The manifest's cap: about 24,000 layers' configs; its JSON can take ~25 times that in memory.
MAX_MANIFEST_BYTES = 16 * 2**20
#: Room for an .npy entry's header beside its data.
NPY_HEADER_BYTES = 2**16
MODEL_FORMAT = "fastnn.model"
WEIGHTS_FORMAT = "fastnn.weights"
VERSION = 1


# ---- writing ----
def save_model(model, path, overwrite: bool = True, include_optimizer: bool = True) -> None:
    """Write ``model`` with its weights, compile arguments and optimizer state to ``path``."""
    manifest = {"format": MODEL_FORMAT, "version": VERSION, "model": serialize_layer(model)}
    arrays = {}
    manifest["weights"] = _add_arrays(arrays, "weights", [v.value for v in model.weights])
    manifest["names"] = [v.path for v in model.weights]
    manifest["compile"] = _compile_config(model)
    optimizer = model.optimizer if manifest["compile"] and include_optimizer else None
    # Which of the model's weights the optimizer's slots belong to (it may have been built
    # before some layers were frozen), so loading rebuilds it on the same variables.
    manifest["optimizer_variables"] = _optimizer_variables(model, optimizer)
    manifest["optimizer_state"] = (
        None if optimizer is None else _add_arrays(arrays, "optimizer_state", optimizer.get_state())
    )
    manifest["training_state"] = {
        "shuffle_seed": getattr(model, "_shuffle_seed", None),
        "random_states": {
            path: state
            for path, layer in _all_layers(model)
            if (state := layer.get_random_state()) is not None
        },
    }
    _write_zip(path, manifest, arrays, overwrite)


def save_weights(model, path, overwrite: bool = True) -> None:
    """Write the model's weights, in ``get_weights()`` order, to a ``.weights.npz`` file."""
    arrays = {}
    manifest = {"format": WEIGHTS_FORMAT, "version": VERSION}
    manifest["weights"] = _add_arrays(arrays, "weights", [v.value for v in model.weights])
    manifest["names"] = [v.path for v in model.weights]
    _write_zip(path, manifest, arrays, overwrite)


def _optimizer_variables(model, optimizer) -> list[int] | None:
    """Indices in ``model.weights`` of the variables the optimizer was built on, or None."""
    if optimizer is None or not optimizer.built:
        return None
    index = {id(var): i for i, var in enumerate(model.weights)}
    built_on = [index.get(id(var)) for var in optimizer._variables]
    if None in built_on:
        raise ValueError(
            f"Cannot save model '{model.name}': its optimizer was built on variables that are "
            "not the model's weights; save with include_optimizer=False"
        )
    return built_on


def _compile_config(model) -> dict | None:
    try:
        return model.get_compile_config()
    except ValueError as error:
        warnings.warn(
            f"Saving model '{model.name}' without its compile() arguments: {error}. "
            "load_model() will return it uncompiled; compile it again after loading.",
            stacklevel=3,
        )
        return None


def _add_arrays(arrays: dict, folder: str, values) -> list[dict]:
    """Queue ``values`` as ``folder/<i>.npy`` and return their manifest entries."""
    entries = []
    for i, value in enumerate(values):
        value = np.asarray(value)
        name = f"{folder}/{i}.npy"
        arrays[name] = value
        entries.append({"file": name, "shape": list(value.shape), "dtype": value.dtype.name})
    return entries


def _write_zip(path, manifest: dict, arrays: dict, overwrite: bool) -> None:
    text = json.dumps(manifest, indent=1)
    with atomic_write(path, overwrite) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, text)
        for name, value in arrays.items():
            with zf.open(name, "w", force_zip64=value.nbytes > 2**30) as out:
                np.lib.format.write_array(out, value, allow_pickle=False)


# ---- reading ----
def load_model(path, custom_objects: dict | None = None, compile: bool = True):
    """The model saved at ``path``: same weights, and compiled with its optimizer state."""
    with _open(path) as archive:
        manifest = archive.manifest(MODEL_FORMAT)
        model = _build_model(archive, manifest, custom_objects)
        stored = _stored_order(manifest, model)
        weights = archive.arrays(manifest, "weights", [v.value for v in stored])
        compile_config = archive.field(manifest, "compile", (dict, type(None)))
        training = archive.field(manifest, "training_state", dict)
        optimizer_state = None
        if compile and compile_config is not None:
            try:
                model.compile_from_config(compile_config)
            except Exception as error:
                raise archive.error(f"its compile config is invalid: {error}") from error
            optimizer_state = _optimizer_state(archive, manifest, model, stored)
        random_states = _check_random_states(archive, training, model)
        shuffle_seed = training.get("shuffle_seed")
        if shuffle_seed is not None and not (
            type(shuffle_seed) is int and 0 <= shuffle_seed < 2**63  # noqa: E721 (no bools)
        ):
            raise archive.error(f"the shuffle seed {shuffle_seed!r:.40} is not an integer")
    assign_all(stored, weights, f"Model '{model.name}'", lambda var: var.path)
    if optimizer_state is not None:  # keeps the compiled learning rate where float32 agrees
        model.optimizer.set_state(optimizer_state)
    for layer, state in random_states:
        layer.set_random_state(state)
    model._shuffle_seed = shuffle_seed
    return model


def load_weights(model, path) -> None:
    """Assign the weights saved by ``save_weights``; all shapes are checked before any change."""
    with _open(path) as archive:
        manifest = archive.manifest(WEIGHTS_FORMAT)
        stored = _stored_order(manifest, model)
        weights = archive.arrays(manifest, "weights", [v.value for v in stored])
    assign_all(stored, weights, f"Model '{model.name}'", lambda var: var.path)


def _build_model(archive, manifest: dict, custom_objects):
    """The model of the manifest's config, refused before it is built if its weights are
    more than the file stores."""
    config = archive.field(manifest, "model", dict)
    try:
        with weights_within(archive.stored_bytes(manifest, "weights"), archive.error):
            model = deserialize_layer(config, custom_objects)
    except FileFormatError:
        raise
    except Exception as error:  # any config the classes refuse: the file is wrong
        raise archive.error(f"its model config cannot be built: {error}") from error
    if not isinstance(model, Model):
        raise archive.error(f"it holds a {type(model).__name__}, not a model")
    return model


def _optimizer_state(archive, manifest, model, weights):
    entries = archive.field(manifest, "optimizer_state", (list, type(None)))
    if entries is None:
        return None
    optimizer = model.optimizer
    built_on = manifest.get("optimizer_variables")
    if built_on is not None:
        if not (
            isinstance(built_on, list)
            and all(type(i) is int and 0 <= i < len(weights) for i in built_on)  # noqa: E721
            and len(set(built_on)) == len(built_on)
        ):
            raise archive.error(f"'optimizer_variables' in '{MANIFEST}' is malformed")
        optimizer.build([weights[i] for i in built_on])
    elif "optimizer_variables" not in manifest and len(entries) > 2:  # an earlier file: slots
        optimizer.build(model.trainable_weights)  # imply the optimizer was built on these
    return archive.arrays(manifest, "optimizer_state", optimizer.variables)


def _stored_order(manifest: dict, model) -> list:
    """The model's weights in the order the file stores them: by the paths it lists when they
    are the model's in another order (a model with dict outputs saved before fastnn ordered
    its heads by key, as Keras does), else in ``model.weights``' order (structure decides, as
    in Keras: a twin model with other layer names loads too). Files of dict-output models
    written before the paths were stored listed the heads as written."""
    weights = model.weights
    names = manifest.get("names")
    paths = [w.path for w in weights]
    unique = len(set(paths)) == len(paths)
    if isinstance(names, list) and unique and sorted(names, key=str) == sorted(paths):
        by_path = {w.path: w for w in weights}
        return [by_path[name] for name in names]
    outputs = getattr(model, "_outputs_struct", None)
    if names is None and isinstance(outputs, dict):
        as_written = Graph(model.inputs, list(outputs.values()))
        return list({id(w): w for layer in as_written.layers for w in layer.weights}.values())
    return weights


def _check_random_states(archive, training, model) -> list:
    states = training.get("random_states", {})
    layers = dict(_all_layers(model))
    if not isinstance(states, dict):
        raise archive.error(f"'random_states' in '{MANIFEST}' is malformed")
    if not set(states) <= set(layers):
        raise archive.error(f"random states are saved for unknown layers {sorted(states)}")
    checked = []
    for name, state in states.items():
        probe = np.random.default_rng()
        try:
            probe.bit_generator.state = state
        except Exception as error:  # TypeError, ValueError, KeyError, OverflowError, ...
            raise archive.error(f"layer '{name}' has an invalid random state: {error}") from None
        checked.append((layers[name], state))
    return checked


def _all_layers(layer, prefix: str = ""):
    """``(path, layer)`` for every layer inside ``layer``, at any depth; the path
    (``"inner/dropout"``, ``"bidirectional/forward_layer"``) tells apart layers of the same name
    in different nested models."""
    for key, inner in layer.sublayers():
        path = prefix + key
        yield path, inner
        yield from _all_layers(inner, f"{path}/")


def _open(path) -> _Archive:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"No such file: '{path}'")
    remove_stale_temporaries(path)
    try:
        return _Archive(path, zipfile.ZipFile(path))
    except Exception as error:  # zipfile raises many kinds on a malformed file
        raise FileFormatError(f"Cannot load '{path}': not a fastnn zip file ({error})") from None


class _Archive:
    """An open zip with error messages that name the file."""

    def __init__(self, path: str, zf: zipfile.ZipFile):
        self.path = path
        self.zf = zf

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zf.close()

    def error(self, what: str) -> FileFormatError:
        return FileFormatError(f"Cannot load '{self.path}': {what}")

    def manifest(self, kind: str) -> dict:
        data = read_entry(self.zf, MANIFEST, MAX_MANIFEST_BYTES, self.error)
        try:
            manifest = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
            raise self.error(f"'{MANIFEST}' is not valid JSON ({error})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != kind:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise self.error(f"expected a '{kind}' file, found format {found!r}")
        if manifest.get("version") != VERSION:
            raise self.error(
                f"format version {manifest.get('version')!r} is not supported (this fastnn "
                f"reads version {VERSION})"
            )
        return manifest

    def field(self, manifest: dict, key: str, kind):
        value = manifest.get(key)
        if not isinstance(value, kind):
            raise self.error(f"'{key}' in '{MANIFEST}' is missing or malformed")
        return value

    def stored_bytes(self, manifest: dict, key: str) -> int:
        """The bytes the entries listed under ``key`` can really hold (no data read)."""
        entries = self.field(manifest, key, list)
        names = {
            e["file"] for e in entries if isinstance(e, dict) and isinstance(e.get("file"), str)
        }
        listed = {info.filename: info for info in self.zf.infolist()}
        infos = [listed[name] for name in names if name in listed]
        return sum(backed_size(info.file_size, info.compress_size) for info in infos)

    def arrays(self, manifest: dict, key: str, targets) -> list[np.ndarray]:
        """The arrays listed under ``key``, checked against ``targets``' shapes and dtypes."""
        entries = self.field(manifest, key, list)
        if len(entries) != len(targets):
            raise self.error(f"it has {len(entries)} {key} arrays, the model needs {len(targets)}")
        arrays = []
        for i, (entry, target) in enumerate(zip(entries, targets)):
            expected = (tuple(np.shape(target)), np.asarray(target).dtype.name)
            if not isinstance(entry, dict) or entry.get("file") != f"{key}/{i}.npy":
                raise self.error(f"{key} entry {i} is malformed: {entry!r:.80}")
            shape = entry.get("shape")
            if not (isinstance(shape, list) and all(type(n) is int for n in shape)):  # noqa: E721
                raise self.error(f"{key} entry {i} is malformed: {entry!r:.80}")
            declared = (tuple(shape), entry.get("dtype"))
            if declared != expected:
                raise self.error(
                    f"{key} array {i} is {declared[1]} {declared[0]} but the model expects "
                    f"{expected[1]} {expected[0]}"
                )
            arrays.append(self._npy(entry["file"], expected))
        return arrays

    def _npy(self, name: str, expected) -> np.ndarray:
        try:
            size = self.zf.getinfo(name).file_size
        except KeyError:
            raise self.error(f"the entry '{name}' is missing") from None
        nbytes = int(np.prod(expected[0])) * np.dtype(expected[1]).itemsize
        if size > nbytes + NPY_HEADER_BYTES:  # a header is far smaller: refuse before inflating
            raise self.error(f"'{name}' is {size} bytes, too large for {expected[1]} {expected[0]}")
        data = read_entry(self.zf, name, nbytes + NPY_HEADER_BYTES, self.error)
        try:
            stream = io.BytesIO(data)
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(stream)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            shape, _, dtype = header
            if (shape, dtype.name) != expected or dtype.hasobject:
                raise self.error(
                    f"'{name}' holds {dtype.name} {shape}, expected {expected[1]} {expected[0]}"
                )
            stream.seek(0)
            array = np.lib.format.read_array(stream, allow_pickle=False)
            if stream.tell() != len(data):
                raise ValueError(f"{len(data) - stream.tell()} bytes of trailing data")
        except FileFormatError:
            raise
        except Exception as error:
            raise self.error(f"'{name}' is not a valid .npy array ({error})") from None
        if (array.shape, array.dtype.name) != expected:
            raise self.error(
                f"'{name}' holds {array.dtype.name} {array.shape}, expected "
                f"{expected[1]} {expected[0]}"
            )
        return array


api.register_model_format(".fastnn", "fastnn's format", save_model, load_model)
api.register_weights_format(".weights.npz", "fastnn's format", save_weights, load_weights)
