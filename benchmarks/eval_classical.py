"""Mean IoU of the classical backend from one box and from one click, against plain GrabCut and the box.

For every binary object of each dataset under ``../shared/data`` (read through
:func:`segprompt.datasets.open_dataset`; empty BUSI "normal" masks have no
object, CT slices give one object per organ, GrabCut's 128 band is ignored),
:func:`segprompt.baselines.evaluate` prompts the classical backend with the
object's tight box and, separately, with one click at its most interior
pixel, and scores plain ``cv2.grabCut`` from the same box and the filled box.

``.venv/bin/python benchmarks/eval_classical.py [--datasets kvasir_seg coco_mval] [--max-objects 30]``
prints one row per dataset: objects, mean IoU of ours (box), ours (click),
plain GrabCut, box fill, and our seconds per prompt (embedding included).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt.backends import create  # noqa: E402
from segprompt.baselines import evaluate  # noqa: E402
from segprompt.cli.progress import tqdm_progress  # noqa: E402
from segprompt.datasets import open_dataset  # noqa: E402

DATASETS = (
    "kvasir_seg",
    "busi",
    "skin_lesion_isic_ham",
    "coco_mval",
    "grabcut_scribbles",
    "sam_med2d_demo_ct",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--max-objects", type=int, default=None, help="objects per dataset (default: all)")
    args = parser.parse_args(argv)

    segmenter = create("classical")
    header = f"{'dataset':22s} {'n':>4s} {'ours box':>9s} {'ours click':>11s} {'plain GC':>9s} {'box fill':>9s} {'s/prompt':>9s}"
    rows = [header, "-" * len(header)]
    for name in args.datasets:
        dataset = open_dataset(args.data / name)
        with tqdm_progress("object") as progress:
            summary = evaluate(segmenter, dataset, args.max_objects, progress)
        rows.append(
            f"{name:22s} {len(summary.objects):4d} {summary.mean('box'):9.3f} {summary.mean('click'):11.3f} "
            f"{summary.mean('plain_grabcut'):9.3f} {summary.mean('box_fill'):9.3f} {summary.seconds_per_prompt:9.2f}"
        )
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
