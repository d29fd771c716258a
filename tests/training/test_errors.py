"""Bad input gets a clear error, raised early, and nothing is lost (DESIGN.md, Errors).

Every bad call must raise ValueError or TypeError with a message that names the layer, input or
output and shows what was expected next to what was given. Calls on a trained model are wrapped in
``unchanged(model)``: weights and optimizer state (slots and iterations) must stay bit-identical.
Each model has a BatchNormalization layer, whose moving statistics change in any training forward
pass, so an error raised after the forward pass has started is caught too.
"""

from __future__ import annotations

import contextlib
import re

import numpy as np
import pytest

import fastnn as keras
from fastnn import layers

N = 8


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _state(model):
    opt = model.optimizer
    if opt is None:
        return model.get_weights(), [], None
    return model.get_weights(), opt.get_state(), opt.iterations


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@contextlib.contextmanager
def unchanged(model):
    """Assert that the block leaves weights and optimizer state exactly as they were."""
    weights, opt_state, iterations = _state(model)
    optimizer = model.optimizer
    yield
    new_weights, new_opt_state, new_iterations = _state(model)
    assert model.optimizer is optimizer
    assert new_iterations == iterations
    assert len(new_weights) == len(weights)
    for old, new in zip(weights, new_weights):
        assert _same(old, new)
    assert len(new_opt_state) == len(opt_state)
    for old, new in zip(opt_state, new_opt_state):
        assert _same(old, new)


# ---- models, each trained one step ---------------------------------------------------------------


@pytest.fixture
def regressor():
    inputs = keras.Input(shape=(10,), name="features")
    x = layers.Dense(4, activation="relu", name="hidden")(inputs)
    x = layers.BatchNormalization(name="norm")(x)
    model = keras.Model(inputs, layers.Dense(1, name="price")(x), name="regressor")
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(_rand(N, 10), _rand(N, 1, seed=1))
    return model


