"""Where fastnn's time goes in one of the benchmark models: per layer forward and backward, loss,
optimizer, and the Python overhead around them.

Run ``python -m bench.profile seed_cnn`` from the repository root (``--help`` for options). After
a warm-up epoch, it times ``fit`` (training at each ``--batches``) and ``predict`` (inference at
``--infer-batch``), as bench/models.py runs them, with every top-level layer's ``forward`` and
``backward``, the model's loss and the optimizer's update wrapped in timers. "overhead" is the
rest of the wall time: batching, the graph's bookkeeping, metrics and Python calls. Figures are
milliseconds per batch, the median of ``--repeats`` epochs. Writes
``bench/results/profile-<date>.json`` with the machine (``save`` in bench/models.py).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections import defaultdict

import fastnn
from bench.models import SPECS, KerasAPIRunner, make_data, save


@contextlib.contextmanager
def timed_parts(model):
    """Wrap the model's layers, loss and optimizer in timers; yield the dict they add into."""
    seconds = defaultdict(float)
    wrapped = []  # (object, attribute) whose instance attribute is the timer

    def wrap(owner, attribute, part):
        inner = getattr(owner, attribute)

        def timer(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - start

        setattr(owner, attribute, timer)
        wrapped.append((owner, attribute))

    for step in model._graph.steps:  # fused layers (fastnn.fusion) as one: 'conv2d+max_pooling2d'
        wrap(step.layer, "forward", (step.layer.name, "forward"))
        wrap(step.layer, "backward", (step.layer.name, "backward"))
    wrap(model, "_compute_loss", ("loss", ""))
    if getattr(model, "optimizer", None) is not None:
        wrap(model.optimizer, "apply", ("optimizer", ""))
    try:
        yield seconds
    finally:
        for owner, attribute in wrapped:
            delattr(owner, attribute)


def profile(name: str, batch: int, train: bool, samples: int, repeats: int) -> dict:
    """One model and batch: ms per batch of each part, median of ``repeats`` epochs."""
    runner = KerasAPIRunner(fastnn, name, batch)
    model = runner.model
    xs, ys = make_data(name, samples)

    def epoch():
        if train:
            runner.train(xs, ys)
        else:
            runner.infer(xs)

    epoch()  # warm-up: compiles or loads the kernels and fills the workspaces
    batches = -(-samples // batch)
    runs = []
    for _ in range(repeats):
        with timed_parts(model) as seconds:
            start = time.perf_counter()
            epoch()
            wall = time.perf_counter() - start
        parts = {part: s * 1e3 / batches for part, s in seconds.items()}
        parts[("overhead", "")] = wall * 1e3 / batches - sum(parts.values())
        parts[("total", "")] = wall * 1e3 / batches
        runs.append(parts)
    medians = {part: statistics.median(run.get(part, 0.0) for run in runs) for part in runs[0]}
    return {
        "model": name,
        "mode": "train" if train else "inference",
        "batch": batch,
        "ms_per_batch": [
            {"part": part, "pass": kind, "ms": round(ms, 4)} for (part, kind), ms in medians.items()
        ],
    }


def print_profile(result: dict) -> None:
    rows = result["ms_per_batch"]
    total = next(r["ms"] for r in rows if r["part"] == "total")
    print(f"\n{result['model']} {result['mode']} batch {result['batch']}: ms per batch")
    for row in sorted(rows, key=lambda r: (r["part"] == "total", -r["ms"])):
        label = f"{row['part']} {row['pass']}".strip()
        print(f"  {label:<28} {row['ms']:9.3f}  {100 * row['ms'] / total:5.1f}%")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="fastnn per-layer profile of a benchmark model")
    parser.add_argument("models", nargs="*", help=f"of {', '.join(SPECS)} (default: all)")
    parser.add_argument("--batches", nargs="*", type=int, default=[32, 128])
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    args.models = args.models or list(SPECS)
    unknown = sorted(set(args.models) - set(SPECS))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(SPECS)}")
    results = []
    for name in args.models:
        cases = [(batch, True) for batch in args.batches] + [(args.infer_batch, False)]
        for batch, train in cases:
            results.append(profile(name, batch, train, args.samples, args.repeats))
            print_profile(results[-1])
    if not args.no_save:
        save("profile", {"args": vars(args), "profiles": results})


if __name__ == "__main__":
    main()
