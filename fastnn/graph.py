"""The layer graph: symbolic tensors, nodes, and forward/backward execution over a DAG.

The graph knows only the layer contract (``forward(inputs, training) -> (outputs, ctx)`` and
``backward(ctx, grad_outputs) -> grad_inputs``), never concrete layer classes. Contexts of a
forward pass are returned to the caller as a tape, so concurrent calls never share state.
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Sequence

import numpy as np

from fastnn import config

#: Arrays one workspace may hold before it starts over (bounds memory when batch shapes vary).
WORKSPACE_LIMIT = 32
#: The context of a node an inference pass ran fused with a neighbour: it has no backward.
FUSED_FOR_INFERENCE = object()
#: The context of a max pool a training pass ran inside its producer's forward_max_pooled: the
#: producer's backward_max_pooled takes the pool's output gradient.
POOLED_BY_PRODUCER = object()


class Workspace:
    """Arrays one node keeps between calls and reuses while shapes stay the same.

    Fresh large arrays cost page faults on every step; a layer that takes a workspace asks it
    for its outputs and scratch buffers instead. Arrays from a workspace are overwritten by the
    node's next call in the same workspace, so only callers that are done with a pass's results
    before the next pass (training steps, batched predict) hand workspaces out.
    """

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays = {}

    def empty(self, name: str, shape, dtype) -> np.ndarray:
        """An uninitialized array of ``shape``/``dtype``, the same one as last time if it fits."""
        key = (name, tuple(shape), np.dtype(dtype).char)
        array = self._arrays.get(key)
        if array is None:
            if len(self._arrays) >= WORKSPACE_LIMIT:
                self._arrays.clear()
            array = self._arrays[key] = np.empty(shape, dtype)
        return array


def scratch(workspace: Workspace | None, name: str, shape, dtype) -> np.ndarray:
    """``workspace.empty(name, shape, dtype)``, or a fresh array when there is no workspace."""
    if workspace is None:
        return np.empty(shape, dtype)
    return workspace.empty(name, shape, dtype)


def scratch_copy(workspace: Workspace | None, name: str, values, dtype=None) -> np.ndarray:
    """A C-contiguous copy of ``values`` (cast to ``dtype``) in ``scratch``'s array ``name``."""
    values = np.asarray(values)
    out = scratch(workspace, name, values.shape, values.dtype if dtype is None else dtype)
    out[...] = values
    return out


class SymbolicTensor:
    """A placeholder for an array in the graph: shape (batch axis None), dtype, origin."""

    __slots__ = ("shape", "dtype", "node", "index", "name")

    def __init__(self, shape, dtype, node=None, index=0, name=None):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.node = node
        self.index = index
        self.name = name

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape}, dtype={self.dtype.name}, name={self.name}>"

    def __hash__(self):
        return id(self)


def is_symbolic(value) -> bool:
    """True if ``value`` is a symbolic tensor or a non-empty list/tuple of them."""
    if isinstance(value, SymbolicTensor):
        return True
    if isinstance(value, (list, tuple)) and value:
        return any(isinstance(v, SymbolicTensor) for v in value)
    return False


class Node:
    """One call of a layer on symbolic tensors: the layer, its input and output tensors."""

    __slots__ = ("layer", "inputs", "outputs", "inputs_are_list", "outputs_are_list", "__weakref__")

    def __init__(self, layer, inputs, output_shapes, output_dtype):
        self.layer = layer
        self.inputs_are_list = isinstance(inputs, (list, tuple))
        self.inputs = list(inputs) if self.inputs_are_list else [inputs]
        self.outputs_are_list = isinstance(output_shapes, list)
        shapes = output_shapes if self.outputs_are_list else [output_shapes]
        self.outputs = [
            SymbolicTensor(shape, output_dtype, node=self, index=i, name=layer.name)
            for i, shape in enumerate(shapes)
        ]
        layer._inbound_nodes.append(self)

    @property
    def parents(self) -> list[Node]:
        return [t.node for t in self.inputs if t.node is not None]

    @property
    def is_input(self) -> bool:
        return not self.inputs

    def pack_inputs(self, arrays):
        return list(arrays) if self.inputs_are_list else arrays[0]

    def pack_outputs(self, arrays):
        return list(arrays) if self.outputs_are_list else arrays[0]

    def symbolic_outputs(self):
        return self.pack_outputs(self.outputs)


