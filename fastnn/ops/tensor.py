"""Values on a tape: ``Tensor`` (an array and the key tapes know it by) and the Python operators,
indexing and numpy interop that ``Tensor`` and ``Variable`` share (``TensorOps``): all go through
fastnn.ops, so ``x * 2 + b``, ``x[:, 0]`` and ``np.exp(x)`` record like ``ops.exp(x)``.
A numpy function without a fastnn op raises on a value a tape tracks instead of silently
dropping its gradient. Also: ``unwrap``/``as_array`` (an op's view of its inputs) and ``Spec``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np

from fastnn import backend
from fastnn.nodes import BINARY_OPERATORS, ORDER_COMPARISONS, SymbolicTensor


class OpError(ValueError):
    """An op's own argument or shape error: its message already names the op."""


class _Recording(threading.local):
    def __init__(self) -> None:
        self.tapes: list = []  # this thread's recording GradientTapes, innermost last


STATE = _Recording()

#: fastnn.ops functions by name, for the operators and numpy calls on a Tensor or Variable
#: (fastnn.ops.numpy fills it: it imports this file).
OPERATIONS: dict[str, Callable] = {}


def tracked(x) -> bool:
    """True if a recording tape of this thread tracks ``x``."""
    return any(tape.key(x) is not None for tape in STATE.tapes)


# ---- weight writes -----------------------------------------------------------------------------
class _WeightWrites:
    count = 0


def weights_written() -> None:
    """Note that weight values may have changed: every writer of weights in place (assign,
    optimizers, BatchNormalization's statistics, set_weights, loading) calls it after writing."""
    _WeightWrites.count += 1


def weights_generation() -> int:
    """A number that changes whenever weights may have been written (``weights_written``):
    what is computed from weights (a conv's packed kernel at inference) holds while it stays."""
    return _WeightWrites.count


# ---- values ------------------------------------------------------------------------------------
def is_variable(x) -> bool:
    """True for fastnn Variables: layer weights and ``fastnn.Variable``."""
    return isinstance(x, Variable)


def unwrap(x):
    """The array behind a Tensor or Variable; anything else as given."""
    if type(x) is np.ndarray or isinstance(x, (int, float, np.generic)):
        return x
    if isinstance(x, Tensor) or is_variable(x):
        return x.value
    if isinstance(x, SymbolicTensor):
        raise TypeError(
            f"a symbolic tensor ({x.name!r}, shape {x.shape}) reached code that computes on "
            "arrays: between layers use fastnn.ops functions (ops.mean(x, axis=1)) or "
            "operators (x + y), which add a node, or call the code in a layer's call()"
        )
    return x


def as_array(x, dtype=None) -> np.ndarray:
    """``x`` as an array; Python floats become ``floatx()`` and Python ints int32, as in Keras."""
    x = unwrap(x)
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)
    array = np.asarray(x)
    if dtype is None and array.dtype == np.float64:
        dtype = backend.floatx()
    elif dtype is None and array.dtype == np.int64 and _fits_int32(array):
        dtype = "int32"
    return array if dtype is None else array.astype(dtype)


def _fits_int32(array: np.ndarray) -> bool:
    return array.size > 0 and array.min() >= -(2**31) and array.max() < 2**31


def is_float(x) -> bool:
    """True for float values (arrays, tensors, Python floats): the ones with gradients."""
    if isinstance(x, float):
        return True
    kind = getattr(getattr(x, "dtype", None), "kind", None)
    return kind is not None and kind in "fc"


def _op(name: str) -> Callable:
    """The fastnn.ops function ``name``."""
    return OPERATIONS[name]


