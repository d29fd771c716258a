"""Workspaces: the arrays a caller keeps between calls and reuses while shapes stay the same.

Fresh large arrays cost page faults on every step, so a layer (or a kernel wrapper, such as the
recurrent sequence functions) takes a ``Workspace`` and asks ``scratch`` for its outputs and
buffers by name. An array from a workspace is overwritten by the next call in the same
workspace, so only callers that are done with a pass's results before the next pass (training
steps, batched predict) hand workspaces out; without one (None) every array is new. No Numba
here: this module loads with fastnn.
"""

from __future__ import annotations

import numpy as np

#: Arrays one workspace may hold before it starts over (bounds memory when batch shapes vary).
WORKSPACE_LIMIT = 32


class Workspace:
    """The arrays of one caller (a graph node), by name, shape and dtype (see ``scratch``)."""

    __slots__ = ("_arrays", "_kept")

    def __init__(self):
        self._arrays = {}
        self._kept = {}


def kept_for(workspace: Workspace, owner, make):
    """What ``make()`` returned the first time ``owner`` asked ``workspace``: a nested model's
    graph keeps its steps' workspaces in the one its caller's graph handed it."""
    found = workspace._kept.get(owner)
    if found is None:
        found = workspace._kept[owner] = make()
    return found


def scratch(workspace: Workspace | None, name: str, shape, dtype) -> np.ndarray:
    """An uninitialized array of ``shape``/``dtype``: the workspace's array ``name`` of that
    shape and dtype (the same one as last time), or a new array when ``workspace`` is None."""
    if workspace is None:
        return np.empty(shape, dtype)
    arrays = workspace._arrays
    key = (name, tuple(shape), np.dtype(dtype).char)
    array = arrays.get(key)
    if array is None:
        if len(arrays) >= WORKSPACE_LIMIT:
            arrays.clear()
        array = arrays[key] = np.empty(shape, dtype)
    return array


def scratch_copy(workspace: Workspace | None, name: str, values, dtype=None) -> np.ndarray:
    """A C-contiguous copy of ``values`` (cast to ``dtype``) in ``scratch``'s array ``name``."""
    values = np.asarray(values)
    out = scratch(workspace, name, values.shape, values.dtype if dtype is None else dtype)
    out[...] = values
    return out


def scratch_zeros(workspace: Workspace | None, name: str, shape, dtype) -> np.ndarray:
    """``scratch``'s array ``name``, filled with zeros."""
    out = scratch(workspace, name, shape, dtype)
    out.fill(0)
    return out
