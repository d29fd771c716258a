"""Float64 gradient checks of every layer, a model's training objective, and graph shapes.

Analytic gradients (``backward`` / ``Graph.backward``) against central finite differences; the
helpers live in ``tests/gradcheck.py``. Hypothesis draws sizes and a seed; the arrays come from
``numpy.random`` so values never sit on a kink (relu at 0, ties of Maximum / MaxPooling2D).
"""

import numpy as np
import pytest
from gradcheck import (
    ATOL,
    RTOL,
    check_gradients,
    check_layer_gradients,
    check_model_gradients,
    numeric_gradient,
    randomize_weights,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import layers, losses
from fastnn.fusion.conv_max_pool import ConvMaxPool
from fastnn.seeding import make_rng

F64 = "float64"
ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "softmax"]
SETTINGS = settings(max_examples=15, deadline=None)

batches = st.integers(1, 4)
features = st.integers(1, 6)
seeds = st.integers(0, 2**16)


def normal(seed, *shapes):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(shape) for shape in shapes]
    return arrays if len(arrays) > 1 else arrays[0]


def distinct(seed, *shapes):
    """Arrays whose values are all at least 1/size apart: no ties for Maximum."""
    rng = np.random.default_rng(seed)
    sizes = [int(np.prod(s)) for s in shapes]
    values = rng.permutation(sum(sizes)) * (4.0 / sum(sizes)) - 2.0
    values += rng.uniform(0, 0.25 / sum(sizes), values.shape)
    return [part.reshape(s) for part, s in zip(np.split(values, np.cumsum(sizes)[:-1]), shapes)]


# ---------------------------------------------------------------- core layers


@SETTINGS
@given(
    batch=batches,
    inner=st.one_of(st.none(), st.integers(1, 3)),
    in_dim=features,
    units=features,
    activation=st.sampled_from(ACTIVATIONS),
    use_bias=st.booleans(),
    seed=seeds,
)
def test_dense(batch, inner, in_dim, units, activation, use_bias, seed):
    layer = layers.Dense(units, activation=activation, use_bias=use_bias, dtype=F64)
    shape = (batch, in_dim) if inner is None else (batch, inner, in_dim)
    layer._maybe_build(shape)  # sets built (build() alone does not)
    randomize_weights(layer, seed)
    check_layer_gradients(layer, normal(seed + 1, shape), seed=seed)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple),
    activation=st.sampled_from(ACTIVATIONS),
    seed=seeds,
)
def test_activation(shape, activation, seed):
    layer = layers.Activation(activation, dtype=F64)
    check_layer_gradients(layer, normal(seed, shape), seed=seed)


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple), seed=seeds)
def test_flatten(shape, seed):
    check_layer_gradients(layers.Flatten(dtype=F64), normal(seed, shape), seed=seed)


@SETTINGS
@given(
    shape=st.lists(st.integers(1, 5), min_size=2, max_size=3).map(tuple),
    rate=st.sampled_from([0.0, 0.2, 0.5, 0.9]),
    training=st.booleans(),
    seed=seeds,
)
def test_dropout(shape, rate, training, seed):
    """Dropout draws a new mask per forward call: re-seed before every evaluation, so all of them
    (the analytic one and every finite difference) use one mask, and assert they did."""
    layer = layers.Dropout(rate, seed=seed, dtype=F64)

    def reseed():
        layer._rng = make_rng(seed)

    x = normal(seed, shape)
    fixed = (lambda ctx: ctx) if training and rate > 0 else None
    check_layer_gradients(layer, x, training=training, seed=seed, reset=reseed, fixed=fixed)


def test_dropout_backward_uses_the_mask_of_its_own_forward():
    layer = layers.Dropout(0.5, seed=3, dtype=F64)
    x = normal(0, (4, 50))
    y1, ctx1 = layer.forward(x, True)
    y2, _ = layer.forward(x, True)
    assert not np.array_equal(y1 == 0, y2 == 0), "Dropout should draw a new mask per call"
    r = normal(1, x.shape)
    grad = layer.backward(ctx1, r)
    kept = y1 != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(grad, np.where(kept, r * 2.0, 0.0))
    np.testing.assert_allclose(y1, np.where(kept, x * 2.0, 0.0))