def _flatten(tensors) -> list:
    if isinstance(tensors, dict):
        return list(tensors.values())
    if isinstance(tensors, (list, tuple)):
        return list(tensors)
    return [tensors]


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
        # Positions of every tensor's value in the flat value table used by forward/backward.
        self._slot = {}
        for t in self.inputs:
            self._slot.setdefault(id(t), len(self._slot))
        for node in self.nodes:
            for t in node.outputs:
                self._slot.setdefault(id(t), len(self._slot))
        self._node_input_slots = [[self._slot[id(t)] for t in n.inputs] for n in self.nodes]
        self._node_output_slots = [[self._slot[id(t)] for t in n.outputs] for n in self.nodes]
        self._input_slots = [self._slot[id(t)] for t in self.inputs]
        self._output_slots = [self._slot[id(t)] for t in self.outputs]
        self._thread_workspaces = threading.local()
        # Per node: does any input's value depend on weights (or, second list, on the graph's
        # inputs too)? If not, its input gradient reaches nothing that needs it.
        self._input_grad_needed = {flag: self._nodes_needing_input_grads(flag) for flag in (0, 1)}
        readers = self._slot_readers()
        self._table_row_sources = self._find_table_row_sources(readers)
        self._makes_masks = any(node.layer.makes_masks for node in self.nodes)
        self._max_pool_readers = self._find_max_pool_readers(readers)
        trained = {
            i: j
            for i, j in self._max_pool_readers.items()
            if self.nodes[i].layer.trains_fused_max_pool
        }
        # per training flag: {producer: its pool}, and the pools
        self._fused_pools = {
            flag: (pairs, set(pairs.values()))
            for flag, pairs in ((False, self._max_pool_readers), (True, trained))
        }
        #: Layers without a backward that a training step would have to run backward.
        self.blocks_training = [
            node.layer
            for node, needed in zip(self.nodes, self._input_grad_needed[0])
            if needed and not node.layer.has_backward
        ]

    def _slot_readers(self) -> dict:
        """{slot: indexes of the nodes reading it, once per read}."""
        readers = collections.defaultdict(list)
        for i, slots in enumerate(self._node_input_slots):
            for s in slots:
                readers[s].append(i)
        return readers

    def _find_table_row_sources(self, readers: dict) -> dict:
        """{node index: index of the node feeding it table rows}, for each layer that
        ``takes_table_rows`` whose one input is the 3-D output of a layer that
        ``gathers_table_rows`` (Embedding), read by no other node and not a model output."""
        producer = {s: i for i, slots in enumerate(self._node_output_slots) for s in slots}
        sources = {}
        for i, node in enumerate(self.nodes):
            slots = self._node_input_slots[i]
            if not node.layer.takes_table_rows or node.inputs_are_list or len(slots) != 1:
                continue
            source = producer.get(slots[0])
            if (
                source is not None
                and self.nodes[source].layer.gathers_table_rows
                and len(readers[slots[0]]) == 1
                and slots[0] not in self._output_slots
                and len(node.inputs[0].shape) == 3
            ):
                sources[i] = source
        return sources

    def _find_max_pool_readers(self, readers: dict) -> dict:
        """{node index: index of its only reader}, for each layer that ``fuses_max_pool`` whose
        one output is read only by a 2x2 max pool (``is_max_pool_2x2``) and is no model output:
        the graph runs the pair as one ``forward_max_pooled`` (in training if the layer
        ``trains_fused_max_pool``)."""
        pairs = {}
        for i, node in enumerate(self.nodes):
            out_slots = self._node_output_slots[i]
            if not node.layer.fuses_max_pool or node.inputs_are_list or len(out_slots) != 1:
                continue
            (slot,) = out_slots
            if len(readers[slot]) != 1 or slot in self._output_slots:
                continue
            reader = readers[slot][0]
            if self.nodes[reader].layer.is_max_pool_2x2 and not self.nodes[reader].inputs_are_list:
                pairs[i] = reader
        return pairs

    def bytes_per_sample(self) -> int | None:
        """Bytes of one sample's inputs and of every tensor a pass computes for it (None when
        a size is not known before the data comes)."""
        tensors = self.inputs + [t for node in self.nodes for t in node.outputs]
        if any(d is None for t in tensors for d in t.shape[1:]):
            return None
        return sum(math.prod(t.shape[1:]) * t.dtype.itemsize for t in tensors)

    def _nodes_needing_input_grads(self, graph_inputs: bool) -> list[bool]:
        depends = [False] * len(self._slot)
        for slot in self._input_slots:
            depends[slot] = graph_inputs
        needed = []
        for node, in_slots, out_slots in zip(
            self.nodes, self._node_input_slots, self._node_output_slots
        ):
            needs = any(depends[s] for s in in_slots)
            needed.append(needs)
            for s in out_slots:
                depends[s] = needs or bool(node.layer.weights)
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

    def _workspaces(self, purpose):
        """This thread's workspaces for ``purpose`` ('train', 'predict', ...), one per node."""
        per_thread = self._thread_workspaces.__dict__
        if purpose not in per_thread:
            per_thread[purpose] = [
                Workspace() if node.layer.uses_workspace else None for node in self.nodes
            ]
        return per_thread[purpose]

    def forward(self, input_arrays: list, training: bool, reuse: str | None = None):
        """Run every node in order; return (output arrays, tape of values and ctxs).

        With ``reuse`` (a purpose such as 'train'), layers reuse this thread's buffers from the
        previous pass of that purpose: the caller must be done with the previous pass's outputs
        and tape. Without it every array is fresh. BLAS runs on one thread inside (``fastnn.gemm``).
        """
        with config.serial_blas():
            return self._forward(input_arrays, training, reuse)

    def _forward(self, input_arrays, training, reuse):
        workspaces = self._workspaces(reuse) if reuse else [None] * len(self.nodes)
        values = [None] * len(self._slot)
        # e.g. Embedding(mask_zero=True) -> LSTM; None when no layer makes masks
        masks = [None] * len(self._slot) if self._makes_masks else None
        for slot, array in zip(self._input_slots, input_arrays):
            values[slot] = array
        ctxs = []
        gathered_by_readers = set(self._table_row_sources.values())
        pools, pooled_by_producer = self._fused_pools[bool(training)]
        for i, (node, in_slots, out_slots, workspace) in enumerate(
            zip(self.nodes, self._node_input_slots, self._node_output_slots, workspaces)
        ):
            layer = node.layer
            if i in pooled_by_producer:  # its output came with its input (below)
                ctxs.append(POOLED_BY_PRODUCER if training else FUSED_FOR_INFERENCE)
                continue
            args = node.pack_inputs([values[s] for s in in_slots])
            if i in pools:  # e.g. Conv2D -> MaxPooling2D(2)
                (pooled_slot,) = self._node_output_slots[pools[i]]
                values[pooled_slot], ctx = layer.forward_max_pooled(args, training, workspace)
                ctxs.append(FUSED_FOR_INFERENCE if ctx is None else ctx)
                continue
            extra = {} if workspace is None else {"workspace": workspace}
            mask = None
            if masks is not None:
                in_masks = [masks[s] for s in in_slots]
                mask = None if all(m is None for m in in_masks) else node.pack_inputs(in_masks)
                if mask is not None and layer.supports_masking:
                    extra["mask"] = mask
            if i in self._table_row_sources:  # e.g. an LSTM reading an Embedding's output
                source = self._table_row_sources[i]
                extra["embedded"] = (ctxs[source], self.nodes[source].layer)
            elif i in gathered_by_readers:  # ... which then gathers no rows itself
                extra["gather"] = False
            outputs, ctx = layer.forward(args, training, **extra)
            ctxs.append(ctx)
            if not node.outputs_are_list:
                values[out_slots[0]] = outputs
                if masks is not None:
                    masks[out_slots[0]] = layer.compute_mask(args, mask)
                continue
            out_masks = [None] * len(out_slots)
            if masks is not None:
                out_mask = layer.compute_mask(args, mask)
                out_masks = out_mask if isinstance(out_mask, list) else [out_mask] * len(out_slots)
                for s, m in zip(out_slots, out_masks):
                    masks[s] = m
            for s, out in zip(out_slots, outputs):
                values[s] = out
        return [values[s] for s in self._output_slots], (values, ctxs)

    def backward(self, tape, output_grads: list, need_input_grads: bool = True) -> list:
        """Propagate gradients from the outputs; weights accumulate .grad; return input grads
        (None for each input when ``need_input_grads`` is False, as in a training step).

        Input gradients nothing needs are not computed: a weightless node fed only by the graph's
        inputs is skipped, and a layer with ``skips_input_grad`` (a model's first Conv2D or
        Dense) is told ``need_input_grad=False``.
        """
        with config.serial_blas():
            return self._backward(tape, output_grads, need_input_grads)

    def _backward(self, tape, output_grads, need_input_grads):
        values, ctxs = tape
        input_grad_needed = self._input_grad_needed[int(need_input_grads)]
        grads = [None] * len(values)
        for slot, g in zip(self._output_slots, output_grads):
            if g is not None:
                grads[slot] = g if grads[slot] is None else grads[slot] + g
        for i in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[i]
            layer = node.layer
            if ctxs[i] is POOLED_BY_PRODUCER:  # its producer's backward_max_pooled runs it
                continue
            backward = layer.backward
            out_slots = self._node_output_slots[i]
            pool = self._max_pool_readers.get(i)
            if pool is not None and ctxs[pool] is POOLED_BY_PRODUCER:
                backward = layer.backward_max_pooled
                out_slots = self._node_output_slots[pool]
            out_grads = [grads[s] for s in out_slots]
            if all(g is None for g in out_grads):
                continue
            if node.outputs_are_list:
                out_grads = [
                    np.zeros_like(values[s]) if g is None else g
                    for s, g in zip(out_slots, out_grads)
                ]
            if ctxs[i] is FUSED_FOR_INFERENCE:
                raise ValueError(
                    f"{type(layer).__name__} '{layer.name}' has no gradient from this pass: at "
                    "inference (training=False) it ran fused with its neighbour and kept nothing "
                    "for a backward pass. Run the forward pass with training=True."
                )
            if not input_grad_needed[i]:
                if not layer.weights:
                    continue
                if layer.skips_input_grad:
                    backward(ctxs[i], node.pack_outputs(out_grads), need_input_grad=False)
                    continue
            in_grads = backward(ctxs[i], node.pack_outputs(out_grads))
            if not input_grad_needed[i]:
                continue
            if not node.inputs_are_list:
                in_grads = [in_grads]
            for s, g in zip(self._node_input_slots[i], in_grads):
                if g is None:
                    continue
                # Fan-out: a tensor read by several nodes sums their gradients.
                grads[s] = g if grads[s] is None else grads[s] + g
        return [grads[s] for s in self._input_slots]


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

    def visit(tensor):
        node = tensor.node
        if node is None:
            raise ValueError(f"Tensor {tensor} was not produced by a layer or an Input.")
        if id(node) in finished:
            return
        if id(tensor) in input_ids and not node.is_input:
            finished.add(id(node))
            return
        if id(node) in in_progress:
            raise ValueError(f"Tensor {tensor} from layer '{node.layer.name}' is part of a cycle.")
        first_seen.setdefault(id(node.layer), len(first_seen))
        in_progress.add(id(node))
        for parent_tensor in node.inputs:
            visit(parent_tensor)
        in_progress.discard(id(node))
        finished.add(id(node))
        ordered.append(node)

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
