"""fastnn.ops.image: forward against keras.ops.image (torch backend) and written references,
float64 gradients against finite differences, and errors naming the op and the shapes."""

from __future__ import annotations

import numpy as np
import pytest
from test_ops_gradients import check_grads

from fastnn import ops
from fastnn.ops import image

RNG = np.random.default_rng(0)
IM = RNG.standard_normal((2, 5, 7, 3)).astype(np.float32)
TRANSFORMS = np.array(
    [[0.9, -0.2, 1.013, 0.3, 1.1, -0.52, 0, 0], [1, 0, 0.5, 0, 1, 0.3, 0, 0]], np.float32
)  # no exact half-pixel ties, where float rounding order decides 'nearest'


SQUARE = RNG.standard_normal((2, 6, 6, 3)).astype(np.float32)
RGB = RNG.random((2, 5, 6, 3)).astype(np.float32)
VOLUMES = RNG.standard_normal((2, 4, 5, 6, 2)).astype(np.float32)
START = np.array([[0, 0], [5, 0], [5, 5], [0, 5]], np.float32)
END = np.array([[0.5, 0.2], [5.3, 0.4], [4.6, 5.2], [0.1, 4.7]], np.float32)
COORDS = np.stack(
    np.meshgrid(np.linspace(-1.3, 6.7, 7), np.linspace(-0.6, 5.9, 5), indexing="ij")
).astype(np.float32)


def _img(o):
    return image if o is image else o.image


