"""Layers written as ``call()`` with fastnn.ops: their gradients come from a tape of the ops run.

To the graph such a layer is one more layer with the ordinary contract: ``forward`` runs
``call()`` under a private ``GradientTape`` and returns it as the context; ``backward`` replays
it, adding into the weights' ``.grad`` and returning the input gradients. A built-in layer called
inside ``call()`` is one tape entry whose VJP is its own ``backward`` (``Layer._record_call``),
so it keeps its fused kernels. Called on arrays outside any tape, ``call()`` is plain numpy.

The call context (per thread and task: context variables) carries what Keras's does: the
``training`` flag nested calls inherit, the name scope that gives sublayers' weights their paths
(``outer/dense/kernel``), and where ``add_loss`` values go. Output shapes on symbolic inputs come
from running ``call()`` once or twice on zeros (``output_shapes``), as Keras's torch backend runs
it on placeholder sizes; nothing it changes (weights, random generators, losses) survives.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
from collections.abc import Callable, Iterator

import numpy as np

from fastnn import seeding
from fastnn.ops import tape as tape_module
from fastnn.ops.core import cast as ops_cast
from fastnn.ops.tape import GradientTape, Tensor, paused, unwrap
from fastnn.ops.tensor import is_float, is_variable, weights_written

#: ``training`` for calls that are not given it: set by the outermost call that is.
TRAINING: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "fastnn_training", default=None
)
#: The layers whose calls are running, outermost first: weights made inside get their paths.
SCOPE: contextvars.ContextVar[tuple] = contextvars.ContextVar("fastnn_scope", default=())
#: Where ``add_loss`` values go besides the layer's ``losses``: the innermost tape forward's
#: list (its backward seeds them), or the trainer's (the loss it reports).
LOSS_SINK: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "fastnn_loss_sink", default=None
)
#: While the ONNX exporter traces a call (``inlining``): which call() layers keep their own
#: node on symbolic tensors (the others run their call() on them inline); else None.
INLINE_UNLESS: contextvars.ContextVar[Callable | None] = contextvars.ContextVar(
    "fastnn_inline_unless", default=None
)


@contextlib.contextmanager
def inlining(root, keep: Callable) -> Iterator[None]:
    """Inside: a user's call() layer called on symbolic tensors runs its call() on them (its
    ops and layers become nodes of the caller's graph) unless ``keep(layer)``. The ``losses``
    and calls (``_inbound_nodes``) of ``root`` and the layers it holds are put back after,
    whether the code ran through or raised."""
    layers = layer_tree(root)
    saved = [(list(owner._loss_values), len(owner._inbound_nodes)) for owner in layers]
    token = INLINE_UNLESS.set(keep)
    try:
        yield
    finally:
        INLINE_UNLESS.reset(token)
        for owner, (values, calls) in zip(layers, saved):
            owner._loss_values[:] = values
            del owner._inbound_nodes[calls:]


_CALL_ARGUMENTS: dict[type, tuple[bool, bool]] = {}


def call_arguments(cls: type) -> tuple[bool, bool]:
    """Whether ``cls.call`` takes ``training`` and ``mask`` (or ``**kwargs``)."""
    found = _CALL_ARGUMENTS.get(cls)
    if found is None:
        parameters = _parameters(cls)
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        names = {p.name for p in parameters}
        found = _CALL_ARGUMENTS[cls] = ("training" in names or var_kw, "mask" in names or var_kw)
    return found


@functools.cache
def positional_slots(cls: type) -> float:
    """How many positional arguments ``cls.call`` takes after the inputs (inf with ``*args``)."""
    kinds = [p.kind for p in _parameters(cls)[2:]]  # after self and inputs
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return float("inf")
    plain = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(kind in plain for kind in kinds)


def symbolic_arguments(cls: type, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """A symbolic call's arguments after its inputs, as positional tensors where ``cls.call``
    lists them in order (``layer(logits, targets=t)``: call(logits, targets)), and without the
    keywords given as None where that is their default: Keras's KerasTensor calls take both."""
    kwargs = dict(kwargs)
    args = list(args)
    for parameter in _parameters(cls)[2 + len(args) :]:  # after self, the inputs and args
        if parameter.name not in kwargs or parameter.kind not in _PLAIN:
            break
        args.append(kwargs.pop(parameter.name))
    while args and args[-1] is None and _default_is_none(cls, 1 + len(args)):
        args.pop()  # trailing Nones: call()'s own defaults
    defaults = {p.name: p.default for p in _parameters(cls)}
    kwargs = {k: v for k, v in kwargs.items() if not (v is None and defaults.get(k) is None)}
    return tuple(args), kwargs


