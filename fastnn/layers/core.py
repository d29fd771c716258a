"""Core layers: Input, Dense, Activation, Flatten, Dropout, Lambda."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fastnn import activations, constraints, initializers, kernels, regularizers, runtime
from fastnn.kernels.workspace import Workspace, scratch
from fastnn.layers import custom, user_activation
from fastnn.layers.base import Layer, kernel_for, shape_error, standardize_shape
from fastnn.nodes import Node
from fastnn.ops import tape as tape_module
from fastnn.ops.tensor import NoGradientRule
from fastnn.seeding import make_rng


class InputLayer(Layer):
    """The entry point of a model: holds the input's shape and dtype, passes data through."""

    def __init__(
        self,
        shape=None,
        batch_size=None,
        dtype=None,
        batch_shape=None,
        name=None,
        batch_input_shape=None,
    ):
        super().__init__(name=name, dtype=dtype)
        if batch_shape is None:  # Keras's legacy name for it
            batch_shape = batch_input_shape
        if shape is None and batch_shape is None:
            raise ValueError("You must pass a `shape` argument to Input, e.g. Input(shape=(28,))")
        if batch_shape is not None:
            batch_shape = standardize_shape(batch_shape, "batch_shape")
        else:
            batch_shape = (batch_size, *standardize_shape(shape, "shape"))
        self.batch_shape = batch_shape
        self.built = True
        node = Node(self, [], batch_shape, self.dtype)
        node.outputs[0].name = self.name
        self.output_tensor = node.outputs[0]

    def forward(self, inputs, training):
        return inputs, None

    def backward(self, ctx, grad_outputs):
        return grad_outputs

    def get_config(self):
        return {"batch_shape": self.batch_shape, "dtype": self.dtype, "name": self.name}


def Input(shape=None, batch_size=None, dtype=None, batch_shape=None, name=None):  # noqa: N802
    """A symbolic input tensor of ``(batch_size, *shape)``, e.g. ``Input(shape=(28, 28, 1))``."""
    return InputLayer(shape, batch_size, dtype, batch_shape, name).output_tensor


