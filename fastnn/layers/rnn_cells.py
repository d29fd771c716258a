"""Keras 3's recurrent cells and the RNN layer that runs a cell over a sequence.

A cell is one step: ``cell(x_t, states) -> (output, new_states)``, written with fastnn.ops, so it
records on a tape and runs on plain arrays. A built-in cell also takes ``cell([x_t, *states])``
and returns the flat list ``[output, *new_states]``, the form a graph node takes (Keras's cells
have no such form). ``LSTMCell``, ``GRUCell`` and ``SimpleRNNCell`` take
Keras's arguments and make Keras's weights (kernel, recurrent_kernel, bias); ``StackedRNNCells``
chains cells as one. A user's cell is a Layer subclass with ``state_size`` (an int or a list),
optionally ``output_size``, ``build(input_shape)`` and ``call(inputs, states)`` returning
``(output, new_states)``, as in Keras.

``RNN(cell)`` runs the cell over ``(batch, timesteps, features)``. A built-in cell (or a stack of
them) runs on the LSTM, GRU and SimpleRNN layers' fused sequence kernels, the cell's weights
shared with a private layer of that kind (the "engine"): ``RNN(LSTMCell(n))`` computes exactly
what ``LSTM(n)`` does. Any other cell runs step by step with fastnn.ops on a tape, whose replay
gives the gradients. Masks, ``initial_state``, ``go_backwards``, ``return_sequences``,
``return_state``, ``zero_output_for_mask`` and ``stateful`` follow Keras 3. The graph holds flat
lists of tensors, so the states of a ``StackedRNNCells`` come flat (Keras nests them per cell),
and ``initial_state`` may be given flat or nested.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import activations, constraints, initializers, kernels, regularizers
from fastnn.layers import custom
from fastnn.layers.base import Layer, shape_error, snake_case
from fastnn.layers.recurrent import (
    GRU,
    LSTM,
    SequenceLayer,
    SimpleRNN,
    StatefulStates,
    check_rate,
    unit_config,
)
from fastnn.ops import numpy as ops_numpy
from fastnn.ops.tensor import unwrap
from fastnn.saving.serialization import deserialize_layer, serialize_layer
from fastnn.seeding import make_rng


class _Saved(NamedTuple):
    """What RNN's forward keeps for its backward."""

    on_tape: bool  # the cell ran step by step on a tape (else on its layers' kernels)
    ctx: object  # the tape's CallContext, or the layers' contexts in stack order
    states_given: bool  # initial states were inputs: backward returns their gradients


def _flatten(structure) -> list:
    """The leaves of nested lists and tuples, in order."""
    if isinstance(structure, (list, tuple)):
        return [leaf for item in structure for leaf in _flatten(item)]
    return [structure]


def _base_config(layer: Layer) -> dict:
    config = {"name": layer.name, "trainable": layer.trainable, "dtype": layer.dtype}
    if layer._input_shape_arg is not None:
        config["input_shape"] = layer._input_shape_arg
    return config


