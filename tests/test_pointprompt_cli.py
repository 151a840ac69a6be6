"""``segprompt bench pointprompt`` through its argparse sub-verb, with a tiny SAM checkpoint file."""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
import torch
from skimage import data

from segprompt.backends.sam_arch import build_sam
from segprompt.cli import bench
from segprompt.errors import SegpromptError
from segprompt.io import write_image, write_mask


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="segprompt")
    bench.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread waits least
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), path)
    yield path
    torch.set_num_threads(threads)


def write_coins(root, count: int) -> None:
    """``count`` (at most 4) 48 x 80 crops of scikit-image's coins under ``root/images``, thresholded under ``root/masks``."""
    coins = data.coins()
    for i, (row, col) in enumerate([(20, 30), (100, 150), (180, 40), (60, 250)][:count]):
        crop = coins[row : row + 48, col : col + 80]
        write_image(root / "images" / f"c{i}.png", crop)
        write_mask(root / "masks" / f"c{i}.png", crop > 120)


def _sam_args(checkpoint) -> list[str]:
    return ["--backend", "sam", "--model-type", "tiny", "--checkpoint", str(checkpoint)]


def test_bench_pointprompt_writes_results_summary_plots_and_finetune(tmp_path, tiny_checkpoint, capsys):
    root = tmp_path / "data"
    write_coins(root, 2)
    out = tmp_path / "run"
    argv = ["bench", "pointprompt", "--data", str(root), "--out", str(out), *_sam_args(tiny_checkpoint),
            "--strategies", "random", "distance_centre", "--points", "2,1", "--finetune", "--epochs", "1"]
    assert _run(argv) == 0
    printed = capsys.readouterr().out
    assert "random" in printed and "s per image" in printed and "finetuned on" in printed
    assert "IoU regression not reported: an R² cross-validated over images needs" in printed  # 2 images
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["image_id"], r["strategy"]) for r in rows) == [
        ("c0", "distance_centre"), ("c0", "random"), ("c1", "distance_centre"), ("c1", "random")
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"random", "distance_centre"}
    assert (out / "iou_by_category.png").is_file() and not (out / "human_vs_auto.png").exists()
    finetune = json.loads((out / "finetune.json").read_text())
    assert finetune["protocol"] == "ours" and finetune["test_split"] == "validation"
    assert finetune["recipe"]["max_epochs"] == 1 and finetune["recipe"]["loss"] == "dice_bce"
    assert set(finetune["strategies"]) == {"random", "distance_centre"}
    result = finetune["strategies"]["random"]
    assert result["n_train"] == 1 and result["n_validation"] == 1 and result["evaluated_on"] == "validation"


TIMING_COLUMNS = ("embed_seconds", "select_seconds", "predict_seconds")


