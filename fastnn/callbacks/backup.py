"""BackupAndRestore: the training state in one file, so an interrupted fit resumes exactly."""

from __future__ import annotations

import os

import numpy as np

from fastnn.callbacks.base import Callback, is_int


class BackupAndRestore(Callback):
    """Back up the training state so that a ``fit`` interrupted by an error resumes where the
    last backup left it when run again with this callback (Keras 3).

    Each backup replaces ``backup_dir/latest.fastnn`` atomically: the weights, the optimizer's
    state, the layers' random generators, fit's shuffle seed, and the epoch (and, with an
    integer ``save_freq``, how many of its batches were done). The next ``fit`` restores them
    at ``on_train_begin`` and starts at that epoch, so it ends with the weights an uninterrupted
    run would have. Unlike Keras, which repeats a partly done epoch from its first batch,
    fastnn skips the batches the backup had done (that epoch's logged metrics then average the
    remaining batches only). With ``double_checkpoint`` the previous backup is kept as
    ``latest.fastnn.bkp`` and used if the latest cannot be read. ``delete_checkpoint`` removes
    the backup when fit ends normally (and the folder, once empty).
    """

    FILE_FORMAT = "fastnn.backup"

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
                epoch, batch = _restore_training_state(self.model, path, self.FILE_FORMAT)
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
        _save_training_state(self.model, self._path, self.FILE_FORMAT, epoch, batch)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        for path in (self._path, self._previous_path):
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.backup_dir) and not os.listdir(self.backup_dir):
            os.rmdir(self.backup_dir)


def _save_training_state(model, path: str, file_format: str, epoch: int, batch: int) -> None:
    """Write the weights, optimizer state, random states, shuffle seed and the position in
    training to one ``.fastnn``-style zip (JSON manifest and ``.npy`` arrays), atomically."""
    from fastnn.saving import native

    arrays = {}
    manifest = {"format": file_format, "version": native.VERSION, "epoch": epoch, "batch": batch}
    manifest["weights"] = native._add_arrays(arrays, "weights", [v.value for v in model.weights])
    manifest["names"] = [v.path for v in model.weights]
    optimizer = model.optimizer
    manifest["optimizer_variables"] = native._optimizer_variables(model, optimizer)
    manifest["optimizer_state"] = (
        None
        if optimizer is None
        else native._add_arrays(arrays, "optimizer_state", optimizer.get_state())
    )
    manifest["training_state"] = {
        "shuffle_seed": getattr(model, "_shuffle_seed", None),
        # in layer order: a model built again in a new process names its layers otherwise
        "random_states": [
            state for _, layer in native._all_layers(model) if (state := layer.get_random_state())
        ],
    }
    native._write_zip(path, manifest, arrays, overwrite=True)


def _restore_training_state(model, path: str, file_format: str) -> tuple[int, int]:
    """Read what ``_save_training_state`` wrote into ``model``; everything is checked before
    anything changes. Returns (epoch, batch)."""
    from fastnn.layers.base import assign_all
    from fastnn.saving import native

    with native._open(path) as archive:
        manifest = archive.manifest(file_format)
        position = [archive.field(manifest, key, int) for key in ("epoch", "batch")]
        if min(position) < 0:
            raise archive.error(f"the epoch and batch {position} are negative")
        stored = native._stored_order(manifest, model)
        weights = archive.arrays(manifest, "weights", [v.value for v in stored])
        optimizer_state = None
        if manifest.get("optimizer_state") is not None and model.optimizer is not None:
            optimizer_state = native._optimizer_state(archive, manifest, model, stored)
        training = archive.field(manifest, "training_state", dict)
        random_states = _checked_random_states(archive, training.get("random_states"), model)
        shuffle_seed = training.get("shuffle_seed")
        if shuffle_seed is not None and not (
            type(shuffle_seed) is int and 0 <= shuffle_seed < 2**63  # noqa: E721 (no bools)
        ):
            raise archive.error(f"the shuffle seed {shuffle_seed!r:.40} is not an integer")
    assign_all(stored, weights, f"Model '{model.name}'", lambda var: var.path)
    if optimizer_state is not None:
        model.optimizer.set_state(optimizer_state)
    for layer, state in random_states:
        layer.set_random_state(state)
    model._shuffle_seed = shuffle_seed
    return position[0], position[1]


def _checked_random_states(archive, states, model) -> list:
    """(layer, state) for each layer that draws random numbers, in order; checked."""
    from fastnn.saving import native

    drawing = [layer for _, layer in native._all_layers(model) if layer.get_random_state()]
    if not isinstance(states, list) or len(states) != len(drawing):
        raise archive.error(
            f"it holds random states for {len(states) if isinstance(states, list) else '?'} "
            f"layers, the model has {len(drawing)} layers that draw random numbers"
        )
    for layer, state in zip(drawing, states):
        try:
            np.random.default_rng().bit_generator.state = state
        except Exception as error:  # TypeError, ValueError, KeyError, OverflowError, ...
            raise archive.error(
                f"layer '{layer.name}' has an invalid random state: {error}"
            ) from None
    return list(zip(drawing, states))
