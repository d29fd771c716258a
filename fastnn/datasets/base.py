"""What the dataset loaders share: where Keras's files live, and reading them without running
code: ``.npz`` members through numpy with pickles off, and the pickles some files hold (the
ragged sequences of IMDB and Reuters, the CIFAR batches) through an unpickler that builds
nothing but dicts, lists, strings, numbers and numpy arrays of plain dtypes.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np

#: Where Keras 3 downloads MNIST, Fashion-MNIST, IMDB, Reuters and the housing data from.
ORIGIN_FOLDER = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
#: Where Keras 3 downloads CIFAR-10 and CIFAR-100 from.
CIFAR_ORIGIN_FOLDER = "https://www.cs.toronto.edu/~kriz/"


class UnsafeDatasetFileError(pickle.UnpicklingError):
    """A dataset file asks to build something other than plain data."""


def _reconstruct_function():
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


def _plain_dtype(spec, allow_object: bool) -> bool:
    try:
        dtype = np.dtype(spec.decode() if isinstance(spec, bytes) else spec)
    except TypeError:
        return False
    return dtype.kind in "biuf" or (allow_object and dtype.kind == "O")


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only plain data and numpy arrays: the one numpy function that makes an empty array
    (``_reconstruct``, for ``numpy.ndarray`` alone) and ``numpy.dtype`` of a numeric dtype (or the
    object dtype, for ragged sequences, when ``allow_object``). Any other class or function,
    the way a tampered file would run code, raises ``UnsafeDatasetFileError`` naming it."""

    def __init__(self, file, allow_object: bool = False, **kwargs):
        super().__init__(file, **kwargs)
        self.allow_object = allow_object

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return self._dtype
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct
        raise UnsafeDatasetFileError(
            f"Refusing to load `{module}.{name}` from a dataset file: it may only hold plain "
            "data and numpy arrays. The file may be corrupted or malicious."
        )

    def _dtype(self, spec, align=False, copy=False):
        if not _plain_dtype(spec, self.allow_object):
            raise UnsafeDatasetFileError(
                f"Refusing to load an array of dtype {spec!r} from a dataset file: expected "
                "numbers" + (" or Python objects" if self.allow_object else "")
            )
        return np.dtype(spec.decode() if isinstance(spec, bytes) else spec, align, copy)


def _reconstruct(cls, shape, typecode):
    if cls is not np.ndarray:
        raise UnsafeDatasetFileError(
            f"Refusing to build {cls!r} from a dataset file: only numpy arrays are allowed"
        )
    return _reconstruct_function()(cls, shape, typecode)


def load_pickle(path, allow_object: bool = False):
    """The Python 2 pickle at ``path`` (CIFAR's batches), strings as bytes, read safely."""
    with open(path, "rb") as file:
        return RestrictedUnpickler(file, allow_object, encoding="bytes").load()


def load_npz(path, allow_object: bool = False) -> dict:
    """Every array of the ``.npz`` file at ``path``, by name. Numeric arrays are read with
    pickles off; arrays of Python objects (ragged sequences), only when ``allow_object``,
    through ``RestrictedUnpickler``."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as raw:
                buffer = io.BytesIO(raw.read())
            arrays[member[: -len(".npy")]] = _read_npy(buffer, allow_object, f"{path}:{member}")
    return arrays


def _read_npy(buffer, allow_object: bool, what: str) -> np.ndarray:
    version = np.lib.format.read_magic(buffer)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(buffer)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(buffer)
    buffer.seek(0)
    if not dtype.hasobject:
        return np.lib.format.read_array(buffer, allow_pickle=False)
    if not allow_object:
        raise UnsafeDatasetFileError(f"{what}: expected numeric data, found Python objects")
    np.lib.format.read_magic(buffer)  # skip the header to the pickle
    if version == (1, 0):
        np.lib.format.read_array_header_1_0(buffer)
    else:
        np.lib.format.read_array_header_2_0(buffer)
    array = RestrictedUnpickler(buffer, allow_object=True).load()
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise UnsafeDatasetFileError(f"{what}: the pickled data is not the array of shape {shape}")
    return array


# ---- what IMDB and Reuters share ---------------------------------------------------------------
def remove_long_seq(maxlen: int, sequences: list, labels) -> tuple[list, list]:
    """The sequences shorter than ``maxlen`` (strictly, as Keras keeps them) and their labels."""
    kept = [(s, label) for s, label in zip(sequences, labels) if len(s) < maxlen]
    return [s for s, _ in kept], [label for _, label in kept]


def index_words(sequences, start_char, index_from) -> list[list[int]]:
    """Each sequence as a list of ints shifted by ``index_from``, after ``start_char``."""
    if start_char is not None:
        return [[start_char] + [int(w) + index_from for w in s] for s in sequences]
    return [[int(w) + index_from for w in s] for s in sequences]


def limit_words(sequences, num_words, skip_top, oov_char) -> list[list[int]]:
    """Words outside [skip_top, num_words) replaced by ``oov_char``, or dropped when it is None
    (``num_words`` None: the largest index, which itself falls out, as in Keras)."""
    if not num_words:
        num_words = max(max(s) for s in sequences if len(s)) if sequences else 0
    if oov_char is not None:
        return [[w if skip_top <= w < num_words else oov_char for w in s] for s in sequences]
    return [[w for w in s if skip_top <= w < num_words] for s in sequences]


def object_array(sequences: list) -> np.ndarray:
    """A 1-D array of Python lists (``np.array(..., dtype=object)`` would make a 2-D array of
    ints when the lists have one length)."""
    out = np.empty(len(sequences), dtype=object)
    out[:] = sequences
    return out


def shuffled(rng: np.random.RandomState, *arrays):
    """``arrays`` in one order drawn by ``rng.shuffle`` (Keras's order for its seed)."""
    indices = np.arange(len(arrays[0]))
    rng.shuffle(indices)
    return [a[indices] for a in arrays]


def check_test_split(test_split) -> None:
    if not 0 <= test_split < 1:
        raise ValueError(
            f"Invalid `test_split` argument: {test_split}. It must be between 0 and 1 "
            "(exclusive of 1)."
        )


def split_at(test_split, x, y):
    """((x_train, y_train), (x_test, y_test)): the first ``1 - test_split`` of the samples."""
    cut = int(len(x) * (1 - test_split))
    return (np.array(x[:cut]), np.array(y[:cut])), (np.array(x[cut:]), np.array(y[cut:]))
