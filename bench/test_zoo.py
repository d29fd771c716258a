"""The zoo's definitions agree across frameworks, and bench.models / bench.profile run a zoo
model end to end: ``pytest bench/test_zoo.py`` (a minute; Keras runs on its torch backend)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fastnn
from bench import models, profile, table, zoo

torch = pytest.importorskip("torch")
from bench import zoo_torch  # noqa: E402  (needs torch)

ZOO = list(zoo.SPECS)


def trainable_count(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the one backend the dev extra installs
    return pytest.importorskip("keras")


def test_every_zoo_model_is_defined_in_each_form():
    assert set(zoo.BUILDERS) == set(zoo.SPECS) == set(zoo_torch.BUILDERS)
    assert set(zoo.NEEDS) <= set(zoo.SPECS)
    assert not set(zoo.SPECS) & set(models.SEED_SPECS)


@pytest.mark.parametrize("name", ZOO)
def test_pytorch_and_keras_apis_have_the_same_trainable_parameters(name):
    expected = zoo_torch.keras_trainable_count(zoo_torch.build(name))
    assert trainable_count(zoo.build(keras(), name)) == expected
    if not zoo.missing_layers(fastnn, name):
        assert trainable_count(zoo.build(fastnn, name)) == expected


@pytest.mark.parametrize("name", ZOO)
def test_pytorch_outputs_have_the_targets_shapes(name):
    (xs, ys) = models.make_data(name, 2)
    net = zoo_torch.build(name).eval()
    inputs = [
        torch.from_numpy(x).permute(0, 3, 1, 2) if x.ndim == 4 else torch.from_numpy(x) for x in xs
    ]
    with torch.no_grad():
        outputs = net(*inputs)
    kinds = zoo.SPECS[name][1]
    for output, y, kind in zip(outputs, ys, kinds):
        classes = kind[1] if kind[0] == "sparse" else None
        assert tuple(output.shape) == ((2, classes) if classes else y.shape)


def test_a_skipped_model_names_the_layers_it_needs(monkeypatch):
    monkeypatch.setitem(zoo.NEEDS, "lenet5", ("NoSuchLayer",))
    with pytest.raises(NotImplementedError, match="lenet5 needs NoSuchLayer"):
        zoo.build(fastnn, "lenet5")
    assert models.runnable(["lenet5", "mlp_dropout"]) == (
        ["mlp_dropout"],
        {"lenet5": "needs NoSuchLayer"},
    )


def test_models_runs_every_framework_in_a_child_and_records_its_threads(monkeypatch, tmp_path):
    writes = []
    monkeypatch.setattr(models, "RESULTS", tmp_path)
    real_write = models.ResultFile.write
    monkeypatch.setattr(
        models.ResultFile,
        "write",
        lambda self, *a, **k: writes.append(self) or real_write(self, *a, **k),
    )
    argv = ["--models", "mlp_dropout", "--only", "pytorch", "--batches", "32"]
    models.main([*argv, "--samples", "64", "--repeats", "1", "--threads", "1"])
    assert len(writes) == 3  # after each of the two rows, then complete
    (path,) = tmp_path.glob("models-*.json")
    saved = json.loads(path.read_text())
    assert saved["complete"] and saved["machine"]["cores"] == os.cpu_count()
    (row, _) = saved["rows"]
    assert row["params"] == 669_706 and row["fastnn"] > 0 and row["pytorch"] > 0
    fastnn_child = saved["frameworks"]["fastnn"]
    assert fastnn_child["pid"] != os.getpid()
    assert fastnn_child["threading_layer"] in ("tbb", "omp", "workqueue")
    assert saved["frameworks"]["pytorch"]["threads"] == 1
    assert set(saved["load_average"]) == {"start", "end"}


def test_profile_counts_gemm_work_from_shapes():
    model = models.build_keras_api(fastnn, "seed_cnn")
    (x,), (y,) = models.make_data("seed_cnn", 8)
    model.train_on_batch(x, y)
    graph = model._graph
    by_kind = {type(step.layer).__name__: step for step in reversed(graph.steps)}  # the first
    conv, pool = (node.layer for node in profile.constituent_nodes(graph.steps[1], graph))
    assert type(conv).__name__ == "Conv2D" and type(pool).__name__ == "MaxPooling2D"
    first = profile.step_cost(graph.steps[0], graph, 8, True, needs_input_grad=False)
    assert first == {
        "bound": "gemm",
        "fwd": 2 * 8 * 28 * 28 * 32 * 9,
        "bwd": 2 * 8 * 28 * 28 * 32 * 9,
    }
    hidden = by_kind["DenseDropout"]  # the fusion rule dense_dropout: Dense(100) + Dropout
    dense = profile.step_cost(hidden, graph, 8, True, needs_input_grad=True)
    assert dense["fwd"] == 2 * 8 * 7 * 7 * 64 * 100 and dense["bwd"] == 2 * dense["fwd"]
    flatten = profile.step_cost(by_kind["Flatten"], graph, 8, True, needs_input_grad=True)
    assert flatten == {"bound": "memory", "fwd": 0, "bwd": 0}


def test_profile_takes_a_saved_model(tmp_path, monkeypatch, capsys):
    saved = {}
    monkeypatch.setattr(profile, "save", lambda kind, result: saved.update(result))
    path = str(tmp_path / "text.keras")
    models.build_keras_api(fastnn, "conv1d_text").save(path)
    profile.main(
        [path, "--batches", "16", "--infer-batch", "32", "--samples", "32", "--repeats", "1"]
    )
    train, infer = saved["profiles"]
    steps = {row["layers"]: row for row in train["steps"]}
    assert steps["Conv1D"]["bound"] == "gemm" and steps["Conv1D"]["fwd_ms"] > 0
    assert steps["GlobalMaxPooling1D"]["bound"] == "memory"
    assert train["parts_ms"]["optimizer"] > 0 and train["parts_ms"]["loss"] > 0
    assert infer["mode"] == "inference" and saved["ceilings"]["gemm_gflops"] > 0
    assert "% peak" in capsys.readouterr().out


def test_table_gives_fastnn_against_the_fastest_peer_of_each_row():
    rows = [
        {"model": "lenet5", "mode": "train", "batch": 32, "fastnn": 300, "pytorch": 100,
         "pytorch_tuned": 150},
        {"model": "lenet5", "mode": "infer", "batch": 256, "fastnn": 900, "pytorch": 1000},
    ]  # fmt: skip
    lines = table.markdown(rows, table.peers_of(rows, None)).splitlines()
    assert lines[0] == (
        "| model | training, batch 32 | vs fastest peer | inference, batch 256 | vs fastest peer |"
    )
    assert lines[2] == "| lenet5 | 300 | 2.00x (PyTorch tuned) | 900 | 0.90x (PyTorch eager) |"


def test_table_takes_each_row_from_the_quietest_run():
    quiet = {
        "model": "m",
        "mode": "train",
        "batch": 32,
        "fastnn": 2,
        "pytorch": 1,
        "others_cpu": 0.1,
    }
    busy = {**quiet, "fastnn": 1, "others_cpu": 0.5}
    other = {**busy, "model": "n"}
    rows = table.quietest_rows({"a": {"rows": [busy, other]}, "b": {"rows": [quiet]}})
    assert [(r["model"], r["source"], r["fastnn"]) for r in rows] == [("m", "b", 2), ("n", "a", 1)]
    assert "| n | 1 † |" in table.markdown(rows, ["pytorch"], busy=0.2)
