"""Subclassed models (``__init__`` + ``call``, issue 21): fit, evaluate, predict against Keras 3
(torch), summary once built, weights and whole-model files, symbolic calls and several inputs.

Each model class is written once against a module ``K`` (fastnn or keras) and built in both.
"""

import numpy as np
import pytest
from gradcheck import check_model_gradients, randomize_weights
from keras_twin import (
    assert_same_history,
    assert_same_weights,
    copy_weights,
    fit_both,
    keras_module,
    to_numpy,
)

import fastnn
from fastnn import layers as L
from fastnn import ops


def mlp(K):
    class MLP(K.Model):
        def __init__(self, hidden=16, classes=3, **kwargs):
            super().__init__(**kwargs)
            self.hidden, self.classes = hidden, classes
            self.dense_1 = K.layers.Dense(hidden, activation="relu", name="dense_1")
            self.dropout = K.layers.Dropout(0.0, name="dropout")
            self.dense_2 = K.layers.Dense(classes, name="dense_2")

        def call(self, inputs, training=False):
            x = self.dropout(self.dense_1(inputs), training=training)
            return K.ops.softmax(self.dense_2(x))

        def get_config(self):
            return {**super().get_config(), "hidden": self.hidden, "classes": self.classes}

    return MLP


def small_cnn(K):
    class SmallCNN(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.convs = [
                K.layers.Conv2D(4, 3, activation="relu", name="c0"),
                K.layers.Conv2D(6, 3, padding="same", name="c1"),
            ]
            self.pool = K.layers.MaxPooling2D(2, name="pool")
            self.head = K.layers.Dense(2, name="head")

        def call(self, x):
            for conv in self.convs:
                x = conv(x)
            x = self.pool(K.ops.relu(x))
            return self.head(K.ops.mean(x, axis=(1, 2)))

    return SmallCNN


def two_inputs(K):
    class TwoInputs(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.embed = K.layers.Embedding(10, 4, name="embed")
            self.dense = K.layers.Dense(3, name="dense")

        def call(self, inputs):
            ids, features = inputs
            pooled = K.ops.mean(self.embed(ids), axis=1)
            return self.dense(K.ops.concatenate([pooled, features], axis=-1))

    return TwoInputs


def _data(seed=0, n=32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 6)).astype("float32"), rng.integers(0, 3, n)


# ---------------------------------------------------------------- Keras parity
def test_mlp_fit_evaluate_predict_match_keras():
    keras = keras_module()
    ours, theirs = mlp(fastnn)(name="mlp"), mlp(keras)(name="mlp")
    x, y = _data()
    theirs(x[:2]), ours(x[:2])
    copy_weights(theirs, ours)
    histories = fit_both(
        ours,
        theirs,
        x,
        y,
        optimizer="sgd",
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    assert_same_history(*histories)
    assert_same_weights(ours, theirs)
    np.testing.assert_allclose(
        ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=1e-4
    )
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6
    )
    assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    assert [layer.name for layer in ours.layers] == [layer.name for layer in theirs.layers]


def test_small_cnn_sgd_steps_match_keras():
    keras = keras_module()
    ours, theirs = small_cnn(fastnn)(), small_cnn(keras)()
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((16, 8, 8, 1)).astype("float32"), rng.standard_normal((16, 2))
    theirs(x[:1]), ours(x[:1])
    copy_weights(theirs, ours)
    histories = fit_both(ours, theirs, x, y, optimizer="sgd", loss="mse", batch_size=4)
    assert_same_history(*histories)
    assert_same_weights(ours, theirs)


def test_gradients_of_a_subclassed_model_in_float64():
    class Net(fastnn.Model):
        def __init__(self):
            super().__init__(dtype="float64")
            self.a = L.Dense(4, activation="tanh", dtype="float64")
            self.b = L.Dense(2, dtype="float64")

        def call(self, x):
            h = self.a(x)
            return self.b(h) * ops.sigmoid(h[:, :2])

    model = Net()
    model.build((None, 3))
    randomize_weights(model, seed=0)
    check_model_gradients(model, np.random.default_rng(0).standard_normal((5, 3)))


# ---------------------------------------------------------------- building, layers, summary
def test_built_by_fit_then_summary_lists_its_layers(capsys):
    model = mlp(fastnn)(name="classifier")
    with pytest.raises(ValueError, match="not been built"):
        model.summary()
    x, y = _data()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.summary()
    text = capsys.readouterr().out
    assert 'Model: "classifier"' in text and "dense_1 (Dense)" in text
    assert "Total params: " in text and f"{6 * 16 + 16 + 16 * 3 + 3}" in text
    assert model.built and [layer.name for layer in model.layers] == [
        "dense_1",
        "dropout",
        "dense_2",
    ]


def test_build_makes_the_weights():
    model = mlp(fastnn)()
    model.build((None, 6))
    assert [w.shape for w in model.weights] == [(6, 16), (16,), (16, 3), (3,)]
    assert model.predict(np.ones((2, 6)), verbose=0).shape == (2, 3)


def test_called_on_a_symbolic_input_inside_a_functional_model():
    inner = mlp(fastnn)()
    inputs = fastnn.Input((6,))
    outer = fastnn.Model(inputs, L.Dense(1)(inner(inputs)))
    assert outer.output_shape == (None, 1)
    x, y = _data()
    outer.compile("sgd", "mse")
    before = [w.numpy() for w in inner.weights]
    outer.fit(x, y.astype("float32")[:, None], verbose=0)
    assert any(not np.allclose(a, w.value) for a, w in zip(before, inner.weights))


def test_two_inputs_with_token_ids_build_from_the_data():
    model = two_inputs(fastnn)()
    rng = np.random.default_rng(2)
    ids, feats = rng.integers(0, 10, (12, 5)), rng.standard_normal((12, 2))
    model.compile("sgd", "mse")
    model.fit([ids, feats], rng.standard_normal((12, 3)), epochs=2, verbose=0)
    assert model.inputs[0].dtype.kind == "i" and model.predict([ids, feats], verbose=0).shape == (
        12,
        3,
    )


def test_dict_inputs_reach_call_as_a_dict_in_fit_and_predict():
    """call() indexing its dict input by key (the endpoint-layer example): fit and predict
    hand it the dict, as a direct call does, and train as Keras."""
    keras = keras_module()

    def keyed(K):
        class Keyed(K.Model):
            def __init__(self):
                super().__init__()
                self.dense = K.layers.Dense(1, name="dense")

            def call(self, inputs):
                return self.dense(inputs["a"]) + inputs["b"]

        return Keyed()

    rng = np.random.default_rng(3)
    x = {"a": rng.standard_normal((16, 3)), "b": rng.standard_normal((16, 1))}
    x = {key: value.astype("float32") for key, value in x.items()}
    y = rng.standard_normal((16, 1)).astype("float32")
    ours, theirs = keyed(fastnn), keyed(keras)
    ours(x), theirs(x)
    copy_weights(theirs, ours)
    assert_same_history(*fit_both(ours, theirs, x, y, optimizer="sgd", loss="mse"))
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6
    )


