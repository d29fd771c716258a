"""Atomic file writes, the leftovers of killed ones, bounded reads of zip entries, and the errors
of reading a saved file.

A save writes a temporary file ``.<name>.XXXXXXXX.tmp`` next to its target, fsyncs it and
renames it over the target, so a crash or a full disk leaves the previous file intact. A
symlink is written through: the temporary goes next to the link's final target and replaces
it, and the link stays a link.

A save killed mid-write leaves its temporary behind. The next save or load of that path
removes such leftovers, but never one a live save is writing: a writer holds an exclusive
``flock`` on its temporary from creation until it is renamed, and the kernel releases the
lock when the writer dies, so a leftover whose lock can be taken is a dead writer's. (Where
``fcntl`` is missing, i.e. Windows, only leftovers untouched for an hour are removed; on a
filesystem without locks, none are.)
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import zipfile

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

#: No zip entry (nor HDF5 dataset) may inflate more than deflate can (about 1032:1); entries
#: below the floor are exempt, but count only what their stored bytes can hold.
MAX_EXPANSION = 1100
EXPANSION_FLOOR = 2**16
#: Without file locks (Windows), a leftover this old is taken for a dead writer's.
STALE_SECONDS = 3600


class FileFormatError(ValueError):
    """A saved file that is truncated, corrupted or does not match what it describes."""


class MissingFileError(FileNotFoundError, ValueError):
    """No file at the path (a ValueError too, as Keras raises)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, overwrite: bool = True):
    """Yield a binary file object; on success it replaces ``path`` (or, for a symlink, the
    file it points to) in one rename.

    The data goes to a temporary file in the same folder, is flushed and fsynced, then renamed
    over the target (and the folder fsynced), so readers see the old file or the new one, never
    a mix. On any error the temporary file is removed and the target is untouched.
    """
    path = os.fspath(path)
    if not overwrite and os.path.exists(path):
        raise FileExistsError(f"{path} exists and overwrite=False")
    target = os.path.realpath(path)
    remove_stale_temporaries(target)
    fd, tmp = _locked_temporary(target)
    try:
        # mkstemp makes the file private (0600); keep the old file's mode, else the usual 0644.
        os.chmod(tmp, os.stat(target).st_mode & 0o7777 if os.path.exists(target) else 0o644)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            if fcntl is not None:  # renamed while locked, so no cleaner can take it first
                os.replace(tmp, target)
        if fcntl is None:  # Windows renames closed files only
            os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(os.path.dirname(target))


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Remove the temporaries that killed saves of ``path`` left behind (never a live one's)."""
    folder, name = os.path.split(os.path.realpath(os.fspath(path)))
    pattern = re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.tmp")  # mkstemp's names
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for leftover in filter(pattern.fullmatch, names):
        _remove_if_unlocked(os.path.join(folder, leftover))


def _locked_temporary(target: str) -> tuple[int, str]:
    """A new temporary file next to ``target``, locked for as long as it is open."""
    folder, name = os.path.split(target)
    while True:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits only while a cleaner holds it
        except OSError:  # a filesystem without locks: no cleaner removes anything there
            return fd, tmp
        if os.fstat(fd).st_nlink > 0:  # a cleaner may have taken it before the lock
            return fd, tmp
        os.close(fd)


def _remove_if_unlocked(leftover: str) -> None:
    if fcntl is None:
        with contextlib.suppress(OSError):
            if time.time() - os.stat(leftover).st_mtime > STALE_SECONDS:
                os.unlink(leftover)
        return
    try:
        fd = os.open(leftover, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(leftover)
    except OSError:  # BlockingIOError: a live writer holds it (or there are no locks)
        pass
    finally:
        os.close(fd)


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---- reading zip entries -----------------------------------------------------------------------
def backed_size(declared: int, stored: int) -> int:
    """The most bytes an entry can really hold: what it declares, up to what its ``stored``
    bytes can inflate to."""
    return min(declared, MAX_EXPANSION * stored)


def inflates_too_much(declared: int, stored: int) -> bool:
    """True if ``declared`` bytes cannot come from ``stored`` ones (a lie or a bomb)."""
    return declared > max(EXPANSION_FLOOR, MAX_EXPANSION * stored)


def entry_info(zf: zipfile.ZipFile, name: str, limit: int | None, error) -> zipfile.ZipInfo:
    """The entry ``name``, refused with ``error(what)`` if missing, larger than ``limit`` bytes
    (None: no limit but the next) or inflating more than deflate can."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise error(f"the entry '{name}' is missing") from None
    if limit is not None and info.file_size > limit:
        raise error(f"the entry '{name}' is {info.file_size} bytes, more than the {limit} allowed")
    if inflates_too_much(info.file_size, info.compress_size):
        raise error(
            f"the entry '{name}' declares {info.file_size} bytes stored in "
            f"{info.compress_size}, more than any zip compression yields"
        )
    return info


def read_entry(zf: zipfile.ZipFile, name: str, limit: int | None, error) -> bytes:
    """The bytes of entry ``name``, checked by ``entry_info`` and read no further than ``limit``
    (nor than the size it declares: zipfile stops there)."""
    info = entry_info(zf, name, limit, error)
    try:
        with zf.open(info) as f:
            data = f.read(-1 if limit is None else limit + 1)
    except Exception as exc:  # bad CRC, bad header, unsupported compression, ...
        raise error(f"the entry '{name}' is corrupted ({exc})") from None
    if limit is not None and len(data) > limit:
        raise error(f"the entry '{name}' is more than the {limit} bytes allowed")
    return data
