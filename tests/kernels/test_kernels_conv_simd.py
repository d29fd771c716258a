"""The SIMD micro-kernels (``kernels.simd``) and the direct float32 conv built on them
(``kernels.conv_simd``) against numpy: every block width (12 or 8 pixels, the row's 4, 2 and 1
pixel tails), 16- and 32-lane filter blocks with the filters past F masked, strides, padding,
the relu epilogue, and blocks of rows on several threads."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from test_kernels_conv import ref_activation, ref_conv, ref_conv_backward

from fastnn.kernels import conv, conv_simd, simd
from fastnn.kernels.codes import LINEAR, RELU, TANH

_NARROW = simd.block_product(16, (12, 3))
_WIDE = simd.block_product(32, (2,))
_STRIDED_NARROW = simd.block_product(16, (12, 3), strided=True)
_STRIDED_WIDE = simd.block_product(32, (2,), strided=True)


@njit(cache=True)
def _run(
    wide, rows, out, start, ldo, count, bias, f0, mode, a, a_start, lda, a_step, b, k, outer,
    stride,
):  # fmt: skip
    """The kernel for ``wide`` lanes (32, else 16); with ``stride`` 0 the unstrided one."""
    args = (rows, out, start, ldo, count, bias, f0, mode, a, a_start, lda, a_step, b, 0, k, outer)
    if stride and wide:
        _STRIDED_WIDE(*args, stride)
    elif stride:
        _STRIDED_NARROW(*args, stride)
    elif wide:
        _WIDE(*args)
    else:
        _NARROW(*args)


def ref_sums(rows, lanes, count, a, a_start, lda, a_step, b, k, outer, stride=1):
    """The (rows, count) sums ``block_product`` computes, in float64."""
    block = np.zeros((rows, lanes))
    for o in range(outer):
        for r in range(rows):
            start = a_start + o * a_step + r * lda
            row = a[start : start + k * stride : stride].astype(np.float64)
            block[r] += row @ b[o * k * lanes : (o + 1) * k * lanes].reshape(k, lanes)
    return block[:, :count]


@settings(max_examples=30, deadline=None)
@given(
    shape=st.sampled_from([(16, 12), (16, 3), (32, 2)]),
    count=st.integers(1, 32),
    k=st.integers(0, 9),
    outer=st.integers(0, 3),
    epilogue=st.sampled_from([simd.BIAS, simd.BIAS_RELU, simd.ACCUMULATE]),
    stride=st.sampled_from([0, 1, 3]),
    seed=st.integers(0, 2**16),
)
def test_block_product_matches_reference(shape, count, k, outer, epilogue, stride, seed):
    """A block's sums over strided rows of A and a packed B panel, plus the bias (and a relu)
    or added to the output, stored to the block's ``count`` lanes and nowhere else (k or outer
    0: no sums); each of a product's row counts; A read ``stride`` apart along K by the strided
    kernels (0: the unstrided ones)."""
    lanes, rows = shape
    count = min(count, lanes)
    rng = np.random.default_rng(seed)
    run = k * max(stride, 1)
    lda, a_step, a_start, f0, ldo = run + 3, rows * (run + 3) + 5, 2, 3, lanes + 7
    a = rng.standard_normal(a_start + outer * a_step + rows * lda + run).astype(np.float32)
    b = rng.standard_normal(max(1, outer * k * lanes)).astype(np.float32)
    bias = rng.standard_normal(f0 + lanes).astype(np.float32)
    out = np.full(5 + rows * ldo, np.nan, np.float32)
    before = rng.standard_normal((rows, count)).astype(np.float32)
    out[5:].reshape(rows, ldo)[:, :count] = before
    _run(
        lanes == 32,
        rows,
        out,
        5,
        ldo,
        count,
        bias,
        f0,
        epilogue,
        a,
        a_start,
        lda,
        a_step,
        b,
        k,
        outer,
        stride,
    )
    sums = ref_sums(rows, lanes, count, a, a_start, lda, a_step, b, k, outer, max(stride, 1))
    if epilogue == simd.ACCUMULATE:
        expected = before + sums
    else:
        expected = sums + bias[f0 : f0 + count]
        expected = np.maximum(expected, 0) if epilogue == simd.BIAS_RELU else expected
    written = out[5:].reshape(rows, ldo)
    np.testing.assert_allclose(written[:, :count], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(written[:, count:]).all() and np.isnan(out[:5]).all()


@pytest.mark.parametrize("stride", [0, 2])
def test_block_product_writes_nothing_for_a_row_count_it_lacks(stride):
    out, ones = np.full(64, np.nan, np.float32), np.ones(64, np.float32)
    _run(False, 5, out, 0, 16, 16, ones, 0, simd.BIAS, ones, 0, 1, 1, ones, 1, 1, stride)
    assert np.isnan(out).all()


@st.composite
def simd_cases(draw, max_h, max_w, channels, strided):
    """(x_shape, kernel shape, strides, padding), the strides (1, 1) unless ``strided``."""
    padding = draw(st.sampled_from(["valid", "same"]))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, max_h)), draw(st.integers(1, max_w))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 6))  # with few channels, kw rows
    if padding == "valid":
        h, w = max(h, kh), max(w, kw)
    c = draw(st.sampled_from(channels))
    filters = draw(st.sampled_from([1, 7, 16, 17, 32, 40]))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if strided else (1, 1)
    return (n, h, w, c), (kh, kw, c, filters), strides, padding


# rows long enough for every block of pixels (12, 8, 4, 2, 1)
conv_cases = simd_cases(6, 30, [1, 3, 5, 16], strided=True)
# channel blocks of 12, 8, 4, 2 and 1
gradient_cases = simd_cases(7, 9, [1, 3, 8, 15, 16], strided=True)


@settings(max_examples=40, deadline=None)
@given(
    conv_cases,
    st.sampled_from([LINEAR, RELU, TANH]),
    st.booleans(),
    st.integers(1, 3),
    st.integers(0, 2**16),
)
def test_simd_conv_matches_reference(case, code, with_residual, threads, seed):
    """act(conv + bias), or act(conv + bias + residual) with a residual added to each row."""
    x_shape, kernel_shape, strides, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    kernel = rng.standard_normal(kernel_shape).astype(np.float32)
    bias = rng.standard_normal(kernel_shape[3]).astype(np.float32)
    out_h, out_w, pad_top, pad_left = conv.conv_geometry(x_shape, kernel_shape, strides, padding)
    out = np.full((x_shape[0], out_h, out_w, kernel_shape[3]), np.nan, np.float32)
    residual = rng.standard_normal(out.shape).astype(np.float32) if with_residual else None
    panels = conv_simd.pack_kernel(kernel)
    geometry = (kernel_shape, strides, pad_top, pad_left)
    conv_simd.forward(x, panels, bias, *geometry, code, out, threads, residual=residual)
    expected = ref_conv(x, kernel, bias, strides, padding)
    expected = ref_activation(expected if residual is None else expected + residual, code)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=40, deadline=None)
@given(gradient_cases, st.integers(1, 3), st.integers(0, 2**16))
def test_simd_kernel_gradient_matches_reference(case, threads, seed):
    """dkernel += the conv's kernel gradient, any strides, summed over images on several
    threads."""
    x_shape, kernel_shape, strides, padding = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    kernel = rng.standard_normal(kernel_shape).astype(np.float32)
    out_h, out_w, pad_top, pad_left = conv.conv_geometry(x_shape, kernel_shape, strides, padding)
    grad = rng.standard_normal((x_shape[0], out_h, out_w, kernel_shape[3])).astype(np.float32)
    dkernel = np.ones(kernel_shape, np.float32)
    pads = (pad_top, pad_left)
    conv_simd.kernel_gradient(x, grad, kernel_shape, strides, *pads, dkernel, threads)
    _, expected, _ = ref_conv_backward(x, kernel, grad, strides, padding)
    np.testing.assert_allclose(dkernel, expected + 1, rtol=1e-4, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from([((1, 1, 16, 1), "valid"), ((1, 1, 20, 7), "same"), ((3, 3, 9, 4), "same")]),
    st.integers(1, 3),
    st.integers(0, 2**16),
)
def test_gradients_the_plan_runs_by_simd_match_reference(kernel_case, threads, seed):
    """conv2d_backward where the float32 plan takes SIMD for dx: a 1x1 kernel into few filters
    (the 1x1 conv of grad_z) and a 3x3 one (kernel gradient too)."""
    kernel_shape, padding = kernel_case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 5, 6, kernel_shape[2])).astype(np.float32)
    kernel = rng.standard_normal(kernel_shape).astype(np.float32)
    assert conv.plan_conv2d(x.shape, kernel_shape, (1, 1), padding).dx == conv.SIMD
    y = conv.conv2d_forward(x, kernel, None, (1, 1), padding, LINEAR)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    dkernel = np.zeros_like(kernel)
    dx = conv.conv2d_backward(grad, x, kernel, (1, 1), padding, dkernel, None, threads=threads)
    expected_dx, expected_dkernel, _ = ref_conv_backward(x, kernel, grad, (1, 1), padding)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dkernel, expected_dkernel, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel_shape, strides", [((3, 3, 4, 8), (2, 2)), ((5, 4, 3, 17), (3, 2))])
def test_a_strided_kernel_onto_enough_pixels_takes_its_kernel_gradient_by_simd(
    kernel_shape, strides
):
    """conv2d_backward of a strided conv the plan gives SIMD's kernel gradient (im2col's input
    gradient) matches the reference, both gradients."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 37, 29, kernel_shape[2])).astype(np.float32)
    plan = conv.plan_conv2d(x.shape, kernel_shape, strides, "same")
    assert (plan.dkernel, plan.dx) == (conv.SIMD, conv.IM2COL)
    kernel = rng.standard_normal(kernel_shape).astype(np.float32)
    y = conv.conv2d_forward(x, kernel, None, strides, "same", LINEAR)
    grad = rng.standard_normal(y.shape).astype(np.float32)
    dkernel = np.zeros_like(kernel)
    dx = conv.conv2d_backward(grad, x, kernel, strides, "same", dkernel, None, threads=2)
    expected_dx, expected_dkernel, _ = ref_conv_backward(x, kernel, grad, strides, "same")
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dkernel, expected_dkernel, rtol=1e-4, atol=1e-4)
