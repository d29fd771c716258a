"""AdamW, Nadam, Adamax, Adagrad, Adadelta, Lion and Ftrl, the base-class options (weight decay,
clipping, EMA, gradient accumulation) and schedules as learning rates, against Keras 3: the
same initial weights and gradients give the same weights, optimizer variables (values, order,
paths) and configs."""

import inspect
import os
import re

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np
import pytest

import fastnn
from fastnn import layers, optimizers
from fastnn.optimizers import schedules

keras = pytest.importorskip("keras")

SHAPES = [(3, 4), (4,), (), (2, 1, 3)]
NEW = ["AdamW", "Nadam", "Adamax", "Adagrad", "Adadelta", "Lion", "Ftrl"]
ALL = ["SGD", "Adam", "RMSprop", *NEW]


class Var:
    """The interface the training loop gives the optimizer: .value updated in place, .grad."""

    def __init__(self, value, name):
        self.value = value
        self.grad = np.zeros_like(value)
        self.path = self.name = name


def _numpy(x):
    return keras.ops.convert_to_numpy(x)


def _run_both(ours, theirs, steps=6, seed=0, check_lr=False):
    """Apply the same float32 gradients with both; return (our vars, keras vars)."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
    names = ["dense_kernel", "dense_bias", "scale", "conv_kernel"]
    our_vars = [Var(a.copy(), n) for a, n in zip(init, names, strict=True)]
    keras_vars = [keras.Variable(a.copy(), name=n) for a, n in zip(init, names, strict=True)]
    for _ in range(steps):
        if check_lr:
            assert ours.learning_rate == pytest.approx(float(_numpy(theirs.learning_rate)))
        grads = [rng.normal(size=s).astype(np.float32) for s in SHAPES]
        for v, g in zip(our_vars, grads, strict=True):
            v.grad[...] = g
        ours.apply(our_vars)
        tensors = [keras.ops.convert_to_tensor(g) for g in grads]
        theirs.apply_gradients(zip(tensors, keras_vars, strict=True))
    return our_vars, keras_vars


def _assert_same(ours, theirs, our_vars, keras_vars, rtol=1e-5):
    for v, k in zip(our_vars, keras_vars, strict=True):
        assert v.value.dtype == np.float32
        np.testing.assert_allclose(v.value, _numpy(k.value), rtol=rtol, atol=rtol * 1e-2)
    assert ours.iterations == int(_numpy(theirs.iterations))
    state = ours.get_state()
    assert len(state) == len(theirs.variables)
    for got, want in zip(state, theirs.variables, strict=True):
        np.testing.assert_allclose(got, _numpy(want), rtol=rtol, atol=1e-7)
    # Keras numbers optimizer names globally ("adam_3/..."); fastnn keeps no global state.
    keras_paths = [re.sub(r"^(\w+?)(_\d+)?/", r"\1/", v.path) for v in theirs.variables]
    keras_paths = [re.sub(r"/variable_\d+$", "/variable", p) for p in keras_paths]
    assert ours.variable_paths == keras_paths


CONFIGS = [
    ("AdamW", {}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.99}),
    ("Adamax", {"learning_rate": 0.01}),
    ("Adagrad", {"learning_rate": 0.1}),
    ("Adagrad", {"learning_rate": 0.1, "initial_accumulator_value": 0.0, "epsilon": 1e-3}),
    ("Adadelta", {"learning_rate": 1.0}),
    ("Adadelta", {"learning_rate": 0.5, "rho": 0.8}),
    ("Lion", {"learning_rate": 0.01}),
    ("Lion", {"learning_rate": 0.01, "beta_1": 0.5, "beta_2": 0.9, "weight_decay": 0.5}),
    ("Ftrl", {"learning_rate": 0.1}),
    (
        "Ftrl",
        {
            "learning_rate": 0.1,
            "learning_rate_power": -0.7,
            "l1_regularization_strength": 0.01,
            "l2_regularization_strength": 0.1,
            "l2_shrinkage_regularization_strength": 0.05,
            "beta": 0.5,
        },
    ),
    # base-class options
    ("SGD", {"momentum": 0.9, "weight_decay": 0.1}),
    ("RMSprop", {"weight_decay": 0.1}),
    ("Nadam", {"clipnorm": 0.5}),
    ("Adagrad", {"learning_rate": 0.1, "global_clipnorm": 1.0}),
    ("Lion", {"clipvalue": 0.1}),
    ("Adam", {"use_ema": True}),
    ("RMSprop", {"use_ema": True, "ema_momentum": 0.9, "ema_overwrite_frequency": 2}),
    ("SGD", {"momentum": 0.9, "gradient_accumulation_steps": 2}),
    ("Adam", {"gradient_accumulation_steps": 2, "weight_decay": 0.1}),
    ("Nadam", {"gradient_accumulation_steps": 3, "use_ema": True, "clipnorm": 0.5}),
]


@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{n}-{k}" for n, k in CONFIGS])
def test_steps_and_state_match_keras(name, kwargs):
    ours = getattr(optimizers, name)(**kwargs)
    theirs = getattr(keras.optimizers, name)(**kwargs)
    our_vars, keras_vars = _run_both(ours, theirs)
    _assert_same(ours, theirs, our_vars, keras_vars)


SCHEDULES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 0.5}),
    ("PiecewiseConstantDecay", {"boundaries": [1, 3], "values": [0.05, 0.02, 0.01]}),
    ("PolynomialDecay", {"initial_learning_rate": 0.05, "decay_steps": 4, "cycle": True}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.05, "decay_steps": 2, "decay_rate": 1.0}),
    (
        "CosineDecay",
        {"initial_learning_rate": 0.0, "decay_steps": 4, "warmup_target": 0.05, "warmup_steps": 2},
    ),  # fmt: skip
    ("CosineDecayRestarts", {"initial_learning_rate": 0.05, "first_decay_steps": 2}),
]


@pytest.mark.parametrize("name", ALL)
def test_schedule_as_learning_rate_matches_keras(name):
    schedule_name, schedule_kwargs = SCHEDULES[ALL.index(name) % len(SCHEDULES)]
    ours = getattr(optimizers, name)(
        learning_rate=getattr(schedules, schedule_name)(**schedule_kwargs)
    )
    theirs = getattr(keras.optimizers, name)(
        learning_rate=getattr(keras.optimizers.schedules, schedule_name)(**schedule_kwargs)
    )
    our_vars, keras_vars = _run_both(ours, theirs, check_lr=True)
    _assert_same(ours, theirs, our_vars, keras_vars)
    config = ours.get_config()
    assert config["learning_rate"] == theirs.get_config()["learning_rate"]
    restored = optimizers.deserialize(optimizers.serialize(ours))
    assert type(restored._learning_rate) is type(ours._learning_rate)
    assert restored.get_config() == config
    with pytest.raises(TypeError, match="created with a `LearningRateSchedule`"):
        ours.learning_rate = 0.1


@pytest.mark.parametrize("name", ALL)
def test_config_matches_keras_and_loads_keras_configs(name):
    ours = getattr(optimizers, name)()
    keras_config = getattr(keras.optimizers, name)().get_config()
    assert ours.name == re.sub(r"_\d+$", "", keras_config.pop("name"))
    assert list(ours.get_config()) == ["name", *keras_config]
    for key, value in keras_config.items():
        assert ours.get_config()[key] == pytest.approx(value), key
    restored = getattr(optimizers, name).from_config(keras_config)
    assert restored.get_config() == pytest.approx(ours.get_config())
    assert type(optimizers.get(name.lower())) is type(ours)


def test_keras_constructor_arguments_in_keras_order():
    for name in ALL:
        ours = _parameters(getattr(optimizers, name))
        theirs = _parameters(getattr(keras.optimizers, name))
        assert list(ours.items()) == list(theirs.items()), name


def _parameters(cls) -> dict:
    parameters = inspect.signature(cls.__init__).parameters.items()
    return {k: p.default for k, p in parameters if k != "self"}


def test_exclude_from_weight_decay_matches_keras():
    ours = optimizers.AdamW(learning_rate=0.01, weight_decay=0.5)
    theirs = keras.optimizers.AdamW(learning_rate=0.01, weight_decay=0.5)
    ours.exclude_from_weight_decay(var_names=["bias", "scale"])
    theirs.exclude_from_weight_decay(var_names=["bias", "scale"])
    our_vars, keras_vars = _run_both(ours, theirs)
    _assert_same(ours, theirs, our_vars, keras_vars)
    with pytest.raises(ValueError, match="before the optimizer is built"):
        ours.exclude_from_weight_decay(var_names=["kernel"])


def test_finalize_variable_values_matches_keras():
    ours = optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5)
    theirs = keras.optimizers.SGD(learning_rate=0.1, use_ema=True, ema_momentum=0.5)
    our_vars, keras_vars = _run_both(ours, theirs, steps=3)
    ours.finalize_variable_values(our_vars)
    theirs.finalize_variable_values(keras_vars)
    _assert_same(ours, theirs, our_vars, keras_vars)
    with pytest.raises(ValueError, match=r"length of model variables \(1\) to override"):
        ours.finalize_variable_values(our_vars[:1])


def test_accumulation_counts_updates_and_schedules_see_every_call():
    opt = optimizers.SGD(
        learning_rate=schedules.PiecewiseConstantDecay([2], [1.0, 0.5]),
        gradient_accumulation_steps=2,
    )
    w = Var(np.zeros(1), "w")
    for k, grad in enumerate([1.0, 3.0, 1.0, 1.0]):
        w.grad[...] = grad
        opt.apply([w])
        assert opt.iterations == (k + 1) // 2
    # updates at the 2nd call (mean 2, lr at step 1: 1.0) and the 4th (mean 1, step 3: 0.5)
    np.testing.assert_allclose(w.value, [-2.0 - 0.5])
    assert int(opt.get_state()[0]) == 4


def test_plain_callable_learning_rate_takes_no_argument_as_in_keras():
    w = Var(np.zeros(1), "w")
    w.grad[...] = 1
    rates = iter([0.5, 0.25])
    opt = optimizers.Adagrad(learning_rate=lambda: next(rates))
    opt.apply([w])
    assert opt.learning_rate == 0.25
    assert len(opt.variables) == 1 + 1  # no learning-rate variable, as Keras


def test_errors_match_keras():
    with pytest.raises(ValueError, match="Argument `weight_decay` must be a float"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="`beta_1` must be in the \\[0, 1\\] range"):
        optimizers.Lion(beta_1=0.0)
    with pytest.raises(ValueError, match="`learning_rate_power` needs to be negative or zero"):
        optimizers.Ftrl(learning_rate_power=0.5)
    with pytest.raises(ValueError, match="`initial_accumulator_value` needs to be positive"):
        optimizers.Ftrl(initial_accumulator_value=-1.0)
    with pytest.raises(ValueError, match="`gradient_accumulation_steps` must be an integer >= 2"):
        optimizers.Nadam(gradient_accumulation_steps=1)
    with pytest.raises(ValueError, match=r"`ema_momentum` must be in the range \[0, 1\]"):
        optimizers.Adamax(use_ema=True, ema_momentum=1.5)
    with pytest.raises(ValueError, match="`ema_overwrite_frequency` must be an integer >= 1"):
        optimizers.Adadelta(use_ema=True, ema_overwrite_frequency=0.5)
    with pytest.raises(ValueError, match=r"`initial_accumulator_value` should be a float >= 0"):
        optimizers.Adagrad(initial_accumulator_value=-0.1)
    with pytest.raises(ValueError, match="Unknown learning rate schedule 'Warmup'"):
        optimizers.Adam.from_config({"learning_rate": {"class_name": "Warmup", "config": {}}})
    with pytest.warns(UserWarning, match="`decay` is no longer supported"):
        optimizers.Nadam(decay=0.1)


def _model(optimizer):
    fastnn.utils.set_random_seed(1)
    model = fastnn.Sequential([fastnn.Input((3,)), layers.Dense(4), layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    return model


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 3)).astype(np.float32), rng.normal(size=(16, 1)).astype(np.float32)


@pytest.mark.parametrize("name", [n.lower() for n in NEW])
def test_compile_by_name_trains(name):
    x, y = _data()
    model = _model(name)
    assert type(model.optimizer).__name__.lower() == name
    before = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=3, batch_size=4, verbose=0)
    assert model.optimizer.iterations == 12
    assert model.evaluate(x, y, verbose=0) != before


def test_saved_schedule_and_state_resume_identically(tmp_path):
    x, y = _data()
    schedule = schedules.CosineDecayRestarts(0.05, first_decay_steps=3, m_mul=0.5)
    model = _model(optimizers.Nadam(learning_rate=schedule, gradient_accumulation_steps=2))
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "m.fastnn")
    loaded = fastnn.models.load_model(tmp_path / "m.fastnn")
    assert isinstance(loaded.optimizer._learning_rate, schedules.CosineDecayRestarts)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.optimizer.iterations == model.optimizer.iterations == 2
    for m in (model, loaded):
        m.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_keras_file_keeps_the_optimizer_and_its_schedule(tmp_path):
    model = _model(optimizers.AdamW(learning_rate=schedules.ExponentialDecay(0.1, 10, 0.5)))
    model.fit(*_data(), verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    assert type(theirs.optimizer).__name__ == "AdamW"
    assert (
        theirs.optimizer.get_config()["learning_rate"]
        == (model.optimizer.get_config()["learning_rate"])
    )
    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    keras_model.compile(
        optimizer=keras.optimizers.Ftrl(
            learning_rate=keras.optimizers.schedules.PolynomialDecay(0.1, 5)
        ),
        loss="mse",
    )
    keras_model.save(tmp_path / "k.keras")
    ours = fastnn.models.load_model(tmp_path / "k.keras")
    assert isinstance(ours.optimizer, optimizers.Ftrl)
    assert isinstance(ours.optimizer._learning_rate, schedules.PolynomialDecay)


def test_fit_with_ema_ends_on_the_averages_as_keras():
    x, y = _data()
    model = _model(optimizers.SGD(learning_rate=0.05, use_ema=True, ema_momentum=0.5))
    keras_model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)]
    )
    keras_model.set_weights(model.get_weights())
    keras_model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.05, use_ema=True, ema_momentum=0.5),
        loss="mse",
    )
    model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    keras_model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    averages = model.optimizer.variables[2 : 2 + len(model.trainable_weights)]
    for ours, average, theirs in zip(
        model.get_weights(), averages, keras_model.get_weights(), strict=True
    ):
        np.testing.assert_array_equal(ours, average)
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_every_base_argument_reaches_the_config(name):
    base = {
        "weight_decay": 0.01,
        "clipnorm": 2.0,
        "use_ema": True,
        "ema_momentum": 0.9,
        "ema_overwrite_frequency": 3,
        "gradient_accumulation_steps": 4,
        "name": "mine",
    }
    config = getattr(optimizers, name)(**base).get_config()
    assert {k: config[k] for k in base} == base
    assert config["clipvalue"] is config["global_clipnorm"] is config["loss_scale_factor"] is None
    for arg in ("clipvalue", "global_clipnorm"):
        assert getattr(optimizers, name)(**{arg: 0.5}).get_config()[arg] == 0.5