class _Cell(Layer):
    """What LSTMCell, GRUCell and SimpleRNNCell share: arguments, weights, dropout masks.

    Subclasses set ``gates`` and ``engine`` (the sequence layer whose kernels run the cell in an
    RNN) and write ``_bias_shape``, ``_bias_initializer`` and ``call``.
    """

    gates = 1
    engine: type = SimpleRNN

    def __init__(
        self,
        units: int,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                "Received an invalid value for argument `units`, expected a positive integer, "
                f"got {units}."
            )
        self.units = int(units)
        self.activation = activations.get_name(activation)
        self.recurrent_activation = activations.get_name(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = check_rate(self, "dropout", dropout)
        self.recurrent_dropout = check_rate(self, "recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self._rng = make_rng(seed)
        self._masks = None  # (input masks, state masks) of the running sequence
        self.output_size = self.units

    def build(self, input_shape):
        input_shape = _step_shape(input_shape)
        width = self.gates * self.units
        self.kernel = self.add_weight(
            (input_shape[-1], width), self.kernel_initializer, "kernel",
            regularizer=self.kernel_regularizer, constraint=self.kernel_constraint,
        )  # fmt: skip
        self.recurrent_kernel = self.add_weight(
            (self.units, width), self.recurrent_initializer, "recurrent_kernel",
            regularizer=self.recurrent_regularizer, constraint=self.recurrent_constraint,
        )  # fmt: skip
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                self._bias_shape(), self._bias_initializer(), "bias",
                regularizer=self.bias_regularizer, constraint=self.bias_constraint,
            )  # fmt: skip

    # ---- dropout, as Keras's DropoutRNNCell: masks drawn once per sequence ---------------------
    def _dropout_masks(self, x, h, training):
        """(input masks, state masks) for this step: None each when not dropping; one input
        mask, or one per gate (and per-gate state masks) under ``recurrent_dropout``."""
        if not training or not (0 < self.dropout < 1 or 0 < self.recurrent_dropout < 1):
            return None, None
        masks = self._masks
        if masks is None or (masks[0] if masks[0] is not None else masks[1]).shape[1] != x.shape[0]:
            per_gate = 0 < self.recurrent_dropout < 1
            gates = self.gates if per_gate else 1
            dtype = np.dtype(self.dtype)
            inputs = states = None
            if 0 < self.dropout < 1:
                inputs = self._keep((gates, *x.shape), self.dropout, dtype)
            if per_gate:
                states = self._keep((gates, *h.shape), self.recurrent_dropout, dtype)
            self._masks = (inputs, states)
        return self._masks

    def _keep(self, shape, rate, dtype):
        keep = (self._rng.random(shape) >= rate).astype(dtype)
        return keep * dtype.type(1 / (1 - rate))

    def reset_dropout_mask(self) -> None:
        """Draw new dropout masks at the next step (an RNN does it after each sequence)."""
        self._masks = None

    reset_recurrent_dropout_mask = reset_dropout_mask

    def _projections(self, x, h, training):
        """``x @ kernel (+ bias)`` and the list of the state's per-gate inputs to the recurrent
        product (``[h]`` when there is one shared input), with Keras's dropout masks."""
        keep_x, keep_h = self._dropout_masks(x, h, training)
        if keep_x is not None and len(keep_x) > 1:  # recurrent dropout: a mask per gate
            k = self.units
            xs = [
                ops_numpy.matmul(x * m, self.kernel[:, g * k : (g + 1) * k])
                for g, m in enumerate(keep_x)
            ]
            xw = ops_numpy.concatenate(xs, axis=-1)
        else:
            xw = ops_numpy.matmul(x if keep_x is None else x * keep_x[0], self.kernel)
        hs = [h] if keep_h is None else [h * m for m in keep_h]
        return xw, hs

    def _recurrent(self, hs, columns):
        """``h @ recurrent_kernel[:, columns]``, per gate when the state is masked per gate."""
        start, stop = columns
        if len(hs) == 1:
            return ops_numpy.matmul(hs[0], self.recurrent_kernel[:, start:stop])
        k = self.units
        parts = [
            ops_numpy.matmul(hs[g], self.recurrent_kernel[:, g * k : (g + 1) * k])
            for g in range(start // k, stop // k)
        ]
        return ops_numpy.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]

    def _act(self, z):
        return activations.get(self.activation)(z)

    def _rec_act(self, z):
        return activations.get(self.recurrent_activation)(z)

    # ---- an RNN runs a built-in cell on its layer's fused kernels ------------------------------
    def _engine_arguments(self) -> dict:
        return {"activation": self.activation, "recurrent_activation": self.recurrent_activation}

    def make_engine(self, **sequence_options) -> Layer | None:
        """A private layer of the cell's kind over whole sequences, sharing the cell's weights
        (built); None when its kernels cannot run the cell's activations."""
        arguments = self._engine_arguments()
        for key in ("activation", "recurrent_activation"):
            if (
                key in arguments
                and activations.code(arguments[key]) not in kernels.codes.ELEMENTWISE
            ):
                return None
        engine = self.engine(
            self.units,
            **arguments,
            use_bias=self.use_bias,
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            dtype=self.dtype,
            name=f"{self.name}_sequence",
            **sequence_options,
        )
        engine.kernel = self.kernel
        engine.recurrent_kernel = self.recurrent_kernel
        engine.bias = self.bias
        engine.built = True
        return engine

    def get_initial_state(self, batch_size=None) -> list:
        """Zeros of ``(batch_size, size)`` for each state."""
        sizes = self.state_size if isinstance(self.state_size, list) else [self.state_size]
        return [np.zeros((batch_size, size), self.dtype) for size in sizes]

    def get_config(self):
        return {**_base_config(self), **unit_config(self)}


class LSTMCell(_Cell):
    """One LSTM step (Keras 3's ``LSTMCell``): gates i, f, c, o of ``x @ kernel + h @
    recurrent_kernel + bias``; ``c = f * c + i * activation(z_c)``, ``h = o * activation(c)``.

    Weights: kernel ``(features, 4 * units)``, recurrent_kernel ``(units, 4 * units)``, bias
    ``(4 * units,)`` (the forget gate's starts at 1 with ``unit_forget_bias``).
    Call: ``cell(x (batch, features), [h, c])`` -> ``(h, [h, c])``; ``state_size`` is
    ``[units, units]``. In ``RNN`` it runs on ``LSTM``'s kernels.
    Example: ``RNN(LSTMCell(8))(Input((10, 3))).shape == (None, 8)``.
    """

    gates = 4
    engine = LSTM

    def __init__(self, units: int, *args, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.state_size = [self.units, self.units]

    def _bias_shape(self):
        return (4 * self.units,)

    _bias_initializer = LSTM._bias_initializer

    def call(self, inputs, states=None, training=None):
        inputs, states, flat, training = _unpack(self, inputs, states, training)
        h, c = states[0], states[1]
        xw, hs = self._projections(inputs, h, training)
        z = xw + self._recurrent(hs, (0, 4 * self.units))
        if self.use_bias:
            z = z + self.bias
        k = self.units
        i = self._rec_act(z[:, :k])
        f = self._rec_act(z[:, k : 2 * k])
        c = f * c + i * self._act(z[:, 2 * k : 3 * k])
        o = self._rec_act(z[:, 3 * k :])
        h = o * self._act(c)
        return [h, h, c] if flat else (h, [h, c])

    def _engine_arguments(self):
        return {**super()._engine_arguments(), "unit_forget_bias": self.unit_forget_bias}

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRUCell(_Cell):
    """One GRU step (Keras 3's ``GRUCell``), both forms: gates z, r, h;
    ``hh = activation(x_h + r * (h @ U_h + b_rh))`` (``reset_after=True``, the default) or
    ``activation(x_h + (r * h) @ U_h)``; ``h = z * h + (1 - z) * hh``.

    Weights: kernel ``(features, 3 * units)``, recurrent_kernel ``(units, 3 * units)``, bias
    ``(2, 3 * units)`` (input, recurrent) or ``(3 * units,)`` with ``reset_after=False``.
    Call: ``cell(x, [h])`` -> ``(h, [h])`` (``cell(x, h)`` -> ``(h, h)``); ``state_size`` is
    ``units``. In ``RNN`` it runs on ``GRU``'s kernels.
    Example: ``RNN(GRUCell(4), return_sequences=True)(Input((5, 2))).shape == (None, 5, 4)``.
    """

    gates = 3
    engine = GRU

    def __init__(self, units: int, *args, reset_after: bool = True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.reset_after = bool(reset_after)
        self.state_size = self.units

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def call(self, inputs, states=None, training=None):
        inputs, states, flat, training = _unpack(self, inputs, states, training)
        nested = isinstance(states, (list, tuple))
        h = states[0] if nested else states
        k = self.units
        xw, hs = self._projections(inputs, h, training)
        input_bias = recurrent_bias = None
        if self.use_bias:
            input_bias, recurrent_bias = (
                (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, None)
            )
            xw = xw + input_bias
        if self.reset_after:
            inner = self._recurrent(hs, (0, 3 * k))
            if recurrent_bias is not None:
                inner = inner + recurrent_bias
        else:
            inner = self._recurrent(hs, (0, 2 * k))
        z = self._rec_act(xw[:, :k] + inner[:, :k])
        r = self._rec_act(xw[:, k : 2 * k] + inner[:, k : 2 * k])
        if self.reset_after:
            recurrent_h = r * inner[:, 2 * k :]
        else:
            h_h = hs[-1]  # the candidate's masked state under recurrent dropout
            recurrent_h = ops_numpy.matmul(r * h_h, self.recurrent_kernel[:, 2 * k :])
        hh = self._act(xw[:, 2 * k :] + recurrent_h)
        h = z * h + (1 - z) * hh
        return [h, h] if flat else (h, [h] if nested else h)

    def _engine_arguments(self):
        return {**super()._engine_arguments(), "reset_after": self.reset_after}

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


class SimpleRNNCell(_Cell):
    """One SimpleRNN step (Keras 3's ``SimpleRNNCell``): ``h = activation(x @ kernel + h @
    recurrent_kernel + bias)``.

    Weights: kernel ``(features, units)``, recurrent_kernel ``(units, units)``, bias
    ``(units,)``. Call: ``cell(x, [h])`` -> ``(h, [h])``; ``state_size`` is ``units``. In
    ``RNN`` it runs on ``SimpleRNN``'s kernels.
    Example: ``RNN(SimpleRNNCell(4))(Input((5, 2))).shape == (None, 4)``.
    """

    gates = 1
    engine = SimpleRNN

    def __init__(
        self,
        units: int,
        activation="tanh",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        **kwargs,
    ):
        if "recurrent_activation" in kwargs:
            raise TypeError(
                "SimpleRNNCell has no `recurrent_activation` argument (it has no gates); "
                f"got recurrent_activation={kwargs['recurrent_activation']!r}"
            )
        super().__init__(
            units,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            **kwargs,
        )
        self.state_size = self.units

    def _bias_shape(self):
        return (self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def call(self, inputs, states=None, training=None):
        inputs, states, flat, training = _unpack(self, inputs, states, training)
        nested = isinstance(states, (list, tuple))
        h = states[0] if nested else states
        xw, hs = self._projections(inputs, h, training)
        if self.use_bias:
            xw = xw + self.bias
        h = self._act(xw + self._recurrent(hs, (0, self.units)))
        return [h, h] if flat else (h, [h] if nested else h)

    def _engine_arguments(self):
        return {"activation": self.activation}

    def get_config(self):
        config = super().get_config()
        del config["recurrent_activation"]
        return config


def _step_shape(input_shape) -> tuple:
    """The step's shape from a cell's build: ``x``'s, also when called on ``[x, *states]``."""
    if isinstance(input_shape, list) and input_shape and not isinstance(input_shape[0], int):
        return tuple(input_shape[0])
    return tuple(input_shape)


def _unpack(cell, inputs, states, training) -> tuple:
    """``(x, states, flat, training)``: ``cell(x, states)`` as Keras calls a cell, or
    ``cell([x, *states])`` (flat states in one list, as a graph node takes them; then
    ``cell([x, *states], training)`` is a layer call's ``training``), which returns the flat list
    ``[output, *new_states]``."""
    if isinstance(states, bool) and isinstance(inputs, (list, tuple)):
        states, training = None, states
    if states is not None:
        return inputs, states, False, training
    if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
        raise ValueError(
            f"{type(cell).__name__} '{cell.name}': a cell is called on one step and its states, "
            "cell(x, states) or cell([x, *states]); got no states"
        )
    return inputs[0], list(inputs[1:]), True, training


def _nest(stack, flat: list) -> list:
    """Flat states as a stack's cells take them: a list per cell with several states, the
    tensor itself for a cell with one (an int ``state_size``), as Keras's ``RNN`` gives them."""
    nested, start = [], 0
    for size in stack.state_size:
        if isinstance(size, (list, tuple)):
            nested.append(list(flat[start : start + len(size)]))
            start += len(size)
        else:
            nested.append(flat[start])
            start += 1
    return nested


def _output_size(cell) -> int:
    size = getattr(cell, "output_size", None)
    if size is None:
        size = _flatten(cell.state_size)[0]
    return int(size)


def _check_cell(cell, what: str) -> None:
    if not isinstance(cell, Layer) or type(cell).call is Layer.call:
        raise ValueError(
            f"{what} should be a layer with a `call` method (a cell, e.g. LSTMCell(8)); "
            f"received: cell={cell!r}"
        )
    state_size = getattr(cell, "state_size", None)
    sizes = _flatten(state_size) if state_size is not None else []
    if not sizes or not all(isinstance(s, (int, np.integer)) and s > 0 for s in sizes):
        raise ValueError(
            f"{what}: the RNN cell should have a `state_size` attribute (a positive integer, or "
            f"a list of them, one per state); received: cell={cell!r} with "
            f"state_size={state_size!r}"
        )


class StackedRNNCells(Layer):
    """Cells stacked into one (Keras 3's ``StackedRNNCells``): at each step each cell reads the
    output of the one before; the states are each cell's, in order.

    Weights: each cell's, in order. ``state_size`` is the list of the cells' ``state_size``;
    ``output_size`` the last cell's. In ``RNN``, a stack of built-in cells runs as a stack of
    their layers' fused kernels.
    Example: ``RNN(StackedRNNCells([LSTMCell(8), GRUCell(4)]))(x)`` (``RNN([...])`` is the same).
    """

    def __init__(self, cells, **kwargs):
        if not isinstance(cells, (list, tuple)) or not cells:
            raise ValueError(f"StackedRNNCells: `cells` must be a non-empty list; got {cells!r}")
        for cell in cells:
            _check_cell(cell, "StackedRNNCells: every cell")
        kwargs.setdefault("dtype", cells[0].dtype)  # it passes the steps on as they are
        super().__init__(**kwargs)
        self.cells = list(cells)

    @property
    def state_size(self) -> list:
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self) -> int:
        return _output_size(self.cells[-1])

    def build(self, input_shape):
        shape = _step_shape(input_shape)
        for cell in self.cells:
            cell._maybe_build(shape)
            shape = (shape[0], _output_size(cell))

    def call(self, inputs, states=None, training=None):
        inputs, flat_states, flat, training = _unpack(self, inputs, states, training)
        states = _nest(self, flat_states) if flat else flat_states
        new_states = []
        for cell, cell_states in zip(self.cells, states):
            given_list = isinstance(cell_states, (list, tuple))
            cell_states = list(cell_states) if given_list else [cell_states]
            inputs, cell_states = cell(inputs, cell_states, training=training)
            cell_states = _flatten(cell_states)
            one = not given_list and len(cell_states) == 1
            new_states.append(cell_states[0] if one else cell_states)
        return [inputs, *_flatten(new_states)] if flat else (inputs, new_states)

    def get_initial_state(self, batch_size=None) -> list:
        """Each cell's ``get_initial_state`` if it has one, else zeros, per cell."""
        states = []
        for cell in self.cells:
            make = getattr(cell, "get_initial_state", None)
            if make is not None:
                states.append(make(batch_size=batch_size))
            elif isinstance(cell.state_size, (list, tuple)):
                states.append([np.zeros((batch_size, s), self.dtype) for s in cell.state_size])
            else:
                states.append(np.zeros((batch_size, cell.state_size), self.dtype))
        return states

    def get_config(self):
        return {**_base_config(self), "cells": [serialize_layer(cell) for cell in self.cells]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        cells = [deserialize_layer(c, custom_objects) for c in config.pop("cells")]
        return cls(cells, **config)


class RNN(StatefulStates, SequenceLayer):
    """Runs a cell over ``(batch, timesteps, features)`` (Keras 3's ``RNN``).

    Args:
        cell: a cell (``LSTMCell``, ``GRUCell``, ``SimpleRNNCell``, ``StackedRNNCells``, a
            user's cell) or a list of cells (stacked).
        return_sequences: the output at every step, not only the last.
        return_state: also return the last states (flat: ``[output, *states]``).
        go_backwards: process the sequence in reverse (and return it in that order).
        stateful: carry the last states over to the next batch (see ``LSTM``).
        unroll: accepted for Keras compatibility; results are the same.
        zero_output_for_mask: masked steps output zeros instead of the previous output.

    Call arguments: ``initial_state`` (a list of arrays or tensors, flat or nested per cell),
    ``mask`` (batch, timesteps), ``training``.
    Input shape: ``(batch, timesteps, features)``. Output shape: ``(batch, output_size)``, or
    ``(batch, timesteps, output_size)`` with ``return_sequences``; ``return_state`` appends
    each state ``(batch, size)``.
    Weights: the cell's. Example: ``RNN(LSTMCell(8))(x)`` equals ``LSTM(8)(x)`` with the same
    weights, and runs the same kernels.
    """

    def __init__(
        self,
        cell,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs,
    ):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        _check_cell(cell, "RNN: argument `cell`")
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._engines = None  # built-in cells: their layers over whole sequences

    @property
    def state_size(self) -> list:
        """One entry per state (a list per cell for a stack), as Keras's ``RNN.state_size``."""
        size = self.cell.state_size
        return list(size) if isinstance(size, (list, tuple)) else [size]

    @property
    def _flat_sizes(self) -> list[int]:
        return [int(s) for s in _flatten(self.cell.state_size)]

    # ---- weights: the cell's -------------------------------------------------------------------
    def sublayers(self):
        return [("cell", self.cell)]

    @property
    def weights(self):
        return self.cell.weights

    @property
    def trainable_weights(self):
        return self.cell.trainable_weights if self.trainable else []

    @property
    def non_trainable_weights(self):
        return self.cell.non_trainable_weights if self.trainable else self.weights

    @property
    def sublayer_weights(self) -> dict[str, list]:
        """The weights under Keras's h5 groups: the cell's (each stacked cell's by name)."""
        if isinstance(self.cell, StackedRNNCells):
            names: dict[str, int] = {}
            groups = {}
            for cell in self.cell.cells:
                key = _snake(cell)
                names[key] = names.get(key, -1) + 1
                suffix = f"_{names[key]}" if names[key] else ""
                groups[f"cell/cells/{key}{suffix}"] = cell.weights
            return groups
        return {"cell": self.cell.weights}

    # ---- shapes --------------------------------------------------------------------------------
    def _split_shapes(self, input_shape):
        if isinstance(input_shape, list):
            return tuple(input_shape[0]), [tuple(s) for s in input_shape[1:]]
        return tuple(input_shape), []

    def _check_shapes(self, x_shape, state_shapes):
        if len(x_shape) != 3 or x_shape[-1] is None:
            raise shape_error(
                self, "input must be a sequence", "(batch, timesteps, features)", x_shape
            )
        sizes = self._flat_sizes
        if state_shapes and len(state_shapes) != len(sizes):
            raise ValueError(
                f"RNN '{self.name}': initial_state must hold {len(sizes)} arrays of sizes "
                f"{sizes}; got {len(state_shapes)}"
            )
        for i, (size, shape) in enumerate(zip(sizes, state_shapes)):
            if len(shape) != 2 or shape[1] != size or shape[0] not in (None, x_shape[0]):
                raise shape_error(
                    self, f"initial state {i} has the wrong shape", (x_shape[0], size), shape
                )

    def build(self, input_shape):
        x_shape, state_shapes = self._split_shapes(input_shape)
        self._check_shapes(x_shape, state_shapes)
        self._check_unroll(x_shape)
        with custom.scoped(self, None):  # the cell's weights: rnn/lstm_cell/kernel
            self.cell._maybe_build((x_shape[0], x_shape[2]))
        self._engines = self._make_engines()
        if self.stateful:
            self._make_states(x_shape[0], self._flat_sizes, self.dtype)
        self.built = True

    def check_input_shape(self, input_shape):
        x_shape, state_shapes = self._split_shapes(input_shape)
        self._check_shapes(x_shape, state_shapes)
        first = self.cell.cells[0] if isinstance(self.cell, StackedRNNCells) else self.cell
        if isinstance(first, _Cell) and first.kernel.shape[0] != x_shape[2]:
            raise shape_error(
                self,
                "incompatible input shape",
                f"(batch, timesteps, {first.kernel.shape[0]})",
                x_shape,
            )

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_shapes(input_shape)
        batch, steps = x_shape[0], x_shape[1]
        size = _output_size(self.cell)
        out = (batch, steps, size) if self.return_sequences else (batch, size)
        if self.return_state:
            return [out] + [(batch, s) for s in self._flat_sizes]
        return out

    makes_masks = False  # it passes its input's mask on or ends it: none starts here

    def compute_mask(self, inputs, mask=None):
        """The input mask if ``return_sequences``, else None; None for each state."""
        if isinstance(mask, list):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self._flat_sizes)
        return output_mask

    # ---- built-in cells: a chain of sequence layers --------------------------------------------
    def _make_engines(self) -> list | None:
        cells = self.cell.cells if isinstance(self.cell, StackedRNNCells) else [self.cell]
        if not all(isinstance(cell, _Cell) for cell in cells):
            return None
        engines = []
        for i, cell in enumerate(cells):
            last = i == len(cells) - 1
            engine = cell.make_engine(
                return_sequences=self.return_sequences or not last,
                return_state=True,
                go_backwards=self.go_backwards and i == 0,
                zero_output_for_mask=self.zero_output_for_mask and last,
            )
            if engine is None:
                return None
            engines.append(engine)
        return engines

    @property
    def uses_workspace(self) -> bool:
        return self._engines is not None and len(self._engines) == 1

    # ---- forward / backward --------------------------------------------------------------------
    def forward(self, inputs, training, mask=None, workspace=None):
        if isinstance(mask, list):  # [x's mask, None for each initial state]
            mask = mask[0]
        x, states = (inputs[0], list(inputs[1:])) if isinstance(inputs, list) else (inputs, [])
        given = bool(states)
        if self.stateful and not given:
            states = self._stateful_initial(x.shape[0])
        if self._engines is None:
            run_inputs = [x, *states] if states else x
            outputs, ctx = custom.forward(self, run_inputs, training, mask=mask)
            ctx = _Saved(True, ctx, given)
        else:
            outputs, ctx = self._engine_forward(x, states, given, training, mask, workspace)
        if self.stateful:
            self._keep_states(outputs[1:])
        if not self.return_state:
            outputs = outputs[0]
        return outputs, ctx

    def _engine_forward(self, x, states, given, training, mask, workspace):
        sizes = [len(engine.state_names) for engine in self._engines]
        cell_states, start = [], 0
        for size in sizes:
            cell_states.append(states[start : start + size])
            start += size
        cells = self.cell.cells if isinstance(self.cell, StackedRNNCells) else [self.cell]
        ctxs, last_states, y = [], [], x
        single = len(self._engines) == 1
        for i, (engine, cell) in enumerate(zip(self._engines, cells)):
            engine._rng = cell._rng  # the cell's seed and random state draw the masks
            engine._trainable = cell.trainable
            if i == len(cells) - 1:  # Bidirectional sets it on the layer it wraps
                engine.zero_output_for_mask = self.zero_output_for_mask
            engine_mask = mask
            if mask is not None and i > 0 and self.go_backwards:
                engine_mask = mask[:, ::-1]  # the first layer's outputs are in reverse order
            (y, *last), ctx = engine._forward(
                y, None, cell_states[i], bool(cell_states[i]), training, engine_mask,
                workspace if single else None,
            )  # fmt: skip
            ctxs.append(ctx)
            last_states += last
        return [y, *last_states], _Saved(False, ctxs, given)

    def backward(self, ctx, grad_outputs):
        on_tape, saved, given = ctx
        grads = list(grad_outputs) if self.return_state else [grad_outputs]
        if on_tape:
            if not self.return_state:  # the tape recorded [output, *states]
                grads += [None] * len(self._flat_sizes)
            back = custom.backward(self, saved, grads)
            back = back if isinstance(back, list) else [back]
            dx, *dstates = [
                np.zeros(x.shape, x.dtype) if g is None else g for g, x in zip(back, saved.inputs)
            ]
            return [dx, *dstates] if given else dx
        return self._engine_backward(saved, grads, given)

    def _engine_backward(self, ctxs, grads, given):
        sizes = [len(engine.state_names) for engine in self._engines]
        out_grad, state_grads = grads[0], grads[1:]
        per_cell, start = [], 0
        for size in sizes:
            part = state_grads[start : start + size] if state_grads else []
            per_cell.append(part)
            start += size
        dstates = []
        dy = out_grad
        for i in reversed(range(len(self._engines))):
            engine, ctx = self._engines[i], ctxs[i]
            steps, n, dtype = kernels.recurrent.sequence_shape(ctx.xt)
            part = per_cell[i] or [np.zeros((n, engine.units), dtype) for _ in engine.state_names]
            back = engine.backward(ctx, [dy, *part])
            if ctx.states_given:
                dy, *ds = back
                dstates = ds + dstates
            else:
                dy = back
        return [dy, *dstates] if given else dy

    # ---- the step loop with ops (any cell) -----------------------------------------------------
    def call(self, inputs, training=None, mask=None):
        """The sequence with fastnn.ops, one cell call per step: ``[output, *last states]``."""
        x, states = (inputs[0], list(inputs[1:])) if isinstance(inputs, list) else (inputs, [])
        n, steps = x.shape[0], x.shape[1]
        dtype = np.dtype(self.dtype)
        if not states:
            states = self._initial_states(n, dtype)
        order = range(steps - 1, -1, -1) if self.go_backwards else range(steps)
        carried = emitted = None
        outputs = []
        try:
            for t in order:
                output, new = self.cell(x[:, t], self._nest(states), training=training)
                new = _flatten(new)
                if mask is not None:
                    keep = np.asarray(mask[:, t])[:, None]
                    new = [ops_numpy.where(keep, s, old) for s, old in zip(new, states)]
                    zeros = np.zeros(output.shape, output.dtype)
                    carried = ops_numpy.where(keep, output, zeros if carried is None else carried)
                    emitted = (
                        ops_numpy.where(keep, output, zeros)
                        if self.zero_output_for_mask
                        else carried
                    )
                else:
                    emitted = output
                states = new
                if self.return_sequences:
                    outputs.append(emitted)
        finally:
            _reset_dropout(self.cell)
        result = ops_numpy.stack(outputs, axis=1) if self.return_sequences else emitted
        return [result, *states]

    def _initial_states(self, n: int, dtype) -> list:
        """The cell's ``get_initial_state(batch_size=n)`` if it has one, else zeros (flat)."""
        make = getattr(self.cell, "get_initial_state", None)
        if make is None:
            return [np.zeros((n, size), dtype) for size in self._flat_sizes]
        return [np.asarray(unwrap(s), dtype) for s in _flatten(make(batch_size=n))]

    def _nest(self, flat: list):
        """Flat states as the cell takes them: a list (a list per cell for a stack)."""
        if isinstance(self.cell, StackedRNNCells):
            return _nest(self.cell, flat)
        return list(flat)

    # ---- config --------------------------------------------------------------------------------
    def get_config(self):
        return {
            **_base_config(self),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "cell": serialize_layer(self.cell),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        cell = deserialize_layer(config.pop("cell"), custom_objects)
        return cls(cell, **config)


def _reset_dropout(cell) -> None:
    for layer in custom.layer_tree(cell):
        if isinstance(layer, _Cell):
            layer.reset_dropout_mask()


def _snake(layer) -> str:
    return snake_case(type(layer).__name__)
