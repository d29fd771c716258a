"""The layer graph: forward and backward over a DAG of layer nodes.

The graph knows only the layer contract (``forward(inputs, training) -> (outputs, ctx)`` and
``backward(ctx, grad_outputs) -> grad_inputs``), never concrete layer classes. At build, the
fusion rules (``fastnn.fusion``) rewrite the nodes it runs: ``nodes`` are the model's layer
calls as the user wrote them, ``steps`` what runs. Contexts of a forward pass are returned to
the caller as a tape, so concurrent calls never share state.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fastnn import fusion, kernels, runtime
from fastnn.kernels.workspace import Workspace, kept_for, scratch
from fastnn.nodes import SymbolicTensor
from fastnn.ops.tensor import weights_generation

# Below this many values a fan-out's gradients are summed by numpy; above, on fastnn's threads.
SUM_KERNEL_MIN_VALUES = 1 << 16


class Tape(NamedTuple):
    """What a forward pass keeps for its backward: the values by slot, each step's context, and
    the workspace the backward sums fan-out gradients in (None: fresh arrays)."""

    values: list
    ctxs: list
    workspace: Workspace | None


class Graph:
    """A DAG from input tensors to output tensors, ordered once; runs forward and backward."""

    def __init__(self, inputs: Sequence[SymbolicTensor], outputs: Sequence[SymbolicTensor]):
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        for role, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for t in tensors:
                if not isinstance(t, SymbolicTensor):
                    raise _not_a_tensor_error(role, t)
        self.nodes, self.layers = _order_graph(self.inputs, self.outputs)
        self._check_unique_names()
        #: What runs: ``nodes`` after the fusion rules' rewrites.
        self.steps = fusion.rewrite(self.nodes, self.outputs)
        # Positions of every tensor's value in the flat value table used by forward/backward.
        self._slot = {}
        for t in self.inputs:
            self._slot.setdefault(id(t), len(self._slot))
        for step in self.steps:
            for t in step.outputs:
                self._slot.setdefault(id(t), len(self._slot))
        self._step_input_slots = [[self._slot[id(t)] for t in s.inputs] for s in self.steps]
        self._step_output_slots = [[self._slot[id(t)] for t in s.outputs] for s in self.steps]
        self._input_slots = [self._slot[id(t)] for t in self.inputs]
        self._output_slots = [self._slot[id(t)] for t in self.outputs]
        self._thread_workspaces = threading.local()
        self._thread_calls = threading.local()  # the steps' inference calls (``infer``)
        # Per step: does any input's value depend on weights (or, second list, on the graph's
        # inputs too)? If not, its input gradient reaches nothing that needs it.
        self._input_grad_needed = {flag: self._steps_needing_input_grads(flag) for flag in (0, 1)}
        self._makes_masks = any(step.layer.makes_masks for step in self.steps)
        #: Steps whose passes may add losses (call() layers, models holding them).
        self._loss_steps = [i for i, step in enumerate(self.steps) if step.layer.may_add_losses]
        #: Those that are call() layers: their contexts hold the values (``added_losses``).
        self._call_steps = [i for i in self._loss_steps if self.steps[i].layer._runs_call]
        self._other_loss_steps = [i for i in self._loss_steps if i not in self._call_steps]
        #: Layers without a backward that a training step would have to run backward.
        self.blocks_training = [
            step.layer
            for step, needed in zip(self.steps, self._input_grad_needed[0])
            if needed and not step.layer.has_backward
        ]

    def bytes_per_sample(self) -> int | None:
        """Bytes of one sample's inputs and of every tensor a pass computes for it (None when
        a size is not known before the data comes)."""
        tensors = self.inputs + [t for step in self.steps for t in step.outputs]
        if any(d is None for t in tensors for d in t.shape[1:]):
            return None
        return sum(math.prod(t.shape[1:]) * t.dtype.itemsize for t in tensors)

    def _steps_needing_input_grads(self, graph_inputs: bool) -> list[bool]:
        depends = [False] * len(self._slot)
        for slot in self._input_slots:
            depends[slot] = graph_inputs
        needed = []
        for step, in_slots, out_slots in zip(
            self.steps, self._step_input_slots, self._step_output_slots
        ):
            needs = any(depends[s] for s in in_slots)
            needed.append(needs)
            for s in out_slots:
                depends[s] = needs or bool(step.layer.weights)
        return needed

    def _check_unique_names(self):
        seen = {}
        for layer in self.layers:
            if layer.name in seen and seen[layer.name] is not layer:
                raise ValueError(
                    f'The name "{layer.name}" is used by two layers in the model. '
                    "All layer names should be unique: pass distinct `name=` arguments."
                )
            seen[layer.name] = layer

    def _workspaces(self, reuse):
        """This thread's workspaces for ``reuse``, one per step, then the backward's. ``reuse``
        is a purpose ('train', 'predict', ...), or the Workspace a nested model's caller handed
        it, which keeps them."""
        if isinstance(reuse, Workspace):
            return kept_for(reuse, self, self._new_workspaces)
        per_thread = self._thread_workspaces.__dict__
        if reuse not in per_thread:
            per_thread[reuse] = self._new_workspaces()
        return per_thread[reuse]

    def _new_workspaces(self) -> list:
        steps = [Workspace() if step.layer.uses_workspace else None for step in self.steps]
        return [*steps, Workspace()]

    def forward(self, input_arrays: list, training: bool, reuse: str | Workspace | None = None):
        """Run every step in order; return (output arrays, ``Tape``).

        With ``reuse`` (a purpose such as 'train', or a nested model's Workspace), layers and
        the backward reuse this thread's buffers from the previous pass of that purpose: the
        caller must be done with the previous pass's outputs, tape and input gradients. Without
        it every array is fresh. The public call that runs it (``fit``,
        ``predict``, ``model(x)``, ...) holds the serial-BLAS section (``fastnn.runtime``).
        """
        workspaces = self._workspaces(reuse) if reuse else [None] * (len(self.steps) + 1)
        values = [None] * len(self._slot)
        # e.g. Embedding(mask_zero=True) -> LSTM; None when no layer makes masks
        masks = [None] * len(self._slot) if self._makes_masks else None
        for slot, array in zip(self._input_slots, input_arrays):
            values[slot] = array
        ctxs = []
        for step, in_slots, out_slots, workspace in zip(
            self.steps, self._step_input_slots, self._step_output_slots, workspaces
        ):
            layer = step.layer
            args = step.pack_inputs([values[s] for s in in_slots])
            extra = {} if workspace is None else {"workspace": workspace}
            mask = None if masks is None else _input_mask(step, in_slots, masks)
            if mask is not None and (layer.supports_masking or layer._takes_mask):
                extra["mask"] = mask
            outputs, ctx = layer.forward(args, _mode(training, step), **extra)
            ctxs.append(ctx)
            for s, out in zip(out_slots, outputs if step.outputs_are_list else [outputs]):
                values[s] = out
            if masks is not None:
                _store_masks(step, out_slots, masks, args, mask)
        return [values[s] for s in self._output_slots], Tape(values, ctxs, workspaces[-1])

    def infer(self, input_arrays: list, reuse="predict", training=False, kept=None) -> list:
        """The outputs of an inference pass no backward follows (predict): ``forward`` with
        ``training`` (False, or None: each layer's default) and ``reuse``, each step run by its
        layer's ``inference_call`` where it has one (made once per shapes and dtypes of its
        inputs: every choice the step's kernels make is made then), else by its ``forward``.
        ``kept``: a dict of the caller's that keeps the pass's calls and arrays in place of this
        thread's for ``reuse`` (a nested model's inference call: one per call site)."""
        if self._makes_masks:
            return self.forward(input_arrays, training, None if kept is not None else reuse)[0]
        workspaces, calls = self._inference_state(reuse, training, kept)
        values = [None] * len(self._slot)
        for slot, array in zip(self._input_slots, input_arrays):
            values[slot] = array
        for step, in_slots, out_slots, workspace, made in zip(
            self.steps, self._step_input_slots, self._step_output_slots, workspaces, calls
        ):
            args = step.pack_inputs([values[s] for s in in_slots])
            key = _signature(args)
            call = made.get(key, _UNMADE)
            mode = _mode(training, step)
            if call is _UNMADE:
                if len(made) >= MAX_INFERENCE_CALLS:  # shapes that keep changing: no hoarding
                    made.clear()
                call = made[key] = _inference_call(step.layer, args, mode)
            if call is None:
                extra = {} if workspace is None else {"workspace": workspace}
                outputs = step.layer.forward(args, mode, **extra)[0]
            else:
                outputs = call(args)
            for s, out in zip(out_slots, outputs if step.outputs_are_list else [outputs]):
                values[s] = out
        return [values[s] for s in self._output_slots]

    def _inference_state(self, reuse, training, kept) -> tuple[list, list]:
        """(workspaces, inference calls) of an ``infer`` pass: this thread's for ``reuse``
        and training None or not, or those ``kept`` holds."""
        if kept is None:
            per_thread = self._thread_calls.__dict__
            return self._workspaces(reuse), self._inference_calls(
                per_thread, (reuse, training is None)
            )
        if "workspaces" not in kept:
            kept["workspaces"] = self._new_workspaces()
        return kept["workspaces"], self._inference_calls(kept, "calls")

    def _inference_calls(self, store: dict, key) -> list:
        """The steps' ``inference_call``s kept in ``store`` under ``key`` (a dict per step, by
        ``_signature``), made anew when a weight was written or the thread count changed."""
        state = (weights_generation(), runtime.threads())
        kept = store.get(key)
        if kept is None or kept[0] != state:
            kept = store[key] = (state, [{} for _ in self.steps])
        return kept[1]

    @property
    def may_add_losses(self) -> bool:
        """Whether a pass may add losses (a step is a call() layer or holds one)."""
        return bool(self._loss_steps)

    def added_losses(self, tape) -> list:
        """The ``add_loss`` values of the pass that made ``tape`` (empty for graphs of built-in
        layers alone)."""
        if not self._loss_steps:
            return []
        ctxs, found = tape[1], []
        for i in self._call_steps:
            losses = ctxs[i].added_losses
            if losses:
                found += losses
        for i in self._other_loss_steps:
            found += self.steps[i].layer.added_losses(ctxs[i])
        return found

    def run(self, input_values: list, training: bool) -> list:
        """Run every step as a layer call: under a recording GradientTape each built-in step is
        one tape entry (``Layer._call_arrays``) and a ``call()`` layer's ops record one by one,
        so the tape differentiates the whole graph and its ``add_loss`` values. The outputs."""
        values = [None] * len(self._slot)
        masks = [None] * len(self._slot) if self._makes_masks else None
        for slot, value in zip(self._input_slots, input_values):
            values[slot] = value
        for step, in_slots, out_slots in zip(
            self.steps, self._step_input_slots, self._step_output_slots
        ):
            layer = step.layer
            args = step.pack_inputs([values[s] for s in in_slots])
            extra = {}
            mask = None if masks is None else _input_mask(step, in_slots, masks)
            mode = _mode(training, step)
            if layer._runs_call:
                outputs = layer._call_user(args, (), {}, mode, mask)
            else:
                if mask is not None and layer.supports_masking:
                    extra["mask"] = mask
                outputs = layer._call_arrays(args, mode, extra)
            for s, out in zip(out_slots, outputs if step.outputs_are_list else [outputs]):
                values[s] = out
            if masks is not None:
                _store_masks(step, out_slots, masks, args, mask)
        return [values[s] for s in self._output_slots]

    def backward(self, tape, output_grads: list, need_input_grads: bool = True) -> list:
        """Propagate gradients from the outputs; weights accumulate .grad; return input grads
        (None for each input when ``need_input_grads`` is False, as in a training step).

        Input gradients nothing needs are not computed: a weightless step fed only by the graph's
        inputs is skipped, and a layer with ``skips_input_grad`` (a model's first Conv2D or
        Dense) is told ``need_input_grad=False``.
        """
        values, ctxs, workspace = tape
        input_grad_needed = self._input_grad_needed[int(need_input_grads)]
        grads = [None] * len(values)
        for slot, g in zip(self._output_slots, output_grads):
            if g is not None:
                grads[slot] = g if grads[slot] is None else _summed(grads[slot], g, slot, workspace)
        for i in range(len(self.steps) - 1, -1, -1):
            step, layer = self.steps[i], self.steps[i].layer
            out_slots = self._step_output_slots[i]
            out_grads = [grads[s] for s in out_slots]
            # A call() layer's add_loss values need its backward even with no output gradient.
            if all(g is None for g in out_grads) and not (
                self._loss_steps and layer.added_losses(ctxs[i])
            ):
                continue
            if step.outputs_are_list:
                out_grads = [
                    np.zeros_like(values[s]) if g is None else g
                    for s, g in zip(out_slots, out_grads)
                ]
            if not input_grad_needed[i]:
                if not layer.weights:
                    continue
                if layer.skips_input_grad:
                    layer.backward(ctxs[i], step.pack_outputs(out_grads), need_input_grad=False)
                    continue
            in_grads = layer.backward(ctxs[i], step.pack_outputs(out_grads))
            if not input_grad_needed[i]:
                continue
            if not step.inputs_are_list:
                in_grads = [in_grads]
            for s, g in zip(self._step_input_slots[i], in_grads):
                if g is None:
                    continue
                # Fan-out: a tensor read by several steps sums their gradients.
                grads[s] = g if grads[s] is None else _summed(grads[s], g, s, workspace)
        return [grads[s] for s in self._input_slots]


#: Input signatures whose inference calls a step keeps (a predict's full and last batch).
MAX_INFERENCE_CALLS = 4
_UNMADE = object()


def _signature(args) -> tuple:
    """The shapes and dtypes of a step's inputs: what its inference call is made for."""
    if isinstance(args, list):
        return tuple((a.shape, a.dtype) for a in args)
    return args.shape, args.dtype


