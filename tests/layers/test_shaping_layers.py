"""Shape, regularization and preprocessing layers beyond the harness rows (rows_shaping.py):
Normalization.adapt and its files, CategoryEncoding's modes and errors, the activity penalty as
a loss, the random layers' draws, masks, and argument errors, against Keras 3 where it defines
the behaviour."""

import os

import numpy as np
import pytest
from gradcheck import numeric_gradient
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import layers as L

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")


def keras_numpy(value) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))


def both(name, *args, **kwargs):
    """(fastnn's layer, Keras's layer) of class ``name`` made from the same arguments."""
    return getattr(L, name)(*args, **kwargs), getattr(keras.layers, name)(*args, **kwargs)


# ---- Normalization ------------------------------------------------------------------------------


def batches_of(x, size):
    return [x[i : i + size] for i in range(0, len(x), size)]


AXES_AND_SHAPES = [(-1, (20, 3)), (None, (20, 3)), ((1,), (12, 2, 3)), ((1, 2), (12, 2, 3))]


@pytest.mark.parametrize("axis, shape", AXES_AND_SHAPES)
def test_adapt_sets_keras_mean_and_variance(axis, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32") * 3 + 1
    ours, theirs = both("Normalization", axis=axis)
    ours.adapt(x)
    theirs.adapt(x)
    assert [w.name for w in ours.weights] == ["mean", "variance", "count"]
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), rtol=1e-5, atol=1e-5)
    for statistic in ("mean", "variance"):  # broadcast-shaped, as Keras exposes them
        got, want = getattr(ours, statistic), keras_numpy(getattr(theirs, statistic))
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_given_mean_and_variance_are_exposed_as_keras_does():
    ours, theirs = both("Normalization", mean=[1.0, 2.0], variance=[4.0, 9.0])
    x = np.ones((2, 2), "float32")
    ours(x), theirs(x)
    np.testing.assert_allclose(ours.mean, keras_numpy(theirs.mean))
    np.testing.assert_allclose(ours.variance, keras_numpy(theirs.variance))


@pytest.mark.parametrize("axis, shape", AXES_AND_SHAPES)
@pytest.mark.parametrize("source", ["list_of_batches", "generator_of_tuples"])
def test_adapt_on_batches_merges_them_into_the_whole_data_statistics(axis, shape, source):
    """Keras merges batch moments by counts (its adapt on iterables needs TensorFlow, which
    the test environment lacks, so the reference is the moments of all the data at once)."""
    x = np.random.default_rng(0).standard_normal(shape).astype("float32") * 3 + 1
    batches = batches_of(x, 7) if source == "list_of_batches" else batches_of(x, 5)
    data = batches if source == "list_of_batches" else ((b, b[:, :1]) for b in batches)
    whole, merged = L.Normalization(axis=axis), L.Normalization(axis=axis)
    whole.adapt(x)
    merged.adapt(data)
    for got, want in zip(merged.get_weights(), whole.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_adapt_takes_a_pydataset_style_object_and_readapts():
    x = np.random.default_rng(1).standard_normal((10, 2)).astype("float32")

    class Batches:  # __len__ and __getitem__, as keras.utils.PyDataset
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return x[5 * i : 5 * i + 5], None

    norm = L.Normalization()
    norm.adapt(x + 10)
    norm.adapt(Batches())
    np.testing.assert_allclose(norm.get_weights()[0], x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(norm.get_weights()[1], x.var(axis=0), atol=1e-6)


def test_adapt_errors():
    norm = L.Normalization()
    with pytest.raises(ValueError, match="empty iterable"):
        norm.adapt([])
    with pytest.raises(TypeError, match="`.shape` attribute"):
        norm.adapt([[1.0, 2.0]])
    norm.adapt(np.ones((4, 3)))
    with pytest.raises(ValueError, match="incompatible shape"):
        norm.adapt(np.ones((4, 2)))
    with pytest.raises(ValueError, match="incompatible shape"):
        norm.adapt([np.ones((4, 3)), np.ones((4, 2))])
    with pytest.raises(ValueError, match="given `mean` and `variance`"):
        L.Normalization(mean=1.0, variance=2.0).adapt(np.ones((4, 3)))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mean": 1.0},
        {"mean": [1.0, 2.0], "variance": [1.0]},
        {"axis": -1, "mean": [[1.0]], "variance": [[1.0]]},
    ],
)
def test_normalization_argument_errors_are_keras(kwargs):
    with pytest.raises(ValueError) as ours:
        L.Normalization(**kwargs)
    with pytest.raises(ValueError) as theirs:
        keras.layers.Normalization(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_normalization_zero_variance_divides_by_epsilon_as_keras():
    x = np.random.default_rng(2).standard_normal((3, 2)).astype("float32")
    ours, theirs = both("Normalization", mean=[0.5, 0.0], variance=[0.0, 1.0])
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), rtol=1e-6)


