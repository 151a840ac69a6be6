"""The progress-callback convention shared by every long job (embedding, downloads, datasets, runs, tuning).

A job reports ``progress(done, total, message)``; ``total`` may be 0 when
unknown. The CLI drives a tqdm bar and napari its progress bar from the same
callbacks, so the core never depends on either.
"""

from __future__ import annotations

from typing import Callable

#: ``progress(done, total, message)``; ``total`` may be 0 when unknown.
ProgressCallback = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str) -> None:
    """The default progress callback: report nothing."""


__all__ = ["ProgressCallback", "no_progress"]
