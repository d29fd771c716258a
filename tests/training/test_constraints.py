"""fastnn.constraints against Keras 3: each constraint's projection, names and configs, the layers
that take them, the optimizer applying them after each update (fit and custom loops), and
``.keras`` files that carry them, both ways."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_twin import keras_module, to_numpy

import fastnn
from fastnn import constraints, layers
from fastnn.saving import load_model

CASES = [
    ("MaxNorm", {}),
    ("MaxNorm", {"max_value": 0.5, "axis": [0, 1]}),
    ("MinMaxNorm", {}),
    ("MinMaxNorm", {"min_value": 0.5, "max_value": 0.8, "rate": 0.3, "axis": 1}),
    ("NonNeg", {}),
    ("UnitNorm", {}),
    ("UnitNorm", {"axis": [0, 2]}),
]


@settings(max_examples=5)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([0.1, 1.0, 5.0]))
def test_each_constraint_projects_as_keras(seed, scale):
    keras = keras_module()
    w = (np.random.default_rng(seed).normal(size=(3, 4, 2)) * scale).astype(np.float32)
    for name, kwargs in CASES:
        ours = getattr(constraints, name)(**kwargs)(w)
        theirs = to_numpy(getattr(keras.constraints, name)(**kwargs)(w))
        assert ours.dtype == np.float32 and ours.shape == w.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7, err_msg=f"{name}{kwargs}")


def test_float64_stays_float64():
    w = np.random.default_rng(0).normal(size=(4, 3))
    for name, kwargs in CASES[:4] + CASES[5:6]:
        assert getattr(constraints, name)(**kwargs)(w).dtype == np.float64


def test_numpy_reference():
    w = np.array([[3.0, 0.0], [4.0, -1.0]])
    np.testing.assert_allclose(constraints.MaxNorm(1.0)(w), [[0.6, 0.0], [0.8, -1.0]], rtol=1e-6)
    np.testing.assert_allclose(constraints.UnitNorm(axis=1)(w)[1], np.array([4, -1]) / 17**0.5)
    np.testing.assert_allclose(constraints.NonNeg()(w), [[3.0, 0.0], [4.0, 0.0]])
    half = constraints.MinMaxNorm(0.0, 1.0, rate=0.5)(w)[:, 0]  # norm 5 -> 3
    np.testing.assert_allclose(half, [1.8, 2.4], rtol=1e-6)


def test_names_aliases_and_configs_as_keras():
    keras = keras_module()
    for alias in ("max_norm", "min_max_norm", "non_neg", "unit_norm"):
        ours, theirs = constraints.get(alias), keras.constraints.get(alias)
        assert type(ours).__name__ == type(theirs).__name__
        assert ours.get_config() == theirs.get_config()
        assert getattr(constraints, alias) is type(ours)
    for name, kwargs in CASES:
        ours = getattr(constraints, name)(**kwargs)
        theirs = keras.constraints.serialize(getattr(keras.constraints, name)(**kwargs))
        assert constraints.serialize(ours)["config"] == theirs["config"]
        back = constraints.deserialize(theirs)  # Keras's form, module keys and all
        assert type(back) is type(ours) and back.get_config() == ours.get_config()
        assert constraints.get(constraints.serialize(ours)).get_config() == ours.get_config()
    assert constraints.get(None) is None
    assert isinstance(constraints.get(constraints.NonNeg), constraints.NonNeg)
    clip = constraints.get(lambda w: np.clip(w, -1, 1))
    assert callable(clip)


def test_bad_identifiers_raise():
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 'max'"):
        constraints.get("max")
    with pytest.raises(ValueError, match="Could not interpret constraint identifier"):
        constraints.get(3)
    with pytest.raises(ValueError, match="Unknown constraint 'Clip'"):
        constraints.get({"class_name": "Clip", "config": {}})
    with pytest.raises(ValueError, match="Expected a callable"):
        layers.Dense(2).add_weight((2,), constraint=None).constraint = "nonneg-ish"


# layer class, its input shape, its arguments, the constraint arguments to set
LAYERS = [
    (layers.Dense, (3,), (2,), ("kernel_constraint", "bias_constraint")),
    (layers.Conv1D, (5, 2), (2, 3), ("kernel_constraint", "bias_constraint")),
    (layers.Conv2D, (5, 5, 2), (2, 3), ("kernel_constraint", "bias_constraint")),
    (layers.Conv2DTranspose, (4, 4, 2), (2, 3), ("kernel_constraint", "bias_constraint")),
    (layers.DepthwiseConv2D, (5, 5, 2), (3,), ("depthwise_constraint", "bias_constraint")),
    (
        layers.SeparableConv2D,
        (5, 5, 2),
        (2, 3),
        ("depthwise_constraint", "pointwise_constraint", "bias_constraint"),
    ),
    (layers.Embedding, (4,), (10, 3), ("embeddings_constraint",)),
    (layers.BatchNormalization, (3,), (), ("beta_constraint", "gamma_constraint")),
    (layers.LayerNormalization, (3,), (), ("beta_constraint", "gamma_constraint")),
    (layers.GroupNormalization, (4,), (2,), ("beta_constraint", "gamma_constraint")),
    (layers.PReLU, (3,), (), ("alpha_constraint",)),
    (
        layers.LSTM,
        (4, 3),
        (2,),
        ("kernel_constraint", "recurrent_constraint", "bias_constraint"),
    ),
    (layers.GRU, (4, 3), (2,), ("kernel_constraint", "recurrent_constraint", "bias_constraint")),
    (
        layers.SimpleRNN,
        (4, 3),
        (2,),
        ("kernel_constraint", "recurrent_constraint", "bias_constraint"),
    ),
    (
        layers.LSTMCell,
        None,
        (2,),
        ("kernel_constraint", "recurrent_constraint", "bias_constraint"),
    ),
]


@pytest.mark.parametrize("cls, shape, args, names", LAYERS, ids=[c[0].__name__ for c in LAYERS])
def test_layers_take_constraints_as_keras(cls, shape, args, names):
    """Each argument is stored, put on its weight, in get_config as Keras writes it, and comes
    back from the config."""
    keras = keras_module()
    kwargs = {name: "non_neg" for name in names}
    ours = cls(*args, **kwargs)
    theirs = getattr(keras.layers, cls.__name__)(*args, **kwargs)
    config = ours.get_config()
    for name in names:
        assert isinstance(getattr(ours, name), constraints.NonNeg)
        assert config[name] == {"class_name": "NonNeg", "config": {}}
        assert theirs.get_config()[name]["class_name"] == "NonNeg"
    again = cls.from_config(config)
    assert all(isinstance(getattr(again, name), constraints.NonNeg) for name in names)
    if shape is not None:
        ours.build((None, *shape))
        constrained = [w for w in ours.weights if w.constraint is not None]
        assert len(constrained) == len(ours.trainable_weights)


def test_multi_head_attention_takes_constraints():
    mha = layers.MultiHeadAttention(2, 3, kernel_constraint="max_norm", bias_constraint="non_neg")
    mha.build((None, 4, 5), (None, 4, 5))
    kinds = {w.path.rsplit("/", 1)[1]: type(w.constraint).__name__ for w in mha.weights}
    assert kinds == {"kernel": "MaxNorm", "bias": "NonNeg"}
    assert mha.get_config()["kernel_constraint"]["class_name"] == "MaxNorm"


def _constrained_model(K):
    inputs = K.Input((6, 6, 2))
    h = K.layers.Conv2D(
        4,
        3,
        kernel_constraint=K.constraints.MaxNorm(0.5, axis=[0, 1, 2]),
        bias_constraint=K.constraints.NonNeg(),
    )(inputs)
    h = K.layers.Flatten()(h)
    h = K.layers.Dense(5, kernel_constraint="non_neg", bias_constraint=K.constraints.UnitNorm())(h)
    outputs = K.layers.Dense(
        2, kernel_constraint=K.constraints.MinMaxNorm(0.2, 0.4, rate=0.5), activation="tanh"
    )(h)
    return K.Model(inputs, outputs)


def _data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(16, 6, 6, 2)).astype(np.float32)
    return x, rng.normal(size=(16, 2)).astype(np.float32)


def _same_weights(ours, theirs, rtol=1e-5, atol=1e-6):
    """Every weight within ``rtol`` / ``atol`` of Keras's (float32 sums round differently in
    the two)."""
    for i, (a, b) in enumerate(zip(ours.get_weights(), theirs.get_weights(), strict=True)):
        np.testing.assert_allclose(a, to_numpy(b), rtol=rtol, atol=atol, err_msg=f"weight {i}")


def test_fit_applies_constraints_as_keras():
    """Same weights, a few SGD steps with constrained Dense and Conv2D layers: same weights."""
    keras = keras_module()
    keras.utils.set_random_seed(11)  # Keras's initial weights: the same draw every run
    theirs, ours = _constrained_model(keras), _constrained_model(fastnn)
    ours.set_weights([to_numpy(w) for w in theirs.get_weights()])
    x, y = _data()
    theirs.compile(optimizer=keras.optimizers.SGD(0.2), loss="mse")
    ours.compile(optimizer=fastnn.optimizers.SGD(0.2), loss="mse")
    for model in (theirs, ours):
        model.fit(x, y, epochs=2, batch_size=4, shuffle=False, verbose=0)
    _same_weights(ours, theirs)
    assert ours.layers[3].get_weights()[0].min() >= 0  # non_neg held
    assert np.any(ours.layers[1].get_weights()[0] != 0)


def test_custom_loop_applies_constraints():
    """``apply_gradients`` in a GradientTape loop projects each weight after its update."""
    dense = layers.Dense(3, kernel_constraint="non_neg", bias_constraint=constraints.MaxNorm(0.1))
    dense.build((None, 4))
    optimizer = fastnn.optimizers.SGD(1.0)
    x = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
    with fastnn.GradientTape() as tape:
        loss = fastnn.ops.sum(dense(x))
    grads = tape.gradient(loss, dense.trainable_weights)
    optimizer.apply_gradients(zip(grads, dense.trainable_weights))
    kernel, bias = dense.get_weights()
    assert kernel.min() >= 0
    assert np.linalg.norm(bias) <= 0.1 + 1e-6
    optimizer.apply(grads, dense.trainable_weights)  # Keras's apply() does too
    assert dense.get_weights()[0].min() >= 0


def test_a_constraint_of_the_wrong_shape_is_refused():
    dense = layers.Dense(2, kernel_constraint=lambda w: np.zeros(3))
    dense.build((None, 2))
    dense.kernel.grad[...] = 1
    with pytest.raises(ValueError, match=r"returned shape \(3,\); expected .* \(2, 2\)"):
        fastnn.optimizers.SGD(0.1).apply([dense.kernel])


def test_keras_file_with_constraints_loads_and_trains_the_same(tmp_path):
    keras = keras_module()
    keras.utils.set_random_seed(11)  # an unseeded draw once took a UnitNorm bias past rtol
    theirs = _constrained_model(keras)
    theirs.compile(optimizer=keras.optimizers.SGD(0.2), loss="mse")
    path = tmp_path / "constrained.keras"
    theirs.save(path)
    ours = load_model(path)
    assert isinstance(ours.layers[1].kernel_constraint, constraints.MaxNorm)
    assert ours.layers[1].kernel_constraint.get_config() == {"max_value": 0.5, "axis": [0, 1, 2]}
    x, y = _data()
    for model in (theirs, ours):
        model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    _same_weights(ours, theirs)


def test_fastnn_keras_file_keeps_constraints_for_keras(tmp_path):
    keras = keras_module()
    ours = _constrained_model(fastnn)
    path = tmp_path / "ours.keras"
    ours.save(path)
    theirs = keras.saving.load_model(path)
    assert type(theirs.layers[1].kernel_constraint).__name__ == "MaxNorm"
    assert type(theirs.layers[3].kernel_constraint).__name__ == "NonNeg"
    assert theirs.layers[4].kernel_constraint.get_config()["rate"] == 0.5
    again = load_model(path)
    assert isinstance(again.layers[3].bias_constraint, constraints.UnitNorm)


def test_native_file_keeps_constraints(tmp_path):
    model = _constrained_model(fastnn)
    model.save(tmp_path / "m.fastnn")
    again = load_model(tmp_path / "m.fastnn")
    assert again.layers[4].kernel_constraint.get_config() == {
        "min_value": 0.2,
        "max_value": 0.4,
        "rate": 0.5,
        "axis": 0,
    }


@fastnn.saving.register_serializable(package="test_constraints")
class _Clip(constraints.Constraint):
    def __init__(self, bound=1.0):
        self.bound = bound

    def __call__(self, w):
        return np.clip(np.asarray(w), -self.bound, self.bound)

    def get_config(self):
        return {"bound": self.bound}


def test_a_registered_custom_constraint_round_trips(tmp_path):
    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, layers.Dense(2, kernel_constraint=_Clip(0.25))(inputs))
    model.save(tmp_path / "custom.keras")
    again = load_model(tmp_path / "custom.keras")
    assert isinstance(again.layers[1].kernel_constraint, _Clip)
    assert again.layers[1].kernel_constraint.bound == 0.25


def _sequence_model(K):
    ids = K.Input((5,), dtype="int32")
    h = K.layers.Embedding(7, 4, embeddings_constraint=K.constraints.UnitNorm(axis=1))(ids)
    h = K.layers.LSTM(
        3,
        kernel_constraint=K.constraints.MaxNorm(0.6),
        recurrent_constraint=K.constraints.MaxNorm(0.5, axis=[0, 1]),
        bias_constraint="non_neg",
    )(h)
    h = K.layers.LayerNormalization(gamma_constraint="non_neg", beta_constraint="unit_norm")(h)
    return K.Model(ids, K.layers.Dense(1)(K.layers.PReLU(alpha_constraint="non_neg")(h)))


def test_recurrent_embedding_and_normalization_constraints_train_as_keras():
    keras = keras_module()
    keras.utils.set_random_seed(14)  # Keras's initial weights, which both start from
    theirs, ours = _sequence_model(keras), _sequence_model(fastnn)
    ours.set_weights([to_numpy(w) for w in theirs.get_weights()])
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 7, (12, 5)).astype(np.int32), rng.normal(size=(12, 1))
    theirs.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    ours.compile(optimizer=fastnn.optimizers.Adam(0.05), loss="mse")
    for model in (theirs, ours):
        model.fit(x, y.astype(np.float32), epochs=2, batch_size=4, shuffle=False, verbose=0)
    # Six Adam steps through an LSTM: Adam's step, m / sqrt(v), turns a float32 rounding of a
    # small gradient into a change of up to ~3e-6 in a weight (1 in 25 initial draws did).
    _same_weights(ours, theirs, rtol=1e-4, atol=1e-5)


class _Scaled(layers.Layer):
    """A custom layer whose weight carries a constraint (``add_weight(constraint=)``)."""

    def build(self, input_shape):
        self.scale = self.add_weight((input_shape[-1],), "ones", "scale", constraint="non_neg")

    def call(self, x):
        return x * self.scale


def test_a_custom_layers_weight_constraint_applies_in_fit():
    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, _Scaled()(inputs))
    model.compile(optimizer=fastnn.optimizers.SGD(5.0), loss="mse")
    x = np.ones((8, 3), np.float32)
    model.fit(x, -x, epochs=2, batch_size=4, verbose=0)  # pushes the scale below zero
    np.testing.assert_array_equal(model.layers[1].scale.numpy(), 0)


def clip_quarter(w):
    """A plain function as a constraint (Keras takes any callable)."""
    return np.clip(np.asarray(w), -0.25, 0.25)


def test_a_function_constraint_is_saved_as_keras_saves_it(tmp_path):
    keras = keras_module()
    dense = layers.Dense(2, kernel_constraint=clip_quarter)
    config = dense.get_config()["kernel_constraint"]
    assert (
        config
        == keras.layers.Dense(2, kernel_constraint=clip_quarter).get_config()["kernel_constraint"]
    )
    inputs = fastnn.Input((3,))
    fastnn.Model(inputs, dense(inputs)).save(tmp_path / "f.keras")
    with pytest.raises(ValueError, match="Unknown constraint function 'clip_quarter'"):
        load_model(tmp_path / "f.keras")
    again = load_model(tmp_path / "f.keras", custom_objects={"clip_quarter": clip_quarter})
    assert again.layers[1].kernel_constraint is clip_quarter
    theirs = keras.saving.load_model(
        tmp_path / "f.keras", custom_objects={"clip_quarter": clip_quarter}
    )
    assert theirs.layers[1].kernel_constraint is clip_quarter
