"""The data of fit / evaluate / predict as the trainer takes it: x, y and sample weights checked
and cast (one array per model input or output), class weights, validation splits, and the
batches of batch sources: ``PyDataset`` (keras.utils.PyDataset), generators, torch DataLoaders
and other iterables of batches (``BatchSource``).

Every check runs before any step, so a bad argument changes nothing; each error names the input or
output and shows what was expected next to what was given.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Iterator, Mapping

import numpy as np

from fastnn.seeding import make_rng

#: What x and y hold, as their errors name it: the model's inputs or outputs, and a count error.
_ROLES = {
    "x": ("inputs", "expects {n} input arrays {names}, got {k}"),
    "y": ("outputs", "has {n} outputs {names}, got {k} target arrays"),
}


def per_name(data, names: list[str], arg: str, owner: str, required=None) -> list:
    """``data`` for ``arg`` ('x': one entry per model input, 'y': per output, named ``names``)
    as a list in ``names``' order: a dict by name, a list or tuple (one entry per name; a list of
    one array for a single name), or one array. A dict may leave out the names not ``required``
    (default: all are), which get None. Errors name ``arg`` and the model ``owner``."""
    role, count_error = _ROLES[arg]
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - set(names))
        missing = [n for n in (names if required is None else required) if n not in data]
        if unknown or missing:
            raise ValueError(
                f"{arg} has keys {sorted(data)} but the model's {role} are {names}"
                + (f"; missing {missing}" if missing else "")
            )
        return [data.get(n) for n in names]
    if isinstance(data, (list, tuple)) and len(names) > 1:
        arrays = list(data)
    elif isinstance(data, (list, tuple)) and len(data) == 1 and _is_array_like(data[0]):
        arrays = [data[0]]
    else:
        arrays = [data]
    if len(arrays) != len(names):
        message = count_error.format(n=len(names), names=names, k=len(arrays))
        raise ValueError(f"Model '{owner}' {message}")
    return arrays


def standardize_x(x, names: list[str], inputs: list, owner: str, stream: bool = False) -> list:
    """x as one cast array per model input (``names``, symbolic ``inputs``), checked against the
    inputs' shapes; with ``stream`` (calls that read each sample once) cast batch by batch when
    read. ``owner`` is the model's name, for errors."""
    arrays = per_name(x, names, "x", owner)
    xs = [
        as_input(a, t.shape, t.dtype, f"input '{n}'", stream)
        for a, t, n in zip(arrays, inputs, names)
    ]
    if _common_length(xs, [f"x['{n}']" for n in names]) == 0:
        raise ValueError(f"Model '{owner}': the data has 0 samples")
    return xs


def standardize_y(y, names: list[str], losses: list, owner: str) -> list:
    """y as one array per output (``names``; None for outputs without a loss)."""
    needed = [n for n, loss in zip(names, losses) if loss is not None]
    result = []
    for name, arr, loss in zip(names, per_name(y, names, "y", owner, needed), losses):
        if arr is None:
            if loss is not None:
                raise ValueError(f"y for output '{name}' is missing")
            result.append(None)
            continue
        result.append(as_target(arr, f"y for output '{name}'"))
    return result


def _is_array_like(value) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "__array__")


def as_input(array, shape, dtype, what, stream=False):
    """One input array: rank adjusted as Keras does, shape and values checked, cast to the input's
    dtype once: whole, or with ``stream`` batch by batch as read (a ``CastOnRead``).

    fit() reads its data every epoch, so it casts once up front; evaluate() and predict() read
    each sample once and stream, so a large input is never copied whole."""
    if array is None:
        raise ValueError(f"{what} is missing: got None where its data belongs")
    arr = np.asarray(array)
    if arr.dtype == object:
        raise TypeError(f"{what}: expected numeric data, got an array of Python objects")
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected numeric data, got dtype {arr.dtype}")
    if arr.ndim == len(shape) - 1 and shape[-1] == 1:
        arr = arr[..., None]
    elif arr.ndim == len(shape) + 1 and arr.shape[-1] == 1 and len(shape) > 1:
        arr = arr[..., 0]
    if arr.ndim != len(shape) or any(
        e is not None and g != e for e, g in zip(shape[1:], arr.shape[1:])
    ):
        raise ValueError(f"{what} expects arrays of shape {shape}, got shape {arr.shape}")
    _check_finite(arr, dtype, what)
    _check_integer_range(arr, dtype, what)
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    if stream:
        return CastOnRead(arr, dtype)
    return np.ascontiguousarray(arr, dtype=dtype)


