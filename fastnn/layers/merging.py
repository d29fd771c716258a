"""Layers that merge a list of tensors: Concatenate, Add, Subtract, Multiply, Average, Maximum,
Dot."""

from __future__ import annotations

import numpy as np

from fastnn import kernels, runtime
from fastnn.kernels.codes import LINEAR
from fastnn.kernels.workspace import scratch, scratch_copy
from fastnn.layers.base import Layer


class _Merge(Layer):
    """Base for merge layers: a list of inputs. As in Keras 3 a list of one is accepted (the
    output is a copy of it), so code that merges a variable number of branches runs with one."""

    def _check_list(self, input_shape):
        if not isinstance(input_shape, list) or not input_shape:
            given = "an empty list" if isinstance(input_shape, list) else "a single tensor"
            raise ValueError(
                f"{type(self).__name__} '{self.name}': expected a list of at least 1 input; "
                f"got {given}"
            )

    def build(self, input_shape):
        self._check_list(input_shape)
        self.compute_output_shape(input_shape)

    def check_input_shape(self, input_shape):
        self.build(input_shape)


class Concatenate(_Merge):
    """Joins inputs along ``axis``; all other axes must match.

    Example: ``Concatenate()([x1, x2])`` with (batch, 32) and (batch, 16) gives (batch, 48).
    """

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool) or axis == 0:
            raise ValueError(
                f"Concatenate '{self.name}': `axis` must be a non-zero integer (axis 0 is the "
                f"batch axis); got axis={axis!r}"
            )
        self.axis = int(axis)

    def compute_output_shape(self, input_shape):
        self._check_list(input_shape)
        ranks = {len(s) for s in input_shape}
        if len(ranks) != 1:
            raise ValueError(
                f"Concatenate '{self.name}': inputs must have the same rank; got "
                + " and ".join(str(tuple(s)) for s in input_shape)
            )
        rank = ranks.pop()
        axis = self.axis % rank if -rank <= self.axis < rank else None
        if axis is None or axis == 0:
            raise ValueError(
                f"Concatenate '{self.name}': axis {self.axis} is invalid for inputs of rank "
                f"{rank}; expected an axis in 1..{rank - 1} or -{rank - 1}..-1"
            )
        out = list(input_shape[0])
        for shape in input_shape[1:]:
            for i, (a, b) in enumerate(zip(out, shape)):
                if i == axis:
                    continue
                if a is not None and b is not None and a != b:
                    raise ValueError(
                        f"Concatenate '{self.name}': inputs must match on every axis but axis "
                        f"{self.axis}; got " + " and ".join(str(tuple(s)) for s in input_shape)
                    )
                out[i] = a if a is not None else b
        sizes = [s[axis] for s in input_shape]
        out[axis] = None if any(d is None for d in sizes) else sum(sizes)
        self._axis = axis
        return tuple(out)

    uses_workspace = True

    def forward(self, inputs, training, workspace=None):
        axis = self.axis % inputs[0].ndim
        sizes = [x.shape[axis] for x in inputs]
        shape = list(inputs[0].shape)
        shape[axis] = sum(sizes)
        dtype = np.result_type(*inputs)
        out = scratch(workspace, "y", shape, dtype)
        if _by_rows(axis, out, dtype):  # channels: whole rows at a time, on fastnn's threads
            parts = tuple(np.ascontiguousarray(x, dtype).reshape(-1, x.shape[-1]) for x in inputs)
            kernels.columns.concatenate(parts, out.reshape(-1, shape[-1]), runtime.threads())
            return out, (axis, sizes, workspace)
        return np.concatenate(inputs, axis=axis, out=out), (axis, sizes, workspace)

    def backward(self, ctx, grad_outputs):
        axis, sizes, workspace = ctx
        if _by_rows(axis, grad_outputs, grad_outputs.dtype):
            values = np.ascontiguousarray(grad_outputs)
            rows = values.reshape(-1, values.shape[-1])
            parts = tuple(
                scratch(workspace, f"dx{i}", (len(rows), size), values.dtype)
                for i, size in enumerate(sizes)
            )
            kernels.columns.split(rows, parts, runtime.threads())
            return [part.reshape(*values.shape[:-1], size) for part, size in zip(parts, sizes)]
        index = [slice(None)] * grad_outputs.ndim
        grads, start = [], 0
        for i, size in enumerate(sizes):  # slicing: np.split costs more than the copies here
            index[axis] = slice(start, start + size)
            grads.append(scratch_copy(workspace, f"dx{i}", grad_outputs[tuple(index)]))
            start += size
        return grads

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _by_rows(axis: int, array: np.ndarray, dtype) -> bool:
    """Whether a concatenation along ``axis`` of ``array``'s shape runs as ``kernels.columns``'s
    rows: along the last axis of float arrays of ``BY_ROWS_MIN_VALUES`` values or more."""
    if array.size < BY_ROWS_MIN_VALUES or axis != array.ndim - 1 or array.ndim == 1:
        return False
    return dtype in (np.float32, np.float64)


