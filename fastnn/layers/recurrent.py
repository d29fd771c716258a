"""Recurrent layers: LSTM, GRU and SimpleRNN over whole sequences (Keras 3 arguments, weights
and math), and Masking, which marks the timesteps they skip.

Beyond the layer contract, a recurrent layer takes two call arguments, as in Keras:

* ``initial_state=[h0, c0]`` (LSTM) or ``[h0]`` (GRU): the states become extra inputs, so the
  layer's node reads ``[x, h0, c0]``; this works on arrays and on symbolic tensors, and
  ``backward`` returns the gradients of the states too. Calling the layer on the list
  ``[x, h0, c0]`` is the same thing.
* ``stateful=True`` (Keras 3's semantics): the batch size is fixed by the model's input
  (``Input(shape, batch_size=n)``); the last states of a call are the initial states of the next
  one, sample i to sample i, until ``reset_state()`` / ``reset_states()`` sets them to zeros.
  The states are non-trainable Variables in ``layer.states`` and, as in Keras, not among the
  layer's weights, so files do not hold them (a loaded model starts from zeros).
* ``mask=`` a ``(batch, timesteps)`` boolean array (e.g. ``Embedding.compute_mask(ids)``): at a
  masked step the state is carried through and the output repeats the previous output (zeros
  before the first unmasked step), as Keras does; with ``zero_output_for_mask=True`` (which
  ``Bidirectional`` sets when returning sequences) masked steps output zeros. In a model the mask
  comes from ``Embedding(mask_zero=True)`` or ``Masking``; on array calls it may be passed as
  ``mask=``.

In training, ``dropout`` masks the inputs with one mask per sequence for all its steps; with
``recurrent_dropout`` too, as in Keras 3, each gate has its own masks of the inputs and of the
state fed to the recurrent product (the carried state itself is not masked).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import activations, constraints, initializers, kernels, regularizers, runtime
from fastnn.kernels.workspace import Workspace, scratch_copy
from fastnn.layers.base import Layer, Variable, shape_error
from fastnn.seeding import make_rng


def _kernel_options(workspace, dropout, dtype):
    """The sequence kernels' keyword arguments: the node's ``workspace`` (or None), the
    ``threads`` they may use (the input projection and weight gradients split over them, the
    time loop on blocks of the batch's rows at once), numpy's ``cblas`` gemm for ``dtype``
    (each step's product, called from the Numba time loop) and ``dropout`` (a ``GateDropout``
    or None)."""
    return dict(
        workspace=workspace,
        threads=runtime.threads(),
        cblas=runtime.cblas_gemm(dtype),
        dropout=dropout,
    )


def check_rate(layer, arg: str, rate) -> float:
    """A dropout rate in [0, 1] as a float; otherwise a ValueError naming the layer and ``arg``."""
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}': `{arg}` must be a float in [0, 1]; "
            f"got {arg}={rate!r}"
        )
    return float(rate)


class _Rows(NamedTuple):
    """A sequence given as rows of a table: step t of sample n is ``table[ids[n, t]]``."""

    ids: np.ndarray  # (batch, steps) int64
    table: np.ndarray  # (V, features)
    dtable: np.ndarray | None  # where backward adds the input's gradient; None: nowhere


class _Saved(NamedTuple):
    """What a recurrent layer's forward keeps for its backward."""

    xt: np.ndarray | kernels.recurrent.TableRows  # the input, time-major, in processing order
    keep: np.ndarray | None  # the input's dropout mask (batch, features), or None
    mt: np.ndarray | None  # the mask, time-major (steps, batch), or None
    seen: np.ndarray | None  # where outputs are kept: mt, or steps after the first unmasked
    saved: tuple  # the kernels' states (and gates) over time
    states_given: bool  # initial states were inputs: backward returns their gradients
    dtable: np.ndarray | None  # forward_rows's dtable
    workspace: Workspace | None  # the node's, or None
    gate_dropout: kernels.recurrent.GateDropout | None  # recurrent_dropout's masks


class SequenceLayer(Layer):
    """A layer over ``(batch, timesteps, features)`` called with ``initial_state=`` and ``mask=``.

    ``layer(x, initial_state=[...])`` is ``layer([x, *states])`` (states nested per cell are
    flattened); ``mask=`` (array calls only) goes
    to ``forward(inputs, training, mask=mask)``. Used by the recurrent layers and Bidirectional.
    """

    supports_masking = True  # forward(..., mask=) takes a (batch, timesteps) mask

    def _check_unroll(self, x_shape) -> None:
        """Keras refuses ``unroll=True`` on sequences of unknown length."""
        if getattr(self, "unroll", False) and x_shape[1] is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': cannot unroll a RNN if the time dimension "
                f"is undefined; got input shape {x_shape}. Give the Input a number of timesteps"
            )

    def __call__(self, inputs, training=None, initial_state=None, mask=None, **kwargs):
        """``layer(x)``, ``layer(x, initial_state=[...])``, ``layer(x, mask=m)`` (arrays)."""
        if initial_state is not None:
            if isinstance(inputs, (list, tuple)):
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': pass the initial state either in the "
                    "inputs list or as initial_state=, not both"
                )
            inputs = [inputs, *_flat_states(initial_state)]
        return super().__call__(inputs, training=training, mask=mask, **kwargs)


