"""The layers around an RNN: Conv1D, 1-D pooling, Reshape, RepeatVector, TimeDistributed.

Float64 gradient checks (hypothesis), Keras 3 parity on the torch backend with the same weights
(including masks from ``Embedding(mask_zero=True)`` flowing through a model), config round trips,
shapes and errors.
"""

import os

os.environ["KERAS_BACKEND"] = "torch"  # keras reads this once, at import

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from gradcheck import (  # noqa: E402
    check_gradients,
    check_layer_gradients,
    check_model_gradients,
    check_model_gradients_at_fixed_ids,
    randomize_weights,
)
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn  # noqa: E402
from fastnn.kernels.conv import padding_amounts  # noqa: E402
from fastnn.layers.convolutional import Conv1D  # noqa: E402
from fastnn.layers.core import Dense, Dropout  # noqa: E402
from fastnn.layers.embedding import Embedding  # noqa: E402
from fastnn.layers.pooling import (  # noqa: E402
    AveragePooling1D,
    GlobalAveragePooling1D,
    GlobalMaxPooling1D,
    MaxPooling1D,
)
from fastnn.layers.reshaping import RepeatVector, Reshape  # noqa: E402
from fastnn.layers.wrappers_time import TimeDistributed  # noqa: E402

F64 = "float64"
SETTINGS = settings(max_examples=20, deadline=None)
ACTIVATIONS = [None, "relu", "sigmoid", "tanh", "softmax"]
seeds = st.integers(0, 2**16)


def normal(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape)


# ---------------------------------------------------------------- gradient checks (float64)


@st.composite
def window_1d(draw, causal=False):
    paddings = ["valid", "same", "causal"] if causal else ["valid", "same"]
    padding = draw(st.sampled_from(paddings))
    steps = draw(st.integers(1, 6))
    k = draw(st.integers(1, 3 if padding != "valid" else min(3, steps)))
    shape = (draw(st.integers(1, 2)), steps, draw(st.integers(1, 3)))
    return shape, k, draw(st.integers(1, 3)), padding


@SETTINGS
@given(
    window_1d(causal=True), st.integers(1, 3), st.sampled_from(ACTIVATIONS), st.booleans(), seeds
)
def test_conv1d_gradients(case, filters, activation, use_bias, seed):
    shape, k, stride, padding = case
    kwargs = dict(strides=stride, padding=padding, activation=activation, use_bias=use_bias)
    layer = Conv1D(filters, k, dtype=F64, **kwargs)
    layer._maybe_build(shape)
    randomize_weights(layer, seed)
    check_layer_gradients(layer, normal(seed, *shape), seed=seed)


@SETTINGS
@given(window_1d(), st.sampled_from([MaxPooling1D, AveragePooling1D]), st.booleans(), seeds)
def test_pooling1d_gradients(case, cls, default_strides, seed):
    shape, pool, stride, padding = case
    layer = cls(pool, strides=None if default_strides else stride, padding=padding, dtype=F64)
    check_layer_gradients(layer, normal(seed, *shape), seed=seed)


@SETTINGS
@given(
    st.sampled_from([GlobalAveragePooling1D, GlobalMaxPooling1D]),
    st.booleans(),
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 3),
    seeds,
)
def test_global_pooling1d_gradients(cls, keepdims, batch, steps, features, seed):
    layer = cls(keepdims=keepdims, dtype=F64)
    check_layer_gradients(layer, normal(seed, batch, steps, features), seed=seed)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 3), st.booleans(), seeds)
