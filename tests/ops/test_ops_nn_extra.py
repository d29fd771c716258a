"""fastnn.ops.nn_extra: forward against numpy references and keras.ops (torch backend), float64
gradients against finite differences, and the errors for shapes an op cannot take."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops_gradients import check_grads, sample

from fastnn import ops
from fastnn.kernels.geometry import transpose_axis
from fastnn.ops import GradientTape, nn_extra

FAST = settings(max_examples=4, deadline=None, derandomize=True)
SEEDS = st.integers(0, 2**16)
RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 5, 6, 3)).astype(np.float32)
X1 = RNG.standard_normal((2, 7, 3)).astype(np.float32)
KT = RNG.standard_normal((3, 3, 4, 3)).astype(np.float32)  # (kh, kw, out, in)
KD = RNG.standard_normal((3, 3, 3, 2)).astype(np.float32)  # (kh, kw, in, multiplier)
KP = RNG.standard_normal((1, 1, 6, 5)).astype(np.float32)
ONE_WINNER = np.where(X.max(-1, keepdims=True) == X, X + 1.5, X)  # sparsemax's support: 1
X3 = RNG.standard_normal((2, 4, 5, 3, 3)).astype(np.float32)  # 3-D: composed paths
KT3 = RNG.standard_normal((3, 2, 3, 4, 3)).astype(np.float32)
KD3 = RNG.standard_normal((2, 3, 2, 3, 2)).astype(np.float32)
LOGITS = np.random.default_rng(1).standard_normal((2, 6, 5)).astype(np.float32)
LABELS, LABEL_LENGTHS, TIME_LENGTHS = np.array([[1, 2, 2], [3, 1, 0]]), [3, 2], [6, 4]


PARITY = {  # name -> f(ops module): the same call on fastnn.ops and keras.ops
    "conv_transpose_same_s2": lambda o: o.conv_transpose(X, KT, 2, "same"),
    "conv_transpose_valid_s2": lambda o: o.conv_transpose(X, KT, 2, "valid"),
    "conv_transpose_output_padding": lambda o: o.conv_transpose(
        X, KT, (2, 3), "same", output_padding=(1, 0)),
    "conv_transpose_valid_output_padding": lambda o: o.conv_transpose(
        X, KT, 2, "valid", output_padding=1),
    "conv_transpose_dilated": lambda o: o.conv_transpose(X, KT, 1, "same", dilation_rate=2),
    "conv_transpose_1d": lambda o: o.conv_transpose(X1, KT[0], 3, "valid"),
    "conv_transpose_channels_first": lambda o: o.conv_transpose(
        X.transpose(0, 3, 1, 2), KT, 2, "same", data_format="channels_first"),
    "depthwise_same": lambda o: o.depthwise_conv(X, KD, 1, "same"),
    "depthwise_valid_s2": lambda o: o.depthwise_conv(X, KD, 2, "valid"),
    "depthwise_dilated": lambda o: o.depthwise_conv(X, KD, 1, "same", dilation_rate=2),
    "depthwise_1d": lambda o: o.depthwise_conv(X1, KD[0], 2, "same"),
    "separable": lambda o: o.separable_conv(X, KD, KP, 1, "same"),
    "conv_transpose_3d": lambda o: o.conv_transpose(X3, KT3, 2, "same"),
    "conv_transpose_3d_output_padding": lambda o: o.conv_transpose(
        X3, KT3, (2, 3, 2), "valid", output_padding=(1, 2, 0)),
    "conv_transpose_3d_dilated_first": lambda o: o.conv_transpose(
        np.moveaxis(X3, -1, 1), KT3, 1, "same", data_format="channels_first", dilation_rate=2),
    "depthwise_3d": lambda o: o.depthwise_conv(X3, KD3, 2, "valid"),
    "depthwise_3d_dilated": lambda o: o.depthwise_conv(X3, KD3, 1, "same", dilation_rate=(1, 2, 1)),
    "separable_3d": lambda o: o.separable_conv(X3, KD3, KP[None], 1, "same"),
    "separable_channels_first": lambda o: o.separable_conv(
        X.transpose(0, 3, 1, 2), KD, KP, 2, "valid", data_format="channels_first"),
    "layer_normalization": lambda o: o.layer_normalization(
        X, np.arange(3, dtype="float32"), np.ones(3, "float32")),
    "rms_normalization": lambda o: o.rms_normalization(X, np.arange(3, dtype="float32")),
    "layer_normalization_int_cast_back": lambda o: o.layer_normalization(
        (X * 4).astype("int32")),
    "rms_normalization_float64_scale": lambda o: o.rms_normalization(X, np.arange(3.0)),
    "glu": lambda o: o.glu(X1[..., :2]), "celu": lambda o: o.celu(X, 0.7),
    "hard_shrink": lambda o: o.hard_shrink(X), "soft_shrink": lambda o: o.soft_shrink(X, 0.3),
    "tanh_shrink": lambda o: o.tanh_shrink(X), "squareplus": lambda o: o.squareplus(X, 2),
    "sparse_plus": lambda o: o.sparse_plus(X * 2),
    "sparse_sigmoid": lambda o: o.sparse_sigmoid(X * 2),
    "threshold": lambda o: o.threshold(X, 0.1, -3.0),
    "sparsemax_one_winner": lambda o: o.sparsemax(ONE_WINNER),
    "sparsemax_axis_one_winner": lambda o: o.sparsemax(np.swapaxes(ONE_WINNER, 1, -1), axis=1),
    "psnr": lambda o: o.psnr(X, X * 0.9, 2.0),
    "in_top_k_ties": lambda o: o.in_top_k(
        np.array([0, 1, 2]), np.array([[1.0, 2, 3], [3, 3, 1], [0, 1, 2]], "float32"), 2),
    "multi_hot": lambda o: o.multi_hot(np.array([[0, 2], [1, 1]]), 4),
    "multi_hot_1d": lambda o: o.multi_hot(np.array([0, 2]), 4),
    "adaptive_average_pool": lambda o: o.adaptive_average_pool(X, (3, 4)),
    "adaptive_max_pool": lambda o: o.adaptive_max_pool(X, (2, 4)),
    "adaptive_average_pool_1d": lambda o: o.adaptive_average_pool(X1, 3),
    "adaptive_max_pool_3d_first": lambda o: o.adaptive_max_pool(
        X[..., None].repeat(2, -1), (2, 3, 2), data_format="channels_first"),
    "depth_to_space": lambda o: o.depth_to_space(np.tile(X, (1, 1, 1, 4)), 2),
    "depth_to_space_first": lambda o: o.depth_to_space(
        np.tile(X, (1, 1, 1, 4)).transpose(0, 3, 1, 2), 2, "channels_first"),
    "space_to_depth": lambda o: o.space_to_depth(X[:, :4], 2),
    "space_to_depth_first": lambda o: o.space_to_depth(
        X[:, :4].transpose(0, 3, 1, 2), 2, "channels_first"),
    "ctc_loss": lambda o: o.ctc_loss(LABELS, LOGITS, LABEL_LENGTHS, TIME_LENGTHS),
    "ctc_loss_blank_last": lambda o: o.ctc_loss(
        LABELS, LOGITS, LABEL_LENGTHS, TIME_LENGTHS, mask_index=4),
    "ctc_decode": lambda o: o.ctc_decode(LOGITS, np.array([6, 4]))[0],
    "ctc_decode_scores": lambda o: o.ctc_decode(LOGITS, np.array([6, 4]), mask_index=2)[1],
    "ctc_decode_beam_paths": lambda o: o.ctc_decode(
        LOGITS * 2, np.array([6, 4]), "beam_search", 10, 2)[0],
    "ctc_decode_beam_scores": lambda o: o.ctc_decode(
        LOGITS * 2, np.array([6, 4]), "beam_search", 10, 2)[1],
    "ctc_decode_narrow_beam_blank_last": lambda o: o.ctc_decode(
        LOGITS * 2, np.array([5, 6]), "beam_search", 3, 3, mask_index=4)[0],
}  # fmt: skip


@pytest.mark.parametrize("name", PARITY)
def test_forward_matches_keras(keras_ops, name):
    ours, theirs = PARITY[name](ops), keras_ops.convert_to_numpy(PARITY[name](keras_ops))
    assert np.shape(ours) == theirs.shape
    assert np.result_type(ours) == theirs.dtype, f"dtype {np.result_type(ours)} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-5)


# ---- numpy references ----------------------------------------------------------------------
def test_conv_transpose_is_the_adjoint_of_conv():
    """<conv_transpose(y, k), x> == <y, conv(x, k)> for the matching conv geometry."""
    x = RNG.standard_normal((2, 8, 8, 4))
    k = RNG.standard_normal((3, 3, 4, 3))  # conv: 4 -> 3 channels; transposed: 3 -> 4
    y = RNG.standard_normal(np.shape(ops.conv(x, k, 2, "same")))
    lhs = np.sum(ops.conv_transpose(y, k, 2, "same") * x)
    np.testing.assert_allclose(lhs, np.sum(y * ops.conv(x, k, 2, "same")), rtol=1e-10)


def test_depthwise_and_separable_against_a_grouped_conv_reference():
    x, k = RNG.standard_normal((1, 6, 5, 3)), RNG.standard_normal((3, 2, 3, 2))
    got = ops.depthwise_conv(x, k, 1, "valid")
    per_channel = [ops.conv(x[..., c : c + 1], k[:, :, c : c + 1, :]) for c in range(3)]
    np.testing.assert_allclose(got, np.concatenate(per_channel, -1), rtol=1e-10)
    p = RNG.standard_normal((1, 1, 6, 4))
    np.testing.assert_allclose(ops.separable_conv(x, k, p), got @ p[0, 0], rtol=1e-10)


def test_normalizations_against_numpy():
    x = RNG.standard_normal((3, 4, 5))
    mean, var = x.mean((1, 2), keepdims=True), x.var((1, 2), keepdims=True)
    gamma = RNG.standard_normal((4, 5))
    got = ops.layer_normalization(x, gamma, axis=(1, 2), epsilon=1e-3)
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(var + 1e-3) * gamma, rtol=1e-10)
    rms = x / np.sqrt((x**2).mean(1, keepdims=True) + 1e-7)
    np.testing.assert_allclose(ops.rms_normalization(x, axis=1), rms, rtol=1e-10)


def test_sparsemax_projects_onto_the_simplex():
    """The true sparsemax (Keras's docstring example); Keras's backends compute another tau
    when the support holds more than one entry, so the parity rows keep to one."""
    np.testing.assert_allclose(ops.sparsemax(np.array([-0.5, 0, 1, 0.5])), [0, 0, 0.75, 0.25])
    z = RNG.standard_normal((4, 6)) * 2
    p = ops.sparsemax(z)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    assert (p >= 0).all() and (p == 0).any()
    support = p > 0  # on the support p = z - tau with one tau per row
    tau = (z - p)[support]
    rows = np.nonzero(support)[0]
    for r in range(4):
        np.testing.assert_allclose(tau[rows == r], tau[rows == r][0])


def test_adaptive_pools_against_loops():
    x = RNG.standard_normal((1, 7, 5, 2))
    avg, top = ops.adaptive_average_pool(x, (3, 2)), ops.adaptive_max_pool(x, (3, 2))
    for i in range(3):
        for j in range(2):
            rows = slice(i * 7 // 3, -(-(i + 1) * 7 // 3))
            cols = slice(j * 5 // 2, -(-(j + 1) * 5 // 2))
            np.testing.assert_allclose(avg[0, i, j], x[0, rows, cols].mean((0, 1)))
            np.testing.assert_allclose(top[0, i, j], x[0, rows, cols].max((0, 1)))


def test_pixel_shuffles_invert_each_other():
    x = RNG.standard_normal((2, 4, 6, 8))
    np.testing.assert_array_equal(ops.depth_to_space(ops.space_to_depth(x, 2), 2), x)
    y = ops.depth_to_space(x, 2)
    np.testing.assert_array_equal(y[:, 1::2, ::2], x[..., 4:6].reshape(2, 4, 6, 2)[:, :, :, :])


def _ctc_brute_force(logits, labels, blank):
    """-log of the summed probability of every path that collapses to ``labels``."""
    steps, classes = logits.shape
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    total = 0.0
    for path in np.ndindex(*(classes,) * steps):
        collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
        if collapsed == list(labels):
            total += np.exp(sum(logp[t, c] for t, c in enumerate(path)))
    return -np.log(total)


def test_ctc_loss_against_all_paths():
    logits = RNG.standard_normal((2, 4, 3))
    got = ops.ctc_loss(np.array([[1, 2], [1, 1]]), logits, [2, 2], [4, 4])
    want = [_ctc_brute_force(logits[0], [1, 2], 0), _ctc_brute_force(logits[1], [1, 1], 0)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    short = ops.ctc_loss(np.array([[2, 0]]), logits[:1], [1], [3], mask_index=0)
    np.testing.assert_allclose(short, [_ctc_brute_force(logits[0, :3], [2], 0)], rtol=1e-10)


def test_ctc_beam_search_finds_the_likeliest_labelings():
    """With a beam wide enough to keep every prefix, the search is exact: the top labelings
    and their probabilities summed over all alignments, by enumeration."""
    logits = RNG.standard_normal((1, 4, 3)) * 2
    logp = logits[0] - np.log(np.exp(logits[0]).sum(-1, keepdims=True))
    totals: dict = {}
    for path in np.ndindex(3, 3, 3, 3):
        label = tuple(c for i, c in enumerate(path) if c != 0 and (i == 0 or c != path[i - 1]))
        totals[label] = totals.get(label, 0.0) + np.exp(sum(logp[t, c] for t, c in enumerate(path)))
    best = sorted(totals.items(), key=lambda item: -item[1])[:3]
    paths, scores = ops.ctc_decode(logits, [4], "beam_search", beam_width=50, top_paths=3)
    for i, (label, probability) in enumerate(best):
        assert tuple(paths[i, 0][paths[i, 0] >= 0]) == label
        np.testing.assert_allclose(scores[0, i], np.log(probability), rtol=1e-6)


# ---- gradients ---------------------------------------------------------------------------------
ELEMENTWISE = {  # kinks (0, +-threshold, +-1) kept away by the "away1" sampling
    "celu": lambda x: ops.celu(x, 0.7), "hard_shrink": ops.hard_shrink,
    "soft_shrink": ops.soft_shrink, "tanh_shrink": ops.tanh_shrink,
    "squareplus": ops.squareplus, "sparse_plus": ops.sparse_plus,
    "sparse_sigmoid": ops.sparse_sigmoid, "threshold": lambda x: ops.threshold(x, 0.25, 2.0),
    "glu": lambda x: ops.glu(x, axis=-1), "sparsemax": ops.sparsemax,
    "layer_normalization": lambda x: ops.layer_normalization(x, axis=(-2, -1)),
    "rms_normalization": ops.rms_normalization,
    "psnr": lambda x: ops.psnr(x, np.ones_like(x), 1.5),
    "adaptive_average_pool": lambda x: ops.adaptive_average_pool(x, 2),
    "adaptive_max_pool": lambda x: ops.adaptive_max_pool(x, (2,), data_format="channels_first"),
    "depth_to_space": lambda x: ops.depth_to_space(ops.reshape(x, (1, 2, 2, 4)), 2),
    "space_to_depth": lambda x: ops.space_to_depth(ops.reshape(x, (1, 2, 2, 4)), 2),
}  # fmt: skip


@pytest.mark.parametrize("name", ELEMENTWISE)
@FAST
@given(seed=SEEDS)
def test_gradients(name, seed):
    rng = np.random.default_rng(seed)
    x = sample(rng, (2, 4, 2), "away0")
    x = np.where(np.abs(np.abs(x) - 1) < 0.1, x * 0.8, x)  # clear of +-1
    x = np.where(np.abs(np.abs(x) - 0.5) < 0.1, x * 1.3, x)  # and of +-0.5
    x = np.where(np.abs(x - 0.25) < 0.05, x + 0.1, x)
    check_grads(ELEMENTWISE[name], x, rng=rng)


def test_gradients_with_parameters():
    rng = np.random.default_rng(3)
    x, gamma, beta = rng.standard_normal((2, 3, 4)), rng.standard_normal(4), rng.standard_normal(4)
    check_grads(lambda a, g, b: ops.layer_normalization(a, g, b), x, gamma, beta, rng=rng)
    check_grads(lambda a, s: ops.rms_normalization(a, s), x, gamma, rng=rng)
    scale = rng.standard_normal((3, 4))
    check_grads(lambda a, s: ops.rms_normalization(a, s, axis=(1, 2)), x, scale, rng=rng)


CONVS = {
    "conv_transpose_same": (lambda x, k: ops.conv_transpose(x, k, 2, "same"), (1, 3, 4, 2),
                            (3, 2, 3, 2)),
    "conv_transpose_valid_dilated": (lambda x, k: ops.conv_transpose(
        x, k, 1, "valid", dilation_rate=2), (1, 3, 3, 2), (2, 2, 2, 2)),
    "conv_transpose_1d": (lambda x, k: ops.conv_transpose(x, k, 2, "same", output_padding=0),
                          (2, 4, 2), (3, 3, 2)),
    "depthwise_same": (lambda x, k: ops.depthwise_conv(x, k, 1, "same"), (1, 4, 4, 2),
                       (3, 3, 2, 2)),
    "depthwise_strided_first": (lambda x, k: ops.depthwise_conv(
        x, k, 2, "valid", data_format="channels_first"), (1, 2, 5, 5), (2, 2, 2, 1)),
    "depthwise_1d_dilated": (lambda x, k: ops.depthwise_conv(x, k, 1, "same", dilation_rate=2),
                             (2, 5, 2), (2, 2, 2)),
}  # fmt: skip


@pytest.mark.parametrize("name", CONVS)
@settings(max_examples=2, deadline=None, derandomize=True)
@given(seed=SEEDS)
def test_conv_gradients(name, seed):
    fn, x_shape, k_shape = CONVS[name]
    rng = np.random.default_rng(seed)
    check_grads(fn, rng.standard_normal(x_shape), rng.standard_normal(k_shape), rng=rng)


def test_composed_transposed_conv_matches_the_kernel_path():
    """The 3-D path (tensordot, index_add, crop) on 2-D inputs gives the Numba kernel's
    result for every padding rule."""
    x, k = RNG.standard_normal((2, 4, 5, 3)), RNG.standard_normal((3, 2, 4, 3))
    for padding, output_padding, strides in (("same", None, 2), ("valid", 1, 2), ("same", 1, 3)):
        got = ops.conv_transpose(x, k, strides, padding, output_padding)
        extras = nn_extra._output_padding(output_padding, 2, (strides, strides))
        axes = [transpose_axis(n, kk, strides, 1, padding, e)
                for n, kk, e in zip(x.shape[1:3], k.shape[:2], extras)]  # fmt: skip
        composed = nn_extra._conv_transpose_nd(
            x, k, (strides, strides), (1, 1), tuple(a[1] for a in axes), tuple(a[0] for a in axes)
        )
        np.testing.assert_allclose(composed, got, rtol=1e-10, atol=1e-12)


def test_3d_conv_gradients():
    rng = np.random.default_rng(8)
    x, kt, kd = (
        rng.standard_normal(s) for s in ((1, 2, 3, 2, 2), (2, 2, 1, 3, 2), (2, 1, 2, 2, 2))
    )
    check_grads(lambda a, b: ops.conv_transpose(a, b, 2, "same", output_padding=1), x, kt, rng=rng)
    check_grads(lambda a, b: ops.depthwise_conv(a, b, 1, "same"), x, kd, rng=rng)


def test_separable_conv_gradients():
    rng = np.random.default_rng(4)
    x, dk, pk = (rng.standard_normal(s) for s in ((1, 4, 4, 2), (2, 2, 2, 2), (1, 1, 4, 3)))
    check_grads(lambda a, b, c: ops.separable_conv(a, b, c, 1, "same"), x, dk, pk, rng=rng)


@pytest.mark.parametrize("conv", ["conv_transpose", "depthwise_conv"])
def test_conv_second_derivatives(conv):
    """The adjoint ops have rules of their own: the gradient of a gradient matches finite
    differences of the first gradient."""
    rng = np.random.default_rng(5)
    x, k = rng.standard_normal((1, 3, 3, 2)), rng.standard_normal((2, 2, 2, 2))
    op = getattr(ops, conv)
    u = rng.standard_normal(np.shape(op(x, k, 2, "same")))

    def kernel_grad(a, b):
        with GradientTape() as inner:
            wa, wb = inner.watch(a), inner.watch(b)
            y = op(wa, wb, 2, "same")
        ga, gb = inner.gradient(y, [wa, wb], output_gradients=u)
        return ops.sum(ops.square(ga)) + ops.sum(ga * gb[:1, :1, :2, :].sum())

    check_grads(kernel_grad, x, k, rng=rng)


def test_ctc_loss_gradient():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((2, 5, 4))
    check_grads(
        lambda z: ops.ctc_loss(np.array([[1, 2, 2], [3, 0, 0]]), z, [3, 1], [5, 3]),
        logits, rng=rng,
    )  # fmt: skip


def test_ctc_loss_gradient_matches_torch(keras_ops):
    import torch

    x = LOGITS.astype(np.float64)
    with GradientTape() as tape:
        z = tape.watch(x)
        loss = ops.sum(ops.ctc_loss(LABELS, z, LABEL_LENGTHS, TIME_LENGTHS))
    zt = torch.tensor(x, requires_grad=True)
    keras_ops.sum(keras_ops.ctc_loss(LABELS, zt, LABEL_LENGTHS, TIME_LENGTHS)).backward()
    np.testing.assert_allclose(tape.gradient(loss, z), zt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_ctc_loss_has_no_second_derivative():
    x = RNG.standard_normal((1, 3, 3))
    with GradientTape() as outer:
        z = outer.watch(x)
        with GradientTape() as inner:
            inner.watch(z)
            loss = ops.ctc_loss(np.array([[1]]), z, [1], [3])
        g = inner.gradient(loss, z)
        total = ops.sum(g)
    with pytest.raises(LookupError, match="ctc_loss_grad"):
        outer.gradient(total, z)


def test_float32_stays_float32():
    for fn in (
        lambda: ops.conv_transpose(X, KT, 2, "same"), lambda: ops.depthwise_conv(X, KD),
        lambda: ops.layer_normalization(X), lambda: ops.adaptive_max_pool(X, 2),
        lambda: ops.sparsemax(X), lambda: ops.ctc_loss(LABELS, LOGITS, [3, 2], [6, 4]),
    ):  # fmt: skip
        assert np.result_type(fn()) == np.float32


# ---- errors -------------------------------------------------------------------------------------
ERRORS = {
    "conv_transpose": (lambda: ops.conv_transpose(X, KD), r"conv_transpose.*\(3, 3, 3, 2\).*"
                       r"\(2, 5, 6, 3\)"),
    "conv_transpose_output_padding": (lambda: ops.conv_transpose(
        X, KT, 2, output_padding=2), "output_padding"),
    "depthwise_conv": (lambda: ops.depthwise_conv(X, KT), r"depthwise_conv.*\(3, 3, 4, 3\).*"
                       r"\(2, 5, 6, 3\)"),
    "depthwise_conv_4d": (lambda: ops.depthwise_conv(X3[..., None], KD3[None]),
                          "1-D, 2-D and 3-D"),
    "separable_conv": (lambda: ops.separable_conv(X, KD, KP[..., :3, :]), r"\(1, 1, 3, 5\)"),
    "glu": (lambda: ops.glu(X), r"glu.*\(2, 5, 6, 3\)"),
    "psnr": (lambda: ops.psnr(X, X[:1], 1.0), r"psnr.*\(2, 5, 6, 3\) and \(1, 5, 6, 3\)"),
    "in_top_k": (lambda: ops.in_top_k(np.zeros(3, int), X1[0], 1), r"in_top_k.*\(3,\).*\(7, 3\)"),
    "depth_to_space": (lambda: ops.depth_to_space(X, 2), r"depth_to_space.*3.*\(2, 5, 6, 3\)"),
    "space_to_depth": (lambda: ops.space_to_depth(X, 2), r"space_to_depth.*\(2, 5, 6, 3\)"),
    "adaptive_pool": (lambda: ops.adaptive_max_pool(X, (2, 2, 2)), "output_size"),
    "ctc_loss": (lambda: ops.ctc_loss(LABELS, LOGITS[0], [1, 1], [1, 1]), r"\(2, 3\).*\(6, 5\)"),
    "ctc_loss_lengths": (lambda: ops.ctc_loss(LABELS, LOGITS, [4, 1], [6, 6]), "exceed"),
    "ctc_decode_strategy": (lambda: ops.ctc_decode(LOGITS, [6, 6], "viterbi"), "beam_search"),
}  # fmt: skip


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_op_and_shapes(name):
    fn, match = ERRORS[name]
    with pytest.raises(ValueError, match=match):
        fn()
