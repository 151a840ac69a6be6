"""``segprompt segment-volume``: prompt one slice of a volume or time series, propagate through the stack.

The prompt flags are ``segment``'s (``--point``, ``--box``, ``--mask-prompt``,
``--prompt-file``; coordinates in the slice's pixels, ``x`` = column, ``y`` =
row), applied to slice ``--slice``; ``--mask-labels`` instead takes a label
image of that slice whose ids are objects kept as drawn, all propagated in
one run. The volume is read lazily (:mod:`segprompt.volume.reader` states the
axis conventions; ``--axes`` overrides the file's, ``--at T=3`` fixes an
axis). The label volume (``--out``, ``.tif`` or ``.ome.zarr``) is written
atomically, plane by plane; every problem found before the work (output type
and folder, the volume, the slice, the prompt, the backend's prompt kinds) is
a one-line error with exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import backend_names, backend_options, create_from_options, get_backend_class
from ..errors import PromptError, SegpromptError, UnsupportedPromptError
from ..export import ObjectInfo
from ..io import read_mask
from ..prompts import Prompt
from ..volume.embeddings import SliceEmbeddings
from ..volume.projection import PROJECTIONS, Projection
from ..volume.propagation import VIDEO_PROPAGATORS, ProjectionPropagator, Propagator, StopRule
from ..volume.reader import SliceImages, Volume, open_volume
from ..volume.session import DIRECTIONS, VolumeSession
from ..volume.writer import check_label_volume_output, write_label_volume
from . import tiling_flags
from .device_flags import add_device_arguments, check_device, refuse_unused_device, set_memory_advice
from .progress import tqdm_progress
from .segment import add_prompt_arguments, where_prompt_from_args
from .weights import local_weights_flags

#: ``--propagation`` choices.
PROPAGATION_METHODS = ("auto", "projection", "video")

DESCRIPTION = """\
Segment objects through a volume (Z) or a time series (T): prompt one slice (--slice Z) with segment's flags \
(--point X,Y[,LABEL], --box X0,Y0,X1,Y1, --mask-prompt MASK, --prompt-file) or give a label image of that slice \
(--mask-labels: one object per id, kept as drawn), and the result on each slice prompts the next, up and down, \
until the object ends.
Axes: letters of TZCYX in storage order (Z depth, T time, C channel, Y row, X column); TIFF and OME-Zarr files \
say theirs, a .npy or plain Zarr array of 3 dimensions is ZYX and of 4 is ZYXC (last axis of 3 or 4) or TZYX. Fix \
the other axes with --at (e.g. --at T=0 of a TZYX series).
Backends: every backend taking a mask or box prompt propagates by projection (the previous slice's mask logits or \
mask, its box and/or points derived from it: --projection); sam2 and sam3-tracker use their video model's memory \
by default (--propagation projection for the image model). Large slices: --tile-shape embeds each slice in tiles \
with a halo (projection propagation). Writes a label volume: .tif (one page per slice) or .ome.zarr (NGFF 0.5)."""


def parse_at(values: list[str] | None) -> dict[str, int]:
    """``["T=3", "C=0"]`` -> ``{"T": 3, "C": 0}``."""
    fixed: dict[str, int] = {}
    for value in values or []:
        axis, sep, index = value.partition("=")
        if not sep or len(axis.strip()) != 1 or not index.strip().lstrip("-").isdigit():
            raise SegpromptError(f"--at {value!r}: expected AXIS=INDEX, e.g. T=3")
        fixed[axis.strip().upper()] = int(index)
    return fixed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "segment-volume",
        help="prompt one slice of a volume / time series and propagate the objects through it",
        description=DESCRIPTION,
    )
    parser.add_argument("volume", type=Path, help="TIFF, .npy, Zarr or OME-Zarr volume (read one slice at a time)")
    parser.add_argument("--slice", type=int, required=True, metavar="Z", help="index of the prompted slice along the stack axis")
    parser.add_argument("--axes", help="axis order of the file, letters of TZCYX (e.g. ZYX, TYX, ZYXC, TZYX)")
    parser.add_argument("--at", action="append", metavar="AXIS=INDEX", help="fix an axis, e.g. T=0 or C=1; repeatable")
    add_prompt_arguments(parser)
    parser.add_argument(
        "--mask-labels", type=Path, metavar="LABELS",
        help="a label image of the prompted slice: each id is one object, kept as drawn (instead of a prompt)",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--backend", default="classical", help=f"one of {', '.join(backend_names())} (default classical)")
    model.add_argument("--model-type", default="vit_b", help="SAM architecture: vit_b, vit_l, vit_h (default vit_b)")
    model.add_argument("--checkpoint", type=Path, help="SAM weights file (default: the official checkpoint)")
    model.add_argument("--model-dir", type=Path, metavar="DIR", help="local model folder of a transformers backend")
    model.add_argument("--variant", metavar="SIZE", help="released size of sam2 / sam-hq, used without --model-dir")
    add_device_arguments(model)
    tiling_flags.add_arguments(model)
    propagation = parser.add_argument_group("propagation")
    propagation.add_argument(
        "--propagation", choices=PROPAGATION_METHODS, default="auto",
        help="video: the video model's memory (sam2, sam3-tracker); projection: the previous slice's result as the "
        "next prompt (any backend taking masks or boxes); auto: video where there is one",
    )
    propagation.add_argument("--projection", choices=tuple(PROJECTIONS), default="mask",
                             help="what projection passes on: mask (logits or mask, and box), box, points, ...")
    propagation.add_argument("--box-margin", type=float, default=0.1, help="growth of a projected box per side, fraction of its size")
    propagation.add_argument("--direction", choices=DIRECTIONS, default="both", help="up: increasing slice index; down: decreasing")
    propagation.add_argument("--min-score", type=float, default=0.5, help="stop below this score (backend's quality)")
    propagation.add_argument("--min-area", type=int, default=4, help="stop when the mask has fewer pixels")
    propagation.add_argument("--min-iou", type=float, help="stop below this IoU with the previous slice's mask (micro-sam: 0.8)")
    propagation.add_argument(
        "--no-confirm", action="store_true",
        help="projection: do not re-ask the backend with each mask's box (by default a mask it does not confirm stops)",
    )
    parser.add_argument("--out", type=Path, required=True, help="label volume: .tif / .tiff or .ome.zarr")
    set_memory_advice(parser, "use --precision bf16 or smaller slices")
    parser.set_defaults(func=run)


def open_stack(args: argparse.Namespace) -> Volume:
    """The volume with ``--at`` axes fixed, checked to have one stack axis holding ``--slice``."""
    volume = open_volume(args.volume, axes=args.axes)
    fixed = parse_at(args.at)
    if fixed:
        volume = volume.select(**fixed)
    count = len(volume)  # raises a one-line error without exactly one stack axis
    if not 0 <= args.slice < count:
        raise SegpromptError(f"--slice {args.slice} is out of range; {volume.name} has {count} slices along {volume.stack_axis} (0 to {count - 1})")
    return volume


def seed_labels(args: argparse.Namespace, image_hw: tuple[int, int]) -> dict[int, np.ndarray] | None:
    """Object id -> mask of ``--mask-labels`` (``None`` without it)."""
    if args.mask_labels is None:
        return None
    labels = read_mask(args.mask_labels)
    if labels.shape != tuple(image_hw):
        raise PromptError(f"--mask-labels {args.mask_labels}: shape {labels.shape} is not the slices' {tuple(image_hw)}")
    ids = [int(i) for i in np.unique(labels) if i != 0]
    if not ids:
        raise PromptError(f"--mask-labels {args.mask_labels}: no object (every pixel is 0)")
    return {label: labels == label for label in ids}


def check_backend(args: argparse.Namespace, method: str, prompt: Prompt) -> None:
    """Refuse, before loading weights, a backend, projection or prompt that cannot propagate."""
    cls = get_backend_class(args.backend)
    if method == "video":
        from ..volume.video import check_video_prompt

        if not prompt.is_empty():
            check_video_prompt(prompt, f"{args.backend} video memory")
        return
    rejected = sorted(prompt.kinds() - cls.accepts)
    if rejected:
        raise UnsupportedPromptError(
            f"backend {args.backend!r} does not accept {', '.join(rejected)} prompts; it accepts {', '.join(sorted(cls.accepts))}"
        )
    if not {"mask", "box"} & cls.accepts:
        raise UnsupportedPromptError(
            f"backend {args.backend!r} cannot propagate: it takes {', '.join(sorted(cls.accepts))} prompts, "
            "and propagation passes a mask or a box from slice to slice"
        )
    PROJECTIONS[args.projection].check_backend(args.backend, cls.accepts)


def propagation_method(args: argparse.Namespace) -> str:
    """``"video"`` or ``"projection"`` from ``--propagation`` and ``--backend``."""
    if args.propagation == "video" and args.backend not in VIDEO_PROPAGATORS:
        raise SegpromptError(f"--propagation video: backend {args.backend!r} has no video model; those that do: "
                             f"{', '.join(VIDEO_PROPAGATORS.names())}")
    if args.propagation == "auto":
        return "video" if args.backend in VIDEO_PROPAGATORS else "projection"
    return args.propagation


def check_tiling(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The tiling options of ``--tile-shape`` / ``--halo``, refused with a video model (it sees whole frames)."""
    tiling = tiling_flags.tiling_options(args, args.backend)
    if tiling and method == "video":
        raise SegpromptError(
            f"--tile-shape: {args.backend}'s video model sees whole frames; tile slices with --propagation projection"
        )
    return tiling


def make_propagator(args: argparse.Namespace, method: str, images: SliceImages) -> Propagator:
    """The propagator of ``--backend`` / ``--propagation`` with the model flags (loads the weights)."""
    options: dict[str, Any] = {"model_type": args.model_type, "checkpoint": args.checkpoint, "model_dir": args.model_dir,
                               "variant": args.variant, "device": args.device, "precision": args.precision, **check_tiling(args, method)}
    with local_weights_flags(transformers="--model-dir DIR", sam="--checkpoint PATH"):
        if method == "video":
            if args.checkpoint is not None:
                raise SegpromptError(f"--checkpoint is only used by the sam backend, not {args.backend!r}")
            if args.precision != "fp32":
                raise SegpromptError(f"--precision {args.precision}: video propagation runs in float32 only")
            return VIDEO_PROPAGATORS.get(args.backend)(images, model_dir=args.model_dir, variant=args.variant, device=args.device)
        used = backend_options(args.backend)
        refuse_unused_device(args, args.backend, "device" in used)
        if args.precision != "fp32" and "precision" not in used:
            raise SegpromptError(f"--precision {args.precision}: the {args.backend!r} backend runs in float32 only")
        segmenter = create_from_options(args.backend, **options)
    projection = Projection(**{**PROJECTIONS[args.projection].__dict__, "box_margin": args.box_margin})
    return ProjectionPropagator(segmenter, SliceEmbeddings(segmenter, images), projection, confirm=not args.no_confirm)


def run(args: argparse.Namespace) -> int:
    check_device(args)
    check_label_volume_output(args.out)
    volume = open_stack(args)
    image_hw = volume.image_hw
    prompt = where_prompt_from_args(args)
    seeds = seed_labels(args, image_hw)
    if seeds is not None and not prompt.is_empty():
        raise PromptError("give either --mask-labels or a prompt (--point, --box, --mask-prompt, --prompt-file), not both")
    if seeds is None and prompt.is_empty():
        raise PromptError("no prompt: give --point, --box, --mask-prompt, --prompt-file or --mask-labels")
    prompt.validate_for(image_hw)
    method = propagation_method(args)
    check_backend(args, method, prompt)
    check_tiling(args, method)
    stop = StopRule(min_area=args.min_area, min_score=args.min_score, min_iou=args.min_iou)
    images = SliceImages(volume)
    with tqdm_progress("slice") as progress:
        propagator = make_propagator(args, method, images)
        session = VolumeSession(propagator, stop)
        if seeds is None:
            result = session.prompt(1, args.slice, prompt)
            print(f"slice {args.slice}: object 1, {int(result.mask.sum())} px, score {result.score:.3f}", file=sys.stderr)
        else:
            for label, mask in seeds.items():
                session.set_mask(label, args.slice, mask)
        runs = session.propagate(args.slice, direction=args.direction, progress=progress)
    for run_ in runs:
        print(run_.describe(), file=sys.stderr)
    records = [
        ObjectInfo(label, score=float(obj.masks[args.slice].score), backend=args.backend)
        for label, obj in session.objects.items() if args.slice in obj.masks
    ]
    write_label_volume(args.out, session.labels, axes=f"{volume.stack_axis}YX", objects=records)
    covered = sorted({k for obj in session.objects.values() for k in obj.masks})
    print(f"{args.out}: {len(session.objects)} object(s) on {len(covered)} of {session.n_slices} slices "
          f"({args.backend}, {propagator.method})", file=sys.stderr)
    return 0
