"""The optimizer base class: Keras 3's arguments, learning rate, clipping, weight decay, EMA,
gradient accumulation, slots and state; subclasses add their fused update.

The training loop calls ``optimizer.apply(variables)``: each variable has ``.value`` (a numpy
array, updated in place, never rebound) and ``.grad`` (same shape); a variable's
``constraint``, if any, projects it after the update. Slots (momenta, velocities)
are created on the first call, for the variables of that call; later calls may pass those
variables or a subset of them, in any order. ``iterations`` counts calls to ``apply`` (updates,
with gradient accumulation).

>>> import numpy as np
>>> from types import SimpleNamespace
>>> from fastnn.optimizers import Adam
>>> w = SimpleNamespace(value=np.ones(3, np.float32), grad=np.full(3, 0.5, np.float32))
>>> opt = Adam()
>>> opt.apply([w])
>>> opt.iterations
1
"""

from __future__ import annotations

import inspect
import math
import re
import warnings

import numpy as np

from fastnn import constraints, kernels, runtime
from fastnn.ops.tensor import weights_written
from fastnn.optimizers.schedules import LearningRateSchedule
from fastnn.optimizers.schedules import deserialize as deserialize_schedule
from fastnn.optimizers.schedules import serialize as serialize_schedule

# From this many values in all, a step's updates run in blocks on fastnn's threads: waking a
# thread (50-100 us) must buy more than it costs (seed_cnn's 333k values measured 5% slower so;
# deep_mlp's 1.7M 8% faster).
SPLIT_MIN_VALUES = 1 << 20


