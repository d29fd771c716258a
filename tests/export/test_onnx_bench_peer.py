"""bench.models --inference's ONNX Runtime peer runs fastnn's own exported file, with the
weights the fastnn runner has (both seeded)."""

from __future__ import annotations

import numpy as np
import pytest
from test_onnx_models import bench_models

import fastnn

onnx_peer = bench_models.onnx_peer


def test_the_peer_runs_the_fastnn_runners_model():
    pytest.importorskip("onnxruntime")
    runner = onnx_peer.OnnxRuntimeRunner("multi_input_mlp", batch=4, threads=1)
    fastnn.utils.set_random_seed(onnx_peer.WEIGHTS_SEED)  # as make_runner("fastnn", ...)
    model = bench_models.build_keras_api(fastnn, "multi_input_mlp")
    assert runner.params == sum(int(w.value.size) for w in model.trainable_weights)
    xs, _ = bench_models.make_data("multi_input_mlp", 6)
    runner.infer(xs)  # batches of 4 and 2
    (got,) = runner.session.run(None, dict(zip(runner.input_names, xs)))
    np.testing.assert_allclose(got, model.predict(xs, verbose=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="inference peer"):
        runner.train(xs, None)


def test_inference_flag():
    args = bench_models.parse_args(["--inference", "--models", "lstm_text"])
    assert args.inference and args.models == ["lstm_text"]
