"""float64, float16, integer and bool inputs, labels and sample weights are accepted as Keras
accepts them, cast once to the model's dtype: every call gives what the float32 (or int64 labels)
version of the same values gives. Values a cast would break are refused, naming the sample."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn
from fastnn import layers

N = 12
RNG = np.random.default_rng(0)


def cnn() -> fastnn.Model:
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((4, 4, 1), name="image")
    x = layers.Flatten()(layers.Conv2D(2, 3, activation="relu")(inputs))
    model = fastnn.Model(inputs, layers.Dense(1, activation="sigmoid", name="is_cat")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def images(kind):
    values = (
        RNG.integers(0, 256, (N, 4, 4, 1))
        if kind in ("uint8", "int32")
        else RNG.random((N, 4, 4, 1))
    )
    if kind == "bool":
        return values > 0.5
    if kind == "list":
        return values.tolist()
    return values.astype(kind)


def labels(kind):
    values = RNG.integers(0, 2, (N, 1))
    return values.tolist() if kind == "list" else values.astype(kind)


def same(a, b):
    for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("x_kind", "y_kind"),
    [
        ("float64", "float64"),
        ("float16", "float16"),
        ("uint8", "int64"),
        ("int32", "int8"),
        ("bool", "bool"),
        ("list", "list"),
    ],
)
def test_inputs_and_labels_are_cast_as_float32_would_be(x_kind, y_kind):
    x, y = images(x_kind), labels(y_kind)
    x32 = np.asarray(x, dtype=np.float32)
    y32 = np.asarray(y, dtype=np.float32)
    ours, ref = cnn(), cnn()
    ref.set_weights(ours.get_weights())
    weights = RNG.integers(1, 3, N).astype(np.int16)  # integer sample weights too
    for model, (a, b, w) in [(ours, (x, y, weights)), (ref, (x32, y32, weights.astype(float)))]:
        model.fit(a, b, batch_size=5, epochs=2, shuffle=False, verbose=0, sample_weight=w)
        model.train_on_batch(a, b)
    same(ours.get_weights(), ref.get_weights())
    same(ours.evaluate(x, y, batch_size=5, verbose=0), ref.evaluate(x32, y32, verbose=0))
    same(ours.test_on_batch(x, y), ref.test_on_batch(x32, y32))
    predicted = ours.predict(x, batch_size=5, verbose=0)
    assert predicted.dtype == np.float32
    same(predicted, ref.predict(x32, verbose=0))
    same(ours(x), predicted)
    same(ours.predict_on_batch(x), predicted)
    assert all(w.dtype == np.float32 for w in ours.get_weights())


@pytest.mark.parametrize("kind", ["int8", "uint8", "int32", "float16", "float32", "float64"])
def test_sparse_labels_of_any_numeric_dtype(kind):
    def classifier():
        fastnn.utils.set_random_seed(1)
        inputs = fastnn.Input((5,))
        model = fastnn.Model(inputs, layers.Dense(3, activation="softmax")(inputs))
        model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model

    x = RNG.random((N, 5), dtype=np.float32)
    y = RNG.integers(0, 3, N)
    ours, ref = classifier(), classifier()
    ours.fit(x, y.astype(kind), batch_size=4, shuffle=False, verbose=0)
    ref.fit(x, y, batch_size=4, shuffle=False, verbose=0)
    same(ours.get_weights(), ref.get_weights())
    same(ours.evaluate(x, y.astype(kind), verbose=0), ref.evaluate(x, y, verbose=0))


@pytest.mark.parametrize("kind", ["float64", "int64", "uint8", "int32"])
def test_integer_inputs_of_an_embedding_accept_any_numeric_dtype(kind):
    fastnn.utils.set_random_seed(2)
    inputs = fastnn.Input((3,), dtype="int32", name="tokens")
    x = layers.Flatten()(layers.Embedding(10, 2)(inputs))
    model = fastnn.Model(inputs, layers.Dense(1)(x))
    model.compile("sgd", "mse")
    ids = RNG.integers(0, 10, (N, 3))
    same(model.predict(ids.astype(kind), verbose=0), model.predict(ids, verbose=0))
    same(model.evaluate(ids.astype(kind), ids[:, :1], verbose=0), model.evaluate(ids, ids[:, :1]))
    if kind == "float64":
        ids = ids.astype(kind)
        ids[4, 1] = np.nan
        with pytest.raises(ValueError, match=r"input 'tokens' contains NaN .*first in sample 4"):
            model.predict(ids, verbose=0)


def test_values_a_cast_would_break_are_refused_naming_the_sample():
    model = cnn()
    weights = [w.copy() for w in model.get_weights()]
    x = RNG.random((N, 4, 4, 1))
    x[7, 1, 2, 0] = 1e39  # finite in float64, inf in float32
    y = labels("float32")
    message = r"input 'image' has values beyond the range of float32 \(first in sample 7\)"
    for call in [
        lambda: model.fit(x, y, verbose=0),
        lambda: model.evaluate(x, y, verbose=0),
        lambda: model.predict(x, verbose=0),
        lambda: model(x),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    huge = y.astype(np.float64)
    huge[3] = -1e300
    with pytest.raises(ValueError, match=r"y for output 'is_cat' has values beyond.*sample 3\)"):
        model.fit(x.clip(0, 1), huge, verbose=0)
    bad_weight = np.ones(N)
    bad_weight[2] = np.inf
    with pytest.raises(ValueError, match=r"sample_weight contains NaN .*sample 2\)"):
        model.fit(x.clip(0, 1), y, sample_weight=bad_weight, verbose=0)
    same(model.get_weights(), weights)
    assert model.optimizer.iterations == 0
