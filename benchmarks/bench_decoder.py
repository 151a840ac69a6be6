"""Decoder speed of SamSegmenter against segment-anything's SamPredictor, measured in the same run, on any device.

Prints, for one image and one random-init SAM (same weights for both sides), each figure with its ratio:

* ``set_image`` vs ``SamSegmenter.embed`` (the encoder; the same work), and with
  ``--precision bf16|fp16`` the encoder under autocast, with the masks'
  agreement with float32 (mean and worst IoU between the two masks over the prompts);
* one click (one point, multimask), median: ``SamPredictor.predict`` vs
  ``SamSegmenter.predict_best`` (the interactive path: decoder and the chosen
  mask's upsampling, mask on the host) and ``SamSegmenter.predict``;
* scoring N mixed prompts (1-3 clicks, every fourth with a box) against a
  ground-truth mask: a ``SamPredictor.predict`` loop + ``segprompt.metrics.iou``
  of the best-scored mask vs ``segprompt.evaluation.score_prompts``;
* scoring N single clicks: ``SamPredictor.predict_torch`` with the clicks
  batched and the IoU computed on the device (what a GPU user would write in
  ten lines) vs ``score_prompts``;
* with each scoring: the largest IoU difference to the baseline, and the peak
  memory (GPU memory on CUDA, the process's RSS on the CPU);
* the float-rounding floor of "identical IoU": how far SamPredictor's own IoUs
  move on one torch thread instead of several (CPU), or with TF32 convolutions
  (PyTorch's default on CUDA) against IEEE float32.

On CUDA every timing is bracketed by ``torch.cuda.synchronize()``, and every
measured call runs once before it is timed (warm-up excluded). Examples::

    python benchmarks/bench_decoder.py                                   # ViT-B, 768 x 1024, CPU (auto)
    python benchmarks/bench_decoder.py --device cuda --model vit_h --precision bf16
    python benchmarks/bench_decoder.py --model tiny --prompts 16 --exact no   # a smoke run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import psutil
import torch
from segment_anything import SamPredictor
from skimage import data as skdata

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt.backends.sam import SamSegmenter  # noqa: E402
from segprompt.backends.sam_arch import SAM_ARCHITECTURES, build_sam  # noqa: E402
from segprompt.devices import resolve_device, translate_out_of_memory  # noqa: E402
from segprompt.errors import SegpromptError  # noqa: E402
from segprompt.evaluation import MaskTarget, count_true, score_prompts  # noqa: E402
from segprompt.metrics import iou  # noqa: E402
from segprompt.precision import PRECISIONS, ieee_float32  # noqa: E402
from segprompt.prompts import Box, Points, Prompt  # noqa: E402


class Clock:
    """Wall-clock seconds of a call on ``device``: CUDA is synchronised before and after."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def seconds(self, function: Callable[[], object]) -> float:
        self.sync()
        start = time.perf_counter()
        function()
        self.sync()
        return time.perf_counter() - start

    def median_seconds(self, function: Callable[[], object], repeats: int) -> float:
        function()  # warm-up, not timed
        return statistics.median(self.seconds(function) for _ in range(max(1, repeats)))


