"""How far each paper-protocol switch of PointPrompt and Show-or-Tell moves the numbers against our defaults.

Every table row applies one switch of the paper's protocol to our defaults and
is measured in the same run as the baseline (our protocol) and the whole
paper protocol; cells give the figure and its change against the baseline.

* ``pointprompt``: the classical backend (no weights) on the first
  ``--images`` images of ``grabcut_scribbles`` (the shared set with human
  prompts: its two scribble sets), every strategy. Per row: each strategy's mean
  IoU, the human best-timestep IoU, the human-automatic gap and the
  regression R² (when there are at least 10 images). A strategy knob runs
  only that strategy; the rows that only change how the rows are read (the
  gap's strategies, the regression's features and rows) re-summarise the
  baseline's rows.
* ``finetune``: a tiny random-init SAM (``build_sam("tiny")``) finetuned on
  ``--finetune-strategies`` prompts of those images under our recipe, each
  switch of the paper's recipe, and the paper's recipe; IoU before / after on
  a seeded 10 % test split (the shared data has no ``test.npy``), and our
  recipe's own report (the validation split) beside it.
* ``show-or-tell``: tiny random-init CLIPSeg (text and visual) and PerSAM on a
  tiny random-init SAM (visual) on the first ``--images`` test images of
  ``camvid`` and ``kvasir_seg``, references drawn with ``--seeds``; per row the
  mIoU of each (dataset, method), averaged over the seeds.

Random weights make the absolute figures meaningless; the tables show whether
and how far a switch moves them, on real images and masks. Switches that
cannot act on this data say so (no recorded human scores, no background class,
no ViT-H weights).

Run: ``.venv/bin/python benchmarks/bench_paper_switches.py [--benchmark pointprompt finetune show-or-tell]
[--images N] [--seeds 0 1 2]``; ``--images 1`` checks that it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt.backends import create  # noqa: E402
from segprompt.backends.clipseg import ClipSegSegmenter  # noqa: E402
from segprompt.backends.persam import PerSamSegmenter  # noqa: E402
from segprompt.backends.sam import SamSegmenter  # noqa: E402
from segprompt.backends.sam_arch import build_sam  # noqa: E402
from segprompt.datasets import open_dataset  # noqa: E402
from segprompt.pointprompt import BenchmarkConfig, PointCounts, run_benchmark, summarize_run  # noqa: E402
from segprompt.pointprompt.config import PAPER_STRATEGIES, PAPER_STRATEGY_OPTIONS  # noqa: E402
from segprompt.pointprompt.finetune import PAPER_FINETUNE, FinetuneConfig, finetune_strategies  # noqa: E402
from segprompt.showortell.runner import Method, prepare_dataset, run_show_or_tell  # noqa: E402
from segprompt.showortell.settings import PAPER_DEFAULTS, RunSettings  # noqa: E402
from segprompt.testing import random_clipseg  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
POINTPROMPT_DATA = "grabcut_scribbles"
SHOW_OR_TELL_DATA = ("camvid", "kvasir_seg")


def _delta(value: float | None, base: float | None) -> str:
    if value is None or base is None or np.isnan(value) or np.isnan(base):
        return "n/a"
    return f"{value:.3f} ({value - base:+.3f})"


# ---------------------------------------------------------------- PointPrompt


def _pointprompt_figures(summary: dict[str, Any]) -> dict[str, Any]:
    overall = summary["human_vs_auto"].get("overall") or {}
    regression = summary["regression"]
    return {
        "auto": {name: row["mean_iou"] for name, row in summary["strategies"].items() if row["source"] == "auto"},
        "human": overall.get("human_best", float("nan")),
        "gap": overall.get("gap_percent", float("nan")),
        "r2": regression["linear"]["r2"] if "linear" in regression else float("nan"),
    }


def pointprompt_table(args: argparse.Namespace) -> None:
    dataset = open_dataset(SHARED / POINTPROMPT_DATA)
    segmenter = create("classical")
    root = Path(tempfile.mkdtemp())
    baseline = BenchmarkConfig(counts=PointCounts.parse(args.points), max_images=args.images)
    began = time.perf_counter()

    def run(label: str, config: BenchmarkConfig) -> dict[str, Any]:
        return _pointprompt_figures(run_benchmark(dataset, segmenter, root / label, config))

    def resummarised(config: BenchmarkConfig) -> dict[str, Any]:
        folder = root / f"resummary-{len(list(root.iterdir()))}"
        shutil.copytree(root / "ours", folder)
        return _pointprompt_figures(summarize_run(folder, config))

    base = run("ours", baseline)
    rows: list[tuple[str, dict[str, Any]]] = [("ours (baseline)", base)]
    rows.append(("mask: first of three, always multimask", run("first", dataclasses.replace(baseline, selection="first", multimask=True))))
    for name, options in PAPER_STRATEGY_OPTIONS.items():
        config = dataclasses.replace(baseline, strategies=(name,), human=False, strategy_options={name: options})
        rows.append((f"{name} {dict(options)}", run(f"options-{name}", config)))
    rows.append(("gap over the paper's six strategies", resummarised(dataclasses.replace(baseline, gap_strategies=PAPER_STRATEGIES))))
    rows.append(("regression: the paper's features", resummarised(dataclasses.replace(baseline, features="paper"))))
    rows.append(("regression: human rows only", resummarised(dataclasses.replace(baseline, regression_rows="human"))))
    paper = BenchmarkConfig.for_protocol("paper", counts=baseline.counts, max_images=args.images)
    rows.append(("all switches (the paper protocol)", run("paper", paper)))

    strategies = list(base["auto"])
    print(f"\nPointPrompt, classical backend, {POINTPROMPT_DATA}: {args.images} images, points {args.points}; "
          "cells: figure (change against ours)")  # fmt: skip
    print("| switch (alone) | " + " | ".join(strategies) + " | human best | gap % | R² linear |")
    print("|---|" + "---|" * (len(strategies) + 3))
    for label, figures in rows:
        cells = [_delta(figures["auto"][s], base["auto"][s]) if s in figures["auto"] else "" for s in strategies]
        human = _delta(figures["human"], base["human"]) if figures["human"] == figures["human"] else ""
        gap = f"{figures['gap']:+.1f} ({figures['gap'] - base['gap']:+.1f})" if figures["gap"] == figures["gap"] else ""
        print(f"| {label} | " + " | ".join(cells) + f" | {human} | {gap} | {_delta(figures['r2'], base['r2'])} |")
    print("recorded human scores: no effect here (the shared data records no IoU for its human prompts); "
          f"ViT-H: not with the classical backend. {time.perf_counter() - began:.0f} s")  # fmt: skip


def finetune_table(args: argparse.Namespace) -> None:
    dataset = open_dataset(SHARED / POINTPROMPT_DATA)
    segmenter = SamSegmenter(model=build_sam("tiny", seed=0))
    benchmark = BenchmarkConfig(strategies=tuple(args.finetune_strategies), counts=PointCounts.parse(args.points))
    ours = FinetuneConfig(max_epochs=args.epochs)
    paper = dataclasses.replace(PAPER_FINETUNE, max_epochs=round(args.epochs * PAPER_FINETUNE.max_epochs / 20))
    on_test = dataclasses.replace(ours, test_fraction=PAPER_FINETUNE.test_fraction)
    rows: list[tuple[str, FinetuneConfig]] = [
        ("ours, reported on the validation split", ours),
        ("ours, reported on the seeded 10 % test split (baseline)", on_test),
        ("loss: DiceCE, squared predictions", dataclasses.replace(on_test, loss="dice_ce_squared")),
        ("target: bicubic 0/1", dataclasses.replace(on_test, target="bicubic")),
        ("split: torch seed 42", dataclasses.replace(on_test, split="torch42")),
        (f"stopping: 5 cumulative, {paper.max_epochs} epochs", dataclasses.replace(on_test, stopping="cumulative", patience=5, max_epochs=paper.max_epochs)),
        ("all switches (the paper's recipe)", paper),
    ]  # fmt: skip
    began = time.perf_counter()
    print(f"\nfinetuning a tiny random-init SAM's prompt encoder, {POINTPROMPT_DATA}: {args.images} images; "
          f"our {args.epochs} epochs stand for 20 (the paper's 50 scaled alike); cells: IoU before -> after (gain %)")  # fmt: skip
    print("| recipe | " + " | ".join(args.finetune_strategies) + " | evaluated on |")
    print("|---|" + "---|" * (len(args.finetune_strategies) + 1))
    for label, config in rows:
        results = finetune_strategies(dataset, segmenter, benchmark, config, max_images=args.images)
        cells = [f"{r['iou_before']:.3f} -> {r['iou_after']:.3f} ({r['gain_percent']:+.1f} %)" for r in results.values()]
        where = next(iter(results.values()))
        print(f"| {label} | " + " | ".join(cells) + f" | {where['evaluated_on']} ({where['n_test'] or where['n_validation']}) |")
    print(f"{time.perf_counter() - began:.0f} s")


# ---------------------------------------------------------------- Show-or-Tell


def show_or_tell_table(args: argparse.Namespace) -> None:
    clipseg = ClipSegSegmenter(pretrained=random_clipseg("tiny", seed=0))
    persam = PerSamSegmenter(sam=SamSegmenter(model=build_sam("tiny", seed=0)))
    methods = [Method("clipseg:text", clipseg, "text"), Method("clipseg:visual", clipseg, "visual"),
               Method("persam:visual", persam, "visual")]  # fmt: skip
    datasets = [prepare_dataset(open_dataset(SHARED / name)) for name in SHOW_OR_TELL_DATA]
    root = Path(tempfile.mkdtemp())
    baseline = RunSettings(seeds=tuple(args.seeds), max_images=args.images)
    side = PAPER_DEFAULTS["resize"]
    began = time.perf_counter()

    def run(label: str, settings: RunSettings) -> dict[tuple[str, str], float]:
        summary = run_show_or_tell(datasets, methods, root / label, settings)
        return {(d, m): result["miou"]["mean"] for d, entry in summary["datasets"].items()
                for m, result in entry["methods"].items()}  # fmt: skip

    change: Callable[..., RunSettings] = lambda **values: dataclasses.replace(baseline, **values)  # noqa: E731
    base = run("ours", baseline)
    rows = [
        ("ours (baseline)", base),
        (f"query at {side} (OpenCV bilinear)", run("query", change(resize=side))),
        (f"query and references squashed to {side}", run("squash", change(resize=side, squash_references=True))),
        ("... with PIL's bilinear filter", run("pil", change(resize=side, squash_references=True, antialias=True))),
        ("the reference code's draw", run("draw", change(reference_draw="sequential"))),
        ("background rule", run("background", change(background_rule="paper"))),
        ("PerSAM: mean similarity in its mask", run("persam", change(persam_confidence="similarity"))),
        ("all switches (the paper protocol)", run("paper", RunSettings.for_protocol("paper", seeds=tuple(args.seeds), max_images=args.images))),
    ]  # fmt: skip
    keys = list(base)
    print(f"\nShow-or-Tell, tiny random-init models, {args.images} test images of {', '.join(SHOW_OR_TELL_DATA)}, "
          f"seeds {args.seeds}; cells: mIoU (change against ours)")  # fmt: skip
    print("| switch (alone) | " + " | ".join(f"{d} {m}" for d, m in keys) + " |")
    print("|---|" + "---|" * len(keys))
    for label, figures in rows:
        print(f"| {label} | " + " | ".join(_delta(figures.get(k), base[k]) for k in keys) + " |")
    print("background rule: acts only where the background is a class (VOC, Cityscapes) or the reader ignores it "
          "(ADE20K), none of them here; minimum reference areas: the same under both protocols; ViT-H: no weights "
          f"offline. {time.perf_counter() - began:.0f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", nargs="+", choices=("pointprompt", "finetune", "show-or-tell"),
                        default=["pointprompt", "finetune", "show-or-tell"])  # fmt: skip
    parser.add_argument("--images", type=int, default=12, help="images per dataset (default 12)")
    parser.add_argument("--points", default="paper", help="PointPrompt point counts (default: the paper's table)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Show-or-Tell reference draws")
    parser.add_argument("--finetune-strategies", nargs="+", default=["random", "kmedoids"])
    parser.add_argument("--epochs", type=int, default=20, help="finetuning: our recipe's epochs (the paper's scaled alike)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 waits least on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tables = {"pointprompt": pointprompt_table, "finetune": finetune_table, "show-or-tell": show_or_tell_table}
    for name in args.benchmark:
        tables[name](args)


if __name__ == "__main__":
    main()
