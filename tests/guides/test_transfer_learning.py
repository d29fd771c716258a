"""keras-io's guide "Transfer learning & fine-tuning" (guides/transfer_learning.py, Keras 3
version, Apache 2.0) run on fastnn with only the imports changed.

Changed besides the imports: no downloads. The base model is a MobileNetV2 at 32x32 without
pretrained weights (``weights=None``; fastnn has no Xception) and the cats vs. dogs dataset is
64 random images with random labels. Not run: the data pipeline's ``Resizing``,
``RandomFlip`` and ``RandomRotation`` layers, which fastnn does not have (the images here are
made at the model's size, without augmentation).

What fine-tuning does to BatchNormalization follows Keras 3, not the guide's text: fit calls
the model with ``training=True``, which overrides the ``training=False`` the base was called
with (keras-team/keras#20285), so a frozen base's BN runs in inference mode because it is
frozen, and after unfreezing its moving statistics update. test_the_workflow_trains_as_keras
checks that against Keras itself.
"""

import numpy as np
import pytest
from keras_twin import copy_weights, keras_module

import fastnn as keras

RNG = np.random.default_rng(0)


def test_layers_and_models_have_trainable_and_non_trainable_weights(capsys):
    layer = keras.layers.Dense(3)
    layer.build((None, 4))  # Create the weights
    print("weights:", len(layer.weights))
    print("trainable_weights:", len(layer.trainable_weights))
    print("non_trainable_weights:", len(layer.non_trainable_weights))

    layer = keras.layers.BatchNormalization()
    layer.build((None, 4))  # Create the weights
    print("weights:", len(layer.weights))
    print("trainable_weights:", len(layer.trainable_weights))
    print("non_trainable_weights:", len(layer.non_trainable_weights))

    layer = keras.layers.Dense(3)
    layer.build((None, 4))  # Create the weights
    layer.trainable = False  # Freeze the layer
    print("weights:", len(layer.weights))
    print("trainable_weights:", len(layer.trainable_weights))
    print("non_trainable_weights:", len(layer.non_trainable_weights))
    counts = [int(line.split()[-1]) for line in capsys.readouterr().out.splitlines()]
    assert counts == [2, 2, 0, 4, 2, 2, 2, 0, 2]

    # Make a model with 2 layers
    layer1 = keras.layers.Dense(3, activation="relu")
    layer2 = keras.layers.Dense(3, activation="sigmoid")
    model = keras.Sequential([keras.Input(shape=(3,)), layer1, layer2])
    # Freeze the first layer
    layer1.trainable = False
    # Keep a copy of the weights of layer1 for later reference
    initial_layer1_weights_values = layer1.get_weights()
    # Train the model
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.random.random((2, 3)), np.random.random((2, 3)))
    # Check that the weights of layer1 have not changed during training
    final_layer1_weights_values = layer1.get_weights()
    np.testing.assert_allclose(initial_layer1_weights_values[0], final_layer1_weights_values[0])
    np.testing.assert_allclose(initial_layer1_weights_values[1], final_layer1_weights_values[1])

    inner_model = keras.Sequential(
        [
            keras.Input(shape=(3,)),
            keras.layers.Dense(3, activation="relu"),
            keras.layers.Dense(3, activation="relu"),
        ]
    )
    model = keras.Sequential(
        [
            keras.Input(shape=(3,)),
            inner_model,
            keras.layers.Dense(3, activation="sigmoid"),
        ]
    )
    model.trainable = False  # Freeze the outer model
    assert inner_model.trainable == False  # noqa: E712 (the guide's)
    assert inner_model.layers[0].trainable == False  # noqa: E712 (propagated recursively)


