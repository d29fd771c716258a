"""keras.utils's image helpers (load_img, img_to_array, array_to_img, save_img) and
keras.preprocessing.image.smart_resize, against Keras 3 itself on files written here."""

import io

import numpy as np
import pytest
from keras_twin import keras_module, to_numpy

import fastnn

pytest.importorskip("PIL", reason="the image helpers need Pillow (the fastnn[image] extra)")

RNG = np.random.default_rng(0)


def picture(tmp_path, mode="RGB", size=(12, 9), name="p.png"):
    """A PNG of random pixels (``size`` is PIL's (width, height)); its path."""
    from PIL import Image

    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = RNG.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("color_mode", ["rgb", "rgba", "grayscale"])
@pytest.mark.parametrize(
    "target_size, interpolation, keep",
    [(None, "nearest", False), ((6, 8), "bilinear", False), ((6, 8), "nearest", True)],
)
def test_load_img_and_img_to_array_match_keras(
    tmp_path, mode, color_mode, target_size, interpolation, keep
):
    keras = keras_module()
    path = picture(tmp_path, mode)
    arrays = []
    for K in (fastnn, keras):
        img = K.utils.load_img(
            path, color_mode, target_size, interpolation=interpolation, keep_aspect_ratio=keep
        )
        arrays.append([K.utils.img_to_array(img), K.utils.img_to_array(img, "channels_first")])
    for ours, theirs in zip(*arrays):
        assert ours.dtype == theirs.dtype == np.float32
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("scale", [True, False])
def test_array_to_img_and_save_img_match_keras(tmp_path, channels, scale):
    keras = keras_module()
    x = RNG.uniform(0, 255 if not scale else 3, (5, 7, channels)).astype("float32")
    pixels = []
    for K, name in ((fastnn, "ours.png"), (keras, "theirs.png")):
        img = K.utils.array_to_img(x, scale=scale)
        K.utils.save_img(tmp_path / name, x, scale=scale)
        pixels.append((np.asarray(img), np.asarray(K.utils.load_img(tmp_path / name, "rgba"))))
    for ours, theirs in zip(*pixels):
        np.testing.assert_array_equal(ours, theirs)


def test_smart_resize_matches_keras():
    keras = keras_module()
    x = RNG.random((2, 10, 16, 3)).astype("float32")
    ours = fastnn.preprocessing.image.smart_resize(x, (8, 8))
    theirs = to_numpy(keras.preprocessing.image.smart_resize(x, (8, 8)))
    assert ours.shape == (2, 8, 8, 3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_bad_arguments_say_what_is_expected(tmp_path):
    path = picture(tmp_path)
    with pytest.raises(ValueError, match='color_mode must be "grayscale", "rgb", or "rgba"'):
        fastnn.utils.load_img(path, color_mode="cmyk")
    with pytest.raises(ValueError, match="Invalid interpolation method cubic"):
        fastnn.utils.load_img(path, target_size=(3, 3), interpolation="cubic")
    with pytest.raises(TypeError, match="path should be path-like or io.BytesIO"):
        fastnn.utils.load_img(3)
    with pytest.raises(ValueError, match="rank 3"):
        fastnn.utils.array_to_img(np.zeros((2, 2)))
    buffer = io.BytesIO(path.read_bytes())
    assert fastnn.utils.load_img(buffer).size == (12, 9)
