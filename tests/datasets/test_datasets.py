"""fastnn.datasets: each load_data() on tiny files in the real formats (npz, gzipped IDX, CIFAR's
Python 2 pickles in a tar.gz), served from a loopback HTTP server in place of Keras's origins,
compared with Keras 3's own load_data on the same files; hashes, caching and refusals."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import json
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
from keras_twin import keras_module
from served import closed_port_url

from fastnn import backend, datasets
from fastnn.datasets import base

RNG = np.random.default_rng(0)


# ---- tiny files in the real formats ------------------------------------------------------------
class Py2Pickler(pickle._Pickler):
    """Writes bytes and str as Python 2's str, as CIFAR's cPickle files hold them (Python 3's
    protocol 2 would call ``_codecs.encode``, which no real file does)."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_bytes(self, obj):
        size = len(obj)
        if size < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([size]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", size) + obj)
        self.memoize(obj)

    def save_str(self, obj):
        self.save_bytes(obj.encode("latin1"))

    dispatch[bytes] = save_bytes
    dispatch[str] = save_str


def py2_pickle(obj, numpy_module=b"numpy.core.multiarray") -> bytes:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)  # numpy 2 names its module numpy._core
    return buffer.getvalue().replace(b"numpy._core.multiarray", numpy_module)


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def ragged(count: int, vocabulary: int) -> np.ndarray:
    out = np.empty(count, dtype=object)
    out[:] = [RNG.integers(1, vocabulary, size=3 + i % 5).tolist() for i in range(count)]
    return out


