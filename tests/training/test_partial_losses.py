"""compile() losses that leave some outputs without a loss (a loss dict without their names, or
None entries), as Keras 3 allows: those outputs get no loss and no gradient, their metrics still
report. Two-output Functional models against Keras 3 (torch) on the same weights.
"""

import numpy as np
import pytest
from keras_twin import assert_same_weights, copy_weights, keras_module

import fastnn

RNG = np.random.default_rng(3)
X = RNG.normal(size=(16, 4)).astype("float32")
Y_A = RNG.normal(size=(16, 2)).astype("float32")
Y_B = RNG.normal(size=(16, 3)).astype("float32")


def two_outputs(K, as_dict):
    inputs = K.Input((4,), name="x")
    hidden = K.layers.Dense(5, activation="tanh", name="hidden")(inputs)
    a = K.layers.Dense(2, name="a")(hidden)
    b = K.layers.Dense(3, name="b")(hidden)
    return K.Model(inputs, {"a": a, "b": b} if as_dict else [a, b], name="two")


def both(as_dict):
    keras = keras_module()
    ours, theirs = two_outputs(fastnn, as_dict), two_outputs(keras, as_dict)
    copy_weights(theirs, ours)
    return ours, theirs


def targets(as_dict):
    return {"a": Y_A, "b": Y_B} if as_dict else [Y_A, Y_B]


# (outputs as a dict?, loss, metrics, the output without a loss): every form Keras accepts
FORMS = {
    "dict_outputs_partial_loss_dict": (True, {"a": "mse"}, {"b": ["mae"]}, "b"),
    "dict_outputs_none_entry": (
        True,
        {"a": "huber", "b": None},
        {"b": ["mae"], "a": ["mse"]},
        "b",
    ),
    "list_outputs_none_entry": (False, ["mse", None], [None, ["mae"]], "b"),
    "list_outputs_none_first": (False, [None, "log_cosh"], [["mae"], None], "a"),
    "list_outputs_dict_with_none": (False, {"a": "mse", "b": None}, [None, ["mae"]], "b"),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_evaluate_matches_keras(form):
    as_dict, loss, metrics, _ = FORMS[form]
    ours, theirs = both(as_dict)
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss=loss, metrics=metrics)
    want = theirs.evaluate(X, targets(as_dict), return_dict=True, verbose=0)
    got = ours.evaluate(X, targets(as_dict), return_dict=True, verbose=0)
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key


@pytest.mark.parametrize("form", sorted(FORMS))
def test_training_matches_keras_and_leaves_unscored_outputs_alone(form):
    as_dict, loss, metrics, unscored = FORMS[form]
    ours, theirs = both(as_dict)
    keras = keras_module()
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(optimizer=K.optimizers.SGD(0.1), loss=loss, metrics=metrics)
    unscored = (
        "b" if (loss["b"] if isinstance(loss, dict) and "b" in loss else None) is None else ""
    )
    if isinstance(loss, list):
        unscored = "ab"[loss.index(None)]
    before = [w.copy() for w in ours.get_layer(unscored).get_weights()]
    histories = []
    for model in (ours, theirs):
        history = model.fit(X, targets(as_dict), epochs=2, batch_size=8, shuffle=False, verbose=0)
        histories.append(history.history)
    assert sorted(histories[0]) == sorted(histories[1])
    for key, values in histories[1].items():
        np.testing.assert_allclose(histories[0][key], values, rtol=1e-4, err_msg=key)
    assert_same_weights(ours, theirs)
    for old, new in zip(before, ours.get_layer(unscored).get_weights()):
        np.testing.assert_array_equal(old, new)  # no loss, no gradient, no step


def test_loss_value_is_the_scored_outputs_only():
    ours, _ = both(as_dict=True)
    ours.compile(optimizer="sgd", loss={"a": "mse"})
    pred = ours.predict(X, verbose=0)
    want = float(np.mean((pred["a"] - Y_A) ** 2))
    assert ours.evaluate(X, {"a": Y_A}, verbose=0) == pytest.approx(want, rel=1e-5)
    assert ours.evaluate(X, targets(True), verbose=0) == pytest.approx(want, rel=1e-5)


def test_a_partial_loss_dict_on_list_outputs_leaves_the_rest_untrained():
    """Keras refuses a loss dict without every name of a list-output model; fastnn reads the
    missing names as None, as it does for dict outputs."""
    ours, _ = both(as_dict=False)
    ours.compile(optimizer="sgd", loss={"a": "mse"}, metrics=[None, ["mae"]])
    same, _ = both(as_dict=False)
    same.set_weights(ours.get_weights())
    same.compile(optimizer="sgd", loss={"a": "mse", "b": None}, metrics=[None, ["mae"]])
    got = ours.train_on_batch(X, targets(False), return_dict=True)
    want = same.train_on_batch(X, targets(False), return_dict=True)
    assert got == pytest.approx(want, rel=1e-6)
    assert sorted(got) == ["b_mae", "loss"]


def test_unknown_names_in_a_loss_dict_still_fail():
    ours, _ = both(as_dict=True)
    with pytest.raises(ValueError, match=r"loss has keys \['a', 'c'\] but the model's outputs"):
        ours.compile(optimizer="sgd", loss={"a": "mse", "c": "mse"})
