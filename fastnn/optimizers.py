"""Optimizers with Keras 3 names, defaults and update math, applied in place by fused kernels.

The training loop calls ``optimizer.apply(variables)``: each variable has ``.value`` (a numpy
array, updated in place, never rebound) and ``.grad`` (same shape). Slots (momenta, velocities)
are created on the first call, for the variables of that call; later calls may pass those
variables or a subset of them, in any order. ``iterations`` counts calls to ``apply``.

>>> import numpy as np
>>> from types import SimpleNamespace
>>> w = SimpleNamespace(value=np.ones(3, np.float32), grad=np.full(3, 0.5, np.float32))
>>> opt = get("adam")
>>> opt.apply([w])
>>> opt.iterations
1
"""

from __future__ import annotations

import math
import re

import numpy as np

from fastnn import kernels
from fastnn.saving.registry import register_builtins

# Keras base-optimizer arguments accepted only at their inactive value, so Keras configs load.
_INACTIVE = {
    "use_ema": False,
    "ema_overwrite_frequency": None,
    "loss_scale_factor": None,
    "gradient_accumulation_steps": None,
}


class Optimizer:
    """Base class: learning rate, clipping, weight decay, slots and state; subclasses add the step.

    Args:
        learning_rate: non-negative float, or a callable ``schedule(iterations) -> float``.
        weight_decay: if set, each step first does ``value -= value * weight_decay * lr``.
        clipnorm: clip each gradient to this L2 norm.
        clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: clip all gradients together to this global L2 norm.
        name: defaults to the snake-cased class name, as in Keras.
    """

    # Slot names in Keras's variable order: groups in order, each group interleaved per variable.
    slot_groups: tuple = ()

    def __init__(
        self,
        learning_rate,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        name=None,
        ema_momentum=0.99,
        **kwargs,
    ):
        for key, inactive in _INACTIVE.items():
            if kwargs.pop(key, inactive) != inactive:
                raise ValueError(f"Argument `{key}` is not supported by fastnn optimizers.")
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        clip_args = [clipnorm, clipvalue, global_clipnorm]
        if sum(a is not None for a in clip_args) > 1:
            raise ValueError(
                "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` can be set. "
                f"Received: clipnorm={clipnorm}, clipvalue={clipvalue}, "
                f"global_clipnorm={global_clipnorm}"
            )
        for arg, value in [
            ("weight_decay", weight_decay),
            ("clipnorm", clipnorm),
            ("clipvalue", clipvalue),
            ("global_clipnorm", global_clipnorm),
        ]:
            if value is not None:
                _check_number(arg, value, 0.0, math.inf)
        self.name = name or _snake(type(self).__name__)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.ema_momentum = ema_momentum
        self.iterations = 0
        self.built = False
        self._variables = []
        self._index = {}
        self._slots = {}

    # ---- learning rate ----

    @property
    def learning_rate(self) -> float:
        """The current learning rate (a schedule is evaluated at ``iterations``)."""
        if callable(self._learning_rate):
            return float(self._learning_rate(self.iterations))
        return self._learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value):
            self._learning_rate = value
            return
        _check_number(
            "learning_rate",
            value,
            0.0,
            math.inf,
            "a non-negative float, or a callable (that takes in the current iteration value "
            "and returns the corresponding learning rate value)",
        )
        self._learning_rate = float(value)

    # ---- building and applying ----

    def build(self, variables) -> None:
        """Create the slots for ``variables`` (done by the first ``apply`` if not called)."""
        if self.built:
            return
        variables = list(variables)
        n = len(variables)
        self._variables = variables
        self._index = {id(v): i for i, v in enumerate(variables)}
        if len(self._index) != len(variables):
            raise ValueError(f"{type(self).__name__}.build(): the same variable is listed twice")
        self._slots = {
            name: [np.zeros(np.shape(v.value), np.asarray(v.value).dtype) for v in variables]
            for group in self.slot_groups
            for name in group
        }
        names = [name for group in self.slot_groups for name in group]
        self._flat_slots = [[self._slots[name][i].reshape(-1) for name in names] for i in range(n)]
        self.built = True

    def apply(self, grads, trainable_variables=None) -> None:
        """One step: Keras's ``apply(grads, trainable_variables)`` (the variables it was built on
        when None), or ``apply(variables)`` on their ``.grad`` (what fit() does), or
        ``apply(variables, grads)``.

        Variables whose gradient is None are skipped. Nothing is updated if any argument is bad.
        """
        first = list(grads)
        if trainable_variables is None and (not first or _holds_variables(first)):
            variables, grads = first, [v.grad for v in first]  # apply(variables)
        elif trainable_variables is None:
            if not self.built:
                raise ValueError(
                    f"{type(self).__name__}.apply(grads): give the variables on the first call "
                    "(apply(grads, trainable_variables)), or build(variables) first"
                )
            variables, grads = list(self._variables), first
        elif _holds_variables(first) and not _holds_variables(list(trainable_variables)):
            variables, grads = first, list(trainable_variables)  # apply(variables, grads)
        else:
            variables, grads = list(trainable_variables), first
        self._apply(variables, grads)

    def apply_own_gradients(self, variables: list) -> None:
        """One step on ``variables`` from their ``.grad`` (fit()'s step)."""
        self._apply(variables, [v.grad for v in variables], arrays=True)

    def _apply(self, variables: list, grads: list, arrays: bool = False) -> None:
        if len(grads) != len(variables):
            raise ValueError(
                f"{type(self).__name__}.apply(): got {len(grads)} gradients for "
                f"{len(variables)} variables"
            )
        if not variables:  # a model without trainable weights: nothing to do, as in Keras
            self.iterations += 1
            return
        if not arrays:
            grads = [g if g is None or type(g) is np.ndarray else _as_grad(g) for g in grads]
        self.build(variables)
        pairs = [(v, g) for v, g in zip(variables, grads, strict=True) if g is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        indices = [self._known_index(v) for v, _ in pairs]
        prepared = self._clip([self._checked_grad(v, g) for v, g in pairs])
        lr = self.learning_rate
        constants = {}  # per dtype: the step's scalars, as the kernels take them
        for i, g in zip(indices, prepared, strict=True):
            value = self._variables[i].value
            dtype = value.dtype
            if self.weight_decay:
                value -= value * dtype.type(self.weight_decay) * dtype.type(lr)
            if dtype not in constants:
                constants[dtype] = self._step_constants(dtype.type, lr)
            flat = _flat(value)
            self._update(flat, g.reshape(-1), self._flat_slots[i], constants[dtype])
            if not value.flags.c_contiguous:  # _flat made a copy
                value[...] = flat.reshape(value.shape)
        self.iterations += 1

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras-style: ``apply_gradients(zip(grads, variables))``."""
        pairs = list(grads_and_vars)
        grads, variables = ([p[0] for p in pairs], [p[1] for p in pairs])
        self._apply(variables, grads)

    def _known_index(self, v) -> int:
        """The index of ``v`` among the variables this optimizer was built for."""
        i = self._index.get(id(v))
        if i is None or self._variables[i] is not v:
            raise ValueError(
                f"{type(self).__name__}.apply(): unknown variable {_describe(v)}. This "
                f"optimizer was built for {len(self._variables)} variables and can only "
                "update those; create a new optimizer for a new set of variables."
            )
        return i

    def _checked_grad(self, v, g) -> np.ndarray:
        """``g`` as a C-contiguous array of ``v.value``'s dtype, after checking both."""
        value = v.value
        if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
            raise TypeError(
                f"{type(self).__name__}.apply(): variable {_describe(v)} must hold a float "
                f"numpy array; got {type(value).__name__}"
                + (f" of dtype {value.dtype}" if isinstance(value, np.ndarray) else "")
            )
        if not value.flags.writeable:
            raise ValueError(f"{type(self).__name__}.apply(): {_describe(v)} is read-only")
        g = np.asarray(g)
        if g.shape != value.shape:
            raise ValueError(
                f"{type(self).__name__}.apply(): gradient of {_describe(v)} has shape "
                f"{g.shape}, expected the variable's shape {value.shape}"
            )
        if g.dtype != value.dtype or not g.flags.c_contiguous:
            g = np.ascontiguousarray(g, dtype=value.dtype)
        return g

    def _step_constants(self, dt, lr) -> tuple:
        """This step's scalars for variables of dtype type ``dt``, as ``_update`` takes them."""
        raise NotImplementedError

    def _update(self, param, grad, slots, constants) -> None:
        """Update flat ``param`` in place from ``grad``; slots in ``slot_groups`` order."""
        raise NotImplementedError

    def _clip(self, grads):
        if self.clipnorm:
            out = []
            for g in grads:
                norm = np.sqrt(np.sum(np.square(g)))
                out.append(g * g.dtype.type(self.clipnorm) / max(norm, g.dtype.type(self.clipnorm)))
            return out
        if self.global_clipnorm:
            norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
            scale = self.global_clipnorm * min(
                1.0 / norm if norm else math.inf, 1.0 / self.global_clipnorm
            )
            scale += norm - norm  # NaN/inf norms make the scale NaN, as in Keras
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue).astype(g.dtype) for g in grads]
        return grads

    # ---- state ----

    @property
    def variables(self) -> list:
        """Keras's order: iterations, learning rate, then the slots (live arrays)."""
        state = [np.array(self.iterations, np.int64), np.array(self.learning_rate, np.float32)]
        if self.built:
            n = len(self._variables)
            for group in self.slot_groups:
                state += [self._slots[name][i] for i in range(n) for name in group]
        return state

    def get_state(self) -> list:
        """Copies of ``variables``: iterations, learning rate, slots (for saving)."""
        return [np.array(a, copy=True) for a in self.variables]

    def set_state(self, state) -> None:
        """Restore ``get_state()`` output; the optimizer must be built on matching variables."""
        state = [np.asarray(a) for a in state]
        current = self.variables
        if len(state) != len(current):
            hint = "" if self.built else " (call build(variables) first)"
            raise ValueError(
                f"{type(self).__name__}.set_state(): expected {len(current)} arrays{hint}, "
                f"got {len(state)}"
            )
        for k, (have, new) in enumerate(zip(current, state, strict=True)):
            if have.shape != new.shape:
                raise ValueError(
                    f"{type(self).__name__}.set_state(): array {k} has shape {new.shape}, "
                    f"expected {have.shape}"
                )
        for have, new in zip(current[2:], state[2:], strict=True):
            have[...] = new
        self.iterations = int(state[0])
        if not callable(self._learning_rate):
            self.learning_rate = float(state[1])

    def get_config(self) -> dict:
        lr = self._learning_rate
        if callable(lr):
            lr = lr.get_config() if hasattr(lr, "get_config") else lr
        return {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": False,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": None,
            "loss_scale_factor": None,
            "gradient_accumulation_steps": None,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self.learning_rate}>"