def _flat_states(states) -> list:
    """Initial states given as one array, a list, or lists nested per cell (a stack's)."""
    if isinstance(states, (list, tuple)):
        return [leaf for item in states for leaf in _flat_states(item)]
    return [states]


class StatefulStates:
    """``stateful=True``'s states for a sequence layer: Variables of ``(batch, size)`` made at
    build from the input's fixed batch size, read as the initial states of a call that is given
    none, and overwritten with its last states (Keras 3's ``RNN.states``)."""

    stateful = False
    states: list | None = None

    def _make_states(self, batch, sizes, dtype) -> None:
        """The state Variables of ``sizes`` for a batch of ``batch`` (None: refused)."""
        if batch is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': when using `stateful=True` in a RNN, the "
                "batch size must be static; found a dynamic batch size. Give the model's input "
                "one, e.g. Input(shape, batch_size=32)"
            )
        self.states = [
            Variable(
                np.zeros((batch, size), dtype), "rnn_state", f"{self.name}/rnn_state", False, None
            )
            for size in sizes
        ]

    def _stateful_initial(self, n: int) -> list:
        """The stored states as a call's initial states, for a batch of ``n`` sequences."""
        expected = self.states[0].shape[0]
        if n != expected:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': if an RNN is stateful, the batch size of "
                "the input sequences must be the same as the batch size of the initial state; "
                f"expected batch size {expected}, got {n}"
            )
        return [s.value.copy() for s in self.states]

    def _keep_states(self, last_states) -> None:
        for var, value in zip(self.states, last_states):
            var.value[...] = value

    def reset_state(self) -> None:
        """Set the stored states to zeros (``stateful=True``; nothing otherwise)."""
        for var in self.states or ():
            var.value[...] = 0

    def reset_states(self) -> None:
        """Keras's older name for ``reset_state``."""
        self.reset_state()

    @property
    def samples_independent(self) -> bool:
        """A stateful layer's batches follow each other: predict must not merge them."""
        return not self.stateful and Layer.samples_independent.fget(self)


