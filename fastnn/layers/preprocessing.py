"""Preprocessing layers: Rescaling, Normalization (with ``adapt``) and CategoryEncoding.

Keras 3's names, arguments, config keys and weights (Normalization's ``mean``, ``variance`` and
``count``), so saved files go both ways.
"""

from __future__ import annotations

import math

import numpy as np

from fastnn import backend
from fastnn.layers.base import Layer, shape_error
from fastnn.nodes import is_symbolic
from fastnn.ops.tensor import Tensor, unwrap, weights_written


def _to_config_value(value):
    """A number, a list, or an array as Keras's serializer writes it (``__numpy__``)."""
    if isinstance(value, np.ndarray) and value.ndim > 0:
        return {
            "class_name": "__numpy__",
            "config": {"value": value.tolist(), "dtype": value.dtype.name},
        }
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def _from_config_value(value):
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        return np.array(value["config"]["value"], dtype=value["config"]["dtype"])
    return value


class Rescaling(Layer):
    """``inputs * scale + offset``, in the layer's dtype (integer images become floats).

    Args:
        scale: a number, or per-channel values (a list or an array that broadcasts).
        offset: a number or per-channel values, added after scaling.

    Example: ``Rescaling(1 / 127.5, offset=-1)`` maps [0, 255] pixels to [-1, 1].
    """

    passes_mask = True

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale
        self.offset = offset

    def _constants(self, dtype):
        scale = np.asarray(self.scale, dtype)
        offset = np.asarray(self.offset, dtype)
        if scale.ndim and backend.image_data_format() == "channels_first":
            scale = scale.reshape(scale.shape + (1,) * (3 - scale.ndim))  # as Keras
        return scale, offset

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def forward(self, inputs, training):
        x = np.asarray(inputs, self.dtype)
        scale, offset = self._constants(x.dtype)
        out = x * scale
        out += offset
        return out, x.shape

    def backward(self, ctx, grad_outputs):
        scale, _ = self._constants(grad_outputs.dtype)
        grad = grad_outputs * scale
        if grad.shape != ctx:  # a per-channel scale that broadcast the input: sum back
            extra = grad.ndim - len(ctx)
            grad = grad.sum(axis=tuple(range(extra)))
            axes = tuple(i for i, n in enumerate(ctx) if n == 1 and grad.shape[i] != 1)
            grad = grad.sum(axis=axes, keepdims=True)
        return grad

    def get_config(self):
        return {
            **super().get_config(),
            "scale": _to_config_value(self.scale),
            "offset": _to_config_value(self.offset),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("scale", "offset"):
            if key in config:
                config[key] = _from_config_value(config[key])
        return cls(**config)


def _axis_tuple(axis) -> tuple:
    if axis is None:
        return ()
    if isinstance(axis, (int, np.integer)):
        return (int(axis),)
    return tuple(int(a) for a in axis)


class Normalization(Layer):
    """``(inputs - mean) / sqrt(variance)`` per feature, with the statistics given or learned
    by ``adapt(data)``; ``invert=True`` maps normalized values back.

    Args:
        axis: the axis (or axes) that keep separate statistics; -1: one mean and variance per
            feature of the last axis. None: one for everything.
        mean, variance: the statistics (numbers or arrays that broadcast to the kept axes); both
            or neither. Without them the layer has non-trainable weights ``mean``,
            ``variance`` and ``count``, as Keras's, for ``adapt`` to set.
        invert: compute ``inputs * sqrt(variance) + mean`` instead.

    The divisor is ``max(sqrt(variance), epsilon())``, as in Keras.
    Example: ``norm = Normalization(); norm.adapt(x_train)``, then ``norm`` first in a model.
    """

    passes_mask = True

    def __init__(self, axis=-1, mean=None, variance=None, invert: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis_tuple(axis)
        self.input_mean, self.input_variance = mean, variance
        self.invert = bool(invert)
        if (mean is not None) != (variance is not None):
            raise ValueError(
                "When setting values directly, both `mean` and `variance` "
                f"must be set. Received: mean={mean} and variance={variance}"
            )
        if mean is not None:
            if np.shape(mean) != np.shape(variance):
                raise ValueError(
                    "When setting values directly, `mean` and `variance` "
                    "must have the same shape. Received: "
                    f"mean shape {np.shape(mean)} and "
                    f"variance shape {np.shape(variance)}"
                )
            if len(np.shape(mean)) > len(self.axis):
                raise ValueError(
                    "The rank of `mean` must be less than or equal to the "
                    f"number of axes ({len(self.axis)}). Received: "
                    f"mean shape {np.shape(mean)} for axis {self.axis}"
                )
        self._build_shape = None

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        ndim = len(input_shape)
        if any(a < -ndim or a >= ndim for a in self.axis):
            raise ValueError(
                "All `axis` values must be in the range [-ndim, ndim). "
                f"Received inputs with ndim={ndim}, while axis={self.axis}"
            )
        keep = tuple(sorted(a % ndim for a in self.axis))
        for d in keep:
            if input_shape[d] is None:
                raise ValueError(
                    "All `axis` values to be kept must have a known shape. "
                    f"Received axis={self.axis}, inputs.shape={input_shape}, "
                    f"with unknown axis at index {d}"
                )
        self._build_shape = input_shape
        self._keep_axis = keep
        self._reduce_axis = tuple(d for d in range(ndim) if d not in keep)
        self._broadcast_shape = tuple(input_shape[d] if d in keep else 1 for d in range(ndim))
        stats_shape = tuple(input_shape[d] for d in keep)
        if self.input_mean is None:
            self.adapt_mean = self.add_weight(stats_shape, "zeros", "mean", trainable=False)
            self.adapt_variance = self.add_weight(stats_shape, "ones", "variance", trainable=False)
            self.count = self.add_weight((), "zeros", "count", trainable=False, dtype="int32")
        else:
            self._given = tuple(
                self._broadcast_given(np.asarray(v, self.dtype))
                for v in (self.input_mean, self.input_variance)
            )

    def _broadcast_given(self, value: np.ndarray) -> np.ndarray:
        """A given statistic aligned, right to left, with the kept axes (Keras's rule)."""
        if value.ndim:
            shape = [1] * len(self._broadcast_shape)
            for i in range(1, value.ndim + 1):
                shape[self._keep_axis[-i]] = value.shape[-i]
            value = value.reshape(shape)
        return np.broadcast_to(value, self._broadcast_shape)

    def check_input_shape(self, input_shape):
        input_shape = tuple(input_shape)
        built = self._build_shape
        if len(input_shape) != len(built) or any(
            input_shape[d] != built[d] for d in self._keep_axis
        ):
            raise shape_error(
                self, "incompatible input shape", f"the shape built for, {built}", input_shape
            )

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    @property
    def mean(self) -> np.ndarray:
        """The mean in the inputs' broadcast shape ((1, features) for -1), as Keras's
        ``Normalization.mean`` once built: adapted, or as given."""
        return self._stored_statistics()[0]

    @property
    def variance(self) -> np.ndarray:
        """The variance in the inputs' broadcast shape, as Keras's ``Normalization.variance``."""
        return self._stored_statistics()[1]

    def _stored_statistics(self) -> tuple:
        if not self.built:
            raise AttributeError(
                f"Normalization '{self.name}' has no mean or variance before it is built "
                "(by adapt(), a call, or build(input_shape))"
            )
        if self.input_mean is None:
            shape = self._broadcast_shape
            return self.adapt_mean.value.reshape(shape), self.adapt_variance.value.reshape(shape)
        return tuple(np.array(v) for v in self._given)

    def _statistics(self, dtype):
        """(mean, max(sqrt(variance), epsilon)) in the broadcast shape, of ``dtype``."""
        if self.input_mean is None:
            mean = self.adapt_mean.value.reshape(self._broadcast_shape)
            variance = self.adapt_variance.value.reshape(self._broadcast_shape)
        else:
            mean, variance = self._given
        std = np.maximum(np.sqrt(variance.astype(dtype)), dtype.type(backend.epsilon()))
        return mean.astype(dtype), std

    def forward(self, inputs, training):
        x = np.asarray(inputs, self.dtype)
        mean, std = self._statistics(x.dtype)
        if self.invert:
            out = x * std
            out += mean
        else:
            out = x - mean
            out /= std
        return out, std

    def backward(self, ctx, grad_outputs):
        return grad_outputs * ctx if self.invert else grad_outputs / ctx

    def adapt(self, data) -> None:
        """Set ``mean`` and ``variance`` to those of ``data`` over the reduced axes: an array
        (or tensor), or an iterable of batches (each an array, or a tuple whose first element
        is), combined batch by batch."""
        if self.input_mean is not None:
            raise ValueError(
                f"Normalization '{self.name}' was given `mean` and `variance`; adapt() would "
                "replace them. Make the layer without them to adapt it."
            )
        batches = None
        if isinstance(data, (np.ndarray, Tensor)):
            data = np.asarray(unwrap(data))
            input_shape = data.shape
        else:
            batches = _batches(data)
            first = next(batches, None)
            if first is None:
                raise ValueError(
                    "adapt() received an empty iterable (no batches). "
                    "Expected at least one batch. Pass a non-empty iterable "
                    "of arrays or tensors, e.g. layer.adapt([x]) or "
                    "layer.adapt(list_of_batches)."
                )
            input_shape = getattr(first, "shape", None)
            if input_shape is None:
                raise TypeError(
                    "adapt() expects an iterable that yields arrays or "
                    "tensors with a `.shape` attribute (e.g. numpy arrays or "
                    "backend tensors). Got an element of type "
                    f"{type(first).__name__}. Ensure each yielded "
                    "element is array-like with a `.shape` attribute."
                )
            input_shape = tuple(input_shape)
            batches = _chain(first, batches)
        if not self.built:
            self._maybe_build(input_shape)
        else:
            self._check_adapt_shape(input_shape)
        if batches is None:
            mean = np.mean(data, axis=self._reduce_axis)
            variance = np.var(data, axis=self._reduce_axis)
        else:
            mean, variance = self._combined_moments(batches)
        self.adapt_mean.value[...] = mean
        self.adapt_variance.value[...] = variance
        weights_written()

    def _check_adapt_shape(self, shape) -> None:
        if len(shape) != len(self._build_shape) or any(
            shape[d] != self._build_shape[d] for d in self._keep_axis
        ):
            raise ValueError(
                f"The layer was built with input_shape={self._build_shape}, "
                "but adapt() is being called with data with "
                f"an incompatible shape, data.shape={tuple(shape)}"
            )

    def _combined_moments(self, batches):
        """Mean and variance over batches, merged as Keras merges them (weighted by counts)."""
        total_mean = total_var = np.zeros(self.adapt_mean.shape)
        total_count = 0
        for batch in batches:
            batch = np.asarray(unwrap(batch), self.dtype)
            if batch.ndim != len(self._build_shape) or any(
                batch.shape[d] != self._build_shape[d] for d in self._keep_axis
            ):
                raise ValueError(
                    "adapt() yielded a batch with incompatible shape. Expected "
                    f"{self._build_shape}, got {tuple(batch.shape)}."
                )
            batch_mean = np.mean(batch, axis=self._reduce_axis, dtype=np.float64)
            batch_var = np.var(batch, axis=self._reduce_axis, dtype=np.float64)
            batch_count = math.prod(batch.shape[d] for d in self._reduce_axis)
            total_count += batch_count
            batch_weight = batch_count / total_count
            existing_weight = 1.0 - batch_weight
            new_mean = total_mean * existing_weight + batch_mean * batch_weight
            total_var = (total_var + (total_mean - new_mean) ** 2) * existing_weight + (
                batch_var + (batch_mean - new_mean) ** 2
            ) * batch_weight
            total_mean = new_mean
        return total_mean, total_var

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "invert": self.invert,
            "mean": np.array(self.input_mean).tolist(),
            "variance": np.array(self.input_variance).tolist(),
        }


def _batches(data):
    """An iterator over the batches of ``data`` (the first element of tuple batches)."""
    if hasattr(data, "__getitem__") and hasattr(data, "__len__") and not hasattr(data, "__iter__"):
        items = (data[i] for i in range(len(data)))  # a PyDataset-style object
    elif hasattr(data, "__iter__"):
        items = iter(data)
    else:
        raise TypeError(
            f"Unsupported data type: {type(data)}. `adapt` supports `np.ndarray`, tensors, "
            "PyDataset-style objects and iterables of batches (e.g. list, generator)."
        )
    return (item[0] if isinstance(item, tuple) else item for item in items)


def _chain(first, rest):
    yield first
    yield from rest


_OUTPUT_MODES = ("count", "one_hot", "multi_hot")


def encode_ids(ids: np.ndarray, output_mode: str, depth: int, dtype, weights=None) -> np.ndarray:
    """Integer ids (..., k) as ``"one_hot"`` (..., k, depth) (a last axis of 1 replaced),
    ``"multi_hot"`` or ``"count"`` (..., depth) over the last axis (its ``weights`` summed in
    count mode); ids outside [0, depth) count nowhere (a lookup's mask token)."""
    kept = (ids >= 0) & (ids < depth)
    if output_mode == "one_hot":
        if ids.ndim > 1 and ids.shape[-1] == 1:
            ids, kept = ids.reshape(ids.shape[:-1]), kept.reshape(ids.shape[:-1])
        out = np.zeros((ids.size, depth), dtype)
        rows = np.flatnonzero(kept)
        out[rows, ids.reshape(-1)[rows]] = 1
        return out.reshape(*ids.shape, depth)
    lead = ids.shape[:-1]
    rows = ids.reshape(-1, ids.shape[-1])
    flat = (np.arange(rows.shape[0])[:, None] * depth + rows).reshape(-1)
    keep = kept.reshape(-1)
    weights = None if weights is None else weights.reshape(-1)[keep]
    counts = np.bincount(flat[keep], weights, minlength=rows.shape[0] * depth)
    if output_mode == "multi_hot":
        counts = np.minimum(counts, 1)
    return counts.astype(dtype).reshape(*lead, depth)


class CategoryEncoding(Layer):
    """Integer ids in [0, num_tokens) as one-hot, multi-hot or count vectors.

    Args:
        num_tokens: the number of ids (the output's last axis).
        output_mode: ``"one_hot"`` (each id its own vector: ``(batch, k) -> (batch, k,
            num_tokens)``, or ``(batch, num_tokens)`` from ``(batch,)`` or ``(batch, 1)``),
            ``"multi_hot"`` (1 where any of a sample's ids is: ``(batch, k) -> (batch,
            num_tokens)``) or ``"count"`` (how often each id occurs).
        sparse: must be False (sparse outputs are not supported, as on Keras's torch backend).

    Ids outside [0, num_tokens) raise a ValueError. Example:
    ``CategoryEncoding(4, output_mode="count")([[0, 1, 1]])`` is ``[[1, 2, 0, 0]]``.
    """

    casts_inputs = False

    def __init__(self, num_tokens=None, output_mode="multi_hot", sparse=False, **kwargs):
        super().__init__(**kwargs)
        if output_mode == "binary":
            output_mode = "multi_hot"
        if output_mode not in _OUTPUT_MODES:
            raise ValueError(f"Unknown arg for output_mode: {output_mode}")
        if num_tokens is None:
            raise ValueError(
                "num_tokens must be set to use this layer. If the "
                "number of tokens is not known beforehand, use the "
                "IntegerLookup layer instead."
            )
        if num_tokens < 1:
            raise ValueError(f"`num_tokens` must be >= 1. Received: num_tokens={num_tokens}.")
        if sparse:
            raise ValueError("Unsupported value `sparse=True` with fastnn: outputs are dense")
        self.num_tokens = int(num_tokens)
        self.output_mode = output_mode
        self.sparse = False

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) == 0:
            return (self.num_tokens,)
        if self.output_mode == "one_hot" and (input_shape[-1] != 1 or len(input_shape) == 1):
            return (*input_shape, self.num_tokens)
        return (*input_shape[:-1], self.num_tokens)

    def __call__(self, inputs, *args, count_weights=None, **kwargs):
        """``layer(ids)``; on arrays, ``count_weights`` (ids' shape) weighs each id's count in
        ``"count"`` mode, as Keras's."""
        if count_weights is None:
            return super().__call__(inputs, *args, **kwargs)
        if self.output_mode != "count":
            raise ValueError(
                "`count_weights` is not used when `output_mode` is not `'count'`. "
                f"Received `count_weights={count_weights}`."
            )
        if is_symbolic(inputs) or is_symbolic(count_weights):
            raise NotImplementedError(
                f"CategoryEncoding '{self.name}': count_weights= works on array calls"
            )
        ids = self._ids(unwrap(inputs))
        weights = np.asarray(unwrap(count_weights), self.dtype)
        if weights.shape != ids.shape:
            raise shape_error(self, "count_weights must match the ids", ids.shape, weights.shape)
        return self._encode(ids, weights)

    def forward(self, inputs, training):
        return self._encode(self._ids(inputs)), None

    def _encode(self, ids, weights=None) -> np.ndarray:
        return encode_ids(ids, self.output_mode, self.num_tokens, self.dtype, weights)

    def _ids(self, inputs) -> np.ndarray:
        ids = np.asarray(inputs)
        if ids.dtype.kind not in "biuf":
            raise TypeError(
                f"CategoryEncoding '{self.name}': expected integer ids, got dtype {ids.dtype}"
            )
        if ids.ndim == 0:
            ids = ids.reshape(1)
        ids = ids.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_tokens):
            raise ValueError(
                f"CategoryEncoding '{self.name}': Input values must be in the range "
                f"0 <= values < num_tokens with num_tokens={self.num_tokens}; got values from "
                f"{ids.min()} to {ids.max()}"
            )
        return ids

    def backward(self, ctx, grad_outputs):
        return None  # ids have no gradient

    def get_config(self):
        return {
            **super().get_config(),
            "num_tokens": self.num_tokens,
            "output_mode": self.output_mode,
        }
