"""Fused in-place optimizer updates over flat 1-D arrays, one pass per parameter tensor.

The caller passes contiguous ``a.reshape(-1)`` views of the parameter, its gradient and its
slots, all of one dtype. Scalars are cast to that dtype inside the kernels, so a Python float
never promotes float32 math, with one deliberate exception: the decay rates ``beta_1``,
``beta_2`` and ``rho`` should be passed as Python floats, because the kernels form ``1 - beta``
in float64 and then cast, as Keras does (``ops.multiply(x, 1 - self.beta_2)``): in float32,
``1 - float32(0.999)`` is off by 1.3e-5 relative. The math is Keras 3's, step for step
(keras/src/optimizers/sgd.py, adam.py, rmsprop.py).

``error_model="numpy"`` matters: with Numba's default Python error model the division cannot be
vectorized and 1M float32 Adam steps took 3.9 ms instead of 0.65 ms. ``PARALLEL`` is off: prange
made that 0.35 ms on 2 cores, but the update is O(params) once per batch (a few % of
a training step), most tensors are small (biases), and with another busy process on the machine
each parallel launch could stall for a scheduler slice (~32 ms measured). The ``prange`` loops
run serially until it is switched on.
"""

import numpy as np
from numba import njit, prange

PARALLEL = False


@njit(cache=True, error_model="numpy")
def sgd_update(param, grad, lr):
    """param -= lr * grad; param, grad (n,)."""
    a = param.dtype.type(lr)
    for i in range(param.shape[0]):
        param[i] -= grad[i] * a


@njit(cache=True, error_model="numpy")
def sgd_momentum_update(param, grad, velocity, lr, momentum, nesterov):
    """v = momentum*v - lr*g; param += v (nesterov: momentum*v - lr*g); all arrays (n,)."""
    a = param.dtype.type(lr)
    mu = param.dtype.type(momentum)
    for i in range(param.shape[0]):
        step = grad[i] * a
        v = velocity[i] * mu - step
        velocity[i] = v
        param[i] += v * mu - step if nesterov else v


@njit(cache=True, parallel=PARALLEL, error_model="numpy")
def adam_update(param, grad, m, v, alpha, beta_1, beta_2, epsilon):
    """Keras Adam, alpha = lr*sqrt(1-beta_2**t)/(1-beta_1**t) from the caller; all arrays (n,)."""
    a = param.dtype.type(alpha)
    c1 = param.dtype.type(np.float64(1) - beta_1)
    c2 = param.dtype.type(np.float64(1) - beta_2)
    eps = param.dtype.type(epsilon)
    for i in prange(param.shape[0]):
        g = grad[i]
        mi = m[i] + (g - m[i]) * c1
        vi = v[i] + (g * g - v[i]) * c2
        m[i] = mi
        v[i] = vi
        param[i] -= mi * a / (np.sqrt(vi) + eps)


@njit(cache=True, parallel=PARALLEL, error_model="numpy")
def adam_amsgrad_update(param, grad, m, v, v_hat, alpha, beta_1, beta_2, epsilon):
    """Adam with AMSGrad: v_hat = max(v_hat, v) replaces v in the step; all arrays (n,)."""
    a = param.dtype.type(alpha)
    c1 = param.dtype.type(np.float64(1) - beta_1)
    c2 = param.dtype.type(np.float64(1) - beta_2)
    eps = param.dtype.type(epsilon)
    for i in prange(param.shape[0]):
        g = grad[i]
        mi = m[i] + (g - m[i]) * c1
        vi = v[i] + (g * g - v[i]) * c2
        vh = max(v_hat[i], vi)
        m[i] = mi
        v[i] = vi
        v_hat[i] = vh
        param[i] -= mi * a / (np.sqrt(vh) + eps)


@njit(cache=True, parallel=PARALLEL, error_model="numpy")
def rmsprop_update(
    param, grad, velocity, average_grad, momentum_buf, lr, rho, momentum, epsilon, centered
):
    """Keras RMSprop (eps in the sqrt); average_grad used if centered, momentum_buf if momentum."""
    a = param.dtype.type(lr)
    r = param.dtype.type(rho)
    c = param.dtype.type(np.float64(1) - rho)
    mu = param.dtype.type(momentum)
    eps = param.dtype.type(epsilon)
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
            param[i] -= mb
        else:
            param[i] -= increment
