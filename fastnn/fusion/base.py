"""Fusion machinery: rules that rewrite a graph's nodes into composite ones, once, at build.

A rule names a chain of node tests: a node that passes the first, whose one output is read by
one node only (and is no model output), which passes the second, and so on. The chain then runs
as one node whose layer ``fuse(*layers)`` makes: a ``FusedLayer`` with the ordinary
``forward``/``backward`` contract. A rule that ``joins`` lets the chain's last node read other
tensors too (a residual Add's shortcut): the composite reads the first node's inputs, then
those. The graph runs the rewritten nodes without knowing which are fused; the model's own
nodes, layers and weights stay as the user built them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from fastnn.kernels.codes import CODES, LEAKY_RELU, LEAKY_RELU_SLOPE, RELU, RELU6
from fastnn.layers.activations import LeakyReLU, ReLU
from fastnn.layers.base import Layer
from fastnn.layers.core import Activation
from fastnn.nodes import Node


class Rule(NamedTuple):
    """A fusion: a chain of node tests and the composite layer of the layers that pass them."""

    name: str
    chain: tuple[Callable[[Node], bool], ...]
    fuse: Callable[..., Layer]
    joins: bool = False  # the last node may read more than the chain's tensor


def activation_code(layer: Layer) -> int | None:
    """The kernels' code (``kernels.codes``) of an elementwise activation layer: an Activation
    of a built-in function, a ReLU with Keras's defaults (relu; relu6 with max_value 6) or a
    LeakyReLU of slope 0.2 (``activations.leaky_relu``'s); None for any other layer."""
    if isinstance(layer, Activation):
        return layer._code if layer._code in CODES.values() else None  # not a user's function
    if type(layer) not in (ReLU, LeakyReLU) or layer.threshold:
        return None
    if layer.negative_slope == 0:
        return {None: RELU, 6: RELU6}.get(layer.max_value)
    leaky = layer.negative_slope == LEAKY_RELU_SLOPE and layer.max_value is None
    return LEAKY_RELU if leaky else None


def activation_of(node: Node) -> int | None:
    """``activation_code`` of a node's layer where it keeps its input's dtype (no cast in
    between, which a fused kernel would not do), else None."""
    code = activation_code(node.layer)
    return code if code is not None and node.inputs[0].dtype == node.outputs[0].dtype else None


class FusedLayer(Layer):
    """Layers that run as one (what a ``Rule`` makes): their weights are theirs, not its own,
    and it is never listed, saved or summarized (the model keeps the layers)."""

    def __init__(self, *layers: Layer):
        super().__init__(name="+".join(layer.name for layer in layers), dtype=layers[0].dtype)
        self.fused_layers = layers
        self.built = True

    @property
    def weights(self):
        return [w for layer in self.fused_layers for w in layer.weights]

    @property
    def trainable_weights(self):
        """Those the fused layers train: what a GradientTape's entry for this node
        differentiates (a custom train_step's tape.gradient)."""
        return [w for layer in self.fused_layers for w in layer.trainable_weights]


_lock = threading.Lock()
#: Rules switched off: FASTNN_FUSION_OFF="conv_max_pool,embedded_rnn" (or "all") at start-up,
#: or ``disabled(...)`` for the graphs built inside it.
_off: set[str] = {name for name in os.environ.get("FASTNN_FUSION_OFF", "").split(",") if name}


@contextlib.contextmanager
def disabled(*names: str) -> Iterator[None]:
    """Build graphs (models) inside without the named rules (all rules if none is named)."""
    added = set(names or ["all"]) - _off
    with _lock:
        _off.update(added)
    try:
        yield
    finally:
        with _lock:
            _off.difference_update(added)


def is_enabled(rule: Rule) -> bool:
    return rule.name not in _off and "all" not in _off


def rewrite(nodes: Sequence[Node], outputs: Sequence, rules: Sequence[Rule]) -> list[Node]:
    """``nodes`` (in topological order) with every match of an enabled rule run as one node."""
    steps = list(nodes)
    for rule in rules:
        if is_enabled(rule):
            steps = _apply(rule, steps, {id(t) for t in outputs})
    return steps


def _apply(rule: Rule, steps: list[Node], model_outputs: set[int]) -> list[Node]:
    readers = defaultdict(list)
    for step in steps:
        for t in step.inputs:
            readers[id(t)].append(step)
    fused, consumed = {}, set()
    for step in steps:
        if id(step) in consumed:
            continue
        chain = _match(rule, step, readers, model_outputs)
        if chain is None or any(id(node) in consumed for node in chain):
            continue
        consumed.update(id(node) for node in chain)
        joined = (
            [t for t in chain[-1].inputs if t is not chain[-2].outputs[0]] if rule.joins else []
        )
        layer = rule.fuse(*(n.layer for n in chain))
        fused[id(chain[-1])] = Node.fused(layer, chain[0], chain[-1], joined)
    # The composite runs where the chain's last node ran: the chain's inner outputs have no
    # other reader, so nothing in between needed them.
    return [fused.get(id(s), s) for s in steps if id(s) in fused or id(s) not in consumed]


def _match(rule: Rule, first: Node, readers, model_outputs) -> list[Node] | None:
    """The chain of nodes from ``first`` that passes the rule's tests, each the only reader of
    the one output of the node before it (and of nothing else, but for a joining rule's last
    node); None if there is none."""
    tests = rule.chain
    chain = [first]
    if _stays_apart(first) or not tests[0](first):
        return None
    for position, test in enumerate(tests[1:], 2):
        last = chain[-1]
        if len(last.outputs) != 1 or id(last.outputs[0]) in model_outputs:
            return None
        reading = readers[id(last.outputs[0])]
        joining = rule.joins and position == len(tests)
        if len(reading) != 1 or _stays_apart(reading[0]):
            return None
        if reading[0].inputs_are_list and not joining:
            return None
        if not test(reading[0]):
            return None
        chain.append(reading[0])
    return chain


def _stays_apart(node: Node) -> bool:
    """A node no rule fuses: a layer running call(), or a call that fixed ``training``."""
    return node.layer._runs_call or node.training is not None
