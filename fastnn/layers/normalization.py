"""BatchNormalization, LayerNormalization and GroupNormalization (Keras 3's arguments)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fastnn import constraints, initializers, kernels, regularizers
from fastnn.kernels.codes import LINEAR, RELU6
from fastnn.kernels.workspace import Workspace, scratch
from fastnn.layers.base import Layer, shape_error
from fastnn.ops.tensor import weights_written

#: Sums a float64 array over every process of a data-parallel job, in place; set by
#: ``fastnn.distribution`` for ``DataParallel(sync_batchnorm=True)``, when BatchNormalization
#: takes its training statistics over the global batch. None: over this process's batch.
cross_replica_sum = None


class _Saved(NamedTuple):
    """What BatchNormalization's forward keeps for its backward."""

    x: np.ndarray  # the input as rows (samples, channels)
    gamma: np.ndarray  # the scale used (ones without ``scale``)
    beta: np.ndarray  # the shift used (zeros without ``center``)
    mean: np.ndarray  # the mean used: the batch's, or the moving mean as of the call
    invstd: np.ndarray  # 1 / sqrt(variance + epsilon) used
    batch_stats: bool  # the batch's statistics were used (training), else the moving ones
    code: int  # the activation applied after the affine map: LINEAR, RELU or RELU6
    workspace: Workspace | None  # the forward's, where the backward's gradient goes too
    axis: int | None  # the normalized axis when it is not the last (moved there), else None


