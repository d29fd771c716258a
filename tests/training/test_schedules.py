"""fastnn.optimizers.schedules against keras.optimizers.schedules: values at many steps
(across staircase steps, warmup and restarts), configs, (de)serialization, user subclasses."""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

from fastnn import optimizers
from fastnn.optimizers import schedules
from fastnn.saving import register_keras_serializable

keras = pytest.importorskip("keras")

STEPS = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 14, 15, 21, 22, 45, 100, 1000]

CASES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.7}),
    (
        "ExponentialDecay",
        {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.7, "staircase": True},
    ),
    ("PiecewiseConstantDecay", {"boundaries": [2, 5], "values": [0.1, 0.05, 0.01]}),
    ("PiecewiseConstantDecay", {"boundaries": [2.5, 5.9], "values": [0.1, 0.05, 0.01]}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7}),
    (
        "PolynomialDecay",
        {
            "initial_learning_rate": 0.1,
            "decay_steps": 4,
            "end_learning_rate": 0.01,
            "power": 0.5,
            "cycle": True,
        },
    ),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5}),
    (
        "InverseTimeDecay",
        {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.5, "staircase": True},
    ),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "alpha": 0.1}),
    (
        "CosineDecay",
        {"initial_learning_rate": 0.0, "decay_steps": 7, "warmup_target": 0.1, "warmup_steps": 3},
    ),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 2}),
    (
        "CosineDecayRestarts",
        {
            "initial_learning_rate": 0.1,
            "first_decay_steps": 3,
            "t_mul": 1.0,
            "m_mul": 0.5,
            "alpha": 0.1,
        },
    ),  # fmt: skip
    (
        "CosineDecayRestarts",
        {"initial_learning_rate": 0.1, "first_decay_steps": 2, "t_mul": 3.0, "m_mul": 0.8},
    ),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_values_and_config_match_keras(name, kwargs):
    ours = getattr(schedules, name)(**kwargs)
    theirs = getattr(keras.optimizers.schedules, name)(**kwargs)
    for step in STEPS:
        want = float(keras.ops.convert_to_numpy(theirs(step)))
        got = ours(step)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9, err_msg=f"step {step}")
    assert ours.get_config() == theirs.get_config()
    restored = getattr(schedules, name).from_config(ours.get_config())
    assert [restored(s) for s in STEPS] == [ours(s) for s in STEPS]
    serialized = schedules.serialize(ours)
    assert serialized == keras.optimizers.schedules.serialize(theirs)
    assert type(schedules.deserialize(serialized)) is type(ours)


@register_keras_serializable(package="test_schedules")
class HalveEvery(schedules.LearningRateSchedule):
    """A user's schedule, as Keras's docs write one."""

    def __init__(self, initial, period):
        self.initial, self.period = initial, period

    def __call__(self, step):
        return self.initial * 0.5 ** (step // self.period)

    def get_config(self):
        return {"initial": self.initial, "period": self.period}


def test_user_schedule_drives_the_optimizer_and_round_trips():
    opt = optimizers.SGD(learning_rate=HalveEvery(1.0, 2))
    w = type("Var", (), {})()
    w.value, w.grad = np.zeros(1), np.ones(1)
    rates = []
    for _ in range(5):
        rates.append(opt.learning_rate)
        opt.apply([w])
    assert rates == [1.0, 1.0, 0.5, 0.5, 0.25]
    np.testing.assert_allclose(w.value, [-sum(rates)])
    config = optimizers.serialize(opt)
    assert config["config"]["learning_rate"]["registered_name"] == "test_schedules>HalveEvery"
    restored = optimizers.get(config)
    assert isinstance(restored._learning_rate, HalveEvery)
    assert restored._learning_rate.get_config() == {"initial": 1.0, "period": 2}


def test_base_class_says_what_to_override():
    class Incomplete(schedules.LearningRateSchedule):
        pass

    with pytest.raises(NotImplementedError, match="'Incomplete' must override `__call__"):
        Incomplete()(0)
    with pytest.raises(NotImplementedError, match="must override `get_config\\(\\)`"):
        Incomplete().get_config()


def test_errors_match_keras():
    with pytest.raises(ValueError, match=r"`decay_steps` must be > 0. Received: decay_steps=0"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="`first_decay_steps` must be > 0"):
        schedules.CosineDecayRestarts(0.1, -1)
    with pytest.raises(ValueError, match="length of boundaries should be 1 less"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="Unknown learning rate schedule 'Nope'"):
        schedules.deserialize({"class_name": "Nope", "config": {}})
