"""A user's losses and metrics (issue 21): a loss function of ops, ``Loss`` subclasses with
``call``, ``Metric`` subclasses with ``add_variable``, ``add_loss`` in layers and ``model.losses``,
``compile(loss=None)`` with ``fit(x)``, and an overridden ``compute_loss``, against Keras 3 (torch):
the same weights give the same logs and weights after SGD steps (rtol 1e-4).

Each program is written once against a module ``K`` (fastnn or keras) and run in both.
"""

import numpy as np
import pytest
from gradcheck import check_gradients
from keras_twin import assert_same_history, assert_same_weights, copy_weights, keras_module

import fastnn
from fastnn import losses, ops


def mlp(K, outputs=3, name="mlp"):
    inputs = K.Input((6,), name="x")
    h = K.layers.Dense(8, activation="tanh", name="hidden")(inputs)
    return K.Model(inputs, K.layers.Dense(outputs, name="out")(h), name=name)


def data(seed=0, n=32, classes=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype("float32")
    return x, rng.integers(0, classes, n), rng.standard_normal((n, classes)).astype("float32")


def train_both(make, compile_kwargs, x, y, epochs=2, batch_size=8, **fit_kwargs):
    """The program ``make(K)`` built in both, Keras's weights copied, compiled with
    ``compile_kwargs(K)``, fit without shuffling: (ours, theirs, our history, theirs)."""
    keras = keras_module()
    ours, theirs = make(fastnn), make(keras)
    copy_weights(theirs, ours)
    histories = []
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(**compile_kwargs(K))
        history = model.fit(
            x, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0, **fit_kwargs
        )
        histories.append(history.history)
    return ours, theirs, *histories


# ---------------------------------------------------------------- losses
def huberish(K):
    def huberish_loss(y_true, y_pred):
        error = y_true - y_pred
        small = K.ops.abs(error) < 1.0
        return K.ops.mean(K.ops.where(small, 0.5 * K.ops.square(error), K.ops.abs(error) - 0.5), -1)

    return huberish_loss


def custom_mse_class(K):
    class CustomMSE(K.losses.Loss):
        """Keras's guide: MSE plus a pull of predictions towards 0.5."""

        def __init__(self, regularization_factor=0.1, name="custom_mse", **kwargs):
            super().__init__(name=name, **kwargs)
            self.regularization_factor = regularization_factor

        def call(self, y_true, y_pred):
            mse = K.ops.mean(K.ops.square(y_true - y_pred), axis=-1)
            reg = K.ops.mean(K.ops.square(0.5 - y_pred), axis=-1)
            return mse + reg * self.regularization_factor

    return CustomMSE


def test_loss_function_of_ops_trains_as_keras():
    x, _, y = data()
    ours, theirs, h_ours, h_theirs = train_both(
        mlp, lambda K: {"optimizer": K.optimizers.SGD(0.1), "loss": huberish(K)}, x, y * 3
    )
    assert_same_history(h_ours, h_theirs)
    assert_same_weights(ours, theirs)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
def test_loss_subclass_with_call_trains_as_keras(reduction):
    x, _, y = data(1)
    ours, theirs, h_ours, h_theirs = train_both(
        mlp,
        lambda K: {
            "optimizer": K.optimizers.SGD(0.02),
            "loss": custom_mse_class(K)(reduction=reduction),
        },
        x,
        y,
        sample_weight=np.linspace(0.5, 1.5, len(x)),
    )
    assert_same_history(h_ours, h_theirs)
    assert_same_weights(ours, theirs)


def test_a_custom_loss_gradient_matches_finite_differences():
    loss = custom_mse_class(fastnn)(dtype="float64")
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    weights = rng.uniform(0.5, 2.0, 4)

    def forward(xs):
        return [np.asarray(loss(y_true, xs[0], weights))], None

    def backward(_, upstream):
        return [loss.value_and_grad(y_true, y_pred, weights)[1] * upstream[0]]

    check_gradients(forward, backward, [y_pred], [], [])


def test_losses_record_on_a_tape_and_are_floats_off_it():
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 3, 5), rng.standard_normal((5, 3)).astype("float32")
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    assert isinstance(loss(y, p), float)
    with fastnn.GradientTape() as tape:
        logits = tape.watch(p)
        value = loss(y, logits) + losses.get(huberish(fastnn))(np.eye(3)[y], logits)
    grad = tape.gradient(value, logits)
    expected = (
        loss.value_and_grad(y, p)[1]
        + losses.get(huberish(fastnn)).value_and_grad(np.eye(3)[y], p)[1]
    )
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


