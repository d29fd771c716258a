"""Bidirectional: runs a recurrent layer forward and backward in time and merges the outputs."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn.layers.base import Layer
from fastnn.layers.recurrent import SequenceLayer
from fastnn.saving.serialization import deserialize_layer, serialize_layer


class _Saved(NamedTuple):
    """What Bidirectional's forward keeps for its backward."""

    ctxs: list  # the forward and backward layers' contexts
    saved: tuple | None  # (y, y_rev) for merge_mode='mul', else None
    units: int  # the width of one direction's output
    states_given: bool  # initial states were inputs: backward returns their gradients


MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _copy(layer: Layer, name: str, **changes) -> Layer:
    return type(layer).from_config({**layer.get_config(), "name": name, **changes})


class Bidirectional(SequenceLayer):
    """Runs a copy of ``layer`` forward in time and one backward, and merges their outputs.

    The copies are rebuilt from ``layer.get_config()`` (``layer``'s own weights are not used):
    ``forward_<name>`` and ``backward_<name>`` (``go_backwards`` flipped), or ``backward_layer``
    if given. With ``return_sequences`` the backward outputs are put back in time order before
    merging, and masked steps output zeros. Weights: the forward layer's, then the backward's.

    Args:
        layer: a recurrent layer (LSTM, GRU, SimpleRNN).
        merge_mode: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"``, or None for the
            list ``[forward_output, backward_output]``.
        backward_layer: optional layer for the backward direction; it must differ from
            ``layer`` in ``go_backwards`` and agree in ``return_sequences`` and ``return_state``.

    Call arguments: as the wrapped layer's; ``initial_state`` holds the forward layer's states
    followed by the backward layer's.
    Input shape: ``(batch, timesteps, features)``. Output shape: the wrapped layer's, with the
    last axis doubled for ``"concat"``; ``return_state`` appends the forward states, then the
    backward states.
    Example: ``Bidirectional(LSTM(10))(Input((5, 3))).shape == (None, 20)``.
    """

    def __init__(self, layer, merge_mode="concat", weights=None, backward_layer=None, **kwargs):
        for arg, value in (("layer", layer), ("backward_layer", backward_layer)):
            if value is None and arg == "backward_layer":
                continue
            if not isinstance(value, Layer) or not all(
                hasattr(value, a) for a in ("go_backwards", "return_sequences", "return_state")
            ):
                raise ValueError(
                    f"Bidirectional: `{arg}` must be a recurrent layer instance (LSTM, GRU, "
                    f"SimpleRNN); got {arg}={value!r}"
                )
        if merge_mode not in MERGE_MODES:
            raise ValueError(
                f"Bidirectional: invalid merge_mode {merge_mode!r}; expected one of "
                f"{list(MERGE_MODES)}"
            )
        kwargs.setdefault("dtype", layer.dtype)
        if "input_shape" not in kwargs and layer._input_shape_arg is not None:
            kwargs["input_shape"] = layer._input_shape_arg
        super().__init__(**kwargs)
        base = layer.name.removeprefix("forward_")
        self.forward_layer = _copy(layer, f"forward_{base}")
        if backward_layer is None:
            base = layer.name.removeprefix("backward_")
            backward_layer = _copy(layer, f"backward_{base}", go_backwards=not layer.go_backwards)
        self.backward_layer = backward_layer
        self._check_pair()
        for sub in self._pair:
            if hasattr(sub, "zero_output_for_mask"):  # Keras: masked steps output zeros
                sub.zero_output_for_mask = sub.return_sequences
            sub.trainable = self.trainable
        self.merge_mode = merge_mode
        self.return_sequences = self.forward_layer.return_sequences
        self.return_state = self.forward_layer.return_state
        self._initial_weights = weights
        # States per direction (set again from the output shapes when built).
        self._n_states = len(getattr(layer, "state_names", ())) if self.return_state else 0

    @property
    def _pair(self):
        return (self.forward_layer, self.backward_layer)

    # ---- stateful layers (Keras's Bidirectional.reset_state and states) ------------------------
    @property
    def stateful(self) -> bool:
        return bool(getattr(self.forward_layer, "stateful", False))

    @property
    def states(self):
        """The forward layer's states then the backward layer's (None unless stateful)."""
        fwd, bwd = (getattr(sub, "states", None) for sub in self._pair)
        return tuple(fwd + bwd) if fwd and bwd else None

    def reset_state(self) -> None:
        if not self.stateful:
            raise AttributeError(f"Bidirectional '{self.name}': layer must be stateful.")
        for sub in self._pair:
            sub.reset_state()

    def reset_states(self) -> None:
        """Keras's older name for ``reset_state``."""
        self.reset_state()

    @property
    def samples_independent(self) -> bool:
        return not self.stateful and Layer.samples_independent.fget(self)

    def _check_pair(self):
        fwd, bwd = self._pair
        if fwd.go_backwards == bwd.go_backwards:
            raise ValueError(
                f"Bidirectional '{self.name}': the forward and backward layers must differ in "
                f"`go_backwards`; got {fwd.go_backwards} for both"
            )
        for attr in ("return_sequences", "return_state"):
            if getattr(fwd, attr) != getattr(bwd, attr):
                raise ValueError(
                    f"Bidirectional '{self.name}': the forward and backward layers must agree "
                    f"on `{attr}`; got {getattr(fwd, attr)} and {getattr(bwd, attr)}"
                )

    # ---- weights -------------------------------------------------------------------------------
    def sublayers(self):
        return [("forward_layer", self.forward_layer), ("backward_layer", self.backward_layer)]

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    @property
    def trainable_weights(self):
        if not self.trainable:
            return []
        return self.forward_layer.trainable_weights + self.backward_layer.trainable_weights

    @property
    def non_trainable_weights(self):
        if not self.trainable:
            return self.weights
        return self.forward_layer.non_trainable_weights + self.backward_layer.non_trainable_weights

    # ---- shapes --------------------------------------------------------------------------------
    def _split(self, items):
        """[x, *fwd_states, *bwd_states] (or x) -> the forward and backward layers' inputs."""
        if not isinstance(items, list):
            return items, items
        x, states = items[0], list(items[1:])
        if len(states) % 2:
            raise ValueError(
                f"Bidirectional '{self.name}': initial_state must hold the forward layer's "
                f"states then the backward layer's, an even number; got {len(states)}"
            )
        half = len(states) // 2
        return [x, *states[:half]], [x, *states[half:]]

    def build(self, input_shape):
        fwd_shape, bwd_shape = self._split(input_shape)
        self.forward_layer._maybe_build(fwd_shape)
        self.backward_layer._maybe_build(bwd_shape)
        self._n_states = len(self._state_shapes(fwd_shape))
        for sub in self._pair:
            for var in sub.weights:  # an RNN's keep their cell's part: forward_rnn/lstm_cell/kernel
                rest = var.path.split(f"{sub.name}/", 1)[-1]
                var.path = f"{self.name}/{sub.name}/{rest}"
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        self.built = True

    def check_input_shape(self, input_shape):
        fwd_shape, bwd_shape = self._split(input_shape)
        self.forward_layer.check_input_shape(fwd_shape)
        self.backward_layer.check_input_shape(bwd_shape)

    def _state_shapes(self, fwd_shape):
        shape = self.forward_layer.compute_output_shape(fwd_shape)
        return list(shape[1:]) if self.return_state else []

    def compute_output_shape(self, input_shape):
        fwd_shape, bwd_shape = self._split(input_shape)
        out = self.forward_layer.compute_output_shape(fwd_shape)
        states = []
        if self.return_state:
            out, states = out[0], out[1:] + self.backward_layer.compute_output_shape(bwd_shape)[1:]
        if self.merge_mode == "concat":
            outs = [(*out[:-1], 2 * out[-1])]
        elif self.merge_mode is None:
            outs = [out, out]
        else:
            outs = [out]
        outs += states
        return outs if len(outs) > 1 else outs[0]

    makes_masks = False  # it passes its input's mask on or ends it: none starts here

    def compute_mask(self, inputs, mask=None):
        """The input mask for each sequence output (None without ``return_sequences``)."""
        if isinstance(mask, list):
            mask = mask[0]
        out_mask = mask if self.return_sequences else None
        masks = [out_mask] * (2 if self.merge_mode is None else 1)
        masks += [None] * (2 * self._n_states)
        return masks if len(masks) > 1 else masks[0]

    # ---- forward / backward --------------------------------------------------------------------
    def forward(self, inputs, training, mask=None):
        if isinstance(mask, list):  # [x's mask, None for each initial state]
            mask = mask[0]
        results, ctxs = [], []
        for sub, sub_inputs in zip(self._pair, self._split(inputs)):
            kw = {"mask": mask} if mask is not None and sub.supports_masking else {}
            out, ctx = sub.forward(sub_inputs, training, **kw)
            results.append(out if self.return_state else [out])
            ctxs.append(ctx)
        (y, *fwd_states), (y_rev, *bwd_states) = results
        if self.return_sequences:
            y_rev = y_rev[:, ::-1]
        mode = self.merge_mode
        if mode == "concat":
            outs = [np.concatenate([y, y_rev], axis=-1)]
        elif mode == "sum":
            outs = [y + y_rev]
        elif mode == "ave":
            outs = [(y + y_rev) * y.dtype.type(0.5)]
        elif mode == "mul":
            outs = [y * y_rev]
        else:
            outs = [y, np.ascontiguousarray(y_rev)]
        outs += fwd_states + bwd_states
        saved = (y, y_rev) if mode == "mul" else None
        ctx = _Saved(ctxs, saved, y.shape[-1], isinstance(inputs, list))
        return (outs if len(outs) > 1 else outs[0]), ctx

    def backward(self, ctx, grad_outputs):
        ctxs, saved, units, states_given = ctx
        grads = list(grad_outputs) if isinstance(grad_outputs, list) else [grad_outputs]
        mode = self.merge_mode
        if mode is None:
            dy, dy_rev = grads[:2]
            state_grads = grads[2:]
        else:
            g, state_grads = grads[0], grads[1:]
            if mode == "concat":
                dy, dy_rev = g[..., :units], g[..., units:]
            elif mode == "sum":
                dy = dy_rev = g
            elif mode == "ave":
                dy = dy_rev = g * g.dtype.type(0.5)
            else:  # mul
                y, y_rev = saved
                dy, dy_rev = g * y_rev, g * y
        if self.return_sequences:
            dy_rev = dy_rev[:, ::-1]  # back into the backward layer's processing order
        half = len(state_grads) // 2
        sub_grads = [[dy, *state_grads[:half]], [dy_rev, *state_grads[half:]]]
        dxs, dstates = [], []
        for sub, sub_ctx, sg in zip(self._pair, ctxs, sub_grads):
            dx = sub.backward(sub_ctx, sg if self.return_state else sg[0])
            if states_given:
                dx, *ds = dx
                dstates += ds
            dxs.append(dx)
        dx = dxs[0] + dxs[1]
        return [dx, *dstates] if states_given else dx

    # ---- config --------------------------------------------------------------------------------
    def get_config(self):
        return {
            **super().get_config(),
            "layer": serialize_layer(self.forward_layer),
            "merge_mode": self.merge_mode,
            "backward_layer": serialize_layer(self.backward_layer),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"], custom_objects)
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_layer(config["backward_layer"], custom_objects)
        return cls(**config)
