"""keras-io's recipe "The endpoint layer pattern" (examples/keras_recipes/endpoint_layer_pattern.py,
Keras 3 version, Apache 2.0) run on fastnn with only the imports changed (and its
``tf.nn.softmax`` as ``ops.softmax``), against Keras 3 itself.

What it relies on: a layer called on symbolic tensors with keyword arguments given as None
(``targets=None``), a layer's first argument by keyword (``logits=...``), a metric a layer holds
and updates in call() reported in fit()'s logs, add_loss from inside call(), and a subclassed
model indexing its dict input. The data are random, as in the recipe; 64 samples instead of 1000.
"""

import numpy as np
from keras_twin import assert_same_history, copy_weights, keras_module, to_numpy

import fastnn


def endpoint_class(K):
    class LogisticEndpoint(K.layers.Layer):
        def __init__(self, name=None):
            super().__init__(name=name)
            self.loss_fn = K.losses.BinaryCrossentropy(from_logits=True)
            self.accuracy_metric = K.metrics.BinaryAccuracy(name="accuracy")

        def call(self, logits, targets=None, sample_weight=None):
            if targets is not None:
                # Compute the training-time loss value and add it to the layer using
                # `self.add_loss()`.
                loss = self.loss_fn(targets, logits, sample_weight)
                self.add_loss(loss)

                # Log the accuracy as a metric (we could log arbitrary metrics, including
                # different metrics for training and inference.)
                self.accuracy_metric.update_state(targets, logits, sample_weight)

            # Return the inference-time prediction tensor (for `.predict()`).
            return K.ops.softmax(logits)

    return LogisticEndpoint


def functional(K):
    LogisticEndpoint = endpoint_class(K)
    inputs = K.Input((16,), name="inputs")
    logits = K.layers.Dense(1, name="dense")(inputs)
    targets = K.Input((1,), name="targets")
    sample_weight = K.Input((1,), name="sample_weight")
    preds = LogisticEndpoint()(logits, targets, sample_weight)
    model = K.Model([inputs, targets, sample_weight], preds)
    inputs = K.Input((16,), name="inputs")
    logits = K.layers.Dense(1, name="dense")(inputs)
    preds = LogisticEndpoint()(logits, targets=None, sample_weight=None)
    return model, K.Model(inputs, preds)


def subclassed(K):
    LogisticEndpoint = endpoint_class(K)

    class LogReg(K.Model):
        def __init__(self):
            super().__init__()
            self.dense = K.layers.Dense(1, name="dense")
            self.logistic_endpoint = LogisticEndpoint()

        def call(self, inputs):
            # Note that all inputs should be in the first argument
            # since we want to be able to call `model.fit(inputs)`.
            logits = self.dense(inputs["inputs"])
            preds = self.logistic_endpoint(
                logits=logits,
                targets=inputs["targets"],
                sample_weight=inputs["sample_weight"],
            )
            return preds

    return LogReg()


def data():
    rng = np.random.default_rng(0)
    return {
        "inputs": rng.random((64, 16)).astype("float32"),
        "targets": (rng.random((64, 1)) > 0.5).astype("float32"),
        "sample_weight": rng.random((64, 1)).astype("float32"),
    }


def fit(model, K):
    model.compile(K.optimizers.Adam(1e-2))
    return model.fit(data(), epochs=2, batch_size=16, shuffle=False, verbose=0).history


def test_functional_endpoint_logs_its_metric_as_keras():
    keras = keras_module()
    (ours, ours_inference), (theirs, theirs_inference) = functional(fastnn), functional(keras)
    copy_weights(theirs, ours)
    history = fit(ours, fastnn)
    assert sorted(history) == ["accuracy", "loss"]
    assert_same_history(history, fit(theirs, keras))
    ours_inference.set_weights(ours.get_weights())
    theirs_inference.set_weights(theirs.get_weights())
    x = data()["inputs"]
    np.testing.assert_allclose(
        ours_inference.predict(x, verbose=0),
        to_numpy(theirs_inference.predict(x, verbose=0)),
        rtol=1e-5,
    )


def test_subclassed_endpoint_with_keyword_inputs_trains_as_keras():
    keras = keras_module()
    ours, theirs = subclassed(fastnn), subclassed(keras)
    batch = {key: value[:2] for key, value in data().items()}
    ours(batch), theirs(batch)
    copy_weights(theirs, ours)
    history = fit(ours, fastnn)
    assert sorted(history) == ["accuracy", "loss"]
    assert_same_history(history, fit(theirs, keras))
