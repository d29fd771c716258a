"""Benchmarks of the transposed and depthwise convolution kernels at DCGAN, U-Net and MobileNet
shapes: ``pytest bench/test_kernels_conv_extra.py --benchmark-columns=median``.

After each benchmark its GFLOP/s is printed next to this machine's float32 GEMM peak (numpy
matmul at 1024 and 2048, best of 5) and kept in ``extra_info`` (``--benchmark-json`` keeps it).
FLOPs are those of the direct form: 2 per kernel tap, input channel and output value. A
depthwise conv does ``channels`` times less work per value than a dense one, so it is bound by
memory, not the GEMM peak.

``FASTNN_BENCH_TINY=1`` runs every case at a tiny size (batch 2, small images, the peak at 256):
to check that the file works, not to measure.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from fastnn import runtime
from fastnn.kernels import codes, conv_transpose, depthwise
from fastnn.kernels.geometry import transpose_axis
from fastnn.layers.convolutional_extra import conv_axis

TINY = os.environ.get("FASTNN_BENCH_TINY") == "1"
RNG = np.random.default_rng(0)
BATCH = 2 if TINY else 32
# (name, input HWC, filters, kernel, stride, padding) of transposed convs: a DCGAN generator's
# up-sampling steps to 32x32 and a U-Net's 2x2 stride-2 decoder step
TRANSPOSED = [
    ("dcgan_4to8", (4, 4, 512), 256, 4, 2, "same"),
    ("dcgan_8to16", (8, 8, 256), 128, 4, 2, "same"),
    ("dcgan_16to32", (16, 16, 128), 64, 4, 2, "same"),
    ("unet_16to32", (16, 16, 128), 64, 2, 2, "valid"),
]
# (name, input HWC, kernel, stride) of MobileNet v1's 3x3 'same' depthwise convs at 224 / 2
DEPTHWISE = [
    ("mobilenet_56", (56, 56, 128), 3, 1),
    ("mobilenet_56s2", (56, 56, 128), 3, 2),
    ("mobilenet_14", (14, 14, 512), 3, 1),
]


def tiny(hwc):
    """A case's input at the tiny size: images at most 4x4, at most 8 channels."""
    return (min(hwc[0], 4), min(hwc[1], 4), min(hwc[2], 8)) if TINY else hwc


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def gemm_peak() -> float:
    """This machine's float32 GEMM GFLOP/s: numpy matmul, best of 5 at each size."""
    best = 0.0
    for n in (256,) if TINY else (1024, 2048):
        a, b, out = rand(n, n), rand(n, n), np.empty((n, n), np.float32)
        for _ in range(5):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


@pytest.fixture
def report(benchmark, gemm_peak, request, capsys):
    """report(flops) after the benchmark ran: its GFLOP/s beside the GEMM peak, printed and
    kept in extra_info."""

    def record(flops):
        info = benchmark.extra_info
        info["gflop"] = flops / 1e9
        if benchmark.stats is None:  # --benchmark-disable: one plain call, nothing timed
            return
        rate = flops / benchmark.stats["median"] / 1e9
        info.update(
            gflops_per_s=rate,
            gemm_peak_gflops_per_s=gemm_peak,
            fraction_of_gemm_peak=rate / gemm_peak,
        )
        with capsys.disabled():
            print(
                f"\n{request.node.name}: {rate:.1f} GFLOP/s, GEMM peak {gemm_peak:.1f} GFLOP/s "
                f"({rate / gemm_peak:.0%})"
            )

    return record


@pytest.fixture
def threads():
    """BLAS on one thread, as inside fastnn's calls; yields the thread count layers pass."""
    with runtime.serial_blas():
        yield runtime.threads()


def _transposed_case(hwc, filters, k, stride, padding):
    """(x, kernel, bias, geometry, out_size) as Conv2DTranspose passes them (Keras's crops)."""
    h, w, c = tiny(hwc)
    filters = min(filters, 8) if TINY else filters
    (out_h, top), (out_w, left) = (transpose_axis(n, k, stride, 1, padding, None) for n in (h, w))
    crops, out_size = (top, left), (out_h, out_w)
    x, kernel, bias = rand(BATCH, h, w, c), rand(k, k, filters, c), rand(filters)
    return x, kernel, bias, ((stride, stride), (1, 1), crops), out_size


@pytest.mark.parametrize("name, hwc, filters, k, stride, padding", TRANSPOSED)
def test_conv2d_transpose_forward(
    benchmark, report, threads, name, hwc, filters, k, stride, padding
):
    x, kernel, bias, geometry, out_size = _transposed_case(hwc, filters, k, stride, padding)
    out = np.empty((BATCH, *out_size, kernel.shape[2]), np.float32)
    forward = conv_transpose.conv2d_transpose_forward
    benchmark(forward, x, kernel, bias, *geometry, out_size, codes.RELU, out, threads=threads)
    report(2 * x.size * kernel.shape[0] * kernel.shape[1] * kernel.shape[2])


@pytest.mark.parametrize("name, hwc, filters, k, stride, padding", TRANSPOSED)
def test_conv2d_transpose_backward(
    benchmark, report, threads, name, hwc, filters, k, stride, padding
):
    """Input and kernel gradients (and the bias's), as in a generator's training step."""
    x, kernel, bias, geometry, out_size = _transposed_case(hwc, filters, k, stride, padding)
    grad = rand(BATCH, *out_size, kernel.shape[2])
    dkernel, dbias, dx = np.zeros_like(kernel), np.zeros_like(bias), np.empty_like(x)
    backward = conv_transpose.conv2d_transpose_backward
    benchmark(backward, grad, x, kernel, *geometry, dkernel, dbias, dx, threads=threads)
    report(2 * 2 * x.size * kernel.shape[0] * kernel.shape[1] * kernel.shape[2])


def _depthwise_case(hwc, k, stride):
    h, w, c = tiny(hwc)
    x, kernel, bias = rand(BATCH, h, w, c), rand(k, k, c, 1), rand(c)
    (out_h, pad_top), (out_w, pad_left) = (conv_axis(n, k, stride, 1, "same") for n in (h, w))
    geometry = ((stride, stride), (1, 1), (pad_top, pad_left))
    return x, kernel, bias, geometry, np.empty((BATCH, out_h, out_w, c), np.float32)


@pytest.mark.parametrize("name, hwc, k, stride", DEPTHWISE)
def test_depthwise_forward(benchmark, report, name, hwc, k, stride):
    x, kernel, bias, geometry, out = _depthwise_case(hwc, k, stride)
    forward = depthwise.depthwise_conv2d_forward
    benchmark(forward, x, kernel, bias, *geometry, codes.RELU, out)
    report(2 * out.size * k * k)


@pytest.mark.parametrize("name, hwc, k, stride", DEPTHWISE)
def test_depthwise_backward(benchmark, report, name, hwc, k, stride):
    x, kernel, bias, geometry, out = _depthwise_case(hwc, k, stride)
    grad = rand(*out.shape)
    dkernel, dbias, dx = np.zeros_like(kernel), np.zeros_like(bias), np.empty_like(x)
    backward = depthwise.depthwise_conv2d_backward
    benchmark(backward, grad, x, kernel, *geometry, dkernel, dbias, dx)
    report(2 * 2 * out.size * k * k)
