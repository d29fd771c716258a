"""Kept forms (``kernels.forms``): a wrapper given a ``Forms`` computes what it computes from the
array, makes each form once, and a product on a kept b matches numpy's."""

import numpy as np
import pytest

from fastnn import runtime
from fastnn.kernels import conv, forms, gemm
from fastnn.kernels.codes import RELU

CONVS = [  # x shape, kernel shape, pooled, the plan's forward
    ((2, 10, 10, 8), (3, 3, 8, 16), False, conv.SIMD),
    ((2, 10, 10, 8), (3, 3, 8, 16), True, conv.SIMD),
    ((16, 12, 12, 64), (3, 3, 64, 64), False, conv.WINOGRAD),
    ((16, 12, 12, 64), (3, 3, 64, 64), True, conv.WINOGRAD),
    ((4, 9, 9, 16), (1, 1, 16, 32), False, conv.SIMD),  # a product on matmul_simd
]


@pytest.mark.parametrize("x_shape, kernel_shape, pooled, algorithm", CONVS)
def test_a_conv_on_kept_forms_equals_the_conv_on_the_array(
    x_shape, kernel_shape, pooled, algorithm
):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    k = rng.standard_normal(kernel_shape).astype(np.float32)
    b = rng.standard_normal(kernel_shape[3]).astype(np.float32)
    plan = conv.plan_conv2d(x_shape, kernel_shape, (1, 1), "same", pooled=pooled)
    assert plan.forward == algorithm
    run = conv.conv2d_forward_max_pool if pooled else conv.conv2d_forward
    kept = forms.Forms(k)
    with runtime.serial_blas():
        expected = run(x, k, b, (1, 1), "same", RELU, threads=2)
        first = run(x, kept, b, (1, 1), "same", RELU, threads=2)
        made = dict(kept._made)
        again = run(x, kept, b, (1, 1), "same", RELU, threads=2)
    np.testing.assert_array_equal(first, expected)
    np.testing.assert_array_equal(again, expected)
    assert len(made) == 1 and all(kept._made[name] is form for name, form in made.items())


@pytest.mark.parametrize("m, k, n", [(1, 784, 512), (8, 512, 256), (4, 16, 8), (300, 64, 40)])
@pytest.mark.parametrize("accumulate", [False, True])
def test_a_product_on_a_kept_b_matches_numpy(m, k, n, accumulate):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    start = rng.standard_normal((m, n)).astype(np.float32)
    kept = forms.Forms(b)
    for _ in range(2):  # packed at the first call (where SIMD takes it), reused at the second
        out = start.copy()
        with runtime.serial_blas():
            gemm.matmul(a, kept, out, accumulate, threads=2)
        expected = a.astype(np.float64) @ b + (start if accumulate else 0)
        np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    simd = 2 * m * k * n >= gemm.SIMD_MIN_KEPT_FLOPS or k * n >= gemm.SIMD_MIN_KEPT_VALUES
    assert set(kept._made) == ({"simd"} if simd else set())