class TensorOps:
    """Python operators, indexing and numpy interop for ``Tensor`` and ``Variable``: all go
    through fastnn.ops, so they record on a tape."""

    __slots__ = ()
    __hash__ = object.__hash__  # by identity, though == is elementwise (as in Keras)

    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return np.ndim(self.value)

    @property
    def size(self) -> int:
        return np.size(self.value)

    @property
    def T(self):  # noqa: N802 (numpy's name)
        return _op("transpose")(self)

    def numpy(self) -> np.ndarray:
        return np.array(self.value)

    def reshape(self, *shape):
        return _op("reshape")(self, shape[0] if len(shape) == 1 else shape)

    def astype(self, dtype):
        return _op("cast")(self, dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = np.asarray(self.value, dtype=dtype)
        return array.copy() if copy else array.view()  # a new object: not a watched array

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        name = UFUNCS.get(ufunc.__name__) if method == "__call__" and not kwargs else None
        if name is not None:
            return _op(name)(*inputs)
        return _numpy_fallback(f"numpy.{ufunc.__name__}", inputs, kwargs, getattr(ufunc, method))

    def __array_function__(self, func, types, args, kwargs):
        if func.__name__ in FUNCTIONS:
            return _op(func.__name__)(*args, **kwargs)
        return _numpy_fallback(f"numpy.{func.__name__}", args, kwargs, func)

    def __len__(self) -> int:
        return len(self.value)

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(len(self)))

    def __bool__(self) -> bool:
        return bool(self.value)

    def __float__(self) -> float:
        return float(self.value)

    def __int__(self) -> int:
        return int(self.value)

    def __format__(self, spec: str) -> str:
        return format(np.asarray(self.value).item() if self.size == 1 else self.value, spec)

    def __getitem__(self, index):
        return _op("get_item")(self, index)

    def __setitem__(self, index, value) -> None:
        raise TypeError(
            f"{type(self).__name__} does not support item assignment; use "
            "fastnn.ops.slice_update or fastnn.ops.where (or .assign for a Variable)"
        )

    def __neg__(self):
        return _op("negative")(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _op("abs")(self)

    def __invert__(self):
        return _op("logical_not")(self)


def _binary(name: str, reflected: bool = False) -> Callable:
    def method(self, other):
        if type(other) is SymbolicTensor:  # a symbolic tensor's reflected operator adds a node
            return NotImplemented
        op = _op(name)
        return op(other, self) if reflected else op(self, other)

    method.__name__ = name
    return method


def bind_operators(ops: dict) -> None:
    """Take the fastnn.ops functions in ``ops`` for the operators and numpy calls (fastnn.ops.numpy
    calls it once it has them); the arithmetic operators point straight at them (a call less)."""
    OPERATIONS.update((name, op) for name, op in ops.items() if callable(op))
    for dunder, name in _ARITHMETIC.items():
        op = ops[name]
        setattr(TensorOps, f"__{dunder}__", _operator(op))
        setattr(TensorOps, f"__r{dunder}__", _operator(op, reflected=True))


def _operator(op: Callable, reflected: bool = False) -> Callable:
    """``self <op> other`` (or ``other <op> self``), deferring to a symbolic tensor's own
    operator (a Variable times a model's tensor in a traced call() adds a node)."""

    def method(self, other):
        if type(other) is SymbolicTensor:
            return NotImplemented
        return op(other, self) if reflected else op(self, other)

    method.__name__ = f"r{op.__name__}" if reflected else op.__name__
    return method


_ARITHMETIC = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "divide",
               "pow": "power", "matmul": "matmul"}  # fmt: skip

for _dunder, _name in BINARY_OPERATORS.items():
    setattr(TensorOps, f"__{_dunder}__", _binary(_name))
    setattr(TensorOps, f"__r{_dunder}__", _binary(_name, reflected=True))
for _dunder, _name in {**ORDER_COMPARISONS, "eq": "equal", "ne": "not_equal"}.items():
    setattr(TensorOps, f"__{_dunder}__", _binary(_name))


