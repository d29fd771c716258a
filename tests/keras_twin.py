"""The same user program written once against a Keras-like module ``K`` (fastnn or Keras 3 on
torch), built in both, Keras's weights copied into fastnn's, then compared.

Import from a test module (Keras is imported on first use, with ``KERAS_BACKEND=torch``)::

    from keras_twin import keras_module, copy_weights, assert_same_weights, fit_both
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

RTOL = 1e-4
ATOL = 1e-6


@functools.cache
def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras
    except ImportError:
        return None
    return keras


def keras_module():
    """Keras 3 on torch; skips the test when it is not installed."""
    keras = _keras()
    if keras is None:
        pytest.skip("Keras is not installed")
    return keras


def to_numpy(value) -> np.ndarray:
    """A Keras tensor or Variable (or anything array-like) as a numpy array."""
    keras = _keras()
    if keras is not None and not isinstance(value, np.ndarray):
        try:
            return np.asarray(keras.ops.convert_to_numpy(value))
        except Exception:  # noqa: BLE001 (not a Keras value)
            pass
    return np.asarray(value)


def copy_weights(theirs, ours) -> None:
    """Keras's weights into fastnn's object, in ``get_weights`` order (shapes must agree)."""
    arrays = [to_numpy(w) for w in theirs.get_weights()]
    assert [a.shape for a in arrays] == [w.shape for w in ours.get_weights()], (
        [a.shape for a in arrays],
        [w.shape for w in ours.get_weights()],
    )
    ours.set_weights(arrays)


def assert_same_weights(ours, theirs, rtol=RTOL, atol=ATOL, what="") -> None:
    """Every weight, in order, equal to Keras's within ``rtol``."""
    mine, keras_weights = ours.get_weights(), [to_numpy(w) for w in theirs.get_weights()]
    assert len(mine) == len(keras_weights), (
        f"{what}: {len(mine)} weights, Keras {len(keras_weights)}"
    )
    for i, (a, b) in enumerate(zip(mine, keras_weights)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"{what}: weight {i}")


def fit_both(ours, theirs, x, y=None, *, epochs=2, batch_size=8, **compile_kwargs):
    """Compile both with ``compile_kwargs`` (optimizers built by name each side), fit without
    shuffling and return both histories' ``.history``."""
    histories = []
    for model in (ours, theirs):
        model.compile(**compile_kwargs)
        history = model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0)
        histories.append(history.history)
    return histories


def assert_same_history(ours: dict, theirs: dict, rtol=RTOL, atol=ATOL) -> None:
    """Each logged value of each epoch, for every key Keras logs."""
    assert set(theirs) <= set(ours), f"Keras logs {sorted(theirs)}, fastnn {sorted(ours)}"
    for key in theirs:
        np.testing.assert_allclose(ours[key], theirs[key], rtol=rtol, atol=atol, err_msg=key)


def sgd(K, learning_rate=0.1):
    """An SGD optimizer of module ``K``."""
    return K.optimizers.SGD(learning_rate=learning_rate)
