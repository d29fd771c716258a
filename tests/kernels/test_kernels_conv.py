"""fastnn.kernels.conv against plain-numpy references (np.pad + strided slices)."""

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnn.kernels import conv, conv_simd, forms, gemm, matmul_simd, pooling, winograd
from fastnn.kernels.activations import LINEAR, RELU, SIGMOID, SOFTMAX, TANH
from fastnn.kernels.codes import ELU, EPILOGUE, LOG_SOFTMAX, RELU6

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=1e-4, atol=1e-4), np.float64: dict(rtol=1e-10, atol=1e-12)}


# ---------------------------------------------------------------- references


def ref_pads(h, w, kh, kw, sh, sw, padding):
    oh, pt, pb = conv.padding_amounts(h, kh, sh, padding)
    ow, pl, pr = conv.padding_amounts(w, kw, sw, padding)
    return oh, ow, ((0, 0), (pt, pb), (pl, pr), (0, 0))


def ref_windows(x, kh, kw, sh, sw, padding):
    """Yield (p, q, slice of padded x seen by kernel tap (p, q)) of shape (N, oh, ow, C)."""
    _, h, w, _ = x.shape
    oh, ow, pads = ref_pads(h, w, kh, kw, sh, sw, padding)
    xp = np.pad(x, pads)
    for p in range(kh):
        for q in range(kw):
            yield p, q, xp[:, p : p + sh * oh : sh, q : q + sw * ow : sw, :]


def ref_im2col(x, kh, kw, sh, sw, padding):
    taps = [win for _, _, win in ref_windows(x, kh, kw, sh, sw, padding)]
    n, oh, ow, c = taps[0].shape
    return np.stack(taps, axis=3).reshape(n * oh * ow, kh * kw * c)


def ref_activation(z, code):
    if code == RELU:
        return np.maximum(z, 0)
    if code == SIGMOID:
        return 1 / (1 + np.exp(-z))
    if code == TANH:
        return np.tanh(z)
    if code == SOFTMAX:
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if code == ELU:
        return np.where(z > 0, z, np.expm1(z))
    if code == LOG_SOFTMAX:
        shifted = z - z.max(axis=-1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return z


def ref_conv(x, k, b, strides, padding, code=LINEAR):
    kh, kw, _, f = k.shape
    y = 0
    for p, q, win in ref_windows(x, kh, kw, *strides, padding):
        y = y + win @ k[p, q]
    if b is not None:
        y = y + b
    return ref_activation(y, code)


def ref_conv_backward(x, k, dy, strides, padding):
    """(dx, dk, db) of sum(conv(x, k) * dy)."""
    n, h, w, c = x.shape
    kh, kw, _, f = k.shape
    sh, sw = strides
    oh, ow, pads = ref_pads(h, w, kh, kw, sh, sw, padding)
    xp = np.pad(x, pads)
    dxp = np.zeros_like(xp)
    dk = np.zeros_like(k)
    for p in range(kh):
        for q in range(kw):
            win = xp[:, p : p + sh * oh : sh, q : q + sw * ow : sw, :]
            dk[p, q] = np.einsum("nhwc,nhwf->cf", win, dy)
            dxp[:, p : p + sh * oh : sh, q : q + sw * ow : sw, :] += dy @ k[p, q].T
    (pt, _), (pl, _) = pads[1], pads[2]
    return dxp[:, pt : pt + h, pl : pl + w, :], dk, dy.sum(axis=(0, 1, 2))


# ---------------------------------------------------------------- strategies


@st.composite
def conv_cases(draw):
    """(x_shape, (kh, kw), (sh, sw), padding, dtype) with a non-empty output."""
    padding = draw(st.sampled_from(["valid", "same"]))
    n = draw(st.integers(1, 3))
    h = draw(st.integers(1, 9))
    w = draw(st.integers(1, 9))
    c = draw(st.sampled_from([1, 2, 3, 4, 8, 11]))  # 8+: im2col copies whole runs
    top = 4 if padding == "same" else 1
    kh = draw(st.integers(1, min(4, max(h, top))))
    kw = draw(st.integers(1, min(4, max(w, top))))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dtype = draw(st.sampled_from(DTYPES))
    return (n, h, w, c), (kh, kw), strides, padding, dtype


def _data(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize(
    "in_size, k, stride, padding, expected",
    [
        (4, 2, 2, "same", (2, 0, 0)),  # fits exactly: no padding at all
        (5, 4, 2, "same", (3, 1, 2)),  # odd total: the extra row goes after (bottom/right)
        (5, 2, 2, "same", (3, 0, 1)),
        (7, 3, 1, "same", (7, 1, 1)),
        (1, 4, 3, "same", (1, 1, 2)),
        (7, 3, 2, "valid", (3, 0, 0)),
        (4, 4, 1, "valid", (1, 0, 0)),
    ],
)
def test_padding_amounts_follow_tensorflow(in_size, k, stride, padding, expected):
    assert conv.padding_amounts(in_size, k, stride, padding) == expected


def test_padding_amounts_valid_too_small_returns_nonpositive():
    assert conv.padding_amounts(2, 3, 1, "valid")[0] <= 0
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        conv.padding_amounts(4, 2, 1, "full")


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [(1, 1), (2, 1), (1, 3)])
def test_im2col_3x3_rgb_windows_match_reference(strides, padding):
    """3x3 windows on 3 channels (a first layer on RGB images) copy their rows unrolled."""
    x = _data(np.random.default_rng(5), (2, 7, 8, 3), np.float32)
    oh, ow, pt, pl = conv.conv_geometry(x.shape, (3, 3), strides, padding)
    cols = np.full((2 * oh * ow, 27), np.nan, dtype=np.float32)
    conv.im2col(x, 3, 3, *strides, pt, pl, oh, ow, cols)
    np.testing.assert_array_equal(cols, ref_im2col(x, 3, 3, *strides, padding))


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.integers(0, 2**31 - 1))
def test_im2col_col2im_match_reference(case, seed):
    x_shape, (kh, kw), (sh, sw), padding, dtype = case
    rng = np.random.default_rng(seed)
    x = _data(rng, x_shape, dtype)
    oh, ow, pt, pl = conv.conv_geometry(x_shape, (kh, kw), (sh, sw), padding)
    cols = np.full((x_shape[0] * oh * ow, kh * kw * x_shape[3]), np.nan, dtype=dtype)
    conv.im2col(x, kh, kw, sh, sw, pt, pl, oh, ow, cols)
    np.testing.assert_array_equal(cols, ref_im2col(x, kh, kw, sh, sw, padding))

    # col2im is im2col's adjoint: <im2col(x), d> == <x, col2im(d)>, and it overwrites dx.
    d = _data(rng, cols.shape, dtype)
    dx = np.full(x_shape, np.nan, dtype=dtype)
    conv.col2im(d, kh, kw, sh, sw, pt, pl, oh, ow, dx)
    assert dx.dtype == dtype
    x64, d64 = x.astype(np.float64), d.astype(np.float64)
    lhs = np.sum(ref_im2col(x64, kh, kw, sh, sw, padding) * d64)
    np.testing.assert_allclose(lhs, np.sum(x64 * dx), **TOL[dtype])


