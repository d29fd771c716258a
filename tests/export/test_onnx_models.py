"""Whole models: the seed's five benchmark models, Sequential, nested models, several inputs and
outputs with their names, the batch axis, opsets, ``Model.export``, and every refusal."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
from keras_twin import keras_module
from onnx_check import assert_matches, export_and_check, onnx, run_both
from test_onnx_layers import data, with_random_weights

import fastnn
from fastnn import layers, ops
from fastnn.export import ExportError
from fastnn.export.walker import model_proto

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ sits beside tests/
    sys.path.insert(0, str(ROOT))
bench_models = importlib.import_module("bench.models")


@pytest.mark.parametrize("name", sorted(bench_models.SEED_SPECS))
def test_seed_models(name, tmp_path):
    # its own generator: the weights must not depend on which tests ran before in this worker
    model = with_random_weights(
        bench_models.build_keras_api(fastnn, name), np.random.default_rng(0)
    )
    xs, _ = bench_models.make_data(name, 2)
    assert_matches(model, xs, tmp_path)


def small_multi_io():
    image, side = fastnn.Input((6, 6, 2), name="image"), fastnn.Input((3,), name="side")
    x = layers.Conv2D(3, 3, activation="relu")(image)
    x = layers.Flatten()(layers.MaxPooling2D(2)(x))
    x = layers.Concatenate()([x, layers.Dense(4)(side)])
    score = layers.Dense(1, activation="sigmoid", name="score")(x)
    kind = layers.Dense(3, activation="softmax", name="kind")(x)
    model = fastnn.Model([image, side], [score, kind])
    return with_random_weights(model), [data(6, 6, 2), data(3)]


def test_several_inputs_and_outputs_keep_their_names(tmp_path):
    model, xs = small_multi_io()
    proto = assert_matches(model, xs, tmp_path)
    assert [i.name for i in proto.graph.input] == ["image", "side"]
    assert [o.name for o in proto.graph.output] == ["score", "kind"]


def test_dict_inputs_and_outputs_keep_their_keys(tmp_path):
    a, b = fastnn.Input((3,), name="a"), fastnn.Input((2,), name="b")
    x = layers.Concatenate()([a, b])
    outputs = {"zeta": layers.Dense(1)(x), "alpha": layers.Dense(2)(x)}
    model = with_random_weights(fastnn.Model({"b": b, "a": a}, outputs))
    proto = export_and_check(model, tmp_path)
    assert [i.name for i in proto.graph.input] == ["b", "a"]
    assert [o.name for o in proto.graph.output] == ["alpha", "zeta"]  # Keras's sorted keys
    feeds = {"a": data(3), "b": data(2)}
    expected = model.predict(feeds, verbose=0)
    for outputs in run_both(proto, feeds):
        for name, got in zip(["alpha", "zeta"], outputs):
            np.testing.assert_allclose(got, expected[name], rtol=1e-5, atol=1e-5)


def test_dynamic_batch_axis_runs_two_batch_sizes(tmp_path):
    model, _ = small_multi_io()
    proto = export_and_check(model, tmp_path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 5):
        xs = [np.random.default_rng(n).random((n, *s), np.float32) for s in ((6, 6, 2), (3,))]
        expected = model.predict(xs, verbose=0)
        for outputs in run_both(proto, dict(zip(model.input_names, xs))):
            for got, want in zip(outputs, expected):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_an_input_returned_as_an_output(tmp_path):
    x = fastnn.Input((3,), name="x")
    model = with_random_weights(fastnn.Model(x, [x, layers.Dense(2, name="d")(x)]))
    assert_matches(model, data(3), tmp_path)
    ids = fastnn.Input((3,), dtype="int32", name="ids")  # an int output keeps its type
    model = with_random_weights(fastnn.Model(ids, [ids, layers.Embedding(5, 2, name="e")(ids)]))
    proto = assert_matches(model, np.array([[1, 2, 3], [0, 4, 4]], np.int32), tmp_path)
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32


def test_a_float64_input_is_cast_as_the_layers_cast_it(tmp_path):
    x = fastnn.Input((3,), dtype="float64")
    model = with_random_weights(fastnn.Model(x, layers.Dense(2)(x)))
    assert_matches(model, data(3).astype(np.float64), tmp_path)


def test_batch_size_fixes_the_batch_axis(tmp_path):
    model, xs = small_multi_io()
    proto = assert_matches(model, xs, tmp_path, batch_size=3)
    for value in [*proto.graph.input, *proto.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_value == 3


def test_sequential_and_nested_models(tmp_path):
    inner = fastnn.Sequential([fastnn.Input((4,)), layers.Dense(5, activation="tanh")])
    block_in = fastnn.Input((5,))
    block = fastnn.Model(block_in, layers.Dense(2)(layers.BatchNormalization()(block_in)))
    outer = fastnn.Sequential([fastnn.Input((4,)), inner, block, layers.Activation("softmax")])
    assert_matches(with_random_weights(outer), data(4), tmp_path)


def test_a_shared_layer_stores_its_weights_once(tmp_path):
    a, b = fastnn.Input((4,)), fastnn.Input((4,))
    shared = layers.Dense(3, name="shared")
    model = with_random_weights(fastnn.Model([a, b], layers.Subtract()([shared(a), shared(b)])))
    proto = assert_matches(model, [data(4), data(4)], tmp_path)
    assert len(proto.graph.initializer) == 2  # the kernel and the bias


def test_model_export_writes_the_same_file(tmp_path, capsys):
    model, xs = small_multi_io()
    model.export(tmp_path / "m.onnx", format="onnx", opset_version=17)
    assert capsys.readouterr().out == f"Saved artifact at '{tmp_path / 'm.onnx'}'.\n"
    model.export(tmp_path / "quiet.onnx", verbose=False)
    assert capsys.readouterr().out == ""
    proto = onnx.load(tmp_path / "m.onnx")
    assert proto.opset_import[0].version == 17
    expected = model.predict(xs, verbose=0)
    for outputs in run_both(proto, dict(zip(model.input_names, xs))):
        for got, want in zip(outputs, expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_model_export_takes_keras_arguments():
    """Keras 3's Model.export parameters, in its order (fastnn's default format is 'onnx', the
    one it writes; Keras's is 'tf_saved_model')."""
    keras = keras_module()
    ours = inspect.signature(fastnn.Model.export).parameters
    theirs = inspect.signature(keras.Model.export).parameters
    assert list(ours) == list(theirs)
    for name in ("verbose", "input_signature"):
        assert ours[name].default == theirs[name].default
    assert ours["format"].default == "onnx"


