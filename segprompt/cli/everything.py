"""``segprompt everything``: every object of one image, without prompts, into an annotation folder.

The backend's everything generator (:mod:`segprompt.everything`) finds the
objects; they become the objects of a fresh annotation session, best first,
and the folder of :mod:`segprompt.annotation_outputs` is written (labels,
COCO, ``objects.csv``, overlay and the session file that ``segprompt replay``
re-runs). Settings are ``--set NAME=VALUE`` (repeatable); ``--text`` is the
concept of ``sam3`` (its setting ``text``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..everything import everything_backends, settings_from_strings, settings_help
from ..errors import SegpromptError
from ..io import read_image
from . import annotate
from .device_flags import set_memory_advice
from .progress import tqdm_progress


def _settings_epilog() -> str:
    lines = ["settings (--set NAME=VALUE) of each backend's generator, with defaults:"]
    backends_by_settings: dict[str, list[str]] = {}
    for backend in everything_backends():
        backends_by_settings.setdefault(settings_help(backend), []).append(backend)
    for settings, backends in backends_by_settings.items():
        lines.append(f"  {', '.join(backends)}: {settings}")
    return "\n".join(lines)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "everything",
        help="segment every object of an image (no prompts) into labels, COCO, objects.csv and a replayable session",
        description="Segment every object of IMAGE without prompts, with the --backend's everything generator "
        f"({', '.join(everything_backends())}; sam3 finds every instance of the concept --text). Writes to --out: "
        "labels.tif (uint16/uint32 label map), coco.json (RLE masks, categories from the class names), objects.csv, "
        "overlay.png and labels.session.json (segprompt replay re-runs it), all or none.",
        epilog=_settings_epilog(),
    )
    parser.add_argument("image", type=Path, help="PNG, JPEG, BMP, TIFF or .npy image")
    annotate.add_output_arguments(parser)
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="a setting of the generator (see below); repeatable",
    )
    parser.add_argument("--text", metavar="PHRASE", help="sam3: the concept whose every instance is segmented")
    parser.add_argument("--class-name", metavar="NAME", help="class of every object found (default: sam3's phrase, else object)")
    annotate.add_model_arguments(parser, f"one of {', '.join(everything_backends())}")
    set_memory_advice(parser, "use --precision bf16, lower the generator's batch or tile settings (--set), or use a smaller image")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    annotate.check_outputs(args.out, args.ome_zarr)
    settings = settings_from_strings(args.backend, args.settings)
    fields = {field.name for field in dataclasses.fields(settings)}
    if args.text is not None:
        if "text" not in fields:
            raise SegpromptError(f"--text is the concept of sam3's everything; the {args.backend!r} generator takes none")
        settings = dataclasses.replace(settings, text=args.text)
    if "text" in fields and not settings.text.strip():
        raise SegpromptError(f"{args.backend} segments every instance of a concept: give its phrase (--text PHRASE)")
    options = annotate.given_options(args)
    annotate.check_options(args.backend, options)
    image = read_image(args.image, plane=args.plane)
    with tqdm_progress("step") as progress:
        segmenter = annotate.make_segmenter(args.backend, options)
        embedding = annotate.embed(segmenter, image, progress)
        session = annotate.new_session(segmenter, embedding, options, args.image, args.plane)
        found = session.everything(settings, args.class_name, progress)
    annotate.finish(args, session, args.image, f"{len(found)} objects ({segmenter.name}, {settings})")
    return 0
