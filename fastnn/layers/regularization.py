"""Regularization layers: spatial dropout, Gaussian noise and dropout, activity regularization.

Each is the identity at inference. The random ones draw from a generator of their own
(``fastnn.seeding.make_rng``: ``seed``, or the process-wide generator), as ``Dropout`` does, and
keep their inputs' masks, as in Keras.
"""

from __future__ import annotations

import math

import numpy as np

from fastnn import ops
from fastnn.layers import custom
from fastnn.layers.base import Layer
from fastnn.layers.reshaping import check_rank, layout_name, standardize_data_format
from fastnn.ops import tape as tape_module
from fastnn.seeding import make_rng


def _check_rate(value, name: str = "rate") -> float:
    """A float in [0, 1], or Keras's error."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a float value between 0 "
            f"and 1. Received: {name}={value}"
        )
    if not 0 <= value <= 1:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a float value between 0 "
            f"and 1. Received: {name}={value}"
        )
    return float(value)


class _SpatialDropout(Layer):
    """Drops whole channels: one keep-or-drop draw per sample and channel."""

    passes_mask = True
    rank = 1

    def __init__(self, rate: float, seed: int | None = None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.rate = _check_rate(rate)
        self.seed = seed
        self._rng = make_rng(seed)

    def _noise_shape(self, shape) -> tuple:
        """The shape of the mask: the spatial axes are 1."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return check_rank(self, input_shape, self.rank + 2, self._layout())

    def _layout(self) -> str:
        return layout_name(getattr(self, "data_format", "channels_last"), self.rank)

    def forward(self, inputs, training):
        if not training or self.rate == 0:
            return inputs, None
        noise_shape = self._noise_shape(inputs.shape)
        uniform = self._rng.random(math.prod(noise_shape), dtype=inputs.dtype)
        kept = inputs.dtype.type(1 / (1 - self.rate)) if self.rate < 1 else 0
        scale = np.where(uniform >= inputs.dtype.type(self.rate), kept, 0).astype(inputs.dtype)
        scale = scale.reshape(noise_shape)
        return inputs * scale, scale

    def backward(self, ctx, grad_outputs):
        if ctx is None:
            return grad_outputs
        return grad_outputs * ctx

    def get_config(self):
        return {"rate": self.rate, "seed": self.seed, "name": self.name, "dtype": self.dtype}


class SpatialDropout1D(_SpatialDropout):
    """Dropout of whole feature channels of sequences ``(batch, steps, channels)`` while
    training: a dropped channel is zero at every step; kept ones are scaled by 1 / (1 - rate).

    Example: ``SpatialDropout1D(0.2)(Conv1D(32, 3)(x))``.
    """

    rank = 1

    def _noise_shape(self, shape):
        return (shape[0], 1, shape[2])


class SpatialDropout2D(_SpatialDropout):
    """Dropout of whole feature maps of images while training: a dropped channel is zero at
    every pixel; kept ones are scaled by 1 / (1 - rate).

    Args:
        rate: the fraction of channels dropped, in [0, 1].
        data_format: ``"channels_last"`` (NHWC, the default) or ``"channels_first"`` (NCHW).
        seed: the seed of the layer's generator (None: drawn from the process-wide one).

    Example: ``SpatialDropout2D(0.2)(Conv2D(32, 3)(x))``.
    """

    rank = 2

    def __init__(
        self, rate: float, data_format=None, seed: int | None = None, name=None, dtype=None
    ):
        super().__init__(rate, seed=seed, name=name, dtype=dtype)
        self.data_format = standardize_data_format(data_format)

    def _noise_shape(self, shape):
        if self.data_format == "channels_first":
            return (shape[0], shape[1], 1, 1)
        return (shape[0], 1, 1, shape[3])

    def get_config(self):
        return {**super().get_config(), "data_format": self.data_format}


