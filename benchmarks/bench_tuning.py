"""Prompt-tuning benchmark: every method, a fixed budget, the shared medical data.

Default run (minutes on a CPU): a tiny random-init CLIPSeg
(:func:`segprompt.testing.tiny_clipseg_dir`) trained per method and dataset for
``--epochs`` epochs on at most ``--train-images`` training images, scored on at
most ``--val-images`` held-out images (per-image Dice / IoU averaged over images).
The random backbone makes the absolute Dice meaningless; the table checks that
every method trains end to end on real data and compares budgets and sizes.

``--full-size`` instead reports, for a full-size random-init CLIPSeg
(:func:`segprompt.testing.random_clipseg`: the architecture of
``CIDAS/clipseg-rd64-refined``, ViT-B/16, reduce_dim 64), each method's
trainable parameters and the seconds per training step at 352 x 352.

``--switches`` measures how far each switch of the paper protocol
(:mod:`segprompt.tuning.protocol`), applied alone to our defaults, moves the
numbers: per method, a table of validation Dice, test Dice / IoU / accumulated
Jaccard and the change of test Dice and Jaccard against our defaults measured
in the same run, averaged over ``--seeds``. All rows train on the same
kvasir_seg images (the seeded 80/10/10 split, at most ``--train-images``
training images) for ``--epochs`` epochs (the epochs switch scales it by the
paper's 20 / our 100) at ``--switch-lr`` (the same in both protocols; raised
so that a few epochs move a random-init model at all). The "seed 12345" row
and the baseline's spread over seeds are the noise floor.

Run: ``.venv/bin/python benchmarks/bench_tuning.py [--full-size | --switches]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt.datasets import open_dataset  # noqa: E402
from segprompt.testing import random_clipseg, tiny_clipseg_dir  # noqa: E402
from segprompt.tuning import (  # noqa: E402
    ModelOptions,
    TrainConfig,
    TunedCLIPSeg,
    build_pairs,
    dice_bce_loss,
    evaluate,
    get_protocol,
    load_base,
    load_run_data,
    method_names,
    run_tuning,
    train,
)
from segprompt.tuning.methods import get_method_class  # noqa: E402

DATASETS = ("kvasir_seg", "skin_lesion_isic_ham", "busi")
SHARED = REPO.parent / "shared" / "data"


def _pairs(name: str, split: str, limit: int, size: int):
    dataset = open_dataset(SHARED / name).split(split)
    return build_pairs(dataset.subset(list(dataset.ids)[:limit]), size)


def tiny_benchmark(args: argparse.Namespace) -> None:
    base_dir = tiny_clipseg_dir(Path(tempfile.mkdtemp()) / "tiny_clipseg", seed=0)
    base = load_base(base_dir)
    data = {name: (_pairs(name, "train", args.train_images, args.size), _pairs(name, "val", args.val_images, args.size)) for name in DATASETS}
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=0)
    print(
        f"tiny CLIPSeg, {args.size}x{args.size}, {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
        f"<= {args.train_images} train / {args.val_images} val images per dataset, {torch.get_num_threads()} threads; "
        "cells: best-epoch val Dice / val loss (before training)"
    )
    print("| method | trainable | " + " | ".join(DATASETS) + " | s/step |")
    print("|---|---|" + "---|" * (len(DATASETS) + 1))
    for method in method_names():
        cells, step_seconds, count = [], [], 0
        for name, (train_pairs, val_pairs) in data.items():
            torch.manual_seed(0)
            tuned = TunedCLIPSeg.create(base, str(base_dir), method, image_size=args.size)
            count = tuned.net.method.num_trainable()
            before = evaluate(tuned, val_pairs, args.batch_size)
            with tempfile.TemporaryDirectory() as out:
                result = train(tuned, train_pairs, val_pairs, out, config)
            best = result.history[result.best_epoch - 1]
            cells.append(f"{best['val_dice']:.3f} / {best['val_loss']:.4f} ({before.dice:.3f} / {before.loss:.4f})")
            step_seconds += [row["seconds_per_step"] for row in result.history]
        print(f"| {method} | {count:,} | " + " | ".join(cells) + f" | {np.mean(step_seconds):.3f} |")


def full_size_report(args: argparse.Namespace) -> None:
    base = random_clipseg("full", seed=0)
    images = [np.random.default_rng(i).integers(0, 256, (352, 352, 3), dtype=np.uint8) for i in range(args.batch_size)]
    masks = torch.zeros(args.batch_size, 352, 352)
    masks[:, 100:250, 120:260] = 1
    print(f"full-size CLIPSeg rd64-refined architecture (random init), 352x352, batch {args.batch_size}, {torch.get_num_threads()} threads")
    print("| method | trainable parameters | s / training step |")
    print("|---|---|---|")
    for method in method_names():
        tuned = TunedCLIPSeg.create(base, "random-rd64", method, image_size=352)
        optimizer = torch.optim.AdamW(tuned.net.prompt_parameters(), lr=2e-4, weight_decay=0.0)
        tuned.net.train()
        seconds = []
        for step in range(args.steps + 1):
            began = time.perf_counter()
            loss = dice_bce_loss(tuned.logits(images, ["polyp"] * args.batch_size), masks, torch.ones_like(masks))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step:  # the first step warms up allocators
                seconds.append(time.perf_counter() - began)
        print(f"| {method} | {tuned.net.method.num_trainable():,} | {np.median(seconds):.2f} |")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One run of the switch table: what differs between our protocol and the paper's."""

    refined: bool
    config: TrainConfig
    hyperparameters: dict[str, Any]
    options: ModelOptions
    protocol: str  # which protocol prepares the pairs (resize, full stop)


