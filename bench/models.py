"""End-to-end throughput: the same models trained and run in fastnn and in each installed peer.

Run ``python -m bench.models`` from the repository root (``--help`` for options). Frameworks
alternate model by model after a warm-up; each figure is the median of ``--repeats`` timed runs.
Prints a table of samples/second with the fastnn/peer ratio and writes it, with the machine, to
``bench/results/models-<date>.json``. For figures comparable with a user's machine, unset
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE in the benchmark command (never in tests or CI).
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

# name -> (input shapes, output kinds); kinds: ("sparse", classes) / ("binary",) / ("mse",)
SPECS = {
    "seed_cnn": ([(28, 28, 1)], [("sparse", 10)]),
    "multi_input_mlp": ([(10,), (5,)], [("binary",)]),
    "multi_output_cnn": ([(28, 28, 1)], [("mse",), ("binary",)]),
    "lstm_text": ([("ids", 100)], [("binary",)]),
    "image_text": ([(64, 64, 3), ("ids", 100)], [("binary",)]),
}
VOCAB = 5000


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
            ys.append(rng.integers(0, 2, (n, 1)).astype(np.float32))
        else:
            ys.append(rng.random((n, 1), dtype=np.float32))
    return xs, ys


# ---- Keras-API builders (fastnn and keras share them) -------------------------------------------
def build_keras_api(lib, name: str):
    """The benchmark model in a Keras-compatible library (fastnn or keras), compiled."""
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
        self.model.predict(xs if len(xs) > 1 else xs[0], batch_size=self.batch, verbose=0)


# ---- PyTorch -------------------------------------------------------------------------------------
def torch_runner(name, batch, channels_last=False):
    import torch
    from torch import nn

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

    net = Net()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    losses = {
        "seed_cnn": [nn.CrossEntropyLoss()],
        "multi_input_mlp": [nn.BCELoss()],
        "multi_output_cnn": [nn.MSELoss(), nn.BCELoss()],
        "lstm_text": [nn.BCELoss()],
        "image_text": [nn.BCELoss()],
    }[name]

    def to_torch(xs):
        out = []
        for x in xs:
            t = torch.from_numpy(x)
            if t.ndim == 4:
                t = t.permute(0, 3, 1, 2).contiguous(memory_format=memory_format)
            out.append(t)
        return out

    class Runner:
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
def frameworks(threads: int):
    """Name -> factory(model_name, batch) for fastnn and every installed peer."""
    import fastnn

    fastnn.config.set_num_threads(threads)
    found = {"fastnn": lambda name, batch: KerasAPIRunner(fastnn, name, batch)}
    try:
        import torch

        torch.set_num_threads(threads)
        found["pytorch"] = lambda name, batch: torch_runner(name, batch)
        found["pytorch_channels_last"] = lambda name, batch: torch_runner(name, batch, True)
    except ImportError:
        pass
    try:
        import keras

        backend = keras.backend.backend()
        found[f"keras_{backend}"] = lambda name, batch: KerasAPIRunner(keras, name, batch)
    except ImportError:
        pass
    return found


def time_call(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(models, batches, infer_batch, samples, repeats, threads, only=None):
    found = frameworks(threads)
    if only:
        found = {k: v for k, v in found.items() if k in only or k == "fastnn"}
    rows = []
    for name in models:
        for mode, batch in [("train", b) for b in batches] + [("infer", infer_batch)]:
            xs, ys = make_data(name, samples)
            runners = {fw: factory(name, batch) for fw, factory in found.items()}

            def step(runner, mode=mode, xs=xs, ys=ys):
                return runner.train(xs, ys) if mode == "train" else runner.infer(xs)

            for runner in runners.values():  # warm-up: compilation, allocator, caches
                step(runner)
            results = {}
            for _ in range(repeats):  # alternate frameworks so drift hits all alike
                for fw, runner in runners.items():
                    results.setdefault(fw, []).append(time_call(lambda r=runner: step(r), 1))
            row = {"model": name, "mode": mode, "batch": batch}
            for fw, times in results.items():
                row[fw] = samples / statistics.median(times)
            rows.append(row)
            print(format_row(row, list(found)), flush=True)
    return rows, list(found)


def format_row(row, names):
    cells = [f"{row['model']:<17} {row['mode']:<5} {row['batch']:>4}"]
    for fw in names:
        value = row.get(fw)
        ratio = "" if fw == "fastnn" or not value else f" ({row['fastnn'] / value:.2f}x)"
        cells.append(f"{fw}: {value:>10,.0f}{ratio}" if value else f"{fw}: -")
    return " | ".join(cells)


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if "model name" in line)
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    info["cores"] = os.cpu_count()
    import numba
    import numpy

    info["numpy"], info["numba"] = numpy.__version__, numba.__version__
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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="fastnn vs peers: training/inference samples/s")
    parser.add_argument("--models", nargs="*", default=list(SPECS))
    parser.add_argument("--batches", nargs="*", type=int, default=[32, 128])
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--only", nargs="*", help="peers to include (fastnn always runs)")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    rows, names = run(
        args.models, args.batches, args.infer_batch, args.samples, args.repeats, args.threads,
        args.only,
    )  # fmt: skip
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = RESULTS / f"models-{stamp}.json"
        path.write_text(
            json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=1)
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
