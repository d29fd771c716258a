"""Inverted dropout (Keras): kept units are scaled by 1 / (1 - rate) so inference is the identity.

The uniform numbers come from the layer's own ``numpy.random.Generator`` (deterministic seeding,
no global state). All arrays are contiguous 1-D: the caller passes ``a.reshape(-1)`` views of
C-contiguous arrays of any shape. ``rate`` in [0, 1]; ``uniform`` is best drawn in x's dtype
(``rng.random(n, dtype=np.float32)``) to halve its memory traffic. Serial on purpose: the
kernel is memory-bound, and on 2 cores ``prange`` measured no faster at 1e6 elements and
2-3 us slower per call at 1e3-1e4.
"""

from numba import njit


@njit(cache=True, error_model="numpy")
def dropout_forward(x, uniform, rate, out):
    """out = x * (uniform >= rate) / (1 - rate); all 1-D (n,), out may be x."""
    _masked_scale(x, uniform, rate, out)


@njit(cache=True, error_model="numpy")
def dropout_backward(grad_out, uniform, rate, grad_x):
    """grad_x = grad_out * (uniform >= rate) / (1 - rate); all 1-D (n,), grad_x may be grad_out."""
    _masked_scale(grad_out, uniform, rate, grad_x)


@njit(cache=True, inline="always")
def _masked_scale(x, uniform, rate, out):
    r = uniform.dtype.type(rate)
    one = x.dtype.type(1)
    zero = x.dtype.type(0)
    scale = one / (one - x.dtype.type(rate))
    if x.ctypes.data == out.ctypes.data:
        # In place, as one array: a loop reading x and writing out stays scalar when they are
        # the same memory (LLVM's overlap check fails), 2-3x slower.
        for i in range(out.shape[0]):
            out[i] = out[i] * scale if uniform[i] >= r else zero
    else:
        for i in range(x.shape[0]):
            out[i] = x[i] * scale if uniform[i] >= r else zero
