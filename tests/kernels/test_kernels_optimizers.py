"""Optimizer kernels vs a numpy transcription of Keras 3's update steps over several steps.

Each reference first scales the parameter by ``keep`` (1 - weight_decay * lr, Keras's decoupled
weight decay), then runs Keras's ``update_step`` with scalars in the parameter's dtype.
"""

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
keeps = st.sampled_from([1.0, 0.999])
cases = settings(max_examples=5, deadline=None)


def _state(seed, n, dtype, slots, slot_fill=0.0):
    rng = np.random.default_rng(seed)
    param = rng.normal(0, 1, n).astype(dtype)
    grads = [rng.normal(0, 1, n).astype(dtype) for _ in range(STEPS)]
    return param, grads, [np.full(n, slot_fill, dtype) for _ in range(slots)]


def _close(got, want, dtype):
    # atol is 0.1 x rtol: centered RMSprop divides by sqrt(velocity - average**2 + eps), whose
    # cancellation turns one float32 rounding (FMA or not) into ~2e-7 absolute on values near 0.
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-1)


def _check(arrays, refs, dtype):
    for got, want in zip(arrays, refs, strict=True):
        assert got.dtype == dtype
        _close(got, want, dtype)


# ---- numpy transcriptions of keras/src/optimizers/*.py (scalars in dtype) ----


def ref_sgd(p, g, m, lr, momentum, nesterov, keep):
    dt = p.dtype.type
    lr, mu, p = dt(lr), dt(momentum), p * dt(keep)
    if momentum == 0:
        return p - g * lr, m
    m = m * mu - g * lr
    return (p + (m * mu - g * lr) if nesterov else p + m), m


def ref_adam(p, g, m, v, vh, t, lr, b1, b2, eps, amsgrad, keep):
    dt = p.dtype.type
    p = p * dt(keep)
    alpha = dt(lr) * np.sqrt(dt(1) - dt(b2) ** dt(t)) / (dt(1) - dt(b1) ** dt(t))
    m = m + (g - m) * dt(1 - b1)
    v = v + (g * g - v) * dt(1 - b2)
    if amsgrad:
        vh = np.maximum(vh, v)
        return p - m * alpha / (np.sqrt(vh) + dt(eps)), m, v, vh, alpha
    return p - m * alpha / (np.sqrt(v) + dt(eps)), m, v, vh, alpha


def ref_nadam(p, g, m, v, u_product, t, lr, b1, b2, eps, keep):
    dt = p.dtype.type
    p = p * dt(keep)
    u_t = dt(b1) * (dt(1) - dt(0.5) * dt(0.96) ** dt(t))
    u_next = dt(b1) * (dt(1) - dt(0.5) * dt(0.96) ** dt(t + 1))
    u_product = u_product * u_t
    m = m + (g - m) * dt(1 - b1)
    v = v + (g * g - v) * dt(1 - b2)
    m_hat = u_next * m / (dt(1) - u_product * u_next) + (dt(1) - u_t) * g / (dt(1) - u_product)
    v_hat = v / (dt(1) - dt(b2) ** dt(t))
    scales = (u_next / (dt(1) - u_product * u_next), (dt(1) - u_t) / (dt(1) - u_product))
    return p - m_hat * dt(lr) / (np.sqrt(v_hat) + dt(eps)), m, v, u_product, scales


def ref_adamax(p, g, m, u, t, lr, b1, b2, eps, keep):
    dt = p.dtype.type
    p = p * dt(keep)
    m = m + (g - m) * dt(1 - b1)
    u = np.maximum(dt(b2) * u, np.abs(g))
    return p - dt(lr) * m / ((dt(1) - dt(b1) ** dt(t)) * (u + dt(eps))), m, u


def ref_adagrad(p, g, acc, lr, eps, keep):
    dt = p.dtype.type
    acc = acc + g * g
    return p * dt(keep) - dt(lr) * g / np.sqrt(acc + dt(eps)), acc


def ref_adadelta(p, g, acc_g, acc_d, lr, rho, eps, keep):
    dt = p.dtype.type
    acc_g = dt(rho) * acc_g + dt(1 - rho) * g * g
    delta = -(np.sqrt(acc_d + dt(eps)) * g / np.sqrt(acc_g + dt(eps)))
    acc_d = dt(rho) * acc_d + dt(1 - rho) * delta * delta
    return p * dt(keep) + dt(lr) * delta, acc_g, acc_d


