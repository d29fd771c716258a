"""Conv2D (no activation), the BatchNormalization that alone reads it and optionally the relu
(or linear) Activation that alone reads that: at inference, one conv with BN folded in."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn.fusion.base import FusedLayer, Rule
from fastnn.fusion.bn_activation import _is_batch_norm, _is_relu
from fastnn.kernels.codes import LINEAR
from fastnn.layers.convolutional import Conv2D
from fastnn.layers.core import Activation
from fastnn.layers.normalization import BatchNormalization
from fastnn.nodes import Node


class _Trained(NamedTuple):
    """A pass with the batch's statistics, run as the conv and BN(+activation): their contexts."""

    conv: tuple
    bn: tuple


class _Inputs(NamedTuple):
    """A folded pass keeps only the inputs: a backward runs the layers' forward again."""

    inputs: np.ndarray


class ConvBatchNorm(FusedLayer):
    """``act(BatchNormalization(...)(Conv2D(...)(x)))``, act relu or none.

    At inference BN is an affine map per channel (its moving statistics), folded at each call
    into a copy of the conv's kernel and bias: with ``s = gamma / sqrt(moving_variance +
    epsilon)``, ``kernel * s`` and ``(bias - moving_mean) * s + beta``; the activation runs in
    the conv's epilogue, so the conv's output is written once, as the result. In training
    BN's statistics need the conv's output: the conv runs, then BN and the activation in one
    pass (a frozen BN too: it runs as at inference, unfolded, keeping what the backward needs).

    Input shape ``(batch, h, w, c)``; output ``(batch, oh, ow, filters)``.
    """

    uses_workspace = True
    skips_input_grad = True

    def __init__(self, conv: Conv2D, bn: BatchNormalization, activation: Activation | None = None):
        super().__init__(*(layer for layer in (conv, bn, activation) if layer is not None))
        self.conv, self.bn = conv, bn
        self.code = LINEAR if activation is None else activation._code

    def folded(self):
        """The conv's kernel and bias with BN's moving-statistics affine map folded in."""
        bn, dtype = self.bn, self.conv.kernel.value.dtype
        gamma, beta = bn._affine(dtype)
        invstd = 1 / np.sqrt(bn.moving_variance.value + dtype.type(bn.epsilon))
        scale = (invstd * gamma).astype(dtype)
        bias = -bn.moving_mean.value
        if self.conv.use_bias:
            bias = self.conv.bias.value + bias
        return self.conv.kernel.value * scale, (bias * scale + beta).astype(dtype)

    def forward(self, inputs, training, workspace=None):
        if not training:
            kernel, bias = self.folded()
            y = self.conv.forward_with(inputs, kernel, bias, self.code, workspace)
            return y, _Inputs(inputs)
        y, conv_ctx = self.conv.forward(inputs, True, workspace=workspace)
        out, bn_ctx = self.bn.forward_activated(y, True, self.code, workspace)
        return out, _Trained(conv_ctx, bn_ctx)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if isinstance(ctx, _Inputs):  # run the layers as written with the statistics they used
            y, conv_ctx = self.conv.forward(ctx.inputs, False)
            _, bn_ctx = self.bn.forward_activated(y, False, self.code)
            ctx = _Trained(conv_ctx, bn_ctx)
        grad = self.bn.backward(ctx.bn, grad_outputs)
        return self.conv.backward(ctx.conv, grad, need_input_grad=need_input_grad)


def _is_linear_conv2d(node: Node) -> bool:
    return isinstance(node.layer, Conv2D) and node.layer._code == LINEAR


def _is_same_dtype_batch_norm(node: Node) -> bool:
    return _is_batch_norm(node) and node.inputs[0].dtype == node.outputs[0].dtype


#: Two chains under one name: with the activation, then without.
RULES = (
    Rule("conv_bn_act", (_is_linear_conv2d, _is_same_dtype_batch_norm, _is_relu), ConvBatchNorm),
    Rule("conv_bn_act", (_is_linear_conv2d, _is_same_dtype_batch_norm), ConvBatchNorm),
)
