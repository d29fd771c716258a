"""A user's activation function in a built-in layer (``Dense(activation=fn)``,
``Activation(fn)``): the layer runs linear in its kernels, then ``fn`` on fastnn.ops under a
tape of its own, whose replay is the activation's backward."""

from __future__ import annotations

import numpy as np

from fastnn.ops import tape as tape_module
from fastnn.ops.tensor import unwrap

#: The code a layer keeps for a user's function: no kernel code, so no fusion rule matches it.
USER_FUNCTION = -1


def forward(fn, z: np.ndarray) -> tuple[np.ndarray, tuple]:
    """``(fn(z), what backward needs)`` for z of any shape; other tapes do not record it."""
    tape = tape_module.GradientTape(watch_accessed_variables=False)
    with tape_module.paused(), tape:
        watched = tape.watch(z)
        y = fn(watched)
    out = np.asarray(unwrap(y))
    if out.shape != z.shape:
        raise ValueError(
            f"activation {getattr(fn, '__name__', fn)!r} must keep its input's shape: "
            f"{z.shape} became {out.shape}"
        )
    return out.astype(z.dtype, copy=False), (tape, watched, y)


def backward(ctx: tuple, grad: np.ndarray) -> np.ndarray:
    """The gradient with respect to z, given the gradient of ``fn(z)``."""
    tape, watched, y = ctx
    if tape.key(y) is None:  # fn did not use z (a constant)
        return np.zeros_like(grad)
    dz = tape.gradient(y, watched, output_gradients=grad)
    return np.zeros_like(grad) if dz is None else np.asarray(unwrap(dz), grad.dtype)
