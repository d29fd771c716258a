"""Fixtures of the download tests: a served folder, and a Keras cache of the test's own."""

from __future__ import annotations

import pytest
from served import Server


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over a fresh folder (``server.folder``)."""
    folder = tmp_path / "served"
    folder.mkdir()
    running = Server(folder)
    running.folder = folder
    yield running
    running.close()


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """``$KERAS_HOME`` pointed at a fresh folder: the cache get_file uses without cache_dir."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home
