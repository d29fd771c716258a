"""Export a model to ONNX: walk its graph of layer calls (before fusion) in run order and let
each layer's converter (``fastnn.export.registry``) add its nodes.

Model inputs and outputs keep Keras's layout and names; inside, convolution chains run
channels-first (``GraphBuilder.as_layout``). A BatchNormalization that alone reads a linear
Dense or convolution is folded into its weights. Nested Functional and Sequential models are
inlined; anything the walker cannot export faithfully raises ``ExportError`` naming the layer,
and no file is written.
"""

from __future__ import annotations

import os

import numpy as np

from fastnn.export import (  # noqa: F401 (they register their converters)
    convert_attention,
    convert_conv,
    convert_core,
    convert_extra,
    convert_image,
    convert_ops,
    convert_recurrent,
    tracing,
)
from fastnn.export.builder import (
    ExportError,
    GraphBuilder,
    Value,
    check_opset,
    default_opset,
    import_onnx,
    onnx_type,
)
from fastnn.export.registry import Call, convert, find
from fastnn.layers.normalization import BatchNormalization
from fastnn.models import Model
from fastnn.saving.files import atomic_write

_PROTOBUF_LIMIT = 2**31


def export_onnx(
    model,
    path,
    opset: int | None = None,
    batch_size: int | None = None,
    assume_post_padding: bool = False,
):
    """Write ``model`` as an ONNX file at ``path``; return the ``onnx.ModelProto``."""
    proto = model_proto(model, opset, batch_size, assume_post_padding)
    if proto.ByteSize() >= _PROTOBUF_LIMIT:
        raise ExportError(
            f"ONNX export: model '{model.name}' takes {proto.ByteSize() / 2**30:.1f} GiB, more "
            "than the 2 GiB one ONNX file (a protobuf) can hold"
        )
    onnx = import_onnx()
    try:  # the file must load wherever ONNX is read: types and shapes checked too
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(
            f"ONNX export of model '{model.name}' made a graph ONNX rejects, a bug in fastnn's "
            f"exporter (please report it); nothing was written: {error}"
        ) from error
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with atomic_write(path) as f:  # the old file or the new one, never half of one
        f.write(proto.SerializeToString())
    return proto


def model_proto(model, opset=None, batch_size=None, assume_post_padding=False):
    """The ``onnx.ModelProto`` of ``model`` (see ``fastnn.export.onnx``)."""
    graph = _functional_graph(model, outermost=True)
    opset = default_opset() if opset is None else check_opset(opset)
    if batch_size is not None and (
        not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool)
        or batch_size <= 0
    ):  # fmt: skip
        raise ExportError(
            f"ONNX export: `batch_size` must be a positive integer or None (a dynamic batch "
            f"axis); got batch_size={batch_size!r}"
        )
    builder = GraphBuilder(opset, model.dtype)
    onnx = builder.onnx
    options = {"assume_post_padding": bool(assume_post_padding), "batch_size": batch_size}
    input_names, output_names = list(model.input_names), list(model.output_names)
    for name in input_names + output_names:
        builder.reserve(name)
    batch = batch_size if batch_size is not None else None
    values = {}
    graph_inputs = []
    for name, tensor in zip(input_names, graph.inputs):
        shape = (batch, *tensor.shape[1:])
        value = name
        if tensor.dtype.kind == "f" and tensor.dtype != builder.dtype:  # as the layers cast
            value = builder.op("Cast", [name], name, to=onnx_type(onnx, builder.dtype))
        values[id(tensor)] = Value(value, shape)
        graph_inputs.append(_value_info(onnx, name, tensor.dtype, shape, "batch"))
    masks = {}
    _walk(builder, graph, values, masks, options)
    graph_outputs = []
    for name, tensor in zip(output_names, graph.outputs):
        value = builder.native(values[id(tensor)], name)
        if name in input_names:  # an input returned as it is: the graph's input, no node
            if value.name != name:
                raise ExportError(
                    f"ONNX export: the output name '{name}' is also an input's; ONNX needs "
                    "distinct names"
                )
        else:
            builder.op_into("Identity", [value.name], [name], name)
        shape = (batch, *tensor.shape[1:])
        graph_outputs.append(_value_info(onnx, name, tensor.dtype, shape, "batch"))
    builder.prune(output_names)
    onnx_graph = onnx.helper.make_graph(
        builder.nodes, model.name, graph_inputs, graph_outputs, builder.initializers
    )
    proto = onnx.helper.make_model(
        onnx_graph,
        opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="fastnn",
        ir_version=_ir_version(onnx, opset),
    )
    return proto


def _ir_version(onnx, opset: int) -> int:
    """The IR version that goes with ``opset`` (not the newest: older runtimes refuse it)."""
    for _release, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx == opset:
            return ir
    return onnx.IR_VERSION


