"""Keras 3's files without Keras: ``.keras`` models and ``.weights.h5`` weights (needs h5py).

A ``.keras`` file is a zip of ``config.json`` (Keras 3's model config), ``metadata.json`` and
``model.weights.h5``. fastnn's model config has Keras's shape already, so loading is a per-key
normalisation of what Keras adds (module names, dtype policies, build configs, and the ops that
carry masks, which fastnn propagates by itself), then ``from_config``. A setting fastnn cannot
honour is refused, naming the layer, before any model is built. Weights are read from Keras's
layout (``layers/<snake_case class>[_k]/vars/<i>``: recurrent weights under ``cell``, wrapped
layers under ``layer``, ``forward_layer``, ``backward_layer``, nested models under their own
``layers``) and all of them are checked against the model before any is assigned.

Nothing from a file is imported by name, evaluated or unpickled: classes resolve only against
fastnn's layers, the registry and ``custom_objects``, and Keras's ``Lambda``, which stores
Python code, is always refused (CVE-2024-3660). Nor is anything read from outside the file: an
h5 file holding a link or a dataset stored elsewhere (external storage, virtual) is refused
before any data is read, and a config declaring more weights than the file stores before any
weight is made (``budget``).
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import io
import json
import math
import os
import warnings
import zipfile

import numpy as np

from fastnn.layers import (
    GRU,
    LSTM,
    Bidirectional,
    ConvLSTM1D,
    ConvLSTM2D,
    SimpleRNN,
    TimeDistributed,
)
from fastnn.layers.base import Layer, assign_all, snake_case
from fastnn.layers.recurrent import SequenceLayer
from fastnn.models import Model, Sequential
from fastnn.saving import api
from fastnn.saving.budget import weights_within
from fastnn.saving.files import (
    FileFormatError,
    MissingFileError,
    atomic_write,
    backed_size,
    inflates_too_much,
    read_entry,
    remove_stale_temporaries,
)
from fastnn.saving.native import MAX_MANIFEST_BYTES
from fastnn.saving.registry import builtin_classes, get_registered_object
from fastnn.saving.serialization import (
    deserialize_layer,
    serialize_keras_object,
    serialize_layer,
)

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
#: The most bytes an entry may hold (the weights: only what its stored bytes can inflate to).
_ENTRY_LIMITS = {CONFIG: MAX_MANIFEST_BYTES, METADATA: MAX_MANIFEST_BYTES, WEIGHTS: None}
#: The Keras release whose file format this module writes (and was tested against).
KERAS_VERSION = "3.15.1"

_RECURRENT = (LSTM, GRU, SimpleRNN, ConvLSTM1D, ConvLSTM2D)
#: Where Keras writes the optimizer's variables in ``model.weights.h5``.
_OPTIMIZER_GROUP = "optimizer/vars"

# Keras settings fastnn has no argument for, dropped when they hold the value that has no effect
# (any other value is refused): activity regularizers, quantization, LoRA,
# BatchNormalization's renormalization, and sparse/ragged/optional inputs.
_INERT = {
    "activity_regularizer": None,
    "quantization_config": None,
    "lora_rank": None,
    "lora_alpha": None,
    "renorm": False,
    "renorm_clipping": None,
    "sparse": False,
    "ragged": False,
    "optional": False,
}
# Dropped whatever their value: no effect on one device (synchronized) or without renorm.
_IGNORED = {"synchronized", "renorm_momentum", "shared_object_id"}
_FLOAT_POLICIES = ("float32", "float64")
# Class names earlier Keras 3 releases wrote for initializers fastnn knows by Keras's later names.
_RENAMED = {"OrthogonalInitializer": "Orthogonal", "IdentityInitializer": "Identity"}


def _h5py():
    try:  # here, not at module level: h5py is optional
        import h5py
    except ImportError:
        raise ImportError(
            'Reading and writing Keras files needs h5py: pip install "fastnn[keras]"'
        ) from None
    return h5py


# ---- public API ------------------------------------------------------------------------------
def load_keras_model(path, custom_objects: dict | None = None, compile: bool = True) -> Model:
    """The model in a Keras 3 ``.keras`` file, with its weights, compiled as it was saved when
    fastnn has its optimizer, losses and metrics, with the optimizer's state (its variables
    under ``optimizer/vars``, in Keras's order) when the file holds it."""
    h5py = _h5py()
    path = os.fspath(path)
    config_data, weights = _read_entries(path, CONFIG, WEIGHTS)
    config = _read_json(path, config_data)
    weights = io.BytesIO(weights)
    stored_bytes = _h5_stored_bytes(h5py, weights, path)
    try:
        entry = _model_entry_from_keras(config, custom_objects)
        with weights_within(stored_bytes, _failure(path)):
            model = deserialize_layer(entry, custom_objects)
    except FileFormatError:
        raise
    except Exception as error:  # a config fastnn refuses, or one malformed in any way
        raise FileFormatError(f"Cannot load '{path}': {error}") from None
    _load_h5(h5py, model, weights, path)
    if compile and config.get("compile_config"):
        _compile_from_keras(model, config["compile_config"], path)
        if model.compiled:
            _load_optimizer_state(h5py, model, weights, path)
    return model


