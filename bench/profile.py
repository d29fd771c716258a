"""Where fastnn's time goes in a model: per step of its graph forward and backward, how close each
step runs to the machine's GEMM peak or memory bandwidth, the loss, the optimizer, and the Python
overhead around them.

Run ``python -m bench.profile vgg_bn`` from the repository root: any model of bench/models.py
(the seed's five and the zoo's), or a ``.fastnn`` / ``.keras`` file (fastnn loads it; it is
compiled again with Adam and a mean squared error per output, on random data of its input shapes,
token ids for inputs an Embedding reads). ``--help`` for options. After a warm-up epoch, it times
``fit`` (training at each ``--batches``) and ``predict`` (inference at ``--infer-batch``), as
bench/models.py runs them, with the ``forward`` and ``backward`` of every step of the model's
graph (``model._graph.steps``: fused layers run as one step, named 'conv2d+max_pooling2d'), the
loss and the optimizer's update wrapped in timers. "overhead" is the rest of the wall time:
batching, the graph's bookkeeping, metrics and Python calls. Figures are milliseconds per batch,
the median of ``--repeats`` epochs.

Each step's "% of peak" compares it with the machine at ``--threads``: a step with GEMM work
(Dense, Conv1D/2D, the recurrent layers) with the float32 GEMM peak of one large ``np.matmul``,
its FLOPs counted from shapes as 2*M*N*K (a convolution's in its direct form: one run by Winograd,
with fewer multiplications, can pass 100%; backward twice forward: the weights' gradient and,
where needed, the input's); any other step with the memory bandwidth of a large array copy, its
bytes the least it must move (forward: its inputs read and its outputs written once; backward:
the saved inputs and the output gradients read, the input gradients written; above 100%, the data
stayed in cache). The peak and the bandwidth are measured before the profiles and after each,
and the best of each is used (other processes' load lowers them: on 2 cores, a test run on the
other core halves the 2-thread GEMM peak), so the tables are printed at the end.
Writes ``bench/results/profile-<date>.json`` with the machine (``save`` in bench/models.py).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import fastnn
from bench.models import SEED_SPECS, SPECS, build_keras_api, make_data, missing_in_fastnn, save


# ---- the machine's ceilings ----------------------------------------------------------------------
def gemm_peak_gflops(threads: int, n: int = 2048, repeats: int = 10) -> float:
    """float32 GFLOP/s of one n x n x n np.matmul with BLAS at ``threads``, best of ``repeats``."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.random((n, n), np.float32), rng.random((n, n), np.float32)
    out = np.empty((n, n), np.float32)
    with threadpool_limits(threads, user_api="blas"):
        np.matmul(a, b, out=out)
        best = min(timed(np.matmul, a, b, out=out) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def copy_bandwidth_gbs(mib: int = 256, repeats: int = 5) -> float:
    """GB/s read + written by np.copyto of a ``mib`` MiB float32 array, best of ``repeats``."""
    src = np.ones(mib * 2**18, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(timed(np.copyto, dst, src) for _ in range(repeats))
    return 2 * src.nbytes / best / 1e9


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


# ---- what a step must compute or move, from shapes -----------------------------------------------
VIEWS = {"Flatten", "Reshape", "InputLayer"}  # no data moved
PASS_GRADIENTS_ON = {"Add"}  # backward hands the output gradient to every input as it is
GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def gemm_flops(layer, in_shapes: list[tuple], out_shapes: list[tuple]) -> int:
    """Forward FLOPs of the layer's products (2*M*N*K), 0 for a layer without any."""
    kind = type(layer).__name__
    if kind == "Dense":
        return 2 * math.prod(in_shapes[0]) * layer.units
    if kind in ("Conv1D", "Conv2D"):
        taps = math.prod(layer.kernel_size) * in_shapes[0][-1]
        return 2 * math.prod(out_shapes[0]) * taps
    if kind in ("Conv1DTranspose", "Conv2DTranspose"):  # each input pixel times the kernel
        return 2 * math.prod(in_shapes[0]) * math.prod(layer.kernel_size) * layer.filters
    if kind == "MultiHeadAttention":  # four projections, then scores and weights @ values
        query, value, key = (*in_shapes[:2], in_shapes[2] if len(in_shapes) > 2 else in_shapes[1])
        batch, steps, keys = query[0], query[1], value[1]
        heads, dim, dim_v = layer.num_heads, layer.key_dim, layer.value_dim
        projections = batch * (
            steps * query[-1] * heads * dim
            + keys * key[-1] * heads * dim
            + keys * value[-1] * heads * dim_v
            + steps * heads * dim_v * out_shapes[0][-1]
        )
        return 2 * (projections + batch * heads * steps * keys * (dim + dim_v))
    if kind in GATES:
        batch, steps, features = in_shapes[0]
        return 2 * batch * steps * GATES[kind] * layer.units * (features + layer.units)
    if kind == "Bidirectional":
        return sum(
            gemm_flops(inner, in_shapes, out_shapes)
            for inner in (layer.forward_layer, layer.backward_layer)
        )
    if kind == "TimeDistributed":
        batch, steps, *rest = in_shapes[0]
        per_step = [(batch * steps, *rest)], [(batch * steps, *out_shapes[0][2:])]
        return gemm_flops(layer.layer, *per_step)
    return 0


def moved_bytes(layer, in_shapes, out_shapes, itemsize: int, train: bool) -> tuple[int, int]:
    """Bytes of the inputs and of the outputs (0, 0 for a view)."""
    kind = type(layer).__name__
    if kind in VIEWS or (kind == "Dropout" and not train):
        return 0, 0
    return tuple(itemsize * sum(math.prod(s) for s in shapes) for shapes in (in_shapes, out_shapes))


def concrete(tensors, batch: int) -> list[tuple]:
    return [tuple(batch if d is None else d for d in t.shape) for t in tensors]


def constituent_nodes(step, graph) -> list:
    """The graph's own nodes a step runs: itself, or the chain a fusion rule made it from (a
    rule's chain may hold another's composite: its layers in their order)."""
    layers = leaf_layers(step.layer)
    if layers == [step.layer]:
        return [step]
    nodes, inputs = [], step.inputs
    for layer in layers:  # each reads the one before (the first, the step's inputs)
        read = {id(t) for t in inputs}
        node = next(
            n for n in graph.nodes if n.layer is layer and any(id(t) in read for t in n.inputs)
        )
        nodes.append(node)
        inputs = node.outputs
    return nodes


def leaf_layers(layer) -> list:
    """The model's layers a layer runs: itself, or a composite's, in order."""
    inner = getattr(layer, "fused_layers", None)
    return [layer] if inner is None else [leaf for part in inner for leaf in leaf_layers(part)]


def step_cost(step, graph, batch: int, train: bool, needs_input_grad: bool) -> dict:
    """FLOPs or bytes of a step at ``batch``, forward and backward, and which bounds it.
    Forward reads the inputs and writes the outputs; backward reads the saved inputs and the
    output gradients and writes the input gradients."""
    flops = in_bytes = out_bytes = 0
    for node in constituent_nodes(step, graph):
        shapes = concrete(node.inputs, batch), concrete(node.outputs, batch)
        flops += gemm_flops(node.layer, *shapes)
        itemsize = node.outputs[0].dtype.itemsize
        node_in, node_out = moved_bytes(node.layer, *shapes, itemsize, train)
        in_bytes, out_bytes = in_bytes + node_in, out_bytes + node_out
    if flops:
        return {"bound": "gemm", "fwd": flops, "bwd": flops * (1 + needs_input_grad)}
    passes_on = type(step.layer).__name__ in PASS_GRADIENTS_ON
    backward = 0 if passes_on else 2 * in_bytes + out_bytes
    return {"bound": "memory", "fwd": in_bytes + out_bytes, "bwd": backward}


def layer_kinds(step, graph) -> str:
    return "+".join(type(node.layer).__name__ for node in constituent_nodes(step, graph))


# ---- timing --------------------------------------------------------------------------------------
@contextlib.contextmanager
def timed_parts(model):
    """Wrap the graph's steps, the loss and the optimizer in timers; yield the dict they add
    into, keyed by (step name, 'forward' / 'backward') and ('loss' / 'optimizer', '')."""
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

    for step in model._graph.steps:
        wrap(step.layer, "forward", (step.layer.name, "forward"))
        wrap(step.layer, "backward", (step.layer.name, "backward"))
    if hasattr(model, "_compute_loss"):
        wrap(model, "_compute_loss", ("loss", ""))
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:  # _apply: where apply() and fit()'s apply_own_gradients() meet
        wrap(optimizer, "_apply" if hasattr(optimizer, "_apply") else "apply", ("optimizer", ""))
    try:
        yield seconds
    finally:
        for owner, attribute in wrapped:
            delattr(owner, attribute)


# ---- the model and its data ----------------------------------------------------------------------
def is_file(target: str) -> bool:
    return target.endswith((".fastnn", ".keras"))


def model_and_data(target: str, samples: int):
    """A fresh compiled model of ``target`` (a model name or a file) and its inputs and targets."""
    if not is_file(target):
        xs, ys = make_data(target, samples)
        return build_keras_api(fastnn, target), xs, ys
    model = fastnn.models.load_model(target, compile=False)
    model.compile(optimizer="adam", loss=["mse"] * len(model.outputs))
    rng = np.random.default_rng(0)
    xs = [random_input(model, t, samples, rng) for t in model.inputs]
    ys = [rng.random((samples, *t.shape[1:]), np.float32) for t in model.outputs]
    return model, xs, ys


def random_input(model, tensor, samples: int, rng) -> np.ndarray:
    """Random data for an input tensor: token ids below input_dim where an Embedding reads it."""
    shape = (samples, *tensor.shape[1:])
    for node in model._graph.nodes:
        if isinstance(node.layer, fastnn.layers.Embedding) and tensor in node.inputs:
            return rng.integers(0, node.layer.input_dim, shape).astype(np.float32)
    return rng.random(shape, np.float32)


def run_epoch(model, xs, ys, batch: int, train: bool) -> None:
    x = xs if len(xs) > 1 else xs[0]
    if train:
        y = ys if len(ys) > 1 else ys[0]
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    else:
        model.predict(x, batch_size=batch, verbose=0)


# ---- one profile ---------------------------------------------------------------------------------
def profile(target: str, batch: int, train: bool, args) -> dict:
    """One model and batch: ms per batch of each step and part, median of ``repeats`` epochs."""
    model, xs, ys = model_and_data(target, args.samples)
    run_epoch(model, xs, ys, batch, train)  # warm-up: compiles the kernels, fills workspaces
    batches = -(-args.samples // batch)
    runs = []
    for _ in range(args.repeats):
        with timed_parts(model) as seconds:
            wall = timed(run_epoch, model, xs, ys, batch, train)
        runs.append({part: s * 1e3 / batches for part, s in seconds.items()})
        runs[-1][("total", "")] = wall * 1e3 / batches
    ms = {part: statistics.median(run.get(part, 0.0) for run in runs) for part in runs[0]}
    graph = model._graph
    steps = [step_row(step, graph, i, batch, train, ms) for i, step in enumerate(graph.steps)]
    parts = {part: round(ms.get((part, ""), 0.0), 4) for part in ("loss", "optimizer", "total")}
    timed_ms = sum(value for part, value in ms.items() if part != ("total", ""))
    parts["overhead"] = round(ms[("total", "")] - timed_ms, 4)
    return {
        "model": Path(target).name if is_file(target) else target,
        "mode": "train" if train else "inference",
        "batch": batch,
        "load_1min": round(os.getloadavg()[0], 2),
        "steps": sorted(steps, key=lambda row: -(row["fwd_ms"] + row["bwd_ms"])),
        "parts_ms": parts,
    }


def step_row(step, graph, index: int, batch: int, train: bool, ms: dict) -> dict:
    """A step's times and work (GFLOP for gemm steps, GB for memory ones), forward and
    backward."""
    needed = getattr(graph, "_input_grad_needed", {0: [True] * len(graph.steps)})[0][index]
    cost = step_cost(step, graph, batch, train, needed)
    row = {"step": step.layer.name, "layers": layer_kinds(step, graph), "bound": cost["bound"]}
    row["unit"] = "GFLOP" if cost["bound"] == "gemm" else "GB"
    for kind, name in (("fwd", "forward"), ("bwd", "backward")):
        row[f"{kind}_ms"] = round(ms.get((step.layer.name, name), 0.0), 4)
        row[f"{kind}_work"] = cost[kind] / 1e9
    return row


# ---- printing ------------------------------------------------------------------------------------
def percent(fraction) -> str:
    return "-" if fraction is None else f"{100 * fraction:.0f}%"


SHORT_KINDS = {"BatchNormalization": "BN", "Activation": "Act", "MaxPooling2D": "MaxPool2D"}
STEP, LAYERS = 32, 30  # column widths


def short_step(name: str) -> str:
    """A step's name, a fused one's as its first layer's and '+...' when it is too long."""
    return name if len(name) <= STEP else name.split("+")[0][: STEP - 4] + "+..."


def short_layers(kinds: str) -> str:
    return "+".join(SHORT_KINDS.get(kind, kind) for kind in kinds.split("+"))[:LAYERS]


def print_profile(result: dict, ceilings: dict) -> None:
    parts = result["parts_ms"]
    total = parts["total"]
    print(
        f"\n{result['model']} {result['mode']} batch {result['batch']}: {total:.2f} ms per batch "
        f"(% of peak: of {ceilings['gemm_gflops']:.0f} GFLOP/s for gemm steps, of "
        f"{ceilings['copy_gbs']:.1f} GB/s for memory steps)"
    )
    print(
        f"  {'step':<{STEP}} {'layers':<{LAYERS}} {'bound':<6} {'fwd ms':>8} {'% peak':>6} "
        f"{'bwd ms':>8} {'% peak':>6} {'% time':>6}"
    )
    for row in result["steps"]:
        share = 100 * (row["fwd_ms"] + row["bwd_ms"]) / total
        print(
            f"  {short_step(row['step']):<{STEP}} {short_layers(row['layers']):<{LAYERS}} "
            f"{row['bound']:<6} {row['fwd_ms']:8.3f} {percent(row['fwd_fraction_of_peak']):>6} "
            f"{row['bwd_ms']:8.3f} {percent(row['bwd_fraction_of_peak']):>6} {share:5.1f}%"
        )
    for part in ("loss", "optimizer", "overhead"):
        print(f"  {part:<{STEP}} {'':<{LAYERS}} {'':<6} {parts[part]:8.3f} {'':>6} {'':>8} "
              f"{'':>6} {100 * parts[part] / total:5.1f}%")  # fmt: skip


# ---- main ----------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description="fastnn per-step profile of a model")
    parser.add_argument(
        "models", nargs="*",
        help=f"model names ({', '.join(SPECS)}) or .fastnn/.keras files (default: the seed's)",
    )  # fmt: skip
    parser.add_argument("--batches", nargs="*", type=int, default=[32, 128])
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    args.models = args.models or list(SEED_SPECS)
    unknown = [m for m in args.models if not is_file(m) and m not in SPECS]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(SPECS)} or give a file")
    return args


def measure_ceilings(threads: int) -> dict:
    return {
        "gemm_gflops": round(gemm_peak_gflops(threads), 1),
        "copy_gbs": round(copy_bandwidth_gbs(), 2),
        "load_1min": round(os.getloadavg()[0], 2),
    }


def with_fractions(result: dict, ceilings: dict) -> dict:
    """Each step's forward and backward rate as a fraction of the ceiling that bounds it."""
    for row in result["steps"]:
        ceiling = ceilings["gemm_gflops"] if row["bound"] == "gemm" else ceilings["copy_gbs"]
        for kind in ("fwd", "bwd"):
            seconds, work = row[f"{kind}_ms"] / 1e3, row[f"{kind}_work"]
            fraction = work / seconds / ceiling if seconds and work else None
            row[f"{kind}_fraction_of_peak"] = None if fraction is None else round(fraction, 4)
    return result


def main(argv=None) -> None:
    args = parse_args(argv)
    fastnn.config.set_num_threads(args.threads)
    layer = fastnn.config.threading_layer()
    print(f"{args.threads} threads, Numba threading layer {layer}")
    measured = [measure_ceilings(args.threads)]
    results = []
    for target in args.models:
        if not is_file(target) and (missing := missing_in_fastnn(target)):
            print(f"{target}: skipped, needs {', '.join(missing)}")
            continue
        cases = [(batch, True) for batch in args.batches] + [(args.infer_batch, False)]
        for batch, train in cases:
            results.append(done := profile(target, batch, train, args))
            print(f"{done['model']} {done['mode']} batch {batch}: {done['parts_ms']['total']} ms")
            measured.append(measure_ceilings(args.threads))
    ceilings = {key: max(m[key] for m in measured) for key in ("gemm_gflops", "copy_gbs")}
    print(
        f"float32 GEMM peak {ceilings['gemm_gflops']:.1f} GFLOP/s, copy bandwidth "
        f"{ceilings['copy_gbs']:.1f} GB/s: the best of {len(measured)} measurements"
    )
    for result in results:
        print_profile(with_fractions(result, ceilings), ceilings)
    ceilings.update(measured=measured, threads=args.threads, threading_layer=layer)
    if not args.no_save:
        save("profile", {"args": vars(args), "ceilings": ceilings, "profiles": results})


if __name__ == "__main__":
    main()
