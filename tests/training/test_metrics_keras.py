"""Metrics (issue 22) against Keras 3 (torch): results over several ``update_state`` calls with
sample weights, ``reset_state``, names and configs, names in compile() and the logs they give.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
from keras_twin import copy_weights

import fastnn
from fastnn import metrics

keras = pytest.importorskip("keras")

N = 8


def _binary(rng):
    return rng.integers(0, 2, (N, 1)).astype("float32"), rng.random((N, 1)).astype("float32")


def _multi_label(rng):
    return rng.integers(0, 2, (N, 4)).astype("float32"), rng.random((N, 4)).astype("float32")


def _binary_logits(rng):
    return rng.integers(0, 2, (N,)).astype("float32"), rng.normal(0, 2, (N,)).astype("float32")


def _onehot(rng):
    labels = rng.integers(0, 6, N)
    return np.eye(6, dtype="float32")[labels], rng.random((N, 6)).astype("float32")


def _sparse(rng):
    return rng.integers(0, 6, N), rng.random((N, 6)).astype("float32")


def _sparse_column(rng):
    return rng.integers(0, 6, (N, 1)), rng.random((N, 6)).astype("float32")


def _regression(rng):
    return rng.normal(size=(N, 3)).astype("float32"), rng.normal(size=(N, 3)).astype("float32")


def _regression_rank3(rng):
    return rng.normal(size=(N, 2, 3)).astype("float32"), rng.normal(size=(N, 2, 3)).astype(
        "float32"
    )


def _positive(rng):
    return rng.random((N, 3)).astype("float32"), rng.random((N, 3)).astype("float32")


def _segmentation(rng):
    return rng.integers(0, 3, (N, 5)), rng.integers(0, 3, (N, 5))


def _segmentation_scores(rng):
    return rng.integers(0, 3, (N, 5)), rng.random((N, 5, 3)).astype("float32")


# name: (class name, constructor kwargs, data maker, weighted?)
CASES = {
    "precision": ("Precision", {}, _binary, True),
    "precision_thresholds": ("Precision", {"thresholds": [0.2, 0.5, 0.7]}, _multi_label, True),
    "precision_even_thresholds": ("Precision", {"thresholds": [0.0, 0.5, 1.0]}, _multi_label, True),
    "precision_top_k": ("Precision", {"top_k": 2}, _multi_label, True),
    "precision_class_id": ("Precision", {"class_id": 1, "thresholds": 0.4}, _multi_label, True),
    "recall": ("Recall", {}, _multi_label, True),
    "recall_top_k_class_id": ("Recall", {"top_k": 2, "class_id": 3}, _multi_label, True),
    "recall_thresholds": ("Recall", {"thresholds": [0.1, 0.9]}, _binary, False),
    "true_positives": ("TruePositives", {}, _multi_label, True),
    "false_positives": ("FalsePositives", {"thresholds": [0.1, 0.9]}, _multi_label, True),
    "true_negatives": ("TrueNegatives", {}, _binary, True),
    "false_negatives": ("FalseNegatives", {"thresholds": [0.0, 0.5, 1.0]}, _multi_label, True),
    "auc_roc": ("AUC", {}, _binary, True),
    "auc_pr": ("AUC", {"curve": "PR"}, _multi_label, True),
    "auc_pr_minoring": (
        "AUC",
        {"curve": "PR", "summation_method": "minoring", "num_thresholds": 50},
        _multi_label,
        True,
    ),
    "auc_majoring": ("AUC", {"summation_method": "majoring"}, _multi_label, True),
    "auc_prgain": ("AUC", {"curve": "PRGAIN"}, _multi_label, True),
    "auc_multi_label": ("AUC", {"multi_label": True}, _multi_label, True),
    "auc_multi_label_weights": (
        "AUC",
        {"multi_label": True, "label_weights": [1.0, 2.0, 3.0, 4.0], "curve": "PR"},
        _multi_label,
        True,
    ),
    "auc_label_weights": ("AUC", {"label_weights": [1.0, 0.5, 2.0, 1.0]}, _multi_label, True),
    "auc_thresholds": ("AUC", {"thresholds": [0.3, 0.1, 0.6]}, _multi_label, True),
    "auc_from_logits": ("AUC", {"from_logits": True}, _binary_logits, True),
    "top_k_categorical_accuracy": ("TopKCategoricalAccuracy", {"k": 3}, _onehot, True),
    "top_k_default": ("TopKCategoricalAccuracy", {}, _onehot, False),
    "sparse_top_k": ("SparseTopKCategoricalAccuracy", {"k": 2}, _sparse, True),
    "sparse_top_k_column_labels": ("SparseTopKCategoricalAccuracy", {}, _sparse_column, True),
    "f1_none": ("F1Score", {}, _onehot, True),
    "f1_micro": ("F1Score", {"average": "micro", "threshold": 0.5}, _multi_label, True),
    "f1_macro": ("F1Score", {"average": "macro"}, _onehot, False),
    "fbeta_weighted": ("FBetaScore", {"average": "weighted", "beta": 2.0}, _multi_label, True),
    "fbeta_threshold": ("FBetaScore", {"beta": 0.5, "threshold": 0.4}, _multi_label, True),
    "r2": ("R2Score", {}, _regression, True),
    "r2_per_column": ("R2Score", {"class_aggregation": None}, _regression, True),
    "r2_variance_weighted_adjusted": (
        "R2Score",
        {"class_aggregation": "variance_weighted_average", "num_regressors": 2},
        _regression,
        True,
    ),
    "mape": ("MeanAbsolutePercentageError", {}, _regression, True),
    "msle": ("MeanSquaredLogarithmicError", {}, _positive, True),
    "mean_iou": ("MeanIoU", {"num_classes": 3}, _segmentation, False),
    "mean_iou_ignore_class": (
        "MeanIoU",
        {"num_classes": 3, "ignore_class": 1},
        _segmentation,
        False,
    ),
    "mean_iou_scores": (
        "MeanIoU",
        {"num_classes": 3, "sparse_y_pred": False},
        _segmentation_scores,
        False,
    ),
    "mse_rank3": ("MeanSquaredError", {}, _regression_rank3, True),
    "mae": ("MeanAbsoluteError", {}, _regression, True),
    "rmse": ("RootMeanSquaredError", {}, _regression_rank3, True),
    "binary_accuracy": ("BinaryAccuracy", {"threshold": 0.3}, _multi_label, True),
    "categorical_accuracy": ("CategoricalAccuracy", {}, _onehot, True),
    "kl_divergence": ("KLDivergence", {}, _positive, True),
    "poisson": ("Poisson", {}, _positive, True),
    "hinge": ("Hinge", {}, _multi_label, True),
    "squared_hinge": ("SquaredHinge", {}, _multi_label, True),
    "categorical_hinge": ("CategoricalHinge", {}, _onehot, True),
    "log_cosh_error": ("LogCoshError", {}, _regression, True),
    "cosine_similarity": ("CosineSimilarity", {}, _regression, True),
    "binary_crossentropy": (
        "BinaryCrossentropy",
        {"from_logits": True, "label_smoothing": 0.1},
        lambda rng: tuple(a[:, None] for a in _binary_logits(rng)),
        True,
    ),
    "categorical_crossentropy": (
        "CategoricalCrossentropy",
        {"label_smoothing": 0.2},
        _onehot,
        True,
    ),
    "sparse_categorical_crossentropy": ("SparseCategoricalCrossentropy", {}, _sparse, True),
    "sparse_categorical_accuracy": ("SparseCategoricalAccuracy", {}, _sparse, True),
}


def _result(metric):
    return np.asarray(keras.ops.convert_to_numpy(metric.result()), np.float64)


def _feed(ours, theirs, case, seed=0, batches=3):
    _, _, make, weighted = CASES[case]
    rng = np.random.default_rng(seed)
    for _ in range(batches):
        y_true, y_pred = make(rng)
        weights = rng.uniform(0, 2, N).astype("float32") if weighted else None
        ours.update_state(y_true, y_pred, sample_weight=weights)
        theirs.update_state(y_true, y_pred, sample_weight=weights)


def _pair(case):
    name, kwargs, _, _ = CASES[case]
    return getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)


@pytest.mark.parametrize("case", sorted(CASES))
def test_results_match_keras_over_weighted_batches(case):
    ours, theirs = _pair(case)
    _feed(ours, theirs, case)
    got, want = metrics.result_value(ours.result()), _result(theirs)
    # Keras counts in float32 (tn = negatives - fp): allow its rounding of the largest count
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max()))
    ours.reset_state()
    theirs.reset_state()
    _feed(ours, theirs, case, seed=1, batches=1)
    want = _result(theirs)
    np.testing.assert_allclose(
        ours.result(), want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(want).max())
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_names_and_configs_match_keras(case):
    name, kwargs, _, _ = CASES[case]
    cls = getattr(metrics, name)
    ours, theirs = cls(**kwargs), getattr(keras.metrics, name)(**kwargs)
    assert ours.name == theirs.name.rsplit("_", 1)[0] or ours.name == theirs.name
    keras_config = theirs.get_config()
    our_config = ours.get_config()
    assert set(keras_config) <= set(our_config)  # CosineSimilarity's adds its axis
    for key, value in keras_config.items():
        if key not in ("name", "label_weights"):
            assert our_config[key] == value, key
    restored = cls.from_config(our_config)
    assert restored.get_config() == our_config
    again = metrics.get(metrics.serialize(ours))
    assert type(again) is cls and again.get_config() == our_config


def test_default_names_match_keras():
    for name in sorted({c[0] for c in CASES.values()}):
        kwargs = {"num_classes": 3} if name == "MeanIoU" else {}
        ours, theirs = getattr(metrics, name)(**kwargs), getattr(keras.metrics, name)(**kwargs)
        assert theirs.name.startswith(ours.name), name  # Keras numbers repeated names


@pytest.mark.parametrize(
    "values_shape, weights_shape",
    [((N,), None), ((N,), (N,)), ((N, 3), (N,)), ((N, 3), (N, 3)), ((N, 1), (N,)), ((), None)],
)
@pytest.mark.parametrize("name", ["Mean", "Sum"])
def test_mean_and_sum_match_keras(name, values_shape, weights_shape):
    rng = np.random.default_rng(4)
    ours, theirs = getattr(metrics, name)(), getattr(keras.metrics, name)()
    for _ in range(3):
        values = rng.normal(size=values_shape).astype("float32")
        weights = None if weights_shape is None else rng.random(weights_shape).astype("float32")
        ours.update_state(values, sample_weight=weights)
        theirs.update_state(values, sample_weight=weights)
    assert ours.result() == pytest.approx(float(_result(theirs)), rel=1e-5, abs=1e-6)


def test_mean_metric_wrapper_matches_keras():
    def scaled_error(y_true, y_pred, scale=1.0):
        return scale * np.abs(y_true - y_pred).mean(-1)

    rng = np.random.default_rng(6)
    ours = metrics.MeanMetricWrapper(scaled_error, name="scaled", scale=3.0)
    theirs = keras.metrics.MeanMetricWrapper(scaled_error, name="scaled", scale=3.0)
    for _ in range(3):
        y_true, y_pred = _regression_rank3(rng)
        weights = rng.random(N).astype("float32")
        ours.update_state(y_true, y_pred, sample_weight=weights)
        theirs.update_state(y_true, y_pred, sample_weight=weights)
    assert ours.name == "scaled"
    assert ours.result() == pytest.approx(float(_result(theirs)), rel=1e-5)


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("precision", metrics.Precision),
        ("recall", metrics.Recall),
        ("auc", metrics.AUC),
        ("AUC", metrics.AUC),
        ("true_positives", metrics.TruePositives),
        ("false_positives", metrics.FalsePositives),
        ("true_negatives", metrics.TrueNegatives),
        ("false_negatives", metrics.FalseNegatives),
        ("top_k_categorical_accuracy", metrics.TopKCategoricalAccuracy),
        ("sparse_top_k_categorical_accuracy", metrics.SparseTopKCategoricalAccuracy),
        ("f1_score", metrics.F1Score),
        ("F1Score", metrics.F1Score),
        ("f_beta_score", metrics.FBetaScore),
        ("r2_score", metrics.R2Score),
        ("mean_absolute_percentage_error", metrics.MeanAbsolutePercentageError),
        ("mape", metrics.MeanAbsolutePercentageError),
        ("msle", metrics.MeanSquaredLogarithmicError),
        ("sum", metrics.Sum),
        ("kl_divergence", metrics.KLDivergence),
        ("log_cosh_error", metrics.LogCoshError),
        ("cosine_similarity", metrics.CosineSimilarity),
        ("binary_crossentropy", metrics.BinaryCrossentropy),
        ("CategoricalHinge", metrics.CategoricalHinge),
        ("mean", metrics.Mean),
    ],
)
def test_get_resolves_keras_names(identifier, cls):
    metric = metrics.get(identifier)
    assert type(metric) is cls and metric.name == identifier
    assert type(keras.metrics.get(identifier)).__name__ == cls.__name__


def test_argument_errors_match_keras():
    for make in (
        lambda m: m.Precision(thresholds=[0.5, 1.5]),
        lambda m: m.AUC(num_thresholds=1),
        lambda m: m.AUC(curve="XY"),
        lambda m: m.FBetaScore(beta=2),
        lambda m: m.FBetaScore(average="median"),
        lambda m: m.F1Score(threshold=1.5),
        lambda m: m.R2Score(class_aggregation="median"),
        lambda m: m.R2Score(num_regressors=-1),
    ):
        with pytest.raises(ValueError) as keras_error:
            make(keras.metrics)
        with pytest.raises(ValueError) as our_error:
            make(metrics)
        first_words = str(keras_error.value).split(".")[0]
        assert str(our_error.value).startswith(first_words), (our_error.value, keras_error.value)
    with pytest.raises(ValueError, match="R2Score expects 2D inputs"):
        metrics.R2Score().update_state(np.zeros(4), np.zeros(4))
    with pytest.raises(ValueError, match="F1Score expects 2D inputs"):
        metrics.F1Score().update_state(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


# ---- in compile(): the logs Keras gives on the same weights ----


def _classifier(K, units, activation):
    inputs = K.Input((5,))
    hidden = K.layers.Dense(6, activation="tanh")(inputs)
    return K.Model(inputs, K.layers.Dense(units, activation=activation)(hidden))


COMPILED = {
    "binary": (
        1,
        "sigmoid",
        "binary_crossentropy",
        ["precision", "recall", "auc", "true_positives", "false_negatives"],
    ),
    "categorical": (
        6,
        "softmax",
        "categorical_crossentropy",
        ["top_k_categorical_accuracy", "f1_score", "accuracy"],
    ),
    "sparse": (
        6,
        "softmax",
        "sparse_categorical_crossentropy",
        ["sparse_top_k_categorical_accuracy"],
    ),
    "regression": (2, None, "mse", ["mape", "r2_score", "msle"]),
}


@pytest.mark.parametrize("kind", sorted(COMPILED))
def test_metrics_by_name_in_compile_log_as_keras(kind):
    units, activation, loss, names = COMPILED[kind]
    rng = np.random.default_rng(9)
    x = rng.normal(size=(24, 5)).astype("float32")
    if kind == "binary":
        y = rng.integers(0, 2, (24, 1)).astype("float32")
    elif kind == "categorical":
        y = np.eye(6, dtype="float32")[rng.integers(0, 6, 24)]
    elif kind == "sparse":
        y = rng.integers(0, 6, 24)
    else:
        y = rng.normal(size=(24, 2)).astype("float32")
    weights = rng.uniform(0.5, 2, 24).astype("float32")
    ours, theirs = _classifier(fastnn, units, activation), _classifier(keras, units, activation)
    copy_weights(theirs, ours)
    logs = []
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss=loss, metrics=names, weighted_metrics=names[:1])
        logs.append(
            model.evaluate(x, y, sample_weight=weights, batch_size=8, return_dict=True, verbose=0)
        )
    assert sorted(logs[0]) == sorted(logs[1])
    for key, value in logs[1].items():
        np.testing.assert_allclose(logs[0][key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_array_results_log_whole_and_print_as_their_mean(capsys):
    """F1Score per class and Precision at two thresholds: arrays in the logs (as Keras's), their
    means on the progress line (as Keras's Progbar)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 5)).astype("float32")
    y = np.eye(6, dtype="float32")[rng.integers(0, 6, 16)]
    model = _classifier(fastnn, 6, "softmax")
    f1, precision = metrics.F1Score(), metrics.Precision(thresholds=[0.1, 0.2])
    model.compile(optimizer="sgd", loss="categorical_crossentropy", metrics=[f1, precision])
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=1).history
    assert history["f1_score"][0].shape == (6,) and history["precision"][0].shape == (2,)
    shown = capsys.readouterr().out
    assert f"f1_score: {np.mean(history['f1_score'][0]):.4f}" in shown
    assert f"precision: {np.mean(history['precision'][0]):.4f}" in shown