def test_adapted_normalization_files_go_both_ways_with_keras(tmp_path):
    x = np.random.default_rng(3).standard_normal((16, 3)).astype("float32") * 2 - 1
    inputs = fastnn.Input((3,))
    norm = L.Normalization()
    model = fastnn.Model(inputs, L.Dense(2)(norm(inputs)))
    norm.adapt(x)
    model.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    want = model.predict(x, verbose=0)
    np.testing.assert_allclose(theirs.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    back = fastnn.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), want, rtol=1e-6, atol=1e-6)


# ---- CategoryEncoding ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count", "binary"])
@pytest.mark.parametrize("shape", [(3,), (3, 1), (2, 4)])
def test_category_encoding_matches_keras(mode, shape):
    ids = np.random.default_rng(4).integers(0, 5, shape).astype("int32")
    ours, theirs = both("CategoryEncoding", 5, output_mode=mode)
    got = ours(ids)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, keras_numpy(theirs(ids)))
    assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))


@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
@pytest.mark.parametrize("bad", [5, 9, -1])
def test_category_encoding_refuses_ids_out_of_range(mode, bad):
    layer = L.CategoryEncoding(5, output_mode=mode)
    with pytest.raises(ValueError, match=r"0 <= values < num_tokens with num_tokens=5"):
        layer(np.array([[0, bad]]))


@pytest.mark.parametrize(
    "kwargs", [{"num_tokens": None}, {"num_tokens": 0}, {"num_tokens": 3, "output_mode": "int"}]
)
def test_category_encoding_argument_errors_are_keras(kwargs):
    with pytest.raises(ValueError) as ours:
        L.CategoryEncoding(**kwargs)
    with pytest.raises(ValueError) as theirs:
        keras.layers.CategoryEncoding(**kwargs)
    assert str(ours.value) == str(theirs.value)


def test_category_encoding_in_a_model_feeds_dense():
    inputs = fastnn.Input((3,), dtype="int32")
    model = fastnn.Model(inputs, L.Dense(1)(L.CategoryEncoding(6, "count")(inputs)))
    model.compile("sgd", "mse")
    ids = np.array([[1, 1, 5], [0, 2, 2]])
    model.fit(ids, np.ones((2, 1)), verbose=0)
    assert model.predict(ids, verbose=0).shape == (2, 1)


# ---- ActivityRegularization ---------------------------------------------------------------------


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16), l1=st.sampled_from([0.0, 0.3]), l2=st.sampled_from([0.0, 0.2]))
def test_activity_gradient_includes_the_penalty_float64(seed, l1, l2):
    """backward(ctx, g) is the gradient of sum(outputs * g) + penalty: both are the loss."""
    layer = L.ActivityRegularization(l1, l2, dtype="float64")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 2, 2))
    upstream = rng.standard_normal(x.shape)

    def objective():
        out, ctx = layer.forward(x, True)
        return float(np.sum(out * upstream) + sum(layer.added_losses(ctx)))

    _, ctx = layer.forward(x, True)
    grad = layer.backward(ctx, upstream)
    np.testing.assert_allclose(grad, numeric_gradient(objective, x), rtol=1e-6, atol=1e-7)


def test_activity_penalty_on_arrays_is_keras_losses():
    x = np.random.default_rng(5).standard_normal((4, 3)).astype("float32")
    ours, theirs = both("ActivityRegularization", l1=0.01, l2=0.03)
    np.testing.assert_array_equal(ours(x), x)
    theirs(x)
    ours(x)  # a second call replaces the first's loss
    assert len(ours.losses) == len(theirs.losses) == 1
    np.testing.assert_allclose(ours.losses[0], keras_numpy(theirs.losses[0]), rtol=1e-5)


def activity_model(module, layers):
    inputs = module.Input((4,))
    hidden = layers.ActivityRegularization(0.01, 0.02)(layers.Dense(3)(inputs))
    model = module.Model(inputs, layers.Dense(1)(hidden))
    model.compile(optimizer=module.optimizers.SGD(0.1), loss="mse")
    return model