class MemoryPeak:
    """Peak memory while the block runs: CUDA's allocator peak on a GPU, else the process RSS sampled every 5 ms."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb = 0.0

    def __enter__(self) -> "MemoryPeak":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
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
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()

    @property
    def label(self) -> str:
        return f"peak GPU memory {self.peak_mb:.0f} MiB" if self.device.type == "cuda" else f"peak RSS {self.peak_mb:.0f} MiB"


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


def make_clicks(gt: np.ndarray, count: int, seed: int = 1) -> list[Prompt]:
    """``count`` single include clicks inside the target (the prompts a batched ``predict_torch`` takes at once)."""
    rng = np.random.default_rng(seed)
    inside = np.argwhere(gt)[:, ::-1].astype(float)
    return [Prompt(points=Points(inside[rng.integers(len(inside))][None], [1])) for _ in range(count)]


def predictor_scores(predictor: SamPredictor, prompts: list[Prompt], gt: np.ndarray) -> np.ndarray:
    """The loop baseline: one SamPredictor.predict per prompt, IoU of the best-scored mask on the host."""
    ious = []
    for prompt in prompts:
        box = None if prompt.box is None else prompt.box.as_array()
        masks, scores, _ = predictor.predict(prompt.points.xy, prompt.points.labels, box, multimask_output=True)
        ious.append(iou(masks[int(np.argmax(scores))], gt))
    return np.array(ious)


def batched_predictor_scores(predictor: SamPredictor, clicks: list[Prompt], gt: torch.Tensor, batch: int) -> np.ndarray:
    """The batched baseline: ``predict_torch`` on ``batch`` single clicks at a time, IoU of the best mask on the device."""
    ious = []
    for start in range(0, len(clicks), batch):
        chunk = clicks[start : start + batch]
        xy = np.stack([prompt.points.xy for prompt in chunk])  # (B, 1, 2)
        coords = predictor.transform.apply_coords_torch(torch.as_tensor(xy, dtype=torch.float, device=predictor.device), predictor.original_size)
        labels = torch.ones(len(chunk), 1, dtype=torch.int, device=predictor.device)
        masks, scores, _ = predictor.predict_torch(coords, labels, multimask_output=True)
        best = masks[torch.arange(len(chunk), device=masks.device), scores.argmax(dim=1)]  # (B, H, W)
        inter = (best & gt).flatten(1).sum(1)
        union = (best | gt).flatten(1).sum(1)
        ious.append(inter.double() / union.clamp_min(1).double())
    return torch.cat(ious).cpu().numpy()


def mask_agreement(
    segmenter: SamSegmenter, reference, reduced: SamSegmenter, embedding, prompts: list[Prompt]
) -> tuple[float, float]:
    """``(mean, worst)`` IoU between the best masks from ``reference`` (float32) and ``embedding`` (``reduced``'s encoder)."""
    ious: list[np.ndarray] = []
    first = {b.indices[0]: b for b in segmenter.predict_batches(reference, prompts, chunk_size=1)}
    for batch in reduced.predict_batches(embedding, prompts, chunk_size=1):
        other = first[batch.indices[0]].masks
        inter, union = count_true(batch.masks & other), count_true(batch.masks | other)
        ious.append(torch.where(union == 0, 1.0, inter.double() / union.clamp_min(1).double()).flatten().cpu().numpy())
    values = np.concatenate(ious)
    return float(values.mean()), float(values.min())


def differences(first: np.ndarray, second: np.ndarray) -> str:
    """``"max |IoU difference| 2.1e-06 (15 of 512 > 1e-6)"``."""
    differ = np.abs(first - second)
    return f"max |IoU difference| {differ.max():.2e} ({int((differ > 1e-6).sum())} of {len(differ)} > 1e-6)"


def add_sam_image_arguments(parser: argparse.ArgumentParser, precision_help: str) -> None:
    """The flags every SAM benchmark shares: random-init architecture, device, precision, image size."""
    parser.add_argument("--model", default="vit_b", choices=sorted(SAM_ARCHITECTURES), help="random-init architecture")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help=precision_help)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sam_image_arguments(parser, "also time our encoder at this precision")
    parser.add_argument("--clicks", type=int, default=15, help="repeats of the one-click latency measurement")
    parser.add_argument("--encoder-repeats", type=int, default=None, help="timed encoder runs (default 5 on a GPU, 1 on the CPU)")
    parser.add_argument("--prompts", type=int, nargs="+", default=[64, 512], help="N values for batch scoring")
    parser.add_argument("--chunk-size", type=int, default=None, help="score_prompts chunk size (default: its choice)")
    parser.add_argument("--baseline-batch", type=int, default=64, help="clicks per predict_torch call of the batched baseline")
    parser.add_argument(
        "--exact", choices=["both", "no", "yes"], default="both", help="score_prompts exact= value(s) to measure"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    clock = Clock(device)
    model = build_sam(args.model, seed=0)
    segmenter = SamSegmenter(model=model, device=device)  # moves the shared model to the device
    predictor = SamPredictor(model)
    image, gt = make_scene(args.height, args.width)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, torch threads {torch.get_num_threads()}"
    print(f"SAM {args.model} (random init), image {args.height}x{args.width}, {device} ({name}), torch {torch.__version__}")
    print(f"{'measure':<40} {'ours':>12} {'baseline':>12} {'speed-up':>9}")

    def row(label: str, ours: float, base: float, unit: str) -> None:
        scale = 1000.0 if unit == "ms" else 1.0
        print(f"{label:<40} {ours * scale:>9.2f} {unit:<2} {base * scale:>9.2f} {unit:<2} {base / ours:>8.1f}x", flush=True)

    repeats = args.encoder_repeats or (5 if device.type == "cuda" else 1)
    base_set = clock.median_seconds(lambda: predictor.set_image(image), repeats)
    ours_set = clock.median_seconds(lambda: segmenter.embed(image), repeats)
    embedding = segmenter.embed(image)
    assert torch.equal(embedding.features, predictor.features)
    row("set_image / embed, fp32", ours_set, base_set, "s" if device.type == "cpu" else "ms")

    reduced = fast = None
    if args.precision != "fp32":
        fast = SamSegmenter(model=model, device=device, precision=args.precision)
        reduced_s = clock.median_seconds(lambda: fast.embed(image), repeats)
        reduced = fast.embed(image)
        row(f"embed, encoder in {args.precision} autocast", reduced_s, base_set, "s" if device.type == "cpu" else "ms")

    click = Prompt(points=Points([[args.width * 0.5, args.height * 0.5]], [1]))
    xy, labels = click.points.xy, click.points.labels
    row(
        "click: predict_best (median)",
        clock.median_seconds(lambda: segmenter.predict_best(embedding, click), args.clicks),
        clock.median_seconds(lambda: predictor.predict(xy, labels), args.clicks),
        "ms",
    )
    row(
        "click: predict, 3 masks (median)",
        clock.median_seconds(lambda: segmenter.predict(embedding, click), args.clicks),
        clock.median_seconds(lambda: predictor.predict(xy, labels), args.clicks),
        "ms",
    )

    target = MaskTarget(gt, None, gt.shape)
    gt_on_device = torch.from_numpy(gt).to(device)
    for count in args.prompts:
        prompts = make_prompts(gt, count)
        warm = prompts[: min(8, count)]
        score_prompts(segmenter, embedding, warm, target, chunk_size=args.chunk_size)
        predictor_scores(predictor, warm, gt)
        timed = {}
        for exact in {"both": (False, True), "no": (False,), "yes": (True,)}[args.exact]:
            with MemoryPeak(device) as peak:
                seconds = clock.seconds(
                    lambda exact=exact: timed.__setitem__(
                        exact, score_prompts(segmenter, embedding, prompts, target, exact=exact, chunk_size=args.chunk_size)
                    )
                )
            timed[exact] = (timed[exact], seconds, peak)
        with MemoryPeak(device) as base_peak:
            loop: list[np.ndarray] = []
            base_s = clock.seconds(lambda: loop.append(predictor_scores(predictor, prompts, gt)))
        base = loop[0]
        for exact, (ours, ours_s, peak) in timed.items():
            row(f"score {count} prompts, exact={exact}", ours_s, base_s, "s")
            print(f"  ours vs the loop: {differences(ours.iou, base)}, re-decoded exactly: {ours.n_exact}, "
                  f"{peak.label} (loop: {base_peak.label.split(' ', 1)[1]})", flush=True)  # fmt: skip
        print(f"  mean IoU of the baseline {base.mean():.4f}", flush=True)
        if device.type == "cuda":
            with ieee_float32(device):
                strict = predictor_scores(predictor, prompts, gt)
            print(f"  ours vs the loop without TF32 (IEEE float32): {differences(timed[min(timed)][0].iou, strict)}; "
                  f"the loop with PyTorch's default TF32 convolutions vs without: {differences(base, strict)}", flush=True)  # fmt: skip
        elif torch.get_num_threads() > 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            itself = predictor_scores(predictor, prompts, gt)
            torch.set_num_threads(threads)
            print(f"  SamPredictor against itself on 1 thread instead of {threads}: {differences(itself, base)}", flush=True)

        clicks = make_clicks(gt, count)
        score_prompts(segmenter, embedding, clicks[:8], target, chunk_size=args.chunk_size)
        batched_predictor_scores(predictor, clicks[:8], gt_on_device, args.baseline_batch)
        with MemoryPeak(device) as peak:
            ours_clicks: list = []
            ours_s = clock.seconds(lambda: ours_clicks.append(score_prompts(segmenter, embedding, clicks, target, chunk_size=args.chunk_size)))
        with MemoryPeak(device) as base_peak:
            batched: list[np.ndarray] = []
            base_s = clock.seconds(lambda: batched.append(batched_predictor_scores(predictor, clicks, gt_on_device, args.baseline_batch)))
        row(f"score {count} clicks vs predict_torch x{args.baseline_batch}", ours_s, base_s, "s")
        print(f"  ours vs predict_torch: {differences(ours_clicks[0].iou, batched[0])}, {peak.label} "
              f"(predict_torch: {base_peak.label.split(' ', 1)[1]})", flush=True)  # fmt: skip

        if reduced is not None:
            mean, worst = mask_agreement(segmenter, embedding, fast, reduced, prompts)
            print(f"  {args.precision} encoder, masks against fp32 over the {count} prompts: mean IoU {mean:.4f}, worst {worst:.4f}",
                  flush=True)  # fmt: skip


def run_reporting_errors(script: str, run: Callable[[argparse.Namespace], None], args: argparse.Namespace, advice: str) -> None:
    """``run(args)``; a bad device or a GPU out of memory (``advice``: what to lower) is one line and exit 2."""
    try:
        with translate_out_of_memory(advice):
            run(args)
    except SegpromptError as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    advice = "lower --chunk-size, --baseline-batch or --prompts, or use a smaller --height/--width"
    run_reporting_errors("bench_decoder", run, parse_args(argv), advice)


if __name__ == "__main__":
    main()
