"""Losses with Keras 3 names, defaults and math, each with its gradient for the training loop.

A loss maps ``(y_true, y_pred)`` to per-sample values (``call``), reduces them like Keras
(``__call__``, default ``"sum_over_batch_size"``: the mean), and gives the reduced value with
its gradient with respect to ``y_pred`` (``value_and_grad``), computed by the fused kernels in
``fastnn.kernels.losses``. ``kind`` tells the training loop what the loss expects:
``"regression"``, ``"binary"``, ``"categorical"``, ``"sparse_categorical"`` or ``"custom"``.

A user's loss (a function of fastnn.ops, or a ``Loss`` subclass with ``call``) gets its gradient
from a tape. On a value a recording GradientTape tracks, every loss records: a built-in one as
one tape entry whose gradient is its kernel's.

>>> import numpy as np
>>> loss = get("sparse_categorical_crossentropy")
>>> value, grad = loss.value_and_grad(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]))
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from fastnn import kernels
from fastnn.ops import nn as ops_nn
from fastnn.ops import numpy as fnp
from fastnn.ops import tape as tape_module
from fastnn.ops.core import cast as ops_cast
from fastnn.ops.tensor import TensorOps, unwrap
from fastnn.saving.registry import register_builtins

EPSILON = 1e-7  # keras.backend.epsilon()
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


class Loss:
    """Base class. Subclasses implement ``call`` (per-sample values) and, to be trainable,
    ``value_and_grad``.

    Args:
        name: name of the loss instance.
        reduction: ``"sum_over_batch_size"`` (default) or ``"mean"``: mean of the weighted
            per-sample losses; ``"sum"``; ``"mean_with_sample_weight"``: sum divided by the sum
            of the sample weights; ``None`` / ``"none"``: no reduction.
        dtype: compute dtype; default ``None`` uses y_pred's float dtype (float32 otherwise).
    """

    kind = "custom"

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if reduction not in REDUCTIONS:
            raise ValueError(
                "Invalid value for argument `reduction`. Expected one of "
                f"{list(REDUCTIONS)}. Received: reduction={reduction!r}"
            )
        self.name = name or _snake(type(self).__name__)
        self.reduction = reduction
        self.dtype = None if dtype is None else np.dtype(dtype).name

    def call(self, y_true, y_pred) -> np.ndarray:
        """Per-sample losses, shape ``y_pred.shape[:-1]``."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred)")

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss: a float, or a scalar tensor when a recording tape tracks y_pred
        (an array for ``reduction=None``)."""
        dtype = self.dtype or _float_dtype(y_pred)
        y_pred = _as_dtype(y_pred, dtype)
        y_true = _as_dtype(y_true, dtype)
        values = self.call(y_true, y_pred)
        value = _reduce_tensor(values, sample_weight, self.reduction, None, dtype)
        return _finish(value)

    def value_and_grad(self, y_true, y_pred, sample_weight=None):
        """(reduced loss as a float, d(loss)/d(y_pred) with y_pred's shape and compute dtype):
        from a tape of ``call`` and the reduction."""
        y_pred = np.asarray(y_pred)
        dtype = np.dtype(self.dtype or _float_dtype(y_pred))
        with tape_module.GradientTape() as tape:
            pred = tape.watch(y_pred.astype(dtype, copy=False))
            value = self(y_true, pred, sample_weight)
        if np.ndim(unwrap(value)):
            raise ValueError(
                f"Loss '{self.name}': training needs a reduced loss; "
                f"got reduction={self.reduction!r}"
            )
        grad = tape.gradient(value, pred) if tape.key(value) is not None else None
        grad = np.zeros_like(unwrap(pred)) if grad is None else grad
        return float(unwrap(value)), grad.reshape(y_pred.shape)

    def check_target(self, y_true, output_shape, what: str) -> None:
        """Raise a ValueError starting with ``what`` if ``y_true`` (all samples) cannot be scored
        against outputs of ``output_shape`` (batch axis None); run before any training step."""

    def get_config(self) -> dict:
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r}>"


class _KernelLoss(Loss):
    """A loss computed row-wise by one kernel of ``fastnn.kernels.losses``."""

    sparse = False

    def _kernel_args(self, target, pred):
        """(kernel, target, extra scalar args, row mask or None) for 2-D pred; per loss."""
        raise NotImplementedError

    def _prepare(self, y_true, y_pred):
        y_pred = np.asarray(y_pred)
        dtype = np.dtype(self.dtype) if self.dtype else y_pred.dtype
        if dtype.kind != "f":
            dtype = np.dtype(np.float32)
        y_pred = y_pred.astype(dtype, copy=False)
        if y_pred.ndim == 0:
            raise ValueError(f"{self._who()}: y_pred must have rank >= 1; got a scalar")
        y_true = np.asarray(y_true)
        if self.sparse:
            if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
                y_true = y_true[..., 0]
            if y_true.shape != y_pred.shape[:-1]:
                raise ValueError(
                    f"{self._who()}: y_true must have y_pred's shape without the last (class) "
                    f"axis; got y_true.shape={y_true.shape} and y_pred.shape={y_pred.shape}"
                )
            labels = y_true.astype(np.int64, copy=False)
            if y_true.dtype.kind == "f":
                self._check_whole(y_true, labels)
            return labels, y_pred
        y_true, y_pred_same = _squeeze_or_expand(y_true.astype(dtype, copy=False), y_pred)
        if y_true.shape != y_pred_same.shape:
            hint = ""
            if self.kind == "categorical" and y_true.shape in (
                y_pred.shape[:-1],
                y_pred.shape[:-1] + (1,),
            ):
                hint = (
                    " (integer class labels? use SparseCategoricalCrossentropy, "
                    "'sparse_categorical_crossentropy')"
                )
            raise ValueError(
                f"{self._who()}: y_true and y_pred must have the same shape; "
                f"got y_true.shape={y_true.shape} and y_pred.shape={y_pred.shape}{hint}"
            )
        return y_true, y_pred_same

    def check_target(self, y_true, output_shape, what: str) -> None:
        if any(d is None for d in output_shape[1:]):
            return
        dtype = np.dtype(self.dtype or np.float32)
        pred = np.broadcast_to(dtype.type(0), (len(y_true), *output_shape[1:]))  # no memory
        try:
            y_true, _ = self._prepare(y_true, pred)
            if self.sparse:
                self._check_labels(y_true, output_shape[-1])
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None

    def _rows(self, y_true, y_pred):
        """Per-sample losses (y_pred.shape[:-1]), the (M, C) gradient of each row's loss, and
        a mask of the samples that count (None: all)."""
        y_true, y_pred = self._prepare(y_true, y_pred)
        pred = np.ascontiguousarray(y_pred.reshape(-1, y_pred.shape[-1]))
        shape = (len(pred),) if self.sparse else pred.shape
        target = np.ascontiguousarray(y_true.reshape(shape))
        kernel, target, extra, mask = self._kernel_args(target, pred)
        loss = np.empty(len(pred), pred.dtype)
        grad = np.empty_like(pred)
        kernel(pred, target, *extra, loss, grad)
        if mask is not None:
            loss[~mask] = 0
            grad[~mask] = 0
            mask = mask.reshape(y_pred.shape[:-1])
        return loss.reshape(y_pred.shape[:-1]), grad, mask

    def call(self, y_true, y_pred):
        return self._values(y_true, y_pred)[0]

    def _values(self, y_true, y_pred):
        """(per-sample losses, mask or None); on a tracked y_pred the losses are a tape entry
        whose gradient is the kernel's; on a tracked y_true (a teacher's outputs) the formula
        in fastnn.ops, which differentiates both."""
        if isinstance(y_true, TensorOps) and tape_module.tracked(y_true):
            return self._on_ops(*self._tensors_prepared(y_true, y_pred)), None
        if not (isinstance(y_pred, TensorOps) and tape_module.tracked(y_pred)):
            values, _, mask = self._rows(unwrap(y_true), unwrap(y_pred))
            return values, mask
        pred = unwrap(y_pred)
        values, grad, mask = self._rows(unwrap(y_true), pred)

        def vjp(grads):
            g = np.asarray(unwrap(grads[0]), grad.dtype).reshape(-1, 1)
            return [(g * grad).reshape(pred.shape).astype(pred.dtype, copy=False)]

        return tape_module.record(vjp, [y_pred], [values], name=self.name)[0], mask

    def _tensors_prepared(self, y_true, y_pred):
        """y_true and y_pred as ``_prepare`` checks and shapes them, kept as the tensors they are
        (their tape entries), y_true in y_pred's dtype."""
        true_array, pred_array = self._prepare(unwrap(y_true), unwrap(y_pred))
        if np.shape(unwrap(y_true)) != true_array.shape:
            y_true = fnp.reshape(y_true, true_array.shape)
        if np.shape(unwrap(y_pred)) != pred_array.shape:
            y_pred = fnp.reshape(y_pred, pred_array.shape)
        if unwrap(y_true).dtype != pred_array.dtype:
            y_true = ops_cast(y_true, pred_array.dtype)
        if unwrap(y_pred).dtype != pred_array.dtype:
            y_pred = ops_cast(y_pred, pred_array.dtype)
        return y_true, y_pred

    def _on_ops(self, y_true, y_pred):
        """The per-sample losses in fastnn.ops, for a y_true with a gradient of its own."""
        raise NotImplementedError(
            f"{self._who()}: a y_true that a GradientTape tracks (it has a gradient) is "
            "supported by MeanSquaredError, MeanAbsoluteError, KLDivergence, Huber, LogCosh, "
            "Poisson, BinaryCrossentropy and CategoricalCrossentropy; take "
            "ops.stop_gradient(y_true), or write the loss with fastnn.ops"
        )

    def __call__(self, y_true, y_pred, sample_weight=None):
        values, mask = self._values(y_true, y_pred)
        if isinstance(values, np.ndarray):
            value, _ = _reduce(values, sample_weight, self.reduction, mask)
            return value if np.ndim(value) else float(value)
        return _reduce_tensor(values, sample_weight, self.reduction, mask, values.dtype)

    def value_and_grad(self, y_true, y_pred, sample_weight=None):
        if self.reduction in (None, "none"):
            raise ValueError(
                f"{self._who()}: value_and_grad needs a reduced loss; "
                f"got reduction={self.reduction!r}"
            )
        values, grad, mask = self._rows(y_true, y_pred)
        value, weights = _reduce(values, sample_weight, self.reduction, mask)
        grad *= weights.reshape(-1, 1).astype(grad.dtype, copy=False)
        return float(value), grad.reshape(np.shape(y_pred))

    def _who(self) -> str:
        return f"{type(self).__name__} '{self.name}'"


