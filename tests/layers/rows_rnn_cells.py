"""Harness rows of RNN and the cells (LSTMCell, GRUCell, SimpleRNNCell, StackedRNNCells).

A built-in cell (and a stack of them) inside RNN runs its layer's fused kernels; a user's cell, or
a built-in cell whose activation the kernels do not fuse, runs step by step on a tape: each path
has rows. A cell alone is called as a graph node takes it, ``cell([x, *states])`` ->
``[output, *states]``; Keras's twin is called ``cell(x, states)`` and its outputs flattened.
Masks and stateful layers need inputs the harness does not make: tests/layers/test_rnn_cells.py
checks them against Keras.
"""

from dataclasses import replace

from layer_harness import LayerSpec, keras_module, row

from fastnn import layers as L
from fastnn import ops
from fastnn.saving import register_keras_serializable


@register_keras_serializable(package="rnn_rows")
class MinimalRNNCell(L.Layer):
    """Keras's RNN docstring cell: ``h = tanh(x @ kernel + h @ recurrent_kernel)``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = units

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units), initializer="orthogonal", name="recurrent_kernel"
        )

    def call(self, inputs, states):
        h = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(states[0], self.recurrent_kernel))
        return h, [h]


@register_keras_serializable(package="rnn_rows")
class TwoStateCell(L.Layer):
    """Two states of different sizes and an output size of its own: ``a = tanh(x @ kernel +
    s @ recurrent_kernel)``, ``s' = sigmoid(s + a @ mix)``, output ``[a, s']``."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, 2]
        self.output_size = units + 2

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(2, self.units), name="recurrent_kernel")
        self.mix = self.add_weight(shape=(self.units, 2), name="mix")

    def call(self, inputs, states):
        a = ops.tanh(ops.matmul(inputs, self.kernel) + ops.matmul(states[1], self.recurrent_kernel))
        s = ops.sigmoid(states[1] + ops.matmul(a, self.mix))
        return ops.concatenate([a, s], axis=-1), [a, s]


