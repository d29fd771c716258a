"""keras-io's recipe "Simple custom layer example: Antirectifier"
(examples/keras_recipes/antirectifier.py, Keras 3 version, Apache 2.0) run on fastnn with only
the imports changed.

Changed besides the imports: MNIST is 512 (train) and 128 (test) random images of its shape
whose label is the brightest of ten bands (learnable; no network); 2 epochs instead of 20. A
check against Keras 3 trains the same model one step in both.
"""

import numpy as np
from keras_twin import copy_weights, keras_module, to_numpy

import fastnn as keras
from fastnn import layers, ops


def antirectifier_class(k, k_layers, k_ops):
    """The recipe's layer, for module ``k`` (fastnn or Keras)."""

    class Antirectifier(k_layers.Layer):
        def __init__(self, initializer="he_normal", **kwargs):
            super().__init__(**kwargs)
            self.initializer = k.initializers.get(initializer)

        def build(self, input_shape):
            output_dim = input_shape[-1]
            self.kernel = self.add_weight(
                shape=(output_dim * 2, output_dim),
                initializer=self.initializer,
                name="kernel",
                trainable=True,
            )

        def call(self, inputs):
            inputs -= k_ops.mean(inputs, axis=-1, keepdims=True)
            pos = k_ops.relu(inputs)
            neg = k_ops.relu(-inputs)
            concatenated = k_ops.concatenate([pos, neg], axis=-1)
            mixed = k_ops.matmul(concatenated, self.kernel)
            return mixed

        def get_config(self):
            # Implement get_config to enable serialization. This is optional.
            base_config = super().get_config()
            config = {"initializer": k.initializers.serialize(self.initializer)}
            return dict(list(base_config.items()) + list(config.items()))

    return Antirectifier


def recipe_model(k, k_layers, k_ops, input_dim=784):
    Antirectifier = antirectifier_class(k, k_layers, k_ops)
    return k.Sequential(
        [
            k.Input(shape=(input_dim,)),
            k_layers.Dense(256),
            Antirectifier(),
            k_layers.Dense(256),
            Antirectifier(),
            k_layers.Dropout(0.5),
            k_layers.Dense(10),
        ]
    )


def load_data(rng, count):
    """(images, labels) shaped and typed as mnist.load_data()'s; a bright band at the label."""
    x = rng.integers(0, 100, (count, 28, 28), dtype="uint8")
    y = rng.integers(0, 10, count, dtype="uint8")
    for i, label in enumerate(y):
        x[i, 2 * label + 4 : 2 * label + 8, 4:24] = 255
    return x, y


def test_antirectifier_on_mnist_shaped_data(capsys):
    rng = np.random.default_rng(0)
    # Training parameters
    batch_size = 128
    epochs = 2
    (x_train, y_train), (x_test, y_test) = load_data(rng, 512), load_data(rng, 128)
    x_train = x_train.reshape(-1, 784)
    x_test = x_test.reshape(-1, 784)
    x_train = x_train.astype("float32")
    x_test = x_test.astype("float32")
    x_train /= 255
    x_test /= 255
    print(x_train.shape[0], "train samples")
    print(x_test.shape[0], "test samples")

    model = recipe_model(keras, layers, ops)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.RMSprop(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    history = model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.15
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    assert sorted(history.history) == [
        "loss",
        "sparse_categorical_accuracy",
        "val_loss",
        "val_sparse_categorical_accuracy",
    ]
    loss, accuracy = model.evaluate(x_test, y_test)
    assert np.isfinite(loss) and accuracy > 0.2  # above chance (0.1)
    model.summary()
    out = capsys.readouterr().out
    assert "131,072" in out and "Trainable params: 531,466" in out


def test_antirectifier_computes_and_serializes():
    Antirectifier = antirectifier_class(keras, layers, ops)
    layer = Antirectifier(name="anti")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    out = layer(x.copy())
    assert tuple(out.shape) == (4, 6)
    assert tuple(layer.kernel.shape) == (12, 6)
    centered = x - x.mean(axis=-1, keepdims=True)
    expected = np.concatenate([np.maximum(centered, 0), np.maximum(-centered, 0)], -1)
    np.testing.assert_allclose(out, expected @ layer.kernel.numpy(), rtol=1e-5, atol=1e-6)

    config = layer.get_config()
    assert config["name"] == "anti"
    assert config["initializer"]["class_name"] == "HeNormal"
    clone = Antirectifier.from_config(config)
    assert isinstance(clone.initializer, keras.initializers.HeNormal)
    assert clone.name == "anti"


def test_one_training_step_as_keras():
    keras3 = keras_module()
    ours = recipe_model(keras, layers, ops, input_dim=32)
    theirs = recipe_model(keras3, keras3.layers, keras3.ops, input_dim=32)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(1)
    x, y = rng.random((16, 32)).astype("float32"), rng.integers(0, 10, 16)
    x_test = rng.random((4, 32)).astype("float32")
    np.testing.assert_allclose(
        ours.predict(x_test, verbose=0),
        to_numpy(theirs.predict(x_test, verbose=0)),
        rtol=1e-4,
        atol=1e-5,
    )
    for model, k in ((ours, keras), (theirs, keras3)):
        layer = model.layers[-2]  # Dropout: off, so that one step is deterministic
        layer.rate = 0.0
        model.compile(
            loss=k.losses.SparseCategoricalCrossentropy(from_logits=True),
            optimizer=k.optimizers.SGD(0.01),
        )
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, to_numpy(b), rtol=1e-4, atol=1e-6)
