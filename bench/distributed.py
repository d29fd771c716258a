"""Data-parallel training over MPI on this machine, and a model of scaling to 8-64 nodes.

    python -m bench.distributed [--widths 256,1024] [--samples 8192] [--batch 256] [--epochs 3]
                                [--alpha-us 20] [--gbps 25] [--no-save]

For an MLP per width (784 -> width -> width -> 10), in separate processes: samples/s of fit for
1 rank x 1 thread, 2 ranks x 1 thread (``mpiexec -n 2``, DataParallel) and 1 process x 2 threads;
the allreduce's share of a 2-rank step (an allreduce of the gradients' bytes, timed alone, over
the step's time). Then the allreduce's cost on this machine is fitted as alpha + beta * bytes
(alpha: the median time of messages up to 1 KB; beta: the slope from 64 KB up), and a ring
allreduce (2 (N - 1) alpha + 2 (N - 1) / N * bytes * beta, plus log2 N alpha for the logs'
few numbers) on N = 1..64 nodes is
combined with the measured per-step compute time (fitted as t0 + c * rows, from two batch
sizes) to print the speedup and efficiency of N nodes, for a fixed global batch (strong
scaling) and a fixed batch per node (weak scaling), on this machine's loopback and on a
network of ``--alpha-us`` latency and ``--gbps`` bandwidth; where the efficiency falls below
50% is where it stops scaling. Run it on a quiet machine: each configuration runs alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FEATURES, CLASSES = 784, 10
NODES = (1, 2, 4, 8, 16, 32, 64)


# ---- workers: one configuration, in its own process(es) ---------------------------------------
def _mlp(width: int):
    import fastnn as keras
    from fastnn import layers

    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            layers.Dense(width, activation="relu"),
            layers.Dense(width, activation="relu"),
            layers.Dense(CLASSES),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _timed_fit(model, x, y, batch: int, epochs: int) -> float:
    """Seconds per step of fit (after one warm-up epoch that compiles and allocates)."""
    model.fit(x[: batch * 2], y[: batch * 2], batch_size=batch, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0)
    return (time.perf_counter() - started) / (epochs * math.ceil(len(x) / batch))


def _allreduce_seconds(comm, mpi, floats: int, repeats: int = 20) -> float:
    """The slowest rank's mean time of an in-place float32 allreduce of ``floats`` numbers."""
    buffer = np.ones(floats, np.float32)
    for _ in range(3):
        comm.Allreduce(mpi.IN_PLACE, buffer, op=mpi.SUM)
    comm.Barrier()
    started = time.perf_counter()
    for _ in range(repeats):
        comm.Allreduce(mpi.IN_PLACE, buffer, op=mpi.SUM)
    return comm.allreduce((time.perf_counter() - started) / repeats, op=mpi.MAX)


def worker(args) -> None:
    """Train one width; rank 0 prints ``RESULT {json}``."""
    import fastnn as keras
    from fastnn import distribution

    if args.ranks > 1:
        distribution.set_distribution(distribution.DataParallel())
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.samples, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, size=args.samples)
    model = _mlp(args.width)
    result = {"step": _timed_fit(model, x, y, args.batch, args.epochs)}
    result["samples_per_s"] = args.batch / result["step"]
    result["params"] = model.count_params()
    if args.ranks == 1 and args.threads == 1:  # the compute time at a quarter of the rows too
        small = max(1, args.batch // 4)
        result["step_small"] = _timed_fit(_mlp(args.width), x, y, small, args.epochs)
        result["batch_small"] = small
    if args.ranks > 1:
        comm = distribution.communicator()
        mpi = sys.modules["mpi4py.MPI"]
        result["allreduce"] = _allreduce_seconds(comm, mpi, result["params"] + 1)
    if distribution.is_main():
        print("RESULT", json.dumps(result), flush=True)


def pingpong(args) -> None:
    """Allreduce times of float32 buffers from 4 B to 16 MB; rank 0 prints them."""
    from fastnn import distribution

    distribution.initialize()
    comm, mpi = distribution.communicator(), sys.modules["mpi4py.MPI"]
    sizes = [4**k for k in range(0, 13)]
    times = [_allreduce_seconds(comm, mpi, n, repeats=30 if n < 1 << 16 else 5) for n in sizes]
    if distribution.is_main():
        print("RESULT", json.dumps({"bytes": [4 * n for n in sizes], "seconds": times}))


# ---- the controller ----------------------------------------------------------------------------
def _mpiexec() -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    found = shutil.which("mpiexec", path=path)
    if found is None:
        sys.exit('bench/distributed.py needs mpiexec: pip install "fastnn[mpi]"')
    return found


def _launch(args, ranks: int, threads: int, *extra: str) -> dict:
    command = [sys.executable, __file__, "--ranks", str(ranks), "--threads", str(threads)]
    command += ["--samples", str(args.samples), "--batch", str(args.batch)]
    command += ["--epochs", str(args.epochs), *extra]
    if ranks > 1:
        command = [_mpiexec(), "-n", str(ranks), *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "HYDRA_"))}
    env.update(
        NUMBA_NUM_THREADS=str(threads),
        OMP_NUM_THREADS=str(threads),
        OPENBLAS_NUM_THREADS=str(threads),
    )
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT "))