@SETTINGS
@given(
    batch=batches,
    spatial=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    channels=st.integers(1, 4),
    center=st.booleans(),
    scale=st.booleans(),
    training=st.booleans(),
    seed=seeds,
)
def test_batch_normalization(batch, spatial, channels, center, scale, training, seed):
    """Training mode uses batch statistics (and updates the moving ones, which the check restores
    after every evaluation); inference mode is an affine map by the moving statistics."""
    shape = (batch, channels) if spatial is None else (batch, *spatial, channels)
    layer = layers.BatchNormalization(center=center, scale=scale, dtype=F64)
    layer._maybe_build(shape)  # sets built (build() alone does not)
    randomize_weights(layer, seed)
    x = normal(seed + 1, shape) * 2 + 1
    moving = [layer.moving_mean.numpy(), layer.moving_variance.numpy()]
    check_layer_gradients(layer, x, training=training, seed=seed)
    np.testing.assert_array_equal(layer.moving_mean.value, moving[0])  # restored by the check
    np.testing.assert_array_equal(layer.moving_variance.value, moving[1])


def test_batch_normalization_training_updates_moving_statistics():
    layer = layers.BatchNormalization(momentum=0.9, dtype=F64)
    x = normal(0, (5, 2, 3)) * 3 + 1
    layer._maybe_build(x.shape)
    layer.forward(x, True)
    flat = x.reshape(-1, 3)
    np.testing.assert_allclose(layer.moving_mean.value, 0.1 * flat.mean(0))
    np.testing.assert_allclose(layer.moving_variance.value, 0.9 + 0.1 * flat.var(0))


# ---------------------------------------------------------------- merging layers


@SETTINGS
@given(
    batch=batches,
    rank=st.integers(2, 4),
    n_inputs=st.integers(2, 3),
    middle=st.booleans(),
    data=st.data(),
    seed=seeds,
)
def test_concatenate(batch, rank, n_inputs, middle, data, seed):
    axis = data.draw(st.integers(1, rank - 2)) if middle and rank > 2 else -1
    base = [batch] + [data.draw(st.integers(1, 3)) for _ in range(rank - 1)]
    shapes = []
    for _ in range(n_inputs):
        shape = list(base)
        shape[axis] = data.draw(st.integers(1, 4))
        shapes.append(tuple(shape))
    layer = layers.Concatenate(axis=axis, dtype=F64)
    check_layer_gradients(layer, normal(seed, *shapes), seed=seed)


@st.composite
def broadcast_shapes(draw, min_inputs=2, max_inputs=3):
    """Input shapes of an elementwise merge: equal, or broadcast (axes of 1, or a lower rank:
    the missing axes are taken to follow the batch axis, as in Keras)."""
    batch = draw(batches)
    full = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 2)))]
    shapes = []
    for _ in range(draw(st.integers(min_inputs, max_inputs))):
        mask = draw(st.lists(st.booleans(), min_size=len(full), max_size=len(full)))
        dims = [1 if m else d for m, d in zip(mask, full)]
        shapes.append((batch, *dims[draw(st.integers(0, len(dims) - 1)) :]))
    return shapes


MERGES = {
    "add": layers.Add,
    "subtract": layers.Subtract,
    "multiply": layers.Multiply,
    "average": layers.Average,
    "maximum": layers.Maximum,
}


@SETTINGS
@given(kind=st.sampled_from(sorted(MERGES)), shapes=broadcast_shapes(), seed=seeds)
def test_elementwise_merge(kind, shapes, seed):
    if kind == "subtract":
        shapes = shapes[:2]
    layer = MERGES[kind](dtype=F64)
    xs = distinct(seed, *shapes) if kind == "maximum" else normal(seed, *shapes)
    check_layer_gradients(layer, xs, seed=seed)


@pytest.mark.parametrize("kind", sorted(MERGES))
@pytest.mark.parametrize(
    "shapes",
    [[(2, 1, 3), (2, 1, 1), (2, 4, 3)], [(3, 2), (3, 4, 2)], [(2, 1, 1), (2, 3), (2, 2, 1)]],
    ids=["third-input-widest", "lower-rank-first", "mixed"],
)
def test_elementwise_merge_broadcasts_as_built(kind, shapes):
    """Whatever shape the graph accepts at build time, forward and backward must handle."""
    shapes = shapes[:2] if kind == "subtract" else shapes
    symbolic = MERGES[kind](dtype=F64)([fastnn.Input(s[1:], dtype=F64) for s in shapes])
    layer = MERGES[kind](dtype=F64)
    grads = check_layer_gradients(layer, distinct(0, *shapes))
    assert layer.forward(distinct(0, *shapes), True)[0].shape[1:] == symbolic.shape[1:]
    assert [g.shape for g in grads] == [tuple(s) for s in shapes]


