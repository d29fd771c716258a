"""Fashion-MNIST: 60,000 training and 10,000 test images of clothes, 28x28 grey, 10 classes."""

from __future__ import annotations

import gzip
import os

import numpy as np

from fastnn.datasets import base
from fastnn.utils.file_utils import get_file

#: The four gzipped IDX files, as Keras names them (Keras gives no hashes for them).
FILES = (
    "train-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
)
FILE_HASHES: dict[str, str | None] = dict.fromkeys(FILES)


def load_data():
    """``(x_train, y_train), (x_test, y_test)``: uint8 images (N, 28, 28) and uint8 labels (N,),
    from Keras's files and cache (``~/.keras/datasets/fashion-mnist``)."""
    folder = os.path.join("datasets", "fashion-mnist")
    paths = [
        get_file(
            name, origin=base.ORIGIN_FOLDER + name, cache_subdir=folder, file_hash=FILE_HASHES[name]
        )
        for name in FILES
    ]
    y_train = _read_idx(paths[0], 2049, 8)
    x_train = _read_idx(paths[1], 2051, 16).reshape(len(y_train), 28, 28)
    y_test = _read_idx(paths[2], 2049, 8)
    x_test = _read_idx(paths[3], 2051, 16).reshape(len(y_test), 28, 28)
    return (x_train, y_train), (x_test, y_test)


def _read_idx(path: str, magic: int, header: int) -> np.ndarray:
    """The uint8 values of a gzipped IDX file (labels: magic 2049, 8-byte header; images: 2051,
    16 bytes), its header checked."""
    with gzip.open(path, "rb") as file:
        raw = bytearray(file.read())
    found = int.from_bytes(raw[:4], "big") if len(raw) >= header else None
    count = int.from_bytes(raw[4:8], "big") if found is not None else None
    size = (len(raw) - header) // (28 * 28 if magic == 2051 else 1) if found else None
    if found != magic or count != size or (magic == 2051 and (len(raw) - header) % 784):
        raise ValueError(
            f"{path} is not an IDX file of {'images' if magic == 2051 else 'labels'} "
            f"(expected magic number {magic}, {count} items): the file may be corrupted"
        )
    return np.frombuffer(raw, np.uint8, offset=header)
