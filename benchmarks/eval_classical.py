"""The classical backend from one box and one click: IoU before and after, baselines, and how well its scores rank.

For every binary object of each dataset under ``../shared/data`` (read through
:func:`segprompt.datasets.open_dataset`; empty BUSI "normal" masks have no
object, CT slices give one object per organ, GrabCut's 128 band is ignored),
:func:`segprompt.baselines.evaluate` prompts the classical backend with the
object's tight box and, separately, with one click at its most interior
pixel. In the same run, on the same embedding:

* ``click before``: the click answered by the previous click method
  (``--before``, default ``grabcut``: GrabCut windows picked by containment);
* ``box before``: the box answer's candidates picked by the previous rule
  (box consistency >= 0.8, else the inscribed ellipse); ``box`` is the
  candidate with the best quality score;
* ``plain GC`` / ``box fill``: plain ``cv2.grabCut`` from the box, the box itself.

It prints one row per dataset (mean IoU; the Spearman rank correlation between
the backend's score and the true IoU of its box answers, its click answers,
and both together; seconds per click for each click method), then the mean of
the dataset means and the correlations over every object pooled::

    .venv/bin/python benchmarks/eval_classical.py [--datasets kvasir_seg coco_mval] [--max-objects 30]

``--max-objects 5`` gives a quick look (a few minutes); all 264 objects take
tens of minutes on two cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt.backends import create  # noqa: E402
from segprompt.backends.classical import CLICK_METHODS  # noqa: E402
from segprompt.baselines import Summary, evaluate  # noqa: E402
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
#: (header, width, value of a summary): the table's columns after the dataset name.
COLUMNS = (
    ("n", 4, lambda s: f"{len(s.objects):4d}"),
    ("box before", 10, lambda s: f"{s.mean('box_rule'):10.3f}"),
    ("box", 6, lambda s: f"{s.mean('box'):6.3f}"),
    ("click before", 12, lambda s: f"{s.mean('click_before'):12.3f}"),
    ("click", 6, lambda s: f"{s.mean('click'):6.3f}"),
    ("plain GC", 8, lambda s: f"{s.mean('plain_grabcut'):8.3f}"),
    ("box fill", 8, lambda s: f"{s.mean('box_fill'):8.3f}"),
    ("rho box", 7, lambda s: f"{s.spearman('box'):7.3f}"),
    ("rho click", 9, lambda s: f"{s.spearman('click'):9.3f}"),
    ("rho both", 8, lambda s: f"{s.spearman('box', 'click'):8.3f}"),
    ("s/click before", 14, lambda s: f"{s.seconds('click_before'):14.2f}"),
    ("s/click", 7, lambda s: f"{s.seconds('click'):7.2f}"),
)


def _row(name: str, summary: Summary) -> str:
    return f"{name:22s} " + " ".join(value(summary) for _, _, value in COLUMNS)


def _mean_row(summaries: list[Summary]) -> str:
    """The mean over datasets of each IoU column (each dataset weighs the same); other cells blank."""
    cells = []
    for header, width, _ in COLUMNS:
        key = {"box before": "box_rule", "box": "box", "click before": "click_before", "click": "click",
               "plain GC": "plain_grabcut", "box fill": "box_fill"}.get(header)
        if key is None:
            cells.append(" " * width)
        else:
            cells.append(f"{sum(s.mean(key) for s in summaries) / len(summaries):{width}.3f}")
    return f"{'mean of datasets':22s} " + " ".join(cells)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--max-objects", type=int, default=None, help="objects per dataset (default: all)")
    parser.add_argument("--click-method", default="proposals", choices=CLICK_METHODS, help="the click method measured")
    parser.add_argument("--before", default="grabcut", choices=CLICK_METHODS, help="the click method compared with")
    args = parser.parse_args(argv)

    segmenter = create("classical", click_method=args.click_method)
    before = create("classical", click_method=args.before)
    header = f"{'dataset':22s} " + " ".join(f"{title:>{width}s}" for title, width, _ in COLUMNS)
    rows = [f"click: {args.click_method} (before: {args.before})", header, "-" * len(header)]
    summaries = []
    for name in args.datasets:
        dataset = open_dataset(args.data / name)
        with tqdm_progress("object") as progress:
            summary = evaluate(segmenter, dataset, args.max_objects, progress, click_baseline=before)
        summaries.append(summary)
        rows.append(_row(name, summary))
        print(rows[-1], file=sys.stderr, flush=True)
    rows.append("-" * len(header))
    rows.append(_mean_row(summaries))
    rows.append(_row("all objects pooled", Summary.merged(summaries)))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
