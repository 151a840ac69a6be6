"""Whole-file writes that either replace the target completely or leave it untouched.

Every file segprompt writes in one piece (masks, overlays, JSON, CSV, plots,
cache entries, checkpoints) goes through :func:`write_files` (or its
one-file forms :func:`atomic_write_bytes` / :func:`atomic_write_text`):

1. stale temporary files of the same target are removed (see below);
2. the bytes go to a new temporary file beside the target,
   ``.<stem>.<pid>-<8 hex>.tmp<suffix>``, created with mode ``0o666`` so the
   umask applies exactly as for a plain :func:`open` (a file that already
   exists keeps its permission bits, as ``open(path, "w")`` would keep them);
3. every byte is written (:func:`write_all`: a short write is retried, a write
   that stores nothing is a full disk), the file is ``fsync``-ed and closed;
4. only when every file of the call is staged this way, each is renamed onto its
   target (:func:`os.replace`) and the folders are ``fsync``-ed.

On any failure the temporary files are removed, the targets keep their old
content, and a :class:`~segprompt.errors.StorageError` names the target, e.g.
``"no space left on device: out/mask.png"``. :func:`atomic_path` is the same
protocol for third-party writers that insist on a path; their short writes
surface as :class:`OSError` on their own close.

Stale temporary files (a writer killed with ``kill -9`` leaves one behind), and
the stale folders of :func:`atomic_directory`, are removed on the next write to
the same target when they carry our naming and
either their writer process no longer runs on this machine or they are older
than :data:`STALE_TEMP_SECONDS` (which covers other machines on a shared
folder, reused process ids, and the pid-less names older versions wrote).
A temporary file of a live writer is never touched, so concurrent writers of
one target (two napari workers storing the same cache entry) do not disturb
each other: the last rename wins with a complete file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .errors import storage_errors

#: A temporary file of ours older than this is stale even if a process with its pid runs.
STALE_TEMP_SECONDS = 3600.0
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
#: errnos of folders whose fsync is not supported (some network and FUSE file systems): nothing to do there.
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EISDIR, errno.EACCES}


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to the file descriptor ``fd``.

    ``os.write`` may store fewer bytes than asked (a disk filling up); the rest
    is retried, and a write that stores nothing raises ``ENOSPC``.

    Raises:
        OSError: the operating system's error (``ENOSPC``, ``EDQUOT``, ``EIO``...).
    """
    view = memoryview(data).cast("B")
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in ``folder`` durable (no-op where folders cannot be synced)."""
    if os.name == "nt":  # Windows makes the rename durable itself and cannot open a folder
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)


def _target(path: str | os.PathLike) -> Path:
    """The file a write to ``path`` replaces: a symlink is written through, as :func:`open` does."""
    path = Path(path)
    return path.resolve() if path.is_symlink() else path


def _temp_pattern(target: Path) -> re.Pattern[str]:
    # ``<pid>-<8 hex>`` is ours; 8 characters of mkstemp's alphabet are the names segprompt wrote before.
    return re.compile(
        rf"\.{re.escape(target.stem)}\.(?:(?P<pid>\d+)-[0-9a-f]{{8}}|[a-z0-9_]{{8}})\.tmp{re.escape(target.suffix)}"
    )


def _process_running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) terminates the process on Windows: rely on the age rule there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it runs under another user
        return True
    return True


def _remove_stale(folder: Path, pattern: re.Pattern[str], now: float | None) -> list[Path]:
    """Remove the entries of ``folder`` named by ``pattern`` that are stale (rules in the module docstring)."""
    import shutil

    now = time.time() if now is None else now
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None:
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            pid = match.group("pid")
            if age > STALE_TEMP_SECONDS or (pid is not None and not _process_running(int(pid))):
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # vanished meanwhile (its writer renamed it), or not ours to remove
    return removed


def remove_stale_temps(target: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove the stale temporary files of ``target`` (rules in the module docstring); return them."""
    target = Path(target)
    return _remove_stale(target.parent, _temp_pattern(target), now)