def test_maximum_sends_the_gradient_to_the_larger_input():
    a = np.array([[1.0, -2.0, 3.0]])
    b = np.array([[0.5, 4.0, -1.0]])
    grads = check_layer_gradients(layers.Maximum(dtype=F64), [a, b])
    r = np.random.default_rng(0).standard_normal(a.shape)
    np.testing.assert_allclose(grads[0], r * (a > b))
    np.testing.assert_allclose(grads[1], r * (b > a))


# ---------------------------------------------------------------- a model's training objective


LOSSES = {
    "mse": (lambda: losses.MeanSquaredError(), "linear", "regression"),
    "mae": (lambda: losses.MeanAbsoluteError(), "tanh", "regression"),
    "binary": (lambda: losses.BinaryCrossentropy(), "sigmoid", "binary"),
    "binary_logits": (lambda: losses.BinaryCrossentropy(from_logits=True), "linear", "binary"),
    "categorical": (lambda: losses.CategoricalCrossentropy(), "softmax", "categorical"),
    "categorical_logits": (
        lambda: losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
        "linear",
        "categorical",
    ),
    "sparse": (lambda: losses.SparseCategoricalCrossentropy(), "softmax", "sparse"),
    "sparse_logits": (
        lambda: losses.SparseCategoricalCrossentropy(from_logits=True),
        "linear",
        "sparse",
    ),
}


def targets(kind, batch, units, seed):
    rng = np.random.default_rng(seed)
    if kind == "regression":
        return rng.standard_normal((batch, units))
    if kind == "binary":
        return rng.integers(0, 2, (batch, units)).astype(np.float64)
    if kind == "categorical":
        return np.eye(units)[rng.integers(0, units, batch)]
    return rng.integers(0, units, batch)


def two_headed_model(in_dim, hidden, units, activations):
    x = fastnn.Input((in_dim,), dtype=F64)
    h = layers.Dense(hidden, activation="tanh", dtype=F64)(x)
    h = layers.BatchNormalization(dtype=F64)(h)
    out1 = layers.Dense(units[0], activation=activations[0], dtype=F64, name="head_a")(h)
    h2 = layers.Concatenate(dtype=F64)([h, x])
    out2 = layers.Dense(units[1], activation=activations[1], dtype=F64, name="head_b")(h2)
    return fastnn.Model(x, [out1, out2])


@SETTINGS
@given(
    batch=st.integers(2, 4),
    in_dim=features,
    hidden=st.integers(1, 4),
    units=st.tuples(st.integers(2, 4), st.integers(2, 4)),
    names=st.tuples(st.sampled_from(sorted(LOSSES)), st.sampled_from(sorted(LOSSES))),
    weights=st.tuples(st.sampled_from([1.0, 0.3]), st.sampled_from([1.0, 2.5])),
    seed=seeds,
)
def test_training_objective_of_a_two_loss_model(batch, in_dim, hidden, units, names, weights, seed):
    """d(w1 * loss1 + w2 * loss2)/d(weight) through the model's graph, for every weight."""
    specs = [LOSSES[n] for n in names]
    model = two_headed_model(in_dim, hidden, units, [s[1] for s in specs])
    randomize_weights(model, seed)
    model.compile(optimizer="sgd", loss=[s[0]() for s in specs], loss_weights=list(weights))
    x = normal(seed, (batch, in_dim))
    ys = [targets(s[2], batch, u, seed + i) for i, (s, u) in enumerate(zip(specs, units))]
    graph, loss_fns = model._graph, model._losses

    def objective():
        outputs, _ = graph.forward([x], training=True)
        return sum(w * f(y, o) for w, f, y, o in zip(weights, loss_fns, ys, outputs))

    saved = [v.numpy() for v in model.weights]
    for v in model.trainable_weights:
        v.grad[...] = 0
    outputs, tape = graph.forward([x], training=True)
    total, grads = 0.0, []
    for w, f, y, o in zip(weights, loss_fns, ys, outputs):
        value, grad = f.value_and_grad(y, o)
        total += w * value
        grads.append(grad * w)
    np.testing.assert_allclose(total, objective(), rtol=1e-12)
    graph.backward(tape, grads)

    for var in model.trainable_weights:
        numeric = numeric_gradient(objective, var.value)
        np.testing.assert_allclose(var.grad, numeric, atol=ATOL, rtol=RTOL, err_msg=var.path)
    model.set_weights(saved)  # undo the moving-statistics updates of the finite differences


