"""The layer contract every fastnn layer follows: build, compute_output_shape, forward, backward."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import re
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from fastnn import config, constraints, initializers, regularizers, runtime
from fastnn.kernels.forms import Forms
from fastnn.layers import custom
from fastnn.layers.eager_masks import carried_mask, with_mask
from fastnn.naming import unique_name
from fastnn.nodes import Node, SymbolicTensor, is_symbolic
from fastnn.ops import tape as tape_module
from fastnn.ops.core import cast as ops_cast
from fastnn.ops.tensor import (  # noqa: F401 (Variable: layers' name for it)
    Tensor,
    Variable,
    is_float,
    unwrap,
    weights_generation,
    weights_written,
)

#: [bytes left, bytes allowed, refuse] while ``weight_budget`` is in force in this context.
_weight_budget: contextvars.ContextVar[list | None] = contextvars.ContextVar(
    "fastnn_weight_budget", default=None
)


@contextlib.contextmanager
def weight_budget(max_bytes: int, refuse: Callable[[str], Exception]) -> Iterator[None]:
    """Inside, ``add_weight`` raises ``refuse(message)`` before it allocates a weight that would
    take the bytes of the weights made so far past ``max_bytes`` (loaders: what a file stores)."""
    token = _weight_budget.set([max_bytes, max_bytes, refuse])
    try:
        yield
    finally:
        _weight_budget.reset(token)


def _take_from_budget(layer: Layer, name: str, shape: tuple, dtype: np.dtype) -> None:
    budget = _weight_budget.get()
    if budget is None:
        return
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > budget[0]:
        raise budget[2](
            f"layer '{layer.name}' ({type(layer).__name__}) asks for a {dtype.name} {shape} "
            f"weight '{name}' ({nbytes} bytes), more than the {budget[1]} bytes allowed"
        )
    budget[0] -= nbytes


def snake_case(name: str) -> str:
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def assign_all(variables, weights, owner: str, label) -> None:
    """Copy ``weights`` into ``variables`` after checking every count and shape (all or nothing)."""
    arrays = [np.asarray(w) for w in weights]
    if len(arrays) != len(variables):
        raise ValueError(
            f"{owner} expects {len(variables)} weight arrays, got {len(arrays)} "
            f"(expected shapes {[v.shape for v in variables]})"
        )
    for var, arr in zip(variables, arrays):
        if arr.shape != var.shape:
            raise ValueError(
                f"{owner} weight '{label(var)}' has shape {var.shape}, "
                f"got an array of shape {arr.shape}"
            )
    for var, arr in zip(variables, arrays):
        var.value[...] = arr
    weights_written()


def kept(owner, name: str, sources: tuple, make: Callable):
    """``make(*sources)``, kept on ``owner`` under ``name`` while no weight is written
    (``weights_generation``) and ``sources`` are the same arrays: what inference computes from
    weights that stay the same from call to call (a conv's kernel in its packed forms)."""
    cache = getattr(owner, "_kept", None)
    if cache is None:
        cache = {}
        object.__setattr__(owner, "_kept", cache)  # not a tracked attribute
    generation = weights_generation()  # before make(): a write meanwhile makes it stale
    entry = cache.get(name)
    same = entry is not None and entry[0] == generation and len(entry[1]) == len(sources)
    if same and all(a is b for a, b in zip(entry[1], sources)):
        return entry[2]
    value = make(*sources)
    cache[name] = (generation, sources, value)
    return value


def kernel_for(layer, training: bool):
    """``layer.kernel``'s array; at inference its ``kernels.forms.Forms``, which keeps the forms
    the kernels compute with (packed, transformed) while the kernel stays the same."""
    value = layer.kernel.value
    return value if training else kept(layer, "kernel", (value,), Forms)


def standardize_shape(shape, what="shape") -> tuple:
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),)
    try:
        shape = tuple(None if d is None else int(d) for d in shape)
    except TypeError:
        raise TypeError(f"Invalid {what}: expected a tuple of integers, got {shape!r}") from None
    for d in shape:
        if d is not None and d < 0:
            raise ValueError(f"Invalid {what} {shape}: dimensions must be non-negative")
    return shape


