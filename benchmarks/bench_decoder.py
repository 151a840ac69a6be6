"""Decoder speed of SamSegmenter against segment-anything's SamPredictor, measured in the same run.

Prints, for one image and one random-init SAM (same weights for both sides):

* ``set_image``: SamPredictor.set_image vs SamSegmenter.embed (the encoder; the same work);
* per-click latency (one point, multimask), median: SamPredictor.predict vs
  SamSegmenter.predict_best (the interactive path) and SamSegmenter.predict;
* scoring N prompts against a ground-truth mask: a SamPredictor.predict loop
  + segprompt.metrics.iou of the best-scored mask vs segprompt.evaluation.score_prompts,
  with the largest IoU difference and the peak RSS of our scoring;
* how far SamPredictor's own IoUs move when the same loop runs on one torch
  thread instead of several (the float-rounding floor of "identical IoU");

each with its ratio to the baseline. Example::

    python benchmarks/bench_decoder.py                 # ViT-B, 768 x 1024, N = 64 and 512
    python benchmarks/bench_decoder.py --model tiny --prompts 16
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import cv2
import numpy as np
import psutil
import torch
from segment_anything import SamPredictor
from skimage import data as skdata

from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import SAM_ARCHITECTURES, build_sam
from segprompt.evaluation import score_prompts
from segprompt.metrics import iou
from segprompt.prompts import Box, Points, Prompt


class RssPeak:
    """Samples this process's resident set size every 5 ms while the block runs; ``peak_mb`` after."""

    def __enter__(self) -> "RssPeak":
        self.process = psutil.Process()
        self.peak_mb = self.process.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self.process.memory_info().rss / 2**20)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()


def make_scene(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A real photo resized to ``(height, width)`` and an elliptical ``(H, W)`` bool target."""
    image = cv2.resize(skdata.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    gt = np.zeros((height, width), np.uint8)
    cv2.ellipse(gt, (width // 2, height // 2), (width // 4, height // 3), 20, 0, 360, 1, -1)
    return image, gt.astype(bool)


def make_prompts(gt: np.ndarray, count: int, seed: int = 0) -> list[Prompt]:
    """Benchmark-like prompts: 1-3 clicks (first inside the target), every fourth with a jittered box."""
    rng = np.random.default_rng(seed)
    inside = np.argwhere(gt)[:, ::-1].astype(float)  # (x, y)
    outside = np.argwhere(~gt)[:, ::-1].astype(float)
    x0, y0 = inside.min(axis=0)
    x1, y1 = inside.max(axis=0) + 1
    height, width = gt.shape
    prompts = []
    for index in range(count):
        n_points = 1 + index % 3
        xy = [inside[rng.integers(len(inside))]]
        for _ in range(n_points - 1):
            pool = inside if rng.random() < 0.5 else outside
            xy.append(pool[rng.integers(len(pool))])
        labels = [1] + [int(gt[int(p[1]), int(p[0])]) for p in xy[1:]]
        box = None
        if index % 4 == 3:
            jitter = rng.normal(0, 10, 4)
            box = Box(
                max(0.0, x0 + jitter[0]), max(0.0, y0 + jitter[1]), min(width, x1 + jitter[2]), min(height, y1 + jitter[3])
            )
        prompts.append(Prompt(points=Points(np.array(xy), labels), box=box))
    return prompts


def predictor_scores(predictor: SamPredictor, prompts: list[Prompt], gt: np.ndarray) -> np.ndarray:
    """The baseline: one SamPredictor.predict per prompt, IoU of the best-scored mask."""
    ious = []
    for prompt in prompts:
        box = None if prompt.box is None else prompt.box.as_array()
        masks, scores, _ = predictor.predict(prompt.points.xy, prompt.points.labels, box, multimask_output=True)
        ious.append(iou(masks[int(np.argmax(scores))], gt))
    return np.array(ious)


def median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", choices=sorted(SAM_ARCHITECTURES), help="random-init architecture")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--clicks", type=int, default=15, help="repeats of the one-click latency measurement")
    parser.add_argument("--prompts", type=int, nargs="+", default=[64, 512], help="N values for batch scoring")
    parser.add_argument("--chunk-size", type=int, default=4)
    parser.add_argument(
        "--exact", choices=["both", "no", "yes"], default="both", help="score_prompts exact= value(s) to measure"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_sam(args.model, seed=0)
    segmenter = SamSegmenter(model=model)
    predictor = SamPredictor(model)
    image, gt = make_scene(args.height, args.width)
    print(f"SAM {args.model} (random init), image {args.height}x{args.width}, torch threads {torch.get_num_threads()}")
    print(f"{'measure':<34} {'ours':>12} {'baseline':>12} {'speed-up':>9}")

    def row(name: str, ours: float, base: float, unit: str) -> None:
        print(f"{name:<34} {ours:>9.1f} {unit:<2} {base:>9.1f} {unit:<2} {base / ours:>8.1f}x", flush=True)

    start = time.perf_counter()
    predictor.set_image(image)
    base_set = time.perf_counter() - start
    start = time.perf_counter()
    embedding = segmenter.embed(image)
    ours_set = time.perf_counter() - start
    assert torch.equal(embedding.features, predictor.features)
    row("set_image / embed", ours_set, base_set, "s")

    click = Prompt(points=Points([[args.width * 0.5, args.height * 0.5]], [1]))
    xy, labels = click.points.xy, click.points.labels
    segmenter.predict_best(embedding, click)  # first call builds the per-image context
    row(
        "click: predict_best (median)",
        median_ms(lambda: segmenter.predict_best(embedding, click), args.clicks),
        median_ms(lambda: predictor.predict(xy, labels), args.clicks),
        "ms",
    )
    row(
        "click: predict, 3 masks (median)",
        median_ms(lambda: segmenter.predict(embedding, click), args.clicks),
        median_ms(lambda: predictor.predict(xy, labels), args.clicks),
        "ms",
    )

    for count in args.prompts:
        prompts = make_prompts(gt, count)
        timed = {}
        for exact in {"both": (False, True), "no": (False,), "yes": (True,)}[args.exact]:
            with RssPeak() as rss:
                start = time.perf_counter()
                scored = score_prompts(segmenter, embedding, prompts, gt, exact=exact, chunk_size=args.chunk_size)
                timed[exact] = (scored, time.perf_counter() - start, rss)
        start = time.perf_counter()
        base = predictor_scores(predictor, prompts, gt)
        base_s = time.perf_counter() - start
        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)
            itself = np.abs(predictor_scores(predictor, prompts, gt) - base)
            torch.set_num_threads(threads)
        for exact, (ours, ours_s, rss) in timed.items():
            row(f"score {count} prompts, exact={exact}", ours_s, base_s, "s")
            differ = np.abs(ours.iou - base)
            print(
                f"  max |IoU ours - baseline| = {differ.max():.2e} ({int((differ > 1e-6).sum())} of {count} > 1e-6), "
                f"re-decoded exactly: {ours.n_exact}, RSS while scoring: peak {rss.peak_mb:.0f} MiB",
                flush=True,
            )
        print(f"  mean IoU of the baseline {base.mean():.4f}", flush=True)
        if threads > 1:
            print(
                f"  SamPredictor against itself on 1 thread instead of {threads}: max |IoU difference| = "
                f"{itself.max():.2e} ({int((itself > 1e-6).sum())} of {count} > 1e-6)",
                flush=True,
            )


if __name__ == "__main__":
    main()
