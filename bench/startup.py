"""Start-up time: ``import fastnn``, and process start to the end of seed_cnn's first training step.

Run ``python -m bench.startup`` from the repository root (``--help`` for options). Each case runs
in ``--repeats`` fresh ``sys.executable`` processes, cases alternating, after one unmeasured run
of each warm case; the table gives medians of: the import as timed inside the process, launch to
the end of the process's work, and the whole process including its exit. The first step is
``train_on_batch`` on a batch of 32 of the model in bench/models.py (so it also imports that
module, ~25 ms), with Numba's cache warm (fastnn's usual cache) and cold (NUMBA_CACHE_DIR set to
a new empty directory per process). ``import torch`` / ``import keras`` are timed when installed.
Python's bytecode cache is warm in every case, as after ``pip install`` (which compiles it): the
children run without PYTHONDONTWRITEBYTECODE, else a checkout's modules would be compiled from
source in every process (~0.1 s for fastnn's).
Writes ``bench/results/startup-<date>.json`` with the machine (``save`` in bench/models.py).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.models import save

ROOT = Path(__file__).parent.parent
CHILD = """\
import json, time
start = time.perf_counter()
import {module}
imported = time.perf_counter() - start
{work}
print(json.dumps({{"import_s": imported, "end": time.time()}}))
"""
FIRST_STEP = """\
from bench.models import build_keras_api, make_data
(x,), (y,) = make_data("seed_cnn", 32)
build_keras_api(fastnn, "seed_cnn").train_on_batch(x, y)
"""
# case -> (module, work after importing it, cold Numba cache)
CASES = {
    "import fastnn": ("fastnn", "", False),
    "seed_cnn first step, warm cache": ("fastnn", FIRST_STEP, False),
    "seed_cnn first step, cold cache": ("fastnn", FIRST_STEP, True),
    "import torch": ("torch", "", False),
    "import keras": ("keras", "", False),
}
# the targets: case -> (figure, seconds)
TARGETS = {
    "import fastnn": ("import_s", 0.3),
    "seed_cnn first step, warm cache": ("to_end_s", 1.0),
    "seed_cnn first step, cold cache": ("to_end_s", 30.0),
}


def launch(module: str, work: str, cache_dir: str | None = None) -> dict:
    """Run one fresh process; its import time, launch to end of work, and whole-process time."""
    env = dict(os.environ, **({"NUMBA_CACHE_DIR": cache_dir} if cache_dir else {}))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    script = CHILD.format(module=module, work=work)
    start = time.time()  # the child reports time.time() too: one clock across processes
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    process_s = time.time() - start
    if done.returncode:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
    child = json.loads(done.stdout.splitlines()[-1])
    return {"import_s": child["import_s"], "to_end_s": child["end"] - start, "process_s": process_s}


def launch_cold(module: str, work: str) -> dict:
    """``launch`` with an empty Numba cache; also counts the index files it wrote there."""
    with tempfile.TemporaryDirectory() as cache_dir:
        run = launch(module, work, cache_dir)
        run["cache_files"] = sum(1 for _ in Path(cache_dir).rglob("*.nbi"))
    return run


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="fastnn start-up times (and peers' imports)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    cases = {k: v for k, v in CASES.items() if importlib.util.find_spec(v[0])}
    runs = {case: [] for case in cases}
    for case, (module, work, cold) in list(cases.items()):
        if not cold:
            try:  # warm-up: fills Numba's cache and the OS file cache
                launch(module, work)
            except RuntimeError as error:
                print(f"{case}: skipped, {error}")
                del cases[case], runs[case]
    for _ in range(args.repeats):
        for case, (module, work, cold) in cases.items():
            runs[case].append((launch_cold if cold else launch)(module, work))
    print(f"seconds, median of {args.repeats} processes: import | launch to end | whole process")
    rows = []
    for case, results in runs.items():
        row = {"case": case, **{k: statistics.median(r[k] for r in results) for k in results[0]}}
        line = f"{case:<33} {row['import_s']:7.3f} {row['to_end_s']:8.3f} {row['process_s']:8.3f}"
        if case in TARGETS:
            figure, limit = TARGETS[case]
            row["target_s"], row["met"] = limit, row[figure] < limit
            line += f"   target {figure} < {limit} s: {'met' if row['met'] else 'MISSED'}"
        if "cache_files" in row:  # 0: the kernels ignored NUMBA_CACHE_DIR, so it was not cold
            line += f"   ({row['cache_files']:.0f} Numba index files in NUMBA_CACHE_DIR)"
        rows.append(row)
        print(line, flush=True)
    if not args.no_save:
        save("startup", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