PATHS = ["im2col", "direct", "winograd", "rows", "simd"]
POOLED_PATHS = ["im2col", "direct", "winograd", "simd"]
# The epilogue's codes (codes.EPILOGUE) and two that the wrappers run as a pass of their own.
CODES = [
    LINEAR,
    RELU,
    SIGMOID,
    TANH,
    SOFTMAX,
    ELU,
    LOG_SOFTMAX,
]  # a conv fused with a max pool never runs along the rows


@contextlib.contextmanager
def conv_path(path):
    """Yield the wrappers' extra arguments for a path: im2col + GEMM (chunks of one output row),
    the direct kernels for any taps, Winograd for any 3x3 stride-1 kernel (chunks of 16
    tiles; others take im2col), the along-the-row kernels for any unpooled stride-1 kernel
    but 1x1 (others take im2col), or the SIMD forward for any float32 conv (fused with a pool,
    in chunks of one image) and its gradients where the plan takes SIMD for them (others by
    im2col), each on 3 threads in blocks of as little as one row or image (blocks of uneven
    sizes run at once on the pool)."""
    names = (conv, "DIRECT_MAX_TAPS"), (conv, "TILE_ROWS"), (gemm, "MIN_ROWS_PER_BLOCK")
    names += (winograd, "MIN_CHANNELS"), (winograd, "CHUNK_BYTES")
    names += (conv, "FEW_FILTERS"), (conv, "FEW_CHANNELS")
    names += tuple((conv, name) for name in SIMD_LIMITS) + ((conv, "SIMD_MIN_FLOPS_PER_THREAD"),)
    names += ((conv_simd, "MIN_ROWS_PER_BLOCK"), (conv, "SIMD_POOL_CHUNK_PIXELS"))
    saved = [getattr(module, name) for module, name in names]
    for name, (every, none) in SIMD_LIMITS.items():
        setattr(conv, name, every if path == "simd" else none)
    conv.SIMD_MIN_FLOPS_PER_THREAD = conv_simd.MIN_ROWS_PER_BLOCK = conv.SIMD_POOL_CHUNK_PIXELS = 1
    conv.DIRECT_MAX_TAPS = 10**9 if path == "direct" else 0
    conv.FEW_FILTERS = conv.FEW_CHANNELS = 10**9 if path == "rows" else 0
    conv.TILE_ROWS = 1  # chunks of one output row: every chunk boundary is exercised
    gemm.MIN_ROWS_PER_BLOCK = 1
    winograd.MIN_CHANNELS = 1 if path in ("winograd", "simd") else 10**9  # simd: its dx then
    winograd.CHUNK_BYTES = 1  # the fewest tiles a chunk holds
    try:
        yield {"threads": 3}
    finally:
        for (module, name), value in zip(names, saved):
            setattr(module, name, value)


# The plan's SIMD limits, as (every conv SIMD, none SIMD): gradients where the plan says.
SIMD_LIMITS = {
    "SIMD_MAX_TAPS": (10**9, 0),
    "SIMD_MAX_WINOGRAD_CHANNELS": (10**9, 0),
    "SIMD_MAX_WINOGRAD_FILTERS": (10**9, -1),
    "SIMD_MAX_WINOGRAD_FLOPS": (10**18, 0),
    "SIMD_MAX_ROW_TAPS": (10**9, 0),
    "SIMD_MIN_ROW_PIXELS": (0, 10**9),
    "SIMD_LONG_ROW_PIXELS": (0, 10**9),
    "SIMD_MAX_POINTWISE_CHANNELS": (10**9, 0),
    "SIMD_MIN_POINTWISE_FILTERS": (0, 10**9),
    "SIMD_MIN_POINTWISE_ROWS": (0, 10**9),
    "SIMD_MIN_FILTERS": (0, 10**9),
    "SIMD_MIN_INPUT_GRADIENT_CHANNELS": (0, 10**9),
    "SIMD_MIN_STRIDED_GRADIENT_PIXELS": (0, 10**9),
    "SIMD_GRADIENTS": (True, False),
}


def test_simd_limits_cover_every_simd_planning_constant():
    """A new SIMD_ threshold must be in SIMD_LIMITS, or the other paths' tests run SIMD."""
    planning = {name for name in dir(conv) if name.startswith("SIMD_")}
    assert planning - {"SIMD_POOL_CHUNK_PIXELS", "SIMD_MIN_FLOPS_PER_THREAD"} == set(SIMD_LIMITS)


