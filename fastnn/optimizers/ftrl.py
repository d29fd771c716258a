"""FTRL-Proximal (McMahan et al., 2013) as Keras 3."""

from __future__ import annotations

from fastnn import kernels
from fastnn.optimizers.base import Optimizer


class Ftrl(Optimizer):
    """Follow The Regularized Leader, as Keras 3: per coordinate ``n += g**2``,
    ``z += g - (n**-p - n_old**-p) / lr * w`` and ``w = (clip(z, +-l1) - z) / (n**-p / lr +
    2 * l2)``, with ``p = learning_rate_power``; L2 shrinkage adds ``2 * s * w`` to ``g``."""

    slot_groups = (("accumulator", "linear"),)

    def __init__(
        self,
        learning_rate=0.001,
        learning_rate_power=-0.5,
        initial_accumulator_value=0.1,
        l1_regularization_strength=0.0,
        l2_regularization_strength=0.0,
        l2_shrinkage_regularization_strength=0.0,
        beta=0.0,
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
        for arg, value, message in [
            ("initial_accumulator_value", initial_accumulator_value, "positive or zero"),
            ("learning_rate_power", -learning_rate_power, "negative or zero"),
            ("l1_regularization_strength", l1_regularization_strength, "positive or zero"),
            ("l2_regularization_strength", l2_regularization_strength, "positive or zero"),
            (
                "l2_shrinkage_regularization_strength",
                l2_shrinkage_regularization_strength,
                "positive or zero",
            ),
        ]:
            if value < 0.0:
                shown = -value if arg == "learning_rate_power" else value
                raise ValueError(f"`{arg}` needs to be {message}. Received: {arg}={shown}.")
        self.learning_rate_power = float(learning_rate_power)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.l1_regularization_strength = float(l1_regularization_strength)
        self.l2_regularization_strength = float(l2_regularization_strength)
        self.l2_shrinkage_regularization_strength = float(l2_shrinkage_regularization_strength)
        self.beta = float(beta)

    def _slot_initial_value(self, name):
        return self.initial_accumulator_value if name == "accumulator" else 0.0

    def _step_constants(self, dt, lr):
        # As Keras: beta / (2 * lr) joins the L2 strength, in the variable's dtype.
        l2 = dt(self.l2_regularization_strength) + dt(self.beta) / (dt(2) * dt(lr))
        return (
            dt(lr),
            dt(-self.learning_rate_power),
            dt(self.l1_regularization_strength),
            l2,
            dt(2 * self.l2_shrinkage_regularization_strength),
        )

    def _update(self, param, grad, slots, constants, keep):
        accumulator, linear = slots
        kernels.optimizers.ftrl_update(param, grad, accumulator, linear, *constants, keep)

    def get_config(self):
        return {
            **super().get_config(),
            "learning_rate_power": self.learning_rate_power,
            "initial_accumulator_value": self.initial_accumulator_value,
            "l1_regularization_strength": self.l1_regularization_strength,
            "l2_regularization_strength": self.l2_regularization_strength,
            "l2_shrinkage_regularization_strength": self.l2_shrinkage_regularization_strength,
            "beta": self.beta,
        }
