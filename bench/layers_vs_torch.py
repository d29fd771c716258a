"""The hot-path layers of issue 22 against PyTorch: forward and forward + backward times of one
layer at a common model's shape, each framework in its own process, rounds alternating.

    python -m bench.layers_vs_torch [--repeats 5] [--threads 2] [--no-save]

Cases: a U-Net/DCGAN Conv2DTranspose, a MobileNet DepthwiseConv2D, a transformer's
LayerNormalization and MultiHeadAttention (PyTorch: ConvTranspose2d and a grouped Conv2d on
channels_last tensors, LayerNorm, MultiheadAttention with batch_first). fastnn runs the layer's
own forward and backward inside its serial-BLAS section, as ``fit`` does; PyTorch runs the
module and ``backward`` of the output times a fixed gradient. Each figure is the median over
``--repeats`` rounds of the best of several calls. Writes bench/results/layers-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

# name -> (input shape, work per forward: ("GFLOP" or "GB", amount))
_MHA_FLOPS = 2 * 32 * (4 * 64 * 64 * 64 + 4 * 64 * 64 * 16 * 2)  # projections, then attention
CASES = {
    "conv2d_transpose 64->32 3x3 s2, 16x16": ((32, 16, 16, 64), ("GFLOP", 2 * 32 * 256 * 576 * 32)),
    "depthwise 3x3, 32x32x64": ((32, 32, 32, 64), ("GFLOP", 2 * 32 * 32 * 32 * 64 * 9)),
    "layer_normalization 64, 64 steps": ((32, 64, 64), ("GB", 2 * 32 * 64 * 64 * 4)),
    "multi_head_attention 4x16, 64 steps": ((32, 64, 64), ("GFLOP", _MHA_FLOPS)),
}
MIN_SECONDS = 0.2  # calls per timing: enough to last this long


def best_seconds(step) -> float:
    """The best time of one call of ``step`` over batches of calls lasting MIN_SECONDS."""
    step()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            step()
        spent = time.perf_counter() - start
        if spent >= MIN_SECONDS:
            break
        calls *= 2
    best = spent / calls
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def fastnn_steps(case: str, threads: int):
    """(forward, forward + backward) callables of the case's fastnn layer."""
    import fastnn
    from fastnn import layers, runtime

    fastnn.config.set_num_threads(threads)
    shape = CASES[case][0]
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = {
        "conv2d_transpose": lambda: layers.Conv2DTranspose(32, 3, strides=2, padding="same"),
        "depthwise": lambda: layers.DepthwiseConv2D(3, padding="same"),
        "layer_normalization": lambda: layers.LayerNormalization(),
        "multi_head_attention": lambda: layers.MultiHeadAttention(4, 16),
    }[case.split()[0]]()
    attention = isinstance(layer, layers.MultiHeadAttention)
    inputs = [x, x] if attention else x
    layer.build(shape, shape) if attention else layer.build(shape)
    y, _ = layer.forward(inputs, False)
    grad = rng.standard_normal(y.shape).astype(np.float32)

    def forward():
        with runtime.serial_blas():
            layer.forward(inputs, False)

    def train():
        with runtime.serial_blas():
            _, ctx = layer.forward(inputs, True)
            layer.backward(ctx, grad)

    return forward, train


def torch_steps(case: str, threads: int):
    """(forward, forward + backward) callables of the case's PyTorch module."""
    import torch

    torch.set_num_threads(threads)
    shape = CASES[case][0]
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    kind = case.split()[0]
    if kind in ("conv2d_transpose", "depthwise"):  # NHWC data as channels_last NCHW tensors
        x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        channels = shape[-1]
        module = (
            torch.nn.ConvTranspose2d(channels, 32, 3, stride=2, padding=1, output_padding=1)
            if kind == "conv2d_transpose"
            else torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        ).to(memory_format=torch.channels_last)
        call = module
    elif kind == "layer_normalization":
        module = call = torch.nn.LayerNorm(shape[-1])
    else:
        module = torch.nn.MultiheadAttention(shape[-1], 4, batch_first=True)

        def call(t):
            return module(t, t, t, need_weights=False)[0]

    x.requires_grad_(True)
    with torch.no_grad():
        grad = torch.randn_like(call(x))

    def forward():
        with torch.no_grad():
            call(x)

    def train():
        module.zero_grad(set_to_none=True)
        x.grad = None
        call(x).backward(grad)

    return forward, train


def child(framework: str, case: str, threads: int) -> None:
    """Time one framework on one case; print {"forward": s, "train": s} as JSON."""
    forward, train = (fastnn_steps if framework == "fastnn" else torch_steps)(case, threads)
    print(json.dumps({"forward": best_seconds(forward), "train": best_seconds(train)}))


def measure(case: str, threads: int, repeats: int) -> dict:
    """Median seconds per framework and mode over rounds alternating the frameworks."""
    times = {fw: {"forward": [], "train": []} for fw in ("fastnn", "pytorch")}
    for _ in range(repeats):
        for fw in times:
            out = subprocess.run(
                [sys.executable, "-m", "bench.layers_vs_torch", "--child", fw, case,
                 "--threads", str(threads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            for mode, seconds in json.loads(out.stdout.strip().splitlines()[-1]).items():
                times[fw][mode].append(seconds)
    return {fw: {m: statistics.median(v) for m, v in modes.items()} for fw, modes in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("FRAMEWORK", "CASE"))
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child, args.threads)
    rows = []
    header = ("case", "mode", "fastnn ms", "PyTorch ms", "ratio", "fastnn rate")
    print("{:40s} {:8s} {:>10s} {:>11s} {:>6s} {:>14s}".format(*header))
    for case, (_, (unit, amount)) in CASES.items():
        result = measure(case, args.threads, args.repeats)
        for mode in ("forward", "train"):
            ours, theirs = result["fastnn"][mode], result["pytorch"][mode]
            work = amount if mode == "forward" else 3 * amount  # backward: about twice the work
            rate = work / ours / 1e9
            rows.append({"case": case, "mode": mode, "fastnn_s": ours, "pytorch_s": theirs,
                         "speedup": theirs / ours, "unit": unit + "/s", "rate": rate})  # fmt: skip
            print(f"{case:40s} {mode:8s} {ours * 1e3:10.3f} {theirs * 1e3:11.3f} "
                  f"{theirs / ours:5.2f}x {rate:9.1f} {unit}/s")  # fmt: skip
    if not args.no_save:
        from bench.models import save

        save("layers", {"threads": args.threads, "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
