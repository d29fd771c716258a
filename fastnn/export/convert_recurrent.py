"""ONNX converters of LSTM, GRU, SimpleRNN, Bidirectional and Masking, as ONNX's LSTM, GRU and
RNN operators (``layout=0``: the batch-major input is transposed to time-major).

Gates are reordered (Keras's LSTM i, f, c, o is ONNX's i, o, f, c; GRU z, r, h is the same in
both), a GRU with ``reset_after`` runs with ``linear_before_reset=1`` and its two biases, and
``go_backwards`` is ``direction="reverse"`` with the outputs put in the order Keras returns them.

A mask (Embedding(mask_zero=True), Masking) becomes ``sequence_lens``, which skips padding only
at the end of a sequence; it is refused unless the export says ``assume_post_padding=True``,
and then a sample whose mask is not all ones then all zeros gets NaN outputs from the file
instead of numbers that differ from the model's.
"""

from __future__ import annotations

import numpy as np

from fastnn.export.builder import TIME_MAJOR, Value, position
from fastnn.export.registry import Call, converter
from fastnn.layers import recurrent, rnn_cells, wrappers

_INT64_MIN = np.iinfo(np.int64).min
_ONNX_ACTIVATIONS = {"tanh": "Tanh", "sigmoid": "Sigmoid", "relu": "Relu", "linear": "Affine"}
#: Keras's LSTM gate blocks (i, f, c, o) in ONNX's order (i, o, f, c).
_LSTM_ORDER = (0, 3, 1, 2)


def _gates(matrix: np.ndarray, order) -> np.ndarray:
    """Reorder the gate blocks along the last axis."""
    blocks = np.split(matrix, len(order), axis=-1)
    return np.concatenate([blocks[i] for i in order], axis=-1)


