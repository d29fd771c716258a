"""Activation functions against keras.activations (float32 and float64), their gradients through
a Dense layer, a GradientTape and a model (float64 against central differences), their names in
configs, and what the harness rows cannot say: Softmax's mask, the layers' argument errors."""

import os

import numpy as np
import pytest
from gradcheck import check_gradients, check_layer_gradients, check_model_gradients
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnn
from fastnn import GradientTape, activations
from fastnn import layers as L
from fastnn.kernels import codes

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

NAMES = sorted([*codes.CODES, "swish", "hard_swish"])
DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}
# (fastnn's function, Keras's, the arguments): the ones Keras's defaults do not cover
WITH_ARGUMENTS = [
    ("relu", dict(negative_slope=0.1)),
    ("relu", dict(max_value=2.0)),
    ("relu", dict(max_value=6)),
    ("relu", dict(threshold=0.5)),
    ("relu", dict(threshold=-1.0)),
    ("relu", dict(threshold=-1.0, max_value=3.0)),
    ("relu", dict(negative_slope=0.2, max_value=4.0, threshold=0.5)),
    ("leaky_relu", dict(negative_slope=0.05)),
    ("elu", dict(alpha=0.4)),
    ("gelu", dict(approximate=True)),
    ("gelu", dict(approximate=False)),
    ("softmax", dict(axis=0)),
    ("softmax", dict(axis=1)),
    ("log_softmax", dict(axis=1)),
    ("log_softmax", dict(axis=-1)),
]


def keras_value(fn, x, **kwargs) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(fn(x, **kwargs)))


def random(shape, dtype, seed=0, scale=3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


# ---- values against Keras ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_each_activation_matches_keras(name, dtype):
    x = random((4, 3, 7), dtype)
    got = activations.get(name)(x)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, keras_value(getattr(keras.activations, name), x), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, kwargs", WITH_ARGUMENTS)
def test_activation_arguments_match_keras(name, kwargs, dtype):
    x = random((3, 4, 5), dtype, seed=1)
    got = getattr(activations, name)(x, **kwargs)
    want = keras_value(getattr(keras.activations, name), x, **kwargs)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("name", ["relu", "gelu", "softmax", "mish"])
def test_scalars_vectors_and_lists_are_taken(name):
    fn = activations.get(name)
    for x in (0.5, [1.0, -2.0, 3.0], np.float64(-1.5)):
        want = keras_value(getattr(keras.activations, name), np.asarray(x, np.float32))
        np.testing.assert_allclose(fn(x), want, rtol=2e-6, atol=2e-6)


# ---- names and configs ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_layer_configs_name_the_activation_as_keras_does(name):
    ours = L.Dense(2, activation=name).get_config()["activation"]
    assert ours == keras.layers.Dense(2, activation=name).get_config()["activation"]
    assert ours == activations.serialize(activations.get(name))
    assert activations.deserialize(ours) is activations.get(name)
    conv = L.Conv2D(2, 3, activation=activations.get(name))  # the function, not its name
    assert conv.get_config()["activation"] == ours


def test_aliases_are_the_same_functions():
    assert activations.swish is activations.silu and activations.get("swish") is activations.silu
    assert activations.hard_swish is activations.hard_silu
    assert activations.get_name("Hard_Swish") == "hard_silu"
    assert activations.code("swish") == codes.SILU


def test_unknown_names_and_functions_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match=r"Unknown activation 'gelux'.*'gelu'.*'swish'"):
        L.Dense(2, activation="gelux")
    with pytest.raises(TypeError, match="Unsupported activation"):
        L.Conv2D(2, 3, activation=lambda x: x)  # Dense and Activation take one (user_activation)


def test_recurrent_layers_refuse_activations_their_kernels_lack():
    with pytest.raises(ValueError, match=r"LSTM .*`activation` must be elementwise.*'gelu'"):
        L.LSTM(3, activation="gelu")