# Below this many values numpy's concatenation costs less than a kernel call (the seed's
# multi-input MLP, 32 x 48 values a batch, trained 5% slower by rows).
BY_ROWS_MIN_VALUES = 1 << 16


def _broadcast_shape(layer, input_shape):
    """Output shape of an elementwise merge: axes equal or 1 (broadcast); None is unknown."""
    layer._check_list(input_shape)
    rank = max(len(s) for s in input_shape)
    out = [1] * rank
    for shape in input_shape:
        padded = _aligned_shape(shape, rank)
        for i, d in enumerate(padded):
            if d == 1 or d is None and out[i] != 1:
                continue
            if out[i] in (1, None):
                out[i] = d
            elif out[i] != d:
                raise ValueError(
                    f"{type(layer).__name__} '{layer.name}': inputs must have the same shape "
                    "(or broadcast: axes equal or 1); got "
                    + " and ".join(str(tuple(s)) for s in input_shape)
                )
    return tuple(out)


def _aligned_shape(shape, rank):
    """A lower-rank input gets axes of length 1 after the batch axis (as Keras's Merge)."""
    return (*shape[:1], *(1,) * (rank - len(shape)), *shape[1:])


def _align(inputs):
    rank = max(x.ndim for x in inputs)
    return [x.reshape(_aligned_shape(x.shape, rank)) for x in inputs]


def _reduce_to(grad, shape):
    """Sum a broadcast gradient back down to an input's shape."""
    if grad.shape == shape:
        return grad
    aligned = _aligned_shape(shape, grad.ndim)
    axes = tuple(i for i, (g, s) in enumerate(zip(grad.shape, aligned)) if s == 1 and g != 1)
    return (grad.sum(axis=axes, keepdims=True) if axes else grad).reshape(shape)


def sum_arrays(inputs, workspace=None):
    """The sum of broadcastable arrays, in one array of the broadcast shape (``workspace``'s)."""
    if len(inputs) == 1:
        return inputs[0].copy()
    shape = np.broadcast_shapes(*(x.shape for x in inputs))
    out = scratch(workspace, "sum", shape, np.result_type(*inputs))
    a, b = inputs[:2]
    same = a.shape == b.shape == shape and a.dtype == b.dtype == out.dtype
    if same and out.dtype in (np.float32, np.float64) and out.size:
        add_rows(a, b, LINEAR, out)
    else:
        np.add(a, b, out=out)
    for x in inputs[2:]:
        out += x
    return out


def add_rows(a, b, code, out):
    """out = act(a + b), act relu or none (code RELU or LINEAR), for float arrays of out's
    shape and dtype: one pass by rows on every thread (numpy's add runs on one)."""
    rows = out.reshape(-1, out.shape[-1])
    a, b = (np.ascontiguousarray(x).reshape(rows.shape) for x in (a, b))
    kernels.activations.add_activation_forward(a, b, code, rows)
    return out


def add_call(inputs, code):
    """An inference call (``Layer.inference_call``) of ``add_rows``: act(a + b) for two float
    inputs of one shape and dtype, into a buffer of its own; None for other inputs."""
    if len(inputs) != 2:
        return None
    a, b = inputs
    same = a.shape == b.shape and a.dtype == b.dtype
    if not same or a.dtype not in (np.float32, np.float64) or a.ndim == 0 or a.size == 0:
        return None
    out = np.empty(a.shape, a.dtype)
    return lambda inputs: add_rows(inputs[0], inputs[1], code, out)


class _Elementwise(_Merge):
    def compute_output_shape(self, input_shape):
        return _broadcast_shape(self, input_shape)


class Add(_Elementwise):
    """Sums a list of inputs of the same shape. Example: ``Add()([x, shortcut])``."""

    uses_workspace = True  # a fresh array a call costs its page faults (2-4 ms at 17 MB)

    def forward(self, inputs, training, workspace=None):
        return sum_arrays(_align(inputs), workspace), [x.shape for x in inputs]

    def inference_call(self, inputs):
        return add_call(inputs, LINEAR)

    def backward(self, ctx, grad_outputs):
        return [_reduce_to(grad_outputs, shape) for shape in ctx]


