"""Per-image cost of every backend on this machine: the encoder (once per image) and one prompt.

Backends: SAM (the baseline), SAM 2.1 (full size: each of tiny, small,
base+, large), SAM-HQ, EdgeTAM, SAM 3's tracker, SAM 3, the SAM 3 routes
``sam3-refine`` (text + a point: SAM 3 proposes, the tracker refines, one ViT
pass) and ``sam3-reference`` (a reference from another image -> OWLv2's
image-guided boxes -> SAM 3's exemplars), and the text / visual-reference
backends ``clipseg``, ``owlv2-sam``, ``grounding-dino-sam``, ``seggpt``.

Sizes: ``tiny`` (the test models) and ``full`` (the released architecture,
:mod:`segprompt.testing`'s ``random_<model>("full")``, random weights, nothing
downloaded). Each row times ``embed`` (the prompt-independent part, once per
image) and ``predict`` (once per prompt) on the 512 x 512
``skimage.data.astronaut()`` image with the prompt the backend is made for:
one include point at (300, 200) for the point backends (SAM family, the
tracker), a text prompt where the backend takes text (``sam3-refine``: the
text *and* the point), a visual reference (``skimage.data.coffee()`` with a
hand-drawn box mask) otherwise. Detector backends use SAM ``tiny`` / ``vit_b``
(random init) for their box stage and ask for the top 3 boxes with a 0
threshold, so every prediction segments 3 boxes.

Each row runs one untimed warm-up ``embed`` + ``predict``, then ``--repeats``
timed ones, and gives medians of the wall-clock seconds and of the process CPU
seconds (all threads; less sensitive to other jobs on a shared machine), and
both as ratios to SAM of the same size measured in the same run (ViT-B at
full size). Before building a full-size model the script compares an estimate
of its memory (weights + activations, :data:`FULL_SIZE_GB`) with the memory
available now and skips it, saying so, when it would not fit.

On a 2-core CPU the full-size SAM 3 rows (a 0.45 B-parameter ViT at 1008 x 1008, plus OWLv2 at 960 for
``sam3-reference``) take minutes per ``embed``; ``--backends`` picks rows. Run on a quiet machine (the lead's
command)::

    .venv/bin/python benchmarks/bench_backends.py --sizes tiny full --repeats 3

A quick check of the script itself: ``--sizes tiny --repeats 1``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from segprompt import testing  # noqa: E402
from segprompt.backends import Segmenter, create  # noqa: E402
from segprompt.backends.sam import SamSegmenter  # noqa: E402
from segprompt.backends.sam_arch import build_sam  # noqa: E402
from segprompt.compose import ComposedSegmenter  # noqa: E402
from segprompt.prompts import Points, Prompt, Text, VisualReference  # noqa: E402

SAM_TYPE = {"tiny": "tiny", "full": "vit_b"}
#: The baseline every row is compared with: SAM of the same size.
BASELINE = "sam"
#: The point prompt of the point backends, ``(x, y)`` on the 512 x 512 image.
POINT = (300.0, 200.0)

#: Estimated peak memory (GB) of each full-size row: fp32 weights (parameters x 4 B, the released
#: models' sizes) plus the activations of one image at the model's input size. SAM 3's rows hold the
#: detector (0.85 B parameters) and, for the routes, the tracker's own copy of the ViT too.
FULL_SIZE_GB = {
    "sam": 1.5, "sam2-tiny": 1.0, "sam2-small": 1.2, "sam2-base-plus": 1.8, "sam2-large": 3.0, "sam-hq": 1.8,
    "edgetam": 0.8, "sam3-tracker": 4.0, "sam3": 6.0, "sam3-refine": 8.5, "sam3-reference": 9.5,
    "clipseg": 1.0, "owlv2-sam": 3.0, "grounding-dino-sam": 3.0, "seggpt": 3.0,
}  # fmt: skip


def _sam(size: str) -> SamSegmenter:
    return SamSegmenter(model=build_sam(SAM_TYPE[size], seed=0))


def _sam3_route(size: str, reference: bool) -> Segmenter:
    """``sam3-refine`` / ``sam3-reference`` on random weights: detector and tracker sharing one ViT, as released."""
    detector, tracker = testing.random_sam3_pair(size)
    sam3, sam3_tracker = create("sam3", pretrained=detector), create("sam3-tracker", pretrained=tracker)
    exemplars = create("owlv2-sam", pretrained=testing.random_owlv2(size), sam=sam3_tracker) if reference else None
    route = ComposedSegmenter(sam3, sam3_tracker, exemplar_proposer=exemplars)
    assert route.shares_backbone
    return route


@dataclass(frozen=True)
class Case:
    """A row: how to build the backend at a size, the prompt it gets, and the sizes it has a row at."""

    build: Callable[[str], Segmenter]
    prompt: str = "point"
    sizes: tuple[str, ...] = ("tiny", "full")


def _sam2(variant: str) -> Callable[[str], Segmenter]:
    return lambda size: create("sam2", pretrained=testing.random_sam2(size, variant=variant))


CASES: dict[str, Case] = {
    "sam": Case(_sam),
    # the tiny SAM 2 is one architecture: one tiny row; each released size at full size
    "sam2-tiny": Case(_sam2("tiny"), sizes=("full",)),
    "sam2-small": Case(_sam2("small"), sizes=("full",)),
    "sam2-base-plus": Case(_sam2("base-plus"), sizes=("full",)),
    "sam2-large": Case(_sam2("large")),
    "sam-hq": Case(lambda size: create("sam-hq", pretrained=testing.random_sam_hq(size))),
    "edgetam": Case(lambda size: create("edgetam", pretrained=testing.random_edgetam(size))),
    "sam3-tracker": Case(lambda size: create("sam3-tracker", pretrained=testing.random_sam3_tracker(size))),
    "sam3": Case(lambda size: create("sam3", pretrained=testing.random_sam3(size)), "text"),
    "sam3-refine": Case(lambda size: _sam3_route(size, reference=False), "text+point"),
    "sam3-reference": Case(lambda size: _sam3_route(size, reference=True), "reference"),
    "clipseg": Case(lambda size: create("clipseg", pretrained=testing.random_clipseg(size)), "text"),
    "owlv2-sam": Case(lambda size: create(
        "owlv2-sam", pretrained=testing.random_owlv2(size), sam=_sam(size), box_threshold=0.0
    ), "text"),
    "grounding-dino-sam": Case(lambda size: create(
        "grounding-dino-sam", pretrained=testing.random_grounding_dino(size), sam=_sam(size), box_threshold=0.0
    ), "text"),
    "seggpt": Case(lambda size: create("seggpt", pretrained=testing.random_seggpt(size)), "reference"),
}  # fmt: skip


def make_prompt(kind: str) -> Prompt:
    """The prompt of a row (see the module docstring)."""
    from skimage import data

    text, point = Text("a person"), Points.from_lists([POINT])
    if kind == "reference":
        coffee = data.coffee()
        mask = np.zeros(coffee.shape[:2], bool)
        mask[100:300, 150:450] = True
        return Prompt(reference=VisualReference(coffee, mask))
    return {"point": Prompt(points=point), "text": Prompt(text=text), "text+point": Prompt(text=text, points=point)}[kind]


def _parameters(segmenter: Segmenter) -> int:
    """Parameters of every distinct model the backend holds (a shared SAM counted once)."""
    seen: dict[int, torch.nn.Module] = {}
    pending: list[object] = [segmenter]
    while pending:
        item = pending.pop()
        model = getattr(item, "model", None)
        if isinstance(model, torch.nn.Module):
            seen[id(model)] = model
        pending += [getattr(item, role) for role in ("sam", "proposer", "refiner", "exemplar_proposer") if getattr(item, role, None)]
    return sum(p.numel() for model in seen.values() for p in model.parameters())


def measure(segmenter: Segmenter, kind: str, image: np.ndarray, repeats: int) -> dict[str, float | str]:
    prompt = make_prompt(kind)
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
        "prompt": kind,
    }


def fits(name: str, size: str) -> tuple[bool, str]:
    """Whether the row's estimated memory fits in what is available now; the reason when not."""
    if size != "full":
        return True, ""
    needed, available = FULL_SIZE_GB[name], psutil.virtual_memory().available / 1e9
    if needed > 0.8 * available:  # leave the rest to the other jobs on a shared machine
        return False, f"skipped: needs about {needed:.1f} GB, {available:.1f} GB available"
    return True, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--sizes", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    from skimage import data

    image = data.astronaut()
    torch.set_grad_enabled(False)
    names = [BASELINE] + [name for name in args.backends if name != BASELINE]
    print(f"image {image.shape[1]}x{image.shape[0]}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{psutil.virtual_memory().available / 1e9:.1f} GB available; ratios: to {BASELINE} of the same size")  # fmt: skip
    header = (
        f"{'backend':<20} {'size':<5} {'params (M)':>10} {'prompt':<11} "
        f"{'embed (s)':>9} {'CPU (s)':>8} {'x sam':>6} {'predict (s)':>11} {'CPU (s)':>8} {'x sam':>6}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        baseline: dict[str, float | str] | None = None
        for name in names:
            if size not in CASES[name].sizes:
                continue
            ok, reason = fits(name, size)
            if not ok:
                print(f"{name:<20} {size:<5} {reason}", flush=True)
                continue
            row = measure(CASES[name].build(size), CASES[name].prompt, image, args.repeats)
            baseline = row if name == BASELINE else baseline
            ratio = {key: (float(row[key]) / float(baseline[key]) if baseline else float("nan"))
                     for key in ("embed_s", "predict_s")}  # fmt: skip
            print(
                f"{name:<20} {size:<5} {row['params_m']:>10.1f} {row['prompt']:<11} "
                f"{row['embed_s']:>9.3f} {row['embed_cpu_s']:>8.3f} {ratio['embed_s']:>6.2f} "
                f"{row['predict_s']:>11.3f} {row['predict_cpu_s']:>8.3f} {ratio['predict_s']:>6.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
