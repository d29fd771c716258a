"""The seed document's programs run with only their imports changed (small synthetic data)."""

import numpy as np
import pytest

import fastnn as keras
from fastnn import layers
from fastnn.layers import Concatenate
from fastnn.models import Model

RNG = np.random.default_rng(0)


def cnn_layers():
    return [
        keras.layers.Conv2D(32, kernel_size=3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, kernel_size=3, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(100, activation="relu"),
        keras.layers.Dropout(0.4),
        keras.layers.Dense(10, activation="softmax"),
    ]


def test_sequential_cnn_with_input_shape_summarizes_and_trains(capsys):
    first, *rest = cnn_layers()
    first = keras.layers.Conv2D(
        32, kernel_size=3, activation="relu", padding="same", input_shape=(28, 28, 1)
    )
    model = keras.Sequential([first, *rest])
    model.summary()
    out = capsys.readouterr().out
    assert "Total params: 333,526" in out and "conv2d" in out and "Param #" in out
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = RNG.random((40, 28, 28, 1)), RNG.integers(0, 10, 40)
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert model.predict(x[:3], verbose=0).shape == (3, 10)


def test_sequential_add_builds_the_same_model():
    model = keras.Sequential()
    model.add(keras.Input(shape=(28, 28, 1)))
    for layer in cnn_layers():
        model.add(layer)
    assert model.count_params() == 333_526
    assert model.output_shape == (None, 10)


def test_functional_cnn_trains_with_a_progress_line(capsys):
    inputs = keras.Input(shape=(28, 28, 1))
    x = inputs
    for layer in cnn_layers():
        x = layer(x)
    model = keras.Model(inputs=inputs, outputs=x)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x_train, y_train = RNG.random((40, 28, 28, 1)), RNG.integers(0, 10, 40)
    model.fit(x_train, y_train, epochs=2, batch_size=32, validation_split=0.2, verbose=2)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out
    assert "val_accuracy:" in out and "loss:" in out


def multi_input_model():
    input_1 = keras.Input(shape=(10,), name="user_info")
    x1 = layers.Dense(32, activation="relu")(input_1)
    input_2 = keras.Input(shape=(5,), name="user_behavior")
    x2 = layers.Dense(16, activation="relu")(input_2)
    merged = Concatenate()([x1, x2])
    x = layers.Dense(64, activation="relu")(merged)
    x = layers.Dense(32, activation="relu")(x)
    output = layers.Dense(1, activation="sigmoid", name="purchase_prob")(x)
    return Model(inputs=[input_1, input_2], outputs=output), output


@pytest.mark.parametrize("as_dict", [False, True])
def test_multi_input_model_fits_from_a_list_or_a_dict(as_dict):
    model, _ = multi_input_model()
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    a, b, target = RNG.random((64, 10)), RNG.random((64, 5)), RNG.integers(0, 2, 64)
    x = {"user_info": a, "user_behavior": b} if as_dict else [a, b]
    history = model.fit(x, target, epochs=10, verbose=0)
    assert len(history.history["loss"]) == 10
    assert model.predict([a, b], verbose=0).shape == (64, 1)


def multi_output_model():
    input_img = keras.Input(shape=(28, 28, 1), name="face_image")
    x = layers.Conv2D(32, kernel_size=3, activation="relu")(input_img)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, kernel_size=3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    output_age = layers.Dense(1, name="output_age")(x)
    output_gender = layers.Dense(1, activation="sigmoid", name="output_gender")(x)
    model = keras.Model(inputs=input_img, outputs=[output_age, output_gender])
    model.compile(
        optimizer="adam",
        loss={"output_age": "mse", "output_gender": "binary_crossentropy"},
        metrics={"output_age": "mae", "output_gender": "accuracy"},
    )
    return model


def test_multi_output_model_trains_from_a_dict_and_rejects_the_wrong_keys():
    model = multi_output_model()
    image_data = RNG.random((40, 28, 28, 1))
    with pytest.raises(ValueError, match=r"y has keys \['category', 'color'\] but the model's"):
        model.fit(image_data, {"category": np.zeros(40), "color": np.zeros(40)}, epochs=10)
    y_train = {"output_age": RNG.random(40) * 60, "output_gender": RNG.integers(0, 2, 40)}
    history = model.fit(
        image_data, y_train, epochs=2, batch_size=32, validation_split=0.2, verbose=0
    )
    train_keys = {
        "loss",
        "output_age_loss",
        "output_age_mae",
        "output_gender_accuracy",
        "output_gender_loss",
    }
    assert set(history.history) == train_keys | {f"val_{k}" for k in train_keys}


def test_multi_input_multi_output_model():
    model, output = multi_input_model()
    gender_output = layers.Dense(1, activation="sigmoid", name="ad_pref")(
        model.get_layer("purchase_prob").input
    )
    both = keras.Model(inputs=model.inputs, outputs=[output, gender_output])
    both.compile(optimizer="adam", loss="binary_crossentropy")
    a, b = RNG.random((16, 10)), RNG.random((16, 5))
    both.fit([a, b], [RNG.integers(0, 2, 16), RNG.integers(0, 2, 16)], epochs=1, verbose=0)
    assert [p.shape for p in both.predict([a, b], verbose=0)] == [(16, 1), (16, 1)]


def test_image_and_text_model_trains():
    input_img = keras.Input(shape=(64, 64, 3), name="image_input")
    x1 = layers.Conv2D(32, kernel_size=3, activation="relu")(input_img)
    x1 = layers.MaxPooling2D(2)(x1)
    x1 = layers.Conv2D(64, kernel_size=3, activation="relu")(x1)
    x1 = layers.MaxPooling2D(2)(x1)
    x1 = layers.Flatten()(x1)
    input_text = keras.Input(shape=(100,), name="text_input")
    x2 = layers.Embedding(input_dim=5000, output_dim=128)(input_text)
    x2 = layers.LSTM(64)(x2)
    merged = layers.concatenate([x1, x2])
    x = layers.Dense(64, activation="relu")(merged)
    x = layers.Dropout(0.5)(x)
    # The seed document forgets to call this layer on x; that must be a clear error ...
    uncalled = layers.Dense(1, activation="sigmoid", name="sentiment_output")
    with pytest.raises(ValueError, match="sentiment_output.*Call the layer on a tensor"):
        keras.Model(inputs=[input_img, input_text], outputs=uncalled)
    # ... and with the call added, the program trains on float or int token ids.
    output = uncalled(x)
    model = keras.Model(inputs=[input_img, input_text], outputs=output)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    image_data = RNG.random((8, 64, 64, 3))
    labels = RNG.integers(0, 2, (8, 1))
    for text_data in (RNG.integers(0, 5000, (8, 100)), RNG.integers(0, 5000, (8, 100)) * 1.0):
        model.fit([image_data, text_data], labels, epochs=2, batch_size=4, verbose=0)


def create_model(use_profile=True, use_behavior=True):
    """The seed's builder of optional feature groups: one group concatenates a list of one."""
    inputs = []
    features = []
    if use_profile:
        profile_input = layers.Input(shape=(3,))
        profile_features = layers.Dense(32)(profile_input)
        inputs.append(profile_input)
        features.append(profile_features)
    if use_behavior:
        behavior_input = layers.Input(shape=(3,))
        behavior_features = layers.Dense(32)(behavior_input)
        inputs.append(behavior_input)
        features.append(behavior_features)
    combined = Concatenate()(features)
    output = layers.Dense(1, activation="sigmoid")(combined)
    return Model(inputs=inputs, outputs=output)


@pytest.mark.parametrize("use_profile, use_behavior", [(True, True), (True, False), (False, True)])
def test_optional_feature_model_trains_with_any_groups(use_profile, use_behavior):
    model = create_model(use_profile=use_profile, use_behavior=use_behavior)
    groups = use_profile + use_behavior
    assert model.get_layer(index=-2).output.shape == (None, 32 * groups)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    x = [RNG.random((32, 3)) for _ in range(groups)]
    history = model.fit(x, RNG.integers(0, 2, 32), epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert model.predict(x, verbose=0).shape == (32, 1)


@pytest.mark.parametrize(
    "merge", [layers.Concatenate, layers.Add, layers.Multiply, layers.Average, layers.Maximum]
)
def test_a_merge_of_a_list_of_one_passes_it_through(merge):
    """As in Keras 3: the merge layer's own output, of the input's shape and values."""
    inputs = layers.Input(shape=(3,))
    hidden = layers.Dense(4, name="hidden")(inputs)
    merged = merge(name="merged")([hidden])
    assert merged is not hidden and merged.shape == (None, 4)
    model = Model(inputs, layers.Dense(1)(merged))
    x = RNG.random((8, 3), dtype=np.float32)
    inner = Model(inputs, [hidden, merged]).predict(x, verbose=0)
    np.testing.assert_array_equal(inner[1], inner[0])
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_layer("hidden").get_weights()[0].copy()
    model.fit(x, RNG.random((8, 1)), epochs=1, verbose=0)
    assert not np.array_equal(model.get_layer("hidden").get_weights()[0], before)