def build(base_model, k):
    """The guide's model on top of ``base_model`` (module ``k``: fastnn or Keras)."""
    inputs = k.Input(shape=base_model.input_shape[1:])
    # the rescaling layer outputs: `(inputs * scale) + offset`
    scale_layer = k.layers.Rescaling(scale=1 / 127.5, offset=-1)
    x = scale_layer(inputs)
    # The base model contains batchnorm layers: the guide calls it in inference mode
    x = base_model(x, training=False)
    x = k.layers.GlobalAveragePooling2D()(x)
    x = k.layers.Dropout(0.2)(x)  # Regularize with dropout
    outputs = k.layers.Dense(1)(x)
    return k.Model(inputs, outputs)


def images(count, size):
    """A cats vs. dogs batch: uint8-valued float images and 0/1 labels."""
    x = RNG.integers(0, 256, (count, size, size, 3)).astype("float32")
    return x, RNG.integers(0, 2, (count, 1)).astype("float32")


def test_the_typical_workflow_freezes_then_fine_tunes(capsys):
    base_model = keras.applications.MobileNetV2(
        weights=None,  # the guide: weights="imagenet" (Xception)
        input_shape=(32, 32, 3),
        include_top=False,
    )
    # Freeze the base_model
    base_model.trainable = False
    model = build(base_model, keras)
    model.summary(show_trainable=True)
    table = capsys.readouterr().out
    assert "Trainable" in table and " N " in table and " Y " in table

    train_ds, validation_ds = images(32, 32), images(16, 32)
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy()],
    )
    frozen = [w.numpy().copy() for w in base_model.weights]
    head = model.layers[-1].get_weights()
    print("Fitting the top layer of the model")
    model.fit(*train_ds, batch_size=16, epochs=1, validation_data=validation_ds)
    # the frozen base, BN statistics included, is untouched; the new head trained
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(frozen, base_model.weights))
    assert not np.array_equal(head[0], model.layers[-1].get_weights()[0])

    # Unfreeze the base_model
    base_model.trainable = True
    model.summary(show_trainable=True)
    assert " N " not in capsys.readouterr().out.split("Total params")[0]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-5),  # Low learning rate
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy()],
    )
    before = [w.numpy().copy() for w in base_model.trainable_weights]
    print("Fitting the end-to-end model")
    model.fit(*train_ds, batch_size=16, epochs=1, validation_data=validation_ds)
    changed = [
        not np.array_equal(a, w.numpy()) for a, w in zip(before, base_model.trainable_weights)
    ]
    assert sum(changed) > 0.9 * len(changed)  # the base trains now (a dead unit's need not)
    print("Test dataset evaluation")
    loss, accuracy = model.evaluate(*images(16, 32))
    assert np.isfinite(loss) and 0 <= accuracy <= 1


def small_base(k):
    """A small base with BatchNormalization, for the comparison with Keras."""
    return k.Sequential(
        [
            k.Input((8, 8, 3)),
            k.layers.Conv2D(4, 3),
            k.layers.BatchNormalization(),
            k.layers.Activation("relu"),
        ]
    )


@pytest.mark.parametrize("phase", ["frozen", "fine-tuned"])
def test_the_workflow_trains_as_keras(phase):
    keras3 = keras_module()
    x, y = images(16, 8)
    models = []
    for k in (keras, keras3):
        base = small_base(k)
        base.trainable = phase == "fine-tuned"
        model = build(base, k)
        model.compile(optimizer=k.optimizers.SGD(0.01), loss="mse")
        models.append((model, base))
    (ours, our_base), (theirs, their_base) = models
    copy_weights(theirs, ours)
    # no Dropout randomness to match: compare in one step each, from equal weights
    ours.layers[-2].rate = theirs.layers[-2].rate = 0.0
    ours.train_on_batch(x, y)
    theirs.train_on_batch(x, y)
    for a, b in zip(our_base.get_weights(), their_base.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-5)
    bn_mean = our_base.layers[1].moving_mean.numpy()
    assert np.any(bn_mean != 0) == (phase == "fine-tuned")  # Keras 3: updated once unfrozen
