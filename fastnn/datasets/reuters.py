"""Reuters newswires: 11,228 newswires as word indices, labelled with 46 topics."""

from __future__ import annotations

import json

import numpy as np

from fastnn.datasets import base
from fastnn.utils.file_utils import get_file

FILE_NAME = "reuters.npz"
FILE_HASH = "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"
WORD_INDEX_FILE = "reuters_word_index.json"
WORD_INDEX_HASH = "4d44cc38712099c9e383dc6e5f11a921"
LABEL_NAMES = (
    "cocoa", "grain", "veg-oil", "earn", "acq", "wheat", "copper", "housing", "money-supply",
    "coffee", "sugar", "trade", "reserves", "ship", "cotton", "carcass", "crude", "nat-gas",
    "cpi", "money-fx", "interest", "gnp", "meal-feed", "alum", "oilseed", "gold", "tin",
    "strategic-metal", "livestock", "retail", "ipi", "iron-steel", "rubber", "heat", "jobs",
    "lei", "bop", "zinc", "orange", "pet-chem", "dlr", "gas", "silver", "wpi", "hog", "lead",
)  # fmt: skip


def load_data(
    path: str = "reuters.npz",
    num_words: int | None = None,
    skip_top: int = 0,
    maxlen: int | None = None,
    test_split: float = 0.2,
    seed: int = 113,
    start_char: int | None = 1,
    oov_char: int | None = 2,
    index_from: int = 3,
):
    """``(x_train, y_train), (x_test, y_test)``: x a 1-D object array of lists of word indices
    (as ``imdb.load_data`` makes them), y int topic labels; shuffled by ``seed``, the last
    ``test_split`` of the newswires for testing, as Keras does."""
    path = get_file(path, origin=base.ORIGIN_FOLDER + FILE_NAME, file_hash=FILE_HASH)
    f = base.load_npz(path, allow_object=True)
    xs, labels = base.shuffled(np.random.RandomState(seed), f["x"], f["y"])
    xs = base.index_words(xs, start_char, index_from)
    if maxlen:
        xs, labels = base.remove_long_seq(maxlen, xs, labels)
    xs = base.limit_words(xs, num_words, skip_top, oov_char)
    cut = int(len(xs) * (1 - test_split))
    train = base.object_array(xs[:cut]), np.array(labels[:cut])
    return train, (base.object_array(xs[cut:]), np.array(labels[cut:]))


def get_word_index(path: str = "reuters_word_index.json") -> dict:
    """The word -> index dict of ``load_data``'s indices (before ``index_from``)."""
    path = get_file(path, origin=base.ORIGIN_FOLDER + WORD_INDEX_FILE, file_hash=WORD_INDEX_HASH)
    with open(path) as f:
        return json.load(f)


def get_label_names() -> tuple[str, ...]:
    """The 46 topics, in label order."""
    return LABEL_NAMES
