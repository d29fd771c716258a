"""Models whose outputs are a dict, against Keras 3 (torch backend): Keras flattens
``Model(inp, {"b": ..., "a": ...})`` in key order, so its outputs, layers, weights, .weights.h5
groups, list-valued losses and targets all go 'a' first. The heads here have equal shapes and
are created in the opposite order of their keys: a head's weights put in the other head would
go unnoticed by shape checks, but not by these tests.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras reads this once, at import

import json  # noqa: E402
import zipfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402
from fastnn.saving.keras_format import (  # noqa: E402
    load_keras_model,
    load_keras_weights,
    save_keras_model,
    save_keras_weights,
)

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

N = 6  # samples per batch


# ---------------------------------------------------------------- models (K is keras or fastnn)


def two_heads(K):
    """Two Dense heads of one shape on a shared trunk, head 'b' written and created first."""
    L = K.layers
    x = K.Input(shape=(4,), name="x")
    trunk = L.Dense(5, activation="tanh", name="trunk")(x)
    head_b = L.Dense(3, name="head_b")(trunk)
    head_a = L.Dense(3, name="head_a")(trunk)
    return K.Model(x, {"b": head_b, "a": head_a}, name="two_heads")


def crossed_names(K):
    """Deeper heads whose layer names sort the other way round from their keys."""
    L = K.layers
    x = K.Input(shape=(4,), name="x")
    trunk = L.Dense(5, activation="tanh", name="trunk")(x)
    for_b = L.Dense(3, name="alpha")(L.Dense(6, activation="relu", name="mid_alpha")(trunk))
    for_a = L.Dense(3, name="zeta")(L.Dense(6, activation="relu", name="mid_zeta")(trunk))
    return K.Model(x, {"b": for_b, "a": for_a}, name="crossed")


def nested(K):
    """A dict-output model called as a layer: one of its outputs is the outer model's too."""
    L = K.layers
    inner = two_heads(K)
    x = K.Input(shape=(4,), name="outer_x")
    heads = inner(x)
    mixed = L.Add(name="mixed")([heads["b"], L.Dense(3, name="after_a")(heads["a"])])
    return K.Model(x, {"s": mixed, "b": heads["b"]}, name="outer")


MODELS = {"two_heads": two_heads, "crossed_names": crossed_names, "nested": nested}


# ---------------------------------------------------------------- helpers


def perturbed(model, seed=0):
    """``model`` with every weight moved off its initial value (zero biases would hide a bias
    loaded into the wrong head)."""
    rng = np.random.default_rng(seed)
    model.set_weights(
        [w + rng.normal(0, 0.3, np.shape(w)).astype(np.float32) for w in model.get_weights()]
    )
    return model


def data(seed=1):
    return np.random.default_rng(seed).normal(size=(N, 4)).astype(np.float32)


def targets(keys=("a", "b"), seed=2):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=(N, 3)).astype(np.float32) + i for i, k in enumerate(keys)}


def numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def assert_same_heads(ours, theirs, x):
    """Both models predict a dict with the same keys, in the same order, and the same values."""
    got, expected = ours.predict(x, verbose=0), theirs.predict(x, verbose=0)
    assert isinstance(got, dict) and isinstance(expected, dict)
    assert list(got) == list(expected)
    for key in expected:
        np.testing.assert_allclose(got[key], numpy(expected[key]), rtol=1e-5, atol=1e-6)


def keras_names(model):
    """(layer names, weight paths, the layers producing the outputs) of a Keras model."""
    outputs = [t._keras_history[0].name for t in model.outputs]
    return [layer.name for layer in model.layers], [w.path for w in model.weights], outputs


