"""The atomic write protocol of segprompt.atomic: permissions, full disks, all-or-none groups, stale temporaries."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import time

import numpy as np
import pytest

from segprompt import atomic
from segprompt.errors import SegpromptError, StorageError, storage_errors
from segprompt.io import write_mask


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """``umask(value)`` sets the process umask for the test; the previous one is restored."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda value: os.umask(value)
    os.umask(previous)


@pytest.mark.parametrize("mask_bits, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_permissions_of_a_plain_open(tmp_path, umask, mask_bits, expected):
    umask(mask_bits)
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("x")
    assert _mode(tmp_path / "plain.txt") == expected
    write_mask(tmp_path / "mask.png", np.ones((4, 4), bool))
    atomic.atomic_write_text(tmp_path / "a.json", "{}")
    with atomic.atomic_path(tmp_path / "b.bin") as temp:
        temp.write_bytes(b"x")
    for name in ("mask.png", "a.json", "b.bin"):
        assert _mode(tmp_path / name) == expected, name


def test_replacing_a_file_keeps_its_permission_bits(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "shared.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    atomic.atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_a_symlink_is_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic.atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"


@pytest.mark.parametrize("free_bytes", [0, 10, 1000])
def test_full_disk_keeps_the_old_file_and_leaves_no_temporary(tmp_path, full_disk, free_bytes):
    target = tmp_path / "data.bin"
    target.write_bytes(b"previous content")
    full_disk(tmp_path, free_bytes)
    with pytest.raises(StorageError) as caught:
        atomic.atomic_write_bytes(target, b"x" * 5000)
    assert str(caught.value) == f"no space left on device: {target}"
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert isinstance(caught.value, SegpromptError) and isinstance(caught.value, OSError)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


def test_a_short_write_is_completed(tmp_path, monkeypatch):
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, memoryview(data)[:3]))
    atomic.atomic_write_bytes(tmp_path / "a.bin", b"0123456789")
    assert (tmp_path / "a.bin").read_bytes() == b"0123456789"


def test_a_write_storing_nothing_is_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "write", lambda fd, data: 0)
    with pytest.raises(StorageError, match="no space left on device"):
        atomic.atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert list(tmp_path.iterdir()) == []


def test_fsync_failing_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.json"
    target.write_text("old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EIO, "Input/output error")))
    with pytest.raises(StorageError, match=f"input/output error: {target}"):
        atomic.atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_write_files_is_all_or_none(tmp_path, full_disk):
    first, second = tmp_path / "ok" / "mask.png", tmp_path / "full" / "overlay.png"
    for path in (first, second):
        path.parent.mkdir()
        path.write_bytes(b"old")
    full_disk(second.parent)
    with pytest.raises(StorageError, match=f"no space left on device: {second}"):
        atomic.write_files({first: b"new mask", second: b"new overlay"})
    assert first.read_bytes() == b"old" and second.read_bytes() == b"old"
    assert [p.name for p in first.parent.iterdir()] == ["mask.png"]
    assert [p.name for p in second.parent.iterdir()] == ["overlay.png"]
    atomic.write_files({first: b"new mask", tmp_path / "ok" / "b.json": b"{}"})
    assert first.read_bytes() == b"new mask"


def test_atomic_path_turns_os_errors_into_storage_errors(tmp_path):
    target = tmp_path / "a.bin"
    with pytest.raises(StorageError, match=f"no space left on device: {target}"):
        with atomic.atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_writing_onto_a_folder_names_it(tmp_path):
    (tmp_path / "out.png").mkdir()
    with pytest.raises(StorageError, match=f"is a directory: {tmp_path / 'out.png'}"):
        atomic.atomic_write_bytes(tmp_path / "out.png", b"x")
    assert [p.name for p in (tmp_path / "out.png").iterdir()] == []


@pytest.mark.parametrize("error, reason", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_unwritable_folders_name_the_target(tmp_path, failing_folder, error, reason):
    failing_folder(tmp_path, error)
    target = tmp_path / "sub" / "mask.png"
    with pytest.raises(StorageError, match=f"^{reason}: {target}$"):
        atomic.atomic_write_bytes(target, b"x")
    with pytest.raises(StorageError, match=f"^{reason}: {target}$"):
        atomic.check_writable([target])
    with pytest.raises(StorageError, match=f"^{reason}: "):
        atomic.check_writable_dir(tmp_path / "run")


def test_check_writable_creates_nothing(tmp_path):
    atomic.check_writable([tmp_path / "new" / "deeper" / "mask.png", tmp_path / "b.json"])
    atomic.check_writable_dir(tmp_path / "run")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="not a directory"):
        atomic.check_writable([tmp_path / "file" / "mask.png"])
    with pytest.raises(StorageError, match="not a directory"):
        atomic.check_writable_dir(tmp_path / "file")


def test_storage_errors_pass_segprompt_errors_through(tmp_path):
    from segprompt.errors import ImageError

    with pytest.raises(ImageError, match="^as raised$"):
        with storage_errors(tmp_path):
            raise ImageError("as raised")


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_stale_temporaries_of_the_target_are_removed_on_the_next_write(tmp_path):
    target = tmp_path / "mask.png"
    old = time.time() - atomic.STALE_TEMP_SECONDS - 60
    killed = tmp_path / f".mask.{_dead_pid()}-0123abcd.tmp.png"  # a writer killed with kill -9
    running = tmp_path / f".mask.{os.getppid()}-89abcdef.tmp.png"  # a writer still at work
    ancient = tmp_path / f".mask.{os.getppid()}-00000000.tmp.png"  # pid reused, or another machine
    legacy = tmp_path / ".mask.k2j4_x9q.tmp.png"  # the mkstemp names earlier versions wrote
    recent_legacy = tmp_path / ".mask.a1b2c3d4.tmp.png"
    others = [
        tmp_path / f".other.{_dead_pid()}-0123abcd.tmp.png",  # another target's
        tmp_path / f".mask.{_dead_pid()}-0123abcd.tmp.tif",  # another suffix, so another target
        tmp_path / ".mask.png.bak",  # the user's
        tmp_path / "mask.tmp.png",
    ]
    for path in [killed, running, ancient, legacy, recent_legacy, *others]:
        path.write_bytes(b"partial")
    for path in (ancient, legacy):
        os.utime(path, (old, old))
    write_mask(target, np.ones((3, 3), bool))
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"mask.png", running.name, recent_legacy.name, *(p.name for p in others)}