#: Methods whose prompts enter the vision tower (the "prompts through the decoder" switch applies).
VISUAL_METHODS = ("vpt-shallow", "vpt-deep", "maple", "shared-attn", "shared-sep")
#: The global switches are measured on these (they do not depend on the method's internals).
GLOBAL_SWITCH_METHODS = ("coop", "maple")
PAPER_EPOCH_RATIO = 20 / 100


def _config(**changes: Any) -> Callable[[Spec], Spec]:
    return lambda spec: dataclasses.replace(spec, config=dataclasses.replace(spec.config, **changes))


def _options(**changes: Any) -> Callable[[Spec], Spec]:
    return lambda spec: dataclasses.replace(spec, options=dataclasses.replace(spec.options, **changes))


def _hyperparameter(key: str, value: Any) -> Callable[[Spec], Spec]:
    return lambda spec: dataclasses.replace(spec, hyperparameters={**spec.hyperparameters, key: value})


def _paper_epochs(epochs: int) -> int:
    return max(1, round(epochs * PAPER_EPOCH_RATIO))


def switches(method: str, epochs: int) -> list[tuple[str, Callable[[Spec], Spec]]]:
    """``(label, change)`` for every paper switch that applies to ``method``, one at a time."""
    paper = get_protocol("paper")
    batch = paper.train_config(method)
    rows: list[tuple[str, Callable[[Spec], Spec]]] = []
    if method in GLOBAL_SWITCH_METHODS:
        rows += [
            ("base CIDAS/clipseg-rd64 (plain transposed conv)", lambda spec: dataclasses.replace(spec, refined=False)),
            (f"20 of our 100 epochs ({_paper_epochs(epochs)} of {epochs})", _config(epochs=_paper_epochs(epochs))),
            (f"batch {batch.batch_size} x {batch.accumulate_batches}",
             _config(batch_size=batch.batch_size, accumulate_batches=batch.accumulate_batches)),
            ("checkpoint on val Dice", _config(select_on="val_dice")),
            ("early stop delta 1e-4", _config(early_stop_delta=batch.early_stop_delta)),
            ("augmentation (affine / jitter, p 0.2 each)", _config(augmentation="paper")),
            ("bicubic resize + '.' ending the text", lambda spec: dataclasses.replace(spec, protocol="paper")),
            ("seed 12345 (noise floor)", lambda spec: _config(seed=spec.config.seed + 12345)(spec)),
        ]  # fmt: skip
    rows += [(f"{key}={value}", _hyperparameter(key, value)) for key, value in get_method_class(method).paper_hyperparameters.items()]
    if method in VISUAL_METHODS:
        rows.append(("visual prompts through the decoder", _options(prompts_in_decoder=True)))
    extra = paper.model_options(method).extra_layer
    if extra is not None:
        rows.append((f"extra last layer ({extra})", _options(extra_layer=extra)))
    return rows


