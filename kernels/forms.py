"""Weights kept in the forms the kernels compute with, for callers whose weights stay the same
from call to call (inference).

A conv's SIMD path packs its kernel into panels and Winograd transforms it at every call: in
training the kernel changes at every step, so that is the price of one pass over it. At
inference the same kernel serves call after call, and on a small batch that pass costs as much
as the conv itself. A caller that knows its weights did not change wraps the array in
``Forms`` and passes it where the kernel array goes; the wrappers then make each form once
(``derived``) and reuse it. The caller owns the staleness: it makes a new ``Forms`` when the
weights change (layers key theirs on ``fastnn.ops.tensor.weights_generation``). No Numba
here: this module loads with fastnn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class Forms:
    """An array that stays the same while this object lives, and the forms made from it."""

    __slots__ = ("array", "_made")

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self._made: dict = {}

    @property
    def shape(self) -> tuple:
        return self.array.shape

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype


def split(weights) -> tuple[np.ndarray, Forms | None]:
    """(the array, its Forms or None) of an array or a ``Forms``."""
    if isinstance(weights, Forms):
        return weights.array, weights
    return weights, None


def derived(forms: Forms | None, array: np.ndarray, name: str, make: Callable) -> np.ndarray:
    """``make(array)``: made once per ``forms`` and kept under ``name``, or made now without."""
    if forms is None:
        return make(array)
    form = forms._made.get(name)
    if form is None:
        form = forms._made[name] = make(array)
    return form
