"""Layers written as ``call()`` with fastnn.ops (issue 21): gradients from a tape, built-in layers
inside running their own forward and backward, tracked sublayers and weights in Keras's order,
output shapes on symbolic inputs, errors at model build, and Keras 3 (torch) parity.

Each layer class is written once against a module ``K`` (fastnn or keras) and built in both.
"""

import numpy as np
import pytest
from gradcheck import check_gradients, check_layer_gradients, randomize_weights
from keras_twin import (
    assert_same_history,
    assert_same_weights,
    copy_weights,
    fit_both,
    keras_module,
    sgd,
    to_numpy,
)
from layer_harness import LayerSpec, check_layer

import fastnn
from fastnn import layers as L
from fastnn import ops


# ---------------------------------------------------------------- layers (K is keras or fastnn)
def custom_dense(K):
    class CustomDense(K.layers.Layer):
        """A Dense written with ops: matmul + bias, optional relu."""

        def __init__(self, units, relu=False, **kwargs):
            super().__init__(**kwargs)
            self.units, self.relu = units, relu

        def build(self, input_shape):
            self.w = self.add_weight(
                shape=(input_shape[-1], self.units), initializer="glorot_uniform", name="kernel"
            )
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

        def call(self, inputs):
            y = K.ops.matmul(inputs, self.w) + self.b
            return K.ops.relu(y) if self.relu else y

        def get_config(self):
            return {**super().get_config(), "units": self.units, "relu": self.relu}

    return CustomDense


def block_of_layers(K):
    class Block(K.layers.Layer):
        """Built-in layers held in a list and a dict, mixed with ops and a weight of its own."""

        def __init__(self, units=4, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            dtype = kwargs.get("dtype")
            self.stack = [K.layers.Dense(units, activation="tanh", name=f"d{i}", dtype=dtype)
                          for i in range(2)]  # fmt: skip
            self.heads = {
                "b": K.layers.Dense(units, name="head_b", dtype=dtype),
                "a": K.layers.Dense(units, activation="sigmoid", name="head_a", dtype=dtype),
            }

        def build(self, input_shape):
            self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="n")
            self.scale = self.add_weight(shape=(self.units,), initializer="ones", name="scale")

        def call(self, x):
            for layer in self.stack:
                x = layer(x)
            return self.heads["a"](x) * self.scale + K.ops.square(self.heads["b"](x))

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    return Block


def nested(K):
    Dense = custom_dense(K)

    class Outer(K.layers.Layer):
        """A custom layer holding a custom layer and a built-in Conv1D."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            dtype = kwargs.get("dtype")
            self.conv = K.layers.Conv1D(3, 2, activation="relu", name="conv", dtype=dtype)
            self.inner = Dense(2, relu=True, name="inner", dtype=dtype)

        def call(self, x):
            y = self.conv(x)
            return self.inner(K.ops.mean(y, axis=1)) + K.ops.sum(x, axis=(1, 2))[:, None]

    return Outer


FASTNN = {f.__name__: f(fastnn) for f in (custom_dense, block_of_layers, nested)}


# ---------------------------------------------------------------- the per-layer harness
def _spec(factory, input_shape, *args, name, **kwargs):
    ours = factory(fastnn)

    def make(*a, dtype, **kw):
        return ours(*a, dtype=dtype, name=name, **kw)

    def theirs(keras):
        return factory(keras)(*args, name=name, **kwargs)

    return LayerSpec(make, input_shape, args, kwargs, keras=theirs)


SPECS = {
    "custom_dense": _spec(custom_dense, (5,), 3, name="cd"),
    "custom_dense_relu_3d": _spec(custom_dense, (4, 5), 3, relu=True, name="cdr"),
    "block_of_layers": _spec(block_of_layers, (6,), 4, name="block"),
    "nested": _spec(nested, (5, 3), name="outer"),
}


@pytest.mark.parametrize("check", ["shapes", "weights", "gradients", "float32", "keras"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_custom_layer_in_the_harness(name, check):
    if check in ("weights", "keras"):
        keras_module()
    check_layer(SPECS[name], [check], batch=3)


def test_custom_dense_config_round_trip():
    check_layer(SPECS["custom_dense"], ["config"])


# ---------------------------------------------------------------- weights and tracking
def weights_order(K):
    class Tracked(K.layers.Layer):
        """A free Variable, layers in a list and a dict (set in that order), then build()'s
        weights: non-trainable made first."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.first = K.layers.Dense(3, name="first")
            self.free = K.Variable(np.zeros(2, "float32"), name="free")
            self.blocks = [K.layers.Dense(4, name="l0"), K.layers.Dense(5, name="l1")]
            self.by_key = {"z": K.layers.Dense(6, name="dz"), "a": K.layers.Dense(7, name="da")}

        def build(self, input_shape):
            self.stat = self.add_weight(shape=(1,), trainable=False, name="stat")
            self.gain = self.add_weight(shape=(1,), name="gain")

        def call(self, x):
            y = self.first(x)
            for layer in self.blocks:
                y = layer(y)
            return self.by_key["a"](self.by_key["z"](y)) * self.gain

    return Tracked


