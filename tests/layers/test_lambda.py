"""Lambda: runs its function; trains through it where the tape follows the function (ops, or
numpy functions with an op), refuses to train through one it cannot follow, to save or load it."""

import numpy as np
import pytest
from gradcheck import check_model_gradients
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_twin import assert_same_history, copy_weights, fit_both, keras_module, to_numpy

import fastnn
from fastnn import layers, ops


def _model():
    x = fastnn.Input((6,))
    h = layers.Dense(4, name="dense")(x)
    halves = layers.Lambda(lambda t: [t[:, :2], t[:, 2:] * 2.0], name="split")(h)
    return fastnn.Model(x, halves)


def test_forward_matches_the_function_and_shapes_are_inferred():
    model = _model()
    assert [t.shape for t in model.outputs] == [(None, 2), (None, 2)]
    x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
    h = model.get_layer("dense")(x)
    a, b = model.predict(x, verbose=0)
    np.testing.assert_allclose(a, h[:, :2], rtol=1e-6)
    np.testing.assert_allclose(b, h[:, 2:] * 2.0, rtol=1e-6)


def test_declared_output_shape_and_arguments():
    x = fastnn.Input((3,))
    y = layers.Lambda(lambda t, k: np.repeat(t, k, axis=1), output_shape=(6,), arguments={"k": 2})(
        x
    )
    assert y.shape == (None, 6)
    out = fastnn.Model(x, y).predict(np.ones((2, 3)), verbose=0)
    assert out.shape == (2, 6)


def test_saving_is_refused_before_anything_is_written(tmp_path):
    model = _model()
    with pytest.raises(ValueError, match="CVE-2024-3660"):
        model.save(tmp_path / "m.fastnn")
    with pytest.raises(ValueError, match="Lambda 'split' cannot be saved"):
        model.to_json()
    assert list(tmp_path.iterdir()) == []


def test_loading_a_lambda_config_is_refused():
    config = {"class_name": "Lambda", "config": {"function": "os.system", "name": "evil"}}
    with pytest.raises(ValueError, match="Refusing to load a Lambda"):
        fastnn.layers.deserialize(config)


def test_training_through_a_lambda_the_tape_cannot_follow_is_refused_before_any_change():
    x = fastnn.Input((6,))
    h = layers.BatchNormalization()(layers.Dense(4, name="dense")(x))
    y = layers.Lambda(lambda t: np.asarray(t) * 2.0, name="double")(h)  # off the tape
    model = fastnn.Model(x, y)
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()  # BatchNormalization's moving statistics included
    data = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    for train in (
        lambda: model.fit(data, np.ones((4, 4)), verbose=0),
        lambda: model.train_on_batch(data, np.ones((4, 4))),
    ):
        with pytest.raises(NotImplementedError, match="Lambda 'double' has no gradient"):
            train()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_lambda_fed_only_by_inputs_trains():
    """Preprocessing: no weights come before the Lambda, so no gradient has to pass it."""
    x = fastnn.Input((6,))
    scaled = layers.Lambda(lambda t: t / 10.0)(x)
    model = fastnn.Model(x, layers.Dense(1)(scaled))
    model.compile(optimizer="sgd", loss="mse")
    data = np.random.default_rng(0).normal(size=(16, 6)).astype("float32")
    history = model.fit(data, data.sum(axis=1, keepdims=True), epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_function_must_be_callable():
    with pytest.raises(TypeError, match="callable"):
        layers.Lambda("x * 2")


def siamese(K):
    """keras-io's siamese_contrastive head: a shared Dense, a Lambda distance, a Dense."""
    a, b = K.Input((4,)), K.Input((4,))
    dense = K.layers.Dense(3, name="shared")

    def distance(pair):
        return K.ops.sqrt(
            K.ops.maximum(K.ops.sum(K.ops.square(pair[0] - pair[1]), 1, keepdims=True), 1e-7)
        )

    d = K.layers.Lambda(distance, name="distance")([dense(a), dense(b)])
    return K.Model([a, b], K.layers.Dense(1, activation="sigmoid", name="out")(d))


def test_a_lambda_of_ops_behind_weights_trains_as_keras():
    keras = keras_module()
    ours, theirs = siamese(fastnn), siamese(keras)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(1)
    x = [rng.standard_normal((16, 4)).astype("float32") for _ in range(2)]
    y = rng.integers(0, 2, (16, 1)).astype("float32")
    histories = fit_both(ours, theirs, x, y, optimizer="sgd", loss="binary_crossentropy")
    assert_same_history(*histories)
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6
    )


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), numpy_square=st.booleans())
def test_lambda_gradients_in_float64(seed, numpy_square):
    """Ops, or numpy functions that have an op (np.square on the tensors), differentiate."""
    square = np.square if numpy_square else ops.square
    x = fastnn.Input((5,), dtype="float64")
    h = layers.Dense(4, dtype="float64")(x)
    y = layers.Lambda(lambda t: ops.tanh(square(t) * 0.5 - t), dtype="float64")(h)
    model = fastnn.Model(x, layers.Dense(2, dtype="float64")(y))
    data = np.random.default_rng(seed).standard_normal((3, 5))
    check_model_gradients(model, data)


def test_a_lambda_under_a_gradient_tape():
    dense = layers.Dense(2)
    scale = layers.Lambda(lambda t: ops.square(t) * 3.0)
    x = np.ones((2, 3), "float32")
    with fastnn.GradientTape() as tape:
        loss = ops.sum(scale(dense(x)))
    grads = tape.gradient(loss, dense.trainable_weights)
    z = x @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(grads[1], (6.0 * z).sum(axis=0), rtol=1e-5)
