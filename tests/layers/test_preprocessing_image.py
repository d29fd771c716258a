"""Image preprocessing and augmentation layers (fastnn.layers.preprocessing_image) and their
kernels (kernels/affine.py): numpy references, behaviour, Keras 3 parity (torch backend),
errors, saving and training. The per-layer harness rows are in rows_preprocessing_image.py.
"""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_twin import keras_module, to_numpy

import fastnn
from fastnn import layers
from fastnn.kernels import affine

RNG = np.random.default_rng(0)
IMAGES = (RNG.random((3, 7, 9, 2)) * 255).astype("float32")
RANDOM_LAYERS = [
    lambda: layers.RandomFlip(seed=1),
    lambda: layers.RandomRotation(0.2, seed=1),
    lambda: layers.RandomZoom(0.3, 0.2, seed=1),
    lambda: layers.RandomTranslation(0.2, 0.3, seed=1),
    lambda: layers.RandomContrast(0.4, seed=1),
    lambda: layers.RandomBrightness(0.3, seed=1),
]


# ---- kernels against numpy written from the definition ---------------------------------------


def reference_index(i: int, size: int, mode: str):
    """(index, inside) of one neighbour, from the fill modes' definitions."""
    if mode == "wrap":
        return i % size, True
    if mode == "reflect":  # d c b a | a b c d | d c b a
        i = i % (2 * size)
        return (i if i < size else 2 * size - 1 - i), True
    return min(max(i, 0), size - 1), (0 <= i < size or mode == "nearest")


def reference_affine(x, coef, bilinear, mode, fill):
    n, h, w, c = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for b in range(n):
        a0, a1, a2, b0, b1, b2 = coef[b].astype(np.float64)
        for i in range(h):
            for j in range(w):
                sx, sy = a0 * j + a1 * i + a2, b0 * j + b1 * i + b2
                if bilinear:
                    y0, x0 = int(np.floor(sy)), int(np.floor(sx))
                    fy, fx = sy - y0, sx - x0
                    taps = [(y0, x0, (1 - fy) * (1 - fx)), (y0, x0 + 1, (1 - fy) * fx)]
                    taps += [(y0 + 1, x0, fy * (1 - fx)), (y0 + 1, x0 + 1, fy * fx)]
                else:
                    taps = [(int(np.round(sy)), int(np.round(sx)), 1.0)]
                for yy, xx, weight in taps:
                    (yi, vy), (xi, vx) = reference_index(yy, h, mode), reference_index(xx, w, mode)
                    out[b, i, j] += weight * (x[b, yi, xi] if vy and vx else fill)
    return out


@settings(max_examples=8, deadline=None)
@given(
    st.sampled_from(list(affine.FILL_MODES)),
    st.booleans(),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**16),
)
def test_affine_kernel_matches_the_reference_and_its_backward_is_the_adjoint(
    mode, bilinear, dtype, seed
):
    rng = np.random.default_rng(seed)
    n, h, w, c = 2, int(rng.integers(1, 6)), int(rng.integers(1, 6)), 2
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    angle = rng.uniform(-np.pi, np.pi, n)
    scale = rng.uniform(0.5, 2.0, n)
    coef = np.stack(
        [
            scale * np.cos(angle),
            -scale * np.sin(angle),
            rng.uniform(-3, 3, n),
            scale * np.sin(angle),
            scale * np.cos(angle),
            rng.uniform(-3, 3, n),
        ],
        1,
    )
    coef = np.round(coef * 64) / 64 + 1 / 1024  # no coordinate on a tie or a pixel's edge
    coef = coef.astype(dtype)
    out = np.full_like(x, np.nan)
    code = affine.FILL_MODES[mode]
    affine.affine_forward(x, coef, bilinear, code, dtype(0.5), out)
    np.testing.assert_allclose(out, reference_affine(x, coef, bilinear, mode, 0.5), 1e-5, 1e-5)
    # <forward(x), g> == <x, backward(g)> for the linear part (fill 0)
    affine.affine_forward(x, coef, bilinear, code, dtype(0), out)
    g = rng.standard_normal(x.shape).astype(dtype)
    grad_x = np.full_like(x, np.nan)
    affine.affine_backward(g, coef, bilinear, code, grad_x)
    np.testing.assert_allclose(np.vdot(out, g), np.vdot(x, grad_x), rtol=1e-4, atol=1e-4)
    assert grad_x.dtype == dtype


