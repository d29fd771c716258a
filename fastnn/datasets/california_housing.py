"""California housing prices: 20,640 districts, 8 features each, the median house value."""

from __future__ import annotations

import numpy as np

from fastnn.datasets import base
from fastnn.utils.file_utils import get_file

FILE_NAME = "california_housing.npz"
FILE_HASH = "1a2e3a52e0398de6463aebe6f4a8da34fb21fbb6b934cf88c3425e766f2a1a6f"


def load_data(
    version: str = "large", path: str = "california_housing.npz", test_split=0.2, seed=113
):
    """``(x_train, y_train), (x_test, y_test)``: features (N, 8) and values (N,) of all
    20,640 districts (``version='large'``) or the first 600 ('small'), shuffled by ``seed``,
    the last ``test_split`` for testing, as Keras does."""
    base.check_test_split(test_split)
    if version not in ("small", "large"):
        raise ValueError(
            f"Argument `version` must be one of 'small', 'large'. Received: version={version}"
        )
    path = get_file(path, origin=base.ORIGIN_FOLDER + FILE_NAME, file_hash=FILE_HASH)
    with np.load(path, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    if version == "small":
        x, y = x[:600], y[:600]
    return base.split_at(test_split, *base.shuffled(np.random.RandomState(seed), x, y))
