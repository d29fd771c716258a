"""fastnn.utils' data helpers against Keras 3's: to_categorical, normalize, pad_sequences,
split_dataset, timeseries_dataset_from_array, PyDataset."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_twin import keras_module

import fastnn
from fastnn import utils
from fastnn.utils import dataset_utils

RNG = np.random.default_rng(0)


# ---- to_categorical, normalize -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("labels", "num_classes"),
    [([0, 2, 1], None), ([[1], [0]], 3), (np.array([[1, 2], [0, 1]]), 4), ([-1, 0], 3), (3, 5)],
)
def test_to_categorical_matches_keras(labels, num_classes):
    keras = keras_module()
    ours = utils.to_categorical(labels, num_classes)
    theirs = keras.utils.to_categorical(labels, num_classes)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    assert utils.to_categorical(labels, num_classes, dtype="float32").dtype == np.float32


def test_to_categorical_names_a_label_out_of_range():
    with pytest.raises(IndexError, match="label 3 is out of range for num_classes=3"):
        utils.to_categorical([0, 3], 3)
    with pytest.raises(ValueError, match="no labels"):
        utils.to_categorical([])


@pytest.mark.parametrize(
    ("shape", "axis", "order", "dtype"),
    [((4, 3), -1, 2, "float64"), ((2, 3, 4), 1, 1, "float32"), ((5,), -1, 2, "float64")],
)
def test_normalize_matches_keras(shape, axis, order, dtype):
    keras = keras_module()
    x = RNG.standard_normal(shape).astype(dtype)
    x[0] = 0  # zero norms stay zero
    ours, theirs = utils.normalize(x, axis, order), keras.utils.normalize(x, axis, order)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_normalize_along_the_first_axis():  # Keras's numpy path cannot (it expands axis -1)
    x = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(np.linalg.norm(utils.normalize(x, axis=0), axis=0), 1.0)


# ---- pad_sequences -----------------------------------------------------------------------------
sequences = st.lists(st.lists(st.integers(-50, 50), max_size=6), min_size=1, max_size=5)


@settings(max_examples=5)
@given(
    sequences,
    st.sampled_from([None, 0, 1, 3, 8]),
    st.sampled_from(["pre", "post"]),
    st.sampled_from(["pre", "post"]),
    st.sampled_from([0.0, -1, 7]),
    st.sampled_from(["int32", "float32", "int64"]),
)
def test_pad_sequences_matches_keras(seqs, maxlen, padding, truncating, value, dtype):
    keras = keras_module()
    if maxlen == 0:  # Keras keeps whole sequences for maxlen=0 (s[-0:]) and fails to fit them
        assert utils.pad_sequences(seqs, maxlen, dtype, padding, truncating, value).shape == (
            len(seqs),
            0,
        )
        return
    ours = utils.pad_sequences(seqs, maxlen, dtype, padding, truncating, value)
    theirs = keras.utils.pad_sequences(seqs, maxlen, dtype, padding, truncating, value)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_pad_sequences_of_vectors_strings_and_errors():
    keras = keras_module()
    seqs = [RNG.random((2, 3)), RNG.random((4, 3)), np.zeros((0, 3))]
    np.testing.assert_array_equal(
        utils.pad_sequences(seqs, dtype="float32", padding="post"),
        keras.utils.pad_sequences(seqs, dtype="float32", padding="post"),
    )
    words = [["a", "b"], ["c"]]
    assert utils.pad_sequences(words, dtype=object, value="-").tolist() == [["a", "b"], ["-", "c"]]
    with pytest.raises(ValueError, match="dtype=object"):
        utils.pad_sequences(words, value="-")
    with pytest.raises(ValueError, match="Padding type"):
        utils.pad_sequences([[1]], padding="middle")
    with pytest.raises(ValueError, match="Truncating type"):
        utils.pad_sequences([[1]], truncating="middle")
    with pytest.raises(ValueError, match="non-iterable"):
        utils.pad_sequences([[1], 2])
    with pytest.raises(ValueError, match="Shape of sample"):
        utils.pad_sequences([np.zeros((1, 2)), np.zeros((1, 3))])
    assert fastnn.preprocessing.sequence.pad_sequences is utils.pad_sequences


# ---- split_dataset -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("left", "right"),
    [(0.8, None), (None, 3), (4, 0.5), (0.25, 0.25), (7, 3), (None, 0.3)],
)
def test_split_sizes_match_keras(left, right):
    keras_module()
    from keras.src.utils.dataset_utils import _rescale_dataset_split_sizes

    assert dataset_utils._split_sizes(left, right, 10) == _rescale_dataset_split_sizes(
        left, right, 10
    )


@pytest.mark.parametrize(
    ("left", "right", "match"),
    [
        (None, None, "At least one"),
        (0, 0, "Both `left_size` and `right_size` are zero"),
        (10, None, "positive integer smaller than 10"),
        (1.5, None, "float within the range"),
        (0.6, 0.6, "greater than 1"),
        (7, 5, "should be smaller than the 10"),
        ("3", None, "Invalid `left_size` Type"),
    ],
)
def test_split_dataset_refuses_bad_sizes_as_keras_does(left, right, match):
    with pytest.raises((TypeError, ValueError), match=match):
        utils.split_dataset(np.arange(10), left, right)


def test_split_dataset_keeps_the_structure_and_shuffles_as_keras_tf():
    x, y = np.arange(20).reshape(10, 2), np.arange(10)
    left, right = utils.split_dataset((x, y), left_size=0.6, right_size=0.2)
    assert isinstance(left, tuple) and len(left[0]) == 6 and len(right[1]) == 2
    np.testing.assert_array_equal(left[0], x[:6])
    np.testing.assert_array_equal(right[1], y[8:])
    left, right = utils.split_dataset([x, y], left_size=7, shuffle=True, seed=3)
    assert isinstance(left, list)
    import random

    order = list(range(10))  # Keras's tf path: random.seed(seed); random.shuffle(samples)
    random.Random(3).shuffle(order)
    np.testing.assert_array_equal(left[1], y[order[:7]])
    np.testing.assert_array_equal(right[0], x[order[7:]])
    np.testing.assert_array_equal(left[0][:, 0] // 2, left[1])  # rows stay paired
    a, b = utils.split_dataset(y, right_size=0.5, shuffle=True)
    assert sorted([*a, *b]) == list(range(10))
    with pytest.raises(ValueError, match="different lengths"):
        utils.split_dataset((x, y[:5]), left_size=0.5)
    with pytest.raises(TypeError, match="must be a NumPy array"):
        utils.split_dataset({"x": x}, left_size=0.5)


# ---- timeseries_dataset_from_array -------------------------------------------------------------
def keras_timeseries(data, targets, sequence_length, sequence_stride=1, sampling_rate=1,
                     batch_size=128, start_index=None, end_index=None):  # fmt: skip
    """Keras 3's windows and targets, one window at a time as its 'grain' format builds them
    (keras/src/utils/timeseries_dataset_utils.py; grain and tensorflow are not installed)."""
    start_index = start_index or 0
    end_index = len(data) if end_index is None else end_index
    count = min(end_index - start_index - (sequence_length - 1) * sampling_rate, len(targets))
    data_slice, target_slice = np.array(data[start_index:end_index]), targets[start_index:]
    samples = [
        (data_slice[np.arange(pos, pos + sequence_length * sampling_rate, sampling_rate)],
         target_slice[pos])
        for pos in np.arange(0, count, sequence_stride)
    ]  # fmt: skip
    return [
        (np.stack([w for w, _ in samples[i : i + batch_size]]),
         np.stack([t for _, t in samples[i : i + batch_size]]))
        for i in range(0, len(samples), batch_size)
    ]  # fmt: skip


def test_timeseries_windows_follow_keras_example():
    """Keras's docstring example 1: windows [0 2 ... 18], [3 5 ... 21], ..., [78 ... 96]."""
    steps = np.arange(99)
    ds = utils.timeseries_dataset_from_array(
        steps, None, sequence_length=10, sampling_rate=2, sequence_stride=3, batch_size=8
    )
    windows = np.concatenate(list(ds))
    np.testing.assert_array_equal(windows[0], np.arange(0, 20, 2))
    np.testing.assert_array_equal(windows[1], np.arange(3, 23, 2))
    np.testing.assert_array_equal(windows[-1], np.arange(78, 98, 2))
    assert len(windows) == 27 and len(ds) == 4 and ds[-1].shape == (3, 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sequence_length": 4},
        {"sequence_length": 3, "sequence_stride": 2, "sampling_rate": 2, "batch_size": 3},
        {"sequence_length": 2, "start_index": 3, "end_index": 15, "batch_size": 4},
    ],
)
def test_timeseries_matches_keras_windowing(kwargs):
    data = RNG.standard_normal((20, 3)).astype("float32")
    targets = np.arange(20)
    ours = list(utils.timeseries_dataset_from_array(data, targets, **kwargs))
    theirs = keras_timeseries(data, targets, **kwargs)
    assert len(ours) == len(theirs)
    for (x, y), (kx, ky) in zip(ours, theirs):
        np.testing.assert_array_equal(x, np.asarray(kx))
        np.testing.assert_array_equal(y, np.asarray(ky))
        assert x.dtype == np.float32


