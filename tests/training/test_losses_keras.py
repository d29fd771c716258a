"""The losses beyond crossentropy and MSE/MAE (issue 22) against Keras 3 (torch): values under
every reduction with and without sample weights, gradients against torch's autograd, function
forms, names and configs, names in compile(); float64 gradients against finite differences.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_twin import assert_same_weights, copy_weights

import fastnn
from fastnn import losses

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

RNG = np.random.default_rng(22)
N, C = 6, 4
REDUCTIONS = ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", None]


def _probs(shape, rng=RNG):
    p = rng.uniform(0.05, 1.0, shape).astype(np.float32)
    return p / p.sum(-1, keepdims=True)


def _normal(shape, scale=1.0):
    return RNG.normal(0, scale, shape).astype(np.float32)


def _positive(shape):
    return RNG.uniform(0.1, 3.0, shape).astype(np.float32)


def _binary(shape):
    return RNG.integers(0, 2, shape).astype(np.float32)


def _onehot(shape):
    return np.eye(shape[-1], dtype=np.float32)[RNG.integers(0, shape[-1], shape[:-1])]


# name: (class name, constructor kwargs, y_true, y_pred); one Keras class of the same name each
CASES = {
    "huber": ("Huber", {}, _normal((N, C)), _normal((N, C), 2)),
    "huber_delta": ("Huber", {"delta": 0.4}, _normal((N, 3, C)), _normal((N, 3, C), 2)),
    "log_cosh": ("LogCosh", {}, _normal((N, C)), _normal((N, C), 4)),
    "kl_divergence": ("KLDivergence", {}, _probs((N, C)), _probs((N, C))),
    "kl_divergence_zeros": ("KLDivergence", {}, _onehot((N, C)), _probs((N, C))),
    "poisson": ("Poisson", {}, _positive((N, C)), _positive((N, C))),
    "cosine_similarity": ("CosineSimilarity", {}, _normal((N, C)), _normal((N, C))),
    "cosine_similarity_axis1": (
        "CosineSimilarity",
        {"axis": 1},
        _normal((N, 3, C)),
        _normal((N, 3, C)),
    ),
    "hinge_01_labels": ("Hinge", {}, _binary((N, C)), _normal((N, C))),
    "hinge_signed_labels": ("Hinge", {}, 2 * _binary((N, C)) - 1, _normal((N, C))),
    "hinge_rank1_labels": ("Hinge", {}, _binary((N,)), _normal((N, 1))),
    "squared_hinge": ("SquaredHinge", {}, _binary((N, C)), _normal((N, C))),
    "categorical_hinge": ("CategoricalHinge", {}, _onehot((N, C)), _normal((N, C))),
    "mape": ("MeanAbsolutePercentageError", {}, _normal((N, C)), _normal((N, C))),
    "msle": ("MeanSquaredLogarithmicError", {}, _positive((N, C)), _normal((N, C))),
    "binary_focal": ("BinaryFocalCrossentropy", {}, _binary((N, C)), _probs((N, C))),
    "binary_focal_balanced_logits": (
        "BinaryFocalCrossentropy",
        {"apply_class_balancing": True, "alpha": 0.4, "gamma": 1.5, "from_logits": True},
        _binary((N, 1)),
        _normal((N, 1), 3),
    ),
    "binary_focal_smoothing": (
        "BinaryFocalCrossentropy",
        {"label_smoothing": 0.2, "gamma": 3.0},
        _binary((N, 3, C)),
        RNG.uniform(0.01, 0.99, (N, 3, C)).astype(np.float32),
    ),
    "categorical_focal": ("CategoricalFocalCrossentropy", {}, _onehot((N, C)), _probs((N, C))),
    "categorical_focal_logits_smoothing": (
        "CategoricalFocalCrossentropy",
        {"alpha": 0.5, "gamma": 1.0, "from_logits": True, "label_smoothing": 0.1},
        _onehot((N, C)),
        _normal((N, C), 3),
    ),
    "categorical_focal_class_alphas": (
        "CategoricalFocalCrossentropy",
        {"alpha": [0.1, 0.2, 0.3, 0.4]},
        _onehot((N, 3, C)),
        RNG.uniform(0.05, 1.0, (N, 3, C)).astype(np.float32),
    ),
    "bce_logits_smoothing": (
        "BinaryCrossentropy",
        {"from_logits": True, "label_smoothing": 0.3},
        _binary((N, C)),
        _normal((N, C), 3),
    ),
    "cce_probs_smoothing": (
        "CategoricalCrossentropy",
        {"label_smoothing": 0.25},
        _onehot((N, 3, C)),
        _probs((N, 3, C)),
    ),
}


def _pair(case, **overrides):
    name, kwargs, y_true, y_pred = CASES[case]
    kwargs = kwargs | overrides
    return getattr(losses, name)(**kwargs), getattr(keras.losses, name)(**kwargs), y_true, y_pred


def _keras_value_and_grad(kloss, y_true, y_pred, sample_weight=None):
    pred = torch.tensor(y_pred, requires_grad=True)
    weight = None if sample_weight is None else torch.tensor(sample_weight)
    value = kloss(torch.tensor(y_true), pred, sample_weight=weight)
    value.backward()
    return float(value.detach()), pred.grad.numpy()


def _assert_grad_close(got, want):
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6 * max(np.abs(want).max(), 1e-3))


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_grad_match_keras(case):
    ours, theirs, y_true, y_pred = _pair(case)
    want_value, want_grad = _keras_value_and_grad(theirs, y_true, y_pred)
    assert ours(y_true, y_pred) == pytest.approx(want_value, rel=1e-5, abs=1e-6)
    value, grad = ours.value_and_grad(y_true, y_pred)
    assert value == pytest.approx(want_value, rel=1e-5, abs=1e-6)
    assert grad.shape == y_pred.shape and grad.dtype == np.float32
    _assert_grad_close(grad, want_grad)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_reductions_and_sample_weights_match_keras(case, reduction, weighted):
    ours, theirs, y_true, y_pred = _pair(case, reduction=reduction)
    values_shape = ours.call(y_true, y_pred).shape
    weights = RNG.uniform(0, 2, values_shape).astype(np.float32) if weighted else None
    want = keras.ops.convert_to_numpy(theirs(y_true, y_pred, sample_weight=weights))
    got = ours(y_true, y_pred, sample_weight=weights)
    assert np.shape(got) == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if reduction is not None:
        want_value, want_grad = _keras_value_and_grad(theirs, y_true, y_pred, weights)
        value, grad = ours.value_and_grad(y_true, y_pred, sample_weight=weights)
        assert value == pytest.approx(want_value, rel=1e-5, abs=1e-6)
        _assert_grad_close(grad, want_grad)


def test_per_sample_weights_broadcast_over_the_inner_axes():
    """(N,) weights against (N, T) per-sample values weigh each sample's T values alike."""
    ours, _, y_true, y_pred = _pair("huber_delta")
    weights = RNG.uniform(0, 2, N).astype(np.float32)
    got = ours(y_true, y_pred, sample_weight=weights)
    want = ours(y_true, y_pred, sample_weight=np.repeat(weights[:, None], 3, axis=1))
    assert got == pytest.approx(want, rel=1e-6)


