"""Float64 gradient checks: analytic input and weight gradients vs central finite differences.

The checked scalar is ``sum(out * R)`` summed over every output, with a fixed random upstream
gradient ``R`` per output, so ``backward(ctx, R)`` must equal the gradient of that scalar. Tolerances
follow PyTorch's ``gradcheck`` (eps 1e-6, atol 1e-5, rtol 1e-3). Import from a test module::

    from gradcheck import check_layer_gradients, check_model_gradients

Each forward evaluation restores every weight afterwards, so layers that update state in their
forward pass (BatchNormalization's moving statistics) are differentiated at a fixed point. Layers
that draw randomness per call (Dropout) pass ``reset`` to re-seed before each evaluation; the
check then asserts that every evaluation saw the same ctx (mask).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6
ATOL = 1e-5
RTOL = 1e-3


def randomize_weights(layer, seed=0, scale=0.5) -> None:
    """Give every weight of ``layer`` (or a model) random values; variances stay positive."""
    rng = np.random.default_rng(seed)
    for var in layer.weights:
        if var.name == "moving_variance":
            var.value[...] = rng.uniform(0.5, 2.0, var.shape)
        else:
            var.value[...] = scale * rng.standard_normal(var.shape)


def numeric_gradient(objective, array, eps=EPS) -> np.ndarray:
    """Central differences of the scalar ``objective()`` w.r.t. ``array``, perturbed in place."""
    flat = array.reshape(-1)
    assert np.shares_memory(flat, array), "numeric_gradient needs a contiguous array"
    grad = np.zeros(flat.size)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = objective()
        flat[i] = old - eps
        down = objective()
        flat[i] = old
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
    eps=EPS,
    atol=ATOL,
    rtol=RTOL,
    what="",
):
    """Check ``backward`` against finite differences of ``forward``.

    Args:
        forward: ``forward(list of arrays) -> (list of outputs, ctx)``.
        backward: ``backward(ctx, list of upstream grads) -> list of input grads (None = zero)``;
            adds into each of ``variables``' ``.grad``.
        inputs: list of float64 arrays (copied; never modified).
        variables: the weights whose ``.grad`` is checked.
        state: every weight the forward may touch; restored after each evaluation.
        reset: called before every forward (e.g. to re-seed a random generator).

    Returns the analytic input gradients.
    """
    inputs = [np.array(x, dtype=np.float64, order="C", copy=True) for x in inputs]
    state = list(state)
    saved = [v.value.copy() for v in state]
    ctxs = []

    def run():
        if reset is not None:
            reset()
        before = [x.copy() for x in inputs]
        outputs, ctx = forward(inputs)
        for x, x0 in zip(inputs, before):
            np.testing.assert_array_equal(x, x0, err_msg=f"{what}: forward modified its input")
        for v in state:  # undo state updates (moving stats), keep a perturbation being probed
            v.value[...] = saved_now[id(v)]
        return outputs, ctx

    saved_now = {id(v): s for v, s in zip(state, saved)}
    outputs, ctx = run()
    for out in outputs:
        assert out.dtype == np.float64, f"{what}: output dtype {out.dtype}, expected float64"
    rng = np.random.default_rng(seed)
    upstream = [rng.standard_normal(out.shape) for out in outputs]
    upstream_copy = [r.copy() for r in upstream]
    for v in variables:
        v.grad[...] = 0
    grads = backward(ctx, upstream)
    for r, r0 in zip(upstream, upstream_copy):
        np.testing.assert_array_equal(r, r0, err_msg=f"{what}: backward modified grad_outputs")
    grads = [np.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]
    assert len(grads) == len(inputs), f"{what}: {len(grads)} input grads for {len(inputs)} inputs"
    analytic = [g.copy() for g in grads] + [v.grad.copy() for v in variables]

    def objective():
        outs, ctx_now = run()
        ctxs.append(ctx_now)
        return float(sum(np.sum(o * r) for o, r in zip(outs, upstream_copy)))

    def probe(array):
        if array in [v.value for v in state]:
            saved_now[id(state[[v.value for v in state].index(array)])] = array
        return numeric_gradient(objective, array, eps)

    labels = [f"input {i}" for i in range(len(inputs))] + [v.path for v in variables]
    for label, array, grad in zip(labels, inputs + [v.value for v in variables], analytic):
        assert grad.shape == array.shape, f"{what} {label}: grad shape {grad.shape}"
        numeric = _numeric(objective, array, state, saved_now, eps)
        np.testing.assert_allclose(
            grad, numeric, atol=atol, rtol=rtol, err_msg=f"{what}: gradient of {label}"
        )
    if reset is not None:
        for c in ctxs:
            _assert_same_ctx(ctx, c, what)
    for v, s in zip(state, saved):
        v.value[...] = s
    return grads


def _numeric(objective, array, state, saved_now, eps):
    """Finite differences w.r.t. ``array``; a state weight being probed is not restored over."""
    owner = next((v for v in state if v.value is array), None)
    if owner is not None:
        saved_now[id(owner)] = array  # restoring it onto itself keeps the perturbation
    try:
        return numeric_gradient(objective, array, eps)
    finally:
        if owner is not None:
            saved_now[id(owner)] = array.copy()


def _assert_same_ctx(a, b, what):
    """Random draws recorded in two ctxs (arrays inside them) must be equal."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}: reset did not reproduce the ctx")
    elif isinstance(a, (list, tuple)):
        for x, y in zip(a, b):
            _assert_same_ctx(x, y, what)


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def check_layer_gradients(layer, inputs, training=True, **kwargs):
    """Gradient check of ``layer.forward`` / ``layer.backward`` (a single array or a list).

    Builds the layer if needed. Checks the input gradient(s) and every trainable weight's
    ``.grad``; keyword arguments go to ``check_gradients`` (seed, reset, eps, atol, rtol).
    """
    is_list = isinstance(inputs, (list, tuple))
    arrays = _as_list(inputs)
    if not layer.built:
        layer._maybe_build([a.shape for a in arrays] if is_list else arrays[0].shape)

    def forward(xs):
        out, ctx = layer.forward(list(xs) if is_list else xs[0], training)
        return _as_list(out), ctx

    def backward(ctx, grads):
        out_is_list = isinstance(ctx_outputs_are_list[0], bool) and ctx_outputs_are_list[0]
        g = layer.backward(ctx, grads if out_is_list else grads[0])
        return _as_list(g) if is_list else [g]

    probe_out, _ = layer.forward(arrays if is_list else arrays[0], False)
    ctx_outputs_are_list = [isinstance(probe_out, list)]
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
