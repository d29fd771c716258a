"""End-to-end throughput: the same models trained and run in fastnn and in each installed peer.

Run ``python -m bench.models`` from the repository root (``--help`` for options): the seed's
five models by default, ``--models`` to pick any (``--zoo``: every model of bench/zoo.py; those
that need a layer fastnn lacks are skipped with a "needs <Layer>" line). Every framework runs in
a child process of its own (``Child``), fastnn included, so no two thread pools share a process;
frameworks alternate model by model after a warm-up; each figure is the median of ``--repeats``
timed runs. The models' trainable parameter counts must agree across frameworks (asserted).
Peers: PyTorch eager (default, channels_last, and "tuned": channels_last in a process whose
glibc keeps freed memory, see TUNED_ENV) and Keras 3 on each installed backend (threads are
bounded on the torch backend only). Prints a table of samples/second with the fastnn/peer ratio
and writes it, with the machine, each framework's threads (Numba's threading layer for fastnn)
and the load average, to ``bench/results/models-<date>.json`` (``models-zoo-<date>.json`` with
``--zoo``; ``python -m bench.table`` makes the README's table of it); ``--memory`` adds each
framework's peak memory of a training run, ``--scaling`` runs fastnn alone from 1 thread up
instead. For figures comparable with a user's machine, unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE in the benchmark command (never in tests or CI)."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from bench import onnx_peer, zoo

RESULTS = Path(__file__).parent / "results"

# name -> (input shapes, output kinds); kinds: ("sparse", classes) / ("binary",) / ("mse",);
# ("binary", shape) for a target of that shape per sample
SEED_SPECS = {
    "seed_cnn": ([(28, 28, 1)], [("sparse", 10)]),
    "multi_input_mlp": ([(10,), (5,)], [("binary",)]),
    "multi_output_cnn": ([(28, 28, 1)], [("mse",), ("binary",)]),
    "lstm_text": ([("ids", 100)], [("binary",)]),
    "image_text": ([(64, 64, 3), ("ids", 100)], [("binary",)]),
}
SPECS = {**SEED_SPECS, **zoo.SPECS}
VOCAB = zoo.VOCAB


def make_data(name: str, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    inputs, outputs = SPECS[name]
    xs = [
        rng.integers(0, VOCAB, (n, shape[1])).astype(np.float32)
        if shape[0] == "ids"
        else rng.random((n, *shape), dtype=np.float32)
        for shape in inputs
    ]
    ys = []
    for kind in outputs:
        if kind[0] == "sparse":
            ys.append(rng.integers(0, kind[1], n))
        elif kind[0] == "binary":
            shape = kind[1] if len(kind) > 1 else (1,)
            ys.append(rng.integers(0, 2, (n, *shape)).astype(np.float32))
        else:
            ys.append(rng.random((n, 1), dtype=np.float32))
    return xs, ys


# ---- Keras-API builders (fastnn and keras share them) -------------------------------------------
def build_keras_api(lib, name: str):
    """The benchmark model in a Keras-compatible library (fastnn or keras), compiled."""
    if name in zoo.SPECS:
        return zoo.build(lib, name)
    layers = lib.layers
    if name == "seed_cnn":
        inputs = lib.Input(shape=(28, 28, 1))
        x = layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(100, activation="relu")(x)
        x = layers.Dropout(0.4)(x)
        model = lib.Model(inputs, layers.Dense(10, activation="softmax")(x))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    elif name == "multi_input_mlp":
        a, b = lib.Input(shape=(10,)), lib.Input(shape=(5,))
        x = layers.Concatenate()([layers.Dense(32)(a), layers.Dense(16)(b)])
        x = layers.Dense(32)(layers.Dense(64)(x))
        model = lib.Model([a, b], layers.Dense(1, activation="sigmoid")(x))
        model.compile(optimizer="adam", loss="binary_crossentropy")
    elif name == "multi_output_cnn":
        inputs = lib.Input(shape=(28, 28, 1))
        x = layers.Conv2D(32, 3, activation="relu")(inputs)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Conv2D(64, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
        x = layers.Flatten()(x)
        age = layers.Dense(1, name="age")(x)
        gender = layers.Dense(1, activation="sigmoid", name="gender")(x)
        model = lib.Model(inputs, [age, gender])
        model.compile(optimizer="adam", loss=["mse", "binary_crossentropy"])
    elif name == "lstm_text":
        inputs = lib.Input(shape=(100,))
        x = layers.LSTM(64)(layers.Embedding(VOCAB, 128)(inputs))
        model = lib.Model(inputs, layers.Dense(1, activation="sigmoid")(x))
        model.compile(optimizer="adam", loss="binary_crossentropy")
    elif name == "image_text":
        image, text = lib.Input(shape=(64, 64, 3)), lib.Input(shape=(100,))
        x1 = layers.MaxPooling2D(2)(layers.Conv2D(32, 3, activation="relu")(image))
        x1 = layers.MaxPooling2D(2)(layers.Conv2D(64, 3, activation="relu")(x1))
        x2 = layers.LSTM(64)(layers.Embedding(VOCAB, 128)(text))
        x = layers.concatenate([layers.Flatten()(x1), x2])
        x = layers.Dropout(0.5)(layers.Dense(64, activation="relu")(x))
        model = lib.Model([image, text], layers.Dense(1, activation="sigmoid")(x))
        model.compile(optimizer="adam", loss="binary_crossentropy")
    else:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(SPECS)}")
    return model


class KerasAPIRunner:
    """Times fit/predict of a Keras-API library (fastnn, or keras on its configured backend)."""

    def __init__(self, lib, name, batch):
        self.model = build_keras_api(lib, name)
        self.name, self.batch = name, batch
        self.params = sum(int(np.prod(w.shape)) for w in self.model.trainable_weights)

    def train(self, xs, ys):
        self.model.fit(
            xs if len(xs) > 1 else xs[0],
            ys if len(ys) > 1 else ys[0],
            batch_size=self.batch,
            epochs=1,
            verbose=0,
            shuffle=False,
        )

    def infer(self, xs):
        if self.batch == 1:  # latency: one call per sample, as a service answering requests
            for i in range(len(xs[0])):
                one = [x[i : i + 1] for x in xs]
                self.model.predict(one if len(one) > 1 else one[0], verbose=0)
            return
        self.model.predict(xs if len(xs) > 1 else xs[0], batch_size=self.batch, verbose=0)


# ---- PyTorch -------------------------------------------------------------------------------------
def torch_runner(name, batch, channels_last=False):
    import torch
    from torch import nn

    from bench.zoo_torch import keras_trainable_count

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            if name == "seed_cnn":
                self.body = nn.Sequential(
                    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(7 * 7 * 64, 100), nn.ReLU(), nn.Dropout(0.4),
                    nn.Linear(100, 10),
                )  # fmt: skip
            elif name == "multi_input_mlp":
                self.a, self.b = nn.Linear(10, 32), nn.Linear(5, 16)
                self.head = nn.Sequential(
                    nn.Linear(48, 64), nn.Linear(64, 32), nn.Linear(32, 1), nn.Sigmoid()
                )
            elif name in ("lstm_text", "image_text"):
                self.embedding = nn.Embedding(VOCAB, 128)
                self.lstm = nn.LSTM(128, 64, batch_first=True)
                if name == "lstm_text":
                    self.head = nn.Sequential(nn.Linear(64, 1), nn.Sigmoid())
                else:
                    self.body = nn.Sequential(
                        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    )  # fmt: skip
                    self.head = nn.Sequential(
                        nn.Linear(14 * 14 * 64 + 64, 64), nn.ReLU(), nn.Dropout(0.5),
                        nn.Linear(64, 1), nn.Sigmoid(),
                    )  # fmt: skip
            else:
                self.body = nn.Sequential(
                    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                )  # fmt: skip
                self.age, self.gender = nn.Linear(5 * 5 * 64, 1), nn.Linear(5 * 5 * 64, 1)

        def forward(self, *xs):
            if name == "seed_cnn":
                return [self.body(xs[0])]
            if name == "multi_input_mlp":
                return [self.head(torch.cat([self.a(xs[0]), self.b(xs[1])], dim=1))]
            if name in ("lstm_text", "image_text"):
                _, (h, _) = self.lstm(self.embedding(xs[-1].long()))
                text = h[-1]
                if name == "lstm_text":
                    return [self.head(text)]
                return [self.head(torch.cat([self.body(xs[0]), text], dim=1))]
            features = self.body(xs[0])
            return [self.age(features), torch.sigmoid(self.gender(features))]

    if name in zoo.SPECS:
        from bench import zoo_torch

        net = zoo_torch.build(name)
    else:
        net = Net()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_of_kind = {"sparse": nn.CrossEntropyLoss, "binary": nn.BCELoss, "mse": nn.MSELoss}
    losses = [loss_of_kind[kind[0]]() for kind in SPECS[name][1]]

    def to_torch(xs):
        out = []
        for x in xs:
            t = torch.from_numpy(x)
            if t.ndim == 4:
                t = t.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)
            out.append(t)
        return out

    class Runner:
        params = keras_trainable_count(net)

        def train(self, xs, ys):
            xs = to_torch(xs)
            ys = [torch.from_numpy(y) for y in ys]
            net.train()
            for start in range(0, len(ys[0]), batch):
                batch_x = [x[start : start + batch] for x in xs]
                outs = net(*batch_x)
                loss = sum(fn(o, y[start : start + batch]) for fn, o, y in zip(losses, outs, ys))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

        def infer(self, xs):
            xs = to_torch(xs)
            net.eval()
            with torch.no_grad():
                for start in range(0, len(xs[0]), batch):
                    net(*[x[start : start + batch] for x in xs])

    return Runner()


# ---- harness -------------------------------------------------------------------------------------
# glibc reads these at process start only, so "pytorch_tuned" runs in a child process started with
# them: freed memory stays in the heap for reuse instead of costing fresh first-touch page faults.
TUNED_ENV = {"MALLOC_MMAP_THRESHOLD_": str(2**30), "MALLOC_TRIM_THRESHOLD_": str(2**30)}
KERAS_BACKENDS = ("jax", "tensorflow", "torch")  # those that train; one child process each


def installed() -> list[str]:
    """fastnn and every installed peer, in table order."""
    names = ["fastnn"]
    if importlib.util.find_spec("torch"):
        names += ["pytorch", "pytorch_channels_last", "pytorch_tuned"]
    if importlib.util.find_spec("keras"):
        names += [f"keras_{b}" for b in KERAS_BACKENDS if importlib.util.find_spec(b)]
    return names


def child_env(fw: str) -> dict | None:
    """The environment a framework needs at process start, if any, added to its Child's."""
    if fw == "pytorch_tuned":
        return TUNED_ENV
    return {"KERAS_BACKEND": fw.removeprefix("keras_")} if fw.startswith("keras_") else None


