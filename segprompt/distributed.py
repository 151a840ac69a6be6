"""Shard per-image work over worker processes with Dask distributed, merge the rows into one CSV.

A benchmark over many images maps one function over the images; each call
returns the rows of its image (``dict``s, e.g. one per prompt strategy and
timestep). :func:`map_images` runs the calls on a
``dask.distributed.LocalCluster`` (one thread per worker by default, so torch
in each worker does not fight the others for cores), gathers rows as tasks
finish, drops duplicate rows by their key columns (a repeated item or a
retried task yields the same key twice; the first row is kept) and writes one
CSV sorted by key, atomically. ``on_rows`` hands each finished item's new rows
to the caller as they arrive, so a benchmark can append them to its own
crash-safe results file and resume after an interruption.

The function and items must be picklable (module-level function, plain data):
they are shipped to the worker processes.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence, TypeVar

from .atomic import atomic_write_text
from .progress import ProgressCallback, no_progress

T = TypeVar("T")
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


def torch_threads_per_worker(n_workers: int) -> int:
    """Torch intra-op threads for each of ``n_workers`` processes on this machine, so they share the cores."""
    return max(1, (os.cpu_count() or 1) // n_workers)


def map_images(
    fn: Callable[[T], Iterable[Row]],
    items: Sequence[T],
    n_workers: int = 2,
    *,
    key: Sequence[str],
    out_csv: str | os.PathLike | None = None,
    on_rows: Callable[[list[Row]], None] | None = None,
    threads_per_worker: int = 1,
    progress: ProgressCallback = no_progress,
) -> list[Row]:
    """Run ``fn(item)`` for every item on a local Dask cluster; return the merged rows.

    Args:
        fn: per-image function returning that image's rows.
        items: what to map over (e.g. ``(dataset path, sample index)`` pairs).
        n_workers: worker processes of the ``LocalCluster``.
        key: columns that identify a row; duplicates are dropped.
        out_csv: where to write the merged rows (atomically), if given.
        on_rows: called in this process with each finished item's rows, in
            the order ``fn`` returned them, less the rows whose key was already seen.
        threads_per_worker: Dask threads per worker process.
        progress: ``progress(done, len(items), message)`` as tasks finish.

    Returns:
        The unique rows, sorted by ``key``.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    batches: list[Iterable[Row]] = []
    seen: set[tuple] = set()
    with LocalCluster(
        n_workers=n_workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=None
    ) as cluster, Client(cluster) as client:
        futures = client.map(fn, list(items), pure=False)
        for done, future in enumerate(as_completed(futures), start=1):
            batch = list(future.result())
            batches.append(batch)
            if on_rows is not None:
                fresh = []
                for row in batch:
                    row_key = tuple(row.get(name) for name in key)
                    if row_key not in seen:
                        seen.add(row_key)
                        fresh.append(row)
                if fresh:
                    on_rows(fresh)
            progress(done, len(futures), "images done")
    rows, dropped = merge_rows(batches, key)
    if dropped:
        progress(len(items), len(items), f"dropped {dropped} duplicate rows")
    if out_csv is not None:
        write_rows_csv(Path(out_csv), rows)
    return rows


__all__ = ["map_images", "merge_rows", "torch_threads_per_worker", "write_rows_csv"]
