"""Harness rows of the activation layers (ReLU, LeakyReLU, PReLU, ELU, Softmax) and of the
layers that fuse an activation (Dense, Conv1D, Conv2D, Activation) with each of Keras 3's
activations beyond relu, sigmoid, tanh and softmax.

Dense runs every name once; the convolutions take one of each kernel contract (gradient from the
output, from the pre-activation, row-wise) on each conv path (im2col, direct, Winograd), with
the max pool fusion where it applies. The Softmax mask is a call argument the harness does not
pass: tests/layers/test_activations.py checks it against Keras.
"""

from dataclasses import replace

from layer_harness import row

from fastnn import layers as L
from fastnn.kernels import codes

NEW_ACTIVATIONS = sorted(set(codes.CODES) - {"linear", "relu", "sigmoid", "tanh", "softmax"})


def pool_2x2(dtype):
    """The follower of the conv + max pool fusion rule."""
    return L.MaxPooling2D(2, dtype=dtype)


ROWS = {
    # ---- the activation layers
    "relu_layer": row(L.ReLU, (2, 5)),
    "relu_layer-max_value": row(L.ReLU, (7,), max_value=0.5),
    "relu_layer-max_value_6": row(L.ReLU, (7,), 6.0),
    "relu_layer-threshold": row(L.ReLU, (3, 4), threshold=0.3),
    "relu_layer-all_arguments": row(
        L.ReLU, (2, 3, 2), max_value=1.0, negative_slope=0.25, threshold=0.5
    ),
    "relu_layer-negative_slope": row(L.ReLU, (6,), negative_slope=0.1),
    "leaky_relu_layer": row(L.LeakyReLU, (2, 5)),
    "leaky_relu_layer-slope": row(L.LeakyReLU, (6,), negative_slope=0.05),
    "elu_layer": row(L.ELU, (2, 5)),
    "elu_layer-alpha": row(L.ELU, (6,), alpha=0.4),
    "prelu": row(L.PReLU, (2, 5)),
    "prelu-shared_axes": row(L.PReLU, (3, 4, 2), shared_axes=[1, 2]),
    "prelu-shared_axis-int": row(L.PReLU, (3, 2), shared_axes=1),
    "prelu-initializer-regularizer": row(
        L.PReLU, (4,), alpha_initializer="ones", alpha_regularizer="l2"
    ),
    "softmax_layer": row(L.Softmax, (5,)),
    "softmax_layer-3d": row(L.Softmax, (2, 4)),
    "softmax_layer-axis_1": row(L.Softmax, (3, 4), axis=1),
    "softmax_layer-axes": row(L.Softmax, (2, 3, 2), axis=[1, 2]),
    "softmax_layer-axes_last_two": row(L.Softmax, (2, 3, 2), axis=[-1, -2]),
    # ---- fused into Dense and Activation: every name
    **{f"dense-{name}": row(L.Dense, (4,), 3, activation=name) for name in NEW_ACTIVATIONS},
    "dense-swish-3d-no_bias": row(L.Dense, (2, 4), 3, activation="swish", use_bias=False),
    "dense-hard_swish": row(L.Dense, (4,), 3, activation="hard_swish"),
    **{f"activation-{name}": row(L.Activation, (2, 5), name) for name in NEW_ACTIVATIONS},
    # ---- fused into the convolutions
    "conv1d-gelu": row(L.Conv1D, (7, 2), 3, 3, padding="same", activation="gelu"),
    "conv1d-elu-causal": row(L.Conv1D, (6, 2), 2, 3, padding="causal", activation="elu"),
    "conv1d-log_softmax": row(L.Conv1D, (5, 2), 3, 2, activation="log_softmax"),
    "conv2d-selu": replace(
        row(L.Conv2D, (6, 6, 2), 3, 3, padding="same", activation="selu"), fused_with=pool_2x2
    ),
    "conv2d-silu": replace(
        row(L.Conv2D, (6, 6, 2), 3, 3, padding="same", activation="silu"), fused_with=pool_2x2
    ),
    "conv2d-log_softmax": replace(
        row(L.Conv2D, (5, 5, 2), 3, 2, activation="log_softmax"), fused_with=pool_2x2
    ),
    "conv2d-direct-mish": replace(
        row(L.Conv2D, (6, 6, 1), 2, 3, activation="mish"), fused_with=pool_2x2
    ),
    "conv2d-direct-softplus": replace(
        row(L.Conv2D, (6, 6, 1), 2, 3, activation="softplus"), fused_with=pool_2x2
    ),
    "conv2d-winograd-hard_silu": replace(
        row(L.Conv2D, (4, 4, 8), 2, 3, padding="same", activation="hard_silu"),
        fused_with=pool_2x2,
    ),
    "conv2d-winograd-leaky_relu": replace(
        row(L.Conv2D, (4, 4, 8), 2, 3, padding="same", activation="leaky_relu"),
        fused_with=pool_2x2,
    ),
}
