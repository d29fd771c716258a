"""Metrics from confusion-matrix counts at thresholds: ``TruePositives``, ``FalsePositives``,
``TrueNegatives``, ``FalseNegatives``, ``Precision``, ``Recall`` and ``AUC``, as Keras 3 counts
them (its metrics_utils.update_confusion_matrix_variables, in numpy)."""

from __future__ import annotations

import numpy as np

from fastnn.metrics.base import Metric, divide_no_nan, same_rank
from fastnn.ops.tensor import unwrap

NEG_INF = -1e10  # the threshold of a top_k metric: every kept score is above it
EPSILON = 1e-7
COUNTS = ("tp", "fp", "tn", "fn")


def parse_thresholds(thresholds, default) -> list[float]:
    """The thresholds as a list (``default`` if None); each given one must lie in [0, 1]."""
    if thresholds is not None:
        listed = list(thresholds) if isinstance(thresholds, (list, tuple)) else [thresholds]
        invalid = [t for t in listed if t is None or t < 0 or t > 1]
        if invalid:
            raise ValueError(f"Threshold values must be in [0, 1]. Received: {invalid}")
    chosen = default if thresholds is None else thresholds
    return list(chosen) if isinstance(chosen, (list, tuple)) else [chosen]


def evenly_spaced(thresholds) -> bool:
    """Whether the thresholds are 0, 1/(n-1), ..., 1 (then counts go by buckets, as Keras's)."""
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(thresholds, even, atol=EPSILON))


def filter_top_k(x: np.ndarray, k: int) -> np.ndarray:
    """``x`` with all but each row's ``k`` largest entries set to NEG_INF."""
    k = min(int(k), x.shape[-1])
    top = np.argpartition(-x, k - 1, axis=-1)[..., :k]
    mask = np.zeros(x.shape, x.dtype)
    np.put_along_axis(mask, top, 1, axis=-1)
    return x * mask + x.dtype.type(NEG_INF) * (1 - mask)


def update_confusion(
    variables: dict,
    y_true,
    y_pred,
    thresholds,
    evenly: bool,
    top_k=None,
    class_id=None,
    sample_weight=None,
    multi_label=False,
    label_weights=None,
) -> None:
    """Add the batch's counts to ``variables`` (keys among COUNTS: Variables of shape (T,), or
    (T, labels) with ``multi_label``): a prediction is positive above a threshold, a label
    when nonzero."""
    dtype = next(iter(variables.values())).dtype
    y_true = np.asarray(unwrap(y_true)).astype(dtype)
    y_pred = np.asarray(unwrap(y_pred)).astype(dtype)
    with_epsilon = evenly and (thresholds[0] < 0 or thresholds[-1] > 1)
    thresholds = np.asarray(thresholds, dtype)
    y_pred, y_true = same_rank(y_pred, y_true)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(unwrap(sample_weight), dtype)[..., None]
        _, weights = same_rank(y_true, weights, expand_rank_1=False)
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.ndim == 1:
            raise ValueError(
                "When class_id is provided, y_pred must be a 2D array with shape "
                f"(num_samples, num_classes), found shape: {y_pred.shape}"
            )
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
    if weights is not None:
        weights = np.broadcast_to(weights, y_pred.shape)
    if label_weights is not None and not multi_label:
        label_weights = np.broadcast_to(np.asarray(label_weights, dtype)[None], y_pred.shape)
        weights = label_weights if weights is None else weights * label_weights
    if weights is None:
        weights = np.ones(y_pred.shape, dtype)
    positive = y_true != 0
    if multi_label:
        if y_pred.ndim != 2:
            raise ValueError(
                f"`y_pred` must have rank 2 when `multi_label=True`; got {y_pred.shape}"
            )
    else:
        y_pred, positive, weights = (a.reshape(-1, 1) for a in (y_pred, positive, weights))
    if evenly:
        counts = _bucket_counts(positive, y_pred, len(thresholds), weights, with_epsilon)
    else:
        counts = _threshold_counts(positive, y_pred, thresholds, weights)
    for key, variable in variables.items():
        count = counts[key]
        variable.assign_add(count if multi_label else count[:, 0])


