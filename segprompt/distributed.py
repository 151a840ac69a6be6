"""Shard per-image work over worker processes with Dask distributed.

A benchmark over many images maps one function over the images.
:func:`stream_results` runs the calls on a ``dask.distributed.LocalCluster``
and hands each result to a callback as its task finishes, keeping none of
them: a benchmark appends rows to its crash-safe run store
(:mod:`segprompt.runstore`) as they arrive, so memory does not grow with the
run. Each worker process caps its torch and OpenCV threads once, at start-up
(``compute_threads``; :func:`worker_threads` splits this machine's usable
cores between the workers), so the workers do not oversubscribe the cores.

:func:`map_images` is the collecting form for small jobs: it gathers every
row, drops duplicate rows by their key columns (a repeated item or a retried
task yields the same key twice; the first row is kept) and returns them, and
optionally writes them to one CSV sorted by key, atomically.

The function and items must be picklable (module-level function, plain data):
they are shipped to the worker processes.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from distributed.diagnostics.plugin import WorkerPlugin

from .atomic import atomic_write_text
from .progress import ProgressCallback, no_progress

T = TypeVar("T")
R = TypeVar("R")
Row = dict[str, Any]


def merge_rows(batches: Iterable[Iterable[Row]], key: Sequence[str]) -> tuple[list[Row], int]:
    """Concatenate row batches, keep the first row of each key, sort by key.

    Returns:
        ``(rows, n_duplicates_dropped)``.

    Raises:
        KeyError: a row lacks one of the ``key`` columns (names it).
    """
    seen: dict[tuple, Row] = {}
    dropped = 0
    for batch in batches:
        for row in batch:
            missing = [name for name in key if name not in row]
            if missing:
                raise KeyError(f"row {row!r:.120} lacks key column(s) {missing}")
            row_key = tuple(row[name] for name in key)
            if row_key in seen:
                dropped += 1
            else:
                seen[row_key] = row
    ordered = sorted(seen.items(), key=lambda item: tuple(str(v) for v in item[0]))
    return [row for _, row in ordered], dropped


def write_rows_csv(path: str | os.PathLike, rows: Sequence[Row]) -> None:
    """Write rows atomically; the columns are every row's keys in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None


def cgroup_cpu_limit(cgroup_root: Path = Path("/sys/fs/cgroup"), self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs this process's cgroup may use (its CPU quota / period), or ``None`` when unlimited or unknown.

    Reads cgroup v2's ``cpu.max`` (``"QUOTA PERIOD"`` or ``"max PERIOD"``) of
    this process's group and of every group above it, else cgroup v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``; the tightest limit wins.
    """
    membership = _read_text(self_cgroup) or ""
    limits: list[float] = []
    for line in membership.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, group = parts
        relative = Path(group.strip().lstrip("/"))
        if controllers == "":  # v2 unified hierarchy
            for folder in [cgroup_root / relative, *[cgroup_root / p for p in relative.parents]]:
                fields = (_read_text(folder / "cpu.max") or "").split()
                if len(fields) == 2 and fields[0] != "max":
                    limits.append(int(fields[0]) / int(fields[1]))
        elif "cpu" in controllers.split(","):
            for base in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
                folder = base / relative
                quota = (_read_text(folder / "cpu.cfs_quota_us") or "").strip()
                period = (_read_text(folder / "cpu.cfs_period_us") or "").strip()
                if quota.lstrip("-").isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
                    limits.append(int(quota) / int(period))
                    break
    return min(limits) if limits else None


def available_cpus() -> int:
    """CPUs this process may run on: its CPU affinity, capped by its cgroup's CPU quota (rounded up)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        count = min(count, max(1, math.ceil(limit)))
    return max(1, count)


def worker_threads(n_workers: int) -> int:
    """Torch / OpenCV threads for each of ``n_workers`` processes, so that together they fill the usable cores."""
    return max(1, available_cpus() // n_workers)


def _cap_compute_threads(threads: int) -> None:
    import cv2
    import torch

    cv2.setNumThreads(threads)
    torch.set_num_threads(threads)


class ComputeThreads(WorkerPlugin):
    """Caps a worker process's torch and OpenCV threads once, when the worker starts (never around calls)."""

    idempotent = True
    name = "segprompt-compute-threads"

    def __init__(self, threads: int) -> None:
        self.threads = threads

    def setup(self, worker: Any) -> None:
        _cap_compute_threads(self.threads)


def stream_results(
    fn: Callable[[T], R],
    items: Sequence[T],
    n_workers: int = 2,
    *,
    on_result: Callable[[R], None],
    compute_threads: int | None = None,
    threads_per_worker: int = 1,
    progress: ProgressCallback = no_progress,
) -> None:
    """Run ``fn(item)`` for every item on a local Dask cluster, handing each result to ``on_result`` as it finishes.

    Results are not kept: each is released on the workers and here once
    ``on_result`` returns, so memory holds the results in flight only.

    Args:
        fn: per-item function (picklable).
        items: what to map over.
        n_workers: worker processes of the ``LocalCluster``.
        on_result: called in this process with each result, in completion order;
            an exception it raises stops the run.
        compute_threads: torch and OpenCV threads per worker process, set once
            at worker start-up (default :func:`worker_threads`).
        threads_per_worker: Dask threads per worker process.
        progress: ``progress(done, len(items), message)`` as tasks finish.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    threads = worker_threads(n_workers) if compute_threads is None else compute_threads
    with LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        client.register_plugin(ComputeThreads(threads))
        pending = as_completed(client.map(fn, list(items), pure=False))
        for done, future in enumerate(pending, start=1):
            result = future.result()
            future.release()
            on_result(result)
            del result, future
            progress(done, len(items), "images done")


def map_images(
    fn: Callable[[T], Iterable[Row]],
    items: Sequence[T],
    n_workers: int = 2,
    *,
    key: Sequence[str],
    out_csv: str | os.PathLike | None = None,
    compute_threads: int | None = None,
    threads_per_worker: int = 1,
    progress: ProgressCallback = no_progress,
) -> list[Row]:
    """Run ``fn(item)`` for every item on a local Dask cluster; return the merged rows (all held in memory).

    Args:
        fn: per-image function returning that image's rows.
        items: what to map over (e.g. ``(dataset path, sample index)`` pairs).
        n_workers: worker processes of the ``LocalCluster``.
        key: columns that identify a row; duplicates are dropped.
        out_csv: where to write the merged rows (atomically), if given.
        compute_threads, threads_per_worker: as for :func:`stream_results`.
        progress: ``progress(done, len(items), message)`` as tasks finish.

    Returns:
        The unique rows, sorted by ``key``.
    """
    batches: list[list[Row]] = []
    stream_results(
        fn, items, n_workers,
        on_result=lambda rows: batches.append(list(rows)),
        compute_threads=compute_threads, threads_per_worker=threads_per_worker, progress=progress,
    )
    rows, dropped = merge_rows(batches, key)
    if dropped:
        progress(len(items), len(items), f"dropped {dropped} duplicate rows")
    if out_csv is not None:
        write_rows_csv(Path(out_csv), rows)
    return rows


__all__ = [
    "available_cpus", "cgroup_cpu_limit", "map_images", "merge_rows", "stream_results", "worker_threads", "write_rows_csv",
]
