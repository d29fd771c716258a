"""keras-io's example "Timeseries classification from scratch"
(examples/timeseries/timeseries_classification_from_scratch.py, Keras 3 version, Apache 2.0)
run on fastnn with only the imports changed.

Changed besides the imports: the FordA dataset (3601 + 1320 z-normalized series of 500 steps,
labels -1/1, read from the network) is 96 + 32 synthetic z-normalized series of 100 steps whose
label is their frequency; 6 epochs instead of 500; no matplotlib plot; sklearn's
accuracy_score is numpy's mean. The callbacks are the example's.
"""

import numpy as np
import pytest

import fastnn as keras


def readucr(rng, count, steps=100):
    """(x, y) as the example's readucr gives them: z-normalized series, labels -1 or 1."""
    y = rng.choice([-1, 1], count)
    t = np.arange(steps)
    x = np.sin(t[None] * np.where(y == 1, 0.5, 0.15)[:, None] + rng.uniform(0, 6, (count, 1)))
    x = x + 0.3 * rng.normal(size=x.shape)
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return x, y.astype(int)


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_timeseries_classification_from_scratch():
    rng = np.random.default_rng(0)
    (x_train, y_train), (x_test, y_test) = readucr(rng, 96), readucr(rng, 32)
    classes = np.unique(np.concatenate((y_train, y_test), axis=0))
    assert classes.tolist() == [-1, 1]

    x_train = x_train.reshape((x_train.shape[0], x_train.shape[1], 1))
    x_test = x_test.reshape((x_test.shape[0], x_test.shape[1], 1))
    num_classes = len(np.unique(y_train))
    idx = np.random.permutation(len(x_train))
    x_train = x_train[idx]
    y_train = y_train[idx]
    y_train[y_train == -1] = 0
    y_test[y_test == -1] = 0

    def make_model(input_shape):
        input_layer = keras.layers.Input(input_shape)

        conv1 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(input_layer)
        conv1 = keras.layers.BatchNormalization()(conv1)
        conv1 = keras.layers.ReLU()(conv1)

        conv2 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv1)
        conv2 = keras.layers.BatchNormalization()(conv2)
        conv2 = keras.layers.ReLU()(conv2)

        conv3 = keras.layers.Conv1D(filters=64, kernel_size=3, padding="same")(conv2)
        conv3 = keras.layers.BatchNormalization()(conv3)
        conv3 = keras.layers.ReLU()(conv3)

        gap = keras.layers.GlobalAveragePooling1D()(conv3)

        output_layer = keras.layers.Dense(num_classes, activation="softmax")(gap)

        return keras.models.Model(inputs=input_layer, outputs=output_layer)

    model = make_model(input_shape=x_train.shape[1:])
    keras.utils.plot_model(model, "model.dot", show_shapes=True)

    epochs = 6
    batch_size = 32
    callbacks = [
        keras.callbacks.ModelCheckpoint(
            "best_model.keras", save_best_only=True, monitor="val_loss"
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.5, patience=20, min_lr=0.0001
        ),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=50, verbose=1),
    ]
    model.compile(
        optimizer="adam",
        loss="sparse_categorical_crossentropy",
        metrics=["sparse_categorical_accuracy"],
    )
    history = model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=callbacks,
        validation_split=0.2,
        verbose=1,
    )

    model = keras.models.load_model("best_model.keras")
    test_loss, test_acc = model.evaluate(x_test, y_test)
    print("Test accuracy", test_acc)
    print("Test loss", test_loss)
    # the checkpoint holds the epoch of the best val_loss: its validation loss again
    x_val, y_val = x_train[-20:], y_train[-20:]  # validation_split=0.2 takes the last 20%
    np.testing.assert_allclose(
        model.evaluate(x_val, y_val, verbose=0)[0], min(history.history["val_loss"]), rtol=1e-4
    )
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert test_acc > 0.7  # two frequencies apart: the convnet separates them