class Layer:
    """Base class: lazily built weights, a forward that returns (outputs, ctx), and a backward.

    Built-in layers implement ``build(input_shape)``, ``compute_output_shape(input_shape)``,
    ``forward(inputs, training) -> (outputs, ctx)`` and ``backward(ctx, grad_outputs) ->
    grad_inputs``; ``backward`` adds into each weight's ``.grad``. A user's layer may instead
    write ``call(inputs)`` with fastnn.ops (``build`` and ``compute_output_shape`` optional, as in
    Keras): its gradients come from a tape of the ops it runs (``fastnn.layers.custom``), and
    layers it holds as attributes (also in lists and dicts) are tracked.
    """

    #: The layer runs ``call()`` (gradients from a tape) rather than ``forward``/``backward``.
    _runs_call = False
    #: ``call()`` takes ``mask=``: the graph passes the inputs' mask.
    _takes_mask = False
    #: Called on symbolic tensors as ``layer(a, b)``: the graph's list of inputs is spread.
    _spreads_inputs = False
    #: Layers it holds as attributes are tracked (their weights are its weights): a ``call()``
    #: layer's, and any user subclass of Layer or Model, with a call() or not (a VAE's model
    #: that only writes train_step trains its encoder's and decoder's weights).
    _tracks_layers = False

    #: A user's subclass of a built-in layer that writes call(): the built-in's (forward,
    #: backward), which ``super().call(x)`` runs as one tape entry.
    _builtin_pass: tuple | None = None

    def __init_subclass__(cls, **kwargs):
        # A layer is built once its build() returns, however build() was reached (as in Keras).
        super().__init_subclass__(**kwargs)
        builtin = _builtin_under_call(cls)
        if builtin is not None:  # Dense subclassed with a call() of the user's: call() runs
            cls._builtin_pass = builtin
            cls.uses_workspace = False
        cls._runs_call = cls.call is not Layer.call and (
            cls.forward in _TAPE_FORWARDS or builtin is not None
        )
        cls._takes_mask = cls._runs_call and custom.call_arguments(cls)[1]
        cls._tracks_layers = cls._runs_call or (
            cls.forward in _TAPE_FORWARDS and not is_builtin_class(cls)
        )
        if cls._runs_call:  # the graph calls the tape's forward and backward directly
            cls.forward, cls.backward = custom.forward, custom.backward
            cls.skips_input_grad = True  # the tape computes only the gradients asked for
        if "build" in cls.__dict__:
            build = cls.__dict__["build"]

            @functools.wraps(build)
            def build_once(self, *args, **kw):
                build(self, *args, **kw)
                self.built = True
                shape = args[0] if args else kw.get("input_shape")
                self.__dict__["_build_input_shape"] = shape  # for get_build_config

            cls.build = build_once

    def __init__(
        self,
        *,
        name: str | None = None,
        trainable: bool = True,
        dtype=None,
        input_shape=None,
        input_dim: int | None = None,
        batch_size: int | None = None,
        **kwargs,
    ):
        if kwargs:
            raise TypeError(
                f"Unrecognized keyword arguments passed to {type(self).__name__}: {kwargs}"
            )
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"Layer name must be a non-empty string; got name={name!r}")
        self.name = name or unique_name(snake_case(type(self).__name__))
        self.dtype = np.dtype(dtype or config.floatx()).name
        self._trainable = bool(trainable)
        self._weights: list[Variable] = []
        self._trainable_variables: list[Variable] = []  # of a trainable kind (not statistics)
        self._loss_values: list = []  # add_loss values of the last call
        self._inbound_nodes: list[Node] = []
        self.built = False
        if input_shape is not None or input_dim is not None:
            warnings.warn(
                "Do not pass an `input_shape`/`input_dim` argument to a layer. When using "
                "Sequential models, prefer using an `Input(shape)` object as the first layer in "
                "the model instead.",
                stacklevel=3,
            )  # Keras 3's words
        if input_dim is not None and input_shape is None:
            input_shape = (input_dim,)
        self._input_shape_arg = (
            None if input_shape is None else standardize_shape(input_shape, "input_shape")
        )
        self._batch_size_arg = batch_size

    # ---- weights -------------------------------------------------------------------------------
    def add_weight(
        self,
        shape,
        initializer="glorot_uniform",
        name: str | None = None,
        trainable: bool = True,
        regularizer=None,
        dtype=None,
        constraint=None,
    ) -> Variable:
        """Create a weight of ``shape`` initialized by ``initializer`` and track it; the optimizer
        projects it by ``constraint`` (a name, config or callable) after each update."""
        dtype = np.dtype(dtype or self.dtype)
        shape = tuple(int(n) for n in shape)
        name = name or unique_name("variable")  # Keras's names: variable, variable_1, ...
        _take_from_budget(self, name, shape, dtype)
        value = initializers.get(initializer)(shape, dtype=dtype)
        value = np.asarray(value, dtype=dtype, order="C")  # (ascontiguousarray makes () (1,))
        # As in Keras, a frozen layer's weights say trainable=False until it is unfrozen.
        path = f"{custom.path_prefix(self)}/{name}"
        var = Variable(
            value,
            name,
            path,
            trainable and self.trainable,
            regularizers.get(regularizer),
            constraints.get(constraint),
        )
        self._track_variable(var, trainable)
        return var

    def _track_variable(self, var: Variable, trainable: bool) -> None:
        """Own ``var``: trainable kinds first, then the rest, each in creation order (Keras's
        ``weights`` order)."""
        if trainable:
            self._weights.insert(len(self._trainable_variables), var)
            self._trainable_variables.append(var)
        else:
            self._weights.append(var)

    def __setattr__(self, name: str, value) -> None:
        # Never reads self.__dict__: that would turn CPython's inline attribute values into a
        # dict, making every attribute read of the layer slower.
        if isinstance(value, Variable):  # tracked, as Keras's layers track it
            weights = getattr(self, "_weights", None)
            if weights is not None and all(v is not value for v in weights):
                self._track_variable(value, value.trainable)
        elif self._tracks_layers and name not in _UNTRACKED:
            value = custom.tracked(value, self)  # lists and dicts: later changes are seen
            object.__setattr__(self, "_tracked_cache", None)  # look for its layers again
        object.__setattr__(self, name, value)

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """Freeze or unfreeze the layer and every layer it contains."""
        self._trainable = bool(value)
        for var in self._trainable_variables:
            var.trainable = self._trainable
        for _, layer in self.sublayers():
            layer.trainable = value

    def sublayers(self) -> list[tuple[str, Layer]]:
        """``(key, layer)`` for each layer this one contains (a model's layers by name, a
        wrapper's by attribute, a ``call()`` layer's attributes in assignment order, lists and
        dicts of layers included); none for a plain layer."""
        return list(self._tracked_layers()) if self._tracks_layers else []

    def _tracked_layers(self) -> list[tuple[str, Layer]]:
        """A ``call()`` layer's layers, found once and again only when an attribute or a
        tracked container changes (the list itself: callers do not change it)."""
        found = self.__dict__.get("_tracked_cache")
        if found is None:
            found = []
            for key, value in list(self.__dict__.items()):
                if key not in _UNTRACKED:
                    _find_layers(key, value, found)
            self.__dict__["_tracked_cache"] = found
        return found

    @property
    def weights(self) -> list[Variable]:
        """Own weights (trainable kinds first), then those of the layers it holds."""
        if not self._tracks_layers:  # a built-in layer's: its own (the training step reads these)
            return list(self._weights)
        subs = self._tracked_layers()
        if not subs:
            return list(self._weights)
        seen, result = {id(w) for w in self._weights}, list(self._weights)
        for _, layer in subs:
            for w in layer.weights:
                if id(w) not in seen:
                    seen.add(id(w))
                    result.append(w)
        return result

    @property
    def trainable_weights(self) -> list[Variable]:
        if not self._trainable:
            return []
        if not self._tracks_layers or not self._tracked_layers():
            return [w for w in self._weights if w.trainable]
        return [w for w in self.weights if w.trainable]

    @property
    def non_trainable_weights(self) -> list[Variable]:
        if not self.trainable:
            return self.weights
        return [w for w in self.weights if not w.trainable]

    @property
    def variables(self) -> list[Variable]:
        return self.weights

    @property
    def trainable_variables(self) -> list[Variable]:
        """Keras 3's name for ``trainable_weights``."""
        return self.trainable_weights

    @property
    def non_trainable_variables(self) -> list[Variable]:
        """Keras 3's name for ``non_trainable_weights``."""
        return self.non_trainable_weights

    def get_weights(self) -> list[np.ndarray]:
        return [w.numpy() for w in self.weights]

    def set_weights(self, weights) -> None:
        """Assign all weights at once, in ``get_weights()`` order; nothing changes on error."""
        assign_all(self.weights, weights, f"Layer '{self.name}'", lambda var: var.name)

    def count_params(self) -> int:
        if not self.built:
            raise ValueError(
                f"Layer '{self.name}' is not built yet, so its number of parameters is unknown. "
                "Call it on an input first."
            )
        return int(sum(w.value.size for w in self.weights))

    def regularization_losses(self):
        """(variable, regularizer) pairs for this layer's trainable weights."""
        return [(w, w.regularizer) for w in self.trainable_weights if w.regularizer is not None]

    # ---- losses added by call() ----------------------------------------------------------------
    def add_loss(self, loss) -> None:
        """Add ``loss`` (a scalar made with fastnn.ops) to the training loss of this pass; it
        shows in ``losses`` until the next outermost call."""
        self._loss_values.append(loss)
        sink = custom.LOSS_SINK.get()
        if sink is not None:
            sink.append(loss)

    def add_metric(self, *args, **kwargs):
        """Gone, as in Keras 3: it raises Keras's error, which says what to use instead."""
        raise NotImplementedError(
            "Layer `add_metric()` method is deprecated. Add your metric in "
            "`Model.compile(metrics=[...])`, or create metric trackers in init() or build() "
            "when subclassing the layer or model, then call `metric.update_state()` whenever "
            "necessary."
        )

    @property
    def may_add_losses(self) -> bool:
        """Whether a pass may add losses (a ``call()`` layer may): the graph asks only these."""
        return self._runs_call

    def added_losses(self, ctx) -> list:
        """The ``add_loss`` values of the pass whose context is ``ctx``."""
        return ctx.added_losses if self._runs_call else []

    def _layer_tree(self) -> list:
        """This layer and every layer it holds, depth first, each once (the trainer, which
        may not import the layers' modules, walks a model by it)."""
        return custom.layer_tree(self)

    @property
    def losses(self) -> list:
        """The ``add_loss`` values of the last call (this layer's, then its layers'), then the
        weight regularizers' penalties (recorded on a tape that watches the weights)."""
        layers = custom.layer_tree(self)
        values = [loss for layer in layers for loss in layer._loss_values]
        values += [reg(w) for w, reg in self.regularization_losses()]
        return values

    # ---- the contract --------------------------------------------------------------------------
    def build(self, input_shape) -> None:
        """Create weights; a weightless layer only validates the shape (compute_output_shape).
        A ``call()`` layer without a build of its own builds its layers on its first call."""
        if not self._runs_call:
            self.compute_output_shape(input_shape)
        self.built = True

    def get_build_config(self) -> dict | None:
        """``{"input_shape": ...}`` the layer was built for, or None before ``build`` (Keras's;
        a layer that builds with more arguments adds them, and ``build_from_config`` reads
        them back: a saved file then keeps them)."""
        shape = self.__dict__.get("_build_input_shape")
        if shape is None:
            return None
        return {"input_shape": list(shape) if isinstance(shape, tuple) else shape}

    def build_from_config(self, config: dict) -> None:
        """Build as ``get_build_config()`` says."""
        if config and config.get("input_shape") is not None:
            self.build(config["input_shape"])

    def compute_output_shape(self, input_shape):
        """The output shape(s) for ``input_shape``; a ``call()`` layer without its own runs
        ``call()`` on zeros of that shape to find out (nothing it changes is kept)."""
        if self._runs_call:
            return custom.output_shapes(self, input_shape, self.dtype)[0]
        return input_shape

    def call(self, inputs, *args, **kwargs):
        """The layer's computation with fastnn.ops (a user's layer writes it); in a user's
        subclass of a built-in layer, the built-in's pass (``super().call(x)``)."""
        if self._builtin_pass is None:
            raise NotImplementedError(self._no_computation())
        training = kwargs.get("training")
        training = bool(custom.TRAINING.get() if training is None else training)
        if tape_module.STATE.tapes:
            values = self._to_values(inputs)
            if self._tracked(values) or self._tracked(self.weights):
                return self._record_call(values, training, {}, self._builtin_pass)
        forward = self._builtin_pass[0]
        arrays = [unwrap(x) for x in inputs] if isinstance(inputs, list) else unwrap(inputs)
        return forward(self, self._to_arrays(arrays), training)[0]

    def forward(self, inputs, training: bool, **kwargs):
        """``(outputs, ctx)``: a ``call()`` layer runs it under a tape (the ctx)."""
        if self._runs_call:
            return custom.forward(self, inputs, training, **kwargs)
        raise NotImplementedError(self._no_computation())

    def backward(self, ctx, grad_outputs, **kwargs):
        """Input gradients; weights' gradients add into ``.grad`` (a ``call()`` layer replays
        the tape of its forward)."""
        if self._runs_call:
            return custom.backward(self, ctx, grad_outputs, **kwargs)
        raise NotImplementedError(self._no_computation())

    def inference_call(self, inputs):
        """A function ``inputs -> outputs`` equal to ``forward(inputs, training)``'s outputs,
        training False or None (a layer with one is the same for both), for inputs of these
        shapes and dtypes while no weight is written (``weights_generation``) and fastnn's
        thread count stays, with every choice made now (the kernels' plans, packed weights,
        output buffers, which each call rewrites); None where the layer has none. The graph's
        passes without a backward (predict, a model's call) run it in place of ``forward``."""
        return None

    #: ``inference_call`` stands for ``forward`` with training None too (a nested model's
    #: does not: its layers may differ between None and False).
    inference_call_at_none = True

    def _no_computation(self) -> str:
        return (
            f"{type(self).__name__} '{self.name}' has no computation: write call(self, inputs) "
            "with fastnn.ops (its gradients come from a tape), or forward(inputs, training) -> "
            "(outputs, ctx) and backward(ctx, grad_outputs) -> input gradients"
        )

    def compute_mask(self, inputs, mask=None):
        """The mask of this layer's outputs given its inputs' mask (None: no mask); a
        ``call()`` layer passes it on when it sets ``supports_masking``, as in Keras."""
        if self._runs_call:
            return mask if self.supports_masking else None
        return mask if self.passes_mask else None

    # ---- what a layer tells the graph (class attributes; the defaults suit most layers) -------
    #: Floating inputs are cast to the layer's dtype; integer-consuming layers set this False.
    casts_inputs = True
    #: ``forward(inputs, training, mask=...)`` takes the mask of its inputs.
    supports_masking = False
    #: The outputs carry the inputs' mask unchanged (elementwise and per-step layers).
    passes_mask = False
    #: ``forward(inputs, training, workspace=...)`` takes a ``fastnn.kernels.workspace.Workspace``
    #: to reuse its arrays from call to call (``workspace.scratch`` gives one either way).
    uses_workspace = False
    #: False for a layer that cannot pass gradients back (Lambda): training refuses, before any
    #: step, a model with weights behind such a layer.
    has_backward = True
    #: ``backward(ctx, grad_outputs, need_input_grad=False)`` skips the input gradient (and
    #: returns None): the graph asks this of a model's first layers.
    skips_input_grad = False

    @property
    def samples_independent(self) -> bool:
        """Whether at inference each sample's outputs depend on that sample's inputs alone, so
        predict may run several batches as one pass: true of fastnn's layers (Lambda aside); a
        layer class from elsewhere is taken not to be, its forward unknown."""
        return type(self).__module__.startswith("fastnn.")

    @property
    def makes_masks(self) -> bool:
        """Whether ``compute_mask`` may make a mask of its own (it is overridden): in a graph
        with no such layer every mask is None, and the graph skips them."""
        return type(self).compute_mask is not Layer.compute_mask

    def check_input_shape(self, input_shape) -> None:
        """Raise if a built layer cannot take ``input_shape`` (overridden where weights fix it);
        a ``call()`` layer finds out when it runs."""
        if not self._runs_call:
            self.compute_output_shape(input_shape)

    # ---- calling -------------------------------------------------------------------------------
    def _maybe_build(self, input_shape) -> None:
        if not self.built:
            if self._runs_call:
                with custom.scoped(self, None):  # weights get the paths of the running calls
                    self.build(input_shape)
            else:
                self.build(input_shape)
            self.built = True
        else:
            self.check_input_shape(input_shape)

    def __call__(self, *args, **kwargs):
        """``layer(x)`` records a node on symbolic tensors, runs on arrays; masking layers also
        take ``mask=`` (batch, steps) on array calls. ``training`` defaults to the enclosing
        call's. Under a recording GradientTape, a built-in layer is one tape entry whose
        gradient is its backward; a ``call()`` layer's ops record one by one. The inputs may
        come by keyword, under the name ``call()`` gives them (``inputs`` for built-ins)."""
        if args:
            inputs, args = args[0], args[1:]
        else:
            name = custom.first_input_name(type(self)) if self._runs_call else "inputs"
            if name not in kwargs:
                raise TypeError(f"Layer '{self.name}' was called without inputs")
            inputs = kwargs.pop(name)
        training = kwargs.pop("training", None)
        mask = kwargs.pop("mask", None)
        if self._runs_call:
            if args and len(args) > custom.positional_slots(type(self)) and training is None:
                training, args = args[0], args[1:]  # layer(x, training), as for built-in layers
            if mask is None and not is_symbolic(inputs):
                mask = carried_mask(inputs)  # an earlier eager call's output carries it
            outputs = self._call_user(
                inputs, args, kwargs, training, mask if self._takes_mask else None
            )
            return self._with_output_mask(inputs, outputs, mask)
        if args and len(args) <= 2 and training is None:  # layer(x, training[, mask])
            training, mask = args[0], (args[1] if len(args) > 1 else mask)
            args = ()
        if args or kwargs:
            raise TypeError(
                f"Layer '{self.name}' got unexpected call arguments "
                f"{[*map(repr, args), *sorted(kwargs)]}"
            )
        if mask is not None and not self.supports_masking:
            raise TypeError(f"{type(self).__name__} '{self.name}' does not take a mask")
        if is_symbolic(inputs) or is_symbolic(mask):
            if mask is not None:
                raise NotImplementedError(
                    f"{type(self).__name__} '{self.name}': an explicit mask= works on array "
                    "calls; in a model the mask comes from Embedding(mask_zero=True) or Masking"
                )
            return self._call_symbolic(inputs, None if training is None else bool(training))
        carried = None
        if mask is None and not isinstance(inputs, (list, tuple)):
            carried = carried_mask(inputs)  # an earlier eager call's output carries it
            mask = carried if self.supports_masking else None
        if training is None:
            training = custom.TRAINING.get()
        if tape_module.STATE.tapes and self._tracked(inputs):
            arrays = self._to_values(inputs)
        else:
            arrays = self._to_arrays(inputs)
        shapes = [a.shape for a in arrays] if isinstance(arrays, list) else arrays.shape
        self._maybe_build(shapes)
        extra = {}
        if mask is not None:
            extra["mask"] = self.standardize_mask(arrays, mask)
        with runtime.serial_blas():  # once per call on arrays (see fastnn.runtime)
            outputs = self._call_arrays(arrays, bool(training), extra)
        return self._with_output_mask(arrays, outputs, extra.get("mask", carried))

    def _with_output_mask(self, inputs, outputs, mask):
        """Eager outputs carrying ``compute_mask``'s mask as ``_keras_mask``, as Keras's do."""
        if (mask is None and not self.makes_masks) or is_symbolic(outputs):
            return outputs
        return with_mask(outputs, self.compute_mask(inputs, mask))

    def standardize_mask(self, inputs, mask) -> np.ndarray:
        """An explicit ``mask=`` of an array call as ``forward`` takes it: bool (batch, steps)."""
        x = inputs[0] if isinstance(inputs, list) else inputs
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape[:2]:
            raise shape_error(self, "mask must be (batch, steps)", x.shape[:2], mask.shape)
        return mask

    def _call_arrays(self, inputs, training: bool, extra: dict):
        """Run on built inputs: ``forward``, as one tape entry when a recording tape tracks an
        input or a trainable weight (its gradient: ``backward``, weights' gradients included)."""
        if tape_module.STATE.tapes and (self._tracked(inputs) or self._tracked(self.weights)):
            return self._record_call(inputs, training, extra)
        values = [unwrap(x) for x in inputs] if isinstance(inputs, list) else unwrap(inputs)
        outputs, _ = self.forward(values, training, **extra)
        return outputs

    def _record_call(self, inputs, training: bool, extra: dict, builtin_pass=None):
        """One tape entry for the layer's forward (``builtin_pass``: a built-in's (forward,
        backward) under a user's call()), whose gradient is its backward."""
        is_list = isinstance(inputs, list)
        flat = inputs if is_list else [inputs]
        values = [unwrap(x) for x in flat]
        weights = self.trainable_weights
        forward, backward = (
            (self.forward, self.backward)
            if builtin_pass is None
            else (
                functools.partial(builtin_pass[0], self),
                functools.partial(builtin_pass[1], self),
            )
        )
        skips_input_grad = self.skips_input_grad and builtin_pass is None
        with tape_module.paused():
            outputs, ctx = forward(values if is_list else values[0], training, **extra)
        out_list = isinstance(outputs, list)
        flat_out = outputs if out_list else [outputs]
        dtypes = [y.dtype for y in flat_out]

        def vjp(grads, need):
            grads = [np.asarray(unwrap(g), dtype=t) for g, t in zip(grads, dtypes)]
            saved = [w.grad for w in weights]
            fresh = [np.zeros_like(w.value) for w in weights]
            for w, g in zip(weights, fresh):
                w.grad = g
            grads = grads if out_list else grads[0]
            try:
                with tape_module.paused():
                    if skips_input_grad and not any(need[: len(flat)]):
                        backward(ctx, grads, need_input_grad=False)  # e.g. a first Dense
                        in_grads = [None] * len(flat) if is_list else None
                    else:
                        in_grads = backward(ctx, grads)
            finally:
                for w, g in zip(weights, saved):
                    w.grad = g
            in_grads = list(in_grads) if is_list else [in_grads]
            return [*in_grads, *fresh]

        results = tape_module.record(
            vjp, [*flat, *weights], flat_out, name=self.name, takes_need=True
        )
        return results if out_list else results[0]

    @staticmethod
    def _tracked(values) -> bool:
        if isinstance(values, (list, tuple)):
            return any(tape_module.tracked(v) for v in values)
        return tape_module.tracked(values)

    def _to_values(self, inputs):
        """Inputs as arrays, tensors a tape tracks kept (float ones cast on the tape)."""

        def convert(x):
            if isinstance(x, Tensor):
                if self.casts_inputs and is_float(x) and x.dtype != self.dtype:
                    return ops_cast(x, self.dtype)
                return x
            return self._cast(x)

        if isinstance(inputs, (list, tuple)):
            return [convert(x) for x in inputs]
        return convert(inputs)

    def _call_user(self, inputs, args, kwargs, training, mask):
        """``layer(...)`` of a layer that writes ``call()``: symbolic calls record a node with
        the output shape a run on zeros gives; other calls run ``call()``."""
        if is_symbolic(inputs) or is_symbolic(mask) or is_symbolic([*args, *kwargs.values()]):
            keep = custom.INLINE_UNLESS.get()
            if keep is not None and not is_builtin_class(type(self)) and not keep(self):
                return custom.run_call(self, inputs, False, mask, args, kwargs)
            args, kwargs = custom.symbolic_arguments(type(self), args, kwargs)
            if args and not kwargs and all(isinstance(a, SymbolicTensor) for a in args):
                self._spreads_inputs = True  # layer(targets, logits): call(targets, logits)
                return self._call_symbolic([inputs, *args])
            if args or kwargs or mask is not None:
                raise NotImplementedError(
                    f"{type(self).__name__} '{self.name}': on symbolic tensors a layer takes "
                    "tensors alone (positional, or one list); pass other arguments to its "
                    "constructor, or call it inside another layer's call()"
                )
            return self._call_symbolic(inputs)
        outermost = not custom.SCOPE.get()
        inputs = custom.convert_inputs(self, inputs, own=outermost)
        self._maybe_build(_shapes(inputs))
        if not outermost:  # inside another layer's call
            return custom.run_call(self, inputs, training, mask, args, kwargs)
        # outermost: as in Keras, losses are those of the last outermost call
        for layer in custom.layer_tree(self):
            layer._loss_values.clear()
        with runtime.serial_blas(), custom.collecting_losses(self):
            return custom.run_call(self, inputs, training, mask, args, kwargs)

    def _call_symbolic(self, inputs, training=None):
        """The symbolic outputs of a call recorded as a node (``training`` as the call fixed
        it, or None)."""
        tensors = list(inputs) if isinstance(inputs, (list, tuple)) else inputs
        for t in tensors if isinstance(tensors, list) else [tensors]:
            if not isinstance(t, SymbolicTensor):
                raise TypeError(
                    f"Layer '{self.name}' was called on a mix of symbolic tensors and "
                    f"{type(t).__name__}; all inputs must come from fastnn.Input or layers."
                )
        shapes = [t.shape for t in tensors] if isinstance(tensors, list) else tensors.shape
        self._maybe_build(shapes)
        dtype = self.output_dtype
        if self._runs_call and not _own_output_shape(type(self)):
            dtypes = [t.dtype for t in tensors] if isinstance(tensors, list) else tensors.dtype
            output_shape, dtype = custom.output_shapes(self, shapes, dtypes)
        else:
            output_shape = self.compute_output_shape(shapes)
        node = Node(self, tensors, output_shape, dtype, training)
        return node.symbolic_outputs()

    @property
    def output_dtype(self):
        return self.dtype

    def _to_arrays(self, inputs):
        if isinstance(inputs, (list, tuple)):
            return [self._cast(x) for x in inputs]
        return self._cast(inputs)

    def _cast(self, x):
        x = np.asarray(x)
        if x.dtype.kind not in "biuf":
            raise TypeError(
                f"{type(self).__name__} '{self.name}': expected numeric input, got an array of "
                f"dtype {x.dtype}"
            )
        if self.casts_inputs and x.dtype != self.dtype:
            x = x.astype(self.dtype)
        return x

    # ---- nodes and shapes ----------------------------------------------------------------------
    def _single_node(self, what):
        if not self._inbound_nodes:
            raise AttributeError(f"Layer '{self.name}' has never been called and has no {what}.")
        if len(self._inbound_nodes) > 1:
            raise AttributeError(
                f"Layer '{self.name}' has been called {len(self._inbound_nodes)} times; "
                f"its {what} is ambiguous."
            )
        return self._inbound_nodes[0]

    @property
    def input(self):
        node = self._single_node("input")
        return node.pack_inputs(node.inputs)

    @property
    def output(self):
        return self._single_node("output").symbolic_outputs()

    @property
    def output_shape(self):
        out = self.output
        return [t.shape for t in out] if isinstance(out, list) else out.shape

    # ---- random state (saved so a loaded model resumes training exactly) -----------------------
    # A layer that draws random numbers (Dropout, recurrent dropout) keeps its generator in _rng.
    _rng: np.random.Generator | None = None

    def get_random_state(self) -> dict | None:
        """The JSON-able state of the layer's random generator; None if it draws no randomness."""
        return None if self._rng is None else self._rng.bit_generator.state

    def set_random_state(self, state: dict) -> None:
        """Restore what ``get_random_state()`` returned."""
        if self._rng is None:
            raise ValueError(f"Layer '{self.name}' has no random state to restore")
        generator = np.random.default_rng()
        generator.bit_generator.state = state  # validates the dict; then swap in one step
        self._rng = generator

    # ---- config --------------------------------------------------------------------------------
    def __new__(cls, *args, **kwargs):
        layer = super().__new__(cls)
        if cls._runs_call:  # as Keras: the constructor's arguments are the default config
            object.__setattr__(
                layer, "_auto_config", custom.constructor_arguments(cls, args, kwargs)
            )
        return layer

    def get_config(self) -> dict:
        """The constructor's arguments (Keras 3's names). A ``call()`` layer that writes no
        ``get_config`` gives the arguments it was made with when they are plain values, as
        Keras does; other arguments need a ``get_config`` of its own."""
        config = {"name": self.name, "trainable": self.trainable, "dtype": self.dtype}
        if self._input_shape_arg is not None:
            config["input_shape"] = self._input_shape_arg
        auto = self.__dict__.get("_auto_config", False)
        if auto is None:
            raise NotImplementedError(
                f"{type(self).__name__} '{self.name}' was made with arguments that are not plain "
                "values (numbers, strings, lists, dicts), so it cannot describe itself: write "
                "its get_config() returning the arguments from_config() needs"
            )
        if auto:
            config = {**auto, **config}
        return config

    @classmethod
    def from_config(cls, config: dict):
        """The layer ``get_config()`` describes (weights are not part of a config)."""
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name}, built={self.built}>"


