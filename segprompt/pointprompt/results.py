"""``results.csv``: one row per (image, object, strategy, timestep), crash-safe.

Rows of one unit — one (image, object, strategy) — are written with a single
``write``, then flushed and ``fsync``-ed, so a killed run loses at most the
unit in progress. On reopening, a torn last line (the process died inside the
write) is cut off, the rows of a unit with fewer rows than its ``unit_rows``
are dropped (atomic rewrite), and :meth:`ResultsFile.done_units` tells the runner which
units to skip, so a resumed run neither loses nor duplicates rows.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import SegpromptError
from ..io import atomic_write_text
from .features import FEATURES

UNIT_KEY: tuple[str, ...] = ("image_id", "object_id", "strategy")
COLUMNS: tuple[str, ...] = (
    "dataset",
    "image_id",
    "object_id",
    "category",
    "source",
    "strategy",
    "timestep",
    "unit_rows",
    "iou",
    "model_score",
    "embed_seconds",
    "select_seconds",
    "predict_seconds",
    "include_xy",
    "exclude_xy",
    *FEATURES,
)
TEXT_COLUMNS = frozenset({"dataset", "image_id", "object_id", "category", "source", "strategy", "include_xy", "exclude_xy"})


class ResultsError(SegpromptError, ValueError):
    """A results file that cannot be resumed (another format or a run with other settings)."""


def _format(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


class ResultsFile:
    """Append-only CSV of benchmark rows at ``path`` (created with a header when absent)."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str] = COLUMNS) -> None:
        self.path = Path(path)
        self.columns = tuple(columns)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._write_text(",".join(self.columns) + "\n", mode="w")
            return
        self._cut_torn_tail()
        with self.path.open(newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), [])
        if tuple(header) != self.columns:
            raise ResultsError(
                f"{self.path}: its columns differ from this version's results format; write to another --out folder"
            )
        self._drop_partial_units()

    def _lines(self) -> tuple[list[str], list[list[str]]]:
        with self.path.open(newline="", encoding="utf-8") as handle:
            lines = list(csv.reader(handle))
        return lines[0], lines[1:]

    def _rewrite(self, header: list[str], body: list[list[str]]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows([header, *body])
        atomic_write_text(self.path, buffer.getvalue())

    def _drop_partial_units(self) -> None:
        header, body = self._lines()
        key_index = [header.index(key) for key in UNIT_KEY]
        size_index = header.index("unit_rows")
        counts: dict[tuple[str, ...], int] = {}
        for line in body:
            key = tuple(line[i] for i in key_index)
            counts[key] = counts.get(key, 0) + 1
        complete = [line for line in body if counts[tuple(line[i] for i in key_index)] == int(line[size_index])]
        if len(complete) != len(body):
            self._rewrite(header, complete)

    def sort_by_image(self, image_ids: Sequence[str]) -> None:
        """Rewrite the file atomically with the images in ``image_ids`` order, each image's rows in their order.

        Workers that score images in parallel finish in any order; this puts
        their rows where a one-process run would have written them.
        """
        header, body = self._lines()
        position = {image_id: index for index, image_id in enumerate(image_ids)}
        column = header.index("image_id")
        ordered = sorted(body, key=lambda line: position.get(line[column], len(position)))
        if ordered != body:
            self._rewrite(header, ordered)

    def _cut_torn_tail(self) -> None:
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                os.fsync(handle.fileno())

    def _write_text(self, text: str, mode: str = "a") -> None:
        with self.path.open(mode, newline="", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def rows(self) -> list[dict[str, Any]]:
        """Every row (see :func:`read_rows`)."""
        return read_rows(self.path)

    def done_units(self) -> set[tuple[str, ...]]:
        """``(image_id, object_id, strategy)`` of every unit already written."""
        return {tuple(row[key] for key in UNIT_KEY) for row in self.rows()}

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        """Write the rows of one unit durably (one write, flush, fsync)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            writer.writerow([_format(row.get(column, "")) for column in self.columns])
        if buffer.tell():
            self._write_text(buffer.getvalue())


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a results CSV, numbers as float (empty cells as NaN), ``timestep`` and ``unit_rows`` as int."""
    out = []
    with Path(path).open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                if key in TEXT_COLUMNS:
                    parsed[key] = value
                elif key in ("timestep", "unit_rows"):
                    parsed[key] = int(value)
                else:
                    parsed[key] = float(value) if value != "" else float("nan")
            out.append(parsed)
    return out
