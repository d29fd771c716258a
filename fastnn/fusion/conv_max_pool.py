"""Conv2D (and the activation layer that alone reads it, where the conv has none) and the 2x2
stride-2 'valid' MaxPooling2D that alone reads it, as one pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from fastnn.fusion.base import FusedLayer, Rule, activation_code, activation_of
from fastnn.kernels.codes import LINEAR
from fastnn.layers.base import Layer, kernel_for
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
    """``MaxPooling2D(2)(Conv2D(...)(x))``, or ``MaxPooling2D(2)(act(Conv2D(...)(x)))`` for an
    activation layer after a conv without activation (Keras's CIFAR-10 example writes
    ``Conv2D``, ``Activation('relu')``, ``MaxPooling2D``): the conv's output never reaches
    memory.

    Input shape ``(batch, h, w, c)``; output ``(batch, oh // 2, ow // 2, filters)``. In training
    a uint8 code per pooled value keeps where its maximum was, which is all the backward needs.
    """

    uses_workspace = True
    skips_input_grad = True

    def __init__(self, conv: Conv2D, pool: MaxPooling2D, activation: Layer | None = None):
        super().__init__(*(layer for layer in (conv, activation, pool) if layer is not None))
        self.conv, self.pool = conv, pool
        self.code = conv._code if activation is None else activation_code(activation)

    def forward(self, inputs, training, workspace=None):
        if not training:
            pooled, _ = self.conv.forward_max_pooled(inputs, False, workspace, self.code)
            return pooled, _Inputs(inputs)
        if not self.conv.trains_max_pooled(self.code):
            extra = {"workspace": workspace, "activation_code": self.code}
            y, conv_ctx = self.conv.forward(inputs, True, **extra)
            # The pool's arrays are its own: the conv's workspace may hold ones of its shapes.
            pooled, pool_ctx = self.pool.forward(y, True)
            return pooled, _Unfused(conv_ctx, pool_ctx)
        return self.conv.forward_max_pooled(inputs, True, workspace, self.code)

    def inference_call(self, inputs):
        return pooled_inference_call(self.conv, inputs, self.code)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if isinstance(ctx, _Inputs):  # an inference pass kept nothing else: run training's
            _, ctx = self.forward(ctx.inputs, True)
        if isinstance(ctx, _Unfused):
            grad = self.pool.backward(ctx.pool, grad_outputs)
            return self.conv.backward(ctx.conv, grad, need_input_grad=need_input_grad)
        return self.conv.backward_max_pooled(ctx, grad_outputs, need_input_grad)


def pooled_inference_call(conv: Conv2D, inputs, code: int, average: bool = False):
    """The inference call of ``conv`` (its own kernel and bias), activated by ``code``, and
    the 2x2 max (or ``average``) pool after it."""
    bias = conv.bias.value if conv.use_bias else None
    return conv.pooled_inference_call(inputs, kernel_for(conv, False), bias, code, average)


def is_conv2d(node: Node) -> bool:
    """A node test: a channels_last Conv2D without dilation or groups."""
    return isinstance(node.layer, Conv2D) and node.layer._plain_channels_last()


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


def is_activation_of_linear_conv(node: Node) -> bool:
    """An activation layer (``activation_of``) after a conv without activation."""
    parent = node.inputs[0].node
    linear = parent is not None and getattr(parent.layer, "_code", None) == LINEAR
    return linear and activation_of(node) is not None


def conv_pool_rules(name: str, is_pool: Callable[[Node], bool], composite) -> tuple[Rule, ...]:
    """Rules ``name`` for a conv and the pool that alone reads it, and for a conv without
    activation, the activation layer that alone reads it and such a pool: each made
    ``composite(conv, pool, activation or None)``."""
    return (
        Rule(name, (is_conv2d, is_pool), composite),
        Rule(
            name,
            (is_conv2d, is_activation_of_linear_conv, is_pool),
            lambda conv, activation, pool: composite(conv, pool, activation),
        ),
    )


RULES = conv_pool_rules("conv_max_pool", is_max_pool_2x2, ConvMaxPool)
