"""Keras 3 files both ways (Keras on its torch backend): a model built and saved in Keras loads
in fastnn with the same predictions, a fastnn model saved as ``.keras`` loads in Keras with the
same predictions, and ``.weights.h5`` files cross in both directions. Lambda, layers fastnn does
not have, Keras settings it cannot honour and damaged files are refused with errors naming them.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # keras reads this once, at import

import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import zipfile  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import fastnn  # noqa: E402
from fastnn.saving.keras_format import (  # noqa: E402
    load_keras_model,
    load_keras_weights,
    save_keras_model,
    save_keras_weights,
)

keras = pytest.importorskip("keras")
pytest.importorskip("h5py")

N = 4  # samples per batch


# ---------------------------------------------------------------- models (K is keras or fastnn)


def mlp(K):
    L = K.layers
    return K.Sequential(
        [
            K.Input(shape=(8,)),
            L.Dense(16, activation="relu", kernel_regularizer="l2", name="hidden"),
            L.BatchNormalization(name="bn"),
            L.Dropout(0.3, name="drop"),
            L.Activation("tanh", name="act"),
            L.Dense(3, activation="softmax", name="probs"),
        ],
        name="mlp",
    )


def multi_input(K):
    L = K.layers
    input_1 = K.Input(shape=(10,), name="user_info")
    input_2 = K.Input(shape=(5,), name="user_behavior")
    x1 = L.Dense(32, activation="relu", name="info_dense")(input_1)
    x2 = L.Dense(16, activation="relu", name="behavior_dense")(input_2)
    x = L.Dense(8, activation="relu", name="hidden")(L.Concatenate(name="merged")([x1, x2]))
    output = L.Dense(1, activation="sigmoid", name="purchase_prob")(x)
    return K.Model(inputs=[input_1, input_2], outputs=output, name="purchase")


def multi_output(K):
    L = K.layers
    image = K.Input(shape=(10, 10, 1), name="face_image")
    x = L.Conv2D(4, kernel_size=3, activation="relu", name="conv")(image)
    x = L.Flatten(name="flatten")(L.MaxPooling2D(2, name="pool")(x))
    age = L.Dense(1, name="output_age")(x)
    gender = L.Dense(1, activation="sigmoid", name="output_gender")(x)
    return K.Model(inputs=image, outputs=[age, gender], name="face")


def shared_and_merges(K):
    L = K.layers
    a, b = K.Input(shape=(6,), name="left"), K.Input(shape=(6,), name="right")
    shared = L.Dense(5, activation="tanh", name="shared")
    x, y = shared(a), shared(b)
    merged = [
        L.Add(name="add")([x, y]),
        L.Subtract(name="sub")([x, y]),
        L.Multiply(name="mul")([x, y]),
        L.Average(name="avg")([x, y]),
        L.Maximum(name="max")([x, y]),
    ]
    out = L.Dense(2, name="out")(L.Concatenate(axis=-1, name="cat")(merged))
    return K.Model(inputs=[a, b], outputs=out, name="siamese")


def nested(K):
    L = K.layers
    inner_seq = K.Sequential(
        [K.Input(shape=(6,)), L.Dense(8, activation="relu", name="seq_dense")], name="inner_seq"
    )
    inner_in = K.Input(shape=(8,), name="inner_in")
    inner_fn = K.Model(inner_in, L.Dense(4, name="fn_dense")(inner_in), name="inner_fn")
    x = K.Input(shape=(6,), name="x")
    out = L.Dense(3, activation="softmax", name="head")(inner_fn(inner_seq(x)))
    return K.Model(x, out, name="outer")


def cnn_2d(K):
    L = K.layers
    image = K.Input(shape=(12, 12, 3), name="image")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(image)
    x = L.BatchNormalization(name="bn")(x)
    x = L.MaxPooling2D(2, name="max_pool")(x)
    x = L.Conv2D(6, (3, 3), strides=(1, 1), name="conv2")(x)
    flat = L.Flatten(name="flat")(L.AveragePooling2D(2, name="avg_pool")(x))
    pooled = [L.GlobalAveragePooling2D(name="gap")(x), L.GlobalMaxPooling2D(name="gmp")(x)]
    merged = L.Concatenate(name="cat")([flat, *pooled])
    return K.Model(image, L.Dense(3, activation="softmax", name="probs")(merged), name="cnn2d")


def cnn_1d(K):
    L = K.layers
    seq = K.Input(shape=(16, 3), name="signal")
    x = L.Conv1D(4, 3, padding="causal", activation="relu", name="conv1")(seq)
    x = L.MaxPooling1D(2, name="max_pool")(x)
    x = L.Conv1D(5, 3, padding="same", name="conv2")(x)
    x = L.AveragePooling1D(2, name="avg_pool")(x)
    pooled = [L.GlobalMaxPooling1D(name="gmp")(x), L.GlobalAveragePooling1D(name="gap")(x)]
    out = L.Dense(2, name="out")(L.Concatenate(name="cat")(pooled))
    return K.Model(seq, out, name="cnn1d")


def text(K):
    L = K.layers
    ids = K.Input(shape=(10,), dtype="int32", name="ids")
    x = L.Embedding(30, 8, mask_zero=True, name="embed")(ids)
    x = L.Bidirectional(L.LSTM(6, return_sequences=True), name="bi_lstm")(x)
    x = L.GRU(5, return_sequences=True, name="gru")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return K.Model(ids, L.Dense(2, activation="softmax", name="probs")(x), name="text")


def sequences(K):
    L = K.layers
    steps = K.Input(shape=(6, 4), name="steps")
    x = L.Masking(0.0, name="masking")(steps)
    x = L.SimpleRNN(5, return_sequences=True, name="rnn")(x)
    x = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum", name="bi_gru")(x)
    x = L.TimeDistributed(L.Dense(3), name="per_step")(x)
    x = L.Dense(4, name="squeeze")(L.Flatten(name="flat")(x))
    x = L.LSTM(4, return_sequences=True, name="decoder")(L.RepeatVector(3, name="repeat")(x))
    return K.Model(steps, L.Dense(2, name="out")(L.Reshape((12,), name="reshape")(x)), name="seq")


def encoder_decoder(K):
    L = K.layers
    source, target = K.Input(shape=(5, 3), name="source"), K.Input(shape=(4, 2), name="target")
    _, h, c = L.LSTM(6, return_state=True, name="encoder")(source)
    x = L.LSTM(6, return_sequences=True, name="decoder")(target, initial_state=[h, c])
    return K.Model([source, target], L.Dense(3, name="out")(x), name="seq2seq")


def ids(rng, shape):
    x = rng.integers(1, 30, shape).astype(np.int32)
    x[:, 7:] = 0  # padding: the masks matter
    x[0, 3:] = 0
    return x


def padded_steps(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    x[:, 4:] = 0.0  # masked timesteps
    return x


def normal(*shape):
    return lambda rng: rng.standard_normal((N, *shape)).astype(np.float32)


# name: (builder, inputs)
MODELS = {
    "mlp": (mlp, normal(8)),
    "multi_input": (multi_input, lambda rng: [normal(10)(rng), normal(5)(rng)]),
    "multi_output": (multi_output, normal(10, 10, 1)),
    "shared_and_merges": (shared_and_merges, lambda rng: [normal(6)(rng), normal(6)(rng)]),
    "nested": (nested, normal(6)),
    "cnn_2d": (cnn_2d, normal(12, 12, 3)),
    "cnn_1d": (cnn_1d, normal(16, 3)),
    "text": (text, lambda rng: ids(rng, (N, 10))),
    "sequences": (sequences, lambda rng: padded_steps(rng, (N, 6, 4))),
    "encoder_decoder": (encoder_decoder, lambda rng: [normal(5, 3)(rng), normal(4, 2)(rng)]),
}


# ---------------------------------------------------------------- helpers


def perturbed(model, seed=0):
    """``model`` with every weight moved off its initial value (variances kept positive), so
    zero biases and identity BatchNormalization do not hide a weight loaded in the wrong place."""
    rng = np.random.default_rng(seed)
    weights = []
    for var, value in zip(model.weights, model.get_weights()):
        value = np.asarray(value)
        if "variance" in var.name:
            weights.append(rng.uniform(0.5, 2.0, value.shape).astype(value.dtype))
        else:
            weights.append(value + rng.normal(0, 0.2, value.shape).astype(value.dtype))
    model.set_weights(weights)
    return model


def build(K, name):
    return MODELS[name][0](K)


def inputs_for(name, seed=1):
    return MODELS[name][1](np.random.default_rng(seed))


def as_list(outputs):
    outputs = outputs if isinstance(outputs, list) else [outputs]
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outputs]


def assert_same_predictions(ours, theirs, x):
    got, expected = as_list(ours.predict(x, verbose=0)), as_list(theirs.predict(x, verbose=0))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def rezipped(data: bytes, change) -> bytes:
    """A .keras file's bytes after ``change(entries)`` edits its ``{name: bytes}`` entries."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    change(entries)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, value in entries.items():
            zf.writestr(name, value)
    return out.getvalue()