class Subtract(_Elementwise):
    """``inputs[0] - inputs[1]``, exactly two inputs."""

    def _check_list(self, input_shape):
        super()._check_list(input_shape)
        if len(input_shape) != 2:
            raise ValueError(
                f"Subtract '{self.name}': expected exactly 2 inputs; got {len(input_shape)}"
            )

    def forward(self, inputs, training):
        a, b = _align(inputs)
        return a - b, [x.shape for x in inputs]

    def backward(self, ctx, grad_outputs):
        return [_reduce_to(grad_outputs, ctx[0]), -_reduce_to(grad_outputs, ctx[1])]


class Multiply(_Elementwise):
    """Elementwise product of a list of inputs. Example: ``Multiply()([a, b])``."""

    def forward(self, inputs, training):
        aligned = _align(inputs)
        out = aligned[0] * aligned[1] if len(aligned) > 1 else aligned[0].copy()
        for x in aligned[2:]:
            out = out * x
        return out, (aligned, [x.shape for x in inputs])

    def backward(self, ctx, grad_outputs):
        aligned, shapes = ctx
        grads = []
        for i, shape in enumerate(shapes):
            others = grad_outputs
            for j, y in enumerate(aligned):
                if j != i:
                    others = others * y
            grads.append(_reduce_to(others, shape))
        return grads


class Average(_Elementwise):
    """Elementwise mean of a list of inputs."""

    def forward(self, inputs, training):
        out = sum_arrays(_align(inputs))
        out /= out.dtype.type(len(inputs))
        return out, [x.shape for x in inputs]

    def backward(self, ctx, grad_outputs):
        scaled = grad_outputs / grad_outputs.dtype.type(len(ctx))
        return [_reduce_to(scaled, shape) for shape in ctx]


class _Extremum(_Elementwise):
    """The elementwise ``_pick`` (np.maximum or np.minimum) of a list of inputs; its gradient
    goes to the input that was picked (ties: to the first)."""

    _pick = staticmethod(np.maximum)

    def forward(self, inputs, training):
        aligned = _align(inputs)
        out = aligned[0] if len(aligned) > 1 else aligned[0].copy()
        for x in aligned[1:]:
            out = self._pick(out, x)
        return out, (aligned, out, [x.shape for x in inputs])

    def backward(self, ctx, grad_outputs):
        aligned, out, shapes = ctx
        taken = np.zeros(out.shape, dtype=bool)
        grads = []
        for x, shape in zip(aligned, shapes):
            mine = (np.broadcast_to(x, out.shape) == out) & ~taken
            taken |= mine
            grads.append(_reduce_to(np.where(mine, grad_outputs, 0).astype(out.dtype), shape))
        return grads


class Maximum(_Extremum):
    """Elementwise maximum of a list of inputs (ties send the gradient to the first)."""

    _pick = staticmethod(np.maximum)


class Minimum(_Extremum):
    """Elementwise minimum of a list of inputs (ties send the gradient to the first)."""

    _pick = staticmethod(np.minimum)


