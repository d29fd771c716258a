"""``get_file``: Keras's download cache (``~/.keras/datasets``, or ``$KERAS_HOME``), with hash
checks, atomic downloads and archive extraction that refuses members escaping the target folder.

A file Keras fetched before is found at the same path and reused; fastnn's own downloads land
there too. Downloads go to a temporary file beside the target and are renamed into place only
once complete and verified, so an interrupted or failed download leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
from urllib.parse import urlsplit

#: Bytes read from the network (and hashed) at a time.
CHUNK_BYTES = 1 << 16
#: Seconds a connection may stay silent before the download fails.
TIMEOUT_SECONDS = 60.0


def keras_home() -> str:
    """Keras's cache root: ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras`` if ``~`` is not
    writable), read at each call as Keras reads it at import."""
    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    if not os.access(base, os.W_OK):
        base = "/tmp"
    return os.path.join(base, ".keras")


def get_file(
    fname: str | None = None,
    origin: str | None = None,
    untar: bool = False,
    md5_hash: str | None = None,
    file_hash: str | None = None,
    cache_subdir: str = "datasets",
    hash_algorithm: str = "auto",
    extract: bool = False,
    archive_format="auto",
    cache_dir: str | None = None,
    force_download: bool = False,
) -> str:
    """Download ``origin`` into the Keras cache unless a good copy is there; return its path
    (with ``extract``, the folder it was extracted into). Keras 3's arguments and file layout.

    ``file_hash`` (sha256, or md5 when 32 hex digits or ``hash_algorithm="md5"``) is checked on
    the cached copy (a mismatch downloads again) and on every download (a mismatch raises and
    keeps nothing). http(s):// and file:// URLs are read with urllib.
    """
    if origin is None:
        raise ValueError('Please specify the "origin" argument (URL of the file to download).')
    if md5_hash is not None and file_hash is None:
        file_hash, hash_algorithm = md5_hash, "md5"
    if hash_algorithm not in ("auto", "sha256", "md5"):
        raise ValueError(
            "`hash_algorithm` must be 'auto', 'sha256' or 'md5'; "
            f"got hash_algorithm={hash_algorithm!r}"
        )
    datadir = _cache_folder(cache_dir, cache_subdir)
    named = bool(fname)
    fname = _file_name(fname, origin)
    download_target, extraction_dir = _targets(datadir, fname, named, extract or untar)

    download = force_download or not os.path.exists(download_target)
    if (
        not download
        and file_hash is not None
        and not validate_file(download_target, file_hash, hash_algorithm)
    ):
        _say(
            "A local file was found, but it seems to be incomplete or outdated because the "
            f"{_algorithm_name(hash_algorithm, file_hash)} file hash does not match the "
            f"original value of {file_hash} so we will re-download the data."
        )
        download = True
    if download:
        _download(origin, download_target, file_hash, hash_algorithm)

    if not (extract or untar):
        return download_target
    fresh = download or not os.path.isdir(extraction_dir)
    formats = "tar" if untar else archive_format
    if fresh and not extract_archive(download_target, extraction_dir, formats):
        warnings.warn("Could not extract archive.", stacklevel=2)
    return extraction_dir


def _cache_folder(cache_dir, cache_subdir) -> str:
    base = os.path.expanduser(keras_home() if cache_dir is None else os.fspath(cache_dir))
    with contextlib.suppress(OSError):  # Keras makes ~/.keras when it is imported
        os.makedirs(base, exist_ok=True)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    datadir = os.path.join(base, cache_subdir)
    os.makedirs(datadir, exist_ok=True)
    return datadir


def _file_name(fname, origin) -> str:
    if not fname:
        fname = os.path.basename(urlsplit(origin).path)
        if not fname:
            raise ValueError(
                f"Can't parse the file name from the origin provided: '{origin}'. "
                "Please specify the `fname` argument."
            )
        return fname
    fname = os.fspath(fname)
    if os.sep in fname:
        raise ValueError(
            "Paths are no longer accepted as the `fname` argument. To specify the file's parent "
            f"directory, use the `cache_dir` argument. Received: fname={fname}"
        )
    return fname


def _targets(datadir, fname, named, extract) -> tuple[str, str | None]:
    """Where the download goes and the folder it is extracted into, named as Keras names them
    (``named``: the caller gave ``fname``, rather than the URL)."""
    if not extract:
        return os.path.join(datadir, fname), None
    if named and "." in fname:
        stem = fname[: fname.find(".")]
        return os.path.join(datadir, fname), os.path.join(datadir, f"{stem}_extracted")
    return os.path.join(datadir, f"{fname}_archive"), os.path.join(datadir, fname)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- downloading -------------------------------------------------------------------------------
def _download(origin, target, file_hash, hash_algorithm) -> None:
    """Fetch ``origin`` into a temporary file beside ``target``, check its hash, rename it into
    place; on any failure (network, HTTP status, hash, Ctrl-C) remove the temporary file."""
    import urllib.error
    import urllib.request

    _say(f"Downloading data from {origin}")
    hasher = _hasher(hash_algorithm, file_hash)
    folder = os.path.dirname(target) or "."
    handle, partial = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(origin, timeout=TIMEOUT_SECONDS) as response:
                    total = response.headers.get("Content-Length")
                    _copy_with_progress(response, out, hasher, int(total) if total else None)
            except urllib.error.HTTPError as error:
                raise OSError(
                    f"URL fetch failure on {origin}: {error.code} -- {error.msg}"
                ) from None
            except urllib.error.URLError as error:
                raise OSError(
                    f"URL fetch failure on {origin}: {error.reason} (are you offline, or is the "
                    "URL wrong?)"
                ) from None
            except OSError as error:  # a connection reset or timeout mid-download
                raise OSError(f"URL fetch failure on {origin}: {error}") from None
        if file_hash is not None and hasher.hexdigest() != str(file_hash):
            algorithm = _algorithm_name(hash_algorithm, file_hash)
            raise ValueError(
                f"Incomplete or corrupted file detected. The {algorithm} file hash of the data "
                f"downloaded from {origin} is {hasher.hexdigest()}, which does not match the "
                f"provided value of {file_hash}. Nothing was kept."
            )
        os.replace(partial, target)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise


def _copy_with_progress(response, out, hasher, total: int | None) -> None:
    bar = _ProgressBar(total)
    while True:
        chunk = response.read(CHUNK_BYTES)
        if not chunk:
            break
        out.write(chunk)
        hasher.update(chunk)
        bar.update(len(chunk))
    bar.close()
    if total is not None and bar.done != total:  # urllib does not raise on a cut connection
        raise OSError(f"the connection closed after {bar.done:,} of {total:,} bytes")


class _ProgressBar:
    """Bytes received so far on stderr: a bar when the size is known, redrawn at most 10 times a
    second, only when stderr is a terminal (a closing line otherwise)."""

    def __init__(self, total: int | None):
        self.total, self.done, self.last = total, 0, 0.0
        self.interactive = sys.stderr.isatty()

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.interactive and now - self.last >= 0.1:
            self.last = now
            sys.stderr.write("\r" + self._line())
            sys.stderr.flush()

    def _line(self) -> str:
        if not self.total:
            return f"{self.done:,} bytes"
        filled = min(30, 30 * self.done // self.total)
        return f"{self.done:,}/{self.total:,} bytes [{'=' * filled}{'.' * (30 - filled)}]"

    def close(self) -> None:
        sys.stderr.write(("\r" if self.interactive else "") + self._line() + "\n")
        sys.stderr.flush()


# ---- hashes ------------------------------------------------------------------------------------
def _algorithm_name(algorithm: str, file_hash) -> str:
    if algorithm == "sha256" or (algorithm == "auto" and file_hash and len(str(file_hash)) == 64):
        return "sha256"
    return "md5"


def _hasher(algorithm: str, file_hash=None):
    """Keras's choice: sha256 when asked, or with 'auto' for a 64-digit hash; md5 otherwise."""
    if _algorithm_name(algorithm, file_hash) == "sha256":
        return hashlib.sha256()
    return hashlib.md5(usedforsecurity=False)


