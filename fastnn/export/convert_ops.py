"""ONNX converter of ``TensorOp`` nodes: the ``fastnn.ops`` ops and Python operators written
between the layers of a Functional model (``x + y``, ``x[:, 0]``, ``ops.mean(x, axis=1)``).

Each op of ``OPS`` writes its ONNX form from its arguments as the user passed them, bound to
the op's signature: symbolic tensors are ``Operand``s (an ONNX value and its dtype), the rest
the constants written. Values are computed in the dtype the node's output has in the model
(numpy's promotion, which fastnn's ops follow), so ``x * 2`` on float32 stays float32. An op
missing from ``OPS``, or an argument form an op here does not convert (advanced indexing, a
reduction's ``initial``...), is refused with the node's name.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from fastnn.export.builder import Value
from fastnn.export.convert_core import activation
from fastnn.export.registry import Call, converter
from fastnn.layers import tensor_op

#: ONNX Slice's "to the end" bounds.
_INT_MAX = np.iinfo(np.int64).max


class Operand:
    """A symbolic argument of the op: its ONNX name (Keras's layout) and dtype."""

    __slots__ = ("name", "dtype", "shape")

    def __init__(self, name: str, dtype, shape: tuple):
        self.name, self.dtype, self.shape = name, np.dtype(dtype), shape

    @property
    def rank(self) -> int:
        return len(self.shape)


class OpCall:
    """One TensorOp being converted: its builder, arguments and output."""

    def __init__(self, call: Call, arguments: dict):
        self.call, self.b, self.hint = call, call.builder, call.hint
        self.arguments = arguments
        self.out_dtype = np.dtype(call.output_dtypes[0])
        self.out_shape = call.output_shapes[0]

    def refuse(self, why: str):
        return self.call.refuse(f"fastnn.ops.{self.call.layer.op}: {why}")

    def tensor(self, value, dtype=None) -> str:
        """``value`` (an Operand or a constant) as an ONNX tensor of ``dtype`` (default the
        output's)."""
        dtype = self.out_dtype if dtype is None else np.dtype(dtype)
        if isinstance(value, Operand):
            return value.name if value.dtype == dtype else self.b.cast(value.name, dtype, self.hint)
        try:  # numbers, arrays, and lists or tuples of numbers
            array = np.asarray(value)
        except ValueError:
            array = None
        if array is None or array.dtype.kind not in "biuf":
            raise self.refuse(f"an argument of type {type(value).__name__} has no ONNX form")
        return self.b.const(array, f"{self.hint}/const", dtype=dtype)

    def common_dtype(self, *values) -> np.dtype:
        """The dtype numpy computes ``values`` in (Python scalars weak, as NEP 50)."""
        return np.result_type(*(v.dtype if isinstance(v, Operand) else v for v in values))

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        return self.b.op(op_type, inputs, self.hint, **attrs)

    def axes(self, axis, rank: int) -> list[int]:
        """``axis`` (None: all; an int or a sequence) as sorted non-negative axes."""
        if axis is None:
            return list(range(rank))
        axes = [axis] if isinstance(axis, (int, np.integer)) else list(axis)
        return sorted(int(a) % rank for a in axes)

    def operand(self, name: str = "x") -> Operand:
        value = self.arguments[name]
        if not isinstance(value, Operand):
            raise self.refuse(f"`{name}` must be a tensor of the model")
        return value


def _bound(call: Call) -> dict:
    """The op's arguments by name, symbolic tensors as Operands, defaults filled in."""
    layer = call.layer
    values = [
        Operand(call.builder.native(v, call.hint).name, dtype, v.shape)
        for v, dtype in zip(call.inputs, call.input_dtypes)
    ]
    args, kwargs = tensor_op._filled(layer.template, values)
    bound = inspect.signature(tensor_op._op(layer.op)).bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


@converter(tensor_op.TensorOp)
def _tensor_op(call: Call):
    layer = call.layer
    emit = OPS.get(layer.op)
    if emit is None:
        raise call.refuse(
            f"the op fastnn.ops.{layer.op} has no ONNX form in this exporter (ops between "
            f"layers that export: {', '.join(sorted(OPS))})"
        )
    if len(call.output_shapes) != 1:
        raise call.refuse(f"fastnn.ops.{layer.op} gives several outputs")
    return [Value(emit(OpCall(call, _bound(call))), call.output_shapes[0])]


# ---- elementwise ---------------------------------------------------------------------------
def _binary(op_type: str, compare: bool = False):
    """An elementwise binary op: operands in the output's dtype, or compared in their common
    one (``compare``)."""

    def emit(o: OpCall) -> str:
        x1, x2 = o.arguments["x1"], o.arguments["x2"]
        dtype = o.common_dtype(x1, x2) if compare else None
        return o.op(op_type, [o.tensor(x1, dtype), o.tensor(x2, dtype)])

    return emit


def _logical(op_type: str):
    def emit(o: OpCall) -> str:
        return o.op(op_type, [o.tensor(o.arguments[k], bool) for k in ("x1", "x2")])

    return emit


def _not_equal(o: OpCall) -> str:
    return o.op("Not", [_binary("Equal", compare=True)(o)])


def _floor_divide(o: OpCall) -> str:
    if o.out_dtype.kind != "f":
        raise o.refuse("integer floor division has no exact ONNX form here (ONNX's truncates)")
    return o.op("Floor", [_binary("Div")(o)])


def _mod(o: OpCall) -> str:
    """numpy's mod (the divisor's sign): ONNX's Mod for integers, x - floor(x / y) y for
    floats (ONNX's float Mod is C's fmod)."""
    if o.out_dtype.kind != "f":
        return _binary("Mod")(o)
    x, y = o.tensor(o.arguments["x1"]), o.tensor(o.arguments["x2"])
    return o.op("Sub", [x, o.op("Mul", [o.op("Floor", [o.op("Div", [x, y])]), y])])


def _divide_no_nan(o: OpCall) -> str:
    x, y = o.tensor(o.arguments["x1"]), o.tensor(o.arguments["x2"])
    zero = o.tensor(0)
    return o.op("Where", [o.op("Equal", [y, zero]), zero, o.op("Div", [x, y])])


def _unary(*op_types: str):
    """An elementwise op as a chain of one-input ONNX operators, in the output's dtype."""

    def emit(o: OpCall) -> str:
        name = o.tensor(o.arguments["x"])
        for op_type in op_types:
            name = o.op(op_type, [name])
        return name

    return emit


def _with_constant(op_type: str, constant: float, first: bool = False, then: str | None = None):
    """``op_type(x, constant)`` (``first``: the constant first), then the unary ``then``."""

    def emit(o: OpCall) -> str:
        x, c = o.tensor(o.arguments["x"]), o.tensor(constant)
        name = o.op(op_type, [c, x] if first else [x, c])
        return o.op(then, [name]) if then else name

    return emit


def _square(o: OpCall) -> str:
    x = o.tensor(o.arguments["x"])
    return o.op("Mul", [x, x])


def _scaled_log(base: float):
    return lambda o: o.op("Div", [_unary("Log")(o), o.tensor(math.log(base))])


def _round(o: OpCall) -> str:
    if o.arguments["decimals"] != 0:
        raise o.refuse("round with decimals has no exact ONNX form here")
    return _unary("Round")(o)  # half to even, as numpy


def _logical_not(o: OpCall) -> str:
    return o.op("Not", [o.tensor(o.arguments["x"], bool)])


def _cast(o: OpCall) -> str:
    return o.tensor(o.operand())


def _clip(o: OpCall) -> str:
    """numpy's clip: minimum(maximum(x, low), high)."""
    name = o.tensor(o.arguments["x"])
    low, high = o.arguments["x_min"], o.arguments["x_max"]
    if low is not None:
        name = o.op("Max", [name, o.tensor(low)])
    if high is not None:
        name = o.op("Min", [name, o.tensor(high)])
    return name


def _where(o: OpCall) -> str:
    x1, x2 = o.arguments["x1"], o.arguments["x2"]
    if x1 is None or x2 is None:
        raise o.refuse("where(condition) alone (the indices) has no fixed shape")
    condition = o.tensor(o.arguments["condition"], bool)
    return o.op("Where", [condition, o.tensor(x1), o.tensor(x2)])


# ---- activations ---------------------------------------------------------------------------
def _activation(name: str):
    """A Keras activation of ``convert_core`` on the op's x."""

    def emit(o: OpCall) -> str:
        x = Value(o.tensor(o.arguments["x"]), o.out_shape)
        return activation(o.call, x, name).name

    return emit


def _along_axis(op_type: str):
    def emit(o: OpCall) -> str:
        x = o.operand()
        return o.op(op_type, [o.tensor(x)], axis=int(o.arguments["axis"]) % x.rank)

    return emit


def _elu(o: OpCall) -> str:
    return o.op("Elu", [o.tensor(o.arguments["x"])], alpha=float(o.arguments["alpha"]))


def _leaky_relu(o: OpCall) -> str:
    slope = float(o.arguments["negative_slope"])
    return o.op("LeakyRelu", [o.tensor(o.arguments["x"])], alpha=slope)


def _gelu(o: OpCall) -> str:
    """The tanh approximation (ops.gelu's default) or the exact erf form."""
    if not o.arguments["approximate"]:
        return _activation("gelu")(o)
    x = o.tensor(o.arguments["x"])
    if o.b.opset >= 20:
        return o.op("Gelu", [x], approximate="tanh")
    cube = o.op("Mul", [o.op("Mul", [x, x]), x])
    inner = o.op("Add", [x, o.op("Mul", [cube, o.tensor(0.044715)])])
    gate = o.op("Tanh", [o.op("Mul", [inner, o.tensor(math.sqrt(2 / math.pi))])])
    half = o.op("Mul", [x, o.tensor(0.5)])
    return o.op("Mul", [half, o.op("Add", [gate, o.tensor(1.0)])])


def _log_sigmoid(o: OpCall) -> str:
    return o.op("Neg", [o.op("Softplus", [o.op("Neg", [o.tensor(o.arguments["x"])])])])


# ---- reductions ----------------------------------------------------------------------------
def _reduction(op_type: str):
    def emit(o: OpCall) -> str:
        x = o.operand()
        if o.arguments.get("initial") is not None or o.arguments.get("dtype") is not None:
            raise o.refuse("`initial` and `dtype` are not converted")
        axes = o.axes(o.arguments["axis"], x.rank)
        return o.b.reduce(op_type, o.tensor(x), axes, o.hint, bool(o.arguments["keepdims"]))

    return emit


def _moments(std: bool):
    """var (or std): the mean of the squared deviations from the mean (numpy's ddof=0)."""

    def emit(o: OpCall) -> str:
        x = o.operand()
        axes, keep = o.axes(o.arguments["axis"], x.rank), bool(o.arguments["keepdims"])
        name = o.tensor(x)
        deviation = o.op("Sub", [name, o.b.reduce("ReduceMean", name, axes, o.hint)])
        squared = o.op("Mul", [deviation, deviation])
        result = o.b.reduce("ReduceMean", squared, axes, o.hint, keep)
        return o.op("Sqrt", [result]) if std else result

    return emit


def _arg_extreme(op_type: str):
    def emit(o: OpCall) -> str:
        x = o.operand()
        name, axis = x.name, o.arguments["axis"]
        keep = int(bool(o.arguments["keepdims"]))
        if axis is None and keep:
            raise o.refuse("keepdims over the flattened tensor is not converted")
        if axis is None:  # over the flattened tensor
            name, axis = o.b.reshape(name, [-1], o.hint), 0
        result = o.op(op_type, [name], axis=int(axis) % max(x.rank, 1), keepdims=keep)
        return result if o.out_dtype == np.int64 else o.b.cast(result, o.out_dtype, o.hint)

    return emit


def _cumsum(o: OpCall) -> str:
    x, axis = o.operand(), o.arguments["axis"]
    name = o.tensor(x)
    if axis is None:
        name, axis = o.b.reshape(name, [-1], o.hint), 0
    return o.op("CumSum", [name, o.b.ints(int(axis) % max(x.rank, 1), f"{o.hint}/axis")])


# ---- shapes --------------------------------------------------------------------------------
def _reshape(o: OpCall) -> str:
    """A first None (the batch size, as ``ops.shape(x)[0]`` gives it) is ONNX's 0: x's own."""
    shape = o.arguments["newshape"]
    shape = [shape] if isinstance(shape, (int, np.integer)) else list(shape)
    if 0 in shape or None in shape[1:]:
        raise o.refuse(f"a reshape to {tuple(shape)} is not converted (a size 0, or a None "
                       "past the first axis)")  # fmt: skip
    shape = [0 if d is None else int(d) for d in shape]
    return o.b.reshape(o.tensor(o.operand()), shape, o.hint)


def _transpose(o: OpCall) -> str:
    x, axes = o.operand(), o.arguments["axes"]
    perm = list(range(x.rank))[::-1] if axes is None else [int(a) % x.rank for a in axes]
    return o.b.transpose(o.tensor(x), perm, o.hint)


def _moveaxis(o: OpCall) -> str:
    x = o.operand()
    source = np.atleast_1d(o.arguments["source"]) % x.rank
    destination = np.atleast_1d(o.arguments["destination"]) % x.rank
    order = [a for a in range(x.rank) if a not in set(source.tolist())]
    for dest, src in sorted(zip(destination.tolist(), source.tolist())):
        order.insert(dest, src)
    return o.b.transpose(o.tensor(x), order, o.hint)


def _swapaxes(o: OpCall) -> str:
    x = o.operand()
    perm = list(range(x.rank))
    a, b = int(o.arguments["axis1"]) % x.rank, int(o.arguments["axis2"]) % x.rank
    perm[a], perm[b] = perm[b], perm[a]
    return o.b.transpose(o.tensor(x), perm, o.hint)


def _expand_dims(o: OpCall) -> str:
    x, axis = o.operand(), o.arguments["axis"]
    count = 1 if isinstance(axis, (int, np.integer)) else len(axis)
    return o.b.unsqueeze(o.tensor(x), o.axes(axis, x.rank + count), o.hint)


def _squeeze(o: OpCall) -> str:
    x, axis = o.operand(), o.arguments["axis"]
    # axis None: the axes of size 1 the model knows (a None batch axis stays)
    known_ones = [i for i, d in enumerate(x.shape) if d == 1]
    axes = known_ones if axis is None else o.axes(axis, x.rank)
    return o.op("Squeeze", [o.tensor(x), o.b.ints(axes, f"{o.hint}/axes")])


def _sequence(o: OpCall, name: str) -> list:
    values = o.arguments[name]
    if isinstance(values, Operand) or not isinstance(values, (list, tuple)):
        raise o.refuse(f"`{name}` must be a list of tensors")
    return list(values)


def _rank_of(o: OpCall, values: list) -> int:
    return next(v.rank for v in values if isinstance(v, Operand))


def _concatenate(o: OpCall) -> str:
    xs = _sequence(o, "xs")
    axis = int(o.arguments["axis"]) % _rank_of(o, xs)
    return o.op("Concat", [o.tensor(x) for x in xs], axis=axis)


def _stack(o: OpCall) -> str:
    xs = _sequence(o, "x")
    axis = int(o.arguments["axis"]) % (_rank_of(o, xs) + 1)
    parts = [o.b.unsqueeze(o.tensor(x), [axis], o.hint) for x in xs]
    return o.op("Concat", parts, axis=axis)


def _flip(o: OpCall) -> str:
    x = o.operand()
    axes = o.axes(o.arguments["axis"], x.rank)
    count = len(axes)
    return o.b.slice(o.tensor(x), [-1] * count, [-_INT_MAX] * count, axes, o.hint, [-1] * count)


def _broadcast_to(o: OpCall) -> str:
    shape = o.b.ints([int(d) for d in o.arguments["shape"]], f"{o.hint}/shape")
    return o.op("Expand", [o.tensor(o.operand()), shape])


def _tile(o: OpCall) -> str:
    x = o.operand()
    repeats = np.atleast_1d(o.arguments["repeats"]).astype(np.int64).tolist()
    if len(repeats) > x.rank:
        raise o.refuse("more repeats than the tensor has axes are not converted")
    repeats = [1] * (x.rank - len(repeats)) + repeats  # numpy's: leading axes repeat once
    return o.op("Tile", [o.tensor(x), o.b.ints(repeats, f"{o.hint}/repeats")])


def _take(o: OpCall) -> str:
    x, axis = o.operand(), o.arguments["axis"]
    name = o.tensor(x)
    if axis is None:
        name, axis = o.b.reshape(name, [-1], o.hint), 0
    indices = o.tensor(o.arguments["indices"], np.int64)
    return o.op("Gather", [name, indices], axis=int(axis) % max(x.rank, 1))


def _pad(o: OpCall) -> str:
    x = o.operand()
    if o.arguments["mode"] != "constant":
        raise o.refuse(f"mode={o.arguments['mode']!r}: only 'constant' padding is converted")
    widths = np.broadcast_to(np.asarray(o.arguments["pad_width"], np.int64), (x.rank, 2))
    pads = o.b.ints([*widths[:, 0].tolist(), *widths[:, 1].tolist()], f"{o.hint}/pads")
    fill = o.arguments["constant_values"]
    return o.op("Pad", [o.tensor(x), pads, o.tensor(0 if fill is None else fill)], mode="constant")


def _matmul(o: OpCall) -> str:
    return o.op("MatMul", [o.tensor(o.arguments["x1"]), o.tensor(o.arguments["x2"])])


def _einsum(o: OpCall) -> str:
    operands = [o.tensor(v) for v in o.arguments["operands"]]
    return o.op("Einsum", operands, equation=str(o.arguments["subscripts"]).replace(" ", ""))


def _get_item(o: OpCall) -> str:
    """Basic indexing (ints, slices, None, Ellipsis) as one Slice, a Squeeze of the integer
    axes and an Unsqueeze of the new ones."""
    x, key = o.operand(), o.arguments["key"]
    key = key if isinstance(key, tuple) else (key,)
    for part in key:
        basic = part is None or part is Ellipsis or isinstance(part, slice)
        if not basic and (isinstance(part, (bool, np.bool_)) or not _is_int(part)):
            raise o.refuse("only basic indexing (ints, slices, None, ...) is converted")
    consumed = sum(1 for part in key if part is not None and part is not Ellipsis)
    if consumed > x.rank or sum(part is Ellipsis for part in key) > 1:
        raise o.refuse(f"the index {key!r} does not fit a tensor of rank {x.rank}")
    if Ellipsis not in key:
        key = (*key, Ellipsis)
    at = key.index(Ellipsis)
    key = (*key[:at], *[slice(None)] * (x.rank - consumed), *key[at + 1 :])
    sliced, dropped, added = [], [], []  # (axis, start, end, step); axes; output positions
    axis = position = 0
    for part in key:
        if part is None:
            added.append(position)
            position += 1
            continue
        if isinstance(part, slice):
            if part != slice(None):
                sliced.append((axis, *_slice_bounds(part)))
            position += 1
        else:
            index = int(part)
            sliced.append((axis, index, index + 1 if index != -1 else _INT_MAX, 1))
            dropped.append(axis)
        axis += 1
    name = o.tensor(x)
    if sliced:
        axes, starts, ends, steps = (list(column) for column in zip(*sliced))
        name = o.b.slice(name, starts, ends, axes, o.hint, steps)
    if dropped:
        name = o.op("Squeeze", [name, o.b.ints(dropped, f"{o.hint}/dropped")])
    if added:
        name = o.b.unsqueeze(name, added, o.hint)
    return name


def _slice_bounds(part: slice) -> tuple:
    """(start, end, step) of a slice as ONNX's Slice reads them (numpy's defaults)."""
    step = 1 if part.step is None else int(part.step)
    start = part.start if part.start is not None else (0 if step > 0 else -1)
    end = part.stop if part.stop is not None else (_INT_MAX if step > 0 else -_INT_MAX)
    return int(start), int(end), step


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer))


