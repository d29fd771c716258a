"""Saving safety: crafted HDF5 weights that would read other files are refused before any data is
read; saves write through symlinks; the temporaries of killed saves are removed by the next save
or load; oversized entries and configs declaring more weights than the file stores are refused
before memory is spent on them."""

import contextlib
import errno
import io
import json
import os
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_saving import CASES

import fastnn
from fastnn import layers
from fastnn.models import load_model
from fastnn.saving import FileFormatError, budget, files

h5py = pytest.importorskip("h5py")

REPO = Path(__file__).resolve().parents[2]
KERNEL = "layers/dense/vars/0"
#: What a crafted file would make the kernel hold: the bytes of another local file.
SECRET = np.arange(24, dtype="float32").reshape(8, 3) + 1000.0


def small_model(units: int = 3, shift: float = 0.0) -> fastnn.Model:
    fastnn.utils.set_random_seed(0)
    model = fastnn.Sequential([layers.Input((8,)), layers.Dense(units, name="dense")])
    model.set_weights([w + shift for w in model.get_weights()])
    return model


@contextlib.contextmanager
def peak_memory():
    """Yields a list that holds tracemalloc's peak (bytes) once the block is done."""
    peak = []
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def rezipped(source: Path, dest: Path, replace: dict, compress=()) -> Path:
    """``source``'s entries with ``replace``'s, ``compress``'s written with that method."""
    with zipfile.ZipFile(source) as zf:
        entries = {name: zf.read(name) for name in zf.namelist()}
    entries.update(replace)
    with zipfile.ZipFile(dest, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data, compress_type=dict(compress).get(name, zipfile.ZIP_STORED))
    return dest


# ---- HDF5 weights that keep their data elsewhere ------------------------------------------------
def external_storage(f, folder: Path) -> None:
    (folder / "secret.bin").write_bytes(SECRET.tobytes())
    # A relative name resolves against the working directory (a .keras file's weights are
    # read from memory, so there is no other place to resolve it against).
    f.create_dataset(KERNEL, (8, 3), "float32", external=[("secret.bin", 0, SECRET.nbytes)])


def external_link(f, folder: Path) -> None:
    with h5py.File(folder / "other.h5", "w") as other:
        other["kernel"] = SECRET
    f[KERNEL] = h5py.ExternalLink(str(folder / "other.h5"), "/kernel")


def soft_link(f, folder: Path) -> None:
    f["elsewhere"] = SECRET
    f[KERNEL] = h5py.SoftLink("/elsewhere")


def virtual_dataset(f, folder: Path) -> None:
    with h5py.File(folder / "other.h5", "w") as other:
        other["kernel"] = SECRET
    layout = h5py.VirtualLayout((8, 3), "float32")
    layout[:] = h5py.VirtualSource(str(folder / "other.h5"), "kernel", shape=(8, 3))
    f.create_virtual_dataset(KERNEL, layout)


CRAFTS = {
    "external storage": (
        external_storage,
        "dataset '/layers/dense/vars/0' keeps its data in the external file 'secret.bin'",
    ),
    "external link": (
        external_link,
        "'/layers/dense/vars/0' is an external link to '/kernel' in the file '",
    ),
    "soft link": (soft_link, "'/layers/dense/vars/0' is a soft link to '/elsewhere'"),
    "virtual dataset": (
        virtual_dataset,
        "dataset '/layers/dense/vars/0' is a virtual dataset, mapping data from other files",
    ),
}


def crafted_h5(path: Path, craft, folder: Path) -> Path:
    """``path`` (a saved .weights.h5) with its kernel replaced by ``craft``."""
    with h5py.File(path, "r+") as f:
        del f[KERNEL]
        craft(f, folder)
    with h5py.File(path, "r") as f:  # the crafted file is a real threat: h5py follows it
        assert np.array_equal(f[KERNEL][()], SECRET)
    return path


def crafted_keras(path: Path, craft, folder: Path) -> Path:
    """The .keras file at ``path`` with its weights' kernel replaced by ``craft``."""
    weights = folder / "inner.weights.h5"
    with zipfile.ZipFile(path) as zf:
        weights.write_bytes(zf.read("model.weights.h5"))
    crafted_h5(weights, craft, folder)
    return rezipped(path, path, {"model.weights.h5": weights.read_bytes()})