def hash_file(fpath, algorithm: str = "sha256", chunk_size: int = 65535) -> str:
    """The sha256 (or md5) hex digest of the file at ``fpath``."""
    hasher = _hasher(algorithm) if isinstance(algorithm, str) else algorithm
    with open(fpath, "rb") as file:
        for chunk in iter(lambda: file.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


def validate_file(fpath, file_hash, algorithm: str = "auto", chunk_size: int = 65535) -> bool:
    """Whether the file at ``fpath`` has ``file_hash`` (sha256 or md5, chosen as Keras does)."""
    return hash_file(fpath, _hasher(algorithm, file_hash), chunk_size) == str(file_hash)


# ---- archives ----------------------------------------------------------------------------------
class UnsafeArchiveError(ValueError):
    """An archive member would land outside the extraction folder, or is a link or device."""


def extract_archive(file_path, path=".", archive_format="auto") -> bool:
    """Extract a tar (.tar, .tar.gz, .tar.bz2, .tar.xz) or zip archive into ``path``; False if
    the file is in none of ``archive_format`` ('auto': tar then zip; 'tar'; 'zip'; None).

    Every member is checked first: an absolute path, a path climbing out of ``path``, a link or
    a device file raises ``UnsafeArchiveError`` naming it and nothing is extracted. Members are
    written into a temporary folder renamed to ``path`` at the end (replacing an older one).
    """
    if not archive_format:
        return False
    formats = ["tar", "zip"] if archive_format == "auto" else archive_format
    formats = [formats] if isinstance(formats, str) else list(formats)
    file_path, path = os.fspath(file_path), os.fspath(path)
    for kind in formats:
        if kind == "tar" and tarfile.is_tarfile(file_path):
            with tarfile.open(file_path) as archive:
                _extract_atomically(archive, path, _checked_tar_members)
            return True
        if kind == "zip" and zipfile.is_zipfile(file_path):
            with zipfile.ZipFile(file_path) as archive:
                _extract_atomically(archive, path, _checked_zip_members)
            return True
        if kind not in ("tar", "zip"):
            raise NotImplementedError(f"archive_format {kind!r}: expected 'tar', 'zip' or 'auto'")
    return False


def _extract_atomically(archive, path, checked_members) -> None:
    members = checked_members(archive, os.path.abspath(path))
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", dir=parent)
    try:
        if isinstance(archive, tarfile.TarFile):
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(staging, members=members, **kwargs)
        else:
            archive.extractall(staging, members=members)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _inside(base: str, name: str) -> bool:
    """Whether member ``name``, relative and without climbing out, stays in folder ``base``."""
    if not name or os.path.isabs(name) or name.startswith(("/", "\\")) or ":" in name[:2]:
        return False
    resolved = os.path.abspath(os.path.join(base, name))
    return os.path.commonpath([resolved, base]) == base


def _checked_tar_members(archive: tarfile.TarFile, base: str) -> list:
    members = archive.getmembers()
    for member in members:
        if member.issym() or member.islnk():
            raise UnsafeArchiveError(
                f"Refusing to extract archive member '{member.name}': it is a link (to "
                f"'{member.linkname}'); fastnn extracts only regular files and folders"
            )
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(
                f"Refusing to extract archive member '{member.name}': it is a device, pipe or "
                "other special file; fastnn extracts only regular files and folders"
            )
        if not _inside(base, member.name):
            raise UnsafeArchiveError(
                f"Refusing to extract archive member '{member.name}': its path is absolute or "
                f"leads outside the extraction folder {base}"
            )
    return members


def _checked_zip_members(archive: zipfile.ZipFile, base: str) -> list:
    members = archive.infolist()
    for member in members:
        if (member.external_attr >> 16) & 0o170000 == 0o120000:
            raise UnsafeArchiveError(
                f"Refusing to extract archive member '{member.filename}': it is a symbolic link; "
                "fastnn extracts only regular files and folders"
            )
        if not _inside(base, member.filename):
            raise UnsafeArchiveError(
                f"Refusing to extract archive member '{member.filename}': its path is absolute "
                f"or leads outside the extraction folder {base}"
            )
    return members