def test_masked_global_average_gradients(batch, steps, features, keepdims, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((batch, steps)) < 0.6
    mask[0] = False  # a fully masked sample: zeros out, zero gradient
    layer = GlobalAveragePooling1D(keepdims=keepdims, dtype=F64)

    def forward(xs):
        out, ctx = layer.forward(xs[0], True, mask=mask)
        return [out], ctx

    def backward(ctx, grads):
        return [layer.backward(ctx, grads[0])]

    x = normal(seed, batch, steps, features)
    grads = check_gradients(forward, backward, [x], [], seed=seed)
    (out,), _ = forward([x])
    assert not out[0].any()  # the fully masked sample
    assert not grads[0][~mask].any()  # masked steps get no gradient


def test_masked_global_average_gradients_through_a_model():
    """Embedding(mask_zero=True) -> GlobalAveragePooling1D -> Dense: the mask flows by itself."""
    ids = fastnn.Input((6,))
    emb = Embedding(7, 3, mask_zero=True, dtype=F64)
    pooled = GlobalAveragePooling1D(dtype=F64)(emb(ids))
    model = fastnn.Model(ids, Dense(2, activation="tanh", dtype=F64)(pooled))
    randomize_weights(model, 1)
    data = np.array([[1, 2, 0, 0, 0, 0], [0, 3, 4, 5, 0, 6], [6, 5, 4, 3, 2, 1]], dtype=F64)
    check_model_gradients_at_fixed_ids(model, data)
    # Padded rows of the table get no gradient; rows read only at padding positions neither.
    table = emb.embeddings
    table.grad[...] = 0
    out, tape = model._graph.forward([data], True)
    model._graph.backward(tape, [np.ones_like(out[0])])
    assert not table.grad[0].any() and table.grad[1:].any()


@SETTINGS
@given(
    st.integers(1, 3),
    st.sampled_from([((12,), (3, 4)), ((12,), (-1, 2)), ((2, 6), (3, -1, 2)), ((3, 4), (12,))]),
    seeds,
)
def test_reshape_gradients(batch, shapes, seed):
    sample, target = shapes
    check_layer_gradients(Reshape(target, dtype=F64), normal(seed, batch, *sample), seed=seed)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), seeds)
def test_repeat_vector_gradients(batch, n, features, seed):
    check_layer_gradients(RepeatVector(n, dtype=F64), normal(seed, batch, features), seed=seed)


@SETTINGS
@given(
    st.integers(1, 3),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(1, 3),
    st.sampled_from(ACTIVATIONS),
    seeds,
)
def test_time_distributed_dense_gradients(batch, time, in_dim, units, activation, seed):
    layer = TimeDistributed(Dense(units, activation=activation, dtype=F64))
    layer._maybe_build((batch, time, in_dim))
    randomize_weights(layer, seed)
    check_layer_gradients(layer, normal(seed, batch, time, in_dim), seed=seed)


def test_time_distributed_conv1d_gradients():
    """A 4-D input: Conv1D applied to each of 3 sequences per sample."""
    layer = TimeDistributed(Conv1D(2, 2, padding="causal", activation="tanh", dtype=F64))
    layer._maybe_build((2, 3, 4, 2))
    randomize_weights(layer, 5)
    check_layer_gradients(layer, normal(5, 2, 3, 4, 2))


def test_sequence_model_gradients():
    """Conv1D -> MaxPooling1D -> TimeDistributed(Dense) -> RepeatVector / Reshape, as a graph."""
    x = fastnn.Input((8, 2))
    h = Conv1D(3, 3, padding="same", activation="tanh", dtype=F64)(x)
    h = AveragePooling1D(2, dtype=F64)(MaxPooling1D(2, strides=1, padding="same", dtype=F64)(h))
    h = TimeDistributed(Dense(2, activation="sigmoid", dtype=F64))(h)
    a = GlobalMaxPooling1D(dtype=F64)(h)
    b = GlobalAveragePooling1D(dtype=F64)(Reshape((-1, 4), dtype=F64)(h))
    out = Conv1D(1, 2, dtype=F64)(RepeatVector(3, dtype=F64)(a))
    model = fastnn.Model(x, [out, b])
    assert out.shape == (None, 2, 1) and b.shape == (None, 4)
    randomize_weights(model, 2)
    check_model_gradients(model, normal(2, 2, 8, 2))


# ---------------------------------------------------------------- Keras parity


@pytest.fixture(scope="module")
def keras():
    return pytest.importorskip("keras")


def keras_out(keras, value):
    return keras.ops.convert_to_numpy(value)


def same_weights(ours, theirs, x_shape, seed=0):
    """Build both layers and give them the same random weights; return them."""
    ours._maybe_build(x_shape)
    theirs.build(x_shape)
    rng = np.random.default_rng(seed)
    weights = [rng.standard_normal(w.shape).astype(np.float32) for w in theirs.get_weights()]
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return weights


