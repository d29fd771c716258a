"""Add and the activation layer (Activation or ReLU) that alone reads it (a residual block's
``relu(x + shortcut)``), as one node: the sum is activated where it was written, with no array
in between."""

from __future__ import annotations

import numpy as np

from fastnn import kernels
from fastnn.fusion.base import FusedLayer, Rule, activation_code, activation_of
from fastnn.kernels.codes import LINEAR, RELU
from fastnn.kernels.workspace import scratch
from fastnn.layers.base import Layer
from fastnn.layers.merging import Add, add_call, add_rows, sum_arrays
from fastnn.nodes import Node

_NO_BIAS = np.empty(0, np.float32), np.empty(0, np.float64)


class AddActivation(FusedLayer):
    """``Activation(act)(Add()([a, b, ...]))`` for inputs of one shape: the sum is written once
    and activated in place (or, for an activation whose gradient reads its input, into the
    output). The backward takes the activation's gradient once and hands it to every input.

    Shapes: inputs ``(batch, ...)``, all alike; output the same.
    """

    def __init__(self, add: Add, activation: Layer):
        super().__init__(add, activation)
        self.code = activation_code(activation)

    uses_workspace = True  # a fresh array per call costs its page faults: 2-4 ms at 17 MB

    def inference_call(self, inputs):
        return add_call(inputs, self.code) if self.code in (LINEAR, RELU) else None

    def forward(self, inputs, training, workspace=None):
        if len(inputs) == 2 and self.code in (LINEAR, RELU):  # activated as it is summed
            z = scratch(workspace, "sum", inputs[0].shape, inputs[0].dtype)
            add_rows(*inputs, self.code, z)
            return z, (z.reshape(-1, z.shape[-1]), 2, workspace)
        z = sum_arrays(inputs, workspace)
        rows = z.reshape(-1, z.shape[-1])
        bias = _NO_BIAS[z.dtype == np.float64]
        if self.code in kernels.codes.FROM_INPUT:  # the backward reads z: keep it
            y = scratch(workspace, "y", rows.shape, rows.dtype)
            kernels.activations.bias_activation_forward(rows, bias, self.code, y)
            return y.reshape(z.shape), (rows, len(inputs), workspace)
        kernels.activations.bias_activation_forward(rows, bias, self.code, rows)
        return z, (rows, len(inputs), workspace)

    def backward(self, ctx, grad_outputs):
        saved, count, workspace = ctx
        grad = np.ascontiguousarray(grad_outputs).reshape(saved.shape)
        out = scratch(workspace, "dz", grad.shape, grad.dtype)
        kernels.activations.activation_backward(grad, saved, self.code, out)
        return [out.reshape(grad_outputs.shape)] * count


def _is_plain_add(node: Node) -> bool:
    """An Add of inputs of one shape and dtype (no broadcasting, no cast)."""
    if type(node.layer) is not Add:
        return False
    first = node.inputs[0]
    return all(t.shape == first.shape and t.dtype == first.dtype for t in node.inputs) and (
        node.outputs[0].dtype == first.dtype
    )


def _is_elementwise_activation(node: Node) -> bool:
    """An activation layer applied elementwise (``activation_of``, not softmax)."""
    code = activation_of(node)
    return code is not None and code not in kernels.codes.ROW_WISE


RULE = Rule("add_act", (_is_plain_add, _is_elementwise_activation), AddActivation)