# ---- gradients (float64 against central differences) ----------------------------------------


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 2**16), bias=st.booleans())
def test_gradients_through_a_dense_layer(name, seed, bias):
    dense = L.Dense(3, activation=name, use_bias=bias, dtype="float64")
    dense.build((None, 4))
    rng = np.random.default_rng(seed)
    for w in dense.weights:
        w.value[...] = rng.standard_normal(w.shape)
    check_layer_gradients(dense, rng.standard_normal((2, 4)) * 2, seed=seed)


@pytest.mark.parametrize("name", ["gelu", "selu", "log_softmax", "hard_silu"])
def test_gradients_through_a_model_of_two_dense_layers(name):
    """The graph's backward through the saved pre-activation (gelu, hard_silu) or output."""
    fastnn.utils.set_random_seed(3)
    inputs = fastnn.Input((4,), dtype="float64")
    hidden = L.Dense(5, activation=name, dtype="float64")(inputs)
    model = fastnn.Model(inputs, L.Dense(2, activation=name, dtype="float64")(hidden))
    check_model_gradients(model, np.random.default_rng(0).standard_normal((3, 4)))


def _tape_layer(name, kwargs):
    """A call() layer applying the activation function to its Dense's output: records on the
    layer's tape through fastnn.ops."""
    fn = getattr(activations, name)

    class Applied(L.Layer):
        def __init__(self, **layer_kwargs):
            super().__init__(**layer_kwargs)
            self.dense = L.Dense(3, dtype="float64")

        def call(self, x):
            return fn(self.dense(x), **kwargs)

    return Applied(dtype="float64")


@pytest.mark.parametrize(
    "name, kwargs", [(n, {}) for n in sorted(activations._FUNCTIONS)] + WITH_ARGUMENTS
)
def test_gradients_of_the_functions_on_a_tape(name, kwargs):
    layer = _tape_layer(name, kwargs)
    x = np.random.default_rng(5).standard_normal((2, 4)) * 2
    layer(x)
    for w in layer.weights:
        w.value[...] = np.random.default_rng(6).standard_normal(w.shape)
    want = getattr(activations, name)(layer.dense(x), **kwargs)
    np.testing.assert_allclose(layer(x), want, rtol=1e-12, atol=1e-12)
    check_layer_gradients(layer, x)


@pytest.mark.parametrize("name", sorted(activations._FUNCTIONS))
def test_a_watched_array_records_and_plain_arrays_stay_arrays(name):
    fn = activations.get(name)
    x = np.random.default_rng(2).standard_normal((2, 5))
    with GradientTape() as tape:
        watched = tape.watch(x)
        y = fn(watched)
        loss = fastnn.ops.sum(y * np.arange(10.0).reshape(2, 5))
    assert isinstance(fn(x), np.ndarray)
    np.testing.assert_allclose(fastnn.ops.convert_to_numpy(y), fn(x), rtol=1e-12, atol=1e-13)
    grad = tape.gradient(loss, watched)
    assert grad is not None and grad.shape == x.shape


# ---- Softmax's mask ----------------------------------------------------------------------------

MASKS = {
    "full": lambda rng: rng.random((2, 3, 4)) > 0.3,
    "broadcast": lambda rng: rng.random((2, 1, 4)) > 0.3,
    "last_axis_only": lambda rng: rng.random(4) > 0.3,
    "numbers": lambda rng: rng.random((2, 3, 4)).astype(np.float32),  # > 0.5 kept
    "a_row_all_masked": lambda rng: np.array([[1, 1, 0, 1]] * 2 + [[0, 0, 0, 0]], bool),
}


@pytest.mark.parametrize("axis", [-1, 1, [1, 2]])
@pytest.mark.parametrize("mask", sorted(MASKS))
def test_softmax_mask_matches_keras(mask, axis):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    m = MASKS[mask](rng)
    got = L.Softmax(axis=axis)(x, mask=m)
    want = keras.ops.convert_to_numpy(keras.layers.Softmax(axis=axis)(x, mask=m))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("axis", [-1, 1])