CONV1D_CONFIGS = [
    ((2, 7, 3), dict(filters=4, kernel_size=3)),
    ((2, 7, 3), dict(filters=4, kernel_size=2, padding="same")),  # even kernel: pad at the end
    ((2, 8, 3), dict(filters=4, kernel_size=4, strides=3, padding="same", activation="relu")),
    ((2, 6, 2), dict(filters=3, kernel_size=3, padding="causal", activation="tanh")),
    ((1, 7, 2), dict(filters=3, kernel_size=2, strides=2, padding="causal")),
    ((2, 9, 3), dict(filters=5, kernel_size=1, activation="sigmoid", use_bias=False)),
    ((2, 5, 3), dict(filters=4, kernel_size=3, strides=2, activation="softmax")),
]


@pytest.mark.parametrize("shape, kwargs", CONV1D_CONFIGS)
def test_conv1d_matches_keras(keras, shape, kwargs):
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    ours, theirs = Conv1D(**kwargs), keras.layers.Conv1D(**kwargs)
    same_weights(ours, theirs, shape)
    assert [w.shape for w in ours.weights] == [tuple(w.shape) for w in theirs.weights]
    assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))
    y = ours(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, keras_out(keras, theirs(x)), rtol=1e-5, atol=1e-5)


POOL1D_CONFIGS = [
    ((2, 6, 3), dict(pool_size=2)),
    ((2, 7, 3), dict(pool_size=2, padding="same")),  # one padding step, at the end
    ((2, 7, 2), dict(pool_size=3, strides=2)),
    ((1, 8, 2), dict(pool_size=3, strides=1, padding="same")),  # symmetric 'same' padding
    ((2, 5, 1), dict(pool_size=3, strides=3, padding="same")),  # Keras-torch replicates the edge
]


