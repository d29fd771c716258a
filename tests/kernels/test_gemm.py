"""fastnn.kernels.gemm: the split products and blocks of rows equal numpy's, and fastnn's calls
run with BLAS on one thread (fastnn.runtime's serial-BLAS section)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastnn
from fastnn import config, layers, runtime
from fastnn.kernels import forms, gemm
from fastnn.kernels.codes import LINEAR, RELU

pytestmark = pytest.mark.skipif(config.get_num_threads() < 2, reason="splits need 2 threads")


def blas_threads() -> set:
    """Thread counts of numpy's BLAS (Numba may load scipy's too, which fastnn never calls)."""
    libs = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
    own = [lib for lib in libs if "numpy" in lib["filepath"]] or libs
    return {lib["num_threads"] for lib in own}


@pytest.fixture
def split_everything(monkeypatch):
    """Every product is split (no minimum size), inside a serial-BLAS section."""
    monkeypatch.setattr(gemm, "MIN_FLOPS_PER_BLOCK", 1)
    with runtime.serial_blas() as section:
        assert section.active and runtime.threads() >= 2
        yield


# (m, k, n): rows split, columns split, K split with partial sums (both sides short; K long)
SHAPES = [(200, 7, 5), (5, 7, 200), (3, 500, 4), (40, 200, 30), (1, 1, 1)]


@pytest.mark.parametrize("m, k, n", SHAPES)
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_split_products_match_numpy(split_everything, m, k, n, transposed, dtype):
    rng = np.random.default_rng(m * k * n)
    a = rng.standard_normal((k, m) if transposed else (m, k)).astype(dtype)
    a = a.T if transposed else a  # a transposed view, as dkernel = cols.T @ grad uses
    b = rng.standard_normal((k, n)).astype(dtype)
    out = np.full((m, n), np.nan, dtype)
    assert gemm.matmul(a, b, out, threads=2) is out
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out, a @ b, **tol)

    start = rng.standard_normal((m, n)).astype(dtype)
    acc = start.copy()
    gemm.matmul(a, b, acc, accumulate=True, threads=2)
    np.testing.assert_allclose(acc, start + a @ b, **tol)


@pytest.mark.parametrize("count", [1, 2, 3])  # one split; side by side on 2 threads; in turn
def test_independent_products_match_numpy(split_everything, count):
    rng = np.random.default_rng(count)
    products, expected = [], []
    for i in range(count):
        a, b = rng.standard_normal((40, 30)), rng.standard_normal((30, 20 + i))
        out = rng.standard_normal((40, 20 + i))
        accumulate = i % 2 == 0
        expected.append(out + a @ b if accumulate else a @ b)
        products.append((a, b, out, accumulate))
    gemm.matmuls(products, threads=2)
    for (_, _, out, _), want in zip(products, expected):
        np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)


def test_an_error_in_a_block_reaches_the_caller(split_everything):
    a, b = np.ones((64, 3), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(ValueError):
        gemm.matmul(a, b, np.empty((64, 5), np.float32), threads=2)  # out has the wrong width


def test_passes_run_blas_on_one_thread_and_restore_it():
    """BLAS is serial inside forward and backward passes (Conv2D's GEMM sees it), and back to
    its own count afterwards, for the user's numpy code."""
    config.set_num_threads(2)
    seen = []

    class Spy(layers.Layer):
        def forward(self, inputs, training):
            seen.append(blas_threads())
            return inputs, None

        def backward(self, ctx, grad_outputs):
            seen.append(blas_threads())
            return grad_outputs

    inputs = fastnn.Input((6, 6, 2))
    x = Spy()(layers.Conv2D(4, 3, activation="relu")(inputs))
    model = fastnn.Model(inputs, layers.Dense(1)(layers.Flatten()(x)))
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 6, 6, 2), np.float32), np.ones((8, 1), np.float32)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    model.predict(x, verbose=0)
    model(x)
    assert seen and all(threads == {1} for threads in seen)
    assert blas_threads() == {2}