def test_weights_order_and_paths_are_keras_s():
    """Own trainable weights (a free Variable first, as assigned), own non-trainable, then the
    tracked layers' in assignment order (list items, dict values in insertion order)."""
    keras = keras_module()
    ours, theirs = weights_order(fastnn)(name="tracked"), weights_order(keras)(name="tracked")
    x = np.ones((2, 3), "float32")
    ours(x), theirs(x)
    for part in ("weights", "trainable_weights", "non_trainable_weights"):
        assert [w.path for w in getattr(ours, part)] == [w.path for w in getattr(theirs, part)]
    assert [layer.name for _, layer in ours.sublayers()] == ["first", "l0", "l1", "dz", "da"]
    assert len(ours.get_weights()) == len(theirs.get_weights()) == 13


def test_freezing_a_custom_layer_freezes_its_layers():
    layer = weights_order(fastnn)()
    layer(np.ones((2, 3), "float32"))
    layer.trainable = False
    assert layer.trainable_weights == [] and all(not w.trainable for w in layer.weights[:2])
    assert not layer.blocks[0].trainable


def test_layers_appended_to_a_list_later_are_tracked():
    class Grows(fastnn.layers.Layer):
        def __init__(self):
            super().__init__()
            self.parts = []

        def call(self, x):
            for p in self.parts:
                x = p(x)
            return x

    layer = Grows()
    layer.parts.append(L.Dense(2))
    layer(np.ones((1, 3), "float32"))
    assert len(layer.weights) == 2


def test_weights_compare_by_identity_as_in_keras_guides():
    """``layer.weights == [layer.w, layer.b]`` (Keras's guide) while == on a Variable is
    elementwise."""
    layer = custom_dense(fastnn)(4)
    layer(np.ones((2, 2), "float32"))
    assert layer.weights == [layer.w, layer.b]
    assert isinstance(layer.b == 0, np.ndarray)
    assert (layer.w @ np.ones(4, "float32")).shape == (2,)


# ---------------------------------------------------------------- gradients
def test_gradients_of_a_custom_layer_holding_built_in_layers_in_float64():
    layer = block_of_layers(fastnn)(3, dtype="float64")
    x = np.random.default_rng(0).standard_normal((4, 5))
    layer(x)
    randomize_weights(layer, seed=1)
    check_layer_gradients(layer, x, training=True)


def test_gradients_of_nested_custom_layers_and_a_conv_in_float64():
    layer = nested(fastnn)(dtype="float64")
    x = np.random.default_rng(1).standard_normal((3, 6, 4))
    layer(x)
    randomize_weights(layer, seed=2)
    check_layer_gradients(layer, x, training=False)


def test_model_of_custom_layers_gradients_in_float64():
    from gradcheck import check_model_gradients

    inputs = fastnn.Input((5,), dtype="float64")
    x = block_of_layers(fastnn)(3, dtype="float64")(inputs)
    x = custom_dense(fastnn)(2, relu=True, dtype="float64")(x)
    outputs = L.Dense(1, dtype="float64")(x)
    model = fastnn.Model(inputs, outputs)
    randomize_weights(model, seed=3)
    check_model_gradients(model, np.random.default_rng(2).standard_normal((4, 5)))