FUNCTIONS = {
    "huber": ("huber", {"delta": 0.5}, _normal((N, C)), _normal((N, C), 2)),
    "log_cosh": ("log_cosh", {}, _normal((N, C)), _normal((N, C), 3)),
    "kl_divergence": ("kl_divergence", {}, _probs((N, C)), _probs((N, C))),
    "kld": ("kl_divergence", {}, _probs((N, C)), _probs((N, C))),
    "poisson": ("poisson", {}, _positive((N, C)), _positive((N, C))),
    "cosine_similarity": ("cosine_similarity", {"axis": -1}, _normal((N, C)), _normal((N, C))),
    "hinge": ("hinge", {}, _binary((N, C)), _normal((N, C))),
    "squared_hinge": ("squared_hinge", {}, _binary((N, C)), _normal((N, C))),
    "categorical_hinge": ("categorical_hinge", {}, _onehot((N, C)), _normal((N, C))),
    "mean_absolute_percentage_error": (
        "mean_absolute_percentage_error",
        {},
        _normal((N, C)),
        _normal((N, C)),
    ),
    "mape": ("mean_absolute_percentage_error", {}, _normal((N, C)), _normal((N, C))),
    "mean_squared_logarithmic_error": (
        "mean_squared_logarithmic_error",
        {},
        _positive((N, C)),
        _positive((N, C)),
    ),
    "msle": ("mean_squared_logarithmic_error", {}, _positive((N, C)), _positive((N, C))),
    "binary_focal_crossentropy": (
        "binary_focal_crossentropy",
        {"apply_class_balancing": True, "gamma": 1.0},
        _binary((N, C)),
        _probs((N, C)),
    ),
    "categorical_focal_crossentropy": (
        "categorical_focal_crossentropy",
        {"from_logits": True, "label_smoothing": 0.1},
        _onehot((N, C)),
        _normal((N, C), 2),
    ),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_functions_match_keras(name):
    keras_name, kwargs, y_true, y_pred = FUNCTIONS[name]
    want = keras.ops.convert_to_numpy(getattr(keras.losses, keras_name)(y_true, y_pred, **kwargs))
    got = getattr(losses, name)(y_true, y_pred, **kwargs)
    assert got.shape == want.shape == (N,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


NEW_CLASSES = sorted({name for name, *_ in CASES.values()})


@pytest.mark.parametrize("name", NEW_CLASSES)
def test_names_defaults_and_configs_match_keras(name):
    ours, theirs = getattr(losses, name)(), getattr(keras.losses, name)()
    assert ours.name == theirs.name and ours.reduction == theirs.reduction
    keras_config = theirs.get_config()
    keras_config.pop("dtype", None)
    for key, value in keras_config.items():
        assert ours.get_config()[key] == value, key
    restored = type(ours).from_config(keras_config)
    assert restored.get_config() == ours.get_config()
    ours = getattr(losses, name)(**CASES[next(k for k in CASES if CASES[k][0] == name)][1])
    again = type(ours).from_config(ours.get_config())
    assert again.get_config() == ours.get_config()
    assert losses.get(losses.serialize(ours)).get_config() == ours.get_config()


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("huber", losses.Huber),
        ("Huber", losses.Huber),
        ("log_cosh", losses.LogCosh),
        ("kl_divergence", losses.KLDivergence),
        ("kld", losses.KLDivergence),
        ("KLD", losses.KLDivergence),
        ("poisson", losses.Poisson),
        ("cosine_similarity", losses.CosineSimilarity),
        ("hinge", losses.Hinge),
        ("squared_hinge", losses.SquaredHinge),
        ("categorical_hinge", losses.CategoricalHinge),
        ("mean_absolute_percentage_error", losses.MeanAbsolutePercentageError),
        ("mape", losses.MeanAbsolutePercentageError),
        ("MAPE", losses.MeanAbsolutePercentageError),
        ("mean_squared_logarithmic_error", losses.MeanSquaredLogarithmicError),
        ("msle", losses.MeanSquaredLogarithmicError),
        ("MSLE", losses.MeanSquaredLogarithmicError),
        ("binary_focal_crossentropy", losses.BinaryFocalCrossentropy),
        ("CategoricalFocalCrossentropy", losses.CategoricalFocalCrossentropy),
        ("categorical_focal_crossentropy", losses.CategoricalFocalCrossentropy),
        (losses.huber, losses.Huber),
        (losses.binary_focal_crossentropy, losses.BinaryFocalCrossentropy),
    ],
)
def test_get_resolves_keras_names(identifier, cls):
    assert type(losses.get(identifier)) is cls
    if isinstance(identifier, str):  # Keras knows the same name
        assert keras.losses.get(identifier) is not None