def switch_table(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp())
    bases = {flag: load_base(tiny_clipseg_dir(root / f"tiny_{flag}", seed=0, refined=flag)) for flag in (True, False)}
    dataset = open_dataset(SHARED / "kvasir_seg")
    paper, ours = get_protocol("paper"), get_protocol("ours")
    # the same three parts for every row (the paper's split); only the training part is limited
    data = {"ours": load_run_data(dataset, dataclasses.replace(ours, with_test=True), args.size),
            "paper": load_run_data(dataset, paper, args.size)}  # fmt: skip
    for prepared in data.values():
        prepared.train = prepared.train[: args.train_images]
    runs, began = 0, time.perf_counter()

    def measure(method: str, spec: Spec) -> dict[str, float]:
        nonlocal runs
        torch.manual_seed(spec.config.seed)
        tuned = TunedCLIPSeg.create(bases[spec.refined], "tiny", method, args.size, spec.options, **spec.hyperparameters)
        with tempfile.TemporaryDirectory() as out:
            summary = run_tuning(tuned, data[spec.protocol], out, spec.config)
        runs += 1
        return {"val dice": summary["val"]["dice"], **{f"test {k}": summary["test"][k] for k in ("dice", "iou", "jaccard")},
                "kept": summary["best_epoch"], "run": summary["epochs_run"]}  # fmt: skip

    def averaged(method: str, make: Callable[[int], Spec]) -> tuple[dict[str, float], float]:
        figures = [measure(method, make(seed)) for seed in args.seeds]
        spread = max(f["test dice"] for f in figures) - min(f["test dice"] for f in figures)
        return {key: float(np.mean([f[key] for f in figures])) for key in figures[0]}, spread

    print(
        f"tiny random-init CLIPSeg, {args.size}x{args.size}, kvasir_seg: {len(data['ours'].train)} train / "
        f"{len(data['ours'].val)} val / {len(data['ours'].test)} test images (seeded 80/10/10), {args.epochs} epochs, "
        f"lr {args.switch_lr}, seeds {args.seeds}, {torch.get_num_threads()} threads; figures averaged over seeds"
    )
    for method in args.methods:
        def baseline(seed: int, method: str = method) -> Spec:
            config = ours.train_config(method, epochs=args.epochs, lr=args.switch_lr, seed=seed)
            return Spec(True, config, {}, ours.model_options(method), "ours")

        def everything(seed: int, method: str = method) -> Spec:
            config = paper.train_config(method, epochs=_paper_epochs(args.epochs), lr=args.switch_lr, seed=seed + 12345)
            return Spec(False, config, paper.method_hyperparameters(method), paper.model_options(method), "paper")

        reference, spread = averaged(method, baseline)
        print(f"\n{method}: ours gives val Dice {reference['val dice']:.3f}, test Dice {reference['test dice']:.3f} "
              f"(spread over seeds {spread:.3f}), test Jaccard {reference['test jaccard']:.3f}")  # fmt: skip
        print("| switch (alone) | val Dice | test Dice | Δ test Dice | test IoU | test Jaccard (accum.) | Δ Jaccard | epoch kept / run |")
        print("|---|---|---|---|---|---|---|---|")
        rows = [("ours (baseline)", baseline)]
        for label, change in switches(method, args.epochs):
            rows.append((label, lambda seed, change=change, method=method: change(baseline(seed, method))))
        rows.append(("all paper switches (the paper protocol)", everything))
        for label, make in rows:
            f = reference if make is baseline else averaged(method, make)[0]
            dice_change, jaccard_change = f["test dice"] - reference["test dice"], f["test jaccard"] - reference["test jaccard"]
            print(
                f"| {label} | {f['val dice']:.3f} | {f['test dice']:.3f} | {dice_change:+.3f} | {f['test iou']:.3f} "
                f"| {f['test jaccard']:.3f} | {jaccard_change:+.3f} | {f['kept']:.1f} / {f['run']:.1f} |"
            )
    print(f"\n{runs} training runs in {time.perf_counter() - began:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full-size", action="store_true", help="full-size parameter counts and step times instead")
    parser.add_argument("--switches", action="store_true", help="how far each paper-protocol switch moves the numbers")
    parser.add_argument("--methods", nargs="+", default=["coop", "cocoop", "maple", "shared-attn", "shared-sep", "vpt-deep"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--switch-lr", type=float, default=5e-3, help="--switches: learning rate of every row")
    parser.add_argument("--epochs", type=int, help="default 3; --switches: 10")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train-images", type=int, help="default 16; --switches: 24")
    parser.add_argument("--val-images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="--full-size: timed steps per method")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 waits least on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.epochs = args.epochs or (10 if args.switches else 3)
    args.train_images = args.train_images or (24 if args.switches else 16)
    if args.full_size:
        full_size_report(args)
    elif args.switches:
        switch_table(args)
    else:
        tiny_benchmark(args)


if __name__ == "__main__":
    main()