class BatchNormalization(Layer):
    """Normalizes each channel by batch statistics while training, moving averages otherwise.

    Input/output shape: ``(batch, ..., channels)``, the channels on ``axis`` (``axis=1`` for
    channels-first input: that axis is moved last for the kernels and back). Weights: gamma,
    beta (trainable), moving_mean, moving_variance (non-trainable). A frozen layer
    (``trainable=False``) runs in inference mode, as in Keras 3.
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
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise TypeError(
                f"BatchNormalization '{self.name}': `axis` must be an integer; got axis={axis!r}"
            )
        axis = int(axis)
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
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def build(self, input_shape):
        axis = _channel_axis(self, self.axis, input_shape)
        channels = input_shape[axis]
        if channels is None:
            raise shape_error(
                self, f"needs a known size on axis {self.axis}", "(batch, ..., C)", input_shape
            )
        shape = (channels,)
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self.add_weight(
                shape,
                self.gamma_initializer,
                "gamma",
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
            )
        if self.center:
            self.beta = self.add_weight(
                shape,
                self.beta_initializer,
                "beta",
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
            )
        self.moving_mean = self.add_weight(
            shape, self.moving_mean_initializer, "moving_mean", trainable=False
        )
        self.moving_variance = self.add_weight(
            shape, self.moving_variance_initializer, "moving_variance", trainable=False
        )

    def check_input_shape(self, input_shape):
        axis = _channel_axis(self, self.axis, input_shape)
        if input_shape[axis] != self.moving_mean.shape[0]:
            raise shape_error(
                self,
                f"channels on axis {self.axis} differ",
                f"{self.moving_mean.shape[0]} channels",
                input_shape,
            )

    def _affine(self, dtype):
        c = self.moving_mean.shape[0]
        gamma = self.gamma.value if self.scale else np.ones(c, dtype)
        beta = self.beta.value if self.center else np.zeros(c, dtype)
        return gamma, beta

    def forward(self, inputs, training, workspace=None):
        return self.forward_activated(inputs, training, LINEAR, workspace)

    def forward_activated(self, inputs, training, code, workspace=None, moments=None):
        """``forward`` followed by the activation ``code`` (LINEAR, RELU or RELU6) in one pass.
        ``moments`` ((2, C): the mean and biased variance of the inputs over the last axis,
        gathered by the layer before) stand in for the batch's statistics in training."""
        axis = self.axis % inputs.ndim
        if axis != inputs.ndim - 1:  # channels moved last, the kernels' layout, and back
            y, saved = self._forward_last(np.moveaxis(inputs, axis, -1), training, code, workspace)
            return np.ascontiguousarray(np.moveaxis(y, -1, axis)), saved._replace(axis=axis)
        return self._forward_last(inputs, training, code, workspace, moments)

    @property
    def takes_moments(self) -> bool:
        """Whether a training pass uses the batch statistics a layer before gathered
        (``forward_activated``'s moments): not frozen, not synchronized over replicas."""
        return self.trainable and cross_replica_sum is None

    def _forward_last(self, inputs, training, code, workspace, moments=None):
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
            saved = _Saved(x, gamma, beta, mean.copy(), invstd, False, code, workspace, None)
            return y.reshape(inputs.shape), saved
        mean, variance, invstd = (np.empty(x.shape[1], x.dtype) for _ in range(3))
        if moments is not None and cross_replica_sum is None:
            mean[:], variance[:] = moments
            invstd[:] = 1 / np.sqrt(variance + eps)
            norm.batchnorm_apply(x, mean, invstd * gamma, beta, code, y)
        elif cross_replica_sum is None:
            norm.batchnorm_forward_train(x, gamma, beta, eps, code, y, mean, variance, invstd)
        else:
            _global_moments(x, eps, mean, variance, invstd)
            norm.batchnorm_apply(x, mean, invstd * gamma, beta, code, y)
        m = x.dtype.type(self.momentum)
        self.moving_mean.value *= m
        self.moving_mean.value += (1 - m) * mean
        self.moving_variance.value *= m
        self.moving_variance.value += (1 - m) * variance
        weights_written()
        saved = _Saved(x, gamma, beta, mean, invstd, True, code, workspace, None)
        return y.reshape(inputs.shape), saved

    def backward(self, ctx, grad_outputs):
        if ctx.axis is not None:
            grad = self._backward_last(ctx, np.moveaxis(grad_outputs, ctx.axis, -1))
            return np.ascontiguousarray(np.moveaxis(grad, -1, ctx.axis))
        return self._backward_last(ctx, grad_outputs)

    def _backward_last(self, ctx, grad_outputs):
        x, gamma, beta, mean, invstd, batch_stats, code, workspace, _ = ctx
        grad_y = np.ascontiguousarray(grad_outputs).reshape(x.shape)
        if not batch_stats:  # inference mode: a fixed affine map per channel
            if code != LINEAR:
                scale = (invstd * gamma).astype(x.dtype)
                grad_y = _passed((x - mean) * scale + beta, grad_y, code)
            if self.trainable:  # still a function of gamma and beta (Keras fine-tuning)
                if self.scale:
                    self.gamma.grad += np.sum(grad_y * ((x - mean) * invstd), axis=0)
                if self.center:
                    self.beta.grad += np.sum(grad_y, axis=0)
            return (grad_y * (gamma * invstd)).reshape(grad_outputs.shape)
        grad_x = scratch(workspace, "bn_dx", x.shape, x.dtype)
        dgamma = self.gamma.grad if self.scale else np.zeros_like(gamma)
        dbeta = self.beta.grad if self.center else np.zeros_like(gamma)
        backward = kernels.normalization.batchnorm_backward
        if cross_replica_sum is not None:
            backward = _global_batchnorm_backward
        backward(grad_y, x, gamma, beta, mean, invstd, code, grad_x, dgamma, dbeta)
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
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }


def _global_moments(x, eps, mean, variance, invstd) -> None:
    """``kernels.normalization.batchnorm_moments`` over the rows of x (M, C) on every process
    (``cross_replica_sum``): the mean, then the variance around it, in float64."""
    sums = np.append(x.sum(axis=0, dtype=np.float64), len(x))
    cross_replica_sum(sums)
    rows = sums[-1]
    batch_mean = sums[:-1] / rows
    squares = np.square(x - batch_mean).sum(axis=0)
    cross_replica_sum(squares)
    mean[:] = batch_mean
    variance[:] = squares / rows
    invstd[:] = 1 / np.sqrt(squares / rows + eps)


def _passed(z, grad_y, code):
    """grad_y where relu (``code`` RELU) or relu6 (RELU6) of z passes its gradient, else 0."""
    top = 6 if code == RELU6 else np.inf
    return np.where((z > 0) & (z < top), grad_y, z.dtype.type(0))


