"""What the exporter sees of Python code: a subclassed model's or a user's layer's ``call()``,
and a Lambda's function, run once on symbolic tensors.

There, layers add nodes and ``fastnn.ops`` add ``TensorOp`` nodes, as in a Functional model,
and a user's layer called inside runs its own ``call()`` inline (``custom.inlining``) unless a
converter is registered for its class: the result is a graph of layers and ops the walker
converts node by node. Code that needs values (a branch on a tensor, numpy on one) cannot run
on symbolic tensors, and the export is refused naming the layer and what its code raised.
"""

from __future__ import annotations

from fastnn.export.builder import ExportError
from fastnn.export.registry import find
from fastnn.graph import Graph
from fastnn.layers import custom
from fastnn.layers.core import InputLayer, Lambda
from fastnn.nodes import SymbolicTensor


def traceable(layer) -> bool:
    """Whether the walker traces ``layer``'s calls: a Lambda or a ``call()`` layer (a
    subclassed model too) without a converter of its own."""
    return find(layer) is None and (type(layer) is Lambda or getattr(layer, "_runs_call", False))


def traced_graph(node) -> Graph:
    """The graph of ``node``'s call run on symbolic tensors like its inputs."""
    layer = node.layer
    inputs = [InputLayer(batch_shape=t.shape, dtype=t.dtype).output_tensor for t in node.inputs]
    given = inputs if node.inputs_are_list else inputs[0]
    try:
        with custom.inlining(layer, keep=lambda inner: find(inner) is not None):
            outputs = _run(layer, given)
    except ExportError:
        raise
    except Exception as error:
        raise _refusal(
            layer,
            f"its code could not run on symbolic tensors ({type(error).__name__}: {error}); the "
            "exporter runs it once on tensors like its inputs, so it must not need their "
            "values (branch with ops.where, compute with fastnn.ops rather than numpy)",
        ) from error
    flat = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    strays = [type(t).__name__ for t in flat if not isinstance(t, SymbolicTensor)]
    if strays or len(flat) != len(node.outputs):
        raise _refusal(
            layer,
            f"run on symbolic tensors it returned {strays or len(flat)} rather than its "
            f"{len(node.outputs)} output tensor(s) (a computation outside fastnn.ops?)",
        )
    return Graph(inputs, flat)  # its nodes are the trace's alone: no layer lists them


def _run(layer, given):
    if type(layer) is Lambda:
        return layer.function(given, **layer.arguments)
    as_call_inputs = getattr(layer, "_as_call_inputs", None)  # a model built from a dict
    return custom.run_call(layer, as_call_inputs(given) if as_call_inputs else given, False, None)


def _refusal(layer, why: str) -> ExportError:
    return ExportError(f"{type(layer).__name__} '{layer.name}' cannot be exported to ONNX: {why}")
