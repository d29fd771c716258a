"""The Adam family: Adam (and AMSGrad), AdamW, Nadam and Adamax, as Keras 3."""

from __future__ import annotations

import math

import numpy as np

from fastnn import kernels
from fastnn.optimizers.base import Optimizer, check_number


class Adam(Optimizer):
    """Adam (Kingma & Ba) as Keras 3, with ``epsilon`` outside the square root; optional AMSGrad."""

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
            ema_momentum, ema_overwrite_frequency, loss_scale_factor,
            gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip
        _check_betas(beta_1, beta_2, epsilon)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.amsgrad = bool(amsgrad)
        groups = (("momentum", "velocity"),)
        self.slot_groups = groups + ((("velocity_hat",),) if self.amsgrad else ())

    def _step_constants(self, dt, lr):
        # Keras computes the bias correction in the variable's dtype.
        step = dt(self.iterations + 1)
        beta_1_power = dt(self.beta_1) ** step
        beta_2_power = dt(self.beta_2) ** step
        alpha = dt(lr) * np.sqrt(dt(1) - beta_2_power) / (dt(1) - beta_1_power)
        return alpha, dt(self.epsilon)

    def _update(self, param, grad, slots, constants, keep):
        alpha, eps = constants
        if self.amsgrad:
            kernels.optimizers.adam_amsgrad_update(
                param, grad, *slots, alpha, self.beta_1, self.beta_2, eps, keep
            )
        else:
            kernels.optimizers.adam_update(
                param, grad, *slots, alpha, self.beta_1, self.beta_2, eps, keep
            )

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as Keras 3: Adam whose
    ``weight_decay`` defaults to 0.004 and may not be None."""

    def __init__(
        self,
        learning_rate=0.001,
        weight_decay=0.004,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(
            learning_rate, beta_1, beta_2, epsilon, amsgrad, weight_decay, clipnorm, clipvalue,
            global_clipnorm, use_ema, ema_momentum, ema_overwrite_frequency,
            loss_scale_factor, gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip


class Nadam(Optimizer):
    """Nadam (Dozat, 2015) as Keras 3: Adam with Nesterov momentum, the momentum schedule
    ``u_t = beta_1 * (1 - 0.5 * 0.96 ** t)`` and its running product as state."""

    slot_groups = (("momentum", "velocity"),)

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
            ema_momentum, ema_overwrite_frequency, loss_scale_factor,
            gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip
        _check_betas(beta_1, beta_2, epsilon)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self._momentum_schedule = None  # this update's (u_t, u_t+1, products), in _begin_update

    def _build_extra(self, variables):
        # Keras's `_u_product`: a scalar of the first variable's dtype.
        dtype = np.asarray(variables[0].value).dtype if variables else np.float32
        return [np.array(1.0, dtype)]

    def _extra_paths(self):
        return [f"{self.name}/variable"]  # Keras names it so, apart from the slots

    def _begin_update(self):
        u_product = self._extra[0]
        dt = u_product.dtype.type
        decay, beta_1 = dt(0.96), dt(self.beta_1)
        u_t = beta_1 * (dt(1) - dt(0.5) * decay ** dt(self.iterations + 1))
        u_next = beta_1 * (dt(1) - dt(0.5) * decay ** dt(self.iterations + 2))
        product = dt(u_product * u_t)
        u_product[...] = product
        self._momentum_schedule = (u_t, u_next, product, product * u_next)

    def _step_constants(self, dt, lr):
        u_t, u_next, product, product_next = (dt(x) for x in self._momentum_schedule)
        m_scale = u_next / (dt(1) - product_next)
        g_scale = (dt(1) - u_t) / (dt(1) - product)
        v_divisor = dt(1) - dt(self.beta_2) ** dt(self.iterations + 1)
        return m_scale, g_scale, v_divisor, dt(lr), dt(self.epsilon)

    def _update(self, param, grad, slots, constants, keep):
        m, v = slots
        kernels.optimizers.nadam_update(
            param, grad, m, v, self.beta_1, self.beta_2, *constants, keep
        )

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


class Adamax(Optimizer):
    """Adamax (Kingma & Ba, section 7.1) as Keras 3: Adam with the infinity norm,
    ``u = max(beta_2 * u, |g|)``; ``w -= lr * m / ((u + epsilon) * (1 - beta_1 ** t))``."""

    slot_groups = (("momentum", "norm"),)

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        super().__init__(
            learning_rate, weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema,
            ema_momentum, ema_overwrite_frequency, loss_scale_factor,
            gradient_accumulation_steps, name, **kwargs,
        )  # fmt: skip
        _check_betas(beta_1, beta_2, epsilon)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)

    def _step_constants(self, dt, lr):
        bias_correction = dt(1) - dt(self.beta_1) ** dt(self.iterations + 1)
        return dt(lr), bias_correction, dt(self.epsilon)

    def _update(self, param, grad, slots, constants, keep):
        lr, bias_correction, eps = constants
        m, u = slots
        kernels.optimizers.adamax_update(
            param, grad, m, u, lr, self.beta_1, self.beta_2, bias_correction, eps, keep
        )

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
        }


def _check_betas(beta_1, beta_2, epsilon) -> None:
    check_number("beta_1", beta_1, 0.0, 1.0, upper_open=True)
    check_number("beta_2", beta_2, 0.0, 1.0, upper_open=True)
    check_number("epsilon", epsilon, 0.0, math.inf)
