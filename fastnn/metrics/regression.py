"""Regression metrics: mean squared / absolute / percentage / squared-log errors, their root,
log-cosh error, cosine similarity and the coefficient of determination (``R2Score``)."""

from __future__ import annotations

import warnings

import numpy as np

from fastnn import losses
from fastnn.metrics.accuracy import _match_rank
from fastnn.metrics.base import Metric, same_rank


class MeanSquaredError(Metric):
    """The mean of ``(y_true - y_pred) ** 2`` over samples and the last axis."""

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return np.square(y_pred - _match_rank(y_true, y_pred)).mean(axis=-1)


class MeanAbsoluteError(Metric):
    """The mean of ``|y_true - y_pred|`` over samples and the last axis."""

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return np.abs(y_pred - _match_rank(y_true, y_pred)).mean(axis=-1)


class RootMeanSquaredError(Metric):
    """The square root of the mean squared error over everything seen."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return np.square(y_pred - _match_rank(y_true, y_pred)).mean(axis=-1)

    def result(self):
        return float(np.sqrt(super().result()))


class MeanAbsolutePercentageError(Metric):
    """The mean of ``100 * |y_true - y_pred| / max(|y_true|, eps)``."""

    def __init__(self, name="mean_absolute_percentage_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return losses.mean_absolute_percentage_error(y_true, _float(y_pred))


class MeanSquaredLogarithmicError(Metric):
    """The mean of ``(log(y_pred + 1) - log(y_true + 1)) ** 2``, both floored at eps."""

    def __init__(self, name="mean_squared_logarithmic_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return losses.mean_squared_logarithmic_error(y_true, _float(y_pred))


class LogCoshError(Metric):
    """The mean of ``log(cosh(y_pred - y_true))``."""

    def __init__(self, name="logcosh", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return losses.log_cosh(y_true, _float(y_pred))


class CosineSimilarity(Metric):
    """The mean cosine similarity of y_true and y_pred over ``axis`` (1: the same direction)."""

    def __init__(self, name="cosine_similarity", dtype=None, axis=-1):
        super().__init__(name, dtype)
        self.axis = axis

    def values(self, y_true, y_pred):
        return -losses.cosine_similarity(y_true, _float(y_pred), self.axis)

    def get_config(self):
        return super().get_config() | {"axis": self.axis}


def _float(x: np.ndarray) -> np.ndarray:
    return x if x.dtype.kind == "f" else x.astype(np.float32)


class R2Score(Metric):
    """The coefficient of determination, per output column over everything seen.

    Args:
        class_aggregation: ``"uniform_average"`` (the mean over columns),
            ``"variance_weighted_average"`` (weighted by each column's variance) or None (one
            score per column).
        num_regressors: for the adjusted R2 score; 0 gives the plain score.
    """

    def __init__(
        self, class_aggregation="uniform_average", num_regressors=0, name="r2_score", dtype=None
    ):
        super().__init__(name, dtype)
        valid = (None, "uniform_average", "variance_weighted_average")
        if class_aggregation not in valid:
            raise ValueError(
                "Invalid value for argument `class_aggregation`. Expected one of "
                f"{valid}. Received: class_aggregation={class_aggregation}"
            )
        if num_regressors < 0:
            raise ValueError(
                "Invalid value for argument `num_regressors`. Expected a value >= 0. "
                f"Received: num_regressors={num_regressors}"
            )
        self.class_aggregation = class_aggregation
        self.num_regressors = num_regressors
        self.num_samples = self.add_variable((), name="num_samples")
        self._columns = None

    def _build(self, y_true_shape, y_pred_shape):
        if len(y_pred_shape) != 2 or len(y_true_shape) != 2:
            raise ValueError(
                "R2Score expects 2D inputs with shape (batch_size, output_dim). Received input "
                f"shapes: y_pred.shape={y_pred_shape} and y_true.shape={y_true_shape}."
            )
        columns = y_pred_shape[-1]
        self.squared_sum = self.add_variable((columns,), name="squared_sum")
        self.sum = self.add_variable((columns,), name="sum")
        self.total_mse = self.add_variable((columns,), name="residual")
        self.count = self.add_variable((columns,), name="count")
        self._columns = columns

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = np.asarray(y_true, self.dtype)
        y_pred = np.asarray(y_pred, self.dtype)
        y_true, y_pred = same_rank(y_true, y_pred)
        if self._columns is None:
            self._build(y_true.shape, y_pred.shape)
        weights = np.asarray(1 if sample_weight is None else sample_weight, self.dtype)
        if weights.ndim == 1:
            weights = weights[:, None]
        weights = np.broadcast_to(weights, y_true.shape)
        weighted = y_true * weights
        self.sum.assign_add(weighted.sum(axis=0))
        self.squared_sum.assign_add((y_true * weighted).sum(axis=0))
        self.total_mse.assign_add(((y_true - y_pred) ** 2 * weights).sum(axis=0))
        self.count.assign_add(weights.sum(axis=0))
        self.num_samples.assign_add(y_true.size)

    def result(self):
        if self._columns is None:
            return 0.0
        count = self.count.value.astype(np.float64)
        total_sum = self.sum.value.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = total_sum / count
            total = self.squared_sum.value - total_sum * mean
            raw = 1 - self.total_mse.value / total
        raw = np.where(np.isinf(raw), 0.0, raw)
        if self.class_aggregation == "uniform_average":
            score = raw.mean()
        elif self.class_aggregation == "variance_weighted_average":
            score = (total * raw).sum() / total.sum()
        else:
            score = raw
        if self.num_regressors:
            n, p = float(self.num_samples.value), float(self.num_regressors)
            if p > n - 1:
                warnings.warn(
                    "More independent predictors than datapoints in adjusted R2 score. "
                    "Falling back to standard R2 score.",
                    stacklevel=2,
                )
            elif p == n - 1:
                warnings.warn(
                    "Division by zero in Adjusted R2 score. Falling back to standard R2 score.",
                    stacklevel=2,
                )
            else:
                score = 1 - (1 - score) * (n - 1) / (n - p - 1)
        return score

    def get_config(self):
        return super().get_config() | {
            "class_aggregation": self.class_aggregation,
            "num_regressors": self.num_regressors,
        }
