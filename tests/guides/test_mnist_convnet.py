"""keras-io's example "Simple MNIST convnet" (examples/vision/mnist_convnet.py, Keras 3
version, Apache 2.0) run on fastnn with only the imports changed.

Changed besides the imports: MNIST is 600 random uint8 images whose label is the brightest of
ten image regions (learnable, no network), 100 for the test; 2 epochs instead of 15.
"""

import numpy as np

import fastnn as keras
from fastnn import layers


def load_data(rng, count):
    """(images, labels) shaped and typed as keras.datasets.mnist.load_data()'s."""
    x = rng.integers(0, 100, (count, 28, 28), dtype="uint8")
    y = rng.integers(0, 10, count, dtype="uint8")
    for i, label in enumerate(y):
        x[i, 2 * label + 4 : 2 * label + 8, 4:24] = 255  # a bright band at the label's height
    return x, y


def test_simple_mnist_convnet(capsys):
    rng = np.random.default_rng(0)
    # Model / data parameters
    num_classes = 10
    input_shape = (28, 28, 1)
    # Load the data and split it between train and test sets
    (x_train, y_train), (x_test, y_test) = load_data(rng, 600), load_data(rng, 100)
    # Scale images to the [0, 1] range
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    # Make sure images have shape (28, 28, 1)
    x_train = np.expand_dims(x_train, -1)
    x_test = np.expand_dims(x_test, -1)
    print("x_train shape:", x_train.shape)
    print(x_train.shape[0], "train samples")
    print(x_test.shape[0], "test samples")
    # convert class vectors to binary class matrices
    y_train = keras.utils.to_categorical(y_train, num_classes)
    y_test = keras.utils.to_categorical(y_test, num_classes)

    model = keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ]
    )
    model.summary()
    assert "Total params: 34,826" in capsys.readouterr().out  # the example's summary

    batch_size = 128
    epochs = 2
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(
        x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1
    )
    score = model.evaluate(x_test, y_test, verbose=0)
    print("Test loss:", score[0])
    print("Test accuracy:", score[1])
    assert history.history["loss"][1] < history.history["loss"][0]
    assert score[1] > 0.3  # learnable bands: well above chance (0.1) after two epochs