def test_gradient_tape_over_a_custom_layer_matches_finite_differences():
    layer = block_of_layers(fastnn)(3, dtype="float64")
    x = np.random.default_rng(3).standard_normal((4, 5))
    layer(x)
    randomize_weights(layer, seed=4)

    def forward(xs):
        return [np.asarray(layer(xs[0]))], xs[0]

    def backward(x_given, upstream):
        with fastnn.GradientTape() as tape:
            xt = tape.watch(x_given)
            objective = ops.sum(layer(xt) * upstream[0])
        grads = tape.gradient(objective, [xt, *layer.trainable_weights])
        for w, g in zip(layer.trainable_weights, grads[1:]):
            w.grad[...] = g
        return [grads[0]]

    check_gradients(forward, backward, [x], layer.trainable_weights, layer.weights)


def test_add_loss_counts_once_in_the_backward():
    """The graph's objective is the outputs' plus each add_loss value: d(sum(y*R) + loss)."""

    class Penalized(fastnn.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], 2), dtype="float64")

        def call(self, x):
            y = ops.matmul(x, self.w)
            self.add_loss(0.5 * ops.sum(ops.square(y)))
            return y

    layer = Penalized(dtype="float64")
    x = np.random.default_rng(6).standard_normal((3, 4))
    layer(x)
    r = np.random.default_rng(7).standard_normal((3, 2))
    out, ctx = layer.forward(x, True)
    layer.w.grad[...] = 0
    grad_x = layer.backward(ctx, r)
    y = x @ layer.w.value
    np.testing.assert_allclose(grad_x, (r + y) @ layer.w.value.T, rtol=1e-12)
    np.testing.assert_allclose(layer.w.grad, x.T @ (r + y), rtol=1e-12)
    assert len(layer.losses) == 1


# ---------------------------------------------------------------- shapes on symbolic inputs
def shape_layers(K):
    class Doubles(K.layers.Layer):
        def call(self, x):
            return K.ops.concatenate([x, x * 2.0], axis=-1)

    class PoolsSteps(K.layers.Layer):
        def call(self, x):
            return K.ops.max(x, axis=1)

    class Pair(K.layers.Layer):
        def call(self, x):
            return x[:, :1], K.ops.sum(x, axis=-1)

    class BatchTotal(K.layers.Layer):
        def call(self, x):
            return K.ops.sum(x, axis=0)

    return Doubles, PoolsSteps, Pair, BatchTotal


@pytest.mark.parametrize(
    "index, shape, want",
    [
        (0, (4,), (None, 8)),
        (1, (None, 6), (None, 6)),
        (1, (5, 6), (None, 6)),
        (2, (4,), [(None, 1), (None,)]),
        (3, (4,), (4,)),
    ],
)
def test_symbolic_output_shapes_without_compute_output_shape(index, shape, want):
    layer = shape_layers(fastnn)[index]()
    out = layer(fastnn.Input(shape))
    got = [t.shape for t in out] if isinstance(out, list) else out.shape
    assert got == want
    keras = pytest.importorskip("keras") if want != (4,) else None
    if keras is not None:
        theirs = shape_layers(keras)[index]()(keras.Input(shape))
        theirs = [t.shape for t in theirs] if isinstance(theirs, (list, tuple)) else theirs.shape
        assert got == theirs


def test_compute_output_shape_is_used_when_written():
    class Declared(fastnn.layers.Layer):
        calls = 0

        def call(self, x):
            Declared.calls += 1
            return x[:, :2]

        def compute_output_shape(self, input_shape):
            return (input_shape[0], 2)

    out = Declared()(fastnn.Input((5,)))
    assert out.shape == (None, 2) and Declared.calls == 0