#: A layer's own bookkeeping, never searched for layers.
_UNTRACKED = frozenset(
    [
        "_weights",
        "_trainable_variables",
        "_loss_values",
        "_inbound_nodes",
        "_tracked_cache",
        "_tape_variables",
        "_loss_owners",
    ]
)


def _find_layers(key: str, value, found: list) -> None:
    """Append ``(key, layer)`` for each Layer in ``value`` (a layer, list, tuple or dict)."""
    if isinstance(value, Layer):
        if all(value is not layer for _, layer in found):
            found.append((key, value))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _find_layers(f"{key}/{i}", item, found)
    elif isinstance(value, dict):
        for k, item in value.items():
            _find_layers(f"{key}/{k}", item, found)


def _shapes(structure):
    """The shapes of a call's inputs, in their structure (None for what has no shape)."""
    if isinstance(structure, (list, tuple)):
        return [_shapes(x) for x in structure]
    if isinstance(structure, dict):
        return {k: _shapes(v) for k, v in structure.items()}
    shape = getattr(structure, "shape", None)
    return None if shape is None else tuple(shape)


#: What ``forward`` is for a layer that runs ``call()``: the base's, or the tape's bound to it.
_TAPE_FORWARDS = (Layer.forward, custom.forward)


def is_builtin_class(cls) -> bool:
    """Whether ``cls`` is one of fastnn's own classes (not a user's subclass)."""
    return cls.__module__.split(".", 1)[0] == "fastnn"


