"""``segprompt bench pointprompt``: human vs automatic point prompts (see :mod:`segprompt.pointprompt.runner`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import SegpromptError
from ..pointprompt.counts import PointCounts
from ..pointprompt.runner import PAPER_STRATEGIES, BenchmarkConfig, RunSource, run_benchmark
from ..pointprompt.strategies import strategy_names
from .progress import tqdm_progress
from .weights import local_weights_flags

MULTIMASK = {"auto": None, "always": True, "never": False}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pointprompt",
        help="human vs automatic point prompts (PointPrompt benchmark)",
        description="Score automatic point strategies and the dataset's human prompts with a backend; write "
        "results.csv (one row per image, object, strategy, timestep), summary.json and plots to --out. "
        "Re-running with the same --out resumes.",
    )
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (any layout open_dataset reads)")
    parser.add_argument("--layout", help="dataset layout (detected when omitted)")
    parser.add_argument("--out", required=True, type=Path, help="run folder (created; resumed when it holds a run)")
    parser.add_argument("--backend", default="classical", help="segmenter backend (default: classical)")
    parser.add_argument("--model-type", default="vit_b", help="SAM model type (sam backend)")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint file (sam backend)")
    parser.add_argument("--device", default="cpu", help="torch device (sam backend)")
    parser.add_argument(
        "--strategies", nargs="+", default=["all"], metavar="NAME",
        help=f"strategies, or 'all' (every one) / 'paper' (the paper's: {', '.join(PAPER_STRATEGIES)}); "
        f"known: {', '.join(strategy_names())}",
    )
    parser.add_argument("--points", default="paper", help="'paper' (per-category counts), 'human' (each object's human prompt counts) or 'INCLUDE,EXCLUDE'")
    parser.add_argument("--seed", type=int, default=0, help="seed of every strategy's draws (per image, object and strategy)")
    parser.add_argument("--max-images", type=int, help="score only the first N images")
    parser.add_argument("--multimask", choices=sorted(MULTIMASK), default="auto",
                        help="SAM multimask output (auto: for single-point prompts only)")
    parser.add_argument("--no-human", action="store_true", help="skip the dataset's human prompts")
    parser.add_argument("--no-cache", action="store_true", help="do not use the on-disk embedding cache")
    parser.add_argument("--workers", type=int, default=1,
                        help="shard the images over this many worker processes (local Dask cluster; default 1: none)")
    parser.add_argument("--move-damaged", action="store_true",
                        help="when a file of the --out run is damaged, rename it to NAME.damaged-TIME and start afresh")
    parser.add_argument("--finetune", action="store_true",
                        help="then finetune SAM's prompt encoder on each strategy's prompts (sam backend); "
                        "writes finetune.json with validation IoU before/after")
    parser.add_argument("--finetune-decoder", action="store_true", help="finetune the mask decoder as well")
    parser.add_argument("--epochs", type=int, default=20, help="finetuning epochs at most (early stopping)")
    parser.set_defaults(func=run)


def _strategies(names: list[str]) -> tuple[str, ...]:
    expanded: list[str] = []
    for name in names:
        expanded += strategy_names() if name == "all" else list(PAPER_STRATEGIES) if name == "paper" else [name]
    return tuple(dict.fromkeys(expanded))


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    checkpoint = None if args.checkpoint is None else str(args.checkpoint)
    return {"model_type": args.model_type, "checkpoint": checkpoint, "device": args.device}


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"{'strategy':<24}{'source':<8}{'n':>5}{'mIoU':>8}{'first':>8}{'best':>8}")
    for name, row in summary["strategies"].items():
        print(f"{name:<24}{row['source']:<8}{row['n']:>5}{row['mean_iou']:>8.3f}{row['mean_first']:>8.3f}{row['mean_best']:>8.3f}")
    overall = summary["human_vs_auto"].get("overall") if summary["human_vs_auto"] else None
    if overall:
        print(f"human best {overall['human_best']:.3f} vs automatic mean {overall['auto_mean']:.3f}: "
              f"{overall['gap_percent']:+.1f} % (vs best strategy {overall['auto_best_strategy']}: "
              f"{overall['gap_vs_best_auto_percent']:+.1f} %)")
    regression = summary["regression"]
    if "random_forest" in regression:
        print(f"IoU regression R² (grouped CV): linear {regression['linear']['r2']:.2f}, "
              f"random forest {regression['random_forest']['r2']:.2f}")
    elif "skipped" in regression:
        print(f"IoU regression not reported: {regression['skipped']}")
    if summary["timing"]:
        print(f"{summary['timing']['seconds_per_image']:.2f} s per image over {summary['timing']['n_images']} images")
    print(f"results: {out / 'results.csv'}, summary: {out / 'summary.json'}")


def run(args: argparse.Namespace) -> int:
    if args.max_images is not None and args.max_images < 1:
        raise SegpromptError(f"--max-images must be at least 1, got {args.max_images}")
    if args.workers < 1:
        raise SegpromptError(f"--workers must be at least 1, got {args.workers}")
    if args.finetune and args.backend != "sam":
        raise SegpromptError(f"--finetune trains SAM's prompt encoder; it needs --backend sam, not {args.backend!r}")
    config = BenchmarkConfig(
        strategies=_strategies(args.strategies),
        counts=PointCounts.parse(args.points),
        seed=args.seed,
        human=not args.no_human,
        max_images=args.max_images,
        multimask=MULTIMASK[args.multimask],
    )
    cache_root = None
    if not args.no_cache:
        from ..cache import EmbeddingCache

        cache_root = str(EmbeddingCache().root)
    source = RunSource(str(args.data), args.layout, args.backend, _backend_options(args), cache_root)
    with local_weights_flags(sam="--checkpoint PATH"):
        dataset, segmenter, cache = source.build()
    if "points" not in segmenter.accepts:
        raise SegpromptError(f"backend {args.backend!r} does not take point prompts; this benchmark needs one that does")
    with tqdm_progress("image") as progress:
        summary = run_benchmark(
            dataset, segmenter, args.out, config, cache=cache, progress=progress,
            workers=args.workers, source=source, move_damaged=args.move_damaged,
        )
        _print_summary(summary, args.out)
        if args.finetune:
            _finetune(args, dataset, segmenter, config, cache, progress)
    return 0


def _finetune(args: argparse.Namespace, dataset: Any, segmenter: Any, config: BenchmarkConfig, cache: Any, progress: Any) -> None:
    import json

    from ..io import atomic_write_text
    from ..pointprompt.finetune import FinetuneConfig, finetune_strategies

    results = finetune_strategies(
        dataset, segmenter, config.strategies, config.counts,
        FinetuneConfig(max_epochs=args.epochs, train_decoder=args.finetune_decoder, seed=args.seed),
        max_images=args.max_images, seed=args.seed, cache=cache, progress=progress,
    )
    atomic_write_text(args.out / "finetune.json", json.dumps(results, indent=1))
    print(f"{'finetuned on':<24}{'IoU before':>11}{'after':>8}{'gain %':>9}")
    for name, row in results.items():
        print(f"{name:<24}{row['iou_before']:>11.3f}{row['iou_after']:>8.3f}{row['gain_percent']:>+9.1f}")
