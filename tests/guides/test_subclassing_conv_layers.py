"""keras-io's recipe "Customizing the convolution operation of a Conv2D layer"
(examples/keras_recipes/subclassing_conv_layers.py, Apache 2.0) run on fastnn with only the
imports changed (``tf.nn.moments`` / ``tf.sqrt`` / ``tf.nn.conv2d`` are ``ops.moments`` /
``ops.sqrt`` / ``ops.conv``, as the recipe's Keras 3 form writes them).

Changed besides the imports: MNIST is 256 random images of its shape (no network); 1 epoch
instead of 5. A check against Keras 3 runs the same two layers in both.
"""

import numpy as np
from keras_twin import copy_weights, keras_module, to_numpy

import fastnn as keras
from fastnn import layers, ops


def standardized_layers(k, k_ops):
    """The recipe's two StandardizedConv2D layers, for module ``k`` (fastnn or Keras)."""

    class StandardizedConv2DWithOverride(k.layers.Conv2D):
        def convolution_op(self, inputs, kernel):
            mean, var = k_ops.moments(kernel, axes=[0, 1, 2], keepdims=True)
            return k_ops.conv(
                inputs,
                (kernel - mean) / k_ops.sqrt(var + 1e-10),
                padding="valid",
                strides=list(self.strides),
            )

    class StandardizedConv2DWithCall(k.layers.Conv2D):
        def call(self, inputs):
            mean, var = k_ops.moments(self.kernel, axes=[0, 1, 2], keepdims=True)
            result = self.convolution_op(inputs, (self.kernel - mean) / k_ops.sqrt(var + 1e-10))
            if self.use_bias:
                result = result + self.bias
            return result

    return StandardizedConv2DWithOverride, StandardizedConv2DWithCall


def recipe_model(k, k_ops, num_classes=10, input_shape=(28, 28, 1)):
    with_override, with_call = standardized_layers(k, k_ops)
    return k.Sequential(
        [
            k.layers.InputLayer(shape=input_shape),
            with_call(32, kernel_size=(3, 3), activation="relu"),
            k.layers.MaxPooling2D(pool_size=(2, 2)),
            with_override(64, kernel_size=(3, 3), activation="relu"),
            k.layers.MaxPooling2D(pool_size=(2, 2)),
            k.layers.Flatten(),
            k.layers.Dropout(0.5),
            k.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def test_standardized_conv_layers_train_on_mnist_shaped_data(capsys):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (256, 28, 28), dtype="uint8")
    y_train = rng.integers(0, 10, 256, dtype="uint8")
    num_classes = 10
    x_train = x_train.astype("float32") / 255
    x_train = np.expand_dims(x_train, -1)
    y_train = keras.utils.to_categorical(y_train, num_classes)

    model = recipe_model(keras, ops)
    model.summary()
    batch_size = 128
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=batch_size, epochs=1, validation_split=0.1)
    assert np.isfinite(history.history["loss"][0])
    # the layers run their own convolution: the kernel standardized per filter
    conv = model.layers[0]
    x = x_train[:2]
    kernel = conv.kernel.numpy()
    standardized = (kernel - kernel.mean(axis=(0, 1, 2))) / np.sqrt(
        kernel.var(axis=(0, 1, 2)) + 1e-10
    )
    plain = layers.Conv2D(32, 3)  # the recipe's call adds no activation, as in Keras
    plain.build(x.shape)
    plain.set_weights([standardized, conv.bias.numpy()])
    np.testing.assert_allclose(conv(x), plain(x), rtol=1e-4, atol=1e-5)


def test_the_recipe_s_model_predicts_as_keras():
    keras3 = keras_module()
    ours, theirs = recipe_model(keras, ops), recipe_model(keras3, keras3.ops)
    copy_weights(theirs, ours)
    x = np.random.default_rng(1).random((2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6
    )
