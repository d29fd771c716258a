"""Attention layers: MultiHeadAttention, Attention (dot or concat scores), AdditiveAttention.

Each is a built-in layer: projections and the score/value products are BLAS matmuls (2-D
products through ``fastnn.runtime``, per-head ones through ``np.matmul`` on contiguous
arrays), the masked softmax one Numba pass (``kernels.attention``), and the backward is
written out by hand. Masks follow Keras 3: ``attention_mask`` (batch, Tq, Tv), the causal mask,
and the Keras masks of the inputs (query rows, value/key columns) that the graph propagates
(``Embedding(mask_zero=True)``, ``Masking``).

The call options Keras takes as keywords (``return_attention_scores``, ``use_causal_mask``, the
presence of ``key`` and ``attention_mask``) decide what a symbolic call records: a layer keeps
the options of its symbolic call, and a second symbolic call must use the same ones.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from fastnn import constraints, initializers, kernels, regularizers, runtime
from fastnn.kernels.workspace import scratch
from fastnn.layers import custom
from fastnn.layers.base import Layer, shape_error
from fastnn.nodes import is_symbolic
from fastnn.ops import tape as tape_module
from fastnn.seeding import make_rng


class _Options(NamedTuple):
    """What one call of an attention layer computes, beside its tensors."""

    key: bool  # a key tensor is given (else key is value)
    attention_mask: bool  # MultiHeadAttention: an attention_mask tensor is given
    scores: bool  # return_attention_scores: the outputs are [output, scores]
    causal: bool  # use_causal_mask


_DEFAULT = _Options(False, False, False, False)


class _AttentionBase(Layer):
    """The call handling the attention layers share: options kept per symbolic call, masks."""

    supports_masking = True  # forward takes the inputs' masks (a list, as the inputs)

    def __init__(self, dropout: float, seed, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool):
            raise TypeError(f"{type(self).__name__}: `dropout` must be a float; got {dropout!r}")
        if not 0 <= dropout <= 1:
            raise ValueError(
                f"{type(self).__name__} '{self.name}': `dropout` must be in [0, 1]; "
                f"got dropout={dropout}"
            )
        self.dropout, self.seed = float(dropout), seed
        self._rng = make_rng(seed) if self.dropout > 0 else None
        self._options: _Options | None = None  # those of the symbolic call

    #: Keyword arguments of a recorded call a saved model may hold (Keras's call arguments).
    call_keywords = frozenset({"return_attention_scores", "use_causal_mask"})

    @property
    def makes_masks(self) -> bool:
        return False  # the output's mask is the query's, passed on

    def call_record(self, inputs: list) -> tuple[list, dict]:
        """(args, kwargs) of the symbolic call on ``inputs`` (its node's tensors), as Keras
        writes a call in a model's config: the options this layer keeps are keywords."""
        kwargs = {}
        options = self._options or _DEFAULT
        if options.scores:
            kwargs["return_attention_scores"] = True
        if options.causal:
            kwargs["use_causal_mask"] = True
        return [inputs], kwargs

    def compute_mask(self, inputs, mask=None):
        query_mask = mask[0] if isinstance(mask, list) else None
        if (self._options or _DEFAULT).scores:
            return [query_mask, None]
        return query_mask

    def _keep_options(self, options: _Options) -> None:
        if self._options is not None and self._options != options:
            raise NotImplementedError(
                f"{type(self).__name__} '{self.name}' was called on symbolic tensors with "
                f"{self._options._asdict()}; fastnn records one set of call options per layer, "
                f"got {options._asdict()}: use another layer (share weights by set_weights)"
            )
        self._options = options

    def _run(self, tensors: list, options: _Options, training, masks):
        """Record a node on symbolic tensors, or run on arrays (on the tape when it records)."""
        if is_symbolic(tensors):
            if masks is not None and any(m is not None for m in masks):
                raise NotImplementedError(
                    f"{type(self).__name__} '{self.name}': explicit masks work on array calls; "
                    "in a model the masks come from Embedding(mask_zero=True) or Masking"
                )
            self._keep_options(options)
            return self._call_symbolic(tensors)
        extra = {"options": options}
        if masks is not None and any(m is not None for m in masks):
            extra["mask"] = [None if m is None else np.asarray(m, dtype=bool) for m in masks]
        if training is None:
            training = custom.TRAINING.get()
        if tape_module.STATE.tapes and self._tracked(tensors):
            arrays = self._to_values(tensors)
        else:
            arrays = self._to_arrays(tensors)
        shapes = [tuple(a.shape) for a in arrays]
        if not self.built:
            self.build(shapes, options=options)
        else:
            self.check_input_shape(shapes, options=options)
        with runtime.serial_blas():  # once per call on arrays (see fastnn.runtime)
            return self._call_arrays(arrays, bool(training), extra)

    def _split(self, items: list, options: _Options):
        """(query, value, key) of a list laid out as the options say; key is value if absent."""
        query, value = items[0], items[1]
        key = items[2] if options.key else value
        return query, value, key

    def _dropout(self, weights: np.ndarray, training: bool):
        """Dropout on the attention weights in training: (dropped weights, uniforms or None)."""
        if not training or self.dropout == 0:
            return weights, None
        uniform = self._rng.random(weights.size, dtype=weights.dtype)
        dropped = np.empty_like(weights)
        kernels.dropout.dropout_forward(
            weights.reshape(-1), uniform, self.dropout, dropped.reshape(-1)
        )
        return dropped, uniform

    def _dropout_backward(self, grad: np.ndarray, uniform) -> np.ndarray:
        if uniform is None:
            return grad
        out = np.empty_like(grad)
        kernels.dropout.dropout_backward(grad.reshape(-1), uniform, self.dropout, out.reshape(-1))
        return out


def _padding_mask(query_mask, value_mask, key_mask, attention_mask, shape):
    """The (B, Tq, Tv) boolean mask (True: attend) the masks make, or an empty (0, 0, 0) one."""
    mask = None
    if query_mask is not None:
        mask = query_mask[:, :, None]
    for columns in (value_mask, key_mask):
        if columns is not None:
            mask = columns[:, None, :] if mask is None else mask & columns[:, None, :]
    if attention_mask is not None:
        given = np.asarray(attention_mask) != 0
        mask = given if mask is None else given & mask
    if mask is None:
        return _NO_MASK
    return np.ascontiguousarray(np.broadcast_to(mask, shape))


_NO_MASK = np.zeros((0, 0, 0), dtype=bool)


def _check_mask_shape(layer, mask, shape, what):
    if mask is not None and np.shape(mask) != shape:
        raise shape_error(layer, f"{what} must be (batch, steps)", shape, np.shape(mask))


# ---------------------------------------------------------------------------- MultiHeadAttention


class _MHASaved(NamedTuple):
    """What MultiHeadAttention's forward keeps for its backward."""

    inputs: tuple  # the query, value and key inputs as rows (B*T, dim)
    heads: tuple  # q (scaled), k, v per head: (B, H, T, dim)
    weights: np.ndarray  # the softmax weights (B, H, Tq, Tv), before dropout
    dropped: np.ndarray  # the weights the values were averaged with (after dropout)
    uniform: np.ndarray | None  # dropout's draws, or None
    combined: np.ndarray  # the heads' outputs as rows (B*Tq, H*dv)
    options: _Options
    shapes: tuple  # the query, value and key input shapes
    workspace: object  # the forward's Workspace (or None): the backward's arrays too
    padding: np.ndarray | None  # the (B, Tq, Tv) mask the pass took


class MultiHeadAttention(_AttentionBase):
    """Multi-head scaled dot-product attention (Vaswani et al.), Keras 3's layer.

    Called as ``mha(query, value, key=None, attention_mask=None, return_attention_scores=False,
    training=None, use_causal_mask=False)`` with query ``(batch, Tq, dim)`` and value, key
    ``(batch, Tv, dim)``; the output is ``(batch, Tq, dim)`` (or ``output_shape``), and with
    ``return_attention_scores`` also the weights ``(batch, num_heads, Tq, Tv)``. Self-attention:
    ``mha(x, x)``. Weights (Keras's layout and order): query, key and value kernels
    ``(dim, num_heads, key_dim)`` (value: ``value_dim``) with biases ``(num_heads, key_dim)``,
    then the output kernel ``(num_heads, value_dim, dim)`` and bias ``(dim,)``.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate: bool = False,
        seed=None,
        **kwargs,
    ):
        for arg, value in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"Received an invalid value for argument `{arg}`, expected a positive "
                    f"integer. Received: {arg}={value}"
                )
        if value_dim is not None and (
            not isinstance(value_dim, (int, np.integer)) or value_dim <= 0
        ):
            raise ValueError(
                "Received an invalid value for argument `value_dim`, expected a positive "
                f"integer or `None`. Received: value_dim={value_dim}"
            )
        super().__init__(dropout, seed, **kwargs)
        unsupported = {
            "sliding_window": (sliding_window, None),
            "flash_attention": (flash_attention, (None, False)),
            "use_gate": (use_gate, False),
            "activity_regularizer": (activity_regularizer, None),
        }
        for arg, (value, default) in unsupported.items():
            if value not in (default if isinstance(default, tuple) else (default,)):
                raise NotImplementedError(
                    f"MultiHeadAttention '{self.name}': fastnn does not support "
                    f"{arg}={value!r} (only its default)"
                )
        if isinstance(output_shape, (int, np.integer)):
            output_shape = (int(output_shape),)
        elif output_shape:
            try:
                output_shape = tuple(int(d) for d in output_shape)
            except TypeError:
                raise ValueError(
                    f"Invalid `output_shape`: {output_shape}. When specified, the "
                    "`output_shape` should be of type tuple, list, or int."
                ) from None
        if isinstance(attention_axes, (int, np.integer)):
            attention_axes = (int(attention_axes),)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(
                "`attention_axes` must be an int, list, or tuple."
                f"Received: attention_axes={attention_axes}"
            )
        self.num_heads, self.key_dim = int(num_heads), int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.use_bias = bool(use_bias)
        self.output_shape_arg = output_shape or None
        self.attention_axes = None if attention_axes is None else tuple(attention_axes)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self._scale = 1.0 / math.sqrt(float(self.key_dim))

    # ---- calling ---------------------------------------------------------------------------
    def __call__(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores: bool = False,
        training=None,
        use_causal_mask: bool = False,
        **kwargs,
    ):
        """``mha(query, value, key=None, ...)`` as in Keras; ``mha([query, value(, key)])``, the
        form saved models replay, also works (a second positional argument is then
        ``training``). ``query_mask``, ``value_mask`` and ``key_mask`` ((batch, steps) booleans)
        are the inputs' Keras masks, given by hand on array calls."""
        if kwargs:
            raise TypeError(
                f"MultiHeadAttention '{self.name}' got unexpected call arguments {sorted(kwargs)}"
            )
        if isinstance(query, (list, tuple)):
            if not 2 <= len(query) <= 3 or key is not None:
                raise ValueError(
                    f"MultiHeadAttention '{self.name}': called on a list, it takes [query, value] "
                    f"or [query, value, key]; got {len(query)} tensors and key={key!r}"
                )
            if value is not None and training is None:
                training, value = value, None
            if value is not None:
                raise TypeError(f"MultiHeadAttention '{self.name}': value given twice")
            query, value, key = (*query, None)[:3]
        if value is None:
            raise TypeError(f"MultiHeadAttention '{self.name}' needs a `value` tensor")
        tensors = [query, value] + ([key] if key is not None else [])
        options = _Options(
            key is not None,
            attention_mask is not None,
            bool(return_attention_scores),
            bool(use_causal_mask),
        )
        if attention_mask is not None:
            tensors.append(attention_mask)
        masks = [query_mask, value_mask] + ([key_mask] if key is not None else [])
        if attention_mask is not None:
            masks.append(None)
        return self._run(tensors, options, training, masks)

    call_keywords = _AttentionBase.call_keywords | {"query", "value", "key", "attention_mask"}

    def call_record(self, inputs: list) -> tuple[list, dict]:
        """Keras's record of a call: query, value (and key) as arguments, the rest keywords."""
        _, kwargs = super().call_record(inputs)
        options = self._options or _DEFAULT
        args = list(inputs[: 3 if options.key else 2])
        if options.attention_mask:
            kwargs["attention_mask"] = inputs[-1]
        return args, kwargs

    # ---- shapes and weights ----------------------------------------------------------------
    def _shapes(self, input_shape, options: _Options | None = None):
        """(query, value, key) shapes of a list of input shapes, checked."""
        options = options or self._options or _options_of(input_shape)
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(
                f"MultiHeadAttention '{self.name}': expected query and value shapes; "
                f"got {input_shape}"
            )
        query, value, key = self._split([tuple(s) for s in input_shape], options)
        for what, shape in (("query", query), ("value", value), ("key", key)):
            if len(shape) != 3:
                raise NotImplementedError(
                    f"MultiHeadAttention '{self.name}': fastnn attends over the steps of "
                    f"(batch, steps, features) inputs; {what} has shape {shape}"
                )
        if value[1:-1] != key[1:-1]:
            raise ValueError(
                f"MultiHeadAttention '{self.name}': All dimensions of `value` and `key`, except "
                f"the last one, must be equal. Received: value_shape={value} and key_shape={key}"
            )
        if options.attention_mask:
            given = tuple(input_shape[-1])
            want = (query[0], query[1], value[1])
            if len(given) != 3 or any(
                g is not None and w is not None and g != w for g, w in zip(given, want)
            ):
                raise shape_error(self, "attention_mask must be (batch, Tq, Tv)", want, given)
        if self.attention_axes is not None:
            axes = tuple(a if a >= 0 else 3 + a for a in self.attention_axes)
            if axes != (1,):
                raise NotImplementedError(
                    f"MultiHeadAttention '{self.name}': fastnn supports the default "
                    f"attention_axes only (the steps axis, 1); got {self.attention_axes}"
                )
        return query, value, key

    def build(self, query_shape, value_shape=None, key_shape=None, *, options=None):
        """Keras's ``build(query_shape, value_shape, key_shape=None)``, or one list of shapes
        laid out as the call's tensors."""
        input_shape = _shape_list(query_shape, value_shape, key_shape)
        query, value, key = self._shapes(input_shape, options)
        for what, shape in (("query", query), ("value", value), ("key", key)):
            if shape[-1] is None:
                raise shape_error(
                    self, f"{what} needs a known last axis", "(batch, steps, dim)", shape
                )
        heads = self.num_heads
        self._query = self._projection(
            "query", (query[-1], heads, self.key_dim), (heads, self.key_dim)
        )
        self._key = self._projection("key", (key[-1], heads, self.key_dim), (heads, self.key_dim))
        self._value = self._projection(
            "value", (value[-1], heads, self.value_dim), (heads, self.value_dim)
        )
        out = self.output_shape_arg or (query[-1],)
        self._output = self._projection("attention_output", (heads, self.value_dim, *out), out)
        self._dims = (query[-1], value[-1], key[-1])

    def _projection(self, name: str, kernel_shape: tuple, bias_shape: tuple) -> tuple:
        """(kernel, bias or None) of one of Keras's four EinsumDense sublayers, their weights
        named and pathed as Keras's (``<layer>/<name>/kernel``)."""
        kernel = self.add_weight(
            kernel_shape,
            self.kernel_initializer,
            "kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        bias = None
        if self.use_bias:
            bias = self.add_weight(
                bias_shape,
                self.bias_initializer,
                "bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        for var in (kernel, bias):
            if var is not None:
                prefix = var.path.rsplit("/", 1)[0]
                var.path = f"{prefix}/{name}/{var.name}"
        return kernel, bias

    @property
    def sublayer_weights(self) -> dict[str, list]:
        """The weights of Keras's sublayers by the names its ``.weights.h5`` files group them
        under (the softmax and dropout sublayers hold none)."""
        names = ("query_dense", "key_dense", "value_dense", "output_dense")
        parts = (self._query, self._key, self._value, self._output)
        groups = {n: [w for w in part if w is not None] for n, part in zip(names, parts)}
        return {**groups, "_softmax": [], "_dropout_layer": []}

    def check_input_shape(self, input_shape, *, options=None):
        query, value, key = self._shapes(input_shape, options)
        if (query[-1], value[-1], key[-1]) != self._dims:
            raise shape_error(
                self,
                "last axes (query, value, key) differ from the built ones",
                self._dims,
                (query[-1], value[-1], key[-1]),
            )

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        """Keras's ``compute_output_shape(query_shape, value_shape, key_shape=None)``, or one
        list of shapes."""
        input_shape = _shape_list(query_shape, value_shape, key_shape)
        query, value, _ = self._shapes(input_shape)
        output = (*query[:-1], *(self.output_shape_arg or query[-1:]))
        if (self._options or _options_of(input_shape)).scores:
            return [output, (query[0], self.num_heads, query[1], value[1])]
        return output

    # ---- forward and backward --------------------------------------------------------------
    uses_workspace = True  # a fresh (B, H, Tq, Tk) array per call costs its page faults

    def forward(self, inputs, training, mask=None, options=None, workspace=None):
        options = options or self._options or _options_of(inputs)
        query, value, key = (np.asarray(x) for x in self._split(inputs, options))
        batch, steps, keys = query.shape[0], query.shape[1], value.shape[1]
        if mask is not None:
            for m, x, what in zip(mask, (query, value, key), ("query", "value", "key")):
                _check_mask_shape(self, m, x.shape[:2], f"the {what} mask")
        masks = (mask or [None] * 3) + [None] * 3
        attention_mask = inputs[-1] if options.attention_mask else None
        padding = _padding_mask(
            masks[0],
            masks[1],
            masks[2] if options.key else None,
            attention_mask,
            (batch, steps, keys),
        )
        rows = [np.ascontiguousarray(x).reshape(-1, x.shape[-1]) for x in (query, value, key)]
        if rows[0].dtype == np.float32 and not (training and self.dropout > 0):
            keep = training or options.scores  # else a backward makes them again
            args = (rows, padding, options, batch, steps, workspace, keep)
            heads, combined = self._attend_side_by_side(*args)
            dropped, uniform = heads[3], None
        else:
            args = (rows, padding, options, training, batch, workspace)
            heads, combined = self._attend_per_head(*args)
            dropped, uniform = self._dropout(heads[3], training)
            if training and self.dropout > 0:
                heads_out = np.matmul(dropped, heads[2])
                combined = heads_out.transpose(0, 2, 1, 3).reshape(batch * steps, -1)
        q, k, v, weights = heads
        kernel, bias = self._output
        out_shape = (combined.shape[0], math.prod(kernel.shape[2:]))
        out = scratch(workspace, "out", out_shape, combined.dtype)
        _affine(combined, kernel, bias, out)
        out = out.reshape(batch, steps, *kernel.shape[2:])
        shapes = (query.shape, value.shape, key.shape)
        ctx = _MHASaved(
            tuple(rows), (q, k, v), weights, dropped, uniform, combined, options, shapes,
            workspace, padding,
        )  # fmt: skip
        return ([out, weights.copy()] if options.scores else out), ctx

    def _attend_per_head(self, rows, padding, options, training, batch, workspace=None):
        """((q scaled, k, v per head (B, H, T, dim), weights (B, H, Tq, Tk)), the heads'
        outputs as rows (B*Tq, H*dv), None when dropout is to come)."""
        q, k, v = self._per_head(*self._projections(rows, workspace), batch, workspace)
        steps, keys = q.shape[2], k.shape[2]
        weights = scratch(workspace, "weights", (batch, self.num_heads, steps, keys), q.dtype)
        heads_shape = (batch, self.num_heads, steps, self.value_dim)
        heads_out = scratch(workspace, "heads_out", heads_shape, q.dtype)
        dropping = training and self.dropout > 0
        kernels.attention.attend(
            q, k, None if dropping else v, padding, options.causal,
            kernels.attention.MASK_REPLACE, weights, heads_out, threads=runtime.threads(),
        )  # fmt: skip
        if dropping:
            return (q, k, v, weights), None
        combined = scratch(workspace, "combined", (batch, steps, *heads_shape[1::2]), q.dtype)
        np.copyto(combined, heads_out.transpose(0, 2, 1, 3))
        return (q, k, v, weights), combined.reshape(batch * steps, -1)

    def _attend_side_by_side(
        self, rows, padding, options, batch, steps, workspace=None, keep_weights=True
    ):
        """``_attend_per_head`` for float32 without dropout: on the projections' rows as they
        come, the heads side by side (``kernels.attention.attend_heads``); the weights None
        unless ``keep_weights``."""
        q, k, v = (p.reshape(batch, -1, p.shape[1]) for p in self._projections(rows, workspace))
        shape = (batch, self.num_heads, steps, k.shape[1]) if keep_weights else (0, 0, 0, 0)
        weights = scratch(workspace, "weights", shape, q.dtype)
        combined = scratch(
            workspace, "combined", (batch, steps, self.num_heads * self.value_dim), q.dtype
        )
        kernels.attention.attend_heads(
            q, k, v, self.num_heads, self._scale, padding, options.causal,
            kernels.attention.MASK_REPLACE, weights, combined, threads=runtime.threads(),
        )  # fmt: skip
        return (q, k, v, weights if keep_weights else None), combined.reshape(batch * steps, -1)

    def _per_head(self, q, k, v, batch, workspace=None):
        """(q scaled, k, v) per head (B, H, T, dim) from their projections' rows, the heads side
        by side ((B*T, H*dim) or (B, T, H*dim))."""
        q, k, v = (self._heads(x, batch, workspace, name) for x, name in zip((q, k, v), "qkv"))
        q *= q.dtype.type(self._scale)  # as Keras: the query scaled, not the scores
        return q, k, v

    def _projections(self, rows, workspace=None):
        """The query's, key's and value's projections (B*T, H*dim), each head's dim columns
        side by side, from the query, value and key rows."""
        specs = (
            (0, self._query, self.key_dim, "q"),
            (2, self._key, self.key_dim, "k"),
            (1, self._value, self.value_dim, "v"),
        )
        return [self._project(rows[i], w, dim, workspace, name) for i, w, dim, name in specs]

    def _project(self, rows, weights, dim, workspace=None, name="projection"):
        """rows (B*T, features) @ kernel + bias: (B*T, H*dim), the heads side by side."""
        kernel, bias = weights
        out = scratch(workspace, name, (rows.shape[0], self.num_heads * dim), rows.dtype)
        return _affine(rows, kernel, bias, out)

    def _heads(self, side_by_side, batch, workspace=None, name="heads"):
        """(B*T, H*dim) or (B, T, H*dim) rows as heads (B, H, T, dim), contiguous."""
        dim = side_by_side.shape[-1] // self.num_heads
        by_step = side_by_side.reshape(batch, -1, self.num_heads, dim)
        shape = (batch, self.num_heads, by_step.shape[1], dim)
        heads = scratch(workspace, name + "_heads", shape, by_step.dtype)
        np.copyto(heads, by_step.transpose(0, 2, 1, 3))
        return heads

    def backward(self, ctx, grad_outputs):
        rows, (q, k, v), weights, dropped, uniform, combined, options, shapes, workspace = ctx[:9]
        grad_scores = None
        if options.scores:
            grad_outputs, grad_scores = grad_outputs
        batch, steps = shapes[0][:2]
        if weights is None:  # an inference pass did not keep them: the same pass again
            args = (rows, ctx.padding, options, batch, steps, workspace)
            (q, k, v, weights), combined = self._attend_side_by_side(*args)
        grad = np.ascontiguousarray(grad_outputs).reshape(batch * steps, -1)
        kernel, bias = self._output
        grad_combined = scratch(workspace, "d_combined", combined.shape, combined.dtype)
        products = [(grad, kernel.value.reshape(combined.shape[1], -1).T, grad_combined, False)]
        if self.trainable:
            products.append((combined.T, grad, kernel.grad.reshape(combined.shape[1], -1), True))
            if bias is not None:
                bias.grad += grad.sum(axis=0).reshape(bias.shape)
        runtime.matmuls(products)
        extra = None if grad_scores is None else np.ascontiguousarray(grad_scores, q.dtype)
        if q.ndim == 3:  # the heads side by side (float32 without dropout)
            grad_q, grad_k, grad_v = self._attend_side_by_side_backward(
                grad_combined.reshape(batch, steps, -1), q, k, v, weights, extra, workspace
            )
        else:
            args = (grad_combined, q, k, v, weights, dropped, uniform, extra, workspace)
            grad_q, grad_k, grad_v = self._attend_per_head_backward(*args)
        grad_query = self._project_backward(rows[0], self._query, grad_q, workspace, "d_query")
        grad_key = self._project_backward(rows[2], self._key, grad_k, workspace, "d_key")
        grad_value = self._project_backward(rows[1], self._value, grad_v, workspace, "d_value")
        if options.key:
            grads = [grad_query, grad_value, grad_key]
        else:
            grads = [grad_query, np.add(grad_value, grad_key, out=grad_value)]
        grads = [g.reshape(s) for g, s in zip(grads, shapes)]
        if options.attention_mask:
            grads.append(None)
        return grads

    def _attend_side_by_side_backward(self, grad_combined, q, k, v, weights, extra, workspace):
        """The projections' gradients as rows (B*T, H*dim), from the heads' output gradient
        (B, Tq, H*dv), by ``kernels.attention.attend_heads_backward``."""
        names = ("dq", "dk", "dv")
        grads = [scratch(workspace, name, x.shape, x.dtype) for x, name in zip((q, k, v), names)]
        no_extra = np.empty((0, 0, 0, 0), np.float32)
        kernels.attention.attend_heads_backward(
            grad_combined, q, k, v, self.num_heads, self._scale, weights,
            no_extra if extra is None else extra, *grads, threads=runtime.threads(),
        )  # fmt: skip
        return [g.reshape(-1, g.shape[2]) for g in grads]

    def _attend_per_head_backward(
        self, grad_combined, q, k, v, weights, dropped, uniform, extra, workspace
    ):
        """The projections' gradients as rows (B*T, H*dim), per head through
        ``kernels.attention.attend_backward``."""
        batch, heads, steps, dv = (*q.shape[:3], self.value_dim)
        grad_heads = scratch(workspace, "d_heads", (batch, heads, steps, dv), q.dtype)
        np.copyto(grad_heads, grad_combined.reshape(batch, steps, heads, dv).transpose(0, 2, 1, 3))
        grad_q, grad_k, grad_v = (
            scratch(workspace, name, x.shape, x.dtype)
            for x, name in zip((q, k, v), ("dq", "dk", "dv"))
        )
        dropout = None if uniform is None else (dropped, uniform, self.dropout)
        kernels.attention.attend_backward(
            grad_heads, q, k, v, weights, dropout, extra, grad_q, grad_k, grad_v,
            threads=runtime.threads(),
        )  # fmt: skip
        grad_q *= grad_q.dtype.type(self._scale)
        return [
            _side_by_side(g, workspace, name) for g, name in zip((grad_q, grad_k, grad_v), "qkv")
        ]

    def _project_backward(self, rows, weights, grad, workspace, name):
        """The input rows' gradient of ``_project`` from its output's, ``grad`` (B*T, H*dim)
        (``workspace``'s array ``name``); the kernel's and bias's added in."""
        kernel, bias = weights
        grad_rows = scratch(workspace, name, rows.shape, rows.dtype)
        products = [(grad, kernel.value.reshape(rows.shape[1], -1).T, grad_rows, False)]
        if self.trainable:
            products.append((rows.T, grad, kernel.grad.reshape(rows.shape[1], -1), True))
            if bias is not None:
                bias.grad += grad.sum(axis=0).reshape(bias.shape)
        runtime.matmuls(products)
        return grad_rows

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "use_gate": False,
            "output_shape": None if self.output_shape_arg is None else list(self.output_shape_arg),
            "attention_axes": None if self.attention_axes is None else list(self.attention_axes),
            "sliding_window": None,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        }


def _shape_list(query_shape, value_shape, key_shape) -> list:
    """The shapes as one list: given separately (Keras's signature), or a list already."""
    if value_shape is None:
        return query_shape
    return [query_shape, value_shape] + ([key_shape] if key_shape is not None else [])


def _options_of(inputs) -> _Options:
    """Options a bare list implies (a layer never called symbolically): a third item is key."""
    return _Options(len(inputs) > 2, False, False, False)


# ---------------------------------------------------------------- Attention, AdditiveAttention


class _ScoreSaved(NamedTuple):
    """What Attention's and AdditiveAttention's forwards keep for their backwards."""

    query: np.ndarray
    value: np.ndarray
    key: np.ndarray
    raw: np.ndarray  # dot: q @ k.T before the scale; concat, additive: the tanh (B, Tq, Tv, d)
    weights: np.ndarray  # the softmax weights (B, Tq, Tv), before dropout
    dropped: np.ndarray  # the weights the values were averaged with (the returned scores)
    uniform: np.ndarray | None  # dropout's draws, or None
    query_mask: np.ndarray | None  # (B, Tq): rows of the output set to zero where False
    options: _Options


class Attention(_AttentionBase):
    """Dot-product attention (Luong-style), Keras 3's layer.

    Called on ``[query, value]`` or ``[query, value, key]`` (``(batch, Tq, dim)``,
    ``(batch, Tv, dim_v)``, ``(batch, Tv, dim)``), with ``mask=[query_mask, value_mask]``,
    ``return_attention_scores`` and ``use_causal_mask`` as in Keras; the output is
    ``(batch, Tq, dim_v)``. ``score_mode="dot"``: scores ``q @ k.T`` (times the ``scale``
    weight with ``use_scale``); ``"concat"``: ``concat_score_weight * sum(tanh(scale * (q +
    k)))``.
    """

    def __init__(
        self,
        use_scale: bool = False,
        score_mode: str = "dot",
        dropout: float = 0.0,
        seed=None,
        **kwargs,
    ):
        super().__init__(dropout, seed, **kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(
                "Invalid value for argument score_mode. Expected one of {'dot', 'concat'}. "
                f"Received: score_mode={score_mode}"
            )
        self.use_scale, self.score_mode = bool(use_scale), score_mode

    def __call__(
        self,
        inputs,
        training=None,
        mask=None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ):
        """``layer([query, value(, key)], mask=[query_mask, value_mask], ...)`` as in Keras."""
        self._check_list(inputs, "inputs")
        if mask is not None:
            self._check_list(mask, "mask")
            mask = list(mask)[:2] + [None] * (len(inputs) - 2)
            mask += [None] * (len(inputs) - len(mask))
        options = _Options(
            len(inputs) > 2, False, bool(return_attention_scores), bool(use_causal_mask)
        )
        return self._run(list(inputs), options, training, mask)

    def _check_list(self, items, what: str) -> None:
        if not isinstance(items, (list, tuple)):
            raise ValueError(
                f"{type(self).__name__} layer must be called on a list of inputs, namely "
                f"[query, value] or [query, value, key]. Received: {what}={items!r:.80}."
            )
        if not 2 <= len(items) <= 3:
            raise ValueError(
                f"{type(self).__name__} layer accepts {what} list of length 2 or 3, namely "
                f"[query, value] or [query, value, key]. Received length: {len(items)}."
            )

    def _shapes(self, input_shape):
        self._check_list(input_shape, "inputs")
        query, value = tuple(input_shape[0]), tuple(input_shape[1])
        key = tuple(input_shape[2]) if len(input_shape) > 2 else value
        for what, shape in (("query", query), ("value", value), ("key", key)):
            if len(shape) != 3:
                raise NotImplementedError(
                    f"{type(self).__name__} '{self.name}': fastnn attends over (batch, steps, "
                    f"features) inputs; {what} has shape {shape}"
                )
        if value[1] is not None and key[1] is not None and value[1] != key[1]:
            raise shape_error(self, "value and key must have the same steps", value, key)
        if query[-1] != key[-1]:
            raise shape_error(
                self, "query and key must have the same last axis", query[-1:], key[-1:]
            )
        return query, value, key

    def build(self, input_shape, *, options=None):
        self._shapes(input_shape)
        self.scale = self.concat_score_weight = None
        if self.use_scale:
            self.scale = self.add_weight((), "ones", "scale")
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight((), "ones", "concat_score_weight")

    def check_input_shape(self, input_shape, *, options=None):
        self._shapes(input_shape)

    def compute_output_shape(self, input_shape):
        query, value, key = self._shapes(input_shape)
        output = (*query[:-1], value[-1])
        if (self._options or _DEFAULT).scores:
            return [output, (*query[:-1], key[1])]
        return output

    def forward(self, inputs, training, mask=None, options=None):
        options = options or self._options or _options_of(inputs)
        query, value, key = (np.asarray(x) for x in self._split(inputs, options))
        query_mask = value_mask = None
        if mask is not None:
            query_mask, value_mask = mask[0], mask[1]
            _check_mask_shape(self, query_mask, query.shape[:2], "the query mask")
            _check_mask_shape(self, value_mask, value.shape[:2], "the value mask")
        scores, raw = self._scores(query, key)
        shape = (query.shape[0], query.shape[1], value.shape[1])
        padding = _padding_mask(None, value_mask, None, None, shape)
        weights = np.empty_like(scores)
        kernels.attention.masked_softmax(
            scores[:, None],
            padding,
            options.causal,
            kernels.attention.MASK_SUBTRACT,
            weights[:, None],
        )
        dropped, uniform = self._dropout(weights, training)
        out = np.matmul(dropped, value)
        if query_mask is not None:
            out *= query_mask[:, :, None]
        ctx = _ScoreSaved(query, value, key, raw, weights, dropped, uniform, query_mask, options)
        return ([out, dropped.copy()] if options.scores else out), ctx

    def _scores(self, query, key):
        """The (B, Tq, Tv) scores and what their backward reads."""
        if self.score_mode == "dot":
            raw = np.matmul(query, key.transpose(0, 2, 1))
            scores = raw * self.scale.value if self.use_scale else raw
            return scores, raw
        summed = query[:, :, None, :] + key[:, None, :, :]
        if self.use_scale:
            summed *= self.scale.value
        tanh = np.tanh(summed)
        return tanh.sum(axis=-1) * self.concat_score_weight.value, tanh

    def backward(self, ctx, grad_outputs):
        query, value, key, raw, weights, dropped, uniform, query_mask, options = ctx
        grad_scores = None
        if options.scores:
            grad_outputs, grad_scores = grad_outputs
        grad = grad_outputs
        if query_mask is not None:
            grad = grad * query_mask[:, :, None]
        grad_value = np.matmul(dropped.transpose(0, 2, 1), grad)
        grad_dropped = np.matmul(grad, value.transpose(0, 2, 1))
        if grad_scores is not None:
            grad_dropped += grad_scores  # the returned scores are the weights after dropout
        grad_weights = self._dropout_backward(grad_dropped, uniform)
        grad_s = np.empty_like(weights)
        rows = weights.shape[-1]
        kernels.attention.softmax_backward(
            grad_weights.reshape(-1, rows), weights.reshape(-1, rows), grad_s.reshape(-1, rows)
        )
        grad_query, grad_key = self._scores_backward(grad_s, query, key, raw)
        if options.key:
            return [grad_query, grad_value, grad_key]
        return [grad_query, grad_value + grad_key]

    def _scores_backward(self, grad_s, query, key, raw):
        """(grad query, grad key); the weights' gradients added in."""
        if self.score_mode == "dot":
            if self.use_scale:
                if self.trainable:
                    self.scale.grad += np.sum(grad_s * raw)
                grad_s = grad_s * self.scale.value
            return np.matmul(grad_s, key), np.matmul(grad_s.transpose(0, 2, 1), query)
        weight = self.concat_score_weight.value
        if self.trainable:
            self.concat_score_weight.grad += np.sum(grad_s * raw.sum(axis=-1))
        grad_pre = (grad_s * weight)[..., None] * (1 - raw * raw)  # through tanh
        if self.use_scale:
            if self.trainable:
                summed = query[:, :, None, :] + key[:, None, :, :]
                self.scale.grad += np.sum(grad_pre * summed)
            grad_pre *= self.scale.value
        return grad_pre.sum(axis=2), grad_pre.sum(axis=1)

    def get_config(self):
        return {
            **super().get_config(),
            "use_scale": self.use_scale,
            "score_mode": self.score_mode,
            "dropout": self.dropout,
            "seed": self.seed,
        }


class AdditiveAttention(Attention):
    """Additive (Bahdanau-style) attention, Keras 3's layer: scores ``sum(scale * tanh(q +
    k))`` over the features, ``scale`` a weight of shape ``(dim,)`` with ``use_scale``.

    Called as ``Attention``: on ``[query, value]`` or ``[query, value, key]``, with
    ``mask=[query_mask, value_mask]``, ``return_attention_scores``, ``use_causal_mask``.
    """

    def __init__(self, use_scale: bool = True, dropout: float = 0.0, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape, *, options=None):
        query, _, _ = self._shapes(input_shape)
        self.scale = None
        if self.use_scale:
            self.scale = self.add_weight((query[-1],), "glorot_uniform", "scale")

    def _scores(self, query, key):
        tanh = np.tanh(query[:, :, None, :] + key[:, None, :, :])
        if self.use_scale:
            return np.matmul(tanh, self.scale.value), tanh
        return tanh.sum(axis=-1), tanh

    def _scores_backward(self, grad_s, query, key, raw):
        if self.use_scale:
            if self.trainable:
                self.scale.grad += np.einsum("bqv,bqvd->d", grad_s, raw)
            grad_tanh = grad_s[..., None] * self.scale.value
        else:
            grad_tanh = np.broadcast_to(grad_s[..., None], raw.shape)
        grad_pre = grad_tanh * (1 - raw * raw)
        return grad_pre.sum(axis=2), grad_pre.sum(axis=1)

    def get_config(self):
        config = super().get_config()
        del config["score_mode"]
        return config


def _affine(rows, kernel, bias, out):
    """out (M, units) = rows (M, features) @ kernel (features, ...) + bias (...) or None: the bias
    in the SIMD product's epilogue where it runs there, else a pass of its own."""
    weights = kernel.value.reshape(rows.shape[1], -1)
    if bias is None:
        return runtime.matmul(rows, weights, out)
    values = bias.value.reshape(-1)
    if not runtime.matmul_bias(rows, weights, values, kernels.codes.LINEAR, out):
        runtime.matmul(rows, weights, out)
        out += values
    return out


def _side_by_side(per_head, workspace, name):
    """Heads (B, H, T, dim) as rows (B*T, H*dim), each head's dim columns side by side."""
    by_step = per_head.transpose(0, 2, 1, 3)
    rows = scratch(workspace, "d_" + name + "_by_step", by_step.shape, by_step.dtype)
    np.copyto(rows, by_step)
    return rows.reshape(-1, rows.shape[2] * rows.shape[3])
