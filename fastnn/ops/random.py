"""keras.random's functions on numpy generators (``fastnn.random`` exports them).

``seed`` is as in Keras: an int gives the same values at every call, a ``SeedGenerator`` a
reproducible stream, None a draw from the process-wide generator ``utils.set_random_seed``
resets. ``dropout`` and ``shuffle`` record on a tape like any op.
"""

from __future__ import annotations

import numpy as np

from fastnn import backend
from fastnn.ops import numpy as fnp
from fastnn.ops.tape import OpError, unwrap
from fastnn.seeding import make_rng

__all__ = [
    "SeedGenerator", "dropout", "normal", "randint", "shuffle", "truncated_normal", "uniform",
]  # fmt: skip


class SeedGenerator:
    """A reproducible stream of seeds: ``SeedGenerator(1337)``, passed as ``seed=``."""

    def __init__(self, seed: int | None = None, name: str | None = None) -> None:
        self.seed = seed
        self.name = name or "seed_generator"
        self._rng = make_rng(seed)

    def next(self, ordered: bool = True) -> int:
        """The next seed of the stream."""
        return int(self._rng.integers(2**63))

    def get_config(self) -> dict:
        return {"seed": self.seed}


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, SeedGenerator):
        return np.random.default_rng(seed.next())
    if seed is None or isinstance(seed, (int, np.integer)):
        return make_rng(None if seed is None else int(seed))
    raise OpError(f"seed must be an int, a SeedGenerator or None; got {seed!r}")


def normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None) -> np.ndarray:
    """Samples of N(mean, stddev**2) in ``shape`` (floatx by default)."""
    dtype = dtype or backend.floatx()
    return _rng(seed).normal(mean, stddev, size=tuple(shape)).astype(dtype)


def uniform(shape, minval=0.0, maxval=1.0, dtype=None, seed=None) -> np.ndarray:
    """Samples of U[minval, maxval) in ``shape`` (floatx by default)."""
    dtype = dtype or backend.floatx()
    return _rng(seed).uniform(minval, maxval, size=tuple(shape)).astype(dtype)


def truncated_normal(shape, mean=0.0, stddev=1.0, dtype=None, seed=None) -> np.ndarray:
    """Samples of N(mean, stddev**2) redrawn until within two stddevs of the mean."""
    rng, size = _rng(seed), tuple(shape)
    out = rng.standard_normal(size)
    bad = np.abs(out) > 2
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2
    return (mean + stddev * out).astype(dtype or backend.floatx())


def randint(shape, minval, maxval, dtype="int32", seed=None) -> np.ndarray:
    """Integers uniform in [minval, maxval) in ``shape`` (int32 by default)."""
    return _rng(seed).integers(minval, maxval, size=tuple(shape)).astype(dtype)


def dropout(inputs, rate: float, noise_shape=None, seed=None):
    """``inputs`` with each entry zeroed with probability ``rate``, the rest scaled by
    1 / (1 - rate); ``noise_shape`` (None entries from inputs) shares the mask across axes."""
    if not 0 <= rate < 1:
        raise OpError(f"dropout: rate must be in [0, 1); got rate={rate!r}")
    x_shape = np.shape(unwrap(inputs))
    shape = x_shape if noise_shape is None else noise_shape
    shape = tuple(n if s is None else s for s, n in zip(shape, x_shape))
    keep = _rng(seed).random(shape) >= rate
    dtype = np.result_type(unwrap(inputs))
    return fnp.multiply(inputs, (keep / (1 - rate)).astype(dtype))


def shuffle(x, axis: int = 0, seed=None):
    """``x`` with its slices along ``axis`` in a random order."""
    n = np.shape(unwrap(x))[axis]
    return fnp.take(x, _rng(seed).permutation(n), axis=axis)
