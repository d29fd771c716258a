"""``import fastnn`` imports neither Numba nor a kernel family; they load on first use.

Numba is most of fastnn's import time, so ``fastnn.kernels`` imports a family (and with it Numba)
on first attribute access. Each check runs in a fresh interpreter, where nothing is imported yet.
Only the numba-free families (``fastnn.kernels._NUMBA_FREE``: activation codes, the wrappers' numpy
GEMM, the window arithmetic layers use for shapes) load with fastnn, and building a model loads
nothing more: Numba loads when the first step runs. No timing is asserted: the machine's load
decides that; these tests pin down what is imported and when.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fastnn
import fastnn.kernels

TIMEOUT = 300  # seconds; the first call may compile kernels on a cold, busy machine
ROOT = Path(fastnn.__file__).resolve().parents[1]

LOADED = """
import json, sys

def loaded():
    names = [m for m in sys.modules if m.split(".")[0] in ("numba", "llvmlite")]
    names += [m for m in sys.modules if m.startswith("fastnn.kernels.")]
    free = getattr(sys.modules.get("fastnn.kernels"), "_NUMBA_FREE", ())
    return sorted(set(names) - {f"fastnn.kernels.{name}" for name in free})
"""


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new interpreter; the JSON it prints on its last line."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LOADED) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import fastnn",
        "from fastnn import layers",
        "import fastnn as keras; keras.Sequential, keras.Input, keras.layers.Dense",
        "from fastnn.models import Model; from fastnn import losses, optimizers, activations",
    ],
)
def test_import_loads_neither_numba_nor_kernels(statement):
    out = run_fresh(f"{statement}\nprint(json.dumps(loaded()))")
    assert out == []


def test_building_and_compiling_models_loads_no_kernels():
    """Shapes are computed when a model is built, by the numba-free window arithmetic: the seed's
    CNN, and layers of every family, build, summarize and compile without loading Numba."""
    out = run_fresh(
        """
        import fastnn as keras
        from fastnn import layers

        cnn = keras.Sequential(
            [keras.Input((28, 28, 1)),
             layers.Conv2D(32, kernel_size=3, activation="relu", padding="same"),
             layers.MaxPooling2D(2),
             layers.Conv2D(64, kernel_size=3, activation="relu", padding="same"),
             layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(100, activation="relu"),
             layers.Dropout(0.4), layers.Dense(10, activation="softmax")]
        )
        cnn.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
        cnn.summary(print_fn=lambda *args, **kwargs: None)
        ids, img = keras.Input((6,), dtype="int32"), keras.Input((8, 8, 3))
        x = layers.LSTM(8, return_sequences=True)(layers.Embedding(20, 8)(ids))
        x = layers.Bidirectional(layers.GRU(4, return_sequences=True))(x)
        x = layers.Conv1D(4, 3, padding="causal")(layers.SimpleRNN(4, return_sequences=True)(x))
        x = layers.GlobalAveragePooling1D()(layers.AveragePooling1D(1)(layers.MaxPooling1D(2)(x)))
        y = layers.Conv2D(4, 3, strides=2, padding="same")(img)
        y = layers.GlobalMaxPooling2D()(layers.AveragePooling2D(2)(y))
        z = layers.BatchNormalization()(layers.Concatenate()([x, y]))
        model = keras.Model([ids, img], layers.Dense(3, activation="softmax")(z))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        print(json.dumps({"loaded": loaded(), "shape": list(cnn.output_shape)}))
        """
    )
    assert out == {"loaded": [], "shape": [None, 10]}


def test_first_training_step_loads_the_kernels_and_trains():
    out = run_fresh(
        """
        import numpy as np
        import fastnn as keras
        from fastnn import layers

        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"),
             layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")]
        )
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        x, y = rng.random((32, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 32)
        before = loaded()
        losses = model.fit(x, y, batch_size=8, epochs=3, verbose=0).history["loss"]
        print(json.dumps({"before": before, "after": loaded(), "losses": losses,
                          "predicted": model.predict(x[:4], verbose=0).sum(axis=1).tolist()}))
        """
    )
    assert "fastnn.kernels.losses" not in out["before"]  # built and compiled; nothing ran yet
    assert "fastnn.kernels.optimizers" not in out["before"]
    kernels = {f"fastnn.kernels.{n}" for n in ("activations", "conv", "pooling", "losses")}
    assert {"numba", "fastnn.kernels.optimizers", *kernels} <= set(out["after"])
    assert out["losses"][-1] < out["losses"][0]
    assert out["predicted"] == pytest.approx([1.0] * 4, rel=1e-5)


def test_concurrent_first_use_matches_serial():
    """Four threads predict at once right after import, when no kernel family is loaded: they
    race to import Numba and several families, and must get the serial results (no deadlock:
    the subprocess has a timeout)."""
    out = run_fresh(
        """
        import threading
        import numpy as np
        import fastnn as keras
        from fastnn import layers

        keras.utils.set_random_seed(0)
        ids = keras.Input((6,), dtype="int32")
        x = layers.LSTM(8)(layers.Embedding(20, 8)(ids))
        x = layers.BatchNormalization()(layers.Dense(16, activation="tanh")(x))
        model = keras.Model(ids, layers.Dense(3, activation="softmax")(x))
        rng = np.random.default_rng(0)
        batches = [rng.integers(0, 20, (n, 6)) for n in (5, 16, 9, 32)]
        before = loaded()
        start = threading.Barrier(4)
        results = [None] * 4

        def run(i):
            start.wait()
            results[i] = model.predict(batches[i], batch_size=8, verbose=0)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        serial = [model.predict(b, batch_size=8, verbose=0) for b in batches]
        print(json.dumps({"before": before, "after": loaded(),
                          "same": [r is not None and np.allclose(r, s, rtol=1e-6, atol=0)
                                   for r, s in zip(results, serial)]}))
        """
    )
    assert out["before"] == []
    assert "fastnn.kernels.recurrent" in out["after"]
    assert out["same"] == [True] * 4


def test_every_kernel_module_is_a_family_attribute():
    on_disk = {m.name for m in pkgutil.iter_modules(fastnn.kernels.__path__)}
    assert {"activations", "codes", "conv", "pooling", "recurrent"} <= on_disk
    assert on_disk <= set(dir(fastnn.kernels))
    for name in on_disk:
        assert getattr(fastnn.kernels, name).__name__ == f"fastnn.kernels.{name}"
    with pytest.raises(AttributeError, match="has no attribute 'fft'"):
        fastnn.kernels.fft  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute '_private'"):
        fastnn.kernels._private  # noqa: B018
