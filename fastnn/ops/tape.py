"""The tape: which values derive from watched ones, what each op records, and the walk back.

Outside a tape every op takes and returns numpy arrays; the only cost is one look at this
thread's list of recording tapes. While a ``GradientTape`` records, an op one of whose inputs the
tape tracks (a watched value, a trainable Variable it read, or a value computed from one) returns
a ``Tensor``: the result array and the key the tapes know it by. The op appends one ``Entry`` to
each tape that tracks an input: its rule (from ``rules.py``), the keys of its inputs and output,
and only the values the rule reads. Results computed from nothing tracked stay plain arrays, as
do integer and boolean results (they have no gradient). Python operators, indexing and numpy
functions on a Tensor or Variable go through ``fastnn.ops``, so ``x * 2 + b`` records too
(``tensor.py``). Keys are never ``id()``s of results, so views and reused memory cannot confuse
a tape; only numpy arrays given to ``watch`` are known by identity (the tape holds them).

Why a wrapper and not an ndarray subclass: every ndarray method a subclass does not override
(``.clip``, ``.cumsum``, a view from ``.T``) would return an unrecorded subclass instance and
silently lose the gradient; a Tensor has only what records, and refuses the rest.

``GradientTape.gradient`` replays the entries in reverse, summing gradients where a value fans
out. Rules are written with fastnn.ops, so when an outer tape tracks what an inner tape saved, the
inner tape's backward is itself recorded and gradients of gradients work.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from fastnn.ops.tensor import (  # noqa: F401 (OpError, TensorOps: fastnn.ops imports them here)
    STATE,
    OpError,
    Spec,
    Tensor,
    TensorOps,
    Variable,
    _VariableRead,
    as_array,
    is_float,
    is_variable,
    tracked,
    unwrap,
)

_new_key = itertools.count(1).__next__


# ---- rules and entries ---------------------------------------------------------------------
RULES: dict[str, Rule] = {}


class Rule:
    """An op's VJP: one function per input, ``vjp(g, ans, *inputs, **params) -> input grad``
    (or one ``vjp(g, ans, *inputs, argnum, **params)`` for ops with any number of inputs), and
    which of ans and the inputs it reads: only those are saved, the rest become ``Spec``s."""

    __slots__ = ("name", "vjps", "keep_ans", "keep", "variadic", "binary")

    def __init__(self, name: str, saves: str, vjps: Sequence[Callable]) -> None:
        code = vjps[0].__code__  # (g, ans, *inputs): read from the code object, not inspect
        self.variadic = bool(code.co_flags & inspect.CO_VARARGS)
        names = list(code.co_varnames[1 : code.co_argcount])
        if self.variadic:
            names.append(code.co_varnames[code.co_argcount + code.co_kwonlyargcount])
        unknown = set(saves.split()) - set(names)
        if unknown:
            raise ValueError(f"rule {name!r} saves {sorted(unknown)}, not among {names}")
        self.name = name
        self.vjps = tuple(vjps)
        self.keep_ans = names[0] in saves.split()
        self.keep = [n in saves.split() for n in names[1:]]
        self.binary = len(self.vjps) == 2 and not self.variadic  # two inputs: spelled out

    def save(self, inputs: Sequence, ans) -> tuple:
        """(ans, *inputs), with a Spec for each the rule does not read."""
        if len(inputs) == 2 and len(self.keep) >= 2 and not self.variadic:  # most ops
            keep, (x1, x2) = self.keep, inputs
            k1, k2 = keep[0], keep[1]
            return (
                ans if self.keep_ans else Spec(ans),
                x1 if k1 else Spec(x1),
                x2 if k2 else Spec(x2),
            )
        keep = self.keep[-1:] * len(inputs) if self.variadic else self.keep
        saved = [ans if self.keep_ans else Spec(ans)]
        saved += [x if k else Spec(x) for x, k in zip(inputs, keep)]
        return tuple(saved)

    def backward(self, grads: list, saved: tuple, params: dict, need: list) -> list:
        """The gradients of the inputs flagged in ``need`` (None for the others)."""
        g = grads[0]
        if self.binary and len(need) == 2 and len(saved) == 3:
            (f1, f2), (n1, n2), (ans, x1, x2) = self.vjps, need, saved  # most ops, spelled out
            if params:
                return [
                    f1(g, ans, x1, x2, **params) if n1 and f1 is not None else None,
                    f2(g, ans, x1, x2, **params) if n2 and f2 is not None else None,
                ]
            return [
                f1(g, ans, x1, x2) if n1 and f1 is not None else None,
                f2(g, ans, x1, x2) if n2 and f2 is not None else None,
            ]
        ans, xs = saved[0], saved[1:]
        if self.variadic:
            vjp = self.vjps[0]
            return [vjp(g, ans, *xs, argnum=i, **params) if n else None for i, n in enumerate(need)]
        return [
            f(g, ans, *xs, **params) if n and f is not None else None
            for f, n in zip(self.vjps, need)
        ]


class JointRule:
    """A VJP that returns every input's gradient at once: ``vjp(output_grads) -> input_grads``
    (a layer's backward, a custom_gradient's grad_fn), or ``vjp(output_grads, need)`` told
    which inputs need one (the others may be None). Missing output gradients become zeros."""

    __slots__ = ("name", "vjp", "outputs", "takes_need")

    def __init__(self, name: str, vjp: Callable, outputs: Sequence, takes_need=False) -> None:
        self.name, self.vjp, self.outputs = name, vjp, [Spec(y) for y in outputs]
        self.takes_need = takes_need

    def backward(self, grads: list, saved: tuple, params: dict, need: list) -> list:
        grads = [
            np.zeros(s.shape, s.dtype) if g is None else g for g, s in zip(grads, self.outputs)
        ]
        result = self.vjp(grads, need) if self.takes_need else self.vjp(grads)
        result = list(result) if isinstance(result, (list, tuple)) else [result]
        if len(result) != len(need):
            raise ValueError(
                f"{self.name}: the gradient function returned {len(result)} gradients for "
                f"{len(need)} inputs"
            )
        return result


class _NoRule:
    """Recorded for an op without a rule: fine until a gradient has to pass through it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def save(self, inputs: Sequence, ans) -> tuple:
        return ()

    def backward(self, grads, saved, params, need):
        raise LookupError(f"fastnn.ops has no gradient for `{self.name}`")


