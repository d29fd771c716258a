"""Convolutional LSTMs: ConvLSTM1D and ConvLSTM2D (Keras 3's arguments, weights and math).

An LSTM whose input and recurrent products are convolutions (Shi et al., 2015): for each step,
``z = conv(x_t, kernel) + bias + conv_same(h, recurrent_kernel)`` split into the gates i, f,
c, o along the channels, ``c = f * c + i * act(z_c)`` and ``h = o * act(c)``. The input
convolution runs once over all steps (one ``kernels.conv`` call on ``(steps * batch)`` images);
the recurrent one, stride 1 'same', runs step by step, in forward and backward alike. ConvLSTM1D
runs on the same 2-D kernels, a ``(steps, channels)`` frame viewed as a one-row image.

Beyond Dense-like layers, as Keras's: ``initial_state=[h0, c0]`` (states shaped as the output
frames), ``return_sequences``, ``return_state``, ``go_backwards`` (the outputs in processing
order), ``stateful`` (``layer.states``, ``reset_state()``), ``dropout`` and
``recurrent_dropout`` (each gate its own mask of the input frame / of the state, drawn once per
sequence) and ``data_format='channels_first'`` (transposed at the layer's edges). Masks are not
supported.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import activations, constraints, initializers, kernels, regularizers, runtime
from fastnn.layers.base import Variable, shape_error
from fastnn.layers.geometry import (
    check_data_format,
    padding_amounts,
    standardize_padding,
    standardize_tuple,
)
from fastnn.layers.recurrent import SequenceLayer, StatefulStates, check_rate
from fastnn.seeding import make_rng

_GATES = 4  # i, f, c, o: Keras's order along the kernels' last axis


class _Step(NamedTuple):
    """What one step keeps for the backward (channels_last, (batch, oh, ow, filters) each)."""

    h_in: np.ndarray  # the state fed to the recurrent conv
    c_prev: np.ndarray
    gates: np.ndarray  # (batch, oh, ow, 4 * filters): act(i), act(f), act(c), act(o)
    c_act: np.ndarray  # activation(c)


class _Saved(NamedTuple):
    """What a ConvLSTM's forward keeps for its backward."""

    xt: np.ndarray  # the input frames, time-major in processing order (steps, batch, h, w, ch)
    steps: list  # a _Step per step
    input_masks: np.ndarray | None  # dropout's (4, batch, h, w, ch), or None
    state_masks: np.ndarray | None  # recurrent_dropout's (4, batch, oh, ow, filters), or None
    states_given: bool  # initial states were inputs: backward returns their gradients


