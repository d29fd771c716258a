"""BatchNormalization over the last (channels) axis."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import initializers, kernels, regularizers
from fastnn.kernels.codes import LINEAR, RELU
from fastnn.kernels.workspace import Workspace, scratch
from fastnn.layers.base import Layer, shape_error


class _Saved(NamedTuple):
    """What BatchNormalization's forward keeps for its backward."""

    x: np.ndarray  # the input as rows (samples, channels)
    gamma: np.ndarray  # the scale used (ones without ``scale``)
    beta: np.ndarray  # the shift used (zeros without ``center``)
    mean: np.ndarray  # the mean used: the batch's, or the moving mean as of the call
    invstd: np.ndarray  # 1 / sqrt(variance + epsilon) used
    batch_stats: bool  # the batch's statistics were used (training), else the moving ones
    code: int  # the activation applied after the affine map: LINEAR or RELU
    workspace: Workspace | None  # the forward's, where the backward's gradient goes too


class BatchNormalization(Layer):
    """Normalizes each channel by batch statistics while training, moving averages otherwise.

    Input/output shape: ``(batch, ..., channels)``. Weights: gamma, beta (trainable),
    moving_mean, moving_variance (non-trainable). A frozen layer (``trainable=False``) runs in
    inference mode, as in Keras 3.
    """

    passes_mask = True
    uses_workspace = True

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if axis != -1:
            raise ValueError(
                f"BatchNormalization '{self.name}': fastnn normalizes the last (channels) axis "
                f"only; got axis={axis}"
            )
        if epsilon <= 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon}")
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if len(input_shape) < 2 or channels is None:
            raise shape_error(self, "needs a known channels axis", "(batch, ..., C)", input_shape)
        shape = (channels,)
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self.add_weight(
                shape, self.gamma_initializer, "gamma", regularizer=self.gamma_regularizer
            )
        if self.center:
            self.beta = self.add_weight(
                shape, self.beta_initializer, "beta", regularizer=self.beta_regularizer
            )
        self.moving_mean = self.add_weight(
            shape, self.moving_mean_initializer, "moving_mean", trainable=False
        )
        self.moving_variance = self.add_weight(
            shape, self.moving_variance_initializer, "moving_variance", trainable=False
        )

    def check_input_shape(self, input_shape):
        if input_shape[-1] != self.moving_mean.shape[0]:
            raise shape_error(
                self, "channels differ", f"(batch, ..., {self.moving_mean.shape[0]})", input_shape
            )

    def _affine(self, dtype):
        c = self.moving_mean.shape[0]
        gamma = self.gamma.value if self.scale else np.ones(c, dtype)
        beta = self.beta.value if self.center else np.zeros(c, dtype)
        return gamma, beta

    def forward(self, inputs, training, workspace=None):
        return self.forward_activated(inputs, training, LINEAR, workspace)

    def forward_activated(self, inputs, training, code, workspace=None):
        """``forward`` followed by the activation ``code`` (LINEAR or RELU) in the same pass."""
        x = np.ascontiguousarray(inputs).reshape(-1, inputs.shape[-1])
        gamma, beta = self._affine(x.dtype)
        y = scratch(workspace, "bn_y", x.shape, x.dtype)
        eps = x.dtype.type(self.epsilon)
        norm = kernels.normalization
        if not (training and self.trainable):
            mean, variance = self.moving_mean.value, self.moving_variance.value
            norm.batchnorm_forward_infer(x, gamma, beta, mean, variance, eps, code, y)
            # The moving statistics as of this call: a later training step must not change them.
            invstd = 1 / np.sqrt(variance + eps)
            saved = _Saved(x, gamma, beta, mean.copy(), invstd, False, code, workspace)
            return y.reshape(inputs.shape), saved
        mean, variance, invstd = (np.empty(x.shape[1], x.dtype) for _ in range(3))
        norm.batchnorm_forward_train(x, gamma, beta, eps, code, y, mean, variance, invstd)
        m = x.dtype.type(self.momentum)
        self.moving_mean.value *= m
        self.moving_mean.value += (1 - m) * mean
        self.moving_variance.value *= m
        self.moving_variance.value += (1 - m) * variance
        saved = _Saved(x, gamma, beta, mean, invstd, True, code, workspace)
        return y.reshape(inputs.shape), saved

    def backward(self, ctx, grad_outputs):
        x, gamma, beta, mean, invstd, batch_stats, code, workspace = ctx
        grad_y = np.ascontiguousarray(grad_outputs).reshape(x.shape)
        if not batch_stats:  # inference mode: a fixed affine map per channel
            if code == RELU:
                scale = (invstd * gamma).astype(x.dtype)
                z = (x - mean) * scale + beta
                grad_y = np.where(z > 0, grad_y, x.dtype.type(0))
            if self.trainable:  # still a function of gamma and beta (Keras fine-tuning)
                if self.scale:
                    self.gamma.grad += np.sum(grad_y * ((x - mean) * invstd), axis=0)
                if self.center:
                    self.beta.grad += np.sum(grad_y, axis=0)
            return (grad_y * (gamma * invstd)).reshape(grad_outputs.shape)
        grad_x = scratch(workspace, "bn_dx", x.shape, x.dtype)
        dgamma = self.gamma.grad if self.scale else np.zeros_like(gamma)
        dbeta = self.beta.grad if self.center else np.zeros_like(gamma)
        kernels.normalization.batchnorm_backward(
            grad_y, x, gamma, beta, mean, invstd, code, grad_x, dgamma, dbeta
        )
        return grad_x.reshape(grad_outputs.shape)

    def get_config(self):
        ser = initializers.serialize
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": ser(self.beta_initializer),
            "gamma_initializer": ser(self.gamma_initializer),
            "moving_mean_initializer": ser(self.moving_mean_initializer),
            "moving_variance_initializer": ser(self.moving_variance_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
        }