@pytest.fixture
def classifier():
    inputs = keras.Input(shape=(10,), name="pixels")
    x = layers.BatchNormalization(name="norm")(layers.Dense(8, name="hidden")(inputs))
    model = keras.Model(inputs, layers.Dense(10, activation="softmax", name="digits")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.train_on_batch(_rand(N, 10), np.arange(N) % 10)
    return model


@pytest.fixture
def two_heads():
    """The seed document's multi-output model, made tiny."""
    inputs = keras.Input(shape=(6,), name="face_image")
    x = layers.BatchNormalization(name="norm")(layers.Dense(4, name="trunk")(inputs))
    age = layers.Dense(1, name="output_age")(x)
    gender = layers.Dense(1, activation="sigmoid", name="output_gender")(x)
    model = keras.Model(inputs=inputs, outputs=[age, gender])
    model.compile(
        optimizer="adam",
        loss={"output_age": "mse", "output_gender": "binary_crossentropy"},
        metrics={"output_age": "mae", "output_gender": "accuracy"},
    )
    model.train_on_batch(_rand(N, 6), {"output_age": _rand(N), "output_gender": np.ones(N)})
    return model


@pytest.fixture
def two_inputs():
    profile = keras.Input(shape=(3,), name="profile")
    behaviour = keras.Input(shape=(2,), name="behaviour")
    x = layers.concatenate([profile, behaviour])
    x = layers.BatchNormalization(name="norm")(layers.Dense(4, name="hidden")(x))
    out = layers.Dense(1, activation="sigmoid", name="purchase_prob")(x)
    model = keras.Model(inputs=[profile, behaviour], outputs=out)
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    model.train_on_batch([_rand(N, 3), _rand(N, 2)], np.ones(N))
    return model


# ---- the graph: shapes that cannot be merged, outputs that are not tensors ---------------------


def test_concatenate_mismatched_shapes_raise_at_call():
    a = keras.Input(shape=(100, 3))
    b = keras.Input(shape=(50, 4))
    merge = layers.Concatenate(name="merge")
    message = re.escape(
        "Concatenate 'merge': inputs must match on every axis but axis -1; "
        "got (None, 100, 3) and (None, 50, 4)"
    )
    with pytest.raises(ValueError, match=message):
        merge([a, b])
    assert not merge.built and not merge._inbound_nodes
    assert merge([a, keras.Input(shape=(100, 4))]).shape == (None, 100, 7)


def test_concatenate_function_names_the_layer():
    with pytest.raises(ValueError, match=r"Concatenate 'joined': .*\(None, 3, 2\) and \(None, 4\)"):
        layers.concatenate([keras.Input(shape=(3, 2)), keras.Input(shape=(4,))], name="joined")


@pytest.mark.parametrize("cls", [layers.Add, layers.Multiply, layers.Subtract, layers.Average])
def test_elementwise_merge_mismatched_shapes(cls):
    a, b = keras.Input(shape=(5, 3)), keras.Input(shape=(5, 4))
    merge = cls(name="merge")
    with pytest.raises(
        ValueError, match=rf"{cls.__name__} 'merge': .*\(None, 5, 3\) and \(None, 5, 4\)"
    ):
        merge([a, b])
    assert merge([a, keras.Input(shape=(5, 3))]).shape == (None, 5, 3)


def test_merge_of_a_single_tensor_or_an_empty_list():
    message = r"Add 'sum': expected a list of at least 1 input; got "
    with pytest.raises(ValueError, match=message + "a single tensor"):
        layers.Add(name="sum")(keras.Input(shape=(3,)))
    with pytest.raises(ValueError, match=message + "an empty list"):
        layers.Add(name="sum")([])
    with pytest.raises(ValueError, match=r"Subtract 'diff': expected exactly 2 inputs; got 1"):
        layers.Subtract(name="diff")([keras.Input(shape=(3,))])


def test_built_layer_called_on_wrong_shape():
    dense = layers.Dense(2, name="hidden")
    dense(keras.Input(shape=(10,)))
    with pytest.raises(
        ValueError, match=r"Dense 'hidden': .*expected \(batch, \.\.\., 10\), got \(None, 11\)"
    ):
        dense(keras.Input(shape=(11,)))


def test_outputs_given_a_layer_never_called():
    """The seed document's mistake: the output layer is created but never called."""
    input_img = keras.Input(shape=(4,), name="image_input")
    input_text = keras.Input(shape=(3,), name="text_input")
    merged = layers.concatenate([input_img, input_text])
    x = layers.Dense(4, activation="relu")(merged)
    output = layers.Dense(1, activation="sigmoid", name="sentiment_output")
    with pytest.raises(ValueError, match=r"outputs= got the layer 'sentiment_output' \(Dense\)"):
        keras.Model(inputs=[input_img, input_text], outputs=output)
    with pytest.raises(ValueError, match=r"Call the layer on a tensor first"):
        keras.Model(inputs=[input_img, input_text], outputs=[x, output])


def test_outputs_given_an_array():
    with pytest.raises(TypeError, match=r"outputs= must be symbolic tensors.*ndarray"):
        keras.Model(inputs=keras.Input(shape=(3,)), outputs=np.zeros(3))


def test_graph_disconnected():
    image = keras.Input(shape=(4,), name="image_input")
    text = keras.Input(shape=(3,), name="text_input")
    out = layers.Dense(1)(layers.concatenate([image, text]))
    message = r"Graph disconnected: .*'text_input'.*\['image_input'\]"
    with pytest.raises(ValueError, match=message):
        keras.Model(inputs=image, outputs=out)


def test_duplicate_layer_names():
    inputs = keras.Input(shape=(3,))
    x = layers.Dense(4, name="dense_block")(inputs)
    out = layers.Dense(1, name="dense_block")(x)
    with pytest.raises(ValueError, match=r'"dense_block" is used by two layers'):
        keras.Model(inputs, out)


# ---- data: counts, keys, shapes, samples --------------------------------------------------------


def test_wrong_number_of_input_arrays(two_inputs):
    with unchanged(two_inputs):
        with pytest.raises(
            ValueError, match=r"expects 2 input arrays \['profile', 'behaviour'\], got 3"
        ):
            two_inputs.train_on_batch([_rand(N, 3), _rand(N, 2), _rand(N, 2)], np.ones(N))
        with pytest.raises(
            ValueError, match=r"expects 2 input arrays \['profile', 'behaviour'\], got 1"
        ):
            two_inputs.fit([_rand(N, 3)], np.ones(N), verbose=0)


def test_wrong_number_of_target_arrays(two_heads):
    message = r"2 outputs \['output_age', 'output_gender'\], got 1"
    with unchanged(two_heads), pytest.raises(ValueError, match=message):
        two_heads.train_on_batch(_rand(N, 6), [_rand(N)])


def test_seed_multi_output_fit_with_wrong_keys(two_heads):
    """The seed document fits with keys 'category' / 'color' that name no output."""
    message = re.escape(
        "y has keys ['category', 'color'] but the model's outputs are "
        "['output_age', 'output_gender']"
    )
    with unchanged(two_heads), pytest.raises(ValueError, match=message):
        two_heads.fit(_rand(N, 6), {"category": _rand(N), "color": np.ones(N)}, verbose=0)


def test_x_dict_with_unknown_keys(two_inputs):
    message = re.escape(
        "x has keys ['behaviour', 'profle'] but the model's inputs are ['profile', 'behaviour']"
    )
    with unchanged(two_inputs), pytest.raises(ValueError, match=message):
        two_inputs.fit({"profle": _rand(N, 3), "behaviour": _rand(N, 2)}, np.ones(N), verbose=0)


def test_inputs_with_different_numbers_of_samples(two_inputs):
    with unchanged(two_inputs):
        with pytest.raises(ValueError, match=r"x\['profile'\]: 8, x\['behaviour'\]: 7"):
            two_inputs.train_on_batch([_rand(N, 3), _rand(N - 1, 2)], np.ones(N))
        with pytest.raises(ValueError, match=r"y\['purchase_prob'\]: 5"):
            two_inputs.fit([_rand(N, 3), _rand(N, 2)], np.ones(5), verbose=0)


@pytest.mark.parametrize(
    "method", ["fit", "train_on_batch", "evaluate", "test_on_batch", "predict"]
)
@pytest.mark.parametrize("shape", [(N, 11), (N, 10, 2), (N,), (N, 1, 10)])
def test_wrong_feature_shape_or_rank(regressor, method, shape):
    x = _rand(*shape)
    call = {
        "fit": lambda: regressor.fit(x, _rand(N, 1), verbose=0),
        "train_on_batch": lambda: regressor.train_on_batch(x, _rand(N, 1)),
        "evaluate": lambda: regressor.evaluate(x, _rand(N, 1), verbose=0),
        "test_on_batch": lambda: regressor.test_on_batch(x, _rand(N, 1)),
        "predict": lambda: regressor.predict(x, verbose=0),
    }[method]
    message = re.escape(f"input 'features' expects arrays of shape (None, 10), got shape {shape}")
    with unchanged(regressor), pytest.raises(ValueError, match=message):
        call()


def test_empty_arrays(regressor):
    with (
        unchanged(regressor),
        pytest.raises(ValueError, match=r"'regressor': the data has 0 samples"),
    ):
        regressor.fit(np.zeros((0, 10), np.float32), np.zeros((0, 1), np.float32), verbose=0)


def test_target_of_the_wrong_shape(regressor):
    message = r"y for output 'price': .*y_true.shape=\(8, 3\) and y_pred.shape=\(8, 1\)"
    with unchanged(regressor), pytest.raises(ValueError, match=message):
        regressor.train_on_batch(_rand(N, 10), _rand(N, 3))


# ---- dtypes: numbers are cast, anything else is a TypeError -------------------------------------


@pytest.mark.parametrize(
    "convert",
    [
        lambda a: (a * 10).astype(np.int32),
        lambda a: (a * 10).astype(np.int64),
        lambda a: a.astype(np.float64),
        lambda a: a > 0.5,
        lambda a: a.tolist(),
    ],
    ids=["int32", "int64", "float64", "bool", "list"],
)
def test_numeric_data_is_accepted_and_cast(regressor, convert):
    x = convert(_rand(N, 10))
    y = convert(_rand(N, 1, seed=1))
    loss = regressor.train_on_batch(x, y)
    assert np.isfinite(loss)
    history = regressor.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    pred = regressor.predict(x, verbose=0)
    assert pred.dtype == np.float32 and pred.shape == (N, 1)
    assert regressor(x).dtype == np.float32
    assert all(w.dtype == np.float32 for w in regressor.get_weights())


@pytest.mark.parametrize(
    "x",
    [np.full((N, 10), "a"), np.array([[None] * 10] * N), np.full((N, 10), 1 + 2j)],
    ids=["str", "object", "complex"],
)
def test_non_numeric_inputs_are_type_errors(regressor, x):
    with unchanged(regressor):
        with pytest.raises(TypeError, match=r"input 'features': expected numeric data"):
            regressor.train_on_batch(x, _rand(N, 1))
        with pytest.raises(TypeError, match=r"input 'features': expected numeric data"):
            regressor.predict(x, verbose=0)


def test_non_numeric_targets_are_type_errors(regressor):
    with unchanged(regressor), pytest.raises(TypeError, match=r"y for output 'price': .*numeric"):
        regressor.fit(_rand(N, 10), np.full((N, 1), "cheap"), verbose=0)


def test_layer_called_on_strings():
    with pytest.raises(TypeError, match=r"Dense 'hidden': expected numeric input"):
        layers.Dense(2, name="hidden")(np.full((2, 3), "a"))


# ---- non-finite values ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x(regressor, bad):
    x = _rand(N, 10)
    x[3, 4] = bad
    with unchanged(regressor):
        with pytest.raises(ValueError, match=r"input 'features' contains NaN or infinite"):
            regressor.fit(x, _rand(N, 1), verbose=0)
        with pytest.raises(ValueError, match=r"input 'features' contains NaN or infinite"):
            regressor.train_on_batch(x.astype(np.float64), _rand(N, 1))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_y(two_heads, bad):
    gender = np.ones(N)
    gender[0] = bad
    message = r"y for output 'output_gender' contains NaN"
    with unchanged(two_heads), pytest.raises(ValueError, match=message):
        two_heads.fit(_rand(N, 6), [_rand(N), gender], verbose=0)


def test_non_finite_validation_data(regressor):
    x_val = _rand(N, 10)
    x_val[0, 0] = np.nan
    with unchanged(regressor), pytest.raises(ValueError, match=r"input 'features' contains NaN"):
        regressor.fit(_rand(N, 10), _rand(N, 1), validation_data=(x_val, _rand(N, 1)), verbose=0)


# ---- sparse labels -------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [10, -1, 255])
def test_sparse_labels_out_of_range(classifier, label):
    y = np.arange(N) % 10
    y[5] = label
    message = r"y for output 'digits': .*labels must be integers in \[0, 10\)"
    with unchanged(classifier):
        with pytest.raises(ValueError, match=message):
            classifier.fit(_rand(N, 10), y, batch_size=4, verbose=0)
        with pytest.raises(ValueError, match=message):
            classifier.train_on_batch(_rand(N, 10), y)
        with pytest.raises(ValueError, match=message):
            classifier.evaluate(_rand(N, 10), y, verbose=0)
    assert np.isfinite(classifier.train_on_batch(_rand(N, 10), np.arange(N) % 10)).all()


# ---- compile -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": "adamw2", "loss": "mse"}, r"'adamw2'.*Valid names: \[.*'adam'"),
        ({"optimizer": "adam", "loss": "mean_sqared_error"}, r"'mean_sqared_error'.*'mse'"),
        ({"optimizer": "adam", "loss": "mse", "metrics": ["acuracy"]}, r"'acuracy'.*'accuracy'"),
    ],
    ids=["optimizer", "loss", "metric"],
)
def test_unknown_names_in_compile(regressor, kwargs, message):
    with unchanged(regressor), pytest.raises(ValueError, match=message):
        regressor.compile(**kwargs)
    assert np.isfinite(regressor.train_on_batch(_rand(N, 10), _rand(N, 1)))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: layers.Dense(2, activation="relux"), r"'relux'.*\[.*'relu'"),
        (lambda: layers.Activation("swishy"), r"'swishy'.*'sigmoid'"),
        (lambda: layers.Dense(2, kernel_initializer="glorot"), r"'glorot'.*'glorot_uniform'"),
        (lambda: layers.Dense(2, kernel_regularizer="l3"), r"'l3'.*'l2'"),
    ],
    ids=["activation", "activation_layer", "initializer", "regularizer"],
)
def test_unknown_names_in_layers(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("method", ["fit", "evaluate", "train_on_batch", "test_on_batch"])
def test_training_before_compile(method):
    inputs = keras.Input(shape=(10,), name="features")
    model = keras.Model(inputs, layers.Dense(1, name="price")(inputs), name="uncompiled")
    x, y = _rand(N, 10), _rand(N, 1)
    with unchanged(model), pytest.raises(ValueError, match=r"compile\(\).*'uncompiled'") as info:
        getattr(model, method)(x, y, **({"verbose": 0} if method in ("fit", "evaluate") else {}))
    assert isinstance(info.value, RuntimeError)  # what tf.keras 2 raised; Keras 3 raises ValueError
    assert model.predict(x, verbose=0).shape == (N, 1)  # predict needs no compile


def test_loss_dict_missing_an_output(two_heads):
    """An output the loss dict leaves out gets no loss (Keras 3 allows it for dict outputs;
    fastnn for list outputs too): no error, and only the named output's loss is reported."""
    two_heads.compile(optimizer="adam", loss={"output_age": "mse"})
    logs = two_heads.train_on_batch(_rand(N, 6), [_rand(N), np.ones(N)], return_dict=True)
    assert sorted(logs) == ["loss"]


def test_loss_dict_with_unknown_output(two_heads):
    message = re.escape("loss has keys ['category', 'output_age'] but the model's outputs are")
    with unchanged(two_heads), pytest.raises(ValueError, match=message):
        two_heads.compile(optimizer="adam", loss={"output_age": "mse", "category": "mse"})


def test_loss_list_of_wrong_length(two_heads):
    message = r"loss is a list of 3 but the model has 2 outputs \['output_age', 'output_gender'\]"
    with unchanged(two_heads), pytest.raises(ValueError, match=message):
        two_heads.compile(optimizer="adam", loss=["mse", "mse", "mse"])


def test_metrics_dict_with_unknown_output(two_heads):
    message = re.escape(
        "metrics has keys ['color'] but the model's outputs are ['output_age', 'output_gender']"
    )
    with unchanged(two_heads), pytest.raises(ValueError, match=message):
        two_heads.compile(optimizer="adam", loss="mse", metrics={"color": "accuracy"})


# ---- constructor and fit arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: layers.Dense(units=0), r"`units`.*Received: units=0"),
        (lambda: layers.Dense(units=-1), r"`units`.*Received: units=-1"),
        (lambda: layers.Dense(units=2.5), r"`units`.*Received: units=2.5"),
        (lambda: layers.Dropout(rate=1.5), r"`rate`.*between 0 and 1.*rate=1.5"),
        (lambda: layers.Dropout(rate=-0.1), r"`rate`.*rate=-0.1"),
        (lambda: layers.Conv2D(4, 3, padding="full"), r"`padding`.*'valid', 'same'.*'full'"),
        (lambda: layers.Conv2D(4, kernel_size=0), r"`kernel_size`.*kernel_size=0"),
        (
            lambda: layers.Conv2D(4, kernel_size=(3, 3, 3)),
            r"`kernel_size`.*2 integers.*\(3, 3, 3\)",
        ),
        (lambda: layers.MaxPooling2D(pool_size=0), r"`pool_size`.*pool_size=0"),
        (lambda: layers.AveragePooling2D(pool_size=(2, -1)), r"`pool_size`.*\(2, -1\)"),
        (lambda: layers.Concatenate(axis=0, name="joined"), r"Concatenate 'joined': .*axis=0"),
    ],
    ids=[
        "units0",
        "units-1",
        "units-float",
        "rate1.5",
        "rate-neg",
        "padding",
        "kernel0",
        "kernel3d",
        "pool0",
        "pool-neg",
        "concat-axis0",
    ],
)
def test_bad_constructor_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_concatenate_axis_out_of_range_at_call():
    with pytest.raises(
        ValueError, match=r"Concatenate 'joined': axis 3 is invalid for inputs of rank 2"
    ):
        layers.Concatenate(axis=3, name="joined")(
            [keras.Input(shape=(2,)), keras.Input(shape=(3,))]
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"validation_split": 1.5},
            r"`validation_split` must be in \[0, 1\); got validation_split=1.5",
        ),
        ({"validation_split": -0.2}, r"validation_split=-0.2"),
        ({"validation_split": "0.2"}, r"validation_split=0.2"),
        ({"validation_split": 0.95}, r"validation_split=0.95 leaves no training or validation"),
        ({"batch_size": 0}, r"`batch_size` must be an integer >= 1; got batch_size=0"),
        ({"batch_size": -4}, r"batch_size=-4"),
        ({"batch_size": 2.5}, r"batch_size=2.5"),
        ({"epochs": -1}, r"`epochs` must be an integer >= 0; got epochs=-1"),
        ({"verbose": 3}, r"verbose=3"),
    ],
)
def test_bad_fit_arguments(regressor, kwargs, message):
    with unchanged(regressor), pytest.raises(ValueError, match=message):
        regressor.fit(_rand(N, 10), _rand(N, 1), **{"verbose": 0, **kwargs})


