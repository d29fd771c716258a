"""Losses as metrics, with Keras 3's metric classes: crossentropies, KL divergence, Poisson and
the hinges, each the running (weighted) mean of the loss function's per-sample values."""

from __future__ import annotations

import numpy as np

from fastnn import losses
from fastnn.metrics.base import Metric


class _LossMetric(Metric):
    """The running mean of ``self.loss.call`` (a fastnn loss's per-sample values)."""

    loss: losses.Loss

    def values(self, y_true, y_pred):
        y_pred = y_pred if y_pred.dtype.kind == "f" else y_pred.astype(np.float32)
        return self.loss.call(y_true, y_pred)


class KLDivergence(_LossMetric):
    """The mean Kullback-Leibler divergence ``y_true * log(y_true / y_pred)``."""

    def __init__(self, name="kl_divergence", dtype=None):
        super().__init__(name, dtype)
        self.loss = losses.KLDivergence()


class Poisson(_LossMetric):
    """The mean Poisson loss ``y_pred - y_true * log(y_pred)``."""

    def __init__(self, name="poisson", dtype=None):
        super().__init__(name, dtype)
        self.loss = losses.Poisson()


class Hinge(_LossMetric):
    """The mean hinge loss (labels in {-1, 1}, or {0, 1})."""

    def __init__(self, name="hinge", dtype=None):
        super().__init__(name, dtype)
        self.loss = losses.Hinge()


class SquaredHinge(_LossMetric):
    """The mean squared hinge loss (labels in {-1, 1}, or {0, 1})."""

    def __init__(self, name="squared_hinge", dtype=None):
        super().__init__(name, dtype)
        self.loss = losses.SquaredHinge()


class CategoricalHinge(_LossMetric):
    """The mean categorical hinge loss against one-hot targets."""

    def __init__(self, name="categorical_hinge", dtype=None):
        super().__init__(name, dtype)
        self.loss = losses.CategoricalHinge()


class BinaryCrossentropy(_LossMetric):
    """The mean binary crossentropy; arguments as ``fastnn.losses.BinaryCrossentropy``."""

    def __init__(
        self, name="binary_crossentropy", dtype=None, from_logits=False, label_smoothing=0
    ):
        super().__init__(name, dtype)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.loss = losses.BinaryCrossentropy(from_logits, label_smoothing)

    def get_config(self):
        return super().get_config() | {
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
        }


class CategoricalCrossentropy(_LossMetric):
    """The mean categorical crossentropy; arguments as
    ``fastnn.losses.CategoricalCrossentropy``."""

    def __init__(
        self,
        name="categorical_crossentropy",
        dtype=None,
        from_logits=False,
        label_smoothing=0,
        axis=-1,
    ):
        super().__init__(name, dtype)
        self.from_logits = from_logits
        self.label_smoothing = label_smoothing
        self.axis = axis
        self.loss = losses.CategoricalCrossentropy(from_logits, label_smoothing, axis)

    def get_config(self):
        return super().get_config() | {
            "from_logits": self.from_logits,
            "label_smoothing": self.label_smoothing,
            "axis": self.axis,
        }


class SparseCategoricalCrossentropy(_LossMetric):
    """The mean crossentropy against integer labels; arguments as
    ``fastnn.losses.SparseCategoricalCrossentropy``."""

    def __init__(
        self,
        name="sparse_categorical_crossentropy",
        dtype=None,
        from_logits=False,
        ignore_class=None,
        axis=-1,
    ):
        super().__init__(name, dtype)
        self.from_logits = from_logits
        self.ignore_class = ignore_class
        self.axis = axis
        self.loss = losses.SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis)

    def get_config(self):
        return super().get_config() | {
            "from_logits": self.from_logits,
            "ignore_class": self.ignore_class,
            "axis": self.axis,
        }