class Dot(_Merge):
    """Batchwise dot product of two inputs over ``axes`` (an int, or one axis per input);
    ``normalize=True`` L2-normalizes both along those axes first (cosine similarity).

    Example: ``Dot(axes=1)([a, b])`` with (batch, 8) and (batch, 8) gives (batch, 1); with
    (batch, 5, 8) and (batch, 7, 8), ``axes=2`` gives (batch, 5, 7).
    """

    def __init__(self, axes, normalize: bool = False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(axes, int):
            if not isinstance(axes, (list, tuple)):
                raise TypeError(
                    "Invalid type for argument `axes`: it should be a list or an int. "
                    f"Received: axes={axes}"
                )
            if len(axes) != 2:
                raise ValueError(
                    "Invalid format for argument `axes`: it should contain two elements. "
                    f"Received: axes={axes}"
                )
            if not all(isinstance(a, int) for a in axes):
                raise ValueError(
                    "Invalid format for argument `axes`: list elements should be integers. "
                    f"Received: axes={axes}"
                )
            axes = list(axes)
        self.axes, self.normalize = axes, bool(normalize)

    def _dot_axes(self, input_shape) -> tuple[int, int]:
        if not isinstance(input_shape, list) or len(input_shape) != 2:
            raise ValueError(
                f"Dot '{self.name}': expected a list of 2 inputs; got "
                f"{len(input_shape) if isinstance(input_shape, list) else 'a single tensor'}"
            )
        pair = [self.axes] * 2 if isinstance(self.axes, int) else self.axes
        axes = []
        for axis, shape in zip(pair, input_shape):
            rank = len(shape)
            if rank < 2 or not -rank <= axis < rank or axis % rank == 0:
                raise ValueError(
                    f"Dot '{self.name}': axis {axis} is not a non-batch axis of an input of "
                    f"shape {tuple(shape)} (the batch axis 0 cannot be summed over)"
                )
            axes.append(axis % rank)
        first, second = (input_shape[i][axes[i]] for i in range(2))
        if first is not None and second is not None and first != second:
            raise ValueError(
                f"Dot '{self.name}': Incompatible input shapes: axis values {first} (at axis "
                f"{axes[0]}) != {second} (at axis {axes[1]}). Full input shapes: "
                f"{tuple(input_shape[0])}, {tuple(input_shape[1])}"
            )
        return axes[0], axes[1]

    def compute_output_shape(self, input_shape):
        a0, a1 = self._dot_axes(input_shape)
        first, second = list(input_shape[0]), list(input_shape[1])
        del first[a0], second[a1]
        out = first + second[1:]
        return tuple(out + [1] if len(out) == 1 else out)

    def forward(self, inputs, training):
        a0, a1 = self._dot_axes([x.shape for x in inputs])
        x, y = inputs
        scales = None
        if self.normalize:
            (x, inv_x), (y, inv_y) = _l2_normalized(x, a0), _l2_normalized(y, a1)
            scales = (x, inv_x, y, inv_y)
        rows = np.moveaxis(x, a0, -1)
        cols = np.moveaxis(y, a1, 1)
        rows = rows.reshape(len(x), -1, rows.shape[-1])
        cols = cols.reshape(len(y), cols.shape[1], -1)
        out = np.matmul(rows, cols).reshape(
            len(x), *self.compute_output_shape([x.shape, y.shape])[1:]
        )
        return out, (rows, cols, x.shape, y.shape, a0, a1, scales)

    def backward(self, ctx, grad_outputs):
        rows, cols, x_shape, y_shape, a0, a1, scales = ctx
        grad = grad_outputs.reshape(len(rows), rows.shape[1], cols.shape[2])
        grad_rows = np.matmul(grad, cols.transpose(0, 2, 1))
        grad_cols = np.matmul(rows.transpose(0, 2, 1), grad)
        moved_x = (*x_shape[:a0], *x_shape[a0 + 1 :], x_shape[a0])  # a0 moved last
        moved_y = (y_shape[0], y_shape[a1], *(d for i, d in enumerate(y_shape) if i not in (0, a1)))
        grad_x = np.moveaxis(grad_rows.reshape(moved_x), -1, a0)
        grad_y = np.moveaxis(grad_cols.reshape(moved_y), 1, a1)
        if scales is not None:
            x, inv_x, y, inv_y = scales
            grad_x = _l2_normalized_backward(grad_x, x, inv_x, a0)
            grad_y = _l2_normalized_backward(grad_y, y, inv_y, a1)
        return [np.ascontiguousarray(grad_x), np.ascontiguousarray(grad_y)]

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


#: Keras's ``ops.normalize``: 1 / norm is capped at 1 / epsilon (backend.epsilon()).
_NORMALIZE_EPSILON = 1e-7


def _l2_normalized(x, axis):
    """(x / ||x|| along ``axis``, 1 / ||x|| capped at 1 / epsilon), as Keras's normalize."""
    inv = 1 / np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    inv = np.minimum(inv, x.dtype.type(1 / _NORMALIZE_EPSILON))
    return x * inv, inv


def _l2_normalized_backward(grad, normed, inv, axis):
    """The gradient of x given that of ``_l2_normalized(x)[0]`` (normed, inv from it)."""
    capped = inv >= normed.dtype.type(1 / _NORMALIZE_EPSILON)
    along = np.sum(grad * normed, axis=axis, keepdims=True)
    return inv * np.where(capped, grad, grad - normed * along)


def concatenate(inputs, axis: int = -1, **kwargs):
    """Functional form of ``Concatenate(axis)(inputs)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def add(inputs, **kwargs):
    """Functional form of ``Add()(inputs)``."""
    return Add(**kwargs)(inputs)


def subtract(inputs, **kwargs):
    """Functional form of ``Subtract()(inputs)``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs, **kwargs):
    """Functional form of ``Multiply()(inputs)``."""
    return Multiply(**kwargs)(inputs)


def average(inputs, **kwargs):
    """Functional form of ``Average()(inputs)``."""
    return Average(**kwargs)(inputs)


def dot(inputs, axes=-1, **kwargs):
    """Functional form of ``Dot(axes)(inputs)``."""
    return Dot(axes=axes, **kwargs)(inputs)


def maximum(inputs, **kwargs):
    """Functional form of ``Maximum()(inputs)``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs, **kwargs):
    """Functional form of ``Minimum()(inputs)``."""
    return Minimum(**kwargs)(inputs)
