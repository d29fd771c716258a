"""Saving and loading: ``.fastnn`` round trips for every layer and the seed models, compile
arguments, exact resumption of training, ``.weights.npz``, JSON, ``clone_model``, the registry of
custom classes, and atomic writes (a failed or killed save leaves the previous file intact).

Corrupted and tampered files are in test_saving_fuzz.py.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import layers
from fastnn.models import clone_model, load_model, model_from_json
from fastnn.utils import set_random_seed

REPO = Path(__file__).resolve().parents[2]


# ---- helpers -----------------------------------------------------------------------------------
def _as_list(value):
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _predict(model, x):
    return _as_list(model.predict(x, verbose=0))


def _summary(model) -> list[str]:
    lines = []
    model.summary(print_fn=lines.append)
    return lines


def _all_layers(model):
    """Every layer, with nested models' layers and wrapped layers."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, fastnn.Model):
            yield from _all_layers(layer)
        for attr in ("layer", "forward_layer", "backward_layer", "cell"):
            if isinstance(getattr(layer, attr, None), fastnn.Layer):
                yield getattr(layer, attr)
        yield from getattr(getattr(layer, "cell", None), "cells", [])  # StackedRNNCells


def _fit_briefly(model, x, seed=0):
    """One epoch of Adam on random targets, so weights, BatchNormalization's moving statistics
    and the optimizer's slots are all non-trivial."""
    rng = np.random.default_rng(seed)
    y = [rng.normal(size=p.shape).astype(p.dtype) for p in _predict(model, x)]
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y if len(y) > 1 else y[0], epochs=1, batch_size=4, verbose=0)


def assert_same_model(original, loaded, x):
    """Bit-identical predictions, equal configs, summaries, names, trainable flags, weights."""
    assert type(loaded) is type(original)
    for a, b in zip(_predict(original, x), _predict(loaded, x), strict=True):
        assert a.dtype == b.dtype
        assert np.array_equal(a, b)
    assert loaded.get_config() == original.get_config()
    assert _summary(loaded) == _summary(original)
    pairs = list(zip(_all_layers(original), _all_layers(loaded), strict=True))
    for a, b in pairs:
        assert (type(b), b.name, b.trainable) == (type(a), a.name, a.trainable)
    assert [v.path for v in loaded.weights] == [v.path for v in original.weights]
    assert [v.path for v in loaded.trainable_weights] == [
        v.path for v in original.trainable_weights
    ]
    for a, b in zip(original.get_weights(), loaded.get_weights(), strict=True):
        assert a.dtype == b.dtype
        assert np.array_equal(a, b)


def roundtrip(model, tmp_path, name="m.fastnn", **load_kwargs):
    path = tmp_path / name
    model.save(path)
    return load_model(path, **load_kwargs)


# ---- one small model per layer class -----------------------------------------------------------
RNG = np.random.default_rng(0)
SEQ = RNG.normal(size=(8, 6, 5)).astype("float32")


def dense_mlp():
    model = fastnn.Sequential(
        [
            layers.Dense(6, activation="relu", input_shape=(5,), kernel_regularizer="l2"),
            layers.Dropout(0.3),
            layers.Dense(3, activation="softmax", use_bias=False),
        ]
    )
    return model, RNG.normal(size=(8, 5))


def conv1d_pooling():
    inputs = fastnn.Input((12, 3))
    h = layers.Conv1D(4, 3, padding="same", activation="relu")(inputs)
    h = layers.MaxPooling1D(2)(h)
    h = layers.AveragePooling1D(2, strides=1)(h)
    a = layers.GlobalMaxPooling1D()(h)
    b = layers.GlobalAveragePooling1D()(h)
    c = layers.Flatten()(layers.Conv1D(2, 2, strides=2, use_bias=False)(h))
    return fastnn.Model(inputs, layers.Concatenate()([a, b, c])), RNG.normal(size=(8, 12, 3))


def conv2d_pooling():
    inputs = fastnn.Input((8, 8, 2))
    h = layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    h = layers.MaxPooling2D(2)(h)
    h = layers.AveragePooling2D(pool_size=(2, 2), strides=1, padding="same")(h)
    h = layers.Conv2D(2, (2, 2), strides=(2, 2))(h)
    pooled = [layers.GlobalAveragePooling2D()(h), layers.GlobalMaxPooling2D(keepdims=True)(h)]
    flat = layers.Concatenate()([pooled[0], layers.Flatten()(pooled[1])])
    return fastnn.Model(inputs, layers.Activation("tanh")(flat)), RNG.normal(size=(8, 8, 8, 2))


def batchnorm():
    inputs = fastnn.Input((4,))
    h = layers.Dense(5)(inputs)
    h = layers.BatchNormalization(momentum=0.5)(h)
    outputs = layers.Activation("relu")(h)
    return fastnn.Model(inputs, outputs), RNG.normal(2.0, 3.0, size=(8, 4))


def merging():
    a, b = fastnn.Input((4,), name="a"), fastnn.Input((4,), name="b")
    h = layers.Dense(4)(a)
    merged = [
        layer([h, b])
        for layer in (
            layers.Add(),
            layers.Subtract(),
            layers.Multiply(),
            layers.Average(),
            layers.Maximum(),
            layers.Minimum(),
        )
    ]
    outputs = layers.Concatenate(axis=-1)(merged)
    return fastnn.Model([a, b], outputs), [RNG.normal(size=(8, 4)), RNG.normal(size=(8, 4))]


def attention_normalization():
    """A transformer-style block: causal self-attention, Attention, AdditiveAttention, Dot and
    the normalizations (BatchNormalization on axis 1)."""
    a = fastnn.Input((5, 4), name="a")
    h = layers.MultiHeadAttention(2, 3)(a, a, use_causal_mask=True)
    h = layers.LayerNormalization()(layers.Add()([a, h]))
    h = layers.GroupNormalization(2)(h)
    h = layers.BatchNormalization(axis=1)(h)
    c = layers.Attention(use_scale=True)([h, a])
    d = layers.AdditiveAttention()([c, a], use_causal_mask=True)
    outputs = layers.Dot(axes=2, normalize=True)([c, d])
    return fastnn.Model(a, outputs), RNG.normal(size=(8, 5, 4))


def embedding_lstm_masked():
    inputs = fastnn.Input((6,), dtype="int32")
    h = layers.Embedding(10, 4, mask_zero=True)(inputs)
    outputs = layers.LSTM(3)(h)
    tokens = RNG.integers(1, 10, (8, 6))
    tokens[:, 4:] = 0
    return fastnn.Model(inputs, outputs), tokens