PARITY = {
    "resize_up": lambda o: _img(o).resize(IM, (8, 11)),
    "resize_down": lambda o: _img(o).resize(IM, (3, 4)),
    "resize_down_antialias": lambda o: _img(o).resize(IM, (3, 4), antialias=True),
    "resize_up_antialias": lambda o: _img(o).resize(IM, (9, 13), antialias=True),
    "resize_mixed_antialias": lambda o: _img(o).resize(IM, (2, 13), antialias=True),
    "resize_nearest_up": lambda o: _img(o).resize(IM, (8, 11), "nearest"),
    "resize_bicubic_mixed": lambda o: _img(o).resize(IM, (2, 13), "bicubic"),
    "resize_bicubic_antialias_up": lambda o: _img(o).resize(IM, (8, 11), "bicubic",
                                                           antialias=True),
    "resize_bicubic_antialias_down": lambda o: _img(o).resize(IM, (3, 4), "bicubic",
                                                             antialias=True),
    "resize_nearest_down": lambda o: _img(o).resize(IM, (3, 4), "nearest"),
    "resize_crop_to_aspect": lambda o: _img(o).resize(IM, (4, 4), crop_to_aspect_ratio=True),
    "resize_pad_to_aspect": lambda o: _img(o).resize(
        IM, (6, 4), pad_to_aspect_ratio=True, fill_value=2.0),
    "resize_single_channels_first": lambda o: _img(o).resize(
        IM[0].transpose(2, 0, 1), (6, 4), data_format="channels_first"),
    "pad_images": lambda o: _img(o).pad_images(IM, 1, 2, target_height=8, target_width=10),
    "pad_single_image": lambda o: _img(o).pad_images(
        IM[0], top_padding=1, bottom_padding=0, left_padding=0, right_padding=3),
    "crop_images": lambda o: _img(o).crop_images(IM, 1, 2, target_height=3, target_width=4),
    "crop_single_image": lambda o: _img(o).crop_images(
        IM[0], top_cropping=1, bottom_cropping=1, left_cropping=2, right_cropping=0),
    "extract_patches": lambda o: _img(o).extract_patches(IM, 2),
    "extract_patches_same": lambda o: _img(o).extract_patches(
        IM, (2, 3), strides=1, padding="same"),
    "rgb_to_grayscale": lambda o: _img(o).rgb_to_grayscale(IM),
    "rgb_to_grayscale_first": lambda o: _img(o).rgb_to_grayscale(
        IM.transpose(0, 3, 1, 2), data_format="channels_first"),
    "affine_bilinear": lambda o: _img(o).affine_transform(IM, TRANSFORMS),
    "affine_bilinear_fill": lambda o: _img(o).affine_transform(IM, TRANSFORMS, fill_value=0.5),
    "affine_nearest": lambda o: _img(o).affine_transform(IM, TRANSFORMS, "nearest"),
    "affine_fill_nearest": lambda o: _img(o).affine_transform(IM, TRANSFORMS, fill_mode="nearest"),
    "affine_fill_wrap": lambda o: _img(o).affine_transform(IM, TRANSFORMS, fill_mode="wrap"),
    "affine_fill_mirror": lambda o: _img(o).affine_transform(
        IM, TRANSFORMS, "nearest", fill_mode="mirror"),
    "affine_fill_reflect": lambda o: _img(o).affine_transform(IM, TRANSFORMS, fill_mode="reflect"),
    # Keras's torch gaussian_blur reads data_format=None as channels_first: given explicitly
    "gaussian_blur": lambda o: _img(o).gaussian_blur(SQUARE, data_format="channels_last"),
    "gaussian_blur_sizes": lambda o: _img(o).gaussian_blur(
        SQUARE, (5, 3), (1.5, 0.7), data_format="channels_last"),
    "gaussian_blur_first": lambda o: _img(o).gaussian_blur(
        SQUARE.transpose(0, 3, 1, 2), data_format="channels_first"),
    "sobel_edges": lambda o: _img(o).sobel_edges(SQUARE),
    "sobel_edges_first": lambda o: _img(o).sobel_edges(
        SQUARE.transpose(0, 3, 1, 2), data_format="channels_first"),
    "rgb_to_hsv": lambda o: _img(o).rgb_to_hsv(RGB),
    "hsv_to_rgb": lambda o: _img(o).hsv_to_rgb(RGB),
    "rgb_to_hsv_first": lambda o: _img(o).rgb_to_hsv(
        RGB[0].transpose(2, 0, 1), data_format="channels_first"),
    "ssim": lambda o: _img(o).ssim(RGB, RGB * 0.8 + 0.1, filter_size=3),
    "ssim_single": lambda o: _img(o).ssim(RGB[0], RGB[1], filter_size=5),
    "extract_patches_3d": lambda o: _img(o).extract_patches_3d(VOLUMES, 2),
    "extract_patches_3d_same": lambda o: _img(o).extract_patches_3d(
        VOLUMES, (2, 3, 2), strides=1, padding="same"),
    # square images: Keras's torch backend swaps the grid's axes on others
    "perspective_transform": lambda o: _img(o).perspective_transform(SQUARE, START, END),
    "perspective_nearest_fill": lambda o: _img(o).perspective_transform(
        SQUARE, START, END, "nearest", fill_value=1.0),
    "map_coordinates_0": lambda o: _img(o).map_coordinates(SQUARE[0, :, :, 0], COORDS, 0),
    "map_coordinates_1_fill": lambda o: _img(o).map_coordinates(
        SQUARE[0, :, :, 0], COORDS, 1, fill_value=2.0),
    "map_coordinates_nearest": lambda o: _img(o).map_coordinates(
        SQUARE[0, :, :, 0], COORDS, 1, "nearest"),
    "map_coordinates_wrap": lambda o: _img(o).map_coordinates(
        SQUARE[0, :, :, 0], COORDS, 1, "wrap"),
    "map_coordinates_mirror": lambda o: _img(o).map_coordinates(
        SQUARE[0, :, :, 0], COORDS, 1, "mirror"),
    "map_coordinates_reflect": lambda o: _img(o).map_coordinates(
        SQUARE[0, :, :, 0], COORDS, 0, "reflect"),
    "scale_and_translate_linear": lambda o: _img(o).scale_and_translate(
        IM, (2, 9, 5, 3), np.array([1.5, 0.7], "float32"), np.array([0.3, -1.0], "float32"),
        (1, 2), "linear"),
    "scale_and_translate_cubic": lambda o: _img(o).scale_and_translate(
        IM, (2, 3, 12, 3), np.array([0.5, 1.7], "float32"), np.array([0.0, 0.5], "float32"),
        (1, 2), "cubic"),
    "scale_and_translate_lanczos3_no_antialias": lambda o: _img(o).scale_and_translate(
        IM, (2, 3, 12, 3), np.array([0.5, 1.7], "float32"), np.array([0.0, 0.5], "float32"),
        (1, 2), "lanczos3", antialias=False),
    "scale_and_translate_lanczos5_one_axis": lambda o: _img(o).scale_and_translate(
        IM, (2, 5, 4, 3), np.array([0.6], "float32"), np.array([0.2], "float32"), (2,),
        "lanczos5"),
    "scale_and_translate_uint8": lambda o: _img(o).scale_and_translate(
        (RGB[:1] * 255).astype("uint8"), (1, 8, 9, 3), np.array([1.6, 1.6]),
        np.array([0.0, 0.0]), (1, 2), "bicubic"),
}  # fmt: skip


