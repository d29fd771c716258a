"""Optimizer kernels vs a numpy transcription of Keras 3's update_step over several steps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import optimizers as K

DTYPES = [np.float32, np.float64]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
STEPS = 4

sizes = st.integers(1, 40)
seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)


def _state(seed, n, dtype, slots):
    rng = np.random.default_rng(seed)
    param = rng.normal(0, 1, n).astype(dtype)
    grads = [rng.normal(0, 1, n).astype(dtype) for _ in range(STEPS)]
    return param, grads, [np.zeros(n, dtype) for _ in range(slots)]


def _close(got, want, dtype):
    # atol is 0.1 x rtol: centered RMSprop divides by sqrt(velocity - average**2 + eps), whose
    # cancellation turns one float32 rounding (FMA or not) into ~2e-7 absolute on values near 0.
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-1)


# ---- numpy transcriptions of keras/src/optimizers/{sgd,adam,rmsprop}.py (scalars in dtype) ----


def ref_sgd(p, g, m, lr, momentum, nesterov):
    dt = p.dtype.type
    lr, mu = dt(lr), dt(momentum)
    if momentum == 0:
        return p - g * lr, m
    m = m * mu - g * lr
    return (p + (m * mu - g * lr) if nesterov else p + m), m


def ref_adam(p, g, m, v, vh, t, lr, b1, b2, eps, amsgrad):
    dt = p.dtype.type
    alpha = dt(lr) * np.sqrt(dt(1) - dt(b2) ** dt(t)) / (dt(1) - dt(b1) ** dt(t))
    m = m + (g - m) * dt(1 - b1)
    v = v + (g * g - v) * dt(1 - b2)
    if amsgrad:
        vh = np.maximum(vh, v)
        return p - m * alpha / (np.sqrt(vh) + dt(eps)), m, v, vh, alpha
    return p - m * alpha / (np.sqrt(v) + dt(eps)), m, v, vh, alpha


def ref_rmsprop(p, g, vel, avg, mom, lr, rho, momentum, eps, centered):
    dt = p.dtype.type
    vel = dt(rho) * vel + dt(1 - rho) * g * g
    if centered:
        avg = dt(rho) * avg + dt(1 - rho) * g
        denom = vel - avg * avg + dt(eps)
    else:
        denom = vel + dt(eps)
    inc = dt(lr) * g / np.sqrt(denom)
    if momentum > 0:
        mom = dt(momentum) * mom + inc
        return p - mom, vel, avg, mom
    return p - inc, vel, avg, mom


@settings(max_examples=25, deadline=None)
@given(
    n=sizes,
    seed=seeds,
    dtype=dtypes,
    lr=st.floats(1e-4, 0.5),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    nesterov=st.booleans(),
)
def test_sgd(n, seed, dtype, lr, momentum, nesterov):
    param, grads, (vel,) = _state(seed, n, dtype, 1)
    p_ref, v_ref = param.copy(), vel.copy()
    for g in grads:
        if momentum == 0:
            K.sgd_update(param, g, dtype(lr))
        else:
            K.sgd_momentum_update(param, g, vel, dtype(lr), dtype(momentum), nesterov)
        p_ref, v_ref = ref_sgd(p_ref, g, v_ref, lr, momentum, nesterov)
        assert param.dtype == vel.dtype == dtype
        _close(param, p_ref, dtype)
        _close(vel, v_ref, dtype)


@settings(max_examples=25, deadline=None)
@given(n=sizes, seed=seeds, dtype=dtypes, lr=st.floats(1e-4, 0.1), amsgrad=st.booleans())
def test_adam(n, seed, dtype, lr, amsgrad):
    b1, b2, eps = 0.9, 0.999, 1e-7
    param, grads, (m, v, vh) = _state(seed, n, dtype, 3)
    ref = [param.copy(), m.copy(), v.copy(), vh.copy()]
    for t, g in enumerate(grads, start=1):
        *ref, alpha = ref_adam(*ref[:1], g, *ref[1:], t, lr, b1, b2, eps, amsgrad)
        if amsgrad:
            K.adam_amsgrad_update(param, g, m, v, vh, alpha, b1, b2, dtype(eps))
        else:
            K.adam_update(param, g, m, v, alpha, b1, b2, dtype(eps))
        for got, want in zip([param, m, v, vh], ref, strict=True):
            assert got.dtype == dtype
            _close(got, want, dtype)


@settings(max_examples=25, deadline=None)
@given(
    n=sizes,
    seed=seeds,
    dtype=dtypes,
    lr=st.floats(1e-4, 0.1),
    momentum=st.sampled_from([0.0, 0.9]),
    centered=st.booleans(),
)
def test_rmsprop(n, seed, dtype, lr, momentum, centered):
    rho, eps = 0.9, 1e-7
    param, grads, (vel, avg, mom) = _state(seed, n, dtype, 3)
    ref = [param.copy(), vel.copy(), avg.copy(), mom.copy()]
    for g in grads:
        ref = ref_rmsprop(ref[0], g, *ref[1:], lr, rho, momentum, eps, centered)
        K.rmsprop_update(
            param, g, vel, avg, mom, dtype(lr), rho, dtype(momentum), dtype(eps), centered
        )
        for got, want in zip([param, vel, avg, mom], ref, strict=True):
            assert got.dtype == dtype
            _close(got, want, dtype)


def test_updates_are_in_place_on_reshaped_views():
    w = np.ones((3, 4), np.float32)
    flat = w.reshape(-1)
    K.sgd_update(flat, np.ones(12, np.float32), np.float32(0.5))
    np.testing.assert_array_equal(w, 0.5)


def test_unused_slots_may_be_empty():
    p = np.ones(5)
    K.rmsprop_update(
        p, np.ones(5), np.zeros(5), np.empty(0), np.empty(0), 0.1, 0.9, 0.0, 1e-7, False
    )
    np.testing.assert_allclose(p, 1 - 0.1 / np.sqrt(0.1 + 1e-7))


@pytest.mark.parametrize(
    "name",
    ["sgd_update", "sgd_momentum_update", "adam_update", "adam_amsgrad_update", "rmsprop_update"],
)
def test_float32_stays_float32(name):
    f = np.float32
    a = [np.ones(8, f) for _ in range(5)]
    args = {
        "sgd_update": (a[0], a[1], f(0.1)),
        "sgd_momentum_update": (a[0], a[1], a[2], f(0.1), f(0.9), True),
        # Decay rates are Python floats by contract (1 - beta is formed in float64, then cast).
        "adam_update": (*a[:4], f(0.1), 0.9, 0.999, f(1e-7)),
        "adam_amsgrad_update": (*a, f(0.1), 0.9, 0.999, f(1e-7)),
        "rmsprop_update": (*a, f(0.1), 0.9, f(0.9), f(1e-7), True),
    }[name]
    assert float64_ops(getattr(K, name), *args) == []