class GaussianNoise(Layer):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` while training.

    Example: ``GaussianNoise(0.1)(x)`` (a regularizer against overfitting, or data augmentation).
    """

    passes_mask = True

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stddev = _check_rate(stddev, "stddev")
        self.seed = seed
        self._rng = make_rng(seed)

    def forward(self, inputs, training):
        if not training or self.stddev == 0:
            return inputs, None
        noise = self._rng.standard_normal(inputs.shape, dtype=inputs.dtype)
        noise *= inputs.dtype.type(self.stddev)
        noise += inputs
        return noise, None

    def backward(self, ctx, grad_outputs):
        return grad_outputs

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(Layer):
    """Multiplies inputs by Gaussian noise of mean 1 and standard deviation
    ``sqrt(rate / (1 - rate))`` while training.

    Example: ``GaussianDropout(0.3)(x)``.
    """

    passes_mask = True

    def __init__(self, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _check_rate(rate)
        self.seed = seed
        self._rng = make_rng(seed)

    def forward(self, inputs, training):
        if not training or self.rate == 0:
            return inputs, None
        stddev = math.sqrt(self.rate / (1.0 - self.rate)) if self.rate < 1 else math.inf
        noise = self._rng.standard_normal(inputs.shape, dtype=inputs.dtype)
        noise *= inputs.dtype.type(stddev)
        noise += inputs.dtype.type(1)
        return inputs * noise, noise

    def backward(self, ctx, grad_outputs):
        if ctx is None:
            return grad_outputs
        return grad_outputs * ctx

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


class ActivityRegularization(Layer):
    """The identity, adding ``(l1 * sum(|x|) + l2 * sum(x**2)) / batch_size`` of its input to
    the training loss (Keras 3 divides an activity penalty by the batch size), at every call.

    In a model the penalty counts in ``fit``'s and ``evaluate``'s loss, and its gradient flows
    back from this layer; called on arrays it shows in ``losses`` (on a tape, as an
    ``add_loss`` value).

    Example: ``ActivityRegularization(l1=1e-4)(Dense(64)(x))``.
    """

    passes_mask = True

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.l1, self.l2 = float(l1), float(l2)

    @property
    def may_add_losses(self) -> bool:
        return True

    def added_losses(self, ctx) -> list:
        return [self._penalty(ctx)]  # computed when asked for: predict never asks

    def _penalty(self, x: np.ndarray) -> np.ndarray:
        kind = x.dtype.type
        loss = kind(0)
        if self.l1:
            loss += kind(self.l1) * np.abs(x).sum(dtype=x.dtype)
        if self.l2:
            loss += kind(self.l2) * np.vdot(x, x)
        return kind(loss / max(x.shape[0], 1) if x.ndim else loss)

    def forward(self, inputs, training):
        return inputs, inputs

    def backward(self, ctx, grad_outputs):
        x = ctx
        batch = max(x.shape[0], 1) if x.ndim else 1
        grad = np.zeros_like(x) if grad_outputs is None else np.array(grad_outputs, x.dtype)
        if self.l1:
            grad += x.dtype.type(self.l1 / batch) * np.sign(x)
        if self.l2:
            grad += x.dtype.type(2 * self.l2 / batch) * x
        return grad

    def _call_arrays(self, inputs, training: bool, extra: dict):
        """A call on arrays: the penalty goes to ``losses`` (and to an enclosing ``call()``
        layer's or a tape's ``add_loss`` values, as an op of the input when a tape tracks it)."""
        if not custom.SCOPE.get():  # an outermost call: as in Keras, its losses replace the last
            self._loss_values.clear()
        if tape_module.STATE.tapes and self._tracked(inputs):
            self.add_loss(self._penalty_op(inputs))
            return inputs
        outputs, ctx = self.forward(np.asarray(inputs), training)
        self.add_loss(self._penalty(ctx))
        return outputs

    def _penalty_op(self, x):
        """The penalty written with fastnn.ops, so a tape differentiates it."""
        loss = 0.0
        if self.l1:
            loss = loss + self.l1 * ops.sum(ops.abs(x))
        if self.l2:
            loss = loss + self.l2 * ops.sum(ops.square(x))
        batch = x.shape[0] if len(x.shape) else 1
        return ops.cast(loss / max(batch, 1), self.dtype)

    def get_config(self):
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
