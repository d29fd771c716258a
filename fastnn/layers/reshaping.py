"""Reshaping layers: Reshape and RepeatVector (Keras 3 arguments; masks stop here, as in Keras)."""

from __future__ import annotations

import math

import numpy as np

from fastnn.layers.base import Layer, shape_error


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class Reshape(Layer):
    """Reshapes every sample to ``target_shape``; the batch axis is kept.

    Args:
        target_shape: tuple of ints, without the batch axis. One entry may be -1: it is
            inferred from the size of the sample.

    Input shape: ``(batch, ...)`` with as many elements per sample as ``target_shape``.
    Output shape: ``(batch, *target_shape)``.

    Example: ``Reshape((-1, 2))(Input((12,)))`` has shape ``(None, 6, 2)``.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        try:
            shape = tuple(target_shape)
        except TypeError:
            raise TypeError(
                "Expected a tuple of integers for `target_shape`. "
                f"Received: target_shape={target_shape!r}"
            ) from None
        if not all(_is_int(d) for d in shape):
            raise TypeError(
                "Expected a tuple of integers for `target_shape`. "
                f"Received: target_shape={target_shape!r}"
            )
        shape = tuple(int(d) for d in shape)
        if any(d < -1 for d in shape):
            raise ValueError(
                "Each dimension in `target_shape` must be a non-negative integer, or `-1` for a "
                f"single unknown dimension. Received: target_shape={shape}."
            )
        if shape.count(-1) > 1:
            raise ValueError(
                "There must be at most one unknown dimension (-1) in `target_shape`. "
                f"Received: target_shape={shape}."
            )
        self.target_shape = shape

    def _resolve(self, sample_shape, batch_shape):
        """target_shape with -1 resolved from a sample shape (None if unknown); or raise."""
        target = self.target_shape
        if any(d is None for d in sample_shape):
            return tuple(None if d == -1 else d for d in target)
        size = math.prod(sample_shape)
        known = math.prod(d for d in target if d != -1)
        if -1 in target:
            if known == 0 or size % known:
                raise shape_error(
                    self,
                    f"cannot reshape {size} elements per sample into target_shape={target}",
                    f"a number of elements divisible by {known}",
                    tuple(batch_shape),
                )
            return tuple(size // known if d == -1 else d for d in target)
        if size != known:
            raise shape_error(
                self,
                f"the total size of each sample must be unchanged by target_shape={target}",
                f"{known} elements per sample",
                f"{size} in input shape {tuple(batch_shape)}",
            )
        return target

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) < 1:
            raise shape_error(self, "expects a batch axis", "(batch, ...)", input_shape)
        return (input_shape[0], *self._resolve(input_shape[1:], input_shape))

    def forward(self, inputs, training):
        target = self._resolve(inputs.shape[1:], inputs.shape)
        return inputs.reshape(inputs.shape[0], *target), inputs.shape

    def backward(self, ctx, grad_outputs):
        return np.asarray(grad_outputs).reshape(ctx)

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape}


class RepeatVector(Layer):
    """Repeats each sample's vector ``n`` times: ``(batch, features) -> (batch, n, features)``.

    Args:
        n: the number of repetitions, a positive integer.

    Example: ``RepeatVector(10)(encoded)`` feeds a decoder LSTM with 10 steps.
    """

    def __init__(self, n: int, **kwargs):
        super().__init__(**kwargs)
        if not _is_int(n):
            raise TypeError(f"Expected an integer value for `n`, got {type(n)}.")
        if n <= 0:
            raise ValueError(f"Argument `n` should be a positive integer. Received: n={n}")
        self.n = int(n)

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 2:
            raise shape_error(self, "expects a 2-D input", "(batch, features)", input_shape)
        return (input_shape[0], self.n, input_shape[1])

    def forward(self, inputs, training):
        n, features = inputs.shape
        out = np.empty((n, self.n, features), dtype=inputs.dtype)
        out[...] = inputs[:, None, :]
        return out, None

    def backward(self, ctx, grad_outputs):
        return np.asarray(grad_outputs).sum(axis=1)

    def get_config(self):
        return {**super().get_config(), "n": self.n}