class Entry:
    """One recorded op: its rule, input and output keys, saved values and static params."""

    __slots__ = ("rule", "in_keys", "out_keys", "saved", "params")

    def __init__(self, rule, in_keys: list, out_keys: tuple, saved: tuple, params: dict) -> None:
        self.rule, self.in_keys, self.out_keys = rule, in_keys, out_keys
        self.saved, self.params = saved, params


# ---- recording ---------------------------------------------------------------------------------
def apply(name: str, forward: Callable, *inputs, **params):
    """Run ``forward(*arrays, **params)`` on the inputs' arrays; on each recording tape that
    tracks an input, record the op under rule ``name``. Inputs are the differentiable operands;
    params are static (axes, shapes, index arrays)."""
    values = [
        x if type(x) is np.ndarray else x.value if isinstance(x, TensorOps) else unwrap(x)
        for x in inputs
    ]
    try:
        out = forward(*values, **params)
    except OpError:
        raise
    except (ValueError, IndexError) as error:
        raise shape_error(name, values, params, error) from None
    tapes = STATE.tapes
    if not tapes or not (out.dtype.kind in "fc" if type(out) is np.ndarray else is_float(out)):
        return out
    if len(tapes) == 1:  # the common case (a custom layer's forward, a training loop)
        return _record_one(tapes[0], name, inputs, values, out, params)
    return _record(name, inputs, values, out, params)


