"""StringLookup, IntegerLookup and TextVectorization: Keras 3's outputs, vocabularies and
errors. The expected values below are Keras 3.15's (on TensorFlow 2.21, whose ops these layers
run in Keras); ``test_same_as_keras`` compares the same cases with Keras itself where
TensorFlow is installed."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import fastnn
from fastnn import layers

VOCAB = ["a", "b", "c", "d"]
DATA = [["a", "c", "d"], ["d", "z", "b"]]
TEXTS = ["foo bar", "bar baz", "baz bada boom"]


def _adapted(layer, data):
    layer.adapt(data)
    return layer


# name -> (fn(layers) -> output, Keras's output)
CASES = {
    "string-int": (lambda L: L.StringLookup(vocabulary=VOCAB)(DATA), [[1, 3, 4], [4, 0, 2]]),
    "string-flat": (lambda L: L.StringLookup(vocabulary=VOCAB)(["a", "z"]), [1, 0]),
    "string-mask": (
        lambda L: L.StringLookup(vocabulary=VOCAB, mask_token="[MASK]")([["a", "[MASK]"]]),
        [[2, 0]],
    ),
    "string-one_hot": (
        lambda L: L.StringLookup(vocabulary=VOCAB, output_mode="one_hot")(["a", "d", "z"]),
        [[0, 1, 0, 0, 0], [0, 0, 0, 0, 1], [1, 0, 0, 0, 0]],
    ),
    "string-multi_hot": (
        lambda L: L.StringLookup(vocabulary=VOCAB, output_mode="multi_hot")(DATA),
        [[0, 1, 0, 1, 1], [1, 0, 1, 0, 1]],
    ),
    "string-multi_hot-flat": (
        lambda L: L.StringLookup(vocabulary=VOCAB, output_mode="multi_hot")(["a", "b"]),
        [0, 1, 1, 0, 0],
    ),
    "string-count": (
        lambda L: L.StringLookup(vocabulary=VOCAB, output_mode="count")(
            [["a", "c", "d", "d"], ["d", "z", "b", "z"]]
        ),
        [[0, 1, 0, 1, 2], [2, 0, 1, 0, 1]],
    ),
    "string-count-mask-dropped": (
        lambda L: L.StringLookup(vocabulary=VOCAB, output_mode="count", mask_token="")(
            [["a", "", "d", "d"]]
        ),
        [[0, 1, 0, 0, 2]],
    ),
    "string-tf_idf": (
        lambda L: L.StringLookup(
            output_mode="tf_idf", vocabulary=VOCAB, idf_weights=[0.25, 0.75, 0.6, 0.4]
        )([["a", "c", "d", "d"], ["d", "z", "b", "z"]]),
        [[0.0, 0.25, 0.0, 0.6, 0.8], [1.0, 0.0, 0.75, 0.0, 0.4]],
    ),
    "string-adapt-tf_idf": (
        lambda L: _adapted(
            L.StringLookup(output_mode="tf_idf"), [["a", "b", "b"], ["b", "c", "c"]]
        )([["a", "b"], ["c", "z"]]),
        [[0.0, 0.5108256, 0.0, 0.6931472], [0.6323733, 0.0, 0.6931472, 0.0]],
    ),
    "integer-int": (
        lambda L: L.IntegerLookup(vocabulary=[12, 36, 1138, 42])([[12, 1138, 42], [42, 1000, 36]]),
        [[1, 3, 4], [4, 0, 2]],
    ),
    "integer-two_oov": (
        lambda L: L.IntegerLookup(vocabulary=[12, 36, 1138, 42], num_oov_indices=2)(
            [[12, 1138, 42], [37, 1000, 36]]
        ),
        [[2, 4, 5], [1, 0, 3]],
    ),
    "integer-invert": (
        lambda L: L.IntegerLookup(vocabulary=[12, 36, 1138, 42], invert=True)(
            [[1, 3, 4], [4, 0, 2]]
        ),
        [[12, 1138, 42], [42, -1, 36]],
    ),
    "integer-mask": (
        lambda L: L.IntegerLookup(vocabulary=[12, 36, 1138, 42], mask_token=0)([[12, 0, 42]]),
        [[2, 0, 5]],
    ),
    "text-int": (
        lambda L: _adapted(L.TextVectorization(max_tokens=5000, output_sequence_length=4), TEXTS)(
            [["foo qux bar"], ["qux baz"]]
        ),
        [[4, 1, 3, 0], [1, 2, 0, 0]],
    ),
    "text-standardized": (
        lambda L: _adapted(
            L.TextVectorization(),
            ["The Cat, sat!", "the  dog\tsat on\nTHE mat.", "Émile était là"],
        )(["the cat sat", "a dog"]),
        [[2, 10, 3], [1, 9, 0]],
    ),
    "text-bigrams-multi_hot": (
        lambda L: _adapted(
            L.TextVectorization(ngrams=2, output_mode="multi_hot"), ["a b c", "b c d"]
        )(["a b", "c d e"]),
        [[0, 0, 0, 1, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1, 0, 0]],
    ),
    "text-ngrams-tf_idf": (
        lambda L: _adapted(
            L.TextVectorization(output_mode="tf_idf", ngrams=(1, 3)), ["a b c", "b c d", "b"]
        )(["a b c", "d e"]),
        [
            [0.0, 0.5596158, 0.6931472, 0.0, 0.0, 0.9162908, 0.9162908],
            [0.8196544, 0.0, 0.0, 0.9162908, 0.0, 0.0, 0.0],
        ],
    ),
    "text-characters": (
        lambda L: _adapted(
            L.TextVectorization(split="character", standardize=None, output_sequence_length=6),
            ["abc", "bcd", "Aé"],
        )(["ab", "éAz"]),
        [[6, 3, 0, 0, 0, 0], [4, 7, 1, 0, 0, 0]],
    ),
    "text-count-padded": (
        lambda L: _adapted(
            L.TextVectorization(max_tokens=4, output_mode="count", pad_to_max_tokens=True),
            ["x y y z"],
        )(["y x q"]),
        [[1, 1, 0, 1]],
    ),
    "text-vocabulary": (
        lambda L: L.TextVectorization(vocabulary=["earth", "wind", "and", "fire"])(
            ["earth wind and fire", "fire and ice"]
        ),
        [[2, 3, 4, 5], [5, 4, 1, 0]],
    ),
}

VOCABULARIES = {
    "string-adapt": (
        lambda L: _adapted(
            L.StringLookup(), np.array([["a", "c", "d"], ["d", "z", "b"], ["b", "b", "e"]])
        ),
        ["[UNK]", "b", "d", "z", "e", "c", "a"],
    ),
    "string-adapt-max_tokens": (
        lambda L: _adapted(L.StringLookup(max_tokens=3), ["x", "y", "y", "z", "z", "w"]),
        ["[UNK]", "z", "y"],
    ),
    "integer-adapt": (
        lambda L: _adapted(L.IntegerLookup(), [12, 36, 1138, 1138, 42, 42, 42]),
        [-1, 42, 1138, 36, 12],
    ),
    "text-adapt": (
        lambda L: _adapted(L.TextVectorization(), TEXTS),
        ["", "[UNK]", "baz", "bar", "foo", "boom", "bada"],
    ),
    "text-adapt-unicode": (  # TensorFlow's lower() lowers ASCII letters only
        lambda L: _adapted(L.TextVectorization(), ["Émile était là", "là"]),
        ["", "[UNK]", "là", "était", "Émile"],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_as_keras(name):
    fn, expected = CASES[name]
    got = fn(layers)
    expected = np.asarray(expected)
    assert got.shape == expected.shape
    if expected.dtype.kind == "f":
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    else:
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", sorted(VOCABULARIES))
def test_learned_vocabularies_as_keras(name):
    fn, expected = VOCABULARIES[name]
    assert fn(layers).get_vocabulary() == expected


HAS_TF = importlib.util.find_spec("tensorflow") is not None


@pytest.mark.skipif(not HAS_TF, reason="Keras's lookup layers need TensorFlow (not installed)")
def test_same_as_keras():
    from keras_twin import keras_module

    keras = keras_module()
    for name, (fn, _) in CASES.items():
        ours, theirs = fn(layers), keras.ops.convert_to_numpy(fn(keras.layers))
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, err_msg=name)
    for name, (fn, _) in VOCABULARIES.items():
        theirs = [
            t.item() if isinstance(t, np.generic) else t for t in fn(keras.layers).get_vocabulary()
        ]
        assert fn(layers).get_vocabulary() == theirs, name


def test_invert_gives_tokens():
    lookup = layers.StringLookup(vocabulary=VOCAB, invert=True)
    assert lookup([[1, 3, 4], [4, 0, 2]]).tolist() == [["a", "c", "d"], ["d", "[UNK]", "b"]]


def test_bytes_and_object_arrays_are_decoded():
    lookup = layers.StringLookup(vocabulary=VOCAB)
    assert lookup(np.array([b"a", b"d"])).tolist() == [1, 4]
    assert lookup(np.array(["c", "q"], dtype=object)).tolist() == [3, 0]


def test_vocabulary_from_a_file(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("a\nb\nc\n\n", encoding="utf-8")
    assert layers.StringLookup(vocabulary=str(path))(["c", "a", "x"]).tolist() == [3, 1, 0]
    with pytest.raises(ValueError, match="does not exist"):
        layers.StringLookup(vocabulary=str(tmp_path / "missing.txt"))


def test_a_vocabulary_with_its_special_tokens_is_taken_as_it_is():
    lookup = layers.StringLookup(vocabulary=["[UNK]", "a", "b"])
    assert lookup.get_vocabulary() == ["[UNK]", "a", "b"]
    assert lookup(["b"]).tolist() == [2]


def test_config_round_trip_keeps_an_adapted_vocabulary():
    vectorize = _adapted(layers.TextVectorization(output_sequence_length=3), TEXTS)
    again = layers.TextVectorization.from_config(vectorize.get_config())
    assert again.get_vocabulary() == vectorize.get_vocabulary()
    np.testing.assert_array_equal(again(["baz foo", "boom"]), vectorize(["baz foo", "boom"]))
    tf_idf = _adapted(layers.StringLookup(output_mode="tf_idf"), [["a", "b", "b"], ["b", "c"]])
    again = layers.StringLookup.from_config(tf_idf.get_config())
    np.testing.assert_allclose(again([["a", "c"]]), tf_idf([["a", "c"]]))


def test_a_callable_standardize_gets_numpy_strings():
    seen = []

    def standardize(texts):
        seen.append(texts.dtype.kind)
        return np.char.replace(np.char.lower(texts), "<br />", " ")

    vectorize = _adapted(layers.TextVectorization(standardize=standardize), ["A<br />B", "b c"])
    assert vectorize.get_vocabulary() == ["", "[UNK]", "b", "c", "a"]
    assert vectorize(["A<br />C"]).tolist() == [[4, 3]]
    assert set(seen) == {"U"}


def test_adapt_takes_batches_from_a_generator():
    def batches():
        yield np.array(["a b", "b"])
        yield np.array(["c b"])

    vectorize = layers.TextVectorization()
    vectorize.adapt(batches())
    assert vectorize.get_vocabulary() == ["", "[UNK]", "b", "c", "a"]


def test_integer_lookup_in_a_model_feeds_an_embedding():
    ids = fastnn.Input((3,), dtype="int64")
    x = layers.IntegerLookup(vocabulary=[10, 20, 30])(ids)
    x = layers.GlobalAveragePooling1D()(layers.Embedding(4, 2)(x))
    model = fastnn.Model(ids, layers.Dense(1)(x))
    model.compile("adam", "mse")
    data = np.array([[10, 20, 99], [30, 30, 10]])
    model.fit(data, np.ones((2, 1)), epochs=1, verbose=0)
    assert model.predict(data, verbose=0).shape == (2, 1)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="`output_mode` must be `'int'` when `invert` is true"):
        layers.StringLookup(invert=True, output_mode="multi_hot")
    with pytest.raises(ValueError, match="`idf_weights` should only be set"):
        layers.StringLookup(vocabulary=VOCAB, idf_weights=[1.0] * 4)
    with pytest.raises(ValueError, match="repeated term"):
        layers.StringLookup(vocabulary=["a", "a"])
    with pytest.raises(ValueError, match="all inputs should be in vocabulary, found OOV values"):
        layers.StringLookup(vocabulary=VOCAB, num_oov_indices=0)(["a", "q"])
    with pytest.raises(RuntimeError, match="must set the layer's vocabulary before calling it"):
        layers.StringLookup(output_mode="multi_hot")(["a"])
    with pytest.raises(ValueError, match="Cannot adapt layer"):
        layers.StringLookup(vocabulary=VOCAB).adapt(["a"])
    with pytest.raises(ValueError, match="the last shape dimension must be 1"):
        _adapted(layers.TextVectorization(), TEXTS)([["a", "b"]])
    with pytest.raises(ValueError, match="`output_sequence_length` must not be set"):
        layers.TextVectorization(output_mode="count", output_sequence_length=3)
    with pytest.raises(NotImplementedError, match="works on strings outside the model"):
        layers.TextVectorization()(fastnn.Input((1,)))
