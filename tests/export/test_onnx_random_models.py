"""Random small CNN and MLP stacks (hypothesis), exported and run against ``predict``: the
layouts, transposes and BN folds must agree whatever order the layers come in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_check import assert_matches
from test_onnx_layers import data, with_random_weights

import fastnn
from fastnn import layers

IMAGE_LAYERS = [
    lambda d: layers.Conv2D(d.draw(st.integers(1, 3)), d.draw(st.integers(1, 3)),
                            padding=d.draw(st.sampled_from(["same", "valid"])),
                            activation=d.draw(st.sampled_from(["linear", "relu", "tanh"]))),
    lambda d: layers.DepthwiseConv2D(2, padding="same"),
    lambda d: layers.BatchNormalization(),
    lambda d: layers.Activation(d.draw(st.sampled_from(["relu", "softmax", "silu"]))),
    lambda d: layers.MaxPooling2D(2, strides=1, padding="same"),
    lambda d: layers.AveragePooling2D(2, strides=1, padding="same"),
    lambda d: layers.ZeroPadding2D(1),
    lambda d: layers.Dropout(0.3),
]  # fmt: skip
HEADS = [
    lambda d: layers.Flatten(),
    lambda d: layers.GlobalAveragePooling2D(),
    lambda d: layers.GlobalMaxPooling2D(keepdims=True),
    lambda d: layers.Conv2D(2, 1),
]


@settings(max_examples=5, deadline=None)
@given(st.data())
def test_random_image_stacks(tmp_path_factory, draw):
    inputs = fastnn.Input((5, 5, 2))
    x = inputs
    for _ in range(draw.draw(st.integers(1, 4))):
        x = draw.draw(st.sampled_from(IMAGE_LAYERS))(draw)(x)
    x = draw.draw(st.sampled_from(HEADS))(draw)(x)
    model = with_random_weights(fastnn.Model(inputs, x))
    assert_matches(model, data(5, 5, 2), tmp_path_factory.mktemp("onnx"))
