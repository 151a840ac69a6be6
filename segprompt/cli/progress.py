"""A tqdm bar behind the headless progress callback, for every verb."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from ..progress import ProgressCallback


@contextlib.contextmanager
def tqdm_progress(unit: str = "item") -> Iterator[ProgressCallback]:
    """Yield a ``progress(done, total, message)`` callback that drives a tqdm bar on stderr.

    The bar is shown only on a terminal, so logs and tests stay clean.
    """
    from tqdm import tqdm

    with tqdm(total=0, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty()) as bar:

        def progress(done: int, total: int, message: str) -> None:
            bar.total = total
            bar.n = done
            bar.set_postfix_str(message)
            bar.refresh()

        yield progress
