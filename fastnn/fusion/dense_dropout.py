"""Dense (with its activation) and the Dropout that alone reads it, as one node: in training
the dropout is applied in place on the Dense's output, so no second array is written."""

from __future__ import annotations

import numpy as np

from fastnn import kernels
from fastnn.fusion.base import FusedLayer, Rule
from fastnn.kernels.workspace import scratch
from fastnn.layers.core import Dense, Dropout
from fastnn.nodes import Node

#: The Dense activations whose backward still reads what it needs after the dropout scaled
#: or zeroed the output in place: none, relu (the output's sign, which dropout keeps where it
#: passes a gradient) and those whose gradient reads the pre-activation, kept apart.
_SAFE_CODES = (kernels.codes.LINEAR, kernels.codes.RELU, *kernels.codes.FROM_INPUT)


class DenseDropout(FusedLayer):
    """``Dropout(rate)(Dense(units, activation)(x))``: the same draws as the Dropout layer,
    applied where the Dense wrote its output; at inference the Dense alone.

    Shapes: ``(batch, ..., input_dim)`` to ``(batch, ..., units)``.
    """

    uses_workspace = True
    skips_input_grad = True
    passes_mask = True

    def __init__(self, dense: Dense, dropout: Dropout):
        super().__init__(dense, dropout)
        self.dense, self.dropout = dense, dropout

    def forward(self, inputs, training, workspace=None):
        y, dense_ctx = self.dense.forward(inputs, training, workspace=workspace)
        if not training or self.dropout.rate == 0:
            return y, (dense_ctx, None)
        flat = y.reshape(-1)
        uniform = self.dropout._rng.random(flat.size, dtype=y.dtype)
        kernels.dropout.dropout_forward(flat, uniform, self.dropout.rate, flat)
        return y, (dense_ctx, uniform)

    def inference_call(self, inputs):
        return self.dense.inference_call(inputs)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        dense_ctx, uniform = ctx
        grad = grad_outputs
        if uniform is not None:
            grad = scratch(dense_ctx.workspace, "grad_dropped", grad_outputs.shape, uniform.dtype)
            flat = np.ascontiguousarray(grad_outputs).reshape(-1)
            kernels.dropout.dropout_backward(flat, uniform, self.dropout.rate, grad.reshape(-1))
        return self.dense.backward(dense_ctx, grad, need_input_grad=need_input_grad)


def _is_dense(node: Node) -> bool:
    layer = node.layer
    return type(layer) is Dense and layer._code in _SAFE_CODES


def _is_plain_dropout(node: Node) -> bool:
    """A Dropout keeping its input's dtype (no cast in between)."""
    return type(node.layer) is Dropout and node.inputs[0].dtype == node.outputs[0].dtype


RULE = Rule("dense_dropout", (_is_dense, _is_plain_dropout), DenseDropout)