def _value_info(onnx, name, dtype, shape, batch_param):
    elem = onnx_type(onnx, dtype)
    dims = [
        (batch_param if i == 0 else f"{name}_dim{i}") if d is None else int(d)
        for i, d in enumerate(shape)
    ]
    return onnx.helper.make_tensor_value_info(name, elem, dims)


def _functional_graph(model, outermost: bool = False):
    """The layer graph of a Functional or Sequential model, or the reason it has none."""
    if not _is_model(model):
        raise ExportError(
            f"ONNX export takes a fastnn Model (Functional or Sequential); got "
            f"{type(model).__module__}.{type(model).__name__}"
        )
    if getattr(model, "_subclassed", False) and not model._runs_call:
        raise ExportError(
            f"{type(model).__name__} '{model.name}' cannot be exported to ONNX: it is a "
            "subclassed model without call(), so it computes nothing of its own"
        )
    graph = getattr(model, "_graph", None)
    if graph is None:
        what = "the model" if outermost else f"the nested model '{model.name}'"
        raise ExportError(
            f"{type(model).__name__} '{model.name}' cannot be exported to ONNX: {what} is not "
            "built; call it on data or give its first layer an input shape first"
        )
    return graph


def _is_model(layer) -> bool:
    return isinstance(layer, Model)


def _walk(builder, graph, values: dict, masks: dict, options: dict) -> None:
    """Convert ``graph``'s nodes in run order; ``values`` maps tensors (by id) to Values."""
    readers = _readers(graph)
    folds = _bn_folds(graph, readers)
    folded_bns = {id(bn_node) for bn_node in folds.values()}
    for node in graph.nodes:
        if id(node) in folded_bns:
            continue
        inputs = [values[id(t)] for t in node.inputs]
        in_mask = next((masks[id(t)] for t in node.inputs[:1] if id(t) in masks), None)
        layer = node.layer
        if tracing.traceable(layer) or _is_model(layer):
            inner_masks = {}
            if tracing.traceable(layer):
                if in_mask is not None:
                    raise ExportError(
                        f"{type(layer).__name__} '{layer.name}' cannot be exported to ONNX: a "
                        "mask (from Embedding(mask_zero=True) or Masking) reaches it, and the "
                        "exporter does not trace masks into Python code"
                    )
                inner = tracing.traced_graph(node)
            else:
                inner = _functional_graph(layer)
                if in_mask is not None:
                    inner_masks[id(inner.inputs[0])] = in_mask
            inner_values = {id(t): v for t, v in zip(inner.inputs, inputs)}
            _walk(builder, inner, inner_values, inner_masks, options)
            for outer, t in zip(node.outputs, inner.outputs):
                values[id(outer)] = inner_values[id(t)]
                if id(t) in inner_masks:
                    masks[id(outer)] = inner_masks[id(t)]
            continue
        bn_node = folds.get(id(node))
        outputs = bn_node.outputs if bn_node is not None else node.outputs
        call = Call(
            builder,
            layer,
            inputs,
            [(options["batch_size"], *t.shape[1:]) for t in outputs],
            in_mask,
            options,
            bn_node.layer if bn_node is not None else None,
            input_dtypes=[t.dtype for t in node.inputs],
            output_dtypes=[t.dtype for t in outputs],
        )
        results = convert(call)
        if len(results) != len(outputs):
            raise AssertionError(f"converter of {type(layer).__name__} gave {len(results)} values")
        out_masks = call.output_masks
        if out_masks is None:
            out_mask = call.output_mask
            if out_mask is None and in_mask is not None and layer.passes_mask:
                out_mask = in_mask
            out_masks = [out_mask] * len(outputs)
        for t, value, mask in zip(outputs, results, out_masks):
            values[id(t)] = value
            if mask is not None:
                masks[id(t)] = mask


def _readers(graph) -> dict:
    """How many times each tensor (by id) is read: by a node or as a model output."""
    count: dict[int, int] = {}
    for node in graph.nodes:
        for t in node.inputs:
            count[id(t)] = count.get(id(t), 0) + 1
    for t in graph.outputs:
        count[id(t)] = count.get(id(t), 0) + 1
    return count


def _bn_folds(graph, readers: dict) -> dict:
    """{id(producer node): BatchNormalization node} for each BN that alone reads the output of
    a linear Dense or convolution whose converter folds it, along the channels axis."""
    folds = {}
    for node in graph.nodes:
        if type(node.layer) is not BatchNormalization or len(node.inputs) != 1:
            continue
        t = node.inputs[0]
        producer = t.node
        if producer is None or producer.is_input or readers.get(id(t), 0) != 1:
            continue
        found = find(producer.layer)
        if found is None or not found.folds_bn or len(producer.outputs) != 1:
            continue
        if getattr(producer.layer, "activation", None) != "linear":
            continue
        channels_last = getattr(producer.layer, "data_format", "channels_last") == "channels_last"
        if not channels_last or node.layer.axis not in (-1, len(t.shape) - 1):
            continue  # the BN would not normalize the producer's channels
        folds[id(producer)] = node
    return folds
