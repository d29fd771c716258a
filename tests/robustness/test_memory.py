"""Memory: no growth over many steps with varying batch shapes; evaluate/predict stream big data.

The soak runs the seed document's CNN (Conv2D/MaxPooling2D/Flatten/Dense/Dropout) on small
images through more distinct batch shapes than a node's workspace holds (workspace.WORKSPACE_LIMIT).
The issue asks for 10,000 training steps and 10,000 predict calls; CI runs a scaled-down count
(SOAK_STEPS = 192 of each: every one of 96 batch sizes twice, half of them new after warm-up).
``FASTNN_SOAK=1`` runs the full 10,000.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np

import fastnn
from fastnn import layers
from fastnn.kernels import workspace

FULL = os.environ.get("FASTNN_SOAK") == "1"
LARGEST = 3 * workspace.WORKSPACE_LIMIT  # batch sizes 1..96: far more shapes than a workspace holds
SOAK_STEPS = 10_000 if FULL else 2 * LARGEST  # scaled down for CI: 192 steps and predicts


def seed_cnn(size=8) -> fastnn.Model:
    """The seed document's CNN, on ``size`` x ``size`` images instead of 28 x 28."""
    fastnn.utils.set_random_seed(0)
    model = fastnn.Sequential(
        [
            fastnn.Input((size, size, 1)),
            layers.Conv2D(32, kernel_size=3, activation="relu", padding="same"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, kernel_size=3, activation="relu", padding="same"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(100, activation="relu"),
            layers.Dropout(0.4),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def soak(steps: int) -> dict:
    """Warm-up on the largest half of the batch sizes (workspaces reach their bound, memory its
    working level); then ``steps`` training steps and predicts cycle through all sizes, half of
    them shapes never seen before, which an unbounded per-shape cache would keep (over 100 MB
    here) and a bounded one must not. Returns RSS before and after, and the fullest workspace."""
    fastnn.config.set_num_threads(1)  # a clean, single-threaded process: same numbers under load
    model = seed_cnn()
    rng = np.random.default_rng(0)
    x = rng.random((LARGEST, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 10, LARGEST)

    def step(n):
        model.train_on_batch(x[:n], y[:n])
        model.predict(x[:n], batch_size=n, verbose=0)

    for n in 2 * list(range(LARGEST, LARGEST // 2, -1)):
        step(n)
    model.evaluate(x, y, batch_size=LARGEST // 2 + 1, verbose=0)
    gc.collect()
    before = rss_bytes()
    sizes = rng.permutation(np.arange(1, LARGEST + 1))
    for i in range(steps):
        step(int(sizes[i % LARGEST]))
        if i % 50 == 0:
            model.evaluate(x, y, batch_size=int(sizes[i % LARGEST]), verbose=0)
    gc.collect()
    after = rss_bytes()
    fullest = max(
        len(workspace._arrays)
        for workspaces in model._graph._thread_workspaces.__dict__.values()
        for workspace in workspaces
        if workspace is not None
    )
    return {"before": before, "after": after, "fullest": fullest}


def test_soak_training_and_predict_with_varying_batch_sizes():
    """In a fresh process, so nothing else this test session did moves its memory."""
    child = subprocess.run(
        [sys.executable, __file__, str(SOAK_STEPS)],
        capture_output=True,
        text=True,
        timeout=3600 if FULL else 300,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])
    before, growth = report["before"], report["after"] - report["before"]
    assert growth < 0.05 * before, f"RSS grew {growth / 2**20:.1f} MiB from {before / 2**20:.0f}"
    assert report["fullest"] <= workspace.WORKSPACE_LIMIT


def dense_model() -> fastnn.Model:
    fastnn.utils.set_random_seed(0)
    inputs = fastnn.Input((8,))
    model = fastnn.Model(inputs, layers.Dense(1)(layers.Dense(16, activation="relu")(inputs)))
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    return model


def test_predict_and_evaluate_stream_a_million_float64_rows():
    """A float64 input to a float32 model is cast batch by batch, never copied whole: the peak
    of traced memory is the result plus a few batches, far below the input's 64 MB (a whole
    float32 copy alone would be 32 MB)."""
    model = dense_model()
    rng = np.random.default_rng(0)
    x = rng.random((1_000_000, 8))  # float64: 64 MB
    y = rng.random((1_000_000, 1)).astype(np.float32)
    batch = 8192
    # Compile or load every kernel outside the measurement, at the measured batch size: small
    # and large arrays run different kernels (serial and parallel twins), and loading one from
    # Numba's cache allocates its code as Python bytes.
    model.predict(x[:batch], batch_size=batch, verbose=0)
    model.evaluate(x[:batch], y[:batch], batch_size=batch, verbose=0)
    slack = 8 * 2**20  # a few batches of temporaries and Python objects

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        predicted = model.predict(x, batch_size=batch, verbose=0)
        peak_predict = tracemalloc.get_traced_memory()[1] - base
        del predicted  # the 4 MB result is what predict must allocate
        gc.collect()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        loss, mae = model.evaluate(x, y, batch_size=batch, verbose=0)
        peak_evaluate = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak_predict < 4_000_000 + slack, f"predict peaked at {peak_predict / 2**20:.1f} MiB"
    assert peak_evaluate < slack, f"evaluate peaked at {peak_evaluate / 2**20:.1f} MiB"

    # Same numbers as the float32 data (checked on a slice, to keep this test light).
    part = slice(0, 20_000)
    expected = model.predict(x[part].astype(np.float32), batch_size=batch, verbose=0)
    np.testing.assert_array_equal(model.predict(x[part], batch_size=batch, verbose=0), expected)
    loss32, mae32 = model.evaluate(x[part].astype(np.float32), y[part], batch, verbose=0)
    assert (loss32, mae32) == tuple(model.evaluate(x[part], y[part], batch, verbose=0))
    assert np.isfinite([loss, mae]).all()


if __name__ == "__main__":  # the soak's fresh process
    print(json.dumps(soak(int(sys.argv[1]))))
