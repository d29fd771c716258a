"""Data parallelism over MPI: ``driver.py`` run under ``mpiexec -n 2`` / ``-n 3`` on loopback
against the same script in one process on the global batch (weights equal to float32 rounding,
bit-identical across ranks), the faults, resuming on another rank count, rank-0-only output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install 'fastnn[mpi]')")

DRIVER = str(Path(__file__).with_name("driver.py"))
MPIEXEC = shutil.which(
    "mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
)
if MPIEXEC is None:
    pytest.skip("mpiexec is not installed", allow_module_level=True)

#: Variables of a launcher pytest itself may run under: the ranks must take theirs from mpiexec.
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPIR_", "MV2_", "PYTEST_XDIST_")


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LAUNCHER_PREFIXES)}
    env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


def run(ranks: int, case: str, out_dir: Path, *flags: str, timeout: float = 60):
    """The driver on ``ranks`` processes (1: plain python, no distribution)."""
    command = [sys.executable, DRIVER, case, str(out_dir), *flags]
    if ranks > 1:
        command = [MPIEXEC, "-n", str(ranks), *command, "--dp"]
    return subprocess.run(
        command, env=_env(), cwd=out_dir, capture_output=True, text=True, timeout=timeout
    )


_runs: dict = {}


def trained(ranks: int, case: str, tmp_path_factory, *flags: str):
    """Each rank's arrays (weights w<i>, then history, evaluate and predict values v<i>) after
    the driver ran ``case``, its finished process and its folder (run once per session)."""
    key = (ranks, case, flags)
    if key not in _runs:
        out = tmp_path_factory.mktemp(f"{case}-{ranks}")
        done = run(ranks, case, out, *flags)
        assert done.returncode == 0, done.stderr[-3000:]
        arrays = [dict(np.load(out / f"rank{r}.npz")) for r in range(ranks)]
        _runs[key] = arrays, done, out
    return _runs[key]


def single(case: str, tmp_path_factory) -> dict:
    """The arrays of the one-process run of ``case``."""
    return trained(1, case, tmp_path_factory)[0][0]


def assert_same_on_every_rank(ranks: list[dict]) -> None:
    for r, arrays in enumerate(ranks[1:], 1):
        for key, value in ranks[0].items():
            assert np.array_equal(value, arrays[key]), f"{key} differs between rank 0 and {r}"


def assert_close(got: dict, expected: dict, prefix: str = "") -> None:
    """Every array of ``expected`` whose key starts with ``prefix`` (w: weights, v: history)."""
    keys = [k for k in expected if k.startswith(prefix)]
    assert keys and all(k in got for k in keys)
    for key in keys:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize(
    ("case", "ranks", "flags"),
    [("mlp", 2, ()), ("mlp", 3, ()), ("lstm", 3, ()), ("cnn", 3, ("--sync-bn",))],
)
def test_training_equals_one_process_on_the_global_batch(case, ranks, flags, tmp_path_factory):
    """Two epochs of 3 batches (10, 10, 5 samples: uneven parts; the LSTM's last batch of 2
    leaves a rank without samples) with Adam and validation:
    weights (BN's moving statistics too, with sync_batchnorm), losses, metrics and validation
    results (for the MLP, evaluate's and predict's too: the full result on every rank) as one
    process computes them, and the same bits on every rank."""
    ranks_arrays = trained(ranks, case, tmp_path_factory, *flags)[0]
    assert_same_on_every_rank(ranks_arrays)
    assert_close(ranks_arrays[0], single(case, tmp_path_factory))


def test_batchnorm_statistics_stay_per_rank_without_sync(tmp_path_factory):
    """Without sync_batchnorm each rank normalizes by its own part's statistics: the weights
    differ from one process's; the trainable ones agree bit for bit across ranks, and the
    moving statistics are rank 0's on every rank after fit (evaluated with them too)."""
    ranks = trained(2, "cnn", tmp_path_factory)[0]
    assert_same_on_every_rank(ranks)
    expected = single("cnn", tmp_path_factory)
    assert not np.allclose(ranks[0]["w1"], expected["w1"], rtol=1e-5, atol=1e-6)  # gamma


def test_resume_on_another_rank_count(tmp_path, tmp_path_factory):
    """Rank 0 saves after one epoch on 2 ranks; 3 ranks load the file and train the second:
    the weights of one process's two epochs."""
    out = tmp_path / "resume"
    out.mkdir()
    for ranks, case in ((2, "save"), (3, "resume")):
        done = run(ranks, case, out)
        assert done.returncode == 0, done.stderr[-3000:]
    ranks = [dict(np.load(out / f"rank{r}.npz")) for r in range(3)]
    assert_same_on_every_rank(ranks)
    expected = single("mlp", tmp_path_factory)
    assert_close(ranks[0], expected, prefix="w")


def test_only_rank_zero_prints_and_writes(tmp_path_factory):
    _, done, out = trained(3, "mlp", tmp_path_factory)
    assert done.stdout.count("Epoch 1/2") == 1 and done.stdout.count("Epoch 2/2") == 1
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss,val_accuracy,val_loss" and len(rows) == 3
    reports = [json.loads((out / f"report{r}.json").read_text()) for r in range(3)]
    assert [r["rank"] for r in reports] == [0, 1, 2]
    assert all(r["sum"] == 6.0 and r["local_size"] == 3 for r in reports)  # allreduce of 1..3


def test_a_rank_that_raises_stops_every_rank(tmp_path):
    started = time.monotonic()
    done = run(3, "fault", tmp_path, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - started < 30
    assert "rank 1 of 3 failed in fit()" in done.stderr
    assert "RuntimeError: the data loader broke" in done.stderr


def test_a_rank_that_raises_outside_fit_stops_every_rank(tmp_path):
    started = time.monotonic()
    done = run(2, "raise", tmp_path, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - started < 30
    assert "rank 1 of 2 ended on an uncaught RuntimeError" in done.stderr
    assert "RuntimeError: the script broke before fit" in done.stderr


def test_a_killed_rank_ends_the_job(tmp_path):
    started = time.monotonic()
    done = run(2, "kill", tmp_path, timeout=60)
    assert done.returncode != 0
    assert time.monotonic() - started < 30
