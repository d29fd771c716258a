"""fastnn.losses: Keras 3 parity (values, torch-autograd gradients), finite differences, errors."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import losses

keras = pytest.importorskip("keras")
torch = pytest.importorskip("torch")

RNG = np.random.default_rng(1234)


def _probs(shape, rng=RNG):
    p = rng.uniform(0.05, 1.0, shape).astype(np.float32)
    return p / p.sum(-1, keepdims=True)


def _onehot(labels, classes):
    return np.eye(classes, dtype=np.float32)[labels]


# (our loss, the Keras loss, y_true, y_pred) for float32 data of several ranks.
def _cases():
    n, c = 8, 5
    labels = RNG.integers(0, c, n)
    labels3 = RNG.integers(0, c, (n, 3))
    logits = RNG.normal(0, 3, (n, c)).astype(np.float32)
    reg_true = RNG.normal(0, 1, (n, 3)).astype(np.float32)
    reg_pred = RNG.normal(0, 1, (n, 3)).astype(np.float32)
    bin_true = RNG.integers(0, 2, (n, 1)).astype(np.float32)
    bin_prob = RNG.uniform(0.01, 0.99, (n, 1)).astype(np.float32)
    kl = keras.losses
    return {
        "mse": (losses.MeanSquaredError(), kl.MeanSquaredError(), reg_true, reg_pred),
        "mae": (losses.MeanAbsoluteError(), kl.MeanAbsoluteError(), reg_true, reg_pred),
        "mse_rank1_vs_col": (
            losses.MeanSquaredError(),
            kl.MeanSquaredError(),
            reg_true[:, 0],
            reg_pred[:, :1],
        ),
        "bce": (losses.BinaryCrossentropy(), kl.BinaryCrossentropy(), bin_true, bin_prob),
        "bce_rank1_true": (
            losses.BinaryCrossentropy(),
            kl.BinaryCrossentropy(),
            bin_true[:, 0],
            bin_prob,
        ),
        "bce_multilabel": (
            losses.BinaryCrossentropy(label_smoothing=0.2),
            kl.BinaryCrossentropy(label_smoothing=0.2),
            RNG.integers(0, 2, (n, 4)).astype(np.float32),
            RNG.uniform(0, 1, (n, 4)).astype(np.float32),
        ),
        "bce_logits": (
            losses.BinaryCrossentropy(from_logits=True),
            kl.BinaryCrossentropy(from_logits=True),
            bin_true,
            RNG.normal(0, 4, (n, 1)).astype(np.float32),
        ),
        "bce_clipped": (
            losses.BinaryCrossentropy(),
            kl.BinaryCrossentropy(),
            np.array([[1.0], [0.0], [1.0], [0.0]], np.float32),
            np.array([[0.0], [1.0], [1.0], [0.0]], np.float32),
        ),
        "cce": (
            losses.CategoricalCrossentropy(),
            kl.CategoricalCrossentropy(),
            _onehot(labels, c),
            _probs((n, c)),
        ),
        "cce_unnormalized_clipped": (
            losses.CategoricalCrossentropy(),
            kl.CategoricalCrossentropy(),
            _onehot(labels, c),
            np.where(RNG.random((n, c)) < 0.3, 0, RNG.uniform(0, 3, (n, c))).astype(np.float32),
        ),
        "cce_smoothing": (
            losses.CategoricalCrossentropy(label_smoothing=0.1),
            kl.CategoricalCrossentropy(label_smoothing=0.1),
            _onehot(labels, c),
            _probs((n, c)),
        ),
        "cce_logits": (
            losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            kl.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
            _onehot(labels, c),
            logits,
        ),
        "cce_rank3": (
            losses.CategoricalCrossentropy(),
            kl.CategoricalCrossentropy(),
            _onehot(labels3, c),
            _probs((n, 3, c)),
        ),
        "scce": (
            losses.SparseCategoricalCrossentropy(),
            kl.SparseCategoricalCrossentropy(),
            labels,
            _probs((n, c)),
        ),
        "scce_col_labels": (
            losses.SparseCategoricalCrossentropy(),
            kl.SparseCategoricalCrossentropy(),
            labels[:, None].astype(np.float32),
            _probs((n, c)),
        ),
        "scce_logits": (
            losses.SparseCategoricalCrossentropy(from_logits=True),
            kl.SparseCategoricalCrossentropy(from_logits=True),
            labels,
            logits,
        ),
        "scce_rank3": (
            losses.SparseCategoricalCrossentropy(),
            kl.SparseCategoricalCrossentropy(),
            labels3,
            _probs((n, 3, c)),
        ),
        "scce_ignore_class": (
            losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2),
            kl.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2),
            labels3,
            RNG.normal(0, 2, (n, 3, c)).astype(np.float32),
        ),
    }


CASES = _cases()


def _keras_value_and_grad(kloss, y_true, y_pred, sample_weight=None):
    pred = torch.tensor(y_pred, requires_grad=True)
    value = kloss(torch.tensor(y_true), pred, sample_weight=sample_weight)
    value.backward()
    return float(value.detach()), pred.grad.numpy()


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_and_grad_match_keras(case):
    ours, theirs, y_true, y_pred = CASES[case]
    want_value, want_grad = _keras_value_and_grad(theirs, y_true, y_pred)
    np.testing.assert_allclose(ours(y_true, y_pred), want_value, rtol=1e-5)
    value, grad = ours.value_and_grad(y_true, y_pred)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    assert grad.shape == y_pred.shape and grad.dtype == np.float32
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6 * np.abs(want_grad).max())


@pytest.mark.parametrize(
    "case", ["mse", "bce_multilabel", "cce_logits", "scce_rank3", "scce_ignore_class"]
)
@pytest.mark.parametrize("reduction", ["sum", "mean_with_sample_weight", None])
def test_reductions_and_sample_weight_match_keras(case, reduction):
    ours, theirs, y_true, y_pred = CASES[case]
    config = ours.get_config() | {"reduction": reduction}
    ours = type(ours).from_config(config)
    theirs = type(theirs).from_config(theirs.get_config() | {"reduction": reduction})
    weights = RNG.uniform(0, 2, len(y_pred)).astype(np.float32)
    # Keras broadcasts (N,) weights only against (N,) losses; fastnn against (N, T) too, as if
    # each sample's weight were repeated over its T losses.
    k_weights = np.broadcast_to(
        weights.reshape((-1,) + (1,) * (y_pred.ndim - 2)), y_pred.shape[:-1]
    )
    k_weights = k_weights.copy()
    want = theirs(y_true, y_pred, sample_weight=k_weights)
    got = ours(y_true, y_pred, sample_weight=weights)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(want), rtol=1e-5)
    if reduction is not None:
        want_value, want_grad = _keras_value_and_grad(
            theirs, y_true, y_pred, torch.tensor(k_weights)
        )
        value, grad = ours.value_and_grad(y_true, y_pred, sample_weight=weights)
        np.testing.assert_allclose(value, want_value, rtol=1e-5)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6 * np.abs(want_grad).max())


@pytest.mark.parametrize(
    "name",
    [
        "mean_squared_error",
        "mean_absolute_error",
        "binary_crossentropy",
        "categorical_crossentropy",
        "mse",
        "mae",
    ],
)
def test_functions_match_keras(name):
    y_true = RNG.integers(0, 2, (6, 4)).astype(np.float32)
    y_pred = _probs((6, 4))
    keras_name = {"mse": "mean_squared_error", "mae": "mean_absolute_error"}.get(name, name)
    want = keras.ops.convert_to_numpy(getattr(keras.losses, keras_name)(y_true, y_pred))
    got = getattr(losses, name)(y_true, y_pred)
    assert got.shape == want.shape == (6,)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    labels = RNG.integers(0, 4, 6)
    want = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(labels, y_pred))
    np.testing.assert_allclose(
        losses.sparse_categorical_crossentropy(labels, y_pred), want, rtol=1e-5
    )


# ---- gradients vs central finite differences, float64 ----

FD_LOSSES = {
    "mse": (losses.MeanSquaredError, {}, "dense"),
    "mae": (losses.MeanAbsoluteError, {}, "dense"),
    "bce": (losses.BinaryCrossentropy, {"label_smoothing": 0.1}, "dense"),
    "bce_logits": (losses.BinaryCrossentropy, {"from_logits": True}, "dense"),
    "cce": (losses.CategoricalCrossentropy, {"label_smoothing": 0.1}, "onehot"),
    "cce_logits": (losses.CategoricalCrossentropy, {"from_logits": True}, "onehot"),
    "scce": (losses.SparseCategoricalCrossentropy, {}, "labels"),
    "scce_logits": (losses.SparseCategoricalCrossentropy, {"from_logits": True}, "labels"),
}


@pytest.mark.parametrize("name", sorted(FD_LOSSES))
@settings(max_examples=10, deadline=None)
@given(
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple),
    classes=st.integers(2, 4),
    seed=st.integers(0, 2**32 - 1),
    weighted=st.booleans(),
)
def test_value_and_grad_match_finite_differences(name, shape, classes, seed, weighted):
    cls, kwargs, target = FD_LOSSES[name]
    loss = cls(**kwargs)
    rng = np.random.default_rng(seed)
    pred_shape = shape + (classes,)
    logits = kwargs.get("from_logits", False) or cls is losses.MeanSquaredError
    if logits or cls is losses.MeanAbsoluteError:
        y_pred = rng.normal(0, 2, pred_shape)
    else:
        y_pred = rng.uniform(0.05, 0.95, pred_shape)
    labels = rng.integers(0, classes, shape)
    y_true = {
        "dense": rng.uniform(0, 1, pred_shape),
        "onehot": np.eye(classes)[labels],
        "labels": labels,
    }[target]
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
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-8)


# ---- shapes, dtypes, names, configs ----


def test_grad_keeps_y_pred_shape_and_dtype():
    loss = losses.BinaryCrossentropy()
    value, grad = loss.value_and_grad(np.array([1, 0, 1]), np.array([[0.8], [0.3], [0.6]]))
    assert grad.shape == (3, 1) and grad.dtype == np.float64 and isinstance(value, float)
    value, grad = loss.value_and_grad(np.array([[1], [0]]), np.array([0.8, 0.3], np.float32))
    assert grad.shape == (2,) and grad.dtype == np.float32
    _, grad = losses.MeanSquaredError().value_and_grad([[1.0]], [[2]])
    assert grad.dtype == np.float32


def test_keras_names_defaults_and_kinds():
    expected = {
        losses.MeanSquaredError: ("mean_squared_error", "regression"),
        losses.MeanAbsoluteError: ("mean_absolute_error", "regression"),
        losses.BinaryCrossentropy: ("binary_crossentropy", "binary"),
        losses.CategoricalCrossentropy: ("categorical_crossentropy", "categorical"),
        losses.SparseCategoricalCrossentropy: (
            "sparse_categorical_crossentropy",
            "sparse_categorical",
        ),
    }
    for cls, (name, kind) in expected.items():
        ours, theirs = cls(), getattr(keras.losses, cls.__name__)()
        assert ours.name == theirs.name == name and ours.kind == kind
        assert ours.reduction == theirs.reduction
        keras_config = theirs.get_config()
        keras_config.pop("dtype", None)
        restored = cls.from_config(keras_config)
        assert restored.get_config() == ours.get_config()
        for key in set(keras_config) - {"dtype"}:
            assert ours.get_config()[key] == keras_config[key], key
    assert losses.CategoricalCrossentropy(from_logits=True).from_logits


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("mse", losses.MeanSquaredError),
        ("MSE", losses.MeanSquaredError),
        ("mean_squared_error", losses.MeanSquaredError),
        ("mae", losses.MeanAbsoluteError),
        ("mean_absolute_error", losses.MeanAbsoluteError),
        ("binary_crossentropy", losses.BinaryCrossentropy),
        ("categorical_crossentropy", losses.CategoricalCrossentropy),
        ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy),
        ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
        ("BinaryCrossentropy", losses.BinaryCrossentropy),
        (losses.mse, losses.MeanSquaredError),
        (losses.categorical_crossentropy, losses.CategoricalCrossentropy),
        (losses.MeanAbsoluteError, losses.MeanAbsoluteError),
        (
            {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}},
            losses.CategoricalCrossentropy,
        ),
    ],
)
def test_get(identifier, cls):
    assert type(losses.get(identifier)) is cls


def test_get_instances_callables_and_none():
    loss = losses.BinaryCrossentropy(from_logits=True)
    assert losses.get(loss) is loss
    assert losses.get(None) is None

    def my_loss(y_true, y_pred):
        return np.abs(y_true - y_pred).sum(-1)

    wrapped = losses.get(my_loss)
    assert wrapped.name == "my_loss" and wrapped.kind == "custom"
    assert wrapped(np.zeros((2, 3)), np.ones((2, 3))) == 3.0
    value, grad = wrapped.value_and_grad(np.zeros((2, 3)), np.ones((2, 3)))  # from a tape
    assert value == 3.0 and np.array_equal(grad, np.full((2, 3), 0.5))


def test_errors():
    with pytest.raises(ValueError, match=r"Could not interpret loss identifier: 'nope'.*'mse'"):
        losses.get("nope")
    with pytest.raises(ValueError, match="Could not interpret loss identifier"):
        losses.get(3)
    with pytest.raises(
        ValueError,
        match=r"CategoricalCrossentropy 'categorical_crossentropy': y_true and y_pred must have "
        r"the same shape; got y_true.shape=\(4, 3\) and y_pred.shape=\(4, 5\)",
    ):
        losses.CategoricalCrossentropy()(np.zeros((4, 3)), np.ones((4, 5)))
    with pytest.raises(
        ValueError, match=r"\(4,\) and y_pred.shape=\(4, 5\) \(integer class labels\? use Sparse"
    ):
        losses.CategoricalCrossentropy()(np.zeros(4), np.ones((4, 5)))
    with pytest.raises(ValueError, match=r"y_true.shape=\(4,\) and y_pred.shape=\(4, 2, 3\)"):
        losses.MeanSquaredError().value_and_grad(np.zeros(4), np.ones((4, 2, 3)))
    with pytest.raises(
        ValueError, match=r"without the last \(class\) axis; got y_true.shape=\(4, 3\)"
    ):
        losses.SparseCategoricalCrossentropy()(np.zeros((4, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"labels must be integers in \[0, 3\).*from 0 to 3"):
        losses.SparseCategoricalCrossentropy()(np.array([0, 3]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="`label_smoothing` must be a float in"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="Invalid value for argument `reduction`"):
        losses.MeanSquaredError(reduction="avg")
    with pytest.raises(ValueError, match="value_and_grad needs a reduced loss"):
        losses.MeanSquaredError(reduction=None).value_and_grad(np.zeros((2, 1)), np.ones((2, 1)))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(3,\) does not match"):
        losses.MeanSquaredError()(np.zeros((2, 1)), np.ones((2, 1)), sample_weight=np.ones(3))
