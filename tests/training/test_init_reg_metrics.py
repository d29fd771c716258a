"""Initializers, regularizers, metrics and seeding: Keras 3 defaults and behaviour."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras
import numpy as np
import pytest

import fastnn
from fastnn import initializers, layers, metrics, regularizers


@pytest.mark.parametrize(
    "name, limit_or_std, kind",
    [
        ("glorot_uniform", np.sqrt(6 / (300 + 200)), "uniform"),
        ("he_uniform", np.sqrt(6 / 300), "uniform"),
        ("lecun_uniform", np.sqrt(3 / 300), "uniform"),
        ("glorot_normal", np.sqrt(2 / (300 + 200)), "normal"),
        ("he_normal", np.sqrt(2 / 300), "normal"),
    ],
)
def test_variance_scaling_initializers_have_keras_scale(name, limit_or_std, kind):
    w = initializers.get(name)((300, 200), dtype="float32")
    assert w.shape == (300, 200) and w.dtype == np.float32
    if kind == "uniform":
        assert np.abs(w).max() <= np.float32(limit_or_std)  # a draw below it may round up to it
        assert np.abs(w).max() > 0.95 * limit_or_std
    else:
        assert w.std() == pytest.approx(limit_or_std, rel=0.05)
        assert np.abs(w).max() <= 2 * limit_or_std / 0.8796 + 1e-6  # truncated at 2 stddev


def test_conv_kernel_fans_use_the_receptive_field():
    assert initializers.compute_fans((3, 3, 16, 32)) == (144.0, 288.0)


def test_orthogonal_initializer_is_orthogonal():
    w = initializers.get("orthogonal")((64, 32), dtype="float64")
    np.testing.assert_allclose(w.T @ w, np.eye(32), atol=1e-10)


def test_default_initializers_are_glorot_uniform_kernel_and_zero_bias():
    layer = layers.Dense(5)
    layer.build((None, 7))
    limit = np.sqrt(6 / 12)
    assert np.abs(layer.kernel.value).max() <= limit
    assert np.all(layer.bias.value == 0)


def test_unknown_initializer_lists_valid_names():
    with pytest.raises(ValueError, match="glorot_uniform"):
        initializers.get("glorot_unifrom")


def test_set_random_seed_reproduces_weights_dropout_and_shuffling():
    def train():
        fastnn.utils.set_random_seed(123)
        inputs = fastnn.Input(shape=(6,))
        x = layers.Dense(8, activation="relu")(inputs)
        x = layers.Dropout(0.5)(x)
        model = fastnn.Model(inputs, layers.Dense(1)(x))
        model.compile(optimizer="adam", loss="mse")
        rng = np.random.default_rng(0)
        model.fit(rng.random((40, 6)), rng.random(40), epochs=2, batch_size=8, verbose=0)
        return model.get_weights()

    first, second = train(), train()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_regularizers_match_keras_penalties():
    w = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
    for ours, theirs in [
        (regularizers.l1(0.02), keras.regularizers.l1(0.02)),
        (regularizers.l2(0.03), keras.regularizers.l2(0.03)),
        (regularizers.l1_l2(l1=0.01, l2=0.02), keras.regularizers.l1_l2(l1=0.01, l2=0.02)),
    ]:
        assert ours(w) == pytest.approx(float(theirs(w)), rel=1e-5)


def test_regularized_train_on_batch_matches_keras():
    rng = np.random.default_rng(1)
    x, y = rng.random((8, 5)).astype("float32"), rng.random((8, 1)).astype("float32")

    def build(lib):
        inputs = lib.Input(shape=(5,))
        hidden = lib.layers.Dense(
            4,
            activation="tanh",
            kernel_regularizer=lib.regularizers.l2(0.05),
            bias_regularizer=lib.regularizers.l1(0.01),
            name="hidden",
        )(inputs)
        model = lib.Model(inputs, lib.layers.Dense(1, name="out")(hidden))
        model.compile(optimizer=lib.optimizers.SGD(0.1), loss="mse")
        return model

    theirs, ours = build(keras), build(fastnn)
    theirs.get_layer("hidden").set_weights(
        [w + 0.1 for w in theirs.get_layer("hidden").get_weights()]
    )
    ours.set_weights(theirs.get_weights())
    loss_theirs = float(theirs.train_on_batch(x, y))
    loss_ours = ours.train_on_batch(x, y)
    assert loss_ours == pytest.approx(loss_theirs, rel=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "ours, theirs, make_data",
    [
        ("binary_accuracy", keras.metrics.BinaryAccuracy, "binary"),
        ("categorical_accuracy", keras.metrics.CategoricalAccuracy, "onehot"),
        ("sparse_categorical_accuracy", keras.metrics.SparseCategoricalAccuracy, "sparse"),
        ("mae", keras.metrics.MeanAbsoluteError, "regression"),
        ("mse", keras.metrics.MeanSquaredError, "regression"),
        ("root_mean_squared_error", keras.metrics.RootMeanSquaredError, "regression"),
    ],
)
def test_metrics_match_keras_over_several_batches(ours, theirs, make_data):
    rng = np.random.default_rng(2)
    ours, theirs = metrics.get(ours), theirs()
    for _ in range(3):
        if make_data == "binary":
            y_true, y_pred = rng.integers(0, 2, (6, 1)), rng.random((6, 1))
        elif make_data == "onehot":
            y_true, y_pred = np.eye(4)[rng.integers(0, 4, 6)], rng.random((6, 4))
        elif make_data == "sparse":
            y_true, y_pred = rng.integers(0, 4, (6,)), rng.random((6, 4))
        else:
            y_true, y_pred = rng.random((6, 3)), rng.random((6, 3))
        y_true, y_pred = y_true.astype("float32"), y_pred.astype("float32")
        ours.update_state(y_true, y_pred)
        theirs.update_state(y_true, y_pred)
    assert ours.result() == pytest.approx(float(theirs.result()), rel=1e-5)
    ours.reset_state()
    assert ours.result() == 0.0


@pytest.mark.parametrize(
    "y_true_shape, y_pred_shape, expected",
    [
        ((8, 1), (8, 1), metrics.BinaryAccuracy),
        ((8,), (8, 1), metrics.BinaryAccuracy),
        ((8,), (8, 10), metrics.SparseCategoricalAccuracy),
        ((8, 1), (8, 10), metrics.SparseCategoricalAccuracy),
        ((8, 10), (8, 10), metrics.CategoricalAccuracy),
    ],
)
def test_accuracy_resolves_by_shapes_and_keeps_its_name(y_true_shape, y_pred_shape, expected):
    metric = metrics.get("accuracy", y_true_shape, y_pred_shape)
    assert type(metric) is expected
    assert metric.name == "accuracy"


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ValueError, match="sparse_categorical_accuracy"):
        metrics.get("acuracy")
