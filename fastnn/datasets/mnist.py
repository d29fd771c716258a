"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grey, labels 0-9."""

from __future__ import annotations

import numpy as np

from fastnn.datasets import base
from fastnn.utils.file_utils import get_file

FILE_NAME = "mnist.npz"
FILE_HASH = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"


def load_data(path: str = "mnist.npz"):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 28, 28) with values 0-255 and
    uint8 labels (N,), from Keras's file and cache (``~/.keras/datasets/<path>``)."""
    path = get_file(fname=path, origin=base.ORIGIN_FOLDER + FILE_NAME, file_hash=FILE_HASH)
    with np.load(path, allow_pickle=False) as f:
        return (f["x_train"], f["y_train"]), (f["x_test"], f["y_test"])