def make_runner(fw: str, name: str, batch: int, threads: int):
    """A runner of framework ``fw`` in this process; imports that framework only."""
    if fw == "fastnn":
        import fastnn

        fastnn.config.set_num_threads(threads)
        fastnn.utils.set_random_seed(onnx_peer.WEIGHTS_SEED)  # the weights onnxruntime runs
        return KerasAPIRunner(fastnn, name, batch)
    if fw == "onnxruntime":
        return onnx_peer.OnnxRuntimeRunner(name, batch, threads)
    if fw.startswith(("pytorch", "keras_torch")):
        import torch

        torch.set_num_threads(threads)
    if fw.startswith("keras"):
        import keras

        return KerasAPIRunner(keras, name, batch)
    return torch_runner(name, batch, channels_last=fw != "pytorch")  # tuned: channels_last


def peak_mib() -> float:
    """Peak resident memory of this process in MiB: Linux's VmHWM, since a child's ru_maxrss
    starts from its parent's peak (carried across fork and exec)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def framework_info(fw: str) -> dict:
    """How framework ``fw`` runs in this process: its threads (and Numba's threading layer for
    fastnn, ATen's parallel backend for PyTorch), Keras's backend, glibc's malloc settings."""
    info = {"pid": os.getpid()}
    if fw == "fastnn":
        import fastnn

        info["threads"] = fastnn.config.get_num_threads()
        info["threading_layer"] = fastnn.config.threading_layer()
        info["module"] = fastnn.__file__
    if fw.startswith(("pytorch", "keras_torch")):
        import torch

        info["threads"] = torch.get_num_threads()
        parallel = torch.__config__.parallel_info().splitlines()
        info["parallel_backend"] = next((x for x in parallel if "parallel backend" in x), "")
    if fw.startswith("keras"):
        import keras

        info["keras_backend"] = keras.backend.backend()
    info["env"] = {k: os.environ[k] for k in TUNED_ENV if k in os.environ}
    return info


def serve(conn, fw: str, threads: int) -> None:
    """The loop of a Child process: build a runner, time its steps, report on itself. Each reply
    is (True, value), or (False, traceback) when the step raised."""
    runner = data = None
    try:
        while (message := conn.recv()) is not None:
            kind, *args = message
            try:
                if kind == "build":
                    runner = data = None  # free the previous model first
                    name, batch, samples = args
                    runner = make_runner(fw, name, batch, threads)
                    data = make_data(name, samples)
                    reply = runner.params
                elif kind == "peak":
                    reply = peak_mib()
                elif kind == "info":
                    reply = framework_info(fw)
                else:
                    reply = seconds(runner, kind, *data)
            except Exception:
                conn.send((False, traceback.format_exc()))
            else:
                conn.send((True, reply))
    except (EOFError, BrokenPipeError):  # the parent has gone
        pass


class Child:
    """Framework ``fw`` in a fresh process (its child_env added to the environment), driven
    over a pipe one step at a time; a step is timed in the child. ``child(name, batch)`` builds
    a model and its data there (make_data is seeded: the same as the parent's) and returns the
    child as the model's runner."""

    def __init__(self, fw: str, threads: int, samples: int):
        from unittest import mock  # here: bench.startup's children import this module

        ctx = multiprocessing.get_context("spawn")  # a new interpreter: glibc sees env at start
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(theirs, fw, threads), daemon=True)
        with mock.patch.dict(os.environ, child_env(fw) or {}):  # spawn hands os.environ over
            self.process.start()
        theirs.close()
        self.fw, self.samples, self.params = fw, samples, None

    def ask(self, *message):
        self.conn.send(message)
        ok, reply = self.conn.recv()
        if not ok:
            raise RuntimeError(f"{self.fw} (child process) failed at {message[0]}:\n{reply}")
        return reply

    def __call__(self, name: str, batch: int) -> Child:
        self.params = self.ask("build", name, batch, self.samples)
        return self

    def train(self, xs, ys) -> float:
        return self.ask("train")

    def infer(self, xs) -> float:
        return self.ask("infer")

    def peak_mib(self) -> float:
        return self.ask("peak")

    def info(self) -> dict:
        return self.ask("info")

    def close(self) -> None:
        self.conn.send(None)
        self.process.join()


