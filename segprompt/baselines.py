"""One-box and one-click evaluation of a backend against zero-effort baselines.

Used by ``benchmarks/eval_classical.py`` and the classical backend's tests, so
both measure the same thing:

* ``box``: one prompt, the tight box of the ground-truth object
  (:meth:`segprompt.prompts.Box.from_mask`);
* ``click``: one include point at the object's most interior pixel (the
  maximum of its distance transform, the image border counting as outside);
* ``click_before``: the same click answered by a second segmenter (the
  classical backend's previous click method), on the same embedding;
* ``box_rule``: among the box answer's candidates, the one the classical
  backend's acceptance rule picks (:func:`box_consistency_choice`, the rule it
  used before its scores estimated quality);
* ``plain_grabcut``: ``cv2.grabCut`` from the same box, full resolution,
  5 iterations, its "foreground" and "probably foreground" labels (an empty
  mask where OpenCV refuses the box, e.g. one leaving no background pixel);
* ``box_fill``: the box itself as the mask.

Scores are IoU (:func:`segprompt.metrics.iou`) with the sample's ignore pixels
left out; the best-scoring candidate of each prediction is the mask, and its
score is kept so that :meth:`Summary.spearman` can say whether the backend's
scores rank its answers as their true IoU does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterable

import cv2
import numpy as np
from scipy.stats import spearmanr

from .backends.base import Segmenter
from .backends.classical import box_consistency
from .progress import ProgressCallback, no_progress
from .datasets.base import Sample
from .metrics import iou
from .geometry import inner_distance
from .prompts import Box, Points, Prompt

#: Every IoU an :class:`ObjectScores` may hold (see the module docstring).
METHODS = ("box", "box_rule", "click", "click_before", "plain_grabcut", "box_fill")
#: The box consistency below which :func:`box_consistency_choice` rejects GrabCut for the inscribed ellipse.
BOX_CONSISTENCY_MIN = 0.8


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


def box_consistency_choice(masks: np.ndarray, methods: tuple[str, ...], box: Box) -> int:
    """Index of the box candidate the classical backend's acceptance rule picks.

    The rule the backend used before its scores estimated quality: the
    GrabCut candidate whose bounding box agrees best with the prompt box
    (:func:`~segprompt.backends.classical.box_consistency`), unless none
    reaches :data:`BOX_CONSISTENCY_MIN`, then the
    ``"fallback ellipse"``. ``masks`` ``(K, H, W)`` and ``methods`` are one
    box-only prediction's candidates, in the backend's order.
    """
    scores = [
        BOX_CONSISTENCY_MIN if method == "fallback ellipse" else box_consistency(mask, box.as_array())
        for mask, method in zip(masks, methods)
    ]
    return int(np.argmax(scores))


@dataclass
class ObjectScores:
    """One object: the IoU of each method, the backend's score of each of its answers, and seconds per answer.

    ``iou`` is keyed by :data:`METHODS` (``click_before`` only when a baseline
    segmenter was given); ``score`` by ``box``, ``click`` and ``click_before``;
    ``method`` (how each answer was made, :attr:`Prediction.method`) likewise;
    ``seconds`` by ``embed``, ``box``, ``click`` and ``click_before``.
    """

    object_id: str
    iou: dict[str, float]
    score: dict[str, float]
    method: dict[str, str | None]
    seconds: dict[str, float]


@dataclass
class Summary:
    """Per-object scores over a dataset (or several: :meth:`merged`), with their means and rank correlations."""

    objects: list[ObjectScores] = field(default_factory=list)

    def mean(self, method: str) -> float:
        """Mean IoU of ``method`` over the objects (NaN when no object has it)."""
        values = [o.iou[method] for o in self.objects if method in o.iou]
        return float(np.mean(values)) if values else float("nan")

    def seconds(self, step: str) -> float:
        """Mean seconds of ``step`` (``embed``, ``box``, ``click``, ``click_before``) per object."""
        values = [o.seconds[step] for o in self.objects if step in o.seconds]
        return float(np.mean(values)) if values else float("nan")

    def spearman(self, *answers: str) -> float:
        """Spearman rank correlation between the backend's score and the IoU of ``answers`` pooled.

        ``spearman("box")``, ``spearman("click")`` or ``spearman("box", "click")``
        (every box and click answer together). NaN with fewer than 3 answers or
        constant scores (a constant says nothing about quality).
        """
        pairs = [(o.score[a], o.iou[a]) for o in self.objects for a in answers if a in o.score]
        scores, ious = np.array(pairs, dtype=np.float64).reshape(-1, 2).T
        if len(scores) < 3 or np.ptp(scores) == 0 or np.ptp(ious) == 0:
            return float("nan")
        return float(spearmanr(scores, ious)[0])

    @classmethod
    def merged(cls, summaries: Iterable[Summary]) -> Summary:
        """One summary holding the objects of all ``summaries`` (pooled figures over datasets)."""
        return cls([o for summary in summaries for o in summary.objects])


def evaluate(
    segmenter: Segmenter,
    samples: Iterable[Sample],
    max_objects: int | None = None,
    progress: ProgressCallback = no_progress,
    click_baseline: Segmenter | None = None,
) -> Summary:
    """Score ``segmenter`` (box and click), optionally ``click_baseline``, and the baselines on every object.

    ``click_baseline`` answers the click from ``segmenter``'s embedding, so it
    must accept it (same backend and model id, e.g. the classical backend
    with another ``click_method``). ``seconds`` are wall-clock per step.
    """
    summary = Summary()
    for sample in samples:
        for obj in sample.objects():
            if max_objects is not None and len(summary.objects) >= max_objects:
                return summary
            box = Box.from_mask(obj.mask)
            click = Prompt(points=Points.from_lists([centre_click(obj.mask)]))
            answerers = {"box": (segmenter, Prompt(box=box)), "click": (segmenter, click)}
            if click_baseline is not None:
                answerers["click_before"] = (click_baseline, click)
            start = time.perf_counter()
            embedding = segmenter.embed(sample.image)
            seconds = {"embed": time.perf_counter() - start}
            predictions = {}
            for name, (answerer, prompt) in answerers.items():
                start = time.perf_counter()
                predictions[name] = answerer.predict(embedding, prompt)
                seconds[name] = time.perf_counter() - start
            by_box = predictions["box"]
            masks = {name: prediction.best_mask for name, prediction in predictions.items()}
            if by_box.methods is not None and "fallback ellipse" in by_box.methods:
                masks["box_rule"] = by_box.masks[box_consistency_choice(by_box.masks, by_box.methods, box)]
            masks["plain_grabcut"] = plain_grabcut(sample.image, box)
            masks["box_fill"] = box_fill(obj.mask.shape, box)
            summary.objects.append(
                ObjectScores(
                    obj.object_id,
                    {name: iou(mask, obj.mask, sample.ignore) for name, mask in masks.items()},
                    {name: float(prediction.scores[prediction.best]) for name, prediction in predictions.items()},
                    {name: prediction.method for name, prediction in predictions.items()},
                    seconds,
                )
            )
            progress(len(summary.objects), max_objects or 0, obj.object_id)
    return summary


__all__ = [
    "BOX_CONSISTENCY_MIN",
    "METHODS",
    "ObjectScores",
    "Summary",
    "box_consistency_choice",
    "box_fill",
    "centre_click",
    "evaluate",
    "plain_grabcut",
]