def _global_batchnorm_backward(grad_y, x, gamma, beta, mean, invstd, code, grad_x, dgamma, dbeta):
    """``kernels.normalization.batchnorm_backward`` for statistics over every process: this
    process's dgamma, dbeta (summed with the other gradients later); grad_x from the sums of
    dz and dz * (x - mean) over every process."""
    centered = x - mean
    if code != LINEAR:  # z as the forward computed it: the mask matches bit for bit
        grad_y = _passed(centered * (invstd * gamma) + beta, grad_y, code)
    cols = x.shape[1]
    sums = np.empty(2 * cols + 1)
    sums[:cols] = grad_y.sum(axis=0, dtype=np.float64)
    sums[cols:-1] = np.einsum("ij,ij->j", grad_y, centered, dtype=np.float64)
    sums[-1] = len(x)
    dbeta += sums[:cols]
    dgamma += sums[cols:-1] * invstd
    cross_replica_sum(sums)
    rows, inv = sums[-1], invstd.astype(np.float64)
    k = gamma * inv
    k_x = k * inv * inv * sums[cols:-1] / rows
    k_0 = -k * sums[:cols] / rows
    grad_x[...] = grad_y * k - centered * k_x + k_0


def _channel_axis(layer: Layer, axis: int, input_shape) -> int:
    """``axis`` of ``input_shape`` as a non-negative index; the batch axis and axes out of
    range are refused."""
    rank = len(input_shape)
    if not -rank <= axis < rank or axis % rank == 0:
        raise shape_error(
            layer,
            f"axis {axis} is not a non-batch axis of the input",
            f"an axis in 1..{rank - 1} or -{rank - 1}..-1",
            tuple(input_shape),
        )
    return axis % rank


def _axes_last(x: np.ndarray, axes: list[int]) -> tuple[np.ndarray, list[int] | None]:
    """x with ``axes`` (sorted) moved last, C-contiguous, and the permutation (None when they
    are the last axes already, so x is only made contiguous)."""
    rank = x.ndim
    if axes == list(range(rank - len(axes), rank)):
        return np.ascontiguousarray(x), None
    order = [a for a in range(rank) if a not in axes] + axes
    return np.ascontiguousarray(x.transpose(order)), order


def _axes_back(y: np.ndarray, order: list[int] | None) -> np.ndarray:
    """The inverse of ``_axes_last``'s permutation applied to y (C-contiguous)."""
    return y if order is None else np.ascontiguousarray(y.transpose(np.argsort(order)))


