"""Scoring everything-mode label maps against instance ground truth with matched metrics.

Used by ``benchmarks/eval_everything.py`` and the tests, so both measure the
same thing: each method turns an image into an ``(H, W)`` instance label map,
:func:`segprompt.metrics.segmentation_accuracy` matches its objects with the
sample's instances, and the per-image mSA, SA50 and SA75 are averaged over the
images (micro-sam's convention: every image weighs the same, however many
objects it holds).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from ..datasets.base import Sample
from ..metrics import SegmentationAccuracy, segmentation_accuracy
from ..progress import ProgressCallback, no_progress

#: ``image (H, W, 3) uint8 -> (H, W)`` integer instance label map.
LabelMethod = Callable[[np.ndarray], np.ndarray]


@dataclass
class MethodScores:
    """One method's matched scores, one entry per image."""

    images: list[SegmentationAccuracy] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def mean(self, metric: str) -> float:
        """Mean over images of ``"msa"``, ``"sa50"`` or ``"sa75"``."""
        if not self.images:
            return float("nan")
        values = {
            "msa": lambda r: r.msa,
            "sa50": lambda r: r.at(0.5),
            "sa75": lambda r: r.at(0.75),
        }[metric]
        return float(np.mean([values(r) for r in self.images]))

    @property
    def seconds_per_image(self) -> float:
        return float(np.mean(self.seconds)) if self.seconds else float("nan")


def evaluate_everything(
    samples: Iterable[Sample],
    methods: dict[str, LabelMethod],
    max_images: int | None = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, MethodScores]:
    """Run every method on every instance-annotated sample and score it.

    Args:
        samples: samples with ``mask_kind == "instance"``.
        methods: name -> label-map function.
        max_images: stop after this many images (``None``: all).
        progress: ``progress(images done, max_images or 0, sample id)``.

    Raises:
        ValueError: a sample is not an instance annotation.
    """
    scores = {name: MethodScores() for name in methods}
    for count, sample in enumerate(samples):
        if max_images is not None and count >= max_images:
            break
        if sample.mask_kind != "instance":
            raise ValueError(f"{sample.id}: everything mode is scored on instance masks, got {sample.mask_kind!r}")
        for name, method in methods.items():
            start = time.perf_counter()
            labels = method(sample.image)
            scores[name].seconds.append(time.perf_counter() - start)
            scores[name].images.append(segmentation_accuracy(labels, sample.mask))
        progress(count + 1, max_images or 0, sample.id)
    return scores


__all__ = ["LabelMethod", "MethodScores", "evaluate_everything"]
