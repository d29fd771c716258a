"""What the tape costs: the seed's multi-input MLP with every Dense written as a custom layer
(``ops.matmul(x, w) + b`` in ``call()``, gradients from a tape) against the built-in Dense
(fused kernels, its own backward), trained at batch 32 (issue 21).

Run ``python -m bench.custom_dense`` from the repository root (``--help`` for options). Both
models are built from the same function and trained in one process, alternately, after a
warm-up epoch each; each figure is the median of ``--repeats`` one-epoch fits. Prints training
samples/s, microseconds per step and the custom/built-in time ratio (the issue asks for at most
1.5), and writes them with the machine, the load average and the threads to
``bench/results/custom-dense-<date>.json`` (``--no-save``: print only).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def custom_dense_class(fastnn):
    """Dense as a user writes it in call(): matmul, bias and an optional activation."""
    from fastnn import ops

    class CustomDense(fastnn.layers.Layer):
        def __init__(self, units, activation=None, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.activation = fastnn.activations.get(activation)

        def build(self, input_shape):
            self.w = self.add_weight(shape=(input_shape[-1], self.units), name="kernel")
            self.b = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

        def call(self, inputs):
            return self.activation(ops.matmul(inputs, self.w) + self.b)

    return CustomDense


def seed_mlp(fastnn, dense):
    """bench.models' multi_input_mlp with ``dense`` for every Dense layer, compiled."""
    a, b = fastnn.Input(shape=(10,)), fastnn.Input(shape=(5,))
    x = fastnn.layers.Concatenate()([dense(32)(a), dense(16)(b)])
    x = dense(32)(dense(64)(x))
    model = fastnn.Model([a, b], dense(1, activation="sigmoid")(x))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    return model


def measure(samples: int, batch: int, repeats: int) -> dict:
    """Median one-epoch fit times of both models, run alternately."""
    import fastnn

    rng = np.random.default_rng(0)
    xs = [rng.random((samples, 10), dtype=np.float32), rng.random((samples, 5), dtype=np.float32)]
    y = rng.integers(0, 2, (samples, 1)).astype(np.float32)
    models = {
        "builtin": seed_mlp(fastnn, fastnn.layers.Dense),
        "custom": seed_mlp(fastnn, custom_dense_class(fastnn)),
    }
    times: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up: kernels compile, workspaces fill
        model.fit(xs, y, batch_size=batch, epochs=1, verbose=0)
    for _ in range(repeats):
        for name, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(xs, y, batch_size=batch, epochs=1, verbose=0)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    steps = -(-samples // batch)
    result = {}
    for name, runs in times.items():
        median = statistics.median(runs)
        result[name] = {
            "samples_per_second": samples / median,
            "us_per_step": median / steps * 1e6,
            "cpu_us_per_step": statistics.median(cpu[name]) / steps * 1e6,
            "runs_s": runs,
            "cpu_runs_s": cpu[name],
        }
    result["ratio"] = statistics.median(times["custom"]) / statistics.median(times["builtin"])
    # CPU time: the figure other processes on the machine disturb least (with --threads 1)
    result["cpu_ratio"] = statistics.median(cpu["custom"]) / statistics.median(cpu["builtin"])
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=4096, help="samples per epoch")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15, help="timed epochs per model")
    parser.add_argument("--threads", type=int, default=None, help="fastnn's thread bound")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    import fastnn

    if args.threads:
        fastnn.config.set_num_threads(args.threads)
    load_start = os.getloadavg()
    result = measure(args.samples, args.batch, args.repeats)

    record = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },  # fmt: skip
        "threads": fastnn.config.get_num_threads(),
        "load_average": {"start": load_start, "end": os.getloadavg()},
        "samples": args.samples,
        "batch": args.batch,
        "repeats": args.repeats,
        **result,
    }
    for name in ("builtin", "custom"):
        row = result[name]
        print(
            f"{name:8s} {row['samples_per_second']:10.0f} samples/s {row['us_per_step']:7.0f} "
            f"us/step ({row['cpu_us_per_step']:.0f} us of CPU)"
        )
    print(
        f"custom / built-in time: {result['ratio']:.2f}x, CPU time {result['cpu_ratio']:.2f}x "
        "(issue 21 asks for at most 1.5x)"
    )
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = RESULTS / f"custom-dense-{stamp}.json"
        path.write_text(json.dumps(record, indent=1))
        print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main()
