"""Keras's ``_keras_mask`` on what an eager layer call returns: the arrays carry the mask the
layer computed, and the next eager call takes it (symbolic tensors: ``nodes.SymbolicTensor``)."""

from __future__ import annotations

import numpy as np


class ArrayWithMask(np.ndarray):
    """An eager layer call's output (a view, no copy) carrying its mask as ``_keras_mask``."""

    #: Arrays derived from one (slices, arithmetic) carry no mask, as Keras's tensors.
    _keras_mask = None

    def __array_finalize__(self, obj) -> None:
        self._keras_mask = None


def carried_mask(inputs):
    """The mask an eager call's inputs carry: the first input's, or each input's for a list
    (None when none carries one), as Keras reads it."""
    if isinstance(inputs, (list, tuple)):
        masks = [getattr(x, "_keras_mask", None) for x in inputs]
        return None if all(m is None for m in masks) else masks
    return getattr(inputs, "_keras_mask", None)


def with_mask(outputs, mask):
    """``outputs`` with ``mask`` attached to each array (a list of outputs takes a list of masks,
    or the one mask each); other values (tape tensors) are returned as they are."""
    if mask is None:
        return outputs
    if isinstance(outputs, (list, tuple)):
        masks = mask if isinstance(mask, (list, tuple)) else [mask] * len(outputs)
        return type(outputs)(with_mask(y, m) for y, m in zip(outputs, masks))
    if not isinstance(outputs, np.ndarray):
        return outputs
    marked = outputs.view(ArrayWithMask)
    marked._keras_mask = np.asarray(mask)
    return marked
