"""fastnn.optimizers (SGD, Adam, RMSprop and the base class): Keras 3 parity over several steps,
state, validation and error messages. The other optimizers, schedules as learning rates and the
base-class options are in test_optimizers_keras.py."""

import os
import re

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn import optimizers

keras = pytest.importorskip("keras")

SHAPES = [(3, 4), (4,), (), (2, 1, 3)]


class Var:
    """The interface the training loop gives the optimizer: .value updated in place, .grad."""

    def __init__(self, value, name="w"):
        self.value = value
        self.grad = np.zeros_like(value)
        self.path = name


def _run_both(ours, theirs, steps=5, seed=0, lr_changes=None):
    """Apply the same float32 gradients with both optimizers; return (our vars, keras vars)."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    our_vars = [Var(a.copy(), f"w{i}") for i, a in enumerate(init)]
    keras_vars = [keras.Variable(a.copy()) for a in init]
    for step in range(steps):
        if lr_changes and step in lr_changes:
            ours.learning_rate = lr_changes[step]
            theirs.learning_rate = lr_changes[step]
        grads = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
        for v, g in zip(our_vars, grads, strict=True):
            v.grad[...] = g
        ours.apply(our_vars)
        tensors = [keras.ops.convert_to_tensor(g) for g in grads]
        theirs.apply_gradients(zip(tensors, keras_vars, strict=True))
    return our_vars, keras_vars


def _assert_same(our_vars, keras_vars, rtol=1e-5):
    for v, k in zip(our_vars, keras_vars, strict=True):
        assert v.value.dtype == np.float32
        want = keras.ops.convert_to_numpy(k.value)
        np.testing.assert_allclose(v.value, want, rtol=rtol, atol=rtol * 1e-2)


CONFIGS = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"learning_rate": 0.1, "momentum": 0.5, "nesterov": True}),
    ("Adam", {}),
    ("Adam", {"learning_rate": 0.01, "beta_1": 0.8, "amsgrad": True}),
    ("RMSprop", {}),
    ("RMSprop", {"learning_rate": 0.01, "momentum": 0.9}),
    ("RMSprop", {"centered": True, "momentum": 0.5, "rho": 0.8}),
    ("SGD", {"momentum": 0.9, "clipnorm": 0.5}),
    ("Adam", {"clipvalue": 0.3}),
    ("RMSprop", {"global_clipnorm": 1.0}),
    ("Adam", {"weight_decay": 0.05, "learning_rate": 0.01}),
]


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_steps_match_keras(name, kwargs):
    ours = getattr(optimizers, name)(**kwargs)
    theirs = getattr(keras.optimizers, name)(**kwargs)
    our_vars, keras_vars = _run_both(ours, theirs)
    _assert_same(our_vars, keras_vars)
    assert ours.iterations == int(keras.ops.convert_to_numpy(theirs.iterations)) == 5
    state = ours.get_state()
    assert len(state) == len(theirs.variables)
    for got, want in zip(state, theirs.variables, strict=True):
        np.testing.assert_allclose(got, keras.ops.convert_to_numpy(want), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_learning_rate_set_between_steps_matches_keras(name):
    ours = getattr(optimizers, name)(learning_rate=0.05)
    theirs = getattr(keras.optimizers, name)(learning_rate=0.05)
    our_vars, keras_vars = _run_both(ours, theirs, steps=6, lr_changes={2: 0.01, 4: 0.002})
    _assert_same(our_vars, keras_vars)
    assert ours.learning_rate == 0.002


@settings(max_examples=5, deadline=None)
@given(
    name=st.sampled_from(["SGD", "Adam", "RMSprop"]),
    lr=st.floats(1e-4, 0.2),
    momentum=st.sampled_from([0.0, 0.5, 0.95]),
    flag=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_random_hyperparameters_match_keras(name, lr, momentum, flag, seed):
    kwargs = {"learning_rate": lr}
    if name == "SGD":
        kwargs.update(momentum=momentum, nesterov=flag)
    elif name == "Adam":
        kwargs.update(beta_1=momentum or 0.9, amsgrad=flag)
    else:
        kwargs.update(momentum=momentum, centered=flag)
    ours = getattr(optimizers, name)(**kwargs)
    theirs = getattr(keras.optimizers, name)(**kwargs)
    _assert_same(*_run_both(ours, theirs, steps=3, seed=seed))


def test_float64_variables_stay_float64():
    w = Var(np.ones((2, 3)))
    w.grad[...] = 0.5
    opt = optimizers.Adam()
    opt.apply([w])
    assert w.value.dtype == np.float64
    assert all(s.dtype == np.float64 for s in opt.get_state()[2:])


def test_updates_in_place_never_rebinds():
    value = np.ones((4, 3), np.float32)
    view = value[1]
    w = Var(value)
    w.grad[...] = 1
    for opt in [optimizers.SGD(0.5), optimizers.Adam(), optimizers.RMSprop(momentum=0.5)]:
        opt.apply([w])
        assert w.value is value
    assert np.all(view < 1) and np.shares_memory(view, w.value)


def test_non_contiguous_values_are_updated():
    value = np.asfortranarray(np.ones((3, 4), np.float32))
    w = Var(value)
    w.grad = np.arange(12, dtype=np.float32).reshape(3, 4)
    optimizers.SGD(0.5).apply([w])
    assert w.value is value
    np.testing.assert_allclose(value, 1 - 0.5 * w.grad)


def test_slots_are_lazy_and_subsets_allowed():
    a, b = Var(np.ones(3, np.float32), "a"), Var(np.ones(2, np.float32), "b")
    a.grad[...] = b.grad[...] = 1
    opt = optimizers.Adam()
    assert not opt.built and len(opt.get_state()) == 2
    opt.apply([a, b])
    assert opt.built and len(opt.get_state()) == 2 + 4
    before = b.value.copy()
    opt.apply([b])  # a subset (e.g. a layer frozen later) is fine
    assert opt.iterations == 2 and not np.array_equal(before, b.value)
    b.grad = None
    opt.apply([a, b])  # a None gradient skips that variable
    assert opt.iterations == 3


def test_unknown_variable_and_bad_gradients_change_nothing():
    a, b = Var(np.ones(3, np.float32), "dense/kernel"), Var(np.ones(2, np.float32), "dense/bias")
    a.grad[...] = b.grad[...] = 1
    opt = optimizers.Adam()
    opt.apply([a])
    state, values = opt.get_state(), a.value.copy()
    with pytest.raises(ValueError, match=r"unknown variable 'dense/bias'.*built for 1 variables"):
        opt.apply([a, b])
    a.grad = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"gradient of 'dense/kernel' has shape \(4,\), expected"):
        opt.apply([a])
    np.testing.assert_array_equal(a.value, values)
    for got, want in zip(opt.get_state(), state, strict=True):
        np.testing.assert_array_equal(got, want)
    a.grad = None
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        opt.apply([a])
    assert opt.iterations == 1


def test_state_round_trip_continues_identically():
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=(3, 2)).astype(np.float32) for _ in range(6)]
    w1 = Var(np.ones((3, 2), np.float32))
    opt1 = optimizers.RMSprop(momentum=0.9, centered=True)
    for g in grads[:3]:
        w1.grad = g
        opt1.apply([w1])
    w2 = Var(w1.value.copy())
    opt2 = optimizers.RMSprop.from_config(opt1.get_config())
    opt2.build([w2])
    opt2.set_state(opt1.get_state())
    assert opt2.iterations == 3
    for g in grads[3:]:
        w1.grad = w2.grad = g
        opt1.apply([w1])
        opt2.apply([w2])
    np.testing.assert_array_equal(w1.value, w2.value)
    with pytest.raises(ValueError, match=r"set_state\(\): expected 5 arrays, got 2"):
        opt2.set_state(opt2.get_state()[:2])
    with pytest.raises(ValueError, match=r"call build\(variables\) first"):
        optimizers.Adam().set_state(opt1.get_state())


def test_learning_rate_schedule_callable():
    w = Var(np.zeros(1))
    w.grad[...] = 1
    opt = optimizers.SGD(learning_rate=lambda step: 0.1 / (1 + step))
    for _ in range(3):
        opt.apply([w])
    np.testing.assert_allclose(w.value, -(0.1 + 0.05 + 0.1 / 3))
    assert opt.learning_rate == pytest.approx(0.025)


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_config_matches_keras_and_loads_keras_configs(name):
    ours = getattr(optimizers, name)()
    theirs = getattr(keras.optimizers, name)()
    keras_config = theirs.get_config()
    # Keras numbers names globally ("adam_3") once several exist; fastnn keeps no global state.
    assert ours.name == re.sub(r"_\d+$", "", keras_config.pop("name"))
    assert set(ours.get_config()) == set(keras_config) | {"name"}
    for key, value in keras_config.items():
        assert ours.get_config()[key] == pytest.approx(value), key
    restored = getattr(optimizers, name).from_config(keras_config)
    assert restored.get_config() == pytest.approx(ours.get_config())


@pytest.mark.parametrize(
    "identifier, cls",
    [
        ("sgd", optimizers.SGD),
        ("SGD", optimizers.SGD),
        ("adam", optimizers.Adam),
        ("Adam", optimizers.Adam),
        ("rmsprop", optimizers.RMSprop),
        ("RMSprop", optimizers.RMSprop),
        (optimizers.Adam, optimizers.Adam),
        ({"class_name": "SGD", "config": {"momentum": 0.9}}, optimizers.SGD),
    ],
)
def test_get(identifier, cls):
    assert type(optimizers.get(identifier)) is cls
    opt = optimizers.RMSprop(0.1)
    assert optimizers.get(opt) is opt


def test_errors():
    with pytest.raises(
        ValueError, match=r"optimizer identifier: 'adafactor'.*\['adadelta', 'adagrad', 'adam',"
    ):
        optimizers.get("adafactor")
    with pytest.raises(ValueError, match="Could not interpret optimizer identifier"):
        optimizers.get(None)
    with pytest.raises(ValueError, match=r"`learning_rate` should be a non-negative float.*=-0.1"):
        optimizers.Adam(learning_rate=-0.1)
    with pytest.raises(ValueError, match=r"`learning_rate` should be.*learning_rate='fast'"):
        optimizers.SGD(learning_rate="fast")
    opt = optimizers.SGD()
    with pytest.raises(ValueError, match="`learning_rate` should be"):
        opt.learning_rate = float("nan")
    assert opt.learning_rate == 0.01
    with pytest.raises(ValueError, match=r"`momentum` must be a float between \[0, 1\]"):
        optimizers.SGD(momentum=1.5)
    with pytest.raises(ValueError, match=r"`beta_1` should be a float in \[0, 1\)"):
        optimizers.Adam(beta_1=1.0)
    with pytest.raises(ValueError, match=r"`rho` should be a float in \[0, 1\]"):
        optimizers.RMSprop(rho=-0.5)
    with pytest.raises(
        ValueError, match="Only one of `clipnorm`, `clipvalue` and `global_clipnorm`"
    ):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match=r"Argument\(s\) not recognized: \{'decay_steps': 3\}"):
        optimizers.Adam(decay_steps=3)
    with pytest.raises(ValueError, match="`loss_scale_factor` is not supported"):
        optimizers.Adam(loss_scale_factor=128.0)
