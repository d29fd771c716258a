"""An Embedding whose output only a recurrent layer reads: the sequence of rows is never made."""

from __future__ import annotations

import numpy as np

from fastnn.fusion.base import FusedLayer, Rule
from fastnn.layers.embedding import Embedding
from fastnn.nodes import Node


class EmbeddedRNN(FusedLayer):
    """``rnn(Embedding(...)(ids))`` on ids ``(batch, steps)``: the recurrent layer's input
    projection runs on the table rows the ids pick (each distinct row once), and its input
    gradient goes straight into the table's (``forward_rows``)."""

    uses_workspace = True

    def __init__(self, embedding: Embedding, rnn):
        super().__init__(embedding, rnn)
        self.embedding, self.rnn = embedding, rnn

    @property
    def makes_masks(self) -> bool:
        return self.embedding.makes_masks

    def compute_mask(self, inputs, mask=None):
        return self.rnn.compute_mask(inputs, self.embedding.compute_mask(inputs))

    def forward(self, inputs, training, workspace=None):
        ids = self.embedding.flat_ids(inputs)
        table = self.embedding.embeddings
        out, ctx = self.rnn.forward_rows(
            ids.reshape(np.shape(inputs)),
            table.value,
            table.grad if self.embedding.trainable else None,
            training,
            mask=self.embedding.compute_mask(inputs),
            workspace=workspace,
        )
        return out, (ids, ctx)

    def backward(self, ctx, grad_outputs):
        ids, rnn_ctx = ctx
        grad_rows = self.rnn.backward(rnn_ctx, grad_outputs)
        if grad_rows is not None:  # the rows were gathered after all (dropout on the inputs)
            self.embedding.backward(ids, grad_rows)
        return None  # ids have no gradient


def _is_embedding(node: Node) -> bool:
    return isinstance(node.layer, Embedding)


def _reads_rows(node: Node) -> bool:
    """A layer with ``forward_rows`` (the recurrent layers) on a sequence of rows."""
    return hasattr(node.layer, "forward_rows") and len(node.inputs[0].shape) == 3


RULE = Rule("embedded_rnn", (_is_embedding, _reads_rows), EmbeddedRNN)
