"""``split_dataset`` and ``timeseries_dataset_from_array`` on numpy arrays.

Keras returns tf.data (or torch) datasets from these; fastnn has neither, so ``split_dataset``
returns arrays in the structure it was given and ``timeseries_dataset_from_array`` an indexable,
re-iterable object of numpy batches that ``fit``, ``evaluate`` and ``predict`` take as they take
a PyDataset.
"""

from __future__ import annotations

import math
import random

import numpy as np

from fastnn.seeding import make_rng


# ---- split_dataset -----------------------------------------------------------------------------
def split_dataset(
    dataset,
    left_size=None,
    right_size=None,
    shuffle: bool = False,
    seed=None,
    preferred_backend=None,
):
    """Split an array, or a tuple / list of arrays of one length, into (left, right) of the same
    structure: the first ``left_size`` samples and the last ``right_size`` (an int: a count; a
    float: a fraction; None: the rest), after a shuffle with ``seed`` if ``shuffle``.

    Sizes, their errors and the shuffle's order (Python's ``random.Random(seed)``) are those of
    Keras's tf.data version; a shuffle without a seed draws one from fastnn's seeded generator.
    ``preferred_backend`` (Keras's choice between tf.data and torch datasets) is accepted and
    changes nothing: the splits are arrays.
    """
    arrays, structure = _dataset_arrays(dataset)
    if right_size is None and left_size is None:
        raise ValueError(
            "At least one of the `left_size` or `right_size` must be specified. "
            "Received: left_size=None and right_size=None"
        )
    total = len(arrays[0])
    left_size, right_size = _split_sizes(left_size, right_size, total)
    order = np.arange(total)
    if shuffle:
        if seed is None:
            seed = int(make_rng().integers(1_000_000))
        order = order.tolist()
        random.Random(seed).shuffle(order)
        order = np.asarray(order)
    left = [a[order[:left_size]] for a in arrays]
    right = [a[order[total - right_size :]] for a in arrays]
    if structure is np.ndarray:
        return left[0], right[0]
    return structure(left), structure(right)


def _dataset_arrays(dataset) -> tuple[list, type]:
    if isinstance(dataset, np.ndarray):
        if dataset.ndim == 0:
            raise ValueError("split_dataset: `dataset` is a scalar array; expected samples")
        return [dataset], np.ndarray
    if not isinstance(dataset, (tuple, list)):
        raise TypeError(
            "The `dataset` argument must be a NumPy array, or a list/tuple of arrays. "
            f"Received: dataset={dataset!r:.100} of type {type(dataset)}"
        )
    kind = type(dataset).__name__
    if len(dataset) == 0:
        raise ValueError(
            f"Received an empty {kind} dataset. Please provide a non-empty {kind} of arrays."
        )
    arrays = []
    for index, element in enumerate(dataset):
        if not isinstance(element, np.ndarray):
            raise ValueError(
                f"Expected a {kind} of `numpy.ndarray` objects, Received: {type(element)} at "
                f"index {index}."
            )
        if element.ndim == 0 or len(element) != len(dataset[0]):
            raise ValueError(
                f"Received a {kind} of NumPy arrays with different lengths. Mismatch found at "
                f"index {index}, Expected shape={dataset[0].shape} Received shape={element.shape}."
            )
        arrays.append(element)
    return arrays, type(dataset)


def _split_sizes(left_size, right_size, total: int) -> tuple[int, int]:
    """Keras's ``_rescale_dataset_split_sizes``: counts from ints and fractions, checked."""
    left_type, right_type = type(left_size), type(right_size)
    for name, size, kind in (
        ("left_size", left_size, left_type),
        ("right_size", right_size, right_type),
    ):
        if size is not None and kind not in (int, float):
            raise TypeError(
                f"Invalid `{name}` Type. Expected: int or float or None, Received: "
                f"type({name})={kind}."
            )
    if left_size == 0 and right_size == 0:
        raise ValueError(
            "Both `left_size` and `right_size` are zero. At least one of the split sizes must "
            "be non-zero."
        )
    for name, size, kind in (
        ("left_size", left_size, left_type),
        ("right_size", right_size, right_type),
    ):
        if (kind is int and (size <= 0 or size >= total)) or (
            kind is float and (size <= 0 or size >= 1)
        ):
            raise ValueError(
                f"`{name}` should be either a positive integer smaller than {total}, or a float "
                f"within the range `[0, 1]`. Received: {name}={size}"
            )
    if left_type is float and right_type is float and left_size + right_size > 1:
        raise ValueError(
            "The sum of `left_size` and `right_size` is greater than 1. It must be less than or "
            "equal to 1."
        )
    left = round(left_size * total) if left_type is float else left_size
    right = round(right_size * total) if right_type is float else right_size
    if left is None:
        left = total - right
    elif right is None:
        right = total - left
    if left + right > total:
        raise ValueError(
            f"The sum of `left_size` and `right_size` should be smaller than the {total}. "
            f"Received: left_size + right_size = {left + right} and total_length = {total}"
        )
    for split, side in ((left, "left"), (right, "right")):
        if split == 0:
            raise ValueError(
                f"With `dataset` of length={total}, `left_size`={left_size} and "
                f"`right_size`={right_size}. Resulting {side} side dataset split will be empty. "
                "Adjust any of the aforementioned parameters"
            )
    return int(left), int(right)


