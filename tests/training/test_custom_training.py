"""Custom training (issue 21): loops with ``fastnn.GradientTape`` and
``optimizer.apply_gradients``/``apply``, ``train_step``/``test_step`` overrides, a GAN-style
train_step training one model while the other stays fixed, and Keras 3 (torch) parity.

Keras's torch backend takes gradients with torch's autograd where fastnn takes them from a tape,
so ``gradients(K, ...)`` is the one place the two programs differ.
"""

import numpy as np
import pytest
from keras_twin import assert_same_weights, copy_weights, keras_module, to_numpy

import fastnn
from fastnn import layers as L
from fastnn import ops


def gradients(K, compute, variables):
    """(loss, d loss / d variables) with the backend's autodiff: a fastnn tape, or torch's."""
    if K is fastnn:
        with fastnn.GradientTape() as tape:
            loss = compute()
        return loss, tape.gradient(loss, variables)
    import torch

    loss = compute()
    values = [v.value for v in variables]
    grads = torch.autograd.grad(loss, values, allow_unused=True)
    return loss, [None if g is None else g.detach() for g in grads]


def mlp(K, name="mlp"):
    inputs = K.Input((5,), name="x")
    h = K.layers.Dense(8, activation="relu", name="h")(inputs)
    return K.Model(inputs, K.layers.Dense(3, name="logits")(h), name=name)


def _data(seed=0, n=32):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype("float32"), rng.integers(0, 3, n)


# ---------------------------------------------------------------- loops from scratch
def custom_loop(K, model, x, y, apply):
    optimizer = K.optimizers.SGD(learning_rate=0.1)
    loss_fn = K.losses.SparseCategoricalCrossentropy(from_logits=True)
    metric = K.metrics.SparseCategoricalAccuracy()
    losses = []
    for _epoch in range(2):
        for start in range(0, len(x), 8):
            xb, yb = x[start : start + 8], y[start : start + 8]

            def compute(xb=xb, yb=yb):
                logits = model(xb, training=True)
                compute.logits = logits
                return loss_fn(yb, logits)

            loss, grads = gradients(K, compute, model.trainable_weights)
            if apply == "apply_gradients":
                optimizer.apply_gradients(zip(grads, model.trainable_weights))
            else:
                optimizer.apply(grads, model.trainable_weights)
            metric.update_state(yb, to_numpy(compute.logits))
            losses.append(float(to_numpy(loss)))
        metric.reset_state()
    return losses


@pytest.mark.parametrize("apply", ["apply_gradients", "apply"])
def test_a_training_loop_with_gradient_tape_matches_keras(apply):
    keras = keras_module()
    ours, theirs = mlp(fastnn), mlp(keras)
    copy_weights(theirs, ours)
    x, y = _data()
    np.testing.assert_allclose(
        custom_loop(fastnn, ours, x, y, apply), custom_loop(keras, theirs, x, y, apply), rtol=1e-4
    )
    assert_same_weights(ours, theirs)


def test_add_loss_values_join_a_loop_through_model_losses():
    class Activity(L.Layer):
        def call(self, inputs):
            self.add_loss(1e-2 * ops.sum(inputs))
            return inputs

    inputs = fastnn.Input((5,))
    model = fastnn.Model(inputs, L.Dense(2)(Activity()(L.Dense(4)(inputs))))
    x = np.ones((3, 5), "float32")
    with fastnn.GradientTape() as tape:
        out = model(x, training=True)
        loss = ops.mean(out) + sum(model.losses)
    grads = tape.gradient(loss, model.trainable_weights)
    with fastnn.GradientTape() as tape:
        loss_alone = ops.mean(model(x, training=True))
    plain = tape.gradient(loss_alone, model.trainable_weights)
    assert not np.allclose(grads[0], plain[0]) and np.allclose(grads[2], plain[2])


