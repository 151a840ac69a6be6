"""The test suite's own contract: what is skipped on a user's machine is a failure under ``CI=true``."""

import pytest

from conftest import require_display, require_shared


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_a_missing_display_skips_locally_and_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(outcome, match="Xvfb"):
        require_display()
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # a display Qt is told not to use is no display
    with pytest.raises(outcome, match="offscreen"):
        require_display()


def test_a_display_is_enough(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    require_display()


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("", pytest.skip.Exception)])
def test_missing_shared_data_skips_locally_and_fails_under_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="no_such_dataset"):
        require_shared("no_such_dataset")
