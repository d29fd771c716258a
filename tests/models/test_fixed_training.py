"""A call that gives ``training`` (``base_model(x, training=False)``, keras-io's fine-tuning
guide; ``Dropout(0.5)(x, training=True)``): as in Keras 3, a pass of the model without a
training mode of its own (``model(x)``) runs the layer so, while fit (True) and predict (False)
run it in theirs (keras-team/keras#20285); saved and loaded with the model, from Keras's files
too."""

import numpy as np
import pytest
from keras_twin import (
    assert_same_history,
    assert_same_weights,
    copy_weights,
    keras_module,
    to_numpy,
)

import fastnn

RNG = np.random.default_rng(0)
X = (RNG.standard_normal((32, 6)) * 3 + 1).astype(np.float32)
Y = RNG.standard_normal((32, 1)).astype(np.float32)


def fine_tuned(K):
    """A base with BatchNormalization called in inference mode, a head trained on it."""
    i = K.Input((6,))
    base = K.Model(i, K.layers.BatchNormalization()(K.layers.Dense(4)(i)), name="base")
    o = K.Input((6,))
    return K.Model(o, K.layers.Dense(1, name="head")(base(o, training=False)))


def test_fit_runs_a_base_called_with_training_false_in_its_own_mode_as_keras():
    """fit passes training=True, which Keras 3 gives every layer: the base's statistics move
    as Keras's do (its layers' own trainable flag is what freezes them)."""
    K = keras_module()
    ours, theirs = fine_tuned(fastnn), fine_tuned(K)
    copy_weights(theirs, ours)
    histories = []
    for model, module in ((ours, fastnn), (theirs, K)):
        model.compile(optimizer=module.optimizers.SGD(0.05), loss="mse")
        histories.append(model.fit(X, Y, epochs=2, batch_size=8, shuffle=False, verbose=0))
    assert_same_history(histories[0].history, histories[1].history)
    assert_same_weights(ours, theirs)


def test_a_call_without_a_mode_runs_each_layer_in_the_mode_its_call_gave():
    """model(x): the base in inference mode (its moving statistics), a dropout given
    training=True dropping; model(x, training=True) and predict in their own mode."""
    K = keras_module()
    ours, theirs = fine_tuned(fastnn), fine_tuned(K)
    copy_weights(theirs, ours)
    for training in (None, True, False):
        expected = to_numpy(theirs(X, training=training))
        np.testing.assert_allclose(ours(X, training=training), expected, rtol=1e-5, atol=1e-5)
    inputs = fastnn.Input((50,))
    model = fastnn.Model(inputs, fastnn.layers.Dropout(0.5, seed=1)(inputs, training=True))
    x = np.ones((4, 50), np.float32)
    out = model(x)
    assert (out == 0).any() and (out == 2).any()
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)
    np.testing.assert_array_equal(model(x, training=False), x)


@pytest.mark.parametrize("suffix", [".keras", ".fastnn"])
def test_the_fixed_training_is_saved_and_loaded(tmp_path, suffix):
    model = fine_tuned(fastnn)
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = fastnn.saving.load_model(path)
    assert [step.training for step in loaded._graph.steps] == [False, None]
    np.testing.assert_allclose(loaded.predict(X, verbose=0), model.predict(X, verbose=0))


def test_a_keras_file_with_a_base_in_inference_mode_loads_with_it(tmp_path):
    K = keras_module()
    theirs = fine_tuned(K)
    path = tmp_path / "theirs.keras"
    theirs.save(path)
    ours = fastnn.saving.load_model(path)
    assert [step.training for step in ours._graph.steps] == [False, None]
    np.testing.assert_allclose(
        ours.predict(X, verbose=0), np.asarray(theirs.predict(X, verbose=0)), rtol=1e-5, atol=1e-6
    )
