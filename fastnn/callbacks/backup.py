"""BackupAndRestore: the training state in one file, so an interrupted fit resumes exactly."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from fastnn.callbacks.base import Callback, is_int
from fastnn.saving.files import FileFormatError, atomic_write, read_entry

MANIFEST = "fastnn.json"  # as .fastnn files: load_model names the format it found
VERSION = 1
#: Caps on what a backup's entries may inflate to before they are read.
MAX_MANIFEST_BYTES = 16 * 2**20
NPY_HEADER_BYTES = 2**16


class BackupAndRestore(Callback):
    """Back up the training state so that a ``fit`` interrupted by an error resumes where the
    last backup left it when run again with this callback (Keras 3).

    Each backup replaces ``backup_dir/latest.fastnn`` atomically (a zip of a JSON manifest and
    ``.npy`` arrays, as fastnn's model files, of format ``fastnn.backup``): the weights, the
    optimizer's state, the layers' random generators, fit's shuffle seed, and the epoch (and,
    with an integer ``save_freq``, how many of its batches were done). A PyDataset or generator
    that shuffles itself is not rewound to the same order. The next ``fit`` restores them
    at ``on_train_begin`` and starts at that epoch, so it ends with the weights an uninterrupted
    run would have. Unlike Keras, which repeats a partly done epoch from its first batch,
    fastnn skips the batches the backup had done (that epoch's logged metrics then average the
    remaining batches only). With ``double_checkpoint`` the previous backup is kept as
    ``latest.fastnn.bkp`` and used if the latest cannot be read. ``delete_checkpoint`` removes
    the backup when fit ends normally (and the folder, once empty).
    """

    main_rank_only = True  # under DataParallel, rank 0 alone prints / writes

    def __init__(
        self, backup_dir, save_freq="epoch", double_checkpoint=False, delete_checkpoint=True
    ):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if save_freq != "epoch" and not (is_int(save_freq) and save_freq > 0):
            raise ValueError(
                "Invalid value for argument `save_freq`. "
                f"Received: save_freq={save_freq!r}. "
                "Expected either 'epoch' or a positive integer value."
            )
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.double_checkpoint, self.delete_checkpoint = double_checkpoint, delete_checkpoint
        self._path = os.path.join(self.backup_dir, "latest.fastnn")
        self._previous_path = self._path + ".bkp"
        self._batches_since_backup = 0
        self._epoch = 0

    def on_train_begin(self, logs=None):
        self._batches_since_backup = 0
        for path in (self._path, self._previous_path):
            if not os.path.exists(path):
                continue
            if not getattr(self.model, "built", True):
                raise ValueError(
                    "To use the BackupAndRestore callback, you model must be built before you "
                    f"call `fit()`. Model {self.model.name} is unbuilt. You can build it "
                    "beforehand by calling it on a batch of data."
                )
            try:
                epoch, batch = restore_training_state(self.model, path)
            except (OSError, ValueError):
                if path == self._path and os.path.exists(self._previous_path):
                    continue  # as Keras: a backup that cannot be read falls back to the previous
                raise
            self.model._resume_at = (epoch, batch)
            return

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch":
            return
        self._batches_since_backup += 1
        if self._batches_since_backup >= self.save_freq:
            self._batches_since_backup = 0
            self._back_up(self._epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        if self.save_freq == "epoch":
            self._back_up(epoch + 1, 0)

    def _back_up(self, epoch: int, batch: int) -> None:
        os.makedirs(self.backup_dir, exist_ok=True)
        if self.double_checkpoint and os.path.exists(self._path):
            os.replace(self._path, self._previous_path)
        save_training_state(self.model, self._path, epoch, batch)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        for path in (self._path, self._previous_path):
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.backup_dir) and not os.listdir(self.backup_dir):
            os.rmdir(self.backup_dir)


def save_training_state(model, path: str, epoch: int, batch: int) -> None:
    """Write the weights, optimizer state, random states, shuffle seed and the position in
    training to one zip of a JSON manifest and ``.npy`` arrays (never pickle), atomically."""
    optimizer = model.optimizer
    arrays = {
        "weights": model.get_weights(),
        "optimizer": [] if optimizer is None else optimizer.get_state(),
    }
    manifest = {
        "format": "fastnn.backup",
        "version": VERSION,
        "epoch": epoch,
        "batch": batch,
        "weight_paths": [v.path for v in model.weights],
        "optimizer_built": bool(optimizer is not None and optimizer.built),
        "shuffle_seed": getattr(model, "_shuffle_seed", None),
        # in layer order: a model built again in a new process names its layers otherwise
        "random_states": [layer.get_random_state() for layer in _drawing_layers(model)],
    }
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(MANIFEST, json.dumps(manifest))
        for group, values in arrays.items():
            for i, value in enumerate(values):
                value = np.asarray(value)
                with zf.open(f"{group}/{i}.npy", "w", force_zip64=value.nbytes > 2**30) as out:
                    np.lib.format.write_array(out, value, allow_pickle=False)


def restore_training_state(model, path: str) -> tuple[int, int]:
    """Read what ``save_training_state`` wrote into ``model``; every array and state is
    checked against the model before anything is assigned. Returns (epoch, batch)."""

    def fail(what: str) -> FileFormatError:
        return FileFormatError(f"Cannot load backup '{path}': {what}")

    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        raise fail(f"not a zip file ({error})") from None
    with archive as zf:
        manifest = _manifest(zf, fail)
        weights = _arrays(zf, "weights", model.get_weights(), fail)
        optimizer, optimizer_state = model.optimizer, None
        if optimizer is not None and manifest.get("optimizer_built"):
            optimizer.build(model.trainable_weights)  # as fit's first step would
            optimizer_state = _arrays(zf, "optimizer", optimizer.variables, fail)
        drawing = _drawing_layers(model)
        states = manifest.get("random_states")
        if not isinstance(states, list) or len(states) != len(drawing):
            raise fail(f"its random states do not match the model's {len(drawing)} random layers")
        for layer, state in zip(drawing, states):
            try:
                np.random.default_rng().bit_generator.state = state
            except Exception as error:  # TypeError, ValueError, KeyError, OverflowError, ...
                raise fail(f"layer '{layer.name}' has an invalid random state: {error}") from None
    model.set_weights(weights)
    if optimizer_state is not None:
        optimizer.set_state(optimizer_state)
    for layer, state in zip(drawing, states):
        layer.set_random_state(state)
    model._shuffle_seed = manifest["shuffle_seed"]
    return manifest["epoch"], manifest["batch"]


def _manifest(zf: zipfile.ZipFile, fail) -> dict:
    try:
        manifest = json.loads(read_entry(zf, MANIFEST, MAX_MANIFEST_BYTES, fail))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise fail(f"'{MANIFEST}' is not valid JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "fastnn.backup":
        raise fail("it is not a fastnn backup")
    if manifest.get("version") != VERSION:
        raise fail(f"format version {manifest.get('version')!r} is not supported")
    for key in ("epoch", "batch"):
        if type(manifest.get(key)) is not int or manifest[key] < 0:
            raise fail(f"its {key} is not a count: {manifest.get(key)!r:.40}")
    seed = manifest.get("shuffle_seed")
    if seed is not None and not (type(seed) is int and 0 <= seed < 2**63):
        raise fail(f"the shuffle seed {seed!r:.40} is not an integer")
    return manifest


def _arrays(zf: zipfile.ZipFile, group: str, targets: list, fail) -> list[np.ndarray]:
    """The arrays ``group/<i>.npy``, one per target and of its shape and dtype."""
    stored = sum(name.startswith(f"{group}/") for name in zf.namelist())
    if stored != len(targets):
        raise fail(f"it holds {stored} {group} arrays, the model needs {len(targets)}")
    arrays = []
    for i, target in enumerate(targets):
        name, target = f"{group}/{i}.npy", np.asarray(target)
        data = read_entry(zf, name, target.nbytes + NPY_HEADER_BYTES, fail)
        try:
            stream = io.BytesIO(data)
            version = np.lib.format.read_magic(stream)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }[version]
            shape, _, dtype = read_header(stream)
            if shape != target.shape or dtype != target.dtype:
                raise fail(
                    f"'{name}' holds {dtype} {shape}, the model has {target.dtype} {target.shape}"
                )
            stream.seek(0)
            arrays.append(np.lib.format.read_array(stream, allow_pickle=False))
        except FileFormatError:
            raise
        except Exception as error:  # a malformed .npy header or body
            raise fail(f"'{name}' is not a valid .npy array ({error})") from None
    return arrays


def _drawing_layers(model) -> list:
    """The layers inside ``model``, at any depth and in order, that draw random numbers."""
    found = []
    for _, layer in model.sublayers():
        if layer.get_random_state() is not None:
            found.append(layer)
        found += _drawing_layers(layer)
    return found