def test_softmax_mask_gradients(axis):
    layer = L.Softmax(axis=axis, dtype="float64")
    mask = np.random.default_rng(1).random((2, 3, 4)) > 0.4
    mask[0, :, 0] = mask[1, 2, :] = False  # a row wholly masked on each axis

    def forward(xs):
        y, ctx = layer.forward(xs[0], True, mask=mask)
        return [y], ctx

    grads = check_gradients(
        forward, lambda ctx, g: [layer.backward(ctx, g[0])], [np.random.randn(2, 3, 4)], []
    )
    assert not grads[0][~mask].any()


def test_softmax_passes_its_mask_on():
    mask = np.array([[True, False]])
    assert L.Softmax().compute_mask(np.zeros((1, 2)), mask) is mask


def test_softmax_refuses_a_mask_it_cannot_broadcast_and_a_bad_axis():
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match=r"Softmax '.*': the mask must be broadcastable.*3, 4"):
        L.Softmax()(x, mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"Softmax '.*': axis=3 is out of range.*rank >= 4"):
        L.Softmax(axis=3)(x)
    with pytest.raises(ValueError, match=r"axis=\[1, -4\] is out of range.*rank >= 4"):
        L.Softmax(axis=[1, -4])(fastnn.Input((3, 4)))
    with pytest.raises(ValueError, match=r"`axis` must be an int or a list of ints"):
        L.Softmax(axis="last")


# ---- argument errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: L.ReLU(max_value=-1.0), r"ReLU '.*': `max_value` must be None or a number >= 0"),
        (lambda: L.ReLU(negative_slope=-0.1), r"`negative_slope` must be a number >= 0.*-0.1"),
        (lambda: L.ReLU(threshold=None), r"`threshold` must be a number >= 0; received thresh"),
        (lambda: L.LeakyReLU(negative_slope=-1), r"LeakyReLU '.*': `negative_slope`"),
        (lambda: L.ELU(alpha="one"), r"ELU '.*': `alpha` must be a number"),
        (lambda: L.PReLU(shared_axes=["h"]), r"PReLU '.*': `shared_axes` must be axis numbers"),
    ],
)
def test_bad_arguments_are_refused_naming_the_layer(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_prelu_refuses_bad_constraints_shared_batch_axes_and_unknown_sizes():
    with pytest.raises(ValueError, match="Could not interpret constraint identifier: 'nonneg'"):
        L.PReLU(alpha_constraint="nonneg")
    with pytest.raises(ValueError, match=r"shared_axes=\[3\] names an axis the input lacks"):
        L.PReLU(shared_axes=3)(fastnn.Input((4, 2)))
    with pytest.raises(ValueError, match=r"every axis but the batch axis .*\(None, None, 2\)"):
        L.PReLU()(fastnn.Input((None, 2)))
    layer = L.PReLU(shared_axes=1)
    layer(fastnn.Input((5, 2)))  # any length along the shared axis, 2 channels
    assert layer(np.ones((1, 7, 2), np.float32)).shape == (1, 7, 2)
    with pytest.raises(ValueError, match=r"incompatible input shape; expected \(None, None, 2\)"):
        layer(np.ones((1, 7, 3), np.float32))


def test_leaky_relu_takes_keras_2s_alpha_with_a_warning():
    with pytest.warns(UserWarning, match="`alpha` is deprecated"):
        layer = L.LeakyReLU(alpha=0.1)
    assert layer.get_config()["negative_slope"] == 0.1
    assert layer(np.array([[-2.0]], np.float32))[0, 0] == pytest.approx(-0.2)


# ---- saving --------------------------------------------------------------------------------


def test_a_model_with_the_new_layers_and_activations_saves_and_loads(tmp_path):
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((6, 6, 2))
    x = L.Conv2D(3, 3, activation="gelu")(inputs)
    x = L.PReLU(shared_axes=[1, 2], alpha_initializer="ones")(x)
    x = L.Flatten()(L.MaxPooling2D(2)(x))
    x = L.LeakyReLU()(L.Dense(4, activation="swish")(x))
    x = L.ELU(alpha=0.5)(L.ReLU(max_value=6.0, threshold=0.1)(x))
    model = fastnn.Model(inputs, L.Softmax()(L.Dense(3, activation="mish")(x)))
    data = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    for suffix in ("keras", "fastnn"):
        path = tmp_path / f"model.{suffix}"
        model.save(path)
        loaded = fastnn.saving.load_model(path)
        np.testing.assert_array_equal(
            loaded.predict(data, verbose=0), model.predict(data, verbose=0)
        )
    theirs = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(theirs(data)), model.predict(data, verbose=0), atol=1e-5
    )


