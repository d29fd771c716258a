"""One harness for every layer, as Keras's ``run_layer_test``: ``check_layer(spec)``.

A ``LayerSpec`` says how to make a layer (``make(dtype=..., *args, **kwargs)``) and what to feed
it; ``check_layer`` runs the checks named in ``CHECKS`` on it:

* ``shapes``: the symbolic call's output shapes (``fastnn.Input`` then the layer) are the array
  call's with the batch axis None, and ``compute_output_shape`` of a concrete batch gives them.
* ``weights``: names unique, ``get_weights()`` in ``weights`` order, shapes, counts, trainable
  and non-trainable weights partition ``weights``, ``set_weights`` round trip; with Keras
  importable, the same names, shapes, paths (Keras's may add a cell), count, trainable split and
  per-variable trainable flags as the Keras layer made from the config.
* ``config``: the config is JSON; ``from_config`` of it gives an equal config and, with the
  weights copied over, equal outputs.
* ``gradients``: float64 input and weight gradients against central differences
  (``gradcheck.check_layer_gradients``) in training and inference passes; layers that draw
  random masks get their generators put back before each pass; integer ids are held fixed.
* ``float32``: a float32 layer on float32 inputs keeps float32 outputs, input gradients, weights
  and weight gradients.
* ``keras``: the Keras layer made from the config, with the same weights, gives the same outputs
  (and masks) in inference, and in training for deterministic layers, after which the weights
  (BatchNormalization's moving statistics) agree too.
* ``fused``: with ``fused_with`` a follower layer, the two-layer model's fused graph and the
  unfused graph over the same layers agree in values and weight gradients in float64.

Keras (torch backend) is imported only by the checks that need it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import gradcheck
import numpy as np
from gradcheck import check_layer_gradients, randomize_weights

import fastnn
from fastnn import fusion
from fastnn.graph import Graph
from fastnn.layers import Layer, serialize

CHECKS = ("shapes", "weights", "config", "gradients", "float32", "keras", "fused")
RTOL = ATOL = 1e-5  # Keras parity in float32


@dataclass(frozen=True)
class LayerSpec:
    """How to make one layer and what to feed it (shapes without the batch axis)."""

    make: Callable[..., Layer]  # make(*args, dtype=..., **kwargs): a layer class or a factory
    input_shape: tuple | list  # a list of shapes for a layer called on a list
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    ids: int = 0  # > 0: the input is integer ids in [0, ids) (Embedding)
    data: Callable | None = None  # data(list of arrays) -> list: e.g. padding steps
    random: bool = False  # draws randomness in training: outputs compared at inference only
    no_gradient: str = ""  # why the gradient check cannot run ("": it runs)
    no_config: str = ""  # why the layer refuses get_config ("": it has one)
    no_keras_parity: str = ""  # why Keras's outputs differ by design ("": they must not)
    no_keras_layer: str = ""  # why Keras cannot make the layer here ("": it can)
    outputs_dtype: str = "float32"  # of the outputs on float32 inputs (a lookup's: int64)
    keras: Callable | None = None  # keras(keras) -> the Keras layer when no config says it
    keras_call: Callable | None = None  # keras_call(layer, inputs, training) -> outputs
    fused_with: Callable[..., Layer] | None = None  # fused_with(dtype=...): the rule's follower

    def new(self, dtype: str) -> Layer:
        return self.make(*self.args, dtype=dtype, **self.kwargs)

    @property
    def takes_list(self) -> bool:
        return isinstance(self.input_shape, list)

    @property
    def shapes(self) -> list[tuple]:
        return list(self.input_shape) if self.takes_list else [self.input_shape]

    def pack(self, items):
        """A list of inputs as the layer takes them: the list, or its one element."""
        return list(items) if self.takes_list else items[0]


def row(make, input_shape, *args, **kwargs) -> LayerSpec:
    """The spec of ``make(*args, **kwargs)`` on inputs of ``input_shape`` (no batch axis)."""
    return LayerSpec(make, input_shape, args, kwargs)


def check_layer(spec: LayerSpec, checks=CHECKS, *, seed: int = 0, batch: int = 2) -> None:
    """Run ``checks`` (names in ``CHECKS``) on the layer ``spec`` describes."""
    for name in checks:
        if name == "gradients" and spec.no_gradient:
            continue
        if name == "fused" and spec.fused_with is None:
            continue
        if name == "keras" and (spec.no_keras_parity or spec.no_keras_layer):
            continue
        if name == "keras" and keras_module() is None:
            continue
        _CHECKS[name](spec, seed, batch)


# ---------------------------------------------------------------------------------------- data


def as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def make_inputs(spec: LayerSpec, dtype: str, seed: int, batch: int) -> list[np.ndarray]:
    """Random inputs (ids, or standard normal values of ``dtype``), edited by ``spec.data``."""
    rng = np.random.default_rng(seed)
    if spec.ids:
        arrays = [rng.integers(0, spec.ids, (batch, *s)).astype("int32") for s in spec.shapes]
    else:
        arrays = [rng.standard_normal((batch, *s)).astype(dtype) for s in spec.shapes]
    return spec.data(arrays) if spec.data else arrays


def symbolic_inputs(spec: LayerSpec, dtype: str) -> list:
    return [fastnn.Input(s, dtype="int32" if spec.ids else dtype) for s in spec.shapes]


def built(spec: LayerSpec, dtype: str, seed: int = 0) -> Layer:
    """A new layer called on symbolic inputs (so built), with random weights."""
    layer = spec.new(dtype)
    layer(spec.pack(symbolic_inputs(spec, dtype)))
    randomize_weights(layer, seed)
    return layer


def random_state_keeper(layer: Layer):
    """A function that puts back every random generator of ``layer`` (and the layers it holds)
    as it is now, so each pass draws the same masks; None if nothing draws."""
    drawing = [lay for lay in _layer_tree(layer) if lay.get_random_state() is not None]
    states = [lay.get_random_state() for lay in drawing]
    if not drawing:
        return None

    def reset():
        for lay, state in zip(drawing, states):
            lay.set_random_state(state)

    return reset


def _layer_tree(layer: Layer) -> list[Layer]:
    return [layer] + [sub for _, child in layer.sublayers() for sub in _layer_tree(child)]


# ---------------------------------------------------------------------------------------- checks


def check_shapes(spec: LayerSpec, seed: int, batch: int) -> None:
    """Symbolic, array and ``compute_output_shape`` shapes agree, for single and list values."""
    layer = spec.new("float32")
    symbolic = layer(spec.pack(symbolic_inputs(spec, "float32")))
    arrays = layer(spec.pack(make_inputs(spec, "float32", seed, batch)))
    what = f"{type(layer).__name__}: "
    assert isinstance(symbolic, list) == isinstance(arrays, list), what + "list vs one output"
    got = [a.shape for a in as_list(arrays)]
    assert [t.shape for t in as_list(symbolic)] == [(None, *s[1:]) for s in got], what + str(got)
    assert all(s[0] == batch for s in got), what + f"batch {batch}, outputs {got}"
    expected = np.dtype(spec.outputs_dtype)
    assert all(np.dtype(t.dtype) == expected for t in as_list(symbolic)), what + "dtype"
    concrete = layer.compute_output_shape(spec.pack([(batch, *s) for s in spec.shapes]))
    concrete = concrete if isinstance(concrete, list) else [concrete]
    assert [tuple(s) for s in concrete] == got, what + f"compute_output_shape {concrete}"


def check_weights(spec: LayerSpec, seed: int, batch: int) -> None:
    """Weight names, order, shapes and counts, and the same as Keras's when it is importable."""
    layer = built(spec, "float32", seed)
    weights = layer.weights
    paths = [w.path for w in weights]
    assert len(set(paths)) == len(paths), f"weight paths repeat: {paths}"
    arrays = layer.get_weights()
    assert [a.shape for a in arrays] == [w.shape for w in weights]
    for w, a in zip(weights, arrays):
        np.testing.assert_array_equal(a, w.value, err_msg=w.path)
        assert not np.shares_memory(a, w.value), f"get_weights() gave {w.path} itself, not a copy"
    assert layer.count_params() == sum(a.size for a in arrays)
    split = layer.trainable_weights + layer.non_trainable_weights
    assert sorted(map(id, split)) == sorted(map(id, weights)), "trainable + non-trainable"
    new = [a + 1 for a in arrays]
    layer.set_weights(new)
    for got, want in zip(layer.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    if keras_module() is not None and not spec.no_keras_layer:
        _check_same_weights_as_keras(layer, built_keras_layer(spec, layer))


def _check_same_weights_as_keras(ours: Layer, theirs) -> None:
    """Names and shapes in order, paths, the trainable split, each variable's trainable flag."""
    view = [(w.name, tuple(w.shape)) for w in ours.weights]
    assert view == [(w.name, tuple(w.shape)) for w in theirs.weights], view
    assert ours.count_params() == theirs.count_params()
    for part in ("trainable_weights", "non_trainable_weights"):
        names = [w.name for w in getattr(ours, part)]
        assert names == [w.name for w in getattr(theirs, part)], f"{part}: {names}"
    for w, theirs_w in zip(ours.weights, theirs.weights):  # Keras's paths add e.g. lstm_cell
        rest = iter(theirs_w.path.split("/"))
        assert all(part in rest for part in w.path.split("/")), (w.path, theirs_w.path)
    flags = [w.trainable for w in ours.weights]
    keras_flags = [w.trainable for w in theirs.weights]
    assert flags == keras_flags, f"Variable.trainable of {view}: {flags}, Keras {keras_flags}"


def check_config(spec: LayerSpec, seed: int, batch: int) -> None:
    """The config is JSON; ``from_config`` gives an equal config and, with the weights, outputs."""
    layer = built(spec, "float32", seed)
    if spec.no_config:
        try:
            layer.get_config()
        except ValueError:
            return
        raise AssertionError(f"{type(layer).__name__}.get_config() should refuse: {spec.no_config}")
    config = layer.get_config()
    text = json.dumps(config)
    clone = type(layer).from_config(json.loads(text))
    assert json.dumps(clone.get_config()) == text
    clone(spec.pack(symbolic_inputs(spec, "float32")))
    clone.set_weights(layer.get_weights())
    x = spec.pack(make_inputs(spec, "float32", seed, batch))
    for training in (False,) if spec.random else (False, True):
        for got, want in zip(as_list(clone(x, training)), as_list(layer(x, training))):
            np.testing.assert_array_equal(got, want, err_msg=f"training={training}")


def check_gradients(spec: LayerSpec, seed: int, batch: int) -> None:
    """Float64 input and weight gradients match central differences, training or not."""
    layer = built(spec, "float64", seed)
    arrays = make_inputs(spec, "float64", seed + 1, batch)
    reset = random_state_keeper(layer)
    for training in (True, False):
        what = f"{type(layer).__name__} '{layer.name}' training={training}"
        if spec.ids:
            _check_gradients_at_fixed_ids(layer, arrays[0], training, seed, reset, what)
        else:
            check_layer_gradients(
                layer, spec.pack(arrays), training, seed=seed, reset=reset, what=what
            )


def _check_gradients_at_fixed_ids(layer, ids, training, seed, reset, what) -> None:
    """The weights' gradients with the ids held fixed (they have none: backward gives None)."""

    def forward(_):
        out, ctx = layer.forward(ids, training)
        return as_list(out), (ctx, isinstance(out, list))

    def backward(ctx, grads):
        ctx, out_is_list = ctx
        assert layer.backward(ctx, grads if out_is_list else grads[0]) is None, what
        return []

    weights = layer.trainable_weights
    gradcheck.check_gradients(
        forward, backward, [], weights, layer.weights, seed=seed, reset=reset, what=what
    )


def check_float32(spec: LayerSpec, seed: int, batch: int) -> None:
    """float32 in, float32 out: outputs, input gradients, weights and weight gradients."""
    layer = built(spec, "float32", seed)
    x = spec.pack(make_inputs(spec, "float32", seed, batch))
    rng = np.random.default_rng(seed)
    for training in (True, False):
        what = f"{type(layer).__name__} training={training}"
        out, ctx = layer.forward(x, training)
        outs = as_list(out)
        expected = np.dtype(spec.outputs_dtype)
        assert [o.dtype for o in outs] == [expected] * len(outs), f"{what}: outputs"
        called = as_list(layer(x, training))
        assert all(o.dtype == expected for o in called), f"{what}: the layer call's outputs"
        if spec.no_gradient:
            continue
        upstream = [rng.standard_normal(o.shape).astype(np.float32) for o in outs]
        grads = layer.backward(ctx, upstream if isinstance(out, list) else upstream[0])
        for g in as_list(grads):
            assert g is None or np.asarray(g).dtype == np.float32, f"{what}: input grad {g.dtype}"
        for w in layer.weights:
            if w.value.dtype.kind == "f":  # not integer counters (Normalization's count)
                assert w.value.dtype == w.grad.dtype == np.float32, f"{what}: {w.path}"


def check_keras(spec: LayerSpec, seed: int, batch: int) -> None:
    """The Keras layer made from the config, with the same weights, gives the same outputs."""
    ours = built(spec, "float32", seed)
    theirs = built_keras_layer(spec, ours)
    theirs.set_weights(ours.get_weights())
    arrays = make_inputs(spec, "float32", seed, batch)
    x = spec.pack(arrays)
    _check_same_masks(ours, theirs, x)
    call = spec.keras_call or _keras_call
    for training in (False,) if spec.random else (False, True):
        got, want = as_list(ours(x, training)), as_list(call(theirs, x, training))
        assert len(got) == len(want), f"{len(got)} outputs, Keras {len(want)}"
        for i, (o, t) in enumerate(zip(got, want)):
            np.testing.assert_allclose(
                o, to_numpy(t), RTOL, ATOL, err_msg=f"output {i}, training={training}"
            )
    for w, o, t in zip(ours.weights, ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(o, t, RTOL, ATOL, err_msg=f"{w.path} after the calls")


def _check_same_masks(ours: Layer, theirs, x) -> None:
    """The masks the layers make of ``x`` (Embedding's mask_zero, Masking) are Keras's."""
    masks = as_list(ours.compute_mask(x))
    if all(m is None for m in masks):
        return
    keras_masks = as_list(theirs.compute_mask(x, None))
    assert [m is None for m in masks] == [m is None for m in keras_masks], "masks"
    for m, t in zip(masks, keras_masks):
        if m is not None:
            np.testing.assert_array_equal(m, to_numpy(t), "mask")


def check_fused(spec: LayerSpec, seed: int, batch: int) -> None:
    """The layer and its ``fused_with`` follower: fused == unfused, values and gradients."""
    inputs = symbolic_inputs(spec, "float64")
    layer, follower = spec.new("float64"), spec.fused_with(dtype="float64")
    model = fastnn.Model(inputs, follower(layer(spec.pack(inputs))))
    assert fused_names(model) == [f"{layer.name}+{follower.name}"], "the rule did not fire"
    randomize_weights(model, seed)
    with fusion.disabled():
        unfused = Graph(model.inputs, model.outputs)
    assert [step.layer for step in unfused.steps] == [layer, follower]
    xs = make_inputs(spec, "float64", seed, batch)
    for training in (True, False):
        got = pass_and_grads(model._graph, model, xs, training)
        want = pass_and_grads(unfused, model, xs, training)
        for o, ref in zip(got[0], want[0]):
            np.testing.assert_allclose(o, ref, rtol=1e-12, atol=1e-14, err_msg="outputs")
        for w, g, ref in zip(model.weights, got[1], want[1]):
            np.testing.assert_allclose(g, ref, rtol=1e-10, atol=1e-13, err_msg=w.path)


_CHECKS = {
    "shapes": check_shapes,
    "weights": check_weights,
    "config": check_config,
    "gradients": check_gradients,
    "float32": check_float32,
    "keras": check_keras,
    "fused": check_fused,
}

# ---------------------------------------------------------------------------------------- fusion


def fused_names(model) -> list[str]:
    """Names of the fused steps a model's graph runs."""
    return [
        step.layer.name for step in model._graph.steps if isinstance(step.layer, fusion.FusedLayer)
    ]


def pass_and_grads(graph, model, xs, training):
    """(outputs, weight gradients) of a forward and backward pass of ``graph`` on ``xs`` (an
    array or a list), each output's upstream gradient its cosine."""
    for w in model.weights:
        w.grad[...] = 0
    for layer in model.layers:  # the same dropout masks in both graphs
        if layer.get_random_state() is not None:
            layer._rng = np.random.default_rng(0)
    outs, tape = graph.forward(as_list(xs), training)
    graph.backward(tape, [np.cos(o) for o in outs])
    return outs, [w.grad.copy() for w in model.weights]


# ---------------------------------------------------------------------------------------- Keras


@functools.cache
def keras_module():
    """Keras 3 on torch, or None when it is not installed."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return None
    return keras


def built_keras_layer(spec: LayerSpec, layer: Layer):
    """The Keras layer of ``layer``'s class made from ``layer``'s config (or ``spec.keras``),
    called on Keras inputs of the spec's shapes."""
    keras = keras_module()
    theirs = spec.keras(keras) if spec.keras else _from_config(keras, serialize(layer))
    (spec.keras_call or _keras_call)(theirs, spec.pack(keras_inputs(spec)), False)
    return theirs


def _from_config(keras, entry: dict):
    config = dict(entry["config"])
    for key in ("layer", "backward_layer", "cell"):  # a wrapper's or RNN's layers
        if isinstance(config.get(key), dict):
            config[key] = _in_keras_layers(config[key])
    if isinstance(config.get("cells"), list):  # StackedRNNCells
        config["cells"] = [_in_keras_layers(cell) for cell in config["cells"]]
    return getattr(keras.layers, entry["class_name"]).from_config(config)


def _in_keras_layers(entry: dict) -> dict:
    """A layer's entry as Keras finds it, by module (a stack's cells too)."""
    config = entry["config"]
    if isinstance(config.get("cells"), list):
        config = {**config, "cells": [_in_keras_layers(cell) for cell in config["cells"]]}
    if isinstance(config.get("cell"), dict):
        config = {**config, "cell": _in_keras_layers(config["cell"])}
    return {**entry, "config": config, "module": "keras.layers"}


def keras_inputs(spec: LayerSpec) -> list:
    keras = keras_module()
    return [keras.Input(s, dtype="int32" if spec.ids else "float32") for s in spec.shapes]


def _keras_call(layer, x, training):
    return layer(x, training=training)


def to_numpy(value) -> np.ndarray:
    return np.asarray(keras_module().ops.convert_to_numpy(value))
