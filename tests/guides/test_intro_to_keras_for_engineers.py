"""keras-io's guide "Introduction to Keras for engineers"
(guides/intro_to_keras_for_engineers.py, Apache 2.0) run on fastnn with only the imports changed
(``import fastnn as keras``).

Changed besides the imports: MNIST is 400 random images of its shape and dtypes with a
learnable label (no network); the convolutions have 16 and 32 filters instead of 64 and 128,
and 3 epochs instead of 20, to keep the test fast; the tf.data section's datasets are
re-iterables of numpy batches (no TensorFlow).
"""

import os

import numpy as np
import pytest

import fastnn as keras

torch = pytest.importorskip("torch")

# Model parameters
num_classes = 10
input_shape = (28, 28, 1)
batch_size = 128


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def mnist():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 60, (500, 28, 28), dtype="uint8")
    y = rng.integers(0, 10, 500, dtype="uint8")
    for i, label in enumerate(y):
        x[i, 2 * label + 4 : 2 * label + 8, 6:22] = 255  # a band at the label's height
    x_train, x_test, y_train, y_test = x[:400], x[400:], y[:400], y[400:]
    # Scale images to the [0, 1] range
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    # Make sure images have shape (28, 28, 1)
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)
    return x_train, y_train, x_test, y_test


def test_training_a_sequential_convnet(mnist, capsys):
    x_train, y_train, x_test, y_test = mnist
    print("x_train shape:", x_train.shape)
    print("y_train shape:", y_train.shape)
    print(x_train.shape[0], "train samples")
    print(x_test.shape[0], "test samples")

    model = keras.Sequential(
        [
            keras.layers.Input(shape=input_shape),
            keras.layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
            keras.layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
            keras.layers.MaxPooling2D(pool_size=(2, 2)),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.summary()
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(),
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="acc"),
        ],
    )
    epochs = 3
    callbacks = [
        keras.callbacks.ModelCheckpoint(filepath="model_at_epoch_{epoch}.keras"),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=2),
    ]
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_split=0.15,
        callbacks=callbacks,
    )
    score = model.evaluate(x_test, y_test, verbose=0)
    epochs_run = len(history.history["loss"])
    assert sorted(os.listdir(".")) == [
        f"model_at_epoch_{e}.keras" for e in range(1, epochs_run + 1)
    ]
    assert sorted(history.history) == ["acc", "loss", "val_acc", "val_loss"]
    assert history.history["loss"][-1] < history.history["loss"][0]

    model.save("final_model.keras")
    predictions_before = model.predict(x_test, verbose=0)
    model = keras.saving.load_model("final_model.keras")
    predictions = model.predict(x_test)
    np.testing.assert_allclose(predictions, predictions_before, rtol=1e-6)
    assert predictions.shape == (100, 10)
    np.testing.assert_allclose(model.evaluate(x_test, y_test, verbose=0), score, rtol=1e-6)


class MyDense(keras.layers.Layer):
    def __init__(self, units, activation=None, name=None):
        super().__init__(name=name)
        self.units = units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        input_dim = input_shape[-1]
        self.w = self.add_weight(
            shape=(input_dim, self.units),
            initializer=keras.initializers.GlorotNormal(),
            name="kernel",
            trainable=True,
        )
        self.b = self.add_weight(
            shape=(self.units,),
            initializer=keras.initializers.Zeros(),
            name="bias",
            trainable=True,
        )

    def call(self, inputs):
        # Use Keras ops to create backend-agnostic layers/metrics/etc.
        x = keras.ops.matmul(inputs, self.w) + self.b
        return self.activation(x)


class MyDropout(keras.layers.Layer):
    def __init__(self, rate, name=None):
        super().__init__(name=name)
        self.rate = rate
        # Use seed_generator for managing RNG state.
        # It is a state element and its seed variable is
        # tracked as part of `layer.variables`.
        self.seed_generator = keras.random.SeedGenerator(1337)

    def call(self, inputs):
        # Use `keras.random` for random ops.
        return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)


class MyModel(keras.Model):
    def __init__(self, num_classes):
        super().__init__()
        self.conv_base = keras.Sequential(
            [
                keras.layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
                keras.layers.Conv2D(16, kernel_size=(3, 3), activation="relu"),
                keras.layers.MaxPooling2D(pool_size=(2, 2)),
                keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
                keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
                keras.layers.GlobalAveragePooling2D(),
            ]
        )
        self.dp = MyDropout(0.5)
        self.dense = MyDense(num_classes, activation="softmax")

    def call(self, x):
        x = self.conv_base(x)
        x = self.dp(x)
        return self.dense(x)


def compiled_model():
    model = MyModel(num_classes=10)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(),
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        metrics=[
            keras.metrics.SparseCategoricalAccuracy(name="acc"),
        ],
    )
    return model


def test_cross_framework_custom_components(mnist):
    x_train, y_train, *_ = mnist
    model = compiled_model()
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=1,  # For speed
        validation_split=0.15,
    )
    assert sorted(history.history) == ["acc", "loss", "val_acc", "val_loss"]
    # the custom layers: softmax rows; keras.random.dropout has no training switch, so the
    # guide's MyDropout drops at every call, as in Keras (kept values scaled by 1 / 0.5)
    probabilities = model.predict(x_train[:8], verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    features = model.conv_base(x_train[:8])
    dropped = model.dp(features)
    kept = dropped != 0
    assert 0.3 < kept[features != 0].mean() < 0.7
    np.testing.assert_allclose(dropped[kept], 2 * features[kept], rtol=1e-6)
    assert [w.name for w in model.dense.weights] == ["kernel", "bias"]


def test_training_on_data_loaders_and_batch_iterables(mnist):
    x_train, y_train, x_test, y_test = mnist
    # Create a TensorDataset
    train_torch_dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(x_train), torch.from_numpy(y_train)
    )
    val_torch_dataset = torch.utils.data.TensorDataset(
        torch.from_numpy(x_test), torch.from_numpy(y_test)
    )
    # Create a DataLoader
    train_dataloader = torch.utils.data.DataLoader(
        train_torch_dataset, batch_size=batch_size, shuffle=True
    )
    val_dataloader = torch.utils.data.DataLoader(
        val_torch_dataset, batch_size=batch_size, shuffle=False
    )
    model = compiled_model()
    history = model.fit(train_dataloader, epochs=1, validation_data=val_dataloader)
    assert model.optimizer.iterations == 4  # 400 samples in batches of 128
    assert np.isfinite(history.history["val_loss"][0])  # MyDropout drops in evaluation too

    class Batches:  # tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __iter__(self):
            for i in range(0, len(self.x), batch_size):
                yield self.x[i : i + batch_size], self.y[i : i + batch_size]

    train_dataset = Batches(x_train, y_train)
    test_dataset = Batches(x_test, y_test)
    model = compiled_model()
    history = model.fit(train_dataset, epochs=1, validation_data=test_dataset)
    assert model.optimizer.iterations == 4 and "val_acc" in history.history
    assert model.evaluate(test_dataset, verbose=0)[1] <= 1