def test_activity_penalty_trains_and_evaluates_as_keras():
    rng = np.random.default_rng(6)
    x, y = rng.standard_normal((8, 4)).astype("float32"), rng.standard_normal((8, 1))
    ours, theirs = activity_model(fastnn, L), activity_model(keras, keras.layers)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(
        ours.evaluate(x, y, verbose=0), theirs.evaluate(x, y, verbose=0), rtol=1e-5
    )
    np.testing.assert_allclose(ours.train_on_batch(x, y), theirs.train_on_batch(x, y), 1e-5)
    for got, want in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_activity_penalty_inside_a_call_layer_and_on_a_tape():
    class Penalized(L.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = L.Dense(2)
            self.penalty = L.ActivityRegularization(l2=0.5)

        def call(self, x):
            return self.penalty(self.dense(x))

    x = np.random.default_rng(7).standard_normal((3, 2)).astype("float32")
    layer = Penalized()
    with fastnn.GradientTape() as tape:
        out = layer(x)
        (loss,) = layer.losses
    grads = tape.gradient(loss, layer.dense.trainable_weights)
    y = np.asarray(out)
    np.testing.assert_allclose(float(loss), 0.5 * np.sum(y**2) / 3, rtol=1e-6)
    np.testing.assert_allclose(grads[1], np.sum(y, axis=0) / 3, rtol=1e-5)  # d/d bias


# ---- random layers ------------------------------------------------------------------------------


def test_spatial_dropout_drops_whole_channels_and_scales_the_rest():
    x = np.ones((4, 5, 6), "float32")
    out = np.asarray(L.SpatialDropout1D(0.5, seed=0)(x, training=True))
    per_channel = out[:, 0, :]
    assert np.all(out == per_channel[:, None, :]), "a channel is dropped at every step or none"
    assert set(np.unique(per_channel)) <= {0.0, 2.0} and 0 < per_channel.mean() < 2
    images = np.ones((3, 2, 2, 8), "float32")
    for data_format, axes in (("channels_last", (1, 2)), ("channels_first", (2, 3))):
        layer = L.SpatialDropout2D(0.5, data_format=data_format, seed=1)
        out = np.asarray(layer(images, training=True))
        assert np.all(out.min(axis=axes) == out.max(axis=axes)), data_format


@pytest.mark.parametrize(
    "name, args",
    [
        ("SpatialDropout1D", (0.3,)),
        ("SpatialDropout2D", (0.3,)),
        ("GaussianNoise", (0.5,)),
        ("GaussianDropout", (0.3,)),
    ],
)
def test_random_layers_repeat_with_a_seed_and_are_the_identity_at_inference(name, args):
    shape = (2, 3, 4) if name == "SpatialDropout1D" else (2, 3, 4, 5)
    x = np.random.default_rng(8).standard_normal(shape).astype("float32")
    first, second = (getattr(L, name)(*args, seed=3) for _ in range(2))
    drawn = np.asarray(first(x, training=True))
    np.testing.assert_array_equal(drawn, second(x, training=True))
    assert not np.array_equal(drawn, first(x, training=True)), "each call draws anew"
    np.testing.assert_array_equal(first(x, training=False), x)


def test_gaussian_noise_and_dropout_draw_the_keras_distributions():
    x = np.full((200, 500), 2.0)
    noise = np.asarray(L.GaussianNoise(0.3, seed=0, dtype="float64")(x, training=True)) - x
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.3) < 0.01
    factor = np.asarray(L.GaussianDropout(0.2, seed=0, dtype="float64")(x, training=True)) / x
    assert abs(factor.mean() - 1) < 0.01 and abs(factor.std() - 0.5) < 0.01  # sqrt(.2 / .8)


@pytest.mark.parametrize("name", ["SpatialDropout1D", "GaussianDropout", "GaussianNoise"])
def test_rate_errors_are_keras(name):
    with pytest.raises(ValueError) as ours:
        getattr(L, name)(1.5)
    with pytest.raises(ValueError) as theirs:
        getattr(keras.layers, name)(1.5)
    assert str(ours.value) == str(theirs.value)


# ---- masks --------------------------------------------------------------------------------------

PASS_MASKS = {
    "Identity": (),
    "SpatialDropout1D": (0.5,),
    "GaussianNoise": (0.1,),
    "GaussianDropout": (0.1,),
    "ActivityRegularization": (0.1,),
    "Rescaling": (2.0,),
    "UnitNormalization": (),
}
STOP_MASKS = {
    "Permute": ((2, 1),),
    "ZeroPadding1D": (),
    "Cropping1D": (),
    "UpSampling1D": (),
}


