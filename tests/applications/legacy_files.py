"""Keras 2's legacy HDF5 weights files, written with h5py as Keras 2 wrote them: the root lists
``layer_names``; each layer's group lists ``weight_names`` ('<layer>/<weight>:0', so each array
sits in a subgroup named after its layer), trainable weights first."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def write_legacy_weights(path: Path, layers: list, chunk: int | None = None) -> Path:
    """``layers``: ``[(layer name, [(weight name, array), ...]), ...]`` in the model's order;
    ``chunk``: split ``layer_names`` into attributes of that many names, as Keras does when a
    list outgrows an HDF5 object header."""
    with h5py.File(path, "w") as f:
        names = [name.encode("utf8") for name, _ in layers]
        if chunk is None:
            f.attrs["layer_names"] = names
        else:
            for i in range(0, len(names), chunk):
                f.attrs[f"layer_names{i // chunk}"] = names[i : i + chunk]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name, weights in sorted(layers, key=lambda layer: layer[0]):
            group = f.create_group(name)
            group.attrs["weight_names"] = [w.encode("utf8") for w, _ in weights]
            for weight_name, array in weights:
                group.create_dataset(weight_name, data=np.asarray(array))
    return path


def legacy_layers(model) -> list:
    """A fastnn model's layers and weights as Keras 2 named them."""
    return [
        (
            layer.name,
            [
                (f"{w.path}:0", w.value)
                for w in layer.trainable_weights + layer.non_trainable_weights
            ],
        )
        for layer in model.layers
    ]


def write_model_weights(model, path: Path, chunk: int | None = None) -> Path:
    """``model``'s weights as a Keras 2 ``.h5`` weights file."""
    return write_legacy_weights(path, legacy_layers(model), chunk)