def ring_allreduce(nodes: int, nbytes: float, alpha: float, beta: float) -> float:
    """Seconds of a ring allreduce of ``nbytes`` over ``nodes``: 2 (N-1) messages of
    bytes / N each way."""
    if nodes == 1:
        return 0.0
    return 2 * (nodes - 1) * alpha + 2 * (nodes - 1) / nodes * nbytes * beta


def scaling(t0: float, per_row: float, batch: int, nbytes: float, alpha: float, beta: float):
    """Per N: (strong speedup, strong efficiency, weak efficiency)."""
    one = t0 + per_row * batch
    rows = []
    for n in NODES:
        # the gradients' ring allreduce, and the metric states' (a few numbers: log2 N hops)
        reduce = ring_allreduce(n, nbytes, alpha, beta) + math.ceil(math.log2(n)) * alpha
        strong = one / (t0 + per_row * batch / n + reduce)
        rows.append((n, strong, strong / n, one / (one + reduce)))
    return rows


def _stops(rows) -> str:
    strong = next((n for n, _, eff, _ in rows if eff < 0.5), None)
    weak = next((n for n, _, _, eff in rows if eff < 0.5), None)
    say = lambda n: f"from {n} nodes" if n else "not within 64 nodes"  # noqa: E731
    return f"strong scaling below 50% efficiency {say(strong)}; weak {say(weak)}"


def controller(args) -> None:
    print(f"{os.cpu_count()} cores; MLP {FEATURES}-w-w-{CLASSES}, global batch {args.batch}")
    print(
        f"{'width':>6} {'params':>9} {'1r x 1t':>9} {'2r x 1t':>9} {'1p x 2t':>9} "
        f"{'allreduce':>10} {'share':>6}   (samples/s; allreduce ms of a 2-rank step)"
    )
    measured = []
    saved = {"batch": args.batch, "widths": [], "scaling": []}
    for width in args.widths:
        extra = ("--width", str(width))
        one = _launch(args, 1, 1, *extra)
        two_ranks = _launch(args, 2, 1, *extra)
        two_threads = _launch(args, 1, 2, *extra)
        share = two_ranks["allreduce"] / two_ranks["step"]
        print(
            f"{width:>6} {one['params']:>9} {one['samples_per_s']:>9.0f} "
            f"{two_ranks['samples_per_s']:>9.0f} {two_threads['samples_per_s']:>9.0f} "
            f"{two_ranks['allreduce'] * 1e3:>10.3f} {share:>6.1%}"
        )
        measured.append((width, one))
        saved["widths"].append(
            {"width": width, "one_rank": one, "two_ranks": two_ranks, "two_threads": two_threads}
        )
    wire = _launch(args, 2, 1, "--pingpong")
    sizes, seconds = np.array(wire["bytes"]), np.array(wire["seconds"])
    alpha = float(np.median(seconds[sizes <= 1024]))  # latency: the small messages
    beta = max(float(np.polyfit(sizes[sizes >= 1 << 16], seconds[sizes >= 1 << 16], 1)[0]), 1e-12)
    print(
        f"\nallreduce on this machine (2 ranks): alpha {alpha * 1e6:.1f} us, "
        f"beta {beta * 1e9:.3f} ns/B ({1 / beta / 1e9:.1f} GB/s)"
    )
    networks = [("this machine's loopback", alpha, beta)]
    networks.append(
        (
            f"{args.alpha_us:g} us, {args.gbps:g} Gb/s network",
            args.alpha_us * 1e-6,
            8 / (args.gbps * 1e9),
        )
    )
    for width, one in measured:
        per_row = (one["step"] - one["step_small"]) / (args.batch - one["batch_small"])
        per_row = max(per_row, 1e-12)
        t0 = max(one["step"] - per_row * args.batch, 0.0)
        nbytes = 4 * one["params"]
        print(
            f"\nwidth {width}: compute {t0 * 1e3:.3f} ms + {per_row * 1e6:.3f} us/row "
            f"per step, gradients {nbytes / 1e6:.2f} MB"
        )
        for name, a, b in networks:
            rows = scaling(t0, per_row, args.batch, nbytes, a, b)
            table = "  ".join(f"{n}:{s:.1f}x/{eff:.0%}/{weak:.0%}" for n, s, eff, weak in rows)
            print(f"  {name}: N:speedup/efficiency (strong)/efficiency (weak)\n    {table}")
            print(f"    {_stops(rows)}")
            saved["scaling"].append({"width": width, "network": name, "rows": rows})
    saved.update(alpha_s=alpha, beta_s_per_byte=beta)
    if not args.no_save:
        from bench.models import save  # with the machine, in bench/results/distributed-<date>.json

        save("distributed", saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--widths", type=lambda s: [int(w) for w in s.split(",")], default=[256, 1024]
    )
    parser.add_argument("--samples", type=int, default=8192)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--alpha-us", type=float, default=20.0)
    parser.add_argument("--gbps", type=float, default=25.0)
    parser.add_argument("--no-save", action="store_true")
    # a worker's own arguments
    parser.add_argument("--ranks", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=0)
    parser.add_argument("--pingpong", action="store_true")
    args = parser.parse_args()
    if args.pingpong:
        pingpong(args)
    elif args.ranks:
        worker(args)
    else:
        controller(args)


if __name__ == "__main__":
    main()