def _identity(o: OpCall) -> str:
    return o.op("Identity", [o.tensor(o.arguments["x"])])


#: fastnn.ops op names (and the Python operators' ops) -> fn(OpCall) -> ONNX output name.
OPS = {
    "add": _binary("Add"),
    "subtract": _binary("Sub"),
    "multiply": _binary("Mul"),
    "divide": _binary("Div"),
    "true_divide": _binary("Div"),
    "power": _binary("Pow"),
    "maximum": _binary("Max"),
    "minimum": _binary("Min"),
    "floor_divide": _floor_divide,
    "mod": _mod,
    "divide_no_nan": _divide_no_nan,
    "equal": _binary("Equal", compare=True),
    "not_equal": _not_equal,
    "less": _binary("Less", compare=True),
    "less_equal": _binary("LessOrEqual", compare=True),
    "greater": _binary("Greater", compare=True),
    "greater_equal": _binary("GreaterOrEqual", compare=True),
    "logical_and": _logical("And"),
    "logical_or": _logical("Or"),
    "logical_xor": _logical("Xor"),
    "logical_not": _logical_not,
    "negative": _unary("Neg"),
    "abs": _unary("Abs"),
    "absolute": _unary("Abs"),
    "exp": _unary("Exp"),
    "log": _unary("Log"),
    "sqrt": _unary("Sqrt"),
    "rsqrt": _unary("Sqrt", "Reciprocal"),
    "reciprocal": _unary("Reciprocal"),
    "square": _square,
    "sin": _unary("Sin"),
    "cos": _unary("Cos"),
    "tan": _unary("Tan"),
    "arcsin": _unary("Asin"),
    "arccos": _unary("Acos"),
    "arctan": _unary("Atan"),
    "sinh": _unary("Sinh"),
    "cosh": _unary("Cosh"),
    "arcsinh": _unary("Asinh"),
    "arccosh": _unary("Acosh"),
    "arctanh": _unary("Atanh"),
    "tanh": _unary("Tanh"),
    "erf": _unary("Erf"),
    "floor": _unary("Floor"),
    "ceil": _unary("Ceil"),
    "sign": _unary("Sign"),
    "round": _round,
    "log1p": _with_constant("Add", 1.0, then="Log"),
    "expm1": lambda o: o.op("Sub", [_unary("Exp")(o), o.tensor(1.0)]),
    "exp2": _with_constant("Pow", 2.0, first=True),
    "log2": _scaled_log(2.0),
    "log10": _scaled_log(10.0),
    "cast": _cast,
    "clip": _clip,
    "where": _where,
    "identity": _identity,
    "copy": _identity,
    "relu": _activation("relu"),
    "relu6": _activation("relu6"),
    "sigmoid": _activation("sigmoid"),
    "softplus": _activation("softplus"),
    "softsign": _activation("softsign"),
    "silu": _activation("silu"),
    "swish": _activation("silu"),
    "hard_sigmoid": _activation("hard_sigmoid"),
    "hard_silu": _activation("hard_silu"),
    "hard_swish": _activation("hard_silu"),
    "selu": _activation("selu"),
    "elu": _elu,
    "leaky_relu": _leaky_relu,
    "gelu": _gelu,
    "log_sigmoid": _log_sigmoid,
    "softmax": _along_axis("Softmax"),
    "log_softmax": _along_axis("LogSoftmax"),
    "sum": _reduction("ReduceSum"),
    "mean": _reduction("ReduceMean"),
    "max": _reduction("ReduceMax"),
    "amax": _reduction("ReduceMax"),
    "min": _reduction("ReduceMin"),
    "amin": _reduction("ReduceMin"),
    "prod": _reduction("ReduceProd"),
    "logsumexp": _reduction("ReduceLogSumExp"),
    "var": _moments(std=False),
    "std": _moments(std=True),
    "argmax": _arg_extreme("ArgMax"),
    "argmin": _arg_extreme("ArgMin"),
    "cumsum": _cumsum,
    "reshape": _reshape,
    "transpose": _transpose,
    "moveaxis": _moveaxis,
    "swapaxes": _swapaxes,
    "expand_dims": _expand_dims,
    "squeeze": _squeeze,
    "concatenate": _concatenate,
    "stack": _stack,
    "flip": _flip,
    "broadcast_to": _broadcast_to,
    "tile": _tile,
    "take": _take,
    "pad": _pad,
    "matmul": _matmul,
    "einsum": _einsum,
    "get_item": _get_item,
}