def _load_optimizer_state(h5py, model: Model, source, path: str) -> None:
    """The optimizer's variables from ``optimizer/vars``, as Keras loads them: the optimizer is
    built on the model's trainable weights (unless the file holds only iterations and the
    learning rate); a file whose count or shapes do not fit is skipped with Keras's warning."""
    with _h5_errors(path), h5py.File(source, "r") as f:
        group = f.get(_OPTIMIZER_GROUP)
        if not isinstance(group, h5py.Group):
            return
        if set(group.keys()) != {str(i) for i in range(len(group))}:
            raise _failure(path)(f"'{_OPTIMIZER_GROUP}' holds {sorted(group.keys())[:5]}...")
        arrays = [_read_optimizer_array(h5py, group, str(i), path) for i in range(len(group))]
    optimizer = model.optimizer
    if len(arrays) != len(optimizer.variables):  # the slots too: build as Keras's load does
        optimizer.build(model.trainable_weights)
    expected = optimizer.variables
    if len(arrays) != len(expected) or any(
        np.shape(a) != np.shape(e) for a, e in zip(arrays, expected)
    ):
        warnings.warn(
            f"Skipping variable loading for optimizer '{optimizer.name}', because it has "
            f"{len(expected)} variables whereas the saved optimizer has {len(arrays)} variables "
            f"('{path}')",
            stacklevel=3,
        )
        return
    optimizer.set_state(arrays)


def _read_optimizer_array(h5py, group, name: str, path: str) -> np.ndarray:
    data = group[name]
    if not isinstance(data, h5py.Dataset) or data.dtype.kind not in "fiu":
        raise _failure(path)(f"'{_OPTIMIZER_GROUP}/{name}' is not a numeric array")
    return data[()]


def _optimizer_state(model: Model, include_optimizer: bool) -> list | None:
    """The optimizer's variables to write under ``optimizer/vars`` (Keras's order), or None:
    not compiled, ``include_optimizer=False``, or built on other variables than the model's
    trainable weights (which Keras's loader builds it on)."""
    optimizer = getattr(model, "optimizer", None)
    if not include_optimizer or optimizer is None or not model.compiled:
        return None
    if optimizer.built:
        built_on = [id(v) for v in optimizer._variables]
        if built_on != [id(v) for v in model.trainable_weights]:
            warnings.warn(
                f"Saving model '{model.name}' without its optimizer's state: the optimizer was "
                "built on other variables than the model's trainable weights, where a .keras "
                "file's optimizer state belongs",
                stacklevel=4,
            )
            return None
    return optimizer.get_state()


def _compile_from_keras(model: Model, compile_config, path: str) -> None:
    """Compile as Keras's ``compile_config`` says; warn and stay uncompiled if fastnn can't
    (as Keras does when a compile config does not deserialize)."""
    own = type(model).compile_from_config is not Model.compile_from_config
    try:  # a model's own compile_from_config reads the config as saved, as Keras's does
        model.compile_from_config(compile_config if own else _strip_modules(compile_config))
    except Exception as error:
        warnings.warn(
            f"'{path}': the model's compile() arguments could not be restored ({error}); "
            "it is returned uncompiled: call compile() before training",
            stacklevel=3,
        )


def _strip_modules(value):
    """Keras's serialized objects without ``module``/``registered_name`` (fastnn resolves
    ``class_name`` only against its own classes)."""
    if isinstance(value, dict):
        return {
            k: _strip_modules(v) for k, v in value.items() if k not in ("module", "registered_name")
        }
    if isinstance(value, list):
        return [_strip_modules(v) for v in value]
    return value


def _compile_to_keras(model: Model) -> dict | None:
    """The compile arguments in Keras's form, or None when uncompiled or not serializable."""
    try:
        config = model.get_compile_config()
    except ValueError:
        return None
    if config is None:
        return None
    if type(model).get_compile_config is not Model.get_compile_config:
        return serialize_keras_object(config)  # a model's own: its objects, as Keras saves them
    modules = {"optimizer": "keras.optimizers", "loss": "keras.losses"}
    return {
        key: _with_module(modules.get(key, "keras.metrics"), value) for key, value in config.items()
    }


