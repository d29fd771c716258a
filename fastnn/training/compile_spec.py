"""compile()'s arguments spread over a model's outputs, and the names of what they report.

One loss, loss weight and list of metrics per output, from one value, a list, or a dict by output
name (an output a loss dict leaves out, or a None loss, gets no loss and no gradient); the log
keys of those metrics and their order in evaluate()'s list, as Keras's compile_utils and Trainer
name and order them. Functions of the arguments and the output names: the trainer keeps the
results on the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fastnn import losses as losses_module
from fastnn import metrics as metrics_module


def spread(names: list[str], loss, loss_weights, metrics, weighted_metrics) -> tuple:
    """Per output of ``names``: the loss, its weight, the metrics then weighted metrics, and how
    many of those are weighted."""
    output_losses = _per_output("loss", loss, names, broadcast=True)
    output_losses = [losses_module.get(x) for x in output_losses]  # all None: add_loss only
    weights = _per_output("loss_weights", loss_weights, names, broadcast=True, default=1.0)
    weights = [1.0 if w is None else float(w) for w in weights]
    metric_specs = _per_output("metrics", metrics, names, broadcast=True, as_list=True)
    weighted_specs = _per_output(
        "weighted_metrics", weighted_metrics, names, broadcast=True, as_list=True
    )
    for specs in metric_specs + weighted_specs:
        for spec in specs:
            metrics_module.get(spec, (None, 1), (None, 2))  # fail early on unknown names
    return (
        output_losses,
        weights,
        [m + w for m, w in zip(metric_specs, weighted_specs)],
        [len(w) for w in weighted_specs],
    )


def check_names(loss, metrics, weighted_metrics) -> None:
    """Raise on an unknown loss or metric name before the outputs are known (a Sequential not
    built yet spreads its compile() arguments when the first data builds it)."""
    for leaf in _leaves(loss):
        losses_module.get(leaf)
    for leaf in _leaves(metrics) + _leaves(weighted_metrics):
        metrics_module.get(leaf, (None, 1), (None, 2))


def serialize(loss, loss_weights, metrics, weighted_metrics) -> dict:
    """compile()'s losses and metrics as JSON-able data (ValueError for a Python function)."""
    return {
        "loss": _map_leaves(losses_module.serialize, loss),
        "loss_weights": loss_weights,
        "metrics": _map_leaves(metrics_module.serialize, metrics),
        "weighted_metrics": _map_leaves(metrics_module.serialize, weighted_metrics),
    }


def deserialize(config: dict) -> dict:
    """``config`` with the losses and metrics ``serialize`` wrote made again."""
    config = dict(config)
    for key, module in [
        ("loss", losses_module),
        ("metrics", metrics_module),
        ("weighted_metrics", metrics_module),
    ]:
        config[key] = _map_leaves(
            lambda leaf, get=module.get: get(leaf) if isinstance(leaf, dict) else leaf,
            config.get(key),
        )
    return config


def tracks_output_losses(losses: Sequence) -> bool:
    """Keras logs '<output>_loss' only when more than one output has a loss."""
    return sum(loss is not None for loss in losses) > 1


def metric_keys(names: list[str], output_metrics: list[list], weighted_counts: list[int]) -> list:
    """(log key, metric) pairs named as Keras's CompileMetrics.result() names them.

    Keys get the output name as prefix when the model has several outputs; all outputs'
    metrics come first, then their weighted metrics; a repeated key becomes 'weighted_<name>'
    (weighted metrics) or gets a counter suffix '_1', '_2', ...
    """
    prefix = len(names) > 1
    counts, pairs = {}, []
    for weighted in (False, True):
        for out, metrics, n_weighted in zip(names, output_metrics, weighted_counts):
            plain = len(metrics) - n_weighted
            head = f"{out}_" if prefix else ""
            for metric in metrics[plain:] if weighted else metrics[:plain]:
                key = head + metric.name
                if key in counts and weighted:
                    key = f"{head}weighted_{metric.name}"
                if key in counts:
                    counts[key] += 1
                    key = f"{key}_{counts[key] - 1}"
                else:
                    counts[key] = 1
                pairs.append((key, metric))
    return pairs


def ordered_keys(
    logs: dict,
    output_metrics: list[list],
    weighted_counts: list[int],
    loss_trackers: list,
    losses: list,
    loss: object,
    dict_outputs: bool,
) -> list[str]:
    """Keras's order of evaluate()'s list (Trainer._flatten_metrics_in_order): 'loss', the
    metrics' own (unprefixed) names, the per-output losses, then every other key sorted.

    ``loss_trackers`` are the total's tracker then one per output, ``losses`` the outputs'
    losses, ``loss`` compile()'s argument as given, ``dict_outputs`` whether the model's outputs
    are a dict.
    """
    names = ["loss"]
    for weighted in (False, True):
        for metrics, n_weighted in zip(output_metrics, weighted_counts):
            plain = len(metrics) - n_weighted
            names += [m.name for m in (metrics[plain:] if weighted else metrics[:plain])]
    if tracks_output_losses(losses):
        trackers = [t for t, out_loss in zip(loss_trackers[1:], losses) if out_loss is not None]
        if dict_outputs and isinstance(loss, Mapping):
            # Keras lists a dict-output model's losses in the loss dict's order
            position = {f"{key}_loss": i for i, key in enumerate(loss)}
            trackers.sort(key=lambda t: position[t.name])
        names += [t.name for t in trackers]
    ordered = [n for n in names if n in logs]
    return ordered + [k for k in sorted(logs) if k not in names]


def _per_output(arg, value, names, broadcast, default=None, as_list=False):
    """Spread a compile() argument over the outputs: one value, a list, or a dict by name (an
    output a dict leaves out gets ``default``: no loss, weight 1, no metrics)."""
    n = len(names)
    if value is None:
        return [[] if as_list else default for _ in names]
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(
                f"compile(): {arg} has keys {sorted(value)} but the model's outputs are {names}"
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
