"""keras.ops.linalg on numpy's LAPACK: factorizations, solves, determinants and norms over the
last two axes (batched over the others).

Gradients (rules in ``rules.py``): inv, det, slogdet's and logdet's log|det|, solve,
solve_triangular, cholesky, cholesky_inverse, eigh (values and vectors, distinct eigenvalues),
svd's singular values (compute_uv=False) and every norm. qr, svd's vectors, eig, lstsq, pinv,
lu_factor compute forward only: given a value a recording tape tracks they raise.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable

import numpy as np

from fastnn.ops import numpy as fnp
from fastnn.ops.core import custom_gradient
from fastnn.ops.numpy import _float
from fastnn.ops.signal import forward_only
from fastnn.ops.tape import GradientTape, OpError, apply, as_array, unwrap

__all__ = [
    "cholesky", "cholesky_inverse", "det", "eig", "eigh", "inv", "logdet", "lstsq", "lu_factor",
    "jvp", "matrix_rank", "norm", "pinv", "qr", "slogdet", "solve", "solve_triangular", "svd",
]  # fmt: skip


def _square(name: str, x) -> None:
    shape = np.shape(unwrap(x))
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise OpError(f"{name}: expected square matrices (..., n, n); got shape {shape}")


def _floats(x) -> np.ndarray:
    """x as floats for LAPACK: float32/float64 kept, others floatx."""
    return _float(x)


def _matrix_t(x):
    return fnp.swapaxes(x, -1, -2)


# ---- inverses and determinants ----------------------------------------------------------------
def inv(x):
    """The inverse of each square matrix: (..., n, n) -> (..., n, n)."""
    _square("inv", x)
    return apply("inv", lambda v: np.linalg.inv(_floats(v)), x)


def det(x):
    """The determinant of each square matrix: (..., n, n) -> (...)."""
    _square("det", x)
    return apply("det", lambda v: np.asarray(np.linalg.det(_floats(v))), x)


def slogdet(x) -> tuple:
    """(sign, log|det|) of each square matrix: (..., n, n) -> (...), (...)."""
    _square("slogdet", x)
    sign = np.asarray(np.linalg.slogdet(_floats(x))[0])
    return sign, apply("logabsdet", lambda v: np.asarray(np.linalg.slogdet(_floats(v))[1]), x)


def logdet(x):
    """log(det(x)) of each square matrix (NaN where det < 0): (..., n, n) -> (...)."""
    _square("logdet", x)
    return apply("logabsdet", _logdet, x)


def _logdet(x):
    sign, value = np.linalg.slogdet(_floats(x))
    with np.errstate(invalid="ignore"):
        return np.asarray(np.where(sign > 0, value, np.log(sign)), value.dtype)


# ---- solves -------------------------------------------------------------------------------------
def _solve_shapes(name: str, a, b) -> bool:
    """True if b is a batch of vectors (..., n) rather than matrices (..., n, k)."""
    _square(name, a)
    a_shape, b_shape = np.shape(unwrap(a)), np.shape(unwrap(b))
    vector = len(b_shape) == len(a_shape) - 1
    rows = b_shape[-1] if vector else (b_shape[-2] if len(b_shape) >= 2 else None)
    batch = b_shape[:-1] if vector else b_shape[:-2]
    try:
        np.broadcast_shapes(a_shape[:-2], batch)
    except ValueError:
        rows = None
    if rows != a_shape[-1]:
        raise OpError(
            f"{name}: a of shape {a_shape} and b of shape {b_shape} do not fit: b needs "
            f"{a_shape[-1]} rows and a batch that broadcasts with a's"
        )
    return vector


def solve(a, b):
    """x with a @ x = b: (..., n, n), (..., n, k) or (..., n) -> b's shape."""
    if _solve_shapes("solve", a, b):
        return fnp.squeeze(solve(a, fnp.expand_dims(b, -1)), -1)
    return apply("solve", _solve, a, b)


def _solve(a, b):
    a, b = fnp._promote(_floats(a), _floats(b))
    return np.linalg.solve(a, b)


