"""Streaming metrics with Keras 3 names: ``update_state``, ``result``, ``reset_state``.

One module per family: ``base`` (Metric, Mean, Sum, MeanMetricWrapper), ``accuracy``,
``regression``, ``probabilistic`` (losses as metrics), ``confusion`` (counts, Precision, Recall,
AUC), ``f_score`` and ``iou``.
A user's metric subclasses ``Metric`` as in Keras: ``add_variable`` (or ``add_weight``) makes its
state, ``update_state`` updates it with fastnn.ops and ``assign``/``assign_add``, ``result``
reads it, and the default ``reset_state`` sets every variable back to zeros.
"""

from __future__ import annotations

import re

from fastnn.metrics.accuracy import (
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    TopKCategoricalAccuracy,
    sparse_top_k_categorical_accuracy,
    top_k_categorical_accuracy,
)
from fastnn.metrics.base import (
    Mean,
    MeanMetricWrapper,
    Metric,
    Sum,
    as_numpy,
    result_value,
)
from fastnn.metrics.confusion import (
    AUC,
    FalseNegatives,
    FalsePositives,
    Precision,
    Recall,
    TrueNegatives,
    TruePositives,
)
from fastnn.metrics.f_score import F1Score, FBetaScore
from fastnn.metrics.iou import MeanIoU
from fastnn.metrics.probabilistic import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    CategoricalHinge,
    Hinge,
    KLDivergence,
    Poisson,
    SparseCategoricalCrossentropy,
    SquaredHinge,
)
from fastnn.metrics.regression import (
    CosineSimilarity,
    LogCoshError,
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MeanSquaredLogarithmicError,
    R2Score,
    RootMeanSquaredError,
)
from fastnn.saving.registry import register_builtins

__all__ = [
    "AUC",
    "BinaryAccuracy",
    "BinaryCrossentropy",
    "CategoricalAccuracy",
    "CategoricalCrossentropy",
    "CategoricalHinge",
    "CosineSimilarity",
    "F1Score",
    "FBetaScore",
    "FalseNegatives",
    "FalsePositives",
    "Hinge",
    "KLDivergence",
    "LogCoshError",
    "Mean",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanIoU",
    "MeanMetricWrapper",
    "MeanSquaredError",
    "MeanSquaredLogarithmicError",
    "Metric",
    "Poisson",
    "Precision",
    "R2Score",
    "Recall",
    "RootMeanSquaredError",
    "SparseCategoricalAccuracy",
    "SparseCategoricalCrossentropy",
    "SparseTopKCategoricalAccuracy",
    "SquaredHinge",
    "Sum",
    "TopKCategoricalAccuracy",
    "TrueNegatives",
    "TruePositives",
    "as_numpy",
    "get",
    "result_value",
    "serialize",
    "sparse_top_k_categorical_accuracy",
    "top_k_categorical_accuracy",
    "valid_names",
]


def _snake_case(name: str) -> str:
    """Keras's to_snake_case: 'FBetaScore' -> 'f_beta_score', 'AUC' -> 'auc'."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


_BUILT_IN = (
    BinaryAccuracy,
    CategoricalAccuracy,
    SparseCategoricalAccuracy,
    TopKCategoricalAccuracy,
    SparseTopKCategoricalAccuracy,
    MeanSquaredError,
    MeanAbsoluteError,
    RootMeanSquaredError,
    MeanAbsolutePercentageError,
    MeanSquaredLogarithmicError,
    R2Score,
    TruePositives,
    FalsePositives,
    TrueNegatives,
    FalseNegatives,
    Precision,
    Recall,
    AUC,
    F1Score,
    FBetaScore,
    MeanIoU,
    Mean,
    Sum,
    LogCoshError,
    CosineSimilarity,
    KLDivergence,
    Poisson,
    Hinge,
    SquaredHinge,
    CategoricalHinge,
    BinaryCrossentropy,
    CategoricalCrossentropy,
    SparseCategoricalCrossentropy,
)
# A name compile() takes: Keras's snake-case class names and its short aliases.
_CLASSES = {
    **{_snake_case(cls.__name__): cls for cls in _BUILT_IN},
    "mse": MeanSquaredError,
    "MSE": MeanSquaredError,
    "mae": MeanAbsoluteError,
    "MAE": MeanAbsoluteError,
    "mape": MeanAbsolutePercentageError,
    "MAPE": MeanAbsolutePercentageError,
    "msle": MeanSquaredLogarithmicError,
    "MSLE": MeanSquaredLogarithmicError,
}
_ACCURACY = ("accuracy", "acc")
_CAMEL = {cls.__name__: cls for cls in _BUILT_IN}


def valid_names() -> list[str]:
    return sorted({*_CLASSES, *_ACCURACY, *_CAMEL})


def serialize(metric):
    """A JSON-able form of a metric as ``compile`` takes it: a name or ``{"class_name",
    "config"}``. Raises ValueError for a user's function or class, which a file cannot hold."""
    if isinstance(metric, str):
        return metric
    if isinstance(metric, Metric) and _CAMEL.get(type(metric).__name__) is type(metric):
        return {"class_name": type(metric).__name__, "config": metric.get_config()}
    if isinstance(metric, type) and _CAMEL.get(metric.__name__) is metric:
        return metric.__name__
    raise ValueError(
        f"The metric {metric!r} is a Python function or custom class and cannot be saved"
    )


def get(identifier, y_true_shape=None, y_pred_shape=None) -> Metric:
    """A metric from a name, instance or function; 'accuracy' picks its kind from the shapes.

    As in Keras: binary if y_pred's last axis is 1, sparse if y_true has lower rank (or a last
    axis of 1 against a wider y_pred), else categorical. The metric keeps the name it was given.
    """
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        key = identifier
        if key.lower() in _ACCURACY:
            return _accuracy_for(y_true_shape, y_pred_shape)(name=identifier)
        cls = _CLASSES.get(key) or _CAMEL.get(key)
        if cls is not None:
            return cls(name=identifier)
        raise ValueError(f"Unknown metric {identifier!r}. Valid metrics: {valid_names()}")
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        cls = _CAMEL.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(
                f"Could not interpret metric config {identifier!r:.120}: unknown class_name. "
                f"Valid classes: {sorted(_CAMEL)}"
            )
        return cls.from_config(identifier.get("config", {}))
    if callable(identifier):
        return MeanMetricWrapper(identifier)
    raise TypeError(f"Could not interpret metric {identifier!r}")


def _accuracy_for(y_true_shape, y_pred_shape):
    if y_pred_shape is None or y_true_shape is None:
        return CategoricalAccuracy
    if y_pred_shape[-1] == 1:
        return BinaryAccuracy
    if len(y_true_shape) < len(y_pred_shape) or (y_true_shape[-1] == 1 and y_pred_shape[-1] > 1):
        return SparseCategoricalAccuracy
    return CategoricalAccuracy


# Saved configs (fastnn.saving.deserialize_keras_object) may name these classes.
register_builtins({cls.__name__: cls for cls in (*_BUILT_IN, MeanMetricWrapper)}, kind="metrics")
