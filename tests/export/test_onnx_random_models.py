"""Random small CNN and sequence stacks (hypothesis), exported and run against ``predict``:
the layouts, transposes and BN folds must agree whatever order the layers come in."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_check import assert_matches
from test_onnx_layers import data, ids, with_random_weights

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
    if draw.draw(st.booleans()):  # a Dense head reads Flatten's channels-first map itself
        x = layers.Dense(2)(layers.Flatten()(x) if len(x.shape) > 2 else x)
    model = with_random_weights(fastnn.Model(inputs, x))
    assert_matches(model, data(5, 5, 2), tmp_path_factory.mktemp("onnx"))


def _recurrent(d):
    kind = d.draw(st.sampled_from([layers.LSTM, layers.GRU, layers.SimpleRNN]))
    layer = kind(d.draw(st.integers(1, 3)), return_sequences=True,
                 go_backwards=d.draw(st.booleans()))  # fmt: skip
    return layers.Bidirectional(layer, merge_mode="sum") if d.draw(st.booleans()) else layer


SEQUENCE_LAYERS = [
    _recurrent,
    lambda d: layers.Dense(d.draw(st.integers(1, 3)), activation="tanh"),
    lambda d: layers.BatchNormalization(),
    lambda d: layers.Activation("relu"),
    lambda d: layers.Dropout(0.5),
]


@settings(max_examples=5, deadline=None)
@given(st.data())
def test_random_sequence_stacks(tmp_path_factory, draw):
    """Masked (post-padded token ids) or not, recurrent layers in any order with others."""
    masked = draw.draw(st.booleans())
    inputs = fastnn.Input((5,))
    x = layers.Embedding(6, 3, mask_zero=masked)(inputs)
    for _ in range(draw.draw(st.integers(1, 4))):
        x = draw.draw(st.sampled_from(SEQUENCE_LAYERS))(draw)(x)
    model = with_random_weights(fastnn.Model(inputs, _recurrent(draw)(x)))
    tokens = ids(5, vocab=6, pad_after=[2, 5, 4] if masked else None)
    options = {"assume_post_padding": True} if masked else {}
    assert_matches(model, tokens, tmp_path_factory.mktemp("onnx"), **options)