def _own_output_shape(cls) -> bool:
    """Whether a ``call()`` layer's class tells its output shape itself (else a run of call()
    on zeros does): a built-in's under a user's call() does not count."""
    owner = next(k for k in cls.__mro__ if "compute_output_shape" in k.__dict__)
    if owner is Layer:
        return False
    return cls._builtin_pass is None or not owner.__module__.startswith("fastnn.")


def _builtin_under_call(cls) -> tuple | None:
    """(forward, backward) of the built-in layer that ``cls``, a user's subclass of it, puts a
    ``call()`` of its own over (as Keras runs a subclass's call); None for other classes."""
    call_owner = next(k for k in cls.__mro__ if "call" in k.__dict__)
    forward_owner = next(k for k in cls.__mro__ if "forward" in k.__dict__)
    hook_owner = next((k for k in cls.__mro__ if "convolution_op" in k.__dict__), None)
    if hook_owner is not None and not hook_owner.__module__.startswith("fastnn."):
        call_owner = hook_owner  # a conv subclass's own convolution_op: its call runs it
    if (
        forward_owner.__dict__["forward"] in _TAPE_FORWARDS
        or call_owner is forward_owner
        or not issubclass(call_owner, forward_owner)
        or call_owner.__module__.startswith("fastnn.")  # a built-in's own call (RNN's)
    ):
        return None
    backward_owner = next(k for k in cls.__mro__ if "backward" in k.__dict__)
    return forward_owner.__dict__["forward"], backward_owner.__dict__["backward"]


def shape_error(layer: Layer, message: str, expected, given) -> ValueError:
    """A shape error naming the layer with expected and given values side by side."""
    return ValueError(
        f"{type(layer).__name__} '{layer.name}': {message}; expected {expected}, got {given}"
    )
