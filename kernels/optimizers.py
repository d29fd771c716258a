"""Fused in-place optimizer updates over flat 1-D arrays, one pass per parameter tensor.

The caller passes contiguous ``a.reshape(-1)`` views of the parameter, its gradient and its
slots, all of one dtype. Scalars are cast to that dtype inside the kernels, so a Python float
never promotes float32 math, with one deliberate exception: the decay rates (``beta_1``,
``beta_2``, ``rho``) should be passed as Python floats, because the kernels form ``1 - beta``
in float64 and then cast, as Keras does (``ops.multiply(x, 1 - self.beta_2)``): in float32,
``1 - float32(0.999)`` is off by 1.3e-5 relative. The math is Keras 3's on its torch backend,
step for step (keras/src/optimizers/*.py, keras/src/backend/torch/optimizers/*.py).

Every update first scales the parameter by ``keep`` (``1 - weight_decay * lr``, the decoupled
weight decay Keras applies before the step; 1 when there is none, which changes nothing), so
decay and step are one pass.

``error_model="numpy"`` matters: with Numba's default Python error model the division cannot be
vectorized and 1M float32 Adam steps took 3.9 ms instead of 0.65 ms. ``PARALLEL`` is off: prange
made that 0.35 ms on 2 cores, but the update is O(params) once per batch (a few % of
a training step), most tensors are small (biases), and with another busy process on the machine
each parallel launch could stall for a scheduler slice (~32 ms measured). The ``prange`` loops
run serially until it is switched on; instead the optimizers update a large tensor in blocks on
fastnn's own threads (``Optimizer._update_all``), which the kernels allow by releasing the GIL.
"""

import numpy as np
from numba import njit, prange

PARALLEL = False


@njit(cache=True, nogil=True, error_model="numpy")
def sgd_update(param, grad, lr, keep):
    """param = param*keep - lr*grad; param, grad (n,)."""
    a = param.dtype.type(lr)
    k = param.dtype.type(keep)
    for i in range(param.shape[0]):
        param[i] = param[i] * k - grad[i] * a