def as_target(array, what):
    """One target array: numeric, one per sample, finite; bool and non-float32 floats cast to
    float32 once (integer labels stay integers: sparse losses index by them)."""
    arr = np.asarray(array)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected numeric targets, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{what}: expected one target per sample, got a scalar")
    _check_finite(arr, np.float32, what)
    if arr.dtype.kind == "b" or (arr.dtype.kind == "f" and arr.dtype != np.float32):
        arr = arr.astype(np.float32)
    return arr


def as_sample_weight(sample_weight, loss_shapes):
    """sample_weight as float64, numeric and finite, shaped to weigh the per-sample losses of
    every output (``loss_shapes``: (output name, per-sample loss shape without the batch axis)
    of the outputs with a loss), so a bad one fails before any step rather than inside one. The
    number of samples is compared with x's by the caller."""
    arr = np.asarray(sample_weight)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight: expected numeric weights, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError("sample_weight: expected one weight per sample, got a scalar")
    arr = arr.astype(np.float64)
    _check_finite(arr, np.float64, "sample_weight")
    per_sample = arr.shape[1:]
    for name, shape in loss_shapes:
        if None in shape or (
            len(per_sample) > len(shape) and math.prod(per_sample) == math.prod(shape)
        ):
            continue  # losses._reduce reshapes a weight of the losses' size to their shape
        padded = per_sample + (1,) * (len(shape) - len(per_sample))
        if len(padded) != len(shape) or any(w not in (1, s) for w, s in zip(padded, shape)):
            raise ValueError(
                f"sample_weight of shape {arr.shape} does not match the per-sample losses of "
                f"output '{name}', of shape {(len(arr), *shape)}"
            )
    return arr


#: Bytes of values checked at a time: the finiteness check's temporaries stay this small.
_CHECK_BYTES = 1 << 22