def keras_twins():
    """The Keras versions of the user cells above (Keras imported only when a check needs it)."""
    keras = keras_module()
    kops = keras.ops

    class KerasMinimalRNNCell(keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = units

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.recurrent_kernel = self.add_weight(
                shape=(self.units, self.units), initializer="orthogonal", name="recurrent_kernel"
            )

        def call(self, inputs, states):
            h = kops.tanh(
                kops.matmul(inputs, self.kernel) + kops.matmul(states[0], self.recurrent_kernel)
            )
            return h, [h]

    class KerasTwoStateCell(keras.layers.Layer):
        def __init__(self, units, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.state_size = [units, 2]
            self.output_size = units + 2

        def build(self, input_shape):
            self.kernel = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(2, self.units), name="recurrent_kernel")
            self.mix = self.add_weight(shape=(self.units, 2), name="mix")

        def call(self, inputs, states):
            a = kops.tanh(
                kops.matmul(inputs, self.kernel) + kops.matmul(states[1], self.recurrent_kernel)
            )
            s = kops.sigmoid(states[1] + kops.matmul(a, self.mix))
            return kops.concatenate([a, s], axis=-1), [a, s]

    return {"minimal": KerasMinimalRNNCell, "two_state": KerasTwoStateCell}


def rnn(cell, *args, rnn_kwargs=None, **kwargs):
    """make(dtype) of ``RNN(cell(*args, **kwargs), **rnn_kwargs)``."""
    return lambda dtype: L.RNN(
        cell(*args, dtype=dtype, **kwargs), dtype=dtype, **(rnn_kwargs or {})
    )


def stacked(*cells, **rnn_kwargs):
    """make(dtype) of ``RNN([cell(units), ...], **rnn_kwargs)`` for (cell, units) pairs."""
    return lambda dtype: L.RNN([c(u, dtype=dtype) for c, u in cells], dtype=dtype, **rnn_kwargs)


def flat(value) -> list:
    """Keras's nested outputs (a stack's states, a cell's ``(output, states)``) as a flat list."""
    return keras_module().tree.flatten(value)


def with_initial_state(layer, x, training):
    """Keras takes an RNN's initial states by keyword, not in the inputs list."""
    return layer(x[0], initial_state=x[1:], training=training)


def flat_call(layer, x, training):
    """A Keras RNN whose states are nested (a stack's), its outputs flattened."""
    return flat(layer(x, training=training))


def cell_call(layer, x, training):
    """A Keras cell called on ``x`` and its states, ``(output, states)`` flattened."""
    return flat(layer(x[0], list(x[1:]), training=training))


def stack_call(sizes):
    """Calls a Keras StackedRNNCells on ``[x, *flat states]``: the states nested per cell
    (``sizes``: how many each cell has; a cell with one gets the tensor itself)."""

    def call(layer, x, training):
        states, start = [], 1
        for size in sizes:
            part = list(x[start : start + size])
            states.append(part if size > 1 else part[0])
            start += size
        return flat(layer(x[0], states, training=training))

    return call


def user_rnn(kind, units, cell_name, rnn_name, **rnn_kwargs) -> LayerSpec:
    """A row of RNN over a user cell on (4, 3) inputs, with the Keras twin named alike."""
    ours = {"minimal": MinimalRNNCell, "two_state": TwoStateCell}[kind]

    def make(dtype):
        return L.RNN(
            ours(units, name=cell_name, dtype=dtype), name=rnn_name, dtype=dtype, **rnn_kwargs
        )

    def keras(k):
        return k.layers.RNN(keras_twins()[kind](units, name=cell_name), name=rnn_name, **rnn_kwargs)

    return replace(row(make, (4, 3)), keras=keras, keras_call=flat_call)


def mixed_stack(dtype):
    """A user cell under a GRUCell: the stack runs on a tape."""
    cells = [MinimalRNNCell(2, name="minimal", dtype=dtype), L.GRUCell(3, name="gru", dtype=dtype)]
    stack = L.StackedRNNCells(cells, name="stack", dtype=dtype)
    return L.RNN(stack, return_sequences=True, name="rnn_mixed", dtype=dtype)


def keras_mixed_stack(keras):
    cells = [keras_twins()["minimal"](2, name="minimal"), keras.layers.GRUCell(3, name="gru")]
    stack = keras.layers.StackedRNNCells(cells, name="stack")
    return keras.layers.RNN(stack, return_sequences=True, name="rnn_mixed")


def dropping_stack(dtype):
    """A user cell under an LSTMCell with dropout: the stack runs on a tape, masks drawn once per
    sequence."""
    lstm = L.LSTMCell(2, dropout=0.3, recurrent_dropout=0.3, seed=4, name="lstm", dtype=dtype)
    stack = L.StackedRNNCells([MinimalRNNCell(2, name="minimal", dtype=dtype), lstm], name="stack")
    return L.RNN(stack, name="rnn_drop", dtype=dtype)


def keras_dropping_stack(keras):
    lstm = keras.layers.LSTMCell(2, dropout=0.3, recurrent_dropout=0.3, seed=4, name="lstm")
    cells = [keras_twins()["minimal"](2, name="minimal"), lstm]
    return keras.layers.RNN(keras.layers.StackedRNNCells(cells, name="stack"), name="rnn_drop")


ROWS = {
    # ---- RNN over a built-in cell: the layer's fused kernels
    "rnn-lstm_cell": row(rnn(L.LSTMCell, 2), (4, 3)),
    "rnn-gru_cell-sequences": row(rnn(L.GRUCell, 3, rnn_kwargs={"return_sequences": True}), (4, 3)),
    "rnn-simple_rnn_cell-state-backwards": row(
        rnn(L.SimpleRNNCell, 2, rnn_kwargs={"return_state": True, "go_backwards": True}), (3, 2)
    ),
    "rnn-gru_cell-reset_before-sequences-backwards": row(
        rnn(
            L.GRUCell,
            2,
            reset_after=False,
            rnn_kwargs={"return_sequences": True, "go_backwards": True},
        ),
        (4, 3),
    ),
    "rnn-lstm_cell-no_forget_bias-relu-sequences-state": row(
        rnn(
            L.LSTMCell,
            2,
            unit_forget_bias=False,
            activation="relu",
            rnn_kwargs={"return_sequences": True, "return_state": True},
        ),
        (3, 2),
    ),  # fmt: skip
    "rnn-lstm_cell-initial_state": replace(
        row(rnn(L.LSTMCell, 2, rnn_kwargs={"return_sequences": True}), [(3, 2), (2,), (2,)]),
        keras_call=with_initial_state,
    ),
    "rnn-simple_rnn_cell-no_bias-initial_state": replace(
        row(rnn(L.SimpleRNNCell, 2, use_bias=False), [(3, 2), (2,)]),
        keras_call=with_initial_state,
    ),
    "rnn-lstm_cell-dropout": replace(
        row(rnn(L.LSTMCell, 2, dropout=0.3, recurrent_dropout=0.2, seed=1), (3, 2)), random=True
    ),
    "rnn-gru_cell-dropout": replace(
        row(rnn(L.GRUCell, 2, dropout=0.3, seed=2), (3, 2)), random=True
    ),
    "rnn-lstm_cell-frozen": row(rnn(L.LSTMCell, 2, rnn_kwargs={"trainable": False}), (3, 2)),
    # ---- stacks of built-in cells: a chain of the layers' kernels
    "rnn-stacked-lstm_gru-sequences": row(
        stacked((L.LSTMCell, 2), (L.GRUCell, 3), return_sequences=True), (4, 3)
    ),
    "rnn-stacked-simple_lstm-state-backwards": replace(
        row(
            stacked((L.SimpleRNNCell, 2), (L.LSTMCell, 2), return_state=True, go_backwards=True),
            (3, 2),
        ),
        keras_call=flat_call,
    ),
    "rnn-stacked-initial_state": replace(
        row(stacked((L.GRUCell, 2), (L.SimpleRNNCell, 3)), [(3, 2), (2,), (3,)]),
        keras_call=with_initial_state,
    ),
    # ---- cells on a tape: a built-in cell the kernels cannot fuse, users' cells, a mixed stack
    "rnn-lstm_cell-softsign-sequences": row(
        rnn(L.LSTMCell, 2, activation="softsign", rnn_kwargs={"return_sequences": True}), (3, 2)
    ),
    "rnn-gru_cell-softsign-reset_before-backwards": row(
        rnn(
            L.GRUCell,
            2,
            activation="softsign",
            reset_after=False,
            rnn_kwargs={"go_backwards": True},
        ),
        (3, 2),
    ),
    "rnn-user_cell": user_rnn("minimal", 3, "minimal", "rnn_user"),
    "rnn-user_cell-two_states-sequences-state-backwards": user_rnn(
        "two_state",
        2,
        "two_state",
        "rnn_two",
        return_sequences=True,
        return_state=True,
        go_backwards=True,
    ),  # fmt: skip
    "rnn-stacked-user_and_gru": replace(row(mixed_stack, (4, 3)), keras=keras_mixed_stack),
    "rnn-stacked-user_and_lstm-dropout": replace(
        row(dropping_stack, (3, 2)), keras=keras_dropping_stack, random=True
    ),
    # ---- wrapped
    "bidirectional-rnn-lstm_cell": row(
        lambda dtype: L.Bidirectional(L.RNN(L.LSTMCell(2, dtype=dtype), dtype=dtype)), (3, 2)
    ),
    "bidirectional-rnn-stacked-sum-sequences": row(
        lambda dtype: L.Bidirectional(
            L.RNN(
                [L.GRUCell(2, dtype=dtype), L.SimpleRNNCell(2, dtype=dtype)],
                return_sequences=True,
                dtype=dtype,
            ),
            merge_mode="sum",
        ),
        (3, 2),
    ),
    # ---- the cells alone: one step, cell([x, *states])
    "lstm_cell": replace(row(L.LSTMCell, [(3,), (2,), (2,)], 2), keras_call=cell_call),
    "lstm_cell-no_bias-relu": replace(
        row(L.LSTMCell, [(3,), (2,), (2,)], 2, use_bias=False, activation="relu"),
        keras_call=cell_call,
    ),
    "gru_cell": replace(row(L.GRUCell, [(3,), (2,)], 2), keras_call=cell_call),
    "gru_cell-reset_before": replace(
        row(L.GRUCell, [(3,), (2,)], 2, reset_after=False), keras_call=cell_call
    ),
    "simple_rnn_cell": replace(row(L.SimpleRNNCell, [(3,), (4,)], 4), keras_call=cell_call),
    "lstm_cell-dropout": replace(
        row(L.LSTMCell, [(3,), (2,), (2,)], 2, dropout=0.4, recurrent_dropout=0.3, seed=3),
        keras_call=cell_call,
        random=True,
    ),
    "stacked_rnn_cells": replace(
        row(
            lambda dtype: L.StackedRNNCells(
                [L.LSTMCell(2, dtype=dtype), L.GRUCell(3, dtype=dtype)], dtype=dtype
            ),
            [(3,), (2,), (2,), (3,)],
        ),
        keras_call=stack_call([2, 1]),
    ),
}
