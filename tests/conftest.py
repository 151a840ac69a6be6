"""Shared fixtures.

Tiny random-init models (``tiny_sam_model``, ``tiny_sam``, ``tiny_clipseg_folder``,
``tiny_clipseg``) are module-scoped: built once per test module, as cheap
as a test file building its own, never shared across modules. Heavy imports
happen inside the fixtures so that tests without models do not pay for torch.

``shared_data(name)`` returns ``../shared/data/<name>`` (or ``$SEGPROMPT_SHARED_DATA/<name>``).
Where the folder is absent the test is skipped with the reason, except under
``CI=true``, where the real data is part of the contract and its absence fails
the test. The ``display`` fixture does the same for napari's X display.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Fall back to Qt's offscreen platform only when there is no X display.

    Runs after pytest-xvfb, which provides ``DISPLAY`` where Xvfb is installed;
    the offscreen platform has no OpenGL, so napari's canvas would render blank.
    """
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEGPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def _skip_or_fail_under_ci(reason: str, required: str) -> None:
    """Skip with ``reason``; under ``CI=true`` fail instead, because there ``required`` is part of the contract."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; under CI=true {required} is required", pytrace=False)
    pytest.skip(reason)


def require_shared(name: str = "") -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        _skip_or_fail_under_ci(f"real data folder {path} is absent (see README: shared data)", "the shared data")
    return path


def require_display() -> None:
    """Skip (fail under ``CI=true``) unless there is an X display napari can draw on.

    napari needs OpenGL to add any layer and Qt's offscreen platform has none.
    pytest-xvfb starts Xvfb when it is installed (README: ``apt-get install xvfb``).
    """
    if os.environ.get("QT_QPA_PLATFORM") == "offscreen" or not os.environ.get("DISPLAY"):
        _skip_or_fail_under_ci(
            "no X display: napari needs OpenGL and Qt's offscreen platform has none; install Xvfb "
            "(`sudo apt-get install xvfb`, pytest-xvfb then starts it) or run under `xvfb-run -a`",
            "a display",
        )


@pytest.fixture
def display():
    """A test that draws with napari: skipped without an X display, a failure under ``CI=true``."""
    require_display()


@pytest.fixture
def shared_data():
    """``shared_data("kvasir_seg")`` -> Path, skipping (or failing under CI) when absent."""
    return require_shared


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache from a test."""
    monkeypatch.setenv("SEGPROMPT_CACHE", str(tmp_path_factory.mktemp("segprompt_cache")))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Pin torch to one thread for a module (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``).

    The tiny models' tensors are small: on a busy shared machine extra threads
    only add waiting. The previous thread count is restored afterwards.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_sam_model():
    """A random-init tiny SAM (``build_sam("tiny", seed=0)``), built once per module."""
    from segprompt.backends.sam_arch import build_sam

    return build_sam("tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_sam(tiny_sam_model):
    """A :class:`~segprompt.backends.sam.SamSegmenter` around :func:`tiny_sam_model`, one per module."""
    from segprompt.backends.sam import SamSegmenter

    return SamSegmenter(model=tiny_sam_model)


@pytest.fixture(scope="module")
def tiny_clipseg_folder(tmp_path_factory):
    """A folder holding the random-init tiny CLIPSeg (seed 0) saved like a hub snapshot, one per module."""
    from segprompt.testing import tiny_clipseg_dir

    return tiny_clipseg_dir(tmp_path_factory.mktemp("tiny_clipseg"), seed=0)


@pytest.fixture(scope="module")
def tiny_clipseg_base(tiny_clipseg_folder):
    """:func:`tiny_clipseg_folder` loaded as a ``PretrainedModel`` (model + processor), the base prompt tuning wraps."""
    from segprompt.tuning import load_base

    return load_base(tiny_clipseg_folder)


@pytest.fixture(scope="module")
def clipseg_batch(tiny_clipseg_base):
    """``(pixels (2, 3, 64, 64), input_ids, attention_mask)``: random pixels and two texts of different lengths."""
    import torch

    tokens = tiny_clipseg_base.processor.tokenizer(["polyp", "a skin lesion on the arm"], padding=True, return_tensors="pt")
    torch.manual_seed(1)
    return torch.randn(2, 3, 64, 64), tokens.input_ids, tokens.attention_mask


@pytest.fixture(scope="module")
def tiny_clipseg(tiny_clipseg_folder):
    """The ``"clipseg"`` backend loaded from :func:`tiny_clipseg_folder`, one per module."""
    from segprompt.backends import create

    return create("clipseg", model_dir=tiny_clipseg_folder)


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(folder, free_bytes=0)``: from now on the disk under ``folder`` holds only ``free_bytes`` more.

    Simulates what the kernel does on a full disk: ``os.write`` on a file under
    ``folder`` stores what still fits (a short write) and then fails with
    ``ENOSPC``. Other files are written normally. Reads the file behind a
    descriptor from ``/proc/self/fd`` (Linux; skipped elsewhere).
    """
    import errno

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("simulating a full disk needs /proc/self/fd (Linux)")
    real_write = os.write

    def install(folder: str | os.PathLike, free_bytes: int = 0) -> None:
        prefix = str(Path(folder).resolve()) + os.sep
        free = [free_bytes]

        def write(fd: int, data) -> int:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if not target.startswith(prefix):
                return real_write(fd, data)
            count = min(len(memoryview(data).cast("B")), free[0])
            if count == 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            free[0] -= count
            return real_write(fd, memoryview(data).cast("B")[:count])

        monkeypatch.setattr(os, "write", write)

    return install


@pytest.fixture
def failing_folder(monkeypatch):
    """``failing_folder(folder, errno.EROFS)``: creating a file under ``folder`` fails with that error.

    Simulates a read-only mount (``EROFS``) or a folder without write permission
    (``EACCES``) for processes running as root, for whom permission bits do not
    apply. Patches ``os.open`` (what segprompt's writers create files with) and
    ``os.mkdir``.
    """
    real_open, real_mkdir = os.open, os.mkdir

    def install(folder: str | os.PathLike, error: int) -> None:
        prefix = str(Path(folder).resolve()) + os.sep

        def inside(path) -> bool:
            return str(Path(path).resolve()).startswith(prefix)

        def fake_open(path, flags, *args, **kwargs):
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
                raise OSError(error, os.strerror(error), str(path))
            return real_open(path, flags, *args, **kwargs)

        def fake_mkdir(path, *args, **kwargs):
            if inside(path):
                raise OSError(error, os.strerror(error), str(path))
            return real_mkdir(path, *args, **kwargs)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)

    return install
