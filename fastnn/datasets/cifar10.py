"""CIFAR-10: 50,000 training and 10,000 test colour images, 32x32, 10 classes."""

from __future__ import annotations

import os

import numpy as np

from fastnn import backend
from fastnn.datasets import base
from fastnn.utils.file_utils import get_file

FILE_NAME = "cifar-10-python.tar.gz"
FILE_HASH = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"


def load_data():
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 32, 32, 3) (or (N, 3, 32, 32)
    under ``image_data_format() == 'channels_first'``) and uint8 labels (N, 1), from Keras's
    archive and cache (``~/.keras/datasets/cifar-10-batches-py-target``)."""
    path = get_file(
        fname="cifar-10-batches-py-target",
        origin=base.CIFAR_ORIGIN_FOLDER + FILE_NAME,
        extract=True,
        file_hash=FILE_HASH,
    )
    path = os.path.join(path, "cifar-10-batches-py")
    batches = [load_batch(os.path.join(path, f"data_batch_{i}")) for i in range(1, 6)]
    x_train = np.concatenate([x for x, _ in batches]).astype("uint8")
    y_train = np.concatenate([y for _, y in batches]).astype("uint8")
    x_test, y_test = load_batch(os.path.join(path, "test_batch"))
    return image_layout(x_train, y_train), image_layout(
        x_test.astype("uint8"), np.asarray(y_test).astype("uint8")
    )


def load_batch(fpath: str, label_key: str = "labels"):
    """One CIFAR batch file: (images (N, 3, 32, 32), labels as stored: a list of ints), read with
    an unpickler that builds only plain data and numeric numpy arrays."""
    batch = base.load_pickle(fpath)
    if not isinstance(batch, dict):
        raise ValueError(f"{fpath} is not a CIFAR batch: expected a dict, got {type(batch)}")
    batch = {k.decode("utf8") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise ValueError(f"{fpath} is not a CIFAR batch: it has no 'data' or {label_key!r}")
    data = np.asarray(batch["data"])
    return data.reshape(data.shape[0], 3, 32, 32), batch[label_key]


def image_layout(x, labels):
    """Images in ``image_data_format()``'s layout and labels as a column (N, 1), as Keras."""
    y = np.reshape(labels, (len(labels), 1))
    if backend.image_data_format() == "channels_last":
        x = x.transpose(0, 2, 3, 1)
    return x, y
