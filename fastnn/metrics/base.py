"""The metric base class and the reducing metrics: ``Metric``, ``Mean``, ``Sum`` and
``MeanMetricWrapper``, with Keras 3's reduction of per-sample values and sample weights.
"""

from __future__ import annotations

import numpy as np

from fastnn import backend, initializers
from fastnn.ops.tensor import Variable, unwrap


class Metric:
    """Base class: a running weighted mean of per-sample values (``values``), or the state a
    subclass makes with ``add_variable``."""

    def __init__(self, name: str | None = None, dtype=None):
        self.name = name or _snake(type(self).__name__)
        self.dtype = np.dtype(dtype or backend.floatx()).name
        self._variables: list[Variable] = []
        self._total = 0.0
        self._count = 0.0

    # ---- state, as Keras's Metric keeps it ----
    def add_variable(self, shape=(), initializer="zeros", dtype=None, aggregation="sum", name=None):
        """A variable of this metric's state (non-trainable), in ``variables``."""
        dtype = np.dtype(dtype or self.dtype)
        shape = tuple(int(n) for n in shape)
        name = name or f"variable_{len(self._variables)}"
        value = np.asarray(initializers.get(initializer)(shape, dtype=dtype), dtype, order="C")
        variable = Variable(value, name, f"{self.name}/{name}", trainable=False, regularizer=None)
        self._variables.append(variable)
        return variable

    def add_weight(self, name=None, shape=(), initializer="zeros", dtype=None, aggregation="sum"):
        """``add_variable`` under its older name (``name`` first, as tf.keras's)."""
        return self.add_variable(shape, initializer, dtype, aggregation, name)

    @property
    def variables(self) -> list[Variable]:
        return list(self._variables)

    def reset_state(self) -> None:
        """Every variable back to zeros (and the built-in running mean)."""
        for variable in self._variables:
            variable.value[...] = 0
        self._total = 0.0
        self._count = 0.0

    def reset_states(self) -> None:
        """``reset_state`` under its older name."""
        self.reset_state()

    def values(self, y_true, y_pred) -> np.ndarray:
        """Per-sample values averaged by ``update_state``."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement update_state() and result() (or values())"
        )

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        values = self.values(np.asarray(unwrap(y_true)), np.asarray(unwrap(y_pred)))
        self._accumulate(values, sample_weight)

    def _accumulate(self, values, sample_weight) -> None:
        """Keras's Mean.update_state: per-sample values (weighted), summed; the count is the
        samples' weights, or their number."""
        values, weights = samplewise_values(values, sample_weight, np.mean)
        self._total += float(values.sum())
        if weights is not None:
            self._count += float(weights.sum())
        else:
            self._count += values.shape[0] if values.ndim else 1

    def result(self) -> float:
        return self._total / self._count if self._count else 0.0

    def get_config(self) -> dict:
        return {"name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


def samplewise_values(values, sample_weight, reduce):
    """Keras's reduce_to_samplewise_values: (per-sample values times their weights, the
    per-sample weights or None); axes beyond the weights' and then beyond the first are reduced
    with ``reduce``."""
    values = np.asarray(unwrap(values), dtype=np.float64)
    weights = None
    if sample_weight is not None:
        weights = np.asarray(unwrap(sample_weight), dtype=np.float64)
        values, weights = same_rank(values, weights)
        if values.ndim > weights.ndim:
            values = reduce(values, axis=tuple(range(weights.ndim, values.ndim)))
        try:
            weights = np.broadcast_to(weights, values.shape)
        except ValueError:
            raise ValueError(
                f"sample_weight of shape {np.shape(unwrap(sample_weight))} does not match the "
                f"metric's per-sample values of shape {values.shape}"
            ) from None
        values = values * weights
        if weights.ndim > 1:
            weights = reduce(weights, axis=tuple(range(1, weights.ndim)))
    if values.ndim > 1:
        values = reduce(values, axis=tuple(range(1, values.ndim)))
    return values, weights


def same_rank(x1: np.ndarray, x2: np.ndarray, expand_rank_1: bool = True) -> tuple:
    """Keras's squeeze_or_expand_to_same_rank on arrays: fix a rank difference of one trailing
    unit axis."""
    if x1.ndim == x2.ndim + 1 and x1.shape[-1] == 1:
        if x2.ndim == 1 and expand_rank_1:
            x2 = x2[..., None]
        else:
            x1 = x1[..., 0]
    elif x2.ndim == x1.ndim + 1 and x2.shape[-1] == 1:
        if x1.ndim == 1 and expand_rank_1:
            x1 = x1[..., None]
        else:
            x2 = x2[..., 0]
    return x1, x2


def as_numpy(value) -> np.ndarray:
    """A tensor, Variable or array-like as a numpy array."""
    return np.asarray(unwrap(value))


def result_value(value):
    """A metric's result as logs hold it: a float (a dict of them for a dict of results)."""
    if type(value) is float:
        return value
    if isinstance(value, dict):
        return {k: result_value(v) for k, v in value.items()}
    array = np.asarray(unwrap(value))
    return float(array) if array.size == 1 else array


def divide_no_nan(x, y):
    """x / y, 0 where y is 0."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.divide(x, y, out=np.zeros(np.broadcast(x, y).shape), where=y != 0)


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Mean(Metric):
    """The weighted mean of the values given to ``update_state(values, sample_weight)``."""

    def __init__(self, name="mean", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, values, sample_weight=None) -> None:
        if isinstance(values, float) and isinstance(sample_weight, (int, type(None))):
            weight = 1 if sample_weight is None else sample_weight  # a loss per batch: no arrays
            self._total += values * weight
            self._count += weight
            return
        self._accumulate(values, sample_weight)


class Sum(Metric):
    """The weighted sum of the values given to ``update_state(values, sample_weight)``."""

    def __init__(self, name="sum", dtype=None):
        super().__init__(name, dtype)

    def update_state(self, values, sample_weight=None) -> None:
        values, _ = samplewise_values(values, sample_weight, np.sum)
        self._total += float(values.sum())

    def result(self) -> float:
        return self._total


class MeanMetricWrapper(Metric):
    """A running mean of ``fn(y_true, y_pred, **kwargs)`` (e.g. a loss function as a metric)."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        self.fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name or getattr(fn, "__name__", "metric"), dtype)

    def values(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self._fn_kwargs)