def test_eager_calls_and_gradient_tape():
    model = mlp(fastnn)()
    x, y = _data()
    assert model(x).shape == (32, 3)
    with fastnn.GradientTape() as tape:
        loss = ops.mean(ops.sum(ops.square(model(x, training=True)), axis=-1))
    grads = tape.gradient(loss, model.trainable_weights)
    assert [g.shape for g in grads] == [w.shape for w in model.trainable_weights]


# ---------------------------------------------------------------- files
def test_save_weights_and_load_weights(tmp_path):
    x, _ = _data()
    model, twin = mlp(fastnn)(), mlp(fastnn)()
    model(x), twin(x)
    randomize_weights(model, seed=3)
    model.save_weights(tmp_path / "m.weights.npz")
    twin.load_weights(tmp_path / "m.weights.npz")
    np.testing.assert_array_equal(twin.predict(x, verbose=0), model.predict(x, verbose=0))


def test_save_and_load_model_when_registered(tmp_path):
    MLP = fastnn.saving.register_keras_serializable(package="subclassed_tests")(mlp(fastnn))
    model = MLP(hidden=8, classes=2, name="saved")
    x, y = _data()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y % 2, epochs=2, verbose=0)
    model.save(tmp_path / "m.fastnn")
    loaded = fastnn.models.load_model(tmp_path / "m.fastnn")
    assert type(loaded) is MLP and loaded.hidden == 8 and loaded.name == "saved"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    loaded.fit(x, y % 2, epochs=1, verbose=0)


def test_load_model_refuses_an_unregistered_class(tmp_path):
    model = mlp(fastnn)()
    model(np.ones((1, 6)))
    model.save(tmp_path / "m.fastnn")
    with pytest.raises(Exception, match="MLP"):
        fastnn.models.load_model(tmp_path / "m.fastnn")


