"""Truncated, corrupted and tampered ``.fastnn`` / ``.weights.npz`` files: a ValueError naming the
file and what is wrong, never another exception, never a half-loaded model, never unpickling."""

import io
import json
import re
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import layers
from fastnn.models import load_model
from fastnn.saving import FileFormatError
from fastnn.utils import set_random_seed

X = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")


def _model():
    model = fastnn.Sequential(
        [
            layers.Dense(3, activation="relu", input_shape=(4,), name="hidden"),
            layers.Dropout(0.5, name="dropout"),
            layers.Dense(2, name="output"),
        ]
    )
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, np.ones((6, 2)), epochs=1, batch_size=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small trained model saved once, with its file's bytes and its predictions."""
    set_random_seed(0)
    folder = tmp_path_factory.mktemp("fuzz")
    model = _model()
    model.save(folder / "original.fastnn")
    model.save_weights(folder / "original.weights.npz")
    return SimpleNamespace(
        folder=folder,
        model=model,
        data=(folder / "original.fastnn").read_bytes(),
        weights=(folder / "original.weights.npz").read_bytes(),
        predictions=model.predict(X, verbose=0),
    )


# ---- random mutations --------------------------------------------------------------------------
def mutations(size: int):
    """Byte flips, a truncation, an insertion or a deletion, as a function of the bytes."""

    def flip(changes):
        def apply(data):
            data = bytearray(data)
            for position, mask in changes:
                data[position % len(data)] ^= mask
            return bytes(data)

        return apply

    positions = st.integers(0, size - 1)
    return st.one_of(
        st.lists(st.tuples(positions, st.integers(1, 255)), min_size=1, max_size=8).map(flip),
        positions.map(lambda n: lambda data: data[:n]),
        st.tuples(st.integers(0, size), st.binary(min_size=1, max_size=32)).map(
            lambda a: lambda data: data[: a[0]] + a[1] + data[a[0] :]
        ),
        st.tuples(positions, st.integers(1, 64)).map(
            lambda a: lambda data: data[: a[0]] + data[a[0] + a[1] :]
        ),
    )


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_a_mutated_model_file_loads_identically_or_raises_a_value_error_naming_it(saved, data):
    mutate = data.draw(mutations(len(saved.data)))
    path = saved.folder / "mutated.fastnn"
    mutated = mutate(saved.data)
    path.write_bytes(mutated)
    try:
        model = load_model(path)
    except ValueError as error:  # any other exception fails the test
        assert str(path) in str(error)
        return
    # The mutation hit bytes that do not matter (e.g. a zip timestamp or bytes before the
    # archive): the model must be the saved one, exactly.
    assert np.array_equal(model.predict(X, verbose=0), saved.predictions)
    assert model.get_config() == saved.model.get_config()
    for a, b in zip(model.optimizer.get_state(), saved.model.optimizer.get_state(), strict=True):
        assert np.array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_mutated_weights_file_loads_all_or_nothing(saved, data):
    mutate = data.draw(mutations(len(saved.weights)))
    path = saved.folder / "mutated.weights.npz"
    path.write_bytes(mutate(saved.weights))
    target = fastnn.models.clone_model(saved.model)
    before = target.get_weights()
    try:
        target.load_weights(path)
    except ValueError as error:
        assert str(path) in str(error)
        for a, b in zip(before, target.get_weights(), strict=True):
            assert np.array_equal(a, b)  # nothing was half-applied
        return
    for a, b in zip(saved.model.get_weights(), target.get_weights(), strict=True):
        assert np.array_equal(a, b)


