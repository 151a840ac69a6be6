"""Click-to-preview latency of the napari widget.

For each backend, the script opens a napari viewer with the ``segprompt``
widget docked, computes the embedding through the widget's background worker
(timed), re-opens the same image (timed: the embedding cache answers), then
adds ``--clicks`` single points at seeded random positions and times each one
from ``Points.add`` until the preview layer holds the new mask (the widget's
``preview_updated`` signal). That span includes the widget's
``DEBOUNCE_MS`` debounce, the decoder, and the preview-layer update; the
decoder alone (``AnnotationSession.update``) is timed separately.

Backends: ``classical`` (when registered) and a random-init SAM ViT-B (the real
architecture and cost, meaningless masks; no checkpoint is downloaded).

Needs an X display with OpenGL: ``xvfb-run -a .venv/bin/python benchmarks/bench_napari_latency.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _wait(signal, timeout_s: float = 600.0) -> None:
    """Run the Qt event loop until ``signal`` fires."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(loop.quit)


def _timed_embedding(widget) -> float:
    from qtpy.QtWidgets import QApplication

    started = time.perf_counter()
    widget.compute_embedding()
    _wait(widget.embedding_ready)
    elapsed = time.perf_counter() - started
    while widget.worker is not None:  # the worker's "finished" follows "returned"
        QApplication.processEvents()
    return elapsed


def measure(label: str, segmenter, image: np.ndarray, clicks: int, seed: int) -> dict:
    import napari

    from napari_plugin._widget import DEBOUNCE_MS, SegpromptWidget

    viewer = napari.Viewer(show=False)
    viewer.add_image(image, name="image", rgb=image.ndim == 3)
    widget = SegpromptWidget(viewer)
    viewer.window.add_dock_widget(widget, name="segprompt")
    widget.use_segmenter(segmenter)
    first_embed = _timed_embedding(widget)
    reopen = _timed_embedding(widget)

    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    total, decoder = [], []
    for _ in range(clicks):
        widget.clear_prompts()
        row, col = rng.uniform(0, height - 1), rng.uniform(0, width - 1)
        started = time.perf_counter()
        widget.points_layer.add([[row, col]])
        _wait(widget.preview_updated)
        total.append(time.perf_counter() - started)
        started = time.perf_counter()
        widget.session.update(widget.session.prompt)
        decoder.append(time.perf_counter() - started)
    viewer.close()
    return {
        "backend": label,
        "image_hw": [height, width],
        "first_embedding_s": round(first_embed, 3),
        "reopen_from_cache_s": round(reopen, 3),
        "click_to_preview_ms_median": round(1000 * float(np.median(total)), 1),
        "click_to_preview_ms_p90": round(1000 * float(np.percentile(total, 90)), 1),
        "decoder_ms_median": round(1000 * float(np.median(decoder)), 1),
        "debounce_ms": DEBOUNCE_MS,
        "clicks": clicks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backends", nargs="+", default=["classical", "sam_vit_b_random"])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("SEGPROMPT_CACHE", tempfile.mkdtemp(prefix="segprompt_bench_cache_"))
    from skimage import data

    from segprompt.backends import create
    from segprompt.errors import SegpromptError
    from segprompt.backends.sam import SamSegmenter
    from segprompt.backends.sam_arch import build_sam

    image = data.coffee()  # (400, 600, 3): non-square
    rows = []
    for name in args.backends:
        if name == "sam_vit_b_random":
            segmenter = SamSegmenter(model=build_sam("vit_b", seed=0))
        else:
            try:
                segmenter = create(name)
            except SegpromptError as exc:
                print(f"skipping {name!r}: {exc}", file=sys.stderr)
                continue
        row = measure(name, segmenter, image, args.clicks, args.seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if args.out:
        from segprompt.io import atomic_write_text

        atomic_write_text(args.out, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