class SGD(Optimizer):
    """Gradient descent with optional (Nesterov) momentum, as Keras 3:
    ``v = momentum * v - lr * g``; ``w += v`` (Nesterov: ``w += momentum * v - lr * g``).
    """

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)):
            raise ValueError("`momentum` must be a float between [0, 1].")
        if not 0 <= momentum <= 1:
            raise ValueError("`momentum` must be a float between [0, 1].")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.slot_groups = (("momentum",),) if self.momentum != 0 else ()

    def _step_constants(self, dt, lr):
        return dt(lr), dt(self.momentum)

    def _update(self, param, grad, slots, constants):
        lr, momentum = constants
        if self.momentum != 0:
            kernels.optimizers.sgd_momentum_update(
                param, grad, slots[0], lr, momentum, self.nesterov
            )
        else:
            kernels.optimizers.sgd_update(param, grad, lr)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba) as Keras 3, with ``epsilon`` outside the square root; optional AMSGrad."""

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-7,
        amsgrad=False,
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        _check_number("beta_1", beta_1, 0.0, 1.0, upper_open=True)
        _check_number("beta_2", beta_2, 0.0, 1.0, upper_open=True)
        _check_number("epsilon", epsilon, 0.0, math.inf)
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

    def _update(self, param, grad, slots, constants):
        alpha, eps = constants
        if self.amsgrad:
            kernels.optimizers.adam_amsgrad_update(
                param, grad, *slots, alpha, self.beta_1, self.beta_2, eps
            )
        else:
            kernels.optimizers.adam_update(
                param, grad, *slots, alpha, self.beta_1, self.beta_2, eps
            )

    def get_config(self):
        return {
            **super().get_config(),
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "amsgrad": self.amsgrad,
        }


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
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, **kwargs)
        _check_number("rho", rho, 0.0, 1.0)
        _check_number("momentum", momentum, 0.0, 1.0)
        _check_number("epsilon", epsilon, 0.0, math.inf)
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

    def _update(self, param, grad, slots, constants):
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
        )

    def get_config(self):
        return {
            **super().get_config(),
            "rho": self.rho,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "centered": self.centered,
        }


_EMPTY = {np.dtype(t): np.empty(0, t) for t in (np.float32, np.float64)}

_CLASSES = {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop}


def valid_names() -> list[str]:
    return sorted(_CLASSES)


def serialize(optimizer: Optimizer) -> dict:
    """``{"class_name", "config"}`` of an optimizer (a learning-rate function cannot be saved)."""
    config = optimizer.get_config()
    if callable(config["learning_rate"]):
        raise ValueError(
            f"The learning rate of optimizer '{optimizer.name}' is a Python function "
            f"({config['learning_rate']!r}) and cannot be saved"
        )
    return {"class_name": type(optimizer).__name__, "config": config}


def get(identifier) -> Optimizer:
    """An optimizer from a name ('sgd', 'adam', 'rmsprop'; any case), a ``{"class_name",
    "config"}`` dict, an Optimizer class or an instance (returned as is).
    """
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Optimizer):
        return identifier()
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier.lower())
        if cls is None:
            raise ValueError(
                f"Could not interpret optimizer identifier: {identifier!r}. "
                f"Valid names: {valid_names()}"
            )
        return cls()
    if isinstance(identifier, dict):
        name = str(identifier.get("class_name", "")).lower()
        if name not in _CLASSES:
            raise ValueError(
                f"Could not interpret optimizer config {identifier!r}: unknown class_name. "
                f"Valid names: {valid_names()}"
            )
        return _CLASSES[name].from_config(identifier.get("config", {}))
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Pass a name "
        f"({valid_names()}) or an Optimizer instance."
    )


def _check_number(arg, value, lo, hi, expected=None, upper_open=False):
    ok = (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and lo <= value
        and (value < hi if upper_open else value <= hi)
    )
    if not ok:
        if expected is None:
            bounds = f"[{lo:g}, {hi:g}{')' if upper_open else ']'}"
            expected = f"a float in {bounds}" if hi != math.inf else f"a float >= {lo:g}"
        raise ValueError(
            f"Argument `{arg}` should be {expected}. Received instead: {arg}={value!r}"
        )


def _holds_variables(items: list) -> bool:
    """Whether ``items`` are variables (they carry ``.grad``), not gradients (the first says)."""
    return bool(items) and hasattr(items[0], "grad") and hasattr(items[0], "value")


def _as_grad(g):
    """A gradient as an array (a tape tensor's value)."""
    return g if isinstance(g, np.ndarray) else np.asarray(getattr(g, "value", g))


def _flat(a: np.ndarray) -> np.ndarray:
    """A 1-D view of a C-contiguous array (a copy otherwise; the caller writes it back)."""
    return a.reshape(-1) if a.flags.c_contiguous else a.ravel()


def _describe(v) -> str:
    path = getattr(v, "path", None) or getattr(v, "name", None)
    return repr(path) if path else f"<{type(v).__name__} at {id(v):#x}>"


def _snake(name: str) -> str:
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# Saved configs (fastnn.saving.deserialize_keras_object) may name these classes.
register_builtins({cls.__name__: cls for cls in _CLASSES.values()}, kind="optimizers")