def test_train_step_assembles_the_same_gradient():
    """fit's step (loss weights, sample weights, regularizers) leaves in .grad the gradient of
    its total loss."""
    x = fastnn.Input((3,), dtype=F64)
    h = layers.Dense(4, activation="tanh", kernel_regularizer="l2", dtype=F64)(x)
    out1 = layers.Dense(2, dtype=F64)(h)
    out2 = layers.Dense(3, activation="softmax", bias_regularizer="l1", dtype=F64)(h)
    model = fastnn.Model(x, [out1, out2])
    randomize_weights(model, 5)
    model.compile(
        optimizer=fastnn.optimizers.SGD(learning_rate=0.0),
        loss=["mse", "sparse_categorical_crossentropy"],
        loss_weights=[0.5, 2.0],
    )
    xs = normal(1, (4, 3))
    ys = [normal(2, (4, 2)), np.array([0, 2, 1, 2])]
    sample_weight = np.array([1.0, 0.5, 2.0, 0.0])
    before = [v.numpy() for v in model.weights]
    model._train_step([xs], ys, sample_weight)
    for v, b in zip(model.weights, before):
        np.testing.assert_array_equal(v.value, b)  # learning rate 0

    def total():
        o1, o2 = model._graph.forward([xs], training=True)[0]
        value = 0.5 * losses.MeanSquaredError()(ys[0], o1, sample_weight)
        value += 2.0 * losses.SparseCategoricalCrossentropy()(ys[1], o2, sample_weight)
        return value + sum(reg(var.value) for var, reg in model.regularization_losses())

    for var in model.trainable_weights:
        numeric = numeric_gradient(total, var.value)
        np.testing.assert_allclose(var.grad, numeric, atol=ATOL, rtol=RTOL, err_msg=var.path)


# ---------------------------------------------------------------- graph shapes


def dense(units, activation="tanh", **kwargs):
    return layers.Dense(units, activation=activation, dtype=F64, **kwargs)


@SETTINGS
@given(batch=batches, in_dim=features, units=st.integers(1, 4), seed=seeds)
def test_fan_out(batch, in_dim, units, seed):
    """One tensor read by two layers whose outputs are merged: its gradient is the sum."""
    x = fastnn.Input((in_dim,), dtype=F64)
    h = dense(units)(x)
    a = dense(units, "sigmoid")(h)
    b = dense(units, "relu")(h)
    out = layers.Concatenate(dtype=F64)([layers.Multiply(dtype=F64)([a, b]), h, x])
    model = fastnn.Model(x, out)
    randomize_weights(model, seed)
    check_model_gradients(model, normal(seed, (batch, in_dim)), seed=seed)


@SETTINGS
@given(batch=batches, in_dim=features, units=st.integers(1, 4), seed=seeds)
def test_shared_layer(batch, in_dim, units, seed):
    """One Dense called on two inputs: its kernel gradient is the sum over both calls."""
    x1, x2 = fastnn.Input((in_dim,), dtype=F64), fastnn.Input((in_dim,), dtype=F64)
    shared = dense(units, "linear")
    out = layers.Add(dtype=F64)([shared(x1), shared(x2)])
    model = fastnn.Model([x1, x2], out)
    assert model.trainable_weights == [shared.kernel, shared.bias]
    randomize_weights(model, seed)
    a, b = normal(seed, (batch, in_dim), (batch, in_dim))
    grads = check_model_gradients(model, [a, b], seed=seed)
    r = np.random.default_rng(seed).standard_normal((batch, units))
    np.testing.assert_allclose(shared.kernel.grad, a.T @ r + b.T @ r)
    np.testing.assert_allclose(shared.bias.grad, 2 * r.sum(0))
    np.testing.assert_allclose(grads[0], r @ shared.kernel.value.T)


