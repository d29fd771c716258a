"""Automatic names ('dense', 'dense_1', ...): one process-wide counter per prefix, as Keras's
``auto_name``; ``clear_session`` restarts them."""

from __future__ import annotations

import threading
from collections import defaultdict

_name_lock = threading.Lock()
_name_counts: defaultdict[str, int] = defaultdict(int)


def unique_name(prefix: str) -> str:
    """'dense', 'dense_1', 'dense_2', ... per process, as Keras names layers."""
    with _name_lock:
        count = _name_counts[prefix]
        _name_counts[prefix] += 1
    return prefix if count == 0 else f"{prefix}_{count}"


def reset_names() -> None:
    """Restart automatic layer naming (``fastnn.utils.clear_session``)."""
    with _name_lock:
        _name_counts.clear()