def test_a_model_without_call_or_graph_says_what_to_write():
    with pytest.raises(TypeError, match="or subclass Model and write call"):
        fastnn.Model()


# ---------------------------------------------------------------- Keras's saving names
def test_custom_objects_scope_and_global_dict_load_unregistered_classes(tmp_path):
    MLP = mlp(fastnn)
    model = MLP(name="plain")
    model(np.ones((2, 6), "float32"))
    model.save(tmp_path / "m.fastnn")
    with fastnn.saving.custom_object_scope({"MLP": MLP}):
        assert type(fastnn.models.load_model(tmp_path / "m.fastnn")) is MLP
    with pytest.raises(Exception, match="MLP"):
        fastnn.models.load_model(tmp_path / "m.fastnn")
    fastnn.saving.get_custom_objects()["MLP"] = MLP
    try:
        assert type(fastnn.models.load_model(tmp_path / "m.fastnn")) is MLP
    finally:
        del fastnn.saving.get_custom_objects()["MLP"]
    assert fastnn.utils.custom_object_scope is fastnn.saving.custom_object_scope


@fastnn.saving.register_keras_serializable(package="subclassed_tests")
def scaled_mse(y_true, y_pred):
    return 2.0 * ops.mean(ops.square(y_true - y_pred), axis=-1)


def test_serialize_and_deserialize_keras_objects():
    from fastnn.saving import deserialize_keras_object, serialize_keras_object

    Dense = fastnn.saving.register_keras_serializable("subclassed_tests")(
        type("SerializedDense", (L.Dense,), {})
    )
    layer = Dense(3, activation="relu", name="sd")
    data = serialize_keras_object(layer)
    assert data["registered_name"] == "subclassed_tests>SerializedDense"
    twin = deserialize_keras_object(data)
    assert type(twin) is Dense and twin.get_config() == layer.get_config()
    assert serialize_keras_object(scaled_mse)["class_name"] == "function"
    assert deserialize_keras_object(serialize_keras_object(scaled_mse)) is scaled_mse
    for obj in (
        fastnn.optimizers.Adam(0.01),
        fastnn.metrics.Mean(name="m"),
        fastnn.regularizers.L2(0.1),
        fastnn.losses.MeanSquaredError(),
    ):
        back = deserialize_keras_object(serialize_keras_object(obj))
        assert type(back) is type(obj) and back.get_config() == obj.get_config()
    nested = {"a": [1, "x", None], "w": np.arange(3.0)}
    back = deserialize_keras_object(serialize_keras_object(nested))
    assert back["a"] == [1, "x", None] and np.array_equal(back["w"], np.arange(3.0))
    with pytest.raises(ValueError, match="Unknown class 'os.system'"):
        deserialize_keras_object({"class_name": "os.system", "config": {}, "module": "os"})


def test_serialized_form_has_keras_s_keys():
    keras = keras_module()
    ours = fastnn.saving.serialize_keras_object(fastnn.layers.Dense(2, name="d"))
    theirs = keras.saving.serialize_keras_object(keras.layers.Dense(2, name="d"))
    assert {"module", "class_name", "config", "registered_name"} <= set(ours)
    assert ours["class_name"] == theirs["class_name"] and ours["config"]["units"] == 2


def nested_model(K):
    class Block(K.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = K.layers.Dense(3)
            self.blocks = [K.layers.Dense(4), K.layers.Dense(5), K.layers.Dropout(0.1)]
            self.by_key = {"z": K.layers.Dense(2), "a": K.layers.Dense(2)}

        def build(self, input_shape):
            self.gain = self.add_weight(shape=(1,), name="gain")

        def call(self, x):
            y = self.first(x)
            for layer in self.blocks:
                y = layer(y)
            return self.by_key["a"](self.by_key["z"](y)) * self.gain

    class Outer(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.block = Block()
            self._head = K.layers.Dense(2)

        def call(self, x):
            return self._head(self.block(x))

    return Outer


def test_weights_h5_files_have_keras_s_layout_both_ways(tmp_path):
    keras = keras_module()
    ours, theirs = nested_model(fastnn)(), nested_model(keras)()
    x = np.random.default_rng(4).standard_normal((3, 6)).astype("float32")
    ours(x), theirs(x)
    theirs.save_weights(tmp_path / "keras.weights.h5")
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    randomize_weights(ours, seed=5)
    ours.save_weights(tmp_path / "ours.weights.h5")
    theirs.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
