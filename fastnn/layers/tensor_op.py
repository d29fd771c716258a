"""``fastnn.ops`` and Python operators on symbolic tensors, as in a Keras 3 Functional model:
``x + y``, ``x[:, 0]``, ``ops.mean(x, axis=1)`` between layers add a ``TensorOp`` node.

A ``TensorOp`` is a ``call()`` layer (its gradient from a tape) that runs one op of
``fastnn.ops`` by name on its arguments as they were written, the symbolic tensors among them
replaced by the arrays that reach the node. Its config names the op and holds the other
arguments as JSON (numbers, strings, None, slices, Ellipsis, tuples, small arrays): loading one
looks the op up among ``fastnn.ops``'s names and never runs code from the file.
"""

from __future__ import annotations

import numpy as np

from fastnn import ops as ops_module
from fastnn.layers.base import Layer
from fastnn.naming import unique_name
from fastnn.nodes import SymbolicTensor, set_symbolic_call
from fastnn.ops import tensor as tensor_module

#: Constant arrays up to this many values are kept in a TensorOp's config (larger ones refuse).
MAX_CONSTANT_VALUES = 4096


class _Slot:
    """Where the i-th symbolic input goes in an op's arguments."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


def symbolic_call(name: str, args: tuple, kwargs: dict):
    """``fastnn.ops.<name>(*args, **kwargs)`` with symbolic tensors among the arguments: the
    symbolic output(s) of a new ``TensorOp`` node on them."""
    if name == "shape":  # the static shape, as Keras's ops.shape on a KerasTensor
        return args[0].shape
    inputs: list[SymbolicTensor] = []
    template = _template((tuple(args), dict(kwargs)), inputs)
    return TensorOp(name, template)(inputs)


def _template(value, inputs: list):
    """``value`` with each symbolic tensor replaced by a ``_Slot`` (its place in ``inputs``)."""
    if isinstance(value, SymbolicTensor):
        inputs.append(value)
        return _Slot(len(inputs) - 1)
    if isinstance(value, (list, tuple)):
        parts = [_template(v, inputs) for v in value]
        return parts if isinstance(value, list) else tuple(parts)
    if isinstance(value, dict):
        return {k: _template(v, inputs) for k, v in value.items()}
    return value


def _filled(template, values: list):
    """The template with each slot replaced by its value."""
    if isinstance(template, _Slot):
        return values[template.index]
    if isinstance(template, (list, tuple)):
        parts = [_filled(t, values) for t in template]
        return parts if isinstance(template, list) else tuple(parts)
    if isinstance(template, dict):
        return {k: _filled(v, values) for k, v in template.items()}
    return template


def _op(name: str):
    """The op ``name`` of fastnn.ops (its public names, and those the operators use), or None."""
    found = tensor_module.OPERATIONS.get(name)
    if found is None and name in ops_module.__all__:
        found = getattr(ops_module, name)
    return found if callable(found) else None


class TensorOp(Layer):
    """One ``fastnn.ops`` op between layers of a Functional model (``x + y``, ``x[:, 0]``,
    ``ops.mean(x, axis=1)``): its arguments as written, symbolic tensors as slots."""

    def __init__(self, op: str, arguments, **kwargs):
        if _op(op) is None:
            raise ValueError(f"TensorOp: fastnn.ops has no op named {op!r}")
        kwargs.setdefault("name", unique_name(op))
        super().__init__(**kwargs)
        self.__dict__["_auto_config"] = False  # its config is get_config's, not the arguments
        self.op = op
        self.template = arguments  # (args, kwargs), symbolic tensors as _Slot

    def call(self, inputs):
        args, kwargs = _filled(self.template, list(inputs))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # as Keras's backends
            return _op(self.op)(*args, **kwargs)

    def get_config(self):
        arguments = _encoded(self, self.template)
        return {**super().get_config(), "op": self.op, "arguments": arguments}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "arguments": _decoded(config["arguments"])})


def _encoded(layer, value):
    """The template as JSON values (tagged dicts for slots, slices, tuples, arrays...)."""
    if isinstance(value, _Slot):
        return {"__slot__": value.index}
    if value is Ellipsis:
        return {"__ellipsis__": True}
    if isinstance(value, slice):
        return {"__slice__": [value.start, value.stop, value.step]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encoded(layer, v) for v in value]}
    if isinstance(value, list):
        return [_encoded(layer, v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": {str(k): _encoded(layer, v) for k, v in value.items()}}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        if array.size > MAX_CONSTANT_VALUES:
            raise ValueError(
                f"TensorOp '{layer.name}' ({layer.op}) cannot be saved: a constant argument of "
                f"{array.size} values (over {MAX_CONSTANT_VALUES}); make it a layer's weight"
            )
        return {"__array__": array.tolist(), "dtype": array.dtype.name}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.dtype):
        return {"__dtype__": value.name}
    raise ValueError(
        f"TensorOp '{layer.name}' ({layer.op}) cannot be saved: an argument of type "
        f"{type(value).__name__}"
    )


def _decoded(value):
    if isinstance(value, list):
        return [_decoded(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__slot__" in value:
        return _Slot(int(value["__slot__"]))
    if "__ellipsis__" in value:
        return Ellipsis
    if "__slice__" in value:
        return slice(*value["__slice__"])
    if "__tuple__" in value:
        return tuple(_decoded(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decoded(v) for k, v in value["__dict__"].items()}
    if "__array__" in value:
        return np.asarray(value["__array__"], dtype=np.dtype(value["dtype"]))
    if "__dtype__" in value:
        return np.dtype(value["__dtype__"])
    raise ValueError(f"TensorOp: an argument of unknown form {sorted(value)}")


set_symbolic_call(symbolic_call)