def test_argument_errors():
    with pytest.raises(ValueError, match="`label_smoothing` must be a float in"):
        losses.BinaryFocalCrossentropy(label_smoothing=2.0)
    with pytest.raises(ValueError, match="`from_logits` must be a bool"):
        losses.CategoricalFocalCrossentropy(from_logits="yes")
    with pytest.raises(ValueError, match="alpha has 2 class weights but y_pred has 4 classes"):
        losses.CategoricalFocalCrossentropy(alpha=[0.5, 0.5])(_onehot((2, 4)), _probs((2, 4)))
    with pytest.raises(ValueError, match=r"axis=3 is out of range for y_pred of rank 2"):
        losses.CosineSimilarity(axis=3)(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(
        ValueError,
        match=r"Huber 'huber_loss': y_true and y_pred must have the same shape; "
        r"got y_true.shape=\(4, 3\) and y_pred.shape=\(4, 5\)",
    ):
        losses.Huber()(np.zeros((4, 3)), np.ones((4, 5)))


# ---- float64 gradients against central finite differences ----

FD = {
    "huber": (losses.Huber, {"delta": 0.7}, "normal", "normal"),
    "log_cosh": (losses.LogCosh, {}, "normal", "normal"),
    "kl_divergence": (losses.KLDivergence, {}, "probs", "probs"),
    "poisson": (losses.Poisson, {}, "positive", "positive"),
    "cosine_similarity": (losses.CosineSimilarity, {}, "normal", "normal"),
    "cosine_similarity_axis1": (losses.CosineSimilarity, {"axis": 1}, "normal", "normal"),
    "hinge": (losses.Hinge, {}, "binary", "normal"),
    "squared_hinge": (losses.SquaredHinge, {}, "binary", "normal"),
    "categorical_hinge": (losses.CategoricalHinge, {}, "onehot", "normal"),
    "mape": (losses.MeanAbsolutePercentageError, {}, "normal", "normal"),
    "msle": (losses.MeanSquaredLogarithmicError, {}, "positive", "positive"),
    "binary_focal": (losses.BinaryFocalCrossentropy, {"label_smoothing": 0.1}, "binary", "probs"),
    "binary_focal_logits": (
        losses.BinaryFocalCrossentropy,
        {"from_logits": True, "apply_class_balancing": True},
        "binary",
        "normal",
    ),
    "categorical_focal": (losses.CategoricalFocalCrossentropy, {}, "onehot", "probs"),
    "categorical_focal_logits": (
        losses.CategoricalFocalCrossentropy,
        {"from_logits": True, "gamma": 1.5, "label_smoothing": 0.2},
        "onehot",
        "normal",
    ),
}


def _draw(kind, shape, rng):
    if kind == "normal":
        return rng.normal(0, 1.5, shape)
    if kind == "positive":
        return rng.uniform(0.1, 3, shape)
    if kind == "probs":
        p = rng.uniform(0.05, 1, shape)
        return p / p.sum(-1, keepdims=True)
    if kind == "binary":
        return rng.integers(0, 2, shape).astype(np.float64)
    return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])]


