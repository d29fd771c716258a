"""The ONNX graph under construction: nodes, constant initializers, fresh names, the opset.

Converters add nodes through ``GraphBuilder`` and never touch ``onnx`` protobufs themselves;
``onnx`` is imported when a builder is made (it is an optional extra).
"""

from __future__ import annotations

import hashlib
import importlib

import numpy as np

#: Oldest opset an export may declare: Softmax over one axis, Split/ReduceSum taking tensors.
MIN_OPSET = 13
#: Newest opset chosen by default (ONNX Runtime 1.20+ runs it).
MAX_DEFAULT_OPSET = 21

#: How a value's axes are laid out: Keras's order ("native"), channels moved to axis 1
#: ("channels_first", ONNX's for convolutions) or steps first ("time_major", ONNX's recurrent
#: operators'; sequences of rank 3).
NATIVE = "native"
CHANNELS_FIRST = "channels_first"
TIME_MAJOR = "time_major"


class ExportError(ValueError):
    """A model, layer or argument that cannot export to ONNX (the message says which and why)."""


def import_onnx():
    """The ``onnx`` package, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("onnx")
    except ImportError as error:
        raise ImportError(
            'ONNX export needs the onnx package: pip install "fastnn[onnx]"'
        ) from error


def default_opset() -> int:
    """The newest opset the installed onnx knows, capped at MAX_DEFAULT_OPSET."""
    return min(import_onnx().defs.onnx_opset_version(), MAX_DEFAULT_OPSET)


def check_opset(opset) -> int:
    """``opset`` as an int within what this exporter and the installed onnx support."""
    newest = import_onnx().defs.onnx_opset_version()
    if not isinstance(opset, (int, np.integer)) or isinstance(opset, bool):
        raise ExportError(f"ONNX export: `opset` must be an integer; got opset={opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ExportError(
            f"ONNX export: `opset` must be between {MIN_OPSET} and {newest} (the newest the "
            f"installed onnx knows); got opset={opset}"
        )
    return int(opset)


ONNX_TYPES = {
    "float32": "FLOAT",
    "float64": "DOUBLE",
    "float16": "FLOAT16",
    "int32": "INT32",
    "int64": "INT64",
    "int16": "INT16",
    "int8": "INT8",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "bool": "BOOL",
}


def onnx_type(onnx, dtype) -> int:
    """ONNX's element type code of the numpy ``dtype`` (an ExportError for another)."""
    name = np.dtype(dtype).name
    if name not in ONNX_TYPES:
        raise ExportError(f"ONNX export: the dtype {name} has no ONNX form in this exporter")
    return getattr(onnx.TensorProto, ONNX_TYPES[name])


class Value:
    """A tensor of the ONNX graph standing for a model tensor: its name, Keras shape, layout."""

    __slots__ = ("name", "shape", "layout", "permuted")

    def __init__(self, name: str, shape: tuple, layout: str = NATIVE, permuted=None):
        self.name = name
        self.shape = tuple(shape)
        self.layout = layout
        #: For features (batch, n): ``(name, order)``, the same features stored in another
        #: order (feature i of ``name`` is Keras's feature ``order[i]``), e.g. a Flatten of a
        #: channels-first map without the Transpose back; a Dense reads it with its kernel's
        #: rows reordered. Nodes only it needs are pruned when nothing reads it.
        self.permuted = permuted

    @property
    def rank(self) -> int:
        return len(self.shape)


def layout_perm(layout: str, rank: int) -> list[int]:
    """The permutation of Keras's axes a value in ``layout`` is stored in."""
    if layout == CHANNELS_FIRST:
        return [0, rank - 1, *range(1, rank - 1)]
    if layout == TIME_MAJOR:
        return [1, 0, *range(2, rank)]
    return list(range(rank))


def position(value: Value, axis: int) -> int:
    """Where Keras's ``axis`` of ``value`` sits in its layout."""
    return layout_perm(value.layout, value.rank).index(axis % value.rank)