class Dense(Layer):
    """``activation(inputs @ kernel + bias)`` over the last axis.

    Input shape: ``(batch, ..., input_dim)``. Output shape: ``(batch, ..., units)``.
    Example: ``Dense(64, activation="relu")(x)``.
    """

    def __init__(
        self,
        units: int,
        activation=None,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units <= 0:
            raise ValueError(
                "Received an invalid value for `units`, expected a positive integer. "
                f"Received: units={units}"
            )
        self.units = int(units)
        self.activation = activations.resolve(activation)  # a name, or a user's function
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self._code = _code_of(self.activation)

    def build(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] is None:
            raise shape_error(
                self, "input needs a known last axis", "(batch, ..., features)", input_shape
            )
        self.kernel = self.add_weight(
            (input_shape[-1], self.units),
            self.kernel_initializer,
            "kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                (self.units,),
                self.bias_initializer,
                "bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def check_input_shape(self, input_shape):
        if len(input_shape) < 2 or input_shape[-1] != self.kernel.shape[0]:
            raise shape_error(
                self,
                "incompatible input shape",
                f"(batch, ..., {self.kernel.shape[0]})",
                tuple(input_shape),
            )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    uses_workspace = True
    passes_mask = True

    def forward(self, inputs, training, workspace=None, activation_code=None):
        """The layer's forward; with ``activation_code`` (a Dense without activation: the
        activation layer after it, fused), that activation in the product's epilogue."""
        code = self._code if activation_code is None else activation_code
        x = inputs.reshape(-1, inputs.shape[-1])
        y = scratch(workspace, "y", (x.shape[0], self.units), self.kernel.dtype)
        kernel = kernel_for(self, training)
        bias = self.bias.value if self.use_bias else _NO_BIAS[y.dtype.char]
        out_shape = (*inputs.shape[:-1], self.units)
        if biased_product(x, kernel, bias, code, y):
            return y.reshape(out_shape), _DenseSaved(x, y, inputs.shape, workspace, code)
        runtime.matmul(x, kernel, y)
        saved = y
        if code in kernels.codes.FROM_INPUT:  # the backward reads z = x @ kernel + bias
            y = scratch(workspace, "activated", saved.shape, saved.dtype)
            kernels.activations.bias_activation_forward_keep_input(saved, bias, code, y)
        elif code == user_activation.USER_FUNCTION:
            if self.use_bias:
                kernels.activations.bias_activation_forward(y, bias, kernels.codes.LINEAR, y)
            y, saved = user_activation.forward(self.activation, y)
        elif self.use_bias or code != kernels.codes.LINEAR:
            kernels.activations.bias_activation_forward(y, bias, code, y)
        return y.reshape(out_shape), _DenseSaved(x, saved, inputs.shape, workspace, code)

    def forward_with(self, inputs, kernel, bias, code, workspace=None):
        """This layer's output (batch, ..., units) computed with ``kernel`` (an array or its
        ``Forms``), ``bias`` and the activation ``code`` in place of its own (a composite
        folding an affine map into it)."""
        x = inputs.reshape(-1, inputs.shape[-1])
        y = scratch(workspace, "y", (x.shape[0], self.units), kernel.dtype)
        if not biased_product(x, kernel, bias, code, y):
            runtime.matmul(x, kernel, y)
            kernels.activations.bias_activation_forward(y, bias, code, y)
        return y.reshape(*inputs.shape[:-1], self.units)

    def inference_call(self, inputs, activation_code=None):
        """``Layer.inference_call``; with ``activation_code`` as ``forward``'s."""
        code = self._code if activation_code is None else activation_code
        bias = self.bias.value if self.use_bias else _NO_BIAS[self.kernel.dtype.char]
        return self.inference_call_with(inputs, kernel_for(self, False), bias, code)

    def inference_call_with(self, inputs, kernel, bias, code):
        """``inference_call`` of ``forward_with``'s product: ``kernel`` a ``Forms``."""
        if code == user_activation.USER_FUNCTION:
            return None
        rows = (-1, inputs.shape[-1])
        y = np.empty((math.prod(inputs.shape[:-1]), self.units), kernel.dtype)
        result = y.reshape(*inputs.shape[:-1], self.units)
        x, threads = inputs.reshape(rows), runtime.threads()
        biased = bias.shape[0] > 0
        fused = biased and kernels.gemm.matmul_bias_call(x, kernel, bias, code, y, threads)
        product = fused or kernels.gemm.matmul_call(x, kernel, y, threads)
        activate = not fused and (biased or code != kernels.codes.LINEAR)

        def call(inputs):
            product(np.ascontiguousarray(inputs).reshape(rows))
            if activate:
                kernels.activations.bias_activation_forward(y, bias, code, y)
            return result

        return call

    skips_input_grad = True

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        x, saved, in_shape, workspace, code = ctx
        grad = np.ascontiguousarray(grad_outputs).reshape(-1, self.units)
        if code == user_activation.USER_FUNCTION:
            grad = user_activation.backward(saved, grad)
        elif code != kernels.codes.LINEAR:
            grad_z = scratch(workspace, "grad_z", grad.shape, grad.dtype)
            kernels.activations.activation_backward(grad, saved, code, grad_z)
            grad = grad_z
        products = []
        if self.trainable:
            products.append((x.T, grad, self.kernel.grad, True))
            if self.use_bias:
                kernels.activations.column_sums_add(grad, self.bias.grad)
        dx = None
        if need_input_grad:
            dx = scratch(workspace, "dx", x.shape, grad.dtype)
            products.append((grad, self.kernel.value.T, dx, False))
        runtime.matmuls(products)
        return None if dx is None else dx.reshape(in_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class _DenseSaved(NamedTuple):
    """What Dense's forward keeps for its backward."""

    x: np.ndarray  # the input as rows (samples, features)
    saved: np.ndarray | tuple  # the output rows (samples, units), or the pre-activation ones
    # for the activations whose gradient reads them (kernels.codes.FROM_INPUT), or what a
    # user's activation function's backward needs (user_activation.forward)
    in_shape: tuple  # the input's shape
    workspace: Workspace | None  # the node's, or None
    code: int  # the activation the forward applied


_NO_BIAS = {"f": np.empty(0, np.float32), "d": np.empty(0, np.float64)}


def biased_product(x, kernel, bias, code, y) -> bool:
    """y = act(x @ kernel + bias) in one pass for a bias (not empty) where the product runs on
    the SIMD kernels, whose epilogue has the activation ``code``: True; else False, y untouched."""
    return bias.shape[0] > 0 and runtime.matmul_bias(x, kernel, bias, code, y)


def _code_of(activation) -> int:
    """The kernel code of a resolved activation; a user's function has none of its own."""
    if callable(activation):
        return user_activation.USER_FUNCTION
    return activations.code(activation)


class Activation(Layer):
    """Applies an activation function; softmax is over the last axis.

    Example: ``Activation("relu")(x)``.
    """

    passes_mask = True

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.resolve(activation)  # a name, or a user's function
        self._code = _code_of(self.activation)

    uses_workspace = True  # a fresh array a call costs its page faults (2-4 ms at 17 MB)

    def forward(self, inputs, training, workspace=None):
        if self._code == user_activation.USER_FUNCTION:
            return user_activation.forward(self.activation, inputs)
        x = np.ascontiguousarray(inputs).reshape(-1, inputs.shape[-1]) if inputs.ndim else inputs
        y = scratch(workspace, "y", x.shape, x.dtype)
        kernels.activations.bias_activation_forward(x, _NO_BIAS[x.dtype.char], self._code, y)
        saved = x if self._code in kernels.codes.FROM_INPUT else y
        return y.reshape(inputs.shape), (saved, workspace)

    def backward(self, ctx, grad_outputs):
        if self._code == user_activation.USER_FUNCTION:
            return user_activation.backward(ctx, grad_outputs)
        saved, workspace = ctx  # the output rows, or the input ones (kernels.codes.FROM_INPUT)
        grad = np.ascontiguousarray(grad_outputs).reshape(saved.shape)
        out = scratch(workspace, "dx", grad.shape, grad.dtype)
        kernels.activations.activation_backward(grad, saved, self._code, out)
        return out.reshape(grad_outputs.shape)

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self.activation)}


class Flatten(Layer):
    """Flattens every axis but the batch axis: ``(batch, d1, d2, ...) -> (batch, d1*d2*...)``."""

    def __init__(self, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if data_format not in (None, "channels_last"):
            raise ValueError(
                f"Flatten '{self.name}': fastnn supports only data_format='channels_last'; "
                f"got {data_format!r}"
            )

    def compute_output_shape(self, input_shape):
        rest = input_shape[1:]
        size = None if any(d is None for d in rest) else math.prod(rest)
        return (input_shape[0], size)

    def forward(self, inputs, training):
        return inputs.reshape(inputs.shape[0], -1), inputs.shape

    def backward(self, ctx, grad_outputs):
        return grad_outputs.reshape(ctx)


class Dropout(Layer):
    """Zeroes a fraction ``rate`` of inputs while training and scales the rest by 1/(1-rate).

    Example: ``Dropout(0.5)(x)``.
    """

    passes_mask = True

    def __init__(self, rate: float, noise_shape=None, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise ValueError(
                "Invalid value received for argument `rate`. Expected a float value between 0 "
                f"and 1. Received: rate={rate}"
            )
        if noise_shape is not None:
            raise NotImplementedError(f"Dropout '{self.name}': noise_shape is not supported yet")
        self.rate = float(rate)
        self.seed = seed
        self.noise_shape = noise_shape
        self._rng = make_rng(seed)

    def forward(self, inputs, training):
        if not training or self.rate == 0:
            return inputs, None
        x = np.ascontiguousarray(inputs)
        uniform = self._rng.random(x.size, dtype=x.dtype)
        out = np.empty_like(x)
        kernels.dropout.dropout_forward(x.reshape(-1), uniform, self.rate, out.reshape(-1))
        return out, uniform

    def backward(self, ctx, grad_outputs):
        if ctx is None:
            return grad_outputs
        grad = np.ascontiguousarray(grad_outputs)
        out = np.empty_like(grad)
        kernels.dropout.dropout_backward(grad.reshape(-1), ctx, self.rate, out.reshape(-1))
        return out

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "noise_shape": self.noise_shape,
        }


class _LambdaInputs(NamedTuple):
    """What an inference pass of a Lambda keeps for a backward: its inputs."""

    inputs: object


class Lambda(Layer):
    """Wraps a Python function ``function(inputs, **arguments)`` as a layer.

    Written with ``fastnn.ops`` (or the numpy functions that have an op, applied to the
    tensors it gets), it trains like a ``call()`` layer: in training its function runs on a
    tape, which differentiates it, so it may sit behind layers with weights (a siamese
    network's distance). A function the tape cannot follow (other numpy) still runs at
    inference, and in training where nothing needs its gradient; where something does,
    training stops with an error naming the layer. A Lambda cannot be saved: a file holding
    code would run it when loaded (Keras's CVE-2024-3660); write a registered Layer subclass
    for that. Example: ``Lambda(lambda x: ops.sum(ops.square(x[0] - x[1]), axis=1))``.
    """

    samples_independent = False  # the function may mix a batch's samples

    def __init__(self, function, output_shape=None, mask=None, arguments=None, **kwargs):
        super().__init__(**kwargs)
        if not callable(function):
            raise TypeError(f"Lambda '{self.name}': `function` must be callable; got {function!r}")
        if mask is not None:
            raise NotImplementedError(f"Lambda '{self.name}': mask= is not supported")
        self.function = function
        self.output_shape_arg = output_shape
        self.arguments = dict(arguments or {})

    def compute_output_shape(self, input_shape):
        if callable(self.output_shape_arg):
            return self.output_shape_arg(input_shape)
        if self.output_shape_arg is not None:
            first = input_shape[0] if isinstance(input_shape, list) else input_shape
            return (first[0], *standardize_shape(self.output_shape_arg, "output_shape"))
        return self._probe_output_shape(input_shape)

    def _probe_output_shape(self, input_shape):
        """Run the function on zeros (unknown sizes as 1) to learn the output's shape."""

        def zeros(shape):
            return np.zeros([1 if d is None else d for d in shape], self.dtype)

        probe = [zeros(s) for s in input_shape] if isinstance(input_shape, list) else None
        out = self.function(probe if probe else zeros(input_shape), **self.arguments)
        batch = (input_shape[0] if isinstance(input_shape, list) else input_shape)[0]
        if isinstance(out, (list, tuple)):
            return [(batch, *np.shape(o)[1:]) for o in out]
        return (batch, *np.shape(out)[1:])

    def call(self, inputs):
        return self.function(inputs, **self.arguments)

    def forward(self, inputs, training):
        """In training, the function on a tape of its own (the context for the backward)
        unless it left the tape before; else on arrays."""
        if training and self.__dict__.get("_follows_tape") is not False:
            outputs, ctx = self._on_tape(inputs, training)
            if ctx is not None:
                return outputs, ctx
            self.__dict__["_follows_tape"] = False  # numpy the tape cannot follow: no gradient
        outputs = self.function(inputs, **self.arguments)
        # an inference pass keeps its inputs: a backward runs the function again on a tape
        ctx = None if self.__dict__.get("_follows_tape") is False else _LambdaInputs(inputs)
        if isinstance(outputs, (list, tuple)):
            return [np.asarray(o) for o in outputs], ctx
        return np.asarray(outputs), ctx

    def _call_arrays(self, inputs, training, extra):
        if tape_module.STATE.tapes and self._tracked(inputs):  # its ops record on the user's tape
            return self.function(inputs, **self.arguments)
        return super()._call_arrays(inputs, training, extra)

    def _on_tape(self, inputs, training):
        """(outputs, context) of the function run on a tape, the context None where the tape
        lost track of an output (numpy it cannot follow)."""
        try:
            outputs, ctx = custom.forward(self, inputs, training)
        except NoGradientRule:
            return None, None
        if all(ctx.tape.key(y) is not None for y in ctx.outputs):
            return outputs, ctx
        return None, None

    @property
    def has_backward(self) -> bool:
        """Whether the tape follows the function: found once by running it on zeros of the
        shapes it was called on (a training step that needs its gradient is refused up front)."""
        follows = self.__dict__.get("_follows_tape")
        if follows is None and self._inbound_nodes:

            def zeros(tensor):
                return np.zeros([1 if d is None else d for d in tensor.shape], tensor.dtype)

            node = self._inbound_nodes[0]
            probe = node.pack_inputs([zeros(t) for t in node.inputs])
            follows = self._on_tape(probe, True)[1] is not None
            self.__dict__["_follows_tape"] = follows
        return follows is not False

    skips_input_grad = True

    def backward(self, ctx, grad_outputs, need_input_grad=True):
        if isinstance(ctx, _LambdaInputs):
            ctx = self._on_tape(ctx.inputs, False)[1]
        if ctx is None:
            raise NotImplementedError(
                f"Lambda '{self.name}' has no gradient: its function computes with numpy that "
                "fastnn cannot differentiate. Write it with fastnn.ops (ops.square, ops.sum, "
                "...), or as a Layer subclass with call()."
            )
        return custom.backward(self, ctx, grad_outputs, need_input_grad)

    def get_config(self):
        raise ValueError(
            f"Lambda '{self.name}' cannot be saved: fastnn files never hold code, because "
            "loading a file that does runs it (Keras's CVE-2024-3660). Replace the Lambda with "
            "a Layer subclass registered with fastnn.saving.register_serializable()."
        )

    @classmethod
    def from_config(cls, config):
        raise ValueError(
            "Refusing to load a Lambda layer: fastnn never loads code from a file "
            "(Keras's CVE-2024-3660)"
        )
