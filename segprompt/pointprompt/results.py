"""``results.csv``: one row per (image, object, strategy, timestep).

The rows of one unit — one (image, object, strategy), ``unit_rows`` rows —
are written together by the run store (:mod:`segprompt.runstore`), which
makes them durable, cuts off a unit torn by a kill, and skips units already
written, so a resumed run neither loses nor duplicates rows.
"""

from __future__ import annotations

import os
from typing import Any

from ..runstore import CsvRows
from ..runstore import read_rows as _read_log
from .features import FEATURES
from .paper_features import PAPER_FEATURES

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
    "round",
    "recorded_rank",
    "iou",
    "model_score",
    "embed_seconds",
    "select_seconds",
    "predict_seconds",
    "include_xy",
    "exclude_xy",
    *FEATURES,
    *PAPER_FEATURES,
)
TEXT_COLUMNS = frozenset({"dataset", "image_id", "object_id", "category", "source", "strategy", "include_xy", "exclude_xy"})
#: How results.csv is written and read: numbers as float (empty cells as NaN); ``timestep``, ``unit_rows``,
#: ``round`` (the dataset's prompting round of a human timestep, else 0) and ``recorded_rank`` (the timestep's
#: place in the dataset's recorded sort when its IoU is the recorded one, else -1) as int.
RESULTS_FORMAT = CsvRows(
    COLUMNS, UNIT_KEY, TEXT_COLUMNS, int_columns=frozenset({"timestep", "unit_rows", "round", "recorded_rank"}),
    size_column="unit_rows",
)
RESULTS_FILE = "results.csv"


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every row of a results CSV (see :data:`RESULTS_FORMAT`); a bad line is a
    :class:`~segprompt.runstore.DamagedRunFileError` naming it."""
    return list(_read_log(path, RESULTS_FORMAT))
