"""TimeDistributed: one layer applied to every time step, by folding time into the batch axis."""

from __future__ import annotations

import numpy as np

from fastnn.layers.base import Layer, shape_error
from fastnn.saving.serialization import deserialize_layer, serialize_layer


class TimeDistributed(Layer):
    """Applies ``layer`` to every time step: ``(batch, time, ...) -> (batch, time, ...)``.

    The time axis is folded into the batch axis, so the wrapped layer runs once on
    ``(batch * time, ...)``; this is exact for any layer that treats samples independently
    (Dense, Conv2D, pooling, Activation, Dropout, ...), not for BatchNormalization in training
    (its statistics then span all steps) or stateful layers. The weights are the wrapped layer's.
    A ``(batch, time)`` mask passes through to the output unchanged, as in Keras.

    Args:
        layer: a fastnn layer instance.

    Input shape: ``(batch, time, *layer_input_shape[1:])``.
    Output shape: ``(batch, time, *layer_output_shape[1:])``.

    Example: ``TimeDistributed(Dense(8))(Input((10, 16)))`` has shape ``(None, 10, 8)``.
    """

    supports_masking = True

    def __init__(self, layer, **kwargs):
        if not isinstance(layer, Layer):
            raise ValueError(
                "Please initialize `TimeDistributed` layer with a `fastnn.layers.Layer` "
                f"instance. Received: {layer!r}"
            )
        kwargs.setdefault("dtype", layer.dtype)
        super().__init__(**kwargs)
        self.layer = layer
        if not self._trainable:
            layer.trainable = False

    # ---- the wrapped layer's weights and settings ----------------------------------------------
    @property
    def casts_inputs(self):
        return self.layer.casts_inputs

    @property
    def output_dtype(self):
        return self.layer.output_dtype

    def sublayers(self):
        return [("layer", self.layer)]

    @property
    def weights(self):
        return self.layer.weights

    @property
    def trainable_weights(self):
        return self.layer.trainable_weights if self.trainable else []

    @property
    def non_trainable_weights(self):
        return self.layer.non_trainable_weights if self.trainable else self.layer.weights

    # ---- shapes --------------------------------------------------------------------------------
    def _child_input_shape(self, input_shape):
        if isinstance(input_shape, list) or len(input_shape) < 3:
            raise shape_error(
                self,
                "expects one input with at least 3 dimensions",
                "(batch, time, ...)",
                input_shape,
            )
        batch, time = input_shape[0], input_shape[1]
        folded = None if batch is None or time is None else batch * time
        return (folded, *input_shape[2:])

    def build(self, input_shape):
        self.layer._maybe_build(self._child_input_shape(input_shape))

    def check_input_shape(self, input_shape):
        self.layer.check_input_shape(self._child_input_shape(input_shape))

    def compute_output_shape(self, input_shape):
        child = self.layer.compute_output_shape(self._child_input_shape(input_shape))
        if isinstance(child, list):
            raise shape_error(
                self, "the wrapped layer must have one output", "one output shape", child
            )
        return (input_shape[0], input_shape[1], *child[1:])

    # ---- forward / backward --------------------------------------------------------------------
    def forward(self, inputs, training, mask=None):
        n, time = inputs.shape[:2]
        x = inputs.reshape(n * time, *inputs.shape[2:])
        if mask is not None and mask.ndim > 2 and self.layer.supports_masking:
            y, ctx = self.layer.forward(x, training, mask=mask.reshape(n * time, *mask.shape[2:]))
        else:
            y, ctx = self.layer.forward(x, training)
        return y.reshape(n, time, *y.shape[1:]), (ctx, inputs.shape, y.shape)

    def backward(self, ctx, grad_outputs):
        inner, x_shape, y_shape = ctx
        grad = self.layer.backward(inner, np.asarray(grad_outputs).reshape(y_shape))
        return None if grad is None else grad.reshape(x_shape)

    makes_masks = False  # it passes its input's mask on or ends it: none starts here

    def compute_mask(self, inputs, mask=None):
        """The input's ``(batch, time)`` mask, unchanged (Keras passes the previous mask on)."""
        if mask is None or mask.ndim <= 2:
            return mask
        n, time = mask.shape[:2]
        folded = mask.reshape(n * time, *mask.shape[2:])
        x = inputs.reshape(n * time, *inputs.shape[2:])
        out = self.layer.compute_mask(x, folded if self.layer.supports_masking else None)
        return None if out is None else out.reshape(n, time, *out.shape[1:])

    # ---- config --------------------------------------------------------------------------------
    def get_config(self):
        return {**super().get_config(), "layer": serialize_layer(self.layer)}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None):
        config = dict(config)
        inner = config.pop("layer")
        if isinstance(inner, dict):
            inner = deserialize_layer(inner, custom_objects)
        return cls(inner, **config)