def _with_module(module: str, value):
    if isinstance(value, dict) and "class_name" in value:
        return _keras_object(module, value)
    if isinstance(value, dict):
        return {k: _with_module(module, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_with_module(module, v) for v in value]
    return value


def save_keras_model(
    model: Model, path, overwrite: bool = True, include_optimizer: bool = True
) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file that ``keras.saving.load_model`` reads,
    with the optimizer's state unless ``include_optimizer`` is False."""
    h5py = _h5py()
    _check_built(model, "save_keras_model")
    config = {**_keras_entry(model, serialize_layer(model))}
    config["compile_config"] = _compile_to_keras(model)
    saved = datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")
    metadata = {"keras_version": KERAS_VERSION, "date_saved": saved}
    optimizer = _optimizer_state(model, include_optimizer) if config["compile_config"] else None
    weights = _h5_bytes(h5py, model, optimizer)
    with atomic_write(path, overwrite) as f, zipfile.ZipFile(f, "w") as zf:
        zf.writestr(METADATA, json.dumps(metadata))
        zf.writestr(CONFIG, json.dumps(config))
        zf.writestr(WEIGHTS, weights)


def load_keras_weights(model: Model, path) -> None:
    """Assign the weights of a Keras ``.weights.h5`` file; all are checked before any change."""
    h5py = _h5py()
    _check_built(model, "load_keras_weights")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(f"No such file: '{path}'")
    remove_stale_temporaries(path)
    _load_h5(h5py, model, path, path)


def save_keras_weights(model: Model, path, overwrite: bool = True) -> None:
    """Write the model's weights as a Keras ``.weights.h5`` file."""
    h5py = _h5py()
    _check_built(model, "save_keras_weights")
    data = _h5_bytes(h5py, model)
    with atomic_write(path, overwrite) as f:
        f.write(data)


def _check_built(model, what: str) -> None:
    if not isinstance(model, Model):
        raise TypeError(f"{what}() expects a fastnn Model; got {type(model).__name__}")
    if not model.built:
        raise ValueError(
            f"{what}(): model '{model.name}' is not built yet; give it an input shape (or call "
            "it on data) first"
        )


# ---- reading the zip -------------------------------------------------------------------------
def _failure(path: str):
    """``fail(what)``: the error for a fault of the file at ``path``."""
    return lambda what: FileFormatError(f"Cannot load '{path}': {what}")


def _read_entries(path: str, *names: str) -> list[bytes]:
    if not os.path.isfile(path):
        raise MissingFileError(f"No such file: '{path}'")
    remove_stale_temporaries(path)
    fail = _failure(path)
    try:
        with zipfile.ZipFile(path) as zf:
            missing = [name for name in names if name not in zf.namelist()]
            if missing:
                raise fail(f"the entry '{missing[0]}' is missing")
            return [read_entry(zf, name, _ENTRY_LIMITS[name], fail) for name in names]
    except FileFormatError:
        raise
    except Exception as error:  # zipfile raises many kinds on a truncated or corrupted file
        raise FileFormatError(
            f"Cannot load '{path}': not a readable .keras zip file ({type(error).__name__}: "
            f"{error})"
        ) from None


def _read_json(path: str, data: bytes) -> dict:
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FileFormatError(
            f"Cannot load '{path}': '{CONFIG}' is not valid JSON ({error})"
        ) from None
    if not isinstance(config, dict):
        raise FileFormatError(f"Cannot load '{path}': '{CONFIG}' does not hold a model config")
    return config


# ---- configs: Keras -> fastnn ----------------------------------------------------------------
def _model_entry_from_keras(entry: dict, custom_objects) -> dict:
    """fastnn's serialized model for the top of Keras's ``config.json``."""
    cls = _layer_class(entry, custom_objects)
    if not issubclass(cls, Model):
        raise ValueError(f"the file holds a {entry.get('class_name')}, not a model")
    return _entry_from_keras(entry, custom_objects)


def _entry_from_keras(entry: dict, custom_objects) -> dict:
    """``{"class_name", "registered_name", "config"}`` for fastnn from Keras's layer entry."""
    cls = _layer_class(entry, custom_objects)
    config = entry.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{_label(entry)} has no config dict")
    if issubclass(cls, Sequential):
        config = _sequential_from_keras(config, custom_objects)
    elif issubclass(cls, Model) and "layers" in config:  # a subclassed model has its own
        config = _functional_from_keras(config, custom_objects)
    else:
        config = _layer_config_from_keras(cls, config, _label(entry), custom_objects)
    registered = entry.get("registered_name")
    custom = isinstance(registered, str) and get_registered_object(registered, custom_objects)
    found = {
        "class_name": entry["class_name"],
        "registered_name": registered if custom else None,
        "config": config,
    }
    if custom and isinstance(entry.get("build_config"), dict):  # a user's build arguments
        found["build_config"] = entry["build_config"]
    return found


def _label(entry: dict) -> str:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return f"layer '{entry.get('name') or config.get('name')}' ({entry.get('class_name')})"


def _is_keras_module(module) -> bool:
    return module is None or module == "keras" or str(module).startswith("keras.")


def _is_op(entry: dict) -> bool:
    """True for Keras ops recorded in a Functional graph (e.g. the ``NotEqual`` of a mask)."""
    return str(entry.get("module")).startswith(("keras.src.ops", "keras.ops"))


def _layer_class(entry: dict, custom_objects) -> type:
    """The fastnn class a Keras layer entry names; refuses Lambda and unknown classes."""
    if not isinstance(entry, dict):
        raise ValueError(f"a layer entry must be a dict; got {entry!r:.80}")
    class_name, module = entry.get("class_name"), entry.get("module")
    if class_name == "Lambda" and _is_keras_module(module):
        raise ValueError(
            f"{_label(entry)}: refusing to load a Keras Lambda layer, which stores Python code; "
            "fastnn never runs code from a file (Keras's CVE-2024-3660)"
        )
    for key in (entry.get("registered_name"), class_name):
        cls = get_registered_object(key, custom_objects) if isinstance(key, str) else None
        if cls is not None:
            return cls
    builtins = builtin_classes()
    cls = builtins.get(class_name) if _is_keras_module(module) and not _is_op(entry) else None
    if cls is None or class_name in ("Layer", "Lambda"):
        where = f"module '{module}'" if module else "no module"
        raise ValueError(
            f"{_label(entry)}: fastnn does not support the Keras class {class_name!r} "
            f"({where}); pass a fastnn equivalent in custom_objects if there is one"
        )
    return cls


def _layer_config_from_keras(cls: type, config: dict, label: str, custom_objects) -> dict:
    """A layer's config with Keras's wrapping removed; refuses settings fastnn cannot honour."""
    out = {}
    for key, value in config.items():
        if key in _IGNORED:
            continue
        if key in _INERT:
            if value != _INERT[key]:
                raise ValueError(
                    f"{label}: fastnn cannot honour the Keras setting {key}={value!r:.120}"
                )
            continue
        out[key] = _value_from_keras(cls, key, value, label, custom_objects)
    accepted = _accepted_arguments(cls)
    unknown = [key for key in out if accepted is not None and key not in accepted]
    if unknown:
        key = unknown[0]
        raise ValueError(f"{label}: fastnn's {cls.__name__} has no setting {key}={out[key]!r:.120}")
    return out


def _value_from_keras(cls: type, key: str, value, label: str, custom_objects):
    if key == "dtype":
        return _dtype_from_keras(value, label, inputs=cls.__name__ == "InputLayer")
    if key.endswith(("_initializer", "_regularizer")) and isinstance(value, dict):
        return _object_from_keras(key, value, label)
    if key.endswith("_constraint") and isinstance(value, dict):
        return _constraint_from_keras(value)
    if key in ("layer", "backward_layer", "cell") and isinstance(value, dict):  # wrappers, RNN
        return _entry_from_keras(value, custom_objects)
    if key == "cells" and isinstance(value, list):  # StackedRNNCells
        return [_entry_from_keras(cell, custom_objects) for cell in value]
    return value


def _dtype_from_keras(value, label: str, inputs: bool) -> str:
    """``"float32"`` from Keras's ``{"class_name": "DTypePolicy", "config": {"name": ...}}``;
    an InputLayer's dtype (a plain name) may be any numeric type."""
    name = value
    if isinstance(value, dict) and value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
        name = (value.get("config") or {}).get("name")
    try:
        kind = np.dtype(name).kind if isinstance(name, str) else None
    except TypeError:
        kind = None
    if name in _FLOAT_POLICIES or (inputs and kind in ("b", "i", "u", "f")):
        return name
    raise ValueError(
        f"{label}: fastnn computes in float32 or float64; cannot honour the Keras dtype "
        f"{value!r:.120}"
    )


def _object_from_keras(key: str, value: dict, label: str) -> dict:
    """An initializer or regularizer ``{"class_name", "config"}`` without Keras's module keys."""
    config = dict(value.get("config") or {})
    for axes in ("input_axes", "output_axes"):  # Keras's fan axes for einsum kernels
        if config.pop(axes, None) is not None:
            raise ValueError(f"{label}: fastnn cannot honour {key} with {axes}={value!r:.120}")
    class_name = value.get("class_name")
    return {"class_name": _RENAMED.get(class_name, class_name), "config": config}


def _constraint_from_keras(value: dict) -> dict:
    """A constraint ``{"class_name", "config"}`` (and a custom class's registered name; a
    plain function's name as its config)."""
    if value.get("class_name") == "function":
        return {"class_name": "function", "config": value.get("config")}
    out = {"class_name": value.get("class_name"), "config": dict(value.get("config") or {})}
    if isinstance(value.get("registered_name"), str) and value.get("module") is None:
        out["registered_name"] = value["registered_name"]
    return out


def _accepted_arguments(cls: type) -> set[str] | None:
    """The keyword arguments a fastnn layer class takes (None for classes not fastnn's own)."""
    if not cls.__module__.startswith("fastnn."):
        return None
    accepted = set()
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        params = inspect.signature(klass.__dict__["__init__"]).parameters.values()
        accepted |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return accepted - {"self"}


def _sequential_from_keras(config: dict, custom_objects) -> dict:
    label = f"Sequential '{config.get('name')}'"
    if "dtype" in config:
        _dtype_from_keras(config["dtype"], label, inputs=False)
    layers = config.get("layers")
    if not isinstance(layers, list):
        raise ValueError(f"{label} has no list of layers")
    out = {
        "name": config.get("name"),
        "trainable": config.get("trainable", True),
        "layers": [_entry_from_keras(entry, custom_objects) for entry in layers],
    }
    if config.get("build_input_shape") is not None:
        out["build_input_shape"] = config["build_input_shape"]
    return out


def _functional_from_keras(config: dict, custom_objects) -> dict:
    """A Functional config for fastnn: Keras's mask ops and ``mask=`` arguments dropped once
    checked to be the masks fastnn propagates itself."""
    entries = config.get("layers")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"model '{config.get('name')}' has no list of layer entries")
    graph = _KerasGraph(entries)
    layers, functional = [], set()
    for entry in entries:
        if _is_op(entry):
            continue
        cls = _layer_class(entry, custom_objects)
        if _is_functional(cls):
            functional.add(entry.get("name"))
        calls = entry.get("inbound_nodes", [])
        layers.append(
            {
                **_entry_from_keras(entry, custom_objects),
                "name": entry.get("name"),
                "inbound_nodes": [graph.call_from_keras(entry, cls, call) for call in calls],
            }
        )
    return {
        "name": config.get("name"),
        "trainable": config.get("trainable", True),
        "layers": layers,
        "input_layers": graph.io_from_keras(config.get("input_layers"), functional),
        "output_layers": graph.io_from_keras(config.get("output_layers"), functional),
    }


