"""Predictions that carry a per-pixel foreground probability.

Dense backends (CLIPSeg, SegGPT) compute a confidence for every pixel before
thresholding it into a mask. Merging several classes (Show-or-Tell) needs that
map rather than the binary mask, so those backends return a
:class:`ProbabilityPrediction`: a :class:`~segprompt.backends.base.Prediction`
plus the map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Prediction


@dataclass
class ProbabilityPrediction(Prediction):
    """A :class:`Prediction` with the map its masks were thresholded from.

    Attributes:
        probabilities: ``(H, W)`` float32 foreground probability in ``[0, 1]``,
            in original-image pixels (row, column).
    """

    probabilities: np.ndarray | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.probabilities is None:
            raise ValueError("ProbabilityPrediction.probabilities is required")
        if self.probabilities.shape != self.masks.shape[1:] or self.probabilities.dtype != np.float32:
            raise ValueError(
                f"ProbabilityPrediction.probabilities must be {self.masks.shape[1:]} float32, "
                f"got {self.probabilities.shape} {self.probabilities.dtype}"
            )