@contextlib.contextmanager
def without_rows():
    """Plans as if no conv had few filters and SIMD ran no forward: for the tests of the direct
    kernels' own rows."""
    names = ("FEW_FILTERS", *SIMD_LIMITS)
    saved = [getattr(conv, name) for name in names]
    conv.FEW_FILTERS = 0
    for name, (_, none) in SIMD_LIMITS.items():
        setattr(conv, name, none)
    try:
        yield
    finally:
        for name, value in zip(names, saved):
            setattr(conv, name, value)


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.integers(1, 5), st.sampled_from(CODES), st.booleans(), st.data())
@pytest.mark.parametrize("path", PATHS)
def test_conv2d_forward_backward_match_reference(path, case, filters, code, use_bias, data):
    with conv_path(path) as options:
        check_conv2d_against_reference(case, filters, code, use_bias, data, options)


def check_conv2d_against_reference(case, filters, code, use_bias, data, options):
    x_shape, (kh, kw), strides, padding, dtype = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (kh, kw, x_shape[3], filters), dtype)
    b = _data(rng, (filters,), dtype) if use_bias else None

    y = conv.conv2d_forward(x, k, b, strides, padding, code, **options)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref_conv(x, k, b, strides, padding, code), **TOL[dtype])

    dz = _data(rng, y.shape, dtype)
    dk = np.ones_like(k)  # the kernel adds into the gradients: start from ones
    db = np.ones(filters, dtype=dtype) if use_bias else None
    dx = conv.conv2d_backward(dz, x, k, strides, padding, dk, db, **options)
    rdx, rdk, rdb = ref_conv_backward(x, k, dz, strides, padding)
    assert dx.dtype == dtype and dk.dtype == dtype
    np.testing.assert_allclose(dx, rdx, **TOL[dtype])
    np.testing.assert_allclose(dk, rdk + 1, **TOL[dtype])
    if use_bias:
        assert db.dtype == dtype
        np.testing.assert_allclose(db, rdb + 1, **TOL[dtype])


@settings(max_examples=15, deadline=None)
@given(
    conv_cases(),
    st.integers(1, 5),
    st.sampled_from(list(EPILOGUE)),  # the wrappers run the other codes as a pass of their own
    st.data(),
)
def test_rows_kernels_match_reference_at_any_stride(case, filters, code, data):
    """The along-the-row kernels on their own, strided too (the plan runs them at stride 1)."""
    x_shape, (kh, kw), strides, padding, dtype = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (kh, kw, x_shape[3], filters), dtype)
    b = _data(rng, (filters,), dtype)
    oh, ow, pad_top, pad_left = conv.conv_geometry(x_shape, (kh, kw), strides, padding)
    y = np.empty((x_shape[0], oh, ow, filters), dtype=dtype)
    conv.conv2d_rows(x, k, b, *strides, pad_top, pad_left, code, y)
    np.testing.assert_allclose(y, ref_conv(x, k, b, strides, padding, code), **TOL[dtype])
    dz = _data(rng, y.shape, dtype)
    partial = np.empty((3, *k.shape), dtype=dtype)
    conv.conv2d_rows_dkernel(x, dz, *strides, pad_top, pad_left, partial)
    _, rdk, _ = ref_conv_backward(x, k, dz, strides, padding)
    np.testing.assert_allclose(partial.sum(axis=0), rdk, **TOL[dtype])


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 3),
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    filters=st.integers(1, 9),
    strides=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.sampled_from(["valid", "same"]),
    code=st.sampled_from([LINEAR, RELU, TANH]),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_direct_3x3_grey_kernels_match_reference(
    n, h, w, filters, strides, padding, code, dtype, seed
):
    """The 3x3 one-channel kernel (a first layer on grey images) has its own unrolled direct
    rows, forward and for the kernel gradient (which run from FEW_FILTERS filters, or strided)."""
    rng = np.random.default_rng(seed)
    x, k = _data(rng, (n, h, w, 1), dtype), _data(rng, (3, 3, 1, filters), dtype)
    b = _data(rng, (filters,), dtype)
    with without_rows():
        plan = conv.plan_conv2d(x.shape, k.shape, strides, padding)
        assert plan.forward == plan.dkernel == conv.DIRECT
        y = conv.conv2d_forward(x, k, b, strides, padding, code)
        dz = _data(rng, y.shape, dtype)
        dk = np.zeros_like(k)
        assert conv.conv2d_backward(dz, x, k, strides, padding, dk, None, need_dx=False) is None
    np.testing.assert_allclose(y, ref_conv(x, k, b, strides, padding, code), **TOL[dtype])
    np.testing.assert_allclose(dk, ref_conv_backward(x, k, dz, strides, padding)[1], **TOL[dtype])


def ref_max_pool_2x2(y):
    """2x2 stride-2 'valid' max pooling of y (N,H,W,C): a last odd row or column is dropped."""
    n, h, w, c = y.shape
    y = y[:, : h // 2 * 2, : w // 2 * 2]
    return y.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.integers(1, 5), st.sampled_from(CODES), st.booleans(), st.data())
@pytest.mark.parametrize("path", POOLED_PATHS)
def test_conv2d_forward_max_pool_matches_reference(path, case, filters, code, use_bias, data):
    """The inference-only fused conv + MaxPooling2D(2), odd and too-small outputs included."""
    x_shape, (kh, kw), strides, padding, dtype = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (kh, kw, x_shape[3], filters), dtype)
    b = _data(rng, (filters,), dtype) if use_bias else None
    with conv_path(path) as options:
        pooled = conv.conv2d_forward_max_pool(x, k, b, strides, padding, code, **options)
    assert pooled.dtype == dtype
    expected = ref_max_pool_2x2(ref_conv(x, k, b, strides, padding, code))
    np.testing.assert_allclose(pooled, expected, **TOL[dtype])


def ref_average_pool_2x2(y):
    """2x2 stride-2 'valid' average pooling of y (N,H,W,C): a last odd row or column is dropped."""
    n, h, w, c = y.shape
    y = y[:, : h // 2 * 2, : w // 2 * 2]
    return y.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.integers(1, 5), st.sampled_from(CODES), st.booleans(), st.data())