def _is_functional(cls: type) -> bool:
    """True for the models Keras saves as Functional (Sequential is not one)."""
    return issubclass(cls, Model) and not issubclass(cls, Sequential)


class _KerasGraph:
    """The entries of one Keras Functional config, to check where its ops' tensors go.

    Keras records a mask as ops on the tensor that produced it (``NotEqual(ids, 0)`` for
    ``Embedding(mask_zero=True)``, ``Any(NotEqual(x, mask_value), axis=-1)`` for ``Masking``)
    and passes it as ``mask=``; fastnn propagates those masks itself, so such arguments are
    dropped. Any other op, or an op's tensor used as data, is refused.
    """

    def __init__(self, entries: list[dict]):
        self.ops = {e.get("name"): e for e in entries if _is_op(e)}
        self.inputs_of = {}  # (class name, history of the first argument) -> configs
        for entry in entries:
            for call in entry.get("inbound_nodes") or []:
                args = call.get("args") if isinstance(call, dict) else None
                first = _history(args[0]) if isinstance(args, list) and args else None
                key = (entry.get("class_name"), first)
                self.inputs_of.setdefault(key, []).append(entry.get("config") or {})

    def call_from_keras(self, entry: dict, cls: type, call: dict) -> dict:
        """One recorded call with Keras-only arguments checked and removed."""
        if not isinstance(call, dict):
            raise ValueError(f"{_label(entry)} has a malformed call {call!r:.80}")
        args, kwargs = call.get("args", []), dict(call.get("kwargs") or {})
        mask = kwargs.pop("mask", None)
        if kwargs.get("training") is None:
            kwargs.pop("training", None)  # base(x, training=False) is kept on the node
        known = {"initial_state", "training"} | getattr(cls, "call_keywords", set())
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(f"{_label(entry)} is called with arguments fastnn lacks: {unknown}")
        self._check_no_ops(entry, [args, kwargs])
        for tensor in _tensors(mask):
            if not (cls.supports_masking and self._is_automatic_mask(tensor)):
                raise ValueError(
                    f"{_label(entry)} is called with an explicit mask=; fastnn takes masks only "
                    "as Embedding(mask_zero=True) and Masking propagate them"
                )
        return {"args": args, "kwargs": kwargs}

    def io_from_keras(self, refs, functional: set):
        """Model inputs/outputs: one ``[name, node, index]`` triple stands for a single tensor.

        Here (not in layer calls) Keras counts the calls of a nested Functional model, named in
        ``functional``, from 1, after the node its construction made in Keras 2; fastnn from 0.
        (fastnn wrote 0 before it followed Keras: that stays 0, its model's one call.)
        """
        if isinstance(refs, list) and len(refs) == 3 and isinstance(refs[0], str):
            refs = [refs]
        for ref in refs.values() if isinstance(refs, dict) else refs or []:
            if isinstance(ref, list) and ref and ref[0] in self.ops:
                raise ValueError(f"a model input or output is the Keras op '{ref[0]}'")
        return _map_refs(refs, functional, -1)

    def _check_no_ops(self, entry: dict, structure) -> None:
        for tensor in _tensors(structure):
            if tensor[0] in self.ops:
                op = self.ops[tensor[0]]
                raise ValueError(
                    f"{_label(entry)} takes the output of the Keras op '{tensor[0]}' "
                    f"({op.get('class_name')}); fastnn models hold layers only"
                )

    def _op_call(self, tensor, class_name: str):
        """(args, config) of the op call producing ``tensor`` if it is a ``class_name`` op."""
        op = self.ops.get(tensor[0]) if tensor else None
        if op is None or op.get("class_name") != class_name:
            return None
        calls = op.get("inbound_nodes") or []
        index = tensor[1]
        call = calls[index] if isinstance(index, int) and 0 <= index < len(calls) else None
        args = call.get("args") if isinstance(call, dict) else None
        return (args, op.get("config") or {}) if isinstance(args, list) else None

    def _is_automatic_mask(self, tensor) -> bool:
        """True if ``tensor`` is the mask an Embedding(mask_zero=True) or Masking computes."""
        not_equal = self._op_call(tensor, "NotEqual")
        if not_equal is not None and len(not_equal[0]) == 2 and not_equal[0][1] == 0:
            source = _history(not_equal[0][0])
            configs = self.inputs_of.get(("Embedding", source), [])
            return any(c.get("mask_zero") is True for c in configs)
        any_op = self._op_call(tensor, "Any")
        if any_op is None or len(any_op[0]) != 1:
            return False
        args, config = any_op
        if config.get("axis") != -1 or config.get("keepdims"):
            return False
        inner = self._op_call(_history(args[0]), "NotEqual")
        if inner is None or len(inner[0]) != 2:
            return False
        configs = self.inputs_of.get(("Masking", _history(inner[0][0])), [])
        return any(c.get("mask_value") == inner[0][1] for c in configs)


