"""The planning functions of the kernel families, as tables: which algorithm a conv of each shape
runs (``kernels.conv.plan_conv2d``) and how each recurrent cell's time loop runs
(``kernels.recurrent.plan_sequence``), forward and backward alike. The numerics of every path
are tested against numpy in test_kernels_conv.py, test_kernels_winograd.py and
test_kernels_recurrent.py."""

import numpy as np
import pytest

from fastnn.kernels import conv
from fastnn.kernels import recurrent as R

D, W, I, P = conv.DIRECT, conv.WINOGRAD, conv.IM2COL, conv.POINTWISE  # noqa: E741
RW = conv.ROWS

# x shape, kernel shape, strides, padding, pooled -> forward, kernel gradient, input gradient,
# quads (the fused pool's 4x4-patch kernels), in float64 (float32: FLOAT32_PLANS)
CONV_PLANS = [
    # seed_cnn's convs: a 3x3 first layer on grey images, then 32 to 64 channels
    ((32, 28, 28, 1), (3, 3, 1, 32), (1, 1), "same", False, (D, D, I, False)),
    ((32, 28, 28, 1), (3, 3, 1, 32), (1, 1), "same", True, (D, D, I, True)),
    ((32, 14, 14, 32), (3, 3, 32, 64), (1, 1), "same", False, (W, W, W, False)),
    ((32, 14, 14, 32), (3, 3, 32, 64), (1, 1), "same", True, (W, W, W, False)),
    # image_text's first conv, on RGB: direct forward; its kernel gradient direct when pooled
    ((32, 64, 64, 3), (3, 3, 3, 32), (1, 1), "valid", False, (D, I, I, False)),
    ((32, 64, 64, 3), (3, 3, 3, 32), (1, 1), "valid", True, (D, D, I, True)),
    # few taps: direct, strided too (no 4x4 patches then), up to DIRECT_MAX_TAPS
    ((2, 9, 9, 1), (3, 3, 1, 4), (2, 2), "same", True, (D, D, I, False)),
    ((2, 9, 9, 1), (4, 4, 1, 4), (1, 1), "valid", True, (D, D, I, False)),
    ((2, 9, 9, 2), (2, 2, 2, 16), (1, 1), "same", False, (D, D, I, False)),
    ((2, 9, 9, 1), (5, 5, 1, 16), (1, 1), "same", False, (I, I, I, False)),
    # few filters on few channels, unpooled, stride 1: along the rows (LeNet's first conv)
    ((64, 28, 28, 1), (5, 5, 1, 6), (1, 1), "same", False, (RW, RW, I, False)),
    ((2, 9, 9, 2), (2, 2, 2, 4), (1, 1), "same", False, (RW, RW, I, False)),
    ((2, 9, 9, 4), (3, 3, 4, 15), (1, 1), "valid", False, (RW, RW, I, False)),
    ((2, 9, 9, 1), (3, 3, 1, 8), (1, 1), "same", True, (D, D, I, True)),
    ((2, 9, 9, 1), (3, 3, 1, 8), (2, 2), "same", False, (D, D, I, False)),
    ((2, 14, 14, 6), (5, 5, 6, 8), (1, 1), "valid", False, (I, I, I, False)),
    ((2, 9, 9, 3), (1, 1, 3, 8), (1, 1), "valid", False, (P, P, P, False)),
    # Winograd from MIN_CHANNELS channels, 3x3 stride 1 only
    ((2, 9, 9, 7), (3, 3, 7, 4), (1, 1), "same", False, (I, I, I, False)),
    ((2, 9, 9, 8), (3, 3, 8, 4), (1, 1), "same", False, (W, W, W, False)),
    ((2, 9, 9, 8), (3, 3, 8, 4), (2, 2), "same", False, (I, I, I, False)),
    ((2, 9, 9, 8), (3, 2, 8, 4), (1, 1), "same", False, (I, I, I, False)),
    ((2, 9, 9, 8), (5, 5, 8, 4), (1, 1), "same", True, (I, I, I, False)),
    # 1x1: one GEMM on x's rows; strided, the same on the pixels it reads
    ((2, 8, 8, 32), (1, 1, 32, 8), (1, 1), "valid", False, (P, P, P, False)),
    ((2, 8, 8, 32), (1, 1, 32, 8), (1, 1), "valid", True, (P, P, P, False)),
    ((2, 8, 8, 32), (1, 1, 32, 8), (2, 2), "valid", False, (P, P, P, False)),
    ((2, 8, 8, 16), (1, 1, 16, 8), (2, 2), "same", False, (P, P, P, False)),
    # Conv1D as a one-row image
    ((4, 1, 50, 1), (1, 3, 1, 16), (1, 1), "valid", False, (D, D, I, False)),
    ((4, 1, 50, 8), (1, 5, 8, 16), (1, 2), "same", False, (I, I, I, False)),
]