def gru():
    inputs = fastnn.Input((6, 5))
    h = layers.GRU(4, reset_after=True, return_sequences=True)(inputs)
    return fastnn.Model(inputs, layers.GRU(2, reset_after=False, go_backwards=True)(h)), SEQ


def simple_rnn():
    model = fastnn.Sequential(
        [layers.SimpleRNN(3, activation="tanh", input_shape=(6, 5), go_backwards=True)]
    )
    return model, SEQ


def bidirectional(merge_mode):
    def build():
        inputs = fastnn.Input((6, 5))
        outputs = layers.Bidirectional(
            layers.LSTM(3, return_sequences=True), merge_mode=merge_mode
        )(inputs)
        return fastnn.Model(inputs, outputs), SEQ

    return build


def time_distributed_reshape_repeat():
    inputs = fastnn.Input((6, 5))
    h = layers.TimeDistributed(layers.Dense(4))(inputs)
    h = layers.Reshape((24,))(h)
    h = layers.RepeatVector(3)(layers.Dense(2)(h))
    return fastnn.Model(inputs, layers.Reshape((2, 3))(h)), SEQ


def masking_lstm():
    x = SEQ.copy()
    x[:, 4:] = 0.0
    model = fastnn.Sequential([layers.Masking(0.0, input_shape=(6, 5)), layers.LSTM(3)])
    return model, x


def lstm_initial_state_and_return_state():
    x, h0, c0 = fastnn.Input((6, 5)), fastnn.Input((3,)), fastnn.Input((3,))
    seq, h, c = layers.LSTM(3, return_sequences=True, return_state=True)(x, initial_state=[h0, c0])
    outputs = layers.GRU(3)(seq, initial_state=[h])
    return fastnn.Model([x, h0, c0], [outputs, c]), [SEQ, *RNG.normal(size=(2, 8, 3))]


def rnn_cells():
    inputs = fastnn.Input((6, 5))
    h = layers.RNN(layers.LSTMCell(3), return_sequences=True)(inputs)
    cells = [layers.GRUCell(2, reset_after=False), layers.SimpleRNNCell(3, activation="relu")]
    return fastnn.Model(inputs, layers.RNN(cells, go_backwards=True)(h)), SEQ


def float64_model():
    inputs = fastnn.Input((6, 5), dtype="float64")
    h = layers.LSTM(3, return_sequences=True, dtype="float64")(inputs)
    h = layers.Conv1D(2, 2, dtype="float64")(h)
    h = layers.BatchNormalization(dtype="float64")(h)
    outputs = layers.Dense(1, dtype="float64")(layers.Flatten(dtype="float64")(h))
    return fastnn.Model(inputs, outputs), SEQ.astype("float64")


def activation_layers():
    inputs = fastnn.Input((4, 3))
    h = layers.PReLU(shared_axes=[1])(layers.Conv1D(3, 2, activation="gelu")(inputs))
    h = layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.2)(layers.Flatten()(h))
    h = layers.ELU(alpha=0.5)(layers.LeakyReLU()(layers.Dense(5, activation="swish")(h)))
    return fastnn.Model(inputs, layers.Softmax()(h)), SEQ[:, :4, :3]


def shaping_regularization_preprocessing():
    images, ids = fastnn.Input((4, 5, 3)), fastnn.Input((3,), dtype="int32")
    h = layers.ZeroPadding2D(((1, 0), (0, 2)))(layers.Rescaling(0.5, offset=0.1)(images))
    h = layers.Cropping2D(1)(layers.UpSampling2D((2, 1), interpolation="bilinear")(h))
    h = layers.SpatialDropout2D(0.3, seed=1)(layers.UpSampling2D(2)(h))
    h = layers.Reshape((-1, 3))(layers.Permute((2, 1, 3))(h))
    h = layers.GaussianNoise(0.1)(layers.ZeroPadding1D(1)(layers.Cropping1D((2, 1))(h)))
    h = layers.GaussianDropout(0.2)(layers.SpatialDropout1D(0.2)(layers.UpSampling1D(2)(h)))
    h = layers.UnitNormalization()(layers.Normalization(mean=0.1, variance=2.0)(h))
    h = layers.ActivityRegularization(0.01)(layers.Identity()(h))
    indices = layers.IntegerLookup(vocabulary=[0, 1, 2, 3])(ids)
    counts = layers.Normalization()(layers.CategoryEncoding(5, output_mode="count")(indices))
    merged = layers.Concatenate()([layers.GlobalAveragePooling1D()(h), counts])
    model = fastnn.Model([images, ids], layers.Dense(2)(merged))
    return model, [RNG.normal(size=(8, 4, 5, 3)).astype("float32"), RNG.integers(0, 4, (8, 3))]


def image_preprocessing():
    inputs = fastnn.Input((8, 8, 3))
    h = layers.CenterCrop(7, 7)(layers.Resizing(10, 10)(inputs))
    h = layers.RandomFlip("horizontal", seed=0)(h)
    h = layers.RandomZoom(0.1, seed=2)(layers.RandomRotation(0.1, seed=1)(h))
    h = layers.RandomTranslation(0.1, 0.1, seed=3)(h)
    h = layers.RandomContrast(0.2, value_range=(0, 1), seed=4)(h)
    h = layers.RandomBrightness(0.1, value_range=(0, 1), seed=5)(h)
    h = layers.RandomCrop(6, 6, seed=6)(h)
    h = layers.GlobalAveragePooling2D()(layers.Conv2D(4, 3, activation="relu")(h))
    return fastnn.Model(inputs, layers.Dense(2)(h)), RNG.random((8, 8, 8, 3)).astype("float32")


def ops_between_layers():
    inputs = fastnn.Input((6, 4))
    res = layers.Dense(4, activation="tanh")(inputs) + inputs
    pooled = fastnn.ops.mean(-(res * 2.0) + 1.0 / (1.0 + fastnn.ops.abs(res)), axis=1)
    picked = fastnn.ops.concatenate([pooled[:, 0:2], fastnn.ops.max(res, axis=1)[:, -1:]], -1)
    return fastnn.Model(inputs, layers.Dense(2)(picked)), RNG.normal(size=(8, 6, 4)).astype(
        "float32"
    )