def _method(name: str, op: str | None = None) -> Callable:
    def method(self, *args, **kwargs):
        return _op(op or name)(self, *args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``fastnn.ops.{op or name}(self, ...)``, as numpy's method (records)."
    return method


# numpy's reductions and reshapes as methods (``y.sum(-1)``), through the fastnn.ops functions.
for _name in ("sum", "mean", "max", "min", "prod", "std", "var", "argmax", "argmin", "clip",
              "squeeze", "cumsum", "cumprod", "round", "any", "all", "dot"):  # fmt: skip
    setattr(TensorOps, _name, _method(_name))
TensorOps.ravel = TensorOps.flatten = lambda self: _op("reshape")(self, (-1,))

#: numpy ufuncs a Tensor routes to the fastnn.ops function of that name (or the one given).
UFUNCS = {
    **{n: n for n in (
        "add", "subtract", "multiply", "divide", "power", "floor_divide", "matmul", "negative",
        "exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "square", "sin", "cos", "tan",
        "sinh", "cosh", "tanh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh",
        "arctan2", "reciprocal", "sign", "floor", "ceil", "trunc", "maximum", "minimum",
        "logaddexp", "equal", "not_equal", "less", "less_equal", "greater", "greater_equal",
        "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite",
        "cbrt", "exp2", "hypot", "logaddexp2", "fmod", "fmax", "fmin", "deg2rad", "rad2deg",
        "fabs", "signbit",
    )},
    "true_divide": "divide", "absolute": "abs", "remainder": "mod", "rint": "round",
}  # fmt: skip

#: numpy functions a Tensor routes to the fastnn.ops function of the same name.
FUNCTIONS = frozenset([
    "sum", "mean", "max", "min", "amax", "amin", "prod", "std", "var", "all", "any", "argmax",
    "argmin", "cumsum", "cumprod", "reshape", "transpose", "expand_dims", "squeeze", "concatenate",
    "stack", "split", "take", "take_along_axis", "tile", "repeat", "pad", "sort", "argsort",
    "where", "clip", "dot", "matmul", "einsum", "tensordot", "outer", "broadcast_to", "flip",
    "roll", "swapaxes", "moveaxis", "ravel", "tril", "triu", "diagonal", "zeros_like", "ones_like",
    "full_like", "shape", "ndim", "size", "round", "average", "abs", "square", "sqrt", "exp",
    "log", "maximum", "minimum",
    # numpy_extra / numpy_more / linalg: the same names and arguments as numpy's
    "hstack", "vstack", "dstack", "append", "array_split", "hsplit", "vsplit", "dsplit", "diag",
    "diagflat", "trace", "fliplr", "flipud", "rot90", "diff", "median", "quantile", "percentile",
    "nansum", "nanmean", "nanmax", "nanmin", "nanprod", "nanstd", "nanvar", "nanmedian",
    "nanquantile", "nanpercentile", "nancumsum", "nancumprod", "ptp", "inner", "kron", "vdot",
    "cross", "correlate", "nan_to_num", "copy", "meshgrid", "select", "vander", "trapezoid",
    "sinc", "corrcoef", "real", "imag", "conj", "conjugate",
])  # fmt: skip


class NoGradientRule(TypeError):
    """A numpy function fastnn.ops has no counterpart of, called on a tensor a tape tracks."""


def _numpy_fallback(what: str, args, kwargs, func):
    if any(tracked(x) for x in _flat(args)):
        raise NoGradientRule(
            f"{what} has no gradient rule in fastnn and a recording tape tracks its input; "
            "use the fastnn.ops function, or ops.stop_gradient(x) to take the value alone"
        )
    args = [[unwrap(v) for v in a] if isinstance(a, (list, tuple)) else unwrap(a) for a in args]
    return func(*args, **{k: unwrap(v) for k, v in kwargs.items()})


def _flat(args) -> Iterator:
    for a in args:
        yield from (a if isinstance(a, (list, tuple)) else (a,))


class Tensor(TensorOps):
    """A value a recording tape computed from a watched one: ``value`` (its array) and ``key``."""

    __slots__ = ("value", "key")

    def __init__(self, value, key: int) -> None:
        self.value = value
        self.key = key

    def __repr__(self) -> str:
        body = np.array2string(np.asarray(self.value), prefix="Tensor(")
        return f"Tensor({body}, shape={self.shape}, dtype={self.dtype})"


class Variable(TensorOps):
    """A weight: its value array (updated in place), a gradient accumulator, and metadata.

    Python operators, indexing and numpy functions on it go through fastnn.ops (``x @ w + b``
    records on a tape), so ``==`` is elementwise, as in Keras: compare Variables by identity.
    Write it with ``assign`` (or a layer's ``set_weights``), or give it a new array
    (``w.value = array``): code that writes ``value`` in place otherwise must call
    ``weights_written()`` after, or inference may use the forms it kept of the old values.
    """

    __slots__ = ("_value", "grad", "name", "path", "trainable", "regularizer", "_constraint")

    def __init__(
        self,
        value: np.ndarray,
        name: str,
        path: str,
        trainable: bool,
        regularizer,
        constraint=None,
    ):
        self.value = value
        self.grad = np.zeros_like(value)
        self.name = name
        self.path = path
        self.trainable = trainable
        self.regularizer = regularizer
        self.constraint = constraint

    @property
    def constraint(self):
        """What the optimizer projects the value with after each update (``w = c(w)``), or
        None, as Keras's ``variable.constraint``."""
        return self._constraint

    @constraint.setter
    def constraint(self, value) -> None:
        if value is not None and not callable(value):
            raise ValueError(
                "Invalid value for attribute `constraint`. Expected a callable (such as a "
                "`keras.constraints.Constraint` instance) or `None`. "
                f"Received: constraint={value}"
            )
        self._constraint = value

    @property
    def value(self) -> np.ndarray:
        """The weight's array."""
        return self._value

    @value.setter
    def value(self, array: np.ndarray) -> None:
        self._value = array
        weights_written()  # what inference kept of the old array is stale

    @property
    def shape(self) -> tuple:
        return self.value.shape

    @property
    def dtype(self):
        return self.value.dtype

    def numpy(self) -> np.ndarray:
        return self.value.copy()

    def assign(self, value) -> np.ndarray:
        """Overwrite the value in place (same shape, or a scalar); returns it."""
        value = np.asarray(unwrap(value))
        if value.shape != self.value.shape and value.shape != ():
            raise ValueError(
                f"Cannot assign to variable '{self.path}': expected shape {self.value.shape}, "
                f"got {value.shape}"
            )
        self.value[...] = value
        weights_written()
        return self.value

    def assign_add(self, delta) -> np.ndarray:
        """Add ``delta`` to the value in place; returns it."""
        self.value += np.asarray(unwrap(delta), dtype=self.value.dtype)
        weights_written()
        return self.value

    def assign_sub(self, delta) -> np.ndarray:
        """Subtract ``delta`` from the value in place; returns it."""
        self.value -= np.asarray(unwrap(delta), dtype=self.value.dtype)
        weights_written()
        return self.value

    def __repr__(self) -> str:
        return f"<Variable path={self.path}, shape={self.shape}, dtype={self.dtype.name}>"


class _VariableRead(Tensor):
    """A Variable as a rule saves it while several tapes record: operators work on it, and each
    tape finds its own key for the variable behind it."""

    __slots__ = ("variable",)

    def __init__(self, variable) -> None:
        super().__init__(variable.value, -1)
        self.variable = variable


class Spec:
    """What a rule may read of a value it did not save: shape and dtype."""

    __slots__ = ("shape", "dtype")

    def __init__(self, value) -> None:
        if type(value) is np.ndarray:  # the common case, without lookups
            self.shape, self.dtype = value.shape, value.dtype
            return
        shape = getattr(value, "shape", None)
        self.shape = np.shape(value) if shape is None else shape
        self.dtype = getattr(value, "dtype", None)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))
