"""BatchNormalization and the relu (or linear) activation layer (Activation or ReLU) that alone
reads it, as one pass."""

from __future__ import annotations

from fastnn.fusion.base import FusedLayer, Rule, activation_code, activation_of
from fastnn.kernels.codes import LINEAR, RELU, RELU6
from fastnn.layers.base import Layer
from fastnn.layers.normalization import BatchNormalization
from fastnn.nodes import Node


class BatchNormActivation(FusedLayer):
    """``Activation("relu")(BatchNormalization(...)(x))`` (or relu6): the normalized values are
    never written; the forward writes ``relu(z)`` in the normalizing pass and the backward takes
    the relu's gradient inside BN's (from z, recomputed from x), keeping no extra array.

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
    """A relu or linear activation layer (``activation_of``)."""
    return activation_of(node) in (LINEAR, RELU)


def _is_bn_activation(node: Node) -> bool:
    """An activation layer BatchNormalization's kernels apply as they normalize: relu, relu6
    (MobileNetV2's ``ReLU(6.0)``) or linear (``activation_of``)."""
    return activation_of(node) in (LINEAR, RELU, RELU6)


RULE = Rule("bn_act", (_is_batch_norm, _is_bn_activation), BatchNormActivation)
