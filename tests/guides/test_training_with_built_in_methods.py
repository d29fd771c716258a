"""keras-io's guide "Training & evaluation with the built-in methods"
(guides/training_with_built_in_methods.py, Keras 3 version, Apache 2.0) run on fastnn with only
the imports changed. Its custom losses, metrics and add_loss sections run in
tests/models/test_keras_guides.py; this file runs the rest.

Changed besides the imports: MNIST is 1000 random images with a learnable label (no network),
split 600 / 200 / 200 as the guide splits 50000 / 10000 / 10000; fewer steps; files go to a
temporary folder and plots are DOT source. No TensorFlow: each ``tf.data.Dataset``
(``from_tensor_slices(...).shuffle(...).batch(n)``) is ``Dataset`` below, a re-iterable of
numpy batches that shuffles each pass as tf.data does. The PyTorch DataLoader section runs
with torch's own DataLoader.
"""

import os

import numpy as np
import pytest

import fastnn as keras
from fastnn import layers

torch = pytest.importorskip("torch")


class Dataset:
    """``tf.data.Dataset.from_tensor_slices(arrays)[.shuffle(...)].batch(batch_size)``: every
    pass yields ``(x, y[, sample_weight])`` batches (arrays or dicts of them)."""

    def __init__(self, arrays, batch_size, shuffle=False):
        self.arrays, self.batch_size, self.shuffle = arrays, batch_size, shuffle

    def __iter__(self):
        first = self.arrays[0]
        count = len(next(iter(first.values())) if isinstance(first, dict) else first)
        order = np.random.permutation(count) if self.shuffle else np.arange(count)
        for start in range(0, count, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield tuple(_take(a, rows) for a in self.arrays)


def _take(array, rows):
    return {k: v[rows] for k, v in array.items()} if isinstance(array, dict) else array[rows]


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def mnist():
    """keras.datasets.mnist.load_data(), preprocessed and split as the guide does."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1000, 28, 28), dtype="uint8")
    y = np.argmax(x[:, 0, :10], axis=1).astype("uint8")
    x_train, x_test = x[:800], x[800:]
    y_train, y_test = y[:800], y[800:]
    # Preprocess the data (these are NumPy arrays)
    x_train = x_train.reshape(800, 784).astype("float32") / 255
    x_test = x_test.reshape(200, 784).astype("float32") / 255
    y_train = y_train.astype("float32")
    y_test = y_test.astype("float32")
    # Reserve 200 samples for validation
    x_val = x_train[-200:]
    y_val = y_train[-200:]
    x_train = x_train[:-200]
    y_train = y_train[:-200]
    return x_train, y_train, x_val, y_val, x_test, y_test


def get_uncompiled_model():
    inputs = keras.Input(shape=(784,), name="digits")
    x = layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = layers.Dense(64, activation="relu", name="dense_2")(x)
    outputs = layers.Dense(10, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs=inputs, outputs=outputs)
    return model


def get_compiled_model():
    model = get_uncompiled_model()
    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    return model


def test_a_first_end_to_end_example(mnist, capsys):
    x_train, y_train, x_val, y_val, x_test, y_test = mnist
    model = get_uncompiled_model()
    model.compile(
        optimizer=keras.optimizers.RMSprop(),  # Optimizer
        # Loss function to minimize
        loss=keras.losses.SparseCategoricalCrossentropy(),
        # List of metrics to monitor
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
    )
    print("Fit model on training data")
    history = model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=2,
        # We pass some validation for
        # monitoring validation loss and metrics
        # at the end of each epoch
        validation_data=(x_val, y_val),
    )
    assert sorted(history.history) == [
        "loss",
        "sparse_categorical_accuracy",
        "val_loss",
        "val_sparse_categorical_accuracy",
    ]
    assert history.history["loss"][1] < history.history["loss"][0]

    # Evaluate the model on the test data using `evaluate`
    print("Evaluate on test data")
    results = model.evaluate(x_test, y_test, batch_size=128)
    print("test loss, test acc:", results)
    # Generate predictions (probabilities -- the output of the last layer)
    # on new data using `predict`
    print("Generate predictions for 3 samples")
    predictions = model.predict(x_test[:3])
    print("predictions shape:", predictions.shape)
    assert "predictions shape: (3, 10)" in capsys.readouterr().out
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert len(results) == 2 and 0 <= results[1] <= 1

    # string identifiers
    model.compile(
        optimizer="rmsprop",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    model = get_compiled_model()
    history = model.fit(x_train, y_train, batch_size=64, validation_split=0.2, epochs=1)
    assert "val_loss" in history.history


def test_training_and_evaluation_on_datasets(mnist):
    x_train, y_train, x_val, y_val, x_test, y_test = mnist
    model = get_compiled_model()
    # First, let's create a training Dataset instance.
    train_dataset = Dataset((x_train, y_train), batch_size=64, shuffle=True)
    # Now we get a test dataset.
    test_dataset = Dataset((x_test, y_test), batch_size=64)
    # Since the dataset already takes care of batching,
    # we don't pass a `batch_size` argument.
    history = model.fit(train_dataset, epochs=3)
    assert history.history["loss"][2] < history.history["loss"][0]
    # You can also evaluate or predict on a dataset.
    print("Evaluate")
    result = model.evaluate(test_dataset)
    logs = dict(zip(model.metrics_names, result))
    assert list(logs) == ["loss", "sparse_categorical_accuracy"]
    np.testing.assert_allclose(result, model.evaluate(x_test, y_test, verbose=0), rtol=1e-5)

    model = get_compiled_model()
    # Only use 4 batches per epoch (that's 64 * 4 samples)
    model.fit(train_dataset, epochs=2, steps_per_epoch=4)
    assert model.optimizer.iterations == 8

    model = get_compiled_model()
    val_dataset = Dataset((x_val, y_val), batch_size=64)
    history = model.fit(train_dataset, epochs=1, validation_data=val_dataset)
    full_validation = history.history["val_loss"][0]
    np.testing.assert_allclose(
        full_validation, model.evaluate(x_val, y_val, verbose=0)[0], rtol=1e-5
    )

    model = get_compiled_model()
    history = model.fit(
        train_dataset,
        epochs=1,
        # Only run validation using the first 2 batches of the dataset
        # using the `validation_steps` argument
        validation_data=val_dataset,
        validation_steps=2,
    )
    np.testing.assert_allclose(
        history.history["val_loss"][0],
        model.evaluate(x_val[:128], y_val[:128], verbose=0)[0],
        rtol=1e-5,
    )


class ExamplePyDataset(keras.utils.PyDataset):
    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x = x
        self.y = y
        self.batch_size = batch_size

    def __len__(self):
        return int(np.ceil(len(self.x) / float(self.batch_size)))

    def __getitem__(self, idx):
        batch_x = self.x[idx * self.batch_size : (idx + 1) * self.batch_size]
        batch_y = self.y[idx * self.batch_size : (idx + 1) * self.batch_size]
        return batch_x, batch_y


def test_training_and_evaluation_on_py_datasets_and_torch_data_loaders(mnist):
    x_train, y_train, x_val, y_val, _, _ = mnist
    train_py_dataset = ExamplePyDataset(x_train, y_train, batch_size=32)
    val_py_dataset = ExamplePyDataset(x_val, y_val, batch_size=32)
    model = get_compiled_model()
    model.fit(train_py_dataset, batch_size=64, validation_data=val_py_dataset, epochs=1)
    assert model.optimizer.iterations == len(train_py_dataset) == 19
    np.testing.assert_allclose(
        model.evaluate(val_py_dataset), model.evaluate(x_val, y_val, verbose=0), rtol=1e-5
    )

    # a 4-thread, non-multiprocessed example
    train_py_dataset = ExamplePyDataset(x_train, y_train, batch_size=32, workers=4)
    val_py_dataset = ExamplePyDataset(x_val, y_val, batch_size=32, workers=4)
    model = get_compiled_model()
    history = model.fit(train_py_dataset, batch_size=64, validation_data=val_py_dataset, epochs=1)
    assert "val_loss" in history.history

    class ExampleTorchDataset(torch.utils.data.Dataset):
        def __init__(self, x, y):
            self.x = x
            self.y = y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, idx):
            return self.x[idx], self.y[idx]

    train_torch_dataset = ExampleTorchDataset(x_train, y_train)
    val_torch_dataset = ExampleTorchDataset(x_val, y_val)
    train_dataloader = torch.utils.data.DataLoader(train_torch_dataset, batch_size=32, shuffle=True)
    val_dataloader = torch.utils.data.DataLoader(val_torch_dataset, batch_size=32, shuffle=True)
    model = get_compiled_model()
    model.fit(train_dataloader, batch_size=64, validation_data=val_dataloader, epochs=1)
    np.testing.assert_allclose(
        model.evaluate(val_dataloader), model.evaluate(x_val, y_val, verbose=0), rtol=1e-5
    )


def test_class_weights_and_sample_weights(mnist):
    x_train, y_train, *_ = mnist
    class_weight = {
        0: 1.0,
        1: 1.0,
        2: 1.0,
        3: 1.0,
        4: 1.0,
        # Set weight "2" for class "5",
        # making this class 2x more important
        5: 2.0,
        6: 1.0,
        7: 1.0,
        8: 1.0,
        9: 1.0,
    }
    keras.utils.set_random_seed(3)  # (added) the three fits start and shuffle alike
    print("Fit with class weight")
    model = get_compiled_model()
    model.fit(x_train, y_train, class_weight=class_weight, batch_size=64, epochs=1)
    by_class = model.get_weights()

    sample_weight = np.ones(shape=(len(y_train),))
    sample_weight[y_train == 5] = 2.0
    keras.utils.set_random_seed(3)
    print("Fit with sample weight")
    model = get_compiled_model()
    model.fit(x_train, y_train, sample_weight=sample_weight, batch_size=64, epochs=1)
    for a, b in zip(model.get_weights(), by_class):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    # a matching Dataset example: (x, y, sample_weight) batches
    train_dataset = Dataset((x_train, y_train, sample_weight), batch_size=64, shuffle=True)
    model = get_compiled_model()
    model.fit(train_dataset, epochs=1)
    assert model.optimizer.iterations == 10
    # the batches' weights count as fit(sample_weight=) counts them (same start, same order)
    in_order = Dataset((x_train, y_train, sample_weight), batch_size=64)
    keras.utils.set_random_seed(4)
    model = get_compiled_model()
    from_batches = model.fit(in_order, epochs=1, verbose=0).history["loss"]
    keras.utils.set_random_seed(4)
    model = get_compiled_model()
    from_arrays = model.fit(
        x_train, y_train, sample_weight=sample_weight, batch_size=64, shuffle=False, verbose=0
    ).history["loss"]
    np.testing.assert_allclose(from_batches, from_arrays, rtol=1e-5)


def multi_input_multi_output_model():
    image_input = keras.Input(shape=(32, 32, 3), name="img_input")
    timeseries_input = keras.Input(shape=(None, 10), name="ts_input")
    x1 = layers.Conv2D(3, 3)(image_input)
    x1 = layers.GlobalMaxPooling2D()(x1)
    x2 = layers.Conv1D(3, 3)(timeseries_input)
    x2 = layers.GlobalMaxPooling1D()(x2)
    x = layers.concatenate([x1, x2])
    score_output = layers.Dense(1, name="score_output")(x)
    class_output = layers.Dense(5, name="class_output")(x)
    return keras.Model(inputs=[image_input, timeseries_input], outputs=[score_output, class_output])


def test_passing_data_to_multi_input_multi_output_models():
    model = multi_input_multi_output_model()
    keras.utils.plot_model(model, "multi_input_and_output_model.dot", show_shapes=True)
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[
            keras.losses.MeanSquaredError(),
            keras.losses.CategoricalCrossentropy(),
        ],
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[
            keras.losses.MeanSquaredError(),
            keras.losses.CategoricalCrossentropy(),
        ],
        metrics=[
            [
                keras.metrics.MeanAbsolutePercentageError(),
                keras.metrics.MeanAbsoluteError(),
            ],
            [keras.metrics.CategoricalAccuracy()],
        ],
    )
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss={
            "score_output": keras.losses.MeanSquaredError(),
            "class_output": keras.losses.CategoricalCrossentropy(),
        },
        metrics={
            "score_output": [
                keras.metrics.MeanAbsolutePercentageError(),
                keras.metrics.MeanAbsoluteError(),
            ],
            "class_output": [keras.metrics.CategoricalAccuracy()],
        },
        loss_weights={"score_output": 2.0, "class_output": 1.0},
    )
    # Generate dummy NumPy data (the guide's, 64 samples instead of 100)
    img_data = np.random.random_sample(size=(64, 32, 32, 3))
    ts_data = np.random.random_sample(size=(64, 20, 10))
    score_targets = np.random.random_sample(size=(64, 1))
    class_targets = np.random.random_sample(size=(64, 5))
    history = model.fit([img_data, ts_data], [score_targets, class_targets], batch_size=32)
    # Keras 3's keys for this compile
    assert sorted(history.history) == [
        "class_output_categorical_accuracy",
        "class_output_loss",
        "loss",
        "score_output_loss",
        "score_output_mean_absolute_error",
        "score_output_mean_absolute_percentage_error",
    ]

    # List loss version
    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[None, keras.losses.CategoricalCrossentropy()],
    )
    model.fit([img_data, ts_data], [score_targets, class_targets], batch_size=32, epochs=1)

    model.compile(
        optimizer=keras.optimizers.RMSprop(1e-3),
        loss=[
            keras.losses.MeanSquaredError(),
            keras.losses.CategoricalCrossentropy(),
        ],
    )
    # Fit on lists
    model.fit([img_data, ts_data], [score_targets, class_targets], batch_size=32, epochs=1)
    # Alternatively, fit on dicts
    history = model.fit(
        {"img_input": img_data, "ts_input": ts_data},
        {"score_output": score_targets, "class_output": class_targets},
        batch_size=32,
        epochs=1,
    )
    assert sorted(history.history) == ["class_output_loss", "loss", "score_output_loss"]
    # a Dataset of (dict, dict) batches
    train_dataset = Dataset(
        (
            {"img_input": img_data, "ts_input": ts_data},
            {"score_output": score_targets, "class_output": class_targets},
        ),
        batch_size=32,
        shuffle=True,
    )
    model.fit(train_dataset, epochs=1)
    assert model.optimizer.iterations == 6


def test_using_callbacks(mnist, capsys):
    x_train, y_train, *_ = mnist
    model = get_compiled_model()
    callbacks = [
        keras.callbacks.EarlyStopping(
            # Stop training when `val_loss` is no longer improving
            monitor="val_loss",
            # "no longer improving" being defined as "no better than 1e-2 less"
            min_delta=1e-2,
            # "no longer improving" being further defined as "for at least 2 epochs"
            patience=2,
            verbose=1,
        )
    ]
    history = model.fit(
        x_train,
        y_train,
        epochs=20,
        batch_size=64,
        callbacks=callbacks,
        validation_split=0.2,
    )
    epochs = len(history.history["loss"])
    assert epochs < 20 and f"Epoch {epochs}: early stopping" in capsys.readouterr().out
    val_loss = history.history["val_loss"]
    assert min(val_loss[-2:]) > min(val_loss[:-2]) - 1e-2  # two epochs without 1e-2 better

    class LossHistory(keras.callbacks.Callback):
        def on_train_begin(self, logs):
            self.per_batch_losses = []

        def on_batch_end(self, batch, logs):
            self.per_batch_losses.append(logs.get("loss"))

    loss_history = LossHistory()
    history = model.fit(x_train, y_train, batch_size=64, callbacks=[loss_history], verbose=0)
    assert len(loss_history.per_batch_losses) == 10
    assert loss_history.per_batch_losses[-1] == pytest.approx(history.history["loss"][0])


def test_checkpointing_models(mnist, capsys):
    x_train, y_train, *_ = mnist
    model = get_compiled_model()
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            # Path where to save the model
            # The two parameters below mean that we will overwrite
            # the current checkpoint if and only if
            # the `val_loss` score has improved.
            # The saved model name will include the current epoch.
            filepath="mymodel_{epoch}.keras",
            save_best_only=True,  # Only save a model if `val_loss` has improved.
            monitor="val_loss",
            verbose=1,
        )
    ]
    history = model.fit(
        x_train,
        y_train,
        epochs=2,
        batch_size=64,
        callbacks=callbacks,
        validation_split=0.2,
    )
    assert "val_loss improved from inf to" in capsys.readouterr().out
    best = 1 + int(np.argmin(history.history["val_loss"]))
    assert os.path.exists(f"mymodel_{best}.keras")

    # Prepare a directory to store all the checkpoints.
    checkpoint_dir = "./ckpt"
    if not os.path.exists(checkpoint_dir):
        os.makedirs(checkpoint_dir)

    def make_or_restore_model():
        # Either restore the latest model, or create a fresh one
        # if there is no checkpoint available.
        checkpoints = [checkpoint_dir + "/" + name for name in os.listdir(checkpoint_dir)]
        if checkpoints:
            latest_checkpoint = max(checkpoints, key=os.path.getctime)
            print("Restoring from", latest_checkpoint)
            return keras.models.load_model(latest_checkpoint)
        print("Creating a new model")
        return get_compiled_model()

    model = make_or_restore_model()
    callbacks = [
        # This callback saves the model every 10 batches (the guide: 100).
        # We include the training loss in the saved model name.
        keras.callbacks.ModelCheckpoint(
            filepath=checkpoint_dir + "/model-loss={loss:.2f}.keras", save_freq=10
        )
    ]
    model.fit(x_train, y_train, epochs=1, callbacks=callbacks)  # 19 batches of 32
    saved = os.listdir(checkpoint_dir)
    assert len(saved) == 1 and saved[0].startswith("model-loss=")
    restored = make_or_restore_model()
    assert "Restoring from ./ckpt/model-loss=" in capsys.readouterr().out
    assert restored.optimizer.iterations == 10  # saved at the 10th batch
    x = x_train[:4]
    assert restored.predict(x, verbose=0).shape == model.predict(x, verbose=0).shape


def test_learning_rate_schedules_and_tensorboard(mnist, tmp_path):
    x_train, y_train, *_ = mnist
    initial_learning_rate = 0.1
    lr_schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate, decay_steps=100000, decay_rate=0.96, staircase=True
    )
    optimizer = keras.optimizers.RMSprop(learning_rate=lr_schedule)
    assert float(lr_schedule(100000)) == pytest.approx(0.096)

    tensorboard = keras.callbacks.TensorBoard(
        log_dir=str(tmp_path / "logs"),
        histogram_freq=0,  # How often to log histogram visualizations
        embeddings_freq=0,  # How often to log embedding visualizations
        update_freq="epoch",
    )  # How often to write logs (default: once per epoch)
    model = get_uncompiled_model()
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(x_train, y_train, epochs=1, callbacks=[tensorboard], verbose=0)
    assert os.listdir(tmp_path / "logs" / "train")