class _ConvLSTM(StatefulStates, SequenceLayer):
    """ConvLSTM1D and ConvLSTM2D: ``rank`` spatial axes per frame."""

    rank = 2
    supports_masking = False
    state_names = ("h", "c")

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding="valid",
        data_format=None,
        dilation_rate=1,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias: bool = True,
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
        zero_output_for_mask: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(filters, (int, np.integer)) or isinstance(filters, bool) or filters <= 0:
            raise ValueError(
                "Invalid value for argument `filters`. Expected a strictly positive value. "
                f"Received filters={filters}."
            )
        rank = self.rank
        self.filters = int(filters)
        self.kernel_size = standardize_tuple(kernel_size, rank, "kernel_size")
        self.strides = standardize_tuple(strides, rank, "strides")
        self.padding = standardize_padding(padding)
        self.data_format = check_data_format(self, data_format, rank)
        self.dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                "Specifying `strides > 1` is not compatible with `dilation_rate > 1`. Please "
                "provide `strides=1` or `dilation_rate=1`. Received: "
                f"strides={self.strides} and dilation_rate={self.dilation_rate}"
            )
        self.activation = activations.get_name(activation)
        self.recurrent_activation = activations.get_name(recurrent_activation)
        for arg, name in (
            ("activation", self.activation),
            ("recurrent_activation", self.recurrent_activation),
        ):
            code = activations.code(name)
            if code in kernels.codes.ROW_WISE or code in kernels.codes.FROM_INPUT:
                raise ValueError(
                    f"{type(self).__name__} '{self.name}': `{arg}` must be elementwise with a "
                    f"gradient from its output (e.g. tanh, sigmoid, relu); got {name!r}"
                )
        self._act = activations.code(self.activation)
        self._rec_act = activations.code(self.recurrent_activation)
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
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
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)  # accepted for Keras compatibility; results are the same
        self.zero_output_for_mask = bool(zero_output_for_mask)  # no masks: no effect

    # ---- shapes ---------------------------------------------------------------------------------
    def _layout(self) -> str:
        spatial = "rows, cols" if self.rank == 2 else "steps"
        if self.data_format == "channels_first":
            return f"(batch, time, channels, {spatial})"
        return f"(batch, time, {spatial}, channels)"

    def _split_shapes(self, input_shape):
        """(the sequence's shape, the initial states' shapes) of a call's input shape(s)."""
        if isinstance(input_shape, list):
            return tuple(input_shape[0]), [tuple(s) for s in input_shape[1:]]
        return tuple(input_shape), []

    def _frame(self, x_shape) -> tuple:
        """(spatial sizes, channels) of one input frame, checked."""
        if len(x_shape) != self.rank + 3:
            raise shape_error(
                self, f"expects a {self.rank + 3}-D input", self._layout(), tuple(x_shape)
            )
        if self.data_format == "channels_first":
            return tuple(x_shape[3:]), x_shape[2]
        return tuple(x_shape[2:-1]), x_shape[-1]

    def _out_sizes(self, sizes) -> tuple:
        """The output frame's sizes of the input conv (None stays None), checked positive."""
        out = []
        for size, k, s, d in zip(sizes, self.kernel_size, self.strides, self.dilation_rate):
            out.append(
                None if size is None else padding_amounts(size, (k - 1) * d + 1, s, self.padding)[0]
            )
        if any(o is not None and o <= 0 for o in out):
            raise shape_error(
                self,
                f"computed output size would be zero or negative for kernel_size="
                f"{self.kernel_size}, strides={self.strides}, padding='{self.padding}'",
                f"frames at least as large as the kernel, {self._layout()}",
                sizes,
            )
        return tuple(out)

    def _state_shape(self, batch, sizes) -> tuple:
        """A state's shape (the output frame) in the layer's data_format."""
        out = self._out_sizes(sizes)
        if self.data_format == "channels_first":
            return (batch, self.filters, *out)
        return (batch, *out, self.filters)

    def _check_shapes(self, x_shape, state_shapes, channels) -> None:
        sizes, in_channels = self._frame(x_shape)
        if in_channels is None or None in sizes:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': ConvLSTM layers only support static "
                f"spatial and channel sizes; got input shape {tuple(x_shape)}"
            )
        if channels is not None and in_channels != channels:
            expected = self._layout().replace("channels", str(channels))
            raise shape_error(self, "incompatible input shape", expected, tuple(x_shape))
        if state_shapes and len(state_shapes) != len(self.state_names):
            raise ValueError(
                f"{type(self).__name__} '{self.name}': initial_state must hold 2 arrays [h, c]; "
                f"got {len(state_shapes)}"
            )
        expected = self._state_shape(x_shape[0], sizes)
        for name, shape in zip(self.state_names, state_shapes):
            if tuple(shape[1:]) != expected[1:]:
                raise shape_error(
                    self, f"initial state '{name}' has the wrong shape", expected, shape
                )

    def build(self, input_shape):
        x_shape, state_shapes = self._split_shapes(input_shape)
        self._check_shapes(x_shape, state_shapes, None)
        sizes, channels = self._frame(x_shape)
        width = _GATES * self.filters
        self.kernel = self.add_weight(
            (*self.kernel_size, channels, width),
            self.kernel_initializer,
            "kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            (*self.kernel_size, self.filters, width),
            self.recurrent_initializer,
            "recurrent_kernel",
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                (width,),
                self._bias_initializer(),
                "bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        if self.stateful:
            self._make_frame_states(self._state_shape(x_shape[0], sizes))

    def _make_frame_states(self, shape) -> None:
        """``stateful=True``'s state Variables, shaped as the output frames of a fixed batch."""
        if shape[0] is None:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': when using `stateful=True` in a RNN, the "
                "batch size must be static; found a dynamic batch size. Give the model's input "
                "one, e.g. Input(shape, batch_size=32)"
            )
        path = f"{self.name}/rnn_state"
        self.states = [
            Variable(np.zeros(shape, self.dtype), "rnn_state", path, False, None)
            for _ in self.state_names
        ]

    def _bias_initializer(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        f, base = self.filters, self.bias_initializer

        def unit_forget(shape, dtype=None):
            parts = [base((f,), dtype=dtype), np.ones((f,), dtype), base((2 * f,), dtype=dtype)]
            return np.concatenate([np.asarray(p, dtype) for p in parts])

        return unit_forget

    def check_input_shape(self, input_shape):
        x_shape, state_shapes = self._split_shapes(input_shape)
        self._check_shapes(x_shape, state_shapes, self.kernel.shape[-2])

    def compute_output_shape(self, input_shape):
        x_shape, _ = self._split_shapes(input_shape)
        sizes, _ = self._frame(x_shape)
        state = self._state_shape(x_shape[0], sizes)
        out = (state[0], x_shape[1], *state[1:]) if self.return_sequences else state
        return [out, state, state] if self.return_state else out

    # ---- layouts: the kernels run channels_last 2-D frames ------------------------------------
    def _frames_in(self, x: np.ndarray) -> np.ndarray:
        """(batch, time, ...) input as time-major channels_last 2-D frames, in processing order:
        (steps, batch, h, w, channels)."""
        if self.data_format == "channels_first":
            x = np.moveaxis(x, 2, -1)
        xt = np.moveaxis(x, 1, 0)
        if self.go_backwards:
            xt = xt[::-1]
        if self.rank == 1:
            xt = xt[:, :, None]
        return np.ascontiguousarray(xt, dtype=self.kernel.dtype)

    def _frames_out(self, xt: np.ndarray) -> np.ndarray:
        """``_frames_in``'s inverse (the input's gradient)."""
        if self.rank == 1:
            xt = xt[:, :, 0]
        if self.go_backwards:
            xt = xt[::-1]
        x = np.moveaxis(xt, 0, 1)
        if self.data_format == "channels_first":
            x = np.moveaxis(x, -1, 2)
        return np.ascontiguousarray(x)

    def _state_in(self, s: np.ndarray) -> np.ndarray:
        """A state in the layer's layout as a channels_last 2-D frame batch."""
        if self.data_format == "channels_first":
            s = np.moveaxis(s, 1, -1)
        if self.rank == 1:
            s = s[:, None]
        return np.ascontiguousarray(s, dtype=self.kernel.dtype)

    def _state_out(self, s: np.ndarray) -> np.ndarray:
        """``_state_in``'s inverse; ``s`` may stack steps first: (steps, batch, ...)."""
        if self.rank == 1:
            s = s[..., 0, :, :]
        if self.data_format == "channels_first":
            s = np.moveaxis(s, -1, -self.rank - 1)
        return np.ascontiguousarray(s)

    def _kernels_2d(self, variable) -> np.ndarray:
        """A kernel as the 2-D conv kernels take it (kh, kw, in, out)."""
        return variable.reshape(1, *variable.shape) if self.rank == 1 else variable

    def _conv_args(self) -> dict:
        as_2d = (lambda t: (1, *t)) if self.rank == 1 else (lambda t: t)
        return {"strides": as_2d(self.strides), "dilation": as_2d(self.dilation_rate)}

    # ---- forward / backward ---------------------------------------------------------------------
    def forward(self, inputs, training):
        x, states = (inputs[0], list(inputs[1:])) if isinstance(inputs, list) else (inputs, [])
        xt = self._frames_in(x)
        steps, n = xt.shape[:2]
        dtype = xt.dtype
        kernel = self._kernels_2d(self.kernel.value)
        recurrent = self._kernels_2d(self.recurrent_kernel.value)
        input_masks = state_masks = None
        if training and 0 < self.dropout < 1:
            input_masks = self._keep((_GATES, *xt.shape[1:]), self.dropout, dtype)
        zx = self._input_conv(xt, kernel, input_masks)
        if self.stateful and not states:
            states = self._stateful_initial(n)
        if states:
            h, c = (self._state_in(s) for s in states)
        else:
            h = np.zeros(zx.shape[1:-1] + (self.filters,), dtype)
            c = np.zeros_like(h)
        if training and 0 < self.recurrent_dropout < 1:
            state_masks = self._keep((_GATES, *h.shape), self.recurrent_dropout, dtype)
        saved, outputs = [], []
        for t in range(steps):
            h_in = h if state_masks is None else h * state_masks
            z = zx[t] + self._recurrent_conv(h_in, recurrent)
            gates, c_new, c_act = self._cell(z, c)
            saved.append(_Step(h_in, c, gates, c_act))
            h = gates[..., 3 * self.filters :] * c_act
            c = c_new
            outputs.append(h)
        if self.stateful:
            self._keep_states([self._state_out(h), self._state_out(c)])
        if self.return_sequences:
            out = self._state_out(np.stack(outputs))
            out = np.ascontiguousarray(np.moveaxis(out, 0, 1))
        else:
            out = self._state_out(h)
        if self.return_state:
            out = [out, self._state_out(h), self._state_out(c)]
        return out, _Saved(xt, saved, input_masks, state_masks, isinstance(inputs, list))

    def _keep(self, shape, rate, dtype) -> np.ndarray:
        """Dropout masks of ``shape``: 0 where dropped, 1 / (1 - rate) where kept."""
        keep = (self._rng.random(shape) >= rate).astype(dtype)
        keep *= dtype.type(1 / (1 - rate))
        return keep

    def _input_conv(self, xt, kernel, masks) -> np.ndarray:
        """conv(x_t, kernel) + bias for every step at once: (steps, batch, oh, ow, 4 * filters);
        with dropout, each gate's filters on its own masked input."""
        steps, n = xt.shape[:2]
        bias = self.bias.value if self.use_bias else None
        args = self._conv_args()
        conv = kernels.conv.conv2d_forward
        if masks is None:
            frames = xt.reshape(steps * n, *xt.shape[2:])
            z = conv(frames, kernel, bias, args["strides"], self.padding, kernels.codes.LINEAR,
                     threads=runtime.threads(), dilation=args["dilation"])  # fmt: skip
            return z.reshape(steps, n, *z.shape[1:])
        parts = []
        for g, span in enumerate(self._gate_spans()):
            frames = (xt * masks[g]).reshape(steps * n, *xt.shape[2:])
            part_bias = None if bias is None else np.ascontiguousarray(bias[span])
            z = conv(frames, np.ascontiguousarray(kernel[..., span]), part_bias, args["strides"],
                     self.padding, kernels.codes.LINEAR, threads=runtime.threads(),
                     dilation=args["dilation"])  # fmt: skip
            parts.append(z.reshape(steps, n, *z.shape[1:]))
        return np.concatenate(parts, axis=-1)

    def _recurrent_conv(self, h_in, recurrent) -> np.ndarray:
        """conv_same(h, recurrent_kernel), stride 1: (batch, oh, ow, 4 * filters); with
        recurrent dropout ``h_in`` is (4, batch, ...), one masked state per gate."""
        conv = kernels.conv.conv2d_forward
        threads = runtime.threads()
        linear = kernels.codes.LINEAR
        if h_in.ndim == 4:
            return conv(h_in, recurrent, None, (1, 1), "same", linear, threads=threads)
        parts = [
            conv(np.ascontiguousarray(h_in[g]), np.ascontiguousarray(recurrent[..., span]), None,
                 (1, 1), "same", linear, threads=threads)
            for g, span in enumerate(self._gate_spans())
        ]  # fmt: skip
        return np.concatenate(parts, axis=-1)

    def _gate_spans(self) -> list[slice]:
        f = self.filters
        return [slice(g * f, (g + 1) * f) for g in range(_GATES)]

    def _cell(self, z, c_prev) -> tuple:
        """(activated gates, c, activation(c)) from a step's pre-activations z (i, f, c, o)."""
        f = self.filters
        gates = np.empty_like(z)
        _activate(z, self._rec_act, gates)
        _activate(z[..., 2 * f : 3 * f], self._act, gates[..., 2 * f : 3 * f])
        c = gates[..., f : 2 * f] * c_prev + gates[..., :f] * gates[..., 2 * f : 3 * f]
        c_act = np.empty_like(c)
        _activate(c, self._act, c_act)
        return gates, c, c_act

    def backward(self, ctx, grad_outputs):
        xt, saved = ctx.xt, ctx.steps
        steps, n = xt.shape[:2]
        dtype = xt.dtype
        f = self.filters
        grads = list(grad_outputs) if self.return_state else [grad_outputs]
        dh = np.zeros_like(saved[-1].c_prev)
        dc = np.zeros_like(dh)
        if self.return_state:
            dh += self._state_in(grads[1])
            dc += self._state_in(grads[2])
        dy = None
        if self.return_sequences:
            dy = self._state_in_steps(grads[0])
        else:
            dh += self._state_in(grads[0])
        recurrent = self._kernels_2d(self.recurrent_kernel.value)
        drecurrent = self._kernels_2d(self.recurrent_kernel.grad) if self.trainable else None
        dzx = np.empty((steps, *dh.shape[:-1], _GATES * f), dtype)
        for t in range(steps - 1, -1, -1):
            step = saved[t]
            if dy is not None:
                dh = dh + dy[t]
            gates = step.gates
            dgates = np.empty_like(gates)
            dgates[..., 3 * f :] = dh * step.c_act  # do
            dc = dc + _derivative(dh * gates[..., 3 * f :], step.c_act, self._act)
            dgates[..., :f] = dc * gates[..., 2 * f : 3 * f]  # di
            dgates[..., f : 2 * f] = dc * step.c_prev  # df
            dgates[..., 2 * f : 3 * f] = dc * gates[..., :f]  # dg
            dz = _derivative(dgates, gates, self._rec_act)
            g_span = slice(2 * f, 3 * f)
            dz[..., g_span] = _derivative(dgates[..., g_span], gates[..., g_span], self._act)
            dzx[t] = dz
            dc = dc * gates[..., f : 2 * f]
            dh = self._recurrent_backward(dz, step.h_in, recurrent, drecurrent, ctx.state_masks)
        dxt = self._input_backward(dzx, xt, ctx.input_masks)
        dx = self._frames_out(dxt)
        if ctx.states_given:
            return [dx, self._state_out(dh), self._state_out(dc)]
        return dx

    def _state_in_steps(self, grad) -> np.ndarray:
        """A (batch, steps, ...) sequence gradient as (steps, batch, oh, ow, filters)."""
        g = np.moveaxis(np.asarray(grad, dtype=self.kernel.dtype), 1, 0)
        if self.data_format == "channels_first":
            g = np.moveaxis(g, 2, -1)
        if self.rank == 1:
            g = g[:, :, None]
        return np.ascontiguousarray(g)

    def _recurrent_backward(self, dz, h_in, recurrent, drecurrent, masks) -> np.ndarray:
        """dL/dh of the previous state through the recurrent conv; adds into ``drecurrent``
        (the recurrent kernel's gradient, or None)."""
        backward = kernels.conv.conv2d_backward
        threads = runtime.threads()
        if masks is None:
            return backward(dz, h_in, recurrent, (1, 1), "same", drecurrent, None, threads=threads)
        dh = np.zeros(h_in.shape[1:], dz.dtype)
        for g, span in enumerate(self._gate_spans()):
            dpart = None if drecurrent is None else np.zeros_like(recurrent[..., span])
            dh_g = backward(np.ascontiguousarray(dz[..., span]), np.ascontiguousarray(h_in[g]),
                            np.ascontiguousarray(recurrent[..., span]), (1, 1), "same", dpart,
                            None, threads=threads)  # fmt: skip
            dh += dh_g * masks[g]
            if dpart is not None:
                drecurrent[..., span] += dpart
        return dh

    def _input_backward(self, dzx, xt, masks) -> np.ndarray:
        """dL/dx of every frame (steps, batch, h, w, ch); adds the kernel's and bias's
        gradients."""
        steps, n = xt.shape[:2]
        kernel = self._kernels_2d(self.kernel.value)
        dkernel = self._kernels_2d(self.kernel.grad) if self.trainable else None
        dbias = self.bias.grad if self.trainable and self.use_bias else None
        args = self._conv_args()
        backward = kernels.conv.conv2d_backward
        frames_dz = dzx.reshape(steps * n, *dzx.shape[2:])
        if masks is None:
            frames = xt.reshape(steps * n, *xt.shape[2:])
            dx = backward(frames_dz, frames, kernel, args["strides"], self.padding, dkernel, dbias,
                          threads=runtime.threads(), dilation=args["dilation"])  # fmt: skip
        else:
            dx = np.zeros((steps * n, *xt.shape[2:]), xt.dtype)
            for g, span in enumerate(self._gate_spans()):
                frames = (xt * masks[g]).reshape(steps * n, *xt.shape[2:])
                dpart = None if dkernel is None else np.zeros_like(kernel[..., span])
                dpart_bias = None if dbias is None else np.zeros(span.stop - span.start, xt.dtype)
                dx_g = backward(np.ascontiguousarray(frames_dz[..., span]), frames,
                                np.ascontiguousarray(kernel[..., span]), args["strides"],
                                self.padding, dpart, dpart_bias, threads=runtime.threads(),
                                dilation=args["dilation"])  # fmt: skip
                dx += dx_g * np.broadcast_to(masks[g], xt.shape).reshape(dx.shape)
                if dpart is not None:
                    dkernel[..., span] += dpart
                if dpart_bias is not None:
                    dbias[span] += dpart_bias
        return dx.reshape(xt.shape)

    def get_config(self):
        ser = initializers.serialize
        return {
            **super().get_config(),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": self.activation,
            "recurrent_activation": self.recurrent_activation,
            "use_bias": self.use_bias,
            "kernel_initializer": ser(self.kernel_initializer),
            "recurrent_initializer": ser(self.recurrent_initializer),
            "bias_initializer": ser(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }


def _activate(z: np.ndarray, code: int, out: np.ndarray) -> None:
    """out = act(z) elementwise (any shape; out may be a view of a larger array)."""
    rows = np.ascontiguousarray(z).reshape(-1, z.shape[-1])
    result = np.empty_like(rows)
    kernels.activations.bias_activation_forward(rows, np.empty(0, z.dtype), code, result)
    out[...] = result.reshape(z.shape)


def _derivative(grad_y: np.ndarray, y: np.ndarray, code: int) -> np.ndarray:
    """dL/dz from dL/dy and y = act(z), elementwise, as a new array."""
    g = np.ascontiguousarray(grad_y).reshape(-1, grad_y.shape[-1])
    out = np.empty_like(g)
    kernels.activations.activation_backward(g, np.ascontiguousarray(y).reshape(g.shape), code, out)
    return out.reshape(grad_y.shape)


class ConvLSTM2D(_ConvLSTM):
    """2-D convolutional LSTM over ``(batch, time, rows, cols, channels)`` sequences of frames.

    Args:
        filters: channels of the states and output frames.
        kernel_size, strides, padding ('valid' or 'same'), data_format, dilation_rate: the
            input convolution's, as Conv2D's; the recurrent one is stride 1, 'same'.
        activation, recurrent_activation: default tanh and sigmoid (elementwise activations
            whose gradient follows from their output).
        use_bias, kernel_initializer, recurrent_initializer, bias_initializer,
            unit_forget_bias (1 added to the forget gate's bias at initialization), the
            regularizers and constraints, dropout, recurrent_dropout, seed, return_sequences,
            return_state, go_backwards, stateful: as Keras.

    Input shape: ``(batch, time, rows, cols, channels)`` (channels_first: ``(batch, time,
    channels, rows, cols)``). Output: the last state ``(batch, new_rows, new_cols, filters)``,
    or every step's ``(batch, time, new_rows, new_cols, filters)`` with ``return_sequences``;
    with ``return_state``, ``[output, h, c]``.
    Weights: ``kernel`` ``(kh, kw, channels, 4 * filters)``, ``recurrent_kernel``
    ``(kh, kw, filters, 4 * filters)``, ``bias`` ``(4 * filters,)``, gates in the order i, f,
    c, o.

    Example: ``ConvLSTM2D(16, 3, padding="same", return_sequences=True)(frames)``.
    """

    rank = 2


class ConvLSTM1D(_ConvLSTM):
    """1-D convolutional LSTM over ``(batch, time, steps, channels)`` sequences.

    Arguments as ``ConvLSTM2D``, with 1-D sizes. Input shape: ``(batch, time, steps,
    channels)`` (channels_first: ``(batch, time, channels, steps)``). Output: ``(batch,
    new_steps, filters)``, or ``(batch, time, new_steps, filters)`` with ``return_sequences``.
    Weights: ``kernel`` ``(k, channels, 4 * filters)``, ``recurrent_kernel``
    ``(k, filters, 4 * filters)``, ``bias`` ``(4 * filters,)``.

    Example: ``ConvLSTM1D(8, 3, padding="same")(sequences)``.
    """

    rank = 1