def _map_refs(refs, functional: set, shift: int):
    """Model input/output ``[name, node, index]`` triples with the node index of each one
    naming a layer in ``functional`` moved by ``shift``."""

    def move(ref):
        if (
            isinstance(ref, list)
            and len(ref) == 3
            and isinstance(ref[0], str)
            and ref[0] in functional
            and type(ref[1]) is int  # not a bool
        ):
            return [ref[0], max(ref[1] + shift, 0), ref[2]]
        return ref

    if isinstance(refs, dict):
        return {key: move(ref) for key, ref in refs.items()}
    if isinstance(refs, list):
        return [move(ref) for ref in refs]
    return refs


def _history(value):
    """``(layer name, node index, tensor index)`` of a Keras tensor record, else None."""
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if isinstance(history, list) and len(history) == 3:
            return tuple(history)
    return None


def _tensors(structure) -> list[tuple]:
    """The histories of every Keras tensor record in a (nested) call argument."""
    found = _history(structure)
    if found is not None:
        return [found]
    if isinstance(structure, dict):
        return [t for v in structure.values() for t in _tensors(v)]
    if isinstance(structure, list):
        return [t for v in structure for t in _tensors(v)]
    return []


# ---- configs: fastnn -> Keras ----------------------------------------------------------------
def _keras_entry(layer, data: dict) -> dict:
    """Keras's serialized form of a layer (or model) from fastnn's ``serialize_layer`` dict."""
    if isinstance(layer, Sequential):
        module, config = "keras", _keras_sequential(layer, data["config"])
    elif isinstance(layer, Model) and not layer._subclassed:
        module, config = "keras.src.models.functional", _keras_functional(layer, data["config"])
    else:
        module, config = "keras.layers", _keras_layer_config(data["class_name"], data["config"])
    registered = data.get("registered_name")  # a user's class: Keras finds it by this name
    if registered is None and data["class_name"] == "Functional":
        registered = "Functional"  # as Keras writes it
    elif registered is not None:
        module = None
    entry = {
        "module": module,
        "class_name": data["class_name"],
        "config": config,
        "registered_name": registered,
    }
    if "build_config" in data:  # what the layer was built with (a user's build arguments)
        entry["build_config"] = data["build_config"]
    return entry


