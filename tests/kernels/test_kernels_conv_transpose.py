"""fastnn.kernels.conv_transpose against plain-numpy references (strided slices of the full
transposed output, cropped or zero-extended)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba_checks import float64_ops

from fastnn.kernels import codes, conv_transpose

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


def full_size(in_size, k, s, d):
    return (in_size - 1) * s + (k - 1) * d + 1


def ref_window(full, top, left, out_h, out_w):
    """full (N,FH,FW,F)'s rows top..top+out_h and columns left..left+out_w, 0 outside."""
    n, fh, fw, f = full.shape
    canvas = np.zeros((n, fh + 2 * out_h + 2 * abs(top), fw + 2 * out_w + 2 * abs(left), f))
    oy, ox = out_h + abs(top), out_w + abs(left)
    canvas[:, oy : oy + fh, ox : ox + fw] = full
    return canvas[:, oy + top : oy + top + out_h, ox + left : ox + left + out_w]


def ref_forward(x, k, b, strides, dilation, crops, out_size, code):
    """The transposed conv by its definition: each input pixel's taps added at their places."""
    n, h, w, _ = x.shape
    kh, kw, f, _ = k.shape
    (sh, sw), (dh, dw) = strides, dilation
    full = np.zeros((n, full_size(h, kh, sh, dh), full_size(w, kw, sw, dw), f))
    for p in range(kh):
        for q in range(kw):
            rows = slice(p * dh, p * dh + (h - 1) * sh + 1, sh)
            cols = slice(q * dw, q * dw + (w - 1) * sw + 1, sw)
            full[:, rows, cols] += x @ k[p, q].T
    z = ref_window(full, *crops, *out_size)
    return ref_activation(z + (0 if b is None else b), code)


def ref_backward(x, k, dz, strides, dilation, crops):
    """(dx, dk, db) of sum(transposed_conv(x, k) * dz), before the activation."""
    n, h, w, _ = x.shape
    kh, kw, f, _ = k.shape
    (sh, sw), (dh, dw) = strides, dilation
    fh, fw = full_size(h, kh, sh, dh), full_size(w, kw, sw, dw)
    top, left = crops
    # the full output's gradient: dz where it was kept, 0 where cropped
    dfull = ref_window(dz, -top, -left, fh, fw)
    dx, dk = np.zeros(x.shape), np.zeros(k.shape)
    for p in range(kh):
        for q in range(kw):
            win = dfull[:, p * dh : p * dh + (h - 1) * sh + 1 : sh]
            win = win[:, :, q * dw : q * dw + (w - 1) * sw + 1 : sw]
            dx += win @ k[p, q]
            dk[p, q] = np.einsum("nhwf,nhwc->fc", win, x)
    return dx, dk, dz.sum(axis=(0, 1, 2))


