"""Transposed, depthwise and separable convolutions in models, beside Keras 3 (on torch): a
DCGAN-style generator and a MobileNet / U-Net-style network trained on the same weights, output
shapes against Keras's arithmetic, unknown spatial sizes, Keras files both ways, and errors."""

import itertools

import numpy as np
import pytest
from keras_twin import assert_same_weights, copy_weights, keras_module

import fastnn
from fastnn import layers as L
from fastnn.saving.keras_format import load_keras_model, save_keras_model

LATENT = 6


def generator(K):
    """A DCGAN generator: Dense -> Reshape -> stride-2 Conv2DTranspose steps -> a tanh image."""
    layers = K.layers
    return K.Sequential(
        [
            K.Input((LATENT,)),
            layers.Dense(3 * 3 * 8, use_bias=False),
            layers.Activation("relu"),
            layers.Reshape((3, 3, 8)),
            layers.Conv2DTranspose(6, 4, strides=2, padding="same", use_bias=False),
            layers.Activation("relu"),
            layers.Conv2DTranspose(4, 4, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(1, 3, strides=1, padding="same", activation="tanh"),
        ]
    )


def mobile_unet(K):
    """Down with depthwise-separable steps (MobileNet), up with a transposed conv and a skip
    (U-Net), and the 1-D layers on the way out."""
    layers = K.layers
    image = K.Input((8, 8, 3))
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu")(image)
    x = layers.Conv2D(6, 1, activation="relu")(x)
    down = layers.SeparableConv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    up = layers.Conv2DTranspose(6, 2, strides=2, activation="relu")(down)
    x = layers.Concatenate()([x, up])
    x = layers.Reshape((8, 8 * 12))(x)
    x = layers.SeparableConv1D(5, 3, padding="same", activation="relu")(x)
    x = layers.DepthwiseConv1D(3, strides=2)(x)
    x = layers.Conv1DTranspose(4, 3, strides=2, padding="same")(x)
    return K.Model(image, layers.Dense(2)(layers.Flatten()(x)))


def train_side_by_side(build, x, y, steps=3):
    """(fastnn's, Keras's) losses of ``steps`` train_on_batch calls from the same weights
    (Keras's copied into fastnn's), and both models after them."""
    keras = keras_module()
    theirs, ours = build(keras), build(fastnn)
    copy_weights(theirs, ours)
    losses = []
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(optimizer=K.optimizers.Adam(learning_rate=0.01), loss="mse")
        losses.append([float(model.train_on_batch(x, y)) for _ in range(steps)])
    return losses, ours, theirs


def test_dcgan_generator_trains_as_in_keras():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, LATENT)).astype("float32")
    images = np.tanh(rng.standard_normal((4, 12, 12, 1))).astype("float32")
    (ours, theirs), model, keras_model = train_side_by_side(generator, noise, images)
    assert model.output_shape == (None, 12, 12, 1)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)  # the same weights: one loss
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)
    assert ours[-1] < ours[0]
    assert_same_weights(model, keras_model, rtol=1e-3, atol=1e-5, what="after 3 Adam steps")


def test_mobile_unet_trains_as_in_keras():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 8, 8, 3)).astype("float32")
    y = rng.standard_normal((3, 2)).astype("float32")
    (ours, theirs), model, keras_model = train_side_by_side(mobile_unet, x, y)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)
    assert_same_weights(model, keras_model, rtol=1e-3, atol=1e-5, what="after 3 Adam steps")


TRANSPOSE_SHAPES = list(
    itertools.product(
        [1, 4, 5],  # input size
        [1, 2, 3, 4],  # kernel
        [1, 2, 3],  # stride
        ["valid", "same"],
        [None, 0, 1, 2],  # output_padding (must be < stride)
    )
)


