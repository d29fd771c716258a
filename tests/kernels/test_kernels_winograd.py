"""Winograd's F(2x2, 3x3) convolution (fastnn.kernels.winograd) against the numpy references of
test_kernels_conv: forward, backward, and fused with a 2x2 max pool, through conv's entry points.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernels_conv import (
    DTYPES,
    TOL,
    check_conv2d_against_reference,
    check_max_pooled_training,
    conv_path,
)

from fastnn.kernels import conv, pooling, winograd
from fastnn.kernels.activations import LINEAR, RELU, SIGMOID, TANH


@st.composite
def winograd_cases(draw):
    """(x_shape, (3, 3), (1, 1), padding, dtype) with a non-empty output: odd and even sizes,
    images smaller than a tile's window, few and many channels."""
    padding = draw(st.sampled_from(["valid", "same"]))
    low = 3 if padding == "valid" else 1
    shape = (
        draw(st.integers(1, 3)),
        draw(st.integers(low, 9)),
        draw(st.integers(low, 9)),
        draw(st.sampled_from([1, 2, 3, 8, 13])),
    )
    return shape, (3, 3), (1, 1), padding, draw(st.sampled_from(DTYPES))


@settings(max_examples=40, deadline=None)
@given(winograd_cases(), st.integers(1, 9), st.sampled_from([LINEAR, RELU, SIGMOID, TANH]),
       st.booleans(), st.data())  # fmt: skip
def test_winograd_forward_backward_match_reference(case, filters, code, use_bias, data):
    """Forward (bias, activation), input and kernel gradients, chunk and block boundaries."""
    with conv_path("winograd") as options:
        assert winograd.applies((3, 3, case[0][3], filters), (1, 1))
        check_conv2d_against_reference(case, filters, code, use_bias, data, options)


@settings(max_examples=40, deadline=None)
@given(winograd_cases(), st.integers(1, 9), st.sampled_from([LINEAR, RELU, TANH]), st.data())
def test_winograd_max_pooled_training_matches_reference(case, filters, code, data):
    """A tile is a 2x2 pool window: the pool and its codes come out of the output transform,
    and the backward unpools in the gradient's transform (odd sizes drop a row or column)."""
    check_max_pooled_training("winograd", case, filters, code, data)


def test_only_3x3_stride_1_kernels_on_enough_channels_run_by_winograd():
    c = winograd.MIN_CHANNELS
    assert winograd.applies((3, 3, c, 4), (1, 1))
    assert not winograd.applies((3, 3, c - 1, 4), (1, 1))  # the direct kernels or im2col
    assert not winograd.applies((3, 3, c, 4), (2, 1))
    assert not winograd.applies((3, 2, c, 4), (1, 1))


def test_kernel_transform_adjoint_is_its_adjoint():
    """<G g Gt, dU> = <g, Gt dU G>, so the kernel gradient is the gradient of the transform."""
    rng = np.random.default_rng(0)
    g, du = rng.standard_normal((3, 3, 5, 4)), rng.standard_normal((16, 5, 4))
    dk = np.zeros_like(g)
    winograd.kernel_transform_adjoint(du, dk)
    np.testing.assert_allclose(np.sum(winograd.kernel_transform(g) * du), np.sum(g * dk))


def test_float32_error_is_that_of_a_gemm():
    """Against a float64 reference, float32 Winograd is as close as float32 im2col + GEMM."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 14, 14, 32))
    k = rng.standard_normal((3, 3, 32, 64)) * 0.1
    exact = conv.conv2d_forward(x, k, None, (1, 1), "same", LINEAR)
    errors = {}
    for path in ("winograd", "im2col"):
        with conv_path(path) as options:
            y = conv.conv2d_forward(x.astype(np.float32), k.astype(np.float32), None,
                                    (1, 1), "same", LINEAR, **options)  # fmt: skip
        errors[path] = np.abs(y - exact).max()
    assert errors["winograd"] < 4 * errors["im2col"]
    np.testing.assert_allclose(errors["winograd"], 0, atol=TOL[np.float32]["atol"])


def test_winograd_pool_codes_pick_the_first_maximum_on_ties():
    """On small integers every transform is exact, so windows tie often: the codes then point
    where the MaxPooling2D layer's argmax does, the first maximum (its gradient goes there)."""
    rng = np.random.default_rng(4)
    x = rng.integers(-1, 2, (2, 8, 7, 8)).astype(np.float32)
    k = rng.integers(-1, 2, (3, 3, 8, 5)).astype(np.float32)
    with conv_path("winograd") as options:
        y = conv.conv2d_forward(x, k, None, (1, 1), "same", LINEAR, **options)
        codes = np.full((2, 4, 3, 5), 9, np.uint8)
        conv.conv2d_forward_max_pool(x, k, None, (1, 1), "same", LINEAR, codes=codes, **options)
    out, argmax = np.empty(codes.shape, np.float32), np.empty(codes.shape, np.int32)
    pooling.maxpool2d_forward(y, 2, 2, 2, 2, 0, 0, out, argmax)
    rows, cols = np.divmod(argmax, 7)
    expected = 2 * (rows - 2 * np.arange(4)[:, None, None]) + cols - 2 * np.arange(3)[:, None]
    assert (expected != 0).any() and (out == y[:, :8:2, :6:2]).any()  # ties, broken both ways
    np.testing.assert_array_equal(codes, expected)
