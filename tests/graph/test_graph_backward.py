"""Training skips input gradients nothing needs: a model's first weighted layers are asked for
no input gradient, and weightless layers fed only by the inputs are not run backward at all."""

import numpy as np

import fastnn
from fastnn import layers


def _spy_backward(monkeypatch, layer_class):
    calls = []
    original = layer_class.backward

    def backward(self, ctx, grad_outputs, **kwargs):
        calls.append((self.name, kwargs.get("need_input_grad", True)))
        return original(self, ctx, grad_outputs, **kwargs)

    monkeypatch.setattr(layer_class, backward.__name__, backward)
    return calls


def test_first_layers_skip_input_gradients_in_training(monkeypatch):
    conv_calls = _spy_backward(monkeypatch, layers.Conv2D)
    reshape_calls = _spy_backward(monkeypatch, layers.Reshape)
    x = fastnn.Input((4, 4, 1))
    h = layers.Reshape((4, 4, 1), name="reshape")(x)  # weightless, fed by the input: skipped
    h = layers.Conv2D(2, 3, name="first")(h)
    h = layers.Conv2D(2, 2, name="second")(h)
    model = fastnn.Model(x, layers.Dense(1)(layers.Flatten()(h)))
    model.compile(optimizer="sgd", loss="mse")
    data = np.random.default_rng(0).normal(size=(8, 4, 4, 1)).astype("float32")
    model.train_on_batch(data, np.ones((8, 1), "float32"))
    assert sorted(conv_calls) == [("first", False), ("second", True)]
    assert reshape_calls == []


def test_skipping_changes_no_weight_gradient():
    """Weight gradients are the same whether or not input gradients are computed, also through
    a nested model whose first layer is a Conv2D and a Dense fed straight by an input."""
    rng = np.random.default_rng(1)
    inner = fastnn.Sequential(
        [layers.Conv2D(3, 3, input_shape=(5, 5, 2)), layers.Flatten(), layers.Dense(2)]
    )
    image, side = fastnn.Input((5, 5, 2)), fastnn.Input((3,))
    merged = layers.concatenate([inner(image), layers.Dense(2)(side)])
    model = fastnn.Model([image, side], layers.Dense(1)(merged))
    inputs = [rng.normal(size=(4, 5, 5, 2)), rng.normal(size=(4, 3))]
    inputs = [a.astype("float32") for a in inputs]
    grad = [rng.normal(size=(4, 1)).astype("float32")]

    def weight_grads(need_input_grads):
        for var in model.weights:
            var.grad.fill(0)
        _, tape = model._graph.forward(inputs, training=True)
        input_grads = model._graph.backward(tape, grad, need_input_grads=need_input_grads)
        return [var.grad.copy() for var in model.weights], input_grads

    full, input_grads = weight_grads(True)
    skipped, no_input_grads = weight_grads(False)
    for a, b in zip(full, skipped):
        np.testing.assert_array_equal(a, b)
    assert [g.shape for g in input_grads] == [(4, 5, 5, 2), (4, 3)]
    assert no_input_grads == [None, None]
