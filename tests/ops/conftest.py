"""Fixtures the ops tests share."""

import os

import pytest


@pytest.fixture(scope="module")
def keras_ops():
    """keras.ops on the torch backend, the reference of the parity tests."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("keras runs on another backend in this process")
    return keras.ops