# ---------------------------------------------------------------- metrics
def true_positives_class(K):
    class CategoricalTruePositives(K.metrics.Metric):
        """Keras's guide metric: add_variable, update_state, result, reset_state."""

        def __init__(self, name="categorical_true_positives", **kwargs):
            super().__init__(name=name, **kwargs)
            self.true_positives = self.add_variable(shape=(), name="ctp", initializer="zeros")

        def update_state(self, y_true, y_pred, sample_weight=None):
            y_pred = K.ops.reshape(K.ops.argmax(y_pred, axis=1), (-1, 1))
            values = K.ops.cast(y_true, "int32") == K.ops.cast(y_pred, "int32")
            values = K.ops.cast(values, "float32")
            if sample_weight is not None:
                sample_weight = K.ops.cast(sample_weight, "float32")
                values = K.ops.multiply(values, sample_weight)
            self.true_positives.assign_add(K.ops.sum(values))

        def result(self):
            return self.true_positives

        def reset_state(self):
            self.true_positives.assign(0.0)

    return CategoricalTruePositives


def test_metric_subclass_logs_as_keras():
    x, labels, _ = data(4, n=40)
    ours, theirs, h_ours, h_theirs = train_both(
        mlp,
        lambda K: {
            "optimizer": K.optimizers.RMSprop(1e-3),
            "loss": K.losses.SparseCategoricalCrossentropy(from_logits=True),
            "metrics": [true_positives_class(K)()],
        },
        x,
        labels[:, None],
        epochs=3,
    )
    assert_same_history(h_ours, h_theirs)
    assert "categorical_true_positives" in h_ours
    assert_same_weights(ours, theirs)


def test_metric_variables_reset_and_update():
    metric = true_positives_class(fastnn)()
    metric.update_state(np.array([[0], [1]]), np.array([[0.9, 0.1], [0.8, 0.2]]))
    assert float(metric.result()) == 1.0 and [v.name for v in metric.variables] == ["ctp"]
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_a_metric_with_only_add_variable_resets_to_zeros():
    class Count(fastnn.metrics.Metric):
        def __init__(self):
            super().__init__(name="count")
            self.n = self.add_variable(shape=(2,), initializer="ones")

        def update_state(self, y_true, y_pred, sample_weight=None):
            self.n.assign_add(ops.ones((2,)))

        def result(self):
            return ops.sum(self.n)

    metric = Count()
    metric.update_state(None, None)
    assert metric.result() == 4.0
    metric.reset_state()
    assert metric.result() == 0.0


# ---------------------------------------------------------------- add_loss and model.losses
def activity_model(K):
    class ActivityRegularizationLayer(K.layers.Layer):
        def call(self, inputs):
            self.add_loss(K.ops.sum(inputs) * 0.01)
            return inputs

    inputs = K.Input((6,), name="digits")
    x = K.layers.Dense(8, activation="relu", name="dense_1")(inputs)
    x = ActivityRegularizationLayer(name="activity")(x)
    x = K.layers.Dense(8, activation="relu", name="dense_2")(x)
    return K.Model(inputs, K.layers.Dense(3, name="predictions")(x))


