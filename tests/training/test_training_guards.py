"""Bad data and arguments to fit/evaluate/predict are refused before any step, with the culprit
named: integer inputs beyond their dtype, non-integer sparse labels, bad arguments (issue 20).

Each refusal on a trained model runs inside ``unchanged(model)`` (weights and optimizer state
bit-identical), and leaves the history and the callbacks untouched.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from test_errors import unchanged

import fastnn as keras
from fastnn import layers

N = 8
RNG = np.random.default_rng(0)


def id_model(dtype="int32"):
    """Token ids through an Embedding, trained one step."""
    ids = keras.Input(shape=(4,), dtype=dtype, name="ids")
    x = layers.Flatten()(layers.Embedding(10, 3)(ids))
    model = keras.Model(ids, layers.Dense(1)(layers.BatchNormalization()(x)), name="tokens")
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(RNG.integers(0, 10, (N, 4)), RNG.random((N, 1)))
    return model


def int32_range(value):
    return re.escape(
        f"input 'ids' is int32, which holds values in [-2147483648, 2147483647]; got {value}"
    )


# ---- integer inputs beyond their dtype --------------------------------------------------------


@pytest.mark.parametrize(
    "value, shown", [(2**32 + 3, "4294967299"), (2**40, "1099511627776"), (-(2**31) - 1, None)]
)
def test_fit_refuses_ids_that_would_wrap_around(value, shown):
    model = id_model()
    x = RNG.integers(0, 10, (N, 4))
    x[5, 2] = value
    message = r"fit\(\): " + int32_range(shown or value) + r" \(first in sample 5\)"
    with unchanged(model), pytest.raises(ValueError, match=message):
        model.fit(x, RNG.random((N, 1)), epochs=1, verbose=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda model, x: model.predict(x, verbose=0),
        lambda model, x: model.evaluate(x, np.zeros((N, 1)), verbose=0),
        lambda model, x: model.predict_on_batch(x),
        lambda model, x: model.train_on_batch(x, np.zeros((N, 1))),
        lambda model, x: model(x),
    ],
)
def test_every_call_refuses_ids_beyond_int32_from_ints_or_floats(call):
    model = id_model()
    for big in (np.int64(2**40), 2.0**40):
        x = RNG.integers(0, 10, (N, 4)).astype(type(big))
        x[3, 0] = big
        with unchanged(model), pytest.raises(ValueError, match=int32_range(big)):
            call(model, x)


def test_ids_in_range_of_a_wider_type_are_accepted():
    model = id_model()
    x = RNG.integers(0, 10, (N, 4)).astype(np.int64)
    np.testing.assert_array_equal(
        model.predict(x, verbose=0), model.predict(x.astype(np.int32), verbose=0)
    )
    model.fit(x, RNG.random((N, 1)), epochs=1, verbose=0)


def test_an_unsigned_input_refuses_negative_ids():
    model = id_model("uint8")
    x = RNG.integers(0, 10, (N, 4))
    x[1, 1] = -1
    message = (
        r"input 'ids' is uint8, which holds values in \[0, 255\]; got -1 \(first in sample 1\)"
    )
    with unchanged(model), pytest.raises(ValueError, match=message):
        model.fit(x, RNG.random((N, 1)), verbose=0)


# ---- sparse labels ----------------------------------------------------------------------------


class Spy(keras.callbacks.Callback):
    """Records every hook called."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            return lambda *args, **kwargs: self.calls.append(name)
        return super().__getattribute__(name)


def classifier(steps=None):
    """3 classes, per sample or (with ``steps``) per time step, trained one step."""
    shape = (steps, 5) if steps else (5,)
    inputs = keras.Input(shape=shape, name="features")
    hidden = layers.BatchNormalization()(layers.Dense(4)(inputs))
    model = keras.Model(inputs, layers.Dense(3, activation="softmax", name="label")(hidden))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    labels = RNG.integers(0, 3, (N, steps) if steps else N)
    model.train_on_batch(RNG.random((N, *shape)), labels)
    return model, RNG.random((N, *shape))


@pytest.mark.parametrize("fit", [True, False])
def test_non_integer_sparse_labels_are_refused_with_their_position(fit):
    model, x = classifier()
    y = np.array([0, 1, 2, 1, 1.5, 0, 2, 2.25])
    message = re.escape(
        "y for output 'label': SparseCategoricalCrossentropy 'sparse_categorical_crossentropy': "
        "labels must be integer class indices; got 1.5 (first at index 4)"
    )
    spy = Spy()
    with unchanged(model), pytest.raises(ValueError, match=message):
        if fit:
            model.fit(x, y, epochs=2, verbose=0, callbacks=[spy], validation_data=(x, y))
        else:
            model.evaluate(x, y[:, None], verbose=0, callbacks=[spy])
    assert spy.calls == []


def test_sparse_labels_per_step_name_the_sample_and_step():
    model, x = classifier(steps=3)
    y = RNG.integers(0, 3, (N, 3)).astype(np.float32)
    y[6, 2] = 0.5
    with unchanged(model), pytest.raises(ValueError, match=r"got 0.5 \(first at index \(6, 2\)\)"):
        model.fit(x, y, verbose=0)
    y[6, 2] = 3
    with (
        unchanged(model),
        pytest.raises(ValueError, match=r"from 0 to 3 \(first outside: 3 at index \(6, 2\)\)"),
    ):
        model.fit(x, y, verbose=0)


