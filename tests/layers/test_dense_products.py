"""A float32 Dense layer large enough for the SIMD products takes its bias and relu in the
product's pass: outputs and gradients are numpy's, in training (kernel packed at the call) and
inference (kernel kept packed), with and without bias, relu, linear and another activation."""

import numpy as np
import pytest

import fastnn
from fastnn import layers, runtime
from fastnn.kernels import gemm


@pytest.mark.parametrize("activation, use_bias", [("relu", True), (None, True), ("relu", False)])
@pytest.mark.parametrize("training", [True, False])
def test_dense_with_its_bias_and_relu_in_the_products_pass(
    monkeypatch, activation, use_bias, training
):
    calls = []
    real = gemm.matmul_bias
    monkeypatch.setattr(gemm, "matmul_bias", lambda *a: calls.append(1) or real(*a))
    dense = layers.Dense(512, activation=activation, use_bias=use_bias)
    dense.build((None, 512))
    rng = np.random.default_rng(4)
    for w in dense.weights:
        w.assign(rng.standard_normal(w.shape).astype(np.float32) * 0.05)
    x = rng.standard_normal((32, 512)).astype(np.float32)
    with runtime.serial_blas():
        y, ctx = dense.forward(x, training)
        y = y.copy()
        grad = rng.standard_normal(y.shape).astype(np.float32)
        dx = dense.backward(ctx, grad)
    kernel = dense.kernel.value.astype(np.float64)
    z = x @ kernel + (dense.bias.value if use_bias else 0)
    expected = np.maximum(z, 0) if activation == "relu" else z
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    dz = grad * (z > 0) if activation == "relu" else grad
    np.testing.assert_allclose(dx, dz @ kernel.T, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dense.kernel.grad, x.T.astype(np.float64) @ dz, rtol=1e-4, atol=1e-3)
    assert calls == ([1] if use_bias else [])  # a bias to add: one pass (a linear one adds none)


def test_dense_with_another_activation_keeps_its_own_pass():
    dense = layers.Dense(512, activation="tanh")
    dense.build((None, 512))
    x = np.random.default_rng(5).standard_normal((32, 512)).astype(np.float32)
    with runtime.serial_blas():
        y, _ = dense.forward(x, True)
    z = x.astype(np.float64) @ dense.kernel.value + dense.bias.value
    np.testing.assert_allclose(y, np.tanh(z), rtol=1e-4, atol=1e-5)


def test_a_model_predicts_the_same_in_one_pass_and_in_several():
    """predict in batches of 256 (one pass) and of 8 (shorter products, other paths) agree."""
    inputs = fastnn.Input((512,))
    h = layers.Dense(512, activation="relu")(inputs)
    model = fastnn.Model(inputs, layers.Dense(512)(h))
    x = np.random.default_rng(6).standard_normal((256, 512)).astype(np.float32)
    np.testing.assert_allclose(
        model.predict(x, batch_size=256, verbose=0),
        model.predict(x, batch_size=8, verbose=0),
        rtol=1e-4,
        atol=1e-4,
    )
