"""Accuracy metrics: binary, categorical, sparse categorical and top-k, as Keras 3 computes them."""

from __future__ import annotations

import numpy as np

from fastnn.metrics.base import Metric


def _match_rank(y_true, y_pred):
    """Squeeze or expand a trailing axis of size 1 so y_true lines up with y_pred, as Keras does."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        y_true = y_true[..., None]
    return y_true


class BinaryAccuracy(Metric):
    """Fraction where ``y_pred > threshold`` (as 0/1) equals the label; as in Keras, a soft
    label such as 0.8 never matches."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        self.threshold = threshold
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        y_true = _match_rank(y_true, y_pred)
        return ((y_pred > self.threshold) == y_true).mean(axis=-1)

    def get_config(self):
        return super().get_config() | {"threshold": self.threshold}


class CategoricalAccuracy(Metric):
    """Fraction where argmax(y_pred) equals argmax(y_true) (one-hot targets)."""

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return (np.argmax(y_pred, axis=-1) == np.argmax(y_true, axis=-1)).astype(np.float64)


class SparseCategoricalAccuracy(Metric):
    """Fraction where argmax(y_pred) equals the label (compared exactly, as in Keras)."""

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        return (np.argmax(y_pred, axis=-1) == y_true).astype(np.float64)


def in_top_k(targets: np.ndarray, predictions: np.ndarray, k: int) -> np.ndarray:
    """Whether each target's score is among the ``k`` largest of its row (ties count, as in
    Keras on torch); targets (M,) integers, predictions (M, C)."""
    classes = predictions.shape[-1]
    k = min(int(k), classes)
    kth = np.partition(predictions, classes - k, axis=-1)[:, classes - k]
    scores = np.take_along_axis(predictions, targets.astype(np.int64)[:, None], axis=-1)[:, 0]
    return scores >= kth


def top_k_categorical_accuracy(y_true, y_pred, k=5):
    """1.0 where the one-hot target's class is among y_pred's ``k`` top scores, per sample."""
    y_pred = np.asarray(y_pred)
    labels = np.argmax(np.asarray(y_true), axis=-1)
    matches = in_top_k(labels.reshape(-1), y_pred.reshape(-1, y_pred.shape[-1]), k)
    return matches.reshape(labels.shape).astype(np.float32)


def sparse_top_k_categorical_accuracy(y_true, y_pred, k=5, from_sorted_ids=False):
    """1.0 where the integer label is among y_pred's ``k`` top scores (or, with
    ``from_sorted_ids``, among the first ``k`` class ids y_pred lists), per sample."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = y_true.reshape(-1)
    rows = y_pred.reshape(-1, y_pred.shape[-1])
    if from_sorted_ids:
        matches = (labels[:, None] == rows[:, :k]).any(axis=1)
    else:
        matches = in_top_k(labels, rows, k)
    return matches.reshape(y_true.shape).astype(np.float32)


class TopKCategoricalAccuracy(Metric):
    """How often the one-hot target's class is among the ``k`` highest scores."""

    def __init__(self, k=5, name="top_k_categorical_accuracy", dtype=None):
        self.k = k
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return top_k_categorical_accuracy(y_true, y_pred, self.k)

    def get_config(self):
        return super().get_config() | {"k": self.k}


class SparseTopKCategoricalAccuracy(Metric):
    """How often the integer label is among the ``k`` highest scores.

    Args:
        k: how many top scores count.
        from_sorted_ids: y_pred holds class ids sorted by score instead of the scores.
    """

    def __init__(
        self, k=5, name="sparse_top_k_categorical_accuracy", dtype=None, from_sorted_ids=False
    ):
        self.k = k
        self.from_sorted_ids = from_sorted_ids
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return sparse_top_k_categorical_accuracy(y_true, y_pred, self.k, self.from_sorted_ids)

    def get_config(self):
        config = super().get_config() | {"k": self.k}
        if self.from_sorted_ids:
            config["from_sorted_ids"] = True
        return config
