"""Optimizer updates in blocks on fastnn's threads (``Optimizer._run_updates``): the values of
all variables end to end split into one block per thread, the same values as one call each
for every built-in optimizer."""

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
def test_updates_in_blocks_exactly_as_whole(make, monkeypatch):
    """From SPLIT_MIN_VALUES values in all, a step's updates run in blocks on fastnn's threads,
    a block's edge inside a variable and a block across several: the same values as one call
    per variable, since every built-in update is elementwise."""
    rng = np.random.default_rng(0)
    shapes = [(7,), (40, 25), (3,), (500,)]
    starts = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    steps = [[rng.standard_normal(shape).astype(np.float32) for shape in shapes] for _ in range(3)]
    results = []
    for split in (10**9, 100):  # whole, then blocks of at least 50 values
        monkeypatch.setattr(base, "SPLIT_MIN_VALUES", split)
        variables, optimizer = [fastnn.Variable(s.copy()) for s in starts], make()
        with runtime.serial_blas():
            for grads in steps:
                optimizer.apply(grads, variables)
        results.append([v.numpy() for v in variables])
    for whole, blocks, start in zip(*results, starts):
        np.testing.assert_array_equal(whole, blocks)
        assert not np.array_equal(whole, start)