@pytest.mark.parametrize("kind", CRAFTS)
def test_h5_weights_reading_other_files_are_refused_and_change_nothing(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    craft, message = CRAFTS[kind]
    path = tmp_path / "w.weights.h5"
    small_model().save_weights(path)
    crafted_h5(path, craft, tmp_path)
    model = small_model(shift=1.0)
    before = model.get_weights()
    with pytest.raises(FileFormatError, match=f"Cannot load '{path}': {message}"):
        model.load_weights(path)
    for a, b in zip(before, model.get_weights(), strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", CRAFTS)
def test_keras_models_reading_other_files_are_refused(kind, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    craft, message = CRAFTS[kind]
    path = tmp_path / "m.keras"
    small_model().save(path)
    crafted_keras(path, craft, tmp_path)
    with pytest.raises(FileFormatError, match=f"Cannot load '{path}': {message}"):
        load_model(path)


def test_a_link_anywhere_in_the_file_is_refused_even_where_nothing_is_read(tmp_path):
    path = tmp_path / "w.weights.h5"
    small_model().save_weights(path)
    (tmp_path / "other.h5").write_bytes(b"")
    with h5py.File(path, "r+") as f:
        f["optimizer/vars/0"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
    with pytest.raises(FileFormatError, match="'/optimizer/vars/0' is an external link"):
        small_model().load_weights(path)


def test_a_hard_link_cycle_is_walked_once(tmp_path):
    path = tmp_path / "w.weights.h5"
    model = small_model(shift=1.0)
    model.save_weights(path)
    with h5py.File(path, "r+") as f:
        f["layers/dense/loop"] = f["layers"]
    loaded = small_model()
    loaded.load_weights(path)  # the walk ends; the loop adds no dataset
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        assert np.array_equal(a, b)


def test_datasets_declaring_data_they_do_not_store_are_refused_before_building(tmp_path):
    """A .keras file whose config and h5 shapes agree on a huge Dense whose data is a fill value."""
    units = 5_000_000
    path = tmp_path / "m.keras"
    small_model().save(path)
    h5_path = tmp_path / "inner.weights.h5"
    with h5py.File(h5_path, "w") as f:
        f.create_dataset(KERNEL, (8, units), "float32")  # no data: HDF5's fill value
        f.create_dataset("layers/dense/vars/1", (units,), "float32")
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))
    config["config"]["layers"][-1]["config"]["units"] = units
    replace = {"config.json": json.dumps(config), "model.weights.h5": h5_path.read_bytes()}
    rezipped(path, path, replace)
    with peak_memory() as peak, pytest.raises(FileFormatError) as info:
        load_model(path)
    assert str(info.value) == (
        f"Cannot load '{path}': dataset '/layers/dense/vars/0' declares float32 (8, {units}) "
        f"({32 * units} bytes) but stores only 0 bytes"
    )
    assert peak[0] < 50 * 2**20


# ---- saving through symlinks -------------------------------------------------------------------
def save(model, path: Path) -> None:
    if ".weights." in path.name:
        model.save_weights(path)
    else:
        model.save(path)


def saved_weights(path: Path) -> list:
    if ".weights." in path.name:
        model = small_model()
        model.load_weights(path)
        return model.get_weights()
    return load_model(path).get_weights()


NAMES = ["m.fastnn", "m.keras", "w.weights.npz", "w.weights.h5"]


@pytest.mark.parametrize("name", NAMES)
def test_a_save_to_a_symlink_replaces_its_target_and_keeps_the_link(name, tmp_path):
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    target, link = real / name, links / name
    save(small_model(), target)
    target.chmod(0o600)
    link.symlink_to(os.path.join("..", "real", name))  # relative, as `ln -s` makes them
    new = small_model(shift=1.0)
    save(new, link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("..", "real", name)
    for a, b in zip(saved_weights(target), new.get_weights(), strict=True):
        assert np.array_equal(a, b)
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(real) == [name] and os.listdir(links) == [name]


@pytest.mark.parametrize("name", NAMES)
def test_a_save_to_a_dangling_symlink_or_a_chain_writes_the_final_target(name, tmp_path):
    target, first, second = tmp_path / name, tmp_path / "first", tmp_path / "second"
    first.symlink_to(target)  # dangling: the target does not exist yet
    second.symlink_to(first)
    dangling, chained = tmp_path / f"dangling-{name}", tmp_path / f"chained-{name}"
    dangling.symlink_to(target)
    chained.symlink_to(second)
    save(small_model(shift=1.0), dangling)
    assert dangling.is_symlink() and target.is_file()
    save(small_model(shift=2.0), chained)
    assert chained.is_symlink() and first.is_symlink() and second.is_symlink()
    for a, b in zip(saved_weights(target), small_model(shift=2.0).get_weights(), strict=True):
        assert np.array_equal(a, b)


# ---- temporaries of killed saves ---------------------------------------------------------------
WRITER = """
import sys
sys.path.insert(0, {repo!r})
from fastnn.saving.files import atomic_write

with atomic_write({path!r}) as f:
    f.write(b"half a model" * 100_000)
    f.flush()
    print("writing", flush=True)
    sys.stdin.read()  # until killed
"""


@contextlib.contextmanager
def save_in_progress(path: Path):
    """A child process in the middle of saving ``path``, SIGKILLed when the block ends."""
    script = WRITER.format(repo=str(REPO), path=str(path))
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "writing"
        yield child
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.mark.parametrize("name", NAMES)
def test_the_next_save_removes_what_a_killed_save_left(name, tmp_path):
    path = tmp_path / name
    with save_in_progress(path):
        pass
    assert len(temporaries(tmp_path)) == 1
    save(small_model(), path)
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("name", NAMES)
def test_the_next_load_removes_what_a_killed_save_left(name, tmp_path):
    path = tmp_path / name
    save(small_model(), path)
    with save_in_progress(path):
        pass
    assert len(temporaries(tmp_path)) == 1
    saved_weights(path)
    assert temporaries(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locks")
def test_a_save_in_progress_keeps_its_temporary(tmp_path):
    path = tmp_path / "m.fastnn"
    with save_in_progress(path):
        leftover = temporaries(tmp_path)
        save(small_model(), path)
        load_model(path)
        assert temporaries(tmp_path) == leftover  # the other save is still writing it
    save(small_model(), path)
    assert temporaries(tmp_path) == []


def test_only_temporaries_of_that_path_are_removed(tmp_path):
    others = [
        ".m.fastnn.backup.tmp",
        ".m.fastnn.abcdefgh.tmp.keep",
        ".other.fastnn.abcdefgh.tmp",
        "m.fastnn.abcdefgh.tmp",
        ".m.fastnn.abcdefgh",
    ]
    for name in [*others, ".m.fastnn.abcdefgh.tmp"]:
        (tmp_path / name).write_bytes(b"x")
    save(small_model(), tmp_path / "m.fastnn")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*others, "m.fastnn"])


def test_without_file_locks_only_old_leftovers_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "fcntl", None)  # as on Windows
    old, fresh = tmp_path / ".m.fastnn.aaaaaaaa.tmp", tmp_path / ".m.fastnn.bbbbbbbb.tmp"
    for leftover in (old, fresh):
        leftover.write_bytes(b"x")
    two_hours_ago = old.stat().st_mtime - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    save(small_model(shift=1.0), tmp_path / "m.fastnn")
    assert temporaries(tmp_path) == [fresh.name]
    assert np.array_equal(saved_weights(tmp_path / "m.fastnn")[1], np.ones(3, "float32"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file locks")
def test_on_a_filesystem_without_locks_saves_work_and_keep_leftovers(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(files.fcntl, "flock", no_locks)
    leftover = tmp_path / ".m.fastnn.aaaaaaaa.tmp"
    leftover.write_bytes(b"x")
    save(small_model(shift=1.0), tmp_path / "m.fastnn")
    assert temporaries(tmp_path) == [leftover.name]
    assert np.array_equal(saved_weights(tmp_path / "m.fastnn")[1], np.ones(3, "float32"))


# ---- caps on what a file makes loading allocate ------------------------------------------------
def test_a_manifest_over_its_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "m.fastnn"
    small_model().save(path)
    with zipfile.ZipFile(path) as zf:
        manifest = zf.read("fastnn.json") + b" " * (17 * 2**20)  # valid JSON, inflated
    deflated = {"fastnn.json": zipfile.ZIP_DEFLATED}
    rezipped(path, path, {"fastnn.json": manifest}, deflated)
    assert path.stat().st_size < 2**20
    with peak_memory() as peak, pytest.raises(FileFormatError) as info:
        load_model(path)
    assert str(info.value) == (
        f"Cannot load '{path}': the entry 'fastnn.json' is {len(manifest)} bytes, more than "
        f"the {16 * 2**20} allowed"
    )
    assert peak[0] < 2**20


@pytest.mark.parametrize("name, entry", [("m.fastnn", "fastnn.json"), ("m.keras", "config.json")])
def test_an_entry_inflating_more_than_deflate_can_is_refused_before_it_is_read(
    name, entry, tmp_path
):
    path = tmp_path / name
    small_model().save(path)
    with zipfile.ZipFile(path) as zf:
        data = zf.read(entry) + b" " * (8 * 2**20)
    rezipped(path, path, {entry: data}, {entry: zipfile.ZIP_BZIP2})
    assert path.stat().st_size < 2**14
    with peak_memory() as peak, pytest.raises(FileFormatError) as info:
        load_model(path)
    assert f"Cannot load '{path}': the entry '{entry}' declares {len(data)} bytes" in str(
        info.value
    )
    assert peak[0] < 2**20


def test_keras_weights_inflating_more_than_deflate_can_are_refused(tmp_path):
    path = tmp_path / "m.keras"
    small_model().save(path)
    with zipfile.ZipFile(path) as zf:
        data = zf.read("model.weights.h5") + bytes(20 * 2**20)
    compress = {"model.weights.h5": zipfile.ZIP_BZIP2}
    rezipped(path, path, {"model.weights.h5": data}, compress)
    with peak_memory() as peak, pytest.raises(FileFormatError, match="more than any zip"):
        load_model(path)
    assert peak[0] < 2**20


def tampered_units(path: Path, units: int) -> Path:
    """``path`` (.fastnn or .keras) with its Dense layer declaring ``units``."""
    entry = "fastnn.json" if path.suffix == ".fastnn" else "config.json"
    with zipfile.ZipFile(path) as zf:
        data = json.loads(zf.read(entry))
    model = data["model"] if entry == "fastnn.json" else data
    model["config"]["layers"][-1]["config"]["units"] = units
    return rezipped(path, path, {entry: json.dumps(data)})


@pytest.mark.parametrize("name", ["m.fastnn", "m.keras"])
def test_a_config_declaring_more_weights_than_stored_is_refused_before_allocating(name, tmp_path):
    path = tmp_path / name
    small_model().save(path)
    stored = path.stat().st_size
    tampered_units(path, 20_000_000)
    assert path.stat().st_size < stored + 100
    with peak_memory() as peak, pytest.raises(FileFormatError) as info:
        load_model(path)
    assert str(info.value).startswith(
        f"Cannot load '{path}': layer 'dense' (Dense) asks for a float32 (8, 20000000) weight "
        "'kernel' (640000000 bytes), more than the "
    )
    assert peak[0] < 50 * 2**20


def test_weights_stored_as_a_compression_bomb_do_not_count_as_stored(tmp_path):
    units = 1_000_000
    path = tmp_path / "m.fastnn"
    small_model().save(path)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("fastnn.json"))
    manifest["model"]["config"]["layers"][-1]["config"]["units"] = units
    replace, compress = {}, {}
    for i, array in enumerate([np.zeros((8, units), "float32"), np.zeros(units, "float32")]):
        manifest["weights"][i]["shape"] = list(array.shape)
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array)
        replace[f"weights/{i}.npy"] = buffer.getvalue()
        compress[f"weights/{i}.npy"] = zipfile.ZIP_BZIP2  # 32 MB in 50 bytes
    replace["fastnn.json"] = json.dumps(manifest)
    rezipped(path, path, replace, compress)
    assert path.stat().st_size < 2**14
    pattern = r"asks for a float32 \(8, 1000000\) weight 'kernel'"
    with peak_memory() as peak, pytest.raises(FileFormatError, match=pattern):
        load_model(path)
    assert peak[0] < 50 * 2**20


@pytest.mark.parametrize("name", ["m.fastnn", "m.keras"])
def test_a_little_tampering_gets_the_exact_weight_by_weight_message(name, tmp_path):
    path = tmp_path / name
    small_model().save(path)
    tampered_units(path, 5)
    with pytest.raises(FileFormatError, match=r"float32 \(8, 3\).*float32 \(8, 5\)"):
        load_model(path)


KERAS_CASES = ["dense_mlp", "conv2d_pooling", "batchnorm", "embedding_lstm_masked", "gru"]


@pytest.mark.parametrize("case", CASES)
def test_every_model_fits_its_own_stored_weights_without_slack(case, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "SLACK_BYTES", 0)
    model, _ = CASES[case]()
    names = ["m.fastnn", "m.keras"] if case in KERAS_CASES else ["m.fastnn"]
    for name in names:
        model.save(tmp_path / name)
        loaded = load_model(tmp_path / name)
        for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
            assert np.array_equal(a, b)