def conv_extra():
    """The transposed, depthwise and separable convs of a small U-Net / MobileNet-style model."""
    images, steps = fastnn.Input((6, 6, 3)), fastnn.Input((7, 2))
    h = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(images)
    h = layers.SeparableConv2D(4, 3, strides=2, padding="same", activation="relu")(h)
    h = layers.Conv2DTranspose(3, 3, strides=2, padding="same", output_padding=1)(h)
    t = layers.DepthwiseConv1D(2, use_bias=False)(steps)
    t = layers.Conv1DTranspose(3, 3, strides=2)(layers.SeparableConv1D(2, 3, padding="same")(t))
    merged = layers.Concatenate()(
        [layers.GlobalAveragePooling2D()(h), layers.GlobalAveragePooling1D()(t)]
    )
    model = fastnn.Model([images, steps], layers.Dense(2)(merged))
    return model, [RNG.normal(size=(8, 6, 6, 3)), RNG.normal(size=(8, 7, 2))]


def conv_lstm():
    """ConvLSTM2D (channels_first too) and ConvLSTM1D over short sequences of frames."""
    frames, steps = fastnn.Input((3, 5, 5, 2)), fastnn.Input((3, 2, 6))
    h = layers.ConvLSTM2D(3, 3, padding="same", return_sequences=True)(frames)
    h = layers.ConvLSTM2D(2, 3, go_backwards=True, unit_forget_bias=False)(h)
    t = layers.ConvLSTM1D(2, 3, data_format="channels_first", return_sequences=True)(steps)
    merged = layers.Concatenate()([layers.Flatten()(h), layers.Flatten()(t)])
    model = fastnn.Model([frames, steps], layers.Dense(2)(merged))
    return model, [RNG.normal(size=(8, 3, 5, 5, 2)), RNG.normal(size=(8, 3, 2, 6))]