def _keras_layer_config(class_name: str, config: dict) -> dict:
    out = {}
    for key, value in config.items():
        if key == "input_shape":  # the model's InputLayer holds the shape
            continue
        if key == "dtype" and class_name != "InputLayer":
            value = _keras_object("keras", {"class_name": "DTypePolicy", "config": {"name": value}})
        elif key.endswith("_initializer") and isinstance(value, dict):
            value = _keras_object("keras.initializers", value)
        elif key.endswith("_regularizer") and isinstance(value, dict):
            value = _keras_object("keras.regularizers", value)
        elif key.endswith("_constraint") and isinstance(value, dict):
            value = _keras_constraint(value)
        elif key in ("layer", "backward_layer", "cell") and isinstance(value, dict):
            value = _keras_entry(None, value)
        elif key == "cells" and isinstance(value, list):
            value = [_keras_entry(None, cell) for cell in value]
        out[key] = value
    return out


def _keras_object(module: str, value: dict) -> dict:
    return {"module": module, **value, "registered_name": None}


def _keras_constraint(value: dict) -> dict:
    """Keras's form of a constraint config; a registered class by its registered name (a plain
    function's config is Keras's already)."""
    if value.get("class_name") == "function":
        return value
    registered = value.get("registered_name")
    if registered:
        return {"module": None, **value, "registered_name": registered}
    return _keras_object("keras.constraints", value)


def _keras_sequential(model: Sequential, config: dict) -> dict:
    by_name = {layer.name: layer for layer in model.layers}
    layers = [_keras_entry(by_name.get(d["config"].get("name")), d) for d in config["layers"]]
    return {**config, "layers": layers}


def _keras_functional(model: Model, config: dict) -> dict:
    by_name = {layer.name: layer for layer in model.layers}
    functional = {name for name, layer in by_name.items() if _is_functional(type(layer))}
    layers = []
    for data in config["layers"]:
        layer = by_name[data["name"]]
        calls = [_keras_call(layer, call) for call in data["inbound_nodes"]]
        layers.append({**_keras_entry(layer, data), "name": data["name"], "inbound_nodes": calls})
    return {
        **config,
        "layers": layers,
        "input_layers": _keras_io(model.input, config["input_layers"], functional),
        "output_layers": _keras_io(model.output, config["output_layers"], functional),
    }