class Threaded:
    """A fastnn runner that sets fastnn's thread count before each step (for --scaling)."""

    def __init__(self, name: str, batch: int, threads: int):
        import fastnn

        self.runner, self.config = make_runner("fastnn", name, batch, threads), fastnn.config
        self.threads, self.params = threads, self.runner.params

    def train(self, xs, ys):
        self.config.set_num_threads(self.threads)
        self.runner.train(xs, ys)

    def infer(self, xs):
        self.config.set_num_threads(self.threads)
        self.runner.infer(xs)


def seconds(runner, mode: str, xs, ys) -> float:
    """Wall time of one training epoch or inference pass (a Child returns its own timing)."""
    start = time.perf_counter()
    reported = runner.train(xs, ys) if mode == "train" else runner.infer(xs)
    return time.perf_counter() - start if reported is None else reported


# A timed run repeats its pass (an epoch, or predict over the data) until it lasts this long: one
# inference pass of the MLP takes ~2 ms, where timer and scheduler noise decide the figure.
MIN_TIMED_SECONDS = 0.25


def run(
    models,
    batches,
    infer_batch,
    samples,
    repeats,
    found: dict,
    speedup=False,
    quiet=None,
    on_row=None,
) -> list[dict]:
    """Samples/s of each of ``found``'s runners per (model, mode, batch), printed as they come.
    Each row also has the 1-minute load average at its end and the share of the machine's CPU
    time that other processes took while it ran (``others_cpu``; None off Linux). With ``quiet``
    = (share, minutes), a row first waits until others take less than that share, at most that
    long (``waited_s``). ``on_row(rows)`` is called after each row."""
    rows = []
    infer_batches = infer_batch if isinstance(infer_batch, list) else [infer_batch]
    for name in models:
        for mode, batch in [("train", b) for b in batches] + [("infer", b) for b in infer_batches]:
            xs, ys = make_data(name, samples)
            runners = {fw: factory(name, batch) for fw, factory in found.items()}
            row = {"model": name, "mode": mode, "batch": batch}
            row["params"] = check_params(name, runners)
            if quiet:
                row["waited_s"] = wait_for_quiet(runners.values(), *quiet)
            others = OthersCPU(runners.values())
            row["passes"], times = timed_runs(runners, mode, xs, ys, repeats)
            row.update(
                {fw: row["passes"] * samples / statistics.median(t) for fw, t in times.items()}
            )
            row["load_1min"], row["others_cpu"] = round(os.getloadavg()[0], 2), others.share()
            rows.append(row)
            print(format_row(row, list(found), speedup), flush=True)
            if on_row:
                on_row(rows)
    return rows


