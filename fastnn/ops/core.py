"""Core ops: conversion, dtype and shape queries, casts, slices, stop_gradient, custom_gradient."""

from __future__ import annotations

import builtins
import functools
import re
from collections.abc import Callable

import numpy as np

from fastnn.ops import tape
from fastnn.ops.tape import OpError, Tensor, apply, as_array, cast, is_variable, paused, unwrap  # noqa: F401 (cast: fastnn.ops.cast)

__all__ = [
    "associative_scan", "cast", "cond", "convert_to_numpy", "convert_to_tensor",
    "custom_gradient", "dtype", "fori_loop", "is_tensor", "map", "scan", "shape", "slice",
    "slice_update", "stop_gradient", "switch", "unstack", "vectorize", "vectorized_map",
    "while_loop",
]  # fmt: skip


def convert_to_tensor(x, dtype=None, sparse=None, ragged=None):
    """``x`` as an array (a tensor a tape tracks stays one); Python floats become floatx."""
    if sparse or ragged:
        raise ValueError("convert_to_tensor: fastnn has no sparse or ragged tensors")
    if isinstance(x, Tensor) or (is_variable(x) and tape.tracked(x)):
        return x if dtype is None or np.dtype(dtype) == x.dtype else cast(x, dtype)
    return as_array(x, dtype)


def convert_to_numpy(x) -> np.ndarray:
    """A numpy copy of ``x`` (a tensor, a Variable, a list); a constant to every tape."""
    return np.array(unwrap(x))


def is_tensor(x) -> bool:
    """True for what fastnn.ops return: numpy arrays and tape Tensors."""
    return isinstance(x, (np.ndarray, Tensor))


def shape(x) -> tuple:
    """The shape of ``x`` as a tuple of ints."""
    return tuple(np.shape(unwrap(x)))


def dtype(x) -> str:
    """The dtype name of ``x``, e.g. 'float32'."""
    return np.result_type(unwrap(x)).name


def stop_gradient(variable) -> np.ndarray:
    """The value of ``variable`` with no gradient: a plain array, a constant to every tape
    (a new view, so that not even a watched numpy array is seen again)."""
    return np.asarray(unwrap(variable)).view()


def slice(inputs, start_indices, shape):  # noqa: A001 (Keras's name)
    """The block of ``shape`` starting at ``start_indices``: (...) -> shape."""
    return apply("get_item", _get_item, inputs, index=_block(start_indices, shape))


def slice_update(inputs, start_indices, updates):
    """``inputs`` with the block at ``start_indices`` replaced by ``updates`` (a new array)."""
    index = _block(start_indices, np.shape(unwrap(updates)))
    return apply("slice_update", _slice_update, inputs, updates, index=index)


def _block(start_indices, shape) -> tuple:
    starts = [int(s) for s in np.asarray(unwrap(start_indices)).reshape(-1)]
    return tuple(builtins.slice(s, s + int(n)) for s, n in zip(starts, shape))


def _get_item(x, index):
    return as_array(x)[index]


def _slice_update(x, updates, index):
    out = np.array(as_array(x))
    if out[index].shape != np.shape(updates):
        raise ValueError(f"the block {out[index].shape} does not match the updates")
    out[index] = updates
    return out


def custom_gradient(f: Callable) -> Callable:
    """Decorator: ``f(*args) -> (output, grad_fn)`` becomes a function whose gradient is
    ``grad_fn(*upstream) -> one gradient per arg``; ops inside ``f`` are not recorded."""

    @functools.wraps(f)
    def wrapper(*args):
        with paused():
            output, grad_fn = f(*args)
        outputs = list(output) if isinstance(output, (list, tuple)) else [output]
        if not tape.STATE.tapes:
            return output
        results = tape.record(
            lambda grads: grad_fn(*grads), args, outputs, name=f"custom_gradient({f.__name__})"
        )
        return type(output)(results) if isinstance(output, (list, tuple)) else results[0]

    return wrapper


def stack(x, axis: int = 0):
    """Arrays of one shape stacked along a new ``axis``."""
    return apply("stack", lambda *vs, axis: np.stack(vs, axis), *x, axis=axis)


def unstack(x, num: int | None = None, axis: int = 0) -> list:
    """The slices of ``x`` along ``axis``: (..., n, ...) -> n arrays of (..., ...)."""
    n = np.shape(unwrap(x))[axis]
    if num is not None and num != n:
        raise OpError(f"unstack: num={num} but axis {axis} of shape {shape(x)} has {n}")
    lead = (builtins.slice(None),) * (axis % len(shape(x)))
    return [apply("get_item", _get_item, x, index=(*lead, i)) for i in range(n)]


# ---- control flow: eager Python, so the ops inside record as usual ---------------------------
def cond(pred, true_fn: Callable, false_fn: Callable):
    """``true_fn()`` if ``pred`` else ``false_fn()``."""
    return true_fn() if bool(unwrap(pred)) else false_fn()


def switch(index, branches: list, *operands):
    """``branches[index](*operands)``, the index clamped to the branches."""
    i = builtins.min(builtins.max(int(unwrap(index)), 0), len(branches) - 1)
    return branches[i](*operands)


def fori_loop(lower: int, upper: int, body_fun: Callable, init_val):
    """``val = body_fun(i, val)`` for i in [lower, upper); the final val."""
    val = init_val
    for i in range(int(lower), int(upper)):
        val = body_fun(i, val)
    return val


