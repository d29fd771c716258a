"""DataParallel: the same model on every rank, each global batch split among the ranks, the
gradients averaged with one MPI allreduce per step. The trainer calls the hooks here (``prepare``,
``shard``, ``scale_loss_gradients``, ``reduce_gradients``, ``reduce_logs``, ``gather``); the
layers and kernels know nothing of it but BatchNormalization's ``cross_replica_sum``.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from fastnn import seeding
from fastnn.distribution import world
from fastnn.layers import normalization
from fastnn.ops.tensor import weights_written


class DataParallel:
    """Data parallelism over the MPI ranks (Keras 3's ``keras.distribution.DataParallel``).

    ``devices``: the ranks taking part, as ``list_devices()`` names them (``"cpu:0"`` ...
    ``"cpu:N-1"``, one per rank of the job); None is all of them. A run on a subset of the
    ranks is not supported, nor Keras's ``device_mesh``. ``auto_shard_dataset`` must stay True:
    every rank is given the same data and takes its part of each global batch.
    ``sync_batchnorm``: BatchNormalization layers compute their training statistics over the
    global batch (an allreduce of the sums in the forward and the backward) instead of over
    each rank's part.
    """

    def __init__(
        self,
        device_mesh=None,
        devices=None,
        auto_shard_dataset: bool = True,
        *,
        sync_batchnorm: bool = False,
    ):
        if device_mesh is not None:
            raise ValueError(
                "DataParallel: `device_mesh` is not supported; fastnn spreads the batch over "
                "the MPI ranks of the job (pass devices=None or list_devices())"
            )
        if auto_shard_dataset is not True:
            raise ValueError(
                "DataParallel: `auto_shard_dataset` must be True: fastnn gives every rank the "
                "same data and splits each global batch among the ranks (per-rank datasets are "
                f"not supported); got auto_shard_dataset={auto_shard_dataset!r}"
            )
        world.initialize()
        expected = list_devices()
        if devices is not None and list(devices) != expected:
            raise ValueError(
                "DataParallel: `devices` must be None or every rank of the MPI job, one device "
                f"per rank, as list_devices() returns; expected {expected}, got {list(devices)!r}"
            )
        self.devices = expected
        self.sync_batchnorm = bool(sync_batchnorm)
        self.comm = world.communicator()
        self.rank, self.size = world.rank(), world.size()
        self._share = 1.0  # this rank's rows / the global batch's, set by shard()
        self._buffers: dict = {}  # flat gradient buffer per list of variables

    def __repr__(self) -> str:
        return (
            f"DataParallel(ranks={self.size}, rank={self.rank}, "
            f"sync_batchnorm={self.sync_batchnorm})"
        )

    @contextlib.contextmanager
    def scope(self):
        """``with dp.scope():`` this distribution is in effect inside (Keras's scope)."""
        previous = _current.distribution
        set_distribution(self)
        try:
            yield self
        finally:
            set_distribution(previous)

    # ---- collectives a user may call (Horovod's habits) ----------------------------------------
    def allreduce(self, value, average: bool = True) -> np.ndarray:
        """The sum (or mean) of ``value`` over the ranks, as a float64 array."""
        buffer = np.array(value, dtype=np.float64)
        if self.comm is not None:
            self.comm.Allreduce(world._world.mpi.IN_PLACE, buffer, op=world._world.mpi.SUM)
        return buffer / self.size if average else buffer

    def broadcast_model(self, model) -> None:
        """Rank 0's weights and optimizer state on every rank (fit does it at its start)."""
        if self.comm is None:
            return
        for variable in model.weights:
            self._broadcast_array(variable.value)
        weights_written()
        optimizer = getattr(model, "optimizer", None)
        if optimizer is None:
            return
        if self.comm.bcast(bool(optimizer.built), root=0):  # rank 0's says for every rank
            optimizer.build(model.trainable_weights)  # nothing if built
            state = optimizer.get_state()
            for array in state:
                self._broadcast_array(array)
            optimizer.set_state(state)

    def share_statistics(self, model) -> None:
        """Rank 0's non-trainable weights (BatchNormalization's moving statistics, which each
        rank keeps from its own part of the batches without sync_batchnorm) on every rank:
        before evaluating and predicting and at the end of fit, so every rank holds the model
        rank 0 saves. Training's forward uses batch statistics, so training is unchanged."""
        if self.sync_batchnorm or self.comm is None:  # the same on every rank already
            return
        for variable in model.non_trainable_weights:
            self._broadcast_array(variable.value)
        weights_written()

    def _broadcast_array(self, array: np.ndarray) -> None:
        if array.flags.c_contiguous:
            self.comm.Bcast(array, root=0)
        else:
            copy = np.ascontiguousarray(array)
            self.comm.Bcast(copy, root=0)
            array[...] = copy

    # ---- the trainer's hooks -------------------------------------------------------------------
    def prepare(self, model) -> None:
        """At the start of fit: rank 0's weights, optimizer state, shuffle seed, resume point
        and random generator on every rank, so every rank starts equal and draws the same
        batches."""
        if model._overrides("train_step") or model._overrides("test_step"):
            raise NotImplementedError(
                f"DataParallel: model '{model.name}' writes its own train_step/test_step; "
                "fastnn splits batches and averages gradients in its built-in step only "
                "(override compute_loss instead, or run without a distribution)"
            )
        self.broadcast_model(model)
        model._shuffle_seed, model._resume_at = self.comm.bcast(
            (getattr(model, "_shuffle_seed", None), getattr(model, "_resume_at", None)), root=0
        )
        if self.rank == 0 and seeding.root_state() is None:
            seeding.make_rng()  # makes the process-wide generator, whose state goes to all
        seeding.set_root_state(self.comm.bcast(seeding.root_state(), root=0))

    def shard(self, model, xs: list, ys: list, sample_weight):
        """This rank's rows of a global batch (contiguous, sizes differing by at most one), and
        its share of the batch noted for ``scale_loss_gradients``/``reduce_gradients``."""
        rows = len(xs[0])
        low, high = rows * self.rank // self.size, rows * (self.rank + 1) // self.size
        if rows < self.size and (self.sync_batchnorm or model._output_metrics is None):
            why = "with sync_batchnorm=True" if self.sync_batchnorm else "in the first batch"
            raise ValueError(
                f"DataParallel: a global batch of {rows} samples cannot give each of the "
                f"{self.size} ranks a sample ({why}); use a batch_size of at least {self.size} "
                "(batch_size is the global batch, split among the ranks)"
            )
        self._share = (high - low) / rows if rows else 0.0
        part = slice(low, high)
        xs = [x[part] for x in xs]
        ys = [None if y is None else y[part] for y in ys]
        return xs, ys, None if sample_weight is None else sample_weight[part]

    @property
    def has_rows(self) -> bool:
        """Whether this rank's part of the last sharded batch has samples."""
        return self._share > 0

    def _post_scale(self) -> float:
        """The factor on the summed gradients before the allreduce: the share of the batch,
        except under sync_batchnorm, where the loss gradients are scaled before the backward
        (its statistics couple the ranks' samples, so every rank must feed it 1 / B)."""
        return 1.0 if self.sync_batchnorm else self._share

    def scale_loss_gradients(self, grads: list, losses: list) -> list:
        """The loss gradients scaled so that summing every rank's weight gradients gives the
        global batch's: a mean over this rank's rows counts ``rows / B``, a "sum" loss fully."""
        post = self._post_scale()
        scaled = []
        for i, grad in enumerate(grads):
            loss = losses[i] if i < len(losses) else None
            factor = (1.0 if getattr(loss, "reduction", None) == "sum" else self._share) / post
            keep = grad is None or factor == 1.0
            scaled.append(grad if keep else grad * grad.dtype.type(factor))
        return scaled

    def reduce_gradients(self, variables: list, loss: float) -> float:
        """Sum every rank's (scaled) gradients of ``variables`` into their ``.grad`` with one
        allreduce over a flat buffer; returns the global loss, so every rank sees the same
        non-finite loss and stops together."""
        flat, views = self._gradient_buffer(variables)
        post = self._post_scale()
        for view, variable in zip(views, variables):
            np.multiply(variable.grad, post, out=view, casting="unsafe")
        flat[-1] = loss * self._share if self._share else 0.0
        self.comm.Allreduce(world._world.mpi.IN_PLACE, flat, op=world._world.mpi.SUM)
        for view, variable in zip(views, variables):
            np.copyto(variable.grad, view, casting="unsafe")
        return float(flat[-1])

    def _gradient_buffer(self, variables: list):
        key = tuple(id(v) for v in variables)
        if key not in self._buffers:
            dtype = np.result_type(*(v.grad.dtype for v in variables)) if variables else np.float32
            flat = np.zeros(sum(v.grad.size for v in variables) + 1, dtype)
            views, offset = [], 0
            for variable in variables:
                views.append(
                    flat[offset : offset + variable.grad.size].reshape(variable.grad.shape)
                )
                offset += variable.grad.size
            self._buffers = {key: (flat, views)}  # one model trains at a time
        return self._buffers[key]

    def reduce_logs(self, model, compute_logs) -> dict:
        """``compute_logs()`` over the metric states summed across the ranks: each metric's
        result on the global batches, as one process would report it (every state fastnn's
        metrics keep is a sum: totals, counts, confusion matrices)."""
        if model._output_metrics is None:  # no batch ran on any rank
            return compute_logs()
        metrics = list(model._loss_trackers) + [m for out in model._output_metrics for m in out]
        saved = [_metric_state(m) for m in metrics]
        flat = np.concatenate([state for state in saved]) if saved else np.zeros(0)
        self.comm.Allreduce(world._world.mpi.IN_PLACE, flat, op=world._world.mpi.SUM)
        offset = 0
        for metric, state in zip(metrics, saved):
            _set_metric_state(metric, flat[offset : offset + len(state)])
            offset += len(state)
        try:
            return compute_logs()
        finally:
            for metric, state in zip(metrics, saved):
                _set_metric_state(metric, state)

    def predict_rows(self, rows: int) -> slice:
        """This rank's contiguous part of predict's ``rows`` samples."""
        return slice(rows * self.rank // self.size, rows * (self.rank + 1) // self.size)

    def gather(self, parts: list[np.ndarray], rows: int) -> list[np.ndarray]:
        """Every rank's ``parts`` (its rows of each output) joined in rank order, on every rank."""
        bounds = [rows * r // self.size for r in range(self.size + 1)]
        gathered = []
        for part in parts:
            part = np.ascontiguousarray(part)
            whole = np.empty((rows, *part.shape[1:]), part.dtype)
            per_row = math.prod(part.shape[1:])
            counts = [(bounds[r + 1] - bounds[r]) * per_row for r in range(self.size)]
            displacements = [bounds[r] * per_row for r in range(self.size)]
            self.comm.Allgatherv(part, [whole, (counts, displacements)])
            gathered.append(whole)
        return gathered

    @contextlib.contextmanager
    def guard(self, call: str):
        """Around fit/evaluate/predict: an error on one rank would leave the others waiting in
        an allreduce, so it is printed naming the rank and the whole job aborted. A non-finite
        loss is seen by every rank at once (``reduce_gradients``) and raised as usual."""
        try:
            yield
        except FloatingPointError:
            raise
        except BaseException as error:  # noqa: BLE001 - KeyboardInterrupt too: the job must end
            world.abort(call, error)
            raise


def _metric_state(metric) -> np.ndarray:
    values = [np.array([metric._total, metric._count], np.float64)]
    values += [np.asarray(v.value, np.float64).reshape(-1) for v in metric._variables]
    return np.concatenate(values)


def _set_metric_state(metric, state: np.ndarray) -> None:
    metric._total, metric._count = float(state[0]), float(state[1])
    offset = 2
    for variable in metric._variables:
        size = variable.value.size
        variable.value[...] = state[offset : offset + size].reshape(variable.value.shape)
        offset += size


def _sync_sum(values: np.ndarray) -> None:
    """Sum a float64 array over every rank in place: BatchNormalization's statistics."""
    mpi = world._world.mpi
    world._world.comm.Allreduce(mpi.IN_PLACE, values, op=mpi.SUM)


class _Current:
    distribution = None


_current = _Current()


def list_devices(device_type: str | None = None) -> list[str]:
    """The devices of the job, one per rank: ``["cpu:0", ..., "cpu:N-1"]`` (Keras's name)."""
    if device_type not in (None, "cpu", "CPU"):
        raise ValueError(f"list_devices(): fastnn runs on CPUs; got device_type={device_type!r}")
    return [f"cpu:{r}" for r in range(world.size())]


def get_device_count(device_type: str | None = None) -> int:
    """How many devices ``list_devices`` names: the ranks of the job (Keras's name)."""
    return len(list_devices(device_type))


def set_distribution(value: DataParallel | None) -> None:
    """Make ``value`` the distribution fit/evaluate/predict use (None: every rank on its own)."""
    if value is not None and not isinstance(value, DataParallel):
        raise TypeError(
            "set_distribution(): expected a fastnn.distribution.DataParallel or None; got "
            f"{type(value).__name__}"
        )
    _current.distribution = value
    sync = value is not None and value.sync_batchnorm and value.size > 1
    normalization.cross_replica_sum = _sync_sum if sync else None


def distribution() -> DataParallel | None:
    """The distribution set with ``set_distribution`` (None if none)."""
    return _current.distribution


def active() -> DataParallel | None:
    """The distribution in effect if it spans two or more ranks, else None (the trainer's
    single-process path, with no MPI call)."""
    current = _current.distribution
    return current if current is not None and current.size > 1 else None