@pytest.mark.parametrize("kind", ["MaxPooling1D", "AveragePooling1D"])
@pytest.mark.parametrize("shape, kwargs", POOL1D_CONFIGS)
def test_pooling1d_matches_keras(keras, kind, shape, kwargs):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    ours = {"MaxPooling1D": MaxPooling1D, "AveragePooling1D": AveragePooling1D}[kind](**kwargs)
    theirs = getattr(keras.layers, kind)(**kwargs)
    expected = keras_out(keras, theirs(x))
    p, s = ours.pool_size[0], ours.strides[0]
    steps, before, after = padding_amounts(shape[1], p, s, ours.padding)
    if kind == "AveragePooling1D" and before != after:
        # Keras's torch backend pads asymmetric 'same' average pooling by edge replication;
        # TensorFlow (and fastnn) leave padding out of the mean: windows clipped to the input.
        windows = [x[:, max(i * s - before, 0) : i * s - before + p] for i in range(steps)]
        expected = np.stack([w.mean(axis=1) for w in windows], axis=1)
    assert ours.compute_output_shape(shape) == tuple(theirs.compute_output_shape(shape))
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["GlobalAveragePooling1D", "GlobalMaxPooling1D"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling1d_matches_keras(keras, kind, keepdims):
    x = np.random.default_rng(3).standard_normal((3, 5, 4)).astype(np.float32)
    ours = {
        "GlobalAveragePooling1D": GlobalAveragePooling1D,
        "GlobalMaxPooling1D": GlobalMaxPooling1D,
    }
    ours = ours[kind](keepdims=keepdims)
    theirs = getattr(keras.layers, kind)(keepdims=keepdims)
    assert ours.compute_output_shape(x.shape) == tuple(theirs.compute_output_shape(x.shape))
    np.testing.assert_allclose(ours(x), keras_out(keras, theirs(x)), rtol=1e-5, atol=1e-6)


IDS = np.array([[3, 4, 0, 0, 0, 0], [0, 0, 5, 1, 8, 2], [1, 2, 3, 4, 5, 6], [7, 0, 2, 0, 0, 1]])


def embedding_pair(keras, seed=0):
    theirs = keras.layers.Embedding(9, 4, mask_zero=True)
    ours = Embedding(9, 4, mask_zero=True)
    ours._maybe_build(IDS.shape)
    theirs.build(IDS.shape)
    table = np.random.default_rng(seed).standard_normal((9, 4)).astype(np.float32)
    ours.set_weights([table])
    theirs.set_weights([table])
    return ours, theirs


@pytest.mark.parametrize("kind", ["GlobalAveragePooling1D", "GlobalMaxPooling1D"])
def test_masked_global_pooling_matches_keras(keras, kind):
    """The average skips padded steps; the max (no masking in Keras 3) takes every step."""
    emb, emb_k = embedding_pair(keras)
    inp = keras.Input((6,))
    theirs = keras.Model(inp, getattr(keras.layers, kind)()(emb_k(inp)))
    cls = {
        "GlobalAveragePooling1D": GlobalAveragePooling1D,
        "GlobalMaxPooling1D": GlobalMaxPooling1D,
    }
    ids = fastnn.Input((6,))
    ours = fastnn.Model(ids, cls[kind]()(emb(ids)))
    expected = keras_out(keras, theirs(IDS))
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), expected, rtol=1e-5, atol=1e-6)
    vectors, mask = emb(IDS), IDS != 0
    if kind == "GlobalAveragePooling1D":
        manual = (vectors * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
        np.testing.assert_allclose(expected, manual, rtol=1e-5, atol=1e-6)
        layer = GlobalAveragePooling1D()  # an explicit mask= on an array call does the same
        np.testing.assert_allclose(layer(vectors, mask=mask), expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(expected, vectors.max(1), rtol=1e-6)


def test_time_distributed_dense_matches_keras(keras):
    x = np.random.default_rng(4).standard_normal((3, 5, 4)).astype(np.float32)
    ours = TimeDistributed(Dense(6, activation="relu"))
    theirs = keras.layers.TimeDistributed(keras.layers.Dense(6, activation="relu"))
    same_weights(ours, theirs, x.shape)
    assert ours.compute_output_shape((None, 5, 4)) == theirs.compute_output_shape((None, 5, 4))
    np.testing.assert_allclose(ours(x), keras_out(keras, theirs(x)), rtol=1e-5, atol=1e-6)


def test_time_distributed_passes_the_mask_on_like_keras(keras):
    """Embedding(mask_zero) -> TimeDistributed(Dense) -> GlobalAveragePooling1D averages only
    unmasked steps in both (fastnn's Dense alone would drop the mask)."""
    emb, emb_k = embedding_pair(keras, 1)
    dense, dense_k = TimeDistributed(Dense(3)), keras.layers.TimeDistributed(keras.layers.Dense(3))
    same_weights(dense, dense_k, (4, 6, 4), seed=2)
    inp = keras.Input((6,))
    theirs = keras.Model(inp, keras.layers.GlobalAveragePooling1D()(dense_k(emb_k(inp))))
    ids = fastnn.Input((6,))
    ours = fastnn.Model(ids, GlobalAveragePooling1D()(dense(emb(ids))))
    expected = keras_out(keras, theirs(IDS))
    np.testing.assert_allclose(ours.predict(IDS, verbose=0), expected, rtol=1e-5, atol=1e-6)
    mask = IDS != 0
    assert dense.compute_mask(emb(IDS), mask) is mask


@pytest.mark.parametrize(
    "layer, kwargs, shape",
    [
        ("Reshape", dict(target_shape=(3, 4)), (2, 12)),
        ("Reshape", dict(target_shape=(-1, 2)), (2, 3, 4)),
        ("Reshape", dict(target_shape=(2, -1, 3)), (2, 4, 3)),
        ("RepeatVector", dict(n=3), (2, 5)),
    ],
)
def test_reshaping_matches_keras(keras, layer, kwargs, shape):
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    ours = {"Reshape": Reshape, "RepeatVector": RepeatVector}[layer](**kwargs)
    theirs = getattr(keras.layers, layer)(**kwargs)
    symbolic = (None, *shape[1:])
    assert ours.compute_output_shape(symbolic) == tuple(theirs.compute_output_shape(symbolic))
    np.testing.assert_array_equal(ours(x), keras_out(keras, theirs(x)))


def test_configs_agree_with_keras(keras):
    cases = [
        ("Conv1D", Conv1D, dict(filters=8, kernel_size=3, strides=2, padding="causal")),
        ("MaxPooling1D", MaxPooling1D, dict(pool_size=3, padding="same")),
        ("AveragePooling1D", AveragePooling1D, dict(pool_size=2, strides=1)),
        ("GlobalAveragePooling1D", GlobalAveragePooling1D, dict(keepdims=True)),
        ("GlobalMaxPooling1D", GlobalMaxPooling1D, dict()),
        ("Reshape", Reshape, dict(target_shape=(-1, 4))),
        ("RepeatVector", RepeatVector, dict(n=4)),
    ]
    for name, cls, kwargs in cases:
        ours, theirs = (
            cls(**kwargs).get_config(),
            getattr(keras.layers, name)(**kwargs).get_config(),
        )
        for key in set(ours) - {"name", "dtype", "trainable"}:
            if key in theirs and not key.endswith(("_initializer", "_regularizer")):
                assert ours[key] == theirs[key], (name, key, ours[key], theirs[key])
    ours = TimeDistributed(Dense(3)).get_config()["layer"]
    theirs = keras.layers.TimeDistributed(keras.layers.Dense(3)).get_config()["layer"]
    assert ours["class_name"] == theirs["class_name"] == "Dense"
    assert ours["config"]["units"] == theirs["config"]["units"]


def test_defaults_follow_keras(keras):
    conv, conv_k = Conv1D(2, 3), keras.layers.Conv1D(2, 3)
    for key in ["strides", "padding", "dilation_rate", "use_bias", "activation"]:
        assert conv.get_config()[key] == conv_k.get_config()[key], key
    assert MaxPooling1D().pool_size == tuple(keras.layers.MaxPooling1D().pool_size) == (2,)


# ---------------------------------------------------------------- config round trips, shapes


@pytest.mark.parametrize(
    "layer, shape",
    [
        (Conv1D(4, 2, strides=2, padding="causal", activation="tanh", use_bias=False), (2, 7, 3)),
        (Conv1D(3, 3, padding="same", kernel_regularizer="l2", name="c1d"), (2, 5, 3)),
        (MaxPooling1D(3, strides=2, padding="same"), (2, 7, 3)),
        (AveragePooling1D(2), (2, 7, 3)),
        (GlobalAveragePooling1D(keepdims=True), (2, 7, 3)),
        (GlobalMaxPooling1D(), (2, 7, 3)),
        (Reshape((-1, 7)), (2, 7, 3)),
        (RepeatVector(3), (2, 5)),
        (TimeDistributed(Dense(4, activation="relu", use_bias=False)), (2, 7, 3)),
        (TimeDistributed(Conv1D(2, 3, padding="same"), name="td"), (2, 4, 5, 3)),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else str(len(v)),
)
def test_config_round_trip(layer, shape):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    layer(x)
    clone(x)
    assert [w.shape for w in clone.weights] == [w.shape for w in layer.weights]
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(x), layer(x))


@pytest.mark.parametrize(
    "layer, in_shape, out_shape",
    [
        (Conv1D(8, 3), (None, 28, 2), (None, 26, 8)),
        (Conv1D(8, 4, strides=3, padding="same"), (None, 10, 2), (None, 4, 8)),
        (Conv1D(8, 5, strides=2, padding="causal"), (None, 9, 2), (None, 5, 8)),
        (Conv1D(8, 3), (None, None, 2), (None, None, 8)),
        (MaxPooling1D(), (None, 9, 4), (None, 4, 4)),
        (MaxPooling1D(padding="same"), (None, 9, 4), (None, 5, 4)),
        (AveragePooling1D(3, 1), (4, 5, 2), (4, 3, 2)),
        (GlobalAveragePooling1D(), (None, None, 16), (None, 16)),
        (GlobalMaxPooling1D(keepdims=True), (None, 7, 16), (None, 1, 16)),
        (Reshape((-1, 3)), (None, 4, 3, 2), (None, 8, 3)),
        (Reshape((-1, 3)), (None, None, 3), (None, None, 3)),
        (RepeatVector(5), (None, 3), (None, 5, 3)),
        (TimeDistributed(Dense(2)), (None, 6, 3), (None, 6, 2)),
        (TimeDistributed(Conv1D(4, 2)), (None, 6, 5, 3), (None, 6, 4, 4)),
    ],
)
def test_output_shapes(layer, in_shape, out_shape):
    assert layer.compute_output_shape(in_shape) == out_shape


def test_symbolic_shapes_and_weights():
    x = fastnn.Input((20, 3))
    y = Conv1D(8, 5, padding="causal", activation="relu")(x)
    y = MaxPooling1D(2)(y)
    td = TimeDistributed(Dense(4))
    y = td(y)
    assert y.shape == (None, 10, 4)
    assert GlobalAveragePooling1D()(y).shape == (None, 4)
    assert Reshape((5, 8))(y).shape == (None, 5, 8)
    assert [w.path for w in td.weights] == [w.path for w in td.layer.weights]
    assert [w.shape for w in td.weights] == [(8, 4), (4,)]
    model = fastnn.Model(x, GlobalMaxPooling1D()(y))
    assert model.count_params() == 5 * 3 * 8 + 8 + 8 * 4 + 4
    assert len(model.trainable_weights) == 4


def test_conv1d_weights_and_gradients_accumulate():
    layer = Conv1D(5, 3)
    x = np.random.default_rng(0).standard_normal((2, 6, 2)).astype(np.float32)
    layer(x)
    assert [w.name for w in layer.weights] == ["kernel", "bias"]
    assert [w.shape for w in layer.weights] == [(3, 2, 5), (5,)]
    y, ctx = layer.forward(x, True)
    dx = layer.backward(ctx, np.ones_like(y))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    once = [w.grad.copy() for w in layer.weights]
    y, ctx = layer.forward(x, True)
    layer.backward(ctx, np.ones_like(y))
    for w, g in zip(layer.weights, once):
        np.testing.assert_allclose(w.grad, 2 * g, rtol=1e-6)


def test_dtypes_are_preserved():
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    for layer in [
        Conv1D(2, 3, padding="causal", activation="relu"),
        MaxPooling1D(),
        AveragePooling1D(2),
        GlobalAveragePooling1D(),
        GlobalMaxPooling1D(),
        Reshape((-1,)),
        TimeDistributed(Dense(2, activation="tanh")),
    ]:
        layer(x)
        y, ctx = layer.forward(x, True)
        assert y.dtype == np.float32, type(layer).__name__
        assert layer.backward(ctx, np.ones_like(y)).dtype == np.float32, type(layer).__name__
    y, ctx = GlobalAveragePooling1D().forward(x, True, mask=np.ones((2, 6), bool))
    assert y.dtype == np.float32
    assert GlobalAveragePooling1D().backward(ctx, np.ones_like(y)).dtype == np.float32


def test_time_distributed_trainable_and_dropout():
    td = TimeDistributed(Dense(2), trainable=False)
    assert not td.layer.trainable
    x = np.ones((2, 3, 4), np.float32)
    td(x)
    assert td.trainable_weights == [] and len(td.non_trainable_weights) == 2
    y, ctx = td.forward(x, True)
    td.backward(ctx, np.ones_like(y))
    assert not any(w.grad.any() for w in td.weights)
    td.trainable = True
    assert td.layer.trainable and len(td.trainable_weights) == 2
    drop = TimeDistributed(Dropout(0.5, seed=1))
    y = drop(x, training=True)
    assert y.shape == x.shape and set(np.unique(y)) <= {0.0, 2.0}
    np.testing.assert_array_equal(drop(x), x)


def test_masks_stop_at_reshape_and_repeat_vector_as_in_keras():
    ids = fastnn.Input((6,))
    emb = Embedding(9, 4, mask_zero=True)
    reshape, repeat = Reshape((6, 4)), RepeatVector(2)
    assert not reshape.supports_masking and not repeat.supports_masking
    assert GlobalAveragePooling1D().compute_mask(np.zeros((1, 6, 4)), IDS[:1] != 0) is None
    # After Reshape the mask is gone, so the average counts every step.
    model = fastnn.Model(ids, GlobalAveragePooling1D()(reshape(emb(ids))))
    # atol: a mean near 0 of float32 values summed in another order (seen: 2.5e-10 off at 7e-5)
    expected = emb(IDS).mean(1)
    np.testing.assert_allclose(model.predict(IDS, verbose=0), expected, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(filters=0, kernel_size=3), ValueError, r"`filters`.*Received filters=0"),
        (dict(filters=2, kernel_size=(3, 3)), ValueError, r"tuple of 1 integers"),
        (dict(filters=2, kernel_size=0), ValueError, r"kernel_size=0.*value > 0"),
        (dict(filters=2, kernel_size=3, strides=0), ValueError, r"Received strides=0"),
        (dict(filters=2, kernel_size=3, padding="full"), ValueError, r"'causal'.*padding='full'"),
        (dict(filters=2, kernel_size=3, data_format="NWC"), ValueError, r"data_format='NWC'"),
        (dict(filters=2, kernel_size=3, dilation_rate=2, strides=2), ValueError, r"`strides > 1`"),
        (dict(filters=3, kernel_size=3, groups=2), ValueError, r"divisible.*groups=2, filters=3"),
        (dict(filters=2, kernel_size=3, groups=0), ValueError, r"positive integer.*groups=0"),
        (dict(filters=2, kernel_size=3, activation="swishy"), ValueError, "swishy"),
        (dict(filters=2, kernel_size=3, bogus=1), TypeError, "bogus"),
    ],
)
def test_conv1d_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Conv1D(**kwargs)


