"""Float64 gradient checks: analytic input and weight gradients vs central finite differences.

The checked scalar is ``sum(out * R)`` summed over every output, with a fixed random upstream
gradient ``R`` per output, so ``backward(ctx, R)`` must equal the gradient of that scalar.
Tolerances follow PyTorch's ``gradcheck`` (eps 1e-6, atol 1e-5, rtol 1e-3).
Import from a test module::

    from gradcheck import check_layer_gradients, check_model_gradients

Each forward evaluation restores every weight afterwards, so layers that update state in their
forward pass (BatchNormalization's moving statistics) are differentiated at a fixed point. Layers
that draw randomness per call (Dropout) pass ``reset`` to re-seed before each evaluation and
``fixed`` to name the draw (the mask in the ctx), which must then be equal in every evaluation.
"""

from __future__ import annotations

import numpy as np

from fastnn.ops.tensor import weights_written

EPS = 1e-6
ATOL = 1e-5
RTOL = 1e-3


def randomize_weights(layer, seed=0, scale=0.5) -> None:
    """Give every weight of ``layer`` (or a model) random values; variances stay positive."""
    rng = np.random.default_rng(seed)
    for var in layer.weights:
        if var.name in ("moving_variance", "variance"):  # BatchNormalization, Normalization
            var.value[...] = rng.uniform(0.5, 2.0, var.shape)
        else:
            var.value[...] = scale * rng.standard_normal(var.shape)


def numeric_gradient(objective, array, eps=EPS) -> np.ndarray:
    """Central differences of the scalar ``objective()`` w.r.t. ``array``, perturbed in place
    (a weight's too, so each write says so: inference keeps forms made from the weights)."""
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array), "numeric_gradient needs a contiguous array"
    grad = np.zeros(flat.size)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        weights_written()
        up = objective()
        flat[i] = old - eps
        weights_written()
        down = objective()
        flat[i] = old
        weights_written()
        grad[i] = (up - down) / (2 * eps)
    return grad.reshape(array.shape)


