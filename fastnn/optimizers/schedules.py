"""Learning-rate schedules with Keras 3's names, arguments, configs and values.

A schedule maps the optimizer's step (its ``iterations`` before the update) to a learning rate.
Each computes in float32, as Keras does with a float ``initial_learning_rate``, so the values
and the steps where ``staircase`` or a restart switch are Keras's.

>>> schedule = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
>>> round(float(schedule(10)), 6)
0.05
"""

from __future__ import annotations

import math

import numpy as np

from fastnn.saving.registry import get_registered_object, register_builtins, registered_key

_F32 = np.float32
_PI = _F32(math.pi)


class LearningRateSchedule:
    """Base class: subclasses define ``__call__(step) -> learning rate`` and ``get_config``."""

    def __call__(self, step):
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' "
            "must override `__call__(self, step)`."
        )

    def get_config(self) -> dict:
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' "
            "must override `get_config()` in order to be serializable."
        )

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (the exponent floored if
    ``staircase``)."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        decay_rate,
        staircase=False,
        name="ExponentialDecay",
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name
        _check_decay_steps("decay_steps", decay_steps)

    def __call__(self, step) -> np.float32:
        p = _F32(step) / _F32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return _F32(self.initial_learning_rate) * np.power(_F32(self.decay_rate), p)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` up to ``boundaries[0]`` (inclusive), ``values[1]`` up to
    ``boundaries[1]``, ..., ``values[-1]`` after the last boundary."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of "
                f"values. Received: boundaries={boundaries} of length "
                f"{len(boundaries)}, and values={values} "
                f"of length {len(values)}."
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step) -> np.float32:
        step = np.asarray(step)
        # As Keras: the boundaries are compared in the step's dtype (an int step truncates them).
        for boundary, value in zip(self.boundaries, self.values):
            if step <= np.asarray(boundary).astype(step.dtype):
                return _F32(value)
        return _F32(self.values[-1])

    def get_config(self) -> dict:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """From ``initial_learning_rate`` to ``end_learning_rate`` over ``decay_steps`` along
    ``(1 - step / decay_steps) ** power``; with ``cycle``, ``decay_steps`` grows by multiples."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        end_learning_rate=0.0001,
        power=1.0,
        cycle=False,
        name="PolynomialDecay",
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name
        _check_decay_steps("decay_steps", decay_steps)

    def __call__(self, step) -> np.float32:
        initial = _F32(self.initial_learning_rate)
        end = _F32(self.end_learning_rate)
        step = _F32(step)
        decay_steps = _F32(self.decay_steps)
        if self.cycle:
            multiplier = _F32(1) if step == 0 else np.ceil(step / decay_steps)
            decay_steps = decay_steps * multiplier
        else:
            step = min(step, decay_steps)
        p = step / decay_steps
        return (initial - end) * np.power(_F32(1) - p, _F32(self.power)) + end

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


class InverseTimeDecay(LearningRateSchedule):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (the ratio floored if
    ``staircase``)."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        decay_rate,
        staircase=False,
        name="InverseTimeDecay",
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name
        _check_decay_steps("decay_steps", decay_steps)

    def __call__(self, step) -> np.float32:
        p = _F32(step) / _F32(self.decay_steps)
        if self.staircase:
            p = np.floor(p)
        return _F32(self.initial_learning_rate) / (_F32(1) + _F32(self.decay_rate) * p)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class CosineDecay(LearningRateSchedule):
    """Half a cosine from the learning rate down to ``alpha`` times it over ``decay_steps``;
    with ``warmup_target``, first a linear warmup to it over ``warmup_steps``."""

    def __init__(
        self,
        initial_learning_rate,
        decay_steps,
        alpha=0.0,
        name="CosineDecay",
        warmup_target=None,
        warmup_steps=0,
    ):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target
        _check_decay_steps("decay_steps", decay_steps)

    def _decay(self, step, decay_steps, decay_from):
        cosine = _F32(0.5) * (_F32(1) + np.cos(_PI * (step / decay_steps)))
        return decay_from * (_F32(1 - self.alpha) * cosine + _F32(self.alpha))

    def __call__(self, step) -> np.float32:
        initial = _F32(self.initial_learning_rate)
        decay_steps = _F32(self.decay_steps)
        step = _F32(step)
        if self.warmup_target is None:
            return self._decay(min(step, decay_steps), decay_steps, initial)
        target = _F32(self.warmup_target)
        warmup_steps = _F32(self.warmup_steps)
        step = min(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return (target - initial) * (step / warmup_steps) + initial
        return self._decay(step - warmup_steps, decay_steps, target)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): periods of ``first_decay_steps`` times powers
    of ``t_mul``, each restart's peak ``m_mul`` times the last."""

    def __init__(
        self,
        initial_learning_rate,
        first_decay_steps,
        t_mul=2.0,
        m_mul=1.0,
        alpha=0.0,
        name="SGDRDecay",
    ):
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self._t_mul = t_mul
        self._m_mul = m_mul
        self.alpha = alpha
        self.name = name
        _check_decay_steps("first_decay_steps", first_decay_steps)

    def __call__(self, step) -> np.float32:
        one = _F32(1)
        alpha, t_mul, m_mul = _F32(self.alpha), _F32(self._t_mul), _F32(self._m_mul)
        fraction = _F32(step) / _F32(self.first_decay_steps)
        if t_mul == one:
            restart = np.floor(fraction)
            fraction = fraction - restart
        else:
            restart = np.floor(np.log(one - fraction * (one - t_mul)) / np.log(t_mul))
            done = (one - np.power(t_mul, restart)) / (one - t_mul)
            fraction = (fraction - done) / np.power(t_mul, restart)
        cosine = _F32(0.5) * np.power(m_mul, restart) * (one + np.cos(_PI * fraction))
        return _F32(self.initial_learning_rate) * ((one - alpha) * cosine + alpha)

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self._t_mul,
            "m_mul": self._m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


_CLASSES = {
    cls.__name__: cls
    for cls in (
        ExponentialDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        InverseTimeDecay,
        CosineDecay,
        CosineDecayRestarts,
    )
}


def serialize(schedule: LearningRateSchedule) -> dict:
    """Keras's ``{"module", "class_name", "config", "registered_name"}`` of a schedule."""
    cls = type(schedule)
    if _CLASSES.get(cls.__name__) is cls:
        module, registered = "keras.optimizers.schedules", None
    else:
        module, registered = cls.__module__, registered_key(cls) or cls.__name__
    return {
        "module": module,
        "class_name": cls.__name__,
        "config": schedule.get_config(),
        "registered_name": registered,
    }


def deserialize(config: dict, custom_objects: dict | None = None) -> LearningRateSchedule:
    """The schedule ``serialize`` described: a Keras or fastnn schedule, or a subclass
    registered with ``fastnn.saving.register_keras_serializable`` or in ``custom_objects``."""
    if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
        raise ValueError(
            "A learning rate schedule config must be a dict with 'class_name' and a 'config' "
            f"dict; got {config!r:.120}"
        )
    class_name = config.get("class_name")
    cls = None
    for key in (config.get("registered_name"), class_name):
        if isinstance(key, str) and cls is None:
            cls = get_registered_object(key, custom_objects)
    if cls is None:
        cls = _CLASSES.get(class_name)
    if not (isinstance(cls, type) and issubclass(cls, LearningRateSchedule)):
        raise ValueError(
            f"Unknown learning rate schedule {class_name!r}: not one of {sorted(_CLASSES)}, not "
            "registered with fastnn.saving.register_keras_serializable() and not in "
            "custom_objects"
        )
    return cls.from_config(dict(config.get("config", {})))


def _check_decay_steps(arg: str, value) -> None:
    if value <= 0:
        raise ValueError(f"Argument `{arg}` must be > 0. Received: {arg}={value}")


# Saved configs (fastnn.saving.deserialize_keras_object) may name these classes.
register_builtins({**_CLASSES, "LearningRateSchedule": LearningRateSchedule}, kind="optimizers")