# ---- the seed models ---------------------------------------------------------------------------
def seed_sequential():
    model = fastnn.Sequential(
        [
            layers.Dense(16, activation="relu", input_shape=(10,)),
            layers.Dropout(0.2),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    return model, RNG.random((8, 10))


def seed_two_inputs():
    info, behavior = fastnn.Input((10,), name="user_info"), fastnn.Input((5,), name="behavior")
    merged = layers.Concatenate()(
        [layers.Dense(8, activation="relu")(info), layers.Dense(4, activation="relu")(behavior)]
    )
    output = layers.Dense(1, activation="sigmoid", name="purchase_prob")(merged)
    return fastnn.Model([info, behavior], output), [RNG.random((8, 10)), RNG.random((8, 5))]


def seed_two_outputs():
    image = fastnn.Input((8, 8, 1), name="face_image")
    h = layers.Conv2D(4, 3, activation="relu")(image)
    h = layers.Flatten()(layers.MaxPooling2D(2)(h))
    age = layers.Dense(1, name="output_age")(h)
    gender = layers.Dense(1, activation="sigmoid", name="output_gender")(h)
    return fastnn.Model(image, [age, gender]), RNG.random((8, 8, 8, 1))


def seed_nested():
    inner = fastnn.Sequential(
        [layers.Dense(6, activation="relu", input_shape=(4,)), layers.Dense(3)], name="inner"
    )
    inputs = fastnn.Input((4,))
    outputs = layers.Dense(2)(layers.Concatenate()([inner(inputs), inputs]))
    return fastnn.Model(inputs, outputs), RNG.normal(size=(8, 4))


def seed_shared_layer():
    a, b = fastnn.Input((4,)), fastnn.Input((4,))
    shared = layers.Dense(3, activation="tanh", name="shared")
    outputs = layers.Subtract()([shared(a), shared(b)])
    return fastnn.Model([a, b], outputs), [RNG.normal(size=(8, 4)), RNG.normal(size=(8, 4))]


def seed_dict_inputs():
    a, b = fastnn.Input((3,), name="a"), fastnn.Input((2,), name="b")
    outputs = layers.Dense(2)(layers.Concatenate()([a, b]))
    model = fastnn.Model({"a": a, "b": b}, {"score": outputs})
    return model, {"b": RNG.normal(size=(8, 2)), "a": RNG.normal(size=(8, 3))}


CASES = {
    "dense_mlp": dense_mlp,
    "conv1d_pooling": conv1d_pooling,
    "conv2d_pooling": conv2d_pooling,
    "batchnorm": batchnorm,
    "merging": merging,
    "attention_normalization": attention_normalization,
    "embedding_lstm_masked": embedding_lstm_masked,
    "gru": gru,
    "simple_rnn": simple_rnn,
    **{f"bidirectional_{mode}": bidirectional(mode) for mode in ("concat", "sum", "mul", "ave")},
    "bidirectional_none": bidirectional(None),
    "time_distributed_reshape_repeat": time_distributed_reshape_repeat,
    "masking_lstm": masking_lstm,
    "lstm_initial_state_and_return_state": lstm_initial_state_and_return_state,
    "rnn_cells": rnn_cells,
    "float64": float64_model,
    "activation_layers": activation_layers,
    "shaping_regularization_preprocessing": shaping_regularization_preprocessing,
    "image_preprocessing": image_preprocessing,
    "ops_between_layers": ops_between_layers,
    "conv_extra": conv_extra,
    "conv_lstm": conv_lstm,
    "seed_sequential": seed_sequential,
    "seed_two_inputs": seed_two_inputs,
    "seed_two_outputs": seed_two_outputs,
    "seed_nested": seed_nested,
    "seed_shared_layer": seed_shared_layer,
    "seed_dict_inputs": seed_dict_inputs,
}


@pytest.mark.parametrize("trained", [False, True], ids=["fresh", "trained"])
@pytest.mark.parametrize("case", CASES)
def test_round_trip_predicts_bit_for_bit_with_the_same_config(case, trained, tmp_path):
    set_random_seed(1)
    model, x = CASES[case]()
    if trained:
        _fit_briefly(model, x)
    loaded = roundtrip(model, tmp_path)
    assert_same_model(model, loaded, x)
    assert loaded.compiled == trained
    if trained:
        assert loaded.get_compile_config() == model.get_compile_config()
        state, restored = model.optimizer.get_state(), loaded.optimizer.get_state()
        for a, b in zip(state, restored, strict=True):
            assert np.array_equal(a, b)
    # A model loaded from a file saves to the same bytes (nothing is lost or reordered).
    loaded.save(tmp_path / "again.fastnn")
    with (
        zipfile.ZipFile(tmp_path / "m.fastnn") as a,
        zipfile.ZipFile(tmp_path / "again.fastnn") as b,
    ):
        assert a.namelist() == b.namelist()
        for name in a.namelist():
            assert a.read(name) == b.read(name), name


def test_every_exported_layer_class_has_a_round_trip_case():
    covered = set()
    for build in CASES.values():
        covered |= {type(layer) for layer in _all_layers(build()[0])}
    exported = {
        obj
        for obj in vars(layers).values()
        if isinstance(obj, type) and issubclass(obj, fastnn.Layer)
    }
    # Layer is the abstract base; Lambda is refused by design (test_lambda.py); the layers of
    # strings run outside models (test_lookup.py round-trips their configs).
    outside = {fastnn.Layer, layers.Lambda, layers.StringLookup, layers.TextVectorization}
    missing = exported - covered - outside
    assert not missing, sorted(c.__name__ for c in missing)


def test_batchnorm_moving_statistics_survive(tmp_path):
    set_random_seed(2)
    model, x = batchnorm()
    _fit_briefly(model, x)
    bn = next(layer for layer in model.layers if isinstance(layer, layers.BatchNormalization))
    assert np.abs(bn.moving_mean.value).max() > 0.05
    assert np.abs(bn.moving_variance.value - 1).max() > 0.05
    loaded = roundtrip(model, tmp_path)
    restored = loaded.get_layer(bn.name)
    assert np.array_equal(restored.moving_mean.value, bn.moving_mean.value)
    assert np.array_equal(restored.moving_variance.value, bn.moving_variance.value)


@pytest.mark.parametrize("case, frozen_count", [("seed_nested", 4), ("seed_two_inputs", 2)])
def test_frozen_layers_stay_frozen_and_untrained(case, frozen_count, tmp_path):
    set_random_seed(3)
    model, x = CASES[case]()
    dense = [layer for layer in model.layers if isinstance(layer, layers.Dense)]
    frozen_layer = dense[0] if case == "seed_two_inputs" else model.get_layer("inner")
    frozen_layer.trainable = False
    _fit_briefly(model, x)
    loaded = roundtrip(model, tmp_path)
    assert_same_model(model, loaded, x)
    restored = loaded.get_layer(frozen_layer.name)
    assert not restored.trainable
    assert not any(layer.trainable for layer in getattr(restored, "layers", []))
    assert sum(layer.trainable for layer in loaded.layers) == sum(
        layer.trainable for layer in model.layers
    )
    frozen = [v.numpy() for v in loaded.non_trainable_weights]
    assert len(frozen) == frozen_count
    y = _predict(loaded, x)[0] + 1.0
    loaded.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for before, var in zip(frozen, loaded.non_trainable_weights, strict=True):
        assert np.array_equal(before, var.value)


def test_dict_inputs_and_outputs_keep_their_names(tmp_path):
    set_random_seed(4)
    model, x = seed_dict_inputs()
    loaded = roundtrip(model, tmp_path)
    assert loaded.input_names == ["a", "b"] and loaded.output_names == ["score"]
    config = loaded.get_config()
    assert config["input_layers"] == {"a": ["a", 0, 0], "b": ["b", 0, 0]}
    assert list(config["output_layers"]) == ["score"]
    expected, got = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    assert list(got) == ["score"] and np.array_equal(got["score"], expected["score"])


def test_shared_layer_stays_one_layer_with_two_calls(tmp_path):
    set_random_seed(5)
    model, x = seed_shared_layer()
    loaded = roundtrip(model, tmp_path)
    shared = loaded.get_layer("shared")
    assert len(shared.weights) == 2 and len(loaded.weights) == 2
    assert sum(layer is shared for layer in loaded.layers) == 1
    assert np.array_equal(_predict(loaded, x)[0], _predict(model, x)[0])


def test_sequential_without_an_input_shape_round_trips_before_and_after_it_is_built(tmp_path):
    set_random_seed(6)
    model = fastnn.Sequential([layers.Dense(3), layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse", metrics=["mae"])
    unbuilt = roundtrip(model, tmp_path, "unbuilt.fastnn")
    assert not unbuilt.built and unbuilt.compiled
    assert unbuilt.get_config() == model.get_config()
    x, y = RNG.normal(size=(4, 5)), RNG.normal(size=(4, 2))
    model.fit(x, y, epochs=2, verbose=0)  # builds it
    loaded = roundtrip(model, tmp_path)
    assert_same_model(model, loaded, x)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_path_objects_strings_and_overwrite(tmp_path):
    model, x = dense_mlp()
    model.save(str(tmp_path / "m.fastnn"))
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "m.fastnn", overwrite=False)
    assert_same_model(model, load_model(str(tmp_path / "m.fastnn")), x)
    assert_same_model(model, fastnn.saving.load_model(tmp_path / "m.fastnn"), x)
    fastnn.saving.save_model(model, tmp_path / "n.fastnn")
    assert_same_model(model, load_model(tmp_path / "n.fastnn", safe_mode=False), x)
    with pytest.raises(ValueError, match=r"must end in '\.fastnn'"):
        model.save(tmp_path / "m.bin")


def test_a_missing_file_is_both_file_not_found_and_value_error(tmp_path):
    path = tmp_path / "nothing.fastnn"
    with pytest.raises(FileNotFoundError, match="nothing.fastnn") as info:
        load_model(path)
    assert isinstance(info.value, ValueError)
    model, _ = dense_mlp()
    with pytest.raises(ValueError, match="nothing.weights.npz"):
        model.load_weights(tmp_path / "nothing.weights.npz")


# ---- compile arguments -------------------------------------------------------------------------
def _compiled_two_outputs():
    set_random_seed(7)
    model, x = seed_two_outputs()
    model.compile(
        optimizer=fastnn.optimizers.Adam(learning_rate=0.01, clipnorm=1.0),
        loss={"output_age": "mse", "output_gender": "binary_crossentropy"},
        loss_weights={"output_age": 0.25, "output_gender": 2.0},
        metrics={"output_age": ["mae"], "output_gender": ["accuracy"]},
    )
    y = {"output_age": RNG.random((8, 1)) * 5, "output_gender": RNG.integers(0, 2, (8, 1))}
    return model, x, y


def test_the_loaded_model_is_compiled_the_same_and_evaluates_the_same(tmp_path):
    model, x, y = _compiled_two_outputs()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.optimizer.learning_rate = 0.003  # changed after compile: the file keeps the new rate
    loaded = roundtrip(model, tmp_path)
    assert loaded.compiled
    assert loaded.get_compile_config() == model.get_compile_config()
    config = loaded.get_compile_config()
    assert config["loss_weights"] == {"output_age": 0.25, "output_gender": 2.0}
    assert config["optimizer"]["class_name"] == "Adam"
    assert config["optimizer"]["config"]["clipnorm"] == 1.0
    assert loaded.optimizer.learning_rate == 0.003
    assert loaded.optimizer.iterations == model.optimizer.iterations == 2
    expected = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    got = loaded.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert got == expected
    assert set(got) == {
        "loss",
        "output_age_loss",
        "output_age_mae",
        "output_gender_loss",
        "output_gender_accuracy",
    }


def test_loss_and_metric_objects_round_trip(tmp_path):
    model, x = seed_sequential()
    model.compile(
        optimizer=fastnn.optimizers.RMSprop(learning_rate=0.002, rho=0.8),
        loss=fastnn.losses.BinaryCrossentropy(label_smoothing=0.1),
        metrics=[fastnn.metrics.BinaryAccuracy(threshold=0.3), "mse"],
    )
    y = RNG.integers(0, 2, (8, 1))
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    loaded = roundtrip(model, tmp_path)
    assert loaded.get_compile_config() == model.get_compile_config()
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


def test_a_python_function_loss_saves_with_a_warning_and_loads_uncompiled(tmp_path):
    model, x = dense_mlp()

    def my_loss(y_true, y_pred):
        return np.mean((y_true - y_pred) ** 2, axis=-1)

    model.compile(optimizer="adam", loss=my_loss)
    with pytest.warns(UserWarning, match="without its compile\\(\\) arguments.*my_loss"):
        model.save(tmp_path / "m.fastnn")
    loaded = load_model(tmp_path / "m.fastnn")
    assert not loaded.compiled and loaded.optimizer is None
    assert_same_model(model, loaded, x)
    with pytest.raises(ValueError, match="compile"):
        loaded.fit(x, np.zeros((8, 3)), verbose=0)


def test_compile_false_loads_an_uncompiled_model(tmp_path):
    model, x, y = _compiled_two_outputs()
    model.fit(x, y, epochs=1, verbose=0)
    loaded = roundtrip(model, tmp_path, compile=False)
    assert not loaded.compiled and loaded.optimizer is None
    for a, b in zip(_predict(model, x), _predict(loaded, x), strict=True):
        assert np.array_equal(a, b)


def test_include_optimizer_false_keeps_compile_but_starts_a_fresh_optimizer(tmp_path):
    model, x, y = _compiled_two_outputs()
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "m.fastnn", include_optimizer=False)
    loaded = load_model(tmp_path / "m.fastnn")
    assert loaded.compiled and loaded.optimizer.iterations == 0 and not loaded.optimizer.built
    assert loaded.get_compile_config() == model.get_compile_config()


# ---- resuming training -------------------------------------------------------------------------
def _dropout_mlp(optimizer):
    model = fastnn.Sequential(
        [
            layers.Dense(8, activation="relu", input_shape=(5,)),
            layers.Dropout(0.4),
            layers.Dense(1),
        ]
    )
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    return model


def _dropout_two_outputs(optimizer):
    inputs = fastnn.Input((5,))
    h = layers.Dropout(0.3)(layers.Dense(8, activation="relu")(inputs))
    model = fastnn.Model(
        inputs, [layers.Dense(1, name="reg")(h), layers.Dense(1, "sigmoid", name="cls")(h)]
    )
    model.compile(
        optimizer=optimizer,
        loss={"reg": "mse", "cls": "binary_crossentropy"},
        loss_weights={"reg": 0.5, "cls": 1.5},
        metrics={"cls": ["accuracy"]},
    )
    return model


RESUME_X = RNG.normal(size=(30, 5)).astype("float32")
RESUME_Y = RESUME_X.sum(axis=1, keepdims=True)
RESUME_Y2 = {"reg": RESUME_Y, "cls": (RESUME_Y > 0).astype("float32")}


@pytest.mark.parametrize(
    "make, optimizer, y",
    [
        (_dropout_mlp, lambda: fastnn.optimizers.Adam(0.01), RESUME_Y),
        (_dropout_mlp, lambda: fastnn.optimizers.SGD(0.01, momentum=0.9, nesterov=True), RESUME_Y),
        (_dropout_two_outputs, lambda: fastnn.optimizers.Adam(0.01), RESUME_Y2),
        (_dropout_two_outputs, lambda: fastnn.optimizers.SGD(0.02, momentum=0.8), RESUME_Y2),
    ],
    ids=["adam", "sgd_nesterov", "two_outputs_adam", "two_outputs_sgd"],
)
def test_train_save_load_continue_equals_training_without_a_stop(make, optimizer, y, tmp_path):
    fit = {"batch_size": 8, "shuffle": True, "verbose": 0}
    set_random_seed(11)
    whole = make(optimizer())
    history = whole.fit(RESUME_X, y, epochs=4, **fit).history

    set_random_seed(11)
    first = make(optimizer())
    first.fit(RESUME_X, y, epochs=2, **fit)
    first.save(tmp_path / "m.fastnn")
    set_random_seed(999)  # a new process: the global random state is different
    resumed = load_model(tmp_path / "m.fastnn")
    later = resumed.fit(RESUME_X, y, initial_epoch=2, epochs=4, **fit).history

    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert set(later) == set(history)
    for key, values in history.items():
        assert later[key] == values[2:], key
    for a, b in zip(whole.optimizer.get_state(), resumed.optimizer.get_state(), strict=True):
        assert np.array_equal(a, b)


def _dropouts_everywhere():
    """Dropout layers of one name in a nested model and the outer model, and one wrapped."""
    inner = fastnn.Sequential(
        [layers.Dense(6, input_shape=(5,)), layers.Dropout(0.5, name="drop")], name="inner"
    )
    inputs = fastnn.Input((5,))
    h = layers.Dropout(0.5, name="drop")(inner(inputs))
    h = layers.TimeDistributed(layers.Dropout(0.5))(layers.Reshape((3, 2))(h))
    model = fastnn.Model(inputs, layers.Dense(1)(layers.Flatten()(h)))
    model.compile(optimizer="adam", loss="mse")
    return model


def _freeze_midway(optimizer):
    """A fine-tuning schedule: the optimizer is built on all weights, then a layer is frozen."""
    model = _dropout_mlp(optimizer)
    model.fit(RESUME_X, RESUME_Y, epochs=1, batch_size=8, verbose=0)
    model.layers[0].trainable = False
    return model


@pytest.mark.parametrize("make", [_dropouts_everywhere, lambda: _freeze_midway("rmsprop")])
def test_resume_is_exact_for_nested_and_wrapped_dropout_and_after_freezing(make, tmp_path):
    fit = {"batch_size": 8, "verbose": 0}
    set_random_seed(15)
    whole = make()
    whole.fit(RESUME_X, RESUME_Y, epochs=4, **fit)
    set_random_seed(15)
    first = make()
    first.fit(RESUME_X, RESUME_Y, epochs=2, **fit)
    first.save(tmp_path / "m.fastnn")
    set_random_seed(16)
    resumed = load_model(tmp_path / "m.fastnn")
    assert _summary(resumed) == _summary(first)
    resumed.fit(RESUME_X, RESUME_Y, initial_epoch=2, epochs=4, **fit)
    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_resume_is_exact_with_recurrent_input_dropout(tmp_path):
    x = RNG.normal(size=(16, 5, 3)).astype("float32")
    y = x.sum(axis=(1, 2))[:, None]

    def make():
        model = fastnn.Sequential(
            [layers.LSTM(4, dropout=0.3, input_shape=(5, 3)), layers.Dense(1)]
        )
        model.compile(optimizer="adam", loss="mse")
        return model

    set_random_seed(17)
    whole = make()
    whole.fit(x, y, epochs=4, batch_size=8, verbose=0)
    set_random_seed(17)
    first = make()
    first.fit(x, y, epochs=2, batch_size=8, verbose=0)
    first.save(tmp_path / "m.fastnn")
    set_random_seed(18)
    resumed = load_model(tmp_path / "m.fastnn")
    resumed.fit(x, y, initial_epoch=2, epochs=4, batch_size=8, verbose=0)
    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_a_checkpoint_written_by_model_checkpoint_resumes_exactly(tmp_path):
    fit = {"batch_size": 8, "verbose": 0}
    set_random_seed(12)
    whole = _dropout_mlp("adam")
    checkpoint = fastnn.callbacks.ModelCheckpoint(str(tmp_path / "ck-{epoch}.fastnn"))
    history = whole.fit(RESUME_X, RESUME_Y, epochs=4, callbacks=[checkpoint], **fit).history
    set_random_seed(13)
    resumed = load_model(tmp_path / "ck-2.fastnn")
    later = resumed.fit(RESUME_X, RESUME_Y, initial_epoch=2, epochs=4, **fit).history
    assert later["loss"] == history["loss"][2:]
    for a, b in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        assert np.array_equal(a, b)
    final = load_model(tmp_path / "ck-4.fastnn")
    for a, b in zip(whole.get_weights(), final.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_a_learning_rate_reduced_by_a_callback_is_saved(tmp_path):
    set_random_seed(14)
    model = _dropout_mlp(fastnn.optimizers.SGD(0.01))
    reduce = fastnn.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e9
    )
    model.fit(RESUME_X, RESUME_Y, epochs=3, verbose=0, callbacks=[reduce])
    assert model.optimizer.learning_rate < 0.005
    loaded = roundtrip(model, tmp_path)
    assert loaded.optimizer.learning_rate == model.optimizer.learning_rate


# ---- weights files -----------------------------------------------------------------------------
def test_weights_npz_round_trip_and_numpy_reads_it(tmp_path):
    set_random_seed(20)
    model, x = seed_two_outputs()
    _fit_briefly(model, x)
    path = tmp_path / "w.weights.npz"
    model.save_weights(path)
    set_random_seed(21)
    other, _ = seed_two_outputs()
    assert not np.array_equal(other.get_weights()[0], model.get_weights()[0])
    other.load_weights(path)
    for a, b in zip(_predict(model, x), _predict(other, x), strict=True):
        assert np.array_equal(a, b)
    with np.load(path) as data:
        arrays = [data[f"weights/{i}"] for i in range(len(model.weights))]
        manifest = json.loads(data["fastnn.json"])
    for a, b in zip(model.get_weights(), arrays, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert manifest["names"] == [v.path for v in model.weights]


@pytest.mark.parametrize(
    "units, match",
    [
        (
            (6, 4, 2),
            r"weights array 2 is float32 \(6, 3\) but the model expects float32 \(6, 4\)",
        ),
        ((6, 3), r"it has 6 weights arrays, the model needs 4"),
    ],
)
def test_loading_weights_into_another_architecture_names_the_file_and_changes_nothing(
    units, match, tmp_path
):
    set_random_seed(22)
    source = fastnn.Sequential(
        [layers.Dense(6, input_shape=(5,)), layers.Dense(3), layers.Dense(2)]
    )
    path = tmp_path / "w.weights.npz"
    source.save_weights(path)
    target = fastnn.Sequential([layers.Dense(units[0], input_shape=(5,))])
    for n in units[1:]:
        target.add(layers.Dense(n))
    before = target.get_weights()
    with pytest.raises(ValueError, match=match) as info:
        target.load_weights(path)
    assert str(path) in str(info.value)
    for a, b in zip(before, target.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_a_model_file_is_not_a_weights_file(tmp_path):
    model, _ = dense_mlp()
    model.save(tmp_path / "m.fastnn")
    os.replace(tmp_path / "m.fastnn", tmp_path / "m.weights.npz")
    with pytest.raises(ValueError, match="expected a 'fastnn.weights' file, found format"):
        model.load_weights(tmp_path / "m.weights.npz")
    with pytest.raises(ValueError, match=r"must end in '\.weights\.npz'"):
        model.save_weights(tmp_path / "w.npz")


# ---- JSON and clone_model ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "case", ["seed_nested", "seed_shared_layer", "merging", "seed_dict_inputs"]
)
def test_to_json_and_model_from_json(case):
    model, x = CASES[case]()
    text = model.to_json()
    assert json.loads(text)["class_name"] in ("Functional", "Sequential")
    rebuilt = model_from_json(text)
    assert rebuilt.get_config() == model.get_config()
    assert _summary(rebuilt) == _summary(model)
    rebuilt.set_weights(model.get_weights())
    for a, b in zip(_predict(model, x), _predict(rebuilt, x), strict=True):
        assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="not valid JSON"):
        model_from_json(text[:-3])
    with pytest.raises(ValueError, match="describes a Dense"):
        model_from_json(json.dumps(fastnn.layers.serialize(layers.Dense(2))))


@pytest.mark.parametrize("case", ["seed_sequential", "seed_nested", "seed_shared_layer"])
def test_clone_model_has_the_same_config_and_fresh_independent_weights(case):
    model, x = CASES[case]()
    clone = clone_model(model)
    assert clone.get_config() == model.get_config()
    assert type(clone) is type(model)
    originals = {id(v.value) for v in model.weights}
    assert not any(id(v.value) in originals for v in clone.weights)
    assert not np.array_equal(clone.get_weights()[0], model.get_weights()[0])
    clone.set_weights(model.get_weights())
    for a, b in zip(_predict(model, x), _predict(clone, x), strict=True):
        assert np.array_equal(a, b)
    before = model.get_weights()
    clone.weights[0].value[...] += 1.0
    for a, b in zip(before, model.get_weights(), strict=True):
        assert np.array_equal(a, b)
    if case == "seed_shared_layer":
        (entry,) = [e for e in clone.get_config()["layers"] if e["name"] == "shared"]
        assert len(entry["inbound_nodes"]) == 2 and len(clone.weights) == 2
        assert clone.get_layer("shared") is not model.get_layer("shared")


def test_clone_model_uses_the_clone_function():
    model, x = seed_two_inputs()
    seen = []

    def clone_function(layer):
        seen.append(layer.name)
        config = layer.get_config()
        if isinstance(layer, layers.Dense):
            config["activation"] = "linear"
        return type(layer).from_config(config)

    clone = clone_model(model, clone_function=clone_function)
    assert sorted(seen) == sorted(
        layer.name for layer in model.layers if not isinstance(layer, layers.InputLayer)
    )
    assert all(
        layer.get_config()["activation"] == "linear"
        for layer in clone.layers
        if isinstance(layer, layers.Dense)
    )
    clone.set_weights(model.get_weights())
    assert not np.array_equal(_predict(clone, x)[0], _predict(model, x)[0])


# ---- custom classes ----------------------------------------------------------------------------
class Scale(fastnn.Layer):
    """y = x * w, a weight per feature; the test's custom layer."""

    def __init__(self, init=1.0, **kwargs):
        super().__init__(**kwargs)
        self.init = init

    def build(self, input_shape):
        self.w = self.add_weight((input_shape[-1],), initializer="ones", name="w")
        self.w.value[...] = self.init

    def forward(self, inputs, training):
        return inputs * self.w.value, inputs

    def backward(self, ctx, grad_outputs):
        self.w.grad += (grad_outputs * ctx).sum(axis=0)
        return grad_outputs * self.w.value

    def get_config(self):
        return {**super().get_config(), "init": self.init}


RegisteredScale = fastnn.saving.register_serializable(package="test_saving", name="Scale")(
    type("RegisteredScale", (Scale,), {})
)


def _custom_model(cls):
    set_random_seed(30)
    inputs = fastnn.Input((3,))
    outputs = cls(init=2.5, name="scale")(layers.Dense(3)(inputs))
    model = fastnn.Model(inputs, outputs)
    model.compile("sgd", "mse")
    model.fit(RNG.normal(size=(8, 3)), RNG.normal(size=(8, 3)), epochs=1, verbose=0)
    return model, RNG.normal(size=(4, 3))


def test_a_registered_custom_layer_round_trips(tmp_path):
    model, x = _custom_model(RegisteredScale)
    loaded = roundtrip(model, tmp_path)
    assert type(loaded.get_layer("scale")) is RegisteredScale
    assert loaded.get_layer("scale").init == 2.5
    assert_same_model(model, loaded, x)
    entry = json.loads(model.to_json())["config"]["layers"][-1]
    assert entry["registered_name"] == "test_saving>Scale"
    assert fastnn.saving.get_registered_object("test_saving>Scale") is RegisteredScale
    assert fastnn.saving.get_registered_name(RegisteredScale) == "test_saving>Scale"


def test_an_unregistered_custom_layer_needs_custom_objects(tmp_path):
    model, x = _custom_model(Scale)
    model.save(tmp_path / "m.fastnn")
    with pytest.raises(ValueError, match=r"m\.fastnn.*Unknown layer class 'Scale'") as info:
        load_model(tmp_path / "m.fastnn")
    assert "register_serializable" in str(info.value)
    loaded = load_model(tmp_path / "m.fastnn", custom_objects={"Scale": Scale})
    assert_same_model(model, loaded, x)
    assert type(model_from_json(model.to_json(), {"Scale": Scale}).layers[-1]) is Scale


def test_register_serializable_refuses_a_taken_name_and_bad_packages():
    assert fastnn.saving.register_keras_serializable is fastnn.saving.register_serializable
    with pytest.raises(ValueError, match="already registered"):
        fastnn.saving.register_serializable("test_saving", "Scale")(type("Other", (Scale,), {}))
    with pytest.raises(ValueError, match="package"):
        fastnn.saving.register_serializable("a>b")
    with pytest.raises(TypeError, match="decorates classes and named functions"):
        fastnn.saving.register_serializable("test_saving")(lambda: None)


def _rewrite_manifest(path, edit):
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    manifest = json.loads(entries["fastnn.json"])
    edit(manifest)
    entries["fastnn.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


@pytest.mark.parametrize(
    "class_name, registered_name, match",
    [
        ("os.system", None, "Unknown layer class 'os.system'"),
        ("builtins.eval", None, "Unknown layer class 'builtins.eval'"),
        ("this.Dense", "this>Dense", "Unknown layer class 'this.Dense'"),
        ("Dense", "os>system", None),  # a stray registered name falls back to the class name
        ("fastnn.layers.core.Dense", None, "Unknown layer class 'fastnn.layers.core.Dense'"),
        ("Lambda", None, "Refusing to load a Lambda"),
        ("__import__", "builtins>__import__", "Unknown layer class '__import__'"),
    ],
)
def test_a_file_can_never_make_loading_import_or_run_code(
    class_name, registered_name, match, tmp_path
):
    model, x = dense_mlp()
    path = tmp_path / "m.fastnn"
    model.save(path)
    load_model(path)  # whatever loading imports lazily is imported now

    def edit(manifest):
        layer = manifest["model"]["config"]["layers"][1]
        layer["class_name"], layer["registered_name"] = class_name, registered_name
        if class_name == "Lambda":
            layer["config"] = {"function": "os.system", "name": "evil"}

    _rewrite_manifest(path, edit)
    sys.modules.pop("this", None)
    modules = set(sys.modules)
    if match is None:
        loaded = load_model(path)
        assert set(sys.modules) == modules  # nothing was imported
        assert_same_model(model, loaded, x)
    else:
        with pytest.raises(ValueError, match=match) as info:
            load_model(path)
        assert set(sys.modules) == modules
        assert str(path) in str(info.value)


# ---- atomic writes -----------------------------------------------------------------------------
def test_a_failed_save_leaves_the_previous_file_byte_identical(tmp_path, monkeypatch):
    model, x = dense_mlp()
    path = tmp_path / "m.fastnn"
    model.save(path)
    original = path.read_bytes()
    model.layers[0].weights[0].value[...] += 1.0
    write_array = np.lib.format.write_array
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing)
    with pytest.raises(OSError, match="No space left"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.fastnn"]

    def no_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(OSError, match="Input/output"):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.fastnn"]


def test_an_unsaveable_model_leaves_the_previous_file_byte_identical(tmp_path):
    model, _ = dense_mlp()
    path = tmp_path / "m.fastnn"
    model.save(path)
    original = path.read_bytes()
    inputs = fastnn.Input((5,))
    with_lambda = fastnn.Model(inputs, layers.Lambda(lambda t: t * 2)(inputs))
    with pytest.raises(ValueError, match="cannot be saved"):
        with_lambda.save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.fastnn"]


def test_a_new_file_keeps_the_usual_permissions_and_a_replaced_one_keeps_its_own(tmp_path):
    model, _ = dense_mlp()
    path = tmp_path / "m.fastnn"
    umask = os.umask(0o022)
    try:
        model.save(path)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o600)
    model.save(path)
    assert path.stat().st_mode & 0o777 == 0o600


SAVER = """
import sys
sys.path.insert(0, {repo!r})
import fastnn
from fastnn import layers

fastnn.utils.set_random_seed(0)
model = fastnn.Sequential(
    [layers.Dense(512, input_shape=(256,)), layers.Dense(256), layers.Dense(4)]
)
model.save({reference!r})
print("ready", flush=True)
version = 0
while True:
    model.layers[-1].bias.value[...] = version
    model.save({path!r})
    print(version, flush=True)
    version += 1
"""


def test_a_save_killed_at_a_random_moment_leaves_a_loadable_file(tmp_path):
    path, reference = tmp_path / "m.fastnn", tmp_path / "reference.fastnn"
    script = SAVER.format(repo=str(REPO), path=str(path), reference=str(reference))
    delays = random.Random(0)
    for attempt in range(2):
        process = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True
        )
        try:
            assert process.stdout.readline().strip() == "ready"
            first = int(process.stdout.readline())  # the first save has completed
            time.sleep(delays.uniform(0.0, 0.3))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        completed = [first, *map(int, process.stdout.read().split())]
        process.stdout.close()
        saved = load_model(path)
        version = int(saved.layers[-1].bias.value[0])
        # The last reported save, or the next one if its rename landed before the kill.
        assert completed[-1] <= version <= completed[-1] + 1
        expected = load_model(reference)
        expected.layers[-1].bias.value[...] = version
        x = np.random.default_rng(attempt).normal(size=(3, 256))
        assert np.array_equal(saved.predict(x, verbose=0), expected.predict(x, verbose=0))
        assert saved.get_config() == expected.get_config()
        # SIGKILL may leave a temporary file; it is never the model's name.
        others = {p.name for p in tmp_path.iterdir()} - {"m.fastnn", "reference.fastnn"}
        assert all(n.startswith(".m.fastnn.") and n.endswith(".tmp") for n in others), others


def two_heads_out_of_key_order():
    """A model with dict outputs whose heads were written out of key order (equal shapes)."""
    x = fastnn.Input((3,), name="x")
    trunk = layers.Dense(4, activation="tanh", name="trunk")(x)
    heads = {"b": layers.Dense(2, name="head_b")(trunk), "a": layers.Dense(2, name="head_a")(trunk)}
    model = fastnn.Model(x, heads)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype("float32") for w in model.get_weights()])
    return model


