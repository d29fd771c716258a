"""Harness rows of Dense and Activation given a user's activation function (written with
fastnn.ops; Keras's twin writes it with keras.ops): the layer runs linear in its kernels, then
the function on a tape of its own."""

from dataclasses import replace

from layer_harness import row

import fastnn
from fastnn import layers as L
from fastnn import ops


@fastnn.saving.register_keras_serializable(package="rows")
def tanh_gate(x):
    """x * tanh(x): smooth, and its gradient reads x."""
    return x * ops.tanh(x)


def keras_tanh_gate(k):
    return lambda x: x * k.ops.tanh(x)


ROWS = {
    "dense-user_function": replace(
        row(L.Dense, (4,), 3, activation=tanh_gate, name="gated"),
        keras=lambda k: k.layers.Dense(3, activation=keras_tanh_gate(k), name="gated"),
    ),
    "dense-user_function-no_bias-3d": replace(
        row(L.Dense, (2, 4), 3, activation=tanh_gate, use_bias=False, name="gated_3d"),
        keras=lambda k: k.layers.Dense(
            3, activation=keras_tanh_gate(k), use_bias=False, name="gated_3d"
        ),
    ),
    "activation-user_function": replace(
        row(L.Activation, (2, 3), tanh_gate),  # no weights: no paths to match
        keras=lambda k: k.layers.Activation(keras_tanh_gate(k)),
    ),
}