def test_pooling1d_bad_arguments():
    for cls in [MaxPooling1D, AveragePooling1D]:
        with pytest.raises(ValueError, match=r"Received pool_size=0"):
            cls(0)
        with pytest.raises(ValueError, match=r"tuple of 1 integers"):
            cls((2, 2))
        with pytest.raises(ValueError, match=r"Received: padding='causal'"):
            cls(padding="causal")
    for cls in [MaxPooling1D, AveragePooling1D, GlobalAveragePooling1D, GlobalMaxPooling1D]:
        with pytest.raises(ValueError, match="channels_last"):
            cls(data_format="NCW")


def test_reshape_and_repeat_vector_bad_arguments():
    with pytest.raises(ValueError, match=r"at most one unknown dimension.*\(-1, -1\)"):
        Reshape((-1, -1))
    with pytest.raises(ValueError, match=r"non-negative integer.*\(2, -3\)"):
        Reshape((2, -3))
    with pytest.raises(TypeError, match="tuple of integers"):
        Reshape(4)
    with pytest.raises(TypeError, match="tuple of integers"):
        Reshape((2, 2.5))
    with pytest.raises(TypeError, match="integer value for `n`"):
        RepeatVector(2.0)
    with pytest.raises(ValueError, match=r"Received: n=0"):
        RepeatVector(0)
    with pytest.raises(ValueError, match="TimeDistributed.*Received: 'dense'"):
        TimeDistributed("dense")