def test_nearest_taps_are_half_pixel_centres():
    for n, m in [(4, 7), (7, 4), (5, 5), (3, 1), (1, 3)]:
        want = [min(int(np.floor((i + 0.5) * n / m)), n - 1) for i in range(m)]
        assert affine.nearest_taps(n, m).tolist() == want


# ---- behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize("make", RANDOM_LAYERS)
def test_random_layers_are_the_identity_at_inference_and_augment_in_training(make):
    layer = make()
    np.testing.assert_array_equal(layer(IMAGES, training=False), IMAGES)
    assert not np.allclose(layer(IMAGES, training=True), IMAGES)
    assert not np.allclose(make()(IMAGES), IMAGES)  # alone, as Keras's: training by default
    model = fastnn.Sequential([fastnn.Input(IMAGES.shape[1:]), make()])
    np.testing.assert_array_equal(model.predict(IMAGES, verbose=0), IMAGES)


def test_flips_are_exact_and_drawn_per_image():
    x = RNG.random((32, 3, 4, 2)).astype("float32")
    for mode, flip in [
        ("horizontal", lambda a: a[:, ::-1]),
        ("vertical", lambda a: a[::-1]),
        ("horizontal_and_vertical", lambda a: a[::-1, ::-1]),
    ]:
        out = np.asarray(layers.RandomFlip(mode, seed=3)(x, training=True))
        flipped = [np.array_equal(o, flip(i)) for o, i in zip(out, x)]
        kept = [np.array_equal(o, i) for o, i in zip(out, x)]
        assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)


def test_flip_unbatched_and_channels_first():
    image = RNG.random((3, 4, 2)).astype("float32")
    out = np.asarray(layers.RandomFlip("horizontal", seed=0)(image, training=True))
    assert out.shape == image.shape
    assert np.array_equal(out, image) or np.array_equal(out, image[:, ::-1])
    x = RNG.random((8, 2, 3, 4)).astype("float32")
    out = np.asarray(layers.RandomFlip("horizontal", data_format="channels_first")(x))
    assert all(np.array_equal(o, i) or np.array_equal(o, i[:, :, ::-1]) for o, i in zip(out, x))


def test_crops_are_exact():
    x = RNG.random((2, 7, 9, 3)).astype("float32")
    np.testing.assert_array_equal(layers.CenterCrop(3, 4)(x), x[:, 2:5, 2:6])
    crop = layers.RandomCrop(3, 4, seed=0)
    out = np.asarray(crop(x, training=True))
    windows = [x[:, i : i + 3, j : j + 4] for i in range(5) for j in range(6)]
    assert any(np.array_equal(out, w) for w in windows)
    # at inference (Keras's docstring): the largest centred window of the aspect ratio, resized
    centre = layers.Resizing(3, 4, crop_to_aspect_ratio=True)(x)
    np.testing.assert_array_equal(crop(x, training=False), centre)
    model = fastnn.Sequential([fastnn.Input((7, 9, 3)), layers.RandomCrop(3, 4)])
    assert model.output_shape == (None, 3, 4, 3)
    np.testing.assert_array_equal(model.predict(x, verbose=0), centre)


def test_quarter_turn_is_rot90_counter_clockwise():
    x = RNG.random((2, 5, 5, 3)).astype("float32")
    out = np.asarray(layers.RandomRotation((0.25, 0.25))(x, training=True))
    np.testing.assert_allclose(out, np.rot90(x, 1, axes=(1, 2)), atol=1e-5)
    keras = keras_module()
    theirs = keras.layers.RandomRotation((0.25, 0.25))(x, training=True)
    np.testing.assert_allclose(out, to_numpy(theirs), atol=1e-5)


def test_integer_translation_with_wrap_is_a_roll():
    x = RNG.random((2, 4, 5, 1)).astype("float32")
    out = layers.RandomTranslation((0.25, 0.25), (-0.4, -0.4), "wrap")(x, training=True)
    np.testing.assert_allclose(out, np.roll(x, (1, -2), axis=(1, 2)), atol=1e-6)