# ---------------------------------------------------------------- train_step and test_step
def custom_step_model(K):
    """Keras's guide (torch version, with gradients from the backend): a train_step on a
    Functional model with compiled loss and metrics, and a test_step."""

    class CustomModel(K.Model):
        def train_step(self, data):
            x, y = data
            loss, grads = gradients(
                K, lambda: self.compute_loss(y=y, y_pred=self(x, training=True)),
                self.trainable_weights,
            )  # fmt: skip
            self.optimizer.apply(grads, self.trainable_weights)
            y_pred = self(x, training=False)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

        def test_step(self, data):
            x, y = data
            y_pred = self(x, training=False)
            loss = self.compute_loss(y=y, y_pred=y_pred)
            for metric in self.metrics:
                if metric.name == "loss":
                    metric.update_state(loss)
                else:
                    metric.update_state(y, y_pred)
            return {m.name: m.result() for m in self.metrics}

    inputs = K.Input(shape=(5,))
    outputs = K.layers.Dense(1)(inputs)
    return CustomModel(inputs, outputs)


def test_train_step_and_test_step_overrides_match_keras():
    keras = keras_module()
    ours, theirs = custom_step_model(fastnn), custom_step_model(keras)
    copy_weights(theirs, ours)
    x, _ = _data(1)
    y = x[:, :1] * 2.0 + 0.5
    histories, evaluations = [], []
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(optimizer=K.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
        history = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
        histories.append(history.history)
        evaluations.append(model.evaluate(x, y, verbose=0, return_dict=True))
    assert sorted(histories[0]) == sorted(histories[1]) == ["loss", "mae"]
    for key in histories[1]:
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-4)
    assert sorted(evaluations[0]) == sorted(evaluations[1])
    for key in evaluations[1]:
        np.testing.assert_allclose(evaluations[0][key], evaluations[1][key], rtol=1e-4)
    assert_same_weights(ours, theirs)


def gan(K):
    """A GAN (a Model without call()) whose train_step updates the discriminator, then the
    generator through the discriminator, which stays as it is."""

    class GAN(K.Model):
        def __init__(self, discriminator, generator):
            super().__init__()
            self.discriminator = discriminator
            self.generator = generator
            self.d_loss_tracker = K.metrics.Mean(name="d_loss")
            self.g_loss_tracker = K.metrics.Mean(name="g_loss")
            self.built = True

        @property
        def metrics(self):
            return [self.d_loss_tracker, self.g_loss_tracker]

        def compile(self, d_optimizer, g_optimizer, loss_fn):
            super().compile()
            self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

        def train_step(self, data):
            real, z_d, z_g = data[0]
            n = real.shape[0]
            labels = np.concatenate([np.ones((n, 1)), np.zeros((n, 1))]).astype("float32")

            def d_loss():
                combined = K.ops.concatenate([self.generator(z_d), real], axis=0)
                return self.loss_fn(labels, self.discriminator(combined))

            d_value, grads = gradients(K, d_loss, self.discriminator.trainable_weights)
            self.d_optimizer.apply(grads, self.discriminator.trainable_weights)
            before = [to_numpy(w).copy() for w in self.discriminator.weights]

            def g_loss():
                misleading = np.zeros((n, 1), "float32")
                return self.loss_fn(misleading, self.discriminator(self.generator(z_g)))

            g_value, grads = gradients(K, g_loss, self.generator.trainable_weights)
            self.g_optimizer.apply(grads, self.generator.trainable_weights)
            for w, b in zip(self.discriminator.weights, before):
                np.testing.assert_array_equal(to_numpy(w), b)
            self.d_loss_tracker.update_state(d_value)
            self.g_loss_tracker.update_state(g_value)
            return {"d_loss": self.d_loss_tracker.result(), "g_loss": self.g_loss_tracker.result()}

    discriminator = K.Sequential(
        [K.Input((4,)), K.layers.Dense(6, activation="relu"), K.layers.Dense(1)],
        name="discriminator",
    )
    generator = K.Sequential(
        [K.Input((3,)), K.layers.Dense(6, activation="relu"), K.layers.Dense(4, activation="tanh")],
        name="generator",
    )
    return GAN(discriminator, generator)