def solve_triangular(a, b, lower: bool = False):
    """x with a @ x = b for triangular a (only its ``lower`` or upper triangle is read)."""
    _solve_shapes("solve_triangular", a, b)
    return solve(fnp.tril(a) if lower else fnp.triu(a), b)


def cholesky(x, upper: bool = False):
    """The Cholesky factor L (L @ L^T = x; U = L^T with ``upper``) of symmetric positive
    definite matrices; only x's lower triangle is read: (..., n, n) -> (..., n, n)."""
    _square("cholesky", x)
    factor = apply("cholesky", _cholesky, x)
    return _matrix_t(factor) if upper else factor


def _cholesky(x):
    try:
        return np.linalg.cholesky(_floats(x))
    except np.linalg.LinAlgError as error:
        raise OpError(f"cholesky: the input is not positive definite ({error})") from None


def cholesky_inverse(x, upper: bool = False):
    """The inverse of L @ L^T (U^T @ U with ``upper``) from its Cholesky factor."""
    _square("cholesky_inverse", x)
    gram = fnp.matmul(_matrix_t(x), x) if upper else fnp.matmul(x, _matrix_t(x))
    return inv(gram)


# ---- decompositions -----------------------------------------------------------------------------
def eigh(x) -> tuple:
    """Eigenvalues (ascending) and eigenvectors (columns) of symmetric matrices, from x's lower
    triangle: (..., n, n) -> (..., n), (..., n, n)."""
    _square("eigh", x)
    return _eigh(x)


@custom_gradient
def _eigh(x):
    values, vectors = np.linalg.eigh(_floats(unwrap(x)))

    def grad(g_values, g_vectors):
        """U (diag(gw) + F o (U^T gU)) U^T, F_ij = 1 / (w_j - w_i) off the diagonal; the
        symmetric part, as x's lower triangle stands for both."""
        middle = np.zeros(vectors.shape, vectors.dtype)
        if g_values is not None:
            middle += np.eye(values.shape[-1]) * np.asarray(unwrap(g_values))[..., None, :]
        if g_vectors is not None:
            gaps = values[..., None, :] - values[..., :, None]
            with np.errstate(divide="ignore"):
                inverse_gaps = np.where(gaps == 0, 0.0, 1.0 / gaps)
            u_t = np.swapaxes(vectors, -1, -2)
            middle += inverse_gaps * (u_t @ np.asarray(unwrap(g_vectors)))
        full = vectors @ middle @ np.swapaxes(vectors, -1, -2)
        return lower_triangle_grad((full + np.swapaxes(full, -1, -2)) / 2)

    return (values, vectors), grad


def lower_triangle_grad(sym):
    """The gradient of a function of a symmetric matrix read from x's lower triangle, given its
    symmetric gradient ``sym``: below the diagonal both mirrored entries' share, none above."""
    n = np.shape(unwrap(sym))[-1]
    return fnp.add(fnp.tril(fnp.multiply(sym, 2.0), -1), fnp.multiply(sym, np.eye(n)))


def eig(x) -> tuple:
    """Eigenvalues and eigenvectors of square matrices (complex when numpy's are; forward
    only)."""
    _square("eig", x)
    forward_only("eig", x)
    values, vectors = np.linalg.eig(as_array(x))
    return values, vectors


def qr(x, mode: str = "reduced") -> tuple:
    """(q, r) with x = q @ r ('reduced' or 'complete'; forward only)."""
    if mode not in ("reduced", "complete"):
        raise OpError(f"qr: mode must be 'reduced' or 'complete'; got {mode!r}")
    if np.ndim(unwrap(x)) < 2:
        raise OpError(f"qr: expected matrices (..., m, n); got shape {np.shape(unwrap(x))}")
    forward_only("qr", x)
    return tuple(np.linalg.qr(_floats(x), mode=mode))


def svd(x, full_matrices: bool = True, compute_uv: bool = True):
    """(u, s, v^T) of matrices, or the singular values s alone (with their gradient) when
    compute_uv=False: (..., m, n) -> s (..., min(m, n))."""
    if np.ndim(unwrap(x)) < 2:
        raise OpError(f"svd: expected matrices (..., m, n); got shape {np.shape(unwrap(x))}")
    if not compute_uv:
        return apply("singular_values", lambda v: np.linalg.svd(_floats(v), compute_uv=False), x)
    forward_only("svd", x)
    return tuple(np.linalg.svd(_floats(x), full_matrices=full_matrices))