def test_transposed_output_sizes_follow_keras():
    """Every combination of size, kernel, stride, padding and output_padding (and dilation at
    stride 1): Keras's output shape, or an error where Keras's output would be empty."""
    keras = keras_module()
    cases = [(*c, 1) for c in TRANSPOSE_SHAPES if c[4] is None or c[4] < c[2]]
    cases += [
        (s, k, 1, p, None, 2) for s, k, p in itertools.product([3, 4], [2, 3], ["valid", "same"])
    ]
    for size, k, stride, padding, output_padding, dilation in cases:
        kwargs = dict(strides=stride, padding=padding, output_padding=output_padding)
        kwargs["dilation_rate"] = dilation
        want = keras.layers.Conv1DTranspose(2, k, **kwargs).compute_output_shape((None, size, 3))
        ours = L.Conv1DTranspose(2, k, **kwargs)
        if want[1] <= 0:
            with pytest.raises(ValueError, match="zero or negative"):
                ours.compute_output_shape((None, size, 3))
            continue
        assert ours.compute_output_shape((None, size, 3)) == tuple(want), (size, k, kwargs)
        wide = (None, size, size + 1, 3)
        want_2d = keras.layers.Conv2DTranspose(2, k, **kwargs).compute_output_shape(wide)
        assert L.Conv2DTranspose(2, k, **kwargs).compute_output_shape(wide) == tuple(want_2d)


def test_unknown_spatial_sizes_stay_unknown_and_run_at_any_size():
    inputs = fastnn.Input((None, None, 2))
    x = L.Conv2DTranspose(3, 3, strides=2, padding="same")(inputs)
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    outputs = L.SeparableConv2D(2, 3, strides=2, padding="same")(x)
    model = fastnn.Model(inputs, outputs)
    assert model.output_shape == (None, None, None, 2)
    for h, w in ((3, 4), (5, 2)):
        assert model.predict(np.ones((2, h, w, 2), "float32"), verbose=0).shape == (2, h, w, 2)


def test_keras_files_cross_both_ways(tmp_path):
    keras = keras_module()
    theirs, ours = mobile_unet(keras), mobile_unet(fastnn)
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 3)).astype("float32")
    theirs.save(tmp_path / "keras.keras")
    loaded = load_keras_model(tmp_path / "keras.keras")
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), theirs.predict(x, verbose=0), 1e-5, 1e-6
    )
    save_keras_model(ours, tmp_path / "fastnn.keras")
    back = keras.saving.load_model(tmp_path / "fastnn.keras")
    np.testing.assert_allclose(back.predict(x, verbose=0), ours.predict(x, verbose=0), 1e-5, 1e-6)