def _direction_weights(layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ONNX's W (gates*units, in), R (gates*units, units) and B (2*gates*units,) of one layer."""
    kernel, recurrent_kernel = layer.kernel.value, layer.recurrent_kernel.value
    width = kernel.shape[1]
    if layer.use_bias:
        bias = layer.bias.value
    else:
        bias = np.zeros((2, width) if getattr(layer, "reset_after", False) else width, kernel.dtype)
    if isinstance(layer, recurrent.LSTM):
        kernel, recurrent_kernel, bias = (
            _gates(a, _LSTM_ORDER) for a in (kernel, recurrent_kernel, bias)
        )
    # GRU reset_after has (input bias, recurrent bias); the others no recurrent bias.
    onnx_bias = bias.reshape(-1) if bias.ndim == 2 else np.concatenate([bias, np.zeros_like(bias)])
    return kernel.T, recurrent_kernel.T, onnx_bias


def _op_and_attributes(call: Call, layer) -> tuple[str, dict]:
    names = [layer.recurrent_activation, layer.activation, layer.activation]
    if isinstance(layer, recurrent.LSTM):
        op_type = "LSTM"
    elif isinstance(layer, recurrent.GRU):
        op_type, names = "GRU", names[:2]
    else:
        op_type, names = "RNN", [layer.activation]
    for name in names:
        if name not in _ONNX_ACTIVATIONS:
            raise call.refuse(
                f"the activation {name!r} has no form among ONNX's {op_type} activations "
                f"here (converted: {sorted(_ONNX_ACTIVATIONS)})"
            )
    attrs = {"activations": [_ONNX_ACTIVATIONS[n] for n in names], "layout": 0}
    if "linear" in names:  # Affine(x) = alpha * x + beta: one (alpha, beta) per activation
        attrs["activation_alpha"] = [1.0] * len(names)
        attrs["activation_beta"] = [0.0] * len(names)
    if op_type == "GRU":
        attrs["linear_before_reset"] = int(layer.reset_after)
    return op_type, attrs


def _check_layer(call: Call, layer) -> None:
    if getattr(layer, "stateful", False):
        raise call.refuse(
            "stateful=True keeps states between calls in the model, which an ONNX file cannot"
        )
    if type(layer) not in (recurrent.LSTM, recurrent.GRU, recurrent.SimpleRNN):
        raise call.refuse(f"it wraps a {type(layer).__name__}, which has no ONNX converter")


def sequence_lengths(call: Call) -> tuple[str, str] | tuple[str, None]:
    """``(sequence_lens, poison)``: the number of unmasked steps per sample (int32) and a
    (batch,) float that is NaN where the mask is not post-padded (None if steps <= 1); or
    ``("", None)`` without a mask. Refuses a mask unless ``assume_post_padding``."""
    mask = call.input_mask
    if mask is None:
        return "", None
    if not call.options.get("assume_post_padding"):
        raise call.refuse(
            "it receives a mask (from Embedding(mask_zero=True) or Masking), and ONNX's "
            "recurrent operators skip padding only at the end of a sequence (sequence_lens); "
            "pass assume_post_padding=True to export sequence_lens = the number of unmasked "
            "steps (a sample whose padding is not all at the end then gives NaN outputs)"
        )
    b, hint = call.builder, f"{call.hint}/mask"
    steps = b.op("Cast", [mask], hint, to=6)  # INT32, (batch, steps)
    lengths = b.reduce("ReduceSum", steps, [1], hint, keepdims=False)
    if call.x.shape[1] is not None and call.x.shape[1] <= 1:
        return lengths, None
    # Post-padded: the mask never rises from one step to the next.
    later = b.slice(steps, [1], [np.iinfo(np.int64).max], [1], hint)
    earlier = b.slice(steps, [0], [-1], [1], hint)
    rises = b.op("Greater", [later, earlier], hint)  # a sum: 0 over no pairs (1 step)
    bad = b.reduce("ReduceSum", b.op("Cast", [rises], hint, to=6), [1], hint, keepdims=False)
    bad = b.op("Cast", [bad], hint, to=9)  # BOOL
    poison = b.op(
        "Where",
        [bad, b.const(np.nan, f"{hint}/nan"), b.const(0.0, f"{hint}/zero")],
        hint,
    )
    return lengths, poison


def _sequence_masks(call: Call, sequences: bool, n_outputs: int, n_total: int) -> None:
    """The output masks, as the layers' compute_mask: the input's on each of the first
    ``n_outputs`` outputs if they are sequences, none on the rest (the states)."""
    mask = call.input_mask if sequences else None
    call.output_masks = [mask] * n_outputs + [None] * (n_total - n_outputs)


def _poisoned(call: Call, value: Value, poison: str | None) -> Value:
    """``value`` plus the (batch,) poison broadcast over its other axes (in its layout)."""
    if poison is None:
        return value
    b = call.builder
    batch_axis = position(value, 0)
    others = [axis for axis in range(value.rank) if axis != batch_axis]
    spread = b.unsqueeze(poison, others, f"{call.hint}/poison")
    return Value(
        b.op("Add", [value.name, spread], f"{call.hint}/poison"), value.shape, value.layout
    )


def _run(call: Call, layers: list, direction: str, initial: list[str]):
    """The ONNX recurrent node over ``call.x``: (Y (T, dirs, B, u), Y_h (dirs, B, u), Y_c)."""
    b = call.builder
    first = layers[0]
    op_type, attrs = _op_and_attributes(call, first)
    for key in ("activations", "activation_alpha", "activation_beta"):  # listed per direction
        if key in attrs:
            attrs[key] = attrs[key] * len(layers)
    weights = [_direction_weights(layer) for layer in layers]
    w = b.const(np.stack([w for w, _, _ in weights]), f"{call.hint}/W")
    r = b.const(np.stack([r for _, r, _ in weights]), f"{call.hint}/R")
    bias = b.const(np.stack([bb for _, _, bb in weights]), f"{call.hint}/B")
    x = b.time_major(call.x, call.hint).name  # shared by the layers reading the same input
    lengths, poison = sequence_lengths(call)
    inputs = [x, w, r, bias, lengths, *initial]
    while inputs and inputs[-1] == "":
        inputs.pop()
    outputs = 3 if op_type == "LSTM" else 2
    results = b.op(
        op_type,
        inputs,
        call.hint,
        outputs=outputs,
        hidden_size=first.units,
        direction=direction,
        **attrs,
    )
    return results, poison


def _initial_states(call: Call, per_direction: int, order=(0,)) -> list[str]:
    """The initial state inputs (initial_h, initial_c) from the call's extra inputs, which
    hold each layer's states in turn; ``order``: which layer each ONNX direction runs."""
    given = call.inputs[1:]
    if not given:
        return []
    b = call.builder
    states = []
    directions = len(order)
    for k in range(per_direction):
        parts = [
            b.unsqueeze(given[d * per_direction + k].name, [0], f"{call.hint}/state") for d in order
        ]
        states.append(parts[0] if directions == 1 else b.op("Concat", parts, call.hint, axis=0))
    return states


def _sequence(call: Call, y: str, direction_index: int, reverse: bool) -> Value:
    """Y's sequence of one direction, time-major (T, B, u) as the next recurrent layer takes
    it, time reversed if ``reverse``."""
    b, units = call.builder, state_size(call)
    one = b.slice(y, [direction_index], [direction_index + 1], [1], call.hint)  # (T, 1, B, u)
    seq = b.reshape(one, [0, -1, units], call.hint)
    if reverse:
        seq = b.slice(seq, [-1], [_INT64_MIN], [0], call.hint, steps=[-1])
    return Value(seq, (call.output_shapes[0][0], call.x.shape[1], units), TIME_MAJOR)


def _state(call: Call, state: str, direction_index: int) -> Value:
    b, units = call.builder, state_size(call)
    one = b.slice(state, [direction_index], [direction_index + 1], [0], call.hint)
    return Value(b.reshape(one, [-1, units], call.hint), (call.output_shapes[0][0], units))


def state_size(call: Call) -> int:
    layer = call.layer
    return (layer.forward_layer if isinstance(layer, wrappers.Bidirectional) else layer).units


@converter(recurrent.LSTM, recurrent.GRU, recurrent.SimpleRNN, uses_mask=True)
def _recurrent(call: Call):
    layer, b = call.layer, call.builder
    _check_layer(call, layer)
    n_states = len(layer.state_names)
    initial = _initial_states(call, n_states)
    direction = "reverse" if layer.go_backwards else "forward"
    (y, y_h, *y_c), poison = _run(call, [layer], direction, initial)
    if layer.return_sequences:
        out = _sequence(call, y, 0, reverse=layer.go_backwards)
        repeats_last = not (layer.zero_output_for_mask or layer.go_backwards)
        if call.input_mask is not None and repeats_last:
            # Keras repeats the last output over the padding; ONNX writes zeros there.
            out = b.native(out, call.hint)
            keep = b.unsqueeze(call.input_mask, [2], call.hint)
            last = b.unsqueeze(_state(call, y_h, 0).name, [1], call.hint)
            out = Value(b.op("Where", [keep, out.name, last], call.hint), out.shape)
        outs = [out]
    else:
        outs = [_state(call, y_h, 0)]
    if layer.return_state:
        outs += [_state(call, state, 0) for state in [y_h, *y_c]]
    _sequence_masks(call, layer.return_sequences, 1, len(outs))
    return [_poisoned(call, v, poison) for v in outs]


@converter(wrappers.Bidirectional, uses_mask=True)
def _bidirectional(call: Call):
    layer, b = call.layer, call.builder
    forward, backward = layer.forward_layer, layer.backward_layer
    for sub in (forward, backward):
        _check_layer(call, sub)
    same = type(forward) is type(backward) and all(
        getattr(forward, a, None) == getattr(backward, a, None)
        for a in ("units", "activation", "recurrent_activation", "reset_after", "use_bias")
    )
    if not same or forward.go_backwards == backward.go_backwards:
        raise call.refuse(
            "ONNX's bidirectional operator runs one layer forward and one of the same kind "
            "and settings backward; this Bidirectional's pair differs"
        )
    # ONNX runs direction 0 forward in time, 1 backward: which layer is which.
    swapped = forward.go_backwards  # Bidirectional(LSTM(go_backwards=True))
    order = (1, 0) if swapped else (0, 1)  # the ONNX direction of (forward_, backward_layer)
    n_states = len(forward.state_names)
    initial = _initial_states(call, n_states, order)
    pair = [backward, forward] if swapped else [forward, backward]
    (y, y_h, *y_c), poison = _run(call, pair, "bidirectional", initial)
    if layer.return_sequences:
        # ONNX writes both directions in time order; Keras's forward_layer output is in its
        # processing order and the backward_layer's is reversed: both flip when swapped.
        halves = [_sequence(call, y, d, reverse=swapped) for d in order]
    else:
        halves = [_state(call, y_h, d) for d in order]
    names, layout = [h.name for h in halves], halves[0].layout
    mode = layer.merge_mode
    if mode == "concat":  # the features are the last axis in either layout
        merged = [b.op("Concat", names, call.hint, axis=-1)]
    elif mode == "sum":
        merged = [b.op("Add", names, call.hint)]
    elif mode == "mul":
        merged = [b.op("Mul", names, call.hint)]
    elif mode == "ave":
        total = b.op("Add", names, call.hint)
        merged = [b.op("Mul", [total, b.const(0.5, f"{call.hint}/half")], call.hint)]
    else:
        merged = names
    outs = [Value(m, shape, layout) for m, shape in zip(merged, call.output_shapes)]
    if layer.return_state:
        outs += [_state(call, state, d) for d in order for state in [y_h, *y_c]]
    _sequence_masks(call, layer.return_sequences, len(merged), len(outs))
    return [_poisoned(call, v, poison) for v in outs]


@converter(recurrent.Masking, uses_mask=True)
def _masking(call: Call):
    b = call.builder
    x = b.native(call.x, call.hint)
    value = b.const(call.layer.mask_value, f"{call.hint}/mask_value")
    differs = b.op("Not", [b.op("Equal", [x.name, value], call.hint)], call.hint)
    counts = b.reduce("ReduceMax", b.op("Cast", [differs], call.hint, to=6), [-1], call.hint,
                      keepdims=False)  # fmt: skip
    call.output_mask = b.op("Cast", [counts], f"{call.hint}/mask", to=9)  # BOOL
    keep = b.unsqueeze(call.output_mask, [-1], call.hint)
    zero = b.const(0.0, f"{call.hint}/zero")
    return [Value(b.op("Where", [keep, x.name, zero], call.hint), x.shape)]


@converter(rnn_cells.RNN, uses_mask=True)
def _rnn_over_cells(call: Call):
    """RNN over LSTMCell, GRUCell, SimpleRNNCell or a stack of them: the chain of sequence
    layers the RNN itself runs (its engines, sharing the cells' weights)."""
    layer, b = call.layer, call.builder
    engines = layer._engines
    if engines is None:
        raise call.refuse(
            "its cell is not a built-in cell (LSTMCell, GRUCell, SimpleRNNCell or a stack of "
            "them with elementwise activations), so it has no ONNX operator"
        )
    if layer.stateful:
        raise call.refuse(
            "stateful=True keeps states between calls in the model, which an ONNX file cannot"
        )
    if call.input_mask is not None and len(engines) > 1 and layer.go_backwards:
        raise call.refuse(
            "a mask with stacked cells and go_backwards: the cells after the first see the "
            "sequence reversed, padded at its start, which sequence_lens cannot express"
        )
    given, y, last_states = call.inputs[1:], call.x, []
    for i, engine in enumerate(engines):
        if i == len(engines) - 1:  # as RNN.forward: Bidirectional sets it on the RNN
            engine.zero_output_for_mask = layer.zero_output_for_mask
        n_states = len(engine.state_names)
        states, given = given[:n_states], given[n_states:]
        shapes = engine.compute_output_shape((call.output_shapes[0][0], *y.shape[1:]))
        sub = Call(b, engine, [y, *states], shapes, call.input_mask, call.options)
        y, *engine_states = _recurrent(sub)
        last_states += engine_states
    outputs = [y, *last_states] if layer.return_state else [y]
    _sequence_masks(call, layer.return_sequences, 1, len(outputs))
    return [Value(v.name, shape, v.layout) for v, shape in zip(outputs, call.output_shapes)]