def rewritten_manifest(path: Path, edit) -> None:
    """Rewrite the JSON manifest of the zip at ``path`` by ``edit(manifest, arrays)``, where
    ``arrays`` maps entry names to their bytes (edited in place too)."""
    with zipfile.ZipFile(path) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    manifest_name = next(n for n in entries if n.endswith(".json"))
    manifest = json.loads(entries[manifest_name])
    edit(manifest, entries)
    entries[manifest_name] = json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)


def test_a_file_of_dict_heads_from_before_keras_order_loads_each_head_into_itself(tmp_path):
    """Files written before fastnn ordered dict outputs by key stored the heads' weights as
    written (head_b first) and no paths: they load into the right heads, never swapped."""
    model = two_heads_out_of_key_order()
    x = np.random.default_rng(1).normal(size=(4, 3)).astype("float32")
    path = tmp_path / "old.fastnn"
    model.save(path)
    written = ["trunk", "head_b", "head_a"]
    order = sorted(range(len(model.weights)), key=lambda i: written.index(
        model.weights[i].path.split("/")[0]
    ))  # fmt: skip

    def as_before(manifest, entries):
        del manifest["names"]
        arrays = [entries[f"weights/{i}.npy"] for i in range(len(order))]
        specs = manifest["weights"]
        manifest["weights"] = [
            {**specs[j], "file": f"weights/{i}.npy"} for i, j in enumerate(order)
        ]
        for i, j in enumerate(order):
            entries[f"weights/{i}.npy"] = arrays[j]

    rewritten_manifest(path, as_before)
    loaded = load_model(path)
    for key in ("a", "b"):
        np.testing.assert_array_equal(
            loaded.predict(x, verbose=0)[key], model.predict(x, verbose=0)[key]
        )