def ref_lion(p, g, m, lr, b1, b2, keep):
    dt = p.dtype.type
    p = p * dt(keep) - dt(lr) * np.sign(m * dt(b1) + g * dt(1 - b1))
    return p, m * dt(b2) + g * dt(1 - b2)


def ref_ftrl(p, g, acc, lin, lr, lr_power, l1, l2, shrinkage, beta, keep):
    dt = p.dtype.type
    p, lr = p * dt(keep), dt(lr)
    l2 = dt(l2) + dt(beta) / (dt(2) * lr)
    grad = g + dt(2 * shrinkage) * p
    new_acc = acc + g * g
    power = dt(-lr_power)
    lin = lin + (grad - (new_acc**power - acc**power) / lr * p)
    quadratic = new_acc**power / lr + dt(2) * l2
    p = (np.clip(lin, -dt(l1), dt(l1)) - lin) / quadratic
    return p, new_acc, lin


def ref_rmsprop(p, g, vel, avg, mom, lr, rho, momentum, eps, centered, keep):
    dt = p.dtype.type
    p = p * dt(keep)
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


@cases
@given(
    n=sizes,
    seed=seeds,
    dtype=dtypes,
    lr=st.floats(1e-4, 0.5),
    momentum=st.sampled_from([0.0, 0.5, 0.9]),
    nesterov=st.booleans(),
    keep=keeps,
)
def test_sgd(n, seed, dtype, lr, momentum, nesterov, keep):
    param, grads, (vel,) = _state(seed, n, dtype, 1)
    ref = [param.copy(), vel.copy()]
    for g in grads:
        if momentum == 0:
            K.sgd_update(param, g, dtype(lr), dtype(keep))
        else:
            K.sgd_momentum_update(param, g, vel, dtype(lr), dtype(momentum), nesterov, dtype(keep))
        ref = ref_sgd(ref[0], g, ref[1], lr, momentum, nesterov, keep)
        _check([param, vel], ref, dtype)


@cases
@given(
    n=sizes, seed=seeds, dtype=dtypes, lr=st.floats(1e-4, 0.1), amsgrad=st.booleans(), keep=keeps
)
def test_adam(n, seed, dtype, lr, amsgrad, keep):
    b1, b2, eps = 0.9, 0.999, 1e-7
    param, grads, (m, v, vh) = _state(seed, n, dtype, 3)
    ref = [param.copy(), m.copy(), v.copy(), vh.copy()]
    for t, g in enumerate(grads, start=1):
        *ref, alpha = ref_adam(*ref[:1], g, *ref[1:], t, lr, b1, b2, eps, amsgrad, keep)
        if amsgrad:
            K.adam_amsgrad_update(param, g, m, v, vh, alpha, b1, b2, dtype(eps), dtype(keep))
        else:
            K.adam_update(param, g, m, v, alpha, b1, b2, dtype(eps), dtype(keep))
        _check([param, m, v, vh], ref, dtype)


@cases
@given(n=sizes, seed=seeds, dtype=dtypes, lr=st.floats(1e-4, 0.1), keep=keeps)
def test_nadam(n, seed, dtype, lr, keep):
    b1, b2, eps = 0.9, 0.999, 1e-7
    param, grads, (m, v) = _state(seed, n, dtype, 2)
    ref, u_product = [param.copy(), m.copy(), v.copy()], dtype(1)
    for t, g in enumerate(grads, start=1):
        *ref, u_product, (m_scale, g_scale) = ref_nadam(
            ref[0], g, *ref[1:], u_product, t, lr, b1, b2, eps, keep
        )
        v_divisor = dtype(1) - dtype(b2) ** dtype(t)
        K.nadam_update(
            param, g, m, v, b1, b2, m_scale, g_scale, v_divisor, dtype(lr), dtype(eps), dtype(keep)
        )
        _check([param, m, v], ref, dtype)