def test_bad_batch_size_in_predict_and_evaluate(regressor):
    with unchanged(regressor):
        with pytest.raises(ValueError, match=r"batch_size=0"):
            regressor.predict(_rand(N, 10), batch_size=0, verbose=0)
        with pytest.raises(ValueError, match=r"batch_size=0"):
            regressor.evaluate(_rand(N, 10), _rand(N, 1), batch_size=0, verbose=0)


# ---- weights, Sequential, get_layer --------------------------------------------------------------


def test_set_weights_wrong_count_assigns_nothing(regressor):
    shifted = [w + 1 for w in regressor.get_weights()]
    with (
        unchanged(regressor),
        pytest.raises(
            ValueError, match=rf"expects {len(shifted)} weight arrays, got {len(shifted) - 1}"
        ),
    ):
        regressor.set_weights(shifted[:-1])


def test_set_weights_wrong_shape_assigns_nothing(regressor):
    shifted = [w + 1 for w in regressor.get_weights()]
    shifted[-1] = np.zeros((2,), np.float32)
    message = r"weight 'price/bias' has shape \(1,\), got an array of shape \(2,\)"
    with unchanged(regressor), pytest.raises(ValueError, match=message):
        regressor.set_weights(shifted)


def test_layer_set_weights_wrong_shape_assigns_nothing(regressor):
    hidden = regressor.get_layer("hidden")
    with (
        unchanged(regressor),
        pytest.raises(
            ValueError, match=r"Layer 'hidden' weight 'bias' has shape \(4,\), got .*\(5,\)"
        ),
    ):
        hidden.set_weights([np.ones((10, 4)), np.ones(5)])
    with (
        unchanged(regressor),
        pytest.raises(ValueError, match=r"Layer 'hidden' expects 2 weight arrays"),
    ):
        hidden.set_weights([np.ones((10, 4))])


