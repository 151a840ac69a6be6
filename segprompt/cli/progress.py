"""The progress callback of every verb: a tqdm bar on a terminal, progress lines elsewhere.

Long jobs (benchmarks, tuning, dataset statistics) run for many minutes, often
with stderr going to a log file or a CI pipe, where tqdm shows nothing. There
:func:`tqdm_progress` writes a plain line instead, every :data:`LOG_INTERVAL_S`
seconds once the job has run that long (so quick commands stay quiet), and a
last one at the end::

    progress: image 12/50 (24%), 3m05s elapsed, ~9m46s left: kvasir_seg/cju0qkwl35piu0993l0dewei2
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Callable, Iterator, TextIO

from ..progress import ProgressCallback

#: Least seconds between two progress lines off a terminal; ``$SEGPROMPT_PROGRESS_INTERVAL`` overrides it.
LOG_INTERVAL_S = 15.0


def log_interval_s() -> float:
    """Seconds between progress lines: ``$SEGPROMPT_PROGRESS_INTERVAL`` or :data:`LOG_INTERVAL_S`."""
    value = os.environ.get("SEGPROMPT_PROGRESS_INTERVAL", "")
    try:
        return max(0.0, float(value)) if value.strip() else LOG_INTERVAL_S
    except ValueError:
        return LOG_INTERVAL_S


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def progress_line(unit: str, done: int, total: int, message: str, elapsed: float) -> str:
    """One log line: ``unit done/total (pct), elapsed, ~left: message`` (no total: the count and elapsed only)."""
    if total > 0:
        line = f"progress: {unit} {done}/{total} ({100 * done / total:.0f}%), {_duration(elapsed)} elapsed"
        if 0 < done < total:
            line += f", ~{_duration(elapsed * (total - done) / done)} left"
    else:
        line = f"progress: {unit} {done}, {_duration(elapsed)} elapsed"
    return f"{line}: {message}" if message else line


@contextlib.contextmanager
def tqdm_progress(
    unit: str = "item",
    stream: TextIO | None = None,
    interval_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[ProgressCallback]:
    """Yield a ``progress(done, total, message)`` callback reporting on ``stream`` (default stderr).

    ``interval_s`` defaults to :func:`log_interval_s`.

    On a terminal it drives a tqdm bar; anywhere else it writes a
    :func:`progress_line` at most every ``interval_s`` seconds, the first one
    ``interval_s`` after the start, and, if it wrote any, the last state at exit.
    """
    stream = sys.stderr if stream is None else stream
    if stream.isatty():
        from tqdm import tqdm

        with tqdm(total=0, unit=unit, file=stream) as bar:

            def update_bar(done: int, total: int, message: str) -> None:
                bar.total = total
                bar.n = done
                bar.set_postfix_str(message)
                bar.refresh()

            yield update_bar
        return

    interval_s = log_interval_s() if interval_s is None else interval_s
    start = clock()
    last_written = start  # the first line waits one interval too
    wrote_any = False
    latest: tuple[int, int, str] | None = None

    def write(done: int, total: int, message: str) -> None:
        nonlocal last_written, wrote_any
        last_written, wrote_any = clock(), True
        print(progress_line(unit, done, total, message, last_written - start), file=stream, flush=True)

    def log_line(done: int, total: int, message: str) -> None:
        nonlocal latest
        latest = (done, total, message)
        if clock() - last_written >= interval_s:
            write(*latest)
            latest = None

    yield log_line
    if wrote_any and latest is not None:
        write(*latest)
