"""Segment-everything time per image: the ``sam`` generator against ``SamAutomaticMaskGenerator``, in one run.

One random-init SAM (same weights for both sides), one non-square photo, the
same settings. For each threshold profile it prints, once each (no repeats):

* ``SamAutomaticMaskGenerator.generate`` (its ``set_image`` included);
* ours, ``SamSegmenter.embed`` + the ``sam`` generator, with the exact decoder
  (``exact=True``: the reference's records bit for bit) and with the default
  re-associated decoder;

each total and after the encoder (the encoder's time, measured once with
``SamSegmenter.embed``, taken off), the ratio to the reference, and how the
records compare (count, identical masks, largest predicted-IoU difference).
The classical everything on the same image is timed as a zero-weight reference point.

Profiles: ``default`` is ``SamAutomaticMaskGenerator``'s own settings; with
random-init weights no predicted IoU reaches 0.88, so nothing survives the
first filter, which lets our decoder skip every output upscaling: a best case
that trained weights (many candidates above 0.88) do not reach. ``low`` sets
the thresholds low enough that random-init masks survive (predicted IoU > 0,
stability > 0.5 at offset 0.05), so upsampling, stability, boxes and NMS all run.

Example::

    python benchmarks/bench_everything.py                          # ViT-B, 768 x 1024, 32 x 32 points, both profiles
    python benchmarks/bench_everything.py --model tiny --points-per-side 4 --height 120 --width 160
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import cv2
import numpy as np
from segment_anything import SamAutomaticMaskGenerator
from skimage import data as skdata

from segprompt.backends import create
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import SAM_ARCHITECTURES, build_sam
from segprompt.everything import segment_everything
from segprompt.everything.amg import MaskRecords, SamEverything
from segprompt.everything.sam import SamGenerator

PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "low": {"pred_iou_thresh": 0.001, "stability_score_thresh": 0.5, "stability_score_offset": 0.05},
}


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def compare(records: MaskRecords, reference: list[dict]) -> str:
    """Record counts, how many masks are identical in the same order, and the largest predicted-IoU difference."""
    same = sum(np.array_equal(records.masks[i], r["segmentation"]) for i, r in enumerate(reference[: len(records)]))
    pairs = min(len(records), len(reference))
    iou_diff = max((abs(records.predicted_iou[i] - reference[i]["predicted_iou"]) for i in range(pairs)), default=0.0)
    return f"{len(records)} vs {len(reference)} records, {same}/{pairs} masks identical, max |d predicted IoU| {iou_diff:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(SAM_ARCHITECTURES), default="vit_b", help="random-init SAM (default vit_b)")
    parser.add_argument("--height", type=int, default=768, help="image height (default 768)")
    parser.add_argument("--width", type=int, default=1024, help="image width (default 1024)")
    parser.add_argument("--points-per-side", type=int, default=32, help="point grid side (default 32)")
    parser.add_argument("--crop-n-layers", type=int, default=0, help="crop layers (default 0)")
    parser.add_argument("--profiles", default="default,low", help=f"threshold profiles, comma-separated, of {', '.join(PROFILES)} (default both)")
    parser.add_argument("--seed", type=int, default=0, help="random-init seed (default 0)")
    args = parser.parse_args()

    image = cv2.resize(skdata.coffee(), (args.width, args.height), interpolation=cv2.INTER_AREA)
    model = build_sam(args.model, seed=args.seed)
    segmenter = SamSegmenter(model=model)
    embedding, encoder_s = timed(lambda: segmenter.embed(image))
    print(f"SAM {args.model} (random init, seed {args.seed}), image {args.height} x {args.width}, "
          f"{args.points_per_side} x {args.points_per_side} points, {args.crop_n_layers} crop layers")
    print(f"  encoder (SamSegmenter.embed): {encoder_s:.2f} s")

    classical = create("classical")
    found, classical_s = timed(lambda: segment_everything(classical, classical.embed(image)))
    print(f"  classical everything: {classical_s:.2f} s, {len(found)} objects (zero weights; a reference point only)")

    for profile in args.profiles.split(","):
        options = {"points_per_side": args.points_per_side, "crop_n_layers": args.crop_n_layers, **PROFILES[profile.strip()]}
        print(f"profile {profile}: {options}")
        reference, reference_s = timed(lambda: SamAutomaticMaskGenerator(model, **options).generate(image))
        print(f"  SamAutomaticMaskGenerator: {reference_s:.2f} s total, {reference_s - encoder_s:.2f} s after the encoder, "
              f"{len(reference)} masks")
        for exact in (True, False):
            def ours() -> MaskRecords:
                return SamGenerator.records(segmenter, segmenter.embed(image), SamEverything(**options, exact=exact))

            records, ours_s = timed(ours)
            decoder = "exact decoder" if exact else "re-associated decoder"
            print(f"  sam generator, {decoder}: {ours_s:.2f} s total ({reference_s / ours_s:.2f}x faster), "
                  f"{ours_s - encoder_s:.2f} s after the encoder "
                  f"({(reference_s - encoder_s) / max(ours_s - encoder_s, 1e-9):.2f}x faster); {compare(records, reference)}")


if __name__ == "__main__":
    main()