def unit_config(layer) -> dict:
    """The config keys a recurrent layer and its cell share (Keras's order): units,
    activations, initializers, regularizers, constraints, dropouts and seed."""
    return {
        "units": layer.units,
        "activation": layer.activation,
        "recurrent_activation": layer.recurrent_activation,
        "use_bias": layer.use_bias,
        "kernel_initializer": initializers.serialize(layer.kernel_initializer),
        "recurrent_initializer": initializers.serialize(layer.recurrent_initializer),
        "bias_initializer": initializers.serialize(layer.bias_initializer),
        "kernel_regularizer": regularizers.serialize(layer.kernel_regularizer),
        "recurrent_regularizer": regularizers.serialize(layer.recurrent_regularizer),
        "bias_regularizer": regularizers.serialize(layer.bias_regularizer),
        "kernel_constraint": constraints.serialize(layer.kernel_constraint),
        "recurrent_constraint": constraints.serialize(layer.recurrent_constraint),
        "bias_constraint": constraints.serialize(layer.bias_constraint),
        "dropout": layer.dropout,
        "recurrent_dropout": layer.recurrent_dropout,
        "seed": layer.seed,
    }


class _RNN(StatefulStates, SequenceLayer):
    """Shared machinery of LSTM, GRU and SimpleRNN: arguments, weights, layouts, masks, states.

    Subclasses set ``gates`` (4, 3 or 1) and ``state_names`` and implement ``_bias_shape``,
    ``_bias_initializer``, ``_run`` and ``_run_backward`` over time-major arrays. ``_run``'s
    ``for_backward`` is False in an inference pass: it may then keep less (the LSTM keeps no
    gates, and its backward, if one is run after all, runs the forward again for them).
    """

    gates = 0
    state_names: tuple = ()

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
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        use_cudnn="auto",
        zero_output_for_mask: bool = False,
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
        self._act = activations.code(self.activation)
        self._rec_act = activations.code(self.recurrent_activation)
        for arg, name in (
            ("activation", self.activation),
            ("recurrent_activation", self.recurrent_activation),
        ):
            if activations.code(name) not in kernels.codes.ELEMENTWISE:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': `{arg}` must be elementwise "
                    f"(linear, relu, sigmoid or tanh); got {name!r}"
                )
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
        self.stateful = bool(stateful)
        self.dropout = check_rate(self, "dropout", dropout)
        self.recurrent_dropout = check_rate(self, "recurrent_dropout", recurrent_dropout)
        self.seed = seed
        self._rng = make_rng(seed)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.unroll = bool(unroll)  # accepted for Keras compatibility; results are the same
        # False: a masked step repeats the previous output (Keras's default); True: zeros.
        self.zero_output_for_mask = bool(zero_output_for_mask)

    # ---- weights and shapes --------------------------------------------------------------------
    def _split_shapes(self, input_shape):
        if isinstance(input_shape, list):
            return tuple(input_shape[0]), [tuple(s) for s in input_shape[1:]]
        return tuple(input_shape), []

    def _check_shapes(self, x_shape, state_shapes, in_dim):
        if len(x_shape) != 3 or x_shape[-1] is None:
            raise shape_error(
                self, "input must be a sequence", "(batch, timesteps, features)", x_shape
            )
        if in_dim is not None and x_shape[-1] != in_dim:
            raise shape_error(
                self, "incompatible input shape", f"(batch, timesteps, {in_dim})", x_shape
            )
        if state_shapes and len(state_shapes) != len(self.state_names):
            raise ValueError(
                f"{type(self).__name__} '{self.name}': initial_state must hold "
                f"{len(self.state_names)} arrays {list(self.state_names)}; got "
                f"{len(state_shapes)}"
            )
        for name, shape in zip(self.state_names, state_shapes):
            if len(shape) != 2 or shape[1] != self.units or shape[0] not in (None, x_shape[0]):
                raise shape_error(
                    self,
                    f"initial state '{name}' has the wrong shape",
                    (x_shape[0], self.units),
                    shape,
                )

    def build(self, input_shape):
        x_shape, state_shapes = self._split_shapes(input_shape)
        self._check_shapes(x_shape, state_shapes, None)
        self._check_unroll(x_shape)
        width = self.gates * self.units
        self.kernel = self.add_weight(
            (x_shape[-1], width),
            self.kernel_initializer,
            "kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            (self.units, width),
            self.recurrent_initializer,
            "recurrent_kernel",
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                self._bias_shape(),
                self._bias_initializer(),
                "bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        if self.stateful:
            self._make_states(x_shape[0], [self.units] * len(self.state_names), self.dtype)
        self.built = True

    def check_input_shape(self, input_shape):
        x_shape, state_shapes = self._split_shapes(input_shape)
        self._check_shapes(x_shape, state_shapes, self.kernel.shape[0])

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_shapes(input_shape)
        batch, steps = x_shape[0], x_shape[1]
        out = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [out] + [(batch, self.units)] * len(self.state_names)
        return out

    makes_masks = False  # it passes its input's mask on or ends it: none starts here

    def compute_mask(self, inputs, mask=None):
        """The output's mask, as Keras: the input mask if ``return_sequences``, else None."""
        if isinstance(mask, list):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_names)
        return output_mask

    # ---- forward / backward --------------------------------------------------------------------
    uses_workspace = True

    def forward(self, inputs, training, mask=None, workspace=None):
        x, states = (inputs[0], list(inputs[1:])) if isinstance(inputs, list) else (inputs, [])
        return self._forward(x, None, states, isinstance(inputs, list), training, mask, workspace)

    def forward_rows(self, ids, table, dtable, training, mask=None, workspace=None):
        """The layer on ``table[ids]`` (ids (batch, steps), table (V, features)) without that
        sequence: the input projection runs on the distinct rows the ids pick, and backward adds
        the input's gradient into ``dtable`` (None: not wanted) and returns None for it."""
        return self._forward(None, _Rows(ids, table, dtable), [], False, training, mask, workspace)

    def _forward(self, x, rows, states, states_given, training, mask, workspace):
        if isinstance(mask, list):  # [x's mask, None for each initial state]
            mask = mask[0]
        n, steps = x.shape[:2] if rows is None else rows.ids.shape
        features = x.shape[2] if rows is None else rows.table.shape[1]
        dtype = self.kernel.value.dtype
        keep = gate_dropout = None
        dropping = training and 0 < self.dropout < 1
        if training and 0 < self.recurrent_dropout < 1:
            gate_dropout = self._gate_dropout(n, features, dtype)
        options = _kernel_options(workspace, gate_dropout, dtype)
        xt = None if dropping else self._table_rows(rows, dtype, workspace)
        if xt is None:
            if rows is not None:  # the inputs are dropped out: gather the rows
                x = rows.table[rows.ids]
            xt = x.transpose(1, 0, 2)  # time-major, in processing order
            if self.go_backwards:
                xt = xt[::-1]
            xt = scratch_copy(workspace, "xt", xt, dtype)
        if dropping and gate_dropout is None:  # one mask per sample and feature for all steps
            keep = self._keep_mask(self.dropout, (n, features), dtype)
            xt *= keep
        mt = seen = None
        if mask is not None:
            mt = np.ascontiguousarray(mask.T[::-1] if self.go_backwards else mask.T, dtype=bool)
            # Keras repeats the previous *output*, which is zero before the first unmasked step,
            # or outputs zeros at every masked step if zero_output_for_mask.
            seen = mt if self.zero_output_for_mask else np.logical_or.accumulate(mt, axis=0)
            if seen.all():
                seen = None
        if self.stateful and not states:
            states = self._stateful_initial(n)
        states = [np.ascontiguousarray(s, dtype=dtype) for s in states] or [
            np.zeros((n, self.units), dtype) for _ in self.state_names
        ]
        saved = self._run(xt, states, mt, options, for_backward=bool(training))
        if self.stateful:
            self._keep_states([s[steps] for s in saved[: len(self.state_names)]])
        hs = saved[0]
        if self.return_sequences:
            seq = hs[1:] if seen is None else hs[1:] * seen[:, :, None]
            out = np.ascontiguousarray(seq.transpose(1, 0, 2))
        else:
            out = hs[steps].copy() if seen is None else hs[steps] * seen[-1][:, None]
        if self.return_state:
            out = [out] + [s[steps].copy() for s in saved[: len(self.state_names)]]
        dtable = None if rows is None else rows.dtable
        ctx = _Saved(xt, keep, mt, seen, saved, states_given, dtable, workspace, gate_dropout)
        return out, ctx

    def _keep_mask(self, rate, shape, dtype):
        """A dropout mask of ``shape``: 0 where dropped, 1 / (1 - rate) where kept."""
        keep = (self._rng.random(shape) >= rate).astype(dtype)
        keep *= dtype.type(1 / (1 - rate))
        return keep

    def _gate_dropout(self, n, features, dtype):
        """Keras 3's masks under ``recurrent_dropout``: for each gate, one of the inputs (with
        ``dropout``) and one of the state, for all steps of the batch's n sequences."""
        inputs = None
        if 0 < self.dropout < 1:
            inputs = self._keep_mask(self.dropout, (self.gates, n, features), dtype)
        recurrent = self._keep_mask(self.recurrent_dropout, (self.gates, n, self.units), dtype)
        return kernels.recurrent.GateDropout(inputs, recurrent)

    def _table_rows(self, rows, dtype, workspace):
        """``rows`` as the kernels' ``TableRows`` (time-major, in processing order): the
        projection then runs on the distinct rows the ids pick. None without rows, or when the
        table's dtype is not the layer's."""
        if rows is None or rows.table.dtype != dtype:
            return None
        ids = rows.ids.T[::-1] if self.go_backwards else rows.ids.T
        return kernels.recurrent.table_rows(rows.table, ids, workspace=workspace)

    def backward(self, ctx, grad_outputs):
        xt, mt, seen = ctx.xt, ctx.mt, ctx.seen
        steps, n, dtype = kernels.recurrent.sequence_shape(xt)
        options = _kernel_options(ctx.workspace, ctx.gate_dropout, dtype)
        grads = list(grad_outputs) if self.return_state else [grad_outputs]
        grads = [np.ascontiguousarray(g, dtype=dtype) for g in grads]
        state_grads = grads[1:] or [np.zeros((n, self.units), dtype) for _ in self.state_names]
        dy = None
        if self.return_sequences:
            dy = grads[0].transpose(1, 0, 2)  # outputs are in processing order already
            dy = np.ascontiguousarray(dy if seen is None else dy * seen[:, :, None])
        else:
            last = grads[0] if seen is None else grads[0] * seen[-1][:, None]
            state_grads[0] = state_grads[0] + last
        if isinstance(xt, kernels.recurrent.TableRows):
            xt = xt._replace(dtable=ctx.dtable)
        saved = self._saved_for_backward(xt, mt, ctx.saved, options)
        dxt, dstates = self._run_backward(xt, mt, saved, dy, state_grads, options)
        if dxt is None:  # the input's gradient went into the table's (forward_rows)
            return [None, *dstates] if ctx.states_given else None
        if ctx.keep is not None:
            dxt *= ctx.keep
        dx = (dxt[::-1] if self.go_backwards else dxt).transpose(1, 0, 2)
        dx = scratch_copy(ctx.workspace, "dx_batch_major", dx)
        return [dx, *dstates] if ctx.states_given else dx

    def _saved_for_backward(self, xt, mt, saved, options):
        """``_run``'s results with all that backward needs: those of an inference pass may lack
        some, and the forward then runs again from the same inputs and initial states."""
        if all(array is not None for array in saved):
            return saved
        initial = [np.array(states[0]) for states in saved[: len(self.state_names)]]
        return self._run(xt, initial, mt, options, for_backward=True)

    def _weight_grads(self):
        if not self.trainable:
            return None, None, None
        bias = self.bias.grad if self.use_bias else None
        return self.kernel.grad, self.recurrent_kernel.grad, bias

    def get_config(self):
        return {
            **super().get_config(),
            **unit_config(self),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
        }