def test_seed_gives_the_same_augmentation_and_shapes_are_kept():
    a = layers.RandomZoom(0.3, seed=5)(IMAGES, training=True)
    b = layers.RandomZoom(0.3, seed=5)(IMAGES, training=True)
    np.testing.assert_array_equal(a, b)
    assert layers.RandomRotation(0.1).compute_output_shape((None, 7, 9, 2)) == (None, 7, 9, 2)
    assert layers.Resizing(4, 5).compute_output_shape((None, 7, 9, 2)) == (None, 4, 5, 2)
    assert layers.Resizing(4, 5).compute_output_shape((7, 9, 2)) == (4, 5, 2)
    shape = layers.CenterCrop(4, 5, data_format="channels_first").compute_output_shape
    assert shape((None, 2, 7, 9)) == (None, 2, 4, 5)
    assert np.asarray(layers.Resizing(4, 5)(IMAGES[0])).shape == (4, 5, 2)


def test_contrast_and_brightness_clip_to_the_value_range():
    x = RNG.random((4, 5, 5, 3)).astype("float32")
    out = np.asarray(layers.RandomBrightness((0.5, 0.5), value_range=(0, 1))(x, training=True))
    np.testing.assert_allclose(out, np.minimum(x + 0.5, 1.0), atol=1e-6)
    out = np.asarray(layers.RandomContrast((-1.0, 1.0), value_range=(0, 1))(x, training=True))
    mean = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(out, np.clip((x - mean) * 2 + mean, 0, 1), atol=1e-6)


# ---- Keras parity ------------------------------------------------------------------------------


def assert_like_keras(ours, theirs, x, training=True, atol=1e-5):
    want = to_numpy(theirs(x, training=training))
    np.testing.assert_allclose(ours(x, training=training), want, rtol=1e-5, atol=atol)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(4, 4), (11, 5), (3, 13)])
@pytest.mark.parametrize(
    "options", [{}, {"crop_to_aspect_ratio": True}, {"pad_to_aspect_ratio": True}]
)
def test_resizing_matches_keras(interpolation, size, options):
    keras = keras_module()
    x = IMAGES / 255
    args = dict(interpolation=interpolation, **options)
    assert_like_keras(layers.Resizing(*size, **args), keras.layers.Resizing(*size, **args), x)


@pytest.mark.parametrize("size", [(4, 4), (7, 9), (10, 3), (2, 12)])
def test_center_crop_matches_keras(size):
    keras = keras_module()
    x = IMAGES / 255
    assert_like_keras(layers.CenterCrop(*size), keras.layers.CenterCrop(*size), x, False)
    cf = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    ours = layers.CenterCrop(*size, data_format="channels_first")
    assert_like_keras(ours, keras.layers.CenterCrop(*size, data_format="channels_first"), cf)


@pytest.mark.parametrize("fill_mode", ["reflect", "wrap", "constant", "nearest"])
@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_fixed_affine_augmentations_match_keras(fill_mode, interpolation):
    keras = keras_module()
    x = IMAGES / 255
    args = dict(fill_mode=fill_mode, interpolation=interpolation, fill_value=0.25)
    for name, factors in [
        ("RandomZoom", ((0.2, 0.2),)),
        ("RandomZoom", ((-0.3, -0.3), (0.4, 0.4))),
        ("RandomTranslation", ((0.3, 0.3), (-0.2, -0.2))),
        ("RandomRotation", ((0.1, 0.1),)),
    ]:
        ours, theirs = getattr(layers, name), getattr(keras.layers, name)
        assert_like_keras(ours(*factors, **args), theirs(*factors, **args), x)


def test_fixed_color_augmentations_match_keras():
    keras = keras_module()
    for args in [((-0.3, 0.3),), ((-0.5, 0.5), (0, 1))]:  # contrast factor 1 + 0.3, 1 + 0.5
        x = IMAGES if len(args) == 1 else IMAGES / 255
        assert_like_keras(layers.RandomContrast(*args), keras.layers.RandomContrast(*args), x)
    for args in [((0.2, 0.2),), ((-0.3, -0.3), (0, 1))]:
        x = IMAGES if len(args) == 1 else IMAGES / 255
        assert_like_keras(layers.RandomBrightness(*args), keras.layers.RandomBrightness(*args), x)


