"""fastnn.utils.get_file: Keras's cache layout, hashes, atomic downloads, safe extraction.

Files are served from a loopback HTTP server (or file:// URLs); Keras's own get_file, given
file:// URLs, shows where Keras puts each file, so a file Keras fetched is found by fastnn.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from keras_twin import keras_module
from served import closed_port_url

from fastnn.utils import file_utils, get_file

PAYLOAD = b"fastnn get_file test payload\n" * 50


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_under(folder) -> list[str]:
    """Every file below ``folder``, relative, sorted (temporary files included)."""
    return sorted(
        os.path.relpath(os.path.join(root, name), folder)
        for root, _, names in os.walk(folder)
        for name in names
    )


def test_downloads_into_keras_home_once_then_reads_the_cache(server, keras_home, capsys):
    (server.folder / "data.bin").write_bytes(PAYLOAD)
    path = get_file("data.bin", server.url + "data.bin", file_hash=sha256(PAYLOAD))
    assert path == str(keras_home / "datasets" / "data.bin")
    assert Path(path).read_bytes() == PAYLOAD
    err = capsys.readouterr().err  # the message and the progress bar go to stderr
    assert f"Downloading data from {server.url}data.bin" in err
    assert f"1,450/1,450 bytes [{'=' * 30}]" in err
    assert get_file("data.bin", server.url + "data.bin", file_hash=sha256(PAYLOAD)) == path
    assert get_file(origin=server.url + "data.bin") == path  # the name from the URL
    assert server.requests == ["/data.bin"]
    get_file("data.bin", server.url + "data.bin", force_download=True)
    assert server.requests == ["/data.bin"] * 2
    assert files_under(keras_home) == ["datasets/data.bin"]


def test_md5_and_sha256_hashes_and_hash_algorithm(server, tmp_path):
    (server.folder / "data.bin").write_bytes(PAYLOAD)
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    url = server.url + "data.bin"
    for kwargs in (
        {"file_hash": md5},
        {"md5_hash": md5},
        {"file_hash": md5, "hash_algorithm": "md5"},
        {"file_hash": sha256(PAYLOAD), "hash_algorithm": "sha256"},
    ):
        cache = tmp_path / str(len(server.requests))
        path = get_file("data.bin", url, cache_dir=str(cache), **kwargs)
        assert Path(path).read_bytes() == PAYLOAD
    assert file_utils.validate_file(path, md5) and file_utils.validate_file(path, sha256(PAYLOAD))
    assert file_utils.hash_file(path) == sha256(PAYLOAD)
    assert file_utils.hash_file(path, "md5") == md5
    with pytest.raises(ValueError, match="hash_algorithm"):
        get_file("data.bin", url, cache_dir=str(tmp_path), hash_algorithm="sha1")


def test_a_download_with_the_wrong_hash_is_refused_and_nothing_is_kept(server, tmp_path):
    (server.folder / "data.bin").write_bytes(PAYLOAD)
    with pytest.raises(ValueError, match="does not match the provided value of 0{64}"):
        get_file("data.bin", server.url + "data.bin", file_hash="0" * 64, cache_dir=tmp_path / "c")
    assert files_under(tmp_path / "c") == []


def test_a_cached_file_with_the_wrong_hash_is_downloaded_again(server, tmp_path, capsys):
    (server.folder / "data.bin").write_bytes(PAYLOAD)
    stale = tmp_path / "datasets" / "data.bin"
    stale.parent.mkdir()
    stale.write_bytes(b"half a download")
    path = get_file(
        "data.bin", server.url + "data.bin", file_hash=sha256(PAYLOAD), cache_dir=tmp_path
    )
    assert path == str(stale) and stale.read_bytes() == PAYLOAD
    assert "so we will re-download the data" in capsys.readouterr().err
    assert server.requests == ["/data.bin"]


def test_http_errors_and_offline_name_the_url_and_leave_no_file(server, tmp_path):
    url = server.url + "missing.bin"
    with pytest.raises(OSError, match=f"URL fetch failure on {url}: 404"):
        get_file("missing.bin", url, cache_dir=tmp_path)
    offline = closed_port_url("data.bin")
    with pytest.raises(OSError, match=f"URL fetch failure on {offline}: .*offline"):
        get_file("data.bin", offline, cache_dir=tmp_path)
    with pytest.raises(OSError, match="URL fetch failure on file://"):
        get_file("data.bin", (tmp_path / "nowhere.bin").as_uri(), cache_dir=tmp_path)
    assert files_under(tmp_path / "datasets") == []


def test_a_download_cut_short_fails_and_leaves_no_file(server, tmp_path):
    (server.folder / "data.bin").write_bytes(PAYLOAD)
    server.truncated.add("data.bin")
    with pytest.raises(OSError, match=r"closed after .* of 1,450 bytes"):
        get_file("data.bin", server.url + "data.bin", cache_dir=tmp_path)
    assert files_under(tmp_path / "datasets") == []


def test_file_urls_and_absolute_cache_subdirs(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    target = tmp_path / "elsewhere"
    path = get_file("copy.bin", source.as_uri(), cache_subdir=str(target), cache_dir=tmp_path)
    assert path == str(target / "copy.bin") and Path(path).read_bytes() == PAYLOAD
    with pytest.raises(ValueError, match="Paths are no longer accepted"):
        get_file("a/b.bin", source.as_uri(), cache_dir=tmp_path)
    with pytest.raises(ValueError, match='specify the "origin"'):
        get_file("b.bin")
    with pytest.raises(ValueError, match="Can't parse the file name"):
        get_file(origin="http://127.0.0.1:1/", cache_dir=tmp_path)


def tar_bytes(members: dict[str, bytes], mode="w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("fname", ["folder", "folder.tar.gz", None])
def test_paths_match_keras_for_files_and_extracted_archives(tmp_path, fname):
    """Keras's get_file and fastnn's, each given its own cache, return the same relative path
    (and the same files after extraction), so one finds what the other downloaded."""
    keras = keras_module()
    archive = tmp_path / "archive.tar.gz"
    archive.write_bytes(tar_bytes({"inner/a.txt": b"a", "b.txt": b"b"}))
    results = {}
    for name, fetch in (("keras", keras.utils.get_file), ("fastnn", get_file)):
        plain_cache, extract_cache = tmp_path / name / "plain", tmp_path / name / "extract"
        for cache in (plain_cache, extract_cache):  # Keras falls back to /tmp/.keras otherwise
            cache.mkdir(parents=True)
        plain = fetch(fname, archive.as_uri(), cache_dir=str(plain_cache))
        extracted = fetch(fname, archive.as_uri(), cache_dir=str(extract_cache), extract=True)
        results[name] = (
            os.path.relpath(plain, plain_cache),
            os.path.relpath(extracted, extract_cache),
            files_under(extracted),
        )
    assert results["fastnn"] == results["keras"]
    assert results["fastnn"][2] == ["b.txt", "inner/a.txt"]


def test_extract_reuses_keras_extraction_and_zip_archives(server, tmp_path):
    (server.folder / "data.zip").write_bytes(zip_bytes({"d/x.txt": b"x"}))
    folder = get_file("data", server.url + "data.zip", extract=True, cache_dir=tmp_path)
    assert folder == str(tmp_path / "datasets" / "data")
    assert Path(folder, "d", "x.txt").read_bytes() == b"x"
    assert get_file("data", server.url + "data.zip", extract=True, cache_dir=tmp_path) == folder
    assert server.requests == ["/data.zip"]
    (server.folder / "plain.bin").write_bytes(PAYLOAD)
    with pytest.warns(UserWarning, match="Could not extract archive"):
        get_file("plain", server.url + "plain.bin", extract=True, cache_dir=tmp_path)


def symlink_tar(name: str, target: str, hard: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("ok.txt")
        info.size = 2
        archive.addfile(info, io.BytesIO(b"ok"))
        link = tarfile.TarInfo(name)
        link.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
        link.linkname = target
        archive.addfile(link)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "member", "why"),
    [
        (tar_bytes({"ok.txt": b"ok", "../escaped.txt": b"x"}), "../escaped.txt", "outside"),
        (tar_bytes({"ok.txt": b"ok", "/tmp/absolute.txt": b"x"}), "/tmp/absolute.txt", "absolute"),
        (tar_bytes({"a/../../escaped.txt": b"x"}), "a/../../escaped.txt", "outside"),
        (symlink_tar("link", "/etc/passwd"), "link", "link"),
        (symlink_tar("link", "ok.txt"), "link", "link"),
        (symlink_tar("hard", "../../secret", hard=True), "hard", "link"),
        (zip_bytes({"ok.txt": b"ok", "../escaped.txt": b"x"}), "../escaped.txt", "outside"),
        (zip_bytes({"/abs.txt": b"x"}), "/abs.txt", "absolute"),
    ],
)
def test_unsafe_archive_members_are_refused_by_name_and_nothing_is_extracted(
    tmp_path, archive, member, why
):
    source = tmp_path / "evil.archive"
    source.write_bytes(archive)
    cache = tmp_path / "cache"
    with pytest.raises(file_utils.UnsafeArchiveError, match=f"'{member}'.*{why}"):
        get_file("evil", source.as_uri(), extract=True, cache_dir=cache)
    assert files_under(cache) == ["datasets/evil_archive"]  # the download, not a member
    assert not (tmp_path / "escaped.txt").exists()


def test_import_fastnn_does_not_load_the_download_machinery():
    import subprocess
    import sys

    code = (
        "import sys, fastnn; "
        "print(sorted(m for m in ('tarfile', 'urllib.request', 'fastnn.datasets', "
        "'fastnn.utils.file_utils') if m in sys.modules)); "
        "assert fastnn.datasets.cifar100.load_data and fastnn.utils.get_file; "
        "assert fastnn.preprocessing.sequence.pad_sequences is fastnn.utils.pad_sequences"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