# Integers are small, or so huge that building fails at once: a tampered units=10**7 would have
# the model initialize gigabytes of weights before the shape check refuses the file.
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 40)
    | st.sampled_from([2**62, 2**64, -(2**63)])
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["relu", "float64", "int32", "Dense", "Functional", "dropout", "weights"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node, prefix=()):
    """Every path into a JSON document, the root excluded."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, (dict, list)):
            yield from _paths(value, (*prefix, key))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_a_tampered_manifest_with_valid_checksums_is_refused_or_gives_a_working_model(saved, data):
    """Not caught by the zip's CRCs: values replaced, keys deleted or list items inserted
    anywhere in the manifest (configs, array entries, compile and training state)."""
    with zipfile.ZipFile(io.BytesIO(saved.data)) as zf:
        manifest = json.loads(zf.read("fastnn.json"))
    paths = sorted(_paths(manifest), key=repr)
    for _ in range(data.draw(st.integers(1, 3))):
        *parents, key = data.draw(st.sampled_from(paths))
        node = manifest
        try:
            for parent in parents:
                node = node[parent]
            action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
            if action == "delete" and isinstance(node, dict):
                del node[key]
            elif action == "insert" and isinstance(node, list):
                node.insert(key, data.draw(JSON_VALUES))
            else:
                node[key] = data.draw(JSON_VALUES)
        except (KeyError, IndexError, TypeError):  # an earlier change removed this path
            pass
    path = tamper(saved, replace={"fastnn.json": json.dumps(manifest).encode()})
    try:
        model = load_model(path)
    except ValueError as error:
        assert str(path) in str(error)
        return
    x = input_for(model)
    if x is not None:
        assert model.predict(x, verbose=0).shape[0] == len(X)


def input_for(model):
    """X, or random data of another input shape the tampered file declares (a valid model:
    e.g. an inserted None makes the Dense layers read 3-D input); None if it is too large to
    run here."""
    shape = tuple(model.inputs[0].shape[1:])
    if shape == X.shape[1:]:
        return X
    shape = (len(X), *(2 if d is None else d for d in shape))
    if np.prod(shape) > 10**5:
        return None
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


# ---- targeted tampering ------------------------------------------------------------------------
def npy(array, allow_pickle=False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=allow_pickle)
    return buffer.getvalue()


def tamper(saved, name="tampered.fastnn", edit=None, replace=None, drop=(), compress=()):
    """Rewrite the saved file: ``edit(manifest)`` in place, replace or drop entries."""
    source = saved.weights if name.endswith(".weights.npz") else saved.data
    with zipfile.ZipFile(io.BytesIO(source)) as zf:
        entries = {entry: zf.read(entry) for entry in zf.namelist()}
    if edit is not None:
        manifest = json.loads(entries["fastnn.json"])
        edit(manifest)
        entries["fastnn.json"] = json.dumps(manifest).encode()
    entries.update(replace or {})
    path = saved.folder / name
    with zipfile.ZipFile(path, "w") as zf:
        for entry, data in entries.items():
            if entry not in drop:
                method = zipfile.ZIP_DEFLATED if entry in compress else zipfile.ZIP_STORED
                zf.writestr(entry, data, compress_type=method)
    return path


def refused(path, message: str, load=load_model):
    """Loading ``path`` raises FileFormatError with exactly ``Cannot load '<path>': message``."""
    with pytest.raises(FileFormatError, match=re.escape(f"Cannot load '{path}': {message}")):
        load(path)


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(manifest):
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _dense_config(manifest):
    return manifest["model"]["config"]["layers"][1]["config"]


class Bomb:
    """Records being unpickled: a file must never get this far."""

    def __reduce__(self):
        return (_unpickled.append, ("unpickled",))


_unpickled = []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"drop": ["weights/0.npy"]}, "the entry 'weights/0.npy' is missing"),
        ({"drop": ["fastnn.json"]}, "the entry 'fastnn.json' is missing"),
        (
            {"edit": _set("weights", 0, "shape", [4, 5])},
            "weights array 0 is float32 (4, 5) but the model expects float32 (4, 3)",
        ),
        (
            {"edit": lambda m: _dense_config(m).update(units=5)},
            "weights array 0 is float32 (4, 3) but the model expects float32 (4, 5)",
        ),
        (
            {"edit": _set("weights", 0, "dtype", "float64")},
            "weights array 0 is float64 (4, 3) but the model expects float32 (4, 3)",
        ),
        (
            {"replace": {"weights/0.npy": npy(np.zeros((4, 3), "float64"))}},
            "'weights/0.npy' holds float64 (4, 3), expected float32 (4, 3)",
        ),
        (
            {"replace": {"weights/1.npy": npy(np.zeros((4,), "float32"))}},
            "'weights/1.npy' holds float32 (4,), expected float32 (3,)",
        ),
        (
            {"replace": {"weights/0.npy": npy(np.zeros((4, 3), "float32")) + b"\0" * 16}},
            "'weights/0.npy' is not a valid .npy array (16 bytes of trailing data)",
        ),
        (
            {"replace": {"weights/0.npy": npy(np.zeros((4, 3), "float32"))[:-5]}},
            "'weights/0.npy' is not a valid .npy array (",
        ),
        (
            {"replace": {"weights/0.npy": b"not an npy file at all"}},
            "'weights/0.npy' is not a valid .npy array (",
        ),
        (
            {"edit": lambda m: m["weights"].append(m["weights"][0])},
            "it has 5 weights arrays, the model needs 4",
        ),
        (
            {"edit": _set("weights", 1, "file", "weights/0.npy")},
            "weights entry 1 is malformed: {'file': 'weights/0.npy'",
        ),
        (
            {"edit": _set("weights", 0, "shape", 12)},
            "weights entry 0 is malformed: {'file': 'weights/0.npy', 'shape': 12",
        ),
        (
            {"edit": _set("optimizer_state", 2, "shape", [3, 4])},
            "optimizer_state array 2 is float32 (3, 4) but the model expects float32 (4, 3)",
        ),
        (
            {"edit": _set("optimizer_variables", [0, 0, 1, 2])},
            "'optimizer_variables' in 'fastnn.json' is malformed",
        ),
        ({"replace": {"fastnn.json": b"{not json"}}, "'fastnn.json' is not valid JSON ("),
        ({"replace": {"fastnn.json": b"\xff\xfe"}}, "'fastnn.json' is not valid JSON ("),
        (
            {"replace": {"fastnn.json": b"[" * 100_000 + b"]" * 100_000}},
            "'fastnn.json' is not valid JSON (",
        ),
        (
            {"replace": {"fastnn.json": b"[1, 2]"}},
            "expected a 'fastnn.model' file, found format None",
        ),
        (
            {"edit": _set("format", "fastnn.weights")},
            "expected a 'fastnn.model' file, found format 'fastnn.weights'",
        ),
        (
            {"edit": _set("version", 2)},
            "format version 2 is not supported (this fastnn reads version 1)",
        ),
        ({"edit": _set("model", "Sequential")}, "'model' in 'fastnn.json' is missing or malformed"),
        ({"edit": _set("weights", None)}, "'weights' in 'fastnn.json' is missing or malformed"),
        (
            {"edit": lambda m: _dense_config(m).update(units=-1)},
            "its model config cannot be built: ",
        ),
        (
            {"edit": lambda m: _dense_config(m).update(surprise=1)},
            "its model config cannot be built: ",
        ),
        (
            {"edit": lambda m: m.update(model=m["model"]["config"]["layers"][1])},
            "it holds a Dense, not a model",
        ),
        ({"edit": _set("compile", "loss", "no_such_loss")}, "its compile config is invalid: "),
        ({"edit": _set("compile", [])}, "'compile' in 'fastnn.json' is missing or malformed"),
        (
            {"edit": _set("training_state", "random_states", {"ghost": {}})},
            "random states are saved for unknown layers ['ghost']",
        ),
        (
            {"edit": lambda m: m["training_state"]["random_states"].update(dropout={"a": 1})},
            "layer 'dropout' has an invalid random state: ",
        ),
        (
            {"edit": _set("training_state", "shuffle_seed", "abc")},
            "the shuffle seed 'abc' is not an integer",
        ),
        (
            {"edit": _set("training_state", "shuffle_seed", -1)},
            "the shuffle seed -1 is not an integer",
        ),
        (
            {"edit": _set("training_state", None)},
            "'training_state' in 'fastnn.json' is missing or malformed",
        ),
    ],
)
def test_tampered_files_are_refused_with_a_message_naming_file_and_fault(saved, kwargs, message):
    refused(tamper(saved, **kwargs), message)


def test_an_npy_holding_a_pickle_is_refused_without_unpickling(saved):
    bombs = np.empty((4, 3), dtype=object)
    bombs[...] = [[Bomb()] * 3] * 4
    pickled = npy(bombs, allow_pickle=True)
    path = tamper(saved, replace={"weights/0.npy": pickled})
    refused(path, "'weights/0.npy' holds object (4, 3), expected float32 (4, 3)")
    path = tamper(
        saved, edit=_set("weights", 0, "dtype", "object"), replace={"weights/0.npy": pickled}
    )
    refused(path, "weights array 0 is object (4, 3) but the model expects float32 (4, 3)")
    path = tamper(saved, "w.weights.npz", replace={"weights/0.npy": pickled})
    target = fastnn.models.clone_model(saved.model)
    refused(path, "'weights/0.npy' holds object (4, 3)", load=target.load_weights)
    assert _unpickled == []


def test_an_npy_header_is_checked_before_its_data_is_read(saved):
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
    )
    path = tamper(saved, replace={"weights/0.npy": buffer.getvalue() + b"\0" * 48})
    refused(path, "'weights/0.npy' holds float32 (1000000000000,), expected float32 (4, 3)")


def test_an_oversized_entry_is_refused_before_it_is_inflated(saved):
    bomb = npy(np.zeros((4, 3), "float32")) + b"\0" * 1_000_000
    path = tamper(saved, replace={"weights/0.npy": bomb}, compress=["weights/0.npy"])
    assert path.stat().st_size < 100_000
    refused(path, f"'weights/0.npy' is {len(bomb)} bytes, too large for float32 (4, 3)")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a fastnn zip file ("),
        (b"just some text\n", "not a fastnn zip file ("),
        (b"PK\x05\x06" + b"\0" * 18, "the entry 'fastnn.json' is missing"),
    ],
)
def test_files_that_are_not_fastnn_zips_are_refused(saved, content, message):
    path = saved.folder / "junk.fastnn"
    path.write_bytes(content)
    refused(path, message)
    weights_path = saved.folder / "junk.weights.npz"
    weights_path.write_bytes(content)
    refused(weights_path, message, load=fastnn.models.clone_model(saved.model).load_weights)


def test_a_weights_file_for_another_model_file_kind_is_refused(saved):
    path = saved.folder / "model-as-weights.weights.npz"
    path.write_bytes(saved.data)
    message = "expected a 'fastnn.weights' file, found format 'fastnn.model'"
    refused(path, message, load=fastnn.models.clone_model(saved.model).load_weights)


def test_a_compile_config_without_optional_keys_still_loads(saved):
    path = tamper(saved, edit=lambda m: m["compile"]["optimizer"]["config"].pop("learning_rate"))
    model = load_model(path)
    assert model.optimizer.learning_rate == 0.001 and model.optimizer.iterations == 2
    path = tamper(saved, edit=_set("compile", "optimizer", "adam"))
    assert load_model(path).optimizer.iterations == 2


def test_file_format_error_is_a_value_error():
    assert issubclass(FileFormatError, ValueError)
