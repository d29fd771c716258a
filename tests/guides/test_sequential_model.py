"""keras-io's guide "The Sequential model" (guides/sequential_model.py, Apache 2.0) run on
fastnn with only the imports changed (``tf.ones`` is ``ops.ones``). Its transfer-learning
blueprints, written as sketches with ``...``, run here on random data: the pretrained weights
are a weights file this test writes, and the Xception base is a MobileNetV2 without downloaded
weights at 32x32 (``weights=None``: no network)."""

import numpy as np
import pytest

import fastnn as keras
from fastnn import layers, ops


def test_a_sequential_model_is_a_stack_of_layers(capsys):
    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu", name="layer1"),
            layers.Dense(3, activation="relu", name="layer2"),
            layers.Dense(4, name="layer3"),
        ]
    )
    x = ops.ones((3, 3))
    y = model(x)

    # is equivalent to this function
    layer1 = layers.Dense(2, activation="relu", name="layer1")
    layer2 = layers.Dense(3, activation="relu", name="layer2")
    layer3 = layers.Dense(4, name="layer3")
    x = ops.ones((3, 3))
    y_function = layer3(layer2(layer1(x)))
    assert y_function.shape == y.shape == (3, 4)
    for twin, layer in zip([layer1, layer2, layer3], model.layers):
        twin.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer3(layer2(layer1(x))), y, rtol=1e-6)

    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu"),
            layers.Dense(3, activation="relu"),
            layers.Dense(4),
        ]
    )
    assert len(model.layers) == 3

    model = keras.Sequential()
    model.add(layers.Dense(2, activation="relu"))
    model.add(layers.Dense(3, activation="relu"))
    model.add(layers.Dense(4))
    model.pop()
    print(len(model.layers))  # 2
    assert capsys.readouterr().out == "2\n"

    model = keras.Sequential(name="my_sequential")
    model.add(layers.Dense(2, activation="relu", name="layer1"))
    model.add(layers.Dense(3, activation="relu", name="layer2"))
    model.add(layers.Dense(4, name="layer3"))
    assert model.name == "my_sequential"
    assert [layer.name for layer in model.layers] == ["layer1", "layer2", "layer3"]


def test_specifying_the_input_shape_in_advance(capsys):
    layer = layers.Dense(3)
    assert layer.weights == []  # Empty
    x = ops.ones((1, 4))
    y = layer(x)
    assert [w.shape for w in layer.weights] == [(4, 3), (3,)]

    model = keras.Sequential(
        [
            layers.Dense(2, activation="relu"),
            layers.Dense(3, activation="relu"),
            layers.Dense(4),
        ]
    )  # No weights at this stage!
    assert model.weights == []  # as Keras 3: an unbuilt model has no weights yet
    x = ops.ones((1, 4))
    y = model(x)
    print("Number of weights after calling the model:", len(model.weights))  # 6
    model.summary()
    assert "Number of weights after calling the model: 6" in capsys.readouterr().out
    assert y.shape == (1, 4)

    model = keras.Sequential()
    model.add(keras.Input(shape=(4,)))
    model.add(layers.Dense(2, activation="relu"))
    model.summary()
    assert "Total params: 10" in capsys.readouterr().out
    # the Input object is not displayed as part of model.layers, since it isn't a layer
    assert [type(layer).__name__ for layer in model.layers] == ["Dense"]

    model = keras.Sequential()
    model.add(layers.Dense(2, activation="relu", input_shape=(4,)))
    model.summary()
    assert "Total params: 10" in capsys.readouterr().out
    assert model.output_shape == (None, 2)


def test_the_add_and_summary_debugging_workflow(capsys):
    model = keras.Sequential()
    model.add(keras.Input(shape=(250, 250, 3)))  # 250x250 RGB images
    model.add(layers.Conv2D(32, 5, strides=2, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(3))
    model.summary()
    # The answer was: (40, 40, 32), so we can keep downsampling...
    assert "(None, 40, 40, 32)" in capsys.readouterr().out

    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(3))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.Conv2D(32, 3, activation="relu"))
    model.add(layers.MaxPooling2D(2))
    model.summary()
    # Now that we have 4x4 feature maps, time to apply global max pooling.
    assert "(None, 4, 4, 32)" in capsys.readouterr().out
    model.add(layers.GlobalMaxPooling2D())
    model.add(layers.Dense(10))
    assert model.output_shape == (None, 10)


def test_feature_extraction_with_a_sequential_model():
    initial_model = keras.Sequential(
        [
            keras.Input(shape=(250, 250, 3)),
            layers.Conv2D(32, 5, strides=2, activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
        ]
    )
    feature_extractor = keras.Model(
        inputs=initial_model.inputs,
        outputs=[layer.output for layer in initial_model.layers],
    )
    x = ops.ones((1, 250, 250, 3))
    features = feature_extractor(x)
    assert [f.shape for f in features] == [(1, 123, 123, 32), (1, 121, 121, 32), (1, 119, 119, 32)]
    np.testing.assert_allclose(features[-1], initial_model(x), rtol=1e-5)

    initial_model = keras.Sequential(
        [
            keras.Input(shape=(250, 250, 3)),
            layers.Conv2D(32, 5, strides=2, activation="relu"),
            layers.Conv2D(32, 3, activation="relu", name="my_intermediate_layer"),
            layers.Conv2D(32, 3, activation="relu"),
        ]
    )
    feature_extractor = keras.Model(
        inputs=initial_model.inputs,
        outputs=initial_model.get_layer(name="my_intermediate_layer").output,
    )
    x = ops.ones((1, 250, 250, 3))
    features = feature_extractor(x)
    assert features.shape == (1, 121, 121, 32)


@pytest.fixture
def pretrained_weights(tmp_path):
    path = str(tmp_path / "pretrained.weights.h5")
    keras.Sequential([keras.Input(shape=(784,)), *mlp_layers()]).save_weights(path)
    return path


def mlp_layers():
    return [
        layers.Dense(32, activation="relu"),
        layers.Dense(32, activation="relu"),
        layers.Dense(32, activation="relu"),
        layers.Dense(10),
    ]


def test_transfer_learning_freezes_all_layers_but_the_last(pretrained_weights):
    model = keras.Sequential([keras.Input(shape=(784,)), *mlp_layers()])
    model.load_weights(pretrained_weights)
    # Freeze all layers except the last one.
    for layer in model.layers[:-1]:
        layer.trainable = False
    model.compile(optimizer="adam", loss="mse")
    before = [w.numpy().copy() for w in model.weights]
    model.fit(np.random.random((32, 784)), np.random.random((32, 10)), verbose=0)
    changed = [not np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights)]
    assert changed == [False] * 6 + [True] * 2  # only the weights of the last layer


def test_transfer_learning_stacks_a_frozen_base_and_a_new_classifier():
    base_model = keras.applications.MobileNetV2(
        weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3)
    )
    base_model.trainable = False
    model = keras.Sequential([base_model, layers.Dense(1000)])
    model.compile(optimizer="adam", loss="mse")
    before = [w.numpy().copy() for w in base_model.weights]
    model.fit(np.random.random((8, 32, 32, 3)), np.random.random((8, 1000)), verbose=0)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, base_model.weights))
    assert len(model.trainable_weights) == 2