@pytest.mark.parametrize("path", POOLED_PATHS)
def test_conv2d_forward_average_pool_matches_reference(path, case, filters, code, use_bias, data):
    """The inference-only fused conv + AveragePooling2D(2) (SIMD in bands, the direct kernels a
    pair of rows at a time, the conv then the pool elsewhere), for any activation, odd and
    too-small outputs included, into a given buffer too."""
    x_shape, (kh, kw), strides, padding, dtype = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (kh, kw, x_shape[3], filters), dtype)
    b = _data(rng, (filters,), dtype) if use_bias else None
    expected = ref_average_pool_2x2(ref_conv(x, k, b, strides, padding, code))
    out = np.full(expected.shape, np.nan, dtype) if data.draw(st.booleans()) else None
    with conv_path(path) as options:
        pooled = conv.conv2d_forward_average_pool(x, k, b, strides, padding, code, out, **options)
    assert pooled.dtype == dtype and (out is None or pooled is out)
    np.testing.assert_allclose(pooled, expected, **TOL[dtype])


@settings(max_examples=25, deadline=None)
@given(conv_cases(), st.integers(1, 5), st.sampled_from([LINEAR, RELU, TANH]), st.data())
@pytest.mark.parametrize("path", POOLED_PATHS)
def test_conv2d_max_pooled_training_matches_reference(path, case, filters, code, data):
    """Training through a fused conv + MaxPooling2D(2): the forward's codes mark a maximum of
    each window, and the backward from the gradient at those maxima is the reference conv's
    backward of that gradient unpooled (0 elsewhere), for each path, with and without dx."""
    check_max_pooled_training(path, case, filters, code, data)


def check_max_pooled_training(path, case, filters, code, data):
    x_shape, (kh, kw), strides, padding, dtype = case
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (kh, kw, x_shape[3], filters), dtype)
    b = _data(rng, (filters,), dtype) if data.draw(st.booleans()) else None
    y = ref_conv(x, k, b, strides, padding, code)
    expected = ref_max_pool_2x2(y)
    codes = np.full(expected.shape, 9, np.uint8)
    need_dx = data.draw(st.booleans())
    with conv_path(path) as options:
        pooled = conv.conv2d_forward_max_pool(
            x, k, b, strides, padding, code, codes=codes, **options
        )
        np.testing.assert_allclose(pooled, expected, **TOL[dtype])
        n, ph, pw, _ = pooled.shape
        i, j = np.arange(ph)[None, :, None, None], np.arange(pw)[None, None, :, None]
        at = (np.arange(n)[:, None, None, None], 2 * i + codes // 2, 2 * j + codes % 2)
        picked = y[(*at, np.arange(filters))]
        np.testing.assert_allclose(picked, expected, **TOL[dtype])  # codes < 4, at a maximum

        grad = _data(rng, pooled.shape, dtype)
        dk = np.ones_like(k)  # the kernel adds into the gradients: start from ones
        db = None if b is None else np.ones_like(b)
        dx = conv.conv2d_backward_max_pooled(
            grad, codes, x, k, strides, padding, dk, db, need_dx=need_dx, **options
        )
    dz = np.zeros(y.shape, dtype)
    dz[(*at, np.arange(filters))] = grad
    rdx, rdk, rdb = ref_conv_backward(x, k, dz, strides, padding)
    np.testing.assert_allclose(dk, rdk + 1, **TOL[dtype])
    if b is not None:
        np.testing.assert_allclose(db, rdb + 1, **TOL[dtype])
    if need_dx:
        assert dx.dtype == dtype
        np.testing.assert_allclose(dx, rdx, **TOL[dtype])
    else:
        assert dx is None


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 3),
    hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    channels=st.sampled_from([1, 3]),
    filters=st.integers(1, 9),
    padding=st.sampled_from(["valid", "same"]),
    code=st.sampled_from([LINEAR, RELU, TANH]),
    use_bias=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    seed=st.integers(0, 2**16),
)
def test_direct_3x3_forward_and_its_max_pool_match_reference(
    n, hw, channels, filters, padding, code, use_bias, dtype, seed
):
    """The unrolled 3x3 stride-1 rows on grey and RGB images (a model's first layer), windows
    inside the image and across its border, alone and under the fused max pool (into a reused
    buffer). On RGB only the forward runs direct."""
    if padding == "valid" and min(hw) < 3:
        return  # no output
    rng = np.random.default_rng(seed)
    x, k = _data(rng, (n, *hw, channels), dtype), _data(rng, (3, 3, channels, filters), dtype)
    b = _data(rng, (filters,), dtype) if use_bias else None
    with without_rows():
        plan = conv.plan_conv2d(x.shape, k.shape, (1, 1), padding)
        y = conv.conv2d_forward(x, k, b, (1, 1), padding, code)
    assert plan.forward == conv.DIRECT
    assert plan.dkernel == (conv.DIRECT if channels == 1 else conv.IM2COL)
    expected = ref_conv(x, k, b, (1, 1), padding, code)
    np.testing.assert_allclose(y, expected, **TOL[dtype])
    out = np.full(ref_max_pool_2x2(expected).shape, np.nan, dtype)
    assert conv.conv2d_forward_max_pool(x, k, b, (1, 1), padding, code, out) is out
    np.testing.assert_allclose(out, ref_max_pool_2x2(expected), **TOL[dtype])


@st.composite
def quad_cases(draw):
    """(x_shape, (3, 3), (1, 1), padding, dtype) on one or three channels: a model's first layer
    on grey or RGB images, whose fused max pool has rows of its own (four outputs from one 4x4
    patch), odd sizes and too-small outputs too."""
    padding = draw(st.sampled_from(["valid", "same"]))
    low = 3 if padding == "valid" else 1
    shape = (draw(st.integers(1, 3)), draw(st.integers(low, 10)), draw(st.integers(low, 10)))
    channels = draw(st.sampled_from([1, 3]))
    return (*shape, channels), (3, 3), (1, 1), padding, draw(st.sampled_from(DTYPES))


