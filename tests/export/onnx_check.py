"""Export a model, check the file and run it with ONNX's reference evaluator and ONNX Runtime
against ``model.predict``."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

import fastnn

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
RTOL = ATOL = 1e-5


def export_and_check(model, tmp_path, **options) -> onnx.ModelProto:
    """Export ``model`` to ``tmp_path``, reload the file and check it with its declared opset."""
    path = tmp_path / f"{model.name}.onnx"
    fastnn.export.onnx(model, path, **options)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def run_both(proto: onnx.ModelProto, feeds: dict, reference: bool = True) -> list:
    """The outputs of the reference evaluator and, if installed, ONNX Runtime. With
    ``reference=False`` ONNX Runtime's only: onnx.reference's LSTM, GRU and RNN ignore
    ``sequence_lens`` and (LSTM, GRU) ``activations`` (onnx 1.23), so they cannot check those."""
    if not reference and not HAS_ORT:
        pytest.skip("needs onnxruntime: onnx.reference ignores sequence_lens and activations")
    results = [ReferenceEvaluator(proto).run(None, feeds)] if reference else []
    if HAS_ORT:
        import onnxruntime

        session = onnxruntime.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        results.append(session.run(None, feeds))
    return results


def assert_matches(model, xs, tmp_path, reference: bool = True, **options) -> onnx.ModelProto:
    """Export ``model`` and check that every runtime gives ``model.predict(xs)``."""
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
