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


def worker_threads_and_payload(index: int) -> dict:
    """What a worker process runs with, and a payload big enough that holding every result would show."""
    import cv2
    import torch

    return {"index": index, "cv2": cv2.getNumThreads(), "torch": torch.get_num_threads(), "pid": os.getpid(),
            "payload": np.full(200_000, index, np.float64)}


def test_stream_results_caps_worker_threads_at_start_up_and_keeps_no_result():
    import gc
    import weakref

    from segprompt.distributed import stream_results

    alive = []
    seen = []

    def on_result(result):
        gc.collect()
        # every earlier result has been released once its callback returned: nothing accumulates
        seen.append(sum(ref() is not None for ref in alive))
        alive.append(weakref.ref(result["payload"]))
        assert (result["cv2"], result["torch"]) == (3, 3), result  # dask starts workers at torch 1, OpenCV one per core
        assert result["pid"] != os.getpid()

    stream_results(worker_threads_and_payload, list(range(6)), n_workers=2, on_result=on_result, compute_threads=3)
    assert seen == [0] * 6


def test_available_cpus_follows_the_cpu_affinity():
    import subprocess

    from segprompt.distributed import available_cpus

    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    assert available_cpus() <= len(os.sched_getaffinity(0))
    one_cpu = min(os.sched_getaffinity(0))
    code = (f"import os; os.sched_setaffinity(0, {{{one_cpu}}}); "
            "from segprompt.distributed import available_cpus, worker_threads; print(available_cpus(), worker_threads(2))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["1", "1"], "os.cpu_count() would say every core of the machine"


def test_cgroup_cpu_quota_v2_and_v1(tmp_path):
    from segprompt.distributed import cgroup_cpu_limit

    v2 = tmp_path / "v2"
    (v2 / "jobs" / "me").mkdir(parents=True)
    (v2 / "jobs" / "me" / "cpu.max").write_text("max 100000\n")
    (v2 / "jobs" / "cpu.max").write_text("150000 100000\n")  # the parent's quota binds the child
    membership = tmp_path / "cgroup"
    membership.write_text("0::/jobs/me\n")
    assert cgroup_cpu_limit(v2, membership) == 1.5
    (v2 / "jobs" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(v2, membership) is None

    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct" / "slurm").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_period_us").write_text("100000\n")
    membership.write_text("4:memory:/slurm\n3:cpu,cpuacct:/slurm\n")
    assert cgroup_cpu_limit(v1, membership) == 3.0
    (v1 / "cpu,cpuacct" / "slurm" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(v1, membership) is None
