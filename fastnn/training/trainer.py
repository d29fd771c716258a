"""The training API a Model inherits: compile / fit / evaluate / predict and their steps
(forward, losses, backward, optimizer), metrics, callbacks and the progress line.

``data_adapters`` checks the data and makes the batches; ``compile_spec`` spreads compile()'s
arguments over the outputs and names the logs. ``Trainer`` works on the model it is given (its
graph, inputs, outputs and weights) and never imports the models module.

A user's model may override ``train_step``/``test_step`` (given Keras's ``data``, returning a
dict of logs) or ``compute_loss`` (then the loss and its gradients come from a tape); the
public ``compute_loss``, ``metrics`` and the optimizer's ``apply`` serve such code
(``custom_steps``). Losses a model adds in ``call()`` (``add_loss``) join the training loss.
"""

from __future__ import annotations

import functools
import inspect
import math
import signal
import threading
import warnings
from collections.abc import Mapping

import numpy as np

from fastnn import callbacks as callbacks_module
from fastnn import distribution as distribution_module
from fastnn import metrics as metrics_module
from fastnn import optimizers as optimizers_module
from fastnn import runtime
from fastnn.ops import numpy as fnp
from fastnn.ops.tape import GradientTape
from fastnn.ops.tensor import unwrap
from fastnn.seeding import make_rng
from fastnn.training import compile_spec, custom_steps, data_adapters


def _serial_blas(method):
    """Run ``method`` in one serial-BLAS section (``fastnn.runtime``): once per public call."""

    @functools.wraps(method)
    def run(*args, **kwargs):
        with runtime.serial_blas():
            return method(*args, **kwargs)

    return run