def rewrite_config(path, change):
    """Rewrite the config.json of a .keras file in place with ``change(config)``."""

    def edit(entries):
        config = json.loads(entries["config.json"])
        change(config)
        entries["config.json"] = json.dumps(config).encode()

    path.write_bytes(rezipped(path.read_bytes(), edit))


def layer_entry(config, name):
    return next(e for e in config["config"]["layers"] if e.get("name", e["config"]["name"]) == name)


def save_model(model, path):
    """Keras's own saving for a Keras model, the functions under test for a fastnn model."""
    if isinstance(model, keras.Model):
        model.save(path)
    else:
        save_keras_model(model, path)


def save_weights(model, path):
    if isinstance(model, keras.Model):
        model.save_weights(path)
    else:
        save_keras_weights(model, path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(K, name)``: the model built in K with perturbed weights, and the .keras and
    .weights.h5 files it was saved to; made once per module and shared by the tests."""
    cache = {}

    def get(K, name):
        if (K, name) not in cache:
            folder = tmp_path_factory.mktemp(f"{K.__name__}_{name}")
            model = perturbed(build(K, name))
            save_model(model, folder / "m.keras")
            save_weights(model, folder / "m.weights.h5")
            cache[K, name] = model, folder / "m.keras", folder / "m.weights.h5"
        return cache[K, name]

    return get


@pytest.fixture(scope="module")
def keras_file(saved):
    """A Keras-saved .keras file (the multi-input model), for the refusal tests."""
    return saved(keras, "multi_input")[1]


# ---------------------------------------------------------------- both directions, every family


@pytest.mark.parametrize("name", list(MODELS))
def test_keras_model_loads_in_fastnn(name, saved):
    theirs, path, _ = saved(keras, name)
    ours = load_keras_model(path)
    assert isinstance(ours, fastnn.Sequential) == isinstance(theirs, keras.Sequential)
    assert ours.count_params() == theirs.count_params()
    assert_same_predictions(ours, theirs, inputs_for(name))


@pytest.mark.parametrize("name", list(MODELS))
def test_fastnn_model_loads_in_keras(name, saved):
    ours, path, _ = saved(fastnn, name)
    theirs = keras.saving.load_model(path)
    assert_same_predictions(ours, theirs, inputs_for(name))
    again = load_keras_model(path)  # and back: the exact same weights
    for a, b in zip(again.get_weights(), ours.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(MODELS))
def test_keras_weights_load_in_fastnn(name, saved):
    theirs, _, weights = saved(keras, name)
    ours = build(fastnn, name)
    load_keras_weights(ours, weights)
    assert_same_predictions(ours, theirs, inputs_for(name))


@pytest.mark.parametrize("name", list(MODELS))
def test_fastnn_weights_load_in_keras(name, saved):
    ours, _, weights = saved(fastnn, name)
    theirs = build(keras, name)
    theirs.load_weights(weights)
    assert_same_predictions(ours, theirs, inputs_for(name))


def test_model_save_and_load_model_use_keras_files(tmp_path):
    ours = perturbed(build(fastnn, "mlp"))
    ours.save(tmp_path / "m.keras")
    ours.save_weights(tmp_path / "m.weights.h5")
    again = fastnn.models.load_model(tmp_path / "m.keras")
    again.load_weights(tmp_path / "m.weights.h5")
    x = inputs_for("mlp")
    np.testing.assert_array_equal(again.predict(x, verbose=0), ours.predict(x, verbose=0))


def test_compile_arguments_cross_both_ways(tmp_path):
    x = inputs_for("mlp")
    y = np.arange(len(x)) % 3
    theirs = build(keras, "mlp")
    theirs.compile(
        optimizer=keras.optimizers.Adam(0.003),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    theirs.save(tmp_path / "k.keras")
    ours = fastnn.models.load_model(tmp_path / "k.keras")
    assert ours.optimizer.get_config()["learning_rate"] == pytest.approx(0.003)
    np.testing.assert_allclose(
        ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=1e-5
    )
    assert not fastnn.models.load_model(tmp_path / "k.keras", compile=False).compiled
    ours.save(tmp_path / "f.keras")
    again = keras.saving.load_model(tmp_path / "f.keras")
    assert type(again.optimizer).__name__ == "Adam"
    np.testing.assert_allclose(
        again.evaluate(x, y, verbose=0), ours.evaluate(x, y, verbose=0), rtol=1e-5
    )


def test_compile_arguments_fastnn_cannot_restore_warn(tmp_path):
    theirs = build(keras, "mlp")
    theirs.compile(optimizer="adafactor", loss="mse")  # an optimizer fastnn does not have
    theirs.save(tmp_path / "k.keras")
    with pytest.warns(UserWarning, match="uncompiled"):
        ours = fastnn.models.load_model(tmp_path / "k.keras")
    assert not ours.compiled


def renamed(structure, old, new):
    """``structure`` with every ``"class_name": old`` replaced by ``new``."""
    if isinstance(structure, list):
        return [renamed(v, old, new) for v in structure]
    if not isinstance(structure, dict):
        return structure
    out = {k: renamed(v, old, new) for k, v in structure.items()}
    if out.get("class_name") == old:
        out["class_name"] = new
    return out


def test_initializer_names_of_earlier_keras_releases_load(saved, tmp_path):
    theirs, path, _ = saved(keras, "encoder_decoder")
    copy = tmp_path / "old_names.keras"
    copy.write_bytes(path.read_bytes())
    rewrite_config(copy, lambda c: c.update(renamed(c, "Orthogonal", "OrthogonalInitializer")))
    with zipfile.ZipFile(copy) as zf:
        assert b'"OrthogonalInitializer"' in zf.read("config.json")
    assert_same_predictions(load_keras_model(copy), theirs, inputs_for("encoder_decoder"))


def test_saved_config_is_keras_format(saved):
    with zipfile.ZipFile(saved(fastnn, "mlp")[1]) as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config, metadata = json.loads(zf.read("config.json")), json.loads(zf.read("metadata.json"))
    assert set(metadata) == {"keras_version", "date_saved"}
    assert (config["module"], config["class_name"]) == ("keras", "Sequential")
    dense = layer_entry(config, "hidden")
    assert (dense["module"], dense["registered_name"]) == ("keras.layers", None)
    assert dense["config"]["dtype"]["class_name"] == "DTypePolicy"
    assert dense["config"]["kernel_regularizer"]["module"] == "keras.regularizers"


# ---------------------------------------------------------------- refusals


def test_lambda_is_refused(tmp_path):
    x = keras.Input(shape=(3,))
    model = keras.Model(x, keras.layers.Lambda(lambda t: t * 2, name="double")(x))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match=r"'double' \(Lambda\).*CVE-2024-3660"):
        load_keras_model(tmp_path / "lambda.keras")
    x = fastnn.Input((3,))
    ours = fastnn.Model(x, fastnn.layers.Lambda(lambda t: t * 2)(x))
    with pytest.raises(ValueError, match="Lambda"):
        save_keras_model(ours, tmp_path / "ours.keras")


def einsum_dense(K):
    """A Keras layer fastnn has no class for."""
    return K.layers.EinsumDense("ab,bc->ac", output_shape=3, name="norm")


def unsupported_top(K):
    x = K.Input(shape=(4,))
    return K.Model(x, einsum_dense(K)(K.layers.Dense(3)(x)))


def unsupported_nested(K):
    inner = K.Sequential([K.Input(shape=(4,)), einsum_dense(K)])
    x = K.Input(shape=(4,))
    return K.Model(x, inner(x))


def unsupported_wrapped(K):
    x = K.Input(shape=(2, 4))
    return K.Model(x, K.layers.TimeDistributed(einsum_dense(K))(x))


@pytest.mark.parametrize("builder", [unsupported_top, unsupported_nested, unsupported_wrapped])
def test_unsupported_layer_is_refused(builder, tmp_path):
    builder(keras).save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match=r"m\.keras.*'norm' \(EinsumDense\)"):
        load_keras_model(tmp_path / "m.keras")


def dense_with(**kwargs):
    def builder(K):
        x = K.Input(shape=(4,))
        return K.Model(x, K.layers.Dense(2, name="dense_x", **kwargs)(x))

    return builder


def explicit_mask(K):
    x, mask = K.Input(shape=(3, 2)), K.Input(shape=(3,), dtype="bool")
    return K.Model([x, mask], K.layers.LSTM(2, name="dense_x")(x, mask=mask))


def keras_op(K):
    x = K.Input(shape=(4,))
    return K.Model(x, K.layers.Dense(2, name="dense_x")(K.ops.exp(x)))


@pytest.mark.parametrize(
    "builder, match",
    [
        (keras_op, r"Keras op 'exp'"),
        (dense_with(activity_regularizer="l2"), "activity_regularizer"),
        (dense_with(dtype="mixed_float16"), "mixed_float16"),
        (explicit_mask, "explicit mask"),
    ],
)
def test_setting_fastnn_cannot_honour_is_refused(builder, match, tmp_path):
    builder(keras).save(tmp_path / "m.keras")
    with pytest.raises(ValueError, match=rf"m\.keras.*'dense_x'.*{match}"):
        load_keras_model(tmp_path / "m.keras")


def test_unknown_setting_is_refused(keras_file, tmp_path):
    path = tmp_path / "m.keras"
    path.write_bytes(keras_file.read_bytes())
    rewrite_config(path, lambda c: layer_entry(c, "hidden")["config"].update(novel=3))
    with pytest.raises(ValueError, match=r"'hidden' \(Dense\).*novel=3"):
        load_keras_model(path)


@keras.saving.register_keras_serializable(package="interop")
class Scale(keras.layers.Layer):
    """A user's Keras layer: ``x * factor``."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class FastScale(fastnn.layers.Layer):
    """The same layer written for fastnn."""

    passes_mask = True

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = float(factor)

    def forward(self, inputs, training):
        return inputs * inputs.dtype.type(self.factor), None

    def backward(self, ctx, grad_outputs):
        return grad_outputs * grad_outputs.dtype.type(self.factor)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def test_custom_layer_loads_through_custom_objects_only(tmp_path):
    x = keras.Input(shape=(3,))
    theirs = perturbed(keras.Model(x, keras.layers.Dense(2)(Scale(3.0, name="scale")(x))))
    theirs.save(tmp_path / "custom.keras")
    with pytest.raises(ValueError, match=r"custom\.keras.*'scale' \(Scale\)"):
        load_keras_model(tmp_path / "custom.keras")
    ours = load_keras_model(tmp_path / "custom.keras", custom_objects={"interop>Scale": FastScale})
    assert ours.get_layer("scale").factor == 3.0
    assert_same_predictions(ours, theirs, normal(3)(np.random.default_rng(0)))


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bad_weights(data: bytes) -> bytes:
    weights = "model.weights.h5"
    return rezipped(data, lambda entries: entries.update({weights: truncated(entries[weights])}))


def without_config(data: bytes) -> bytes:
    return rezipped(data, lambda entries: entries.pop("config.json"))


@pytest.mark.parametrize(
    "damage, match",
    [
        (truncated, "not a readable .keras zip"),
        (bad_weights, "not a readable HDF5"),
        (without_config, "'config.json' is missing"),
        (lambda data: b"not a zip file", "not a readable .keras zip"),
    ],
)
def test_damaged_keras_file_is_refused(damage, match, keras_file, tmp_path):
    path = tmp_path / "damaged.keras"
    path.write_bytes(damage(keras_file.read_bytes()))
    with pytest.raises(ValueError, match=rf"damaged\.keras.*{match}"):
        load_keras_model(path)


def test_damaged_weights_file_is_refused(saved, tmp_path):
    ours, _, weights = saved(fastnn, "mlp")
    path = tmp_path / "bad.weights.h5"
    path.write_bytes(truncated(weights.read_bytes()))
    with pytest.raises(ValueError, match=r"bad\.weights\.h5.*not a readable HDF5"):
        load_keras_weights(ours, path)
    with pytest.raises(FileNotFoundError, match="missing.weights.h5"):
        load_keras_weights(ours, tmp_path / "missing.weights.h5")


def smaller_mlp(K):
    L = K.layers
    return K.Sequential([K.Input(shape=(8,)), L.Dense(16), L.Dense(3)])


def wider_mlp(K):
    L = K.layers
    return K.Sequential([K.Input(shape=(8,)), L.Dense(16), L.Dense(4)])


@pytest.mark.parametrize(
    "builder, match",
    [(smaller_mlp, "no place for"), (wider_mlp, r"holds float32 \(16, 3\).*\(16, 4\)")],
)
def test_mismatched_weights_change_nothing(builder, match, saved):
    ours = builder(fastnn)
    before = ours.get_weights()
    with pytest.raises(ValueError, match=match):
        load_keras_weights(ours, saved(keras, "mlp")[2])
    for a, b in zip(ours.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_without_h5py_the_error_says_what_to_install(keras_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # makes `import h5py` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "fastnn\[keras\]"'):
        load_keras_model(keras_file)