@pytest.mark.parametrize("name", PARITY)
def test_forward_matches_keras(keras_ops, name):
    ours, theirs = PARITY[name](image), keras_ops.convert_to_numpy(PARITY[name](keras_ops))
    assert np.shape(ours) == theirs.shape
    assert np.result_type(ours) == theirs.dtype, f"dtype {np.result_type(ours)} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_resize_references():
    x = RNG.standard_normal((1, 4, 4, 1))
    np.testing.assert_allclose(image.resize(x, (4, 4)), x, atol=1e-12)
    doubled = image.resize(x, (8, 8), "nearest")
    np.testing.assert_array_equal(doubled, x.repeat(2, 1).repeat(2, 2))
    halved = image.resize(x, (2, 2))  # half-pixel centres: the mean of each 2x2 block
    np.testing.assert_allclose(halved, x.reshape(1, 2, 2, 2, 2, 1).mean((2, 4)), atol=1e-12)


def test_projective_transform_and_identity():
    x = RNG.standard_normal((1, 4, 5, 2))
    identity = np.array([1, 0, 0, 0, 1, 0, 0, 0.0])
    np.testing.assert_allclose(image.affine_transform(x, identity), x, atol=1e-12)
    shifted = image.affine_transform(x, [1, 0, 1, 0, 1, 0, 0, 0.0], fill_value=7.0)
    np.testing.assert_allclose(shifted[:, :, :-1], x[:, :, 1:], atol=1e-12)
    np.testing.assert_allclose(shifted[:, :, -1], 7.0)
    # a projective row (c0, c1): output (x, y) reads (x / k, y / k), k = c0 x + 1
    bent = image.affine_transform(x, [1, 0, 0, 0, 1, 0, 1.0, 0], "nearest")
    ys, xs = np.meshgrid(np.arange(4), np.arange(5), indexing="ij")
    rows, cols = np.round(ys / (xs + 1)).astype(int), np.round(xs / (xs + 1)).astype(int)
    np.testing.assert_allclose(bent[0, :, :, 0], x[0, rows, cols, 0])


