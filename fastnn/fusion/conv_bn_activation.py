"""Conv2D, DepthwiseConv2D, SeparableConv2D or Dense (no activation), the BatchNormalization over
its last axis that alone reads it, optionally the relu, relu6 (or linear) activation layer
(Activation or ReLU) that alone reads that and (after a Conv2D) the 2x2 max pool that alone
reads the activation: at inference, one conv or product with BN folded in (and pooled in its
epilogue)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn.fusion.base import FusedLayer, Rule, activation_code
from fastnn.fusion.bn_activation import _is_batch_norm, _is_bn_activation, _is_relu
from fastnn.fusion.conv_max_pool import is_max_pool_2x2
from fastnn.kernels.codes import LINEAR
from fastnn.kernels.forms import Forms
from fastnn.layers.base import Layer, kept
from fastnn.layers.convolutional import Conv2D
from fastnn.layers.convolutional_extra import DepthwiseConv2D, SeparableConv2D
from fastnn.layers.core import Dense
from fastnn.layers.normalization import BatchNormalization
from fastnn.layers.pooling import MaxPooling2D
from fastnn.nodes import Node


class _Trained(NamedTuple):
    """A pass with the batch's statistics, run as the conv (or Dense), BN(+activation) and the
    pool."""

    linear: tuple
    bn: tuple
    pool: tuple | None


class _Inputs(NamedTuple):
    """A folded pass keeps only the inputs: a backward runs the layers' forward again."""

    inputs: np.ndarray


class LinearBatchNorm(FusedLayer):
    """``pool(act(BatchNormalization(...)(linear(x))))``, linear a Conv2D, DepthwiseConv2D,
    SeparableConv2D or Dense without activation, act relu, relu6 (not before a pool) or none,
    pool (after a Conv2D) a 2x2 stride-2 'valid' MaxPooling2D or none.

    At inference BN is an affine map per channel (its moving statistics), folded into a copy
    of the layer's kernel and bias that is kept while the weights stay the same: with
    ``s = gamma / sqrt(moving_variance + epsilon)``, ``kernel * s`` and
    ``(bias - moving_mean) * s + beta`` (a SeparableConv2D's pointwise kernel); the activation
    runs in the layer's epilogue, so its output is written once, as the result (or only the pooled
    output is, ``Conv2D.max_pooled_with``). In training BN's statistics need the layer's output:
    a Conv2D's kernels gather them as they write it (``kernels.conv.conv2d_forward_moments``;
    the others leave them to BN), then BN and the activation run in one pass (a
    frozen BN too: it runs as at inference, unfolded, keeping what the backward needs).

    Shapes: a conv's ``(batch, h, w, c)`` to ``(batch, oh, ow, filters)`` (a depthwise conv's
    filters ``c * depth_multiplier``), halved by a pool; a Dense's ``(batch, ..., input_dim)``
    to ``(batch, ..., units)``.
    """

    uses_workspace = True
    skips_input_grad = True

    def __init__(
        self,
        linear: Conv2D | DepthwiseConv2D | SeparableConv2D | Dense,
        bn: BatchNormalization,
        activation: Layer | None = None,
        pool: MaxPooling2D | None = None,
    ):
        chain = (linear, bn, activation, pool)
        super().__init__(*(layer for layer in chain if layer is not None))
        self.linear, self.bn, self.pool = linear, bn, pool
        self.code = LINEAR if activation is None else activation_code(activation)

    def folded(self):
        """The layer's kernel (as ``kernels.forms.Forms``, a depthwise conv's as an array, a
        separable conv's pointwise one (C*M, filters)) and bias with BN's moving-statistics
        affine map folded in, once while the weights stay."""
        sources = tuple(w.value for w in (*self.linear.weights, *self.bn.weights))
        return kept(self, "folded", sources, lambda *_: self._fold())

    def _fold(self):
        bn, dtype = self.bn, self.linear.weights[0].value.dtype
        gamma, beta = bn._affine(dtype)
        invstd = 1 / np.sqrt(bn.moving_variance.value + dtype.type(bn.epsilon))
        scale = (invstd * gamma).astype(dtype)
        bias = -bn.moving_mean.value
        if self.linear.use_bias:
            bias = self.linear.bias.value + bias
        bias = (bias * scale + beta).astype(dtype)
        if isinstance(self.linear, SeparableConv2D):
            pointwise = self.linear.pointwise_kernel.value
            return Forms(pointwise.reshape(-1, pointwise.shape[-1]) * scale), bias
        kernel = self.linear.kernel.value
        if isinstance(self.linear, DepthwiseConv2D):  # output channel c * M + m: kernel[..., c, m]
            return kernel * scale.reshape(kernel.shape[-2:]), bias
        return Forms(kernel * scale), bias

    def forward(self, inputs, training, workspace=None):
        if not training:
            kernel, bias = self.folded()
            if self.pool is not None:
                y = self.linear.max_pooled_with(inputs, kernel, bias, self.code, None, workspace)
            else:
                y = self.linear.forward_with(inputs, kernel, bias, self.code, workspace)
            return y, _Inputs(inputs)
        return self._run(inputs, training, workspace)

    def inference_call(self, inputs):
        if type(self.linear) not in (Conv2D, Dense, DepthwiseConv2D):
            return None
        kernel, bias = self.folded()
        if self.pool is not None:  # after a Conv2D
            return self.linear.pooled_inference_call(inputs, kernel, bias, self.code)
        return self.linear.inference_call_with(inputs, kernel, bias, self.code)

    def _run(self, inputs, training, workspace=None):
        """The layers as written (BN and the activation in one pass, the statistics gathered
        by a conv as it writes its output): (output, _Trained)."""
        moments, extra = None, {}
        if training and isinstance(self.linear, Conv2D) and self.bn.takes_moments:
            moments = extra["moments"] = np.empty(
                (2, self.linear.filters), self.linear.kernel.dtype
            )
        y, linear_ctx = self.linear.forward(inputs, training, workspace=workspace, **extra)
        out, bn_ctx = self.bn.forward_activated(y, training, self.code, workspace, moments)
        pool_ctx = None
        if self.pool is not None:
            out, pool_ctx = self.pool.forward(out, training)
        return out, _Trained(linear_ctx, bn_ctx, pool_ctx)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if isinstance(ctx, _Inputs):  # run the layers as written with the statistics they used
            _, ctx = self._run(ctx.inputs, False)
        grad = grad_outputs
        if self.pool is not None:
            grad = self.pool.backward(ctx.pool, grad)
        grad = self.bn.backward(ctx.bn, grad)
        return self.linear.backward(ctx.linear, grad, need_input_grad=need_input_grad)


