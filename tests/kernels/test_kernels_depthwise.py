"""fastnn.kernels.depthwise against plain-numpy references (np.pad + strided slices)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import codes, depthwise
from fastnn.kernels.geometry import padding_amounts

TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-12)}


def ref_activation(z, code):
    if code == codes.RELU:
        return np.maximum(z, 0)
    if code == codes.SIGMOID:
        return 1 / (1 + np.exp(-z))
    if code == codes.TANH:
        return np.tanh(z)
    if code == codes.SOFTMAX:
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if code == codes.ELU:
        return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))
    assert code == codes.LINEAR
    return z


# The epilogues' kinds: elementwise, row-wise and one of the activation kernels' later codes
CODES = [codes.LINEAR, codes.RELU, codes.SIGMOID, codes.TANH, codes.SOFTMAX, codes.ELU]


def geometry(x_shape, k_shape, strides, dilation, padding):
    """((OH, OW), (top, left), numpy pads) by TensorFlow's rule on the dilated kernel's extent."""
    sizes, befores, pads = [], [], [(0, 0)]
    for size, k, s, d in zip(x_shape[1:3], k_shape[:2], strides, dilation):
        out, before, after = padding_amounts(size, (k - 1) * d + 1, s, padding)
        sizes.append(out)
        befores.append(before)
        pads.append((before, after))
    return tuple(sizes), tuple(befores), (*pads, (0, 0))


def ref_windows(x, k_shape, strides, dilation, padding):
    """Yield (p, q, window of padded x seen by tap (p, q)) of shape (N, OH, OW, C)."""
    (oh, ow), _, pads = geometry(x.shape, k_shape, strides, dilation, padding)
    xp = np.pad(x, pads)
    (sh, sw), (dh, dw) = strides, dilation
    for p in range(k_shape[0]):
        rows = xp[:, p * dh : p * dh + sh * (oh - 1) + 1 : sh]
        for q in range(k_shape[1]):
            yield p, q, rows[:, :, q * dw : q * dw + sw * (ow - 1) + 1 : sw]


def ref_forward(x, k, b, strides, dilation, padding, code):
    z = 0
    for p, q, win in ref_windows(x, k.shape, strides, dilation, padding):
        z = z + win[..., None] * k[p, q]  # (N, OH, OW, C, M)
    z = z.reshape(*z.shape[:3], -1) + (0 if b is None else b)
    return ref_activation(z, code)


def ref_backward(x, k, dz, strides, dilation, padding):
    """(dx, dk, db) of sum(depthwise(x, k) * dz), before the activation."""
    (oh, ow), (top, left), pads = geometry(x.shape, k.shape, strides, dilation, padding)
    n, h, w, c = x.shape
    (sh, sw), (dh, dw) = strides, dilation
    xp = np.pad(x, pads)
    dxp, dk = np.zeros_like(xp), np.zeros_like(k)
    g = dz.reshape(n, oh, ow, c, -1)
    for p in range(k.shape[0]):
        for q in range(k.shape[1]):
            rows = slice(p * dh, p * dh + sh * (oh - 1) + 1, sh)
            cols = slice(q * dw, q * dw + sw * (ow - 1) + 1, sw)
            dk[p, q] = np.einsum("nhwc,nhwcm->cm", xp[:, rows, cols], g)
            dxp[:, rows, cols] += np.einsum("nhwcm,cm->nhwc", g, k[p, q])
    return dxp[:, top : top + h, left : left + w], dk, dz.sum(axis=(0, 1, 2))


@st.composite
def depthwise_cases(draw):
    """(x shape, kernel shape, strides, dilation, padding, dtype) with a non-empty output."""
    padding = draw(st.sampled_from(["valid", "same"]))
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    c, m = draw(st.sampled_from([1, 3, 8])), draw(st.sampled_from([1, 2]))
    dilation = draw(st.sampled_from([(1, 1), (2, 1), (1, 2)]))
    limits = [size if padding == "valid" else 4 for size in (h, w)]
    kh, kw = (draw(st.integers(1, max(1, min(4, lim)))) for lim in limits)
    if padding == "valid":  # the dilated kernel must fit too
        dilation = tuple(d if (k - 1) * d < s else 1 for d, k, s in zip(dilation, (kh, kw), (h, w)))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (n, h, w, c), (kh, kw, c, m), strides, dilation, padding, dtype


def check_against_reference(case, code, use_bias, seed):
    x_shape, k_shape, strides, dilation, padding, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    k = rng.standard_normal(k_shape).astype(dtype)
    channels = k_shape[2] * k_shape[3]
    b = rng.standard_normal(channels).astype(dtype) if use_bias else None
    out_size, pads, _ = geometry(x_shape, k_shape, strides, dilation, padding)
    out = np.full((x_shape[0], *out_size, channels), np.nan, dtype)
    y = depthwise.depthwise_conv2d_forward(x, k, b, strides, dilation, pads, code, out)
    assert y is out and y.dtype == dtype
    x64, k64 = x.astype(np.float64), k.astype(np.float64)
    want = ref_forward(x64, k64, b, strides, dilation, padding, code)
    np.testing.assert_allclose(y, want, **TOL[dtype])

    dz = rng.standard_normal(y.shape).astype(dtype)
    dk, db = np.full(k.shape, 0.5, dtype), np.full(channels, 0.25, dtype)
    dx = np.full(x.shape, np.nan, dtype)
    got = depthwise.depthwise_conv2d_backward(dz, x, k, strides, dilation, pads, dk, db, dx)
    dz64 = dz.astype(np.float64)
    ref_dx, ref_dk, ref_db = ref_backward(x64, k64, dz64, strides, dilation, padding)
    assert got is dx and dk.dtype == db.dtype == dtype
    np.testing.assert_allclose(dx, ref_dx, **TOL[dtype])
    np.testing.assert_allclose(dk, ref_dk + 0.5, **TOL[dtype])  # added into, not overwritten
    np.testing.assert_allclose(db, ref_db + 0.25, **TOL[dtype])


@settings(max_examples=5, deadline=None)
@given(depthwise_cases(), st.sampled_from(CODES), st.booleans(), st.data())
def test_forward_backward_match_reference(case, code, use_bias, data):
    check_against_reference(case, code, use_bias, data.draw(st.integers(0, 2**31 - 1)))


@pytest.mark.parametrize(
    "case",
    [
        # MobileNet's: 3x3 'same' stride 2 on 8 channels, multiplier 1
        ((2, 7, 6, 8), (3, 3, 8, 1), (2, 2), (1, 1), "same", np.float32),
        # 3x3 multiplier 1, stride 1: the nine-tap path inside, tap by tap at the borders
        ((2, 6, 9, 5), (3, 3, 5, 1), (1, 1), (1, 1), "same", np.float32),
        ((1, 5, 8, 3), (3, 3, 3, 1), (1, 1), (1, 1), "valid", np.float64),
        # stride 1, multiplier 1, an even kernel: the input gradient as the flipped forward
        ((2, 5, 6, 4), (2, 4, 4, 1), (1, 1), (1, 1), "same", np.float64),
        # multiplier 2, dilated, 'same': taps reach past both borders
        ((1, 5, 5, 3), (3, 2, 3, 2), (1, 1), (2, 2), "same", np.float64),
        # 'valid', strides that skip input rows and columns (their gradient is 0)
        ((2, 8, 7, 3), (2, 2, 3, 3), (3, 3), (1, 1), "valid", np.float64),
        # one row: how DepthwiseConv1D runs
        ((3, 1, 9, 4), (1, 3, 4, 1), (1, 2), (1, 1), "same", np.float64),
    ],
)
@pytest.mark.parametrize("parallel", [False, True])
def test_layer_shapes_match_reference(case, parallel, monkeypatch):
    """Each shape on the serial loops and on the parallel shells (from any size)."""
    monkeypatch.setattr(depthwise, "PARALLEL_MIN_TAPS", 0 if parallel else 2**62)
    check_against_reference(case, codes.RELU, True, seed=11)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, strides, dilation, padding",
    [
        ((3, 9, 7, 40), (3, 3, 40, 1), (1, 1), (1, 1), "same"),  # blocks of 16, 16 and 8
        ((2, 11, 6, 17), (3, 3, 17, 1), (2, 2), (1, 1), "same"),
        ((2, 8, 9, 16), (2, 3, 16, 1), (1, 2), (2, 1), "valid"),
        ((1, 5, 5, 33), (5, 5, 33, 1), (1, 1), (1, 1), "same"),  # taps past every border
    ],
)
@pytest.mark.parametrize("band_values", [1, depthwise.BAND_VALUES])
@pytest.mark.parametrize("parallel", [False, True])
def test_float32_kernel_gradient_in_registers_matches_reference(
    x_shape, kernel_shape, strides, dilation, padding, band_values, parallel, monkeypatch
):
    """The float32 kernel gradient by blocks of 16 channels summed in a register
    (``_kernel_lanes_block``), in bands of one output row or of the default size, on one block
    of rows or on blocks that split images."""
    monkeypatch.setattr(depthwise, "BAND_VALUES", band_values)
    monkeypatch.setattr(depthwise, "PARALLEL_MIN_TAPS", 0 if parallel else 2**62)
    rng = np.random.default_rng(5)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(kernel_shape).astype(np.float32)
    assert x_shape[2] * x_shape[3] <= depthwise.LANES_MAX_ROW_VALUES  # the path under test
    out_size, pads, _ = geometry(x_shape, kernel_shape, strides, dilation, padding)
    dz = rng.standard_normal((x_shape[0], *out_size, x_shape[3])).astype(np.float32)
    dk = np.full(k.shape, 0.5, np.float32)
    args = (strides, dilation, pads, dk, None, None, False)
    depthwise.depthwise_conv2d_backward(dz, x, k, *args)
    ref_dk = ref_backward(
        x.astype(np.float64), k, dz.astype(np.float64), strides, dilation, padding
    )[1]
    np.testing.assert_allclose(dk, ref_dk + 0.5, **TOL[np.float32])


@pytest.mark.parametrize(
    "x_shape, kernel_shape, strides, padding",
    [
        ((3, 9, 7, 40), (3, 3, 40, 1), (1, 1), "same"),  # blocks of 16, 16 and 8 channels
        ((2, 6, 5, 3), (3, 3, 3, 1), (1, 1), "valid"),  # fewer channels than a vector's lanes
        ((2, 11, 12, 17), (5, 5, 17, 1), (2, 2), "same"),  # 5x5 strided: taps past every border
        ((1, 4, 4, 33), (5, 5, 33, 1), (1, 1), "same"),  # a kernel wider than the image
        ((2, 13, 9, 16), (5, 5, 16, 1), (3, 2), "valid"),
    ],
)
@pytest.mark.parametrize("code", [codes.LINEAR, codes.RELU, codes.SIGMOID, codes.SOFTMAX])
@pytest.mark.parametrize("parallel", [False, True])
def test_float32_forward_on_vectors_matches_reference(
    x_shape, kernel_shape, strides, padding, code, parallel, monkeypatch
):
    """The float32 3x3 and 5x5 forward of multiplier 1 on SIMD vectors
    (``_forward_simd_rows``): channels in blocks of 16 and part blocks, the relu in registers
    and the other activations after, on one block of rows or on blocks that split images; a
    stride-1 input gradient runs it too (the flipped kernel's forward)."""
    monkeypatch.setattr(depthwise, "PARALLEL_MIN_TAPS", 0 if parallel else 2**62)
    x = np.zeros(x_shape, np.float32)
    k = np.zeros(kernel_shape[:3], np.float32)
    out_size, _, _ = geometry(x_shape, kernel_shape, strides, (1, 1), padding)
    out = np.zeros((x_shape[0], *out_size, x_shape[3]), np.float32)
    assert depthwise._simd_applies(x, k, out, *strides, 1, 1)  # the path under test
    check_against_reference((x_shape, kernel_shape, strides, (1, 1), padding, np.float32), code,
                            code != codes.LINEAR, seed=3)  # fmt: skip


def test_backward_skips_what_is_not_wanted():
    rng = np.random.default_rng(2)
    x, k = rng.standard_normal((2, 5, 5, 3)), rng.standard_normal((3, 3, 3, 1))
    dz = rng.standard_normal((2, 5, 5, 3))
    args = ((1, 1), (1, 1), (1, 1))
    assert depthwise.depthwise_conv2d_backward(dz, x, k, *args, None, None, None, False) is None
    dk = np.zeros_like(k)
    assert depthwise.depthwise_conv2d_backward(dz, x, k, *args, dk, None, None, False) is None
    ref_dk = ref_backward(x, k, dz, (1, 1), (1, 1), "same")[1]
    np.testing.assert_allclose(dk, ref_dk, **TOL[np.float64])


def test_float32_kernels_never_widen_to_double():
    x = np.ones((1, 4, 4, 2), np.float32)
    k, b = np.ones((3, 3, 2), np.float32), np.ones(2, np.float32)  # taps as (kh, kw, C*M)
    out, partial = np.empty((1, 4, 4, 2), np.float32), np.empty((1, 3, 3, 2), np.float32)
    geometry = (1, 1, 1, 1, 1, 1)
    assert float64_ops(depthwise._forward_parallel, x, k, b, *geometry, codes.RELU, out) == []
    assert float64_ops(depthwise._input_parallel, out, k, *geometry, x.copy()) == []
    assert float64_ops(depthwise._kernel_parallel, x, out, *geometry, partial) == []
    assert float64_ops(depthwise._kernel_lanes_parallel, x, out, *geometry, partial) == []
    assert float64_ops(depthwise._forward_rows, x, k, b, *geometry, codes.RELU, out, 0, 4) == []
    simd = (x, k.reshape(-1), 3, b, 1, 1, 1, 1, codes.RELU, out)
    assert float64_ops(depthwise._forward_simd_parallel, *simd, 2) == []


@pytest.mark.parametrize(
    "x_shape, k_shape, strides, code",
    [
        ((1, 12, 12, 32), (3, 3, 32, 1), (1, 1), codes.RELU),  # SIMD rows, one thread
        ((2, 40, 40, 32), (3, 3, 32, 1), (1, 1), codes.LINEAR),  # SIMD rows, threaded
        ((1, 12, 12, 16), (3, 3, 16, 1), (2, 2), codes.TANH),  # the loops
        ((1, 9, 9, 8), (3, 3, 8, 2), (1, 1), codes.SOFTMAX),  # a multiplier
    ],
)
def test_forward_call_computes_each_calls_conv(x_shape, k_shape, strides, code):
    """A depthwise conv's call, made once, convolves each input it is given."""
    rng = np.random.default_rng(3)
    k = rng.standard_normal(k_shape).astype(np.float32)
    b = rng.standard_normal(k_shape[2] * k_shape[3]).astype(np.float32)
    xs = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(3)]
    (oh, ow), pads, _ = geometry(x_shape, k_shape, strides, (1, 1), "same")
    out = np.empty((x_shape[0], oh, ow, k_shape[2] * k_shape[3]), np.float32)
    call = depthwise.depthwise_conv2d_forward_call(xs[0], k, b, strides, (1, 1), pads, code, out)
    for x in xs[1:]:
        want = ref_forward(x.astype(np.float64), k, b, strides, (1, 1), "same", code)
        np.testing.assert_allclose(call(x), want, **TOL[np.float32])
