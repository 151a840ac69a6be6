"""Re-opening a cached image embedding against computing it, measured in the same run.

Computes the embedding of one image with a random-init SAM (the encoder, what
``SamPredictor.set_image`` does), stores it through
:class:`segprompt.cache.EmbeddingCache` in a temporary folder, then re-opens
it several times and prints each figure with its ratio. Example::

    python benchmarks/bench_cache.py                  # ViT-B, 768 x 1024
    python benchmarks/bench_cache.py --model tiny
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import cv2
import torch
from skimage import data as skdata

from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import SAM_ARCHITECTURES, build_sam
from segprompt.cache import EmbeddingCache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", choices=sorted(SAM_ARCHITECTURES), help="random-init architecture")
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--reopens", type=int, default=10, help="repeats of the re-open measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    segmenter = SamSegmenter(model=build_sam(args.model, seed=0))
    image = cv2.resize(skdata.astronaut(), (args.width, args.height), interpolation=cv2.INTER_AREA)
    segmenter.model_id  # fingerprint the weights once, outside the timings
    with tempfile.TemporaryDirectory() as folder:
        cache = EmbeddingCache(folder)
        start = time.perf_counter()
        computed = segmenter.embed(image)
        compute_s = time.perf_counter() - start
        start = time.perf_counter()
        stored = cache.embed(segmenter, image)  # miss: encoder + write
        first_s = time.perf_counter() - start
        times = []
        for _ in range(args.reopens):
            start = time.perf_counter()
            reopened = cache.embed(segmenter, image)
            times.append(time.perf_counter() - start)
        reopen_s = statistics.median(times)
        assert torch.equal(reopened.features, computed.features)
        assert torch.equal(stored.features, computed.features)
        size_mb = cache.size_bytes() / 1e6
    print(f"SAM {args.model} (random init), image {args.height}x{args.width}, torch threads {torch.get_num_threads()}")
    print(f"compute embedding (encoder)       {compute_s * 1000:10.1f} ms")
    print(f"first open through cache (store)  {first_s * 1000:10.1f} ms  ({first_s / compute_s:.2f}x compute)")
    print(f"re-open from cache (median of {args.reopens}) {reopen_s * 1000:10.1f} ms  ({compute_s / reopen_s:.0f}x faster)")
    print(f"entry size                        {size_mb:10.1f} MB")


if __name__ == "__main__":
    main()