@cases
@given(n=sizes, seed=seeds, dtype=dtypes, lr=st.floats(1e-4, 0.1), keep=keeps)
def test_adamax(n, seed, dtype, lr, keep):
    b1, b2, eps = 0.9, 0.999, 1e-7
    param, grads, (m, u) = _state(seed, n, dtype, 2)
    ref = [param.copy(), m.copy(), u.copy()]
    for t, g in enumerate(grads, start=1):
        ref = ref_adamax(ref[0], g, *ref[1:], t, lr, b1, b2, eps, keep)
        correction = dtype(1) - dtype(b1) ** dtype(t)
        K.adamax_update(param, g, m, u, dtype(lr), b1, b2, correction, dtype(eps), dtype(keep))
        _check([param, m, u], ref, dtype)


@cases
@given(n=sizes, seed=seeds, dtype=dtypes, lr=st.floats(1e-3, 0.5), keep=keeps)
def test_adagrad(n, seed, dtype, lr, keep):
    param, grads, (acc,) = _state(seed, n, dtype, 1, slot_fill=0.1)
    ref = [param.copy(), acc.copy()]
    for g in grads:
        ref = ref_adagrad(ref[0], g, ref[1], lr, 1e-7, keep)
        K.adagrad_update(param, g, acc, dtype(lr), dtype(1e-7), dtype(keep))
        _check([param, acc], ref, dtype)


@cases
@given(n=sizes, seed=seeds, dtype=dtypes, lr=st.floats(1e-3, 1.0), keep=keeps)
def test_adadelta(n, seed, dtype, lr, keep):
    rho, eps = 0.95, 1e-7
    param, grads, (acc_g, acc_d) = _state(seed, n, dtype, 2)
    ref = [param.copy(), acc_g.copy(), acc_d.copy()]
    for g in grads:
        ref = ref_adadelta(ref[0], g, *ref[1:], lr, rho, eps, keep)
        K.adadelta_update(param, g, acc_g, acc_d, dtype(lr), rho, dtype(eps), dtype(keep))
        _check([param, acc_g, acc_d], ref, dtype)


@cases
@given(n=sizes, seed=seeds, dtype=dtypes, lr=st.floats(1e-4, 0.1), keep=keeps)
def test_lion(n, seed, dtype, lr, keep):
    b1, b2 = 0.9, 0.99
    param, grads, (m,) = _state(seed, n, dtype, 1)
    ref = [param.copy(), m.copy()]
    for g in grads:
        ref = ref_lion(ref[0], g, ref[1], lr, b1, b2, keep)
        K.lion_update(param, g, m, dtype(lr), b1, b2, dtype(keep))
        _check([param, m], ref, dtype)


@cases
@given(
    n=sizes,
    seed=seeds,
    dtype=dtypes,
    lr=st.floats(1e-2, 0.5),
    lr_power=st.sampled_from([-0.5, -0.7, 0.0]),
    l1=st.sampled_from([0.0, 0.05]),
    l2_shrinkage_beta=st.sampled_from([(0.0, 0.0, 0.0), (0.1, 0.05, 0.5)]),
    keep=keeps,
)
def test_ftrl(n, seed, dtype, lr, lr_power, l1, l2_shrinkage_beta, keep):
    l2, shrinkage, beta = l2_shrinkage_beta
    param, grads, (acc, lin) = _state(seed, n, dtype, 2)
    acc[...] = 0.1
    ref = [param.copy(), acc.copy(), lin.copy()]
    for g in grads:
        ref = ref_ftrl(ref[0], g, *ref[1:], lr, lr_power, l1, l2, shrinkage, beta, keep)
        l2_total = dtype(l2) + dtype(beta) / (dtype(2) * dtype(lr))
        K.ftrl_update(
            param, g, acc, lin, dtype(lr), dtype(-lr_power), dtype(l1), l2_total,
            dtype(2 * shrinkage), dtype(keep),
        )  # fmt: skip
        _check([param, acc, lin], ref, dtype)


