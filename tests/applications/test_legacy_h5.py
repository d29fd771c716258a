"""Keras 2's legacy ``.h5`` weights (fastnn/saving/legacy_h5.py): files Keras writes load into
fastnn's twin model in order or by name, every count and shape is checked before anything is
assigned, and crafted files that would read elsewhere are refused."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras.src.legacy.saving import legacy_h5_format  # noqa: E402
from legacy_files import legacy_layers, write_legacy_weights, write_model_weights  # noqa: E402

import fastnn  # noqa: E402
from fastnn.saving import FileFormatError  # noqa: E402
from fastnn.saving.legacy_h5 import load_legacy_h5_weights  # noqa: E402

h5py = pytest.importorskip("h5py")

X = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")


def small_model(lib, order=("conv", "bn", "dense"), seed: int = 0):
    """Conv2D, BatchNormalization, a relu Activation (no weights), Flatten, Dense."""
    lib.utils.set_random_seed(seed)
    inputs = lib.layers.Input((6, 6, 3))
    x = lib.layers.Conv2D(4, 3, name=order[0])(inputs)
    x = lib.layers.BatchNormalization(name=order[1])(x)
    x = lib.layers.Activation("relu", name="act")(x)
    x = lib.layers.Flatten(name="flat")(x)
    outputs = lib.layers.Dense(5, name=order[2])(x)
    return lib.Model(inputs, outputs)


def with_random_weights(model, seed: int):
    rng = np.random.default_rng(seed)
    model.set_weights(
        [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in model.get_weights()]
    )
    return model


def keras_weights_file(path, seed: int = 1):
    """A Keras model with random weights and the legacy file Keras writes for it."""
    twin = with_random_weights(small_model(keras), seed)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, twin)
    return twin, path


def assert_same_weights(a, b):
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("suffix", [".h5", ".hdf5"])
def test_weights_keras_writes_load_in_order_and_predict_as_keras(tmp_path, suffix):
    twin, path = keras_weights_file(tmp_path / f"w{suffix}")
    model = small_model(fastnn)
    model.load_weights(path)
    assert_same_weights(model.get_weights(), twin.get_weights())
    np.testing.assert_allclose(
        model.predict(X, verbose=0), twin.predict(X, verbose=0), rtol=1e-5, atol=1e-5
    )


def test_in_order_loading_ignores_layer_names_as_keras_does(tmp_path):
    twin, path = keras_weights_file(tmp_path / "w.h5")
    model = small_model(fastnn, order=("c", "b", "d"))
    model.load_weights(path)
    assert_same_weights(model.get_weights(), twin.get_weights())


def test_a_whole_model_h5_file_gives_its_model_weights(tmp_path):
    twin = with_random_weights(small_model(keras), 2)
    twin.save(tmp_path / "m.h5")  # Keras's legacy whole-model file: weights under model_weights
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert "layer_names" not in f.attrs and "model_weights" in f
    model = small_model(fastnn)
    model.load_weights(tmp_path / "m.h5")
    assert_same_weights(model.get_weights(), twin.get_weights())


def test_by_name_loads_matching_layers_and_skips_the_rest(tmp_path):
    twin, path = keras_weights_file(tmp_path / "w.h5")
    model = small_model(fastnn, order=("conv", "other_bn", "dense"))
    before = model.get_weights()
    model.load_weights(path, by_name=True)  # Keras's keyword
    after = model.get_weights()
    twin_weights = twin.get_weights()
    assert_same_weights(after[:2] + after[-2:], twin_weights[:2] + twin_weights[-2:])
    assert_same_weights(after[2:6], before[2:6])  # other_bn is in no file layer


def test_layer_names_split_into_chunks_are_read(tmp_path):
    source = with_random_weights(small_model(fastnn), 3)
    path = write_model_weights(source, tmp_path / "w.h5", chunk=2)
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f.attrs and "layer_names2" in f.attrs
    model = small_model(fastnn)
    model.load_weights(path)
    assert_same_weights(model.get_weights(), source.get_weights())


def test_a_wrong_shape_names_the_layer_and_shapes_and_changes_nothing(tmp_path):
    source = small_model(fastnn)
    entries = legacy_layers(with_random_weights(small_model(fastnn), 4))
    name, weights = entries[-1]
    entries[-1] = (name, [(weights[0][0], np.zeros((64, 6), "float32")), weights[1]])
    path = write_legacy_weights(tmp_path / "w.h5", entries)
    before = source.get_weights()
    with pytest.raises(
        FileFormatError,
        match=r"layer #2 \(named 'dense' in the model, 'dense' in the file\): weight "
        r"'dense/kernel' has shape \(64, 5\), the file's '/dense/dense/kernel:0' has shape "
        r"\(64, 6\)",
    ):
        source.load_weights(path)
    assert_same_weights(source.get_weights(), before)  # the conv and BN before it too


def test_a_wrong_count_of_layers_or_weights_is_refused(tmp_path):
    entries = legacy_layers(small_model(fastnn))
    path = write_legacy_weights(tmp_path / "fewer.h5", entries[:-1])
    with pytest.raises(
        FileFormatError, match=r"it holds weights for 2 layers, the model has 3 layers with weights"
    ):
        small_model(fastnn).load_weights(path)
    name, weights = entries[2]
    entries[2] = (name, weights[:3])
    path = write_legacy_weights(tmp_path / "bn.h5", entries)
    with pytest.raises(FileFormatError, match=r"named 'bn' in the model.* expects 4 weights"):
        small_model(fastnn).load_weights(path)


def test_files_that_are_not_legacy_weights_are_refused(tmp_path):
    model = small_model(fastnn)
    with pytest.raises(FileNotFoundError, match="nothing.h5"):
        model.load_weights(tmp_path / "nothing.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(FileFormatError, match="no 'layer_names' attribute"):
        model.load_weights(tmp_path / "plain.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(FileFormatError, match="not a readable HDF5 file"):
        model.load_weights(tmp_path / "junk.h5")
    path = write_legacy_weights(
        tmp_path / "missing.h5", [("conv", [("conv/kernel:0", np.zeros((3, 3, 3, 4)))])]
    )
    with h5py.File(path, "r+") as f:
        f["conv"].attrs["weight_names"] = [b"conv/kernel:0", b"conv/bias:0"]
    with pytest.raises(FileFormatError, match="'/conv/conv/bias:0' is listed but missing"):
        model.load_weights(path)


def test_suffixes_pick_the_format_and_legacy_h5_is_read_only(tmp_path):
    model = small_model(fastnn)
    model.save_weights(tmp_path / "w.weights.h5")  # Keras 3's format, not the legacy one
    model.load_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match="legacy '.h5' weights are read only"):
        model.save_weights(tmp_path / "w.h5")
    with pytest.raises(ValueError, match="`by_name` only supports loading legacy '.h5' or"):
        model.load_weights(tmp_path / "w.weights.h5", by_name=True)


def test_by_name_loads_only_the_layers_whose_names_match(tmp_path):
    twin, path = keras_weights_file(tmp_path / "w.h5")
    model = small_model(fastnn, order=("dense_x", "bn", "conv_y"))
    load_legacy_h5_weights(model, path, by_name=True)
    assert_same_weights(model.get_weights()[2:6], twin.get_weights()[2:6])


def external_link(f, folder):
    with h5py.File(folder / "other.h5", "w") as other:
        other["kernel"] = np.ones((64, 5), "float32")
    f["dense/dense/kernel:0"] = h5py.ExternalLink(str(folder / "other.h5"), "/kernel")


def soft_link(f, folder):
    f["elsewhere"] = np.ones((64, 5), "float32")
    f["dense/dense/kernel:0"] = h5py.SoftLink("/elsewhere")


def external_storage(f, folder):
    (folder / "secret.bin").write_bytes(np.ones((64, 5), "float32").tobytes())
    f.create_dataset(
        "dense/dense/kernel:0", (64, 5), "float32", external=[("secret.bin", 0, 64 * 5 * 4)]
    )


def declared_not_stored(f, folder):
    f.create_dataset("dense/dense/kernel:0", (144, 5000), "float32", chunks=(144, 100))


CRAFTS = {
    "external link": (external_link, "is an external link to '/kernel'"),
    "soft link": (soft_link, "is a soft link to '/elsewhere'"),
    "external storage": (external_storage, "keeps its data in the external file 'secret.bin'"),
    "declared, not stored": (declared_not_stored, r"declares float32 \(144, 5000\)"),
}


@pytest.mark.parametrize("kind", CRAFTS)
def test_crafted_files_reading_elsewhere_are_refused_before_anything_changes(
    kind, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    craft, message = CRAFTS[kind]
    path = write_model_weights(small_model(fastnn), tmp_path / "w.h5")
    with h5py.File(path, "r+") as f:
        del f["dense/dense/kernel:0"]
        craft(f, tmp_path)
    model = with_random_weights(small_model(fastnn), 5)
    before = model.get_weights()
    with pytest.raises(FileFormatError, match=f"Cannot load '{path}': .*{message}"):
        model.load_weights(path)
    assert_same_weights(model.get_weights(), before)


def test_flat_weight_names_as_in_keras_1_files_load(tmp_path):
    """The oldest ImageNet files name arrays 'block1_conv1_W_1:0' directly in the layer group."""
    source = with_random_weights(small_model(fastnn), 6)
    entries = [
        (name, [(f"{name}_{i}:0", array) for i, (_, array) in enumerate(weights)])
        for name, weights in legacy_layers(source)
    ]
    path = write_legacy_weights(tmp_path / "w.h5", entries)
    with h5py.File(path, "r") as f:
        assert isinstance(f["conv/conv_0:0"], h5py.Dataset)
    model = small_model(fastnn)
    model.load_weights(path)
    assert_same_weights(model.get_weights(), source.get_weights())