def apply_binary(name: str, fn: Callable, promote: Callable, x1, x2):
    """``apply`` for an op of two operands without params, ``fn(a, b)`` (after
    ``promote(a, b)`` unless both are arrays of one dtype): the ops most code runs
    (``x @ w + b``), spelled out."""
    a = x1 if type(x1) is np.ndarray else x1.value if isinstance(x1, TensorOps) else unwrap(x1)
    b = x2 if type(x2) is np.ndarray else x2.value if isinstance(x2, TensorOps) else unwrap(x2)
    try:
        if type(a) is np.ndarray and type(b) is np.ndarray and a.dtype == b.dtype:
            out = fn(a, b)
        else:
            out = fn(*promote(a, b))
    except OpError:
        raise
    except (ValueError, IndexError) as error:
        raise shape_error(name, [a, b], {}, error) from None
    tapes = STATE.tapes
    if not tapes or not (out.dtype.kind in "fc" if type(out) is np.ndarray else is_float(out)):
        return out
    if len(tapes) == 1:
        return _record_one(tapes[0], name, (x1, x2), [a, b], out, {})
    return _record(name, (x1, x2), [a, b], out, {})


def _record_one(tape, name: str, inputs: Sequence, values: list, out, params: dict):
    """Record an op on ``tape`` alone (keys read inline, a weight's first read keyed directly)."""
    live, variables, arrays = tape._live, tape._variables, tape._arrays
    keys, hit = [], False
    for x in inputs:
        kind = type(x)
        if kind is Tensor:
            k = x.key if x.key in live else None
        elif kind is np.ndarray:
            found = arrays.get(id(x)) if arrays else None
            k = None if found is None else found[0]
        else:
            found = variables.get(id(x))
            if found is not None and found[1] is x:
                k = found[0]
            elif isinstance(x, Variable) and tape.watch_accessed_variables:  # first read
                k = tape._variable_key(x)
            else:
                k = tape.key(x)
        keys.append(k)
        hit = hit or k is not None
    if not hit or tape._entries is None:
        return out
    rule = RULES.get(name) or _NoRule(name)
    key = _new_key()
    tape._entries.append(Entry(rule, keys, (key,), rule.save(values, out), params))
    live.add(key)
    return Tensor(out, key)


def _record(name: str, inputs: Sequence, values: list, out, params: dict):
    tapes = STATE.tapes
    hits = [(tape, keys) for tape in tapes if (keys := tape.input_keys(inputs))]
    if not hits:
        return out
    rule = RULES.get(name) or _NoRule(name)
    result = Tensor(out, _new_key())
    # One tape: the rule's values are constants to every other tape, so arrays suffice. Several:
    # save the tensors themselves, so that an outer tape records the inner tape's backward.
    if len(hits) == 1:
        saved = rule.save(values, out)
    else:
        saved = rule.save([_VariableRead(x) if is_variable(x) else x for x in inputs], result)
    for tape, keys in hits:
        tape.append(Entry(rule, keys, (result.key,), saved, params))
    return result


def record(
    vjp: Callable, inputs: Sequence, outputs: Sequence, name: str = "record", takes_need=False
) -> list:
    """Record one entry for a computation done outside fastnn.ops (a built-in layer's call, a
    custom_gradient): ``vjp(output_grads) -> input_grads`` in the inputs' order (with
    ``takes_need``, ``vjp(output_grads, need)``, told which inputs need a gradient).
    ``outputs`` are arrays; returns them as Tensors where a recording tape tracks an input."""
    outputs = [unwrap(y) for y in outputs]
    hits = [(tape, keys) for tape in STATE.tapes if (keys := tape.input_keys(inputs))]
    if not hits:
        return outputs
    results = [Tensor(y, _new_key()) if is_float(y) else y for y in outputs]
    out_keys = tuple(y.key if isinstance(y, Tensor) else -1 for y in results)
    rule = JointRule(name, vjp, outputs, takes_need)
    for tape, keys in hits:
        tape.append(Entry(rule, keys, out_keys, (), {}))
    return results


