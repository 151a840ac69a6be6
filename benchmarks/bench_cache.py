"""Re-opening a cached image embedding against computing it, measured in the same run, on any device.

Computes the embedding of one image with a random-init SAM (the encoder, what
``SamPredictor.set_image`` does), stores it through
:class:`segprompt.cache.EmbeddingCache` in a temporary folder, then re-opens
it several times and prints each figure with its ratio. Cached embeddings are
read to the host; on an accelerator the re-open is also timed with the upload
of the features to the device (what the first decoder call adds). On CUDA
every timing is bracketed by ``torch.cuda.synchronize()``, the encoder's first
run (warm-up) is not timed, and the peak GPU memory of the encoder is printed.
Example::

    python benchmarks/bench_cache.py                  # ViT-B, 768 x 1024, auto device
    python benchmarks/bench_cache.py --device cuda --model vit_h --precision bf16
    python benchmarks/bench_cache.py --model tiny
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import cv2
import torch
from skimage import data as skdata

BENCHMARKS = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCHMARKS.parent), str(BENCHMARKS)]

from bench_decoder import Clock, MemoryPeak, add_sam_image_arguments, run_reporting_errors  # noqa: E402
from segprompt.backends.sam import SamSegmenter  # noqa: E402
from segprompt.backends.sam_arch import build_sam  # noqa: E402
from segprompt.cache import EmbeddingCache  # noqa: E402
from segprompt.devices import resolve_device  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_sam_image_arguments(parser, "the encoder's precision")
    parser.add_argument("--reopens", type=int, default=10, help="repeats of the re-open measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    clock = Clock(device)
    segmenter = SamSegmenter(model=build_sam(args.model, seed=0), device=device, precision=args.precision)
    image = cv2.resize(skdata.astronaut(), (args.width, args.height), interpolation=cv2.INTER_AREA)
    segmenter.model_id  # fingerprint the weights once, outside the timings
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(folder)
        segmenter.embed(image)  # warm-up
        with MemoryPeak(device) as peak:
            compute_s = clock.seconds(lambda: segmenter.embed(image))
        computed = segmenter.embed(image)
        first_s = clock.seconds(lambda: cache.embed(segmenter, image))  # miss: encoder + write
        reopen = [clock.seconds(lambda: cache.embed(segmenter, image)) for _ in range(args.reopens)]
        reopen_s = statistics.median(reopen)
        reopened = cache.embed(segmenter, image)
        assert torch.equal(reopened.features.to(device), computed.features)
        upload_s = statistics.median(
            clock.seconds(lambda: cache.embed(segmenter, image).features.to(device)) for _ in range(args.reopens)
        )
        size_mb = cache.size_bytes() / 1e6
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, torch threads {torch.get_num_threads()}"
    print(f"SAM {args.model} (random init, {args.precision}), image {args.height}x{args.width}, {device} ({name})")
    print(f"compute embedding (encoder)       {compute_s * 1000:10.1f} ms  ({peak.label})")
    print(f"first open through cache (store)  {first_s * 1000:10.1f} ms  ({first_s / compute_s:.2f}x compute)")
    print(f"re-open from cache (median of {args.reopens}) {reopen_s * 1000:10.1f} ms  ({compute_s / reopen_s:.0f}x faster)")
    if device.type != "cpu":
        print(f"re-open and upload to {device}       {upload_s * 1000:10.1f} ms  ({compute_s / upload_s:.0f}x faster)")
    print(f"entry size                        {size_mb:10.1f} MB")


def main(argv: list[str] | None = None) -> None:
    run_reporting_errors("bench_cache", run, parse_args(argv), "lower --height/--width or use --precision bf16")


if __name__ == "__main__":
    main()
