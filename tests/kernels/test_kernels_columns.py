"""kernels.columns against numpy: parts side by side along the last axis and split again, in
float32 and float64, one part or several of any widths, in blocks of rows on several threads."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.kernels import columns


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 40),
    widths=st.lists(st.integers(1, 33), min_size=1, max_size=4),
    dtype=st.sampled_from([np.float32, np.float64]),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_concatenate_and_split_match_numpy(rows, widths, dtype, threads, seed):
    rng = np.random.default_rng(seed)
    parts = tuple(rng.standard_normal((rows, w)).astype(dtype) for w in widths)
    saved, columns.MIN_ROWS_PER_BLOCK = columns.MIN_ROWS_PER_BLOCK, 1  # blocks of a row or more
    try:
        out = np.full((rows, sum(widths)), np.nan, dtype)
        columns.concatenate(parts, out, threads)
        np.testing.assert_array_equal(out, np.concatenate(parts, axis=1))
        back = tuple(np.full_like(p, np.nan) for p in parts)
        columns.split(out, back, threads)
    finally:
        columns.MIN_ROWS_PER_BLOCK = saved
    for part, original in zip(back, parts):
        np.testing.assert_array_equal(part, original)