def test_sequential_add_of_a_non_layer():
    model = keras.Sequential([keras.Input(shape=(4,)), layers.Dense(2)])
    with pytest.raises(
        TypeError, match=r"Sequential.add\(\) expects a Layer or fastnn.Input; got str"
    ):
        model.add("dense")
    with pytest.raises(TypeError, match=r"got function"):
        model.add(lambda x: x)
    assert len(model.layers) == 1


def test_sequential_add_of_an_incompatible_layer_changes_nothing():
    dense = layers.Dense(3, name="hidden")
    model = keras.Sequential([keras.Input(shape=(4,)), dense], name="stack")
    model.compile(optimizer="adam", loss="mse")
    model.train_on_batch(_rand(N, 4), _rand(N, 3))
    with unchanged(model), pytest.raises(ValueError, match=r"Conv2D 'conv': expects a 4-D input"):
        model.add(layers.Conv2D(2, 3, name="conv"))
    assert [layer.name for layer in model.layers] == ["hidden"]
    assert dense.output.shape == (None, 3)  # no stray call recorded on the layer
    assert np.isfinite(model.train_on_batch(_rand(N, 4), _rand(N, 3)))
    model.add(layers.Dense(1, name="head"))
    assert model.predict(_rand(N, 4), verbose=0).shape == (N, 1)