def _is_linear_conv2d(node: Node) -> bool:
    """A channels_last Conv2D without activation, dilation or groups."""
    layer = node.layer
    return isinstance(layer, Conv2D) and layer._code == LINEAR and layer._plain_channels_last()


def _is_linear_depthwise2d(node: Node) -> bool:
    """A channels_last DepthwiseConv2D without activation or dilation."""
    layer = node.layer
    return (
        type(layer) is DepthwiseConv2D
        and layer._code == LINEAR
        and layer.data_format == "channels_last"
        and layer.dilation_rate == (1, 1)
    )


def _is_linear_separable2d(node: Node) -> bool:
    """A channels_last SeparableConv2D without activation."""
    layer = node.layer
    channels_last = getattr(layer, "data_format", None) == "channels_last"
    return type(layer) is SeparableConv2D and layer._code == LINEAR and channels_last


def _is_linear_dense(node: Node) -> bool:
    return type(node.layer) is Dense and node.layer._code == LINEAR


def _is_channel_batch_norm(node: Node) -> bool:
    """A BatchNormalization over the last axis (the filters or units), keeping its dtype."""
    if not _is_batch_norm(node) or node.inputs[0].dtype != node.outputs[0].dtype:
        return False
    return node.layer.axis in (-1, len(node.outputs[0].shape) - 1)


def _linear_bn_rules(name: str, is_linear) -> tuple[Rule, ...]:
    """Rules ``name`` for a layer passing ``is_linear`` and its BatchNormalization, with the
    activation after them and without."""
    return (
        Rule(name, (is_linear, _is_channel_batch_norm, _is_bn_activation), LinearBatchNorm),
        Rule(name, (is_linear, _is_channel_batch_norm), LinearBatchNorm),
    )


#: A conv's chain with a pool first (its activation relu or none), then every layer's chains
#: with the activation and without.
RULES = (
    Rule(
        "conv_bn_act",
        (_is_linear_conv2d, _is_channel_batch_norm, _is_relu, is_max_pool_2x2),
        LinearBatchNorm,
    ),
    *_linear_bn_rules("conv_bn_act", _is_linear_conv2d),
    *_linear_bn_rules("depthwise_bn_act", _is_linear_depthwise2d),
    *_linear_bn_rules("separable_bn_act", _is_linear_separable2d),
    *_linear_bn_rules("dense_bn_act", _is_linear_dense),
)
