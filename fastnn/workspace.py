"""Workspaces: the arrays a graph node keeps between calls and reuses while shapes stay the same."""

from __future__ import annotations

import numpy as np

#: Arrays one workspace may hold before it starts over (bounds memory when batch shapes vary).
WORKSPACE_LIMIT = 32


class Workspace:
    """Arrays one node keeps between calls and reuses while shapes stay the same.

    Fresh large arrays cost page faults on every step; a layer that takes a workspace asks it
    for its outputs and scratch buffers instead. Arrays from a workspace are overwritten by the
    node's next call in the same workspace, so only callers that are done with a pass's results
    before the next pass (training steps, batched predict) hand workspaces out.
    """

    __slots__ = ("_arrays",)

    def __init__(self):
        self._arrays = {}

    def empty(self, name: str, shape, dtype) -> np.ndarray:
        """An uninitialized array of ``shape``/``dtype``, the same one as last time if it fits."""
        key = (name, tuple(shape), np.dtype(dtype).char)
        array = self._arrays.get(key)
        if array is None:
            if len(self._arrays) >= WORKSPACE_LIMIT:
                self._arrays.clear()
            array = self._arrays[key] = np.empty(shape, dtype)
        return array


def scratch(workspace: Workspace | None, name: str, shape, dtype) -> np.ndarray:
    """``workspace.empty(name, shape, dtype)``, or a fresh array when there is no workspace."""
    if workspace is None:
        return np.empty(shape, dtype)
    return workspace.empty(name, shape, dtype)


def scratch_copy(workspace: Workspace | None, name: str, values, dtype=None) -> np.ndarray:
    """A C-contiguous copy of ``values`` (cast to ``dtype``) in ``scratch``'s array ``name``."""
    values = np.asarray(values)
    out = scratch(workspace, name, values.shape, values.dtype if dtype is None else dtype)
    out[...] = values
    return out
