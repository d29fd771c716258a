"""Training: compile / fit / evaluate / predict, mixed into ``Model`` as ``Trainer``.

``trainer`` holds the training API and its steps; ``data_adapters`` turns x, y and sample weights
(arrays, lists, dicts by name, generators, PyDatasets) into checked arrays and batches;
``compile_spec`` spreads compile()'s losses, loss weights and metrics over a model's outputs and
names and orders their logs.
"""

from fastnn.training.trainer import NotCompiledError, Trainer

__all__ = ["NotCompiledError", "Trainer"]