# ---- Keras's activations without a kernel code: fastnn.ops, on a tape in Dense/Activation ------
ON_OPS = sorted(set(activations._ON_OPS) - {"glu", "threshold"})  # glu halves, threshold needs args


@pytest.mark.parametrize("name", ON_OPS)
def test_activations_on_ops_match_keras_in_dense_and_round_trip(name):
    x = random((5, 4), np.float32)
    model = fastnn.Sequential([fastnn.Input((4,)), L.Dense(6, activation=name)])
    twin = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, activation=name)])
    twin.set_weights(model.get_weights())
    want = np.asarray(twin.predict(x, verbose=0))
    if name == "sparsemax":  # Keras 3's threshold is wrong with several non-zero entries
        z = x @ model.get_weights()[0] + model.get_weights()[1]
        want = np.asarray(fastnn.ops.sparsemax(z))
    np.testing.assert_allclose(model.predict(x, verbose=0), want, rtol=1e-5, atol=1e-6)
    config = model.layers[0].get_config()
    assert config["activation"] == name
    assert L.Dense.from_config(config).activation is activations.get(name)


@pytest.mark.parametrize("name", ON_OPS)
def test_gradients_through_a_dense_layer_with_an_activation_on_ops(name):
    dense = L.Dense(3, activation=name, dtype="float64")
    dense.build((None, 4))
    rng = np.random.default_rng(1)
    for w in dense.weights:
        w.value[...] = rng.standard_normal(w.shape)
    check_layer_gradients(dense, rng.standard_normal((2, 4)) * 2, seed=1)


def test_an_activation_on_ops_in_a_fused_kernel_layer_says_where_it_runs():
    with pytest.raises(ValueError, match="has no fused kernel.*Activation\\('celu'\\)"):
        L.Conv2D(2, 3, activation="celu")


@pytest.mark.parametrize(
    "make, at",
    [
        (lambda lib: lib.layers.LeakyReLU(0.2), 0.0),
        (lambda lib: lib.layers.ReLU(negative_slope=0.2), 0.0),
        (lambda lib: lib.layers.ReLU(6.0), 6.0),
        (lambda lib: lib.layers.ReLU(), 0.0),
        (lambda lib: lib.layers.ReLU(max_value=4.0), 4.0),
    ],
)
def test_relu_layers_take_keras_gradients_at_their_kinks(make, at):
    """Exactly at a kink (a zero bias on dead inputs puts many values at 0) the gradient is
    Keras's: a leaky relu's slope at 0, relu6's 0 at 6 (as the fused kernels' are)."""
    import torch

    x = np.array([at - 1, at, at + 1], np.float32)
    with GradientTape() as tape:
        watched = fastnn.ops.convert_to_tensor(x)
        tape.watch(watched)
        y = fastnn.ops.sum(make(fastnn)(watched))
    ours = np.asarray(tape.gradient(y, watched))
    theirs = torch.tensor(x, requires_grad=True)
    make(keras)(theirs).sum().backward()
    np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-6)