def fastnn_names(model):
    outputs = [t.node.layer.name for t in model.outputs]
    return [layer.name for layer in model.layers], [w.path for w in model.weights], outputs


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(K, name)``: K's model with perturbed weights and the .keras / .weights.h5 files
    it was saved to, made once per module."""
    cache = {}

    def get(K, name):
        if (K, name) not in cache:
            folder = tmp_path_factory.mktemp(f"{K.__name__}_{name}")
            model = perturbed(MODELS[name](K))
            if K is keras:
                model.save(folder / "m.keras")
                model.save_weights(folder / "m.weights.h5")
            else:
                save_keras_model(model, folder / "m.keras")
                save_keras_weights(model, folder / "m.weights.h5")
            cache[K, name] = model, folder / "m.keras", folder / "m.weights.h5"
        return cache[K, name]

    return get


# ---------------------------------------------------------------- Keras's order


@pytest.mark.parametrize("name", list(MODELS))
def test_outputs_layers_and_weights_in_keras_order(name):
    ours, theirs = MODELS[name](fastnn), MODELS[name](keras)
    assert fastnn_names(ours) == keras_names(theirs)
    assert ours.output_names == sorted(theirs.output)  # the keys, in Keras's order
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert ours.output_shape == theirs.output_shape
    assert list(ours.output) == list(theirs.output)  # `output` is the dict as written
    ours_refs, theirs_refs = (
        ours.get_config()["output_layers"],
        theirs.get_config()["output_layers"],
    )
    assert list(ours_refs) == list(theirs_refs) == list(theirs.output)  # keys as written
    # (layer, tensor index); the node index of a nested model's call counts from 1 in Keras's
    # config, as test_fastnn_files_load_in_keras checks in the .keras file
    assert {k: (v[0], v[2]) for k, v in ours_refs.items()} == {
        k: (v[0], v[2]) for k, v in theirs_refs.items()
    }
    assert [e["name"] for e in ours.get_config()["layers"]] == [
        e["name"] for e in theirs.get_config()["layers"]
    ]


def test_list_outputs_keep_the_order_they_were_written_in():
    """A guard: only dicts are reordered; a list stays as written, in Keras as in fastnn."""

    def list_heads(K):
        x = K.Input(shape=(4,), name="x")
        head_b, head_a = K.layers.Dense(3, name="head_b")(x), K.layers.Dense(3, name="head_a")(x)
        return K.Model(x, [head_b, head_a])

    ours, theirs = list_heads(fastnn), list_heads(keras)
    assert fastnn_names(ours) == keras_names(theirs)
    assert ours.output_names == theirs.output_names == ["head_b", "head_a"]


def test_calls_return_dicts_keyed_as_keras():
    ours = perturbed(two_heads(fastnn))
    theirs = two_heads(keras)
    theirs.set_weights(ours.get_weights())
    x = data()
    for got, expected in [(ours(x), theirs(x)), (ours.predict_on_batch(x), theirs(x))]:
        assert isinstance(got, dict) and list(got) == list(expected) == ["a", "b"]
        for key in expected:
            np.testing.assert_allclose(got[key], numpy(expected[key]), rtol=1e-5, atol=1e-6)
    symbolic = ours(fastnn.Input(shape=(4,)))
    assert isinstance(symbolic, dict) and list(symbolic) == ["b", "a"]  # as written, as Keras
    assert [t.node.layer.name for t in symbolic.values()] == ["two_heads", "two_heads"]
    assert [t.index for t in symbolic.values()] == [1, 0]  # the flat order: 'a' is first


# ---------------------------------------------------------------- weights and files, both ways


@pytest.mark.parametrize("name", list(MODELS))
def test_keras_get_weights_set_in_fastnn(name, saved):
    theirs = saved(keras, name)[0]
    ours = MODELS[name](fastnn)
    ours.set_weights([numpy(w) for w in theirs.get_weights()])
    assert_same_heads(ours, theirs, data())


@pytest.mark.parametrize("name", list(MODELS))
def test_fastnn_get_weights_set_in_keras(name, saved):
    ours = saved(fastnn, name)[0]
    theirs = MODELS[name](keras)
    theirs.set_weights(ours.get_weights())
    assert_same_heads(ours, theirs, data())


@pytest.mark.parametrize("name", list(MODELS))
def test_keras_files_load_in_fastnn(name, saved):
    theirs, model_file, weights_file = saved(keras, name)
    assert_same_heads(load_keras_model(model_file), theirs, data())
    assert_same_heads(fastnn.models.load_model(model_file), theirs, data())
    ours = MODELS[name](fastnn)
    load_keras_weights(ours, weights_file)
    assert_same_heads(ours, theirs, data())
    ours = MODELS[name](fastnn)
    ours.load_weights(weights_file)
    assert_same_heads(ours, theirs, data())


@pytest.mark.parametrize("name", list(MODELS))
def test_fastnn_files_load_in_keras(name, saved):
    ours, model_file, weights_file = saved(fastnn, name)
    with zipfile.ZipFile(model_file) as zf:
        written = json.loads(zf.read("config.json"))["config"]
    expected = MODELS[name](keras).get_config()
    assert written["output_layers"] == expected["output_layers"]
    assert [e["name"] for e in written["layers"]] == [e["name"] for e in expected["layers"]]
    loaded = keras.saving.load_model(model_file)
    assert_same_heads(ours, loaded, data())
    assert keras_names(loaded) == fastnn_names(ours)
    theirs = MODELS[name](keras)
    theirs.load_weights(weights_file)
    assert_same_heads(ours, theirs, data())


@pytest.mark.parametrize("name", list(MODELS))
def test_fastnn_files_round_trip(name, tmp_path):
    model = perturbed(MODELS[name](fastnn))
    model.save(tmp_path / "m.fastnn")
    model.save(tmp_path / "m.keras")
    for path in ("m.fastnn", "m.keras"):
        loaded = fastnn.models.load_model(tmp_path / path)
        assert fastnn_names(loaded) == fastnn_names(model) == keras_names(MODELS[name](keras))
        assert loaded.output_names == model.output_names
        for got, expected in zip(loaded.get_weights(), model.get_weights(), strict=True):
            np.testing.assert_array_equal(got, expected)
        assert_same_heads(loaded, model, data())
    model.save_weights(tmp_path / "m.weights.npz")
    fresh = MODELS[name](fastnn)
    fresh.load_weights(tmp_path / "m.weights.npz")
    assert_same_heads(fresh, model, data())


@pytest.mark.parametrize("name", list(MODELS))
def test_json_round_trip_keeps_keras_order(name):
    model = MODELS[name](fastnn)
    again = fastnn.models.model_from_json(model.to_json())
    assert fastnn_names(again) == fastnn_names(model) == keras_names(MODELS[name](keras))
    assert list(again.output) == list(model.output)
    assert json.loads(again.to_json()) == json.loads(model.to_json())


# ---------------------------------------------------------------- compile / fit / evaluate


def matched_pair():
    """The two-head model in fastnn and in Keras with the same weights."""
    ours = perturbed(two_heads(fastnn))
    theirs = two_heads(keras)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize(
    "loss",
    [
        {"a": "mse", "b": "mae"},
        {"b": "mae", "a": "mse"},
        ["mse", "mae"],  # a list follows the outputs' order: 'a' first
    ],
    ids=["dict", "dict_other_order", "list"],
)
@pytest.mark.parametrize("y_as", ["dict", "list"])
def test_losses_and_targets_map_to_heads_as_in_keras(loss, y_as):
    ours, theirs = matched_pair()
    ys = targets()
    y = ys if y_as == "dict" else [ys["a"], ys["b"]]  # a list follows the outputs' order too
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss=loss, metrics={"a": ["mae"], "b": ["mse"]})
    x = data()
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    expected = theirs.evaluate(x, y, verbose=0, return_dict=True)
    assert list(got) == list(expected)
    np.testing.assert_allclose(list(got.values()), list(expected.values()), rtol=1e-5)
    got = ours.evaluate(x, y, verbose=0)
    expected = theirs.evaluate(x, y, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert list(ours.fit(x, y, verbose=0).history) == list(theirs.fit(x, y, verbose=0).history)


def test_a_loss_on_one_head_trains_that_head_only():
    cases = [
        ({"a": "mse", "b": None}, "head_a"),
        ([None, "mse"], "head_b"),
        (["mse", None], "head_a"),
    ]
    for loss, trained in cases:  # a list follows the outputs' order: 'a' first
        for model in matched_pair():
            model.compile(optimizer="sgd", loss=loss)
            before = {name: model.get_layer(name).get_weights() for name in ("head_a", "head_b")}
            model.fit(data(), targets(), epochs=2, verbose=0)
            changed = [
                name
                for name, weights in before.items()
                if not all(
                    np.array_equal(numpy(w), numpy(v))
                    for w, v in zip(weights, model.get_layer(name).get_weights())
                )
            ]
            assert changed == [trained], (loss, type(model).__module__)