def test_configs_load_in_keras_and_back():
    keras = keras_module()
    made = [
        layers.Resizing(5, 6, "nearest", crop_to_aspect_ratio=True),
        layers.CenterCrop(3, 4),
        layers.RandomFlip("horizontal", seed=2),
        layers.RandomCrop(3, 4, seed=1),
        layers.RandomRotation((-0.2, 0.1), fill_mode="constant", fill_value=1.0),
        layers.RandomZoom(0.2, (-0.1, 0.3), interpolation="nearest"),
        layers.RandomTranslation(0.1, (0.2, 0.3), fill_mode="wrap"),
        layers.RandomContrast(0.3, value_range=(0, 1)),
        layers.RandomBrightness((-0.1, 0.2), value_range=(1, 0)),
    ]
    for layer in made:
        config = json.loads(json.dumps(layer.get_config()))
        theirs = getattr(keras.layers, type(layer).__name__).from_config(config)
        config = json.loads(json.dumps(theirs.get_config()))
        config["dtype"] = layer.dtype  # Keras writes a DTypePolicy (fastnn's loader reads it)
        back = type(layer).from_config(config)
        assert back.get_config() == layer.get_config(), type(layer).__name__


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: layers.RandomContrast(-0.1), "factor"),
        (lambda: layers.RandomRotation(1.5), "factor"),
        (lambda: layers.RandomRotation((0.1, 0.2, 0.3)), "factor"),
        (lambda: layers.RandomRotation(0.1, fill_mode="mirror"), "fill_mode"),
        (lambda: layers.RandomZoom(0.1, interpolation="bicubic"), "interpolation"),
        (lambda: layers.RandomZoom(-1.0), "height_factor"),
        (lambda: layers.RandomTranslation(0.1, 1.2), "width_factor"),
        (lambda: layers.RandomFlip("diagonal"), "mode"),
        (lambda: layers.RandomBrightness(0.1, value_range=5), "value_range"),
        (lambda: layers.Resizing(0, 4), "height"),
        (lambda: layers.Resizing(4, 4, interpolation="bicubic"), "bicubic"),
        (lambda: layers.Resizing(4, 4, crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), "One"),
        (lambda: layers.CenterCrop(3, -1), "width"),
    ],
)
def test_bad_arguments_fail_in_the_constructor_naming_the_layer(make, words):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert words.lower() in message.lower()
    assert any(name in message for name in ("Random", "Resizing", "CenterCrop")), message


def test_rank_errors_name_the_layer():
    with pytest.raises(ValueError, match="RandomFlip"):
        layers.RandomFlip()(np.zeros((2, 3), "float32"))


# ---- models: training, saving ----------------------------------------------------------------


def augmented_model():
    return fastnn.Sequential(
        [
            fastnn.Input((8, 8, 3)),
            layers.Resizing(10, 10),
            layers.RandomFlip("horizontal", seed=0),
            layers.RandomRotation(0.1, seed=1),
            layers.RandomZoom(0.1, seed=2),
            layers.RandomTranslation(0.1, 0.1, seed=3),
            layers.RandomContrast(0.2, value_range=(0, 1), seed=4),
            layers.RandomBrightness(0.1, value_range=(0, 1), seed=5),
            layers.RandomCrop(8, 8, seed=6),
            layers.Conv2D(4, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2),
        ]
    )


def test_augmented_model_trains_with_fit():
    fastnn.utils.set_random_seed(0)
    x = RNG.random((32, 8, 8, 3)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int32")
    model = augmented_model()
    model.compile("adam", fastnn.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.predict(x, verbose=0).shape == (32, 2)


def test_model_with_augmentations_saves_and_loads(tmp_path):
    x = RNG.random((4, 8, 8, 3)).astype("float32")
    model = augmented_model()
    want = model.predict(x, verbose=0)
    for name in ("m.fastnn", "m.keras"):
        model.save(tmp_path / name)
        loaded = fastnn.models.load_model(tmp_path / name)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), want)
        configs = [layer.get_config() for layer in loaded.layers]
        assert configs == [layer.get_config() for layer in model.layers]


def test_a_model_of_augmentations_called_on_arrays_augments_as_keras():
    """keras-io's ``data_augmentation(images)``: a model called without ``training`` leaves it
    to each layer, whose default augments; predict and training=False do not."""
    augment = fastnn.Sequential(
        [fastnn.Input((8, 8, 3)), layers.RandomFlip("horizontal", seed=1), layers.Dropout(0.5)]
    )
    x = np.random.default_rng(0).random((16, 8, 8, 3)).astype("float32")
    flipped = augment(x)
    assert not np.array_equal(flipped, x)
    assert all(np.array_equal(f, i) or np.array_equal(f, i[:, ::-1]) for f, i in zip(flipped, x))
    np.testing.assert_array_equal(augment(x, training=False), x)
    np.testing.assert_array_equal(augment.predict(x, verbose=0), x)