@pytest.mark.parametrize("name", ["m.fastnn", "m.weights.npz"])
def test_weights_load_by_their_paths_when_the_file_lists_them_in_another_order(name, tmp_path):
    model = two_heads_out_of_key_order()
    path = tmp_path / name
    (model.save if name.endswith(".fastnn") else model.save_weights)(path)

    def reversed_order(manifest, entries):
        n = len(manifest["names"])
        arrays = [entries[f"weights/{i}.npy"] for i in range(n)]
        specs = manifest["weights"]
        manifest["names"] = manifest["names"][::-1]
        manifest["weights"] = [{**specs[n - 1 - i], "file": f"weights/{i}.npy"} for i in range(n)]
        for i in range(n):
            entries[f"weights/{i}.npy"] = arrays[n - 1 - i]

    rewritten_manifest(path, reversed_order)
    loaded = load_model(path) if name.endswith(".fastnn") else two_heads_out_of_key_order()
    if name.endswith(".npz"):
        for w in loaded.weights:
            w.value[...] = 0
        loaded.load_weights(path)
    for w, v in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(w, v)


def test_weights_load_into_a_twin_model_whose_layers_have_other_names(tmp_path):
    """As in Keras, a weights file loads into a model of the same structure by position."""
    model = two_heads_out_of_key_order()
    model.save_weights(tmp_path / "w.weights.npz")
    x = fastnn.Input((3,))
    trunk = layers.Dense(4, activation="tanh")(x)
    twin = fastnn.Model(x, {"b": layers.Dense(2)(trunk), "a": layers.Dense(2)(trunk)})
    twin.load_weights(tmp_path / "w.weights.npz")
    for w, v in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(w, v)