def cast(x, dtype):
    """``x`` as ``dtype``; the gradient flows back through float-to-float casts only."""
    return apply("cast", _cast, x, dtype=np.dtype(dtype))


def _cast(x, dtype):
    return as_array(x).astype(dtype, copy=False)


def shape_error(name: str, values: Sequence, params: dict, error: Exception) -> Exception:
    """The error an op raises for inputs it cannot take: the op, every input shape, the cause."""
    shapes = " and ".join(str(np.shape(v)) for v in values) or "no inputs"
    shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
    message = f"{name}: cannot take shapes {shapes}{f' with {shown}' if shown else ''}: {error}"
    is_index = isinstance(error, IndexError) and not isinstance(error, ValueError)
    return (IndexError if is_index else ValueError)(message)


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        return f"<{value.dtype} array of shape {value.shape}>"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@contextlib.contextmanager
def paused(tapes: Sequence[GradientTape] | None = None) -> Iterator[None]:
    """Inside, ``tapes`` (all of this thread's, by default) do not record."""
    saved = list(STATE.tapes)
    stop = saved if tapes is None else tapes
    STATE.tapes[:] = [t for t in saved if all(t is not s for s in stop)]
    try:
        yield
    finally:
        STATE.tapes[:] = saved


# ---- the tape ------------------------------------------------------------------------------------
class GradientTape:
    """Records the ops run on watched values and trainable Variables, then computes gradients:
    ``with GradientTape() as tape: loss = f(w)`` and ``tape.gradient(loss, w)``, as
    tf.GradientTape. Trainable Variables an op reads are watched unless
    ``watch_accessed_variables=False``; a non-persistent tape computes one set of gradients."""

    def __init__(self, persistent: bool = False, watch_accessed_variables: bool = True) -> None:
        self.persistent = bool(persistent)
        self.watch_accessed_variables = bool(watch_accessed_variables)
        self._entries: list[Entry] | None = []
        self._live: set[int] = set()  # keys of the values this tape tracks
        self._variables: dict[int, tuple[int, object]] = {}  # id(variable) -> (key, variable)
        self._arrays: dict[int, tuple[int, np.ndarray]] = {}  # id(array) -> (key, array)

    def __enter__(self) -> GradientTape:
        if any(t is self for t in STATE.tapes):
            raise RuntimeError("This GradientTape is already recording; it cannot be re-entered")
        if self._entries is None:
            raise RuntimeError("This non-persistent GradientTape was used; make a new one")
        STATE.tapes.append(self)
        return self

    def __exit__(self, *exc) -> None:
        STATE.tapes[:] = [t for t in STATE.tapes if t is not self]

    # -- tracking
    def watch(self, tensor):
        """Track ``tensor`` (a Tensor, Variable or numpy array, or a list of them). Returns
        what it tracks; for a numpy array a Tensor, whose operators record (numpy's own
        operators on the array cannot; fastnn.ops functions given the array do)."""
        if isinstance(tensor, (list, tuple)):
            return type(tensor)(self.watch(t) for t in tensor)
        if not is_float(tensor):
            warnings.warn(
                f"GradientTape.watch: only float values have gradients; got {_describe(tensor)}",
                stacklevel=2,
            )
            return tensor
        if isinstance(tensor, Tensor):
            self._live.add(tensor.key)
            return tensor
        if is_variable(tensor):
            self._variable_key(tensor, watch=True)
            return tensor
        if isinstance(tensor, np.ndarray):
            key = self._arrays.get(id(tensor), (None,))[0] or _new_key()
            self._arrays[id(tensor)] = (key, tensor)
            self._live.add(key)
            return Tensor(tensor, key)
        watched = Tensor(as_array(tensor), _new_key())
        self._live.add(watched.key)
        return watched

    def watched_variables(self) -> tuple:
        """The Variables this tape watches, in the order it met them."""
        return tuple(variable for _, variable in self._variables.values())

    @contextlib.contextmanager
    def stop_recording(self) -> Iterator[None]:
        """Inside, this tape records nothing."""
        if not any(t is self for t in STATE.tapes):
            raise ValueError("stop_recording(): this GradientTape is not recording")
        with paused([self]):
            yield

    def reset(self) -> None:
        """Forget everything recorded and watched."""
        self._entries, self._live = [], set()
        self._variables.clear()
        self._arrays.clear()

    def key(self, x) -> int | None:
        """The key this tape tracks ``x`` by, or None."""
        kind = type(x)
        if kind is Tensor:
            return x.key if x.key in self._live else None
        if kind is np.ndarray:
            found = self._arrays.get(id(x)) if self._arrays else None
            return None if found is None else found[0]
        found = self._variables.get(id(x))  # a Variable met before
        if found is not None and found[1] is x:
            return found[0]
        if isinstance(x, Tensor):
            if type(x) is _VariableRead:
                return self._variable_key(x.variable)
            return x.key if x.key in self._live else None
        if isinstance(x, np.ndarray):
            found = self._arrays.get(id(x)) if self._arrays else None
            return None if found is None else found[0]
        if isinstance(x, (int, float, np.generic)) or not is_variable(x):
            return None
        return self._variable_key(x)

    def input_keys(self, inputs: Sequence) -> list | None:
        """Each input's key (None where untracked), or None if no input is tracked."""
        key = self.key
        keys = [key(x) for x in inputs]
        for k in keys:
            if k is not None:
                return keys
        return None

    def append(self, entry: Entry) -> None:
        if self._entries is not None:
            self._entries.append(entry)
            self._live.update(entry.out_keys)

    def _variable_key(self, variable, watch: bool = False) -> int | None:
        found = self._variables.get(id(variable))
        if found is not None:
            return found[0]
        if not (watch or (self.watch_accessed_variables and variable.trainable)):
            return None
        if not is_float(variable):
            return None
        key = _new_key()
        self._variables[id(variable)] = (key, variable)
        self._live.add(key)
        return key

    # -- gradients
    def gradient(self, target, sources, output_gradients=None, unconnected_gradients: str = "none"):
        """d(sum of ``target``)/d``source`` for each source, in the sources' structure; None
        for a source the target does not depend on (zeros with ``unconnected_gradients='zero'``)."""
        if self._entries is None:
            raise RuntimeError(
                "A non-persistent GradientTape computes one set of gradients; make it with "
                "GradientTape(persistent=True) to call gradient() again"
            )
        if unconnected_gradients not in ("none", "zero"):
            raise ValueError(
                f"unconnected_gradients must be 'none' or 'zero'; got {unconnected_gradients!r}"
            )
        targets = _flatten(target)
        keys = [self._target_key(t, len(targets)) for t in targets]
        seeds = self._seeds(targets, output_gradients)
        flat_sources = _flatten(sources)
        source_keys = [self._source_key(s) for s in flat_sources]
        with paused([self]):
            grads = backward(self._entries, keys, seeds, source_keys)
        if not self.persistent:
            self.reset()
            self._entries = None
        result = [
            _finish(grads.get(k) if k is not None else None, s, unconnected_gradients)
            for k, s in zip(source_keys, flat_sources)
        ]
        return _pack(sources, iter(result))

    def _target_key(self, target, count: int) -> int:
        key = self.key(target)
        if key is None:
            which = "a target" if count > 1 else "the target"
            raise ValueError(
                f"GradientTape.gradient: {which} ({_describe(target)}) is not on this tape: it "
                "was not computed, while this tape recorded, from a value the tape watches (a "
                "trainable Variable, or x after tape.watch(x)). numpy functions and operators on "
                "a plain numpy array do not record: use fastnn.ops, or the tensor tape.watch "
                "returns"
            )
        return key

    def _seeds(self, targets: list, output_gradients) -> list:
        if output_gradients is None:
            return [np.ones(np.shape(unwrap(t)), np.result_type(unwrap(t))) for t in targets]
        seeds = _flatten(output_gradients)
        if len(seeds) != len(targets):
            raise ValueError(
                f"GradientTape.gradient: {len(seeds)} output_gradients for {len(targets)} targets"
            )
        return seeds

    def _source_key(self, source) -> int | None:
        if not (isinstance(source, (Tensor, np.ndarray)) or is_variable(source)):
            raise TypeError(
                "GradientTape.gradient: sources must be Variables, tensors or watched numpy "
                f"arrays; got {_describe(source)}"
            )
        return self.key(source) if not is_variable(source) else self._known_variable(source)

    def _known_variable(self, variable) -> int | None:
        found = self._variables.get(id(variable))
        return None if found is None else found[0]


