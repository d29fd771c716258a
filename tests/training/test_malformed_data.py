"""Hypothesis throws malformed data at fit/evaluate/predict and the *_on_batch calls.

Every drawn case is invalid by construction (wrong ranks, shapes, dtypes, empty arrays, NaN or
inf, values that overflow float32, mismatched lengths, wrong dict keys or array counts, bad
labels or sample weights) and must end in ValueError or TypeError, with weights and optimizer
state (slots, iterations) bit-identical: ``unchanged`` from tests/training/test_errors.py.
Both models have a BatchNormalization layer, whose statistics any training forward pass would
move.
tests/training/test_errors.py holds the fixed cases and their exact messages.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_errors import unchanged

import fastnn
from fastnn import layers

TRAINING = ["fit", "evaluate", "train_on_batch", "test_on_batch"]
INFERENCE = ["predict", "predict_on_batch"]


@functools.cache
def model(kind: str) -> fastnn.Model:
    """A trained model: 'two' (two inputs, a regression and a binary output) or 'cnn' (sparse)."""
    fastnn.utils.set_random_seed(0)
    if kind == "two":
        profile, behaviour = (
            fastnn.Input((3,), name="profile"),
            fastnn.Input((2,), name="behaviour"),
        )
        h = layers.BatchNormalization()(layers.Dense(4)(layers.concatenate([profile, behaviour])))
        age = layers.Dense(1, name="age")(h)
        gender = layers.Dense(1, activation="sigmoid", name="gender")(h)
        m = fastnn.Model([profile, behaviour], [age, gender])
        m.compile("adam", loss={"age": "mse", "gender": "binary_crossentropy"})
    else:
        image = fastnn.Input((4, 4, 1), name="image")
        h = layers.BatchNormalization()(layers.Conv2D(2, 3, activation="relu")(image))
        digits = layers.Dense(3, activation="softmax", name="digits")(layers.Flatten()(h))
        m = fastnn.Model(image, digits)
        m.compile("adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xs, ys = valid_data(m, 4, np.random.default_rng(0))
    m.fit(xs, ys, batch_size=2, epochs=1, verbose=0)
    return m


def valid_data(m, n, rng):
    xs = {t.name: rng.random((n, *t.shape[1:]), dtype=np.float32) for t in m.inputs}
    ys = {
        "age": rng.random((n, 1), dtype=np.float32),
        "gender": rng.integers(0, 2, (n, 1)).astype(np.float32),
        "digits": rng.integers(0, 3, n),
    }
    return xs, {name: ys[name] for name in m.output_names}


BAD_DTYPES = {
    "str": lambda a: np.full(a.shape, "x"),
    "object": lambda a: np.full(a.shape, None, dtype=object),
    "complex": lambda a: a.astype(np.complex64),
    "datetime": lambda a: np.zeros(a.shape, "datetime64[s]"),
}
X_CORRUPTIONS = [
    *("rank_up", "rank_down", "scalar", "feature", "dtype", "non_finite", "length"),
    *("x_keys", "x_count"),
]
Y_CORRUPTIONS = [
    *("empty", "y_length", "y_keys", "y_shape", "y_dtype", "y_non_finite", "labels", "no_y"),
    *("weight_length", "weight_shape", "weight_value", "weight_dtype"),
]


@st.composite
def malformed_calls(draw, corruption):
    """(model kind, method, x, y, sample_weight) with exactly ``corruption`` wrong."""
    kind = draw(st.sampled_from(["two", "cnn"]))
    m = model(kind)
    method = draw(st.sampled_from(TRAINING + (INFERENCE if corruption in X_CORRUPTIONS else [])))
    n = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    xs, ys = valid_data(m, n, rng)
    sample_weight = None
    target = draw(st.sampled_from(sorted(xs)))  # the input that goes wrong
    out = draw(st.sampled_from(sorted(ys)))  # the output that goes wrong
    x, spec = xs[target], m.inputs[m.input_names.index(target)].shape

    if corruption == "rank_up":  # a trailing axis that cannot be squeezed
        xs[target] = np.repeat(x[..., None], draw(st.integers(2, 3)), axis=-1)
    elif corruption == "rank_down":
        xs[target] = x[:, 0]
    elif corruption == "scalar":
        xs[target] = np.float32(1.0)
    elif corruption == "feature":
        axis = draw(st.integers(1, len(spec) - 1))
        shape = list(x.shape)
        shape[axis] += draw(st.integers(1, 2))
        xs[target] = rng.random(shape, dtype=np.float32)
    elif corruption == "dtype":
        xs[target] = BAD_DTYPES[draw(st.sampled_from(sorted(BAD_DTYPES)))](x)
    elif corruption == "non_finite":
        bad = x.astype(np.float64)
        bad.reshape(-1)[draw(st.integers(0, bad.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 1e39])
        )
        xs[target] = bad
    elif corruption == "length":
        if len(xs) > 1 or method in TRAINING:  # one input (or all x against y) off
            xs[target] = np.concatenate([x, x[: draw(st.integers(1, n))]])
        else:
            corruption = "x_keys"
    if corruption == "x_keys":
        wrong = draw(st.sampled_from(["renamed", "missing", "extra"]))
        if wrong == "renamed" or (wrong == "missing" and len(xs) == 1):
            xs[target + "_"] = xs.pop(target)
        elif wrong == "missing":
            del xs[target]
        else:
            xs["unknown"] = x
    elif corruption == "x_count":
        arrays = list(xs.values())
        xs = arrays * 2 if len(arrays) == 1 or draw(st.booleans()) else arrays[:1]
    elif corruption == "empty":
        xs = {k: v[:0] for k, v in xs.items()}
        ys = {k: v[:0] for k, v in ys.items()}
    elif corruption == "y_length":
        ys[out] = np.concatenate([ys[out], ys[out][:1]])
    elif corruption == "y_keys":
        ys[out + "_"] = ys.pop(out)
    elif corruption == "y_shape":
        ys[out] = rng.random((n, draw(st.integers(2, 3))), dtype=np.float32)
        if out == "digits":
            ys[out] = rng.integers(0, 3, (n, draw(st.integers(2, 3))))
    elif corruption == "y_dtype":
        ys[out] = BAD_DTYPES[draw(st.sampled_from(sorted(BAD_DTYPES)))](ys[out])
    elif corruption == "y_non_finite":
        ys[out] = ys[out].astype(np.float64)
        ys[out][draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    elif corruption == "labels":
        ys[out] = ys[out].copy()
        ys[out][draw(st.integers(0, n - 1))] = draw(st.sampled_from([-1, 3, 7]))
        if out != "digits":  # labels out of range exist for sparse losses only
            ys[out] = ys[out].astype(np.float64) * np.nan
    elif corruption == "weight_length":
        sample_weight = np.ones(n + draw(st.sampled_from([-1, 1, 2])) if n > 1 else n + 1)
    elif corruption == "weight_shape":
        sample_weight = np.ones((n, draw(st.integers(2, 3))))
    elif corruption == "weight_value":
        sample_weight = np.ones(n)
        sample_weight[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    elif corruption == "weight_dtype":
        sample_weight = np.full(n, "heavy")
    elif corruption == "no_y":
        ys = None

    structure = draw(st.sampled_from(["dict", "list"]))
    if structure == "list" and isinstance(xs, dict) and corruption != "x_keys":
        xs = list(xs.values())
        xs = xs[0] if len(xs) == 1 else xs
    if ys is not None and structure == "list" and corruption != "y_keys":
        ys = list(ys.values())
        ys = ys[0] if len(ys) == 1 else ys
    return kind, method, xs, ys, sample_weight


def call(m, method, x, y, sample_weight):
    if method == "fit":
        return m.fit(x, y, sample_weight=sample_weight, batch_size=2, verbose=0)
    if method == "evaluate":
        return m.evaluate(x, y, sample_weight=sample_weight, batch_size=2, verbose=0)
    if method in ("train_on_batch", "test_on_batch"):
        return getattr(m, method)(x, y, sample_weight=sample_weight)
    return m.predict(x, batch_size=2, verbose=0) if method == "predict" else m.predict_on_batch(x)


@pytest.mark.parametrize("corruption", X_CORRUPTIONS + Y_CORRUPTIONS)
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_malformed_data_raises_and_changes_nothing(corruption, data):
    kind, method, x, y, sample_weight = data.draw(malformed_calls(corruption))
    m = model(kind)
    with unchanged(m), pytest.raises((ValueError, TypeError)) as raised:
        call(m, method, x, y, sample_weight)
    assert type(raised.value) in (ValueError, TypeError), type(raised.value)
    assert str(raised.value).startswith(f"{method}()"), raised.value  # names the call