def _mode(training, step) -> bool | None:
    """The training mode a step runs in: the pass's, or where that is None the one its call
    fixed (``Dropout(0.5)(x, training=True)``), as Keras 3's functional models do."""
    return step.training if training is None else training


def _inference_call(layer, args, training):
    """``layer.inference_call(args)``, or None where a class below the one that defines it
    overrides ``forward`` or ``call`` (a user's subclass of Dense computes what it says), for
    training True, or for None where the layer's call stands for training False only."""
    if training or (training is None and not layer.inference_call_at_none):
        return None
    mro = type(layer).__mro__
    owner = next(i for i, cls in enumerate(mro) if "inference_call" in cls.__dict__)
    if any("forward" in cls.__dict__ or "call" in cls.__dict__ for cls in mro[:owner]):
        return None
    return layer.inference_call(args)


def _summed(held, g, slot: int, workspace: Workspace | None):
    """held + g, two gradients of the tensor in ``slot``: float arrays alike are summed into the
    slot's array of ``workspace`` (where a third is then added in place) without a fresh
    array's page faults (a ResNet's residual sums: 20 MB a step), on fastnn's threads."""
    alike = (
        isinstance(held, np.ndarray)
        and isinstance(g, np.ndarray)
        and held.shape == g.shape
        and held.dtype == g.dtype
        and held.dtype.kind == "f"
        and held.ndim > 0
    )
    if not alike:
        return held + g
    out = scratch(workspace, f"sum{slot}", held.shape, held.dtype)
    if held.size < SUM_KERNEL_MIN_VALUES or not (held.flags.c_contiguous and g.flags.c_contiguous):
        return np.add(held, g, out=out)
    rows = (-1, held.shape[-1])
    kernels.activations.add_activation_forward(
        held.reshape(rows), g.reshape(rows), kernels.codes.LINEAR, out.reshape(rows)
    )
    return out


