"""``segprompt demo``: the classical backend on scikit-image's bundled sample images, offline.

For every prompt file ``<name>.json`` in the prompts folder (default: the
repository's ``examples/prompts``), the image ``skimage.data.<name>()`` (only
images shipped inside scikit-image's wheel, nothing is downloaded) is
segmented with the classical backend. ``DIR`` receives ``<name>_mask.png``
(0/255), ``<name>_overlay.png`` (mask, outline and prompt) and ``summary.json``
(per image: prompt kinds, mask area, score and how the mask was made), all
written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..backends import create
from ..errors import SegpromptError
from ..atomic import atomic_write_text, check_writable_dir, write_files
from ..io import image_bytes, mask_bytes, overlay, to_rgb_uint8
from .progress import tqdm_progress
from .segment import read_prompt_file

#: Sample images bundled in scikit-image's wheel (``skimage/data/*.png|jpg``), loadable offline.
BUNDLED_IMAGES = ("astronaut", "camera", "chelsea", "coffee", "coins", "rocket", "horse", "moon", "page", "text")
DEFAULT_PROMPTS = Path(__file__).resolve().parents[2] / "examples" / "prompts"


def load_sample_image(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as ``(H, W, 3)`` uint8 RGB; only the bundled images are allowed."""
    import skimage.data

    if name not in BUNDLED_IMAGES:
        raise SegpromptError(f"no bundled scikit-image sample named {name!r}; available: {', '.join(BUNDLED_IMAGES)}")
    return to_rgb_uint8(getattr(skimage.data, name)())


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="segment scikit-image's sample images with the classical backend (offline)",
        description="Segment scikit-image's bundled sample images (nothing is downloaded) with the classical backend, "
        "one per prompt file NAME.json in --prompts (NAME = the skimage.data sample). Writes NAME_mask.png (0/255), "
        "NAME_overlay.png (the mask, its outline and the prompt) and summary.json (per image: prompt kinds, mask "
        "area, score and how the mask was made) to --out.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS, metavar="DIR", help="folder of <name>.json prompts")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prompt_files = sorted(Path(args.prompts).glob("*.json")) if Path(args.prompts).is_dir() else []
    if not prompt_files:
        raise SegpromptError(f"{args.prompts}: no prompt files (<name>.json) found")
    check_writable_dir(args.out)
    segmenter = create("classical")
    summary: dict[str, dict[str, object]] = {}
    with tqdm_progress("image") as progress:
        for done, path in enumerate(prompt_files):
            name = path.stem
            progress(done, len(prompt_files), name)
            image = load_sample_image(name)
            prompt = read_prompt_file(path)
            prediction = segmenter.segment(image, prompt)
            mask = prediction.best_mask
            mask_path, overlay_path = args.out / f"{name}_mask.png", args.out / f"{name}_overlay.png"
            drawn = overlay(image, mask, prompt=prompt)
            write_files({mask_path: mask_bytes(mask_path, mask), overlay_path: image_bytes(overlay_path, drawn)})
            summary[name] = {
                "prompt": sorted(prompt.kinds()),
                "image_hw": list(image.shape[:2]),
                "mask_pixels": int(mask.sum()),
                "score": round(float(prediction.scores[prediction.best]), 4),
                "method": prediction.method,
            }
        progress(len(prompt_files), len(prompt_files), "done")
    atomic_write_text(args.out / "summary.json", json.dumps({"backend": segmenter.name, "images": summary}, indent=1) + "\n")
    print(f"{args.out}: {len(summary)} masks and overlays, summary.json", file=sys.stderr)
    return 0