@pytest.mark.parametrize("name", sorted(FD))
@settings(max_examples=5, deadline=None)
@given(
    shape=st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
    classes=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
    weighted=st.booleans(),
)
def test_value_and_grad_match_finite_differences(name, shape, classes, seed, weighted):
    cls, kwargs, true_kind, pred_kind = FD[name]
    if kwargs.get("axis") == 1 and len(shape) < 2:
        shape = shape + (2,)
    loss = cls(**kwargs)
    rng = np.random.default_rng(seed)
    pred_shape = shape + (classes,)
    y_true, y_pred = _draw(true_kind, pred_shape, rng), _draw(pred_kind, pred_shape, rng)
    sw = rng.uniform(0.5, 2, shape[:1]) if weighted else None
    value, grad = loss.value_and_grad(y_true, y_pred, sample_weight=sw)
    assert grad.dtype == np.float64 and grad.shape == y_pred.shape
    assert value == pytest.approx(loss(y_true, y_pred, sample_weight=sw), rel=1e-12)
    h = 1e-6
    fd = np.empty_like(y_pred)
    for idx in np.ndindex(*y_pred.shape):
        up, down = y_pred.copy(), y_pred.copy()
        up[idx] += h
        down[idx] -= h
        fd[idx] = (loss(y_true, up, sw) - loss(y_true, down, sw)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_a_tape_gets_the_kernel_gradient():
    ours, _, y_true, y_pred = _pair("binary_focal_balanced_logits")
    with fastnn.GradientTape() as tape:
        pred = tape.watch(y_pred)
        value = ours(y_true, pred)
    _, want = ours.value_and_grad(y_true, y_pred)
    np.testing.assert_allclose(tape.gradient(value, pred), want, rtol=1e-6)


# ---- by name in compile(): the same SGD steps as Keras ----

COMPILED = {
    "huber": ("normal", 1),
    "log_cosh": ("normal", 1),
    "kl_divergence": ("probs", 3),
    "poisson": ("positive", 1),
    "cosine_similarity": ("normal", 3),
    "hinge": ("binary", 1),
    "squared_hinge": ("binary", 1),
    "categorical_hinge": ("onehot", 3),
    "mape": ("positive", 1),
    "msle": ("positive", 1),
    "binary_focal_crossentropy": ("binary", 1),
    "categorical_focal_crossentropy": ("onehot", 3),
}


def _model(K, units, name):
    inputs = K.Input((5,))
    hidden = K.layers.Dense(6, activation="tanh")(inputs)
    activation = {"probs": "softmax", "onehot": "softmax", "positive": "sigmoid"}.get(name)
    if name == "binary":
        activation = "sigmoid"
    return K.Model(inputs, K.layers.Dense(units, activation=activation)(hidden))


@pytest.mark.parametrize("loss", sorted(COMPILED))
def test_compiled_by_name_trains_as_keras(loss):
    kind, units = COMPILED[loss]
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = _draw(kind, (16, units), rng).astype(np.float32)
    ours, theirs = _model(fastnn, units, kind), _model(keras, units, kind)
    copy_weights(theirs, ours)
    logs = []
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(optimizer=K.optimizers.SGD(0.1), loss=loss)
        logs.append([float(model.train_on_batch(x, y)) for _ in range(3)])
    np.testing.assert_allclose(logs[0], logs[1], rtol=1e-4, atol=1e-6)
    assert_same_weights(ours, theirs)


def test_function_forms_inside_a_custom_loss_train_as_keras():
    """A user's loss built from the function forms records them on the tape (their kernels'
    gradients), CosineSimilarity's moved axis included."""

    def make_loss(K):
        def mixed(y_true, y_pred):
            y_true3 = K.ops.reshape(y_true, (-1, 2, 2))
            y_pred3 = K.ops.reshape(y_pred, (-1, 2, 2))
            cosine = K.ops.mean(K.losses.cosine_similarity(y_true3, y_pred3, axis=1), axis=-1)
            return (
                K.losses.huber(y_true, y_pred, delta=0.5)
                + 0.5 * K.losses.log_cosh(y_true, y_pred)
                + 0.1 * cosine
            )

        return mixed

    rng = np.random.default_rng(8)
    x = rng.normal(size=(16, 5)).astype(np.float32)
    y = rng.normal(size=(16, 4)).astype(np.float32)
    ours, theirs = _model(fastnn, 4, "normal"), _model(keras, 4, "normal")
    copy_weights(theirs, ours)
    logs = []
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(optimizer=K.optimizers.SGD(0.1), loss=make_loss(K))
        logs.append([float(model.train_on_batch(x, y)) for _ in range(3)])
    np.testing.assert_allclose(logs[0], logs[1], rtol=1e-4, atol=1e-6)
    assert_same_weights(ours, theirs)


# A y_true with a gradient of its own (keras-io's knowledge distillation: a teacher's softened
# outputs as KLDivergence's y_true): both gradients against torch's autograd.
TARGET_GRADIENT_CASES = {
    "kl_divergence": ("KLDivergence", {}, _probs((N, C)), _probs((N, C))),
    "mse": ("MeanSquaredError", {}, _normal((N, C)), _normal((N, C))),
    "mae": ("MeanAbsoluteError", {}, _normal((N, C)), _normal((N, C))),
    "huber": ("Huber", {"delta": 0.5}, _normal((N, C)), _normal((N, C), 2)),
    "log_cosh": ("LogCosh", {}, _normal((N, C)), _normal((N, C), 3)),
    "poisson": ("Poisson", {}, _positive((N, C)), _positive((N, C))),
    "cce_logits_smoothed": (
        "CategoricalCrossentropy",
        {"from_logits": True, "label_smoothing": 0.1},
        _probs((N, C)),
        _normal((N, C)),
    ),
    "cce": ("CategoricalCrossentropy", {}, _probs((N, C)), _probs((N, C))),
    "bce_logits": ("BinaryCrossentropy", {"from_logits": True}, _probs((N, 1)), _normal((N, 1))),
    "bce_smoothed": (
        "BinaryCrossentropy",
        {"label_smoothing": 0.2},
        _probs((N, 3)),
        _probs((N, 3)),
    ),
}


@pytest.mark.parametrize("case", sorted(TARGET_GRADIENT_CASES))
def test_a_tracked_y_true_gets_its_gradient_as_keras(case):
    name, kwargs, y_true, y_pred = TARGET_GRADIENT_CASES[case]
    with fastnn.GradientTape() as tape:
        t, p = tape.watch(y_true), tape.watch(y_pred)
        ours = getattr(losses, name)(**kwargs)(t, p)
    grads = tape.gradient(ours, [t, p])
    t, p = (torch.tensor(a, requires_grad=True) for a in (y_true, y_pred))
    theirs = getattr(keras.losses, name)(**kwargs)(t, p)
    theirs.backward()
    np.testing.assert_allclose(float(fastnn.ops.convert_to_numpy(ours)), theirs.item(), rtol=1e-5)
    for got, want in zip(grads, (t.grad, p.grad)):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-6)


def test_a_tracked_y_true_elsewhere_says_what_to_do():
    with fastnn.GradientTape() as tape:
        t = tape.watch(_normal((N, C)))
        with pytest.raises(NotImplementedError, match="CosineSimilarity.*stop_gradient"):
            losses.CosineSimilarity()(t, _normal((N, C)))
