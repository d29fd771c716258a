"""Numba's threading layer: TBB wherever the ``tbb`` package is installed; otherwise one warning,
and a fork child of an OpenMP process gets a RuntimeError instead of dying.

The ``tbb`` wheel puts libtbb.so.12 in ``<venv>/lib``, where the dynamic loader does not look:
fastnn loads it before Numba is imported. Each check that depends on what a process did first
runs in a fresh interpreter, with NUMBA_THREADING_LAYER as the test sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import fastnn
from fastnn import _tbb, config

TIMEOUT = 300  # seconds; the first pass may compile kernels on a cold, busy machine
ROOT = Path(fastnn.__file__).resolve().parents[1]


def tbb_installed() -> bool:
    try:
        metadata.distribution("tbb")
    except metadata.PackageNotFoundError:
        return False
    return True


needs_tbb = pytest.mark.skipif(not tbb_installed(), reason="the tbb package is not installed")


def run_fresh(code: str, **env: str) -> dict:
    """Run ``code`` in a new interpreter with ``env`` (NUMBA_THREADING_LAYER only if given);
    the JSON it prints on its last line."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=ROOT,
        env={**environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@needs_tbb
@pytest.mark.skipif(
    "NUMBA_THREADING_LAYER" in os.environ, reason="a threading layer was chosen by the user"
)
def test_the_threading_layer_is_tbb_when_installed():
    assert config.threading_layer() == "tbb", _tbb.outcome()


@needs_tbb
@pytest.mark.parametrize(
    "statement",
    [
        "import fastnn.config as c; c.threading_layer()",  # the README's check
        "import numba, fastnn",  # Numba imported first, its threads not started yet
        "import fastnn.kernels.pooling",  # a family imported directly, not through fastnn.kernels
    ],
)
def test_a_fresh_process_runs_numba_on_tbb(statement):
    out = run_fresh(
        f"""
        import json
        {statement}
        import numba
        numba.get_num_threads()
        print(json.dumps(numba.threading_layer()))
        """
    )
    assert out == "tbb"


@needs_tbb
def test_the_library_found_is_the_tbb_packages():
    path = _tbb.find()
    assert path is not None
    files = [f.locate() for f in metadata.files("tbb") or [] if f.name == _tbb.LIBRARY]
    assert os.path.realpath(path) in {os.path.realpath(f) for f in files}


def test_without_the_packages_file_list_the_library_is_found_in_a_prefix_lib(tmp_path, monkeypatch):
    """A tbb installed without a RECORD (e.g. by conda): the lib folder of sys.prefix."""

    def no_files(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "files", no_files)
    for name in ("prefix", "base_prefix"):
        monkeypatch.setattr(sys, name, str(tmp_path / "elsewhere"))
    monkeypatch.setattr("site.USER_BASE", str(tmp_path / "user"))
    assert _tbb.find() is None
    (tmp_path / "user" / "lib").mkdir(parents=True)
    (tmp_path / "user" / "lib" / _tbb.LIBRARY).write_bytes(b"")
    assert _tbb.find() == str(tmp_path / "user" / "lib" / _tbb.LIBRARY)
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / _tbb.LIBRARY).write_bytes(b"")
    assert _tbb.find() == str(tmp_path / "lib" / _tbb.LIBRARY)  # sys.prefix first


def test_import_fastnn_loads_no_tbb_nor_numba_nor_importlib_metadata():
    out = run_fresh(
        """
        import json, sys
        import fastnn
        print(json.dumps([fastnn._tbb.outcome(), "numba" in sys.modules,
                          "importlib.metadata" in sys.modules]))
        """
    )
    assert out == [None, False, False]


# A model's passes, then in a fork child: a predict, an eager layer call, a model call.
FORK = """
import json, multiprocessing, sys, warnings
warnings.simplefilter("always")
import numpy as np
with warnings.catch_warnings(record=True) as caught:
    import fastnn
    from fastnn import layers
    inputs = fastnn.Input((8, 8, 1))
    x = layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = layers.Flatten()(layers.MaxPooling2D(2)(x))
    model = fastnn.Model(inputs, layers.Dense(3, activation="softmax")(x))
    xs = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    conv = layers.Conv2D(2, 3)
    model.predict(xs, verbose=0)
    model.predict(xs, verbose=0)
    conv(xs)
    layer = fastnn.config.threading_layer()
warned = [str(w.message) for w in caught if type(w.message).__name__ == "ThreadingLayerWarning"]

def child(conn):
    out = []
    for call in (lambda: model.predict(xs, verbose=0), lambda: conv(xs), lambda: model(xs)):
        try:
            call()
            out.append("ran")
        except RuntimeError as error:
            out.append(str(error))
    conn.send(out)

ctx = multiprocessing.get_context("fork")
receive, send = ctx.Pipe(duplex=False)
process = ctx.Process(target=child, args=(send,))
process.start()
send.close()
try:
    results = receive.recv() if receive.poll(120) else None
except EOFError:  # the child died before sending
    results = None
process.join(30)
print(json.dumps({"layer": layer, "warned": warned, "exitcode": process.exitcode,
                  "child": results, "tbb": fastnn._tbb.outcome()}))
"""
BLOCK_TBB = "import sys; sys.modules['numba.np.ufunc.tbbpool'] = None  # TBB's layer fails\n"


def test_without_tbb_fastnn_warns_once_and_a_fork_child_gets_an_error():
    """Numba's TBB layer fails to import (as it did in a virtualenv): OpenMP runs; one warning
    names it and the fork consequence; the fork child raises RuntimeError, it does not die."""
    out = run_fresh(BLOCK_TBB + FORK)
    assert out["layer"] == "omp"
    assert out["tbb"] == ""  # loaded, but Numba's layer failed to import
    assert len(out["warned"]) == 1, out["warned"]
    assert "'omp' threading layer, not TBB" in out["warned"][0]
    assert "fork" in out["warned"][0] and "spawn" in out["warned"][0]
    assert out["exitcode"] == 0, "the fork child died"
    assert len(out["child"]) == 3
    for message in out["child"]:
        assert "forked" in message and "GNU OpenMP" in message and "'spawn'" in message


def test_a_chosen_layer_is_used_without_warning_and_fork_is_refused_under_omp():
    out = run_fresh(FORK, NUMBA_THREADING_LAYER="omp")
    assert out["layer"] == "omp"
    assert out["tbb"] == "NUMBA_THREADING_LAYER=omp chooses another layer"  # not loaded
    assert out["warned"] == []
    assert out["exitcode"] == 0, "the fork child died"
    assert all("forked" in message for message in out["child"]), out["child"]


def test_a_fork_child_runs_under_a_fork_safe_layer():
    out = run_fresh(FORK, NUMBA_THREADING_LAYER="workqueue")
    assert (out["layer"], out["warned"], out["exitcode"]) == ("workqueue", [], 0)
    assert out["child"] == ["ran"] * 3