_PLAIN = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _default_is_none(cls: type, index: int) -> bool:
    """Whether ``cls.call``'s parameter at ``index`` (0 is self) defaults to None."""
    parameters = _parameters(cls)
    return index < len(parameters) and parameters[index].default is None


def first_input_name(cls: type) -> str:
    """The name of ``cls.call``'s inputs parameter (Keras's layers: ``inputs``)."""
    parameters = _parameters(cls)
    return parameters[1].name if len(parameters) > 1 else "inputs"


@functools.cache
def _init_signature(cls: type):
    try:
        return inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None


def constructor_arguments(cls: type, args: tuple, kwargs: dict) -> dict | None:
    """A ``call()`` layer's constructor arguments as its config when it writes no get_config
    of its own (defaults included, as Keras 3's auto config): {} when it writes one or they
    cannot be read, None when a value is not plain data (numbers, strings, lists, dicts)."""
    if _writes_get_config(cls):
        return {}
    signature = _init_signature(cls)
    if signature is None:
        return {}
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        return {}  # the constructor will say what is wrong
    bound.apply_defaults()
    config = {}
    for i, (name, value) in enumerate(bound.arguments.items()):
        parameter = signature.parameters[name]
        if i == 0:  # self
            continue
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            config.update(value)
        elif parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                return None
        else:
            config[name] = value
    return config if all(_plain(v) for v in config.values()) else None


def _writes_get_config(cls: type) -> bool:
    for klass in cls.__mro__:
        if "get_config" in klass.__dict__:
            return klass.__module__.split(".")[0] != "fastnn"
    return False


def _plain(value) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _parameters(cls: type) -> list:
    try:
        return list(inspect.signature(cls.call).parameters.values())
    except (TypeError, ValueError):
        return []


def path_prefix(layer) -> str:
    """The path of ``layer``'s weights: the running calls' names, then its own."""
    scope = SCOPE.get()
    names = [lay.name for lay in scope]
    if not scope or scope[-1] is not layer:
        names.append(layer.name)
    return "/".join(names)


@contextlib.contextmanager
def scoped(layer, training: bool | None) -> Iterator[None]:
    """Inside: ``layer``'s name scope, and ``training`` for calls not given it."""
    scope = SCOPE.get()
    token = SCOPE.set(scope if scope and scope[-1] is layer else (*scope, layer))
    token_training = TRAINING.set(training) if training is not None else None
    try:
        yield
    finally:
        SCOPE.reset(token)
        if token_training is not None:
            TRAINING.reset(token_training)


def run_call(layer, inputs, training: bool | None, mask, args: tuple = (), kwargs=None):
    """``layer.call(inputs, *args, **kwargs)``, given ``training`` and ``mask`` when it takes
    them, in the layer's scope."""
    kwargs = dict(kwargs) if kwargs else {}
    takes_training, takes_mask = _CALL_ARGUMENTS.get(type(layer)) or call_arguments(type(layer))
    current = TRAINING.get()
    if training is None:
        training = current
    if takes_training and training is not None:
        kwargs["training"] = training
    if takes_mask and mask is not None:
        kwargs["mask"] = mask
    scope = SCOPE.get()  # the scope and training, set by hand: a context manager costs ~2 us
    token = SCOPE.set(scope if scope and scope[-1] is layer else (*scope, layer))
    token_training = TRAINING.set(training) if training is not current else None
    try:
        if layer._spreads_inputs and isinstance(inputs, list) and not args:
            return layer.call(*inputs, **kwargs)
        return layer.call(inputs, *args, **kwargs)
    finally:
        SCOPE.reset(token)
        if token_training is not None:
            TRAINING.reset(token_training)