@st.composite
def transpose_cases(draw):
    """(x shape, kernel shape, strides, dilation, crops, out size, dtype): crops anywhere in the
    kernel's reach, outputs shorter or longer than the full one (Keras's zero-extended sides)."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    c, f = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilated = draw(st.booleans())
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilated else (1, 1)
    eff = [(k - 1) * d + 1 for k, d in zip((kh, kw), dilation)]
    crops = tuple(draw(st.integers(0, e - 1)) for e in eff)
    fulls = [full_size(*a) for a in zip((h, w), (kh, kw), strides, dilation)]
    out_size = tuple(draw(st.integers(1, size - crop + 2)) for size, crop in zip(fulls, crops))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    return (n, h, w, c), (kh, kw, f, c), strides, dilation, crops, out_size, dtype


def check_against_reference(case, code, use_bias, seed, threads=1):
    x_shape, k_shape, strides, dilation, crops, out_size, dtype = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    k = rng.standard_normal(k_shape).astype(dtype)
    b = rng.standard_normal(k_shape[2]).astype(dtype) if use_bias else None
    geometry = (strides, dilation, crops)
    y = conv_transpose.conv2d_transpose_forward(x, k, b, *geometry, out_size, code, threads=threads)
    assert y.dtype == dtype and y.shape == (x_shape[0], *out_size, k_shape[2])
    x64, k64 = x.astype(np.float64), k.astype(np.float64)
    want = ref_forward(x64, k64, b, *geometry, out_size, code)
    np.testing.assert_allclose(y, want, **TOL[dtype])

    dz = rng.standard_normal(y.shape).astype(dtype)
    dk, db = np.full(k.shape, 0.5, dtype), np.full(k_shape[2], 0.25, dtype)
    dx = conv_transpose.conv2d_transpose_backward(dz, x, k, *geometry, dk, db, threads=threads)
    ref_dx, ref_dk, ref_db = ref_backward(x64, k64, dz.astype(np.float64), *geometry)
    assert dx.dtype == dk.dtype == db.dtype == dtype
    np.testing.assert_allclose(dx, ref_dx, **TOL[dtype])
    np.testing.assert_allclose(dk, ref_dk + 0.5, **TOL[dtype])  # added into, not overwritten
    np.testing.assert_allclose(db, ref_db + 0.25, **TOL[dtype])


@settings(max_examples=5, deadline=None)
@given(transpose_cases(), st.sampled_from(CODES), st.booleans(), st.data())
def test_forward_backward_match_reference(case, code, use_bias, data):
    check_against_reference(case, code, use_bias, data.draw(st.integers(0, 2**31 - 1)))


@pytest.mark.parametrize(
    "case",
    [
        # DCGAN's up-sampling: 4x4 stride 2, Keras 'same' (crop 1 of 3, full 2h + 2 -> 2h)
        ((2, 3, 3, 3), (4, 4, 2, 3), (2, 2), (1, 1), (1, 1), (6, 6), np.float64),
        # 'valid' with stride > kernel: zero columns beyond the full output
        ((1, 2, 3, 2), (1, 2, 3, 2), (3, 3), (1, 1), (0, 0), (4, 9), np.float32),
        # dilated, rectangular
        ((2, 4, 3, 1), (2, 3, 2, 1), (1, 1), (2, 2), (1, 2), (5, 5), np.float64),
    ],
)
def test_chunks_of_one_image_on_three_threads_match_reference(case, monkeypatch):
    """Every image its own chunk, chunks on the pool's threads, each with its own partial dk."""
    monkeypatch.setattr(conv_transpose, "CHUNK_ELEMENTS", 1)
    check_against_reference(case, codes.RELU, True, seed=7, threads=3)


def test_backward_skips_what_is_not_wanted():
    rng = np.random.default_rng(3)
    x, k = rng.standard_normal((2, 3, 3, 2)), rng.standard_normal((3, 3, 4, 2))
    geometry = ((2, 2), (1, 1), (1, 1))
    dz = rng.standard_normal((2, 6, 6, 4))
    ref_dx, ref_dk, _ = ref_backward(x, k, dz, *geometry)

    def backward(dk, dx, need_dx):
        return conv_transpose.conv2d_transpose_backward(dz, x, k, *geometry, dk, None, dx, need_dx)

    assert backward(None, None, False) is None
    dk = np.zeros_like(k)
    assert backward(dk, None, False) is None
    np.testing.assert_allclose(dk, ref_dk, **TOL[np.float64])
    dx = np.full(x.shape, np.nan)  # a buffer to reuse: overwritten
    assert backward(None, dx, True) is dx
    np.testing.assert_allclose(dx, ref_dx, **TOL[np.float64])


def test_forward_writes_into_a_buffer_it_is_given():
    rng = np.random.default_rng(4)
    x, k = rng.standard_normal((1, 2, 2, 3)), rng.standard_normal((3, 3, 2, 3))
    out = np.full((1, 4, 4, 2), np.nan)
    y = conv_transpose.conv2d_transpose_forward(
        x, k, None, (2, 2), (1, 1), (1, 1), (4, 4), codes.LINEAR, out
    )
    assert y is out
    want = ref_forward(x, k, None, (2, 2), (1, 1), (1, 1), (4, 4), codes.LINEAR)
    np.testing.assert_allclose(out, want, **TOL[np.float64])


def test_float32_loops_never_widen_to_double():
    y = np.ones((1, 4, 4, 2), np.float32)
    cols = np.ones((4, 18), np.float32)
    geometry = (3, 3, 2, 2, 1, 1, 1, 1, 2, 2)
    assert float64_ops(conv_transpose.scatter_images, cols, *geometry, y, 0, 1) == []
    assert float64_ops(conv_transpose.gather_rows, y, *geometry, cols, 0, 1) == []
