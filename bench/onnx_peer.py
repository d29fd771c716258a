"""ONNX Runtime as an inference peer for ``python -m bench.models --inference``.

It runs fastnn's own exported file: the benchmark model is built by fastnn (seeded, as the
fastnn runner's), written with ``fastnn.export.onnx`` (dynamic batch axis) and loaded by an
``onnxruntime.InferenceSession`` with the same number of threads (``intra_op_num_threads``,
one inter-op thread, sequential execution, all graph optimizations). At batch 1 each sample is
one ``run`` call, as fastnn's runner makes one ``predict`` call per sample.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

#: The seed both the fastnn runner and this one build their models from: the same weights.
WEIGHTS_SEED = 0


def available() -> bool:
    """Whether ONNX Runtime and the onnx package are installed."""
    return all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))


def exportable(models: list[str]) -> tuple[list[str], dict]:
    """The models fastnn exports to ONNX, and why each other one is skipped (printed). Builds
    them in this process (importing fastnn starts no threads)."""
    import fastnn
    from bench.models import build_keras_api
    from fastnn.export.walker import model_proto

    skipped = {}
    for name in models:
        try:
            model_proto(build_keras_api(fastnn, name))
        except fastnn.export.ExportError as error:
            skipped[name] = f"not exported to ONNX: {error}"
            print(f"{name:<17} skipped: {skipped[name]}")
    return [name for name in models if name not in skipped], skipped


class OnnxRuntimeRunner:
    """Times ONNX Runtime on fastnn's exported file of benchmark model ``name``."""

    def __init__(self, name: str, batch: int, threads: int):
        import onnxruntime

        import fastnn
        from bench.models import build_keras_api

        fastnn.utils.set_random_seed(WEIGHTS_SEED)
        model = build_keras_api(fastnn, name)
        self.params = sum(int(w.value.size) for w in model.trainable_weights)
        self.input_names, self.batch = list(model.input_names), batch
        with tempfile.TemporaryDirectory() as directory:
            path = os.path.join(directory, f"{name}.onnx")
            fastnn.export.onnx(model, path)
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )

    def train(self, xs, ys):
        raise NotImplementedError("ONNX Runtime is an inference peer (bench.models --inference)")

    def infer(self, xs):
        n = len(xs[0])
        for start in range(0, n, self.batch):
            feeds = {k: x[start : start + self.batch] for k, x in zip(self.input_names, xs)}
            self.session.run(None, feeds)