def _bucket_counts(positive, y_pred, num_thresholds, weights, with_epsilon) -> dict:
    """Counts (T, L) for thresholds 0, 1/(T-1), ..., 1: each score falls in one bucket, and a
    threshold's positives are the buckets at or above it."""
    dtype = y_pred.dtype
    pred = np.clip(y_pred, 0, 1)
    bucket = np.ceil(pred * dtype.type(num_thresholds - 1)) - 1
    if with_epsilon:
        bucket = np.maximum(bucket, 0)
    bucket = bucket.astype(np.int64)
    labels = y_pred.shape[1]
    inside = (bucket >= 0) & (bucket < num_thresholds)
    index = (bucket + num_thresholds * np.arange(labels))[inside]
    size = num_thresholds * labels
    true_w = np.where(positive, weights, 0).astype(np.float64)
    false_w = np.where(positive, 0, weights).astype(np.float64)

    def above(w):
        per_bucket = np.bincount(index, w[inside], minlength=size).reshape(labels, -1).T
        return np.cumsum(per_bucket[::-1], axis=0)[::-1]

    tp, fp = above(true_w), above(false_w)
    return {"tp": tp, "fp": fp, "tn": false_w.sum(0) - fp, "fn": true_w.sum(0) - tp}


def _threshold_counts(positive, y_pred, thresholds, weights) -> dict:
    """Counts (T, L) by comparing every score with every threshold."""
    above = y_pred[None] > thresholds[:, None, None]
    label = positive[None]
    w = weights.astype(np.float64)[None]

    def count(label_is, pred_is):
        return np.where(label_is & pred_is, w, 0).sum(axis=1)

    return {
        "tp": count(label, above),
        "fp": count(~label, above),
        "tn": count(~label, ~above),
        "fn": count(label, ~above),
    }


