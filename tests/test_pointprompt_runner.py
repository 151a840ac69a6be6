"""The PointPrompt runner end to end on a small plain-layout dataset with a
prompts.json of human clicks, scored by a tiny random-init SAM (real modules)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import data

from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.cache import EmbeddingCache
from segprompt.datasets import open_dataset, write_prompts_json
from segprompt.io import write_image, write_mask
from segprompt.pointprompt import BenchmarkConfig, PointCounts, run_benchmark
from segprompt.pointprompt.results import COLUMNS, RESULTS_FORMAT, read_rows
from segprompt.prompts import Points, Prompt
from segprompt.runstore import DamagedRunFileError, RowLog, RunStoreError

TIMING = {"embed_seconds", "select_seconds", "predict_seconds"}
CONFIG = BenchmarkConfig(strategies=("random", "distance_centre"), counts=PointCounts((2, 1)), seed=3)


@pytest.fixture(scope="module")
def segmenter():
    # One thread: on a shared 2-core machine, torch's thread pool mostly waits for the other processes.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield SamSegmenter(model=build_sam("tiny", seed=0))
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    """Three 64x96 crops of skimage's coins with the bright coins as the object; clicks on two."""
    root = tmp_path_factory.mktemp("coins")
    coins = data.coins()
    human = {}
    for i, (row, col) in enumerate([(20, 30), (100, 150), (200, 200)]):
        crop = coins[row : row + 64, col : col + 96]
        mask = crop > 120
        write_image(root / "images" / f"c{i}.png", crop)
        write_mask(root / "masks" / f"c{i}.png", mask)
        if i < 2:
            ys, xs = np.nonzero(mask)
            first = Prompt(points=Points.from_lists([[xs[0], ys[0]]]))
            second = Prompt(points=Points.from_lists([[xs[0], ys[0]], [xs[-1], ys[-1]]], [[0, 0]] if not mask[0, 0] else []))
            human[f"c{i}"] = {"st1": [first, second]}
    write_prompts_json(root / "prompts.json", human)
    return root


def _comparable(rows):
    """Rows without their timings, NaN as None (NaN != NaN), in a fixed order."""
    cleaned = [
        tuple((k, None if isinstance(v, float) and np.isnan(v) else v) for k, v in sorted(row.items()) if k not in TIMING)
        for row in rows
    ]
    return sorted(cleaned, key=repr)


def test_interrupted_run_resumes_to_the_uninterrupted_result(dataset_dir, segmenter, tmp_path):
    dataset = open_dataset(dataset_dir)
    cache = EmbeddingCache(tmp_path / "cache")
    full = run_benchmark(dataset, segmenter, tmp_path / "full", CONFIG, cache=cache)

    def stop_after_one(done, total, message):
        assert total == 3
        if done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_benchmark(dataset, segmenter, tmp_path / "resumed", CONFIG, cache=cache, progress=stop_after_one)
    partial = read_rows(tmp_path / "resumed" / "results.csv")
    assert {row["image_id"] for row in partial} == {"c0"}
    assert len(partial) == 2 + 2  # two strategies, one timestep each, and the human set's two timesteps
    resumed = run_benchmark(dataset, segmenter, tmp_path / "resumed", CONFIG, cache=cache)

    full_rows = read_rows(tmp_path / "full" / "results.csv")
    resumed_rows = read_rows(tmp_path / "resumed" / "results.csv")
    assert len(full_rows) == len(resumed_rows) == 3 * 2 + 2 * 2
    assert _comparable(full_rows) == _comparable(resumed_rows)
    keys = [(r["image_id"], r["object_id"], r["strategy"], r["timestep"]) for r in resumed_rows]
    assert len(keys) == len(set(keys))
    assert resumed["strategies"] == full["strategies"]

    # Every row is a consistent record: points in (x, y) on the object, IoU in [0, 1].
    masks = {s.id: s.objects()[0].mask for s in dataset}
    for row in full_rows:
        include = np.array(json.loads(row["include_xy"])).reshape(-1, 2)
        if row["source"] == "auto":
            assert masks[row["image_id"]][include[:, 1], include[:, 0]].all()
            assert (row["n_include"], row["n_exclude"]) == (2, 1)
        assert 0.0 <= row["iou"] <= 1.0
    human_rows = [row for row in full_rows if row["strategy"] == "human:st1"]
    assert sorted((r["image_id"], r["timestep"]) for r in human_rows) == [("c0", 0), ("c0", 1), ("c1", 0), ("c1", 1)]

    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["n_images"] == 3 and summary["human_vs_auto"]["overall"]["n_objects"] == 2
    assert summary["timing"]["seconds_per_image"] > 0
    for name in ("iou_by_category.png", "human_vs_auto.png"):
        assert (tmp_path / "full" / name).read_bytes()[:4] == b"\x89PNG"

    # A finished run resumes to itself: nothing is scored twice.
    run_benchmark(dataset, segmenter, tmp_path / "full", CONFIG, cache=cache)
    assert len(read_rows(tmp_path / "full" / "results.csv")) == len(full_rows)

    with pytest.raises(RunStoreError, match="seed"):
        run_benchmark(dataset, segmenter, tmp_path / "full", BenchmarkConfig(strategies=("random",), seed=4))


