"""``segprompt bench show-or-tell``: text vs visual-reference prompts (see :mod:`segprompt.showortell.runner`)."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import Any

from ..errors import SegpromptError
from ..showortell.protocol import DEFAULT_TEMPLATES
from ..showortell.runner import (
    EvalDataset,
    Method,
    ReferenceDraws,
    RunSettings,
    ShardItem,
    dataset_domain,
    prepare_dataset,
    run_show_or_tell,
    score_shard_item,
)
from .progress import tqdm_progress

MODALITIES = ("text", "visual")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "show-or-tell",
        help="text vs visual-reference prompts for semantic segmentation (Show-or-Tell benchmark)",
        description="Segment every class of each test image from a text prompt or from visual references drawn "
        "from training images, merge the per-class confidences (<= 0.2 -> background, argmax) and score mIoU "
        "over one confusion matrix per dataset. Writes results.csv, summary.json, references.json and plots to "
        "--out; re-running with the same --out resumes.",
    )
    parser.add_argument("--data", required=True, nargs="+", type=Path, help="dataset folder(s), any layout open_dataset reads")
    parser.add_argument("--layout", help="dataset layout (detected when omitted)")
    parser.add_argument("--domain", help="domain tag for every --data (default: domain.txt in the folder, else by layout)")
    parser.add_argument("--out", required=True, type=Path, help="run folder (created; resumed when it holds a run)")
    parser.add_argument(
        "--method", required=True, action="append", metavar="BACKEND:MODALITY",
        help="a backend and the prompt it gets, e.g. clipseg:text, clipseg:visual, persam:visual, seggpt:visual; repeatable",
    )
    parser.add_argument("--model-dir", action="append", default=[], metavar="[BACKEND=]DIR",
                        help="local model folder, for all transformers backends or for one (BACKEND=DIR); repeatable")
    parser.add_argument("--model-type", default=None, help="SAM model type for SAM-based backends (default vit_b)")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint file for SAM-based backends")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="visual-reference draws to repeat (default: 0)")
    parser.add_argument("--nprompts", type=int, choices=(1, 5), default=1, help="visual references per class")
    parser.add_argument("--template", action="append", dest="templates", metavar="TEMPLATE",
                        help=f"text template with {{}} for the class name; repeatable (default: {DEFAULT_TEMPLATES[0]!r})")
    parser.add_argument("--min-ref-area", type=float, default=None,
                        help="minimum reference-mask area as a fraction of the image (default: the paper's per layout)")
    parser.add_argument("--background", choices=("auto", "keep", "ignore"), default="auto",
                        help="background in the mIoU: keep (VOC, Cityscapes), ignore (others); auto picks by layout")
    parser.add_argument("--resize", type=int, default=None, metavar="SIDE",
                        help="score at SIDE x SIDE (the paper: 518) instead of the original resolution")
    parser.add_argument("--max-images", type=int, help="score only the first N test images of each dataset")
    parser.add_argument("--workers", type=int, default=1,
                        help="shard the test images over this many worker processes (local Dask cluster; default 1: none)")
    parser.set_defaults(func=run)


def parse_method(spec: str) -> tuple[str, str]:
    backend, sep, modality = spec.partition(":")
    if not sep or not backend or modality not in MODALITIES:
        raise SegpromptError(f"--method {spec!r}: expected BACKEND:MODALITY with MODALITY one of {', '.join(MODALITIES)}")
    return backend, modality


def parse_model_dirs(values: list[str]) -> dict[str | None, Path]:
    """``["DIR"]`` -> ``{None: DIR}``; ``["clipseg=DIR"]`` -> ``{"clipseg": DIR}``."""
    out: dict[str | None, Path] = {}
    for value in values:
        backend, sep, folder = value.partition("=")
        out[backend if sep else None] = Path(folder if sep else value)
    return out


def build_methods(args: argparse.Namespace) -> list[Method]:
    from ..backends import create_from_options

    model_dirs = parse_model_dirs(args.model_dir)
    segmenters: dict[str, Any] = {}
    methods = []
    for spec in args.method:
        backend, modality = parse_method(spec)
        if backend not in segmenters:
            segmenters[backend] = create_from_options(
                backend,
                model_dir=model_dirs.get(backend, model_dirs.get(None)),
                model_type=args.model_type,
                checkpoint=args.checkpoint,
                device=args.device,
            )
        methods.append(Method(f"{backend}:{modality}", segmenters[backend], modality))
    return methods


def _print_summary(summary: dict[str, Any]) -> None:
    for dataset_name, entry in summary["datasets"].items():
        print(f"{dataset_name} ({entry['domain']}, background {entry['background']})")
        print(f"  {'method':<28}{'mIoU':>8}{'± std':>8}{'s/image':>9}")
        for name, result in entry["methods"].items():
            miou = result["miou"]
            mean = "n/a" if miou["mean"] is None else f"{miou['mean']:.2f}"
            std = "" if miou["std"] is None else f"{miou['std']:.2f}"
            print(f"  {name:<28}{mean:>8}{std:>8}{result['seconds_per_image']:>9.2f}")
        oracle = entry["oracle"]["miou"]
        if oracle is not None:
            print(f"  {'oracle (best of text/visual per class)':<28} {oracle:.2f}")


def _prepare(args: argparse.Namespace) -> tuple[list[EvalDataset], list[Method], RunSettings]:
    """The datasets, methods and settings a run's arguments describe."""
    from ..datasets import open_dataset

    methods = build_methods(args)
    datasets = []
    for folder in args.data:
        dataset = open_dataset(folder, layout=args.layout)
        datasets.append(
            prepare_dataset(
                dataset,
                domain=args.domain or dataset_domain(dataset, folder),
                background=args.background,
                min_reference_area=args.min_ref_area,
            )
        )
    settings = RunSettings(
        seeds=tuple(args.seeds),
        n_prompts=args.nprompts,
        templates=tuple(args.templates or DEFAULT_TEMPLATES),
        resize=args.resize,
        max_images=args.max_images,
    )
    return datasets, methods, settings


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@functools.lru_cache(maxsize=1)
def _worker_run(options: tuple[tuple[str, Any], ...]) -> tuple[list[EvalDataset], list[Method], RunSettings, ReferenceDraws]:
    """A worker process's datasets, methods, settings and reference draws, built once from the run's options."""
    import torch

    from ..distributed import torch_threads_per_worker

    args = argparse.Namespace(**dict(options))
    torch.set_num_threads(torch_threads_per_worker(args.workers))
    datasets, methods, settings = _prepare(args)
    return datasets, methods, settings, ReferenceDraws(settings.n_prompts)


