"""fastnn.ops.numpy_more and ops.jvp: keras.ops parity (torch backend), float64 gradients,
forward-mode derivatives against the Jacobian, and errors."""

from __future__ import annotations

import numpy as np
import pytest
from test_ops_gradients import check_grads

from fastnn import ops
from fastnn.ops import GradientTape

RNG = np.random.default_rng(0)
A = RNG.standard_normal((3, 4)).astype(np.float32)
B = RNG.standard_normal((3, 4)).astype(np.float32)
AN, BN = A.copy(), B.copy()
AN[0, 1] = BN[0, 1] = BN[1, 2] = np.nan
I = np.array([[12, 18, 7], [0, 5, 9]])  # noqa: E741
IM = RNG.standard_normal((2, 3, 6, 5)).astype(np.float32)


def _images(o):
    """IM as the module takes it (Keras's torch unfold wants a tensor)."""
    return IM if o is ops else o.convert_to_tensor(IM)


PARITY = {
    "real": lambda o: o.real(A), "conj": lambda o: o.conj(A), "angle": lambda o: o.angle(A),
    "isreal": lambda o: o.isreal(A),
    "sinc": lambda o: o.sinc(np.array([0.0, 0.5, 1.5, -2.2], "float32")),
    "i0": lambda o: o.i0(A), "ldexp": lambda o: o.ldexp(A, np.array([1, 2, -1, 0])),
    "nextafter": lambda o: o.nextafter(A, B), "fmax_nans": lambda o: o.fmax(AN, BN),
    "fmin_nans": lambda o: o.fmin(AN, B), "gcd": lambda o: o.gcd(I, np.array(6)),
    "lcm": lambda o: o.lcm(I, np.array(4)),
    "saturate_cast_uint8": lambda o: o.saturate_cast(np.array([-1.0, 256, 3.7], "float32"),
                                                     "uint8"),
    "saturate_cast_int8": lambda o: o.saturate_cast(np.array([-200, 300]), "int8"),
    "saturate_cast_float16": lambda o: o.saturate_cast(np.array([-1e6, 3.5, 7e4], "float32"),
                                                       "float16"),
    "cdist": lambda o: o.cdist(A, B[:2]), "corrcoef": lambda o: o.corrcoef(A),
    "histogram_counts": lambda o: o.histogram(A.ravel(), 5)[0],
    "histogram_edges": lambda o: o.histogram(A.ravel(), 4, (-1, 1))[1],
    "segment_prod": lambda o: o.segment_prod(A, np.array([0, 2, 0]), 3),
    "segment_prod_inferred": lambda o: o.segment_prod(A, np.array([1, 0, 1])),
    "unfold": lambda o: o.unfold(_images(o), 2),
    "unfold_all_arguments": lambda o: o.unfold(_images(o), (2, 3), dilation=(1, 2), padding=1,
                                               stride=2),
    "fold": lambda o: o.fold(o.unfold(_images(o), 2), (6, 5), 2),
    "fold_all_arguments": lambda o: o.fold(o.unfold(_images(o), (2, 3), (1, 2), 1, 2), (6, 5),
                                           (2, 3), (1, 2), 1, 2),
    "view_as_real": lambda o: o.view_as_real(np.array([1 + 2j, 3 - 1j], "complex64")),
    "polar": lambda o: o.polar(np.abs(A), B),
    "i0_int64": lambda o: o.i0(I), "corrcoef_int64": lambda o: o.corrcoef(I),
}  # fmt: skip


@pytest.mark.parametrize("name", PARITY)
def test_forward_matches_keras(keras_ops, name):
    ours, theirs = PARITY[name](ops), keras_ops.convert_to_numpy(PARITY[name](keras_ops))
    assert np.shape(ours) == theirs.shape
    assert np.result_type(ours) == theirs.dtype, f"dtype {np.result_type(ours)} vs {theirs.dtype}"
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_complex_views_and_imag():
    z = np.array([1 + 2j, 3 - 1j], np.complex64)
    np.testing.assert_array_equal(ops.view_as_complex(ops.view_as_real(z)), z)
    np.testing.assert_array_equal(ops.imag(z), [2, -1])
    np.testing.assert_array_equal(ops.imag(A), np.zeros_like(A))  # Keras's torch refuses