@SETTINGS
@given(batch=batches, dim=features, seed=seeds, training=st.booleans())
def test_skip_connection(batch, dim, seed, training):
    x = fastnn.Input((dim,), dtype=F64)
    h = dense(dim, "relu")(x)
    h = layers.BatchNormalization(dtype=F64)(h)
    h = dense(dim, "linear")(h)
    y = layers.Add(dtype=F64)([h, x])
    y = layers.Activation("tanh", dtype=F64)(y)
    out = layers.Subtract(dtype=F64)([dense(dim)(y), y])
    model = fastnn.Model(x, out)
    randomize_weights(model, seed)
    check_model_gradients(model, normal(seed, (batch, dim)), training=training, seed=seed)


@SETTINGS
@given(batch=batches, dims=st.tuples(features, features), seed=seeds)
def test_multiple_inputs_and_outputs(batch, dims, seed):
    """Two inputs, three outputs; one output is also read by a later layer."""
    x1, x2 = fastnn.Input((dims[0],), dtype=F64), fastnn.Input((dims[1],), dtype=F64)
    h1, h2 = dense(3)(x1), dense(3, "sigmoid")(x2)
    merged = layers.Average(dtype=F64)([h1, h2])
    out_a = dense(2, "softmax")(merged)
    other = dense(3)(out_a)
    out_b = layers.Maximum(dtype=F64)([h1, other])
    out_c = layers.Concatenate(dtype=F64)([out_a, x2])
    model = fastnn.Model(inputs=[x1, x2], outputs=[out_a, out_b, out_c])
    randomize_weights(model, seed)
    xs = normal(seed, (batch, dims[0]), (batch, dims[1]))
    # Maximum's inputs are computed here, not drawn apart: skip draws that put them on its kink
    # (seed 2650 left a gap of 3e-7, inside the finite differences' step).
    a, b = fastnn.Model(inputs=[x1, x2], outputs=[h1, other]).predict(xs, verbose=0)
    assume(np.abs(a - b).min() > 1e-4)
    check_model_gradients(model, xs, seed=seed)


@SETTINGS
@given(batch=batches, dim=features, seed=seeds)
def test_nested_model(batch, dim, seed):
    """A Model and a Sequential used as layers; the inner Model twice (shared)."""
    z = fastnn.Input((dim,), dtype=F64)
    inner = fastnn.Model(z, layers.Add(dtype=F64)([dense(dim)(z), z]), name="inner")
    seq = fastnn.Sequential([dense(3, "relu", input_shape=(dim,)), dense(2, "linear")], name="seq")
    x1, x2 = fastnn.Input((dim,), dtype=F64), fastnn.Input((dim,), dtype=F64)
    a = inner(x1)
    b = inner(dense(dim)(x2))
    out = layers.Concatenate(dtype=F64)([seq(a), b])
    outer = fastnn.Model([x1, x2], out)
    assert len(outer.trainable_weights) == 2 + 4 + 2  # inner, seq, dense
    randomize_weights(outer, seed)
    xs = normal(seed, (batch, dim), (batch, dim))
    check_model_gradients(outer, xs, seed=seed)
    check_layer_gradients(outer, xs, seed=seed)  # Model.forward / backward, the layer contract


@SETTINGS
@given(batch=batches, dim=features, seed=seeds)
def test_nested_multi_output_model(batch, dim, seed):
    """An inner model with three outputs, one of them unused outside (its gradient is None)."""
    z = fastnn.Input((dim,), dtype=F64)
    hz = dense(3)(z)
    unused = dense(2, "relu")(hz)
    inner = fastnn.Model(z, [hz, dense(2, "sigmoid")(hz), unused], name="three_out")
    x = fastnn.Input((dim,), dtype=F64)
    p, q, _ = inner(x)
    out = dense(1, "linear")(layers.Concatenate(dtype=F64)([p, q, x]))
    model = fastnn.Model(x, [out, q])
    randomize_weights(model, seed)
    check_model_gradients(model, normal(seed, (batch, dim)), seed=seed)


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 2),
    size=st.tuples(st.integers(4, 6), st.integers(4, 6)),
    channels=st.integers(1, 3),
    padding=st.sampled_from(["valid", "same"]),
    seed=seeds,
)
def test_conv_pool_graph(batch, size, channels, padding, seed):
    x = fastnn.Input((*size, channels), dtype=F64)
    h = layers.Conv2D(3, 3, padding="same", activation="tanh", dtype=F64)(x)
    h = layers.BatchNormalization(dtype=F64)(h)
    p = layers.MaxPooling2D(2, padding=padding, dtype=F64)(h)
    a = layers.AveragePooling2D(2, strides=1, padding=padding, dtype=F64)(h)
    c = layers.Conv2D(2, (2, 1), strides=(1, 2), padding=padding, dtype=F64)(a)
    gap = layers.GlobalAveragePooling2D(dtype=F64)(c)
    kept = layers.GlobalAveragePooling2D(keepdims=True, dtype=F64)(p)
    flat = layers.Flatten(dtype=F64)(p)
    out = dense(2, "softmax")(layers.Concatenate(dtype=F64)([flat, gap]))
    model = fastnn.Model(x, [out, gap, kept])
    randomize_weights(model, seed)
    check_model_gradients(model, normal(seed, (batch, *size, channels)), seed=seed)