@settings(max_examples=40, deadline=None)
@given(quad_cases(), st.integers(1, 9), st.sampled_from([LINEAR, RELU]), st.data())
def test_direct_3x3_max_pooled_training_matches_reference(case, filters, code, data):
    """The grey and RGB 3x3 pool rows forward with codes, and their kernel gradients from the
    pooled gradient (RGB: an input gradient too), inside and across the border."""
    check_max_pooled_training("direct", case, filters, code, data)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("code", [LINEAR, RELU])
def test_direct_3x3_pool_codes_pick_the_first_maximum_on_ties(code, channels):
    """On small integers the conv is exact and windows tie often (relu's zeros too): the codes
    then point where the MaxPooling2D layer's argmax does, the first maximum."""
    rng = np.random.default_rng(6)
    x = rng.integers(-1, 2, (2, 9, 8, channels)).astype(np.float32)
    k = rng.integers(-1, 2, (3, 3, channels, 5)).astype(np.float32)
    y = conv.conv2d_forward(x, k, None, (1, 1), "same", code)
    codes = np.full((2, 4, 4, 5), 9, np.uint8)
    pooled = conv.conv2d_forward_max_pool(x, k, None, (1, 1), "same", code, codes=codes)
    out, argmax = np.empty(codes.shape, np.float32), np.empty(codes.shape, np.int32)
    pooling.maxpool2d_forward(y, 2, 2, 2, 2, 0, 0, out, argmax)
    rows, cols = np.divmod(argmax, 8)
    expected = 2 * (rows - 2 * np.arange(4)[:, None, None]) + cols - 2 * np.arange(4)[:, None]
    np.testing.assert_array_equal(pooled, out)
    assert len(np.unique(expected)) == 4
    np.testing.assert_array_equal(codes, expected)


@pytest.mark.parametrize("kernel_shape", [(1, 1, 5, 6), (3, 2, 5, 6)])  # pointwise, im2col
def test_conv2d_reuses_the_buffers_it_is_given(kernel_shape):
    rng = np.random.default_rng(0)
    x = _data(rng, (2, 5, 4, 5), np.float32)
    k = _data(rng, kernel_shape, np.float32)
    out = np.empty((2, 5, 4, 6), np.float32)
    y = conv.conv2d_forward(x, k, None, (1, 1), "same", RELU, out=out)
    assert y is out
    np.testing.assert_allclose(y, ref_conv(x, k, None, (1, 1), "same", RELU), rtol=1e-5)
    dk = np.zeros_like(k)
    dx = np.empty_like(x)
    assert conv.conv2d_backward(y, x, k, (1, 1), "same", dk, None, dx=dx) is dx
    assert conv.conv2d_backward(y, x, k, (1, 1), "same", dk, None, need_dx=False) is None
    assert conv.conv2d_backward(y, x, k, (1, 1), "same", None, None, need_dx=False) is None


@pytest.mark.parametrize("kernel_shape, strides", [((1, 1, 3, 4), (1, 1)), ((3, 2, 3, 4), (2, 1))])
def test_conv2d_on_threads_matches_one_thread(kernel_shape, strides, monkeypatch):
    """Blocks of rows on the pool's threads (products split too) give one thread's results."""
    monkeypatch.setattr(conv, "TILE_ROWS", 3)
    monkeypatch.setattr(gemm, "MIN_ROWS_PER_BLOCK", 1)
    monkeypatch.setattr(gemm, "MIN_FLOPS_PER_BLOCK", 1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 4, 3))
    k = rng.standard_normal(kernel_shape)
    results = []
    for threads in (1, 3):
        y = conv.conv2d_forward(x, k, None, strides, "same", LINEAR, threads=threads)
        dz = np.sin(np.arange(y.size)).reshape(y.shape)
        dk = np.zeros_like(k)
        dx = conv.conv2d_backward(dz, x, k, strides, "same", dk, None, threads=threads)
        results.append((y, dk, dx))
    for one, three in zip(*results):
        np.testing.assert_allclose(three, one, rtol=1e-12, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(conv_cases(), st.integers(1, 4), st.tuples(st.integers(1, 3), st.integers(1, 3)), st.data())
def test_dilated_conv2d_matches_the_conv_of_the_zero_dilated_kernel(case, filters, dilation, data):
    """Taps ``dilation`` apart equal a kernel with zeros between its taps (stride 1)."""
    x_shape, (kh, kw), _, padding, dtype = case
    span = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    if padding == "valid" and (span[0] > x_shape[1] or span[1] > x_shape[2]):
        return  # no output
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (kh, kw, x_shape[3], filters), dtype)
    b = _data(rng, (filters,), dtype)
    spread = np.zeros((*span, x_shape[3], filters), dtype=dtype)
    spread[:: dilation[0], :: dilation[1]] = k
    y = conv.conv2d_forward(x, k, b, (1, 1), padding, RELU, dilation=dilation)
    np.testing.assert_allclose(y, ref_conv(x, spread, b, (1, 1), padding, RELU), **TOL[dtype])
    dz = _data(rng, y.shape, dtype)
    dk, db = np.zeros_like(k), np.zeros_like(b)
    dx = conv.conv2d_backward(dz, x, k, (1, 1), padding, dk, db, dilation=dilation)
    rdx, rdk, rdb = ref_conv_backward(x, spread, dz, (1, 1), padding)
    np.testing.assert_allclose(dx, rdx, **TOL[dtype])
    np.testing.assert_allclose(dk, rdk[:: dilation[0], :: dilation[1]], **TOL[dtype])
    np.testing.assert_allclose(db, rdb, **TOL[dtype])


