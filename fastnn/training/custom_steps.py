"""What a user's training code meets, as Keras 3 names it: the data ``train_step`` and
``test_step`` get, ``CompileMetrics`` (the compiled metrics as one metric in ``model.metrics``)
and the logs a step returns, flattened as Keras flattens them.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastnn import metrics as metrics_module
from fastnn.training import compile_spec


def pack_data(x, y, sample_weight):
    """Keras's ``pack_x_y_sample_weight`` of its data adapters' batches: ``(x, y)`` or ``(x, y,
    sample_weight)``; without y, x itself, but a list or tuple of inputs as ``(x,)``, so
    ``data[0]`` is never one input of several."""
    if y is None:
        return (x,) if isinstance(x, (list, tuple)) else x
    if sample_weight is None:
        return (x, y)
    return (x, y, sample_weight)


def unpack_data(data) -> tuple:
    """Keras's ``unpack_x_y_sample_weight``: ``(x, y, sample_weight)``, missing ones None."""
    if isinstance(data, list):
        data = tuple(data)
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(
        f"Data is expected to be (x,), (x, y) or (x, y, sample_weight); got a tuple of {len(data)}"
    )


def flatten_logs(logs) -> dict:
    """A step's returned logs as fit() reports them: floats, nested dicts (a CompileMetrics'
    result) flattened into the top level, as Keras does."""
    if not isinstance(logs, Mapping):
        raise TypeError(
            "train_step()/test_step() must return a dict of metric names to values; got "
            f"{type(logs).__name__}"
        )
    flat = {}
    for key, value in logs.items():
        value = metrics_module.result_value(value)
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


class CompileMetrics(metrics_module.Metric):
    """The metrics given to ``compile()``, over every output, as one metric (Keras's
    ``compile_metrics``): ``update_state(y, y_pred, sample_weight)``, a dict ``result()``."""

    def __init__(self, model) -> None:
        super().__init__(name="compile_metrics")
        self._model = model

    def update_state(self, y_true, y_pred, sample_weight=None) -> None:
        model = self._model
        ys = model._output_list(y_true)
        outputs = [metrics_module.as_numpy(o) for o in model._output_list(y_pred)]
        model._resolve_metrics(ys, outputs)
        model._update_output_metrics(ys, outputs, sample_weight)

    def result(self) -> dict:
        model = self._model
        if model._output_metrics is None:
            return {}
        pairs = compile_spec.metric_keys(
            model.output_names, model._output_metrics, model._weighted_counts
        )
        return {key: metrics_module.result_value(metric.result()) for key, metric in pairs}

    def reset_state(self) -> None:
        for metrics in self._model._output_metrics or []:
            for metric in metrics:
                metric.reset_state()
