"""``segprompt bench pointprompt``: human vs automatic point prompts (see :mod:`segprompt.pointprompt.runner`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import SegpromptError
from ..pointprompt.config import (
    PAPER_MODEL_TYPE,
    PAPER_STRATEGIES,
    PAPER_STRATEGY_OPTIONS,
    PROTOCOLS,
    SELECTIONS,
    BenchmarkConfig,
)
from ..pointprompt.counts import PointCounts
from ..pointprompt.runner import RunSource, run_benchmark
from ..pointprompt.strategies import strategy_names
from .annotate import check_options
from .device_flags import add_device_arguments, check_device, set_memory_advice
from .progress import tqdm_progress
from .weights import local_weights_flags

MULTIMASK = {"auto": None, "always": True, "never": False}
#: CLI options that map to BenchmarkConfig fields: only passed when given, else the protocol's value.
_CONFIG_OPTIONS = {"mask_selection": "selection", "human_scores": "human_scores", "features": "features",
                   "regression_rows": "regression_rows"}  # fmt: skip


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
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="ours",
        help="defaults: ours, or the PointPrompt reference code's (first of SAM's three masks, ViT-H, the paper's "
        "strategy knobs and six strategies in the human-automatic gap, the release's recorded human scores, its "
        "feature set and regression on human rows, its finetuning recipe); see the README table",
    )  # fmt: skip
    parser.add_argument("--backend", default="classical",
                        help="segmenter backend taking points: classical, sam, sam2, sam-hq, edgetam, sam3-tracker, "
                        "... (default: classical)")
    parser.add_argument("--model-type", default=None, help=f"SAM model type (sam backend; default vit_b, paper: {PAPER_MODEL_TYPE})")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint file (sam backend)")
    parser.add_argument("--model-dir", type=Path, metavar="DIR",
                        help="local model folder of a transformers backend (sam2, sam-hq, edgetam, sam3-tracker)")
    parser.add_argument("--variant", metavar="SIZE", help="released size of sam2 / sam-hq without --model-dir")
    add_device_arguments(parser)
    parser.add_argument(
        "--strategies", nargs="+", default=["all"], metavar="NAME",
        help=f"strategies, or 'all' (every one) / 'paper' (the paper's: {', '.join(PAPER_STRATEGIES)}); "
        f"known: {', '.join(strategy_names())}",
    )
    parser.add_argument("--points", default="paper", help="'paper' (per-category counts), 'human' (each object's human prompt counts) or 'INCLUDE,EXCLUDE'")
    parser.add_argument("--seed", type=int, default=0, help="seed of every strategy's draws (per image, object and strategy)")
    parser.add_argument("--max-images", type=int, help="score only the first N images")
    parser.add_argument("--multimask", choices=sorted(MULTIMASK), default=None,
                        help="SAM multimask output for --mask-selection best (default auto: for single-point prompts only)")
    parser.add_argument("--mask-selection", choices=SELECTIONS, default=None,
                        help="which mask is scored: best (highest predicted IoU; default), first (the first of SAM's "
                        "three, the paper's), single (SAM's single-mask output)")  # fmt: skip
    parser.add_argument("--strategy-options", choices=PROTOCOLS, default=None,
                        help="strategy knobs: ours (default) or the reference code's: "
                        + "; ".join(f"{name} {dict(options)}" for name, options in PAPER_STRATEGY_OPTIONS.items()))
    parser.add_argument("--human-scores", choices=("model", "recorded"), default=None,
                        help="human prompts' IoU: scored by the model (default) or as the dataset records it (the "
                        "PointPrompt release's scores / sorts / rounds; paper default)")  # fmt: skip
    parser.add_argument("--features", choices=PROTOCOLS, default=None, help="feature set of the IoU regression (default ours)")
    parser.add_argument("--regression-rows", choices=("all", "human"), default=None,
                        help="rows the IoU regression uses (default all; paper: human)")
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
    parser.add_argument("--epochs", type=int, default=None, help="finetuning epochs at most (default 20; paper: 50)")
    parser.add_argument("--test-list", type=Path, metavar="NPY",
                        help="finetuning: report IoU on these images, the reference code's 'finetuning SAM/test.npy' "
                        "(default: the validation split; paper: a seeded 10%% of the images)")  # fmt: skip
    set_memory_advice(parser, "use --precision bf16 or fewer --workers")
    parser.set_defaults(func=run)


def _strategies(names: list[str]) -> tuple[str, ...]:
    expanded: list[str] = []
    for name in names:
        expanded += strategy_names() if name == "all" else list(PAPER_STRATEGIES) if name == "paper" else [name]
    return tuple(dict.fromkeys(expanded))


def _backend_options(args: argparse.Namespace) -> dict[str, Any]:
    """The backend's options from the flags (paths absolute: worker processes rebuild it from ``run.json``).

    Raises:
        SegpromptError: ``--checkpoint``, ``--model-dir`` or ``--variant`` given to a backend that does not use it.
    """
    given = {option: getattr(args, option) for option in ("checkpoint", "model_dir", "variant")
             if getattr(args, option) is not None}  # fmt: skip
    check_options(args.backend, given)
    for option in ("checkpoint", "model_dir"):
        if option in given:
            given[option] = str(Path(given[option]).expanduser().resolve())
    model_type = args.model_type or (PAPER_MODEL_TYPE if args.protocol == "paper" else "vit_b")
    return {"model_type": model_type, "device": args.device, "precision": args.precision, "checkpoint": None, **given}


def _config(args: argparse.Namespace) -> BenchmarkConfig:
    """The protocol's config with every option given on the command line applied."""
    explicit: dict[str, Any] = {field: getattr(args, option) for option, field in _CONFIG_OPTIONS.items()
                                if getattr(args, option) is not None}  # fmt: skip
    if args.multimask is not None:
        explicit["multimask"] = MULTIMASK[args.multimask]
    if args.strategy_options is not None:
        explicit["strategy_options"] = PAPER_STRATEGY_OPTIONS if args.strategy_options == "paper" else {}
    return BenchmarkConfig.for_protocol(
        args.protocol, strategies=_strategies(args.strategies), counts=PointCounts.parse(args.points), seed=args.seed,
        human=not args.no_human, max_images=args.max_images, **explicit,
    )  # fmt: skip


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    print(f"protocol: {summary['protocol']}")
    print(f"{'strategy':<24}{'source':<8}{'n':>5}{'mIoU':>8}{'first':>8}{'best':>8}")
    for name, row in summary["strategies"].items():
        print(f"{name:<24}{row['source']:<8}{row['n']:>5}{row['mean_iou']:>8.3f}{row['mean_first']:>8.3f}{row['mean_best']:>8.3f}")
    overall = summary["human_vs_auto"].get("overall") if summary["human_vs_auto"] else None
    if overall:
        print(f"human best {overall['human_best']:.3f} vs automatic mean {overall['auto_mean']:.3f}: "
              f"{overall['gap_percent']:+.1f} % (vs best strategy {overall['auto_best_strategy']}: "
              f"{overall['gap_vs_best_auto_percent']:+.1f} %)")
        for name, row in overall["separate"].items():
            print(f"  outside the gap: human best vs {name} {row['auto_mean']:.3f}: {row['gap_percent']:+.1f} %")
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
    check_device(args)
    if args.max_images is not None and args.max_images < 1:
        raise SegpromptError(f"--max-images must be at least 1, got {args.max_images}")
    if args.workers < 1:
        raise SegpromptError(f"--workers must be at least 1, got {args.workers}")
    if args.finetune and args.backend != "sam":
        raise SegpromptError(f"--finetune trains SAM's prompt encoder; it needs --backend sam, not {args.backend!r}")
    if args.epochs is not None and args.epochs < 1:
        raise SegpromptError(f"--epochs must be at least 1, got {args.epochs}")
    config = _config(args)
    test_ids = None
    if args.test_list is not None:
        from ..datasets.pointprompt import read_test_list

        test_ids = read_test_list(args.test_list)
    cache_root = None
    if not args.no_cache:
        from ..cache import EmbeddingCache

        cache_root = str(EmbeddingCache().root)
    source = RunSource(str(args.data), args.layout, args.backend, _backend_options(args), cache_root)
    with local_weights_flags(sam="--checkpoint PATH", transformers="--model-dir DIR"):
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
            _finetune(args, dataset, segmenter, config, cache, progress, test_ids)
    return 0


