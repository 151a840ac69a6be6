"""map_images on a real 2-worker Dask LocalCluster; merged rows are unique and match in-process results."""

from __future__ import annotations

import csv
import os
import sys

import cloudpickle
import numpy as np
import pytest
from skimage import data as skdata
from skimage.filters import threshold_otsu

from segprompt.distributed import map_images, merge_rows

# The workers cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def threshold_rows(name: str) -> list[dict]:
    """Per-image rows: the foreground fraction of two global thresholds of a scikit-image sample."""
    image = getattr(skdata, name)()
    gray = image.mean(axis=2) if image.ndim == 3 else image.astype(float)
    return [
        {"image": name, "method": method, "foreground": float((gray > level).mean()), "pid": os.getpid()}
        for method, level in (("otsu", threshold_otsu(gray)), ("mean", gray.mean()))
    ]


def test_two_workers_merge_into_one_csv_without_duplicates(tmp_path):
    items = ["camera", "coins", "moon", "camera", "page"]  # "camera" twice: its rows must appear once
    events = []
    out = tmp_path / "merged.csv"
    rows = map_images(
        threshold_rows, items, n_workers=2, key=("image", "method"), out_csv=out,
        progress=lambda done, total, message: events.append((done, total, message)),
    )
    expected = sorted((r for name in dict.fromkeys(items) for r in threshold_rows(name)), key=lambda r: (r["image"], r["method"]))
    assert [(r["image"], r["method"]) for r in rows] == [(r["image"], r["method"]) for r in expected]
    np.testing.assert_array_equal([r["foreground"] for r in rows], [r["foreground"] for r in expected])
    assert all(r["pid"] != os.getpid() for r in rows), "rows must come from the worker processes"
    assert events[-1] == (5, 5, "dropped 2 duplicate rows")
    assert [e[0] for e in events[:5]] == [1, 2, 3, 4, 5]
    with open(out, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == 8 and len({(r["image"], r["method"]) for r in written}) == 8
    assert [float(r["foreground"]) for r in written] == [r["foreground"] for r in rows]


def test_merge_rows_keeps_first_and_sorts():
    rows, dropped = merge_rows(
        [[{"id": 2, "v": "a"}, {"id": 1, "v": "b"}], [{"id": 2, "v": "c"}]], key=("id",)
    )
    assert rows == [{"id": 1, "v": "b"}, {"id": 2, "v": "a"}] and dropped == 1
    with pytest.raises(KeyError, match="strategy"):
        merge_rows([[{"id": 1}]], key=("id", "strategy"))
