"""Utilities: seeding and session helpers; ``plot_model``, ``model_to_dot``, ``plot_history``."""

from __future__ import annotations

import numpy as np

from fastnn import seeding
from fastnn.backend import clear_session  # noqa: F401 (keras.utils.clear_session)
from fastnn.saving.registry import (  # noqa: F401 (keras.utils's names for them)
    CustomObjectScope,
    custom_object_scope,
    get_custom_objects,
)
from fastnn.saving.registry import register_serializable as register_keras_serializable  # noqa: F401
from fastnn.saving.serialization import (  # noqa: F401
    deserialize_keras_object,
    serialize_keras_object,
)


def set_random_seed(seed: int) -> None:
    """Seed fastnn (initial weights, dropout masks, shuffling) and numpy's global generator."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got seed={seed!r}")
    seeding.set_seed(int(seed))
    np.random.seed(int(seed) % 2**32)


def to_categorical(y, num_classes: int | None = None, dtype="float32") -> np.ndarray:
    """One-hot encode integer labels: (N,) -> (N, num_classes)."""
    y = np.asarray(y, dtype=np.int64)
    if y.ndim > 1 and y.shape[-1] == 1:
        y = y[..., 0]
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    out = np.zeros((*y.shape, num_classes), dtype=dtype)
    np.put_along_axis(out, y[..., None], 1, axis=-1)
    return out


_PLOTTING = ("model_to_dot", "plot_history", "plot_model")


def __getattr__(name: str):
    """``fastnn.utils.plot_model`` and friends (as keras.utils has them), imported on first use."""
    if name in _PLOTTING:
        # here, not at module level, for start-up time: plotting's imports (subprocess, html,
        # shutil) would add ~4 ms to `import fastnn`, which imports this module
        from fastnn import plotting

        return getattr(plotting, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PLOTTING])
