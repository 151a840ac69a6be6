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

Run: ``.venv/bin/python benchmarks/bench_tuning.py [--full-size]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt.datasets import open_dataset  # noqa: E402
from segprompt.testing import random_clipseg, tiny_clipseg_dir  # noqa: E402
from segprompt.tuning import TrainConfig, TunedCLIPSeg, build_pairs, dice_bce_loss, evaluate, load_base, method_names, train  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full-size", action="store_true", help="full-size parameter counts and step times instead")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train-images", type=int, default=16)
    parser.add_argument("--val-images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="--full-size: timed steps per method")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 waits least on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.full_size:
        full_size_report(args)
    else:
        tiny_benchmark(args)


if __name__ == "__main__":
    main()