def _ranks_fail_together(call: str):
    """Decorate fit/evaluate/predict: under a DataParallel distribution, an error on one rank
    is printed naming the rank and ends the whole MPI job (``DataParallel.guard``) instead of
    leaving the other ranks waiting in an allreduce."""

    def decorate(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            dist = distribution_module.active()
            if dist is None:
                return method(self, *args, **kwargs)
            with dist.guard(call):
                return method(self, *args, **kwargs)

        return run

    return decorate


def _one_thread_at_a_time(call: str):
    """Decorate a call that uses the model's loss, metric and optimizer state: while one thread
    runs such a call on a model, another thread's fit/evaluate/train_on_batch/test_on_batch
    would mix its gradients, loss trackers and metrics with this one's, so it raises a
    RuntimeError instead (waiting could deadlock a callback that waits on that thread). The
    holding thread may call in again: a callback's evaluate() inside fit()."""

    def decorate(method):
        @functools.wraps(method)
        def run(self, *args, **kwargs):
            outermost = _hold_state(self, call)
            try:
                return method(self, *args, **kwargs)
            finally:
                _release_state(self, outermost)

        return run

    return decorate


def _hold_state(model, call: str) -> bool:
    """Take the model's state lock for ``call`` or raise; True if this is the outermost call."""
    state = model.__dict__  # setdefault is atomic: racing first calls get one lock
    lock = state.get("_state_lock") or state.setdefault("_state_lock", threading.RLock())
    if not lock.acquire(blocking=False):
        raise RuntimeError(
            f"Model '{model.name}': {call} was called while {state.get('_state_user') or 'a call'}"
            " runs in another thread. fit(), evaluate(), train_on_batch() and test_on_batch() "
            "share the model's loss, metric and optimizer state, so one thread at a time may run "
            "them (predict() may run alongside); wait for that call to end, or give each thread "
            "its own model (fastnn.models.clone_model)"
        )
    if state.get("_state_user") is not None:
        return False
    state["_state_user"] = call
    return True


def _release_state(model, outermost: bool) -> None:
    state = model.__dict__
    if outermost:
        state["_state_user"] = None
    state["_state_lock"].release()


def _all_none(values: list) -> bool:
    return all(value is None for value in values)


class NotCompiledError(RuntimeError, ValueError):
    """fit/evaluate/train_on_batch before compile(): a ValueError as in Keras 3, and a
    RuntimeError as in tf.keras 2 (and earlier fastnn), so either ``except`` catches it."""


class Trainer:
    """The training API a Model inherits (Keras 3 names, arguments and defaults)."""

    optimizer = None
    compiled = False
    stop_training = False
    _step_logs = None  # the logs a user's train_step/test_step returned last

    # ---- compile -------------------------------------------------------------------------------
    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        loss_weights=None,
        metrics=None,
        weighted_metrics=None,
        run_eagerly=False,
        steps_per_execution=1,
        jit_compile="auto",
        auto_scale_loss=True,
    ) -> None:
        """Set the optimizer, a loss per output (with weights) and the metrics to report.

        A Sequential without an input shape has no outputs yet: as in Keras, its losses and
        metrics are spread over its output when the first data builds it.
        """
        optimizer = optimizers_module.get(optimizer)
        spec = (loss, loss_weights, metrics, weighted_metrics)
        if self.built and hasattr(self, "output_names"):
            spread = compile_spec.spread(self.output_names, *spec)
        else:
            compile_spec.check_names(loss, metrics, weighted_metrics)  # fail early
            spread = (None, None, None, None)
        self.optimizer = optimizer
        self._compile_spec = spec
        self._losses, self._loss_weights, self._metric_specs, self._weighted_counts = spread
        self._output_metrics = None  # resolved from the first batch's shapes
        self._loss_tracker = metrics_module.Mean(name="loss")
        self._compile_metrics = custom_steps.CompileMetrics(self)
        self._step_logs = None
        self.compiled = True

    def get_compile_config(self) -> dict | None:
        """The ``compile`` arguments as JSON-able data (None if not compiled).

        Raises ValueError when a loss, metric or learning rate is a Python function.
        """
        if not self.compiled:
            return None
        return {
            "optimizer": optimizers_module.serialize(self.optimizer),
            **compile_spec.serialize(*self._compile_spec),
        }

    def compile_from_config(self, config: dict) -> None:
        """``compile`` with the arguments ``get_compile_config()`` returned."""
        self.compile(**compile_spec.deserialize(config))

    def _require_compiled(self, what: str) -> None:
        if not self.compiled:
            raise NotCompiledError(
                f"You must call compile() before {what}(): model '{self.name}' is not compiled"
            )

    # ---- data ----------------------------------------------------------------------------------
    def _standardize_x(self, x, stream: bool = False) -> list[np.ndarray]:
        """x as one cast array per model input (``data_adapters.standardize_x``)."""
        return data_adapters.standardize_x(x, self.input_names, self.inputs, self.name, stream)

    def _prepare(self, x, y=None, sample_weight=None, caller="fit()", stream=False):
        """Standardize and validate everything before any work: nothing is half-applied."""
        with _named_errors(caller):
            return self._prepare_unnamed(x, y, sample_weight, stream)

    def _spread_compile_args(self) -> None:
        if self._losses is None and not hasattr(self, "output_names"):  # no outputs (a GAN)
            self._losses, self._loss_weights, self._metric_specs, self._weighted_counts = (
                [],
                [],
                [],
                [],
            )
        if self._losses is None:  # compiled before the first data built the model
            spread = compile_spec.spread(self.output_names, *self._compile_spec)
            self._losses, self._loss_weights, self._metric_specs, self._weighted_counts = spread

    def _prepare_unnamed(self, x, y, sample_weight, stream):
        if getattr(self, "_graph", None) is None and self._overrides("train_step"):
            return self._raw_data(x, y, sample_weight)
        xs = self._standardize_x(x, stream)
        self._spread_compile_args()
        needs_y = any(loss is not None for loss in self._losses) and not self._overrides(
            "train_step"
        )
        if y is None and needs_y:
            raise ValueError(f"model '{self.name}' needs targets y for its outputs")
        ys = None
        if y is not None:
            ys = data_adapters.standardize_y(y, self.output_names, self._losses, self.name)
        sizes = {f"x['{n}']": len(a) for n, a in zip(self.input_names, xs)}
        if ys is not None:
            sizes.update(
                {f"y['{n}']": len(a) for n, a in zip(self.output_names, ys) if a is not None}
            )
        if sample_weight is not None:
            loss_shapes = [  # per-sample losses have the outputs' shape but the last axis
                (name, out.shape[1:-1])
                for name, loss, out in zip(self.output_names, self._losses, self.outputs)
                if loss is not None and len(out.shape) > 1
            ]
            sample_weight = data_adapters.as_sample_weight(sample_weight, loss_shapes if ys else [])
            sizes["sample_weight"] = len(sample_weight)
        if len(set(sizes.values())) > 1:
            raise ValueError(
                "Data cardinality is ambiguous: all arrays must have the same number of "
                f"samples; got {', '.join(f'{k}: {v}' for k, v in sizes.items())}"
            )
        for name, loss, y, out in zip(self.output_names, self._losses, ys or [], self.outputs):
            if loss is not None and y is not None:  # before any forward pass changes state
                loss.check_target(y, out.shape, f"y for output '{name}'")
        return xs, ys, sample_weight

    # ---- one step ------------------------------------------------------------------------------
    def _resolve_metrics(self, ys, outputs) -> None:
        if self._output_metrics is not None:
            return
        self._spread_compile_args()
        self._output_metrics = []
        for specs, y, out in zip(self._metric_specs, ys, outputs):
            y_shape = None if y is None else np.shape(y)
            self._output_metrics.append(
                [metrics_module.get(s, y_shape, np.shape(out)) for s in specs]
            )
        self._loss_trackers = [self._loss_tracker] + [
            metrics_module.Mean(name=f"{n}_loss") for n in self.output_names
        ]

    def _compute_loss(self, ys, outputs, sample_weight):
        """Total loss, per-output unweighted losses, and the gradient for each output."""
        total, per_output, grads = 0.0, [], []
        for loss, weight, y, out in zip(self._losses, self._loss_weights, ys, outputs):
            if loss is None:
                per_output.append(None)
                grads.append(None)
                continue
            value, grad = loss.value_and_grad(y, out, sample_weight)
            per_output.append(value)
            total += weight * value
            grads.append(grad if weight == 1.0 else grad * grad.dtype.type(weight))
        return total, per_output, grads

    #: The step methods a model's class writes itself (set per class: a check per step).
    _own_steps: frozenset = frozenset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._own_steps = frozenset(
            name
            for name in ("train_step", "test_step", "compute_loss")
            if getattr(cls, name) is not getattr(Trainer, name)
        )

    def _overrides(self, method: str) -> bool:
        """Whether the model's class writes its own ``method`` (train_step, compute_loss...)."""
        return method in self._own_steps

    def _train_step(self, xs, ys, sample_weight=None):
        if self._overrides("train_step"):
            data = custom_steps.pack_data(
                self._pack_inputs(xs), self._pack_targets(ys), sample_weight
            )
            self._step_logs = custom_steps.flatten_logs(self.train_step(data))
            return
        self._step_logs = None
        self._fit_step(xs, ys, sample_weight)

    def _fit_step(self, xs, ys, sample_weight=None):
        """fit()'s step: forward, losses, backward, optimizer, metrics."""
        if self._graph.blocks_training:  # before the forward pass moves any statistics
            layer = self._graph.blocks_training[0]
            raise NotImplementedError(
                f"Model '{self.name}' cannot train: {type(layer).__name__} '{layer.name}' has no "
                "gradient and layers with weights come before it. Move it before the weights, "
                "or write a Layer subclass with forward and backward."
            )
        dist = distribution_module.active()
        if dist is not None:  # this rank's part of the global batch
            xs, ys, sample_weight = dist.shard(self, xs, ys, sample_weight)
        # A Ctrl-C is held from the forward pass (which moves BatchNormalization's statistics)
        # to the optimizer's last write, then raised: weights, statistics and optimizer state
        # are always those of one finished step.
        with _HeldSigint():
            variables = self.trainable_weights
            if dist is None or dist.has_rows:
                outputs, total, per_output, regularized = self._step_gradients(
                    xs, ys, sample_weight, variables, dist
                )
            else:  # a last batch smaller than the ranks: the others' gradients only
                for var in variables:
                    var.grad.fill(0)
                total, outputs = 0.0, None
                regularized = (
                    [] if self._overrides("compute_loss") else self.regularization_losses()
                )
            if dist is not None:  # the global gradients and loss, the same on every rank
                self._check_finite(dist.reduce_gradients(variables, total))
            for var, reg in regularized:
                var.grad += reg.gradient(var.value)
            self.optimizer.apply_own_gradients(variables)
        if outputs is not None:
            self._update_metrics(ys, outputs, total, per_output, sample_weight)

    def _step_gradients(self, xs, ys, sample_weight, variables, dist):
        """Forward, losses and backward of a training step: the weights' gradients in ``.grad``
        (scaled to this rank's share under ``dist``); returns the outputs, the total loss, the
        per-output losses and the regularized weights."""
        outputs, tape = self._graph.forward(xs, training=True, reuse="train")
        self._resolve_metrics(ys, outputs)
        if self._overrides("compute_loss"):
            total, per_output, grads = self._loss_on_tape(xs, ys, outputs, sample_weight)
            regularized = []  # the user's compute_loss adds them, or not, as in Keras
        else:
            total, per_output, grads = self._compute_loss(ys, outputs, sample_weight)
            regularized = self.regularization_losses()
            added = self._graph.added_losses(tape)
            for var, reg in regularized:
                total += reg(var.value)
            if added:
                total += sum(float(unwrap(v)) for v in added)
            elif not regularized and _all_none(grads):
                raise ValueError(
                    f"Model '{self.name}' has no loss to minimize: pass `loss` to "
                    "compile(), or add losses in call() with self.add_loss()"
                )
        if dist is None:  # else every rank checks the global loss after the allreduce
            self._check_finite(total)
        else:
            grads = dist.scale_loss_gradients(grads, self._losses)
        for var in variables:
            var.grad.fill(0)
        if self._overrides("compute_loss"):
            for var, g in zip(variables, grads[len(outputs) :]):
                if g is not None:
                    var.grad += g
            grads = grads[: len(outputs)]
        self._graph.backward(tape, grads, need_input_grads=False)
        return outputs, total, per_output, regularized

    def _check_finite(self, total: float) -> None:
        if not math.isfinite(total):
            error = FloatingPointError(
                f"Model '{self.name}': the training loss became {total}; this step's update "
                "was skipped, so the weights are those of the last finite step. Lower the "
                "learning rate or check the data."
            )
            error.loss = total  # for TerminateOnNaN's message
            raise error

    def _users_compute_loss(self, xs, ys, outputs, sample_weight, training: bool):
        """The user's ``compute_loss`` on a step's data, given ``training`` where it takes it
        (as Keras: an override written without it is called without it)."""
        kwargs = {"training": training} if _takes_training(type(self).compute_loss) else {}
        return self.compute_loss(
            x=self._pack_inputs(xs),
            y=self._pack_targets(ys),
            y_pred=self._pack_outputs(outputs),
            sample_weight=sample_weight,
            **kwargs,
        )

    def _loss_on_tape(self, xs, ys, outputs, sample_weight):
        """A user's ``compute_loss`` on the outputs (watched) and the trainable weights: (total,
        no per-output losses, gradients of the outputs then of the weights)."""
        variables = self.trainable_weights
        with GradientTape() as tape:
            watched = [tape.watch(o) for o in outputs]
            loss = self._users_compute_loss(xs, ys, watched, sample_weight, training=True)
        if tape.key(loss) is None:
            grads = [None] * (len(watched) + len(variables))
        else:
            grads = tape.gradient(loss, [*watched, *variables])
        return float(unwrap(loss)), [None] * len(outputs), grads

    def _test_step(self, xs, ys, sample_weight=None):
        if self._overrides("test_step"):
            data = custom_steps.pack_data(
                self._pack_inputs(xs), self._pack_targets(ys), sample_weight
            )
            self._step_logs = custom_steps.flatten_logs(self.test_step(data))
            return
        self._step_logs = None
        self._evaluate_step(xs, ys, sample_weight)

    def _evaluate_step(self, xs, ys, sample_weight=None):
        """evaluate()'s step: forward, losses, metrics."""
        dist = distribution_module.active()
        if dist is not None:  # this rank's part of the batch; the logs sum every rank's
            xs, ys, sample_weight = dist.shard(self, xs, ys, sample_weight)
            if not dist.has_rows:
                return
        outputs, tape = self._graph.forward(xs, training=False, reuse="test")
        self._resolve_metrics(ys, outputs)
        if self._overrides("compute_loss"):
            loss = self._users_compute_loss(xs, ys, outputs, sample_weight, training=False)
            total, per_output = float(unwrap(loss)), [None] * len(outputs)
        else:
            total, per_output, _ = self._compute_loss(ys, outputs, sample_weight)
            for var, reg in self.regularization_losses():
                total += reg(var.value)
            total += sum(float(unwrap(v)) for v in self._graph.added_losses(tape))
        self._update_metrics(ys, outputs, total, per_output, sample_weight)

    def _update_metrics(self, ys, outputs, total, per_output, sample_weight):
        n = len(outputs[0])
        self._loss_trackers[0].update_state(total, sample_weight=n)
        for tracker, value in zip(self._loss_trackers[1:], per_output):
            if value is not None:
                tracker.update_state(value, sample_weight=n)
        self._update_output_metrics(ys, outputs, sample_weight)

    def _update_output_metrics(self, ys, outputs, sample_weight) -> None:
        """Each output's compiled metrics on its targets; weighted ones get ``sample_weight``."""
        for metrics, weighted, y, out in zip(
            self._output_metrics, self._weighted_counts, ys, outputs
        ):
            plain = len(metrics) - weighted
            for i, metric in enumerate(metrics):
                if y is not None:
                    metric.update_state(y, out, sample_weight if i >= plain else None)

    def _reset_metrics(self) -> None:
        held = self.__dict__["_held_metrics"] = self._attribute_metrics()  # for this epoch's logs
        for metric in held:
            metric.reset_state()
        if self._overrides("train_step") or self._overrides("test_step"):
            for metric in self.metrics:
                metric.reset_state()
        if self._output_metrics is None:
            return
        for tracker in self._loss_trackers:
            tracker.reset_state()
        for metrics in self._output_metrics:
            for metric in metrics:
                metric.reset_state()

    def _logs(self) -> dict:
        """Loss and metric results under Keras's keys, in Keras's order (sorted keys); what a
        user's train_step or test_step returned, after it."""
        if self._step_logs is not None:
            return dict(self._step_logs)
        return self._fit_logs()

    def _synced_logs(self) -> dict:
        """``_logs()``; under a DataParallel distribution, over every rank's metric states (a
        collective: every rank calls it at the same points)."""
        dist = distribution_module.active()
        if dist is None or self._step_logs is not None:
            return self._logs()
        return dist.reduce_logs(self, self._fit_logs)

    def _fit_logs(self) -> dict:
        pairs = compile_spec.metric_keys(
            self.output_names, self._output_metrics, self._weighted_counts
        )
        logs = {key: metrics_module.result_value(metric.result()) for key, metric in pairs}
        if compile_spec.tracks_output_losses(self._losses):
            for tracker, loss in zip(self._loss_trackers[1:], self._losses):
                if loss is not None:
                    logs[tracker.name] = tracker.result()
        logs["loss"] = self._loss_trackers[0].result()
        held = self.__dict__.get("_held_metrics")
        for metric in self._attribute_metrics() if held is None else held:
            logs[metric.name] = metrics_module.result_value(metric.result())  # as Keras logs them
        return dict(sorted(logs.items()))

    def _ordered_keys(self, logs: dict) -> list[str]:
        """The keys of ``logs`` in the order of evaluate()'s list."""
        return compile_spec.ordered_keys(
            logs,
            self._output_metrics,
            self._weighted_counts,
            self._loss_trackers,
            self._losses,
            self._compile_spec[0],
            isinstance(self._outputs_struct, Mapping),
        )

    def _format_logs(self, logs: dict, return_dict: bool):
        if return_dict:
            return dict(logs)
        if self._step_logs is not None:  # a user's step: its keys in its order
            values = list(logs.values())
            return values[0] if len(values) == 1 else values
        values = [logs[k] for k in self._ordered_keys(logs)]
        return values[0] if len(values) == 1 else values

    @property
    def metrics_names(self) -> list[str]:
        """The names of evaluate()'s list of results, in its order."""
        if self._step_logs is not None:
            return list(self._step_logs)
        if not self.compiled or self._output_metrics is None:
            return ["loss"] if self.compiled else []
        return self._ordered_keys(self._logs())

    # ---- what a user's train_step, test_step and loop use (Keras 3's names) --------------------
    def train_step(self, data) -> dict:
        """One training step on ``data`` (``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``):
        forward, loss, backward, optimizer; returns the logs. Override it to train otherwise
        (with ``fastnn.GradientTape``, ``compute_loss`` and ``optimizer.apply``); fit() calls it
        once per batch."""
        x, y, sample_weight = custom_steps.unpack_data(data)
        xs, ys, sample_weight = self._prepare(x, y, sample_weight, "train_step()")
        self._fit_step(xs, ys if ys is not None else [None] * len(self.outputs), sample_weight)
        return self._fit_logs()

    def test_step(self, data) -> dict:
        """One evaluation step on ``data``: forward, loss, metrics; returns the logs. Override
        it to evaluate otherwise; evaluate() calls it once per batch."""
        x, y, sample_weight = custom_steps.unpack_data(data)
        xs, ys, sample_weight = self._prepare(x, y, sample_weight, "test_step()")
        self._evaluate_step(xs, ys if ys is not None else [None] * len(self.outputs), sample_weight)
        return self._fit_logs()

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled losses of ``y_pred`` against ``y`` (weighted), plus ``self.losses``
        (``add_loss`` values and weight penalties): a scalar that a recording GradientTape
        differentiates. Override it to change the training loss; fit() then takes its
        gradients from a tape."""
        self._spread_compile_args()
        terms = []
        ys, outputs = self._output_list(y), self._output_list(y_pred)
        for loss, weight, target, out in zip(self._losses, self._loss_weights, ys, outputs):
            if loss is None or target is None:
                continue
            value = loss(target, out, sample_weight)
            terms.append(value if weight == 1.0 else value * weight)
        terms += list(self.losses)
        if not terms:
            raise ValueError(
                f"Model '{self.name}': no loss to compute; provide a `loss` argument in "
                "compile(), or add losses with self.add_loss()"
            )
        total = terms[0]
        for term in terms[1:]:
            total = fnp.add(total, term)
        return total

    @property
    def compiled_loss(self):
        """``compiled_loss(y, y_pred, sample_weight=None, regularization_losses=None)``:
        tf.keras's form of the compiled losses (Keras 3 keeps it for old train_steps)."""

        def compiled_loss(y, y_pred, sample_weight=None, regularization_losses=None):
            total = self._compiled_terms(y, y_pred, sample_weight)
            for term in regularization_losses or []:
                total = fnp.add(total, term)
            return total

        return compiled_loss

    def _compiled_terms(self, y, y_pred, sample_weight):
        self._spread_compile_args()
        total = 0.0
        for loss, weight, target, out in zip(
            self._losses, self._loss_weights, self._output_list(y), self._output_list(y_pred)
        ):
            if loss is not None and target is not None:
                value = loss(target, out, sample_weight)
                total = fnp.add(total, value if weight == 1.0 else value * weight)
        return total

    @property
    def compiled_metrics(self):
        """The compiled metrics as one metric: ``update_state(y, y_pred)`` (tf.keras's name)."""
        self._require_compiled("compiled_metrics")
        return self._compile_metrics

    @property
    def metrics(self) -> list:
        """Keras 3's ``model.metrics``: the loss tracker ('loss') and the compiled metrics
        ('compile_metrics', a dict result) once compiled, then the metrics held as attributes.
        fit() and evaluate() reset them at each epoch and call."""
        found = []
        if self.compiled:
            found.append(self._loss_tracker)
            if any(self._compile_spec[2:]):
                found.append(self._compile_metrics)
        return found + self._attribute_metrics()

    def _attribute_metrics(self) -> list:
        """The metrics held as attributes of the model, then of its layers (an endpoint layer's
        accuracy that its call() updates), each once: Keras's ``model.metrics`` lists them."""
        found, tracker = [], self.__dict__.get("_loss_tracker")
        for owner in self._layer_tree():  # Layer's (a Model is one)
            for value in vars(owner).values():
                if (
                    isinstance(value, metrics_module.Metric)
                    and not isinstance(value, custom_steps.CompileMetrics)
                    and value is not tracker
                    and all(value is not m for m in found)
                ):
                    found.append(value)
        return found

    def reset_metrics(self) -> None:
        """Reset every metric in ``metrics``."""
        for metric in self.metrics:
            metric.reset_state()
        self._reset_metrics()

    def _output_list(self, value) -> list:
        """A structure of per-output values as a list in ``output_names`` order (None: Nones)."""
        if value is None:
            return [None] * len(self.output_names)
        if isinstance(value, Mapping):
            return [value.get(name) for name in self.output_names]
        if isinstance(value, (list, tuple)) and len(self.output_names) > 1:
            return list(value)
        return [value]

    def _raw_data(self, x, y, sample_weight):
        """A model without a graph (a GAN: its train_step uses its models) gets its data as
        given, batched along the first axis: one array per leaf of x, y as they are."""
        if isinstance(x, Mapping):
            self._raw_struct = list(x)
            xs = [np.asarray(v) for v in x.values()]
        elif isinstance(x, (list, tuple)):
            self._raw_struct, xs = "list", [np.asarray(v) for v in x]
        else:
            self._raw_struct, xs = None, [np.asarray(x)]
        ys = None if y is None else [np.asarray(v) for v in (y if isinstance(y, list) else [y])]
        arrays = xs + (ys or []) + ([] if sample_weight is None else [sample_weight])
        if len({len(a) for a in arrays}) > 1:
            raise ValueError("Data cardinality is ambiguous: all arrays must have the same length")
        sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        return xs, ys, sample_weight

    def _pack_inputs(self, xs):
        if getattr(self, "_graph", None) is None and hasattr(self, "_raw_struct"):
            struct = self._raw_struct
            if isinstance(struct, list):
                return dict(zip(struct, xs))
            return list(xs) if struct == "list" else xs[0]
        struct = getattr(self, "_inputs_struct", None)
        if isinstance(struct, Mapping):
            return dict(zip(self.input_names, xs))
        if isinstance(struct, (list, tuple)):
            return list(xs)
        return xs[0]

    def _pack_targets(self, ys):
        if ys is None or all(y is None for y in ys):
            return None
        if getattr(self, "_graph", None) is None:
            return ys[0] if len(ys) == 1 else list(ys)
        return self._pack_outputs(ys)

    # ---- fit / evaluate / predict --------------------------------------------------------------
    @_ranks_fail_together("fit()")
    @_one_thread_at_a_time("fit()")
    @_serial_blas
    def fit(
        self,
        x=None,
        y=None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose="auto",
        callbacks=None,
        validation_split: float = 0.0,
        validation_data=None,
        shuffle: bool = True,
        class_weight=None,
        sample_weight=None,
        initial_epoch: int = 0,
        steps_per_epoch=None,
        validation_steps=None,
        validation_batch_size=None,
        validation_freq: int = 1,
    ):
        """Train for ``epochs`` epochs; returns a ``History`` whose ``.history`` holds the logs."""
        self._require_compiled("fit")
        data_adapters.require_x(x, "fit()")
        _check_positive_int("epochs", epochs, allow_zero=True)
        _check_positive_int("initial_epoch", initial_epoch, allow_zero=True)
        batch_size = _batch_size(batch_size)
        if not isinstance(validation_split, (int, float)) or not 0.0 <= validation_split < 1.0:
            raise ValueError(
                f"`validation_split` must be in [0, 1); got validation_split={validation_split}"
            )
        val = train = None
        if data_adapters.is_batch_source(x):
            data_adapters.check_source(x, "fit()", y, sample_weight, validation_split)
            prepare = functools.partial(self._prepare_batch, "fit()", class_weight)
            epoch_batches, source = data_adapters.source_batches(
                x, steps_per_epoch, prepare, shuffle
            )
            steps = source.steps_per_epoch
        else:
            self._ensure_built_for_data(x)
            xs, ys, sample_weight = self._prepare(x, y, sample_weight)
            if ys is None:  # the model adds its own losses, or its train_step needs none
                ys = [None] * len(getattr(self, "outputs", [None]))
            sample_weight = data_adapters.with_class_weight(sample_weight, class_weight, ys)
            if validation_split and validation_data is None:
                xs, ys, sample_weight, val = data_adapters.split_validation(
                    xs, ys, sample_weight, validation_split
                )
            train = xs, ys, sample_weight
            steps = math.ceil(len(xs[0]) / batch_size)
        if validation_data is not None and data_adapters.is_batch_source(validation_data):
            val = data_adapters.BatchSource(validation_data, validation_steps)
        elif validation_data is not None:
            val = self._prepare(
                *data_adapters.unpack_validation(validation_data), caller="fit() validation_data"
            )
        # Every check passed: from here on the call changes the model.
        if train is not None:
            shuffle_seed = self._shuffle_seed_for(initial_epoch) if shuffle else None
            epoch_batches = data_adapters.array_batches(*train, batch_size, shuffle_seed)
        if self.built and not self._overrides("train_step") and not self.trainable_weights:
            warnings.warn("The model does not have any trainable weights.", stacklevel=3)
        history = callbacks_module.History()
        cbs = callbacks_module.CallbackList(
            callbacks,
            model=self,
            history=history,
            verbose=_verbosity(verbose),
            params={"epochs": epochs, "steps": steps, "verbose": _verbosity(verbose)},
        )
        self.stop_training = False
        self._resume_at = None
        cbs.on_train_begin()
        dist = distribution_module.active()
        if dist is not None:  # rank 0's weights, optimizer state, shuffle seed, resume point
            dist.prepare(self)
        skip = 0
        if self._resume_at is not None:  # a BackupAndRestore callback restored a backup
            initial_epoch, skip = self._resume_at
        agreed = self._resume_at is not None or dist is not None  # a seed from a backup or rank 0
        if agreed and train is not None and shuffle and self._shuffle_seed is not None:
            epoch_batches = data_adapters.array_batches(*train, batch_size, self._shuffle_seed)
        logs = {}
        for epoch in range(initial_epoch, epochs):
            self._reset_metrics()
            cbs.on_epoch_begin(epoch)
            ran = False
            for step, (batch_x, batch_y, batch_sw) in enumerate(epoch_batches(epoch)):
                ran = True
                if step < skip:  # done before the backup this fit resumes from
                    continue
                cbs.on_train_batch_begin(step)
                try:
                    self._train_step(batch_x, batch_y, batch_sw)
                except FloatingPointError as error:
                    if not cbs.terminates_on_nan():
                        raise FloatingPointError(
                            f"fit(): epoch {epoch + 1}, step {step + 1}: {error}"
                        ) from None
                    cbs.invalid_loss(step, getattr(error, "loss", math.nan))
                    break
                cbs.on_train_batch_end(step, self._synced_logs())
                if self.stop_training:
                    break
            if not ran:  # a generator ran out of data
                print("fit(): the input ran out of data; stopping training")
                break
            skip = 0
            logs = self._synced_logs()
            if val is not None and (epoch + 1) % validation_freq == 0:
                cbs.on_test_begin()  # as Keras: validation runs the callbacks' test hooks
                val_logs = self._evaluate_data(
                    val, validation_batch_size or batch_size, cbs, "fit() validation_data"
                )
                if val_logs is None:  # a generator without validation_steps ran out
                    print("fit(): validation_data ran out of data; no validation this epoch")
                cbs.on_test_end(val_logs or {})
                logs.update({f"val_{k}": v for k, v in (val_logs or {}).items()})
            cbs.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        if epochs > 0:  # as Keras: an optimizer with use_ema sets the weights to their averages
            self.optimizer.finalize_variable_values(self.trainable_weights)
        if dist is not None:  # every rank ends with rank 0's model
            dist.share_statistics(self)
        cbs.on_train_end(logs)
        return history

    def _shuffle_seed_for(self, initial_epoch: int) -> int:
        """The seed of this fit's batch orders: a fresh one, or the saved one when resuming.

        Epoch ``e`` is shuffled by ``(seed, e)``, so training 2 epochs, saving, loading and
        training from ``initial_epoch=2`` visits the batches of one 4-epoch run.
        """
        seed = getattr(self, "_shuffle_seed", None)
        if initial_epoch == 0 or seed is None:
            seed = int(make_rng().integers(2**63))
        self._shuffle_seed = seed
        return seed

    def _prepare_batch(self, caller: str, class_weight, step: int, batch_x, batch_y, batch_sw):
        """One batch of a batch source, checked as ``caller`` checks arrays."""
        self._ensure_built_for_data(batch_x)
        xs, ys, sw = self._prepare(batch_x, batch_y, batch_sw, caller=f"{caller} batch {step}")
        if ys is None:  # x alone: the model adds its own losses, or its train_step needs none
            ys = [None] * len(getattr(self, "outputs", [None]))
        return xs, ys, data_adapters.with_class_weight(sw, class_weight, ys)

    def _evaluate_data(self, data, batch_size, cbs=None, caller="evaluate()") -> dict:
        """Loss and metrics over checked arrays (xs, ys, sample_weight) or a ``BatchSource``."""
        if isinstance(data, data_adapters.BatchSource):
            prepare = functools.partial(self._prepare_batch, caller, None)
            return self._evaluate_batches(data.epoch(prepare), cbs)
        batches = data_adapters.array_batches(*data, batch_size, shuffle_seed=None)
        return self._evaluate_batches(batches(0), cbs)

    def _evaluate_batches(self, batches, cbs=None) -> dict | None:
        """The logs of test steps over ``batches``; None if there were none."""
        dist = distribution_module.active()
        if dist is not None:  # every rank evaluates with rank 0's moving statistics
            dist.share_statistics(self)
        self._reset_metrics()
        step = -1
        for step, (xs, ys, sample_weight) in enumerate(batches):
            if cbs is not None:
                cbs.on_test_batch_begin(step)
            self._test_step(xs, ys, sample_weight)
            if cbs is not None:
                cbs.on_test_batch_end(step, self._synced_logs())
        return None if step < 0 else self._synced_logs()

    @_ranks_fail_together("evaluate()")
    @_one_thread_at_a_time("evaluate()")
    @_serial_blas
    def evaluate(
        self,
        x=None,
        y=None,
        batch_size: int | None = None,
        verbose="auto",
        sample_weight=None,
        steps=None,
        callbacks=None,
        return_dict: bool = False,
    ):
        """Loss and metrics on (x, y): a float, a list in ``metrics_names`` order, or a dict."""
        self._require_compiled("evaluate")
        data_adapters.require_x(x, "evaluate()")
        if data_adapters.is_batch_source(x):
            data_adapters.check_source(x, "evaluate()", y, sample_weight)
            return self._evaluate_source(x, steps, verbose, callbacks, return_dict)
        self._ensure_built_for_data(x)
        self._spread_compile_args()
        needs_y = any(loss is not None for loss in self._losses)
        if y is None and needs_y and not self._overrides("test_step"):
            raise ValueError(f"evaluate(): model '{self.name}' needs targets y")
        xs, ys, sample_weight = self._prepare(x, y, sample_weight, "evaluate()", stream=True)
        if ys is None:
            ys = [None] * len(self.outputs)
        batch_size = _batch_size(batch_size)
        cbs = _progress_callbacks(callbacks, self, verbose, math.ceil(len(xs[0]) / batch_size))
        cbs.on_test_begin()
        logs = self._evaluate_data((xs, ys, sample_weight), batch_size, cbs)
        cbs.on_test_end(logs)
        return self._format_logs(logs, return_dict)

    def _evaluate_source(self, x, steps, verbose, callbacks, return_dict):
        """evaluate() over a PyDataset, generator or other iterable of batches."""
        source = data_adapters.BatchSource(x, steps)
        cbs = _progress_callbacks(callbacks, self, verbose, source.steps_per_epoch)
        cbs.on_test_begin()
        logs = self._evaluate_data(source, None, cbs)
        if logs is None:
            raise ValueError("evaluate(): the data yielded no batches (a generator ran out?)")
        cbs.on_test_end(logs)
        return self._format_logs(logs, return_dict)

    @_ranks_fail_together("predict()")
    @_serial_blas
    def predict(self, x, batch_size: int | None = None, verbose="auto", steps=None, callbacks=None):
        """Outputs for x, computed batch by batch: one array, or a list for several outputs.
        Under a DataParallel distribution each rank predicts its part of x, and every rank
        gets all the outputs."""
        data_adapters.require_x(x, "predict()")
        if data_adapters.is_batch_source(x):
            return self._predict_source(x, steps, verbose, callbacks)
        self._ensure_built_for_data(x)
        with _named_errors("predict()"):
            xs = self._standardize_x(x, stream=True)
        batch_size = _batch_size(batch_size)
        dist = distribution_module.active()
        if dist is None or len(xs[0]) < dist.size:
            return self._pack_outputs(self._predict_arrays(xs, batch_size, verbose, callbacks))
        dist.share_statistics(self)
        part = data_adapters.take(xs, dist.predict_rows(len(xs[0])))
        outputs = self._predict_arrays(part, batch_size, verbose, callbacks)
        return self._pack_outputs(dist.gather(outputs, len(xs[0])))

    def _predict_arrays(self, xs, batch_size, verbose, callbacks) -> list | None:
        """predict() over checked arrays: an array per output (None without samples)."""
        n = len(xs[0])
        results = None
        steps = math.ceil(n / batch_size)
        if steps == 1 and not callbacks and verbose == 0:  # no hook to run: one pass (~10 us less)
            outputs = self._graph.infer(data_adapters.take(xs, slice(None)))
            return [np.array(out) for out in outputs]  # the layers reuse their buffers
        cbs = _progress_callbacks(callbacks, self, verbose, steps)
        hooks = bool(cbs.callbacks)  # else no batch hook runs: a 1-sample call costs ~15 us less
        per_pass = 1 if callbacks or steps == 1 else self._batches_per_pass(batch_size)
        cbs.on_predict_begin()
        for first in range(0, steps, per_pass):
            last = min(steps, first + per_pass)
            for step in range(first, last if hooks else first):
                cbs.on_predict_batch_begin(step)
            index = slice(first * batch_size, min(n, last * batch_size))
            outputs = self._graph.infer(data_adapters.take(xs, index))
            if results is None:
                results = [np.empty((n, *o.shape[1:]), o.dtype) for o in outputs]
            for result, out in zip(results, outputs):
                result[index] = out
            for step in range(first, last if hooks else first):  # as Keras: each batch's outputs
                rows = slice(step * batch_size, min(n, (step + 1) * batch_size))
                batch_outputs = self._pack_outputs([result[rows] for result in results])
                cbs.on_predict_batch_end(step, {"outputs": batch_outputs})
        cbs.on_predict_end()
        return results

    def _predict_source(self, x, steps, verbose, callbacks):
        """predict() over a PyDataset, generator or other iterable: the x of each batch (its y
        and sample weights are ignored, as in Keras); the outputs concatenated."""
        source = data_adapters.BatchSource(x, steps)
        cbs = _progress_callbacks(callbacks, self, verbose, source.steps_per_epoch)
        cbs.on_predict_begin()
        parts = []
        for step, (batch_x, _, _) in enumerate(source.epoch()):
            cbs.on_predict_batch_begin(step)
            self._ensure_built_for_data(batch_x)
            with _named_errors(f"predict() batch {step}"):
                xs = self._standardize_x(batch_x)
            outputs = self._graph.infer(xs)
            parts.append([np.array(out) for out in outputs])  # layers reuse their buffers
            cbs.on_predict_batch_end(step, {"outputs": self._pack_outputs(parts[-1])})
        cbs.on_predict_end()
        if not parts:
            raise ValueError("predict(): the data yielded no batches (a generator ran out?)")
        return self._pack_outputs([np.concatenate(outs) for outs in zip(*parts)])

    def _batches_per_pass(self, batch_size: int) -> int:
        """How many of predict's batches one forward pass may run: several, while their arrays
        stay under PREDICT_PASS_BYTES, if every layer keeps samples apart at inference."""
        per_sample = self._graph.bytes_per_sample()
        if per_sample is None or not self.samples_independent:
            return 1
        return max(1, PREDICT_PASS_BYTES // (per_sample * batch_size))

    def _pack_outputs(self, arrays):
        if isinstance(self._outputs_struct, Mapping):
            return dict(zip(self.output_names, arrays))
        if isinstance(self._outputs_struct, (list, tuple)):
            return list(arrays)
        return arrays[0]

    @_one_thread_at_a_time("train_on_batch()")
    @_serial_blas
    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One optimizer step on one batch; returns that batch's loss and metrics."""
        self._require_compiled("train_on_batch")
        data_adapters.require_x(x, "train_on_batch()")
        self._ensure_built_for_data(x)
        xs, ys, sample_weight = self._prepare(x, y, sample_weight, "train_on_batch()")
        sample_weight = data_adapters.with_class_weight(sample_weight, class_weight, ys)
        if self._output_metrics is not None:
            self._reset_metrics()
        self._train_step(xs, ys, sample_weight)
        return self._format_logs(self._synced_logs(), return_dict)

    @_one_thread_at_a_time("test_on_batch()")
    @_serial_blas
    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss and metrics on one batch, without updating weights."""
        self._require_compiled("test_on_batch")
        data_adapters.require_x(x, "test_on_batch()")
        self._ensure_built_for_data(x)
        xs, ys, sample_weight = self._prepare(x, y, sample_weight, "test_on_batch()")
        if self._output_metrics is not None:
            self._reset_metrics()
        self._test_step(xs, ys, sample_weight)
        return self._format_logs(self._synced_logs(), return_dict)

    @_serial_blas
    def predict_on_batch(self, x):
        """Outputs for one batch."""
        data_adapters.require_x(x, "predict_on_batch()")
        self._ensure_built_for_data(x)
        with _named_errors("predict_on_batch()"):
            xs = self._standardize_x(x)
        # Layers reuse this thread's buffers from the last call (fresh large arrays cost page
        # faults); the outputs, which may be such buffers, are copied out.
        outputs = self._graph.infer(xs)
        return self._pack_outputs([np.array(out) for out in outputs])

    def _ensure_built_for_data(self, x) -> None:
        """Hook for models that build from the first data they see (Sequential)."""


class _named_errors:  # noqa: N801 (a context manager read as a function; a class: ~1 us less)
    """Prefix data errors with the call they came from: ``fit(): y has keys ...``."""

    __slots__ = ("caller",)

    def __init__(self, caller: str):
        self.caller = caller

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is ValueError or kind is TypeError:
            raise kind(f"{self.caller}: {error}") from None
        return False


# ---- helpers -----------------------------------------------------------------------------------
@functools.cache
def _takes_training(method) -> bool:
    """Whether ``method`` takes a ``training`` argument (or any keyword)."""
    parameters = inspect.signature(method).parameters.values()
    return any(p.name == "training" or p.kind is p.VAR_KEYWORD for p in parameters)


# predict runs a small model's batches as one pass while their arrays stay under this size (a
# few MB, so memory still grows with the batch size, not the data): results are the same, since
# each sample's outputs depend on it alone, and a small model's pass costs mostly its Python and
# BLAS calls (an MLP's: 66 us at 256 rows, 190 us at 1024).
PREDICT_PASS_BYTES = 1 << 22


try:  # the C module under `signal`, ~10x faster (no enum wrapping): ~1 us a step in all
    import _signal as _sig
except ImportError:  # pragma: no cover - other Pythons
    _sig = signal


class _HeldSigint:
    """Context manager: a SIGINT (Ctrl-C) arriving inside is held and delivered on leaving, so it
    never lands half-way through a training step. Main thread only (Python runs signal handlers
    there and nowhere else); a SIGINT handler installed outside Python is left alone."""

    __slots__ = ("previous", "frame", "received")

    def __enter__(self):
        self.previous = None
        self.received = False
        if threading.current_thread() is not threading.main_thread():
            return self
        previous = _sig.getsignal(signal.SIGINT)
        if previous is None:
            return self
        try:
            _sig.signal(signal.SIGINT, self._hold)
        except ValueError:  # not the main interpreter
            return self
        self.previous = previous
        return self

    def _hold(self, signum, frame):
        self.received, self.frame = True, frame

    def __exit__(self, *exc_info):
        previous = self.previous
        if previous is None:
            return False
        _sig.signal(signal.SIGINT, previous)
        if self.received:
            if callable(previous):  # default_int_handler raises KeyboardInterrupt here
                previous(signal.SIGINT, self.frame)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)
        return False


def _check_positive_int(name, value, allow_zero=False):
    low = 0 if allow_zero else 1
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}; got {name}={value!r}")


def _batch_size(batch_size):
    if batch_size is None:
        return 32
    _check_positive_int("batch_size", batch_size)
    return int(batch_size)


def _verbosity(verbose) -> int:
    if verbose == "auto":
        return 1 if callbacks_module.is_interactive() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"`verbose` must be 'auto', 0, 1 or 2; got verbose={verbose!r}")
    return int(verbose)


def _progress_callbacks(callbacks, model, verbose, steps):
    """The CallbackList of evaluate/predict: one pass of ``steps`` batches, with a progress bar
    (verbose=1) or a closing line (verbose=2), as Keras shows."""
    verbose = _verbosity(verbose)
    params = {"epochs": 1, "steps": steps, "verbose": verbose}
    return callbacks_module.CallbackList(callbacks, model=model, verbose=verbose, params=params)