@settings(max_examples=8, deadline=None)
@given(
    batch=st.integers(1, 2),
    size=st.tuples(st.integers(6, 9), st.integers(6, 9)),
    activation=st.sampled_from(["linear", "relu", "sigmoid", "tanh"]),
    seed=seeds,
)
def test_conv_max_pool_pairs_trained_as_one_pass(batch, size, activation, seed):
    """Each Conv2D -> MaxPooling2D(2) pair runs fused in training (the direct grey rows, im2col
    with odd and strided outputs, 1x1), its backward from the pool's gradient alone."""
    x = fastnn.Input((*size, 1), dtype=F64)
    h = layers.Conv2D(3, 3, padding="same", activation=activation, dtype=F64)(x)  # direct
    h = layers.MaxPooling2D(2, dtype=F64)(h)
    h = layers.Conv2D(4, 2, activation=activation, dtype=F64)(h)  # im2col, odd sizes
    h = layers.MaxPooling2D(2, dtype=F64)(h)
    s = layers.MaxPooling2D(2, dtype=F64)(layers.Conv2D(3, 1, activation=activation, dtype=F64)(x))
    s = layers.Conv2D(2, 3, strides=2, padding="same", dtype=F64)(s)  # strided im2col
    s = layers.MaxPooling2D(2, dtype=F64)(s)
    out = dense(2)(layers.Concatenate(dtype=F64)([layers.Flatten(dtype=F64)(t) for t in (h, s)]))
    model = fastnn.Model(x, out)
    assert sum(isinstance(step.layer, ConvMaxPool) for step in model._graph.steps) == 4
    randomize_weights(model, seed)
    check_model_gradients(model, normal(seed, (batch, *size, 1)), seed=seed)


@SETTINGS
@given(batch=st.integers(2, 4), dim=features, seed=seeds)
def test_frozen_layers_pass_gradients_on_but_keep_their_weights(batch, dim, seed):
    x = fastnn.Input((dim,), dtype=F64)
    frozen = dense(3, trainable=False)
    norm = layers.BatchNormalization(trainable=False, dtype=F64)  # inference mode, as Keras 3
    out = dense(2)(norm(frozen(x)))
    model = fastnn.Model(x, out)
    randomize_weights(model, seed)
    assert len(model.trainable_weights) == 2
    before = [v.numpy() for v in frozen.weights + norm.weights]
    check_model_gradients(model, normal(seed, (batch, dim)), seed=seed)
    for v, b in zip(frozen.weights + norm.weights, before):
        np.testing.assert_array_equal(v.value, b)
        assert not v.grad.any(), v.path


def test_dropout_in_a_model():
    x = fastnn.Input((5,), dtype=F64)
    drop = layers.Dropout(0.4, seed=1, dtype=F64)
    out = dense(3)(drop(dense(6)(x)))
    model = fastnn.Model(x, out)
    randomize_weights(model, 0)
    index = [step.layer for step in model._graph.steps].index(drop)

    def reseed():
        drop._rng = make_rng(1)

    check_model_gradients(model, normal(0, (4, 5)), reset=reseed, fixed=lambda tape: tape[1][index])


def test_a_tape_is_independent_of_later_forward_calls():
    x = fastnn.Input((4,), dtype=F64)
    h = layers.BatchNormalization(dtype=F64)(dense(5)(x))
    model = fastnn.Model(x, dense(2, "softmax")(layers.Dropout(0.3, dtype=F64)(h)))
    randomize_weights(model, 0)
    a, b, r = normal(0, (3, 4), (3, 4), (3, 2))
    graph = model._graph
    _, tape_a = graph.forward([a], training=True)
    graph.forward([b], training=True)
    grad_a = graph.backward(tape_a, [r])[0]
    kernel_grad = [v.grad.copy() for v in model.trainable_weights]
    for v in model.trainable_weights:
        v.grad[...] = 0
    grad_again = graph.backward(tape_a, [r])[0]
    np.testing.assert_array_equal(grad_a, grad_again)
    for v, g in zip(model.trainable_weights, kernel_grad):
        np.testing.assert_array_equal(v.grad, g)