class _Normalization(Layer):
    """What LayerNormalization and GroupNormalization share: gamma and beta, their
    initializers and regularizers, and passing masks on (Keras's ``supports_masking``)."""

    passes_mask = True

    def __init__(
        self,
        epsilon,
        center,
        scale,
        beta_initializer,
        gamma_initializer,
        beta_regularizer,
        gamma_regularizer,
        beta_constraint,
        gamma_constraint,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(epsilon, (int, float)) or epsilon <= 0:
            raise ValueError(f"`epsilon` must be positive. Received: epsilon={epsilon}")
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)

    def _make_weights(self, shape, scale: bool, center: bool) -> None:
        self.gamma = self.beta = None
        if scale:
            self.gamma = self.add_weight(
                shape,
                self.gamma_initializer,
                "gamma",
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
            )
        if center:
            self.beta = self.add_weight(
                shape,
                self.beta_initializer,
                "beta",
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
            )

    def _affine(self, size: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        """gamma and beta as flat arrays: ones / zeros for those the layer does not have."""
        gamma = np.ones(size, dtype) if self.gamma is None else self.gamma.value.reshape(-1)
        beta = np.zeros(size, dtype) if self.beta is None else self.beta.value.reshape(-1)
        return gamma, beta

    def _affine_grads(self, size: int, dtype) -> tuple[np.ndarray, np.ndarray]:
        """Where the kernels add dgamma and dbeta: the weights' .grad (flat views), or scratch
        for a weight the layer lacks or a frozen layer."""

        def grad(var):
            if var is None or not self.trainable:
                return np.zeros(size, dtype)
            return var.grad.reshape(-1)

        return grad(self.gamma), grad(self.beta)

    def get_config(self):
        ser = initializers.serialize
        return {
            **super().get_config(),
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": ser(self.beta_initializer),
            "gamma_initializer": ser(self.gamma_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
        }


class _NormSaved(NamedTuple):
    """What LayerNormalization's and GroupNormalization's forwards keep for their backwards."""

    x: np.ndarray  # the input, normalized axes last: (rows, D) or (N, S, C)
    gamma: np.ndarray  # the scale used, flat (ones without ``scale``)
    mean: np.ndarray  # float64 means per row / per (sample, group)
    rstd: np.ndarray  # float64 1 / sqrt(var + epsilon), alike
    order: list[int] | None  # the permutation that moved the axes last, or None
    moved_shape: tuple  # the input's shape after that permutation
    workspace: object  # the forward's Workspace (or None): the backward's gradient too


class LayerNormalization(_Normalization):
    """Normalizes each sample over ``axis`` (an int or a list), then scales by gamma and
    shifts by beta (of the shape of those axes).

    Input/output shape: any. Example: ``LayerNormalization()(x)`` over the last axis, as in a
    transformer block. ``rms_scaling=True`` is Keras's deprecated variant: ``x * rsqrt(var +
    epsilon) * gamma`` (no beta).
    """

    uses_workspace = True

    def __init__(
        self,
        axis=-1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        rms_scaling: bool = False,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(
            epsilon,
            center,
            scale,
            beta_initializer,
            gamma_initializer,
            beta_regularizer,
            gamma_regularizer,
            beta_constraint,
            gamma_constraint,
            **kwargs,
        )
        if isinstance(axis, (list, tuple)):
            axis = [int(a) for a in axis]
        elif isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
            axis = int(axis)
        else:
            raise TypeError(
                "Expected an int or a list/tuple of ints for the argument 'axis', but "
                f"received: {axis!r}"
            )
        self.axis = axis
        self.rms_scaling = bool(rms_scaling)

    def _axes(self, input_shape) -> list[int]:
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        if not axes:
            raise ValueError(f"LayerNormalization '{self.name}': `axis` is an empty list")
        found = sorted({_channel_axis(self, a, input_shape) for a in axes})
        if len(found) != len(axes):
            raise ValueError(
                f"LayerNormalization '{self.name}': `axis` repeats an axis: {self.axis}"
            )
        return found

    def build(self, input_shape):
        axes = self._axes(input_shape)
        shape = tuple(input_shape[a] for a in axes)
        if None in shape:
            raise shape_error(
                self, f"needs known sizes on axis {self.axis}", "known sizes", tuple(input_shape)
            )
        self._make_weights(
            shape, self.scale or self.rms_scaling, self.center and not self.rms_scaling
        )
        self._shape = shape

    def check_input_shape(self, input_shape):
        axes = self._axes(input_shape)
        if tuple(input_shape[a] for a in axes) != self._shape:
            raise shape_error(
                self, f"sizes on axis {self.axis} differ", self._shape, tuple(input_shape)
            )

    def compute_output_shape(self, input_shape):
        self._axes(input_shape)
        return input_shape

    def forward(self, inputs, training, workspace=None):
        size = int(np.prod(self._shape))
        moved, order = _axes_last(inputs, self._axes(inputs.shape))
        x = moved.reshape(-1, size)
        gamma, beta = self._affine(size, x.dtype)
        y = scratch(workspace, "ln_y", x.shape, x.dtype)
        mean, rstd = np.empty(len(x)), np.empty(len(x))
        kernels.normalization.layernorm_forward(
            x, gamma, beta, self.epsilon, self.rms_scaling, y, mean, rstd
        )
        out = _axes_back(y.reshape(moved.shape), order)
        return out, _NormSaved(x, gamma, mean, rstd, order, moved.shape, workspace)

    def inference_call(self, inputs):
        axes = self._axes(inputs.shape)
        if axes != list(range(inputs.ndim - len(axes), inputs.ndim)):
            return None  # normalized over axes that are not the last ones: forward moves them
        size = int(np.prod(self._shape))
        gamma, beta = self._affine(size, inputs.dtype)
        y = np.empty(inputs.shape, inputs.dtype)
        rows = y.reshape(-1, size)
        args = (gamma, beta, self.epsilon, self.rms_scaling, rows)
        mean, rstd = np.empty(len(rows)), np.empty(len(rows))

        def call(inputs):
            x = np.ascontiguousarray(inputs).reshape(rows.shape)
            kernels.normalization.layernorm_forward(x, *args, mean, rstd)
            return y

        return call

    def backward(self, ctx, grad_outputs):
        x, gamma, mean, rstd, order, moved_shape, workspace = ctx
        grad_y = grad_outputs if order is None else grad_outputs.transpose(order)
        grad_y = np.ascontiguousarray(grad_y).reshape(x.shape)
        grad_x = scratch(workspace, "norm_dx", x.shape, x.dtype)
        dgamma, dbeta = self._affine_grads(x.shape[1], x.dtype)
        kernels.normalization.layernorm_backward(
            grad_y, x, gamma, mean, rstd, self.rms_scaling, grad_x, dgamma, dbeta
        )
        return _axes_back(grad_x.reshape(moved_shape), order)

    def get_config(self):
        config = super().get_config()
        return {**config, "axis": self.axis, "rms_scaling": self.rms_scaling}


class GroupNormalization(_Normalization):
    """Normalizes each sample over groups of channels: the ``axis`` channels split in
    ``groups`` groups of neighbours (``groups=-1``: one per channel, instance normalization),
    then per-channel gamma and beta.

    Input/output shape: ``(batch, ..., channels)`` (channels on ``axis``). Example:
    ``GroupNormalization(groups=8)(x)`` on a feature map of 32 channels.
    """

    uses_workspace = True

    def __init__(
        self,
        groups: int = 32,
        axis: int = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        if (
            not isinstance(groups, (int, np.integer))
            or isinstance(groups, bool)
            or (groups <= 0 and groups != -1)
        ):
            raise ValueError(
                "Received an invalid value for argument `groups`, expected a positive integer "
                f"(or `-1` for instance normalization). Received: groups={groups}"
            )
        if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
            raise TypeError(f"GroupNormalization: `axis` must be an integer; got axis={axis!r}")
        super().__init__(
            epsilon,
            center,
            scale,
            beta_initializer,
            gamma_initializer,
            beta_regularizer,
            gamma_regularizer,
            beta_constraint,
            gamma_constraint,
            **kwargs,
        )
        self.groups, self.axis = int(groups), int(axis)

    def build(self, input_shape):
        dim = input_shape[_channel_axis(self, self.axis, input_shape)]
        if dim is None:
            raise ValueError(
                f"GroupNormalization '{self.name}': axis {self.axis} of input tensor should "
                f"have a defined dimension but the layer received an input with shape "
                f"{tuple(input_shape)}."
            )
        if self.groups == -1:
            self.groups = dim  # as Keras: the config then says how many
        if dim < self.groups:
            raise ValueError(
                f"GroupNormalization '{self.name}': Number of groups ({self.groups}) cannot be "
                f"more than the number of channels ({dim})."
            )
        if dim % self.groups != 0:
            raise ValueError(
                f"GroupNormalization '{self.name}': Number of groups ({self.groups}) must be a "
                f"multiple of the number of channels ({dim})."
            )
        self._make_weights((dim,), self.scale, self.center)
        self._channels = dim

    def check_input_shape(self, input_shape):
        axis = _channel_axis(self, self.axis, input_shape)
        if input_shape[axis] != self._channels:
            raise shape_error(
                self,
                f"channels on axis {self.axis} differ",
                f"{self._channels} channels",
                tuple(input_shape),
            )

    def compute_output_shape(self, input_shape):
        _channel_axis(self, self.axis, input_shape)
        return input_shape

    def forward(self, inputs, training, workspace=None):
        axis = self.axis % inputs.ndim
        moved, order = _axes_last(inputs, [axis])
        x = moved.reshape(len(moved), -1, self._channels)
        gamma, beta = self._affine(self._channels, x.dtype)
        y = scratch(workspace, "gn_y", x.shape, x.dtype)
        mean, rstd = np.empty((len(x), self.groups)), np.empty((len(x), self.groups))
        kernels.normalization.groupnorm_forward(
            x, gamma, beta, self.epsilon, self.groups, y, mean, rstd
        )
        out = _axes_back(y.reshape(moved.shape), order)
        return out, _NormSaved(x, gamma, mean, rstd, order, moved.shape, workspace)

    def backward(self, ctx, grad_outputs):
        x, gamma, mean, rstd, order, moved_shape, workspace = ctx
        grad_y = grad_outputs if order is None else grad_outputs.transpose(order)
        grad_y = np.ascontiguousarray(grad_y).reshape(x.shape)
        grad_x = scratch(workspace, "norm_dx", x.shape, x.dtype)
        dgamma, dbeta = self._affine_grads(self._channels, x.dtype)
        kernels.normalization.groupnorm_backward(
            grad_y, x, gamma, mean, rstd, grad_x, dgamma, dbeta
        )
        return _axes_back(grad_x.reshape(moved_shape), order)

    def get_config(self):
        config = super().get_config()
        return {**config, "groups": self.groups, "axis": self.axis}
