"""Boston housing prices: 506 houses, 13 features each, the median value in k$."""

from __future__ import annotations

import numpy as np

from fastnn.datasets import base
from fastnn.utils.file_utils import get_file

FILE_NAME = "boston_housing.npz"
FILE_HASH = "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"


def load_data(path: str = "boston_housing.npz", test_split: float = 0.2, seed: int = 113):
    """``(x_train, y_train), (x_test, y_test)``: features (N, 13) and prices (N,) as stored,
    shuffled by ``seed``, the last ``test_split`` for testing, as Keras does."""
    base.check_test_split(test_split)
    path = get_file(path, origin=base.ORIGIN_FOLDER + FILE_NAME, file_hash=FILE_HASH)
    with np.load(path, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    return base.split_at(test_split, *base.shuffled(np.random.RandomState(seed), x, y))
