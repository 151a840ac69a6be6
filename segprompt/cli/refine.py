"""``segprompt refine``: existing labels become prompts; every object keeps its id and class.

``LABELS`` is a label image (PNG, TIFF, ``.npy``), a COCO file (its class
names come along) or an OME-Zarr folder. Its objects are imported into an
annotation session, then each one (or only ``--ids``) is answered by the
backend with its own box and mask as the prompt
(:meth:`segprompt.annotation.AnnotationSession.refine`): all at once, so
refined objects never overwrite each other's old pixels, only background and
their own. Class names come from the labels file itself or ``--classes``
(a COCO file or an ``objects.csv``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import ImageError, SegpromptError
from ..export import read_class_names, read_labels
from ..io import read_image
from . import annotate
from .device_flags import set_memory_advice
from .progress import tqdm_progress


def parse_ids(text: str) -> list[int]:
    """``"3,5,12"`` -> ``[3, 5, 12]``."""
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SegpromptError(f"--ids {text!r}: expected comma-separated object ids, e.g. 3,5,12") from None
    if not ids or min(ids) < 1:
        raise SegpromptError(f"--ids {text!r}: expected object ids >= 1")
    return ids


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="refine existing labels with a backend, each object prompted by its own mask (ids and classes kept)",
        description="Import the objects of LABELS (a label image, a COCO file or an OME-Zarr folder) and refine "
        "each one with the --backend, prompted by its own box and mask; every object keeps its id and class. "
        "Writes labels.tif, coco.json, objects.csv, overlay.png and labels.session.json to --out, all or none.",
    )
    parser.add_argument("labels", type=Path, help="label image (PNG/TIFF/.npy), COCO JSON or OME-Zarr folder")
    parser.add_argument("image", type=Path, help="the image the labels annotate")
    annotate.add_output_arguments(parser)
    parser.add_argument("--classes", type=Path, metavar="FILE", help="class names: a COCO file or an objects.csv")
    parser.add_argument("--ids", metavar="ID,ID,...", help="refine only these objects (default: all)")
    annotate.add_model_arguments(parser, "a backend taking a box or a mask prompt (segprompt models lists them)")
    set_memory_advice(parser, "use --precision bf16 or a smaller image")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    annotate.check_outputs(args.out, args.ome_zarr)
    ids = parse_ids(args.ids) if args.ids is not None else None
    options = annotate.given_options(args)
    annotate.check_options(args.backend, options)
    labels, records = read_labels(args.labels, Path(args.image).name)
    class_names = {o.label: o.class_name for o in records}
    if args.classes is not None:
        class_names.update(read_class_names(args.classes, Path(args.image).name))
    image = read_image(args.image, plane=args.plane)
    if labels.shape != image.shape[:2]:
        raise ImageError(f"{args.labels}: labels of {labels.shape[1]}x{labels.shape[0]} (W x H) do not fit {args.image} "
                         f"of {image.shape[1]}x{image.shape[0]}")
    if ids is not None:
        missing = sorted(set(ids) - {int(i) for i in np.unique(labels)})
        if missing:
            raise SegpromptError(f"--ids: {args.labels} holds no object {', '.join(map(str, missing))}")
    with tqdm_progress("object") as progress:
        segmenter = annotate.make_segmenter(args.backend, options)
        embedding = annotate.embed(segmenter, image, progress)
        session = annotate.new_session(segmenter, embedding, options, args.image, args.plane)
        imported = session.import_labels(labels, class_names, Path(args.labels).name)
        refined = session.refine(ids, progress)
    annotate.finish(args, session, args.image, f"refined {len(refined)} of {len(imported)} objects ({segmenter.name}), "
                    "ids and classes kept")
    return 0