def _input_mask(step, in_slots: list, masks: list):
    """The mask of a step's inputs, packed as the step takes them; None when there is none."""
    in_masks = [masks[s] for s in in_slots]
    return None if all(m is None for m in in_masks) else step.pack_inputs(in_masks)


def _store_masks(step, out_slots: list, masks: list, args, mask) -> None:
    """Put the masks of a step's outputs in their slots."""
    out_mask = step.layer.compute_mask(args, mask)
    if not isinstance(out_mask, list):
        out_mask = [out_mask] * len(out_slots)
    for s, m in zip(out_slots, out_mask):
        masks[s] = m


def _not_a_tensor_error(role, value):
    if hasattr(value, "_inbound_nodes") and hasattr(value, "forward"):
        return ValueError(
            f"Model {role}= got the layer '{value.name}' ({type(value).__name__}), which is not a "
            "tensor. Call the layer on a tensor first, e.g. `output = layer(x)`, and pass the "
            "result."
        )
    return TypeError(
        f"Model {role}= must be symbolic tensors from `fastnn.Input(...)` and layer calls; "
        f"got {type(value).__name__}: {value!r:.80}"
    )


def _order_graph(inputs, outputs):
    """Topologically order the nodes between inputs and outputs; order the layers as Keras does."""
    input_ids = {id(t) for t in inputs}
    finished, in_progress = set(), set()
    ordered = []
    first_seen = {}

    def visit(output):  # depth first, parents in order; a stack, not recursion: deep models
        stack = [(output, False)]
        while stack:
            tensor, parents_done = stack.pop()
            node = tensor.node
            if parents_done:
                in_progress.discard(id(node))
                finished.add(id(node))
                ordered.append(node)
                continue
            if node is None:
                raise ValueError(f"Tensor {tensor} was not produced by a layer or an Input.")
            if id(node) in finished:
                continue
            if id(tensor) in input_ids and not node.is_input:
                finished.add(id(node))
                continue
            if id(node) in in_progress:
                raise ValueError(
                    f"Tensor {tensor} from layer '{node.layer.name}' is part of a cycle."
                )
            first_seen.setdefault(id(node.layer), len(first_seen))
            in_progress.add(id(node))
            stack.append((tensor, True))
            stack.extend((parent, False) for parent in reversed(node.inputs))

    for t in outputs:
        visit(t)

    _check_connected(inputs, ordered)

    # Depth: 0 at the outputs, a parent is one deeper than its deepest consumer.
    depth = {}
    layer_depth = {}
    in_graph = {id(n) for n in ordered}
    for node in reversed(ordered):
        d = max(depth.setdefault(id(node), 0), layer_depth.get(id(node.layer), 0))
        depth[id(node)] = d
        layer_depth[id(node.layer)] = d
        for parent in node.parents:
            if id(parent) in in_graph:
                depth[id(parent)] = max(depth.get(id(parent), 0), d + 1)
    layers = {}
    for node in ordered:
        layers.setdefault(id(node.layer), node.layer)
    for t in inputs:  # unused inputs still count as layers of the model
        if t.node is not None and t.node.is_input and id(t.node.layer) not in layers:
            layers[id(t.node.layer)] = t.node.layer
            layer_depth[id(t.node.layer)] = 0
            first_seen[id(t.node.layer)] = -1
    layer_list = sorted(
        layers.values(), key=lambda lay: (-layer_depth[id(lay)], first_seen[id(lay)])
    )
    nodes = sorted(ordered, key=lambda n: -depth[id(n)])  # stable: keeps DFS order within a depth
    return [n for n in nodes if not n.is_input], layer_list


def _check_connected(inputs, ordered):
    computable = {id(t) for t in inputs}
    for node in ordered:
        if node.is_input and not any(id(t) in computable for t in node.outputs):
            raise ValueError(
                f"Graph disconnected: the model's outputs depend on the input "
                f"'{node.layer.name}', which is not among the model's inputs "
                f"{[t.name for t in inputs]}. Pass it in `inputs=`."
            )
        for t in node.inputs:
            if id(t) not in computable:
                raise ValueError(
                    f"Graph disconnected: cannot reach tensor {t} (input of layer "
                    f"'{node.layer.name}') from the model's inputs."
                )
        computable.update(id(t) for t in node.outputs)