def test_out_of_range_sparse_labels_name_the_first():
    model, x = classifier()
    y = np.array([0, 1, 2, -1, 1, 0, 7, 2])
    with (
        unchanged(model),
        pytest.raises(ValueError, match=r"from -1 to 7 \(first outside: -1 at index 3\)"),
    ):
        model.fit(x, y, verbose=0)


def test_whole_float_sparse_labels_score_as_integers():
    model, x = classifier()
    y = RNG.integers(0, 3, N)
    assert model.evaluate(x, y.astype(np.float64), verbose=0) == model.evaluate(x, y, verbose=0)
    model.fit(x, y.astype(np.float32), epochs=1, verbose=0)


# ---- messages of bad arguments ----------------------------------------------------------------


def regressor():
    """A model trained one epoch (so it has a history and a shuffle seed)."""
    inputs = keras.Input(shape=(3,), name="x")
    out = layers.Dense(2, activation="softmax")(layers.BatchNormalization()(inputs))
    model = keras.Model(inputs, out, name="m")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(RNG.random((N, 3)), RNG.integers(0, 2, N), epochs=1, verbose=0)
    return model


def refused(model, error, message, call):
    """``call(spy)`` raises ``error`` matching ``message`` and changes nothing: weights, optimizer
    state, the last history, the shuffle seed, and no callback hook ran."""
    spy = Spy()
    history, seed = model.history, model._shuffle_seed
    with unchanged(model), pytest.raises(error, match=message):
        call(spy)
    assert spy.calls == []
    assert model.history is history and model._shuffle_seed == seed


@pytest.mark.parametrize("initial_epoch", [-1, 1.5, "1"])
def test_a_bad_initial_epoch_is_named(initial_epoch):
    model = regressor()
    message = re.escape(
        f"`initial_epoch` must be an integer >= 0; got initial_epoch={initial_epoch!r}"
    )
    x, y = RNG.random((N, 3)), RNG.integers(0, 2, N)
    refused(
        model,
        ValueError,
        message,
        lambda spy: model.fit(x, y, epochs=3, initial_epoch=initial_epoch, callbacks=[spy]),
    )


@pytest.mark.parametrize("call", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_calls_before_compile_name_themselves_once(call):
    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, layers.Dense(1)(inputs), name="raw")
    message = rf"^You must call compile\(\) before {call}\(\): model 'raw' is not compiled$"
    with pytest.raises(ValueError, match=message):
        getattr(model, call)(RNG.random((N, 3)), RNG.random((N, 1)))


@pytest.mark.parametrize("weight", ["a", None, float("nan"), [1.0]])
def test_a_class_weight_that_is_no_number_names_the_class(weight):
    model = regressor()
    message = re.escape(
        f"class_weight: the weight of class 1 must be a finite number; got {weight!r}"
    )
    x, y = RNG.random((N, 3)), RNG.integers(0, 2, N)
    refused(
        model,
        ValueError,
        message,
        lambda spy: model.fit(x, y, class_weight={0: 1.0, 1: weight}, callbacks=[spy]),
    )
    with unchanged(model), pytest.raises(ValueError, match=message):
        model.train_on_batch(x, y, class_weight={0: 1, 1: weight})


def test_a_class_weight_that_is_no_dict_is_refused():
    model = regressor()
    x, y = RNG.random((N, 3)), RNG.integers(0, 2, N)
    message = "class_weight must be a dict from class index to weight; got list"
    refused(model, TypeError, message, lambda spy: model.fit(x, y, class_weight=[1.0, 2.0]))


MISSING_X = {
    "fit": lambda model, spy: model.fit(None, RNG.integers(0, 2, N), callbacks=[spy]),
    "evaluate": lambda model, spy: model.evaluate(x=None, y=RNG.integers(0, 2, N), callbacks=[spy]),
    "predict": lambda model, spy: model.predict(None, callbacks=[spy]),
    "train_on_batch": lambda model, spy: model.train_on_batch(None, RNG.integers(0, 2, N)),
    "test_on_batch": lambda model, spy: model.test_on_batch(None, RNG.integers(0, 2, N)),
    "predict_on_batch": lambda model, spy: model.predict_on_batch(None),
}


@pytest.mark.parametrize("call", list(MISSING_X))
def test_a_missing_x_is_named(call):
    model = regressor()
    message = rf"^{call}\(\): x is missing \(None\): pass the input data"
    refused(model, ValueError, message, lambda spy: MISSING_X[call](model, spy))


def test_a_missing_x_leaves_a_sequential_unbuilt():
    model = keras.Sequential([layers.Dense(2)], name="lazy")
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"fit\(\): x is missing"):
        model.fit(y=np.zeros((N, 2)))
    assert not model.built


def test_a_missing_input_of_several_is_named():
    a, b = keras.Input(shape=(2,), name="a"), keras.Input(shape=(2,), name="b")
    model = keras.Model([a, b], layers.Add()([a, b]))
    message = r"predict\(\): input 'b' is missing: got None where its data belongs"
    with pytest.raises(ValueError, match=message):
        model.predict({"a": np.zeros((N, 2)), "b": None}, verbose=0)