def while_loop(cond: Callable, body: Callable, loop_vars, maximum_iterations=None):
    """``loop_vars = body(*loop_vars)`` while ``cond(*loop_vars)``, at most maximum_iterations."""
    packed = isinstance(loop_vars, (list, tuple))
    state = tuple(loop_vars) if packed else (loop_vars,)
    count = 0
    while bool(unwrap(cond(*state))) and (maximum_iterations is None or count < maximum_iterations):
        state = body(*state)
        state = tuple(state) if isinstance(state, (list, tuple)) else (state,)
        count += 1
    return type(loop_vars)(state) if packed else state[0]


def map(f: Callable, xs):  # noqa: A001 (Keras's name)
    """``f`` on each slice of ``xs`` along axis 0, the results stacked."""
    return stack([f(x) for x in unstack(xs)])


def vectorized_map(function: Callable, elements):
    """``function`` on each slice along axis 0 (of every tensor in a tuple), results stacked."""
    if isinstance(elements, (list, tuple)):
        return stack([function(type(elements)(e)) for e in zip(*(unstack(x) for x in elements))])
    return stack([function(x) for x in unstack(elements)])


def scan(f: Callable, init, xs=None, length=None, reverse: bool = False, unroll: int = 1):
    """``carry, y = f(carry, x)`` over xs (or ``length`` steps of None): (final carry, stacked
    ys)."""
    steps = [None] * int(length) if xs is None else unstack(xs)
    carry, ys = init, []
    for x in reversed(steps) if reverse else steps:
        carry, y = f(carry, x)
        ys.append(y)
    if reverse:
        ys.reverse()
    return carry, (stack(ys) if ys and ys[0] is not None else None)


def associative_scan(f: Callable, elems, reverse: bool = False, axis: int = 0):
    """Running ``f``-combination along ``axis`` of elems (an array, or a list/tuple of arrays
    that ``f`` takes and returns alike): entry i is f(...f(e0, e1)..., ei). ``f`` gets slices
    that keep ``axis`` (size 1), as Keras's backends batch them."""
    packed = isinstance(elems, (list, tuple))
    arrays = list(elems) if packed else [elems]
    lengths = {np.shape(unwrap(a))[axis] for a in arrays}
    if len(lengths) != 1:
        raise OpError(
            "associative_scan: every elem needs the same size along axis "
            f"{axis}; got shapes {[np.shape(unwrap(a)) for a in arrays]}"
        )
    n = lengths.pop()
    lead = (builtins.slice(None),) * (axis % np.ndim(unwrap(arrays[0])))

    def step(i):
        part = [apply("get_item", _get_item, a, index=(*lead, builtins.slice(i, i + 1)))
                for a in arrays]  # fmt: skip
        return type(elems)(part) if packed else part[0]

    order = range(n - 1, -1, -1) if reverse else range(n)
    results, carry = [], None
    for i in order:
        carry = step(i) if carry is None else f(carry, step(i))
        results.append(list(carry) if packed else [carry])
    if reverse:
        results.reverse()
    joined = [_concatenate([r[j] for r in results], axis) for j in range(len(arrays))]
    return type(elems)(joined) if packed else joined[0]


def _concatenate(parts: list, axis: int):
    return apply("concatenate", lambda *vs, axis: np.concatenate(vs, axis), *parts, axis=axis)


def vectorize(pyfunc: Callable, *, excluded=None, signature: str | None = None) -> Callable:
    """``pyfunc`` mapped over the leading (broadcast) axes of its array arguments, as
    np.vectorize: each call gets one element (or, with a gufunc ``signature`` such as
    '(n),(n)->()', one core block); results are stacked, so gradients flow."""
    excluded = set(excluded or ())
    core_dims = _parse_signature(signature) if signature else None

    @functools.wraps(pyfunc)
    def wrapper(*args, **kwargs):
        mapped = [i for i in range(len(args)) if i not in excluded]
        cores = core_dims or [()] * len(mapped)
        if len(cores) != len(mapped):
            raise OpError(
                f"vectorize: signature {signature!r} names {len(cores)} inputs; got {len(mapped)}"
            )
        loops = [np.shape(unwrap(args[i]))[: np.ndim(unwrap(args[i])) - len(c)]
                 for i, c in zip(mapped, cores)]  # fmt: skip
        batch = np.broadcast_shapes(*loops) if loops else ()
        outputs = []
        for index in np.ndindex(*batch):
            call = list(args)
            for i, loop in zip(mapped, loops):
                own = tuple(
                    0 if n == 1 else k for k, n in zip(index[len(batch) - len(loop) :], loop)
                )
                call[i] = apply("get_item", _get_item, args[i], index=own) if own else args[i]
            outputs.append(pyfunc(*call, **kwargs))
        if not outputs:
            raise OpError("vectorize: the inputs' loop axes are empty")
        if isinstance(outputs[0], (list, tuple)):
            return type(outputs[0])(
                _stacked([o[j] for o in outputs], batch) for j in range(len(outputs[0]))
            )
        return _stacked(outputs, batch)

    return wrapper


def _stacked(values: list, batch: tuple):
    if not batch:
        return values[0]
    joined = stack([v if isinstance(v, Tensor) else as_array(v) for v in values])
    return apply("reshape", lambda v, newshape: np.reshape(v, newshape), joined,
                 newshape=(*batch, *np.shape(unwrap(joined))[1:]))  # fmt: skip


def _parse_signature(signature: str) -> list:
    """The core dimensions of each input of a gufunc signature '(m,n),(n)->(m)'."""
    inputs = signature.replace(" ", "").split("->")[0]
    return [tuple(d for d in group.split(",") if d) for group in re.findall(r"\(([^)]*)\)", inputs)]
