"""Passes that reuse their buffers (training steps, batched predict) compute what fresh arrays
compute: the backward's fan-out sums, nested models' layers and the layers whose backwards
write into their workspaces, over a pass after another."""

import numpy as np
import pytest
from gradcheck import check_model_gradients

import fastnn
from fastnn import layers

F64 = "float64"


def _step(model, inputs, reuse):
    """Outputs, weight gradients and input gradients of one forward and backward."""
    graph = model._graph
    for w in model.weights:
        w.grad[...] = 0
    outputs, tape = graph.forward(inputs, True, reuse=reuse)
    input_grads = graph.backward(tape, [np.cos(o) for o in outputs])
    copies = [None if g is None else g.copy() for g in input_grads]
    return [o.copy() for o in outputs], [w.grad.copy() for w in model.weights], copies


def _assert_reuse_matches_fresh(model, make_inputs):
    rng = np.random.default_rng(0)
    _step(model, make_inputs(rng), "train")
    second = make_inputs(rng)
    reused = _step(model, second, "train")
    fresh = _step(model, second, None)
    for got, want in zip(reused, fresh):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def _fan_out_model(features):
    """A tensor read by three steps (two Dense and an Add, which hands its gradient to all
    three inputs as it is) and a residual Add whose output is read twice."""
    x = fastnn.Input((features,), dtype=F64)
    a = layers.Dense(features, activation="tanh", dtype=F64)(x)
    b = layers.Dense(features, dtype=F64)(x)
    s = layers.Add(dtype=F64)([a, b, x])
    out = layers.Add(dtype=F64)([layers.Dense(features, dtype=F64)(s), s])
    return fastnn.Model(x, layers.Multiply(dtype=F64)([out, s]))


@pytest.mark.parametrize("features", [8, 4096])  # numpy's sums; the kernel's (>= 64K values)
def test_fan_out_sums_in_reused_buffers(features):
    """The summed gradients, also the inputs', are those of fresh arrays."""
    model = _fan_out_model(features)
    _assert_reuse_matches_fresh(model, lambda rng: [rng.normal(size=(20, features))])


def test_fan_out_gradients():
    """The sums leave the gradient the Add handed to its other inputs as it was."""
    model = _fan_out_model(3)
    check_model_gradients(model, np.random.default_rng(2).normal(size=(4, 3)))


def test_shared_nested_model_reuses_its_buffers_per_call():
    """A nested model called twice in one model (a siamese pair) keeps a set of buffers per
    call: its gradients are those of fresh arrays, and a call's output is the same array from
    a training pass to the next."""
    inner_in = fastnn.Input((6, 6, 3), dtype=F64)
    h = layers.Conv2D(4, 3, padding="same", dtype=F64)(inner_in)
    h = layers.Add(dtype=F64)([h, layers.Conv2D(4, 1, dtype=F64)(inner_in)])
    inner = fastnn.Model(inner_in, layers.GlobalAveragePooling2D(dtype=F64)(h))
    left, right = fastnn.Input((6, 6, 3), dtype=F64), fastnn.Input((6, 6, 3), dtype=F64)
    merged = layers.Subtract(dtype=F64)([inner(left), inner(right)])
    model = fastnn.Model([left, right], layers.Dense(2, dtype=F64)(merged))
    _assert_reuse_matches_fresh(model, lambda rng: list(rng.normal(size=(2, 5, 6, 6, 3))))

    data = list(np.random.default_rng(1).normal(size=(2, 5, 6, 6, 3)))
    _, first = model._graph.forward(data, True, reuse="train")
    _, second = model._graph.forward(data, True, reuse="train")
    nested = [i for i, step in enumerate(model._graph.steps) if step.layer is inner]
    assert len(nested) == 2
    for i in nested:  # the nested model's own tape: its Add's output
        assert np.shares_memory(first.ctxs[i].values[-2], second.ctxs[i].values[-2])
    assert not np.shares_memory(first.ctxs[nested[0]].values[-2], first.ctxs[nested[1]].values[-2])


def test_layers_writing_backwards_into_workspaces():
    """UpSampling2D (nearest and bilinear), LayerNormalization, GroupNormalization,
    GlobalAveragePooling1D/2D and MultiHeadAttention over a pass after another."""
    image = fastnn.Input((4, 4, 4), dtype=F64)
    up = layers.UpSampling2D(2, dtype=F64)(image)
    up = layers.UpSampling2D(2, interpolation="bilinear", dtype=F64)(up)
    up = layers.GroupNormalization(2, dtype=F64)(up)
    pooled = layers.GlobalAveragePooling2D(dtype=F64)(up)
    tokens = fastnn.Input((5, 8), dtype=F64)
    attended = layers.MultiHeadAttention(2, 4, dtype=F64)(tokens, tokens)
    normed = layers.LayerNormalization(dtype=F64)(layers.Add(dtype=F64)([attended, tokens]))
    summary = layers.GlobalAveragePooling1D(dtype=F64)(normed)
    model = fastnn.Model([image, tokens], layers.Concatenate(dtype=F64)([pooled, summary]))
    _assert_reuse_matches_fresh(
        model, lambda rng: [rng.normal(size=(3, 4, 4, 4)), rng.normal(size=(3, 5, 8))]
    )