@pytest.mark.parametrize("name", [*PASS_MASKS, *STOP_MASKS])
def test_masks_pass_where_keras_passes_them(name):
    args = PASS_MASKS.get(name, STOP_MASKS.get(name))
    ours, theirs = both(name, *args)
    x = np.ones((2, 4, 3), "float32")
    mask = np.array([[True, True, False, False], [True, False, False, False]])
    keeps = theirs.supports_masking
    assert keeps == (name in PASS_MASKS)
    got = ours.compute_mask(x, mask)
    assert got is mask if keeps else got is None


@pytest.mark.parametrize("name", list(PASS_MASKS))
def test_padded_steps_stay_masked_through_the_layer(name):
    """Embedding(mask_zero) -> layer -> LSTM: padding changes nothing at inference."""
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((None,), dtype="int32")
    hidden = getattr(L, name)(*PASS_MASKS[name])(L.Embedding(7, 3, mask_zero=True)(inputs))
    model = fastnn.Model(inputs, L.LSTM(2)(hidden))
    ids = np.array([[3, 4, 0, 0, 0], [1, 2, 5, 0, 0]])
    short = model.predict(ids[:, :3], verbose=0)
    np.testing.assert_allclose(model.predict(ids, verbose=0), short, rtol=1e-6, atol=1e-7)


# ---- shapes and arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, args, kwargs",
    [
        ("Permute", ((1, 3),), {}),
        ("ZeroPadding1D", ((1, 2, 3),), {}),
        ("ZeroPadding1D", (-1,), {}),
        ("ZeroPadding2D", ((1, 2, 3),), {}),
        ("ZeroPadding2D", (((1, 2), (3,)),), {}),
        ("Cropping1D", ((1, -1),), {}),
        ("Cropping2D", (-1,), {}),
        ("Cropping2D", ("a",), {}),
        ("UpSampling1D", (0,), {}),
        ("UpSampling2D", ((2, 0),), {}),
        ("UpSampling2D", (2,), {"data_format": "channels_middle"}),
        ("UnitNormalization", (), {"axis": "x"}),
    ],
)
def test_argument_errors_are_keras(name, args, kwargs):
    with pytest.raises((ValueError, TypeError)) as theirs:
        getattr(keras.layers, name)(*args, **kwargs)
    with pytest.raises(theirs.type) as ours:
        getattr(L, name)(*args, **kwargs)
    assert str(ours.value) == str(theirs.value)


def test_upsampling_interpolations():
    with pytest.raises(ValueError, match="Invalid value for argument `interpolation`"):
        L.UpSampling2D(interpolation="cubic")
    with pytest.raises(NotImplementedError, match="'nearest' and 'bilinear'"):
        L.UpSampling2D(interpolation="bicubic")
    assert L.UpSampling2D(interpolation="BILINEAR").interpolation == "bilinear"


@pytest.mark.parametrize(
    "layer, shape",
    [
        (L.Cropping1D((2, 2)), (None, 4, 3)),
        (L.Cropping2D(((1, 1), (0, 0))), (None, 2, 5, 3)),
        (L.Permute((2, 1)), (None, 2, 3, 4)),
        (L.ZeroPadding2D(), (None, 4, 3)),
        (L.UpSampling1D(), (None, 4)),
    ],
)
def test_shape_errors_name_the_layer_at_model_build(layer, shape):
    with pytest.raises(ValueError, match=f"{type(layer).__name__} '{layer.name}'"):
        layer(fastnn.Input(batch_shape=shape))


def test_unknown_sizes_stay_unknown():
    x = fastnn.Input((None, None, 3))
    assert L.ZeroPadding2D(1)(x).shape == (None, None, None, 3)
    assert L.UpSampling2D(2, interpolation="bilinear")(x).shape == (None, None, None, 3)
    assert L.Cropping2D(1)(x).shape == (None, None, None, 3)


@pytest.mark.parametrize("size, data_format", [((3, 2), "channels_last"), (4, "channels_first")])
def test_bilinear_upsampling_of_larger_images_matches_keras(size, data_format):
    x = np.random.default_rng(9).standard_normal((2, 7, 5, 6)).astype("float32")
    ours, theirs = both("UpSampling2D", size, data_format, "bilinear")
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), rtol=1e-5, atol=1e-6)


def test_rescaling_turns_integer_images_into_floats_as_keras():
    pixels = np.arange(24, dtype="uint8").reshape(2, 2, 2, 3)
    ours, theirs = both("Rescaling", np.array([1 / 255, 2 / 255, 3 / 255]), offset=-0.5)
    got = ours(pixels)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, keras_numpy(theirs(pixels)), rtol=1e-6)
    config = ours.get_config()
    assert config["scale"]["class_name"] == "__numpy__"
    clone = keras.layers.Rescaling.from_config(config)
    np.testing.assert_allclose(got, keras_numpy(clone(pixels)), rtol=1e-6)
    np.testing.assert_array_equal(L.Rescaling.from_config(config)(pixels), got)


