"""The GEMM the plain-Python kernel wrappers use unless their caller passes another.

The conv and recurrent wrappers take ``matmul=`` so fastnn can run large products its own way
(``fastnn.gemm.matmul`` splits them over threads); this is the plain numpy product they default
to, with the same signature.
"""

import numpy as np


def matmul(a, b, out, accumulate=False):
    """out (M,N) = a (M,K) @ b (K,N), or ``out += a @ b`` with ``accumulate``; returns out."""
    if accumulate:
        out += a @ b
    else:
        np.matmul(a, b, out=out)
    return out
