"""``segprompt replay``: run a saved annotation session again and check it gives the same labels.

The session file (``labels.session.json`` of an output folder, or the
``<stem>.session.json`` the napari widget saves) names the image (relative to
the file), its SHA-256, the backend, model id and the options that built it,
and every step. The image and the model are checked first and a changed one
is refused by name (exit 2); then every step runs again
(:func:`segprompt.replay.replay`) and the output folder is written. The last
line says whether the labels are bit-identical to the saved ones; exit code 1
when they are not (another device or library version can move a mask's
border by a pixel).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import SegpromptError
from ..io import read_image, read_mask
from ..replay import backend_options, check_image, check_model, check_replayable, image_path, replay, reproduces
from ..session_file import read_session_record
from . import annotate
from .device_flags import set_memory_advice
from .progress import tqdm_progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="re-run a saved annotation session (same image and model) and check the labels are identical",
        description="Re-run every step of a saved annotation session (SESSION.json, schema 2) on its image with its "
        "model, write the output folder (labels.tif, coco.json, objects.csv, overlay.png, labels.session.json) and "
        "say whether the labels are bit-identical to the saved ones (exit 1 when not). A changed image or model is "
        "refused by name. Model flags point at the same weights elsewhere; the backend is the recorded one.",
    )
    parser.add_argument("session", type=Path, help="the session file")
    annotate.add_output_arguments(parser)
    parser.add_argument("--image", type=Path, help="the image, when it is not where the session file says")
    annotate.add_model_arguments(parser)
    set_memory_advice(parser, "use a smaller image")
    parser.set_defaults(func=run)


def _differing_pixels(record: dict, session_path: Path, labels: np.ndarray) -> str:
    """``", N pixels differ from <labels file>"`` when the saved labels file is beside the session file."""
    name = record.get("labels_file")
    saved = session_path.parent / name if name else None
    if saved is None or not saved.is_file():
        return ""
    try:
        old = read_mask(saved)
    except SegpromptError:
        return ""
    if old.shape != labels.shape:
        return ""
    return f", {int((old != labels).sum())} pixels differ from {saved}"


def run(args: argparse.Namespace) -> int:
    annotate.check_outputs(args.out, args.ome_zarr)
    record = read_session_record(args.session)
    check_replayable(record, str(args.session))
    image_file = args.image or image_path(record, args.session)
    if image_file is None:
        raise SegpromptError(f"{args.session}: the session names no image file (it was a napari layer); give --image")
    plane = args.plane if args.plane is not None else record["image"].get("plane")
    image = read_image(image_file, plane=plane)
    check_image(record, image, str(image_file))
    backend = record["backend"]["name"]
    options = {**backend_options(record), **annotate.given_options(args)}
    with tqdm_progress("step") as progress:
        segmenter = annotate.make_segmenter(backend, options)
        check_model(record, segmenter)
        embedding = annotate.embed(segmenter, image, progress)
        session = replay(record, segmenter, embedding, str(image_file), progress)
    session.image_path = str(Path(image_file).resolve())
    identical = reproduces(record, session)
    annotate.finish(args, session, image_file, f"replayed {len(record['history'])} steps, {len(session.objects)} objects")
    if identical:
        print(f"{args.out}: labels identical to the saved session's (sha256 {record['labels_sha256'][:12]}…)",
              file=sys.stderr)
        return 0
    print(f"{args.out}: labels DIFFER from the saved session's{_differing_pixels(record, args.session, session.labels)}",
          file=sys.stderr)
    return 1
