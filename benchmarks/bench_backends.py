"""Per-image cost of the text and visual-reference backends on this machine.

For each backend (``clipseg``, ``owlv2-sam``, ``grounding-dino-sam``,
``seggpt``) and each size (``tiny``: the test models; ``full``: the released
architecture, :mod:`segprompt.testing`'s ``random_<model>("full")``, random
weights, nothing downloaded), the script times ``embed`` (the prompt-independent
part, once per image) and ``predict`` (once per prompt) on the 512 x 512
``skimage.data.astronaut()`` image, with a text prompt where the backend takes
text and a visual reference (``skimage.data.coffee()`` with a hand-drawn box
mask) otherwise. Detector backends use SAM ``tiny`` / ``vit_b`` (random init)
for their box-to-mask stage, and ask for the top 3 boxes with a 0 threshold so
that every prediction segments 3 boxes.

Each size runs one untimed warm-up ``embed`` + ``predict``, then ``--repeats``
timed ones; the table gives medians of the wall-clock seconds and of the
process CPU seconds (all threads; less sensitive to other jobs on a shared
machine than wall-clock). Run on a quiet machine:
``.venv/bin/python benchmarks/bench_backends.py [--sizes tiny full] [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt import testing  # noqa: E402
from segprompt.backends import Segmenter, create  # noqa: E402
from segprompt.backends.sam import SamSegmenter  # noqa: E402
from segprompt.backends.sam_arch import build_sam  # noqa: E402
from segprompt.prompts import Prompt, Text, VisualReference  # noqa: E402

SAM_TYPE = {"tiny": "tiny", "full": "vit_b"}


def _sam(size: str) -> SamSegmenter:
    return SamSegmenter(model=build_sam(SAM_TYPE[size], seed=0))


BUILDERS: dict[str, Callable[[str], Segmenter]] = {
    "clipseg": lambda size: create("clipseg", pretrained=testing.random_clipseg(size)),
    "owlv2-sam": lambda size: create(
        "owlv2-sam", pretrained=testing.random_owlv2(size), sam=_sam(size), box_threshold=0.0
    ),
    "grounding-dino-sam": lambda size: create(
        "grounding-dino-sam", pretrained=testing.random_grounding_dino(size), sam=_sam(size), box_threshold=0.0
    ),
    "seggpt": lambda size: create("seggpt", pretrained=testing.random_seggpt(size)),
}


def _prompt(segmenter: Segmenter) -> Prompt:
    from skimage import data

    if "text" in segmenter.accepts:
        return Prompt(text=Text("a person"))
    coffee = data.coffee()
    mask = np.zeros(coffee.shape[:2], bool)
    mask[100:300, 150:450] = True
    return Prompt(reference=VisualReference(coffee, mask))


def _parameters(segmenter: Segmenter) -> int:
    modules = [segmenter.model] + ([segmenter.sam.model] if hasattr(segmenter, "sam") else [])
    return sum(p.numel() for module in modules for p in module.parameters())


def measure(name: str, size: str, image: np.ndarray, repeats: int) -> dict[str, float]:
    segmenter = BUILDERS[name](size)
    prompt = _prompt(segmenter)
    segmenter.predict(segmenter.embed(image), prompt)  # warm-up: lazy initialisation, allocator
    times: dict[str, list[float]] = {"embed_s": [], "embed_cpu_s": [], "predict_s": [], "predict_cpu_s": []}
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        embedding = segmenter.embed(image)
        times["embed_s"].append(time.perf_counter() - wall)
        times["embed_cpu_s"].append(time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        segmenter.predict(embedding, prompt)
        times["predict_s"].append(time.perf_counter() - wall)
        times["predict_cpu_s"].append(time.process_time() - cpu)
    return {
        "params_m": _parameters(segmenter) / 1e6,
        **{key: statistics.median(values) for key, values in times.items()},
        "prompt": "text" if prompt.text is not None else "reference",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--sizes", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from skimage import data

    image = data.astronaut()
    torch.set_grad_enabled(False)
    print(f"image {image.shape[1]}x{image.shape[0]}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = (
        f"{'backend':<20} {'size':<5} {'params (M)':>10} {'prompt':<9} "
        f"{'embed (s)':>9} {'CPU (s)':>8} {'predict (s)':>11} {'CPU (s)':>8}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for name in args.backends:
            row = measure(name, size, image, args.repeats)
            print(
                f"{name:<20} {size:<5} {row['params_m']:>10.1f} {row['prompt']:<9} "
                f"{row['embed_s']:>9.3f} {row['embed_cpu_s']:>8.3f} {row['predict_s']:>11.3f} {row['predict_cpu_s']:>8.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
