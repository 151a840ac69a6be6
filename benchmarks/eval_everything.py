"""Classical everything mode vs an Otsu + distance-transform watershed, on the shared instance data.

Each image of ``dsb2018_nuclei`` (2,285 nuclei in 48 images) and
``isbi2012_em_membranes`` (3,431 cells in 30 slices) is segmented without a
prompt by :func:`segprompt.everything.classical.classical_labels` (ours) and by
:func:`segprompt.everything.classical.otsu_watershed_labels` (the baseline), in
the same run, and scored with micro-sam's matched metrics
(:func:`segprompt.everything.evaluation.evaluate_everything`: per-image mean
segmentation accuracy over IoU 0.50:0.95, SA50, SA75, averaged over images).

``.venv/bin/python benchmarks/eval_everything.py [--datasets dsb2018_nuclei] [--max-images 12]``
prints one row per dataset and method, and ours - baseline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt.cli.progress import tqdm_progress  # noqa: E402
from segprompt.datasets import open_dataset  # noqa: E402
from segprompt.everything.classical import classical_labels, otsu_watershed_labels  # noqa: E402
from segprompt.everything.evaluation import evaluate_everything  # noqa: E402

DATASETS = ("dsb2018_nuclei", "isbi2012_em_membranes")
METHODS = {"ours": classical_labels, "otsu+dt watershed": otsu_watershed_labels}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--max-images", type=int, default=None, help="images per dataset (default: all)")
    args = parser.parse_args(argv)

    header = f"{'dataset':24s} {'method':18s} {'images':>6s} {'mSA':>6s} {'SA50':>6s} {'SA75':>6s} {'s/image':>8s}"
    rows = [header, "-" * len(header)]
    for name in args.datasets:
        with tqdm_progress("image") as progress:
            scores = evaluate_everything(open_dataset(args.data / name), METHODS, args.max_images, progress)
        for method, result in scores.items():
            rows.append(
                f"{name:24s} {method:18s} {len(result.images):6d} {result.mean('msa'):6.3f} {result.mean('sa50'):6.3f} "
                f"{result.mean('sa75'):6.3f} {result.seconds_per_image:8.2f}"
            )
        ours, baseline = scores["ours"], scores["otsu+dt watershed"]
        rows.append(
            f"{name:24s} {'ours - baseline':18s} {'':6s} {ours.mean('msa') - baseline.mean('msa'):+6.3f} "
            f"{ours.mean('sa50') - baseline.mean('sa50'):+6.3f} {ours.mean('sa75') - baseline.mean('sa75'):+6.3f}"
        )
        print("\n".join(rows[-3:]), file=sys.stderr, flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
