"""fastnn.ops.numpy_extra: forward against keras.ops (torch backend) and numpy, float64
gradients against finite differences, and errors naming the op and the shapes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops_gradients import check_grads, sample

from fastnn import ops

FAST = settings(max_examples=4, deadline=None, derandomize=True)
SEEDS = st.integers(0, 2**16)
RNG = np.random.default_rng(0)
A = RNG.standard_normal((3, 4)).astype(np.float32)
B = RNG.standard_normal((3, 4)).astype(np.float32)
V = RNG.standard_normal(5).astype(np.float32)
W = RNG.standard_normal(3).astype(np.float32)
I = np.array([[3, 1, 2], [0, 5, 1]])  # noqa: E741
N = np.array([1.0, np.nan, 3, np.inf, -np.inf, 2], np.float32)
AN = A.copy()
AN[0, 1] = np.nan
AN[2, :] = np.nan
X3 = RNG.standard_normal((2, 3, 4)).astype(np.float32)
V3 = RNG.standard_normal((2, 4, 3)).astype(np.float32)


PARITY = {  # name -> f(ops module): the same call on fastnn.ops and keras.ops
    "hstack": lambda o: o.hstack([A, B]), "hstack_1d": lambda o: o.hstack([V, W]),
    "vstack": lambda o: o.vstack([A, B[0]]), "dstack": lambda o: o.dstack([A, B]),
    "append": lambda o: o.append(A, B), "append_axis": lambda o: o.append(A, B, axis=1),
    "array_split_first": lambda o: o.array_split(V, 3)[0],
    "array_split_last": lambda o: o.array_split(V, 3)[2],
    "hsplit": lambda o: o.hsplit(A, 2)[1], "vsplit": lambda o: o.vsplit(A, 3)[1],
    "dsplit": lambda o: o.dsplit(X3, 2)[1],
    "diag_above": lambda o: o.diag(V, 1), "diag_below": lambda o: o.diag(V, -2),
    "diag_of_matrix": lambda o: o.diag(A, 1), "diagflat": lambda o: o.diagflat(A[:2, :2]),
    "trace": lambda o: o.trace(X3, 0, 1, 2), "trace_int": lambda o: o.trace(I),
    "tri": lambda o: o.tri(3, 4, 1), "fliplr": lambda o: o.fliplr(A),
    "flipud": lambda o: o.flipud(A), "rot90": lambda o: o.rot90(X3),
    "rot90_3": lambda o: o.rot90(X3, 3, (1, 2)), "rot90_2": lambda o: o.rot90(X3, 2),
    "diff": lambda o: o.diff(A), "diff_2_axis0": lambda o: o.diff(A, 2, axis=0),
    "cbrt": lambda o: o.cbrt(A), "cbrt_int64": lambda o: o.cbrt(I), "exp2": lambda o: o.exp2(A),
    "erfc_tails": lambda o: o.erfc(A * 3), "erfinv": lambda o: o.erfinv(np.tanh(A)),
    "hypot": lambda o: o.hypot(A, B), "hypot_int": lambda o: o.hypot(I, I),
    "logaddexp2": lambda o: o.logaddexp2(A, B), "fmod": lambda o: o.fmod(A * 3, B),
    "fmod_int": lambda o: o.fmod(I, np.array(2)),
    "divide_no_nan": lambda o: o.divide_no_nan(A, np.where(B > 0, B, 0)),
    "nan_to_num": lambda o: o.nan_to_num(N), "nan_to_num_given": lambda o: o.nan_to_num(
        N, 1.0, 5.0, -5.0),
    "median": lambda o: o.median(A), "median_keepdims": lambda o: o.median(
        A, axis=1, keepdims=True),
    "quantile": lambda o: o.quantile(A, np.array([0.1, 0.5, 0.9]), axis=0),
    "quantile_lower": lambda o: o.quantile(A, 0.3, axis=1, method="lower"),
    "quantile_higher": lambda o: o.quantile(A, 0.3, method="higher"),
    "quantile_midpoint": lambda o: o.quantile(A, 0.3, axis=1, method="midpoint"),
    "quantile_nearest": lambda o: o.quantile(A, [0.3, 0.5], axis=0, method="nearest",
                                             keepdims=True),
    "percentile_axes": lambda o: o.percentile(X3, 40, axis=(0, 2)),
    "nansum": lambda o: o.nansum(AN, axis=1), "nanmean": lambda o: o.nanmean(AN, axis=0),
    "nanmax": lambda o: o.nanmax(AN, axis=1), "nanmin": lambda o: o.nanmin(AN),
    "nanprod": lambda o: o.nanprod(AN, axis=1), "nanstd": lambda o: o.nanstd(AN, axis=1),
    "nanvar": lambda o: o.nanvar(AN), "nanmedian": lambda o: o.nanmedian(AN, axis=1),
    "nanquantile": lambda o: o.nanquantile(AN, 0.3, axis=1),
    "nanpercentile": lambda o: o.nanpercentile(AN, 70),
    "nanargmax": lambda o: o.nanargmax(AN[:2], axis=1), "nanargmin": lambda o: o.nanargmin(AN[:2]),
    "nancumsum": lambda o: o.nancumsum(AN, axis=1), "nancumprod": lambda o: o.nancumprod(AN),
    "ptp": lambda o: o.ptp(A, axis=0), "inner": lambda o: o.inner(A, B),
    "kron": lambda o: o.kron(A[:2, :2], B[:2]), "kron_ranks": lambda o: o.kron(V, A),
    "vdot": lambda o: o.vdot(V, V), "cross": lambda o: o.cross(V3, V3[::-1] + 1),
    "correlate": lambda o: o.correlate(V, W),
    "correlate_full": lambda o: o.correlate(V, W, "full"),
    "correlate_same": lambda o: o.correlate(V, W, "same"),
    "isin": lambda o: o.isin(I, np.array([1, 2])), "nonzero": lambda o: o.nonzero(I)[1],
    "unique": lambda o: o.unique(I), "bincount": lambda o: o.bincount(I[0]),
    "bincount_weights": lambda o: o.bincount(I[0], weights=A[0, :3], minlength=7),
    "bincount_2d": lambda o: o.bincount(I, minlength=6),
    "searchsorted": lambda o: o.searchsorted(np.sort(V), W, side="right"),
    "digitize": lambda o: o.digitize(A, np.array([-1.0, 0, 1])),
    "scatter_repeats": lambda o: o.scatter(
        np.array([[0, 1], [2, 3], [0, 1]]), np.array([1.0, 2, 3], "float32"), (3, 4)),
    "scatter_rows": lambda o: o.scatter(np.array([[0], [2]]), A[:2], (3, 4)),
    "scatter_update": lambda o: o.scatter_update(
        A, np.array([[0, 1], [2, 3]]), np.array([9.0, 8], "float32")),
    "segment_sum": lambda o: o.segment_sum(A, np.array([0, 0, 2]), 4),
    "segment_sum_inferred": lambda o: o.segment_sum(A, np.array([1, 0, 1])),
    "segment_max_empty": lambda o: o.segment_max(A, np.array([0, 0, 2]), 3),
    "segment_min_empty": lambda o: o.segment_min(A, np.array([0, 0, 2]), 3),
    "select": lambda o: o.select([A > 0, B > 0], [A, B], -1.0),
    "copy": lambda o: o.copy(A), "array": lambda o: o.array([1.0, 2]),
    "array_int": lambda o: o.array([1, 2]),
    "meshgrid": lambda o: o.meshgrid(V, W)[0],
    "meshgrid_ij": lambda o: o.meshgrid(V, W, A[0], indexing="ij")[2],
    "meshgrid_xy_3": lambda o: o.meshgrid(V, W, A[0])[1],
    "logspace": lambda o: o.logspace(0, 2, 5), "geomspace": lambda o: o.geomspace(1, 100, 5),
    "bitwise_and": lambda o: o.bitwise_and(I, np.array(3)),
    "bitwise_not": lambda o: o.bitwise_not(I), "left_shift": lambda o: o.left_shift(I, np.array(2)),
    "unravel_index": lambda o: o.unravel_index(np.array([5, 7]), (3, 4))[0],
    "view": lambda o: o.view(A, "int32"),
    "rearrange": lambda o: o.rearrange(X3, "b h w -> w (b h)"),
    "rearrange_split": lambda o: o.rearrange(X3, "b h (w1 w) -> (b w1) h w", w1=2),
    "hamming": lambda o: o.hamming(5), "hanning": lambda o: o.hanning(5),
    "bartlett": lambda o: o.bartlett(6), "blackman": lambda o: o.blackman(5),
    "kaiser": lambda o: o.kaiser(5, 2.0), "deg2rad_int64": lambda o: o.deg2rad(I),
    "rad2deg": lambda o: o.rad2deg(A), "fabs_int": lambda o: o.fabs(I),
    "heaviside": lambda o: o.heaviside(A, np.float32(0.5)), "signbit": lambda o: o.signbit(A),
    "vander": lambda o: o.vander(V, 3), "trapezoid": lambda o: o.trapezoid(A),
    "trapezoid_x": lambda o: o.trapezoid(A, V[:4]), "allclose": lambda o: o.allclose(A, A),
    "isposinf": lambda o: o.isposinf(N), "isneginf": lambda o: o.isneginf(N),
    # Keras's dtypes: int32 and bool sums stay int32, int64 float ops give float64
    "trace_int32": lambda o: o.trace(I.astype("int32")),
    "nansum_bool": lambda o: o.nansum(I > 2, axis=0),
    "nancumprod_int32": lambda o: o.nancumprod(I.astype("int32"), axis=1),
    "diff_bool": lambda o: o.diff(I > 2), "rad2deg_int64": lambda o: o.rad2deg(I),
    "divide_no_nan_float16_scalar": lambda o: o.divide_no_nan(A.astype("float16"), 0.5),
    "divide_no_nan_by_zero_scalar": lambda o: o.divide_no_nan(A, 0.0),
}  # fmt: skip


@pytest.mark.parametrize("name", PARITY)
def test_forward_matches_keras(keras_ops, name):
    ours, theirs = PARITY[name](ops), keras_ops.convert_to_numpy(PARITY[name](keras_ops))
    assert np.shape(ours) == theirs.shape
    assert np.result_type(ours) == theirs.dtype, f"dtype {np.result_type(ours)} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=2e-5, equal_nan=True)


def test_empty_matches_kerass_shape_and_dtype(keras_ops):
    for fn in (lambda o: o.empty((2, 3)), lambda o: o.empty_like(I)):
        ours, theirs = fn(ops), keras_ops.convert_to_numpy(fn(keras_ops))
        assert ours.shape == theirs.shape and ours.dtype == theirs.dtype


# ---- against numpy where Keras's torch backend strays from numpy -------------------------------
def test_against_numpy():
    """Keras on torch: cross takes the first size-3 axis and refuses 2-vectors, correlate's
    'same' has the shorter input's length, argpartition's order is not a partition."""
    np.testing.assert_allclose(ops.cross(X3[..., :3], X3[..., 1:]), np.cross(X3[..., :3],
                               X3[..., 1:]), rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(ops.cross(A[:, :2], B[:, :2]), np.cross(A[:, :2], B[:, :2]),
                               rtol=1e-6)  # fmt: skip
    np.testing.assert_allclose(ops.cross(A[:, :3], B[:, :2]), np.cross(A[:, :3], B[:, :2]),
                               rtol=1e-6)  # fmt: skip
    for mode in ("valid", "same", "full"):
        np.testing.assert_allclose(ops.correlate(W, V, mode), np.correlate(W, V, mode), rtol=1e-6)
    order = ops.argpartition(A, 1)
    assert order.dtype == np.int32
    np.testing.assert_array_equal(np.take_along_axis(A, order, -1)[:, 1], np.sort(A, -1)[:, 1])
    assert (np.take_along_axis(A, order, -1)[:, :1] <= np.sort(A, -1)[:, 1:2]).all()
    x = np.linspace(-0.999, 0.999, 41)
    erf = np.vectorize(math.erf)
    np.testing.assert_allclose(erf(ops.erfinv(x)), x, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(ops.erfinv(np.array([-1.0, 1.0])), [-np.inf, np.inf])
    got = ops.unique(np.array([3, 1, 3, 2]), sorted=False, return_index=True, return_counts=True)
    np.testing.assert_array_equal(got[0], [3, 1, 2])
    np.testing.assert_array_equal(got[1], [0, 1, 3])
    np.testing.assert_array_equal(got[2], [2, 1, 1])
    padded = ops.unique(np.array([3, 1, 3]), size=4, fill_value=-1)
    np.testing.assert_array_equal(padded, [1, 3, -1, -1])


@pytest.mark.parametrize("method", ["linear", "lower", "higher", "midpoint", "nearest"])
def test_quantiles_against_numpy(method):
    x = RNG.standard_normal((4, 5, 3))
    q = np.array([[0.0, 0.25], [0.5, 1.0]])
    for axis in (None, 1, (0, 2)):
        want = np.quantile(x, q, axis=axis, method=method, keepdims=True)
        got = ops.quantile(x, q, axis=axis, method=method, keepdims=True)
        np.testing.assert_allclose(got, want, rtol=1e-12)
    xn = x.copy()
    xn[0, :2] = np.nan
    xn[1, :, 0] = np.nan
    want = np.nanquantile(xn, 0.3, axis=1, method=method)
    np.testing.assert_allclose(ops.nanquantile(xn, 0.3, axis=1, method=method), want)


# ---- gradients ---------------------------------------------------------------------------------
UNARY = {
    "cbrt": (ops.cbrt, "away0"), "exp2": (ops.exp2, "any"), "erfc": (ops.erfc, "any"),
    "erfinv": (ops.erfinv, "unit"), "deg2rad": (ops.deg2rad, "any"),
    "nan_to_num": (ops.nan_to_num, "any"), "copy": (ops.copy, "any"),
    "array": (lambda x: ops.array(x) * x, "any"),
    "diff": (lambda x: ops.diff(x, 2, axis=0), "any"), "trace": (ops.trace, "any"),
    "diag": (lambda x: ops.diag(ops.diag(x, -1), -1), "any"),
    "diagflat": (lambda x: ops.diagflat(x, 1), "any"),
    "rot90": (lambda x: ops.rot90(x, 3), "any"), "fliplr": (ops.fliplr, "any"),
    "median": (lambda x: ops.median(x, axis=0), "any"),
    "quantile": (lambda x: ops.quantile(x, [0.2, 0.7], axis=1), "any"),
    "percentile": (lambda x: ops.percentile(x, 30, method="midpoint"), "any"),
    "ptp": (lambda x: ops.ptp(x, axis=1), "any"), "vander": (lambda x: ops.vander(x[0]), "any"),
    "trapezoid": (ops.trapezoid, "any"), "kron": (lambda x: ops.kron(x, x[::-1]), "any"),
    "rearrange": (lambda x: ops.rearrange(x, "(a b) c -> c (b a)", b=2), "any"),
    "array_split": (lambda x: ops.array_split(x, 3, axis=1)[2] * 2, "any"),
    "dstack": (lambda x: ops.dstack([x, x * x]), "any"),
    "meshgrid": (lambda x: ops.meshgrid(x[0], x[1, :2])[0], "any"),
}  # fmt: skip


@pytest.mark.parametrize("name", UNARY)
@FAST
@given(seed=SEEDS)
def test_unary_gradients(name, seed):
    fn, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    check_grads(fn, sample(rng, (4, 4), domain), rng=rng)


def test_nan_reductions_gradients():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4))
    mask = np.zeros((3, 4), bool)
    mask[0, 1] = mask[2, 3] = True

    def with_nans(fn):
        return lambda v: fn(ops.where(mask, np.nan, v))

    for fn in (
        lambda v: ops.nansum(v, axis=1), lambda v: ops.nanmean(v, axis=0),
        lambda v: ops.nanvar(v, axis=1), lambda v: ops.nanstd(v), lambda v: ops.nanprod(v, 1),
        lambda v: ops.nanmax(v, axis=1), lambda v: ops.nanmin(v, axis=0),
        lambda v: ops.nanmedian(v, axis=1), lambda v: ops.nancumsum(v, axis=1),
        lambda v: ops.nancumprod(v, axis=0), lambda v: ops.nanquantile(v, 0.4, axis=0),
    ):  # fmt: skip
        check_grads(with_nans(fn), x, rng=rng)


BINARY = {
    "hypot": (ops.hypot, "away0", "away0"), "logaddexp2": (ops.logaddexp2, "any", "any"),
    "fmod": (ops.fmod, "pos", "pos"), "divide_no_nan": (ops.divide_no_nan, "any", "away0"),
    "inner": (ops.inner, "any", "any"), "vdot": (ops.vdot, "any", "any"),
    "cross": (lambda a, b: ops.cross(a[:, :3], b[:, 1:]), "any", "any"),
    "append": (lambda a, b: ops.append(a, b, axis=0), "any", "any"),
    "hstack": (lambda a, b: ops.hstack([a, b]), "any", "any"),
    "vstack": (lambda a, b: ops.vstack([a, b[0]]), "any", "any"),
    "select": (lambda a, b: ops.select([np.eye(3, 4) > 0, np.ones((3, 4)) > 0], [a, b]),
               "any", "any"),
    "correlate": (lambda a, b: ops.correlate(ops.ravel(a), b[0, :3], "same"), "any", "any"),
    "bincount": (lambda a, b: ops.bincount(np.array([0, 2, 2, 1]), weights=a[0] * b[0]),
                 "any", "any"),
    "scatter": (lambda a, b: ops.scatter(np.array([[0, 1], [2, 2], [0, 1]]), a[0, :3], (3, 4))
                * b, "any", "any"),
    "scatter_update": (lambda a, b: ops.scatter_update(a, np.array([[0, 1], [2, 2]]), b[1, :2]),
                       "any", "any"),
    "segment_sum": (lambda a, b: ops.segment_sum(a * b, np.array([1, 0, 1]), 3), "any", "any"),
    "segment_max": (lambda a, b: ops.segment_max(a + b, np.array([1, 0, 1]), 2), "any", "any"),
    "segment_min": (lambda a, b: ops.segment_min(a - b, np.array([0, 5, 1]), 2), "any", "any"),
}  # fmt: skip


@pytest.mark.parametrize("name", BINARY)
@FAST
@given(seed=SEEDS)
def test_binary_gradients(name, seed):
    fn, da, db = BINARY[name]
    rng = np.random.default_rng(seed)
    a, b = sample(rng, (3, 4), da), sample(rng, (3, 4), db)
    if name == "fmod":
        a = np.where(np.abs(np.fmod(a, b)) < 0.1, a + 0.2, a)
    check_grads(fn, a, b, rng=rng)


def test_float32_stays_float32():
    for fn in (ops.cbrt, ops.erfinv, ops.median, ops.nanmean, ops.trapezoid, ops.deg2rad):
        assert fn(A * 0.5).dtype == np.float32
    assert ops.kron(A, B).dtype == ops.segment_max(A, [0, 1, 1]).dtype == np.float32


# ---- errors -------------------------------------------------------------------------------------
ERRORS = {
    "inner": (lambda: ops.inner(A, V), r"inner.*\(3, 4\) and \(5,\)"),
    "vdot": (lambda: ops.vdot(A, V), r"vdot.*\(3, 4\) and \(5,\)"),
    "cross": (lambda: ops.cross(A, B), r"cross.*\(3, 4\) and \(3, 4\)"),
    "correlate": (lambda: ops.correlate(A, V), r"correlate.*\(3, 4\) and \(5,\)"),
    "diag": (lambda: ops.diag(X3), r"diag.*\(2, 3, 4\)"),
    "trace": (lambda: ops.trace(V), r"trace.*\(5,\)"),
    "vsplit": (lambda: ops.vsplit(V, 5), r"vsplit.*\(5,\)"),
    "hsplit_unequal": (lambda: ops.hsplit(A, 3), r"split.*\(3, 4\)"),
    "quantile_q": (lambda: ops.quantile(A, 1.5), "quantile.*q must lie"),
    "quantile_method": (lambda: ops.quantile(A, 0.5, method="cubic"), "quantile.*method"),
    "segment_ids": (lambda: ops.segment_sum(A, [0, 1]), r"segment_sum.*\(2,\) and \(3, 4\)"),
    "bincount_weights": (lambda: ops.bincount(I[0], weights=V), r"bincount.*\(5,\).*\(3,\)"),
    "scatter": (lambda: ops.scatter(np.zeros((2, 3), int), V[:2], (4, 4)), r"scatter.*\(2, 3\)"),
    "select": (lambda: ops.select([A > 0], [A, B]), "select.*1 and 2"),
    "rearrange": (lambda: ops.rearrange(A, "a (b c) -> a b c", b=3), r"rearrange.*\(b c\)"),
    "rearrange_axes": (lambda: ops.rearrange(A, "a b -> a c"), "rearrange"),
    "bitwise": (lambda: ops.bitwise_and(A, I), "bitwise_and.*float32"),
    "searchsorted": (lambda: ops.searchsorted(A, V), r"searchsorted.*\(3, 4\)"),
}  # fmt: skip


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_op_and_shapes(name):
    fn, match = ERRORS[name]
    with pytest.raises(ValueError, match=match):
        fn()


def test_numpy_functions_on_tensors_route_to_these_ops():
    """np.median(t), np.cbrt(t), ... on a tracked Tensor record like the fastnn.ops calls."""
    rng = np.random.default_rng(9)

    def through_numpy(x):
        return (np.median(x, axis=0) + np.trace(x) + np.sum(np.diff(x), axis=0)[:1]
                + np.cbrt(x[0] + 3) + np.fmax(x[1], 0.1) + np.hypot(x[2], 1.0))  # fmt: skip

    check_grads(through_numpy, rng.standard_normal((4, 4)), rng=rng)