def backward(entries: list[Entry], target_keys: list, seeds: list, source_keys: list) -> dict:
    """Replay ``entries`` in reverse from the targets; the gradient of every key on a path to a
    source, summed over fan-out."""
    wanted = set(source_keys)
    wanted.discard(None)
    needs = set(wanted)  # keys on a path from a source: only their gradients are computed
    plan = []  # (entry, which inputs need a gradient) for the entries on such a path
    for entry in entries:
        need = [k in needs for k in entry.in_keys]
        if True in need:
            needs.update(entry.out_keys)
            plan.append((entry, need))
    grads: dict[int, object] = {}
    for key, seed in zip(target_keys, seeds):
        grads[key] = seed if key not in grads else grads[key] + seed
    get, pop = grads.get, grads.pop
    for entry, need in reversed(plan):
        out_keys = entry.out_keys
        if len(out_keys) == 1:  # most entries: one output, without a list comprehension
            k = out_keys[0]
            g = get(k) if k in wanted else pop(k, None)
            if g is None:
                continue
            outs = [g]
        else:
            outs = [get(k) if k in wanted else pop(k, None) for k in out_keys]
            if all(g is None for g in outs):
                continue
        in_grads = entry.rule.backward(outs, entry.saved, entry.params, need)
        for key, grad, n in zip(entry.in_keys, in_grads, need):
            if n and grad is not None:
                before = get(key)
                grads[key] = grad if before is None else before + grad
    return grads


