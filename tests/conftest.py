"""Shared fixtures.

``shared_data(name)`` returns ``../shared/data/<name>`` (or ``$SEGPROMPT_SHARED_DATA/<name>``).
Where the folder is absent the test is skipped with the reason, except under
``CI=true``, where the real data is part of the contract and its absence fails
the test.
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


def require_shared(name: str = "") -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        reason = f"real data folder {path} is absent (see README: shared data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI=true the shared data is required")
        pytest.skip(reason)
    return path


@pytest.fixture
def shared_data():
    """``shared_data("kvasir_seg")`` -> Path, skipping (or failing under CI) when absent."""
    return require_shared


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's real cache from a test."""
    monkeypatch.setenv("SEGPROMPT_CACHE", str(tmp_path_factory.mktemp("segprompt_cache")))