def test_add_loss_in_a_layer_trains_as_keras():
    x, labels, _ = data(5)
    ours, theirs, h_ours, h_theirs = train_both(
        activity_model,
        lambda K: {
            "optimizer": K.optimizers.SGD(0.05),
            "loss": K.losses.SparseCategoricalCrossentropy(from_logits=True),
        },
        x,
        labels,
    )
    assert_same_history(h_ours, h_theirs)
    assert_same_weights(ours, theirs)
    ours.evaluate(x, labels, verbose=0)
    assert len(ours.losses) == 1


def logistic_endpoint_model(K):
    class LogisticEndpoint(K.layers.Layer):
        """Keras's guide: the loss of targets and logits, added; softmax returned."""

        def __init__(self, name=None):
            super().__init__(name=name)
            self.loss_fn = K.losses.BinaryCrossentropy(from_logits=True)

        def call(self, targets, logits, sample_weights=None):
            self.add_loss(self.loss_fn(targets, logits, sample_weights))
            return K.ops.softmax(logits)

    inputs = K.Input(shape=(3,), name="inputs")
    targets = K.Input(shape=(10,), name="targets")
    logits = K.layers.Dense(10, name="logits")(inputs)
    predictions = LogisticEndpoint(name="predictions")(targets, logits)
    return K.Model(inputs=[inputs, targets], outputs=predictions)


def test_compile_without_loss_and_fit_on_x_alone_as_keras():
    rng = np.random.default_rng(6)
    x = {"inputs": rng.random((16, 3)), "targets": rng.random((16, 10))}
    ours, theirs, h_ours, h_theirs = train_both(
        logistic_endpoint_model, lambda K: {"optimizer": K.optimizers.SGD(0.1)}, x, None
    )
    assert_same_history(h_ours, h_theirs)
    assert_same_weights(ours, theirs)


def outer_layers(K):
    class Activity(K.layers.Layer):
        def call(self, inputs):
            self.add_loss(1e-2 * K.ops.mean(inputs))
            return inputs

    class OuterLayer(K.layers.Layer):
        def __init__(self):
            super().__init__()
            self.activity_reg = Activity()
            self.dense = K.layers.Dense(4, kernel_regularizer=K.regularizers.l2(1e-3))

        def call(self, inputs):
            return self.dense(self.activity_reg(inputs))

    return OuterLayer


def test_losses_reset_per_outermost_call_and_include_regularizers():
    keras = keras_module()
    ours, theirs = outer_layers(fastnn)(), outer_layers(keras)()
    assert ours.losses == [] and len(theirs.losses) == 0
    x = np.ones((2, 3), "float32")
    ours(x), theirs(x)
    copy_weights(theirs, ours)
    ours(x), theirs(x)
    assert len(ours.losses) == len(theirs.losses) == 2
    np.testing.assert_allclose(
        [float(np.asarray(v)) for v in ours.losses],
        [float(keras.ops.convert_to_numpy(v)) for v in theirs.losses],
        rtol=1e-5,
    )


# ---------------------------------------------------------------- compute_loss
def compute_loss_model(K):
    class PenalizedModel(K.Model):
        """A subclassed model whose training loss adds a penalty on its outputs."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hidden = K.layers.Dense(8, activation="tanh", name="hidden")
            self.out = K.layers.Dense(3, name="out")

        def call(self, x):
            return self.out(self.hidden(x))

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            loss = super().compute_loss(x, y, y_pred, sample_weight, training=training)
            return (
                loss
                + 0.1 * K.ops.mean(K.ops.square(y_pred))
                + 0.01 * K.ops.sum(K.ops.square(self.out.kernel))
            )

    return PenalizedModel


def test_overriding_compute_loss_trains_as_keras():
    keras = keras_module()
    x, _, y = data(7)
    ours, theirs = compute_loss_model(fastnn)(), compute_loss_model(keras)()
    ours(x[:1]), theirs(x[:1])
    copy_weights(theirs, ours)
    histories = []
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(K.optimizers.SGD(0.1), "mse")
        histories.append(model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0).history)
    assert_same_history(*histories)
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(
        ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=1e-4
    )
