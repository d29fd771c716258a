"""A Dense, Conv1D, Conv2D, Conv2DTranspose, Conv1DTranspose or DepthwiseConv2D without
activation and the activation layer that alone reads it, as one node: the activation runs as
the layer's own would, in its epilogue where the kernels take it (Keras code writes
``Conv2D(...)`` then ``LeakyReLU(0.2)``, ``Activation("relu")`` or ``ReLU()`` as often as
``Conv2D(..., activation="relu")``), so no pass of its own."""

from __future__ import annotations

from fastnn.fusion.base import FusedLayer, Rule, activation_code, activation_of
from fastnn.kernels.codes import LINEAR
from fastnn.layers.base import Layer
from fastnn.layers.convolutional import Conv1D, Conv2D
from fastnn.layers.convolutional_extra import Conv1DTranspose, Conv2DTranspose, DepthwiseConv2D
from fastnn.layers.core import Dense
from fastnn.nodes import Node


class LinearActivation(FusedLayer):
    """``act(linear(x))``, linear one of ``LINEAR_LAYERS`` (channels_last) without activation,
    act a built-in activation (``activation_code``): the layer run with act as its
    activation.

    Shapes: the layer's, ``(batch, h, w, c)`` to ``(batch, oh, ow, filters)`` or
    ``(batch, ..., input_dim)`` to ``(batch, ..., units)``.
    """

    uses_workspace = True
    skips_input_grad = True

    def __init__(self, linear: Layer, activation: Layer):
        super().__init__(linear, activation)
        self.linear, self.code = linear, activation_code(activation)
        self.passes_mask = linear.passes_mask  # a Dense's: the activation's passes it too

    def forward(self, inputs, training, workspace=None):
        return self.linear.forward(inputs, training, workspace, activation_code=self.code)

    def inference_call(self, inputs):
        if type(self.linear) not in (Dense, Conv1D, Conv2D, DepthwiseConv2D):
            return None
        return self.linear.inference_call(inputs, activation_code=self.code)

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        return self.linear.backward(ctx, grad_outputs, need_input_grad=need_input_grad)


#: The layers whose forward takes an activation_code for their own activation.
LINEAR_LAYERS = (Dense, Conv1D, Conv2D, Conv2DTranspose, Conv1DTranspose, DepthwiseConv2D)


def _is_linear_layer(node: Node) -> bool:
    """A Dense, or a channels_last Conv1D, Conv2D, Conv2DTranspose, Conv1DTranspose or
    DepthwiseConv2D, without activation."""
    layer = node.layer
    if type(layer) not in LINEAR_LAYERS or layer._code != LINEAR:
        return False
    return type(layer) is Dense or layer.data_format == "channels_last"


def _is_activation(node: Node) -> bool:
    """An activation layer of a built-in activation (``activation_of``)."""
    return activation_of(node) is not None


RULE = Rule("linear_act", (_is_linear_layer, _is_activation), LinearActivation)
