"""Volumes: per-slice propagation time per backend, memory reading a large lazy Zarr volume, IoU per slice on real texture.

Three parts, each printing figures and ratios to a baseline measured in the same run:

``speed``
    Per-slice propagation time on the synthetic ellipsoid volume
    (:func:`segprompt.volume.synthetic.ellipsoid_volume`), prompted with the
    object's box on the middle slice, then one step on *every* other slice
    (random-init weights would stop a run anywhere, so projection steps are
    prompted from the true mask of the neighbouring slice and the video model
    runs without a stop rule: every backend does the same slices):
    ``classical`` (the baseline, with and without the box re-check), a
    random-init SAM (projection: mask + box, with the re-check; first pass
    with the encoder, then again with every slice's embedding in memory) and
    a random-init SAM 2.1 video model (memory propagation, encoder included).
    Ratios are to ``classical``.
``memory``
    Peak resident memory reading a ``--lazy-gb`` GB Zarr volume (uint8
    noise, ``(N, 2048, 2048)``, one chunk per slice, written slice by slice to
    a temporary folder) slice by slice through
    :class:`~segprompt.volume.reader.SliceImages`, in a fresh process, against
    a fresh process that opens the volume and reads nothing (the baseline:
    the interpreter and the imports).
``nuclei``
    IoU per slice on real texture: ``dsb2018_nuclei`` images stacked as 21
    windows moving by a seeded random walk of up to 2 px per slice
    (:func:`segprompt.volume.synthetic.shifted_stack`, ground truth moved the
    same way; the shape does not change between slices, so this measures
    tracking, not 3-D shape), the median-size nucleus that stays inside every
    window prompted by its ground-truth box on the middle slice, ``classical``
    propagating both ways. The baseline: the middle slice's mask copied to
    every slice (what no propagation gives under this motion).

Examples::

    python benchmarks/bench_volume.py            # all parts: tiny random-init SAM and SAM 2 video, 2 GiB volume
    python benchmarks/bench_volume.py --parts speed --sam-model vit_b --sam2-size full --sam2-variant tiny   # released sizes
    python benchmarks/bench_volume.py --shape 6,64,64 --sam2-frames 4 --lazy-gb 0.02 --nuclei-images 1 --slices 5  # smoke
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

from segprompt.backends import create
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import SAM_ARCHITECTURES, build_sam
from segprompt.metrics import iou
from segprompt.prompts import Box, Prompt
from segprompt.volume.embeddings import SliceEmbeddings, plain_embed
from segprompt.volume.propagation import ProjectionPropagator, Propagator, SliceResult, StopRule
from segprompt.volume.reader import SliceImages, Volume
from segprompt.volume.session import VolumeSession
from segprompt.volume.synthetic import ellipsoid_volume, shifted_stack

PARTS = ("speed", "memory", "nuclei")
#: Side of the lazy volume's slices.
LAZY_SIDE = 2048


def projection_time(propagator: Propagator, truth: np.ndarray, middle: int) -> tuple[float, int, float]:
    """``(seconds per slice, slices, seconds of the prompted slice)`` of the box prompt on ``middle`` and one
    propagation step on every other slice, each prompted from the true mask of its neighbour towards ``middle``.

    Random-init weights give arbitrary (often empty) masks; prompting from the truth keeps every backend doing
    the same work on the same slices, which is what a cost comparison needs. Slices whose neighbour holds no
    object are left out: a propagation stops before them.
    """
    start = time.perf_counter()
    propagator.segment(1, middle, Prompt(box=Box.from_mask(truth[middle])))
    prompted = time.perf_counter() - start
    # A step from an empty neighbour is no step: propagation has stopped there (the ellipsoid's end slices are empty).
    steps = [(z, z - 1 if z > middle else z + 1) for z in range(truth.shape[0]) if z != middle]
    steps = [(z, neighbour) for z, neighbour in steps if truth[neighbour].any()]
    start = time.perf_counter()
    for z, neighbour in steps:
        propagator.step(z, {1: SliceResult(truth[neighbour], 1.0)}, reverse=z < middle)
    return (time.perf_counter() - start) / len(steps), len(steps), prompted


def video_time(propagator: Propagator, truth: np.ndarray, middle: int) -> tuple[float, int, float]:
    """The same figures for a memory model, propagating up and down through every slice (no stop rule)."""
    session = VolumeSession(propagator, StopRule(min_area=0, min_score=None, min_iou=None, min_confirmation=None))
    start = time.perf_counter()
    session.prompt(1, middle, Prompt(box=Box.from_mask(truth[middle])))
    prompted = time.perf_counter() - start
    start = time.perf_counter()
    runs = session.propagate(middle)
    slices = sum(len(run.slices) for run in runs)
    return (time.perf_counter() - start) / slices, slices, prompted


def speed(args: argparse.Namespace) -> None:
    volume, truth, _ = ellipsoid_volume(args.shape)
    images = SliceImages(Volume(volume, "ZYX"))
    middle = args.shape[0] // 2
    print(f"\n== speed: ellipsoid volume {args.shape}, box on slice {middle}, then every other slice; "
          f"torch threads {torch.get_num_threads()}")
    rows: list[tuple[str, float, int, str]] = []
    classical = create("classical")
    base, slices, _ = projection_time(ProjectionPropagator(classical, SliceEmbeddings(classical, images)), truth, middle)
    rows.append(("classical, projection (mask + box) + box re-check", base, slices, ""))
    per, slices, _ = projection_time(
        ProjectionPropagator(classical, SliceEmbeddings(classical, images), confirm=False), truth, middle
    )
    rows.append(("classical, projection (mask + box), no re-check", per, slices, ""))

    sam = SamSegmenter(model=build_sam(args.sam_model, seed=0))
    embeddings = SliceEmbeddings(sam, images, embed_image=plain_embed, in_memory=len(images))
    per, slices, prompted = projection_time(ProjectionPropagator(sam, embeddings), truth, middle)
    rows.append((f"sam {args.sam_model} (random init), first pass (encoder + decoder + re-check)", per, slices,
                 f"prompted slice {prompted * 1000:.0f} ms"))
    per, slices, _ = projection_time(ProjectionPropagator(sam, embeddings), truth, middle)
    rows.append((f"sam {args.sam_model}, embeddings in memory (decoder + re-check)", per, slices, ""))

    from segprompt.testing import random_sam2_video
    from segprompt.volume.video import Sam2VideoPropagator

    frames = min(args.sam2_frames or args.shape[0], args.shape[0])
    first = max(0, middle - frames // 2)
    video_images = SliceImages(Volume(volume[first : first + frames], "ZYX"))
    pretrained = random_sam2_video(args.sam2_size, seed=0, variant=args.sam2_variant)
    video = Sam2VideoPropagator(video_images, pretrained=pretrained, embed_image=plain_embed)
    per, slices, prompted = video_time(video, truth[first : first + frames], middle - first)
    size = "tiny (256 px frames)" if args.sam2_size == "tiny" else f"{args.sam2_variant} (1024 px frames)"
    rows.append((f"sam2 video memory, {size}, random init, {frames} frames", per, slices, f"prompted slice {prompted * 1000:.0f} ms"))

    print(f"{'method':<72} {'ms/slice':>9} {'slices':>7} {'x classical':>12}")
    for name, per, slices, note in rows:
        print(f"{name:<72} {per * 1000:9.1f} {slices:7d} {per / base:12.2f}  {note}")


#: The child process: opens the volume and reads every slice (argv[2] = 1) or none, then prints its peak RSS.
#: VmHWM (Linux), not getrusage: ru_maxrss survives exec and would start at the parent's size at fork.
_READER = textwrap.dedent("""
    import sys, time
    from segprompt.volume.reader import SliceImages, open_volume
    images = SliceImages(open_volume(sys.argv[1]))
    start = time.perf_counter()
    checksum = 0
    for index in range(len(images) if int(sys.argv[2]) else 0):
        checksum += int(images[index][::97, ::97, 0].sum())
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    print(peak, seconds, len(images), checksum)
""")


def memory(args: argparse.Namespace) -> None:
    import zarr

    count = max(2, round(args.lazy_gb * 2**30 / LAZY_SIDE**2))
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        path = Path(folder) / "lazy.zarr"
        array = zarr.create_array(str(path), shape=(count, LAZY_SIDE, LAZY_SIDE), chunks=(1, LAZY_SIDE, LAZY_SIDE), dtype=np.uint8)
        rng = np.random.default_rng(0)
        start = time.perf_counter()
        for index in range(count):  # written slice by slice: this process never holds the volume either
            array[index] = rng.integers(0, 256, (LAZY_SIDE, LAZY_SIDE), dtype=np.uint8)
        written = time.perf_counter() - start
        disk = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        size = count * LAZY_SIDE**2
        print(f"\n== memory: lazy Zarr volume {count} x {LAZY_SIDE} x {LAZY_SIDE} uint8 = {size / 2**30:.2f} GiB "
              f"({disk / 2**30:.2f} GiB on disk, written in {written:.0f} s)")
        results = {}
        for read in (0, 1):
            out = subprocess.run([sys.executable, "-c", _READER, str(path), str(read)], capture_output=True, text=True, check=True)
            peak, seconds, slices, _ = out.stdout.split()
            results[read] = (int(peak), float(seconds), int(slices))
    (base, _, _), (peak, seconds, slices) = results[0], results[1]
    plane = LAZY_SIDE**2
    print(f"peak RSS, open only (baseline)        {base / 2**20:9.1f} MiB")
    print(f"peak RSS, every slice read            {peak / 2**20:9.1f} MiB  (+{(peak - base) / 2**20:.1f} MiB over the baseline "
          f"= {(peak - base) / size:.4f} of the volume, {(peak - base) / plane:.1f} slices; RGB of one slice is 3)")
    print(f"read time per slice                   {seconds / slices * 1000:9.1f} ms over {slices} slices")


def nucleus_stack(root: Path, row: dict[str, str], n_slices: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The shifted stack of one image, its median-size nucleus staying inside every window, and that nucleus's id."""
    from segprompt.io import read_image, read_mask

    image, labels = read_image(root / "images" / f"{row['id']}.png"), read_mask(root / "masks" / f"{row['id']}.png")
    stack, truth, _ = shifted_stack(image, labels, n_slices=n_slices, max_step=2, seed=0)
    inside = [int(i) for i in np.unique(labels) if i and all((t == i).any() for t in truth)
              and not any((t[[0, -1]] == i).any() or (t[:, [0, -1]] == i).any() for t in truth)]
    if not inside:
        return None
    sizes = [int((labels == i).sum()) for i in inside]
    return stack, truth, inside[int(np.argsort(sizes)[len(sizes) // 2])]


def nuclei(args: argparse.Namespace) -> None:
    root = Path(args.data)
    if not (root / "index.csv").is_file():
        print(f"\n== nuclei: skipped, {root} is not the dsb2018_nuclei folder (--data)")
        return
    rows = list(csv.DictReader(open(root / "index.csv", encoding="utf-8")))[: args.nuclei_images]
    middle = args.slices // 2
    classical = create("classical")
    print(f"\n== nuclei: classical on {len(rows)} dsb2018_nuclei images, {args.slices} slices shifted by <= 2 px each, "
          f"box of the median nucleus on slice {middle}; IoU per slice (baseline: the slice-{middle} mask copied)")
    summary = {"re-check": [], "no re-check": [], "copied": []}
    for row in rows:
        found = nucleus_stack(root, row, args.slices)
        if found is None:
            print(f"{row['id'][:12]}: no nucleus stays inside every window")
            continue
        stack, truth, target = found
        gt = truth == target
        for name, confirm in (("re-check", True), ("no re-check", False)):
            images = SliceImages(Volume(stack, "ZYXC" if stack.ndim == 4 else "ZYX"))
            session = VolumeSession(ProjectionPropagator(classical, SliceEmbeddings(classical, images), confirm=confirm))
            session.prompt(1, middle, Prompt(box=Box.from_mask(gt[middle])))
            runs = session.propagate(middle)
            ious = np.array([iou(session.plane(z) == 1, gt[z]) for z in range(args.slices)])
            summary[name].append(ious)
            stops = "; ".join(f"{r.direction}: {r.reason}" for r in runs)
            print(f"{row['id'][:12]} {row['image_type']:<14} {int(gt[middle].sum()):5d} px  {name:<12} "
                  f"mean {ious.mean():.3f} min {ious.min():.3f}  [{' '.join(f'{v:.2f}' for v in ious)}]  ({stops})")
            if confirm:
                copied = np.array([iou(session.plane(middle) == 1, gt[z]) for z in range(args.slices)])
                summary["copied"].append(copied)
    for name, values in summary.items():
        if values:
            stacked = np.stack(values)
            print(f"{name:<12} mean IoU over {len(values)} stacks: {stacked.mean():.3f} (slice {middle}: "
                  f"{stacked[:, middle].mean():.3f}, farthest slices: {stacked[:, [0, -1]].mean():.3f})")


def parse_shape(value: str) -> tuple[int, int, int]:
    parts = tuple(int(v) for v in value.split(","))
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"--shape {value!r}: expected Z,Y,X")
    return parts  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--shape", type=parse_shape, default=(40, 256, 256), help="speed: ellipsoid volume Z,Y,X")
    parser.add_argument("--sam-model", default="tiny", choices=sorted(SAM_ARCHITECTURES), help="speed: random-init SAM")
    parser.add_argument("--sam2-size", default="tiny", choices=("tiny", "full"), help="speed: random-init SAM 2 video size")
    parser.add_argument("--sam2-variant", default="tiny", help="speed: SAM 2.1 variant of the full size (tiny ... large)")
    parser.add_argument("--sam2-frames", type=int, default=None, help="speed: frames for SAM 2 (default all slices)")
    parser.add_argument("--lazy-gb", type=float, default=2.0, help="memory: size of the lazy volume, GiB")
    parser.add_argument("--tmp", default=None, help="memory: folder for the temporary volume (default the system's)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018_nuclei"))
    parser.add_argument("--nuclei-images", type=int, default=12, help="nuclei: first N images of dsb2018_nuclei")
    parser.add_argument("--slices", type=int, default=21, help="nuclei: slices per shifted stack")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for part in args.parts:
        {"speed": speed, "memory": memory, "nuclei": nuclei}[part](args)


if __name__ == "__main__":
    main()