def convert_inputs(layer, inputs, own: bool = False) -> object:
    """Inputs as a call takes them: arrays (float ones in the layer's dtype) or, where a tape
    tracks them, tensors (cast on the tape). With ``own`` (the outermost call, on the caller's
    arrays) an array is a copy: ``inputs -= m`` in call() leaves the caller's array as it was,
    as Keras's conversion to a tensor does."""

    def convert(x):
        if isinstance(x, Tensor) or is_variable(x):
            if layer.casts_inputs and is_float(x) and x.dtype != layer.dtype:
                return ops_cast(x, layer.dtype)
            return x
        if x is None or isinstance(x, (str, bool)):
            return x
        array = np.asarray(x)
        if array.dtype.kind == "f" and layer.casts_inputs and array.dtype != layer.dtype:
            return array.astype(layer.dtype)
        return array.copy() if own and array is x else array

    return _map(inputs, convert)


# ---- the graph's contract: forward under a private tape, backward replays it -------------------
class CallContext:
    """What a tape forward keeps for its backward: the tape, the watched inputs (flat), the
    outputs (flat) and the ``add_loss`` values of the pass (``added_losses``: the graph runs
    the backward for them alone too)."""

    __slots__ = ("tape", "inputs", "outputs", "added_losses", "inputs_are_list")

    def __init__(self, tape, inputs, outputs, losses, inputs_are_list):
        self.tape, self.inputs, self.outputs = tape, inputs, outputs
        self.added_losses, self.inputs_are_list = losses, inputs_are_list


@contextlib.contextmanager
def collecting_losses(layer) -> Iterator[list]:
    """Inside: ``add_loss`` values go to the list given (and to an enclosing collector); after,
    ``layer`` knows which of its layers hold them (a tape forward clears those)."""
    losses: list = []
    parent = LOSS_SINK.get()
    token = LOSS_SINK.set(losses)
    try:
        yield losses
    finally:
        LOSS_SINK.reset(token)
        if losses:
            layer.__dict__["_loss_owners"] = [lay for lay in layer_tree(layer) if lay._loss_values]
            if parent is not None:
                parent.extend(losses)