@pytest.mark.parametrize("x_shape, kernel_shape, strides, padding, pooled, expected", CONV_PLANS)
def test_plan_conv2d(x_shape, kernel_shape, strides, padding, pooled, expected):
    plan = conv.plan_conv2d(x_shape, kernel_shape, strides, padding, pooled, np.float64)
    assert (plan.forward, plan.dkernel, plan.dx, plan.quads) == expected
    out_h, out_w, pad_top, pad_left = conv.conv_geometry(x_shape, kernel_shape, strides, padding)
    assert (plan.out_h, plan.out_w, plan.pad_top, plan.pad_left) == (
        out_h,
        out_w,
        pad_top,
        pad_left,
    )


S = conv.SIMD
# x shape, kernel shape, strides, padding, pooled -> forward, kernel gradient, input gradient in
# float32 (the rest as in float64). The forward by SIMD from 2 filters, where Winograd would run
# below 48 channels or into at most 32 filters, for a 1x1 stride-1 kernel from up to 256
# channels into 16 or more filters on 256+ pixels, else below 576 taps; fused with a pool too,
# but where the direct kernels would run. Unpooled, the kernel gradient of a stride-1 kernel but
# 1x1, on 2+ channels, by SIMD where Winograd or im2col would run; its input gradient where Winograd
# would, and for a 1x1 one from 16+ channels into fewer than 16 filters; the kernel gradient of
# a strided kernel onto 144+ pixels an image by SIMD
FLOAT32_PLANS = [
    ((32, 28, 28, 1), (3, 3, 1, 32), (1, 1), "same", False, (S, S, I)),  # grey first layers
    ((32, 28, 28, 1), (3, 3, 1, 32), (1, 1), "same", True, (D, D, I)),
    ((64, 28, 28, 1), (5, 5, 1, 6), (1, 1), "same", False, (S, S, I)),  # LeNet's
    ((64, 28, 28, 1), (5, 5, 1, 6), (1, 1), "same", True, (S, I, I)),
    ((64, 14, 14, 6), (5, 5, 6, 16), (1, 1), "valid", True, (S, I, I)),
    ((64, 14, 14, 6), (5, 5, 6, 16), (1, 1), "valid", False, (S, S, I)),  # dx: 6 of 16 lanes
    ((64, 14, 14, 32), (3, 3, 32, 64), (1, 1), "same", True, (S, W, W)),  # pooled, few channels
    ((64, 14, 14, 64), (3, 3, 64, 64), (1, 1), "same", True, (W, W, W)),  # and enough for W
    ((1, 16, 16, 64), (3, 3, 64, 64), (1, 1), "same", True, (S, W, W)),  # a batch of one
    ((32, 32, 32, 3), (3, 3, 3, 16), (1, 1), "same", False, (S, S, I)),  # RGB first layers
    ((8, 224, 224, 3), (7, 7, 3, 64), (2, 2), "same", False, (S, S, I)),
    ((32, 32, 32, 16), (3, 3, 16, 16), (1, 1), "same", False, (S, S, S)),  # ResNet-20's
    ((32, 16, 16, 32), (3, 3, 32, 32), (1, 1), "same", False, (S, S, S)),
    ((32, 8, 8, 64), (3, 3, 64, 64), (1, 1), "same", False, (S, S, S)),  # too small for W
    ((128, 8, 8, 64), (3, 3, 64, 64), (1, 1), "same", False, (W, S, S)),
    ((32, 16, 16, 48), (3, 3, 48, 48), (1, 1), "same", False, (W, S, S)),
    ((32, 16, 16, 64), (3, 3, 64, 32), (1, 1), "same", False, (S, S, S)),
    ((32, 16, 16, 128), (3, 3, 128, 64), (1, 1), "same", False, (W, S, S)),
    ((32, 64, 64, 16), (3, 3, 16, 1), (1, 1), "same", False, (W, S, S)),  # one filter
    ((32, 32, 32, 16), (3, 3, 16, 32), (2, 2), "same", False, (S, S, I)),  # onto 16x16
    ((32, 8, 8, 256), (3, 3, 256, 512), (2, 2), "same", False, (I, I, I)),
    ((32, 16, 16, 128), (3, 3, 128, 128), (2, 2), "same", False, (S, I, I)),  # rows of 8
    ((32, 8, 8, 128), (3, 3, 128, 256), (2, 2), "same", False, (I, I, I)),  # rows of 4
    ((32, 16, 16, 64), (7, 7, 64, 64), (1, 1), "same", False, (S, S, S)),  # long rows
    ((32, 16, 16, 256), (5, 5, 256, 64), (2, 2), "same", False, (I, I, I)),
    ((32, 16, 16, 32), (1, 1, 32, 64), (1, 1), "valid", False, (S, P, P)),  # pointwise
    ((32, 16, 16, 64), (1, 1, 64, 256), (1, 1), "valid", False, (S, P, P)),
    ((32, 8, 8, 128), (1, 1, 128, 32), (1, 1), "valid", False, (S, P, P)),
    ((32, 4, 4, 64), (1, 1, 64, 128), (1, 1), "valid", False, (S, P, P)),  # rows of 4
    ((32, 8, 8, 256), (1, 1, 256, 256), (1, 1), "valid", False, (S, P, P)),
    ((32, 8, 8, 512), (1, 1, 512, 512), (1, 1), "valid", False, (P, P, P)),  # OpenBLAS's
    ((1, 4, 4, 256), (1, 1, 256, 256), (1, 1), "valid", False, (P, P, P)),  # too few rows
    ((32, 16, 16, 32), (1, 1, 32, 8), (1, 1), "valid", False, (P, P, S)),
    ((32, 64, 64, 16), (1, 1, 16, 1), (1, 1), "valid", False, (P, P, S)),  # U-Net's last
    ((32, 64, 64, 8), (1, 1, 8, 1), (1, 1), "valid", False, (P, P, P)),
    ((32, 16, 16, 63), (5, 5, 63, 8), (1, 1), "same", False, (S, S, S)),  # taps 1575, rows of 16
    ((32, 8, 8, 63), (5, 5, 63, 8), (1, 1), "same", False, (S, S, S)),  # rows of 8
    ((32, 4, 4, 63), (5, 5, 63, 8), (1, 1), "same", False, (I, S, S)),  # rows of 4
    ((32, 16, 16, 22), (5, 5, 22, 8), (1, 1), "same", False, (S, S, S)),  # taps 550
]