def _singular_values_grad(g, x):
    """U diag(g) V^T, recorded without a rule: a second derivative through the singular values
    raises instead of missing the vectors' dependence on x."""
    return apply("singular_values_grad", _singular_values_grad_forward, g, x)


def _singular_values_grad_forward(g, x):
    u, _, vt = np.linalg.svd(_floats(x), full_matrices=False)
    return (u * np.asarray(g)[..., None, :]) @ vt


def lstsq(a, b, rcond=None):
    """The least-squares x minimizing |a @ x - b| (forward only): (m, n), (m, k) -> (n, k)."""
    a_shape, b_shape = np.shape(unwrap(a)), np.shape(unwrap(b))
    if len(a_shape) != 2 or len(b_shape) not in (1, 2) or b_shape[0] != a_shape[0]:
        raise OpError(f"lstsq: expected a (m, n) and b (m,) or (m, k); got {a_shape} and {b_shape}")
    forward_only("lstsq", a, b)
    a_value, b_value = fnp._promote(_floats(a), _floats(b))
    return np.linalg.lstsq(a_value, b_value, rcond=rcond)[0]


def pinv(x, rcond=None):
    """The Moore-Penrose pseudo-inverse (forward only): (..., m, n) -> (..., n, m)."""
    forward_only("pinv", x)
    value = _floats(x)
    return np.linalg.pinv(value) if rcond is None else np.linalg.pinv(value, rcond=rcond)


def matrix_rank(x, tol=None) -> np.ndarray:
    """The rank of each matrix (int32), by numpy's SVD tolerance."""
    return np.asarray(np.linalg.matrix_rank(_floats(x), tol=tol), "int32")


def lu_factor(x) -> tuple:
    """(lu, pivots): L below the diagonal (unit diagonal implied) and U on and above it, with
    LAPACK's 0-based row swaps (int32), of square matrices (forward only)."""
    _square("lu_factor", x)
    forward_only("lu_factor", x)
    value = np.array(_floats(x))
    batch = value.reshape(-1, *value.shape[-2:])
    pivots = np.zeros(batch.shape[:2], np.int32)
    for m, matrix in enumerate(batch):
        pivots[m] = _lu_in_place(matrix)
    return value, pivots.reshape(value.shape[:-1])


def _lu_in_place(a: np.ndarray) -> np.ndarray:
    """Doolittle LU with partial pivoting on ``a`` in place; returns the pivot rows."""
    n = a.shape[0]
    pivots = np.arange(n)
    for k in range(n):
        p = k + int(np.argmax(np.abs(a[k:, k])))
        pivots[k] = p
        if p != k:
            a[[k, p]] = a[[p, k]]
        if a[k, k] != 0:
            a[k + 1 :, k] /= a[k, k]
            a[k + 1 :, k + 1 :] -= np.outer(a[k + 1 :, k], a[k, k + 1 :])
    return pivots


# ---- norms ---------------------------------------------------------------------------------------
def norm(x, ord=None, axis=None, keepdims: bool = False):  # noqa: A002 (Keras's name)
    """Vector norms (any ord, inf, -inf, 0) over one axis, matrix norms ('fro', 'nuc', 1, -1,
    2, -2, inf, -inf) over two, as np.linalg.norm; over three or more axes, the vector norm of
    their entries (numpy and Keras refuse): (...) -> reduced."""
    x = x if as_array(x).dtype.kind in "fc" else fnp.cast(x, _float(x).dtype)
    n = np.ndim(unwrap(x))
    if axis is None:
        if ord is None:
            return _kept(fnp.sqrt(fnp.sum(fnp.square(x))), n, keepdims)
        axis = tuple(range(n))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    axes = tuple(int(a) % builtins.max(n, 1) for a in axes)
    if len(axes) == 2:
        return _matrix_norm(x, ord, axes, keepdims)
    if len(axes) > 2 and isinstance(ord, str):
        raise OpError(f"norm: ord={ord!r} takes two axes; got axis={axis} for shape {_shape(x)}")
    return _vector_norm(x, ord, axes[0] if len(axes) == 1 else axes, keepdims)