def test_shape_errors_name_the_layer():
    x = fastnn.Input((4, 3))
    with pytest.raises(
        ValueError, match=r"Reshape 'r1':.*target_shape=\(5, 2\).*10.*\(None, 4, 3\)"
    ):
        Reshape((5, 2), name="r1")(x)
    with pytest.raises(ValueError, match=r"Reshape 'r2':.*target_shape=\(5, -1\).*\(None, 4, 3\)"):
        Reshape((5, -1), name="r2")(x)
    reshape = Reshape((-1, 5), name="r3")  # built on an unknown size, checked on the data
    reshape(fastnn.Input((None, 3)))
    with pytest.raises(ValueError, match=r"Reshape 'r3':.*\(2, 4, 3\)"):
        reshape(np.zeros((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match=r"RepeatVector 'rv': expects a 2-D input.*\(None, 4, 3\)"):
        RepeatVector(2, name="rv")(x)
    with pytest.raises(ValueError, match=r"Conv1D 'c1': expects a 3-D input.*\(None, 28\)"):
        Conv1D(2, 3, name="c1").compute_output_shape((None, 28))
    conv = Conv1D(2, 5, name="c2")
    with pytest.raises(ValueError, match=r"Conv1D 'c2': computed output size.*got \(None, 4, 3\)"):
        conv(x)
    assert not conv.built and not conv.weights  # nothing half-applied
    conv(np.zeros((1, 6, 3), np.float32))
    with pytest.raises(ValueError, match=r"Conv1D 'c2': incompatible.*\(batch, steps, 3\)"):
        conv(np.zeros((1, 6, 2), np.float32))
    with pytest.raises(ValueError, match=r"MaxPooling1D 'p1': computed output size"):
        MaxPooling1D(5, name="p1")(x)
    with pytest.raises(ValueError, match=r"GlobalMaxPooling1D 'g1': expects a 3-D input"):
        GlobalMaxPooling1D(name="g1")(fastnn.Input((4, 3, 2)))
    with pytest.raises(ValueError, match=r"TimeDistributed 'td': .*at least 3.*\(None, 4\)"):
        TimeDistributed(Dense(2), name="td")(fastnn.Input((4,)))
    td = TimeDistributed(Dense(2, name="inner"))
    td(x)
    with pytest.raises(ValueError, match=r"Dense 'inner': incompatible"):
        td(fastnn.Input((4, 5)))
    gap = GlobalAveragePooling1D(name="g2")
    with pytest.raises(ValueError, match=r"GlobalAveragePooling1D 'g2': mask must be"):
        gap(np.zeros((2, 4, 3), np.float32), mask=np.ones((2, 3), bool))