def idx(values: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">ii", magic, len(values))
    if magic == 2051:
        header += struct.pack(">ii", 28, 28)
    return gzip.compress(header + values.astype(np.uint8).tobytes())


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def cifar_batch(count: int, label_keys: dict) -> dict:
    return {
        b"batch_label": b"testing batch 1 of 1",
        b"data": RNG.integers(0, 256, (count, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(count)],
        **{key.encode(): RNG.integers(0, n, count).tolist() for key, n in label_keys.items()},
    }


def make_files() -> dict[str, bytes]:
    cifar10 = {f"data_batch_{i}": cifar_batch(2, {"labels": 10}) for i in range(1, 6)}
    cifar10["test_batch"] = cifar_batch(3, {"labels": 10})
    cifar100 = {
        name: cifar_batch(n, {"fine_labels": 100, "coarse_labels": 20})
        for name, n in (("train", 4), ("test", 2))
    }
    word_index = {"the": 1, "film": 2, "was": 3}
    return {
        "mnist.npz": npz_bytes(
            x_train=RNG.integers(0, 256, (5, 28, 28), dtype=np.uint8),
            y_train=RNG.integers(0, 10, 5, dtype=np.uint8),
            x_test=RNG.integers(0, 256, (3, 28, 28), dtype=np.uint8),
            y_test=RNG.integers(0, 10, 3, dtype=np.uint8),
        ),
        "train-labels-idx1-ubyte.gz": idx(np.arange(4) % 10, 2049),
        "train-images-idx3-ubyte.gz": idx(RNG.integers(0, 256, (4, 28, 28)), 2051),
        "t10k-labels-idx1-ubyte.gz": idx(np.arange(2), 2049),
        "t10k-images-idx3-ubyte.gz": idx(RNG.integers(0, 256, (2, 28, 28)), 2051),
        "cifar-10-python.tar.gz": tar_gz(
            {f"cifar-10-batches-py/{k}": py2_pickle(v) for k, v in cifar10.items()}
        ),
        "cifar-100-python.tar.gz": tar_gz(
            {f"cifar-100-python/{k}": py2_pickle(v) for k, v in cifar100.items()}
        ),
        "imdb.npz": npz_bytes(
            x_train=ragged(12, 40),
            y_train=RNG.integers(0, 2, 12),
            x_test=ragged(9, 40),
            y_test=RNG.integers(0, 2, 9),
        ),
        "imdb_word_index.json": json.dumps(word_index).encode(),
        "reuters.npz": npz_bytes(x=ragged(15, 60), y=RNG.integers(0, 46, 15)),
        "reuters_word_index.json": json.dumps(word_index).encode(),
        "boston_housing.npz": npz_bytes(x=RNG.random((20, 13)), y=RNG.random(20) * 50),
        "california_housing.npz": npz_bytes(
            x=RNG.random((30, 8)).astype("float32"), y=RNG.random(30).astype("float32")
        ),
    }


FILES = make_files()
#: (module, hash attribute, file): where each loader keeps the hash it checks.
HASHES = [
    (datasets.mnist, "FILE_HASH", "mnist.npz"),
    (datasets.cifar10, "FILE_HASH", "cifar-10-python.tar.gz"),
    (datasets.cifar100, "FILE_HASH", "cifar-100-python.tar.gz"),
    (datasets.imdb, "FILE_HASH", "imdb.npz"),
    (datasets.imdb, "WORD_INDEX_HASH", "imdb_word_index.json"),
    (datasets.reuters, "FILE_HASH", "reuters.npz"),
    (datasets.reuters, "WORD_INDEX_HASH", "reuters_word_index.json"),
    (datasets.boston_housing, "FILE_HASH", "boston_housing.npz"),
    (datasets.california_housing, "FILE_HASH", "california_housing.npz"),
]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def origin(server, keras_home, monkeypatch):
    """Every dataset file served in place of Keras's origins, with hashes of the tiny files
    (md5 for the word indices, as Keras gives them); the cache in a fresh $KERAS_HOME."""
    for name, data in FILES.items():
        (server.folder / name).write_bytes(data)
    monkeypatch.setattr(base, "ORIGIN_FOLDER", server.url)
    monkeypatch.setattr(base, "CIFAR_ORIGIN_FOLDER", server.url)
    for module, attribute, name in HASHES:
        digest = hashlib.md5 if name.endswith(".json") else hashlib.sha256
        monkeypatch.setattr(module, attribute, digest(FILES[name]).hexdigest())
    return server


def keras_loader(monkeypatch, name: str, paths):
    """Keras 3's ``keras.datasets.<name>`` with its get_file answering from ``paths`` (a path,
    or a function of the file name) instead of the network."""
    keras_module()
    module = importlib.import_module(f"keras.src.datasets.{name}")

    def get_file(fname=None, origin=None, **kwargs):
        return paths(fname, origin) if callable(paths) else paths

    monkeypatch.setattr(module, "get_file", get_file)
    return module


def assert_same(ours, theirs):
    """Nested tuples of arrays equal, with the same dtypes and shapes (object arrays by item)."""
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            assert_same(a, b)
        return
    if ours.dtype == object:
        # Keras's np.array(lists, dtype=object) turns lists of one length into a 2-D array of
        # ints; fastnn's is always 1-D, of lists, as real (ragged) data gives both
        assert ours.ndim == 1 and theirs.dtype == object and len(ours) == len(theirs)
        assert [list(s) for s in ours] == [list(s) for s in theirs]
        return
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape, (ours, theirs)
    np.testing.assert_array_equal(ours, theirs)


# ---- each dataset against Keras ----------------------------------------------------------------
def test_mnist_matches_keras_and_is_fetched_once(origin, keras_home, monkeypatch):
    (x_train, y_train), (x_test, y_test) = datasets.mnist.load_data()
    assert (x_train.shape, x_train.dtype, y_train.shape, y_train.dtype) == (
        (5, 28, 28),
        np.uint8,
        (5,),
        np.uint8,
    )
    assert x_test.shape == (3, 28, 28)
    cached = keras_home / "datasets" / "mnist.npz"
    assert cached.read_bytes() == FILES["mnist.npz"]
    assert_same(datasets.mnist.load_data(), ((x_train, y_train), (x_test, y_test)))
    assert origin.requests == ["/mnist.npz"]
    keras = keras_loader(monkeypatch, "mnist", str(cached))
    assert_same(datasets.mnist.load_data(), keras.load_data())


def test_fashion_mnist_matches_keras(origin, keras_home, monkeypatch):
    ours = datasets.fashion_mnist.load_data()
    folder = keras_home / "datasets" / "fashion-mnist"
    assert sorted(os.listdir(folder)) == sorted(datasets.fashion_mnist.FILES)
    keras = keras_loader(monkeypatch, "fashion_mnist", lambda fname, _: str(folder / fname))
    assert_same(ours, keras.load_data())
    assert ours[0][0].shape == (4, 28, 28) and ours[1][1].dtype == np.uint8


def test_fashion_mnist_refuses_a_file_that_is_not_idx(origin, keras_home):
    (origin.folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 12))
    with pytest.raises(ValueError, match="not an IDX file of labels"):
        datasets.fashion_mnist.load_data()