def _keras_call(layer, call: dict) -> dict:
    """Keras passes a recurrent layer's initial states as ``initial_state=``, not in a list."""
    args = call["args"]
    if isinstance(layer, SequenceLayer) and len(args) == 1 and isinstance(args[0], list):
        x, *states = args[0]
        return {"args": [x], "kwargs": {**call["kwargs"], "initial_state": states}}
    return call


def _keras_io(given, refs, functional: set):
    """A single tensor is one ``[name, node, index]`` triple in Keras's config; a nested
    Functional model's calls count from 1 there (``io_from_keras``)."""
    refs = _map_refs(refs, functional, 1)
    single = not isinstance(given, (list, tuple, dict))
    return refs[0] if single and isinstance(refs, list) and len(refs) == 1 else refs


# ---- weights in Keras's h5 layout --------------------------------------------------------------
def _weight_groups(model: Model) -> list[tuple[str, str, list]]:
    """``(h5 group, owner name, variables)`` for each layer Keras's saver visits, in its order."""
    groups = []
    _visit(model, "", groups, set())
    return groups


def _visit(layer, path: str, groups: list, seen: set) -> None:
    if id(layer) in seen:  # a shared layer is saved once, where it is first met
        return
    seen.add(id(layer))
    if isinstance(layer, _RECURRENT):  # Keras keeps the weights on the layer's cell
        groups.append((_join(path, "vars"), layer.name, []))
        conv = isinstance(layer, (ConvLSTM1D, ConvLSTM2D))
        cell = "conv_lstm_cell" if conv else f"{snake_case(type(layer).__name__)}_cell"
        groups.append((_join(path, "cell", "vars"), cell, layer.weights))
        return
    if hasattr(layer, "sublayer_weights"):  # a built-in layer keeping Keras's sublayers' weights
        groups.append((_join(path, "vars"), layer.name, []))
        for name, variables in layer.sublayer_weights.items():
            groups.append((_join(path, name, "vars"), name, variables))
        return
    children = _children(layer)
    own = layer._weights if layer._runs_call else ([] if children else layer.weights)
    groups.append((_join(path, "vars"), layer.name, own))
    for attr, child in children:
        if isinstance(child, list):
            used: dict[str, int] = {}
            for sub in child:
                _visit(sub, _join(path, attr, _unique(_keras_snake(sub), used)), groups, seen)
        else:
            _visit(child, _join(path, attr), groups, seen)


def _children(layer) -> list[tuple[str, object]]:
    if layer._runs_call:  # a call() layer or subclassed model: its attributes, as Keras walks
        return _attribute_children(layer)
    if isinstance(layer, Model):
        return [("layers", layer.layers)]
    if isinstance(layer, Bidirectional):
        return [("backward_layer", layer.backward_layer), ("forward_layer", layer.forward_layer)]
    if isinstance(layer, TimeDistributed):
        return [("layer", layer.layer)]
    return []


def _attribute_children(layer) -> list[tuple[str, object]]:
    """Keras's saver walks a layer's public attributes in sorted order (and a model's
    ``layers``): a layer, or a list or dict of layers (their values), each."""
    found = {}
    for attr, value in vars(layer).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, Layer):
            found[attr] = value
        elif isinstance(value, (list, tuple, dict)):
            items = value.values() if isinstance(value, dict) else value
            sublayers = [item for item in items if isinstance(item, Layer)]
            if sublayers:
                found[attr] = sublayers
    if isinstance(layer, Model):
        found["layers"] = layer.layers
    return sorted(found.items())


def _keras_snake(layer) -> str:
    name = type(layer).__name__
    return snake_case("Functional" if name == "Model" else name)


def _unique(name: str, used: dict[str, int]) -> str:
    """Keras's names within one list: 'dense', 'dense_1', 'dense_2', ..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _join(*parts: str) -> str:
    return "/".join(part for part in parts if part)


def _h5_bytes(h5py, model: Model, optimizer_state: list | None = None) -> bytes:
    """Keras's h5 layout of the model's weights, and of the optimizer's variables if given."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        for group_path, owner, variables in _weight_groups(model):
            group = f.create_group(group_path)
            group.attrs["name"] = owner
            for i, var in enumerate(variables):
                group.create_dataset(str(i), data=var.value)
        if optimizer_state is not None:
            group = f.create_group(_OPTIMIZER_GROUP)
            group.attrs["name"] = model.optimizer.name
            for i, array in enumerate(optimizer_state):
                group.create_dataset(str(i), data=array)
    return buffer.getvalue()


def _load_h5(h5py, model: Model, source, path: str) -> None:
    """Check every array of an h5 weights file against ``model``, then assign them all."""
    with _h5_errors(path), h5py.File(source, "r") as f:
        _self_contained_bytes(h5py, f, _failure(path))
        variables, arrays = _read_h5(h5py, f, model, path)
    assign_all(variables, arrays, f"Cannot load '{path}':", lambda var: var.path)