@pytest.mark.parametrize("x_shape, kernel_shape, strides, padding, pooled, expected", FLOAT32_PLANS)
def test_plan_conv2d_float32(x_shape, kernel_shape, strides, padding, pooled, expected):
    plan = conv.plan_conv2d(x_shape, kernel_shape, strides, padding, pooled, np.float32)
    base = conv.plan_conv2d(x_shape, kernel_shape, strides, padding, pooled, np.float64)
    assert (plan.forward, plan.dkernel, plan.dx) == expected
    assert plan._replace(forward=base.forward, dkernel=base.dkernel, dx=base.dx) == base


def test_plan_conv2d_refuses_a_kernel_larger_than_the_input():
    with pytest.raises(ValueError, match=r"kernel \(3, 3\) .* does not fit input"):
        conv.plan_conv2d((1, 2, 2, 1), (3, 3, 1, 1), (1, 1), "valid")


def test_the_wrappers_run_what_the_plan_says(monkeypatch):
    """Forward and backward read one plan: with the direct kernels made to refuse, a shape
    planned otherwise never reaches them."""

    def refuse(*args):
        raise AssertionError("a direct kernel ran")

    for name in ("conv2d_direct", "conv2d_direct_dkernel", "conv2d_direct_max_pool"):
        monkeypatch.setattr(conv, name, refuse)
    rng = np.random.default_rng(0)
    x, k = rng.standard_normal((2, 6, 6, 4)), rng.standard_normal((3, 3, 4, 16))
    assert conv.plan_conv2d(x.shape, k.shape, (1, 1), "same", dtype=x.dtype).forward == conv.IM2COL
    y = conv.conv2d_forward(x, k, None, (1, 1), "same", conv.LINEAR)
    conv.conv2d_backward(y, x, k, (1, 1), "same", np.zeros_like(k), None)
    with pytest.raises(AssertionError, match="a direct kernel ran"):
        conv.conv2d_forward(x[..., :1], k[:, :, :1], None, (1, 1), "same", conv.LINEAR)