@pytest.mark.parametrize(
    "rows, threads, min_rows", [(7, 3, 1), (64, 2, None), (63, 2, None), (0, 2, 1)]
)
def test_row_blocks_cover_the_rows_once(rows, threads, min_rows):
    """Blocks are contiguous, cover range(rows) once, and number min(threads, rows // min_rows)
    (one block below that: ``fn(0, rows)``)."""
    seen = []
    gemm.row_blocks(lambda i, j: seen.append((i, j)), rows, threads, min_rows)
    least = gemm.MIN_ROWS_PER_BLOCK if min_rows is None else min_rows
    assert len(seen) == max(1, min(threads, rows // least))
    assert sorted(seen)[0][0] == 0 and sorted(seen)[-1][1] == rows
    assert all(a[1] == b[0] for a, b in zip(sorted(seen), sorted(seen)[1:]))


def test_threads_is_one_outside_a_section_and_the_bound_inside():
    config.set_num_threads(2)
    assert runtime.threads() == 1
    with runtime.serial_blas() as section:
        assert runtime.threads() == (2 if section.active else 1)
    assert runtime.threads() == 1


def test_each_public_call_enters_the_section_once(monkeypatch):
    """fit, evaluate, predict, the *_on_batch calls and calls on arrays enter the serial-BLAS
    section once each (not once per pass), and the graph's passes run inside it."""
    entered, inside = [], []
    section = runtime.serial_blas()
    enter = type(section).__enter__

    def counting_enter(self):
        entered.append(self.depth)
        return enter(self)

    monkeypatch.setattr(type(section), "__enter__", counting_enter)
    inputs = fastnn.Input((4,))
    dense = layers.Dense(3)
    model = fastnn.Model(inputs, layers.Dense(1)(dense(inputs)))
    model.compile(optimizer="sgd", loss="mse")
    for method in ("forward", "infer"):  # training's passes, and predict's
        run = getattr(model._graph, method)

        def spy(*args, _run=run, **kwargs):
            inside.append(section.depth)
            return _run(*args, **kwargs)

        monkeypatch.setattr(model._graph, method, spy)
    x, y = np.ones((16, 4), np.float32), np.ones((16, 1), np.float32)
    calls = {
        "fit": lambda: model.fit(x, y, batch_size=4, epochs=2, verbose=0),
        "evaluate": lambda: model.evaluate(x, y, batch_size=4, verbose=0),
        "predict": lambda: model.predict(x, batch_size=4, verbose=0),
        "train_on_batch": lambda: model.train_on_batch(x, y),
        "test_on_batch": lambda: model.test_on_batch(x, y),
        "predict_on_batch": lambda: model.predict_on_batch(x),
        "model(x)": lambda: model(x),
        "layer(x)": lambda: dense(x),
    }
    for name, call in calls.items():
        entered.clear()
        call()
        assert entered == [0], name  # once, from outside any section
    assert inside and all(depth == 1 for depth in inside)


@pytest.mark.parametrize("m, k, n", [(1, 784, 512), (3, 512, 512), (1, 512, 10), (70, 64, 96)])
@pytest.mark.parametrize("code", [LINEAR, RELU])
def test_product_calls_compute_each_calls_product(m, k, n, code):
    """``matmul_call`` and ``matmul_bias_call`` of a kept b, made once, compute the product of
    each a they are given, on the SIMD kernels or numpy's."""
    rng = np.random.default_rng(5)
    b = rng.standard_normal((k, n)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    a_list = [rng.standard_normal((m, k)).astype(np.float32) for _ in range(3)]
    out = np.empty((m, n), np.float32)
    kept = forms.Forms(b)
    product = gemm.matmul_call(a_list[0], kept, out, threads=2)
    biased = gemm.matmul_bias_call(a_list[0], kept, bias, code, out.copy(), threads=2)
    assert biased is not None or not gemm.may_run_simd(m, k, n)
    assert gemm.matmul_bias_call(a_list[0], b, bias, code, out) is None  # b not kept
    for a in a_list[1:]:
        want = a.astype(np.float64) @ b
        np.testing.assert_allclose(product(a), want, rtol=1e-4, atol=1e-4)
        if biased is not None:
            z = want + bias
            np.testing.assert_allclose(
                biased(a), np.maximum(z, 0) if code == RELU else z, rtol=1e-4, atol=1e-4
            )
