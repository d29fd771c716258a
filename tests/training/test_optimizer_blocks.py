"""Optimizer updates of large variables in blocks on fastnn's threads (``Optimizer._update_all``):
the same values as one call for every built-in optimizer."""

import numpy as np
import pytest

import fastnn
from fastnn import runtime
from fastnn.optimizers import base


@pytest.mark.parametrize(
    "make",
    [
        lambda: fastnn.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
        lambda: fastnn.optimizers.Adam(amsgrad=True, weight_decay=0.01),
        lambda: fastnn.optimizers.AdamW(),
        lambda: fastnn.optimizers.Nadam(),
        lambda: fastnn.optimizers.Adamax(),
        lambda: fastnn.optimizers.RMSprop(momentum=0.5, centered=True),
        lambda: fastnn.optimizers.Adagrad(),
        lambda: fastnn.optimizers.Adadelta(),
        lambda: fastnn.optimizers.Ftrl(l1_regularization_strength=0.01),
        lambda: fastnn.optimizers.Lion(),
    ],
)
def test_a_large_variable_updates_in_blocks_exactly_as_whole(make, monkeypatch):
    """Above SPLIT_MIN_VALUES a variable's update runs in blocks on fastnn's threads: the same
    values as one call, since every built-in update is elementwise."""
    rng = np.random.default_rng(0)
    start = rng.standard_normal(1001).astype(np.float32)
    grads = [rng.standard_normal(1001).astype(np.float32) for _ in range(3)]
    results = []
    for split in (10**9, 100):  # whole, then blocks of at least 50 values
        monkeypatch.setattr(base, "SPLIT_MIN_VALUES", split)
        variable, optimizer = fastnn.Variable(start.copy()), make()
        with runtime.serial_blas():
            for grad in grads:
                optimizer.apply([grad], [variable])
        results.append(variable.numpy())
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], start)
