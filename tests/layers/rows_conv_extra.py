"""Rows of the transposed, depthwise and separable convolutions
(fastnn/layers/convolutional_extra.py) for tests/layers/test_every_layer.py: one per code path
(padding, strides, output_padding, dilation, depth_multiplier, activations fused or whose
gradient reads the pre-activation, use_bias=False, channels_first, frozen weights)."""

from layer_harness import row

from fastnn import layers as L

FIRST = {"data_format": "channels_first"}

ROWS = {
    # ---- Conv2DTranspose
    "conv2d_transpose-valid": row(L.Conv2DTranspose, (3, 3, 2), 3, 3),
    "conv2d_transpose-same-strides_2-relu": row(
        L.Conv2DTranspose, (3, 4, 2), 2, 3, strides=2, padding="same", activation="relu"
    ),
    "conv2d_transpose-same-even_kernel-strides_2": row(
        L.Conv2DTranspose, (3, 3, 2), 2, 4, strides=2, padding="same"
    ),
    "conv2d_transpose-valid-strides_over_kernel": row(
        L.Conv2DTranspose, (2, 3, 2), 2, 2, strides=(3, 2)
    ),
    "conv2d_transpose-valid-output_padding": row(
        L.Conv2DTranspose, (3, 3, 2), 2, 3, strides=2, output_padding=1
    ),
    "conv2d_transpose-same-output_padding-rect": row(
        L.Conv2DTranspose,
        (3, 3, 2),
        2,
        (3, 2),
        strides=(2, 3),
        padding="same",
        output_padding=(1, 2),
    ),
    "conv2d_transpose-same-dilated-tanh-no_bias": row(
        L.Conv2DTranspose,
        (4, 4, 2),
        2,
        2,
        padding="same",
        dilation_rate=2,
        activation="tanh",
        use_bias=False,
    ),
    "conv2d_transpose-softmax": row(L.Conv2DTranspose, (2, 2, 3), 3, 2, activation="softmax"),
    "conv2d_transpose-gelu": row(L.Conv2DTranspose, (2, 2, 2), 2, 2, strides=2, activation="gelu"),
    "conv2d_transpose-channels_first-sigmoid": row(
        L.Conv2DTranspose,
        (2, 3, 3),
        2,
        3,
        strides=2,
        padding="same",
        activation="sigmoid",
        **FIRST,
    ),
    "conv2d_transpose-frozen": row(L.Conv2DTranspose, (2, 2, 2), 2, 2, strides=2, trainable=False),
    # ---- Conv1DTranspose
    "conv1d_transpose-valid": row(L.Conv1DTranspose, (5, 2), 3, 3),
    "conv1d_transpose-same-strides_2-relu": row(
        L.Conv1DTranspose, (4, 2), 2, 3, strides=2, padding="same", activation="relu"
    ),
    "conv1d_transpose-output_padding-no_bias": row(
        L.Conv1DTranspose, (4, 2), 2, 4, strides=3, output_padding=2, use_bias=False
    ),
    "conv1d_transpose-dilated": row(L.Conv1DTranspose, (5, 2), 2, 3, dilation_rate=2),
    "conv1d_transpose-mish": row(L.Conv1DTranspose, (4, 2), 2, 2, strides=2, activation="mish"),
    "conv1d_transpose-channels_first": row(L.Conv1DTranspose, (2, 5), 3, 2, strides=2, **FIRST),
    # ---- DepthwiseConv2D
    "depthwise_conv2d-valid": row(L.DepthwiseConv2D, (5, 5, 3), 3),
    "depthwise_conv2d-same-strides_2-relu": row(
        L.DepthwiseConv2D, (6, 5, 3), 3, strides=2, padding="same", activation="relu"
    ),
    "depthwise_conv2d-multiplier_2-no_bias": row(
        L.DepthwiseConv2D, (4, 4, 2), 2, depth_multiplier=2, use_bias=False
    ),
    "depthwise_conv2d-same-dilated-tanh": row(
        L.DepthwiseConv2D, (5, 6, 2), 3, padding="same", dilation_rate=2, activation="tanh"
    ),
    "depthwise_conv2d-channels_first-multiplier_2": row(
        L.DepthwiseConv2D, (2, 5, 5), 3, strides=(2, 1), depth_multiplier=2, **FIRST
    ),
    "depthwise_conv2d-frozen": row(L.DepthwiseConv2D, (4, 4, 2), 2, trainable=False),
    "depthwise_conv2d-silu": row(L.DepthwiseConv2D, (4, 4, 2), 2, activation="silu"),
    "depthwise_conv2d-elu": row(L.DepthwiseConv2D, (4, 4, 2), 2, activation="elu"),
    # ---- DepthwiseConv1D
    "depthwise_conv1d-valid": row(L.DepthwiseConv1D, (6, 3), 3),
    "depthwise_conv1d-same-strides_2-multiplier_2-relu": row(
        L.DepthwiseConv1D,
        (7, 2),
        3,
        strides=2,
        padding="same",
        depth_multiplier=2,
        activation="relu",
    ),
    "depthwise_conv1d-channels_first-dilated": row(
        L.DepthwiseConv1D, (2, 7), 2, dilation_rate=2, **FIRST
    ),
    # ---- SeparableConv2D
    "separable_conv2d-valid": row(L.SeparableConv2D, (5, 5, 3), 4, 3),
    "separable_conv2d-same-strides_2-relu": row(
        L.SeparableConv2D, (6, 5, 2), 3, 3, strides=2, padding="same", activation="relu"
    ),
    "separable_conv2d-multiplier_2-no_bias-sigmoid": row(
        L.SeparableConv2D,
        (4, 4, 2),
        3,
        2,
        depth_multiplier=2,
        use_bias=False,
        activation="sigmoid",
    ),
    "separable_conv2d-channels_first-same-dilated": row(
        L.SeparableConv2D, (2, 5, 5), 3, 2, padding="same", dilation_rate=2, **FIRST
    ),
    "separable_conv2d-frozen": row(L.SeparableConv2D, (4, 4, 2), 2, 2, trainable=False),
    "separable_conv2d-gelu": row(L.SeparableConv2D, (4, 4, 2), 2, 2, activation="gelu"),
    # ---- SeparableConv1D
    "separable_conv1d-valid": row(L.SeparableConv1D, (6, 3), 4, 3),
    "separable_conv1d-same-strides_2-multiplier_2-tanh": row(
        L.SeparableConv1D,
        (7, 2),
        3,
        3,
        strides=2,
        padding="same",
        depth_multiplier=2,
        activation="tanh",
    ),
    "separable_conv1d-channels_first-no_bias": row(
        L.SeparableConv1D, (2, 6), 3, 2, use_bias=False, **FIRST
    ),
}