class GraphBuilder:
    """Collects ONNX nodes and initializers; names are unique; dtype is the model's float."""

    def __init__(self, opset: int, dtype):
        self.onnx = import_onnx()
        self.opset = opset
        self.dtype = np.dtype(dtype)
        self.nodes: list = []
        self.initializers: list = []
        self._names: set[str] = set()
        self._layout_cache: dict[tuple[str, str], Value] = {}
        self._constants: dict[tuple, str] = {}

    # ---- names and constants -----------------------------------------------------------------
    def fresh(self, hint: str) -> str:
        """A name not used yet in the graph, based on ``hint``."""
        name, i = hint, 1
        while name in self._names:
            name, i = f"{hint}_{i}", i + 1
        self._names.add(name)
        return name

    def reserve(self, name: str) -> None:
        """Claim ``name`` (a graph input or output) so that no other tensor takes it."""
        self._names.add(name)

    def const(self, array, hint: str, dtype=None) -> str:
        """An initializer holding ``array`` (cast to the model's float unless ``dtype``); equal
        arrays share one (a shared layer's weights are stored once)."""
        array = np.asarray(array, dtype=dtype or self.dtype)
        key = (array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).digest())
        if key not in self._constants:
            name = self.fresh(hint)
            self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
            self._constants[key] = name
        return self._constants[key]

    def ints(self, values, hint: str) -> str:
        """An int64 initializer (shapes, axes, pads, indices)."""
        return self.const(np.asarray(values, dtype=np.int64), hint, dtype=np.int64)

    # ---- nodes -------------------------------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], hint: str, outputs: int = 1, **attrs):
        """Add a node; its output name (a list of them if ``outputs`` > 1). An empty input name
        is an omitted optional input."""
        names = [self.fresh(f"{hint}/{op_type}" + (f"_{i}" if i else "")) for i in range(outputs)]
        self.op_into(op_type, inputs, names, hint, **attrs)
        return names if outputs > 1 else names[0]

    def op_into(self, op_type: str, inputs: list[str], outputs: list[str], hint: str, **attrs):
        """Add a node writing the given output names (already reserved or fresh)."""
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(
            self.onnx.helper.make_node(
                op_type, inputs, outputs, name=self.fresh(f"{hint}/{op_type}_node"), **attrs
            )
        )

    def reduce(self, op_type: str, x: str, axes, hint: str, keepdims: bool = True) -> str:
        """ReduceMean/Max/Sum/... over ``axes``: an attribute before opset 18 (13 for
        ReduceSum), an input from then on."""
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self.op(
                op_type, [x, self.ints(axes, f"{hint}/axes")], hint, keepdims=int(keepdims)
            )
        return self.op(op_type, [x], hint, axes=list(axes), keepdims=int(keepdims))

    def reshape(self, x: str, shape, hint: str) -> str:
        """Reshape to ``shape`` (0 keeps an axis, -1 infers one)."""
        return self.op("Reshape", [x, self.ints(shape, f"{hint}/shape")], hint)

    def cast(self, x: str, dtype, hint: str) -> str:
        """``x`` cast to the numpy ``dtype``."""
        return self.op("Cast", [x], hint, to=onnx_type(self.onnx, dtype))

    def transpose(self, x: str, perm, hint: str) -> str:
        return self.op("Transpose", [x], hint, perm=list(perm))

    def unsqueeze(self, x: str, axes, hint: str) -> str:
        return self.op("Unsqueeze", [x, self.ints(axes, f"{hint}/axes")], hint)

    def slice(self, x: str, starts, ends, axes, hint: str, steps=None) -> str:
        inputs = [
            x,
            self.ints(starts, f"{hint}/starts"),
            self.ints(ends, f"{hint}/ends"),
            self.ints(axes, f"{hint}/axes"),
        ]
        if steps is not None:
            inputs.append(self.ints(steps, f"{hint}/steps"))
        return self.op("Slice", inputs, hint)

    def prune(self, outputs: list[str]) -> None:
        """Drop the nodes no graph output depends on, and the initializers no node reads."""
        needed, kept = set(outputs), []
        for node in reversed(self.nodes):
            if any(name in needed for name in node.output):
                kept.append(node)
                needed.update(name for name in node.input if name)
        self.nodes = kept[::-1]
        self.initializers = [i for i in self.initializers if i.name in needed]

    # ---- layouts -----------------------------------------------------------------------------
    def as_layout(self, value: Value, layout: str, hint: str) -> Value:
        """``value`` in ``layout``, through one Transpose made once per value and layout (so
        a channels-first chain of convs, or time-major chain of recurrent layers, has none
        between its layers)."""
        if value.layout == layout or (value.rank < 3 and value.layout == NATIVE):
            return value
        key = (value.name, layout)
        if key not in self._layout_cache:
            stored, wanted = layout_perm(value.layout, value.rank), layout_perm(layout, value.rank)
            perm = [stored.index(axis) for axis in wanted]
            name = self.transpose(value.name, perm, f"{hint}/to_{layout}")
            self._layout_cache[key] = Value(name, value.shape, layout)
        return self._layout_cache[key]

    def native(self, value: Value, hint: str) -> Value:
        """``value`` in Keras's layout."""
        return self.as_layout(value, NATIVE, hint)

    def channels_first(self, value: Value, hint: str) -> Value:
        """``value`` with its channels on axis 1."""
        return self.as_layout(value, CHANNELS_FIRST, hint)

    def time_major(self, value: Value, hint: str) -> Value:
        """A sequence ``(batch, steps, features)`` as ``(steps, batch, features)``."""
        return self.as_layout(value, TIME_MAJOR, hint)
