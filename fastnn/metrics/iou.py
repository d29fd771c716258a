"""``MeanIoU``: the mean over classes of intersection over union, from a confusion matrix
accumulated over batches, as Keras 3 computes it."""

from __future__ import annotations

import numpy as np

from fastnn.metrics.base import Metric
from fastnn.ops.tensor import unwrap

EPSILON = 1e-7


class MeanIoU(Metric):
    """The mean intersection-over-union of the classes present in labels or predictions.

    Args:
        num_classes: how many classes (the confusion matrix is num_classes x num_classes).
        ignore_class: a label whose samples are left out.
        sparse_y_true: labels are class ids (else one-hot: argmax over ``axis``).
        sparse_y_pred: predictions are class ids (else scores: argmax over ``axis``).
        axis: the class axis of one-hot labels or scores.
    """

    def __init__(
        self,
        num_classes,
        name=None,
        dtype=None,
        ignore_class=None,
        sparse_y_true=True,
        sparse_y_pred=True,
        axis=-1,
    ):
        super().__init__(name, dtype or "int32")
        self.num_classes = int(num_classes)
        self.ignore_class = ignore_class
        self.sparse_y_true = sparse_y_true
        self.sparse_y_pred = sparse_y_pred
        self.axis = axis
        self.total_cm = self.add_variable(
            (self.num_classes, self.num_classes), name="total_confusion_matrix"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred = np.asarray(unwrap(y_true)), np.asarray(unwrap(y_pred))
        if not self.sparse_y_true:
            y_true = np.argmax(y_true, axis=self.axis)
        if not self.sparse_y_pred:
            y_pred = np.argmax(y_pred, axis=self.axis)
        dtype = self.total_cm.dtype
        y_true = y_true.astype(dtype).reshape(-1)
        y_pred = y_pred.astype(dtype).reshape(-1)
        weights = np.asarray(1 if sample_weight is None else unwrap(sample_weight)).astype(dtype)
        weights = np.broadcast_to(
            weights.reshape(-1) if weights.ndim > 1 else weights, y_true.shape
        )
        classes = self.num_classes
        keep = (y_true >= 0) & (y_true < classes) & (y_pred >= 0) & (y_pred < classes)
        if self.ignore_class is not None:
            keep &= y_true != self.ignore_class
        cells = y_true[keep].astype(np.int64) * classes + y_pred[keep].astype(np.int64)
        counts = np.bincount(cells, weights[keep].astype(np.float64), minlength=classes * classes)
        self.total_cm.assign_add(counts.reshape(classes, classes).astype(dtype))

    def result(self) -> float:
        cm = self.total_cm.value.astype(np.float64)
        true_positives = np.diag(cm)
        denominator = cm.sum(axis=0) + cm.sum(axis=1) - true_positives
        valid = denominator > 1e-9
        iou = np.where(valid, true_positives / (denominator + EPSILON), 0.0)
        return float(iou.sum() / (valid.sum() + EPSILON))

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "name": self.name,
            "dtype": self.dtype,
            "ignore_class": self.ignore_class,
            "sparse_y_true": self.sparse_y_true,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }
