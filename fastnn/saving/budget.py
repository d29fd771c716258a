"""Refusing a model config whose weights the file cannot hold, before any weight is made.

A tampered file can declare ``Dense(units=20_000_000)`` next to the few bytes of a small
model's arrays: building it would allocate and initialize gigabytes before the weights are
compared with the arrays. So loaders build the model inside ``weights_within``: a weight that
would take the weights made past the bytes the file really stores (plus a little slack) is
refused, naming its layer, before it is allocated. The weights that are made are then checked
exactly against the stored arrays.
"""

from __future__ import annotations

import contextlib

from fastnn.layers.base import weight_budget

#: Weights that may be asked for beyond the stored bytes (small tampering gets the exact
#: shape-by-shape message of the real check instead).
SLACK_BYTES = 8 * 2**20


def weights_within(stored_bytes: int, error) -> contextlib.AbstractContextManager:
    """A context in which building layers raises ``error(what)`` before making weights of
    more bytes than ``stored_bytes`` (+ slack)."""

    def refuse(message: str) -> Exception:
        return error(f"{message}: the file stores {stored_bytes} bytes of weights")

    return weight_budget(stored_bytes + SLACK_BYTES, refuse)