def test_the_shape_run_changes_no_state():
    """Running call() on zeros for the shape keeps weights, random streams and losses."""

    class Stateful(fastnn.layers.Layer):
        def __init__(self):
            super().__init__()
            self.drop = L.Dropout(0.5)
            self.seed = fastnn.random.SeedGenerator(3)

        def build(self, input_shape):
            self.total = self.add_weight(shape=(input_shape[-1],), trainable=False)

        def call(self, x, training=None):
            self.total.assign_add(ops.sum(x + 1.0, axis=0))
            self.add_loss(ops.sum(x))
            noise = fastnn.random.normal(ops.shape(x), seed=self.seed)
            return self.drop(x, training=True) + noise

    layer = Stateful()
    layer.build((None, 3))
    before = fastnn.random.normal((2,), seed=layer.seed)
    layer.seed = fastnn.random.SeedGenerator(3)
    drop_state, total = layer.drop.get_random_state(), layer.total.numpy()
    out = layer(fastnn.Input((3,)))
    assert out.shape == (None, 3)
    np.testing.assert_array_equal(layer.total.value, total)
    assert layer.losses == [] and layer.drop.get_random_state() == drop_state
    np.testing.assert_array_equal(fastnn.random.normal((2,), seed=layer.seed), before)


def test_a_layer_that_cannot_run_on_its_input_says_why_at_model_build():
    class NeedsEight(fastnn.layers.Layer):
        def call(self, x):
            return ops.reshape(x, (-1, 8))

    inputs = fastnn.Input((5,))
    with pytest.raises(
        ValueError, match=r"NeedsEight 'needs_eight.*' cannot tell its output shape.*reshape"
    ):
        NeedsEight()(inputs)


def test_a_layer_without_call_or_forward_says_which_to_write():
    class Empty(fastnn.layers.Layer):
        pass

    with pytest.raises(NotImplementedError, match=r"write call\(self, inputs\).*or forward"):
        Empty()(np.ones((1, 2)))


# ---------------------------------------------------------------- training and mask arguments
def test_training_reaches_nested_calls():
    class CustomDropout(fastnn.layers.Layer):
        def call(self, inputs, training=None):
            if training:
                return fastnn.random.dropout(inputs, rate=0.5)
            return inputs

    class Outer(fastnn.layers.Layer):
        def __init__(self):
            super().__init__()
            self.drop = CustomDropout()
            self.builtin = L.Dropout(0.5)

        def call(self, x):
            return self.builtin(self.drop(x))

    layer, x = Outer(), np.ones((4, 50), "float32")
    np.testing.assert_array_equal(layer(x), x)
    assert (layer(x, training=True) == 0).mean() > 0.5
    model = fastnn.Sequential([fastnn.Input((50,)), Outer()])
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_a_call_with_a_mask_argument_gets_the_embedding_mask():
    class MaskedMean(fastnn.layers.Layer):
        def call(self, x, mask=None):
            weights = ops.cast(mask, x.dtype)[:, :, None]
            return ops.sum(x * weights, axis=1) / ops.sum(weights, axis=1)

    ids = fastnn.Input((4,), dtype="int32")
    out = MaskedMean()(L.Embedding(10, 3, mask_zero=True)(ids))
    model = fastnn.Model(ids, L.Dense(1)(out))
    x = np.array([[1, 2, 0, 0], [3, 0, 0, 0]])
    table = model.layers[1].embeddings.value
    want = np.stack([table[[1, 2]].mean(0), table[3]])
    hidden = fastnn.Model(ids, out).predict(x, verbose=0)
    np.testing.assert_allclose(hidden, want, rtol=1e-6)
    model.compile("sgd", "mse")
    model.fit(x, np.ones((2, 1)), verbose=0)


# ---------------------------------------------------------------- Keras parity of training
def functional_with_custom_layers(K):
    inputs = K.Input((6,))
    x = block_of_layers(K)(5, name="block")(inputs)
    x = custom_dense(K)(4, relu=True, name="cd")(x)
    outputs = K.layers.Dense(2, name="out")(x)
    return K.Model(inputs, outputs, name="with_custom")


def test_sgd_steps_match_keras():
    keras = keras_module()
    ours, theirs = functional_with_custom_layers(fastnn), functional_with_custom_layers(keras)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((32, 6)).astype("float32"), rng.standard_normal((32, 2))
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-5, atol=1e-6
    )
    histories = fit_both(ours, theirs, x, y, optimizer="sgd", loss="mse")
    assert_same_history(*histories)
    assert_same_weights(ours, theirs)


