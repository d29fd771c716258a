"""fastnn.config.set_num_threads bounds Numba and BLAS threads process-wide (fastnn.runtime; the
threading layer's tests are in test_threading_layer.py).

Numba's thread count is per calling thread, so the bound must reach threads that call fastnn
after it was set; BLAS's is process-wide (threadpoolctl). Each test restores both.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest

import fastnn
from fastnn import config, layers, runtime

threadpoolctl = pytest.importorskip("threadpoolctl")
AVAILABLE = numba.config.NUMBA_NUM_THREADS


def blas_threads() -> set[int]:
    info = threadpoolctl.threadpool_info()
    return {lib["num_threads"] for lib in info if lib["user_api"] == "blas"}


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Leave Numba's count (this thread), the BLAS limits and fastnn's bound as they were."""
    monkeypatch.setattr(runtime, "_bound", None)
    numba_before = numba.get_num_threads()
    blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    before = blas.limit(limits=max(blas_threads() or {1}), user_api="blas")
    yield
    numba.set_num_threads(numba_before)
    before.restore_original_limits()


def mlp() -> fastnn.Model:
    inputs = fastnn.Input((16,))
    out = layers.Dense(4)(layers.Dense(64, activation="relu")(inputs))
    model = fastnn.Model(inputs, out)
    model.compile(optimizer="sgd", loss="mse")
    return model


@pytest.mark.parametrize("n", [0, -1, AVAILABLE + 1, 1.5, "2", True, None])
def test_set_num_threads_rejects_bad_counts(n):
    before = config.get_num_threads(), blas_threads()
    with pytest.raises(ValueError, match=rf"`n` must be an integer in 1\.\.{AVAILABLE}.*n={n!r}"):
        config.set_num_threads(n)
    assert (config.get_num_threads(), blas_threads()) == before


def test_set_num_threads_bounds_numba_and_blas_in_every_calling_thread():
    config.set_num_threads(1)
    assert config.get_num_threads() == 1 and numba.get_num_threads() == 1
    if blas_threads():
        assert blas_threads() == {1}
    model = mlp()
    x = np.random.default_rng(0).random((64, 16), dtype=np.float32)

    def call(method):
        # A new thread starts with all of Numba's threads; a fastnn call applies the bound.
        fresh = numba.get_num_threads()
        {
            "predict": lambda: model.predict(x, verbose=0),
            "call": lambda: model(x),
            "fit": lambda: model.fit(x, x[:, :4], epochs=1, verbose=0),
        }[method]()
        return fresh, numba.get_num_threads()

    counts = {}
    threads = [
        threading.Thread(target=lambda m=m: counts.update({m: call(m)}))
        for m in ["predict", "call", "fit"]
    ]
    for thread in threads:  # new threads, one per call
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == {m: (AVAILABLE, 1) for m in ["predict", "call", "fit"]}


def test_set_num_threads_accepts_the_whole_range():
    for n in [np.int64(1), AVAILABLE]:
        config.set_num_threads(n)
        assert config.get_num_threads() == n
        if blas_threads():
            assert blas_threads() == {int(n)}


@pytest.mark.skipif(AVAILABLE < 2, reason="needs 2 threads")
def test_serial_blas_sections_end_at_the_set_bound():
    """The recurrent layers run BLAS on one thread; leaving restores the bound set meanwhile."""
    config.set_num_threads(2)
    with runtime.serial_blas():
        assert blas_threads() == {1}
        config.set_num_threads(1)  # from inside: applies when the section ends
        assert blas_threads() == {1}
        with runtime.serial_blas():  # nested, as a layer called inside a model's call
            pass
        assert blas_threads() == {1}
    assert blas_threads() == {1} and config.get_num_threads() == 1
    config.set_num_threads(2)
    assert blas_threads() == {2}

    lstm = layers.LSTM(8)
    x = np.random.default_rng(0).random((4, 5, 3), dtype=np.float32)
    barrier = threading.Barrier(4)

    def run(_):
        barrier.wait()
        for _ in range(5):
            lstm(x)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(run, range(4)))
    assert blas_threads() == {2}  # concurrent sections never leave BLAS limited
