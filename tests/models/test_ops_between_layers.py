"""``fastnn.ops`` and Python operators on symbolic tensors between layers of a Functional model
(``x + inputs``, ``x[:, 0]``, ``ops.mean(x, axis=1)``), as Keras 3's KerasTensors take them:
each adds a TensorOp node, trained on a tape, saved by the op's name."""

import numpy as np
import pytest
from gradcheck import check_model_gradients
from hypothesis import given, settings
from hypothesis import strategies as st
from keras_twin import assert_same_history, copy_weights, fit_both, keras_module, to_numpy

import fastnn
from fastnn.layers.tensor_op import TensorOp


def residual_head(K, dtype="float32"):
    """keras-io's timeseries transformer style: residual ``x + inputs``, then ops and indexing."""
    inputs = K.Input((6, 4), dtype=dtype)
    x = K.layers.Dense(4, activation="tanh", name="mix", dtype=dtype)(inputs)
    res = x + inputs
    scaled = -(res * 2.0) + 1.0 / (1.0 + K.ops.abs(res))
    pooled = K.ops.mean(K.ops.softmax(scaled) + K.ops.relu(scaled), axis=1)  # ops.nn's too
    picked = K.ops.concatenate([pooled[:, 0:2], K.ops.max(res, axis=1)[:, -1:] ** 2], axis=-1)
    return K.Model(inputs, K.layers.Dense(1, name="out", dtype=dtype)(picked))


def test_a_model_with_ops_between_layers_trains_as_keras():
    keras = keras_module()
    ours, theirs = residual_head(fastnn), residual_head(keras)
    assert ours.output_shape == theirs.output_shape == (None, 1)
    copy_weights(theirs, ours)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 6, 4)).astype("float32")
    y = rng.standard_normal((24, 1)).astype("float32")
    assert_same_history(*fit_both(ours, theirs, x, y, optimizer="sgd", loss="mse"))
    np.testing.assert_allclose(
        ours.predict(x, verbose=0), to_numpy(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6
    )


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_ops_between_layers_gradients_in_float64(seed):
    model = residual_head(fastnn, "float64")
    check_model_gradients(model, np.random.default_rng(seed).standard_normal((3, 6, 4)))


@pytest.mark.parametrize("suffix", [".fastnn", ".keras"])
def test_ops_between_layers_round_trip(tmp_path, suffix):
    model = residual_head(fastnn)
    x = np.random.default_rng(1).standard_normal((5, 6, 4)).astype("float32")
    model.save(tmp_path / f"m{suffix}")
    loaded = fastnn.models.load_model(tmp_path / f"m{suffix}")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    ops_layers = [layer for layer in loaded.layers if isinstance(layer, TensorOp)]
    assert {"add", "multiply", "mean", "get_item", "concatenate"} <= {op.op for op in ops_layers}


def test_shape_of_a_symbolic_tensor_is_its_static_shape():
    inputs = fastnn.Input((6, 4))
    assert fastnn.ops.shape(inputs) == (None, 6, 4)
    assert (inputs @ fastnn.ops.ones((4, 2))).shape == (None, 6, 2)
    assert inputs.T.shape == (4, 6, None)


def test_what_cannot_be_saved_or_loaded_says_so(tmp_path):
    inputs = fastnn.Input((5000,))
    model = fastnn.Model(inputs, inputs + np.ones(5000, "float32"))
    with pytest.raises(ValueError, match="constant argument of 5000 values"):
        model.save(tmp_path / "big.fastnn")
    with pytest.raises(ValueError, match="no op named 'system'"):
        TensorOp.from_config({"op": "system", "arguments": [], "name": "evil"})