def test_custom_dense_mlp_matches_keras_with_a_loss_and_metric():
    keras = keras_module()

    def mlp(K):
        inputs = K.Input((8,))
        x = custom_dense(K)(16, relu=True, name="h")(inputs)
        return K.Model(inputs, custom_dense(K)(3, name="o")(x))

    ours, theirs = mlp(fastnn), mlp(keras)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((24, 8)).astype("float32"), rng.integers(0, 3, 24)
    histories = []
    for model, K in ((ours, fastnn), (theirs, keras)):
        loss = K.losses.SparseCategoricalCrossentropy(from_logits=True)
        model.compile(sgd(K, 0.05), loss, metrics=["accuracy"])
        history = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        histories.append(history.history)
    assert_same_history(*histories)
    assert_same_weights(ours, theirs)


# ---------------------------------------------------------------- configs, as Keras 3 makes them
def test_a_layer_without_get_config_describes_itself_by_its_arguments():
    """Keras 3's auto config: the constructor's plain arguments, defaults included."""

    def auto(K):
        class Scaled(K.layers.Layer):
            def __init__(self, units, act="relu", extra=None, **kwargs):
                super().__init__(**kwargs)
                self.units = units

            def call(self, x):
                return x

        return Scaled

    keras = keras_module()
    ours, theirs = auto(fastnn)(3, extra=[1, 2]), auto(keras)(3, extra=[1, 2])
    mine, keras_config = ours.get_config(), theirs.get_config()
    for key in ("units", "act", "extra", "trainable"):
        assert mine[key] == keras_config[key]
    assert type(ours).from_config(mine).units == 3

    class TakesAFunction(fastnn.layers.Layer):
        def __init__(self, fn):
            super().__init__()

        def call(self, x):
            return x

    with pytest.raises(NotImplementedError, match="write its get_config"):
        TakesAFunction(np.sum).get_config()


def test_a_model_with_an_unconfigured_custom_layer_saves_and_loads(tmp_path):
    @fastnn.saving.register_keras_serializable(package="custom_layer_tests")
    class Shift(fastnn.layers.Layer):
        def __init__(self, amount=1.0, **kwargs):
            super().__init__(**kwargs)
            self.amount = amount

        def call(self, x):
            return x + self.amount

    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, L.Dense(2)(Shift(2.5)(inputs)))
    model.save(tmp_path / "m.fastnn")
    loaded = fastnn.models.load_model(tmp_path / "m.fastnn")
    x = np.ones((2, 3), "float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.layers[1].amount == 2.5


def test_a_masking_custom_layer_passes_the_mask_on():
    class Doubler(fastnn.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, x):
            return x * 2.0

    ids = fastnn.Input((4,), dtype="int32")
    x = Doubler()(L.Embedding(10, 3, mask_zero=True)(ids))
    model = fastnn.Model(ids, L.LSTM(2)(x))
    batch = np.array([[1, 2, 0, 0], [3, 4, 5, 0]])
    short = np.array([[1, 2], [3, 4]])
    inputs = fastnn.Input((2,), dtype="int32")
    twin = fastnn.Model(inputs, model.layers[-1](model.layers[2](model.layers[1](inputs))))
    padded, unpadded = model.predict(batch, verbose=0), twin.predict(short, verbose=0)
    np.testing.assert_allclose(padded[0], unpadded[0], rtol=1e-5)


def test_in_place_ops_in_call_leave_the_callers_array_as_it_was():
    """keras-io's antirectifier writes ``inputs -= ops.mean(inputs, ...)`` in call(): called on
    a user's array, the array stays as it was (Keras converts it to a tensor first)."""

    class Centered(fastnn.layers.Layer):
        def call(self, inputs):
            inputs -= fastnn.ops.mean(inputs, axis=-1, keepdims=True)
            return inputs

    x = np.array([[1.0, 2.0, 3.0]], "float32")
    np.testing.assert_array_equal(Centered()(x), [[-1.0, 0.0, 1.0]])
    np.testing.assert_array_equal(x, [[1.0, 2.0, 3.0]])
