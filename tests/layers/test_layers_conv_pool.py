"""Conv2D and the 2-D pooling layers: gradient checks, Keras parity, config, weights, errors."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn.fusion.conv_max_pool import ConvMaxPool
from fastnn.kernels.conv import padding_amounts
from fastnn.layers.convolutional import Conv2D
from fastnn.layers.pooling import (
    AveragePooling2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)

ACTIVATIONS = [None, "relu", "sigmoid", "tanh", "softmax"]


# ---------------------------------------------------------------- gradient check


def gradcheck(layer, x, seed=0, eps=1e-6, atol=1e-5, rtol=1e-3):
    """Analytic input and weight gradients of sum(layer(x) * r) vs central differences (float64)."""
    rng = np.random.default_rng(seed)
    layer(x)  # build
    y, ctx = layer.forward(x, True)
    r = rng.standard_normal(y.shape)
    for w in layer.weights:
        w.grad[...] = 0
    dx = layer.backward(ctx, r)

    def loss():
        return float(np.sum(layer.forward(x, True)[0] * r))

    targets = [("input", x, dx)] + [(w.name, w.value, w.grad) for w in layer.weights]
    for what, param, grad in targets:
        flat = param.reshape(-1)
        num = np.zeros(flat.size)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            num[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(
            grad.reshape(-1), num, atol=atol, rtol=rtol, err_msg=f"gradient of {what}"
        )


@st.composite
def window_cases(draw, max_window=3):
    padding = draw(st.sampled_from(["valid", "same"]))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    top = max_window if padding == "same" else 1
    kh = draw(st.integers(1, min(max_window, max(h, top))))
    kw = draw(st.integers(1, min(max_window, max(w, top))))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    shape = (draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3)))
    return shape, (kh, kw), strides, padding


@settings(max_examples=20, deadline=None)
@given(
    window_cases(),
    st.integers(1, 3),
    st.sampled_from(ACTIVATIONS),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_conv2d_gradients(case, filters, activation, use_bias, seed):
    shape, kernel_size, strides, padding = case
    rng = np.random.default_rng(seed)
    layer = Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        activation=activation,
        use_bias=use_bias,
        bias_initializer="random_normal",
        dtype="float64",
    )
    gradcheck(layer, rng.standard_normal(shape), seed)


@settings(max_examples=20, deadline=None)
@given(
    window_cases(),
    st.sampled_from([MaxPooling2D, AveragePooling2D]),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_pooling_gradients(case, cls, default_strides, seed):
    shape, pool_size, strides, padding = case
    rng = np.random.default_rng(seed)
    strides = None if default_strides else strides
    layer = cls(pool_size, strides=strides, padding=padding, dtype="float64")
    gradcheck(layer, rng.standard_normal(shape), seed)


GLOBAL_POOLINGS = [GlobalAveragePooling2D, GlobalMaxPooling2D]


@pytest.mark.parametrize("cls", GLOBAL_POOLINGS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_gradients(cls, keepdims):
    x = np.random.default_rng(3).standard_normal((2, 3, 4, 5))
    gradcheck(cls(keepdims=keepdims, dtype="float64"), x)


def test_global_max_pooling_sends_the_gradient_to_each_channels_maximum():
    x = np.random.default_rng(4).standard_normal((3, 4, 2, 5))
    layer = GlobalMaxPooling2D(dtype="float64")
    out, ctx = layer.forward(x, True)
    np.testing.assert_array_equal(out, x.max(axis=(1, 2)))
    dx = layer.backward(ctx, np.ones_like(out))
    np.testing.assert_array_equal(dx, x == x.max(axis=(1, 2), keepdims=True))


# ---------------------------------------------------------------- Keras parity


@pytest.fixture(scope="module")
def keras():
    os.environ["KERAS_BACKEND"] = "torch"
    return pytest.importorskip("keras")


CONV_CONFIGS = [
    # (input shape, Conv2D kwargs)
    ((2, 7, 6, 3), dict(filters=4, kernel_size=3)),
    ((2, 5, 6, 3), dict(filters=4, kernel_size=2, strides=2, padding="same")),
    ((2, 5, 5, 2), dict(filters=3, kernel_size=4, strides=2, padding="same", activation="relu")),
    ((1, 6, 6, 2), dict(filters=3, kernel_size=(2, 3), strides=(1, 2), padding="same")),
    ((2, 8, 7, 3), dict(filters=5, kernel_size=(3, 1), strides=(2, 3), activation="tanh")),
    ((2, 4, 4, 3), dict(filters=6, kernel_size=1, activation="sigmoid", use_bias=False)),
    ((2, 5, 5, 3), dict(filters=4, kernel_size=3, padding="same", activation="softmax")),
]


@pytest.mark.parametrize("shape, kwargs", CONV_CONFIGS)
def test_conv2d_matches_keras(keras, shape, kwargs):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    ours = Conv2D(**kwargs)
    theirs = keras.layers.Conv2D(**kwargs)
    ours(x)
    theirs.build(shape)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    expected = keras.ops.convert_to_numpy(theirs(x))
    assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-5)


POOL_CONFIGS = [
    ((2, 6, 6, 3), dict(pool_size=(2, 2))),  # keras 3 AveragePooling2D has no default pool_size
    ((2, 5, 5, 3), dict(pool_size=2, padding="same")),
    ((2, 5, 6, 2), dict(pool_size=4, strides=2, padding="same")),
    ((1, 7, 5, 2), dict(pool_size=(3, 2), strides=(2, 1), padding="same")),
    ((2, 7, 7, 1), dict(pool_size=3, strides=2)),
    ((2, 6, 5, 2), dict(pool_size=3, strides=1, padding="same")),
]


@pytest.mark.parametrize("kind", ["MaxPooling2D", "AveragePooling2D"])
@pytest.mark.parametrize("shape, kwargs", POOL_CONFIGS)
def test_pooling_matches_keras(keras, kind, shape, kwargs):
    layer = MaxPooling2D(**kwargs)
    pads = [
        padding_amounts(n, k, s, layer.padding)[1:]
        for n, k, s in zip(shape[1:3], layer.pool_size, layer.strides, strict=True)
    ]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ours = {"MaxPooling2D": MaxPooling2D, "AveragePooling2D": AveragePooling2D}[kind](**kwargs)
    theirs = getattr(keras.layers, kind)(**kwargs)
    expected = keras.ops.convert_to_numpy(theirs(x))
    if kind == "AveragePooling2D" and any(before != after for before, after in pads):
        # Keras's torch backend pads asymmetric 'same' average pooling by edge replication;
        # TensorFlow (and fastnn) leave padding out of the mean: avg(zero-padded x) / avg(ones).
        import torch

        torch_pads = (*pads[1], *pads[0])  # (left, right, top, bottom)
        pool = dict(kernel_size=layer.pool_size, stride=layer.strides)
        sums = torch.nn.functional.avg_pool2d(
            torch.nn.functional.pad(torch.tensor(x).permute(0, 3, 1, 2), torch_pads), **pool
        )
        counts = torch.nn.functional.avg_pool2d(
            torch.nn.functional.pad(torch.ones(1, 1, *shape[1:3]), torch_pads), **pool
        )
        expected = (sums / counts).permute(0, 2, 3, 1).numpy()
    assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", GLOBAL_POOLINGS)
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_matches_keras(keras, cls, keepdims):
    x = np.random.default_rng(2).standard_normal((2, 5, 3, 4)).astype(np.float32)
    theirs = getattr(keras.layers, cls.__name__)(keepdims=keepdims)
    expected = keras.ops.convert_to_numpy(theirs(x))
    ours = cls(keepdims=keepdims)
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-6)
    shape = (None, 5, 3, 4)
    assert ours.compute_output_shape(shape) == theirs.compute_output_shape(shape)
    assert ours.get_config()["keepdims"] == theirs.get_config()["keepdims"] == keepdims


def test_global_max_pooling_model_trains_like_keras(keras):
    def build(K):
        inputs = K.Input((6, 6, 2))
        x = K.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
        x = K.layers.GlobalMaxPooling2D(name="gmp")(x)
        return K.Model(inputs, K.layers.Dense(1, name="out")(x))

    theirs, ours = build(keras), build(fastnn)
    rng = np.random.default_rng(5)
    weights = [w + rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    x = rng.standard_normal((8, 6, 6, 2)).astype(np.float32)
    y = rng.standard_normal((8, 1)).astype(np.float32)
    theirs.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    ours.compile(optimizer=fastnn.optimizers.SGD(0.1), loss="mse")
    np.testing.assert_allclose(ours.train_on_batch(x, y), theirs.train_on_batch(x, y), rtol=1e-5)
    for o, t in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(o, t, rtol=1e-5, atol=1e-6)


def test_configs_agree_with_keras(keras):
    kwargs = dict(filters=8, kernel_size=(3, 2), strides=2, padding="same", activation="relu")
    ours, theirs = Conv2D(**kwargs).get_config(), keras.layers.Conv2D(**kwargs).get_config()
    for key in ["filters", "kernel_size", "strides", "padding", "data_format", "use_bias"]:
        assert ours[key] == theirs[key], key
    assert ours["activation"] == theirs["activation"]
    for kind in ["MaxPooling2D", "AveragePooling2D"]:
        ours = {"MaxPooling2D": MaxPooling2D, "AveragePooling2D": AveragePooling2D}[kind](3)
        theirs = getattr(keras.layers, kind)(3)
        for key in ["pool_size", "strides", "padding", "data_format"]:
            assert ours.get_config()[key] == theirs.get_config()[key], (kind, key)


# ---------------------------------------------------------------- config, weights, shapes


@pytest.mark.parametrize(
    "layer",
    [
        Conv2D(4, (3, 2), strides=(2, 1), padding="same", activation="tanh", use_bias=False),
        MaxPooling2D(3, strides=2, padding="same"),
        AveragePooling2D((2, 3)),
        GlobalAveragePooling2D(keepdims=True),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 3)).astype(np.float32)
    layer(x)
    clone(x)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), layer(x))


def test_conv2d_weights_names_shapes_and_order():
    layer = Conv2D(5, (3, 2))
    assert layer(np.zeros((1, 6, 6, 3), np.float32)).shape == (1, 4, 5, 5)
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert [w.shape for w in layer.weights] == [(3, 2, 3, 5), (5,)]
    assert layer.count_params() == 3 * 2 * 3 * 5 + 5
    assert not layer.get_weights()[1].any()  # bias_initializer='zeros'
    no_bias = Conv2D(2, 1, use_bias=False)
    no_bias(np.zeros((1, 2, 2, 4), np.float32))
    assert [w.name for w in no_bias.weights] == ["kernel"]
    assert no_bias.weights[0].shape == (1, 1, 4, 2)


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (Conv2D(8, 3), (None, 28, 28, 1), (None, 26, 26, 8)),
        (Conv2D(8, 3, padding="same", strides=2), (None, 28, 27, 1), (None, 14, 14, 8)),
        (Conv2D(8, 3), (None, None, None, 2), (None, None, None, 8)),
        (MaxPooling2D(), (None, 27, 28, 4), (None, 13, 14, 4)),
        (MaxPooling2D(2, padding="same"), (None, 27, 28, 4), (None, 14, 14, 4)),
        (AveragePooling2D(3, 1), (4, 5, 6, 2), (4, 3, 4, 2)),
        (GlobalAveragePooling2D(), (None, 7, 7, 16), (None, 16)),
        (GlobalAveragePooling2D(keepdims=True), (None, 7, 7, 16), (None, 1, 1, 16)),
    ],
)
def test_output_shapes(layer, in_shape, out_shape):
    assert layer.compute_output_shape(in_shape) == out_shape


def test_dtypes_are_preserved():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32)
    layers = [Conv2D(2, 3, activation="relu"), MaxPooling2D(), AveragePooling2D()]
    for layer in [*layers, GlobalAveragePooling2D()]:
        layer(x)
        y, ctx = layer.forward(x, True)
        assert y.dtype == np.float32
        assert layer.backward(ctx, np.ones_like(y)).dtype == np.float32
        assert all(w.grad.dtype == np.float32 for w in layer.weights)


def test_conv2d_gradients_accumulate_and_respect_trainable():
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32)
    layer = Conv2D(4, 3, padding="same")
    layer(x)
    y, ctx = layer.forward(x, True)
    layer.backward(ctx, np.ones_like(y))
    once = [w.grad.copy() for w in layer.weights]
    y, ctx = layer.forward(x, True)
    layer.backward(ctx, np.ones_like(y))  # a shared layer's second call adds
    for w, g in zip(layer.weights, once, strict=True):
        np.testing.assert_allclose(w.grad, 2 * g, rtol=1e-6)

    frozen = Conv2D(4, 3, trainable=False)
    frozen(x)
    y, ctx = frozen.forward(x, True)
    assert frozen.backward(ctx, np.ones_like(y)).shape == x.shape
    assert all(not w.grad.any() for w in frozen.weights)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(filters=0, kernel_size=3), ValueError, r"`filters`.*Received filters=0"),
        (dict(filters=2.5, kernel_size=3), ValueError, r"Received filters=2.5"),
        (dict(filters=2, kernel_size=(0, 3)), ValueError, r"kernel_size=\(0, 3\).*value > 0"),
        (dict(filters=2, kernel_size=(1, 2, 3)), ValueError, r"tuple of 2 integers"),
        (dict(filters=2, kernel_size=3, strides=0), ValueError, r"Received strides=0"),
        (dict(filters=2, kernel_size=3, padding="full"), ValueError, r"Received: padding='full'"),
        (dict(filters=2, kernel_size=3, data_format="NHWC"), ValueError, "data_format='NHWC'"),
        (dict(filters=2, kernel_size=3, dilation_rate=2, strides=2), ValueError, r"`strides > 1`"),
        (dict(filters=2, kernel_size=3, dilation_rate=0), ValueError, "dilation_rate"),
        (dict(filters=3, kernel_size=3, groups=2), ValueError, r"divisible.*groups=2, filters=3"),
        (dict(filters=2, kernel_size=3, groups=0), ValueError, r"positive integer.*groups=0"),
        (dict(filters=2, kernel_size=3, activation="swishy"), ValueError, "swishy"),
        (dict(filters=2, kernel_size=3, bogus=1), TypeError, "bogus"),
    ],
)
def test_conv2d_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv2D(**kwargs)


@pytest.mark.parametrize("cls", [MaxPooling2D, AveragePooling2D])
def test_pooling_bad_arguments(cls):
    with pytest.raises(ValueError, match=r"Received pool_size=0"):
        cls(0)
    with pytest.raises(ValueError, match=r"Received strides=\(2, -1\)"):
        cls(2, strides=(2, -1))
    with pytest.raises(ValueError, match=r"Received: padding='causal'"):
        cls(padding="causal")
    with pytest.raises(ValueError, match="channels_last"):
        cls(data_format="NCHW")
    with pytest.raises(ValueError, match="channels_last"):
        GlobalAveragePooling2D(data_format="NCHW")


def test_shape_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"Conv2D 'c1': expects a 4-D input.*got \(None, 28, 3\)"):
        Conv2D(2, 3, name="c1").compute_output_shape((None, 28, 3))
    layer = Conv2D(2, 3, name="c2")
    with pytest.raises(ValueError, match=r"Conv2D 'c2': computed output size.*got \(1, 2, 5, 1\)"):
        layer(np.zeros((1, 2, 5, 1), np.float32))
    assert not layer.built and not layer.weights  # nothing half-applied
    layer(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"Conv2D 'c2': incompatible.*\(batch, height, width, 3\)"):
        layer(np.zeros((1, 4, 4, 2), np.float32))
    with pytest.raises(ValueError, match=r"MaxPooling2D 'p1': computed output size"):
        MaxPooling2D(3, name="p1")(np.zeros((1, 2, 8, 1), np.float32))
    with pytest.raises(ValueError, match=r"GlobalAveragePooling2D 'g1': expects a 4-D input"):
        GlobalAveragePooling2D(name="g1")(np.zeros((2, 3, 4), np.float32))


def test_symbolic_call_records_output_shape():
    from fastnn.layers.core import Input

    x = Input(shape=(28, 28, 1))
    y = Conv2D(8, 3, padding="same", activation="relu")(x)
    y = MaxPooling2D()(y)
    y = AveragePooling2D(2, padding="same")(Conv2D(4, 2, strides=2)(y))
    assert y.shape == (None, 4, 4, 4)
    assert GlobalAveragePooling2D()(y).shape == (None, 4)


# ---------------------------------------------------------------- inference: Conv2D + MaxPooling2D


def fusion_model(K):
    """Conv2D -> MaxPooling2D pairs the graph runs fused (the direct grey and RGB rows, 1x1,
    im2col; odd sizes; one softmax conv, fused at inference only) and pairs it must not fuse: a
    pool that is not 2x2 stride-2 'valid', a conv output with a second reader, a conv output
    that is a model output."""
    L = K.layers
    grey, rgb = K.Input(shape=(10, 10, 1), name="grey"), K.Input(shape=(9, 9, 3), name="rgb")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(grey)  # grey 3x3 rows
    x = L.MaxPooling2D(2, name="p1")(x)
    x = L.MaxPooling2D(name="p2")(L.Conv2D(6, 1, name="c2")(x))  # 1x1; 5x5 -> 2x2
    x = L.Conv2D(3, 2, padding="same", activation="tanh", name="c3")(x)
    x = L.MaxPooling2D(2, strides=1, name="p3")(x)
    z = L.MaxPooling2D(2, name="p4")(L.Conv2D(3, 3, activation="relu", name="c4")(rgb))  # RGB
    c5 = L.Conv2D(4, 3, activation="relu", name="c5")(rgb)  # read twice
    c6 = L.Conv2D(5, 3, padding="same", name="c6")(L.MaxPooling2D(2, name="p5")(c5))
    c7 = L.Conv2D(2, 3, padding="same", name="c7")(c6)  # a model output, read by p7 too
    c8 = L.Conv2D(3, 2, strides=2, padding="same", activation="sigmoid", name="c8")(c6)  # strided
    c9 = L.Conv2D(3, 2, padding="same", activation="softmax", name="c9")(c6)
    merged = L.Concatenate(name="merged")(
        [L.Flatten(name="f1")(x), L.Flatten(name="f2")(z),
         L.GlobalAveragePooling2D(name="g1")(c5),
         L.Flatten(name="f3")(L.MaxPooling2D(2, padding="same", name="p6")(c6)),
         L.Flatten(name="f4")(L.MaxPooling2D(2, name="p7")(c7)),
         L.Flatten(name="f5")(L.MaxPooling2D(2, name="p8")(c8)),
         L.Flatten(name="f6")(L.MaxPooling2D(2, name="p9")(c9))]
    )  # fmt: skip
    return K.Model([grey, rgb], [L.Dense(3, name="head")(merged), c7])


def test_conv_and_the_2x2_max_pool_alone_reading_it_run_as_one_pass(keras, monkeypatch):
    ours, theirs = fusion_model(fastnn), fusion_model(keras)
    rng = np.random.default_rng(0)
    weights = [w + rng.normal(0, 0.3, w.shape).astype(w.dtype) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    fused = {
        step.layer.conv.name: step.layer.pool.name
        for step in ours._graph.steps
        if isinstance(step.layer, ConvMaxPool)
    }
    assert fused == {"c1": "p1", "c2": "p2", "c4": "p4", "c8": "p8", "c9": "p9"}
    calls = []
    original = fastnn.kernels.conv.conv2d_forward_max_pool
    monkeypatch.setattr(
        fastnn.kernels.conv, "conv2d_forward_max_pool",
        lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs),
    )  # fmt: skip
    made = fastnn.kernels.conv.conv2d_pooled_call

    def counted_call(*args, **kwargs):  # predict's inference calls: each run counts
        run = made(*args, **kwargs)
        return None if run is None else lambda x: calls.append(1) or run(x)

    monkeypatch.setattr(fastnn.kernels.conv, "conv2d_pooled_call", counted_call)
    xs = [rng.standard_normal((5, 10, 10, 1)), rng.standard_normal((5, 9, 9, 3))]
    xs = [x.astype(np.float32) for x in xs]
    for got, expected in zip(
        ours.predict(xs, batch_size=2, verbose=0), theirs.predict(xs, verbose=0)
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert len(calls) == 5  # five fused pairs, one pass (predict runs its three batches as one)
    # Training runs four of them fused, and its gradients are Keras's.
    calls.clear()
    ys = [rng.standard_normal((5, 3)), rng.standard_normal((5, 3, 3, 2))]
    ys = [y.astype(np.float32) for y in ys]
    for model, optimizers in [(ours, fastnn.optimizers), (theirs, keras.optimizers)]:
        model.compile(optimizer=optimizers.SGD(0.1), loss=["mse", "mse"])
    np.testing.assert_allclose(
        ours.train_on_batch(xs, ys), theirs.train_on_batch(xs, ys), rtol=1e-5, atol=1e-6
    )
    assert len(calls) == 4
    for w, o, t in zip(ours.weights, ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(o, t, rtol=1e-4, atol=1e-5, err_msg=w.path)
    # A backward after an inference pass runs the fused pairs' forward again: the gradients of
    # a training pass (SGD's step above left the weights where both passes read them).
    grads = []
    for training in (False, True):
        outputs, tape = ours.forward(xs, training=training)
        for w in ours.weights:
            w.grad[...] = 0
        ours.backward(tape, [np.ones_like(out) for out in outputs])
        grads.append([w.grad.copy() for w in ours.weights])
    for w, after_inference, after_training in zip(ours.weights, *grads):
        np.testing.assert_allclose(after_inference, after_training, rtol=1e-5, err_msg=w.path)