class MeanSquaredError(_KernelLoss):
    """Mean over the last axis of ``(y_true - y_pred) ** 2``."""

    kind = "regression"

    def __init__(self, reduction="sum_over_batch_size", name="mean_squared_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _on_ops(self, y_true, y_pred):
        return fnp.mean(fnp.square(fnp.subtract(y_true, y_pred)), axis=-1)

    def _kernel_args(self, target, pred):
        return kernels.losses.mean_squared_error, target, (), None


class MeanAbsoluteError(_KernelLoss):
    """Mean over the last axis of ``abs(y_true - y_pred)``."""

    kind = "regression"

    def __init__(self, reduction="sum_over_batch_size", name="mean_absolute_error", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _on_ops(self, y_true, y_pred):
        return fnp.mean(fnp.abs(fnp.subtract(y_true, y_pred)), axis=-1)

    def _kernel_args(self, target, pred):
        return kernels.losses.mean_absolute_error, target, (), None


class _Crossentropy(_KernelLoss):
    def __init__(self, from_logits, label_smoothing, axis, reduction, name, dtype):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(
                f"Argument `from_logits` must be a bool. Received: from_logits={from_logits!r}"
            )
        if not 0 <= label_smoothing <= 1:
            raise ValueError(
                "Argument `label_smoothing` must be a float in [0, 1]. "
                f"Received: label_smoothing={label_smoothing!r}"
            )
        if axis != -1:
            raise ValueError(f"{self._who()}: only axis=-1 is supported. Received: axis={axis!r}")
        self.from_logits = bool(from_logits)
        self.label_smoothing = float(label_smoothing)
        self.axis = axis

    def get_config(self):
        config = super().get_config()
        config.update(
            from_logits=self.from_logits, label_smoothing=self.label_smoothing, axis=self.axis
        )
        return config


class BinaryCrossentropy(_Crossentropy):
    """Binary crossentropy, averaged over the last axis; y_pred holds probabilities or logits.

    Args:
        from_logits: whether y_pred are logits (then a stable sigmoid + BCE is used).
        label_smoothing: float in [0, 1]; targets become ``t * (1 - ls) + 0.5 * ls``.
    """

    kind = "binary"

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)

    def _on_ops(self, y_true, y_pred):
        if self.label_smoothing:
            y_true = fnp.add(
                fnp.multiply(y_true, 1 - self.label_smoothing), 0.5 * self.label_smoothing
            )
        return fnp.mean(ops_nn.binary_crossentropy(y_true, y_pred, self.from_logits), axis=-1)

    def _kernel_args(self, target, pred):
        if self.label_smoothing:
            ls = pred.dtype.type(self.label_smoothing)
            target = target * (1 - ls) + pred.dtype.type(0.5) * ls
        if self.from_logits:
            return kernels.losses.binary_crossentropy_logits, target, (), None
        return kernels.losses.binary_crossentropy, target, (pred.dtype.type(EPSILON),), None


class CategoricalCrossentropy(_Crossentropy):
    """Crossentropy against one-hot (or soft) targets over the last axis.

    Args:
        from_logits: whether y_pred are logits (then a fused, stable log-softmax is used).
        label_smoothing: float in [0, 1]; targets become ``t * (1 - ls) + ls / num_classes``.
    """

    kind = "categorical"

    def __init__(
        self,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)

    def _on_ops(self, y_true, y_pred):
        if self.label_smoothing:
            smooth = self.label_smoothing / np.shape(unwrap(y_pred))[-1]
            y_true = fnp.add(fnp.multiply(y_true, 1 - self.label_smoothing), smooth)
        return ops_nn.categorical_crossentropy(y_true, y_pred, self.from_logits)

    def _kernel_args(self, target, pred):
        if pred.shape[1] == 1:
            warnings.warn(
                f"In loss {self.name}, expected y_pred.shape to be (batch_size, num_classes) "
                f"with num_classes > 1. Received: y_pred.shape={pred.shape}. "
                "Consider using 'binary_crossentropy' if you only have 2 classes.",
                stacklevel=4,
            )
        if self.label_smoothing:
            ls = pred.dtype.type(self.label_smoothing)
            target = target * (1 - ls) + ls / pred.dtype.type(pred.shape[1])
        if self.from_logits:
            return kernels.losses.softmax_cross_entropy_logits, target, (), None
        return kernels.losses.categorical_crossentropy, target, (pred.dtype.type(EPSILON),), None


class SparseCategoricalCrossentropy(_KernelLoss):
    """Crossentropy against integer class labels; y_true has y_pred's shape without the last axis.

    Args:
        from_logits: whether y_pred are logits (then a fused, stable log-softmax is used).
        ignore_class: optional label whose samples get zero loss and are left out of the mean.
    """

    kind = "sparse_categorical"
    sparse = True

    def __init__(
        self,
        from_logits=False,
        ignore_class=None,
        reduction="sum_over_batch_size",
        axis=-1,
        name="sparse_categorical_crossentropy",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not isinstance(from_logits, (bool, np.bool_)):
            raise ValueError(
                f"Argument `from_logits` must be a bool. Received: from_logits={from_logits!r}"
            )
        if axis != -1:
            raise ValueError(f"{self._who()}: only axis=-1 is supported. Received: axis={axis!r}")
        self.from_logits = bool(from_logits)
        self.ignore_class = ignore_class
        self.axis = axis

    def _kernel_args(self, labels, pred):
        classes = pred.shape[1]
        mask = None
        if self.ignore_class is not None:
            mask = labels != self.ignore_class
            labels = np.where(mask, labels, 0)
        self._check_labels(labels, classes)
        if self.from_logits:
            return kernels.losses.sparse_softmax_cross_entropy_logits, labels, (), mask
        eps = (pred.dtype.type(EPSILON),)
        return kernels.losses.sparse_categorical_crossentropy, labels, eps, mask

    def _check_whole(self, y_true, labels):
        """Float labels must be whole numbers: 1.5 would read class 1 while accuracy misses."""
        fraction = labels != y_true
        if fraction.any():
            index = _first(fraction)
            raise ValueError(
                f"{self._who()}: labels must be integer class indices; got {y_true[index]} "
                f"(first at index {_index_text(index)})"
            )

    def _check_labels(self, labels, classes):
        """Labels must index one of ``classes`` (ignore_class aside)."""
        if not labels.size or (labels.min() >= 0 and labels.max() < classes):
            return
        outside = (labels < 0) | (labels >= classes)
        if self.ignore_class is not None:
            outside &= labels != self.ignore_class
        if outside.any():
            ignored = self.ignore_class is not None
            counted = labels[labels != self.ignore_class] if ignored else labels
            index = _first(outside)
            raise ValueError(
                f"{self._who()}: labels must be integers in [0, {classes}) for y_pred with "
                f"{classes} classes; got labels from {counted.min()} to {counted.max()} (first "
                f"outside: {labels[index]} at index {_index_text(index)})"
            )

    def get_config(self):
        config = super().get_config()
        config.update(from_logits=self.from_logits, ignore_class=self.ignore_class, axis=self.axis)
        return config


class Huber(_KernelLoss):
    """Mean over the last axis of ``0.5 * e**2`` where ``|e| <= delta``, else
    ``delta * |e| - 0.5 * delta**2``, with ``e = y_pred - y_true``."""

    kind = "regression"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name="huber_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = float(delta)

    def _on_ops(self, y_true, y_pred):
        error = fnp.abs(fnp.subtract(y_pred, y_true))
        small = fnp.multiply(0.5, fnp.square(error))
        large = fnp.subtract(fnp.multiply(self.delta, error), 0.5 * self.delta**2)
        return fnp.mean(fnp.where(fnp.less_equal(error, self.delta), small, large), axis=-1)

    def _kernel_args(self, target, pred):
        return kernels.losses.huber, target, (pred.dtype.type(self.delta),), None

    def get_config(self):
        return super().get_config() | {"delta": self.delta}


class LogCosh(_KernelLoss):
    """Mean over the last axis of ``log(cosh(y_pred - y_true))``."""

    kind = "regression"

    def __init__(self, reduction="sum_over_batch_size", name="log_cosh", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _on_ops(self, y_true, y_pred):
        x = fnp.subtract(y_pred, y_true)  # log cosh x = x + softplus(-2x) - log 2, stably
        log_cosh = fnp.subtract(fnp.add(x, fnp.logaddexp(0.0, fnp.multiply(-2.0, x))), np.log(2.0))
        return fnp.mean(log_cosh, axis=-1)

    def _kernel_args(self, target, pred):
        return kernels.losses.log_cosh, target, (), None


class KLDivergence(_KernelLoss):
    """Sum over the last axis of ``y_true * log(y_true / y_pred)``, both clipped to [eps, 1]."""

    kind = "regression"

    def __init__(self, reduction="sum_over_batch_size", name="kl_divergence", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _on_ops(self, y_true, y_pred):
        y_true, y_pred = fnp.clip(y_true, EPSILON, 1.0), fnp.clip(y_pred, EPSILON, 1.0)
        return fnp.sum(fnp.multiply(y_true, fnp.log(fnp.divide(y_true, y_pred))), axis=-1)

    def _kernel_args(self, target, pred):
        return kernels.losses.kl_divergence, target, (pred.dtype.type(EPSILON),), None


class Poisson(_KernelLoss):
    """Mean over the last axis of ``y_pred - y_true * log(y_pred + eps)``."""

    kind = "regression"

    def __init__(self, reduction="sum_over_batch_size", name="poisson", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _on_ops(self, y_true, y_pred):
        log_pred = fnp.log(fnp.add(y_pred, EPSILON))
        return fnp.mean(fnp.subtract(y_pred, fnp.multiply(y_true, log_pred)), axis=-1)

    def _kernel_args(self, target, pred):
        return kernels.losses.poisson, target, (pred.dtype.type(EPSILON),), None


class MeanAbsolutePercentageError(_KernelLoss):
    """Mean over the last axis of ``100 * |y_true - y_pred| / max(|y_true|, eps)``."""

    kind = "regression"

    def __init__(
        self,
        reduction="sum_over_batch_size",
        name="mean_absolute_percentage_error",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _kernel_args(self, target, pred):
        eps = (pred.dtype.type(EPSILON),)
        return kernels.losses.mean_absolute_percentage_error, target, eps, None


class MeanSquaredLogarithmicError(_KernelLoss):
    """Mean over the last axis of ``(log(y_pred + 1) - log(y_true + 1))**2``, both floored at
    eps."""

    kind = "regression"

    def __init__(
        self,
        reduction="sum_over_batch_size",
        name="mean_squared_logarithmic_error",
        dtype=None,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _kernel_args(self, target, pred):
        eps = (pred.dtype.type(EPSILON),)
        return kernels.losses.mean_squared_logarithmic_error, target, eps, None


class CosineSimilarity(_KernelLoss):
    """``-sum(l2_normalize(y_true) * l2_normalize(y_pred))`` over ``axis``: -1 for the same
    direction, 0 if either is a zero vector.

    Args:
        axis: the feature axis the similarity is taken over (default -1).
    """

    kind = "regression"

    def __init__(
        self, axis=-1, reduction="sum_over_batch_size", name="cosine_similarity", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"{self._who()}: `axis` must be an int. Received: axis={axis!r}")
        self.axis = int(axis)

    def _kernel_args(self, target, pred):
        return kernels.losses.cosine_similarity, target, (pred.dtype.type(EPSILON),), None

    def _moved(self, y_true, y_pred):
        """(y_true, y_pred, source axis or None): ``axis`` moved last when it is not already."""
        rank = np.ndim(unwrap(y_pred))
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"{self._who()}: axis={self.axis} is out of range for y_pred of rank {rank}"
            )
        axis = self.axis % rank
        if axis == rank - 1 or np.ndim(unwrap(y_true)) != rank:
            return y_true, y_pred, None
        y_true = np.moveaxis(np.asarray(unwrap(y_true)), axis, -1)
        if isinstance(y_pred, TensorOps):
            return y_true, fnp.moveaxis(y_pred, axis, -1), axis
        return y_true, np.moveaxis(np.asarray(y_pred), axis, -1), axis

    def _values(self, y_true, y_pred):
        y_true, y_pred, _ = self._moved(y_true, y_pred)
        return super()._values(y_true, y_pred)

    def value_and_grad(self, y_true, y_pred, sample_weight=None):
        y_true, moved_pred, axis = self._moved(y_true, y_pred)
        value, grad = super().value_and_grad(y_true, moved_pred, sample_weight)
        return value, grad if axis is None else np.moveaxis(grad, -1, axis)

    def get_config(self):
        return super().get_config() | {"axis": self.axis}


class Hinge(_KernelLoss):
    """Mean over the last axis of ``max(1 - y_true * y_pred, 0)``; labels in {-1, 1}, or {0, 1}
    (then mapped to {-1, 1} when every label of the batch is 0 or 1, as Keras does)."""

    kind = "regression"
    squared = False

    def __init__(self, reduction="sum_over_batch_size", name="hinge", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _kernel_args(self, target, pred):
        if np.all((target == 0) | (target == 1)):
            target = 2 * target - 1
        return kernels.losses.hinge, target, (self.squared,), None


class SquaredHinge(Hinge):
    """Mean over the last axis of ``max(1 - y_true * y_pred, 0) ** 2``; labels as ``Hinge``."""

    squared = True

    def __init__(self, reduction="sum_over_batch_size", name="squared_hinge", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)


class CategoricalHinge(_KernelLoss):
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)`` over the last axis."""

    kind = "categorical"

    def __init__(self, reduction="sum_over_batch_size", name="categorical_hinge", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def _kernel_args(self, target, pred):
        return kernels.losses.categorical_hinge, target, (), None


class BinaryFocalCrossentropy(_Crossentropy):
    """Binary crossentropy scaled by ``(1 - p_t) ** gamma`` (Lin et al.), averaged over the last
    axis; y_pred holds probabilities or logits.

    Args:
        apply_class_balancing: weigh class 1 by ``alpha`` and class 0 by ``1 - alpha``.
        alpha: the balancing weight of class 1.
        gamma: the focusing parameter; 0 gives binary crossentropy.
        from_logits: whether y_pred are logits.
        label_smoothing: float in [0, 1]; targets become ``t * (1 - ls) + 0.5 * ls``.
    """

    kind = "binary"

    def __init__(
        self,
        apply_class_balancing=False,
        alpha=0.25,
        gamma=2.0,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="binary_focal_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)
        self.apply_class_balancing = bool(apply_class_balancing)
        self.alpha = float(alpha)
        self.gamma = float(gamma)

    def _kernel_args(self, target, pred):
        if self.label_smoothing:
            ls = pred.dtype.type(self.label_smoothing)
            target = target * (1 - ls) + pred.dtype.type(0.5) * ls
        scalar = pred.dtype.type
        extra = (
            self.from_logits,
            self.apply_class_balancing,
            scalar(self.alpha),
            scalar(self.gamma),
            scalar(EPSILON),
        )
        return kernels.losses.binary_focal_crossentropy, target, extra, None

    def get_config(self):
        config = super().get_config()
        config.update(
            apply_class_balancing=self.apply_class_balancing, alpha=self.alpha, gamma=self.gamma
        )
        return config


class CategoricalFocalCrossentropy(_Crossentropy):
    """Categorical crossentropy with each class's term scaled by ``alpha * (1 - p) ** gamma``
    (Lin et al.), against one-hot (or soft) targets over the last axis.

    Args:
        alpha: the weight of every class, or a list with one weight per class.
        gamma: the focusing parameter; 0 (with alpha 1) gives categorical crossentropy.
        from_logits: whether y_pred are logits (softmax first).
        label_smoothing: float in [0, 1]; targets become ``t * (1 - ls) + ls / num_classes``.
    """

    kind = "categorical"

    def __init__(
        self,
        alpha=0.25,
        gamma=2.0,
        from_logits=False,
        label_smoothing=0.0,
        axis=-1,
        reduction="sum_over_batch_size",
        name="categorical_focal_crossentropy",
        dtype=None,
    ):
        super().__init__(from_logits, label_smoothing, axis, reduction, name, dtype)
        self.alpha = [float(a) for a in alpha] if np.ndim(alpha) else float(alpha)
        self.gamma = float(gamma)

    def _kernel_args(self, target, pred):
        classes = pred.shape[1]
        if np.ndim(self.alpha) and len(self.alpha) != classes:
            raise ValueError(
                f"{self._who()}: alpha has {len(self.alpha)} class weights but y_pred has "
                f"{classes} classes"
            )
        if self.label_smoothing:
            ls = pred.dtype.type(self.label_smoothing)
            target = target * (1 - ls) + ls / pred.dtype.type(classes)
        alpha = np.ascontiguousarray(np.broadcast_to(np.asarray(self.alpha, pred.dtype), classes))
        scalar = pred.dtype.type
        extra = (self.from_logits, alpha, scalar(self.gamma), scalar(EPSILON))
        return kernels.losses.categorical_focal_crossentropy, target, extra, None

    def get_config(self):
        return super().get_config() | {"alpha": self.alpha, "gamma": self.gamma}


def _first(flags: np.ndarray) -> tuple:
    """The index of the first True of ``flags`` (any shape)."""
    return np.unravel_index(int(np.argmax(flags)), flags.shape)


def _index_text(index: tuple) -> str:
    """``3`` for an index into a 1-D array, ``(3, 1)`` beyond."""
    index = tuple(int(i) for i in index)
    return str(index[0]) if len(index) == 1 else str(index)


class LossFunctionWrapper(Loss):
    """A loss from a function ``fn(y_true, y_pred) -> per-sample values`` written with
    fastnn.ops (its gradient comes from a tape)."""

    def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None, **kwargs):
        super().__init__(
            name=name or getattr(fn, "__name__", None), reduction=reduction, dtype=dtype
        )
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true, y_pred):
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred, **self._fn_kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(fn=getattr(self.fn, "__name__", repr(self.fn)), **self._fn_kwargs)
        return config


# ---- Keras's function forms: per-sample values ----


def mean_squared_error(y_true, y_pred):
    """Per-sample mean over the last axis of ``(y_true - y_pred) ** 2``."""
    return MeanSquaredError().call(y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    """Per-sample mean over the last axis of ``abs(y_true - y_pred)``."""
    return MeanAbsoluteError().call(y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample binary crossentropy, averaged over the last axis."""
    return BinaryCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample categorical crossentropy over the last axis."""
    return CategoricalCrossentropy(from_logits, label_smoothing, axis).call(y_true, y_pred)


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None, axis=-1):
    """Per-sample crossentropy against integer labels."""
    loss = SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis)
    return loss.call(y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    """Per-sample Huber loss, averaged over the last axis."""
    return Huber(delta).call(y_true, y_pred)


def log_cosh(y_true, y_pred):
    """Per-sample mean over the last axis of ``log(cosh(y_pred - y_true))``."""
    return LogCosh().call(y_true, y_pred)


def kl_divergence(y_true, y_pred):
    """Per-sample Kullback-Leibler divergence over the last axis."""
    return KLDivergence().call(y_true, y_pred)


def poisson(y_true, y_pred):
    """Per-sample Poisson loss, averaged over the last axis."""
    return Poisson().call(y_true, y_pred)


def cosine_similarity(y_true, y_pred, axis=-1):
    """Per-sample negative cosine similarity over ``axis``."""
    return CosineSimilarity(axis).call(y_true, y_pred)


def hinge(y_true, y_pred):
    """Per-sample hinge loss, averaged over the last axis."""
    return Hinge().call(y_true, y_pred)


def squared_hinge(y_true, y_pred):
    """Per-sample squared hinge loss, averaged over the last axis."""
    return SquaredHinge().call(y_true, y_pred)


def categorical_hinge(y_true, y_pred):
    """Per-sample categorical hinge loss over the last axis."""
    return CategoricalHinge().call(y_true, y_pred)


def mean_absolute_percentage_error(y_true, y_pred):
    """Per-sample mean absolute percentage error over the last axis."""
    return MeanAbsolutePercentageError().call(y_true, y_pred)


def mean_squared_logarithmic_error(y_true, y_pred):
    """Per-sample mean squared logarithmic error over the last axis."""
    return MeanSquaredLogarithmicError().call(y_true, y_pred)


def binary_focal_crossentropy(
    y_true,
    y_pred,
    apply_class_balancing=False,
    alpha=0.25,
    gamma=2.0,
    from_logits=False,
    label_smoothing=0.0,
    axis=-1,
):
    """Per-sample binary focal crossentropy, averaged over the last axis."""
    loss = BinaryFocalCrossentropy(
        apply_class_balancing, alpha, gamma, from_logits, label_smoothing, axis
    )
    return loss.call(y_true, y_pred)


def categorical_focal_crossentropy(
    y_true, y_pred, alpha=0.25, gamma=2.0, from_logits=False, label_smoothing=0.0, axis=-1
):
    """Per-sample categorical focal crossentropy over the last axis."""
    loss = CategoricalFocalCrossentropy(alpha, gamma, from_logits, label_smoothing, axis)
    return loss.call(y_true, y_pred)


mse = MSE = mean_squared_error
mae = MAE = mean_absolute_error
bce = BCE = binary_crossentropy
kld = KLD = kl_divergence
mape = MAPE = mean_absolute_percentage_error
msle = MSLE = mean_squared_logarithmic_error

_CLASSES = {
    cls.__name__: cls
    for cls in (
        MeanSquaredError,
        MeanAbsoluteError,
        BinaryCrossentropy,
        CategoricalCrossentropy,
        SparseCategoricalCrossentropy,
        Huber,
        LogCosh,
        KLDivergence,
        Poisson,
        CosineSimilarity,
        Hinge,
        SquaredHinge,
        CategoricalHinge,
        MeanAbsolutePercentageError,
        MeanSquaredLogarithmicError,
        BinaryFocalCrossentropy,
        CategoricalFocalCrossentropy,
    )
}
_FUNCTIONS = {
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    binary_crossentropy: BinaryCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    huber: Huber,
    log_cosh: LogCosh,
    kl_divergence: KLDivergence,
    poisson: Poisson,
    cosine_similarity: CosineSimilarity,
    hinge: Hinge,
    squared_hinge: SquaredHinge,
    categorical_hinge: CategoricalHinge,
    mean_absolute_percentage_error: MeanAbsolutePercentageError,
    mean_squared_logarithmic_error: MeanSquaredLogarithmicError,
    binary_focal_crossentropy: BinaryFocalCrossentropy,
    categorical_focal_crossentropy: CategoricalFocalCrossentropy,
}
_ALIASES = {
    **{fn.__name__: cls for fn, cls in _FUNCTIONS.items()},
    **{a: MeanSquaredError for a in ("mse", "MSE")},
    **{a: MeanAbsoluteError for a in ("mae", "MAE")},
    **{a: BinaryCrossentropy for a in ("bce", "BCE")},
    **{a: KLDivergence for a in ("kld", "KLD")},
    **{a: MeanAbsolutePercentageError for a in ("mape", "MAPE")},
    **{a: MeanSquaredLogarithmicError for a in ("msle", "MSLE")},
}


def valid_names() -> list[str]:
    return sorted({*_CLASSES, *_ALIASES})


def serialize(loss):
    """A JSON-able form of a loss as ``compile`` takes it: a name or ``{"class_name", "config"}``.

    Raises ValueError for a user's Python function, which a file cannot hold.
    """
    if loss is None or isinstance(loss, str):
        return loss
    if inspect.isclass(loss) and loss.__name__ in _CLASSES and _CLASSES[loss.__name__] is loss:
        return loss.__name__
    if isinstance(loss, Loss) and _CLASSES.get(type(loss).__name__) is type(loss):
        return {"class_name": type(loss).__name__, "config": loss.get_config()}
    if loss in _FUNCTIONS:
        return loss.__name__
    raise ValueError(f"The loss {loss!r} is a Python function or custom class and cannot be saved")


def get(identifier) -> Loss | None:
    """A Loss instance from a name ('mse', 'categorical_crossentropy', 'MeanSquaredError', ...),
    a ``{"class_name", "config"}`` dict, a Loss class or instance, or a function
    ``fn(y_true, y_pred) -> per-sample values``. ``None`` gives ``None``.
    """
    if identifier is None or isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier) or _ALIASES.get(identifier)
        if cls is None:
            raise ValueError(
                f"Could not interpret loss identifier: {identifier!r}. Valid names: {valid_names()}"
            )
        return cls()
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        if name not in _CLASSES:
            raise ValueError(
                f"Could not interpret loss config {identifier!r}: unknown class_name {name!r}. "
                f"Valid classes: {sorted(_CLASSES)}"
            )
        return _CLASSES[name].from_config(identifier.get("config", {}))
    if inspect.isclass(identifier) and issubclass(identifier, Loss):
        return identifier()
    if identifier in _FUNCTIONS:
        return _FUNCTIONS[identifier]()
    if callable(identifier):
        return LossFunctionWrapper(identifier)
    raise ValueError(
        f"Could not interpret loss identifier: {identifier!r}. Pass a name "
        f"({valid_names()}), a Loss instance or a function."
    )


# ---- shared helpers ----


def _squeeze_or_expand(y_true, y_pred):
    """Keras's squeeze_or_expand_to_same_rank: fix a rank difference of one trailing unit axis."""
    if y_true.ndim == y_pred.ndim + 1 and y_true.shape[-1] == 1:
        if y_pred.ndim == 1:
            y_pred = y_pred[:, None]
        else:
            y_true = y_true[..., 0]
    elif y_pred.ndim == y_true.ndim + 1 and y_pred.shape[-1] == 1:
        if y_true.ndim == 1:
            y_true = y_true[:, None]
        else:
            y_pred = y_pred[..., 0]
    return y_true, y_pred


def squeeze_or_expand_to_same_rank(x1, x2, expand_rank_1: bool = True):
    """Keras's: squeeze or expand a trailing unit axis when the ranks differ by one."""
    r1, r2 = np.ndim(unwrap(x1)), np.ndim(unwrap(x2))
    if r1 == r2 + 1 and np.shape(unwrap(x1))[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = fnp.expand_dims(x2, -1)
        else:
            x1 = fnp.squeeze(x1, -1)
    if r2 == r1 + 1 and np.shape(unwrap(x2))[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = fnp.expand_dims(x1, -1)
        else:
            x2 = fnp.squeeze(x2, -1)
    return x1, x2


def _float_dtype(x) -> np.dtype:
    dtype = np.result_type(unwrap(x))
    return dtype if dtype.kind == "f" else np.dtype(np.float32)


def _as_dtype(x, dtype):
    """``x`` as ``dtype``: a tensor cast on the tape, anything else as an array."""
    if isinstance(x, TensorOps):
        return x if x.dtype == dtype else ops_cast(x, dtype)
    return np.asarray(x, dtype=dtype)


def _finish(value):
    """A reduced loss off any tape as a float (arrays for reduction None), else the tensor."""
    if isinstance(value, TensorOps) and tape_module.tracked(value):
        return value
    value = unwrap(value)
    return value if np.ndim(value) else float(value)


def _reduce_tensor(values, sample_weight, reduction, mask, dtype):
    """Keras's reduce_weighted_values with fastnn.ops, so a tracked ``values`` records (the
    weights are constants)."""
    dtype = np.dtype(dtype)
    shape = np.shape(unwrap(values))
    if mask is None and sample_weight is None:
        if reduction in (None, "none"):
            return values
        total = fnp.sum(values)
        if reduction == "sum" or not shape:
            return total
        size = int(np.prod(shape))
        return total / dtype.type(size) if size else fnp.zeros((), dtype)
    _, weights = _reduce(np.zeros(shape, dtype), sample_weight, reduction, mask)
    weights = np.broadcast_to(np.asarray(weights, dtype), shape)
    if reduction in (None, "none"):
        return values * weights
    return fnp.sum(values * weights)  # weights already hold 1 / divisor


def _reduce(values, sample_weight, reduction, mask=None):
    """Keras's reduce_weighted_values; returns (reduced value, d(value)/d(values))."""
    dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float32)
    if mask is None and sample_weight is None and reduction not in (None, "none"):
        return _reduce_unweighted(values, reduction, dtype)
    weights = np.ones(values.shape, dtype)
    if mask is not None:
        mask = np.asarray(mask, bool).reshape(values.shape)
        if reduction in ("mean", "sum_over_batch_size"):
            valid = mask.sum()
            weights = np.where(mask, dtype.type(mask.size / valid if valid else 0), 0).astype(dtype)
        else:
            weights = mask.astype(dtype)
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype)
        if sw.ndim > values.ndim and sw.size == values.size:
            sw = sw.reshape(values.shape)
        sw = sw.reshape(sw.shape + (1,) * (values.ndim - sw.ndim))
        try:
            sw = np.broadcast_to(sw, values.shape)
        except ValueError:
            raise ValueError(
                f"sample_weight of shape {np.shape(sample_weight)} does not match the per-sample "
                f"losses of shape {values.shape}"
            ) from None
        weights = weights * sw
    if reduction in (None, "none"):
        return values * weights, weights
    total = (values * weights).sum(dtype=dtype)
    if reduction == "sum" or values.ndim == 0:
        return total, weights
    if reduction == "mean_with_sample_weight" and (sample_weight is not None or mask is not None):
        divisor = weights.sum(dtype=dtype)
    else:
        divisor = dtype.type(values.size)
    if divisor == 0:
        return dtype.type(0), np.zeros_like(weights)
    return total / divisor, weights / divisor


def _reduce_unweighted(values, reduction, dtype):
    """``_reduce`` when every value weighs 1: the same figures, the gradient one scalar."""
    total = values.sum(dtype=dtype)
    if reduction == "sum" or values.ndim == 0:
        return total, dtype.type(1)
    if values.size == 0:
        return dtype.type(0), dtype.type(0)
    divisor = dtype.type(values.size)
    return total / divisor, dtype.type(1) / divisor


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


# Saved configs (fastnn.saving.deserialize_keras_object) may name these classes.
register_builtins({cls.__name__: cls for cls in _CLASSES.values()}, kind="losses")