def _shape(x) -> tuple:
    return np.shape(unwrap(x))


def _kept(value, n: int, keepdims: bool):
    return fnp.reshape(value, (1,) * n) if keepdims else value


def _vector_norm(x, ord, axis, keepdims: bool):  # noqa: A002
    if ord is None or ord == 2:
        return fnp.sqrt(fnp.sum(fnp.square(x), axis=axis, keepdims=keepdims))
    if ord in (np.inf, float("inf")):
        return fnp.max(fnp.abs(x), axis=axis, keepdims=keepdims)
    if ord in (-np.inf, float("-inf")):
        return fnp.min(fnp.abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        count = np.sum(as_array(x) != 0, axis=axis, keepdims=keepdims)
        return count.astype(as_array(x).dtype)
    if isinstance(ord, str):
        raise OpError(f"norm: ord={ord!r} is a matrix norm; give two axes")
    if ord == 1:
        return fnp.sum(fnp.abs(x), axis=axis, keepdims=keepdims)
    powered = fnp.sum(fnp.power(fnp.abs(x), float(ord)), axis=axis, keepdims=keepdims)
    return fnp.power(powered, 1.0 / float(ord))


def _matrix_norm(x, ord, axes: tuple, keepdims: bool):  # noqa: A002
    rows, cols = axes
    if rows == cols:
        raise OpError(f"norm: the two axes must differ; got {axes}")
    if ord in (None, "fro", "f"):
        return fnp.sqrt(fnp.sum(fnp.square(x), axis=axes, keepdims=keepdims))
    if ord in (1, -1, np.inf, -np.inf):
        over, then = (rows, cols) if ord in (1, -1) else (cols, rows)
        sums = fnp.sum(fnp.abs(x), axis=over, keepdims=True)
        pick = fnp.max if ord in (1, np.inf) else fnp.min
        return _squeezed(pick(sums, axis=then, keepdims=True), axes, keepdims)
    if ord in (2, -2, "nuc"):
        moved = fnp.moveaxis(x, axes, (-2, -1))
        values = svd(moved, compute_uv=False)
        reduced = {2: fnp.max, -2: fnp.min, "nuc": fnp.sum}[ord](values, axis=-1)
        if keepdims:
            reduced = fnp.expand_dims(reduced, tuple(sorted(axes)))
        return reduced
    raise OpError(f"norm: ord={ord!r} is not a matrix norm ('fro', 'nuc', 1, -1, 2, -2, inf)")


def _squeezed(value, axes: tuple, keepdims: bool):
    return value if keepdims else fnp.squeeze(value, tuple(axes))


# ---- forward-mode derivatives ------------------------------------------------------------------
def jvp(fun: Callable, primals, tangents, has_aux: bool = False):
    """(fun(*primals), J @ tangents) (and aux with ``has_aux``), as keras.ops.linalg.jvp: the
    Jacobian-vector product as the gradient, in u, of <J^T u, tangents> (a tape over a tape,
    so every op on the way needs a rule whose own ops record)."""
    primals, tangents = list(primals), list(tangents)
    if len(primals) != len(tangents):
        raise OpError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    values = [np.asarray(as_array(p), _float(p).dtype) for p in primals]
    with GradientTape() as outer:
        with GradientTape() as inner:
            watched = [inner.watch(v) for v in values]
            result = fun(*watched)
            output, aux = result if has_aux else (result, None)
        u = outer.watch(np.zeros(_shape(output), np.result_type(unwrap(output))))
        grads = inner.gradient(output, watched, output_gradients=u, unconnected_gradients="zero")
        pairing = None
        for g, t in zip(grads, tangents):
            term = fnp.sum(fnp.multiply(g, np.asarray(as_array(t), np.result_type(unwrap(g)))))
            pairing = term if pairing is None else fnp.add(pairing, term)
    tangent_out = outer.gradient(pairing, u, unconnected_gradients="zero")
    out = np.asarray(unwrap(output))
    return (out, tangent_out, aux) if has_aux else (out, tangent_out)
