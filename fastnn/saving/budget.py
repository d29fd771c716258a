"""Refusing a model config whose weights the file cannot hold, before any weight is made.

A tampered file can declare ``Dense(units=20_000_000)`` next to the few bytes of a small
model's arrays: building it would allocate and initialize gigabytes before the weights are
compared with the arrays. So a loader first builds the model from a copy of its config in which
every ``*_initializer`` is a stand-in that hands out zeros (no initialization) only while the
weights asked for fit in the bytes the file really stores, plus a little slack; the first weight
that does not stops that build with a ``FileFormatError`` naming the layer. The trial model is
dropped and the real one built from the config as given, whose weights are then checked
exactly against the stored arrays. A trial build that fails for any other reason is ignored:
the real build reports it.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

#: Weights that may be asked for beyond the stored bytes (small tampering gets the exact
#: shape-by-shape message of the real check instead).
SLACK_BYTES = 8 * 2**20


def check_weights_fit(config: dict, custom_objects, stored_bytes: int, error) -> None:
    """Raise ``error(what)`` if the model ``config`` describes has more weight bytes than
    ``stored_bytes`` (+ slack), without allocating them."""
    from fastnn.layers.base import deserialize_layer  # layers import the saving registry

    budget = _Budget(stored_bytes, error)
    with contextlib.suppress(Exception):  # the real build reports any fault but the budget's
        deserialize_layer(_with_stand_ins(config, budget), custom_objects)
    if budget.refusal is not None:
        raise budget.refusal


class _Budget:
    """The bytes the file stores for weights, and the refusal once they are exceeded."""

    def __init__(self, stored_bytes: int, error):
        self.stored = stored_bytes
        self.left = stored_bytes + SLACK_BYTES
        self.error = error
        self.refusal = None

    def take(self, shape, dtype, label: str) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
        if nbytes > self.left:
            self.refusal = self.error(
                f"{label} a {dtype.name} {tuple(shape)} weight ({nbytes} bytes), more than the "
                f"{self.stored} bytes of weights the file stores"
            )
            raise self.refusal
        self.left -= nbytes
        return np.zeros(shape, dtype)


class _StandIn:
    """An initializer that takes its zeros from the budget."""

    def __init__(self, budget: _Budget, label: str):
        self.budget = budget
        self.label = label

    def __call__(self, shape, dtype="float32") -> np.ndarray:
        return self.budget.take(shape, dtype, self.label)


def _with_stand_ins(value, budget: _Budget):
    """A copy of a serialized layer (at any depth) with stand-ins for its initializers."""
    if isinstance(value, list):
        return [_with_stand_ins(item, budget) for item in value]
    if not isinstance(value, dict):
        return value
    copy = {key: _with_stand_ins(item, budget) for key, item in value.items()}
    config = copy.get("config")
    if "class_name" in copy and isinstance(config, dict):
        for key, item in config.items():
            if key.endswith("_initializer") and isinstance(item, (str, dict)):
                label = f"layer '{config.get('name')}' ({copy['class_name']}) asks {key} for"
                config[key] = _StandIn(budget, label)
    return copy