def check_gradients(
    forward,
    backward,
    inputs,
    variables,
    state=(),
    *,
    seed=0,
    reset=None,
    fixed=None,
    eps=EPS,
    atol=ATOL,
    rtol=RTOL,
    what="",
):
    """Check ``backward`` against finite differences of ``forward``; return the input grads.

    Args:
        forward: ``forward(list of arrays) -> (list of outputs, ctx)``.
        backward: ``backward(ctx, list of upstream grads) -> list of input grads (None = zero)``;
            adds into each of ``variables``' ``.grad``.
        inputs: list of float64 arrays (copied; never modified).
        variables: the weights whose ``.grad`` is checked.
        state: every weight the forward may update; restored after each evaluation.
        reset: called before every forward (e.g. to re-seed a random generator).
        fixed: ``fixed(ctx) -> array``: what ``reset`` pins down (e.g. a dropout mask); it must
            be equal in every evaluation, or the finite differences compare different functions.
    """
    inputs = [np.array(x, dtype=np.float64, order="C", copy=True) for x in inputs]
    state = list(state)
    saved = [v.value.copy() for v in state]
    probing = [None]  # the array being perturbed: never restored over
    ctxs = []

    def run():
        if reset is not None:
            reset()
        before = [x.copy() for x in inputs]
        outputs, ctx = forward(inputs)
        for x, x0 in zip(inputs, before):
            np.testing.assert_array_equal(x, x0, err_msg=f"{what}: forward modified its input")
        for v, s in zip(state, saved):
            if v.value is not probing[0]:
                v.value[...] = s
        return outputs, ctx

    outputs, ctx = run()
    for out in outputs:
        assert out.dtype == np.float64, f"{what}: output dtype {out.dtype}, expected float64"
    rng = np.random.default_rng(seed)
    upstream = [rng.standard_normal(out.shape) for out in outputs]
    upstream_copy = [r.copy() for r in upstream]
    for v in variables:
        v.grad[...] = 0
    grads = list(backward(ctx, upstream))
    for r, r0 in zip(upstream, upstream_copy):
        np.testing.assert_array_equal(r, r0, err_msg=f"{what}: backward modified grad_outputs")
    assert len(grads) == len(inputs), f"{what}: {len(grads)} input grads for {len(inputs)} inputs"
    grads = [np.zeros_like(x) if g is None else np.asarray(g) for x, g in zip(inputs, grads)]
    analytic = [g.copy() for g in grads] + [v.grad.copy() for v in variables]

    def objective():
        outs, ctx_now = run()
        if fixed is not None:
            ctxs.append(fixed(ctx_now))
        return float(sum(np.sum(o * r) for o, r in zip(outs, upstream_copy)))

    # Central differences of an objective of terms as large as S resolve a gradient only to
    # about S * machine epsilon / eps (an exponential's outputs of 1e6: ~1e-4): that much more.
    terms = float(sum(np.sum(np.abs(o * r)) for o, r in zip(outputs, upstream_copy)))
    atol = atol + 4 * np.finfo(np.float64).eps * terms / eps
    labels = [f"input {i}" for i in range(len(inputs))] + [v.path for v in variables]
    for label, array, grad in zip(labels, inputs + [v.value for v in variables], analytic):
        assert grad.shape == array.shape, f"{what}: {label} grad shape {grad.shape}"
        probing[0] = array
        numeric = numeric_gradient(objective, array, eps)
        probing[0] = None
        np.testing.assert_allclose(
            grad, numeric, atol=atol, rtol=rtol, err_msg=f"{what}: gradient of {label}"
        )
    for c in ctxs:
        np.testing.assert_array_equal(c, fixed(ctx), err_msg=f"{what}: `fixed` part of ctx changed")
    return grads


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_layer_gradients(layer, inputs, training=True, **kwargs):
    """Gradient check of ``layer.forward`` / ``layer.backward`` on an array or a list of arrays.

    Builds the layer if needed. Checks the input gradient(s) and every trainable weight's
    ``.grad``; keyword arguments go to ``check_gradients`` (seed, reset, eps, atol, rtol).
    """
    is_list = isinstance(inputs, (list, tuple))
    arrays = _as_list(inputs)
    if not layer.built:
        layer._maybe_build([a.shape for a in arrays] if is_list else arrays[0].shape)
    paths = [w.path for w in layer.weights]
    assert len(set(paths)) == len(paths), f"weights created twice (build() then a call?): {paths}"

    def forward(xs):
        out, ctx = layer.forward(list(xs) if is_list else xs[0], training)
        return _as_list(out), (ctx, isinstance(out, list))

    def backward(ctx, grads):
        ctx, out_is_list = ctx
        g = layer.backward(ctx, grads if out_is_list else grads[0])
        return _as_list(g) if is_list else [g]

    if kwargs.get("fixed") is not None:
        fixed = kwargs["fixed"]
        kwargs["fixed"] = lambda ctx: fixed(ctx[0])
    kwargs.setdefault("what", f"{type(layer).__name__} '{layer.name}'")
    return check_gradients(
        forward, backward, arrays, layer.trainable_weights, layer.weights, **kwargs
    )


def check_model_gradients(model, xs, training=True, **kwargs):
    """Gradient check of a model's graph (``model._graph.forward`` / ``backward``).

    Checks the gradient w.r.t. every model input and every trainable weight (shared weights get
    the sum over their uses); ``xs`` is an array or a list, one per model input.
    """
    arrays = _as_list(xs)

    def forward(inputs):
        return model._graph.forward(list(inputs), training)

    def backward(tape, grads):
        return model._graph.backward(tape, grads)

    kwargs.setdefault("what", f"model '{model.name}'")
    return check_gradients(
        forward, backward, arrays, model.trainable_weights, model.weights, **kwargs
    )


def check_model_gradients_at_fixed_ids(model, ids, **kwargs):
    """Gradient check of a model's weights with its one input, integer ids, held fixed (ids
    have no gradient: the graph must return None for them)."""

    def forward(_):
        return model._graph.forward([ids], True)

    def backward(tape, grads):
        assert model._graph.backward(tape, grads) == [None]
        return []

    return check_gradients(forward, backward, [], model.trainable_weights, model.weights, **kwargs)
