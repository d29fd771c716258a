"""Step sizes from accumulated squared gradients: RMSprop, Adagrad and Adadelta, as Keras 3."""

from __future__ import annotations

import math

import numpy as np

from fastnn import kernels
from fastnn.optimizers.base import Optimizer, check_number


class RMSprop(Optimizer):
    """RMSprop as Keras 3: ``v = rho * v + (1 - rho) * g**2``; step ``lr * g / sqrt(v + eps)``
    (centered: ``v - mean(g)**2`` under the root); optional plain momentum on the step.
    """

    def __init__(
        self,
        learning_rate=0.001,
        rho=0.9,
        momentum=0.0,
        epsilon=1e-7,
        centered=False,
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
        check_number("rho", rho, 0.0, 1.0)
        check_number("momentum", momentum, 0.0, 1.0)
        check_number("epsilon", epsilon, 0.0, math.inf)
        self.rho = float(rho)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.centered = bool(centered)
        groups = [("velocity",)]
        if self.momentum > 0:
            groups.append(("momentum",))
        if self.centered:
            groups.append(("average_gradient",))
        self.slot_groups = tuple(groups)

    def _step_constants(self, dt, lr):
        return dt(lr), dt(self.momentum), dt(self.epsilon)

    def _update(self, param, grad, slots, constants, keep):
        lr, momentum, epsilon = constants
        velocity, rest = slots[0], slots[1:]
        empty = _EMPTY.get(param.dtype)
        momentum_buf = rest.pop(0) if self.momentum > 0 else empty
        average_grad = rest.pop(0) if self.centered else empty
        kernels.optimizers.rmsprop_update(
            param,
            grad,
            velocity,
            average_grad,
            momentum_buf,
            lr,
            self.rho,
            momentum,
            epsilon,
            self.centered,
            keep,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.) as Keras 3: ``acc += g**2``; ``w -= lr * g / sqrt(acc + eps)``,
    the accumulators starting at ``initial_accumulator_value``."""

    slot_groups = (("accumulator",),)

    def __init__(
        self,
        learning_rate=0.001,
        initial_accumulator_value=0.1,
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
        check_number("initial_accumulator_value", initial_accumulator_value, 0.0, math.inf)
        check_number("epsilon", epsilon, 0.0, math.inf)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def _slot_initial_value(self, name):
        return self.initial_accumulator_value

    def _step_constants(self, dt, lr):
        return dt(lr), dt(self.epsilon)

    def _update(self, param, grad, slots, constants, keep):
        lr, eps = constants
        kernels.optimizers.adagrad_update(param, grad, slots[0], lr, eps, keep)

    def get_config(self):
        return {
            **super().get_config(),
            "initial_accumulator_value": self.initial_accumulator_value,
            "epsilon": self.epsilon,
        }


class Adadelta(Optimizer):
    """Adadelta (Zeiler, 2012) as Keras 3: running means (``rho``) of squared gradients and
    squared updates set each step, ``delta = -sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) * g``;
    ``w += lr * delta``."""

    slot_groups = (("accumulated_grad", "accumulated_delta_var"),)

    def __init__(
        self,
        learning_rate=0.001,
        rho=0.95,
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
        check_number("rho", rho, 0.0, 1.0)
        check_number("epsilon", epsilon, 0.0, math.inf)
        self.rho = float(rho)
        self.epsilon = float(epsilon)

    def _step_constants(self, dt, lr):
        return dt(lr), dt(self.epsilon)

    def _update(self, param, grad, slots, constants, keep):
        lr, eps = constants
        accumulated_grad, accumulated_delta = slots
        kernels.optimizers.adadelta_update(
            param, grad, accumulated_grad, accumulated_delta, lr, self.rho, eps, keep
        )

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "epsilon": self.epsilon}


_EMPTY = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}
