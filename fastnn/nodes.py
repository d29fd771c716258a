"""Symbolic tensors and nodes: what calling a layer on symbolic inputs records (a leaf module)."""

from __future__ import annotations

import numpy as np


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

    @property
    def _keras_mask(self) -> SymbolicTensor | None:
        """Keras's mask of this tensor: a bool placeholder of the mask's shape when the layers
        that made it carry one (``Embedding(mask_zero=True)``, ``Masking``, ...), else None."""
        mask = _probe_mask(self, {})
        if mask is None:
            return None
        first = self.node.inputs[0]
        shape = tuple(
            None if axis < first.ndim and first.shape[axis] is None else size
            for axis, size in enumerate(mask.shape)
        )
        return SymbolicTensor(shape, bool, name=f"{self.name}_mask")

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape}, dtype={self.dtype.name}, name={self.name}>"

    def __hash__(self):
        return id(self)

    def __bool__(self):
        raise TypeError(
            f"A symbolic tensor ({self.name!r}, shape {self.shape}) cannot be used as a "
            "boolean: its value is not known while the model is built (or traced for export). "
            "Choose between values with ops.where(condition, x, y)."
        )

    def __getitem__(self, index):
        return _symbolic_op("get_item", self, index)

    def __neg__(self):
        return _symbolic_op("negative", self)

    def __abs__(self):
        return _symbolic_op("absolute", self)

    def __invert__(self):
        return _symbolic_op("logical_not", self)

    @property
    def T(self):  # noqa: N802 (numpy's name)
        return _symbolic_op("transpose", self)


#: ``layers.tensor_op.symbolic_call``, which that module hands in when it loads (layers sit
#: above nodes): fastnn.ops on symbolic tensors add a TensorOp node.
_symbolic_call = None


def set_symbolic_call(function) -> None:
    """Take ``function(name, args, kwargs)``, which makes the node of an op on symbolic tensors."""
    global _symbolic_call
    _symbolic_call = function


def symbolic_call(name: str, args: tuple, kwargs: dict):
    """``fastnn.ops.<name>(*args, **kwargs)`` on symbolic tensors: the new node's output(s)."""
    return _symbolic_call(name, args, kwargs)


def _symbolic_op(name: str, *args, **kwargs):
    return symbolic_call(name, args, kwargs)


def _symbolic_binary(name: str, reflected: bool = False):
    def method(self, other):
        return _symbolic_op(name, other, self) if reflected else _symbolic_op(name, self, other)

    method.__name__ = name
    return method


#: Python's binary operators (dunder name without underscores) and the fastnn.ops op of each:
#: a Tensor's (``ops.tensor``) and a symbolic tensor's, as Keras's KerasTensor has them.
BINARY_OPERATORS = {
    "add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide", "pow": "power",
    "floordiv": "floor_divide", "mod": "mod", "matmul": "matmul", "and": "logical_and",
    "or": "logical_or", "xor": "logical_xor",
}  # fmt: skip
#: The order comparisons (a symbolic tensor's == and != stay identity: graph code compares them).
ORDER_COMPARISONS = {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal"}

for _dunder, _name in BINARY_OPERATORS.items():
    setattr(SymbolicTensor, f"__{_dunder}__", _symbolic_binary(_name))
    setattr(SymbolicTensor, f"__r{_dunder}__", _symbolic_binary(_name, reflected=True))
for _dunder, _name in ORDER_COMPARISONS.items():
    setattr(SymbolicTensor, f"__{_dunder}__", _symbolic_binary(_name))


def _probe_mask(tensor: SymbolicTensor, probed: dict) -> np.ndarray | None:
    """The mask ``tensor`` would carry on zeros of the graph's input shapes (unknown sizes as
    2): each layer's ``compute_mask`` on zeros of its inputs, given its inputs' probed masks
    (``probed``: the masks found so far, by tensor)."""
    node = tensor.node
    if node is None or node.is_input:
        return None
    if tensor not in probed:
        in_masks = [_probe_mask(t, probed) for t in node.inputs]
        no_mask = all(m is None for m in in_masks)
        masks = None
        if not no_mask or node.layer.makes_masks:
            zeros = [
                np.zeros([2 if n is None else n for n in t.shape], t.dtype) for t in node.inputs
            ]
            masks = node.layer.compute_mask(
                node.pack_inputs(zeros), None if no_mask else node.pack_inputs(in_masks)
            )
        if not isinstance(masks, (list, tuple)):
            masks = [masks] * len(node.outputs)
        for out, mask in zip(node.outputs, masks):
            probed[out] = None if mask is None else np.asarray(mask, dtype=bool)
    return probed[tensor]


def is_symbolic(value) -> bool:
    """True if ``value`` is a symbolic tensor or a non-empty list/tuple of them."""
    if isinstance(value, SymbolicTensor):
        return True
    if isinstance(value, (list, tuple)) and value:
        return any(isinstance(v, SymbolicTensor) for v in value)
    return False


class Node:
    """One call of a layer on symbolic tensors: the layer, its input and output tensors, and
    the ``training`` the call gave (``Dropout(0.5)(x, training=True)``), which a pass of the
    model without one of its own runs it with (Keras 3's rule), or None."""

    __slots__ = (
        "layer", "inputs", "outputs", "inputs_are_list", "outputs_are_list", "training",
        "__weakref__",
    )  # fmt: skip

    def __init__(self, layer, inputs, output_shapes, output_dtype, training=None):
        self.layer = layer
        self.training = training
        self.inputs_are_list = isinstance(inputs, (list, tuple))
        self.inputs = list(inputs) if self.inputs_are_list else [inputs]
        self.outputs_are_list = isinstance(output_shapes, list)
        shapes = output_shapes if self.outputs_are_list else [output_shapes]
        self.outputs = [
            SymbolicTensor(shape, output_dtype, node=self, index=i, name=layer.name)
            for i, shape in enumerate(shapes)
        ]
        layer._inbound_nodes.append(self)

    @classmethod
    def fused(cls, layer, first: Node, last: Node, joined=()) -> Node:
        """A node running ``layer`` from ``first``'s inputs (and, as a list after them, the
        ``joined`` tensors ``last`` reads too) to ``last``'s outputs, for a fusion rule: the
        graph runs it in their place; it is not recorded on any layer."""
        node = cls.__new__(cls)
        node.layer, node.training = layer, None  # nodes that fix training never fuse
        node.inputs = [*first.inputs, *joined]
        node.inputs_are_list = first.inputs_are_list or bool(joined)
        node.outputs, node.outputs_are_list = last.outputs, last.outputs_are_list
        return node

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
