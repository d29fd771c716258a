"""Weight penalties added to the training loss: ``penalty(w) -> float`` and ``gradient(w)``."""

from __future__ import annotations

import numpy as np

from fastnn.saving.registry import register_builtins


class Regularizer:
    """Base class for weight penalties."""

    def __call__(self, x: np.ndarray) -> float:
        raise NotImplementedError

    def gradient(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w**2)."""

    def __init__(self, l1=0.0, l2=0.0):
        for arg, value in (("l1", l1), ("l2", l2)):
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"Value for argument `{arg}` should be a non-negative float. "
                    f"Received: {arg}={value!r}"
                )
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, x):
        """The penalty: a float for an array; for a Variable or tensor, a value a recording
        GradientTape differentiates (numpy's functions on it go through fastnn.ops)."""
        if isinstance(x, np.ndarray):
            total = 0.0
            if self.l1:
                total += self.l1 * float(np.abs(x).sum())
            if self.l2:
                total += self.l2 * float(np.square(x).sum())
            return total
        total = 0.0
        if self.l1:
            total = total + self.l1 * np.sum(np.abs(x))
        if self.l2:
            total = total + self.l2 * np.sum(np.square(x))
        return total

    def gradient(self, x):
        grad = np.zeros_like(x)
        if self.l1:
            grad += x.dtype.type(self.l1) * np.sign(x)
        if self.l2:
            grad += x.dtype.type(2 * self.l2) * x
        return grad

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1=0.01):
        super().__init__(l1=l1)

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2=0.01):
        super().__init__(l2=l2)

    def get_config(self):
        return {"l2": self.l2}


# Keras exports the classes under lower-case names too.
l1, l2, l1_l2 = L1, L2, L1L2


_NAMES = {"l1": L1, "l2": L2, "l1_l2": L1L2, "L1": L1, "L2": L2, "L1L2": L1L2}


def get(identifier):
    """A regularizer from None, a name ('l1', 'l2', 'l1_l2'), a config dict or an instance."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _NAMES:
            raise ValueError(f"Unknown regularizer {identifier!r}. Valid names: {sorted(_NAMES)}")
        return _NAMES[identifier]()
    if isinstance(identifier, dict):
        cls = _NAMES.get(identifier.get("class_name"))
        if cls is None:
            raise ValueError(f"Unknown regularizer config {identifier!r}")
        return cls.from_config(identifier.get("config", {}))
    raise TypeError(f"Could not interpret regularizer {identifier!r}")


def serialize(regularizer):
    if regularizer is None:
        return None
    return {"class_name": type(regularizer).__name__, "config": regularizer.get_config()}


# Saved configs (fastnn.saving.deserialize_keras_object) may name these classes.
register_builtins({cls.__name__: cls for cls in _NAMES.values()}, kind="regularizers")