# ---------------------------------------------------------------- random DAGs


@st.composite
def dag_recipes(draw):
    """A small random DAG: Dense (new or shared), Add, Multiply, Concatenate over 1-2 inputs."""
    widths = [draw(st.integers(1, 4)) for _ in range(draw(st.integers(1, 2)))]
    n_inputs = len(widths)
    denses = []  # (in_width, units) of every Dense layer created so far
    steps = []
    for _ in range(draw(st.integers(2, 6))):
        op = draw(st.sampled_from(["dense", "shared", "add", "multiply", "concat"]))
        a = draw(st.integers(0, len(widths) - 1))
        b = draw(st.integers(0, len(widths) - 1))
        if op == "shared" and not denses:
            op = "dense"
        if op == "concat" and widths[a] + widths[b] > 8:
            op = "add"
        if op == "dense":
            units = draw(st.integers(1, 4))
            activation = draw(st.sampled_from(["linear", "relu", "sigmoid", "tanh"]))
            steps.append(("dense", a, units, activation))
            denses.append((widths[a], units))
            widths.append(units)
        elif op == "shared":
            j = draw(st.integers(0, len(denses) - 1))
            steps.append(("shared", a, j))  # projected to the layer's input width if needed
            widths.append(denses[j][1])
        elif op == "concat":
            steps.append(("concat", a, b))
            widths.append(widths[a] + widths[b])
        else:
            steps.append((op, a, b))  # b is projected to a's width if needed
            widths.append(widths[a])
    outputs = [len(widths) - 1]
    if draw(st.booleans()):
        outputs.append(draw(st.integers(0, len(widths) - 1)))
    return widths[:n_inputs], steps, outputs


def build_dag(in_widths, steps, outputs):
    inputs = [fastnn.Input((w,), dtype=F64) for w in in_widths]
    tensors = list(inputs)
    denses = []

    def width(t):
        return t.shape[-1]

    def project(t, w):
        return t if width(t) == w else dense(w, "linear")(t)

    for step in steps:
        op, a = step[0], tensors[step[1]]
        if op == "dense":
            denses.append(dense(step[2], step[3]))
            tensors.append(denses[-1](a))
        elif op == "shared":
            layer = denses[step[2]]
            tensors.append(layer(project(a, layer.kernel.shape[0])))
        elif op == "concat":
            tensors.append(layers.Concatenate(dtype=F64)([a, tensors[step[2]]]))
        else:
            merge = layers.Add if op == "add" else layers.Multiply
            tensors.append(merge(dtype=F64)([a, project(tensors[step[2]], width(a))]))
    return fastnn.Model(inputs, [tensors[i] for i in outputs])


@settings(max_examples=20, deadline=None)
@given(recipe=dag_recipes(), batch=batches, seed=seeds)
def test_random_dag(recipe, batch, seed):
    in_widths, steps, outputs = recipe
    model = build_dag(in_widths, steps, outputs)
    randomize_weights(model, seed)
    xs = normal(seed, *[(batch, w) for w in in_widths])
    check_model_gradients(model, xs if len(in_widths) > 1 else [xs], seed=seed)


# ---------------------------------------------------------------- the checker itself


def test_the_checker_catches_a_wrong_gradient():
    layer = dense(3)
    layer._maybe_build((2, 4))
    original = layer.backward

    def off_by_a_bit(ctx, grad):
        layer.kernel.grad += 1e-3
        return original(ctx, grad)

    layer.backward = off_by_a_bit
    with pytest.raises(AssertionError, match="gradient of dense.*kernel"):
        check_layer_gradients(layer, normal(0, (2, 4)))


def test_the_checker_catches_a_changing_dropout_mask():
    layer = layers.Dropout(0.5, seed=0, dtype=F64)
    with pytest.raises(AssertionError):
        check_gradients(
            lambda xs: ([layer.forward(xs[0], True)[0]], None),
            lambda ctx, grads: [grads[0]],
            [normal(0, (3, 4))],
            [],
        )