def test_fastnn_files_keep_the_layers_and_their_training(tmp_path):
    """A compiled model saved as .fastnn loads with the same predictions, summary and config."""
    model = mobile_unet(fastnn)
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(4).standard_normal((2, 8, 8, 3)).astype("float32")
    model.train_on_batch(x, np.zeros((2, 2), "float32"))
    model.save(tmp_path / "m.fastnn")
    again = fastnn.models.load_model(tmp_path / "m.fastnn")
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert again.get_config() == model.get_config()
    lines = []
    again.summary(print_fn=lines.append)
    text = "\n".join(lines)
    for name in ("DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose", "Conv1DTranspose"):
        assert name in text, text
    assert f"{model.count_params():,}" in text


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: L.Conv2DTranspose(2, 3, strides=2, output_padding=2), ValueError,
         r"`output_padding` must be strictly less than `strides`.*At dimension 0"),
        (lambda: L.Conv1DTranspose(2, 3, output_padding=-1), ValueError,
         r"output_padding=-1, including values \{-1\} that do not satisfy `value >= 0`"),
        (lambda: L.Conv2DTranspose(2, 3, strides=2, dilation_rate=2), ValueError,
         r"`strides > 1` not supported in conjunction with `dilation_rate > 1`"),
        (lambda: L.Conv2DTranspose(0, 3), ValueError, r"Expected a strictly positive value"),
        (lambda: L.DepthwiseConv2D(3, depth_multiplier=0), ValueError,
         r"Received depth_multiplier=0"),
        (lambda: L.SeparableConv1D(2, 3, data_format="nhwc"), ValueError,
         r"must be one of \{'channels_first', 'channels_last'\}"),
        (lambda: L.SeparableConv2D(2, 3, pointwise_constraint="nonneg"), ValueError,
         r"Could not interpret constraint identifier: 'nonneg'"),
        (lambda: L.DepthwiseConv1D(3, padding="causal"), ValueError, r"padding=.causal."),
    ],
)  # fmt: skip
def test_bad_arguments_get_keras_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_bad_inputs_are_refused_naming_the_layer_and_shapes():
    layer = L.DepthwiseConv2D(3, name="dw")
    with pytest.raises(
        ValueError, match=r"DepthwiseConv2D 'dw': expects a 4-D input.*got \(2, 5, 3\)"
    ):
        layer(np.ones((2, 5, 3), "float32"))
    layer(np.ones((1, 5, 5, 3), "float32"))
    with pytest.raises(
        ValueError, match=r"incompatible input shape; expected \(batch, height, width, 3\)"
    ):
        layer(np.ones((1, 5, 5, 4), "float32"))
    with pytest.raises(ValueError, match=r"computed output size would be zero or negative"):
        layer(np.ones((1, 2, 5, 3), "float32"))
    first = L.SeparableConv1D(2, 3, data_format="channels_first", name="sep")
    with pytest.raises(
        ValueError, match=r"the channel axis must be known; expected \(batch, channels, steps\)"
    ):
        first.build((None, None, 5))


def test_channels_first_is_channels_last_transposed():
    """The same weights on transposed inputs give transposed outputs and gradients."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 4, 3))
    for make in (
        lambda f: L.Conv2DTranspose(
            2, 3, strides=2, padding="same", data_format=f, dtype="float64"
        ),
        lambda f: L.DepthwiseConv2D(3, depth_multiplier=2, data_format=f, dtype="float64"),
        lambda f: L.SeparableConv2D(2, 2, strides=2, data_format=f, dtype="float64"),
    ):
        last, first = make("channels_last"), make("channels_first")
        last(x), first(x.transpose(0, 3, 1, 2))  # built
        first.set_weights(last.get_weights())
        y_last, ctx_last = last.forward(x, True)
        y_first, ctx_first = first.forward(x.transpose(0, 3, 1, 2), True)
        np.testing.assert_allclose(y_first, y_last.transpose(0, 3, 1, 2), rtol=1e-12)
        g = rng.standard_normal(y_last.shape)
        dx_last = last.backward(ctx_last, g)
        dx_first = first.backward(ctx_first, g.transpose(0, 3, 1, 2))
        np.testing.assert_allclose(dx_first, dx_last.transpose(0, 3, 1, 2), rtol=1e-12)
        for a, b in zip(first.weights, last.weights):
            np.testing.assert_allclose(a.grad, b.grad, rtol=1e-12, err_msg=a.path)


@pytest.mark.parametrize("activation", ["relu", "linear", "sigmoid"])
def test_separable_inference_follows_new_weights(activation):
    """At inference a SeparableConv2D keeps its pointwise kernel packed for the products; new
    weights (set_weights) are packed anew, and predict equals the training pass's output."""
    rng = np.random.default_rng(0)
    model = fastnn.Sequential(
        [L.Input((9, 9, 12)), L.SeparableConv2D(20, 3, padding="same", activation=activation)]
    )
    x = rng.standard_normal((64, 9, 9, 12)).astype(np.float32)
    for _ in range(2):
        weights = [rng.standard_normal(w.shape).astype(np.float32) for w in model.get_weights()]
        model.set_weights(weights)
        predicted = model.predict(x, verbose=0)
        np.testing.assert_allclose(model.predict(x, verbose=0), predicted)  # the kept form
        trained = np.asarray(model(x, training=True))
        np.testing.assert_allclose(predicted, trained, rtol=1e-5, atol=1e-5)
