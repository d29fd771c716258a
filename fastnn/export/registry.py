"""Converters from layer classes to ONNX nodes, keyed by the exact class.

A converter is ``fn(call) -> list[Value]`` (one value per output of the layer call). Families
register theirs with ``@converter(LayerClass, ...)``; the walker (``fastnn.export.walker``)
finds them here and knows no layer class itself. The lookup is by exact class: a subclass of a
built-in layer may compute something else, so it needs a converter of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastnn.export.builder import ExportError, GraphBuilder, Value
from fastnn.layers.core import Lambda


@dataclass
class Call:
    """One layer call being converted: what a converter reads and may set."""

    builder: GraphBuilder
    layer: object
    inputs: list[Value]
    #: Keras shapes of the call's outputs (batch axis None or the fixed batch size).
    output_shapes: list[tuple]
    #: The ONNX name of the input's mask (bool, (batch, steps)), or None.
    input_mask: str | None = None
    #: Export options (``assume_post_padding``).
    options: dict = field(default_factory=dict)
    #: A BatchNormalization layer to fold into this call's weights (Dense and the convs).
    folded_bn: object = None
    #: Set by a converter whose layer makes a mask (Embedding, Masking): the ONNX name.
    output_mask: str | None = None
    #: Or one mask (or None) per output, set by a converter that decides them (recurrent).
    output_masks: list | None = None
    #: numpy dtypes of the call's inputs and outputs (the model's tensors').
    input_dtypes: list = field(default_factory=list)
    output_dtypes: list = field(default_factory=list)

    @property
    def hint(self) -> str:
        return self.layer.name

    @property
    def x(self) -> Value:
        return self.inputs[0]

    def refuse(self, why: str) -> ExportError:
        """The error for this layer: its name, its class and why it cannot export."""
        return ExportError(
            f"{type(self.layer).__name__} '{self.layer.name}' cannot be exported to ONNX: {why}"
        )

    def need_opset(self, opset: int, what: str) -> None:
        """Refuse when the export's opset is older than ``opset``, which ``what`` needs."""
        if self.builder.opset < opset:
            raise self.refuse(
                f"{what} needs opset {opset} or newer; the export declares opset "
                f"{self.builder.opset} (pass opset={opset} or newer)"
            )


@dataclass(frozen=True)
class Converter:
    fn: Callable[[Call], list[Value]]
    #: The converter reads (or replaces) the input's mask; otherwise a layer that would use a
    #: mask refuses to export with one.
    uses_mask: bool = False
    #: The converter folds a following BatchNormalization into its weights (``Call.folded_bn``).
    folds_bn: bool = False


CONVERTERS: dict[type, Converter] = {}


def converter(*classes: type, uses_mask: bool = False, folds_bn: bool = False):
    """Register the decorated function as the ONNX converter of ``classes``."""

    def register(fn):
        for cls in classes:
            CONVERTERS[cls] = Converter(fn, uses_mask, folds_bn)
        return fn

    return register


def find(layer) -> Converter | None:
    """The converter registered for ``layer``'s exact class, or None."""
    return CONVERTERS.get(type(layer))


def convert(call: Call) -> list[Value]:
    """The values of ``call``'s outputs from its layer's converter, or the error that names
    the layer and says why it cannot export."""
    layer = call.layer
    if type(layer) is Lambda:
        raise call.refuse(
            "a Lambda runs a Python function, which has no ONNX form; write the computation "
            "with built-in layers to export it"
        )
    found = find(layer)
    if found is None and getattr(layer, "_runs_call", False):
        raise call.refuse(
            "it is a custom layer whose call() runs fastnn.ops in Python; the exporter does "
            "not trace ops, so it has no ONNX form (write it with built-in layers to export it)"
        )
    if found is None:
        raise call.refuse(
            f"there is no ONNX converter for the class {type(layer).__module__}."
            f"{type(layer).__name__} (a subclass of a built-in layer needs its own: register "
            "one with fastnn.export.registry.converter)"
        )
    if call.input_mask is not None and layer.supports_masking and not found.uses_mask:
        raise call.refuse(
            "it receives a mask (from Embedding(mask_zero=True) or Masking) and would use it, "
            "which its converter does not"
        )
    return found.fn(call)