def test_cifar10_matches_keras_batches_in_both_image_layouts(origin, keras_home, monkeypatch):
    (x_train, y_train), (x_test, y_test) = datasets.cifar10.load_data()
    assert (x_train.shape, x_train.dtype, y_train.shape, y_train.dtype) == (
        (10, 32, 32, 3),
        np.uint8,
        (10, 1),
        np.uint8,
    )
    assert (x_test.shape, y_test.shape, y_test.dtype) == ((3, 32, 32, 3), (3, 1), np.uint8)
    folder = keras_home / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    keras_module()
    from keras.src.datasets.cifar import load_batch  # Keras's reader of one batch

    data, labels = load_batch(str(folder / "data_batch_2"))
    np.testing.assert_array_equal(x_train[2:4], data.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_train[2:4, 0], labels)
    assert origin.requests == ["/cifar-10-python.tar.gz"]
    backend.set_image_data_format("channels_first")
    try:
        (x_first, _), _ = datasets.cifar10.load_data()
    finally:
        backend.set_image_data_format("channels_last")
    np.testing.assert_array_equal(x_first, x_train.transpose(0, 3, 1, 2))
    assert origin.requests == ["/cifar-10-python.tar.gz"]  # the extracted folder is reused


@pytest.mark.parametrize("label_mode", ["fine", "coarse"])
def test_cifar100_matches_keras(origin, keras_home, monkeypatch, label_mode):
    ours = datasets.cifar100.load_data(label_mode)
    folder = keras_home / "datasets" / "cifar-100-python-target"
    keras = keras_loader(monkeypatch, "cifar100", str(folder))
    assert_same(ours, keras.load_data(label_mode))
    assert ours[0][0].shape == (4, 32, 32, 3) and ours[0][1].dtype == np.int64
    with pytest.raises(ValueError, match="label_mode"):
        datasets.cifar100.load_data("medium")


SEQUENCE_OPTIONS = [
    {},
    {"num_words": 20, "skip_top": 3},
    {"maxlen": 6, "seed": 7},
    {"start_char": None, "oov_char": None, "num_words": 25},
    {"start_char": None, "index_from": 0},
]


@pytest.mark.parametrize("options", SEQUENCE_OPTIONS)
def test_imdb_matches_keras(origin, keras_home, monkeypatch, options):
    ours = datasets.imdb.load_data(**options)
    keras = keras_loader(monkeypatch, "imdb", str(keras_home / "datasets" / "imdb.npz"))
    assert_same(ours, keras.load_data(**options))
    assert ours[0][0].dtype == object and ours[0][0].ndim == 1


@pytest.mark.parametrize("options", [*SEQUENCE_OPTIONS, {"test_split": 0.5, "maxlen": 7}])
def test_reuters_matches_keras(origin, keras_home, monkeypatch, options):
    ours = datasets.reuters.load_data(**options)
    keras = keras_loader(monkeypatch, "reuters", str(keras_home / "datasets" / "reuters.npz"))
    assert_same(ours, keras.load_data(**options))
    assert datasets.reuters.get_label_names() == keras.get_label_names()