GRADIENTS = {
    "resize_bilinear": lambda x: image.resize(x, (5, 3)),
    "resize_antialias": lambda x: image.resize(x, (2, 3), antialias=True),
    "resize_nearest": lambda x: image.resize(x, (6, 2), "nearest"),
    "resize_bicubic_antialias": lambda x: image.resize(x, (3, 6), "bicubic", antialias=True),
    "resize_pad_aspect": lambda x: image.resize(x, (2, 4), pad_to_aspect_ratio=True),
    "pad_images": lambda x: image.pad_images(x, 1, 0, 1, 2),
    "crop_images": lambda x: image.crop_images(x, 1, 1, target_height=2, target_width=2),
    "extract_patches": lambda x: image.extract_patches(x, 2, strides=1),
    "rgb_to_grayscale": lambda x: image.rgb_to_grayscale(x),
    "affine_bilinear": lambda x: image.affine_transform(x, TRANSFORMS[:1].astype(np.float64)),
    "affine_reflect": lambda x: image.affine_transform(
        x, TRANSFORMS[1:].astype(np.float64), fill_mode="reflect"
    ),
    "perspective": lambda x: image.perspective_transform(x, START[:, ::-1] * 0.6, END * 0.6),
    "gaussian_blur": lambda x: image.gaussian_blur(x, (3, 3), (1.0, 0.5)),
    "sobel_edges": lambda x: image.sobel_edges(x),
    "hsv_round_trip": lambda x: image.hsv_to_rgb(image.rgb_to_hsv(ops.sigmoid(x))),
    "ssim": lambda x: image.ssim(x, ops.tanh(x), filter_size=3),
    "map_coordinates": lambda x: image.map_coordinates(x[0, :, :, 0], COORDS * 0.55, 1, "mirror"),
    "scale_and_translate": lambda x: image.scale_and_translate(
        x, (1, 3, 6, 3), np.array([0.7, 1.4]), np.array([0.2, -0.3]), (1, 2), "cubic"
    ),
}


@pytest.mark.parametrize("name", GRADIENTS)
def test_gradients(name):
    rng = np.random.default_rng(3)
    check_grads(GRADIENTS[name], rng.standard_normal((1, 4, 4, 3)), rng=rng)


def test_hsv_round_trip_and_perspective_identity():
    np.testing.assert_allclose(image.hsv_to_rgb(image.rgb_to_hsv(RGB)), RGB, atol=1e-6)
    x = RNG.standard_normal((1, 4, 5, 2))
    corners = np.array([[0, 0], [4, 0], [4, 3], [0, 3]], np.float64)
    np.testing.assert_allclose(image.perspective_transform(x, corners, corners), x, atol=1e-9)
    moved = image.perspective_transform(x, corners, corners - [1, 0])  # end = start shifted
    np.testing.assert_allclose(moved[:, :, :-1], x[:, :, 1:], atol=1e-9)


ERRORS = {
    "resize_rank": (lambda: image.resize(IM[0, 0], (2, 2)), r"resize.*\(7, 3\)"),
    "resize_method": (lambda: image.resize(IM, (2, 2), "lanczos3"), "resize.*interpolation"),
    "pad_two_of": (lambda: image.pad_images(IM, 1, 1, 1, 1, 5, 5), "pad_images.*exactly two"),
    "pad_negative": (lambda: image.pad_images(IM, 1, 1, target_height=3, target_width=9),
                     r"pad_images.*bottom_padding.*\(2, 5, 7, 3\)"),
    "crop_too_big": (lambda: image.crop_images(IM, 1, 1, target_height=9, target_width=2),
                     r"crop_images.*\(2, 5, 7, 3\)"),
    "grayscale_channels": (lambda: image.rgb_to_grayscale(IM[..., :2]),
                           r"rgb_to_grayscale.*\(2, 5, 7, 2\)"),
    "affine_transform_shape": (lambda: image.affine_transform(IM, np.zeros((3, 8))),
                               r"affine_transform.*\(3, 8\).*\(2, 5, 7, 3\)"),
    "perspective_points": (lambda: image.perspective_transform(IM, START[:3], END),
                           r"perspective_transform.*\(3, 2\) and \(4, 2\)"),
    "map_coordinates": (lambda: image.map_coordinates(IM[0], COORDS, 1),
                        r"map_coordinates.*\(2, 7, 5\).*\(5, 7, 3\)"),
    "ssim": (lambda: image.ssim(RGB, RGB[:1]), r"ssim.*\(2, 5, 6, 3\) and \(1, 5, 6, 3\)"),
    "rgb_to_hsv": (lambda: image.rgb_to_hsv(IM[..., :2]), r"rgb_to_hsv.*\(2, 5, 7, 2\)"),
    "sobel_edges": (lambda: image.sobel_edges(IM[0]), r"sobel_edges.*\(5, 7, 3\)"),
    "scale_and_translate": (lambda: image.scale_and_translate(IM, (2, 3), [1.0], [0.0], (1,),
                                                              "linear"),
                            r"scale_and_translate.*\(2, 3\).*\(2, 5, 7, 3\)"),
    "scale_and_translate_method": (lambda: image.scale_and_translate(
        IM, IM.shape, [1.0], [0.0], (1,), "area"), "scale_and_translate.*method"),
}  # fmt: skip


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_op_and_shapes(name):
    fn, match = ERRORS[name]
    with pytest.raises(ValueError, match=match):
        fn()


