"""Inference keeps conv and Dense kernels in the forms they compute with (packed,
Winograd-transformed, BatchNormalization folded in) from call to call: every way of changing
weights must be seen by the next predict, and calls without a change must not redo the work."""

import numpy as np
import pytest

import fastnn
from fastnn import kernels, layers

X = np.random.default_rng(0).random((8, 12, 12, 3)).astype("float32")
Y = np.random.default_rng(1).random((8, 10)).astype("float32")


def cnn():
    """Convs through every kept form (BN folded, with a fused max pool; SIMD; Winograd) and a
    Dense layer whose product on 8 rows runs on the kept packed kernel."""
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((12, 12, 3))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = layers.BatchNormalization()(x)
    x = layers.Activation("relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)  # SIMD
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(x)  # Winograd or SIMD
    x = layers.Dense(256, activation="relu")(layers.Flatten()(x))
    model = fastnn.Model(inputs, layers.Dense(10)(x))
    model.compile(optimizer=fastnn.optimizers.Adam(0.05), loss="mse")
    return model


def expected(model, x=X):
    """What a fresh model with ``model``'s weights predicts (nothing kept from earlier calls)."""
    twin = cnn()
    twin.set_weights(model.get_weights())
    return twin.predict(x, verbose=0)


def changed_by(change):
    """(prediction after ``change(model)``, the fresh twin's): the model predicted before."""
    model = cnn()
    before = model.predict(X, verbose=0)
    change(model)
    after = model.predict(X, verbose=0)
    assert not np.allclose(after, before), "the change did not change the model"
    return after, expected(model)


def conv(model, index=0):
    return [layer for layer in model.layers if isinstance(layer, layers.Conv2D)][index]


def bn(model):
    return next(layer for layer in model.layers if isinstance(layer, layers.BatchNormalization))


def custom_loop_step(model):
    optimizer = fastnn.optimizers.SGD(0.5)
    with fastnn.ops.GradientTape() as tape:
        loss = fastnn.ops.mean(fastnn.ops.square(model(X) - Y))
    grads = tape.gradient(loss, model.trainable_weights)
    optimizer.apply_gradients(zip(grads, model.trainable_weights))


def save_and_load(tmp_path, suffix):
    def change(model):
        other = cnn()
        other.fit(X, Y, epochs=2, verbose=0)
        other.save_weights(tmp_path / f"w{suffix}")
        model.load_weights(tmp_path / f"w{suffix}")

    return change


CHANGES = {
    "fit": lambda model: model.fit(X, Y, epochs=2, verbose=0),
    "train_on_batch": lambda model: model.train_on_batch(X, Y),
    "model.set_weights": lambda model: model.set_weights([w * 1.5 for w in model.get_weights()]),
    "layer.set_weights": lambda model: conv(model, 1).set_weights(
        [w * -1 for w in conv(model, 1).get_weights()]
    ),
    "assign": lambda model: conv(model, 2).kernel.assign(conv(model, 2).kernel.numpy() * 2),
    "assign_add": lambda model: conv(model).kernel.assign_add(0.1),
    "Dense assign": lambda model: model.layers[-2].kernel.assign(model.layers[-2].kernel * 3),
    "assign_sub": lambda model: bn(model).moving_variance.assign_sub(0.5),
    "moving statistics": lambda model: model(X * 3, training=True),
    "optimizer.apply_gradients": custom_loop_step,
    "a new value array": lambda model: setattr(
        conv(model, 1).kernel, "value", conv(model, 1).kernel.numpy() + 0.2
    ),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_predict_sees_every_change_of_the_weights(change):
    after, fresh = changed_by(CHANGES[change])
    np.testing.assert_allclose(after, fresh, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("suffix", [".weights.npz", ".weights.h5"])
def test_predict_sees_loaded_weights(tmp_path, suffix):
    if suffix.endswith(".h5"):
        pytest.importorskip("h5py")
    after, fresh = changed_by(save_and_load(tmp_path, suffix))
    np.testing.assert_allclose(after, fresh, rtol=1e-5, atol=1e-6)


def test_calls_without_a_change_pack_each_kernel_once(monkeypatch):
    model = cnn()
    calls = []
    for module, name in ((kernels.conv_simd, "pack_kernel"), (kernels.matmul_simd, "pack")):
        pack = getattr(module, name)
        monkeypatch.setattr(module, name, lambda k, pack=pack: calls.append(k.shape) or pack(k))
    first = model.predict(X, verbose=0)
    packed = len(calls)
    assert (576, 256) in calls  # the Dense layer's, besides the SIMD convs'
    assert packed >= 2
    for _ in range(3):
        np.testing.assert_allclose(model.predict(X[:1], verbose=0), first[:1], rtol=1e-5, atol=1e-6)
        model(X)
    assert len(calls) == packed
    model.fit(X, Y, epochs=1, verbose=0)  # training packs its changing kernels every step
    calls.clear()
    model.predict(X, verbose=0)
    model.predict(X, verbose=0)
    assert len(calls) == packed  # once again after the weights changed
