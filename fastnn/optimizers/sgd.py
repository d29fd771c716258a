"""Momentum optimizers: SGD (plain, momentum, Nesterov) and Lion (the sign of a momentum)."""

from __future__ import annotations

from fastnn import kernels
from fastnn.optimizers.base import Optimizer, check_number


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, as Keras 3:
    ``v = momentum * v - lr * g``; ``w += v`` (Nesterov: ``w += momentum * v - lr * g``).
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.0,
        nesterov=False,
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
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise ValueError("`momentum` must be a float between [0, 1].")
        if not 0 <= momentum <= 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slot_groups = (("momentum",),) if self.momentum != 0 else ()

    def _step_constants(self, dt, lr):
        return dt(lr), dt(self.momentum)

    def _update(self, param, grad, slots, constants, keep):
        lr, momentum = constants
        if self.momentum != 0:
            kernels.optimizers.sgd_momentum_update(
                param, grad, slots[0], lr, momentum, self.nesterov, keep
            )
        else:
            kernels.optimizers.sgd_update(param, grad, lr, keep)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Lion(Optimizer):
    """Lion (Chen et al., 2023) as Keras 3: ``w -= lr * sign(beta_1 * m + (1 - beta_1) * g)``,
    then ``m = beta_2 * m + (1 - beta_2) * g``."""

    slot_groups = (("momentum",),)

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.99,
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
        if not isinstance(beta_1, (int, float)) or beta_1 <= 0 or beta_1 > 1:
            raise ValueError(
                "Argument `beta_1` must be in the [0, 1] range. Otherwise, the optimizer "
                f"degenerates to SignSGD. Received: beta_1={beta_1}."
            )
        check_number("beta_2", beta_2, 0.0, 1.0)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)

    def _step_constants(self, dt, lr):
        return (dt(lr),)

    def _update(self, param, grad, slots, constants, keep):
        (lr,) = constants
        kernels.optimizers.lion_update(param, grad, slots[0], lr, self.beta_1, self.beta_2, keep)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2}
