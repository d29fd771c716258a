"""Conv2D (any built-in activation, or none and the activation layer that alone reads it) and
the 2x2 stride-2 'valid' AveragePooling2D that alone reads it, as one node: at inference one
pass, the conv's output never in memory; in training the layers as written."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn.fusion.base import FusedLayer, activation_code
from fastnn.fusion.conv_max_pool import conv_pool_rules, is_pool_2x2, pooled_inference_call
from fastnn.kernels.workspace import Workspace, kept_for
from fastnn.layers.base import Layer
from fastnn.layers.convolutional import Conv2D
from fastnn.layers.pooling import AveragePooling2D


class _Trained(NamedTuple):
    """A training pass: the two layers' contexts."""

    conv: tuple
    pool: tuple


class _Inputs(NamedTuple):
    """An inference pass keeps only the inputs: a backward runs the training pass from them."""

    inputs: np.ndarray


class ConvAveragePool(FusedLayer):
    """``AveragePooling2D(2)(Conv2D(...)(x))`` (LeNet's conv and subsampling), or with an
    activation layer between a conv without activation and the pool.

    Input shape ``(batch, h, w, c)``; output ``(batch, oh // 2, ow // 2, filters)``. At
    inference the conv's output is computed band by band in cache, activated and averaged
    (``Conv2D.forward_average_pooled``); a training pass runs the conv, then the pool.
    """

    uses_workspace = True
    skips_input_grad = True

    def __init__(self, conv: Conv2D, pool: AveragePooling2D, activation: Layer | None = None):
        super().__init__(*(layer for layer in (conv, activation, pool) if layer is not None))
        self.conv, self.pool = conv, pool
        self.code = conv._code if activation is None else activation_code(activation)

    def forward(self, inputs, training, workspace=None):
        if not training:
            pooled = self.conv.forward_average_pooled(inputs, workspace, self.code)
            return pooled, _Inputs(inputs)
        extra = {"workspace": workspace, "activation_code": self.code}
        y, conv_ctx = self.conv.forward(inputs, True, **extra)
        # The pool's arrays in a workspace of its own: the conv's may hold ones of its shapes.
        kept = None if workspace is None else kept_for(workspace, self.pool, Workspace)
        pooled, pool_ctx = self.pool.forward(y, True, workspace=kept)
        return pooled, _Trained(conv_ctx, pool_ctx)

    def inference_call(self, inputs):
        return pooled_inference_call(self.conv, inputs, self.code, average=True)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if isinstance(ctx, _Inputs):  # an inference pass kept nothing else: run training's
            _, ctx = self.forward(ctx.inputs, True)
        grad = self.pool.backward(ctx.pool, grad_outputs)
        return self.conv.backward(ctx.conv, grad, need_input_grad=need_input_grad)


RULES = conv_pool_rules("conv_average_pool", is_pool_2x2(AveragePooling2D), ConvAveragePool)