def forward(layer, inputs, training: bool, mask=None) -> tuple:
    """Run ``layer.call`` under a private tape: (outputs as arrays, ``CallContext``). Other
    tapes of the thread are paused meanwhile. The losses it adds replace those of its last
    pass in ``layer.losses``, as an outermost call's do. (Spelled out, without context
    managers: this runs once per call() layer and training step.)"""
    state = layer.__dict__
    owners = state.pop("_loss_owners", None)
    if owners:
        for owner in owners:
            owner._loss_values.clear()
    known = state.get("_tape_variables")
    tape = _private_tape(known)
    losses: list = []
    parent = LOSS_SINK.get()
    token = LOSS_SINK.set(losses)
    cls = type(layer)
    takes_training, takes_mask = _CALL_ARGUMENTS.get(cls) or call_arguments(cls)
    kwargs = {"training": training} if takes_training else {}
    if takes_mask and mask is not None:
        kwargs["mask"] = mask
    scope = SCOPE.get()
    scope_token = SCOPE.set(scope if scope and scope[-1] is layer else (*scope, layer))
    training_token = TRAINING.set(training)
    thread = tape_module.STATE
    outer = thread.tapes
    thread.tapes = [tape]  # the tape alone records
    is_list = isinstance(inputs, (list, tuple))
    try:
        if is_list:
            watched = [_watch(tape, x) for x in inputs]
            if layer._spreads_inputs:
                outputs = layer.call(*watched, **kwargs)
            else:
                outputs = layer.call(watched, **kwargs)
        else:
            watched = [_watch(tape, inputs)]
            outputs = layer.call(watched[0], **kwargs)
    finally:
        thread.tapes = outer
        TRAINING.reset(training_token)
        SCOPE.reset(scope_token)
        LOSS_SINK.reset(token)
    if known is None or len(tape._variables) != len(known[0]):
        # Keys are this tape's names for values: the next tape may reuse them for the same
        # weights (a key is never handed out twice), saving each weight's first-read lookup.
        variables = dict(tape._variables)
        state["_tape_variables"] = (variables, frozenset(k for k, _ in variables.values()))
    if losses:
        state["_loss_owners"] = [lay for lay in layer_tree(layer) if lay._loss_values]
        if parent is not None:
            parent.extend(losses)
    if isinstance(outputs, (list, tuple)):
        flat_out = list(outputs)
        arrays = [_array(y) for y in flat_out]
    else:
        flat_out = [outputs]
        arrays = _array(outputs)
    return arrays, CallContext(tape, watched, flat_out, losses, is_list)


def _private_tape(known) -> GradientTape:
    """A GradientTape for one forward, knowing the weights the last one read (``known``)."""
    tape = GradientTape.__new__(GradientTape)
    tape.persistent, tape.watch_accessed_variables = False, True
    tape._entries, tape._arrays = [], {}
    if known:
        tape._variables, tape._live = dict(known[0]), set(known[1])
    else:
        tape._variables, tape._live = {}, set()
    return tape


def _watch(tape, x):
    """``tape.watch(x)`` for an input: float arrays (the common case, inline) and tensors."""
    if type(x) is np.ndarray and x.dtype.kind == "f":
        key = tape_module._new_key()
        tape._arrays[id(x)] = (key, x)
        tape._live.add(key)
        return Tensor(x, key)
    return tape.watch(x) if is_float(x) else x


def _array(y) -> np.ndarray:
    """An output as the graph keeps it: an array (a Variable's value copied)."""
    kind = type(y)
    if kind is Tensor:
        return y.value
    if kind is np.ndarray:
        return y
    if is_variable(y):
        return y.value.copy()
    return np.asarray(unwrap(y))


def backward(layer, ctx: CallContext, grad_outputs, need_input_grad: bool = True) -> object:
    """Replay a tape forward: weights' gradients add into their ``.grad``; the inputs'
    gradients come back (None where an input has none); ``add_loss`` values count once each."""
    tape = ctx.tape
    keys, seeds = [], []
    if isinstance(grad_outputs, (list, tuple)):
        pairs = zip(ctx.outputs, grad_outputs)
    else:
        pairs = ((ctx.outputs[0], grad_outputs),)
    for y, g in pairs:
        if g is not None and (key := tape.key(y)) is not None:
            keys.append(key)
            seeds.append(g)
    for value in ctx.added_losses:
        if (key := tape.key(value)) is not None:
            keys.append(key)
            seeds.append(np.ones(np.shape(unwrap(value)), np.result_type(unwrap(value))))
    if not keys:
        return None if not need_input_grad else _no_grads(ctx)
    variables = [(k, v) for k, v in tape._variables.values() if v.trainable]
    in_keys = [tape.key(x) for x in ctx.inputs] if need_input_grad else []
    sources = in_keys + [k for k, _ in variables]
    state = tape_module.STATE
    outer = state.tapes
    state.tapes = []  # rules run on ops: nothing records the backward
    try:
        result = tape_module.backward(tape._entries, keys, seeds, sources)
    finally:
        state.tapes = outer
    for key, var in variables:
        g = result.get(key)
        if g is not None:
            var.grad += g if type(g) is np.ndarray else unwrap(g)
    if not need_input_grad:
        return None
    in_grads = [_input_grad(result.get(k), x) if k is not None else None
                for k, x in zip(in_keys, ctx.inputs)]  # fmt: skip
    return in_grads if ctx.inputs_are_list else in_grads[0]