def score_image_in_worker(options: tuple[tuple[str, Any], ...], item: ShardItem) -> list[dict[str, Any]]:
    """The per-image task of ``--workers``: rows of one test image (see :func:`~.runner.score_shard_item`)."""
    return score_shard_item(*_worker_run(options), item)


def run(args: argparse.Namespace) -> int:
    if args.max_images is not None and args.max_images < 1:
        raise SegpromptError(f"--max-images must be at least 1, got {args.max_images}")
    if args.min_ref_area is not None and not 0.0 <= args.min_ref_area < 1.0:
        raise SegpromptError(f"--min-ref-area must lie in [0, 1), got {args.min_ref_area}")
    if args.workers < 1:
        raise SegpromptError(f"--workers must be at least 1, got {args.workers}")
    datasets, methods, settings = _prepare(args)
    # plain, hashable data for the workers: they rebuild the datasets and methods from it
    options = tuple(sorted((name, _frozen(value)) for name, value in vars(args).items() if name != "func"))
    with tqdm_progress("image") as progress:
        summary = run_show_or_tell(
            datasets, methods, args.out, settings, progress,
            workers=args.workers, worker_task=functools.partial(score_image_in_worker, options),
        )
    _print_summary(summary)
    print(f"results: {args.out / 'results.csv'}, summary: {args.out / 'summary.json'}")
    return 0