@settings(max_examples=15, deadline=None)
@given(conv_cases(), st.integers(1, 3), st.integers(1, 3), st.data())
def test_grouped_conv2d_matches_the_conv_of_the_block_diagonal_kernel(case, groups, per, data):
    """Groups of channels with their own filters equal one conv whose kernel is zero between
    a group's channels and another group's filters."""
    x_shape, (kh, kw), strides, padding, dtype = case
    x_shape = (*x_shape[:3], 2 * groups)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1)))
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (kh, kw, 2, per * groups), dtype)
    b = _data(rng, (per * groups,), dtype)
    full = np.zeros((kh, kw, 2 * groups, per * groups), dtype=dtype)
    for g in range(groups):
        full[:, :, 2 * g : 2 * g + 2, per * g : per * (g + 1)] = k[..., per * g : per * (g + 1)]
    y = conv.conv2d_forward(x, k, b, strides, padding, SOFTMAX, groups=groups)
    np.testing.assert_allclose(y, ref_conv(x, full, b, strides, padding, SOFTMAX), **TOL[dtype])
    dz = _data(rng, y.shape, dtype)
    dk, db = np.zeros_like(k), np.zeros_like(b)
    dx = conv.conv2d_backward(dz, x, k, strides, padding, dk, db, groups=groups)
    rdx, rdk, rdb = ref_conv_backward(x, full, dz, strides, padding)
    np.testing.assert_allclose(dx, rdx, **TOL[dtype])
    for g in range(groups):
        block = rdk[:, :, 2 * g : 2 * g + 2, per * g : per * (g + 1)]
        np.testing.assert_allclose(dk[..., per * g : per * (g + 1)], block, **TOL[dtype])
    np.testing.assert_allclose(db, rdb, **TOL[dtype])


def test_conv2d_too_small_input_raises():
    x = np.zeros((1, 2, 2, 1), np.float32)
    k = np.zeros((3, 3, 1, 1), np.float32)
    with pytest.raises(ValueError, match="does not fit input"):
        conv.conv2d_forward(x, k, None, (1, 1), "valid", LINEAR)