class LSTM(_RNN):
    """Long Short-Term Memory (Hochreiter 1997) over ``(batch, timesteps, features)``.

    Gates i, f, c, o: ``c = f * c + i * activation(z_c)``, ``h = o * activation(c)``; the gates
    use ``recurrent_activation``. Weights (Keras order): kernel ``(features, 4 * units)``,
    recurrent_kernel ``(units, 4 * units)``, bias ``(4 * units,)``. ``unit_forget_bias`` starts
    the forget-gate bias at 1.

    Input shape: ``(batch, timesteps, features)``. Output shape: ``(batch, units)``, or
    ``(batch, timesteps, units)`` with ``return_sequences``; ``return_state`` adds the final
    ``h`` and ``c`` ``(batch, units)``: ``[output, h, c]``.
    Example: ``LSTM(64)(Embedding(5000, 128)(Input((100,))))`` has shape ``(None, 64)``.
    """

    gates = 4
    state_names = ("h", "c")

    def __init__(self, units: int, *args, unit_forget_bias: bool = True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _bias_shape(self):
        return (4 * self.units,)

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, init = self.units, self.bias_initializer

        def forget_bias_one(shape, dtype="float32"):
            return np.concatenate(
                [init((units,), dtype), np.ones(units, dtype), init((2 * units,), dtype)]
            )

        return forget_bias_one

    def _run(self, xt, states, mt, options, for_backward):
        bias = self.bias.value if self.use_bias else None
        return kernels.recurrent.lstm_forward(
            xt,
            self.kernel.value,
            self.recurrent_kernel.value,
            bias,
            *states,
            mt,
            self._act,
            self._rec_act,
            **options,
            keep_gates=for_backward,
        )

    def _run_backward(self, xt, mt, saved, dy, state_grads, options):
        hs, cs, gates = saved
        dx, dh0, dc0 = kernels.recurrent.lstm_backward(
            xt,
            self.kernel.value,
            self.recurrent_kernel.value,
            hs,
            cs,
            gates,
            mt,
            self._act,
            self._rec_act,
            dy,
            *state_grads,
            *self._weight_grads(),
            **options,
        )
        return dx, [dh0, dc0]

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


class GRU(_RNN):
    """Gated Recurrent Unit (Cho et al. 2014), both of Keras 3's forms.

    Gates z, r, h: ``hh = activation(x_h + r * (h @ U_h + b_rh))`` (``reset_after=True``, the
    default) or ``hh = activation(x_h + (r * h) @ U_h)`` (``reset_after=False``), and
    ``h = z * h + (1 - z) * hh``; z and r use ``recurrent_activation``. Weights (Keras order):
    kernel ``(features, 3 * units)``, recurrent_kernel ``(units, 3 * units)``, bias
    ``(2, 3 * units)`` (input bias, recurrent bias), or ``(3 * units,)`` with ``reset_after=False``.

    Input shape: ``(batch, timesteps, features)``. Output shape: ``(batch, units)``, or
    ``(batch, timesteps, units)`` with ``return_sequences``; ``return_state`` gives
    ``[output, h]``.
    Example: ``GRU(32, return_sequences=True)(x)``.
    """

    gates = 3
    state_names = ("h",)

    def __init__(self, units: int, *args, reset_after: bool = True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def _run(self, xt, states, mt, options, for_backward):
        bias = self.bias.value if self.use_bias else None
        forward = (
            kernels.recurrent.gru_forward
            if self.reset_after
            else kernels.recurrent.gru_reset_before_forward
        )
        return forward(
            xt,
            self.kernel.value,
            self.recurrent_kernel.value,
            bias,
            states[0],
            mt,
            self._act,
            self._rec_act,
            **options,
        )

    def _run_backward(self, xt, mt, saved, dy, state_grads, options):
        hs, gates = saved
        backward = (
            kernels.recurrent.gru_backward
            if self.reset_after
            else kernels.recurrent.gru_reset_before_backward
        )
        dx, dh0 = backward(
            xt,
            self.kernel.value,
            self.recurrent_kernel.value,
            hs,
            gates,
            mt,
            self._act,
            self._rec_act,
            dy,
            state_grads[0],
            *self._weight_grads(),
            **options,
        )
        return dx, [dh0]

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}


class SimpleRNN(_RNN):
    """Fully connected RNN whose output is fed back: ``h = activation(x W + h U + b)``.

    Weights (Keras order): kernel ``(features, units)``, recurrent_kernel ``(units, units)``,
    bias ``(units,)``.

    Input shape: ``(batch, timesteps, features)``. Output shape: ``(batch, units)``, or
    ``(batch, timesteps, units)`` with ``return_sequences``; ``return_state`` gives
    ``[output, h]``.
    Example: ``SimpleRNN(4)(np.zeros((32, 10, 8), "float32")).shape == (32, 4)``.
    """

    gates = 1
    state_names = ("h",)

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
                "SimpleRNN has no `recurrent_activation` argument (it has no gates); "
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

    def _bias_shape(self):
        return (self.units,)

    def _bias_initializer(self):
        return self.bias_initializer

    def _run(self, xt, states, mt, options, for_backward):
        bias = self.bias.value if self.use_bias else None
        return kernels.recurrent.simple_rnn_forward(
            xt,
            self.kernel.value,
            self.recurrent_kernel.value,
            bias,
            states[0],
            mt,
            self._act,
            **options,
        )

    def _run_backward(self, xt, mt, saved, dy, state_grads, options):
        dx, dh0 = kernels.recurrent.simple_rnn_backward(
            xt,
            self.kernel.value,
            self.recurrent_kernel.value,
            saved[0],
            mt,
            self._act,
            dy,
            state_grads[0],
            *self._weight_grads(),
            **options,
        )
        return dx, [dh0]

    def get_config(self):
        config = super().get_config()
        del config["recurrent_activation"]
        return config


class Masking(Layer):
    """Masks timesteps whose features all equal ``mask_value`` for the layers that follow.

    ``compute_mask(x)`` is ``any(x != mask_value, axis=-1)``; the output is ``x`` at kept steps
    and zeros at masked ones (the gradient likewise). In a model the mask flows on to the
    recurrent layers (and Bidirectional), which skip the masked steps.

    Args:
        mask_value: the value that marks padding.

    Input shape: ``(batch, timesteps, features)`` (any rank; the mask drops the last axis).
    Output shape: the same.
    Example: ``LSTM(8)(Masking()(Input((10, 3))))`` ignores all-zero timesteps.
    """

    supports_masking = True  # an incoming mask is replaced by this layer's own

    def __init__(self, mask_value=0.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(mask_value, (int, float, np.number)) or isinstance(mask_value, bool):
            raise ValueError(
                f"Masking '{self.name}': `mask_value` must be a number; got "
                f"mask_value={mask_value!r}"
            )
        self.mask_value = float(mask_value)

    def compute_mask(self, inputs, mask=None):
        """``any(inputs != mask_value, axis=-1)``: True where a timestep is kept."""
        x = np.asarray(inputs)
        return np.any(x != x.dtype.type(self.mask_value), axis=-1)

    def forward(self, inputs, training, mask=None):
        keep = self.compute_mask(inputs)[..., None]
        return np.where(keep, inputs, inputs.dtype.type(0)), keep

    def backward(self, ctx, grad_outputs):
        return np.where(ctx, grad_outputs, grad_outputs.dtype.type(0))

    def get_config(self):
        return {**super().get_config(), "mask_value": self.mask_value}