class _ConfusionCount(Metric):
    """One confusion-matrix count per threshold."""

    condition = ""

    def __init__(self, thresholds=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.init_thresholds = thresholds
        self.thresholds = parse_thresholds(thresholds, 0.5)
        self._evenly = evenly_spaced(self.thresholds)
        self.accumulator = self.add_variable((len(self.thresholds),), name="accumulator")

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion(
            {self.condition: self.accumulator},
            y_true,
            y_pred,
            self.thresholds,
            self._evenly,
            sample_weight=sample_weight,
        )

    def result(self):
        value = self.accumulator.value
        return float(value[0]) if len(self.thresholds) == 1 else value.copy()

    def get_config(self):
        return super().get_config() | {"thresholds": self.init_thresholds}


class TruePositives(_ConfusionCount):
    """The (weighted) count of positive labels predicted above each threshold."""

    condition = "tp"


class FalsePositives(_ConfusionCount):
    """The (weighted) count of negative labels predicted above each threshold."""

    condition = "fp"


class TrueNegatives(_ConfusionCount):
    """The (weighted) count of negative labels predicted at or below each threshold."""

    condition = "tn"


class FalseNegatives(_ConfusionCount):
    """The (weighted) count of positive labels predicted at or below each threshold."""

    condition = "fn"


class _PrecisionRecall(Metric):
    """tp / (tp + ``other``) per threshold, optionally of the top-k scores or one class."""

    other = ""

    def __init__(self, thresholds=None, top_k=None, class_id=None, name=None, dtype=None):
        super().__init__(name, dtype)
        self.init_thresholds = thresholds
        self.top_k = top_k
        self.class_id = class_id
        default = 0.5 if top_k is None else NEG_INF
        self.thresholds = parse_thresholds(thresholds, default)
        self._evenly = evenly_spaced(self.thresholds)
        size = (len(self.thresholds),)
        self.true_positives = self.add_variable(size, name="true_positives")
        other = {"fp": "false_positives", "fn": "false_negatives"}[self.other]
        setattr(self, other, self.add_variable(size, name=other))
        self._other = getattr(self, other)

    def update_state(self, y_true, y_pred, sample_weight=None):
        update_confusion(
            {"tp": self.true_positives, self.other: self._other},
            y_true,
            y_pred,
            self.thresholds,
            self._evenly,
            top_k=self.top_k,
            class_id=self.class_id,
            sample_weight=sample_weight,
        )

    def result(self):
        tp = self.true_positives.value
        value = divide_no_nan(tp, tp + self._other.value)
        return float(value[0]) if len(self.thresholds) == 1 else value

    def get_config(self):
        return super().get_config() | {
            "thresholds": self.init_thresholds,
            "top_k": self.top_k,
            "class_id": self.class_id,
        }


class Precision(_PrecisionRecall):
    """The fraction of predictions above the threshold whose label is positive.

    Args:
        thresholds: a float or list of floats in [0, 1] (default 0.5): one result each.
        top_k: count only each row's ``k`` highest scores as predicted positive.
        class_id: score only this class (column).
    """

    other = "fp"


class Recall(_PrecisionRecall):
    """The fraction of positive labels predicted above the threshold; arguments as
    ``Precision``."""

    other = "fn"


class AUC(Metric):
    """The area under the ROC or precision-recall curve, by a Riemann sum over thresholds.

    Args:
        num_thresholds: how many thresholds, evenly spaced over [0, 1] (at least 2).
        curve: ``"ROC"``, ``"PR"`` or ``"PRGAIN"``.
        summation_method: ``"interpolation"``, ``"majoring"`` or ``"minoring"``.
        thresholds: explicit thresholds in [0, 1] instead of ``num_thresholds``.
        multi_label: one curve per label column, averaged (weighted by ``label_weights``).
        num_labels: the number of label columns with ``multi_label`` (else from the data).
        label_weights: per-label weights.
        from_logits: y_pred are logits (a sigmoid first).
    """

    def __init__(
        self,
        num_thresholds=200,
        curve="ROC",
        summation_method="interpolation",
        name=None,
        dtype=None,
        thresholds=None,
        multi_label=False,
        num_labels=None,
        label_weights=None,
        from_logits=False,
    ):
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            self.num_thresholds = len(thresholds) + 2
            thresholds = sorted(thresholds)
            self._evenly = evenly_spaced(np.array([0.0, *thresholds, 1.0]))
        else:
            if num_thresholds <= 1:
                raise ValueError(
                    "Argument `num_thresholds` must be an integer > 1. "
                    f"Received: num_thresholds={num_thresholds}"
                )
            self.num_thresholds = num_thresholds
            thresholds = [(i + 1) / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._evenly = True
        self._thresholds = np.array([0.0 - EPSILON, *thresholds, 1.0 + EPSILON])
        self.curve = _choice("AUC curve", curve, ("PR", "ROC", "PRGAIN"))
        self.summation_method = _choice(
            "AUC summation method", summation_method, ("interpolation", "majoring", "minoring")
        )
        super().__init__(name, dtype)
        self.multi_label = multi_label
        self.num_labels = num_labels
        self.label_weights = None if label_weights is None else np.asarray(label_weights, float)
        self._from_logits = from_logits
        self._built = False
        if multi_label:
            if num_labels:
                self._build((None, num_labels))
        elif num_labels:
            raise ValueError("`num_labels` is needed only when `multi_label` is True.")
        else:
            self._build(None)

    @property
    def thresholds(self) -> list[float]:
        return list(self._thresholds)

    def _build(self, shape):
        if self.multi_label:
            if len(shape) != 2:
                raise ValueError(
                    "`y_pred` must have rank 2 when `multi_label=True`. Found rank "
                    f"{len(shape)}. Full shape received for `y_pred`: {shape}"
                )
            self._num_labels = shape[1]
            size = (self.num_thresholds, self._num_labels)
        else:
            size = (self.num_thresholds,)
        for name in ("true_positives", "false_positives", "true_negatives", "false_negatives"):
            setattr(self, name, self.add_variable(size, name=name))
        self._built = True

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = np.asarray(unwrap(y_pred))
        if not self._built:
            self._build(y_pred.shape)
        if self._from_logits:
            y_pred = 1 / (1 + np.exp(-y_pred.astype(self.dtype)))
        update_confusion(
            {
                "tp": self.true_positives,
                "tn": self.true_negatives,
                "fp": self.false_positives,
                "fn": self.false_negatives,
            },
            y_true,
            y_pred,
            self._thresholds,
            self._evenly,
            sample_weight=sample_weight,
            multi_label=self.multi_label,
            label_weights=None if self.multi_label else self.label_weights,
        )

    def _counts(self):
        return (
            self.true_positives.value.astype(np.float64),
            self.false_positives.value.astype(np.float64),
            self.true_negatives.value.astype(np.float64),
            self.false_negatives.value.astype(np.float64),
        )

    def _by_label(self, terms) -> float:
        if not self.multi_label:
            return float(terms.sum())
        by_label = terms.sum(axis=0)
        if self.label_weights is None:
            return float(by_label.mean())
        return float(divide_no_nan((by_label * self.label_weights).sum(), self.label_weights.sum()))

    def interpolate_pr_auc(self) -> float:
        """The PR curve's area with precision interpolated between thresholds (Davis & Goadrich)."""
        tp, fp, _, fn = self._counts()
        n = self.num_thresholds
        dtp = tp[: n - 1] - tp[1:]
        p = tp + fp
        dp = p[: n - 1] - p[1:]
        slope = divide_no_nan(dtp, np.maximum(dp, 0))
        intercept = tp[1:] - slope * p[1:]
        both = (p[: n - 1] > 0) & (p[1:] > 0)
        ratio = np.where(both, divide_no_nan(p[: n - 1], np.maximum(p[1:], 0)), 1.0)
        with np.errstate(divide="ignore"):
            log_ratio = np.log(ratio)
        terms = divide_no_nan(slope * (dtp + intercept * log_ratio), np.maximum(tp[1:] + fn[1:], 0))
        return self._by_label(terms)

    def result(self) -> float:
        if not self._built:
            return 0.0
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        tp, fp, tn, fn = self._counts()
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, divide_no_nan(tp, tp + fp)
        else:
            scale = divide_no_nan(tp + fn, tn + fp)
            recall_gain = np.where(tp == 0, 0.0, 1.0 - scale * divide_no_nan(fn, tp))
            precision_gain = np.where(tp == 0, 1.0, 1.0 - scale * divide_no_nan(fp, tp))
            x, y = np.maximum(recall_gain, 0.0), precision_gain
        n = self.num_thresholds
        if self.summation_method == "interpolation":
            heights = (y[: n - 1] + y[1:]) / 2
        elif self.summation_method == "minoring":
            heights = np.minimum(y[: n - 1], y[1:])
        else:
            heights = np.maximum(y[: n - 1], y[1:])
        return self._by_label((x[: n - 1] - x[1:]) * heights)

    def reset_state(self):
        if self._built:
            super().reset_state()

    def get_config(self):
        config = super().get_config() | {
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": None if self.label_weights is None else self.label_weights.tolist(),
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return config


def _choice(what: str, value, options: tuple) -> str:
    """``value`` matched to one of ``options`` ignoring case, or Keras's ValueError naming them."""
    for option in options:
        if isinstance(value, str) and value.lower() == option.lower():
            return option
    expected = ", ".join(f'"{option}"' for option in options)
    raise ValueError(f'Invalid {what} value: "{value}". Expected values are [{expected}]')