def test_a_gan_train_step_matches_keras():
    keras = keras_module()
    ours, theirs = gan(fastnn), gan(keras)
    for part in ("discriminator", "generator"):
        copy_weights(getattr(theirs, part), getattr(ours, part))
    rng = np.random.default_rng(2)
    real = rng.uniform(-1, 1, (24, 4)).astype("float32")
    z_d, z_g = rng.standard_normal((2, 24, 3)).astype("float32")
    histories = []
    for model, K in ((ours, fastnn), (theirs, keras)):
        model.compile(
            d_optimizer=K.optimizers.Adam(3e-3),
            g_optimizer=K.optimizers.Adam(4e-3),
            loss_fn=K.losses.BinaryCrossentropy(from_logits=True),
        )
        history = model.fit([real, z_d, z_g], epochs=2, batch_size=8, shuffle=False, verbose=0)
        histories.append(history.history)
    for key in ("d_loss", "g_loss"):
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-4)
    for part in ("discriminator", "generator"):
        assert_same_weights(getattr(ours, part), getattr(theirs, part), what=part)


def test_a_frozen_model_inside_a_trained_one_keeps_its_weights():
    """The other GAN form: the discriminator frozen inside the combined model fit() trains."""
    discriminator = fastnn.Sequential([fastnn.Input((4,)), L.Dense(1)])
    generator = fastnn.Sequential([fastnn.Input((3,)), L.Dense(4)])
    discriminator.trainable = False
    z = fastnn.Input((3,))
    combined = fastnn.Model(z, discriminator(generator(z)))
    combined.compile("sgd", "mse")
    before_d, before_g = discriminator.get_weights(), generator.get_weights()
    combined.fit(np.ones((8, 3)), np.ones((8, 1)), verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before_d, discriminator.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(before_g, generator.get_weights()))


def test_train_step_may_call_super_and_read_logs():
    class Logged(fastnn.Model):
        steps = 0

        def train_step(self, data):
            Logged.steps += 1
            return super().train_step(data)

    inputs = fastnn.Input((5,))
    model = Logged(inputs, L.Dense(1)(inputs))
    model.compile("sgd", "mse", metrics=["mae"])
    x, _ = _data(3, n=16)
    history = model.fit(x, x[:, :1], batch_size=8, epochs=2, verbose=0)
    assert Logged.steps == 4 and sorted(history.history) == ["loss", "mae"]


def test_optimizer_apply_takes_keras_s_order_and_the_built_variables():
    w = fastnn.Variable(np.ones(3, "float32"))
    optimizer = fastnn.optimizers.SGD(0.5)
    optimizer.apply([np.ones(3, "float32")], [w])
    optimizer.apply([np.ones(3, "float32")])  # the variables it was built on
    np.testing.assert_allclose(w.value, 0.0)
    with pytest.raises(ValueError, match="give the variables"):
        fastnn.optimizers.SGD().apply([np.ones(3)])


