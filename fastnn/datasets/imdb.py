"""IMDB movie reviews: 25,000 training and 25,000 test reviews as word indices, labels 0/1."""

from __future__ import annotations

import json

import numpy as np

from fastnn.datasets import base
from fastnn.utils.file_utils import get_file

FILE_NAME = "imdb.npz"
FILE_HASH = "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"
WORD_INDEX_FILE = "imdb_word_index.json"
WORD_INDEX_HASH = "bfafd718b763782e994055a2d397834f"


def load_data(
    path: str = "imdb.npz",
    num_words: int | None = None,
    skip_top: int = 0,
    maxlen: int | None = None,
    seed: int = 113,
    start_char: int | None = 1,
    oov_char: int | None = 2,
    index_from: int = 3,
    **kwargs,
):
    """``(x_train, y_train), (x_test, y_test)``: x a 1-D object array of lists of word indices
    (each shifted by ``index_from``, after ``start_char``; words ranked outside
    [``skip_top``, ``num_words``) replaced by ``oov_char``, or dropped when it is None; reviews
    of ``maxlen`` words or more left out), y int labels; shuffled by ``seed``, as Keras does."""
    if kwargs:
        raise TypeError(f"Unrecognized keyword arguments: {sorted(kwargs)}")
    path = get_file(fname=path, origin=base.ORIGIN_FOLDER + FILE_NAME, file_hash=FILE_HASH)
    f = base.load_npz(path, allow_object=True)
    rng = np.random.RandomState(seed)
    x_train, labels_train = base.shuffled(rng, f["x_train"], f["y_train"])
    x_test, labels_test = base.shuffled(rng, f["x_test"], f["y_test"])
    x_train = base.index_words(x_train, start_char, index_from)
    x_test = base.index_words(x_test, start_char, index_from)
    if maxlen:
        x_train, labels_train = base.remove_long_seq(maxlen, x_train, labels_train)
        x_test, labels_test = base.remove_long_seq(maxlen, x_test, labels_test)
        if not x_train or not x_test:
            raise ValueError(
                f"After filtering for sequences shorter than maxlen={maxlen}, no sequence was "
                "kept. Increase maxlen."
            )
    xs = base.limit_words(x_train + x_test, num_words, skip_top, oov_char)
    labels = np.concatenate([np.asarray(labels_train), np.asarray(labels_test)])
    cut = len(x_train)
    return (base.object_array(xs[:cut]), labels[:cut]), (base.object_array(xs[cut:]), labels[cut:])


def get_word_index(path: str = "imdb_word_index.json") -> dict:
    """The word -> index dict of ``load_data``'s indices (before ``index_from``)."""
    path = get_file(
        fname=path, origin=base.ORIGIN_FOLDER + WORD_INDEX_FILE, file_hash=WORD_INDEX_HASH
    )
    with open(path) as f:
        return json.load(f)
