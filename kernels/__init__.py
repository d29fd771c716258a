"""Numba kernels: plain functions over numpy arrays, one module per family.

Kernels import only numpy and numba and know nothing of layers. Every kernel works in float32 and
float64 without promoting, writes into buffers the caller passes, and is compiled lazily
(``@njit(cache=True)``) on first use, never at import time.
"""
