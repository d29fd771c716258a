"""L2 normalization of rows (Keras's ``UnitNormalization`` over the last axis), forward and
backward, one row at a time while it is in cache: numpy would make five passes for the backward.

``scale`` is ``min(1 / ||row||, bound)`` per row, as Keras's ``ops.normalize`` (bound 1 / epsilon).
Serial on purpose: the work is memory-bound, as dropout's.
"""

import numpy as np
from numba import njit


@njit(cache=True, error_model="numpy")
def unit_norm_forward(x, bound, out, scale):
    """out (R,D) = x (R,D) * scale; scale (R,) = min(1 / sqrt(sum(x**2)), bound) per row."""
    for r in range(x.shape[0]):
        row = x[r]
        total = 0.0
        for d in range(row.shape[0]):
            total += row[d] * row[d]
        s = 1.0 / np.sqrt(total) if total > 0.0 else np.inf
        s = x.dtype.type(min(s, bound))
        scale[r] = s
        orow = out[r]
        for d in range(row.shape[0]):
            orow[d] = row[d] * s


@njit(cache=True, error_model="numpy")
def unit_norm_backward(grad, y, scale, bound, grad_x):
    """grad_x (R,D) = scale * (grad - y * sum(grad * y)) per row, or scale * grad where the
    bound held (there the output is x * bound, linear); y (R,D) the forward's output."""
    for r in range(grad.shape[0]):
        g = grad[r]
        yr = y[r]
        s = scale[r]
        along = 0.0
        if s < bound:
            for d in range(g.shape[0]):
                along += g[d] * yr[d]
        a = y.dtype.type(along)
        out = grad_x[r]
        for d in range(g.shape[0]):
            out[d] = (g[d] - yr[d] * a) * s