def test_feature_grid_crops_sam_features_to_the_image(segmenter):
    embedding = segmenter.embed(np.zeros((64, 96, 3), np.uint8))
    grid = embedding.feature_map()
    # 64x96 -> input 683x1024 -> ceil(683 / 16) = 43 rows of 64 cells.
    assert grid.shape == (43, 64, 256) and grid.dtype == np.float32


def test_torn_lines_and_partial_units_are_dropped_on_reopen(tmp_path):
    path = tmp_path / "results.csv"
    results = RowLog(path, RESULTS_FORMAT)
    row = {"dataset": "d", "image_id": "a", "object_id": "a", "category": "c", "source": "auto", "iou": 0.5,
           "round": 0, "recorded_rank": -1}
    results.append([{**row, "strategy": "random", "timestep": 0, "unit_rows": 1}])
    results.append([{**row, "strategy": "error_driven", "timestep": 0, "unit_rows": 3},
                    {**row, "strategy": "error_driven", "timestep": 1, "unit_rows": 3}])
    with path.open("a") as handle:
        handle.write("d,b,b,c,auto,random,0,1,0.")  # killed inside a write
    reopened = RowLog(path, RESULTS_FORMAT)
    assert reopened.done == {("a", "a", "random")}
    assert path.read_text().endswith("\n")
    with path.open("w") as handle:
        handle.write("image_id,iou\n")
    with pytest.raises(DamagedRunFileError, match="columns"):
        RowLog(path, RESULTS_FORMAT)
    assert len(COLUMNS) == len(set(COLUMNS))


def test_human_timesteps_without_points_or_off_the_image_are_skipped():
    from segprompt.pointprompt.runner import _human_steps

    steps = [
        Prompt(),  # the PointPrompt release records timesteps without any point
        Prompt(points=Points.from_lists([[5, 3]])),
        Prompt(points=Points.from_lists([[5, 3]], [[200, 3]])),  # x = 200 is off a 96-wide image
        Prompt(points=Points.from_lists([[5, 3], [90, 60]], [[0, 0]])),
    ]
    kept = _human_steps(steps, (64, 96))
    assert [t for t, _ in kept] == [1, 3]  # timestep indices stay those of the recording
    assert kept[1][1].include.tolist() == [[5.0, 3.0], [90.0, 60.0]] and kept[1][1].exclude.tolist() == [[0.0, 0.0]]


def test_human_counts_give_automatic_prompts_the_human_click_counts(dataset_dir, segmenter, tmp_path):
    config = BenchmarkConfig(strategies=("kmedoids",), counts=PointCounts.parse("human"), max_images=2)
    run_benchmark(open_dataset(dataset_dir), segmenter, tmp_path / "run", config)
    rows = {(r["image_id"], r["strategy"], r["timestep"]): r for r in read_rows(tmp_path / "run" / "results.csv")}
    for image in ("c0", "c1"):  # the human's last timestep: two include clicks (and one exclude unless (0, 0) is object)
        human = rows[(image, "human:st1", 1)]
        auto = rows[(image, "kmedoids", 0)]
        assert (auto["n_include"], auto["n_exclude"]) == (human["n_include"], human["n_exclude"]) and auto["n_include"] == 2