def test_sequential_pop_on_empty():
    with pytest.raises(ValueError, match=r"Sequential 'empty' has no layers to pop"):
        keras.Sequential(name="empty").pop()


def _summary_rows(model) -> list[list[str]]:
    lines = []
    model.summary(print_fn=lines.append)
    return [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.startswith("│")]


def test_summary_of_an_unbuilt_sequential_shows_unknown_shapes_as_keras():
    """Keras 3 prints the layers with shape '?' and '0 (unbuilt)' (0 for the layers it builds
    when made, which have no weights); nothing is built by printing."""
    model = keras.Sequential(
        [layers.Conv2D(4, 3), layers.MaxPooling2D(2), layers.Flatten(), layers.Dropout(0.1)],
        name="lazy",
    )
    model.add(layers.Dense(1, name="head"))
    model.compile(optimizer="adam", loss="mse")
    lines = []
    model.summary(print_fn=lines.append)
    assert lines[0] == 'Model: "lazy"'
    assert _summary_rows(model) == [
        [f"{layer.name} ({type(layer).__name__})", "?", params]
        for layer, params in zip(
            model.layers, ["0 (unbuilt)", "0", "0 (unbuilt)", "0", "0 (unbuilt)"]
        )
    ]
    assert lines[-3:] == [
        f" {kind} params: 0 (0.00 B)" for kind in ("Total", "Trainable", "Non-trainable")
    ]
    assert not model.built and not model.layers[0].built
    empty = keras.Sequential(name="empty")
    assert _summary_rows(empty) == []


