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
#: (header, IoU key of segprompt.baselines.METHODS): the mean-IoU columns.
IOU_COLUMNS = (
    ("box before", "box_rule"),
    ("box", "box"),
    ("click before", "click_before"),
    ("click", "click"),
    ("plain GC", "plain_grabcut"),
    ("box fill", "box_fill"),
)
#: (header, answers pooled): the Spearman columns, score against IoU.
RHO_COLUMNS = (("rho box", ("box",)), ("rho click", ("click",)), ("rho both", ("box", "click")))
#: (header, step): the seconds-per-answer columns.
SECONDS_COLUMNS = (("s/click before", "click_before"), ("s/click", "click"))


def _width(header: str) -> int:
    return max(len(header), 6)


def _header() -> str:
    titles = [title for title, _ in IOU_COLUMNS + RHO_COLUMNS + SECONDS_COLUMNS]
    return f"{'dataset':22s} {'n':>4s} " + " ".join(f"{title:>{_width(title)}s}" for title in titles)


def _row(name: str, summary: Summary, iou_means: list[float] | None = None) -> str:
    """One table row; ``iou_means`` replaces the IoU cells (and blanks the others) for the mean-of-datasets row."""
    if iou_means is None:
        cells = [f"{len(summary.objects):4d}"]
        cells += [f"{summary.mean(key):{_width(title)}.3f}" for title, key in IOU_COLUMNS]
        cells += [f"{summary.spearman(*answers):{_width(title)}.3f}" for title, answers in RHO_COLUMNS]
        cells += [f"{summary.seconds(step):{_width(title)}.2f}" for title, step in SECONDS_COLUMNS]
    else:
        cells = [" " * 4] + [f"{value:{_width(title)}.3f}" for (title, _), value in zip(IOU_COLUMNS, iou_means)]
        cells += [" " * _width(title) for title, _ in RHO_COLUMNS + SECONDS_COLUMNS]
    return f"{name:22s} " + " ".join(cells)


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
    header = _header()
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
    # Each dataset weighs the same in the mean of the datasets; the pooled row weighs each object the same.
    means = [sum(summary.mean(key) for summary in summaries) / len(summaries) for _, key in IOU_COLUMNS]
    rows.append(_row("mean of datasets", Summary(), means))
    rows.append(_row("all objects pooled", Summary.merged(summaries)))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