def _finetune(
    args: argparse.Namespace, dataset: Any, segmenter: Any, config: BenchmarkConfig, cache: Any, progress: Any,
    test_ids: list[str] | None,
) -> None:
    import dataclasses
    import json

    from ..io import atomic_write_text
    from ..pointprompt.finetune import PAPER_FINETUNE, FinetuneConfig, finetune_strategies

    recipe = PAPER_FINETUNE if config.protocol == "paper" else FinetuneConfig()
    explicit = {} if args.epochs is None else {"max_epochs": args.epochs}
    recipe = dataclasses.replace(recipe, train_decoder=args.finetune_decoder, seed=args.seed, **explicit)
    results = finetune_strategies(
        dataset, segmenter, config, recipe, test_ids=test_ids, max_images=args.max_images, cache=cache, progress=progress,
    )  # fmt: skip
    if args.test_list is not None:
        test = f"the images of {args.test_list}"
    else:
        test = "validation" if recipe.test_fraction is None else f"a seeded {recipe.test_fraction:.0%} of the images"
    document = {"protocol": config.protocol, "recipe": dataclasses.asdict(recipe), "test_split": test, "strategies": results}
    atomic_write_text(args.out / "finetune.json", json.dumps(document, indent=1, allow_nan=True))
    print(f"{'finetuned on':<24}{'IoU before':>11}{'after':>8}{'gain %':>9}  (on the {_evaluated_on(results)} split)")
    for name, row in results.items():
        print(f"{name:<24}{row['iou_before']:>11.3f}{row['iou_after']:>8.3f}{row['gain_percent']:>+9.1f}")


def _evaluated_on(results: dict[str, Any]) -> str:
    return next(iter(results.values()))["evaluated_on"] if results else "validation"
