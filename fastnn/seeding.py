"""Seeded randomness: one process-wide generator that ``fastnn.utils.set_random_seed`` resets.

Initializers, dropout and shuffling draw their own generators from it, so the same seed gives the
same weights, masks and batch order (as in Keras), while each consumer keeps an independent stream.
"""

from __future__ import annotations

import threading

import numpy as np

_lock = threading.Lock()
_root: np.random.Generator | None = None  # made on first use: `import numpy.random` takes ~15 ms


def set_seed(seed: int) -> None:
    """Reset the process-wide generator to ``seed``."""
    global _root
    with _lock:
        _root = np.random.default_rng(seed)


def make_rng(seed: int | None = None) -> np.random.Generator:
    """A new generator: from ``seed`` if given, else drawn from the process-wide one."""
    if seed is not None:
        return np.random.default_rng(seed)
    global _root
    with _lock:
        if _root is None:
            _root = np.random.default_rng()
        return np.random.default_rng(_root.integers(2**63))


def root_state() -> dict | None:
    """The process-wide generator's state (None before its first use)."""
    with _lock:
        return None if _root is None else _root.bit_generator.state


def set_root_state(state: dict | None) -> None:
    """Put back what ``root_state()`` returned."""
    global _root
    with _lock:
        if state is None:
            _root = None
        else:
            if _root is None:
                _root = np.random.default_rng()
            _root.bit_generator.state = state