def test_elastic_transform(keras_ops):
    """Random fields cannot match Keras's draws: shape and dtype as Keras, alpha=0 the
    identity, a seed reproducible, the images differentiable."""
    ours = image.elastic_transform(IM, seed=1)
    theirs = keras_ops.convert_to_numpy(keras_ops.image.elastic_transform(IM, seed=1))
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_allclose(image.elastic_transform(IM, alpha=0.0, seed=1), IM, atol=1e-6)
    np.testing.assert_array_equal(ours, image.elastic_transform(IM, seed=1))
    assert not np.allclose(ours, image.elastic_transform(IM, seed=2))
    nearest = image.elastic_transform(IM, 3.0, 1.0, "nearest", seed=0)
    assert np.isin(nearest, IM).all()  # nearest reads pixels, never blends them
    rng = np.random.default_rng(7)
    check_grads(lambda x: image.elastic_transform(x, 2.0, 1.0, seed=5), rng.standard_normal(
        (1, 4, 4, 2)), rng=rng)  # fmt: skip


UINT8 = (RGB * 255).astype(np.uint8)
INTEGER_IMAGES = {
    "resize": lambda o, x: _img(o).resize(x, (4, 5)),
    "resize_nearest": lambda o, x: _img(o).resize(x, (8, 9), "nearest"),
    "resize_antialias": lambda o, x: _img(o).resize(x, (3, 3), antialias=True),
    "resize_bicubic_clipped": lambda o, x: _img(o).resize(x, (9, 12), "bicubic"),
    "extract_patches": lambda o, x: _img(o).extract_patches(x, 2),
    "rgb_to_grayscale": lambda o, x: _img(o).rgb_to_grayscale(x),
    "affine_transform": lambda o, x: _img(o).affine_transform(x, TRANSFORMS),
    "sobel_edges": lambda o, x: _img(o).sobel_edges(x),
    "perspective_transform": lambda o, x: _img(o).perspective_transform(
        x[:, :5, :5], START * 0.8, END * 0.8
    ),
}


@pytest.mark.parametrize("dtype", ["uint8", "int32"])
@pytest.mark.parametrize("name", INTEGER_IMAGES)
def test_integer_images_keep_their_dtype(keras_ops, name, dtype):
    """As Keras's torch backend: rounded (truncated for grayscale, wrapped for sobel's
    integer arithmetic); torch's own uint8 bilinear kernel rounds differently by at most 1."""
    x = (UINT8 if dtype == "uint8" else (RGB * 1000).astype(np.int32))[:, :5, :6]
    ours = INTEGER_IMAGES[name](image, x)
    theirs = keras_ops.convert_to_numpy(INTEGER_IMAGES[name](keras_ops, x))
    assert ours.dtype == theirs.dtype == np.dtype(dtype) and ours.shape == theirs.shape
    np.testing.assert_allclose(ours.astype(np.int64), theirs.astype(np.int64), atol=1)
