"""Harness rows (tests/layer_harness.py) for the normalization and attention layers: a row per
code path, merged by tests/layers/test_every_layer.py."""

from dataclasses import replace

from layer_harness import row

from fastnn import layers as L

KERAS_TORCH_LAYER_NORM_AXIS = (
    "Keras's torch backend hands one axis that is not the last to torch's layer_norm, which "
    "normalizes the last axes and refuses the shape (axes [1, 3] take Keras's own path and match)"
)


def relu_after(dtype):
    """The follower of the BN + activation fusion rule (BN on any axis)."""
    return L.Activation("relu", dtype=dtype)


def spread(layer, x, training):
    """Keras's MultiHeadAttention takes query, value (and key) as arguments, not a list."""
    return layer(*x, training=training)


class ScoresCausalMHA(L.MultiHeadAttention):
    """MultiHeadAttention whose calls return the scores under a causal mask (the harness calls
    layers without call options)."""

    def __call__(self, *args, **kwargs):
        return super().__call__(*args, return_attention_scores=True, use_causal_mask=True, **kwargs)


class ScoresCausalAttention(L.Attention):
    """Attention whose calls return the scores under a causal mask."""

    def __call__(self, inputs, *args, **kwargs):
        return super().__call__(
            inputs, *args, return_attention_scores=True, use_causal_mask=True, **kwargs
        )


def keras_scores_causal(layer, x, training):
    return layer(*x, return_attention_scores=True, use_causal_mask=True, training=training)


def keras_scores_causal_list(layer, x, training):
    return layer(x, return_attention_scores=True, use_causal_mask=True, training=training)


ROWS = {
    # ---- BatchNormalization on an axis other than the last (moved last and back)
    "batch_norm-axis_1-channels_first": replace(
        row(L.BatchNormalization, (3, 2, 2), axis=1), fused_with=relu_after
    ),
    "batch_norm-axis_-2-3d": row(L.BatchNormalization, (3, 2), axis=-2, momentum=0.8),
    "batch_norm-axis_1-frozen": row(L.BatchNormalization, (2, 3), axis=1, trainable=False),
    # ---- LayerNormalization
    "layer_norm": row(L.LayerNormalization, (5,)),
    "layer_norm-3d": row(L.LayerNormalization, (3, 4), epsilon=1e-5),
    "layer_norm-no_center_no_scale": row(L.LayerNormalization, (2, 4), center=False, scale=False),
    "layer_norm-rms_scaling": row(L.LayerNormalization, (2, 4), rms_scaling=True),
    "layer_norm-axes_last_two": row(L.LayerNormalization, (2, 3, 2), axis=[-2, -1]),
    "layer_norm-axis_1-moved": replace(
        row(L.LayerNormalization, (3, 4), axis=1), no_keras_parity=KERAS_TORCH_LAYER_NORM_AXIS
    ),
    "layer_norm-axes_1_3": row(L.LayerNormalization, (2, 3, 2), axis=[1, 3]),
    "layer_norm-frozen": row(L.LayerNormalization, (4,), trainable=False),
    # ---- GroupNormalization
    "group_norm": row(L.GroupNormalization, (3, 4), groups=2),
    "group_norm-4d": row(L.GroupNormalization, (2, 2, 6), groups=3, epsilon=1e-4),
    "group_norm-instance": row(L.GroupNormalization, (3, 4), groups=-1),
    "group_norm-one_group-no_center": row(L.GroupNormalization, (2, 4), groups=1, center=False),
    "group_norm-axis_1-channels_first": row(L.GroupNormalization, (4, 2, 3), groups=2, axis=1),
    "group_norm-2d-no_scale": row(L.GroupNormalization, (6,), groups=3, scale=False),
    # ---- MultiHeadAttention
    "multi_head_attention": replace(
        row(L.MultiHeadAttention, [(4, 6), (5, 6)], 2, 3), keras_call=spread
    ),
    "multi_head_attention-self": replace(
        row(L.MultiHeadAttention, [(3, 4), (3, 4)], 1, 4), keras_call=spread
    ),
    "multi_head_attention-key-value_dim-output_shape-no_bias": replace(
        row(
            L.MultiHeadAttention,
            [(3, 4), (5, 6), (5, 2)],
            2,
            3,
            value_dim=2,
            output_shape=5,
            use_bias=False,
        ),
        keras_call=spread,
    ),
    "multi_head_attention-output_shape_2d": replace(
        row(L.MultiHeadAttention, [(2, 3), (4, 3)], 2, 2, output_shape=(2, 3)),
        keras_call=spread,
    ),
    "multi_head_attention-dropout": replace(
        row(L.MultiHeadAttention, [(4, 3), (4, 3)], 2, 2, dropout=0.4, seed=3),
        keras_call=spread,
        random=True,
    ),
    "multi_head_attention-scores-causal": replace(
        row(ScoresCausalMHA, [(4, 3), (4, 3)], 2, 2, name="mha_scores"),
        keras=lambda keras: keras.layers.MultiHeadAttention(2, 2, name="mha_scores"),
        keras_call=keras_scores_causal,
    ),
    # ---- Attention, AdditiveAttention
    "attention": row(L.Attention, [(3, 4), (5, 4)]),
    "attention-key-scale": row(L.Attention, [(3, 4), (5, 2), (5, 4)], use_scale=True),
    "attention-concat": row(L.Attention, [(3, 4), (5, 4)], score_mode="concat"),
    "attention-concat-scale-key": row(
        L.Attention, [(2, 3), (4, 5), (4, 3)], use_scale=True, score_mode="concat"
    ),
    "attention-dropout": replace(
        row(L.Attention, [(3, 4), (5, 4)], dropout=0.3, seed=2), random=True
    ),
    "attention-scores-causal": replace(
        row(ScoresCausalAttention, [(4, 3), (4, 2), (4, 3)], use_scale=True, name="att_scores"),
        keras=lambda keras: keras.layers.Attention(use_scale=True, name="att_scores"),
        keras_call=keras_scores_causal_list,
    ),
    "additive_attention": row(L.AdditiveAttention, [(3, 4), (5, 4)]),
    "additive_attention-no_scale-key": row(
        L.AdditiveAttention, [(3, 4), (5, 2), (5, 4)], use_scale=False
    ),
    "additive_attention-dropout": replace(
        row(L.AdditiveAttention, [(2, 3), (4, 3)], dropout=0.5, seed=4), random=True
    ),
    # ---- Dot
    "dot-2d": row(L.Dot, [(5,), (5,)], 1),
    "dot-3d-last": row(L.Dot, [(3, 4), (5, 4)], 2),
    "dot-axes_pair": row(L.Dot, [(3, 4), (5, 3)], (1, 2)),
    "dot-2d_3d": row(L.Dot, [(4,), (3, 4)], -1),
    "dot-normalize": row(L.Dot, [(3, 4), (2, 4)], -1, normalize=True),
}
