"""keras-io's example "Convolutional Autoencoder For Image Denoising"
(examples/vision/autoencoder.py, Keras 3 version, Apache 2.0) run on fastnn with only the
imports changed.

Changed besides the imports: MNIST is random uint8 images of its shape (256 to train, 64 to
test; no network); 2 epochs instead of 50 and 100; ``display`` draws on matplotlib's Agg
backend and does not show. The earlier version of the example (``UpSampling2D`` in the decoder
instead of strided ``Conv2DTranspose``) is built too, and both predict as Keras 3 does.
"""

import numpy as np
import pytest
from keras_twin import copy_weights, keras_module, to_numpy

from fastnn import layers
from fastnn.models import Model


def preprocess(array):
    """Normalizes the supplied array and reshapes it."""
    array = array.astype("float32") / 255.0
    array = np.reshape(array, (len(array), 28, 28, 1))
    return array


def noise(array):
    """Adds random noise to each image in the supplied array."""
    noise_factor = 0.4
    noisy_array = array + noise_factor * np.random.normal(loc=0.0, scale=1.0, size=array.shape)
    return np.clip(noisy_array, 0.0, 1.0)


def display(array1, array2):
    """Displays ten random images from each array."""
    plt = pytest.importorskip("matplotlib.pyplot")
    n = 10
    indices = np.random.randint(len(array1), size=n)
    images1 = array1[indices, :]
    images2 = array2[indices, :]
    plt.figure(figsize=(20, 4))
    for i, (image1, image2) in enumerate(zip(images1, images2)):
        ax = plt.subplot(2, n, i + 1)
        plt.imshow(image1.reshape(28, 28))
        plt.gray()
        ax.get_xaxis().set_visible(False)
        ax.get_yaxis().set_visible(False)
        ax = plt.subplot(2, n, i + 1 + n)
        plt.imshow(image2.reshape(28, 28))
        plt.gray()
        ax.get_xaxis().set_visible(False)
        ax.get_yaxis().set_visible(False)
    plt.close("all")


def build_autoencoder(k_layers, k_model, upsampling=False):
    input = k_layers.Input(shape=(28, 28, 1))
    # Encoder
    x = k_layers.Conv2D(32, (3, 3), activation="relu", padding="same")(input)
    x = k_layers.MaxPooling2D((2, 2), padding="same")(x)
    x = k_layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
    x = k_layers.MaxPooling2D((2, 2), padding="same")(x)
    # Decoder
    if upsampling:  # the example's first version
        x = k_layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
        x = k_layers.UpSampling2D((2, 2))(x)
        x = k_layers.Conv2D(32, (3, 3), activation="relu", padding="same")(x)
        x = k_layers.UpSampling2D((2, 2))(x)
    else:
        x = k_layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
        x = k_layers.Conv2DTranspose(32, (3, 3), strides=2, activation="relu", padding="same")(x)
    x = k_layers.Conv2D(1, (3, 3), activation="sigmoid", padding="same")(x)
    # Autoencoder
    return k_model(input, x)


def test_denoising_autoencoder(capsys):
    pytest.importorskip("matplotlib").use("Agg")
    rng = np.random.default_rng(0)
    # a bright square at a random place over dim noise: learnable, unlike uniform noise
    images = rng.integers(0, 60, (320, 28, 28), dtype="uint8")
    for image, (r, c) in zip(images, rng.integers(0, 20, (320, 2))):
        image[r : r + 8, c : c + 8] = 255
    train_data, test_data = preprocess(images[:256]), preprocess(images[256:])
    noisy_train_data = noise(train_data)
    noisy_test_data = noise(test_data)
    display(train_data, noisy_train_data)

    autoencoder = build_autoencoder(layers, Model)
    autoencoder.compile(optimizer="adam", loss="binary_crossentropy")
    autoencoder.summary()
    assert "Total params: 28,353" in capsys.readouterr().out  # the example's summary

    history = autoencoder.fit(
        x=train_data,
        y=train_data,
        epochs=2,
        batch_size=128,
        shuffle=True,
        validation_data=(test_data, test_data),
    )
    assert sorted(history.history) == ["loss", "val_loss"]
    predictions = autoencoder.predict(test_data)
    assert predictions.shape == (64, 28, 28, 1) and predictions.dtype == np.float32
    assert np.all((predictions > 0) & (predictions < 1))
    display(test_data, predictions)

    history = autoencoder.fit(
        x=noisy_train_data,
        y=train_data,
        epochs=2,
        batch_size=128,
        shuffle=True,
        validation_data=(noisy_test_data, test_data),
    )
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[1] < losses[0]
    predictions = autoencoder.predict(noisy_test_data)
    display(noisy_test_data, predictions)


@pytest.mark.parametrize("upsampling", [False, True])
def test_autoencoder_predicts_as_keras(upsampling):
    keras3 = keras_module()
    ours = build_autoencoder(layers, Model, upsampling)
    theirs = build_autoencoder(keras3.layers, keras3.models.Model, upsampling)
    copy_weights(theirs, ours)
    x = np.random.default_rng(1).random((2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6
    )