def _input_grad(grad, x):
    """An input's gradient as the graph takes it: a writable array of the input's dtype."""
    if grad is None:
        return None
    if type(grad) is np.ndarray and grad.dtype == x.dtype and grad.flags.writeable:
        return grad
    return tape_module._finish(grad, x, "none")


def _no_grads(ctx: CallContext):
    return [None] * len(ctx.inputs) if ctx.inputs_are_list else None


# ---- symbolic calls: output shapes from running call() on zeros --------------------------------
def output_shapes(layer, shapes, dtypes) -> tuple:
    """The output shape(s) and dtype of ``layer`` on inputs of ``shapes`` (a shape, or a list
    or dict of them; batch axis None) and ``dtypes`` (one, or the same structure): ``call()``
    runs on zeros, unknown sizes as 2 and again as 3 where there are any (a size that follows
    them is unknown). Weights, random generators and losses are put back."""
    names = list(shapes) if isinstance(shapes, dict) else None
    is_list = isinstance(shapes, list) or names is not None
    shape_list = [shapes[n] for n in names] if names else (shapes if is_list else [shapes])
    if isinstance(dtypes, dict):
        dtype_list = [dtypes[n] for n in names]
    elif isinstance(dtypes, list):
        dtype_list = dtypes
    else:
        dtype_list = [dtypes] * len(shape_list)
    unknown = any(d is None for s in shape_list for d in s)
    runs = []
    for size in (2, 3) if unknown else (2,):
        arrays = [
            np.zeros([size if d is None else d for d in s], t)
            for s, t in zip(shape_list, dtype_list)
        ]
        given = dict(zip(names, arrays)) if names else (arrays if is_list else arrays[0])
        runs.append(_probe(layer, given))
    (first, out_list), merged = runs[0], []
    for i, (shape, _) in enumerate(first):
        for other, _ in runs[1:]:
            if len(other) != len(first) or len(other[i][0]) != len(shape):
                raise ValueError(
                    f"{type(layer).__name__} '{layer.name}': call() returns outputs of "
                    "different ranks for different batch sizes"
                )
            shape = tuple(a if a == b else None for a, b in zip(shape, other[i][0]))
        merged.append(shape)
    dtype = first[0][1] if first else np.dtype(layer.dtype)
    return (merged if out_list else merged[0]), dtype


def _probe(layer, inputs) -> tuple[list, bool]:
    """Run ``call()`` on ``inputs``: ([(shape, dtype) per output], outputs are a list); every
    weight, random generator and loss as it was before."""
    variables = _variables(layer)
    saved_values = [v.value.copy() for v in variables]
    generators = _generators(layer)
    saved_states = [g.bit_generator.state for g in generators]
    root = seeding.root_state()
    count = len(variables)
    token = LOSS_SINK.set([])
    try:
        with paused():
            try:
                outputs = run_call(layer, inputs, False, None)
            except Exception:
                if not layer._takes_mask:
                    raise
                # it may need the mask of its inputs' steps (an Embedding's): all steps kept
                first = next(iter(inputs.values())) if isinstance(inputs, dict) else inputs
                first = first[0] if isinstance(first, (list, tuple)) else first
                mask = np.ones(first.shape[:2], bool)
                outputs = run_call(layer, inputs, False, mask)
    except Exception as error:
        shown = _map(inputs, lambda a: a.shape)
        raise ValueError(
            f"{type(layer).__name__} '{layer.name}' cannot tell its output shape: call() on "
            f"zeros of shape {shown} raised {type(error).__name__}: {error}. Make call() work "
            "on any batch of these shapes, or write compute_output_shape(input_shape)"
        ) from error
    finally:
        LOSS_SINK.reset(token)
        for v, value in zip(variables, saved_values):
            v.value[...] = value
        weights_written()
        for g, state in zip(generators, saved_states):
            g.bit_generator.state = state
        _clear_losses(layer)
    if len(_variables(layer)) == count:  # no weights were made: draws for them stay drawn
        seeding.set_root_state(root)
    if isinstance(outputs, dict):
        raise TypeError(
            f"{type(layer).__name__} '{layer.name}': call() returns a dict; in a model a layer's "
            "outputs are one tensor or a list of them"
        )
    out_list = isinstance(outputs, (list, tuple))
    flat = list(outputs) if out_list else [outputs]
    return [(tuple(np.shape(unwrap(y))), np.result_type(unwrap(y))) for y in flat], out_list