def test_get_layer_unknown_name_lists_names(regressor):
    message = re.escape(
        "No such layer: 'hiden'. Existing layers are: ['features', 'hidden', 'norm', 'price']"
    )
    with pytest.raises(ValueError, match=message):
        regressor.get_layer("hiden")
    with pytest.raises(ValueError, match=r"has 4 layers; index 7 is out of range"):
        regressor.get_layer(index=7)


def _diverging_model():
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse")
    return model


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_a_non_finite_loss_stops_fit_with_the_epoch_and_step():
    model = _diverging_model()
    x, y = np.full((64, 2), 1e3, "float32"), np.full((64, 1), -1e3, "float32")
    with pytest.raises(FloatingPointError, match=r"fit\(\): epoch 1, step \d+: .*loss became"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights())


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
def test_terminate_on_nan_stops_training_instead_of_raising(capsys):
    model = _diverging_model()
    x, y = np.full((64, 2), 1e3, "float32"), np.full((64, 1), -1e3, "float32")
    model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[keras.callbacks.TerminateOnNaN()])
    assert "Invalid loss, terminating training" in capsys.readouterr().out
    assert model.stop_training
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_inputs_of_different_lengths_and_empty_inputs_are_named_in_every_call():
    a, b = keras.Input((2,), name="a"), keras.Input((2,), name="b")
    model = keras.Model([a, b], layers.add([a, b]))
    x = [np.ones((3, 2)), np.ones((4, 2))]
    for call in (model.predict, model.predict_on_batch, model):
        with pytest.raises(ValueError, match=r"x\['a'\]: 3, x\['b'\]: 4"):
            call(x)
    with pytest.raises(ValueError, match="predict\\(\\): .*0 samples"):
        model.predict([np.ones((0, 2)), np.ones((0, 2))])
