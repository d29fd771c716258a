"""TensorBoard: Keras 3's event files, written by ``fastnn.tensorboard_events``."""

from __future__ import annotations

import os
import time
import warnings

from fastnn import tensorboard_events
from fastnn.callbacks.base import Callback, is_int


class TensorBoard(Callback):
    """Write TensorBoard event files: each epoch's logs as scalars, weight histograms, and
    batch-level scalars with ``update_freq="batch"`` or an integer (Keras 3's tags and steps).

    Training logs go to ``log_dir/train`` (``epoch_loss``, ``epoch_learning_rate``, ...,
    ``batch_loss`` at the count of batches since fit began, ``<weight path>/histogram`` every
    ``histogram_freq`` epochs, and with ``write_graph`` the model's JSON under the tag ``keras``
    for TensorBoard's conceptual graph); validation logs go to ``log_dir/validation``
    (``epoch_val_loss`` written as ``epoch_loss``, and ``evaluation_loss_vs_iterations`` at the
    optimizer's step count). The files are written by ``fastnn.tensorboard_events``, without
    tensorflow. fastnn draws no op-level graph, does not profile (``profile_batch``), writes
    no weight images (``write_images``) and no projector checkpoints (``embeddings_freq``,
    ``embeddings_metadata``): those arguments are accepted for Keras's signature and warn
    when they ask for something.
    """

    main_rank_only = True  # under DataParallel, rank 0 alone prints / writes

    def __init__(
        self,
        log_dir="logs",
        histogram_freq=0,
        write_graph=True,
        write_images=False,
        write_steps_per_second=False,
        update_freq="epoch",
        profile_batch=0,
        embeddings_freq=0,
        embeddings_metadata=None,
    ):
        super().__init__()
        if update_freq == "batch":
            update_freq = 1
        if update_freq != "epoch" and not (is_int(update_freq) and update_freq > 0):
            raise ValueError(
                "TensorBoard: update_freq must be 'epoch', 'batch' or a positive integer; "
                f"got update_freq={update_freq!r}"
            )
        if not (is_int(histogram_freq) and histogram_freq >= 0):
            raise ValueError(
                "TensorBoard: histogram_freq must be an integer >= 0; "
                f"got histogram_freq={histogram_freq!r}"
            )
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = histogram_freq
        self.write_graph, self.write_images = write_graph, write_images
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = update_freq
        self.profile_batch = profile_batch
        self.embeddings_freq, self.embeddings_metadata = embeddings_freq, embeddings_metadata
        for asked, what in (
            (write_images, "weight images (write_images)"),
            (profile_batch not in (0, "0", None), "profiles (profile_batch)"),
            (embeddings_freq, "embedding projector checkpoints (embeddings_freq)"),
        ):
            if asked:
                warnings.warn(f"TensorBoard: fastnn does not write {what}", stacklevel=2)
        self._writers = {}
        self._global_train_batch = 0
        self._in_fit = False

    def _writer(self, kind: str):
        """The event writer of ``train`` or ``validation``, made on first use."""
        if kind not in self._writers:
            self._writers[kind] = tensorboard_events.EventFileWriter(
                os.path.join(self.log_dir, kind)
            )
        return self._writers[kind]

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    def set_model(self, model) -> None:
        """As Keras: each fit/evaluate/predict starts new event files; the model's JSON is
        written for the conceptual graph (Sequential and Functional models only)."""
        super().set_model(model)
        self._close_writers()
        if self.write_graph and type(model).__module__ == "fastnn.models":
            self._write_model_json(model)

    def _write_model_json(self, model) -> None:
        try:
            text = model.to_json()
        except Exception as error:  # as Keras: a model that cannot be serialized is skipped
            warnings.warn(f"Model failed to serialize as JSON. Ignoring... {error}", stacklevel=3)
            return
        value = tensorboard_events.text_tensor_value("keras", text, "graph_keras_model", b"1")
        self._writer("train").add_summary(0, value)

    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        self._in_fit = True

    def on_train_end(self, logs=None):
        self._in_fit = False
        self._close_writers()

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        if self.write_steps_per_second:
            self._batch_start_time = time.time()

    def on_train_batch_end(self, batch, logs=None):
        step = self._global_train_batch
        if self.update_freq == "epoch" or step % self.update_freq:
            return
        scalars = {}
        if self.write_steps_per_second:
            elapsed = time.time() - self._batch_start_time
            scalars["batch_steps_per_second"] = 1.0 / max(elapsed, 1e-9)
        scalars.update((f"batch_{name}", value) for name, value in _scalars(logs))
        self._writer("train").add_scalars(step, scalars)

    def on_epoch_begin(self, epoch, logs=None):
        if self.write_steps_per_second:
            self._epoch_start_iterations = self.model.optimizer.iterations
            self._epoch_start_time = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = {f"epoch_{k}": v for k, v in _scalars(logs) if not k.startswith("val_")}
        val = {f"epoch_{k[4:]}": v for k, v in _scalars(logs) if k.startswith("val_")}
        if self.model.optimizer is not None:
            train["epoch_learning_rate"] = float(self.model.optimizer.learning_rate)
        if self.write_steps_per_second:
            steps = self.model.optimizer.iterations - self._epoch_start_iterations
            elapsed = max(time.time() - self._epoch_start_time, 1e-9)
            train["epoch_steps_per_second"] = steps / elapsed
        self._writer("train").add_scalars(epoch, train)
        self._writer("validation").add_scalars(epoch, val)
        if self.histogram_freq and epoch % self.histogram_freq == 0:
            self._write_histograms(epoch)

    def _write_histograms(self, epoch: int) -> None:
        values = [
            tensorboard_events.histogram_value(
                f"{weight.path.replace(':', '_')}/histogram", weight.numpy()
            )
            for layer in self.model.layers
            for weight in layer.weights
        ]
        self._writer("train").add_summary(epoch, *values)

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            scalars = {f"evaluation_{k}_vs_iterations": v for k, v in _scalars(logs or {})}
            self._writer("validation").add_scalars(optimizer.iterations, scalars)
        if not self._in_fit:
            self._close_writers()


def _scalars(logs: dict):
    """``(name, float)`` for each log TensorBoard can show as a scalar (arrays of one value
    included; a per-class array is left out)."""
    for name, value in (logs or {}).items():
        if isinstance(value, (int, float)):
            yield name, float(value)
        elif getattr(value, "size", None) == 1:
            yield name, float(value.reshape(()) if hasattr(value, "reshape") else value)