@cases
@given(
    n=sizes,
    seed=seeds,
    dtype=dtypes,
    lr=st.floats(1e-4, 0.1),
    momentum=st.sampled_from([0.0, 0.9]),
    centered=st.booleans(),
    keep=keeps,
)
def test_rmsprop(n, seed, dtype, lr, momentum, centered, keep):
    rho, eps = 0.9, 1e-7
    param, grads, (vel, avg, mom) = _state(seed, n, dtype, 3)
    ref = [param.copy(), vel.copy(), avg.copy(), mom.copy()]
    for g in grads:
        ref = ref_rmsprop(ref[0], g, *ref[1:], lr, rho, momentum, eps, centered, keep)
        K.rmsprop_update(
            param, g, vel, avg, mom, dtype(lr), rho, dtype(momentum), dtype(eps), centered,
            dtype(keep),
        )  # fmt: skip
        _check([param, vel, avg, mom], ref, dtype)


@cases
@given(n=sizes, seed=seeds, dtype=dtypes, momentum=st.sampled_from([0.0, 0.99, 0.5]))
def test_ema(n, seed, dtype, momentum):
    rng = np.random.default_rng(seed)
    average, param = rng.normal(size=(2, n)).astype(dtype)
    want = dtype(momentum) * average + (dtype(1) - dtype(momentum)) * param
    K.ema_update(average, param, dtype(momentum))
    _check([average], [want], dtype)


def test_updates_are_in_place_on_reshaped_views():
    w = np.ones((3, 4), np.float32)
    flat = w.reshape(-1)
    K.sgd_update(flat, np.ones(12, np.float32), np.float32(0.5), np.float32(1))
    np.testing.assert_array_equal(w, 0.5)


def test_keep_decays_before_the_step():
    p = np.full(4, 2.0)
    K.sgd_update(p, np.ones(4), 0.1, 0.5)
    np.testing.assert_allclose(p, 2.0 * 0.5 - 0.1)


def test_unused_slots_may_be_empty():
    p = np.ones(5)
    K.rmsprop_update(
        p, np.ones(5), np.zeros(5), np.empty(0), np.empty(0), 0.1, 0.9, 0.0, 1e-7, False, 1.0
    )
    np.testing.assert_allclose(p, 1 - 0.1 / np.sqrt(0.1 + 1e-7))


def test_lion_sign_of_zero_is_zero():
    p, m = np.ones(3), np.zeros(3)
    K.lion_update(p, np.array([0.0, 1.0, -1.0]), m, 0.5, 0.9, 0.99, 1.0)
    np.testing.assert_array_equal(p, [1.0, 0.5, 1.5])


def _float32_args(name):
    f = np.float32
    a = [np.ones(8, f) for _ in range(5)]
    one = f(1)
    # Decay rates are Python floats by contract (1 - beta is formed in float64, then cast).
    return {
        "sgd_update": (a[0], a[1], f(0.1), one),
        "sgd_momentum_update": (a[0], a[1], a[2], f(0.1), f(0.9), True, one),
        "adam_update": (*a[:4], f(0.1), 0.9, 0.999, f(1e-7), one),
        "adam_amsgrad_update": (*a, f(0.1), 0.9, 0.999, f(1e-7), one),
        "nadam_update": (*a[:4], 0.9, 0.999, f(0.5), f(0.5), f(0.1), f(0.1), f(1e-7), one),
        "adamax_update": (*a[:4], f(0.1), 0.9, 0.999, f(0.1), f(1e-7), one),
        "adagrad_update": (*a[:3], f(0.1), f(1e-7), one),
        "adadelta_update": (*a[:4], f(0.1), 0.95, f(1e-7), one),
        "lion_update": (*a[:3], f(0.1), 0.9, 0.99, one),
        "ftrl_update": (*a[:4], f(0.1), f(0.5), f(0), f(0), f(0), one),
        "rmsprop_update": (*a, f(0.1), 0.9, f(0.9), f(1e-7), True, one),
        "ema_update": (a[0], a[1], f(0.99)),
    }[name]


@pytest.mark.parametrize(
    "name",
    [
        "sgd_update",
        "sgd_momentum_update",
        "adam_update",
        "adam_amsgrad_update",
        "nadam_update",
        "adamax_update",
        "adagrad_update",
        "adadelta_update",
        "lion_update",
        "ftrl_update",
        "rmsprop_update",
        "ema_update",
    ],
)
def test_float32_stays_float32(name):
    assert float64_ops(getattr(K, name), *_float32_args(name)) == []