def test_generators_of_x_alone_feed_a_gan_and_an_add_loss_model():
    gan_model = gan(fastnn)
    gan_model.compile(
        d_optimizer=fastnn.optimizers.Adam(1e-3),
        g_optimizer=fastnn.optimizers.Adam(1e-3),
        loss_fn=fastnn.losses.BinaryCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(5)

    def gan_batches():
        for _ in range(3):
            yield [rng.uniform(-1, 1, (4, 4)).astype("float32"),
                   *rng.standard_normal((2, 4, 3)).astype("float32")],  # fmt: skip

    history = gan_model.fit(gan_batches(), epochs=1, verbose=0)
    assert sorted(history.history) == ["d_loss", "g_loss"]

    class Activity(L.Layer):
        def call(self, inputs):
            self.add_loss(ops.mean(ops.square(inputs)))
            return inputs

    inputs = fastnn.Input((5,))
    model = fastnn.Model(inputs, Activity()(L.Dense(3)(inputs)))
    model.compile("sgd")

    def x_batches():
        for _ in range(4):
            yield rng.standard_normal((8, 5)).astype("float32")

    history = model.fit(x_batches(), epochs=1, verbose=0)
    assert history.history["loss"][0] > 0


# ---------------------------------------------------------------- what train_step is given
def structure(data):
    """The nesting of a step's ``data``: tuples, lists and dicts as such, arrays by shape."""
    if isinstance(data, (tuple, list)):
        return (type(data).__name__, [structure(part) for part in data])
    if isinstance(data, dict):
        return ("dict", {key: structure(value) for key, value in sorted(data.items())})
    return ("array", tuple(np.shape(to_numpy(data))))


def recorded_steps(K, x_kind, fit_args, fit_kwargs):
    """The structure of the data each train_step of ``fit(*fit_args, **fit_kwargs)`` gets, for
    a model of one input, or two as a list or a dict (``x_kind``)."""
    seen = []

    class Recording(K.Model):
        def train_step(self, data):
            seen.append(structure(data))
            return {}

    if x_kind == "array":
        inputs = K.Input((3,), name="a")
        joined = inputs
    else:
        inputs = [K.Input((3,), name=name) for name in "ab"]
        joined = K.layers.Concatenate()(inputs)
        inputs = dict(zip("ab", inputs)) if x_kind == "dict" else inputs
    model = Recording(inputs, K.layers.Dense(1)(joined))
    model.compile(optimizer="sgd")
    model.fit(*fit_args, **fit_kwargs, batch_size=4, epochs=1, verbose=0, shuffle=False)
    return seen


@pytest.mark.parametrize(
    "x_kind, with_y, with_weight",
    [("array", False, False), ("array", True, False), ("array", True, True),
     ("list", False, False), ("list", True, False), ("dict", False, False)],
)  # fmt: skip
def test_train_step_gets_the_data_as_keras_packs_it(x_kind, with_y, with_weight):
    """fit(x) without y hands train_step x itself, not (x,) (the VAE and DCGAN examples); a
    list of inputs as ((a, b),), so data[0] is all of x."""
    keras = keras_module()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4, 3)).astype("float32")
    x = {"array": a, "list": [a, b], "dict": {"a": a, "b": b}}[x_kind]
    fit_args = (x,) + ((np.ones((4, 1), "float32"),) if with_y else ())
    fit_kwargs = {"sample_weight": np.ones(4, "float32")} if with_weight else {}
    results = [recorded_steps(K, x_kind, fit_args, fit_kwargs) for K in (fastnn, keras)]
    assert results[0] == results[1]


def test_a_model_without_call_trains_the_layers_it_holds():
    """A Model subclass that writes only train_step (the VAE example) owns the weights of the
    models and layers it holds as attributes, as Keras's: its trainable_weights are theirs."""
    keras = keras_module()
    counts = []
    for K in (fastnn, keras):
        inputs = K.Input((3,))
        encoder = K.Model(inputs, K.layers.Dense(2)(inputs))
        dense = K.layers.Dense(4)
        dense.build((None, 2))

        class Holder(K.Model):
            def __init__(self, encoder, dense):
                super().__init__()
                self.encoder, self.parts = encoder, [dense]

        class HolderLayer(K.layers.Layer):
            def __init__(self, dense):
                super().__init__()
                self.dense = dense

        holder = Holder(encoder, dense)
        counts.append(
            (
                len(holder.weights),
                len(holder.trainable_weights),
                len(HolderLayer(dense).weights),
                len(holder.layers),
            )
        )
        holder.trainable = False
        counts.append((len(holder.trainable_weights), len(encoder.trainable_weights)))
    assert counts[0] == counts[2] and counts[1] == counts[3]
    assert counts[0][:3] == (4, 4, 2)


def guided(K):
    """A model whose compute_loss, written without ``training``, reads a layer of its own."""

    class Guided(K.Model):
        def __init__(self):
            super().__init__()
            self.a = K.layers.Dense(1, name="a")
            self.b = K.layers.Dense(1, name="b", trainable=False)
            self.b.build((None, 5))

        def call(self, x):
            return self.a(x)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, allow_empty=False):
            guide = K.ops.mean(K.ops.square(y_pred - self.b(x)))
            return guide + K.ops.mean(K.ops.square(y_pred - y))

    return Guided()


def test_compute_loss_without_a_training_argument_in_fit_and_evaluate():
    """keras-io's knowledge distillation writes compute_loss(..., sample_weight, allow_empty):
    Keras passes ``training`` only to an override that takes it."""
    keras = keras_module()
    ours, theirs = guided(fastnn), guided(keras)
    x, _ = _data()
    y = x[:, :1] * 2.0
    ours(x[:2]), theirs(x[:2])
    copy_weights(theirs, ours)
    results = []
    for model in (ours, theirs):
        model.compile(optimizer="sgd")
        history = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
        results.append((history.history["loss"], model.evaluate(x, y, verbose=0)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4)
