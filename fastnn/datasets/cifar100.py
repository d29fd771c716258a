"""CIFAR-100: 50,000 training and 10,000 test colour images, 32x32, 100 fine / 20 coarse classes."""

from __future__ import annotations

import os

from fastnn.datasets import base
from fastnn.datasets.cifar10 import image_layout, load_batch
from fastnn.utils.file_utils import get_file

FILE_NAME = "cifar-100-python.tar.gz"
FILE_HASH = "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"


def load_data(label_mode: str = "fine"):
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 32, 32, 3) (channels last) and
    int64 labels (N, 1) of the ``label_mode`` ('fine': 100 classes, 'coarse': 20), as Keras
    returns them, from its archive and cache (``~/.keras/datasets/cifar-100-python-target``)."""
    if label_mode not in ["fine", "coarse"]:
        raise ValueError(
            f'`label_mode` must be one of `"fine"`, `"coarse"`. Received: label_mode={label_mode}.'
        )
    path = get_file(
        fname="cifar-100-python-target",
        origin=base.CIFAR_ORIGIN_FOLDER + FILE_NAME,
        extract=True,
        file_hash=FILE_HASH,
    )
    path = os.path.join(path, "cifar-100-python")
    key = f"{label_mode}_labels"
    train = image_layout(*load_batch(os.path.join(path, "train"), label_key=key))
    test = image_layout(*load_batch(os.path.join(path, "test"), label_key=key))
    return train, test
