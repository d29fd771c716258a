"""MultiHeadAttention exported: self- and cross-attention, key, causal and attention masks,
returned scores, output_shape."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_check import assert_matches
from test_onnx_layers import RNG, data, with_random_weights

import fastnn
from fastnn import layers
from fastnn.export import ExportError

CALLS = {
    "self": ({}, {}),
    "causal": ({}, {"use_causal_mask": True}),
    "scores": ({}, {"return_attention_scores": True}),
    "no-bias-value-dim": ({"use_bias": False, "value_dim": 3}, {}),
    "output-shape": ({"output_shape": (2, 3)}, {}),
}


@pytest.mark.parametrize("case", sorted(CALLS))
def test_self_attention(case, tmp_path):
    kwargs, call = CALLS[case]
    x = fastnn.Input((4, 6))
    out = layers.MultiHeadAttention(2, 3, **kwargs)(x, x, **call)
    outputs = list(out) if isinstance(out, (list, tuple)) else out
    model = with_random_weights(fastnn.Model(x, outputs))
    assert_matches(model, data(4, 6), tmp_path)


def test_cross_attention_with_key_and_attention_mask(tmp_path):
    q, v, k = fastnn.Input((3, 5)), fastnn.Input((4, 6)), fastnn.Input((4, 2))
    mask = fastnn.Input((3, 4))
    out = layers.MultiHeadAttention(2, 4)(q, v, key=k, attention_mask=mask, use_causal_mask=True)
    model = with_random_weights(fastnn.Model([q, v, k, mask], out))
    keep = (RNG.random((3, 3, 4)) > 0.4).astype(np.float32)
    keep[0, 1] = 0  # a row masked entirely
    assert_matches(model, [data(3, 5), data(4, 6), data(4, 2), keep], tmp_path)


def test_causal_mask_needs_opset_14(tmp_path):
    x = fastnn.Input((4, 6))
    model = fastnn.Model(x, layers.MultiHeadAttention(2, 3, name="mha")(x, x, use_causal_mask=True))
    with pytest.raises(ExportError, match=r"MultiHeadAttention 'mha' .*needs opset 14"):
        fastnn.export.onnx(model, tmp_path / "m.onnx", opset=13)


SCORE_LAYERS = {
    "dot": lambda: layers.Attention(),
    "dot-scaled": lambda: layers.Attention(use_scale=True),
    "concat-scaled": lambda: layers.Attention(score_mode="concat", use_scale=True),
    "additive": lambda: layers.AdditiveAttention(),
    "additive-unscaled": lambda: layers.AdditiveAttention(use_scale=False),
}


@pytest.mark.parametrize("case", sorted(SCORE_LAYERS))
@pytest.mark.parametrize("causal", [False, True])
def test_score_attention(case, causal, tmp_path):
    q, v, k = fastnn.Input((3, 4)), fastnn.Input((5, 2)), fastnn.Input((5, 4))
    out = SCORE_LAYERS[case]()([q, v, k], use_causal_mask=causal, return_attention_scores=True)
    model = with_random_weights(fastnn.Model([q, v, k], list(out)))
    assert_matches(model, [data(3, 4), data(5, 2), data(5, 4)], tmp_path)


def test_attention_on_query_and_value(tmp_path):
    q, v = fastnn.Input((3, 4)), fastnn.Input((5, 4))
    model = with_random_weights(fastnn.Model([q, v], layers.Attention()([q, v])))
    assert_matches(model, [data(3, 4), data(5, 4)], tmp_path)
