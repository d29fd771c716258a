"""Export a model, check the file and run it with ONNX's reference evaluator and ONNX Runtime
against ``model.predict``."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import fastnn

onnx = pytest.importorskip("onnx")  # the onnx extra; every test here needs it
ReferenceEvaluator = pytest.importorskip("onnx.reference").ReferenceEvaluator

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
RTOL = ATOL = 1e-5


def export_and_check(model, tmp_path, **options) -> onnx.ModelProto:
    """Export ``model`` to ``tmp_path``, reload the file and check it with its declared opset."""
    path = tmp_path / f"{model.name}.onnx"
    fastnn.export.onnx(model, path, **options)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def reference_gap(proto: onnx.ModelProto) -> str | None:
    """Why onnx.reference (onnx 1.23) cannot run ``proto`` right, or None: its LSTM, GRU and
    RNN ignore ``sequence_lens``, LSTM and GRU their ``activations`` and RNN knows Tanh alone;
    its MaxPool at stride 1 reads asymmetric pads as (begin, end) pairs per axis."""
    defaults = {
        "LSTM": [b"Sigmoid", b"Tanh", b"Tanh"],
        "GRU": [b"Sigmoid", b"Tanh"],
        "RNN": [b"Tanh"],
    }
    for node in proto.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type in ("LSTM", "GRU", "RNN"):
            if len(node.input) > 4 and node.input[4]:
                return "sequence_lens"
            given = list(attrs["activations"].strings) if "activations" in attrs else []
            directions = (
                2 if attrs.get("direction") and attrs["direction"].s == b"bidirectional" else 1
            )
            if given and given != defaults[node.op_type] * directions:
                return "activations"
        if node.op_type == "MaxPool" and "pads" in attrs:
            pads, strides = list(attrs["pads"].ints), list(attrs["strides"].ints)
            half = len(pads) // 2
            if set(strides) == {1} and pads[:half] != pads[half:]:
                return "MaxPool's asymmetric pads at stride 1"
    return None


def run_both(proto: onnx.ModelProto, feeds: dict, reference: bool | None = None) -> list:
    """The outputs of the reference evaluator and, if installed, ONNX Runtime. The reference
    evaluator is left out where ``reference_gap`` finds it wrong (or ``reference=False``); the
    model must then run in ONNX Runtime."""
    if reference is None:
        reference = reference_gap(proto) is None
    if not reference and not HAS_ORT:
        pytest.skip(f"needs onnxruntime: onnx.reference gets {reference_gap(proto)} wrong")
    results = [ReferenceEvaluator(proto).run(None, feeds)] if reference else []
    if HAS_ORT:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        results.append(session.run(None, feeds))
    return results


def assert_matches(model, xs, tmp_path, reference: bool | None = None, **options):
    """Export ``model`` and check that every runtime gives ``model.predict(xs)`` (the
    reference evaluator where it can: ``run_both``); the ``onnx.ModelProto``."""
    proto = export_and_check(model, tmp_path, **options)
    xs = xs if isinstance(xs, list) else [xs]
    expected = model.predict(xs if len(xs) > 1 else xs[0], verbose=0)
    expected = expected if isinstance(expected, list) else [expected]
    feeds = dict(zip(model.input_names, xs))
    assert [i.name for i in proto.graph.input] == list(model.input_names)
    assert [o.name for o in proto.graph.output] == list(model.output_names)
    for outputs in run_both(proto, feeds, reference):
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
    return proto