class Optimizer:
    """Base class: learning rate, clipping, weight decay, EMA, accumulation, slots and state.

    Args:
        learning_rate: non-negative float, a ``LearningRateSchedule`` (called with the step), or
            a callable (called with no argument, as Keras, or with the step if it takes one).
        weight_decay: if set, each update first does ``value *= 1 - weight_decay * lr``.
        clipnorm: clip each gradient to this L2 norm.
        clipvalue: clip each gradient element to ``[-clipvalue, clipvalue]``.
        global_clipnorm: clip all gradients together to this global L2 norm.
        use_ema: keep an exponential moving average of the variables (``ema_momentum``),
            copied into them every ``ema_overwrite_frequency`` steps if set, and by
            ``finalize_variable_values`` (which ``fit`` calls at its end).
        loss_scale_factor: only None (fastnn trains in float32 or float64, unscaled).
        gradient_accumulation_steps: if an int >= 2, update every that many calls, with the
            mean of their gradients.
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
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name=None,
        **kwargs,
    ):
        if kwargs.pop("decay", None) is not None:
            warnings.warn(
                "Argument `decay` is no longer supported and will be ignored.", stacklevel=3
            )
        if kwargs:
            raise ValueError(f"Argument(s) not recognized: {kwargs}")
        if loss_scale_factor is not None:
            raise ValueError(
                "Argument `loss_scale_factor` is not supported by fastnn optimizers (fastnn "
                f"does not scale losses). Received: loss_scale_factor={loss_scale_factor}"
            )
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
                check_number(arg, value, 0.0, math.inf)
        _check_ema(use_ema, ema_momentum, ema_overwrite_frequency)
        if gradient_accumulation_steps is not None and not (
            _is_int(gradient_accumulation_steps) and gradient_accumulation_steps >= 2
        ):
            raise ValueError(
                "`gradient_accumulation_steps` must be an integer >= 2. "
                f"Received: gradient_accumulation_steps={gradient_accumulation_steps}"
            )
        self.name = name or _snake(type(self).__name__)
        self._learning_rate = None
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = bool(use_ema)
        self.ema_momentum = ema_momentum
        self.ema_overwrite_frequency = ema_overwrite_frequency
        self.loss_scale_factor = None
        self.gradient_accumulation_steps = gradient_accumulation_steps
        self._iterations = 0
        self.built = False
        self._variables = []
        self._index = {}
        self._slots = {}
        self._averages = []
        self._accumulators = []
        self._extra = []
        self._excluded_ids = set()
        self._excluded_pattern = None

    # ---- iterations and learning rate ----

    @property
    def iterations(self) -> int:
        """Updates done: calls to ``apply``, divided by ``gradient_accumulation_steps``."""
        if self.gradient_accumulation_steps:
            return self._iterations // self.gradient_accumulation_steps
        return self._iterations

    @iterations.setter
    def iterations(self, value: int) -> None:
        self._iterations = int(value)

    @property
    def learning_rate(self) -> float:
        """The current learning rate (a schedule is evaluated at the current step)."""
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            return float(lr(self._iterations))
        if callable(lr):
            return float(lr(self._iterations) if self._lr_takes_step else lr())
        return lr

    @learning_rate.setter
    def learning_rate(self, value):
        if callable(value):
            self._learning_rate = value
            self._lr_takes_step = not isinstance(value, LearningRateSchedule) and _takes_arg(value)
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(
                "This optimizer was created with a `LearningRateSchedule` object as its "
                "`learning_rate` constructor argument, hence its learning rate is not settable. "
                "If you need the learning rate to be settable, you should instantiate the "
                "optimizer with a float `learning_rate` argument."
            )
        check_number(
            "learning_rate",
            value,
            0.0,
            math.inf,
            "a non-negative float, or an instance of LearningRateSchedule, or a callable (that "
            "takes in the current iteration value and returns the corresponding learning rate "
            "value)",
        )
        self._learning_rate = float(value)

    # ---- building ----

    def build(self, variables) -> None:
        """Create the slots for ``variables`` (done by the first ``apply`` if not called)."""
        if self.built:
            return
        variables = list(variables)
        index = {id(v): i for i, v in enumerate(variables)}
        if len(index) != len(variables):
            raise ValueError(f"{type(self).__name__}.build(): the same variable is listed twice")

        def zeros_like(v, fill=0.0):
            value = np.asarray(v.value)
            return np.full(value.shape, fill, value.dtype)

        self._variables, self._index = variables, index
        self._averages = [zeros_like(v) for v in variables] if self.use_ema else []
        accumulate = self.gradient_accumulation_steps
        self._accumulators = [zeros_like(v) for v in variables] if accumulate else []
        names = [name for group in self.slot_groups for name in group]
        self._slots = {
            name: [zeros_like(v, self._slot_initial_value(name)) for v in variables]
            for name in names
        }
        self._flat_slots = [
            [self._slots[name][i].reshape(-1) for name in names] for i in range(len(variables))
        ]
        self._extra = self._build_extra(variables)
        # the most values a step updates: below SPLIT_MIN_VALUES no step needs the split's sums
        self._values = sum(int(np.asarray(v.value).size) for v in variables)
        self.built = True

    def _slot_initial_value(self, name: str) -> float:
        """The value slot ``name`` starts at (Keras: zeros unless the optimizer says)."""
        return 0.0

    def _build_extra(self, variables: list) -> list:
        """State beyond the per-variable slots, after them in Keras's order (0-d arrays)."""
        return []

    def exclude_from_weight_decay(self, var_list=None, var_names=None) -> None:
        """No weight decay for the variables of ``var_list``, nor for those whose name
        contains one of ``var_names`` (regular expressions); before the optimizer is built."""
        if self.built:
            raise ValueError(
                "`exclude_from_weight_decay()` can only be configured before "
                "the optimizer is built."
            )
        self._excluded_ids = {id(v) for v in var_list or ()}
        self._excluded_pattern = re.compile("|".join(set(var_names))) if var_names else None

    def _uses_weight_decay(self, variable) -> bool:
        if id(variable) in self._excluded_ids:
            return False
        pattern = self._excluded_pattern
        return pattern is None or pattern.search(str(getattr(variable, "name", ""))) is None

    # ---- applying ----

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

    def apply_gradients(self, grads_and_vars) -> None:
        """Keras-style: ``apply_gradients(zip(grads, variables))``."""
        pairs = list(grads_and_vars)
        grads, variables = ([p[0] for p in pairs], [p[1] for p in pairs])
        self._apply(variables, grads)

    def _apply(self, variables: list, grads: list, arrays: bool = False) -> None:
        if len(grads) != len(variables):
            raise ValueError(
                f"{type(self).__name__}.apply(): got {len(grads)} gradients for "
                f"{len(variables)} variables"
            )
        if not variables:  # a model without trainable weights: nothing to do, as in Keras
            self._iterations += 1
            return
        if not arrays:
            grads = [g if g is None or type(g) is np.ndarray else _as_grad(g) for g in grads]
        self.build(variables)
        pairs = [(v, g) for v, g in zip(variables, grads, strict=True) if g is not None]
        if not pairs:
            raise ValueError("No gradients provided for any variable.")
        indices = [self._known_index(v) for v, _ in pairs]
        prepared = [self._checked_grad(v, g) for v, g in pairs]
        # Every check passed: from here on the step changes the state.
        steps = self.gradient_accumulation_steps
        if not steps:
            self._update_all(indices, prepared)
        elif (self._iterations + 1) % steps:
            for i, g in zip(indices, prepared, strict=True):
                self._accumulators[i] += g
        else:
            step_grads = [
                (g + self._accumulators[i]) / g.dtype.type(steps)
                for i, g in zip(indices, prepared, strict=True)
            ]
            self._update_all(indices, step_grads)
            for accumulator in self._accumulators:
                accumulator.fill(0)
        for variable, _ in pairs:  # as Keras: after the gradients, on every apply
            constraints.apply(variable)
        if self.use_ema:
            self._update_averages()
        weights_written()
        self._iterations += 1

    def _update_all(self, indices: list, grads: list) -> None:
        """Clip ``grads``, then update each variable by fused kernel calls: one each, or, for
        an optimizer of many values, in blocks on fastnn's threads (``_run_in_blocks``)."""
        grads = self._clip(grads)
        lr = self.learning_rate
        self._begin_update()
        split = self._values >= SPLIT_MIN_VALUES and self._elementwise_update()
        constants = {}  # per dtype: the step's scalars, as the kernels take them
        work, copies = [], []
        for i, g in zip(indices, grads, strict=True):
            variable = self._variables[i]
            value = variable.value
            dt = value.dtype.type
            if dt not in constants:
                keep = dt(1) - dt(self.weight_decay) * dt(lr) if self.weight_decay else dt(1)
                constants[dt] = (self._step_constants(dt, lr), keep)
            step_constants, keep = constants[dt]
            if keep != 1 and not self._uses_weight_decay(variable):
                keep = dt(1)
            flat = _flat(value)
            item = (flat, g.reshape(-1), self._flat_slots[i], step_constants, keep)
            if split:
                work.append(item)
            else:
                self._update(*item)
            if not value.flags.c_contiguous:  # _flat made a copy
                copies.append((value, flat))
        if work:
            self._run_in_blocks(work)
        for value, flat in copies:
            value[...] = flat.reshape(value.shape)

    def _run_in_blocks(self, work: list) -> None:
        """``_update`` on each ``(param, grad, slots, constants, keep)`` of ``work``; from
        SPLIT_MIN_VALUES values in all, the values of all of them (as if end to end) in one
        block per fastnn thread, side by side: every built-in update is elementwise (deep_mlp's
        1.7M-value Adam step 1.0 -> 0.66 ms on 2 threads; one wake-up per step, not per
        variable, which cost more than it saved at 262k values)."""
        threads = runtime.threads()
        total = sum(item[0].size for item in work)
        if threads == 1 or total < SPLIT_MIN_VALUES:
            for item in work:
                self._update(*item)
            return

        def run(start, stop):  # values [start, stop) of the variables end to end
            offset = 0
            for param, grad, slots, constants, keep in work:
                i, j = max(start - offset, 0), min(stop - offset, param.size)
                if i < j:
                    part = [s[i:j] for s in slots]
                    self._update(param[i:j], grad[i:j], part, constants, keep)
                offset += param.size

        kernels.gemm.row_blocks(run, total, threads, SPLIT_MIN_VALUES // 2)

    def _elementwise_update(self) -> bool:
        """Whether ``_update`` is a built-in's (elementwise), not a subclass's own."""
        return type(self)._update.__module__.startswith("fastnn.optimizers")

    def _update_averages(self) -> None:
        """Keras's EMA of every variable the optimizer was built on (after the update)."""
        momentum = self.ema_momentum if self.iterations != 0 else 0.0
        for variable, average in zip(self._variables, self._averages, strict=True):
            value = variable.value
            kernels.optimizers.ema_update(
                average.reshape(-1), _flat(value), value.dtype.type(momentum)
            )
        frequency = self.ema_overwrite_frequency
        if frequency and (self.iterations + 1) % frequency == 0:
            self._overwrite_with_averages(self._variables)

    def _overwrite_with_averages(self, variables: list) -> None:
        for variable, average in zip(variables, self._averages, strict=True):
            variable.value[...] = average
        weights_written()

    def finalize_variable_values(self, var_list) -> None:
        """With ``use_ema``, set the variables to their moving averages (fit() calls this)."""
        if not self.use_ema or not self.built:
            return
        var_list = list(var_list)
        if len(var_list) != len(self._averages):
            raise ValueError(
                f"The length of model variables ({len(var_list)}) to override does not match "
                "the length of model variables stored in the optimizer "
                f"({len(self._averages)}). Please check if the optimizer was called on your "
                "model."
            )
        self._overwrite_with_averages(var_list)

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

    def _begin_update(self) -> None:
        """Once per update, before the variables' kernels (Nadam moves its state here)."""

    def _step_constants(self, dt, lr) -> tuple:
        """This step's scalars for variables of dtype type ``dt``, as ``_update`` takes them."""
        raise NotImplementedError

    def _update(self, param, grad, slots, constants, keep) -> None:
        """Update flat ``param`` in place from ``grad`` (after scaling it by ``keep``, the
        weight decay); slots in ``slot_groups`` order."""
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
        """Keras's order: iterations, the learning rate (unless a schedule or callable), the
        moving averages, the gradient accumulators, the slots, then any other state (live
        arrays but the first two)."""
        state = [np.array(self._iterations, np.int64)]
        if not callable(self._learning_rate):
            state.append(np.array(self._learning_rate, np.float32))
        if self.built:
            n = len(self._variables)
            state += self._averages + self._accumulators
            for group in self.slot_groups:
                state += [self._slots[name][i] for i in range(n) for name in group]
            state += self._extra
        return state

    @property
    def variable_paths(self) -> list[str]:
        """The paths Keras gives ``variables`` (``'adam/dense_kernel_momentum'``...)."""
        paths = [f"{self.name}/iteration"]
        if not callable(self._learning_rate):
            paths.append(f"{self.name}/learning_rate")
        if self.built:
            slot_names = ["average"] if self.use_ema else []
            slot_names += ["gradient_accumulator"] if self.gradient_accumulation_steps else []
            names = [(name,) for name in slot_names] + list(self.slot_groups)
            for group in names:
                for v in self._variables:
                    prefix = _slot_prefix(v)
                    paths += [f"{self.name}/{prefix}_{name}" for name in group]
            paths += self._extra_paths()
        return paths

    def _extra_paths(self) -> list[str]:
        return []

    def get_state(self) -> list:
        """Copies of ``variables`` (for saving)."""
        return [np.array(a, copy=True) for a in self.variables]

    def set_state(self, state) -> None:
        """Restore ``get_state()`` output; the optimizer must be built on matching variables.

        A constant learning rate is restored, but kept as it is when the stored float32 value
        is its rounding (so a learning rate survives saving exactly)."""
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
        constant_lr = not callable(self._learning_rate)
        first_slot = 2 if constant_lr else 1
        for have, new in zip(current[first_slot:], state[first_slot:], strict=True):
            have[...] = new
        self._iterations = int(state[0])
        if constant_lr and np.float32(self._learning_rate) != state[1]:
            self.learning_rate = float(state[1])

    def get_config(self) -> dict:
        lr = self._learning_rate
        if isinstance(lr, LearningRateSchedule):
            lr = serialize_schedule(lr)
        return {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects: dict | None = None):
        """The optimizer ``get_config`` described (a schedule's config is made again)."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = deserialize_schedule(config["learning_rate"], custom_objects)
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} learning_rate={self.learning_rate}>"


def check_number(arg, value, lo, hi, expected=None, upper_open=False):
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


def _check_ema(use_ema, ema_momentum, ema_overwrite_frequency) -> None:
    """Keras's checks of the EMA arguments (made only when ``use_ema``)."""
    if not use_ema:
        return
    if not isinstance(ema_momentum, (int, float)) or not 0 <= ema_momentum <= 1:
        raise ValueError(
            f"`ema_momentum` must be in the range [0, 1]. Received: ema_momentum={ema_momentum}"
        )
    if ema_overwrite_frequency and (
        not _is_int(ema_overwrite_frequency) or ema_overwrite_frequency < 1
    ):
        raise ValueError(
            "`ema_overwrite_frequency` must be an integer >= 1 or None. "
            f"Received: ema_overwrite_frequency={ema_overwrite_frequency}"
        )


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _takes_arg(fn) -> bool:
    """Whether ``fn`` needs a positional argument (a learning rate of the step)."""
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(
        p.kind == inspect.Parameter.VAR_POSITIONAL
        or (p.kind in kinds and p.default is inspect.Parameter.empty)
        for p in parameters
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


def _slot_prefix(v) -> str:
    """Keras's prefix of a slot's name: the variable's path with '/' as '_'."""
    path = getattr(v, "path", None)
    if path is not None:
        return str(path).replace("/", "_")
    return str(getattr(v, "name", "variable")).replace("/", "_").replace(":", "_")


def _snake(name: str) -> str:
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()
