"""Fusion rules: small patterns of layer nodes that run as one composite node.

Each rule sits in a module of its own with its composite layer; ``RULES`` lists them. The graph
calls ``rewrite`` once, when it is built. ``disabled("conv_max_pool")`` (or the environment
variable ``FASTNN_FUSION_OFF``) builds graphs without a rule, for tests and debugging.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastnn.fusion import (
    add_activation,
    base,
    bn_activation,
    conv_average_pool,
    conv_bn_activation,
    conv_max_pool,
    dense_dropout,
    embedded_rnn,
    linear_activation,
    residual,
)
from fastnn.fusion.base import FusedLayer, Rule, disabled
from fastnn.nodes import Node

#: The rules, applied in this order.
RULES: tuple[Rule, ...] = (
    *conv_max_pool.RULES,
    *conv_average_pool.RULES,
    embedded_rnn.RULE,
    *conv_bn_activation.RULES,
    bn_activation.RULE,
    add_activation.RULE,
    residual.RULE,
    dense_dropout.RULE,
    linear_activation.RULE,
)


def rewrite(nodes: Sequence[Node], outputs: Sequence) -> list[Node]:
    """The nodes a graph runs: ``nodes`` with every match of an enabled rule fused."""
    return base.rewrite(nodes, outputs, RULES)


__all__ = ["RULES", "FusedLayer", "Rule", "disabled", "rewrite"]
