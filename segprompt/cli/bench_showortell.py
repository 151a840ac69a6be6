"""``segprompt bench show-or-tell``: text vs visual-reference prompts (see :mod:`segprompt.showortell.runner`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import SegpromptError
from ..showortell.protocol import DEFAULT_TEMPLATES
from ..showortell.runner import RunSource, parse_method, run_show_or_tell
from ..showortell.settings import PAPER_SAM_MODEL, PAPER_SIDE, PROTOCOLS, RunSettings
from .device_flags import add_device_arguments, check_device, set_memory_advice
from .progress import tqdm_progress
from .weights import local_weights_flags


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
        help="a backend and the prompt it gets, e.g. clipseg:text, clipseg:visual, persam:visual, seggpt:visual, "
        "sam3:text, sam3:visual (a reference -> exemplar boxes -> SAM 3); repeatable",
    )
    parser.add_argument("--model-dir", action="append", default=[], metavar="[BACKEND=]DIR",
                        help="local model folder, for all transformers backends or for one (BACKEND=DIR); repeatable")
    parser.add_argument("--exemplar-proposer", choices=("owlv2-sam", "persam", "seggpt"), default="owlv2-sam",
                        help="sam3:visual: the backend finding the reference's object on the test image as SAM 3's "
                        "exemplar boxes (model folder: --model-dir NAME=DIR; default owlv2-sam)")  # fmt: skip
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="ours",
        help=f"defaults: ours, or the Show-or-Tell reference code's (images and references squashed to {PAPER_SIDE}, "
        "background prompted as a class on VOC / Cityscapes with plain argmax, ADE20K's 'other' scored, its "
        f"reference draw, PerSAM's similarity confidence on {PAPER_SAM_MODEL}); see the README table",
    )  # fmt: skip
    parser.add_argument("--released-splits", type=Path, metavar="DIR",
                        help="folder of the reference's <name>_{train,val}.pkl split lists (its data/splits/): score "
                        "its val images and draw references from its per-class training lists")  # fmt: skip
    parser.add_argument("--model-type", default=None,
                        help=f"SAM model type for SAM-based backends (default vit_b; paper: {PAPER_SAM_MODEL})")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint file for SAM-based backends")
    add_device_arguments(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="visual-reference draws to repeat (default: 0)")
    parser.add_argument("--nprompts", type=int, choices=(1, 5), default=1, help="visual references per class")
    parser.add_argument("--template", action="append", dest="templates", metavar="TEMPLATE",
                        help=f"text template with {{}} for the class name; repeatable (default: {DEFAULT_TEMPLATES[0]!r})")
    parser.add_argument("--min-ref-area", type=float, default=None,
                        help="minimum reference-mask area as a fraction of the image (default: the reference "
                        "code's per layout: VOC 0.02, ADE20K 0.04, Cityscapes 0.01, others 0)")
    parser.add_argument("--background", choices=("auto", "keep", "ignore"), default="auto",
                        help="background in the mIoU: keep (VOC, Cityscapes), ignore (others); auto picks by layout")
    parser.add_argument("--resize", type=int, default=None, metavar="SIDE",
                        help=f"score at SIDE x SIDE instead of the original resolution (paper: {PAPER_SIDE}, the "
                        "references too)")  # fmt: skip
    parser.add_argument("--max-images", type=int, help="score only the first N test images of each dataset")
    parser.add_argument("--workers", type=int, default=1,
                        help="shard the test images over this many worker processes (local Dask cluster; default 1: none)")
    parser.add_argument("--move-damaged", action="store_true",
                        help="when a file of the --out run is damaged, rename it to NAME.damaged-TIME and start afresh")
    set_memory_advice(parser, "use --precision bf16, --resize SIDE, or fewer --workers")
    parser.set_defaults(func=run)


def parse_model_dirs(values: list[str]) -> dict[str, str]:
    """``["DIR"]`` -> ``{"": DIR}`` (every backend); ``["clipseg=DIR"]`` -> ``{"clipseg": DIR}``."""
    out: dict[str, str] = {}
    for value in values:
        backend, sep, folder = value.partition("=")
        out[backend if sep else ""] = folder if sep else value
    return out


def _print_summary(summary: dict[str, Any]) -> None:
    print(f"protocol: {summary['protocol']}")
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


def run(args: argparse.Namespace) -> int:
    check_device(args)
    if args.max_images is not None and args.max_images < 1:
        raise SegpromptError(f"--max-images must be at least 1, got {args.max_images}")
    if args.min_ref_area is not None and not 0.0 <= args.min_ref_area < 1.0:
        raise SegpromptError(f"--min-ref-area must lie in [0, 1), got {args.min_ref_area}")
    if args.workers < 1:
        raise SegpromptError(f"--workers must be at least 1, got {args.workers}")
    if args.resize is not None and args.resize < 1:
        raise SegpromptError(f"--resize must be at least 1, got {args.resize}")
    for spec in args.method:
        parse_method(spec)
    explicit = {} if args.resize is None else {"resize": args.resize}
    settings = RunSettings.for_protocol(
        args.protocol, seeds=tuple(args.seeds), n_prompts=args.nprompts,
        templates=tuple(args.templates or DEFAULT_TEMPLATES), max_images=args.max_images, **explicit,
    )  # fmt: skip
    model_type = args.model_type or (PAPER_SAM_MODEL if args.protocol == "paper" else None)
    source = RunSource(
        data=[str(folder) for folder in args.data], methods=list(args.method), layout=args.layout, domain=args.domain,
        background=args.background, min_reference_area=args.min_ref_area, model_dirs=parse_model_dirs(args.model_dir),
        model_type=model_type, checkpoint=None if args.checkpoint is None else str(args.checkpoint),
        device=args.device, precision=args.precision, released_splits=None if args.released_splits is None else str(args.released_splits),
        exemplar_proposer=args.exemplar_proposer,
    )
    with local_weights_flags(transformers="--model-dir [BACKEND=]DIR", sam="--checkpoint PATH"):
        datasets, methods = source.build()
    with tqdm_progress("image") as progress:
        summary = run_show_or_tell(
            datasets, methods, args.out, settings, progress,
            workers=args.workers, source=source, move_damaged=args.move_damaged,
        )
    _print_summary(summary)
    print(f"results: {args.out / 'results.csv'}, summary: {args.out / 'summary.json'}")
    return 0