def remove_stale_temp_dirs(target: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove the stale folders :func:`atomic_directory` left beside ``target`` (a new store, an old one); return them."""
    target = Path(target)
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?P<pid>\d+)-[0-9a-f]{{8}}\.(?:tmp|old)")
    return _remove_stale(target.parent, pattern, now)


def _new_temp(target: Path) -> tuple[Path, int]:
    """Create a fresh temporary file beside ``target``; its permissions are those a plain ``open`` would give."""
    for _ in range(100):
        temp = target.with_name(f".{target.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            fd = os.open(temp, _TEMP_FLAGS, 0o666)
        except FileExistsError:
            continue
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except OSError:
            return temp, fd  # a new file: 0o666 & ~umask, as for open()
        try:
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
        except OSError:
            pass  # a file system without permission bits (FAT, SMB): nothing to keep
        return temp, fd
    raise FileExistsError(errno.EEXIST, "cannot create a unique temporary file", str(target))


class _Staged:
    """A temporary file holding the complete new content of one target, not yet renamed."""

    def __init__(self, target: Path) -> None:
        self.target = target
        with storage_errors(target):
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(target)
            self.temp, self._fd = _new_temp(target)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with storage_errors(self.target):
            write_all(self._fd, data)

    def finish(self) -> None:
        """Flush the content to the disk and close it (a full disk may only show here)."""
        with storage_errors(self.target):
            fd, self._fd = self._fd, -1
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def discard(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self.temp)

    def commit(self) -> None:
        with storage_errors(self.target):
            os.replace(self.temp, self.target)


def _commit_all(staged: list[_Staged]) -> None:
    """Rename every staged file onto its target, then make the renames durable."""
    done = 0
    try:
        for item in staged:
            item.commit()
            done += 1
    finally:
        for item in staged[done:]:
            item.discard()
    for folder in dict.fromkeys(item.target.parent for item in staged):
        with storage_errors(folder):
            fsync_dir(folder)


def write_files(files: Mapping[str | os.PathLike, bytes | bytearray | memoryview]) -> None:
    """Write several files all or nothing: every file is complete on disk before any target is replaced.

    A failure while any file is written (a full disk, a read-only folder)
    leaves every target as it was and no temporary file behind. The renames
    themselves (metadata only, in folders already written to) run last.

    Raises:
        StorageError: naming the target that could not be written.
    """
    staged: list[_Staged] = []
    try:
        for path, data in files.items():
            item = _Staged(_target(path))
            staged.append(item)
            item.write(data)
            item.finish()
    except BaseException:
        for item in staged:
            item.discard()
        raise
    _commit_all(staged)


def atomic_write_bytes(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Write ``data`` to ``path`` atomically and durably (see the module docstring)."""
    write_files({path: data})


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically and durably."""
    write_files({path: text.encode("utf-8")})


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for a writer that needs a path; on success it replaces ``path``.

    The temporary file exists (empty, with the permissions of a plain ``open``)
    and keeps ``path``'s suffix, so writers that dispatch on the extension
    work. After the body the file is ``fsync``-ed and renamed. On an exception
    the temporary file is removed and ``path`` is left as it was; an
    :class:`OSError` of the body becomes a :class:`StorageError` naming ``path``.
    Prefer :func:`atomic_write_bytes` with an in-memory encoding: it also
    catches writers that ignore their own short writes.
    """
    item = _Staged(_target(path))
    try:
        os.close(item._fd)
        item._fd = -1
        with storage_errors(item.target):
            yield item.temp
            item._fd = os.open(item.temp, os.O_RDWR | getattr(os, "O_BINARY", 0))
        item.finish()
    except BaseException:
        item.discard()
        raise
    _commit_all([item])


def _fsync_tree(root: Path) -> None:
    """``fsync`` every file and folder under ``root`` (folders after their contents)."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty folder beside ``path`` for a folder store (Zarr); on success it replaces ``path``.

    The folder is created with a plain :func:`os.mkdir` (the umask applies as
    for any new folder) under ``.<name>.<pid>-<8 hex>.tmp``. After the body an
    existing ``path`` is moved aside, the new folder renamed onto ``path`` and
    the old one deleted: a reader finds the old store, the new one or (for the
    instant between two renames) none, never a half-written one (every file
    and folder inside is ``fsync``-ed before the rename). On an
    exception the new folder is removed and ``path`` is left as it was; an
    :class:`OSError` of the body becomes a :class:`StorageError` naming ``path``.
    """
    import shutil

    target = _target(path)
    with storage_errors(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_dirs(target)
        temp = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        temp.mkdir()
    try:
        with storage_errors(target):
            yield temp
            _fsync_tree(temp)
            if target.exists():
                old = target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}.old")
                os.replace(target, old)
                os.replace(temp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(temp, target)
            fsync_dir(target.parent)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _check_creatable(target: Path, named: Path, probed: set[Path]) -> None:
    """Raise (naming ``named``) unless a file could be created at ``target``; ``probed`` holds folders already tried."""
    with storage_errors(named):
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        if folder not in probed:
            remove_stale_temps(folder / ".segprompt-write-check")  # a probe of a process killed in between
            probe, fd = _new_temp(folder / ".segprompt-write-check")
            os.close(fd)
            os.unlink(probe)
            probed.add(folder)


def check_writable(paths: Iterable[str | os.PathLike]) -> None:
    """Check, before any expensive work, that each path could be written (nothing is created or changed).

    A path is writable when it is not a folder and the nearest existing folder
    above it accepts a new file (tested by creating and removing one of our
    temporary files: permission bits lie for root and on read-only mounts).

    Raises:
        StorageError: naming the path and the reason (``read-only file system``,
            ``permission denied``, ``is a directory``, ``not a directory``).
    """
    probed: set[Path] = set()
    for raw in paths:
        target = _target(raw)
        _check_creatable(target, target, probed)


def check_writable_dir(folder: str | os.PathLike) -> None:
    """Check that ``folder`` is, or could be created as, a folder accepting new files; see :func:`check_writable`."""
    folder = Path(folder)
    with storage_errors(folder):
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    _check_creatable(folder / ".segprompt-write-check", folder, set())


__all__ = [
    "STALE_TEMP_SECONDS",
    "atomic_directory",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_writable",
    "check_writable_dir",
    "fsync_dir",
    "remove_stale_temp_dirs",
    "remove_stale_temps",
    "write_all",
    "write_files",
]
