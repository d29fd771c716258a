"""Conv2D and the 2x2 stride-2 'valid' MaxPooling2D that alone reads it, as one pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fastnn.fusion.base import FusedLayer, Rule
from fastnn.layers.convolutional import Conv2D
from fastnn.layers.pooling import MaxPooling2D
from fastnn.nodes import Node


class _Unfused(NamedTuple):
    """A training pass run as the two layers (a softmax conv): their contexts."""

    conv: tuple
    pool: tuple


class _Inputs(NamedTuple):
    """An inference pass keeps only the inputs: a backward runs the forward again from them."""

    inputs: np.ndarray


class ConvMaxPool(FusedLayer):
    """``MaxPooling2D(2)(Conv2D(...)(x))``: the conv's output never reaches memory.

    Input shape ``(batch, h, w, c)``; output ``(batch, oh // 2, ow // 2, filters)``. In training
    a uint8 code per pooled value keeps where its maximum was, which is all the backward needs.
    """

    uses_workspace = True
    skips_input_grad = True

    def __init__(self, conv: Conv2D, pool: MaxPooling2D):
        super().__init__(conv, pool)
        self.conv, self.pool = conv, pool

    def forward(self, inputs, training, workspace=None):
        if not training:
            pooled, _ = self.conv.forward_max_pooled(inputs, False, workspace)
            return pooled, _Inputs(inputs)
        if not self.conv.trains_max_pooled:
            y, conv_ctx = self.conv.forward(inputs, True, workspace=workspace)
            # The pool's arrays are its own: the conv's workspace may hold ones of its shapes.
            pooled, pool_ctx = self.pool.forward(y, True)
            return pooled, _Unfused(conv_ctx, pool_ctx)
        return self.conv.forward_max_pooled(inputs, True, workspace)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if isinstance(ctx, _Inputs):  # an inference pass kept nothing else: run training's
            _, ctx = self.forward(ctx.inputs, True)
        if isinstance(ctx, _Unfused):
            grad = self.pool.backward(ctx.pool, grad_outputs)
            return self.conv.backward(ctx.conv, grad, need_input_grad=need_input_grad)
        return self.conv.backward_max_pooled(ctx, grad_outputs, need_input_grad)


def is_conv2d(node: Node) -> bool:
    """A node test: a channels_last Conv2D without dilation or groups."""
    layer = node.layer
    if not isinstance(layer, Conv2D) or layer.data_format != "channels_last":
        return False
    return layer.dilation_rate == (1, 1) and layer.groups == 1


def is_pool_2x2(kind: type) -> Callable[[Node], bool]:
    """A node test: a channels_last 2x2 stride-2 'valid' pooling layer of class ``kind``."""

    def test(node: Node) -> bool:
        pool = node.layer
        return (
            isinstance(pool, kind)
            and pool.pool_size == pool.strides == (2, 2)
            and pool.padding == "valid"
            and pool.data_format == "channels_last"
        )

    return test


is_max_pool_2x2 = is_pool_2x2(MaxPooling2D)


RULE = Rule("conv_max_pool", (is_conv2d, is_max_pool_2x2), ConvMaxPool)
