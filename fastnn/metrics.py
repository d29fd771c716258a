"""Streaming metrics with Keras 3 names: ``update_state``, ``result``, ``reset_state``.

A user's metric subclasses ``Metric`` as in Keras: ``add_variable`` (or ``add_weight``) makes its
state, ``update_state`` updates it with fastnn.ops and ``assign``/``assign_add``, ``result``
reads it, and the default ``reset_state`` sets every variable back to zeros.
"""

from __future__ import annotations

import numpy as np

from fastnn import backend, initializers, losses
from fastnn.layers.base import Variable
from fastnn.ops.tensor import unwrap
from fastnn.saving.registry import register_builtins


class Metric:
    """Base class: a running mean of a per-sample value, weighted by sample count (built-in
    metrics), or the state a subclass makes with ``add_variable``."""

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
        values = np.asarray(self.values(np.asarray(y_true), np.asarray(y_pred)), dtype=np.float64)
        if sample_weight is not None:
            weights = np.broadcast_to(np.asarray(sample_weight, np.float64), values.shape)
            self._total += float((values * weights).sum())
            self._count += float(weights.sum())
        else:
            self._total += float(values.sum())
            self._count += values.size

    def result(self) -> float:
        return self._total / self._count if self._count else 0.0

    def get_config(self) -> dict:
        return {"name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __call__(self, y_true, y_pred, sample_weight=None) -> float:
        self.update_state(y_true, y_pred, sample_weight)
        return self.result()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}>"


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


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


class Mean(Metric):
    """The weighted mean of the values given to ``update_state(values)``."""

    def update_state(self, values, sample_weight=None) -> None:
        if isinstance(values, float) and isinstance(sample_weight, (int, type(None))):
            weight = 1 if sample_weight is None else sample_weight  # a loss per batch: no arrays
            self._total += values * weight
            self._count += weight
            return
        values = np.asarray(unwrap(values), dtype=np.float64)
        if sample_weight is None:
            self._total += float(values.sum())
            self._count += values.size
        else:
            weights = np.broadcast_to(np.asarray(sample_weight, np.float64), values.shape)
            self._total += float((values * weights).sum())
            self._count += float(weights.sum())


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
        return {"name": self.name, "threshold": self.threshold}


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


class MeanSquaredError(Metric):
    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return np.square(y_pred - _match_rank(y_true, y_pred)).mean(axis=-1)


class MeanAbsoluteError(Metric):
    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return np.abs(y_pred - _match_rank(y_true, y_pred)).mean(axis=-1)


class RootMeanSquaredError(Metric):
    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name, dtype)

    def values(self, y_true, y_pred):
        return np.square(y_pred - _match_rank(y_true, y_pred)).mean(axis=-1)

    def result(self):
        return float(np.sqrt(super().result()))


class MeanMetricWrapper(Metric):
    """A running mean of ``fn(y_true, y_pred)`` (e.g. a loss function used as a metric)."""

    def __init__(self, fn, name=None, dtype=None):
        self.fn = fn
        super().__init__(name or getattr(fn, "__name__", "metric"), dtype)

    def values(self, y_true, y_pred):
        return self.fn(y_true, y_pred)


_CLASSES = {
    "binary_accuracy": BinaryAccuracy,
    "categorical_accuracy": CategoricalAccuracy,
    "sparse_categorical_accuracy": SparseCategoricalAccuracy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
    "mean_absolute_error": MeanAbsoluteError,
    "mae": MeanAbsoluteError,
    "root_mean_squared_error": RootMeanSquaredError,
}
_ACCURACY = ("accuracy", "acc")
_LOSS_METRICS = (
    "binary_crossentropy",
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
)
_CAMEL = {cls.__name__: cls for cls in _CLASSES.values()}


def valid_names() -> list[str]:
    return sorted({*_CLASSES, *_ACCURACY, *_LOSS_METRICS, *_CAMEL})


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
        if key in _LOSS_METRICS:
            return MeanMetricWrapper(losses.get(key).call, name=key)
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
register_builtins(
    {cls.__name__: cls for cls in [*_CLASSES.values(), Mean, MeanMetricWrapper]}, kind="metrics"
)
