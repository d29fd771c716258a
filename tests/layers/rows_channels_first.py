"""Rows of ``data_format='channels_first'`` for Conv1D, Conv2D and the pooling layers
(fastnn/layers/convolutional.py, pooling.py) for tests/layers/test_every_layer.py: each
planned conv path (direct, im2col, Winograd, dilated, grouped, causal, strided; a softmax,
which Keras applies over the channels_first output's last axis, in the transposed, depthwise
and separable convs too) and each pooling."""

from layer_harness import row

from fastnn import layers as L

FIRST = {"data_format": "channels_first"}

ROWS = {
    # ---- Conv1D
    "conv1d-channels_first-valid": row(L.Conv1D, (2, 6), 3, 3, **FIRST),
    "conv1d-channels_first-same-strides_2-relu": row(
        L.Conv1D, (3, 7), 2, 3, strides=2, padding="same", activation="relu", **FIRST
    ),
    "conv1d-channels_first-causal-dilated": row(
        L.Conv1D, (2, 7), 2, 2, padding="causal", dilation_rate=2, **FIRST
    ),
    "conv1d-channels_first-groups-gelu": row(
        L.Conv1D, (4, 5), 4, 3, groups=2, activation="gelu", **FIRST
    ),
    "conv1d-channels_first-log_softmax": row(
        L.Conv1D, (2, 5), 3, 2, activation="log_softmax", **FIRST
    ),
    # ---- Conv2D
    "conv2d-channels_first-direct": row(L.Conv2D, (1, 5, 5), 2, 3, padding="same", **FIRST),
    "conv2d-channels_first-im2col-strides_2-tanh": row(
        L.Conv2D, (3, 6, 5), 4, (3, 2), strides=2, activation="tanh", **FIRST
    ),
    "conv2d-channels_first-winograd": row(
        L.Conv2D, (8, 4, 4), 3, 3, padding="same", activation="relu", **FIRST
    ),
    "conv2d-channels_first-dilated-softmax": row(
        L.Conv2D, (2, 6, 6), 3, 2, dilation_rate=2, activation="softmax", **FIRST
    ),
    "conv2d-channels_first-groups-no_bias": row(
        L.Conv2D, (4, 4, 4), 2, 3, groups=2, use_bias=False, **FIRST
    ),
    # ---- the transposed, depthwise and separable convs: a softmax over the last axis, as Keras
    "conv2d_transpose-channels_first-softmax": row(
        L.Conv2DTranspose, (2, 3, 3), 2, 2, strides=2, activation="softmax", **FIRST
    ),
    "depthwise_conv2d-channels_first-log_softmax": row(
        L.DepthwiseConv2D, (2, 4, 4), 3, activation="log_softmax", **FIRST
    ),
    "separable_conv2d-channels_first-softmax": row(
        L.SeparableConv2D, (2, 5, 4), 3, 3, activation="softmax", **FIRST
    ),
    "separable_conv1d-channels_first-softmax": row(
        L.SeparableConv1D, (2, 6), 2, 3, padding="same", activation="softmax", **FIRST
    ),
    # ---- pooling
    "max_pooling2d-channels_first": row(L.MaxPooling2D, (2, 4, 5), **FIRST),
    "max_pooling2d-channels_first-same-strides_1": row(
        L.MaxPooling2D, (3, 4, 4), 3, strides=1, padding="same", **FIRST
    ),
    "average_pooling2d-channels_first": row(L.AveragePooling2D, (2, 4, 6), (2, 3), **FIRST),
    "max_pooling1d-channels_first-same": row(L.MaxPooling1D, (3, 5), 2, padding="same", **FIRST),
    "average_pooling1d-channels_first-strides_1": row(
        L.AveragePooling1D, (2, 5), 3, strides=1, **FIRST
    ),
    "global_average_pooling2d-channels_first": row(L.GlobalAveragePooling2D, (3, 2, 4), **FIRST),
    "global_average_pooling2d-channels_first-keepdims": row(
        L.GlobalAveragePooling2D, (3, 2, 4), keepdims=True, **FIRST
    ),
    "global_max_pooling2d-channels_first-keepdims": row(
        L.GlobalMaxPooling2D, (3, 2, 4), keepdims=True, **FIRST
    ),
    "global_average_pooling1d-channels_first": row(L.GlobalAveragePooling1D, (3, 4), **FIRST),
    "global_max_pooling1d-channels_first-keepdims": row(
        L.GlobalMaxPooling1D, (3, 4), keepdims=True, **FIRST
    ),
}