def test_word_indices_match_keras(origin, keras_home, monkeypatch):
    for name in ("imdb", "reuters"):
        module = getattr(datasets, name)
        index = module.get_word_index()
        path = keras_home / "datasets" / f"{name}_word_index.json"
        assert (
            index
            == keras_loader(monkeypatch, name, str(path)).get_word_index()
            == {
                "the": 1,
                "film": 2,
                "was": 3,
            }
        )


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("boston_housing", {}),
        ("boston_housing", {"test_split": 0.3, "seed": 1}),
        ("california_housing", {}),
        ("california_housing", {"version": "small", "test_split": 0.1}),
    ],
)
def test_housing_matches_keras(origin, keras_home, monkeypatch, name, options):
    ours = getattr(datasets, name).load_data(**options)
    keras = keras_loader(monkeypatch, name, str(keras_home / "datasets" / f"{name}.npz"))
    assert_same(ours, keras.load_data(**options))
    with pytest.raises(ValueError, match="Invalid `test_split`"):
        getattr(datasets, name).load_data(test_split=1.0)


# ---- hashes, origins, refusals -----------------------------------------------------------------
def test_a_file_with_the_wrong_hash_is_refused_and_not_cached(origin, keras_home, monkeypatch):
    monkeypatch.setattr(datasets.mnist, "FILE_HASH", sha256(b"another file"))
    with pytest.raises(ValueError, match="file hash .* does not match"):
        datasets.mnist.load_data()
    assert os.listdir(keras_home / "datasets") == []


def test_file_urls_and_offline_origins(server, keras_home, monkeypatch):
    (server.folder / "boston_housing.npz").write_bytes(FILES["boston_housing.npz"])
    monkeypatch.setattr(datasets.boston_housing, "FILE_HASH", sha256(FILES["boston_housing.npz"]))
    monkeypatch.setattr(base, "ORIGIN_FOLDER", server.folder.as_uri() + "/")
    (x_train, _), (x_test, _) = datasets.boston_housing.load_data()
    assert x_train.shape == (16, 13) and x_test.shape == (4, 13)
    assert server.requests == []
    offline = closed_port_url("")
    monkeypatch.setattr(base, "ORIGIN_FOLDER", offline)
    with pytest.raises(OSError, match=f"URL fetch failure on {offline}mnist.npz"):
        datasets.mnist.load_data()


class Evil:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_cifar_pickles_that_would_run_code_are_refused(origin, monkeypatch, capfd):
    batch = cifar_batch(2, {"labels": 10})
    batch[b"labels"] = Evil()
    archive = tar_gz({"cifar-10-batches-py/data_batch_1": py2_pickle(batch)})
    (origin.folder / "cifar-10-python.tar.gz").write_bytes(archive)
    monkeypatch.setattr(datasets.cifar10, "FILE_HASH", sha256(archive))
    with pytest.raises(base.UnsafeDatasetFileError, match=r"Refusing to load `(posix|os)\.system`"):
        datasets.cifar10.load_data()
    assert "must never run" not in capfd.readouterr().out


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (py2_pickle({b"data": np.zeros(2, dtype=object)}), "dtype"),
        (py2_pickle({b"x": 1}), "no 'data'"),
        (b"\x80\x02cbuiltins\neval\nq\x00.", "builtins.eval"),
        (py2_pickle({b"data": np.zeros(2, "uint8")}, b"numpy._core.multiarray"), "no 'data'"),
    ],
)
def test_cifar_batch_reader_refuses_all_but_plain_data(tmp_path, payload, match):
    path = tmp_path / "batch"
    path.write_bytes(payload)
    with pytest.raises((base.UnsafeDatasetFileError, ValueError), match=match):
        datasets.cifar10.load_batch(str(path))


def test_npz_files_with_objects_are_refused_where_numbers_belong(tmp_path):
    path = tmp_path / "objects.npz"
    path.write_bytes(npz_bytes(x=ragged(3, 5)))
    with pytest.raises(base.UnsafeDatasetFileError, match="found Python objects"):
        base.load_npz(path)
    evil = np.empty(1, dtype=object)
    evil[0] = Evil()
    path.write_bytes(npz_bytes(x=evil))
    with pytest.raises(base.UnsafeDatasetFileError, match="Refusing to load"):
        base.load_npz(path, allow_object=True)