def _check_finite(arr, dtype, what) -> None:
    """Raise a ValueError naming the first sample of float ``arr`` with a NaN or infinity, or
    with a value that overflows the float ``dtype`` it will be cast to; checked in chunks."""
    if arr.dtype.kind != "f" or arr.size == 0:
        return
    dtype = np.dtype(dtype)
    narrowing = dtype.kind == "f" and dtype.itemsize < arr.dtype.itemsize
    if not narrowing and arr.nbytes <= _CHECK_BYTES and math.isfinite(np.add.reduce(arr, None)):
        return  # a NaN or an infinity makes the sum one (a finite one may too: then look)
    rows = max(1, _CHECK_BYTES // arr[0].nbytes)
    for start in range(0, len(arr), rows):
        chunk = arr[start : start + rows]
        if narrowing:
            with np.errstate(over="ignore"):
                ok = np.isfinite(chunk.astype(dtype))
        else:
            ok = np.isfinite(chunk)
        if ok.all():
            continue
        row = start + int(np.argmin(ok.reshape(len(chunk), -1).all(axis=1)))
        if np.isfinite(arr[row]).all():
            raise ValueError(
                f"{what} has values beyond the range of {dtype.name} (first in sample {row})"
            )
        raise ValueError(f"{what} contains NaN or infinite values (first in sample {row})")


def _check_integer_range(arr, dtype, what) -> None:
    """Raise a ValueError naming the first value of ``arr`` that an integer ``dtype`` cannot
    hold (the cast would wrap it around: 2**32 + 3 into int32 is 3); one min and max when the
    cast is not safe, a search only on failure."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or arr.size == 0 or np.can_cast(arr.dtype, dtype):
        return
    info = np.iinfo(dtype)
    if info.min <= arr.min() and arr.max() <= info.max:
        return
    rows = arr.reshape(len(arr), -1)
    outside = (rows < info.min) | (rows > info.max)
    row = int(np.argmax(outside.any(axis=1)))
    value = rows[row][np.argmax(outside[row])]
    raise ValueError(
        f"{what} is {dtype.name}, which holds values in [{info.min}, {info.max}]; got {value} "
        f"(first in sample {row})"
    )


class CastOnRead:
    """A checked input that evaluate()/predict() read batch by batch: ``a[index]`` is a
    contiguous copy of those samples in the input's dtype, so the whole input is never copied."""

    __slots__ = ("array", "dtype")

    def __init__(self, array: np.ndarray, dtype):
        self.array = array
        self.dtype = np.dtype(dtype)

    def __len__(self) -> int:
        return len(self.array)

    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def __getitem__(self, index) -> np.ndarray:
        return np.ascontiguousarray(self.array[index], dtype=self.dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.ascontiguousarray(self.array, dtype=dtype or self.dtype)


def _common_length(arrays, names) -> int:
    sizes = {n: len(a) for n, a in zip(names, arrays)}
    if len(set(sizes.values())) > 1:
        raise ValueError(
            "Data cardinality is ambiguous: all inputs must have the same number of samples; "
            f"got {', '.join(f'{k}: {v}' for k, v in sizes.items())}"
        )
    return next(iter(sizes.values()))


def require_x(x, caller: str) -> None:
    if x is None:
        raise ValueError(
            f"{caller}: x is missing (None): pass the input data (an array, a list or dict of "
            "arrays, or a generator / PyDataset of batches)"
        )


def is_batch_source(x) -> bool:
    """Whether ``x`` yields batches rather than holding the data: a PyDataset (or any object
    with ``__len__`` and ``__getitem__``), a generator or iterator, a torch DataLoader or another
    iterable. Arrays, array-likes (tensors), lists, tuples, dicts and strings hold data."""
    if x is None or isinstance(x, (np.ndarray, list, tuple, Mapping, str, bytes)):
        return False
    if hasattr(x, "__array__"):
        return False
    return (
        hasattr(x, "__next__")
        or hasattr(x, "__iter__")
        or (hasattr(x, "__getitem__") and hasattr(x, "__len__"))
    )


def unpack_batch(item):
    """A batch from a generator, PyDataset or DataLoader as (x, y, sample_weight), tensors as
    numpy arrays: ``(x, y)``, ``(x, y, sample_weight)``, or x alone (an array, a dict of
    inputs by name, or ``(x,)``: a model that needs no targets, such as a GAN's train_step, as
    Keras takes it)."""
    if (
        isinstance(item, Mapping)
        or _is_array_like(item)
        or (hasattr(item, "shape") and hasattr(item, "dtype"))
    ):
        return as_numpy(item), None, None
    if not isinstance(item, (list, tuple)) or len(item) not in (1, 2, 3):
        raise ValueError(
            "Each batch from a generator, PyDataset or other iterable must be (x, y), "
            "(x, y, sample_weight) or x alone; got "
            f"{type(item).__name__}"
            + (f" of length {len(item)}" if isinstance(item, (list, tuple)) else "")
        )
    parts = [as_numpy(part) for part in item] + [None, None]
    return parts[0], parts[1], parts[2]


def as_numpy(value):
    """``value`` with every tensor in it (torch's, on any device, with or without gradients) as a
    numpy array; arrays, None and other values as they are; dicts, lists, tuples walked."""
    if value is None or isinstance(value, np.ndarray):
        return value
    if isinstance(value, Mapping):
        return {key: as_numpy(part) for key, part in value.items()}
    if isinstance(value, list):
        return [as_numpy(part) for part in value]
    if isinstance(value, tuple):
        return tuple(as_numpy(part) for part in value)
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def split_validation(xs, ys, sample_weight, fraction):
    """Keras's validation_split: the last ``fraction`` of the samples, before any shuffling."""
    n = len(xs[0])
    cut = int(n * (1.0 - fraction))
    if cut == 0 or cut == n:
        raise ValueError(
            f"validation_split={fraction} leaves no training or validation samples out of {n}"
        )

    def head(a):
        return None if a is None else a[:cut]

    def tail(a):
        return None if a is None else a[cut:]

    val = ([tail(a) for a in xs], [tail(a) for a in ys], tail(sample_weight))
    return [head(a) for a in xs], [head(a) for a in ys], head(sample_weight), val


def unpack_validation(data):
    if not isinstance(data, (list, tuple)) or len(data) not in (2, 3):
        raise ValueError(
            "validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight), "
            f"or a PyDataset, generator or other iterable of batches; got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (list, tuple)) else "")
        )
    return tuple(data) if len(data) == 3 else (data[0], data[1], None)


def with_class_weight(sample_weight, class_weight, ys):
    if class_weight is None:
        return sample_weight
    if not isinstance(class_weight, Mapping):
        raise TypeError(
            "class_weight must be a dict from class index to weight; got "
            f"{type(class_weight).__name__}"
        )
    targets = [y for y in ys if y is not None]
    if len(targets) != 1:
        raise ValueError("class_weight is supported only for models with a single output")
    y = targets[0]
    labels = (
        np.argmax(y, axis=-1) if y.ndim > 1 and y.shape[-1] > 1 else y.reshape(len(y), -1)[:, 0]
    )
    labels = np.rint(labels).astype(np.int64)
    unknown = sorted(set(np.unique(labels).tolist()) - set(class_weight))
    if unknown:
        raise ValueError(f"class_weight has no entry for class(es) {unknown}")
    per_class = _class_weights(class_weight)
    weights = np.array([per_class[int(c)] for c in labels], dtype=np.float64)
    return weights if sample_weight is None else weights * sample_weight


def _class_weights(class_weight: Mapping) -> dict:
    """class_weight's values as floats, each checked to be a finite number."""
    weights = {}
    for label, weight in class_weight.items():
        if not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            raise ValueError(
                f"class_weight: the weight of class {label!r} must be a finite number; "
                f"got {weight!r}"
            )
        weights[label] = float(weight)
    return weights


# ---- batches -----------------------------------------------------------------------------------
def batch_indices(n: int, batch_size: int, rng=None) -> Iterator:
    """The samples of each batch: slices in order, or with ``rng`` sorted indices of a shuffle."""
    order = rng.permutation(n) if rng is not None else None
    for start in range(0, n, batch_size):
        if order is None:
            yield slice(start, min(start + batch_size, n))
        else:
            yield np.sort(order[start : start + batch_size])


def take(arrays: list, index) -> list:
    """``arrays``' rows at ``index`` (None stays None)."""
    return [None if a is None else a[index] for a in arrays]


def array_batches(xs, ys, sample_weight, batch_size: int, shuffle_seed: int | None) -> Callable:
    """Per epoch: (x, y, sample_weight) batches of in-memory arrays, shuffled by
    ``(shuffle_seed, epoch)`` unless the seed is None."""

    def batches(epoch):
        rng = None if shuffle_seed is None else np.random.default_rng([shuffle_seed, epoch])
        for index in batch_indices(len(xs[0]), batch_size, rng):
            sw = None if sample_weight is None else sample_weight[index]
            yield take(xs, index), take(ys, index), sw

    return batches


# ---- batch sources: PyDatasets, generators, DataLoaders -----------------------------------------
class PyDataset:
    """Keras 3's base class for data written in Python: ``__len__`` is the number of batches and
    ``__getitem__(i)`` returns batch ``i`` as ``(x, y)``, ``(x, y, sample_weight)`` or x alone;
    ``on_epoch_begin`` / ``on_epoch_end`` run around each epoch. ``fit`` visits the batches in a
    new order each epoch unless ``shuffle=False``; ``evaluate`` and ``predict`` in order.

    ``workers``, ``use_multiprocessing`` and ``max_queue_size`` are Keras's arguments and are
    kept, but fastnn reads the batches one at a time in the calling thread.
    """

    # what a subclass that does not call super().__init__() has, as Keras's defaults
    workers, use_multiprocessing, max_queue_size = 1, False, 10

    def __init__(
        self, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10
    ):
        self.workers = workers
        self.use_multiprocessing = use_multiprocessing
        self.max_queue_size = max_queue_size

    def __getitem__(self, index):
        """Batch ``index``."""
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index)")

    def __iter__(self):
        batches = self.num_batches
        for index in range(batches) if batches is not None else itertools.count():
            yield self[index]

    @property
    def num_batches(self) -> int | None:
        """The number of batches (``len(self)``), or None for an endless dataset."""
        if hasattr(self, "__len__"):
            return len(self)
        raise NotImplementedError(
            "You need to implement the `num_batches` property:\n\n"
            "@property\ndef num_batches(self):\n  return ..."
        )

    def on_epoch_begin(self) -> None:
        """Called at the beginning of every epoch."""

    def on_epoch_end(self) -> None:
        """Called at the end of every epoch."""


def check_source(x, caller: str, y=None, sample_weight=None, validation_split=0.0) -> None:
    """Refuse what a batch source brings itself, as Keras does: y, sample_weight and a
    validation split belong in its batches (or validation_data)."""
    given = [
        name for name, value in (("y", y), ("sample_weight", sample_weight)) if value is not None
    ] + (["validation_split"] if validation_split else [])
    if given:
        raise ValueError(
            f"{caller}: a generator, PyDataset or other iterable yields (x, y) or "
            "(x, y, sample_weight) batches itself; pass y=None and sample_weight=None (and "
            f"validation_data instead of validation_split); got {', '.join(given)}"
        )


def _num_batches(source) -> int | None:
    if isinstance(source, PyDataset):
        try:
            return source.num_batches
        except NotImplementedError:
            return None
    if hasattr(source, "__len__") and not hasattr(source, "__next__"):
        try:
            return len(source)
        except TypeError:  # a DataLoader over an IterableDataset
            return None
    return None


class BatchSource:
    """The batches of a PyDataset, generator, torch DataLoader or other iterable, drawn epoch by
    epoch as Keras's EpochIterator draws them. With ``steps`` per epoch one iterator runs on
    across epochs (restarted once a source of known length is used up); without, each epoch
    reads the source afresh: a PyDataset or DataLoader again, a generator what is left of it.
    ``shuffle`` visits a PyDataset's batches in a new order each epoch, from fastnn's seed."""

    def __init__(self, source, steps: int | None = None, shuffle: bool = False):
        if steps is not None and (
            not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1
        ):
            raise ValueError(f"steps must be a positive integer or None; got {steps!r}")
        self.source = source
        self.steps = None if steps is None else int(steps)
        self.size = _num_batches(source)
        self.indexable = self.size is not None and (
            isinstance(source, PyDataset) or hasattr(source, "__getitem__")
        )
        self.shuffle = shuffle and isinstance(source, PyDataset) and self.size is not None
        self._iterator = None
        self._drawn = 0

    @property
    def steps_per_epoch(self) -> int | None:
        """Batches an epoch runs, when known before it runs."""
        return self.steps or self.size

    def _fresh(self):
        if not self.indexable:
            return iter(self.source)
        order = make_rng().permutation(self.size) if self.shuffle else range(self.size)
        return (self.source[int(index)] for index in order)

    def _items(self):
        steps = self.steps or self.size
        if not steps:  # an endless or unsized source without `steps`: until it stops
            yield from self._fresh()
            return
        if self._iterator is None or self.steps is None:
            self._iterator, self._drawn = self._fresh(), 0
        for _ in range(steps):
            if self.size is not None and self._drawn >= self.size:
                break
            try:
                item = next(self._iterator)
            except StopIteration:
                self._iterator = None
                return
            self._drawn += 1
            yield item
        if self.size is not None and self._drawn >= self.size:
            self._iterator = None

    def epoch(self, prepare: Callable | None = None) -> Iterator:
        """This epoch's batches as (x, y, sample_weight), or ``prepare(step, x, y,
        sample_weight)`` of each; the source's epoch hooks run around them."""
        _call_hook(self.source, "on_epoch_begin")
        for step, item in enumerate(self._items()):
            batch = unpack_batch(item)
            yield batch if prepare is None else prepare(step, *batch)
        _call_hook(self.source, "on_epoch_end")


def _call_hook(source, name: str) -> None:
    hook = getattr(source, name, None)
    if callable(hook):
        hook()


def source_batches(source, steps_per_epoch, prepare: Callable, shuffle: bool = False):
    """Per epoch: the batches of a batch source (``BatchSource``), each unpacked and passed
    through ``prepare(step, x, y, sample_weight)``, which checks it and returns (xs, ys, sw);
    the ``BatchSource`` itself is returned too."""
    batch_source = BatchSource(source, steps_per_epoch, shuffle)
    return (lambda epoch: batch_source.epoch(prepare)), batch_source
