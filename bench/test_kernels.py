"""Kernel benchmarks at the benchmark models' shapes: ``pytest bench/ --benchmark-columns=median``.

Each benchmark records its GFLOP/s (or GB/s for memory-bound kernels) in ``extra_info``; the
float32 GEMM peak of this machine is measured once per run (numpy matmul at 1024 and 2048, best
of 5) and each GFLOP/s figure also gets its ``fraction_of_gemm_peak`` (``--benchmark-json`` keeps
them all). A convolution's FLOPs are those of its direct form, whatever it runs (conv2 runs by
Winograd, with 2.25x fewer multiplications), so its figure is the speed of a conv of that
shape, comparable across algorithms and with other frameworks, and its fraction may exceed 1.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from fastnn import runtime
from fastnn.kernels import activations, conv, losses, optimizers, pooling

RNG = np.random.default_rng(0)
BATCHES = [32, 128]
# (name, input HWC, filters, padding) of seed_cnn's two convolutions (3x3 'same') and image_text's
# first (3x3 'valid' on RGB: its unrolled direct rows and 4x4x3-patch pool kernels)
CONVS = [
    ("conv1", (28, 28, 1), 32, "same"),
    ("conv2", (14, 14, 32), 64, "same"),
    ("rgb", (64, 64, 3), 32, "valid"),
]


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def gflops(benchmark, flops):
    benchmark.extra_info["gflop"] = flops / 1e9
    benchmark.extra_info["gflops_per_s"] = flops / benchmark.stats["median"] / 1e9


@pytest.fixture(scope="session")
def gemm_peak() -> float:
    """This machine's float32 GEMM GFLOP/s: numpy matmul at 1024 and 2048, best of 5 each."""
    best = 0.0
    for n in (1024, 2048):
        a, b, out = rand(n, n), rand(n, n), np.empty((n, n), np.float32)
        for _ in range(5):
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


@pytest.fixture(autouse=True)
def fraction_of_gemm_peak(benchmark, gemm_peak):
    """After each benchmark, its GFLOP/s as a fraction of the GEMM peak, into extra_info."""
    yield
    info = benchmark.extra_info
    if "gflops_per_s" in info:
        info["gemm_peak_gflops_per_s"] = gemm_peak
        info["fraction_of_gemm_peak"] = info["gflops_per_s"] / gemm_peak


@pytest.fixture
def as_in_a_pass():
    """BLAS on one thread, as inside fastnn's calls (GEMMs and conv chunks on fastnn's threads);
    yields the thread count the layers pass the kernels."""
    with runtime.serial_blas():
        yield runtime.threads()


@pytest.mark.parametrize("n", [1024, 2048])
def test_gemm_peak(benchmark, n):
    a, b = rand(n, n), rand(n, n)
    out = np.empty((n, n), np.float32)
    benchmark(np.matmul, a, b, out=out)
    gflops(benchmark, 2 * n**3)


def _conv_flops(batch, hwc, filters, padding):
    """The direct form's FLOPs of a 3x3 stride-1 conv: 2 per tap, output pixel and filter."""
    out = [size - 2 if padding == "valid" else size for size in hwc[:2]]
    return 2 * batch * out[0] * out[1] * 9 * hwc[2] * filters


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name, hwc, filters, padding", CONVS)
def test_conv2d_forward(benchmark, as_in_a_pass, batch, name, hwc, filters, padding):
    x, kernel, bias = rand(batch, *hwc), rand(3, 3, hwc[2], filters), rand(filters)
    args = (x, kernel, bias, (1, 1), padding, activations.RELU)
    out = conv.conv2d_forward(*args)
    benchmark(conv.conv2d_forward, *args, out, threads=as_in_a_pass)
    gflops(benchmark, _conv_flops(batch, hwc, filters, padding))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name, hwc, filters, padding", CONVS)
def test_conv2d_backward(benchmark, as_in_a_pass, batch, name, hwc, filters, padding):
    """As in a training step: a model's first layer (conv1, rgb) needs no input gradient; the
    backward im2cols x again where it runs im2col."""
    x, kernel, bias = rand(batch, *hwc), rand(3, 3, hwc[2], filters), rand(filters)
    y = conv.conv2d_forward(x, kernel, bias, (1, 1), padding, activations.LINEAR)
    grad = rand(*y.shape)
    dkernel, dbias = np.zeros_like(kernel), np.zeros_like(bias)
    dx, need_dx = np.empty_like(x), name == "conv2"

    def backward():
        return conv.conv2d_backward(
            grad, x, kernel, (1, 1), padding, dkernel, dbias, dx=dx, need_dx=need_dx,
            threads=as_in_a_pass,
        )  # fmt: skip

    benchmark(backward)
    products = 2 if need_dx else 1  # the kernel gradient, and the input gradient if needed
    gflops(benchmark, products * _conv_flops(batch, hwc, filters, padding))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("name, hwc, filters, padding", CONVS)