# cell, batch, units, cblas given, recurrent dropout -> in Numba, fewest rows per block
SEQUENCE_PLANS = [
    # lstm_text's LSTM(64): one Numba call per block, each step's product by cblas
    (R.LSTM, 32, 64, True, False, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    (R.LSTM, 256, 64, True, False, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    # without cblas: Numba's own loops for small LSTMs, else a numpy product per step
    (R.LSTM, 32, 64, False, False, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    (R.LSTM, 33, 64, False, False, (False, None)),
    (R.LSTM, 32, 65, False, False, (False, None)),
    (R.LSTM, 33, 64, False, True, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    (R.GRU, 32, 64, True, False, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    (R.GRU, 4, 4, False, False, (False, None)),
    (R.GRU, 4, 4, False, True, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    (R.SIMPLE_RNN, 32, 64, True, False, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    (R.SIMPLE_RNN, 4, 4, False, False, (False, None)),
    (R.SIMPLE_RNN, 4, 4, False, True, (True, R.LOOP_MIN_ROWS_PER_BLOCK)),
    # reset_after=False: two products a step, each after a kernel: Python's loop always
    (R.GRU_RESET_BEFORE, 32, 64, True, True, (False, None)),
    (R.GRU_RESET_BEFORE, 4, 4, False, False, (False, None)),
]


@pytest.mark.parametrize("cell, batch, units, cblas, dropped, expected", SEQUENCE_PLANS)
def test_plan_sequence(cell, batch, units, cblas, dropped, expected):
    assert tuple(R.plan_sequence(cell, batch, units, cblas, dropped)) == expected


@pytest.mark.parametrize("cell", [R.LSTM, R.GRU, R.GRU_RESET_BEFORE, R.SIMPLE_RNN])
@pytest.mark.parametrize("batch", [3, 40])
def test_forward_and_backward_run_one_plan(cell, batch, monkeypatch):
    """The one driver gets the same plan from a cell's forward and its backward."""
    plans = []
    driver = R._time_loop

    def spy(plan, *args):
        plans.append(plan)
        driver(plan, *args)

    monkeypatch.setattr(R, "_time_loop", spy)
    rng = np.random.default_rng(1)
    gates = {R.LSTM: 4, R.GRU: 3, R.GRU_RESET_BEFORE: 3, R.SIMPLE_RNN: 1}[cell]
    x = rng.standard_normal((3, batch, 2))
    w, u = rng.standard_normal((2, gates * 4)), rng.standard_normal((4, gates * 4))
    h0 = np.zeros((batch, 4))
    if cell == R.LSTM:
        hs, cs, g = R.lstm_forward(x, w, u, None, h0, h0, None, R.TANH, R.SIGMOID)
        R.lstm_backward(x, w, u, hs, cs, g, None, R.TANH, R.SIGMOID, None, h0, h0)
    elif cell == R.SIMPLE_RNN:
        (hs,) = R.simple_rnn_forward(x, w, u, None, h0, None, R.TANH)
        R.simple_rnn_backward(x, w, u, hs, None, R.TANH, None, h0)
    else:
        fwd, bwd = R.gru_forward, R.gru_backward
        if cell == R.GRU_RESET_BEFORE:
            fwd, bwd = R.gru_reset_before_forward, R.gru_reset_before_backward
        hs, g = fwd(x, w, u, None, h0, None, R.TANH, R.SIGMOID)
        bwd(x, w, u, hs, g, None, R.TANH, R.SIGMOID, None, h0)
    assert len(plans) == 2 and plans[0] == plans[1]
    assert plans[0] == R.plan_sequence(cell, batch, 4, False, False)
