"""One-box and one-click evaluation of a backend against two zero-effort baselines.

Used by ``benchmarks/eval_classical.py`` and the classical backend's tests, so
both measure the same thing:

* ``box``: one prompt, the tight box of the ground-truth object
  (:meth:`segprompt.prompts.Box.from_mask`);
* ``click``: one include point at the object's most interior pixel (the
  maximum of its distance transform, the image border counting as outside);
* ``plain_grabcut``: ``cv2.grabCut`` from the same box, full resolution,
  5 iterations, its "foreground" and "probably foreground" labels (an empty
  mask where OpenCV refuses the box, e.g. one leaving no background pixel);
* ``box_fill``: the box itself as the mask.

Scores are IoU (:func:`segprompt.metrics.iou`) with the sample's ignore pixels
left out; the best-scoring candidate of each prediction is the mask.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np

from .backends.base import Segmenter
from .progress import ProgressCallback, no_progress
from .datasets.base import Sample
from .metrics import iou
from .geometry import inner_distance
from .prompts import Box, Points, Prompt

METHODS = ("box", "click", "plain_grabcut", "box_fill")


def centre_click(mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` of the pixel of ``mask`` farthest from its outside (ties: first in row-major order)."""
    row, col = np.unravel_index(int(np.argmax(inner_distance(np.asarray(mask, bool)))), mask.shape)
    return float(col), float(row)


def plain_grabcut(image: np.ndarray, box: Box, iterations: int = 5) -> np.ndarray:
    """``(H, W)`` bool foreground of plain ``cv2.grabCut`` from ``box`` on an RGB image."""
    x0, y0 = int(np.floor(box.x0)), int(np.floor(box.y0))
    x1, y1 = int(np.ceil(box.x1)), int(np.ceil(box.y1))
    labels = np.zeros(image.shape[:2], np.uint8)
    cv2.setRNGSeed(0)  # the calling thread's RNG only (cv::theRNG() is thread-local): deterministic under threads
    try:
        cv2.grabCut(
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            labels,
            (x0, y0, x1 - x0, y1 - y0),
            np.zeros((1, 65), np.float64),
            np.zeros((1, 65), np.float64),
            iterations,
            cv2.GC_INIT_WITH_RECT,
        )
    except cv2.error:
        return np.zeros(image.shape[:2], bool)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def box_fill(shape: tuple[int, int], box: Box) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels inside ``box``."""
    mask = np.zeros(shape, bool)
    mask[int(np.floor(box.y0)) : int(np.ceil(box.y1)), int(np.floor(box.x0)) : int(np.ceil(box.x1))] = True
    return mask


@dataclass
class ObjectScores:
    """IoU of each method on one object, and the backend's seconds per prompt."""

    object_id: str
    iou: dict[str, float]
    seconds: float


@dataclass
class Summary:
    """Mean IoU per method over a dataset's objects."""

    objects: list[ObjectScores] = field(default_factory=list)

    def mean(self, method: str) -> float:
        return float(np.mean([o.iou[method] for o in self.objects])) if self.objects else float("nan")

    @property
    def seconds_per_prompt(self) -> float:
        return float(np.mean([o.seconds for o in self.objects])) if self.objects else float("nan")


def evaluate(
    segmenter: Segmenter,
    samples: Iterable[Sample],
    max_objects: int | None = None,
    progress: ProgressCallback = no_progress,
) -> Summary:
    """Score ``segmenter`` (box and click) and the two baselines on every object of ``samples``.

    ``seconds`` is the backend's wall-clock time for embed + both predictions,
    halved (seconds per prompt, embedding included).
    """
    summary = Summary()
    for sample in samples:
        for obj in sample.objects():
            if max_objects is not None and len(summary.objects) >= max_objects:
                return summary
            box = Box.from_mask(obj.mask)
            start = time.perf_counter()
            embedding = segmenter.embed(sample.image)
            by_box = segmenter.predict(embedding, Prompt(box=box)).best_mask
            by_click = segmenter.predict(embedding, Prompt(points=Points.from_lists([centre_click(obj.mask)]))).best_mask
            seconds = (time.perf_counter() - start) / 2
            masks = {
                "box": by_box,
                "click": by_click,
                "plain_grabcut": plain_grabcut(sample.image, box),
                "box_fill": box_fill(obj.mask.shape, box),
            }
            scores = {name: iou(mask, obj.mask, sample.ignore) for name, mask in masks.items()}
            summary.objects.append(ObjectScores(obj.object_id, scores, seconds))
            progress(len(summary.objects), max_objects or 0, obj.object_id)
    return summary


__all__ = ["METHODS", "ObjectScores", "Summary", "box_fill", "centre_click", "evaluate", "plain_grabcut"]