def test_conv2d_max_pool_forward_backward(
    benchmark, as_in_a_pass, batch, name, hwc, filters, padding
):
    """Conv2D(relu) + MaxPooling2D(2) as a training step runs them: one fused forward (pooled
    output and codes), one fused backward from the pooled gradient."""
    x, kernel, bias = rand(batch, *hwc), rand(3, 3, hwc[2], filters), rand(filters)
    args = ((1, 1), padding)
    pooled = conv.conv2d_forward_max_pool(x, kernel, bias, *args, activations.RELU)
    codes = np.empty(pooled.shape, np.uint8)
    grad = rand(*pooled.shape)
    dkernel, dbias = np.zeros_like(kernel), np.zeros_like(bias)
    dx, need_dx = np.empty_like(x), name == "conv2"

    def step():
        conv.conv2d_forward_max_pool(
            x, kernel, bias, *args, activations.RELU, pooled, codes, threads=as_in_a_pass
        )
        return conv.conv2d_backward_max_pooled(
            grad, codes, x, kernel, *args, dkernel, dbias, dx=dx, need_dx=need_dx,
            threads=as_in_a_pass,
        )  # fmt: skip

    benchmark(step)
    products = 3 if need_dx else 2  # forward, kernel gradient, input gradient if needed
    gflops(benchmark, products * _conv_flops(batch, hwc, filters, padding))


@pytest.mark.parametrize("batch", BATCHES)
def test_im2col(benchmark, batch):
    x = rand(batch, 14, 14, 32)
    cols = np.empty((batch * 196, 288), np.float32)
    benchmark(conv.im2col, x, 3, 3, 1, 1, 1, 1, 14, 14, cols)
    benchmark.extra_info["gb_per_s"] = (x.nbytes + cols.nbytes) / benchmark.stats["median"] / 1e9


@pytest.mark.parametrize("batch", BATCHES)
def test_col2im(benchmark, batch):
    dcols = rand(batch * 196, 288)
    dx = np.empty((batch, 14, 14, 32), np.float32)
    benchmark(conv.col2im, dcols, 3, 3, 1, 1, 1, 1, 14, 14, dx)
    benchmark.extra_info["gb_per_s"] = (dx.nbytes + dcols.nbytes) / benchmark.stats["median"] / 1e9


@pytest.mark.parametrize("batch", BATCHES)
def test_maxpool_forward_backward(benchmark, batch):
    x = rand(batch, 28, 28, 32)
    out = np.empty((batch, 14, 14, 32), np.float32)
    argmax = np.empty(out.shape, np.int64)
    dx = np.empty_like(x)

    def step():
        pooling.maxpool2d_forward(x, 2, 2, 2, 2, 0, 0, out, argmax)
        pooling.maxpool2d_backward(out, argmax, dx)

    benchmark(step)
    moved = 2 * x.nbytes + 2 * out.nbytes + 2 * argmax.nbytes
    benchmark.extra_info["gb_per_s"] = moved / benchmark.stats["median"] / 1e9


@pytest.mark.parametrize("batch", BATCHES)
def test_dense_relu_forward(benchmark, batch):
    x, w, b = rand(batch, 3136), rand(3136, 100), rand(100)
    out = np.empty((batch, 100), np.float32)

    def forward():
        np.matmul(x, w, out=out)
        activations.bias_activation_forward(out, b, activations.RELU, out)

    benchmark(forward)
    gflops(benchmark, 2 * batch * 3136 * 100)


@pytest.mark.parametrize("batch", BATCHES)
def test_sparse_softmax_cross_entropy(benchmark, batch):
    logits, labels = rand(batch, 10), RNG.integers(0, 10, batch)
    loss, grad = np.empty(batch, np.float32), np.empty_like(logits)
    benchmark(losses.sparse_softmax_cross_entropy_logits, logits, labels, loss, grad)


def test_adam_update(benchmark):
    size = 313_700  # seed_cnn's largest kernel
    param, grad, m, v = rand(size), rand(size), np.zeros(size, np.float32), rand(size) ** 2
    no_decay = np.float32(1)
    benchmark(optimizers.adam_update, param, grad, m, v, np.float32(1e-3), 0.9, 0.999,
              np.float32(1e-7), no_decay)  # fmt: skip
    benchmark.extra_info["gb_per_s"] = 6 * param.nbytes / benchmark.stats["median"] / 1e9


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_recurrent_sequence_forward_backward(benchmark, as_in_a_pass, kind, batch):
    """lstm_text's recurrent layer (64 units over (batch, 100, 128) float32), and a GRU of it."""
    from fastnn import layers

    layer = getattr(layers, kind)(64)
    x = rand(batch, 100, 128)
    layer(x[:1])
    grad = rand(batch, 64)

    def step():
        y, ctx = layer.forward(x, training=True)
        return layer.backward(ctx, grad)

    benchmark(step)
    width = layer.recurrent_kernel.shape[1]  # gates * units
    gflops(benchmark, 3 * 2 * batch * 100 * (128 + 64) * width)