def _finish(grad, source, unconnected: str):
    """The source's gradient in its dtype: a writable array, or a Tensor an outer tape tracks."""
    value = unwrap(source)
    if grad is None:
        return np.zeros_like(value) if unconnected == "zero" else None
    dtype = np.result_type(value)
    if isinstance(grad, Tensor):
        return grad if grad.dtype == dtype else cast(grad, dtype)
    array = np.asarray(grad)
    if array.dtype != dtype or not array.flags.writeable:  # e.g. a broadcast view
        array = array.astype(dtype)
    return array


def _flatten(x) -> list:
    if isinstance(x, (list, tuple)):
        return [y for item in x for y in _flatten(item)]
    if isinstance(x, dict):
        return [y for k in x for y in _flatten(x[k])]
    return [x]


def _pack(structure, flat: Iterator):
    if isinstance(structure, (list, tuple)):
        return type(structure)(_pack(s, flat) for s in structure)
    if isinstance(structure, dict):
        return {k: _pack(v, flat) for k, v in structure.items()}
    return next(flat)


def _describe(x) -> str:
    if isinstance(x, Tensor):
        return f"a Tensor of shape {x.shape} and dtype {x.dtype}"
    if is_variable(x):
        return f"Variable '{x.name}' of shape {x.shape}"
    if isinstance(x, (np.ndarray, np.generic)):
        return f"a numpy array of shape {np.shape(x)} and dtype {x.dtype}"
    return f"a {type(x).__name__}"