def test_default_opset_is_capped():
    model, _ = small_multi_io()
    proto = model_proto(model)
    assert proto.opset_import[0].version == min(onnx.defs.onnx_opset_version(), 21)


# ---- refusals ----------------------------------------------------------------------------------
def refused(model, tmp_path, match, **options):
    path = tmp_path / "refused.onnx"
    with pytest.raises(ExportError, match=match):
        fastnn.export.onnx(model, path, **options)
    assert not path.exists()


def test_model_export_refuses_other_formats(tmp_path):
    model, _ = small_multi_io()
    for fmt in ("tf_saved_model", "openvino", "torch"):
        with pytest.raises(ValueError, match=f"format='{fmt}' is not supported.*'onnx'"):
            model.export(tmp_path / "m", format=fmt)
    with pytest.raises(TypeError, match=r"unexpected arguments \['dynamic_axes'\]"):
        model.export(tmp_path / "m.onnx", dynamic_axes=True)


def test_opset_outside_what_onnx_and_the_exporter_know_is_refused(tmp_path):
    inputs = fastnn.Input((3, 4))
    model = fastnn.Model(inputs, layers.LayerNormalization(name="norm")(inputs))
    refused(model, tmp_path, r"`opset` must be between 13 and \d+ .*; got opset=9", opset=9)
    refused(model, tmp_path, r"`opset` must be between 13 and \d+ .*; got opset=99", opset=99)


def test_a_refused_export_leaves_the_file_as_it_was(tmp_path):
    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, ops.sort(inputs, axis=-1))
    (tmp_path / "old.onnx").write_bytes(b"old")
    with pytest.raises(ExportError):
        model.export(tmp_path / "old.onnx")
    assert (tmp_path / "old.onnx").read_bytes() == b"old"


class MyDense(layers.Dense):
    pass


def test_layer_without_converter_is_refused(tmp_path):
    inputs = fastnn.Input((3,))
    model = fastnn.Model(inputs, MyDense(2, name="mine")(inputs))
    refused(model, tmp_path, r"MyDense 'mine' .*no ONNX converter for the class .*MyDense")
    inputs = fastnn.Input((4, 3))  # inside a wrapper: the inner layer is named
    model = fastnn.Model(inputs, layers.TimeDistributed(MyDense(2, name="inner"))(inputs))
    refused(model, tmp_path, r"MyDense 'inner' .*no ONNX converter for the class .*MyDense")


def test_a_layer_that_would_use_a_mask_is_refused(tmp_path):
    inputs = fastnn.Input((5,))
    x = layers.Embedding(7, 3, mask_zero=True)(inputs)
    model = fastnn.Model(inputs, layers.GlobalAveragePooling1D(name="pool")(x))
    match = r"GlobalAveragePooling1D 'pool' .*receives a mask"
    refused(model, tmp_path, match, assume_post_padding=True)


def test_something_else_than_a_model_is_refused(tmp_path):
    refused(layers.Dense(2), tmp_path, r"takes a fastnn Model .*; got fastnn.layers.core.Dense")


def test_unbuilt_model_is_refused(tmp_path):
    refused(fastnn.Sequential([layers.Dense(2)]), tmp_path, r"Sequential '\w+' .*is not built")


def test_missing_onnx_says_how_to_install(monkeypatch, tmp_path):
    real = importlib.import_module

    def no_onnx(name, *args):
        if name == "onnx":
            raise ImportError("No module named 'onnx'")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", no_onnx)
    model, _ = small_multi_io()
    with pytest.raises(ImportError, match=r'pip install "fastnn\[onnx\]"'):
        fastnn.export.onnx(model, tmp_path / "m.onnx")


ZOO = list(bench_models.zoo.SPECS)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models(name, tmp_path):
    """The benchmark zoo through ONNX Runtime only: the reference evaluator takes minutes on
    these convolutions. Keras's initial weights: random N(0, 0.5) recurrent kernels make
    100-step RNNs chaotic, where float32 rounding alone moves outputs by more than 1e-5."""
    model = bench_models.build_keras_api(fastnn, name)
    xs, _ = bench_models.make_data(name, 2)
    assert_matches(model, xs, tmp_path, reference=False)


def test_keras_applications_mobilenet_v2(tmp_path):
    """fastnn.applications' MobileNetV2 (ReLU(6), depthwise convs with BN folded, residual
    adds), through ONNX Runtime only (the reference evaluator is slow on it)."""
    model = fastnn.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.35, classes=5
    )
    proto = assert_matches(model, data(32, 32, 3), tmp_path, reference=False)
    assert [n.op_type for n in proto.graph.node].count("Transpose") == 1
