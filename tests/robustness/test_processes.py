"""A model used in the parent works in fork and spawn children (multiprocessing).

The parent first runs parallel kernels (Numba's thread pool starts), BLAS and concurrent predicts
from threads, so a threading layer or BLAS that is not fork-safe would hang or abort the fork
child. Every wait has a timeout: a hang fails the test instead of hanging CI.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import fastnn
from fastnn import layers

TIMEOUT = 120  # seconds; a spawn child imports numpy, numba and fastnn on a cold, busy machine


def small_cnn() -> fastnn.Model:
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((8, 8, 1), name="image")
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    model = fastnn.Model(inputs, layers.Dense(3, activation="softmax")(x))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def data(seed=0, n=40):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


@pytest.fixture(scope="module")
def used_model():
    """A model trained and used for inference in this process, with threads, before any fork."""
    model = small_cnn()
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: model.predict(x[i:], batch_size=8, verbose=0), range(8)))
    return model


def run_child(method: str, target, *args):
    """Run ``target(conn, *args)`` in a child started by ``method``; its one message, or fail."""
    ctx = multiprocessing.get_context(method)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=target, args=(send, *args), daemon=True)
    child.start()
    send.close()
    result = None
    try:
        if not receive.poll(TIMEOUT):
            pytest.fail(f"{method} child sent nothing in {TIMEOUT} s: deadlocked")
        result = receive.recv()
    except EOFError:
        pass  # the child died before sending: its exit code says how
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    assert child.exitcode == 0, f"{method} child exited with {child.exitcode} (crashed)"
    if isinstance(result, BaseException):
        raise result
    return result


def _report(conn, work, *args):
    try:
        conn.send(work(*args))
    except BaseException as error:  # sent to the parent, which raises it
        conn.send(RuntimeError(f"in the child: {type(error).__name__}: {error}"))
    finally:
        conn.close()


def _fork_work(model, x, y):
    """In a fork child: the parent's model object as it was at fork time."""
    with ThreadPoolExecutor(2) as pool:  # threads in the child too
        threaded = list(pool.map(lambda n: model.predict(x[:n], verbose=0), (len(x), len(x))))
    predicted = model.predict(x, batch_size=8, verbose=0)
    model.train_on_batch(x[:8], y[:8])
    return os.getpid(), predicted, threaded, model.get_weights()


def _fork_child(conn, model, x, y):
    _report(conn, _fork_work, model, x, y)


def test_fork_child_uses_the_parents_model(used_model):
    x, y = data(1)
    expected = used_model.predict(x, batch_size=8, verbose=0)
    pid, predicted, threaded, weights = run_child("fork", _fork_child, used_model, x, y)
    assert pid != os.getpid()
    np.testing.assert_allclose(predicted, expected, rtol=1e-6, atol=1e-7)
    for result in threaded:
        np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-7)
    # The child's step did not touch the parent's model; the same step here gives its weights.
    np.testing.assert_allclose(used_model.predict(x, batch_size=8, verbose=0), expected, rtol=1e-6)
    used_model.train_on_batch(x[:8], y[:8])
    for ours, theirs in zip(used_model.get_weights(), weights):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


def _spawn_work(path, config, weights, x):
    """In a spawn child (a fresh interpreter): the model loaded from a file and rebuilt."""
    loaded = fastnn.models.load_model(path)
    rebuilt = fastnn.Model.from_config(config)
    rebuilt.set_weights(weights)
    return loaded.predict(x, batch_size=8, verbose=0), rebuilt(x), loaded.optimizer.iterations


def _spawn_child(conn, path, config, weights, x):
    _report(conn, _spawn_work, path, config, weights, x)


def test_spawn_child_loads_or_rebuilds_the_model(used_model, tmp_path):
    x, _ = data(2)
    path = str(tmp_path / "m.fastnn")
    used_model.save(path)
    expected = used_model.predict(x, batch_size=8, verbose=0)
    loaded, rebuilt, iterations = run_child(
        "spawn", _spawn_child, path, used_model.get_config(), used_model.get_weights(), x
    )
    np.testing.assert_allclose(loaded, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rebuilt, expected, rtol=1e-6, atol=1e-7)
    assert iterations == used_model.optimizer.iterations
