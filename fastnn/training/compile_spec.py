"""compile()'s arguments spread over a model's outputs: one loss, loss weight and list of metrics
per output, from one value, a list, or a dict by output name (as Keras's compile_utils does)."""

from __future__ import annotations

from collections.abc import Mapping


def _per_output(arg, value, names, broadcast, default=None, as_list=False):
    """Spread a compile() argument over the outputs: one value, a list, or a dict by name."""
    n = len(names)
    if value is None:
        return [[] if as_list else default for _ in names]
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"compile(): {arg} has keys {sorted(value)} but the model's outputs are {names}"
            )
        if arg == "loss":
            missing = [name for name in names if name not in value]
            if missing:
                raise ValueError(
                    f"compile(): the loss dict has no entry for output(s) {missing}; the model's "
                    f"outputs are {names} (map an output to None to leave it untrained)"
                )
        spread = [value.get(name, default) for name in names]
        return [_listify(v) for v in spread] if as_list else spread
    if isinstance(value, (list, tuple)):
        if as_list:
            if n == 1:  # every metric is for the one output; Keras flattens nested lists
                return [[m for v in value for m in _listify(v)]]
            if len(value) == n:  # Keras 3: one entry (a metric, a list or None) per output
                return [_listify(v) for v in value]
            return [list(value) for _ in names]  # as tf.keras 2: the same metrics for each output
        if len(value) != n:
            raise ValueError(
                f"compile(): {arg} is a list of {len(value)} but the model has {n} outputs {names}"
            )
        return list(value)
    if not broadcast and n > 1:
        raise ValueError(f"compile(): {arg} must be a list or dict for {n} outputs {names}")
    return [[value] if as_list else value for _ in names]


def _leaves(value) -> list:
    """The non-None leaves of a compile() argument: one value, or nested lists / dicts."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _leaves(v)]
    return [] if value is None else [value]


def _map_leaves(fn, value):
    """``fn`` applied to every leaf of a loss/metric spec (nested lists and dicts kept; a
    ``{"class_name", "config"}`` dict is one leaf)."""
    if isinstance(value, dict) and "class_name" not in value:
        return {k: _map_leaves(fn, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_map_leaves(fn, v) for v in value]
    return None if value is None else fn(value)


def _listify(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