def test_timeseries_shuffle_targets_unbatched_and_errors():
    data = np.arange(30)
    ds = utils.timeseries_dataset_from_array(
        data[:-5], data[5:], sequence_length=5, shuffle=True, seed=1, batch_size=None
    )
    samples = list(ds)
    assert len(samples) == 21 and len(ds) == 21
    for window, target in samples:  # every window's target is the step after it
        np.testing.assert_array_equal(window, np.arange(window[0], window[0] + 5))
        assert target == window[0] + 5
    starts = np.arange(21)
    np.random.RandomState(1).shuffle(starts)  # Keras's order of the windows' starts
    assert [w[0] for w, _ in samples] == starts.tolist()
    for kwargs, match in [
        ({"sampling_rate": 0}, "`sampling_rate` must be higher than 0"),
        ({"sequence_stride": 30}, "`sequence_stride` must be lower than the length"),
        ({"start_index": 40}, "`start_index` must be lower"),
        ({"start_index": 5, "end_index": 3}, "`end_index` must be higher than `start_index`"),
        ({"format": "torch"}, '`format` should be either "tf" or "grain"'),
    ]:
        with pytest.raises(ValueError, match=match):
            utils.timeseries_dataset_from_array(data, None, sequence_length=3, **kwargs)
    assert fastnn.preprocessing.timeseries_dataset_from_array is utils.timeseries_dataset_from_array


# ---- PyDataset ---------------------------------------------------------------------------------
def test_pydataset_keeps_keras_arguments_and_iterates_its_batches():
    class Squares(utils.PyDataset):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)

        def __len__(self):
            return 3

        def __getitem__(self, index):
            return np.full((2, 1), index**2), np.zeros(2)

    ds = Squares(workers=4, use_multiprocessing=True, max_queue_size=5)
    assert (ds.workers, ds.use_multiprocessing, ds.max_queue_size) == (4, True, 5)
    assert ds.num_batches == 3 and [int(x[0, 0]) for x, _ in ds] == [0, 1, 4]
    assert utils.Sequence is utils.PyDataset

    class Endless(utils.PyDataset):
        def __getitem__(self, index):
            return np.array([index])

        @property
        def num_batches(self):
            return None

    first = [int(b[0]) for b, _ in zip(Endless(), range(4))]
    assert first == [0, 1, 2, 3]
    assert (Endless().workers, Endless().use_multiprocessing) == (1, False)  # no super().__init__
    with pytest.raises(NotImplementedError):
        utils.PyDataset()[0]
