"""fastnn.ops: keras.ops's names on numpy arrays, differentiable on a GradientTape.

Outside a tape the ops take and return numpy arrays (``ops.sum(x, axis=1)`` is numpy's sum).
Under a ``fastnn.GradientTape`` they record what their gradient needs (``tape.py``); every
op's gradient rule is in ``rules.py``. The modules: ``numpy`` and ``numpy_extra`` (keras.ops'
numpy ops), ``nn`` and ``nn_extra``, ``core`` (conversion, control flow), ``linalg`` and
``image`` (keras.ops.linalg and keras.ops.image, also reachable as ``ops.linalg`` /
``ops.image``), ``signal`` (the Fourier transforms).
"""

import builtins as _builtins  # this module's any, sum, ... are ops
import functools as _functools

from fastnn.nodes import SymbolicTensor as _SymbolicTensor
from fastnn.nodes import symbolic_call as _symbolic_call
from fastnn.ops import (  # noqa: F401  (rules registers the gradients; image, linalg: keras's)
    core,
    image,
    linalg,
    nn,
    nn_extra,
    numpy,
    numpy_extra,
    numpy_more,
    rules,
    signal,
)
from fastnn.ops.core import *  # noqa: F403
from fastnn.ops.linalg import *  # noqa: F403
from fastnn.ops.nn import *  # noqa: F403
from fastnn.ops.nn_extra import *  # noqa: F403
from fastnn.ops.numpy import *  # noqa: F403
from fastnn.ops.numpy_extra import *  # noqa: F403
from fastnn.ops.numpy_more import *  # noqa: F403
from fastnn.ops.signal import *  # noqa: F403
from fastnn.ops.tape import GradientTape
from fastnn.ops.tensor import Tensor

__all__ = [
    *core.__all__, *numpy.__all__, *numpy_extra.__all__, *numpy_more.__all__, *nn.__all__,
    *nn_extra.__all__, *linalg.__all__, *signal.__all__, "GradientTape", "Tensor",
]  # fmt: skip

# keras.ops.nn and keras.ops.numpy list the newer ops too: the same functions, there as well
for _name in nn_extra.__all__:
    setattr(nn, _name, getattr(nn_extra, _name))
for _name in (*numpy_extra.__all__, *numpy_more.__all__):
    setattr(numpy, _name, globals()[_name])
for _name in ("fold", "unfold", "polar"):
    setattr(nn, _name, getattr(numpy_more, _name))
numpy.slogdet, numpy.vectorize = linalg.slogdet, core.vectorize
del _name


def _is_symbolic(value) -> bool:
    """A symbolic tensor, or a list or tuple holding one (``ops.concatenate([a, b])``)."""
    if type(value) is _SymbolicTensor:
        return True
    return isinstance(value, (list, tuple)) and _builtins.any(
        type(v) is _SymbolicTensor for v in value
    )


def _accepting_symbolic(name, function):
    """``function`` that, given a symbolic tensor (between layers of a Functional model), adds a
    node that runs it instead (``layers.tensor_op``), as Keras's ops do on KerasTensors."""

    @_functools.wraps(function)
    def op(*args, **kwargs):
        for value in (*args, *kwargs.values()) if kwargs else args:
            if _is_symbolic(value):
                return _symbolic_call(name, args, kwargs)
        return function(*args, **kwargs)

    return op


# Names whose values are not ops on tensors, or that must see a symbolic tensor as it is.
_NOT_NODES = {"GradientTape", "Tensor", "convert_to_numpy", "is_tensor", "custom_gradient"}
for _name in __all__:
    if _name not in _NOT_NODES and callable(globals()[_name]):
        globals()[_name] = _accepting_symbolic(_name, globals()[_name])
del _name
