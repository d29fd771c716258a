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