def test_unit_normalization_of_zero_vectors_is_keras_and_differentiable():
    x = np.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]], "float32")
    ours, theirs = both("UnitNormalization")
    np.testing.assert_allclose(ours(x), keras_numpy(theirs(x)), atol=1e-7)
    layer = L.UnitNormalization(dtype="float64")
    x64 = x.astype("float64")
    upstream = np.random.default_rng(10).standard_normal(x.shape)
    _, ctx = layer.forward(x64, True)

    def objective():
        return float(np.sum(layer.forward(x64, True)[0] * upstream))

    grad = layer.backward(ctx, upstream)
    np.testing.assert_allclose(grad[1], numeric_gradient(objective, x64)[1], atol=1e-7)
    np.testing.assert_allclose(grad[0], upstream[0] * 1e12)  # below the bound: x / epsilon


# ---- files --------------------------------------------------------------------------------------


def every_layer_model(module):
    """A model through each layer of this family (random ones at inference: the identity)."""
    layers = module.layers
    images = module.Input((4, 5, 3))
    x = layers.ZeroPadding2D(((1, 0), (0, 2)))(layers.Rescaling(0.5, offset=0.1)(images))
    x = layers.Cropping2D(1)(layers.UpSampling2D((2, 1), interpolation="bilinear")(x))
    x = layers.SpatialDropout2D(0.3)(layers.UpSampling2D(2)(x))
    x = layers.Permute((2, 1, 3))(x)
    x = layers.Reshape((-1, 3))(x)
    x = layers.GaussianNoise(0.1)(layers.ZeroPadding1D(1)(layers.Cropping1D((2, 1))(x)))
    x = layers.GaussianDropout(0.2)(layers.SpatialDropout1D(0.2)(layers.UpSampling1D(2)(x)))
    x = layers.UnitNormalization()(layers.Normalization(mean=0.1, variance=2.0)(x))
    x = layers.ActivityRegularization(0.01)(layers.Identity()(x))
    ids = module.Input((3,), dtype="int32")
    counts = layers.Normalization()(layers.CategoryEncoding(4, output_mode="count")(ids))
    outputs = layers.Concatenate()([layers.GlobalAveragePooling1D()(x), counts])
    return module.Model([images, ids], layers.Dense(2)(outputs))


def test_a_model_of_every_layer_here_saves_and_loads_both_ways_with_keras(tmp_path):
    rng = np.random.default_rng(11)
    data = [rng.standard_normal((2, 4, 5, 3)).astype("float32"), rng.integers(0, 4, (2, 3))]
    model = every_layer_model(fastnn)
    model.layers[-1].set_weights([rng.standard_normal((7, 2)), np.zeros(2)])
    norm = next(lay for lay in model.layers if isinstance(lay, L.Normalization) and lay.weights)
    norm.adapt(L.CategoryEncoding(4, output_mode="count")(rng.integers(0, 4, (9, 3))))
    assert every_layer_model(keras).output.shape == model.output.shape
    model.save(tmp_path / "ours.keras")
    theirs = keras.saving.load_model(tmp_path / "ours.keras")
    want = model.predict(data, verbose=0)
    np.testing.assert_allclose(theirs.predict(data, verbose=0), want, rtol=1e-5, atol=1e-6)
    theirs.save(tmp_path / "theirs.keras")
    back = fastnn.models.load_model(tmp_path / "theirs.keras")
    np.testing.assert_allclose(back.predict(data, verbose=0), want, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "ours.fastnn")
    native = fastnn.models.load_model(tmp_path / "ours.fastnn")
    np.testing.assert_array_equal(native.predict(data, verbose=0), want)


def test_category_encoding_count_weights_as_keras():
    ids = np.array([[0, 1, 1], [3, 3, 2]])
    weights = np.array([[0.5, 1.0, 2.0], [1.5, 0.25, 3.0]], "float32")
    ours, theirs = both("CategoryEncoding", 4, output_mode="count")
    got = ours(ids, count_weights=weights)
    np.testing.assert_allclose(got, keras_numpy(theirs(ids, count_weights=weights)))
    assert got.dtype == np.float32
    with pytest.raises(ValueError, match="`count_weights` is not used"):
        L.CategoryEncoding(4)(ids, count_weights=weights)
    with pytest.raises(ValueError, match="count_weights must match the ids"):
        ours(ids, count_weights=weights[:, :2])
