"""``segprompt datasets``: look at a dataset folder through the datasets layer.

``segprompt datasets inspect DIR [--layout L] [--preview OUT.png] [--max N]``
prints the layout detected, counts, classes, mask statistics and the problems
found; ``--preview`` writes a contact sheet. ``segprompt datasets layouts``
lists the known layouts.
"""

from __future__ import annotations

import argparse
import warnings

from ..atomic import check_writable
from ..datasets import DatasetWarning, layouts, open_dataset
from ..datasets.summary import summarize, write_contact_sheet
from ..io import check_output_type
from .progress import tqdm_progress

DEFAULT_PREVIEW = 24


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("datasets", help="inspect dataset folders (layouts, counts, problems, previews)")
    verbs = parser.add_subparsers(dest="datasets_verb", metavar="ACTION")
    verbs.required = True

    inspect = verbs.add_parser("inspect", help="print layout, counts, classes, mask statistics and problems")
    inspect.add_argument("dir", help="dataset folder (or a COCO instances .json)")
    inspect.add_argument("--layout", choices=sorted(layouts()), help="layout to read it as (default: detect)")
    inspect.add_argument("--max", type=int, default=None, metavar="N", help="read at most N samples for statistics")
    inspect.add_argument("--preview", metavar="OUT.png", help="write a contact sheet of the first samples")
    inspect.add_argument("--preview-count", type=int, default=DEFAULT_PREVIEW, metavar="K", help="tiles in the contact sheet")
    inspect.set_defaults(func=_inspect)

    listing = verbs.add_parser("layouts", help="list the known dataset layouts")
    listing.set_defaults(func=_layouts)


def _inspect(args: argparse.Namespace) -> int:
    if args.preview:
        check_output_type(args.preview)
        check_writable([args.preview])
    with warnings.catch_warnings():
        # Problems are printed in the report; per-file warnings would only repeat them.
        warnings.simplefilter("ignore", DatasetWarning)
        dataset = open_dataset(args.dir, layout=args.layout)
        with tqdm_progress("sample") as progress:
            summary = summarize(dataset, args.max, progress)
        print(summary.format())
        if args.preview:
            shown = write_contact_sheet(args.preview, dataset, max_samples=args.preview_count)
            print(f"preview : {args.preview} ({shown} samples)")
    return 0


def _layouts(args: argparse.Namespace) -> int:
    for name, cls in layouts().items():
        print(f"{name:24s} {cls.summary}")
    return 0