# ---- timeseries_dataset_from_array -------------------------------------------------------------
class TimeseriesDataset:
    """Batches of windows over a timeseries (and their targets), as numpy arrays: iterate it,
    index it (``ds[i]``, ``len(ds)`` batches), or pass it to fit / evaluate / predict."""

    def __init__(self, data, targets, starts, offsets, batch_size):
        self.data, self.targets = data, targets
        self.starts, self.offsets, self.batch_size = starts, offsets, batch_size

    def __len__(self) -> int:
        if self.batch_size is None:
            return len(self.starts)
        return math.ceil(len(self.starts) / self.batch_size)

    def __getitem__(self, index: int):
        if not -len(self) <= index < len(self):
            raise IndexError(f"batch {index} out of range: the dataset has {len(self)} batches")
        index %= len(self)
        if self.batch_size is None:
            starts = self.starts[index]
        else:
            starts = self.starts[index * self.batch_size : (index + 1) * self.batch_size]
        windows = self.data[np.add.outer(starts, self.offsets)]
        if self.targets is None:
            return windows
        return windows, self.targets[starts]

    def __iter__(self):
        for index in range(len(self)):
            yield self[index]


def timeseries_dataset_from_array(
    data,
    targets,
    sequence_length: int,
    sequence_stride: int = 1,
    sampling_rate: int = 1,
    batch_size: int | None = 128,
    shuffle: bool = False,
    seed=None,
    start_index=None,
    end_index=None,
    format: str = "tf",
) -> TimeseriesDataset:
    """Sliding windows over ``data`` (time on axis 0): window ``i`` holds
    ``data[s_i], data[s_i + sampling_rate], ...`` (``sequence_length`` steps), with
    ``s_i = start_index + i * sequence_stride``, and its target is ``targets[s_i - start_index]``
    counted from ``start_index``, as in Keras. Batches of ``batch_size`` windows (None: single
    windows); (windows, targets) pairs, or windows alone when ``targets`` is None.

    ``shuffle`` shuffles the windows' order with ``np.random.RandomState(seed)`` as Keras does;
    Keras's tf.data then also shuffles within a buffer, which fastnn does not. ``format``
    ('tf' or 'grain', Keras's kind of dataset) is checked and changes nothing.
    """
    data = np.asarray(data)
    _check_timeseries_arguments(len(data), start_index, end_index, sampling_rate, sequence_stride)
    if format not in ("tf", "grain"):
        raise ValueError(f'`format` should be either "tf" or "grain". Received: format={format}')
    for name, value in (("sequence_length", sequence_length), ("batch_size", batch_size)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value <= 0):
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    start_index = start_index or 0
    end_index = len(data) if end_index is None else end_index
    count = end_index - start_index - (sequence_length - 1) * sampling_rate
    if targets is not None:
        targets = np.asarray(targets)[start_index:end_index]
        count = min(count, len(targets))
    starts = np.arange(0, max(count, 0), sequence_stride)
    if shuffle:
        if seed is None:
            seed = int(make_rng().integers(1_000_000))
        np.random.RandomState(seed).shuffle(starts)
    offsets = np.arange(sequence_length) * sampling_rate
    return TimeseriesDataset(data[start_index:end_index], targets, starts, offsets, batch_size)


def _check_timeseries_arguments(length, start_index, end_index, sampling_rate, stride) -> None:
    """Keras's checks, in its order and words."""
    if start_index:
        if start_index < 0:
            raise ValueError(
                f"`start_index` must be 0 or greater. Received: start_index={start_index}"
            )
        if start_index >= length:
            raise ValueError(
                "`start_index` must be lower than the length of the data. Received: "
                f"start_index={start_index}, for data of length {length}"
            )
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(
                "`end_index` must be higher than `start_index`. Received: "
                f"start_index={start_index}, and end_index={end_index} "
            )
        if end_index >= length:
            raise ValueError(
                "`end_index` must be lower than the length of the data. Received: "
                f"end_index={end_index}, for data of length {length}"
            )
        if end_index <= 0:
            raise ValueError(f"`end_index` must be higher than 0. Received: end_index={end_index}")
    if sampling_rate <= 0:
        raise ValueError(
            f"`sampling_rate` must be higher than 0. Received: sampling_rate={sampling_rate}"
        )
    if sampling_rate >= length:
        raise ValueError(
            "`sampling_rate` must be lower than the length of the data. Received: "
            f"sampling_rate={sampling_rate}, for data of length {length}"
        )
    if stride <= 0:
        raise ValueError(
            f"`sequence_stride` must be higher than 0. Received: sequence_stride={stride}"
        )
    if stride >= length:
        raise ValueError(
            "`sequence_stride` must be lower than the length of the data. Received: "
            f"sequence_stride={stride}, for data of length {length}"
        )
