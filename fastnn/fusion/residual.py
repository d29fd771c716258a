"""A residual block's end as one node: a Conv2D and the BatchNormalization that alone reads it
(``LinearBatchNorm`` without activation), summed with a shortcut by an Add, and the relu (or
linear) Activation that alone reads the sum (``AddActivation``), or the bare Add. At inference
the conv, BN folded into its kernel, adds the shortcut and activates each output row as it
writes it: the block's output is written once, with no pass of its own for the sum."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import kernels
from fastnn.fusion.add_activation import AddActivation, _is_plain_add
from fastnn.fusion.base import FusedLayer, Rule
from fastnn.fusion.conv_bn_activation import LinearBatchNorm
from fastnn.kernels.codes import LINEAR, RELU
from fastnn.kernels.workspace import Workspace, kept_for, scratch
from fastnn.layers.convolutional import Conv2D
from fastnn.layers.merging import Add, add_rows
from fastnn.nodes import Node


class _Trained(NamedTuple):
    """A pass with the batch's statistics (or one to differentiate): the conv and BN's
    context, the activated sum, the workspace."""

    conv_bn: tuple
    y: np.ndarray
    workspace: Workspace | None


class _Inputs(NamedTuple):
    """A folded pass keeps only the inputs: a backward runs the layers again."""

    x: np.ndarray
    shortcut: np.ndarray


class ResidualSum(FusedLayer):
    """``act(Add()([BatchNormalization(...)(Conv2D(...)(x)), shortcut]))``, act relu or none.

    Inputs ``[x, shortcut]``: x the conv's ``(batch, h, w, c)``, shortcut and the output
    ``(batch, oh, ow, filters)``. In training the conv gathers BN's statistics as it writes,
    BN normalizes in one pass and the sum is activated in another (BN's backward needs the
    conv's output).
    """

    uses_workspace = True
    skips_input_grad = True

    def __init__(self, conv_bn: LinearBatchNorm, add: AddActivation | Add):
        super().__init__(conv_bn, add)
        self.conv_bn = conv_bn
        self.code = add.code if isinstance(add, AddActivation) else LINEAR

    def forward(self, inputs, training, workspace=None):
        x, shortcut = inputs
        if training:
            return self._run(x, shortcut, True, workspace)
        kernel, bias = self.conv_bn.folded()
        conv = self.conv_bn.linear
        y = conv.forward_with(x, kernel, bias, self.code, workspace, residual=shortcut)
        return y, _Inputs(x, shortcut)

    def inference_call(self, inputs):
        x, shortcut = inputs
        kernel, bias = self.conv_bn.folded()
        conv = self.conv_bn.linear.inference_call_with(x, kernel, bias, self.code, shortcut)
        return None if conv is None else lambda inputs: conv(*inputs)

    def _run(self, x, shortcut, training, workspace=None):
        """The layers as written: (output, _Trained)."""
        inner = None if workspace is None else kept_for(workspace, self, Workspace)
        z, conv_bn_ctx = self.conv_bn.forward(x, training, inner)
        y = add_rows(z, shortcut, self.code, scratch(workspace, "sum", z.shape, z.dtype))
        return y, _Trained(conv_bn_ctx, y, workspace)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if isinstance(ctx, _Inputs):  # run the layers as written with the statistics they used
            _, ctx = self._run(ctx.x, ctx.shortcut, False)
        grad = np.ascontiguousarray(grad_outputs)
        if self.code == RELU:
            rows = (-1, grad.shape[-1])
            masked = scratch(ctx.workspace, "dsum", grad.shape, grad.dtype)
            kernels.activations.activation_backward(
                grad.reshape(rows), ctx.y.reshape(rows), RELU, masked.reshape(rows)
            )
            grad = masked
        dx = self.conv_bn.backward(ctx.conv_bn, grad, need_input_grad=need_input_grad)
        return [dx, grad]


def _ends_in_conv_bn(node: Node) -> bool:
    """A Conv2D and its BatchNormalization, with neither activation nor pool after them."""
    layer = node.layer
    plain = isinstance(layer, LinearBatchNorm) and layer.pool is None and layer.code == LINEAR
    return plain and isinstance(layer.linear, Conv2D)


def _sums_two(node: Node) -> bool:
    """A sum of two inputs of one shape, activated by relu or not at all."""
    if isinstance(node.layer, AddActivation):  # its rule took plain Adds only
        return len(node.inputs) == 2 and node.layer.code in (LINEAR, RELU)
    return _is_plain_add(node) and len(node.inputs) == 2


RULE = Rule("conv_bn_add_act", (_ends_in_conv_bn, _sums_two), ResidualSum, joins=True)
