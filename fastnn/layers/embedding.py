"""Embedding: integer ids to dense vectors, a row lookup in a trainable table."""

from __future__ import annotations

import warnings

import numpy as np

from fastnn import constraints, initializers, kernels, regularizers
from fastnn.layers.base import Layer


class Embedding(Layer):
    """Turns non-negative integer ids into dense vectors: ``table[ids]``.

    Args:
        input_dim: size of the vocabulary (ids are in ``[0, input_dim)``).
        output_dim: size of each vector.
        embeddings_initializer: initializer of the ``(input_dim, output_dim)`` table; the
            default ``"uniform"`` is ``RandomUniform(-0.05, 0.05)`` as in Keras.
        mask_zero: if True, id 0 is padding: ``compute_mask(ids)`` returns ``ids != 0``, and a
            model passes that mask on to the recurrent layers that follow.

    Input shape: ``(batch, ...)`` of ids, integer or float (cast to int64).
    Output shape: ``(batch, ..., output_dim)``.
    Example: ``Embedding(5000, 128)(Input((100,)))`` has shape ``(None, 100, 128)``.
    """

    casts_inputs = False

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        embeddings_initializer="uniform",
        embeddings_regularizer=None,
        embeddings_constraint=None,
        mask_zero: bool = False,
        weights=None,
        input_length=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for arg, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"`{arg}` must be a positive integer. Received: {arg}={value!r} "
                    f"(of type {type(value).__name__})."
                )
        if input_length is not None:
            warnings.warn("Argument `input_length` is deprecated. Just remove it.", stacklevel=2)
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        self.embeddings_initializer = initializers.get(embeddings_initializer)
        self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        if weights is not None:
            self.build(None)
            self.set_weights(weights if isinstance(weights, list) else [weights])

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            (self.input_dim, self.output_dim),
            self.embeddings_initializer,
            "embeddings",
            regularizer=self.embeddings_regularizer,
            constraint=self.embeddings_constraint,
        )
        self.built = True

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    @property
    def makes_masks(self) -> bool:
        return self.mask_zero

    def compute_mask(self, inputs, mask=None):
        """``ids != 0`` if ``mask_zero``, else None (Keras's ``Embedding.compute_mask``)."""
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def forward(self, inputs, training):
        ids = self.flat_ids(inputs)
        out = np.empty((ids.size, self.output_dim), dtype=self.embeddings.value.dtype)
        kernels.embedding.embedding_forward(self.embeddings.value, ids, out)
        return out.reshape(*np.shape(inputs), self.output_dim), ids

    def inference_call(self, inputs):
        table = self.embeddings.value
        out = np.empty((*np.shape(inputs), self.output_dim), table.dtype)
        rows = out.reshape(-1, self.output_dim)

        def call(inputs):
            kernels.embedding.embedding_forward(table, self.flat_ids(inputs), rows)
            return out

        return call

    def flat_ids(self, inputs) -> np.ndarray:
        """``inputs`` as flat int64 ids, checked to be in ``[0, input_dim)``."""
        ids = np.asarray(inputs)
        flat = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= self.input_dim):
            bad = flat[(flat < 0) | (flat >= self.input_dim)][0]
            raise ValueError(
                f"Embedding '{self.name}': index {bad} is out of range; ids must be in "
                f"[0, {self.input_dim}) for input_dim={self.input_dim}"
            )
        return flat

    def backward(self, ctx, grad_outputs):
        if self.trainable:
            table = self.embeddings.value
            grad = np.ascontiguousarray(grad_outputs, dtype=table.dtype)
            kernels.embedding.embedding_backward(
                grad.reshape(-1, self.output_dim), ctx, self.embeddings.grad
            )
        return None  # ids are not differentiable

    def get_config(self):
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
            "embeddings_constraint": constraints.serialize(self.embeddings_constraint),
            "mask_zero": self.mask_zero,
        }