@pytest.mark.parametrize(
    "h, k, s, expected_pads",
    [(4, 2, 2, (0, 0)), (5, 4, 2, (1, 2)), (6, 3, 2, (0, 1))],
)
@pytest.mark.parametrize("path", PATHS)
def test_same_padding_asymmetry_matches_explicit_pad(path, h, k, s, expected_pads):
    """Convolving with 'same' equals 'valid' on an input padded (before, after) as TF does."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, h, h, 2))
    w = rng.standard_normal((k, k, 2, 3))
    before, after = expected_pads
    xp = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
    with conv_path(path) as options:
        y_same = conv.conv2d_forward(x, w, None, (s, s), "same", LINEAR, **options)
        y_valid = conv.conv2d_forward(xp, w, None, (s, s), "valid", LINEAR, **options)
    assert y_same.shape[1] == -(-h // s)
    np.testing.assert_allclose(y_same, y_valid, rtol=1e-12)


@pytest.mark.parametrize("path", PATHS)
def test_conv2d_backward_matches_finite_differences(path):
    with conv_path(path) as options:
        check_conv2d_gradients_by_finite_differences(options)


def check_conv2d_gradients_by_finite_differences(options):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 4, 2))
    k = rng.standard_normal((2, 3, 2, 3))
    b = rng.standard_normal(3)
    strides, padding = (2, 1), "same"
    y = conv.conv2d_forward(x, k, b, strides, padding, LINEAR)
    r = rng.standard_normal(y.shape)

    def loss():
        return np.sum(conv.conv2d_forward(x, k, b, strides, padding, LINEAR) * r)

    dk, db = np.zeros_like(k), np.zeros_like(b)
    dx = conv.conv2d_backward(r, x, k, strides, padding, dk, db, **options)
    eps = 1e-6
    for param, grad in ((x, dx), (k, dk), (b, db)):
        num = np.zeros_like(param)
        flat, nflat = param.reshape(-1), num.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            nflat[i] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    "x_shape, strides, padding",
    [
        ((2, 7, 8, 3), (2, 2), "same"),
        ((1, 9, 5, 16), (3, 2), "valid"),
        ((2, 6, 6, 20), (2, 1), "same"),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_1x1_runs_as_the_pointwise_conv_of_the_pixels_it_reads(
    x_shape, strides, padding, dtype
):
    """Forward, backward and the fused max pool of a strided 1x1 kernel (ResNet's shortcut)."""
    rng = np.random.default_rng(1)
    x = _data(rng, x_shape, dtype)
    k = _data(rng, (1, 1, x_shape[3], 17), dtype)
    b = _data(rng, (17,), dtype)
    assert conv.plan_conv2d(x_shape, k.shape, strides, padding, dtype=dtype).pad_top == 0
    y = conv.conv2d_forward(x, k, b, strides, padding, RELU, threads=2)
    np.testing.assert_allclose(y, ref_conv(x, k, b, strides, padding, RELU), **TOL[dtype])
    dy = _data(rng, y.shape, dtype)
    dk, db = np.zeros_like(k), np.zeros_like(b)
    dx = conv.conv2d_backward(dy, x, k, strides, padding, dk, db, threads=2)
    for ours, ref in zip((dx, dk, db), ref_conv_backward(x, k, dy, strides, padding)):
        np.testing.assert_allclose(ours, ref, **TOL[dtype])
    pooled = conv.conv2d_forward_max_pool(x, k, b, strides, padding, LINEAR, threads=2)
    expected = ref_max_pool_2x2(ref_conv(x, k, b, strides, padding))
    np.testing.assert_allclose(pooled, expected, **TOL[dtype])


@settings(max_examples=6, deadline=None)
@given(
    st.sampled_from([((2, 7, 8, 3), (2, 2), "same"), ((1, 9, 6, 16), (3, 2), "valid")]), st.data()
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_1x1_max_pooled_training_matches_reference(dtype, shapes, data):
    x_shape, strides, padding = shapes
    check_max_pooled_training("simd", (x_shape, (1, 1), strides, padding, dtype), 5, RELU, data)


@pytest.mark.parametrize(
    "shape, kernel, strides, padding, dtype",
    [
        ((5, 11, 9, 8), (3, 3, 8, 16), (1, 1), "same", np.float32),  # SIMD, by rows
        ((3, 12, 12, 6), (3, 3, 6, 40), (2, 2), "same", np.float32),  # strided, 2 panels
        ((2, 9, 9, 3), (5, 5, 3, 16), (1, 1), "valid", np.float32),
        ((4, 6, 6, 16), (1, 1, 16, 32), (1, 1), "valid", np.float32),  # 1x1: a pass over y
        ((2, 7, 7, 3), (3, 3, 3, 4), (1, 1), "same", np.float64),  # float64: a pass over y
    ],
)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_forward_moments_are_the_outputs_mean_and_variance(
    shape, kernel, strides, padding, dtype, threads
):
    """``conv2d_forward_moments``: y as ``conv2d_forward`` makes it, and each filter's mean and
    biased variance over y's pixels, on inputs whose mean dwarfs their spread."""
    rng = np.random.default_rng(5)
    x = rng.normal(50, 1, shape).astype(dtype)
    k = rng.normal(0, 0.3, kernel).astype(dtype)
    moments = np.empty((2, kernel[3]), dtype)
    y = conv.conv2d_forward_moments(x, k, None, strides, padding, moments, threads=threads)
    want = conv.conv2d_forward(x, k, None, strides, padding, LINEAR, threads=threads)
    np.testing.assert_array_equal(y, want)
    pixels = want.reshape(-1, kernel[3]).astype(np.float64)
    np.testing.assert_allclose(moments[0], pixels.mean(0), rtol=1e-6)
    np.testing.assert_allclose(moments[1], pixels.var(0), rtol=1e-4)


@pytest.mark.parametrize("code", [LINEAR, RELU, SIGMOID, SOFTMAX])
@pytest.mark.parametrize("x_shape, filters", [((1, 4, 4, 40), 24), ((3, 2, 5, 16), 130)])
def test_kept_pointwise_conv_runs_on_simd_products_at_any_size(x_shape, filters, code, monkeypatch):
    """A float32 1x1 conv whose kernel is kept packed (``forms.Forms``: inference) runs its
    product on the SIMD micro-kernels however few its pixels, the packing made once."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal((1, 1, x_shape[3], filters)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    assert conv.plan_conv2d(x.shape, k.shape, (1, 1), "valid").forward == conv.POINTWISE
    kept, products, product = forms.Forms(k), [], matmul_simd.matmul_call

    def recorded(*args, **kwargs):
        products.append(args[1])  # the panels
        return product(*args, **kwargs)

    monkeypatch.setattr(matmul_simd, "matmul_call", recorded)
    want = ref_conv(x.astype(np.float64), k, b, (1, 1), "valid", code)
    for _ in range(2):
        y = conv.conv2d_forward(x, kept, b, (1, 1), "valid", code, threads=2)
        np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert len(products) == 2 and products[0] is products[1]  # packed once


@pytest.mark.parametrize("code", [LINEAR, RELU, SIGMOID])
@pytest.mark.parametrize("filters", [1, 3])
def test_pointwise_conv_takes_its_bias_in_the_simd_products_epilogue(code, filters, monkeypatch):
    """A long float32 1x1 conv into few filters (a segmentation head) runs one SIMD product
    with the bias, and a relu, in its epilogue; other activations as a pass after it."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((32, 64, 64, 16)).astype(np.float32)  # U-Net's last layer's input
    k = rng.standard_normal((1, 1, 16, filters)).astype(np.float32)
    b = rng.standard_normal(filters).astype(np.float32)
    assert conv.plan_conv2d(x.shape, k.shape, (1, 1), "valid").forward == conv.POINTWISE
    fused = []

    def recorded(*args, **kwargs):
        fused.append(gemm.matmul_bias(*args, **kwargs))
        return fused[-1]

    monkeypatch.setattr(conv, "matmul_bias", recorded)
    y = conv.conv2d_forward(x, k, b, (1, 1), "valid", code, threads=2)
    assert fused == [True]
    want = ref_conv(x.astype(np.float64), k, b, (1, 1), "valid", code)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "x_shape, kernel_shape, strides, dtype",
    [
        ((2, 9, 9, 16), (3, 3, 16, 24), (1, 1), np.float32),  # SIMD rows: added in each row
        ((2, 9, 9, 16), (3, 3, 16, 32), (2, 2), np.float32),
        ((2, 7, 7, 16), (1, 1, 16, 32), (1, 1), np.float32),  # a product, then one pass
        ((2, 7, 7, 3), (3, 3, 3, 8), (1, 1), np.float64),
        ((1, 12, 12, 64), (3, 3, 64, 64), (1, 1), np.float64),
    ],
)
@pytest.mark.parametrize("code", [LINEAR, RELU, TANH])
def test_conv_adds_a_residual_before_its_activation(x_shape, kernel_shape, strides, dtype, code):
    """conv2d_forward(..., residual=r) = act(conv + bias + r) by whatever algorithm runs it."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(dtype)
    kernel = rng.standard_normal(kernel_shape).astype(dtype)
    bias = rng.standard_normal(kernel_shape[3]).astype(dtype)
    linear = ref_conv(x, kernel, bias, strides, "same")
    residual = rng.standard_normal(linear.shape).astype(dtype)
    got = conv.conv2d_forward(x, kernel, bias, strides, "same", code, threads=2, residual=residual)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    want = ref_activation(linear + residual, code)
    np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize(
    "x_shape, kernel, strides, padding, code, residual",
    [
        ((2, 9, 9, 16), (3, 3, 16, 32), (1, 1), "same", RELU, False),  # SIMD rows
        ((1, 8, 8, 16), (3, 3, 16, 16), (1, 1), "same", RELU, True),  # a residual block's end
        ((1, 9, 9, 8), (3, 3, 8, 20), (2, 2), "same", TANH, False),  # strided, rows' activation
        ((1, 6, 6, 32), (1, 1, 32, 40), (1, 1), "valid", SOFTMAX, False),  # kept pointwise
        ((1, 6, 6, 32), (1, 1, 32, 24), (1, 1), "valid", RELU6, False),  # then the activation
        ((3, 8, 8, 16), (1, 1, 16, 32), (2, 2), "valid", LINEAR, False),  # strided 1x1
        ((1, 1, 150, 16), (1, 5, 16, 32), (1, 1), "same", RELU, False),  # a row in parts
        ((1, 1, 100, 16), (1, 3, 16, 16), (1, 1), "same", SIGMOID, True),  # parts, residual
    ],
)
def test_conv2d_forward_call_computes_each_calls_conv(
    x_shape, kernel, strides, padding, code, residual
):
    """A conv's call, made once, computes the conv of each input it is given (its buffers and
    plan reused), as the numpy reference does."""
    rng = np.random.default_rng(11)
    k = rng.standard_normal(kernel).astype(np.float32)
    b = rng.standard_normal(kernel[3]).astype(np.float32)
    xs = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(3)]
    out_shape = conv.conv2d_forward(xs[0], k, b, strides, padding, LINEAR).shape
    adds = [rng.standard_normal(out_shape).astype(np.float32) if residual else None for _ in xs]
    call = conv.conv2d_forward_call(xs[0], forms.Forms(k), b, strides, padding, code, 2, adds[0])
    assert call is not None
    for x, added in zip(xs[1:], adds[1:]):
        z = ref_conv(x.astype(np.float64), k, b, strides, padding) + (0 if added is None else added)
        want = np.minimum(np.maximum(z, 0), 6) if code == RELU6 else ref_activation(z, code)
        np.testing.assert_allclose(call(x, added), want, rtol=1e-4, atol=1e-4)


def test_conv2d_forward_call_is_made_only_for_the_simd_kernels_with_a_kept_kernel():
    x = np.ones((1, 8, 8, 4), np.float32)
    k = np.ones((3, 3, 4, 16), np.float32)
    assert conv.conv2d_forward_call(x, k, None, (1, 1), "same", LINEAR) is None  # not kept
    x64, k64 = x.astype(np.float64), forms.Forms(k.astype(np.float64))
    assert conv.conv2d_forward_call(x64, k64, None, (1, 1), "same", LINEAR) is None
    shortcut = np.ones((1, 4, 4, 16), np.float32)
    one = forms.Forms(np.ones((1, 1, 4, 16), np.float32))
    assert conv.conv2d_forward_call(x, one, None, (2, 2), "valid", LINEAR, 1, shortcut) is None


@pytest.mark.parametrize("shape", [(1, 1, 150, 8), (2, 1, 75, 8), (1, 2, 90, 8)])
def test_rows_too_few_to_share_run_in_parts_with_their_moments(shape):
    """A conv of one or two output rows (a Conv1D at batch 1) runs each row in spans of pixels
    on the threads: the same outputs and moments as on one thread."""
    rng = np.random.default_rng(8)
    x = rng.normal(3, 1, shape).astype(np.float32)
    k = rng.normal(0, 0.3, (1, 3, 8, 24)).astype(np.float32)
    panels, bias = conv_simd.pack_kernel(k), np.zeros(24, np.float32)
    assert conv_simd._row_parts(shape[0] * shape[1], shape[2], 2) > 1
    results = []
    for threads in (1, 2):
        out, moments = np.empty((*shape[:3], 24), np.float32), np.empty((2, 24), np.float32)
        args = (k.shape, (1, 1), 0, 1, LINEAR, out, threads, moments)
        conv_simd.forward(x, panels, bias, *args)
        results.append((out, moments))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    pixels = results[0][0].reshape(-1, 24).astype(np.float64)
    for _, moments in results:
        np.testing.assert_allclose(moments[0], pixels.mean(0), rtol=1e-5)
        np.testing.assert_allclose(moments[1], pixels.var(0), rtol=1e-4)
    np.testing.assert_allclose(
        results[0][0], ref_conv(x.astype(np.float64), k, None, (1, 1), "same"), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize(
    "x_shape, kernel, average, code, direct",
    [
        ((2, 12, 12, 4), (3, 3, 4, 16), True, TANH, False),  # SIMD bands, average
        ((1, 12, 12, 8), (3, 3, 8, 32), False, RELU, False),  # SIMD bands, max
        ((2, 12, 12, 2), (2, 2, 2, 4), False, LINEAR, False),  # the direct row pairs, max
        ((1, 12, 12, 3), (3, 3, 3, 16), True, SIGMOID, True),  # the direct row pairs, average
    ],
)
def test_conv2d_pooled_call_computes_each_calls_pooled_conv(
    x_shape, kernel, average, code, direct, monkeypatch
):
    """A pooled conv's call, made once, gives what the pooled conv wrappers give for each
    input (the direct kernels forced where SIMD would win, to reach their average)."""
    if direct:
        monkeypatch.setattr(conv, "_simd_wins", lambda *args: False)
    rng = np.random.default_rng(6)
    k = rng.standard_normal(kernel).astype(np.float32)
    b = rng.standard_normal(kernel[3]).astype(np.float32)
    xs = [rng.standard_normal(x_shape).astype(np.float32) for _ in range(3)]
    kept = forms.Forms(k)
    pooled = conv.conv2d_forward_average_pool if average else conv.conv2d_forward_max_pool
    plan = conv.plan_conv2d(x_shape, kernel, (1, 1), "same", not average)
    assert plan.forward == (conv.DIRECT if direct or kernel[:2] == (2, 2) else conv.SIMD)
    call = conv.conv2d_pooled_call(xs[0], kept, b, (1, 1), "same", code, average, 2)
    for x in xs[1:]:
        np.testing.assert_array_equal(call(x), pooled(x, kept, b, (1, 1), "same", code, threads=2))
