"""Large images: tiled embeddings against the whole image downscaled into the encoder, on real small objects.

The image is a mosaic of ``dsb2018_nuclei`` fluorescence images (256 x 256 each, real nuclei with human
instance labels), ``--grid`` images per side (default 8: 2,048 x 2,048; 16: 4,096 x 4,096), drawn in a seeded
order (an image may repeat). ``--objects`` nuclei (seeded sample) are each prompted twice: by their tight box
and by one click at their most interior pixel. Two ways answer every prompt, measured in the same run:

* **downscaled** (the baseline): the backend as it is. SAM resizes the whole mosaic into its 1,024 px input,
  so a 2,048 px mosaic loses half of every nucleus' width (4,096 px: three quarters);
* **tiled**: :class:`segprompt.backends.tiled.TiledSegmenter` with ``--tile-shape`` / ``--halo``
  (``tile + 2 x halo = 1024`` feeds SAM its native resolution).

Printed: embedding time, ms per prompt, mean IoU with the human mask per prompt kind and object size
(area < 100 px, 100 - 400 px, > 400 px), and the ratios tiled / downscaled. Random-init weights
(``--model-type tiny`` without ``--checkpoint``) measure time only: their masks are noise.

Examples::

    python benchmarks/bench_tiling.py --checkpoint PATH/sam_vit_b_01ec64.pth               # SAM ViT-B, 2048 px
    python benchmarks/bench_tiling.py --checkpoint PATH/sam_vit_b_01ec64.pth --grid 16     # 4096 px
    python benchmarks/bench_tiling.py --backend classical                                   # zero weights
    python benchmarks/bench_tiling.py --model-type tiny --grid 3 --objects 12 --tile-shape 256 --halo 32  # smoke
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from segprompt.backends import create_from_options
from segprompt.backends.base import Segmenter
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.backends.tiled import TiledSegmenter
from segprompt.geometry import inner_distance
from segprompt.io import read_image, read_mask
from segprompt.prompts import Box, Points, Prompt

#: Object size bins, px: (label, lower bound inclusive, upper bound exclusive).
SIZE_BINS = (("< 100 px", 0, 100), ("100-400 px", 100, 400), ("> 400 px", 400, 1 << 62))
SIDE = 256


def mosaic(root: Path, grid: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(image (S, S, 3) uint8, labels (S, S) int64)`` of ``grid x grid`` fluorescence images, ``S = 256 grid``."""
    with open(root / "index.csv", newline="") as handle:
        ids = [r["id"] for r in csv.DictReader(handle) if r["size_wxh"] == f"{SIDE}x{SIDE}" and r["image_type"] == "fluorescence"]
    order = np.random.default_rng(seed).choice(len(ids), grid * grid, replace=grid * grid > len(ids))
    image = np.zeros((grid * SIDE, grid * SIDE, 3), np.uint8)
    labels = np.zeros((grid * SIDE, grid * SIDE), np.int64)
    offset = 0
    for k, index in enumerate(order):
        rows, cols = slice(k // grid * SIDE, (k // grid + 1) * SIDE), slice(k % grid * SIDE, (k % grid + 1) * SIDE)
        image[rows, cols] = read_image(root / "images" / f"{ids[index]}.png")[..., :3]
        label = read_mask(root / "masks" / f"{ids[index]}.png").astype(np.int64)
        labels[rows, cols] = np.where(label > 0, label + offset, 0)
        offset += int(label.max())
    return image, labels


def objects(labels: np.ndarray, count: int, seed: int) -> list[tuple[tuple[slice, slice], np.ndarray, Prompt, Prompt]]:
    """``count`` nuclei (seeded): ``(bounding slices, mask inside them, box prompt, click prompt)`` each."""
    found = ndi.find_objects(labels)
    present = [i for i, where in enumerate(found) if where is not None]
    chosen = np.random.default_rng(seed).choice(present, min(count, len(present)), replace=False)
    result = []
    for index in sorted(chosen):
        where = found[index]
        mask = labels[where] == index + 1
        rows, cols = np.unravel_index(int(np.argmax(inner_distance(mask))), mask.shape)
        box = Box.from_mask(mask)
        shift = np.array([where[1].start, where[0].start, where[1].start, where[0].start], float)
        box = Box(*(box.as_array() + shift))
        click = Points(np.array([[cols + where[1].start + 0.5, rows + where[0].start + 0.5]]), np.array([1]))
        result.append((where, mask, Prompt(box=box), Prompt(points=click)))
    return result


def make_backend(args: argparse.Namespace) -> Segmenter:
    if args.backend == "sam" and args.model_type == "tiny" and args.checkpoint is None:
        return SamSegmenter(model=build_sam("tiny", seed=0), device=args.device)
    options = {"model_type": args.model_type, "checkpoint": args.checkpoint, "device": args.device}
    return create_from_options(args.backend, **options)


def object_iou(prediction: np.ndarray, where: tuple[slice, slice], mask: np.ndarray) -> float:
    """IoU of a full-image prediction with a nucleus given inside its bounding ``where``."""
    inside = int((prediction[where] & mask).sum())
    union = int(prediction.sum()) + int(mask.sum()) - inside
    return inside / union if union else 0.0


def run(segmenter: Segmenter, image: np.ndarray, items: list) -> dict[str, object]:
    """Embed once, answer every box and click; figures of one way."""
    start = time.perf_counter()
    embedding = segmenter.embed(image)
    embed_seconds = time.perf_counter() - start
    ious: dict[str, list[float]] = {"box": [], "click": []}
    start = time.perf_counter()
    for where, mask, box, click in items:
        ious["box"].append(object_iou(segmenter.predict(embedding, box, multimask=False).best_mask, where, mask))
        ious["click"].append(object_iou(segmenter.predict(embedding, click, multimask=True).best_mask, where, mask))
    per_prompt = (time.perf_counter() - start) / (2 * len(items))
    return {"embed": embed_seconds, "prompt": per_prompt, "ious": {k: np.array(v) for k, v in ious.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_nuclei"))
    parser.add_argument("--grid", type=int, default=8, help="images per mosaic side (256 px each)")
    parser.add_argument("--objects", type=int, default=200, help="nuclei prompted (seeded sample)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="sam", help="any backend taking boxes and points (default sam)")
    parser.add_argument("--model-type", default="vit_b", help="SAM architecture; tiny without --checkpoint: random init")
    parser.add_argument("--checkpoint", default=None, help="SAM weights file (default: the official checkpoint)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile-shape", type=int, default=768, help="tiled: largest tile core, px")
    parser.add_argument("--halo", type=int, default=128, help="tiled: context around each tile, px")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    image, labels = mosaic(Path(args.data), args.grid, args.seed)
    items = objects(labels, args.objects, args.seed)
    backend = make_backend(args)
    tiled = TiledSegmenter(backend, args.tile_shape, args.halo)
    grid = tiled.grid(image.shape[:2])
    areas = np.array([int(mask.sum()) for _, mask, _, _ in items])
    print(f"== {image.shape[0]} x {image.shape[1]} mosaic of dsb2018_nuclei, {len(items)} nuclei (median {int(np.median(areas))} px); "
          f"{backend.name} {backend.model_id}; tiled: {len(grid)} tiles ({tiled.tiling}); torch threads {torch.get_num_threads()}")
    results = {"downscaled": run(backend, image, items), "tiled": run(tiled, image, items)}
    base, tile = results["downscaled"], results["tiled"]
    print(f"\n{'':<28} {'downscaled':>11} {'tiled':>11} {'tiled / downscaled':>19}")
    print(f"{'embedding, s':<28} {base['embed']:11.2f} {tile['embed']:11.2f} {tile['embed'] / base['embed']:19.2f}")
    print(f"{'per prompt, ms':<28} {base['prompt'] * 1000:11.1f} {tile['prompt'] * 1000:11.1f} {tile['prompt'] / base['prompt']:19.2f}")
    for kind in ("box", "click"):
        for name, low, high in (("all", 0, 1 << 62), *SIZE_BINS):
            keep = (areas >= low) & (areas < high)
            if not keep.any():
                continue
            down, up = base["ious"][kind][keep].mean(), tile["ious"][kind][keep].mean()
            label = f"IoU {kind}, {name} (n={int(keep.sum())})"
            print(f"{label:<28} {down:11.3f} {up:11.3f} {up - down:+19.3f}")


if __name__ == "__main__":
    main()