GRADIENTS = {
    "sinc": (lambda x: ops.sinc(x), 1),
    "ldexp": (lambda x: ops.ldexp(x, np.array([1, -2, 0, 3])), 1),
    "nextafter": (lambda x: ops.nextafter(x, x * 0 + 5.0) * x, 1),
    "saturate_cast_float": (lambda x: ops.saturate_cast(x * 1e300, "float64") * 1e-300, 1),
    "fmax": (lambda x: ops.fmax(x, np.where(np.eye(3, 4) > 0, np.nan, 0.1)), 1),
    "fmin": (lambda x: ops.fmin(np.where(np.eye(3, 4) > 0, np.nan, x), x * 0.5), 1),
    "cdist": (lambda x, y: ops.cdist(x, y[:2]), 2),
    "corrcoef": (lambda x: ops.corrcoef(x), 1),
    "segment_prod": (lambda x: ops.segment_prod(x, np.array([0, 2, 0]), 3), 1),
    "unfold": (lambda x: ops.unfold(ops.reshape(x, (1, 2, 2, 3)), 2, padding=1), 1),
    "fold": (lambda x: ops.fold(ops.reshape(x, (1, 4, 3)), (2, 6), 2, stride=(1, 2), padding=0),
             1),
}  # fmt: skip


@pytest.mark.parametrize("name", GRADIENTS)
def test_gradients(name):
    fn, count = GRADIENTS[name]
    rng = np.random.default_rng(4)
    args = [rng.uniform(0.3, 2.0, (3, 4)) * rng.choice([-1, 1], (3, 4)) for _ in range(count)]
    check_grads(fn, *args, rng=rng)


def test_fold_is_the_adjoint_of_unfold():
    x = RNG.standard_normal((2, 3, 6, 5))
    cols = ops.unfold(x, (2, 3), (1, 2), 1, 2)
    y = RNG.standard_normal(cols.shape)
    lhs = np.sum(cols * y)
    np.testing.assert_allclose(lhs, np.sum(x * ops.fold(y, (6, 5), (2, 3), (1, 2), 1, 2)))


def test_jvp_is_the_jacobian_times_the_tangent():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3,)), rng.standard_normal((3, 2))
    tx, tw = rng.standard_normal((3,)), rng.standard_normal((3, 2))

    def fun(a, b):
        return ops.tanh(a @ b) * ops.sum(a)

    out, tangent = ops.jvp(fun, (x, w), (tx, tw))
    eps = 1e-6
    numeric = (fun(x + eps * tx, w + eps * tw) - fun(x - eps * tx, w - eps * tw)) / (2 * eps)
    np.testing.assert_allclose(out, fun(x, w))
    np.testing.assert_allclose(tangent, numeric, rtol=1e-6, atol=1e-8)
    out, tangent, aux = ops.linalg.jvp(lambda a: (ops.exp(a), "aux"), (x,), (tx,), has_aux=True)
    np.testing.assert_allclose(tangent, np.exp(x) * tx)
    assert aux == "aux"


def test_i0_has_no_gradient_and_says_so():
    with GradientTape() as tape:
        x = tape.watch(np.ones(3))
        y = ops.sum(ops.i0(x))
    with pytest.raises(LookupError, match="i0"):
        tape.gradient(y, x)


ERRORS = {
    "cdist": (lambda: ops.cdist(A, B.T), r"cdist.*\(3, 4\) and \(4, 3\)"),
    "ldexp": (lambda: ops.ldexp(A, B), "ldexp.*float32"),
    "unfold": (lambda: ops.unfold(A, 2), r"unfold.*\(3, 4\)"),
    "unfold_kernel": (lambda: ops.unfold(IM, 7), r"unfold.*\(6, 5\)"),
    "fold": (lambda: ops.fold(IM[0], (6, 5), 2), r"fold.*\(3, 6, 5\)"),
    "segment_prod": (lambda: ops.segment_prod(A, [0]), r"segment_prod.*\(1,\) and \(3, 4\)"),
    "view_as_complex": (lambda: ops.view_as_complex(A), r"view_as_complex.*\(3, 4\)"),
    "jvp": (lambda: ops.jvp(ops.exp, (A,), (A, A)), "jvp.*1 primals but 2 tangents"),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_name_the_op_and_shapes(name):
    fn, match = ERRORS[name]
    with pytest.raises(ValueError, match=match):
        fn()