def test_two_workers_write_the_one_process_results(tmp_path, tiny_checkpoint):
    root = tmp_path / "data"
    write_coins(root, 4)
    common = ["bench", "pointprompt", "--data", str(root), *_sam_args(tiny_checkpoint),
              "--strategies", "random", "max_distance", "--points", "2,1"]

    def rows(out):
        with (out / "results.csv").open() as handle:
            return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(handle)]

    assert _run([*common, "--out", str(tmp_path / "one")]) == 0
    assert _run([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    sharded = rows(tmp_path / "two")
    units = [(r["image_id"], r["strategy"], r["timestep"]) for r in sharded]
    assert len(units) == len(set(units)) == 4 * 2, "one row per image and strategy, none twice"
    assert sharded == rows(tmp_path / "one"), "same rows, same order as a one-process run"
    # re-running the finished run on the workers adds nothing
    assert _run([*common, "--out", str(tmp_path / "two"), "--workers", "2"]) == 0
    assert rows(tmp_path / "two") == sharded
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["strategies"]["random"]["n"] == 4


def test_user_mistakes_are_segprompt_errors(tmp_path, tiny_checkpoint):
    base = ["bench", "pointprompt", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    with pytest.raises(SegpromptError, match="needs --backend sam"):
        _run([*base, "--finetune"])
    with pytest.raises(SegpromptError, match="max-images"):
        _run([*base, "--max-images", "0"])
    with pytest.raises(SegpromptError, match="--workers must be at least 1, got 0"):
        _run([*base, "--workers", "0"])
    with pytest.raises(SegpromptError, match="INCLUDE,EXCLUDE"):
        _run([*base, "--points", "many"])


@pytest.mark.shared_data
def test_grabcut_human_scribbles_against_automatic_points(shared_data, tmp_path, tiny_checkpoint):
    out = tmp_path / "grabcut"
    argv = ["bench", "pointprompt", "--data", str(shared_data("grabcut_scribbles")), "--out", str(out),
            *_sam_args(tiny_checkpoint), "--strategies", "kmedoids", "--max-images", "1"]
    assert _run(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"kmedoids", "human:set1", "human:set2"}
    overall = summary["human_vs_auto"]["overall"]
    assert overall["n_objects"] == 1
    assert overall["gap_percent"] == pytest.approx(100 * (overall["human_best"] - overall["auto_mean"]) / overall["auto_mean"])
    assert (out / "human_vs_auto.png").is_file()
    with (out / "results.csv").open() as handle:
        rows = {r["strategy"]: r for r in csv.DictReader(handle)}
    # The human strokes are replayed as (x, y) clicks, counted in the features.
    include = np.array(json.loads(rows["human:set1"]["include_xy"]))
    assert include.ndim == 2 and include.shape[1] == 2 and float(rows["human:set1"]["n_include"]) == len(include)


@pytest.mark.parametrize("name", ["sam2", "sam-hq", "sam3-tracker"])
def test_the_sam_family_runs_pointprompt_from_a_model_folder(tmp_path, name):
    """``--backend sam2 --model-dir DIR`` etc.: every row's IoU is that of the backend's own answer to its points."""
    from segprompt.backends import create
    from segprompt.io import read_image, read_mask
    from segprompt.metrics import iou
    from segprompt.prompts import Points, Prompt
    from segprompt.testing import tiny_sam2_dir, tiny_sam3_dir, tiny_sam_hq_dir

    folder = {"sam2": tiny_sam2_dir, "sam-hq": tiny_sam_hq_dir, "sam3-tracker": tiny_sam3_dir}[name](tmp_path / "model")
    root = tmp_path / "data"
    write_coins(root, 2)
    out = tmp_path / "run"
    argv = ["bench", "pointprompt", "--data", str(root), "--out", str(out), "--backend", name, "--model-dir", str(folder),
            "--strategies", "distance_centre", "random", "--points", "2,1", "--no-cache"]
    assert _run(argv) == 0
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((r["image_id"], r["strategy"]) for r in rows) == [
        ("c0", "distance_centre"), ("c0", "random"), ("c1", "distance_centre"), ("c1", "random")
    ]
    backend = create(name, model_dir=folder)
    for row in rows:
        image = read_image(root / "images" / f"{row['image_id']}.png")
        gt = read_mask(root / "masks" / f"{row['image_id']}.png") > 0
        prompt = Prompt(points=Points.from_lists(json.loads(row["include_xy"]), json.loads(row["exclude_xy"])))
        answer = backend.predict(backend.embed(image), prompt, multimask=False)  # "best" of 3 points: the single mask
        assert float(row["iou"]) == pytest.approx(iou(answer.masks[0], gt), abs=1e-3)  # batched: a pixel may round over
        assert float(row["model_score"]) == pytest.approx(float(answer.scores[0]), abs=1e-5)
    assert json.loads((out / "run.json").read_text())["options"]["source"]["backend_options"]["model_dir"] == str(folder.resolve())


def test_model_flags_a_backend_does_not_use_are_refused(tmp_path):
    base = ["bench", "pointprompt", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    with pytest.raises(SegpromptError, match="--model-dir is not used by the 'sam' backend"):
        _run([*base, "--backend", "sam", "--model-dir", str(tmp_path)])
    with pytest.raises(SegpromptError, match="--checkpoint is not used by the 'sam2' backend"):
        _run([*base, "--backend", "sam2", "--checkpoint", str(tmp_path / "x.pth")])