def _variables(layer) -> list:
    seen, found = set(), []
    for lay in layer_tree(layer):
        for v in lay.weights:
            if id(v) not in seen:
                seen.add(id(v))
                found.append(v)
    return found


def _generators(layer) -> list:
    found = []
    for lay in layer_tree(layer):
        for value in [lay._rng, *vars(lay).values()]:
            rng = getattr(value, "_rng", value)
            if isinstance(rng, np.random.Generator) and all(rng is not g for g in found):
                found.append(rng)
    return found


def layer_tree(layer) -> list:
    """``layer`` and every layer it contains, depth first, each once."""
    seen, order, stack = set(), [], [layer]
    while stack:
        lay = stack.pop()
        if id(lay) in seen:
            continue
        seen.add(id(lay))
        order.append(lay)
        stack.extend(reversed([sub for _, sub in lay.sublayers()]))
    return order


def _clear_losses(layer) -> None:
    for lay in layer_tree(layer):
        lay._loss_values.clear()


# ---- containers a call() layer holds: changing them makes it look for its layers again ------
class TrackedList(list):
    """A list a ``call()`` layer holds as an attribute (Keras's TrackedList): appending a layer
    to it later is seen."""

    __slots__ = ("_owner",)

    def __init__(self, items, owner) -> None:
        super().__init__(items)
        self._owner = owner

    def _changed(self) -> None:
        self._owner.__dict__["_tracked_cache"] = None


class TrackedDict(dict):
    """A dict a ``call()`` layer holds as an attribute (Keras's TrackedDict)."""

    __slots__ = ("_owner",)

    def __init__(self, items, owner) -> None:
        super().__init__(items)
        self._owner = owner

    def _changed(self) -> None:
        self._owner.__dict__["_tracked_cache"] = None


def _mutator(base: type, name: str):
    method = getattr(base, name)

    def changed(self, *args, **kwargs):
        result = method(self, *args, **kwargs)
        self._changed()
        return result

    changed.__name__ = name
    return changed


for _name in ("append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
              "__setitem__", "__delitem__", "__iadd__", "__imul__"):  # fmt: skip
    setattr(TrackedList, _name, _mutator(list, _name))
for _name in ("__setitem__", "__delitem__", "pop", "popitem", "clear", "update", "setdefault",
              "__ior__"):  # fmt: skip
    setattr(TrackedDict, _name, _mutator(dict, _name))


def tracked(value, owner) -> object:
    """``value`` as a ``call()`` layer keeps it: a plain list or dict becomes a tracked one."""
    if type(value) is list:
        return TrackedList(value, owner)
    if type(value) is dict:
        return TrackedDict(value, owner)
    return value


def _map(structure, fn):
    if isinstance(structure, list):
        return [_map(x, fn) for x in structure]
    if isinstance(structure, tuple):
        return tuple(_map(x, fn) for x in structure)
    if isinstance(structure, dict):
        return {k: _map(v, fn) for k, v in structure.items()}
    return fn(structure)