def timed_runs(runners: dict, mode: str, xs, ys, repeats: int) -> tuple[int, dict]:
    """After a warm-up (compilation, allocator, caches), ``repeats`` timed runs of each runner,
    alternating so drift hits all alike; a run is as many passes as make MIN_TIMED_SECONDS."""
    warm = min(seconds(runner, mode, xs, ys) for runner in runners.values())
    passes = max(1, math.ceil(MIN_TIMED_SECONDS / max(warm, 1e-6)))
    times = {fw: [] for fw in runners}
    for _ in range(repeats):
        for fw, runner in runners.items():
            times[fw].append(sum(seconds(runner, mode, xs, ys) for _ in range(passes)))
    return passes, times


def wait_for_quiet(runners, share: float, minutes: float, window: float = 5.0) -> float:
    """Wait until other processes take less than ``share`` of the CPU over ``window`` seconds,
    or ``minutes`` have passed; the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < 60 * minutes:
        others = OthersCPU(runners)
        time.sleep(window)
        if (others.share() or 0.0) < share:
            break
    return round(time.monotonic() - start - window, 1)


class OthersCPU:
    """The share of the machine's CPU time that processes other than this one and ``runners``'
    children use from now until ``share()``: how loaded the machine was by others (Linux)."""

    def __init__(self, runners):
        self.pids = [os.getpid()] + [r.process.pid for r in runners if isinstance(r, Child)]
        self.start = time.monotonic(), self.busy_seconds(), self.our_seconds()

    def share(self) -> float | None:
        wall, busy, ours = self.start
        if busy is None:
            return None
        elapsed = (time.monotonic() - wall) * (os.cpu_count() or 1)
        others = (self.busy_seconds() - busy) - (self.our_seconds() - ours)
        return round(max(0.0, others / elapsed), 3)

    @staticmethod
    def busy_seconds() -> float | None:
        try:
            with open("/proc/stat") as f:
                user, nice, system, idle, iowait, *rest = map(int, f.readline().split()[1:9])
        except (OSError, ValueError):
            return None
        return (user + nice + system + sum(rest)) / os.sysconf("SC_CLK_TCK")

    def our_seconds(self) -> float:
        total = 0
        for pid in self.pids:
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # after the command's name
                total += int(fields[11]) + int(fields[12])  # utime, stime (all threads)
        return total / os.sysconf("SC_CLK_TCK")


def check_params(name: str, runners: dict) -> int:
    """The number of trainable parameters of the model, the same in every framework."""
    counts = {fw: runner.params for fw, runner in runners.items()}
    if len(set(counts.values())) > 1:
        raise AssertionError(f"{name}: trainable parameters differ between frameworks: {counts}")
    return next(iter(counts.values()))


def missing_in_fastnn(name: str) -> list[str]:
    """The layers model ``name`` needs that fastnn lacks (imports fastnn, which starts no
    threads)."""
    import fastnn

    return zoo.missing_layers(fastnn, name)


def runnable(models: list[str]) -> tuple[list[str], dict]:
    """The models fastnn can build, and why each other one is skipped (printed)."""
    skipped = {}
    for name in models:
        if missing := missing_in_fastnn(name):
            skipped[name] = f"needs {', '.join(missing)}"
            print(f"{name:<17} skipped: {skipped[name]}")
    return [name for name in models if name not in skipped], skipped


def peak_memory(models, batch: int, samples: int, threads: int, names: list[str]) -> list[dict]:
    """Peak MiB of a fresh process per framework that builds each model and trains one epoch."""
    rows = []
    for name in models:
        row = {"model": name, "mode": "train", "batch": batch}
        for fw in names:
            child = Child(fw, threads, samples)
            child(name, batch).train(None, None)
            row[fw] = child.peak_mib()
            child.close()
        rows.append(row)
        print(format_row(row, names), flush=True)
    return rows


def format_row(row: dict, names: list[str], speedup: bool = False) -> str:
    """One table line; each column's ratio is first/column, or column/first with ``speedup``."""
    base = row[names[0]]
    cells = [f"{row['model']:<17} {row['mode']:<5} {row['batch']:>4}"]
    for fw in names:
        value = row.get(fw)
        if not value:
            cells.append(f"{fw}: -")
            continue
        ratio = "" if fw == names[0] else f" ({value / base if speedup else base / value:.2f}x)"
        cells.append(f"{fw}: {value:>10,.0f}{ratio}")
    if row.get("others_cpu") is not None:
        cells.append(f"others' CPU {row['others_cpu']:.0%}, load {row['load_1min']}")
    return " | ".join(cells)


