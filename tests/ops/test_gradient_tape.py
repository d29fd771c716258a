"""fastnn.GradientTape and fastnn.Variable: tf.GradientTape's and keras.Variable's interface.

watch, persistent, nested tapes (gradients of gradients), trainable Variables watched when read,
None for what the target does not depend on, the errors, and what plain arrays cost.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import fastnn
from fastnn import GradientTape, Variable, ops
from fastnn.ops import Tensor
from fastnn.ops.tape import STATE, record

X = np.array([1.0, 2.0, 3.0])


# ---- outside a tape: numpy -------------------------------------------------------------------
def test_ops_outside_a_tape_return_plain_arrays():
    x = np.arange(6.0).reshape(2, 3)
    for y in (ops.add(x, 1), ops.sum(x, axis=0), ops.softmax(x), ops.matmul(x, x.T), x[:, 0]):
        assert type(y) is np.ndarray
    with GradientTape():
        assert type(ops.exp(x)) is np.ndarray  # nothing watched: nothing recorded
    v = Variable(x)
    assert type(v + 1) is np.ndarray and type(ops.sum(v)) is np.float64
    assert not STATE.tapes


def test_python_values_take_kerass_dtypes():
    assert ops.convert_to_tensor([1.0, 2.0]).dtype == np.float32
    assert ops.convert_to_tensor([1, 2]).dtype == np.int32
    assert ops.exp(np.arange(3)).dtype == np.float32
    assert ops.add(np.arange(3, dtype=np.int32), ops.ones(3)).dtype == np.float32
    assert ops.add(np.arange(3), 0.5).dtype == np.float32
    assert ops.divide(np.arange(1, 3), np.arange(1, 3)).dtype == np.float32
    assert ops.multiply(np.ones(2, np.float32), 2.5).dtype == np.float32


# ---- watch, gradient ---------------------------------------------------------------------------
def test_watch_returns_a_tensor_whose_operators_record():
    with GradientTape() as tape:
        x = tape.watch(X)
        assert isinstance(x, Tensor)
        y = ops.sum(x * x + 2 * x - x / 2 + x**2 + abs(-x) + x[::-1] @ x)
    expected = 2 * X + 2 - 0.5 + 2 * X + 1 + 3 * 2 * X[::-1]  # the dot is added to 3 entries
    np.testing.assert_allclose(tape.gradient(y, X), expected)


def test_a_watched_numpy_array_records_through_ops_functions():
    with GradientTape(persistent=True) as tape:
        tape.watch(X)
        y = ops.sum(ops.square(X))
        z = X * X  # numpy's own operator: the tape cannot see it
    np.testing.assert_allclose(tape.gradient(y, X), 2 * X)
    with pytest.raises(ValueError, match="target .* is not on this tape.*numpy"):
        tape.gradient(z, X)


def test_numpy_functions_on_a_tensor_record_or_refuse():
    with GradientTape() as tape:
        x = tape.watch(X)
        y = np.sum(np.exp(x) * np.tanh(x)) + np.mean(np.square(x))
        with pytest.raises(TypeError, match="numpy.unwrap has no gradient rule.*stop_gradient"):
            np.unwrap(x)
    expected = np.exp(X) * (np.tanh(X) + 1 - np.tanh(X) ** 2) + 2 * X / 3
    np.testing.assert_allclose(tape.gradient(y, x), expected)
    assert isinstance(np.unwrap(x), np.ndarray)  # no tape records: numpy on the value


def test_integer_and_boolean_results_never_record():
    with GradientTape() as tape:
        x = tape.watch(X)
        for y in (ops.argmax(x), x > 1, ops.argsort(x), ops.cast(x, "int32"), ops.isnan(x)):
            assert isinstance(y, (np.ndarray, np.generic))


def test_fan_out_sums_and_output_gradients():
    with GradientTape(persistent=True) as tape:
        x = tape.watch(X)
        a = ops.sin(x)
        y = a * a + a + ops.exp(a)
    expected = np.cos(X) * (2 * np.sin(X) + 1 + np.exp(np.sin(X)))
    np.testing.assert_allclose(tape.gradient(y, x), expected)
    u = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(tape.gradient(y, x, output_gradients=u), u * expected)
    np.testing.assert_allclose(tape.gradient([y, a], x), expected + np.cos(X))


def test_gradients_keep_the_structure_of_sources():
    a, b = np.ones(2), np.ones(3)
    with GradientTape() as tape:
        at, bt = tape.watch([a, b])
        y = ops.sum(at) * 2 + ops.sum(bt * bt)
    grads = tape.gradient(y, {"a": a, "rest": (b, [a])})
    np.testing.assert_allclose(grads["a"], [2, 2])
    np.testing.assert_allclose(grads["rest"][0], [2, 2, 2])
    np.testing.assert_allclose(grads["rest"][1][0], [2, 2])


def test_unconnected_sources_get_none_or_zeros():
    other = np.ones(4)
    with GradientTape(persistent=True) as tape:
        x, o = tape.watch(X), tape.watch(other)
        y = ops.sum(x)
    assert tape.gradient(y, [other, np.zeros(2)]) == [None, None]
    np.testing.assert_array_equal(tape.gradient(y, o, unconnected_gradients="zero"), np.zeros(4))
    assert tape.gradient(y, ops.stop_gradient(x)) is None


def test_cast_passes_the_gradient_back_in_the_source_dtype():
    with GradientTape() as tape:
        x = tape.watch(X)
        y = ops.sum(ops.cast(x, "float32") * 2 + ops.cast(ops.cast(x, "int32"), "float32"))
    grad = tape.gradient(y, X)
    assert grad.dtype == np.float64
    np.testing.assert_array_equal(grad, [2, 2, 2])  # the int cast stops the gradient


def test_float32_stays_float32():
    x32 = X.astype(np.float32)
    with GradientTape() as tape:
        x = tape.watch(x32)
        y = ops.mean(ops.softmax(x * 3.0) * ops.sigmoid(x) ** 2)
    grad = tape.gradient(y, x32)
    assert grad.dtype == np.float32 and y.dtype == np.float32


# ---- persistent, nested, stop_recording --------------------------------------------------------
def test_non_persistent_tape_computes_once():
    with GradientTape() as tape:
        x = tape.watch(X)
        y = ops.sum(x * x)
    tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="non-persistent GradientTape computes one set"):
        tape.gradient(y, x)
    with pytest.raises(RuntimeError, match="was used"), tape:
        pass


def test_persistent_tape_and_reentry():
    with GradientTape(persistent=True) as tape:
        x = tape.watch(X)
        y = ops.sum(x**3)
    np.testing.assert_allclose(tape.gradient(y, x), 3 * X**2)
    np.testing.assert_allclose(tape.gradient(y, x), 3 * X**2)
    with tape:  # a persistent tape records again
        z = ops.sum(ops.exp(x))
    np.testing.assert_allclose(tape.gradient(z, x), np.exp(X))
    with pytest.raises(RuntimeError, match="already recording"), tape, tape:
        pass


def test_nested_tapes_give_second_derivatives():
    with GradientTape() as outer:
        x = outer.watch(X)
        with GradientTape() as inner:
            inner.watch(x)
            y = ops.sum(ops.sin(x) * x)
        dy = inner.gradient(y, x)  # recorded by the outer tape
        total = ops.sum(dy)
    np.testing.assert_allclose(dy, np.cos(X) * X + np.sin(X))
    np.testing.assert_allclose(outer.gradient(total, x), 2 * np.cos(X) - X * np.sin(X))


def test_nested_tapes_second_order_through_variables():
    w = Variable([0.5, -1.0], name="w")
    with GradientTape() as outer:
        with GradientTape() as inner:
            y = ops.sum(ops.tanh(w * w * 3.0))
        g = inner.gradient(y, w)
        norm = ops.sum(g * g)
    t = np.tanh(3 * w.numpy() ** 2)
    dy = 6 * w.numpy() * (1 - t**2)
    d_dy = 6 * (1 - t**2) + 6 * w.numpy() * (-2 * t * (1 - t**2) * 6 * w.numpy())
    np.testing.assert_allclose(g, dy)
    np.testing.assert_allclose(outer.gradient(norm, w), 2 * dy * d_dy, rtol=1e-6)


def test_inner_tape_sees_only_what_it_watches():
    with GradientTape() as outer:
        x = outer.watch(X)
        with GradientTape() as inner:
            y = ops.sum(x * x)
        with pytest.raises(ValueError, match="not on this tape"):
            inner.gradient(y, x)
    np.testing.assert_allclose(outer.gradient(y, x), 2 * X)


def test_stop_recording():
    with GradientTape(persistent=True) as tape:
        x = tape.watch(X)
        with tape.stop_recording():
            c = ops.exp(x)
        y = ops.sum(x * c)
    assert type(c) is np.ndarray
    np.testing.assert_allclose(tape.gradient(y, x), np.exp(X))
    with pytest.raises(ValueError, match="not recording"), tape.stop_recording():
        pass


def test_stop_gradient_and_custom_gradient():
    @ops.custom_gradient
    def log1pexp(x):
        e = ops.exp(x)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            return ops.multiply(upstream, 1.0 - 1.0 / ops.add(1, e))

        return ops.log(1 + e), grad

    big = np.array([0.0, 2.0, 100.0])
    with GradientTape() as tape:
        x = tape.watch(big)
        y = ops.sum(log1pexp(x) + x * ops.stop_gradient(x))
    np.testing.assert_allclose(tape.gradient(y, big), 1 / (1 + np.exp(-big)) + big)
    np.testing.assert_allclose(log1pexp(big), np.log1p(np.exp(big)))


def test_tapes_are_per_thread():
    seen = []
    with GradientTape() as tape:
        x = tape.watch(X)
        thread = threading.Thread(target=lambda: seen.append(type(ops.exp(x))))
        thread.start()
        thread.join()
    assert seen == [np.ndarray]


# ---- variables -------------------------------------------------------------------------------
def test_trainable_variables_are_watched_when_read():
    w = Variable(np.array([[1.0, 2.0], [3.0, 4.0]]), name="w")
    b = Variable(np.zeros(2), name="b", trainable=False)
    with GradientTape() as tape:
        y = ops.sum(ops.relu(X[:2] @ w + b))
    assert tape.watched_variables() == (w,)
    grads = tape.gradient(y, [w, b])
    np.testing.assert_allclose(grads[0], [[1, 1], [2, 2]])
    assert grads[1] is None


def test_watch_accessed_variables_false_and_explicit_watch():
    w, b = Variable([1.0, 2.0]), Variable([0.5, 0.5], trainable=False)
    with GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(b)
        y = ops.sum(w * b)
    d_w, d_b = tape.gradient(y, [w, b])
    assert d_w is None
    np.testing.assert_allclose(d_b, w.numpy())


def test_layer_weights_work_with_ops_and_tapes():
    layer = fastnn.layers.Dense(2)
    layer.build((None, 3))
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    with GradientTape() as tape:
        y = ops.mean(ops.square(ops.matmul(x, layer.kernel) + layer.bias))
    d_kernel, d_bias = tape.gradient(y, [layer.kernel, layer.bias])
    out = x @ layer.kernel.value + layer.bias.value
    np.testing.assert_allclose(d_kernel, x.T @ (2 * out / out.size), rtol=1e-5)
    np.testing.assert_allclose(d_bias, (2 * out / out.size).sum(0), rtol=1e-5)


def test_variable_interface():
    v = Variable(np.array([1.0, 2.0], np.float32), name="v")
    assert (v.name, v.path, v.shape, v.dtype, v.trainable) == ("v", "v", (2,), "float32", True)
    np.testing.assert_array_equal(v.assign_add([1.0, 1.0]), [2, 3])
    np.testing.assert_array_equal(v.assign_sub(np.ones(2)), [1, 2])
    np.testing.assert_array_equal(v.assign(v * 3), [3, 6])
    assert v.numpy() is not v.value and float(Variable(2.5)) == 2.5
    np.testing.assert_array_equal(np.asarray(v) + v[0] - v * 2, [0, -3])
    assert Variable("ones", shape=(2, 3)).value.dtype == np.float32
    assert Variable(fastnn.initializers.Zeros(), shape=(2,), dtype="float64").dtype == "float64"
    assert Variable([1, 2]).dtype == np.int32 and Variable([1.0]).dtype == np.float32
    assert Variable(1.0).name.startswith("variable")
    with pytest.raises(ValueError, match="needs `shape`"):
        Variable("zeros")
    with pytest.raises(ValueError, match="expected shape"):
        v.assign(np.ones(3))
    with pytest.raises(TypeError, match="does not support item assignment"):
        v[0] = 1.0


def test_a_custom_training_loop_fits_a_line():
    x = np.linspace(-1, 1, 32).astype(np.float32)
    y = 3 * x - 0.5
    w, b = Variable(0.0, name="w"), Variable(0.0, name="b")
    for _ in range(200):
        with GradientTape() as tape:
            loss = ops.mean(ops.square(w * x + b - y))
        dw, db = tape.gradient(loss, [w, b])
        w.assign_sub(0.2 * dw)
        b.assign_sub(0.2 * db)
    np.testing.assert_allclose([w.numpy(), b.numpy()], [3.0, -0.5], atol=1e-3)


def test_gradients_feed_an_optimizer():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.25
    w, b = Variable("zeros", shape=(3, 1), name="w"), Variable("zeros", shape=(1,), name="b")
    optimizer = fastnn.optimizers.Adam(learning_rate=0.05)
    for _ in range(300):
        with GradientTape() as tape:
            loss = ops.mean(ops.square(x @ w + b - y))
        grads = tape.gradient(loss, [w, b])
        assert all(g.flags.writeable and g.dtype == np.float32 for g in grads)
        optimizer.apply_gradients(zip(grads, [w, b]))
    np.testing.assert_allclose(w.numpy().ravel(), [1.0, -2.0, 0.5], atol=1e-2)
    np.testing.assert_allclose(b.numpy(), [0.25], atol=1e-2)


# ---- the hook for layers ---------------------------------------------------------------------
def test_record_makes_one_entry_whose_vjp_is_a_backward():
    w = Variable(np.array([2.0, 3.0]), name="w")

    def backward(grads):  # of y = x * w, as a built-in layer's backward would give it
        (g,) = grads
        return [g * w.value, g * x.value]

    with GradientTape() as tape:
        x = tape.watch(np.array([1.0, -1.0]))
        (y,) = record(backward, [x, w], [x.value * w.value], name="scale")
        loss = ops.sum(y * y)
    dx, dw = tape.gradient(loss, [x, w])
    np.testing.assert_allclose(dx, 2 * np.array([2.0, -3.0]) * w.numpy())
    np.testing.assert_allclose(dw, 2 * np.array([2.0, -3.0]) * np.array([1.0, -1.0]))


# ---- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: ops.add(np.ones(3), np.ones(4)), r"add: cannot take shapes \(3,\) and \(4,\)"),
        (lambda: ops.matmul(np.ones((2, 3)), np.ones((4, 5))), r"matmul: .*\(2, 3\) and \(4, 5\)"),
        (lambda: ops.concatenate([np.ones((2, 3)), np.ones((2, 4))]),
         r"concatenate: .*\(2, 3\) and \(2, 4\) with axis=0"),
        (lambda: ops.reshape(np.ones((2, 3)), (4,)), r"reshape: .*\(2, 3\) with newshape=\(4,\)"),
        (lambda: ops.sum(np.ones((2, 3)), axis=2), r"sum: cannot take shapes \(2, 3\) with axis=2"),
        (lambda: ops.conv(np.ones((1, 5, 5, 3)), np.ones((3, 3, 2, 4))),
         r"conv: kernel of shape \(3, 3, 2, 4\) does not fit inputs of shape \(1, 5, 5, 3\)"),
        (lambda: ops.max_pool(np.ones((1, 2, 2, 1)), 3),
         r"max_pool: input of shape \(1, 2, 2, 1\) is smaller than the window \(3, 3\)"),
        (lambda: ops.binary_crossentropy(np.ones(3), np.ones(4)),
         r"binary_crossentropy: .*same shape; got \(3,\) and \(4,\)"),
        (lambda: ops.sparse_categorical_crossentropy([0, 5], np.ones((2, 3))),
         r"label 5 at \(1,\) is outside \[0, 3\)"),
        (lambda: np.ones(2)[None] @ Variable(np.ones((3, 1))),
         r"matmul: cannot take shapes \(1, 2\) and \(3, 1\)"),
    ],
)  # fmt: skip
def test_shape_errors_name_the_op_and_the_shapes(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_ops_on_symbolic_tensors_add_a_node_and_array_code_refuses_them():
    x = fastnn.Input((3,))
    assert ops.sum(x, axis=-1).shape == (None,)  # a TensorOp node (test_ops_between_layers.py)
    with pytest.raises(TypeError, match="symbolic tensor .*shape \\(None, 3\\).*computes on"):
        ops.convert_to_numpy(x)


def test_gradient_errors():
    with GradientTape(persistent=True) as tape:
        x = tape.watch(X)
        y = ops.sum(x)
    with pytest.raises(ValueError, match=r"the target \(a numpy array of shape \(3,\)"):
        tape.gradient(np.ones(3), x)
    with pytest.raises(TypeError, match="sources must be Variables, tensors or watched"):
        tape.gradient(y, "x")
    with pytest.raises(ValueError, match="unconnected_gradients must be 'none' or 'zero'"):
        tape.gradient(y, x, unconnected_gradients="zeros")
    with GradientTape() as tape:
        x = tape.watch(X)
        y = ops.sum(x * ops.floor_divide(x, 2.0) + ops.cumprod(x))
    tape.gradient(y, x)  # zero-gradient and rule-less ops are fine until reached
    with GradientTape() as tape:
        x = tape.watch(X)
        y = ops.sum(ops.pad(x, 1, mode="mean"))
    with pytest.raises(ValueError, match="pad: no gradient for mode='mean'"):
        tape.gradient(y, x)
    with pytest.warns(UserWarning, match="only float values have gradients"):
        GradientTape().watch(np.arange(3))
