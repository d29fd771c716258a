"""BatchNormalization and the relu (or linear) activation layer (Activation or ReLU) that alone
reads it, as one pass."""

from __future__ import annotations

from fastnn.fusion.base import FusedLayer, Rule, activation_code
from fastnn.kernels.codes import LINEAR, RELU
from fastnn.layers.base import Layer
from fastnn.layers.normalization import BatchNormalization
from fastnn.nodes import Node


class BatchNormActivation(FusedLayer):
    """``Activation("relu")(BatchNormalization(...)(x))``: the normalized values are never
    written; the forward writes ``relu(z)`` in the normalizing pass and the backward takes the
    relu's gradient inside BN's (from z's sign, recomputed from x), keeping no extra array.

    Input/output shape: ``(batch, ..., channels)``.
    """

    passes_mask = True
    uses_workspace = True

    def __init__(self, bn: BatchNormalization, activation: Layer):
        super().__init__(bn, activation)
        self.bn, self.code = bn, activation_code(activation)

    def forward(self, inputs, training, workspace=None):
        return self.bn.forward_activated(inputs, training, self.code, workspace)

    def backward(self, ctx, grad_outputs):
        return self.bn.backward(ctx, grad_outputs)


def _is_batch_norm(node: Node) -> bool:
    return isinstance(node.layer, BatchNormalization)


def _is_relu(node: Node) -> bool:
    """A relu or linear activation layer (``activation_code``) that keeps its input's dtype
    (no cast in between)."""
    code = activation_code(node.layer)
    return code in (LINEAR, RELU) and node.inputs[0].dtype == node.outputs[0].dtype


RULE = Rule("bn_act", (_is_batch_norm, _is_relu), BatchNormActivation)