def machine() -> dict:
    """Where a result came from: CPU, cores, versions, commit, BLAS libraries (threadpoolctl)."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    info["prefix"] = sys.prefix  # which virtualenv
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    import numba
    import numpy

    info["numpy"], info["numba"] = numpy.__version__, numba.__version__
    for dist in ("fastnn", "threadpoolctl", "torch", "keras", "jax", "tensorflow"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info.setdefault("versions", {})[dist] = importlib.metadata.version(dist)
    with contextlib.suppress(OSError):
        describe = ["git", "describe", "--always", "--dirty"]
        git = subprocess.run(describe, cwd=RESULTS.parent, capture_output=True, text=True)
        info["commit"] = git.stdout.strip()
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: v for k, v in lib.items() if k in ("internal_api", "version", "architecture")}
            for lib in threadpool_info()
        ]
    except ImportError:
        pass
    info["env"] = {
        k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ
    }
    return info


def save(kind: str, result: dict) -> None:
    """Write ``result`` with the machine to bench/results/<kind>-<date>.json."""
    ResultFile(kind).write(result)


class ResultFile:
    """bench/results/<kind>-<date>.json with the machine; a run writes it again after each row
    (``"complete": false`` until its end), so a stopped run keeps the rows it measured."""

    def __init__(self, kind: str):
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path, self.machine = RESULTS / f"{kind}-{stamp}.json", machine()

    def write(self, result: dict, complete: bool = True) -> None:
        RESULTS.mkdir(exist_ok=True)
        content = {"machine": self.machine, **result, "complete": complete}
        self.path.write_text(json.dumps(content, indent=1))
        if complete:
            print(f"wrote {self.path}")


def compare(args, models: list[str], progress) -> dict:
    """fastnn against every installed peer (``--only``), each in a Child of its own;
    ``progress(result)`` after each row."""
    peers = installed() + (["onnxruntime"] if args.inference and onnx_peer.available() else [])
    names = [fw for fw in peers if fw == "fastnn" or not args.only or fw in args.only]
    children = {fw: Child(fw, args.threads, args.samples) for fw in names}
    sizes = models, args.batches, args.infer_batch, args.samples, args.repeats
    if args.inference:  # batch 1 latency and --infer-batch throughput, no training
        sizes = models, [], [1, args.infer_batch], args.samples, args.repeats
    result = {}

    def on_row(rows):
        if len(rows) == 1:  # the frameworks have been imported and set up
            result["frameworks"] = {fw: child.info() for fw, child in children.items()}
        progress({**result, "rows": rows})

    print("samples/s; (x) = fastnn / peer")
    result["rows"] = run(*sizes, children, quiet=args.quiet, on_row=on_row)
    for child in children.values():
        child.close()
    if args.memory:
        print("peak memory (MiB) of a process training one epoch; (x) = fastnn / peer")
        batch = max(args.batches)
        result["memory_mib"] = peak_memory(models, batch, args.samples, args.threads, names)
    return result


def scaling(args, models: list[str], progress) -> dict:
    """fastnn alone, in this process, at 1, 2, 4, ... threads up to ``--threads``."""
    counts = sorted({2**i for i in range(args.threads.bit_length())} | {args.threads})
    found = {f"threads_{n}": lambda name, batch, n=n: Threaded(name, batch, n) for n in counts}
    print("fastnn samples/s; (x) = speed-up over 1 thread")
    sizes = models, args.batches, args.infer_batch, args.samples, args.repeats
    rows = run(
        *sizes, found, speedup=True, quiet=args.quiet, on_row=lambda r: progress({"scaling": r})
    )
    for row in rows:
        row["speedup"] = row[f"threads_{counts[-1]}"] / row["threads_1"]
    return {"scaling": rows}


def parse_args(argv):
    parser = argparse.ArgumentParser(description="fastnn vs peers: training/inference samples/s")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--models", nargs="*", default=list(SEED_SPECS), choices=list(SPECS), metavar="MODEL",
        help=f"default: the seed's {', '.join(SEED_SPECS)}; the zoo: {', '.join(zoo.SPECS)}",
    )  # fmt: skip
    which.add_argument("--zoo", action="store_true", help="every model of the zoo")
    parser.add_argument("--batches", nargs="*", type=int, default=[32, 128])
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", nargs="*", help="peers to include (fastnn always runs)")
    parser.add_argument(
        "--memory", action="store_true",
        help="also peak memory: a fresh process per model and framework trains one epoch at the "
        "largest batch (a few minutes more)",
    )  # fmt: skip
    parser.add_argument(
        "--scaling", action="store_true", help="fastnn alone at 1, 2, 4, ... up to --threads"
    )
    parser.add_argument(
        "--quiet", nargs=2, type=float, metavar=("SHARE", "MINUTES"),
        help="before each row, wait until other processes take less than SHARE of the CPU "
        "(e.g. 0.1), at most MINUTES: for a machine others use too",
    )  # fmt: skip
    parser.add_argument(
        "--inference", action="store_true",
        help="inference only, at batch 1 (latency: a predict call per sample) and --infer-batch; "
        "adds ONNX Runtime running fastnn's exported file (bench/onnx_peer.py) as a peer",
    )  # fmt: skip
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    if args.zoo:
        args.models = list(zoo.SPECS)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    result = {"args": vars(args), "load_average": {"start": os.getloadavg()}}
    kind = "scaling" if args.scaling else "models-zoo" if args.zoo else "models"
    kind += "-inference" if args.inference else ""
    out = None if args.no_save else ResultFile(kind)

    def progress(partial: dict) -> None:
        if out:
            out.write({**result, **partial}, complete=False)

    models, result["skipped"] = runnable(args.models)
    if args.inference and onnx_peer.available():  # every framework runs the same models
        models, not_exported = onnx_peer.exportable(models)
        result["skipped"].update(not_exported)
    measure = scaling if args.scaling else compare
    result.update(measure(args, models, progress))
    result["load_average"]["end"] = os.getloadavg()
    print(f"load average (1, 5, 15 min): start {result['load_average']['start']}, end "
          f"{result['load_average']['end']}")  # fmt: skip
    if out:
        out.write(result)


if __name__ == "__main__":
    main()