def _h5_stored_bytes(h5py, source, path: str) -> int:
    """The bytes an h5 file's datasets really hold, checked to keep their data inside it."""
    with _h5_errors(path), h5py.File(source, "r") as f:
        return _self_contained_bytes(h5py, f, _failure(path))


@contextlib.contextmanager
def _h5_errors(path: str):
    """h5py's errors on a damaged file (OSError, KeyError, ...) as a FileFormatError."""
    try:
        yield
    except FileFormatError:
        raise
    except Exception as error:
        raise FileFormatError(
            f"Cannot load '{path}': its weights are not a readable HDF5 file "
            f"({type(error).__name__}: {error})"
        ) from None


def _self_contained_bytes(h5py, f, fail) -> int:
    """The bytes the datasets of ``f`` really hold, once all its links and datasets are checked,
    before any data is read: a link (soft, external), or a dataset whose data is in another file
    (external storage, virtual) or not stored at all, is refused (a crafted file could make
    the weights hold any local file)."""
    total, seen, groups = 0, {f.id}, [f]
    while groups:
        group = groups.pop()
        for name in group:
            where = f"{group.name.rstrip('/')}/{name}"
            link = group.get(name, getlink=True)
            if not isinstance(link, h5py.HardLink):
                raise fail(f"'{where}' is {_link_kind(h5py, link)}; weights files hold no links")
            item = group[name]
            if item.id in seen:
                continue
            seen.add(item.id)
            if isinstance(item, h5py.Group):
                groups.append(item)
            elif isinstance(item, h5py.Dataset):
                total += _dataset_bytes(item, where, fail)
    return total


def _link_kind(h5py, link) -> str:
    if isinstance(link, h5py.ExternalLink):
        return f"an external link to '{link.path}' in the file '{link.filename}'"
    if isinstance(link, h5py.SoftLink):
        return f"a soft link to '{link.path}'"
    return f"a link of kind {type(link).__name__}"


def _dataset_bytes(data, where: str, fail) -> int:
    """The bytes ``data`` really holds; refused if they are not all inside the file."""
    if data.id.get_create_plist().get_external_count() > 0:
        raise fail(f"dataset '{where}' keeps its data in the external file {data.external[0][0]!r}")
    if data.is_virtual:
        raise fail(f"dataset '{where}' is a virtual dataset, mapping data from other files")
    nbytes = math.prod(data.shape or ()) * data.dtype.itemsize
    stored = data.id.get_storage_size()
    if inflates_too_much(nbytes, stored):
        raise fail(
            f"dataset '{where}' declares {data.dtype} {data.shape} ({nbytes} bytes) but stores "
            f"only {stored} bytes"
        )
    return backed_size(nbytes, stored)


def _read_h5(h5py, f, model: Model, path: str) -> tuple[list, list]:
    fail = _failure(path)
    variables, arrays, used = [], [], set()
    for group_path, owner, owned in _weight_groups(model):
        group = f.get(group_path)
        if not isinstance(group, h5py.Group):
            if owned or group is not None:
                raise fail(f"it has no weights for layer '{owner}' (no group '{group_path}')")
            continue
        if set(group.keys()) != {str(i) for i in range(len(owned))}:
            raise fail(
                f"layer '{owner}' has {len(group)} weights in '{group_path}', "
                f"the model expects {len(owned)}"
            )
        for i, var in enumerate(owned):
            arrays.append(_read_array(h5py, group, f"{group_path}/{i}", var, fail))
            variables.append(var)
            used.add(f"{group_path}/{i}")
    extra = sorted(set(_datasets(h5py, f)) - used)
    if extra:
        raise fail(f"it holds weights the model has no place for: {extra[:3]}")
    return variables, arrays


def _read_array(h5py, group, name: str, var, fail) -> np.ndarray:
    """The array at ``name`` if it has ``var``'s shape and dtype."""
    data = group[name.rsplit("/", 1)[1]]
    if not isinstance(data, h5py.Dataset):
        raise fail(f"'{name}' is a group, but weight '{var.path}' is an array")
    if data.shape != var.shape or data.dtype != var.dtype:
        raise fail(
            f"'{name}' holds {data.dtype} {data.shape}, but weight '{var.path}' is "
            f"{var.dtype} {var.shape}"
        )
    return data[()]


def _datasets(h5py, f) -> list[str]:
    """The names of the layers' datasets (the optimizer's are not read)."""
    names = []
    for top in ("layers", "vars"):
        if isinstance(f.get(top), h5py.Group):
            f[top].visit(lambda name, top=top: names.append(f"{top}/{name}"))
        elif top in f:
            names.append(top)
    return [name for name in names if isinstance(f[name], h5py.Dataset)]


api.register_model_format(".keras", "Keras 3's format", save_keras_model, load_keras_model)
api.register_weights_format(".weights.h5", "Keras's format", save_keras_weights, load_keras_weights)