@njit(cache=True, nogil=True, error_model="numpy")
def sgd_momentum_update(param, grad, velocity, lr, momentum, nesterov, keep):
    """v = momentum*v - lr*g; param = param*keep + v (nesterov: momentum*v - lr*g); all (n,)."""
    a = param.dtype.type(lr)
    mu = param.dtype.type(momentum)
    k = param.dtype.type(keep)
    for i in range(param.shape[0]):
        step = grad[i] * a
        v = velocity[i] * mu - step
        velocity[i] = v
        param[i] = param[i] * k + (v * mu - step if nesterov else v)


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon, keep):
    """Keras Adam, alpha = lr*sqrt(1-beta_2**t)/(1-beta_1**t) from the caller; all arrays (n,)."""
    a = param.dtype.type(alpha)
    c1 = param.dtype.type(np.float64(1) - beta_1)
    c2 = param.dtype.type(np.float64(1) - beta_2)
    eps = param.dtype.type(epsilon)
    k = param.dtype.type(keep)
    for i in prange(param.shape[0]):
        g = grad[i]
        mi = m[i] + (g - m[i]) * c1
        vi = v[i] + (g * g - v[i]) * c2
        m[i] = mi
        v[i] = vi
        param[i] = param[i] * k - mi * a / (np.sqrt(vi) + eps)


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def adam_amsgrad_update(param, grad, m, v, v_hat, alpha, beta_1, beta_2, epsilon, keep):
    """Adam with AMSGrad: v_hat = max(v_hat, v) replaces v in the step; all arrays (n,)."""
    a = param.dtype.type(alpha)
    c1 = param.dtype.type(np.float64(1) - beta_1)
    c2 = param.dtype.type(np.float64(1) - beta_2)
    eps = param.dtype.type(epsilon)
    k = param.dtype.type(keep)
    for i in prange(param.shape[0]):
        g = grad[i]
        mi = m[i] + (g - m[i]) * c1
        vi = v[i] + (g * g - v[i]) * c2
        vh = max(v_hat[i], vi)
        m[i] = mi
        v[i] = vi
        v_hat[i] = vh
        param[i] = param[i] * k - mi * a / (np.sqrt(vh) + eps)


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def nadam_update(param, grad, m, v, beta_1, beta_2, m_scale, g_scale, v_divisor, lr, epsilon, keep):
    """Keras Nadam: m_hat = m_scale*m + g_scale*g, v_hat = v/v_divisor (the step's bias
    corrections from the caller); param -= lr*m_hat/(sqrt(v_hat)+eps); all arrays (n,)."""
    dt = param.dtype.type
    b1, c1 = dt(beta_1), dt(np.float64(1) - beta_1)
    b2, c2 = dt(beta_2), dt(np.float64(1) - beta_2)
    sm, sg, dv = dt(m_scale), dt(g_scale), dt(v_divisor)
    a, eps, k = dt(lr), dt(epsilon), dt(keep)
    for i in prange(param.shape[0]):
        g = grad[i]
        mi = m[i] * b1 + g * c1
        vi = v[i] * b2 + g * g * c2
        m[i] = mi
        v[i] = vi
        m_hat = mi * sm + g * sg
        param[i] = param[i] * k - m_hat * a / (np.sqrt(vi / dv) + eps)


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def adamax_update(param, grad, m, u, lr, beta_1, beta_2, bias_correction, epsilon, keep):
    """Keras Adamax: u = max(beta_2*u, |g|); param -= lr*m/((u+eps)*(1-beta_1**t)), the
    last factor ``bias_correction`` from the caller; all arrays (n,)."""
    dt = param.dtype.type
    b1, c1, b2 = dt(beta_1), dt(np.float64(1) - beta_1), dt(beta_2)
    a, c, eps, k = dt(lr), dt(bias_correction), dt(epsilon), dt(keep)
    for i in prange(param.shape[0]):
        g = grad[i]
        mi = m[i] * b1 + g * c1
        ui = max(u[i] * b2, abs(g))
        m[i] = mi
        u[i] = ui
        param[i] = param[i] * k - mi * a / ((ui + eps) * c)


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def adagrad_update(param, grad, accumulator, lr, epsilon, keep):
    """Keras Adagrad: acc += g**2; param -= lr*g/sqrt(acc+eps); all arrays (n,)."""
    dt = param.dtype.type
    a, eps, k = dt(lr), dt(epsilon), dt(keep)
    for i in prange(param.shape[0]):
        g = grad[i]
        acc = accumulator[i] + g * g
        accumulator[i] = acc
        param[i] = param[i] * k - g * a / np.sqrt(acc + eps)


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def adadelta_update(param, grad, accumulated_grad, accumulated_delta, lr, rho, epsilon, keep):
    """Keras Adadelta: delta = -sqrt(acc_delta+eps)/sqrt(acc_grad+eps)*g; param += lr*delta;
    both accumulators are running means of squares (rho); all arrays (n,)."""
    dt = param.dtype.type
    r, c = dt(rho), dt(np.float64(1) - rho)
    a, eps, k = dt(lr), dt(epsilon), dt(keep)
    for i in prange(param.shape[0]):
        g = grad[i]
        acc_g = accumulated_grad[i] * r + g * g * c
        accumulated_grad[i] = acc_g
        delta = -(np.sqrt(accumulated_delta[i] + eps) * g / np.sqrt(acc_g + eps))
        accumulated_delta[i] = accumulated_delta[i] * r + delta * delta * c
        param[i] = param[i] * k + delta * a


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def lion_update(param, grad, m, lr, beta_1, beta_2, keep):
    """Keras Lion: param -= lr*sign(beta_1*m + (1-beta_1)*g); m = beta_2*m + (1-beta_2)*g;
    all arrays (n,)."""
    dt = param.dtype.type
    b1, c1 = dt(beta_1), dt(np.float64(1) - beta_1)
    b2, c2 = dt(beta_2), dt(np.float64(1) - beta_2)
    a, k = dt(lr), dt(keep)
    zero = dt(0)
    for i in prange(param.shape[0]):
        g = grad[i]
        c = m[i] * b1 + g * c1
        step = a if c > zero else (-a if c < zero else zero)
        param[i] = param[i] * k - step
        m[i] = m[i] * b2 + g * c2


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def ftrl_update(param, grad, accumulator, linear, lr, power, l1, l2, shrinkage, keep):
    """Keras Ftrl with ``power = -learning_rate_power``, ``l2`` the L2 strength plus
    ``beta / (2 * lr)`` and ``shrinkage`` twice the L2-shrinkage strength; all arrays (n,)."""
    dt = param.dtype.type
    a, p, l1_, l2_, s, k = dt(lr), dt(power), dt(l1), dt(l2), dt(shrinkage), dt(keep)
    two = dt(2)
    square_root = power == 0.5  # Keras's default; torch's pow(x, 0.5) is a square root
    for i in prange(param.shape[0]):
        w = param[i] * k
        g = grad[i]
        acc = accumulator[i]
        new_acc = acc + g * g
        if square_root:
            new_pow, old_pow = np.sqrt(new_acc), np.sqrt(acc)
        else:
            new_pow, old_pow = new_acc**p, acc**p
        lin = linear[i] + ((g + s * w) - (new_pow - old_pow) / a * w)
        quadratic = new_pow / a + two * l2_
        clipped = min(max(lin, -l1_), l1_)
        linear[i] = lin
        accumulator[i] = new_acc
        param[i] = (clipped - lin) / quadratic


@njit(cache=True, parallel=PARALLEL, nogil=True, error_model="numpy")
def rmsprop_update(
    param, grad, velocity, average_grad, momentum_buf, lr, rho, momentum, epsilon, centered, keep
):
    """Keras RMSprop (eps in the sqrt); average_grad used if centered, momentum_buf if momentum."""
    a = param.dtype.type(lr)
    r = param.dtype.type(rho)
    c = param.dtype.type(np.float64(1) - rho)
    mu = param.dtype.type(momentum)
    eps = param.dtype.type(epsilon)
    k = param.dtype.type(keep)
    use_momentum = mu > 0
    for i in prange(param.shape[0]):
        g = grad[i]
        vel = r * velocity[i] + c * (g * g)
        velocity[i] = vel
        if centered:
            avg = r * average_grad[i] + c * g
            average_grad[i] = avg
            denom = vel - avg * avg + eps
        else:
            denom = vel + eps
        increment = a * g / np.sqrt(denom)
        if use_momentum:
            mb = mu * momentum_buf[i] + increment
            momentum_buf[i] = mb
            param[i] = param[i] * k - mb
        else:
            param[i] = param[i] * k - increment


@njit(cache=True, nogil=True, error_model="numpy")
def ema_update(average, param, momentum):
    """average = momentum*average + (1-momentum)*param (Keras's use_ema); both (n,)."""
    mu = average.dtype.type(momentum)
    c = average.dtype.type(1) - mu
    for i in range(average.shape[0]):
        average[i] = mu * average[i] + c * param[i]
