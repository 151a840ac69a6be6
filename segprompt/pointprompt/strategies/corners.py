"""Shi-Tomasi corners inside the eroded region."""

from __future__ import annotations

import cv2
import numpy as np

from .base import RegionStrategy, Target, region_xy, register
from ...geometry import equivalent_diameter, erode
from .kmedoids import kmedoids, subsample

#: Erosion radii tried in turn, as fractions of the region's equivalent
#: diameter, until the eroded region is not empty; 0 = no erosion.
EROSION_FRACTIONS = (0.06, 0.02, 0.01, 0.0)


@register
class ShiTomasiStrategy(RegionStrategy):
    """The strongest Shi-Tomasi corners (``cv2.goodFeaturesToTrack``) of the image
    inside the region eroded by 6 % of its diameter (2 %, 1 %, none when that
    empties it), so no point sits on the object's boundary. Fewer corners than
    asked are topped up with k-medoids of the remaining eroded pixels.

    Attributes:
        quality: ``qualityLevel``, corners weaker than this fraction of the
            strongest are dropped.
        min_distance: fraction of the region diameter two corners must be apart.
    """

    name = "shi_tomasi"
    description = "Shi-Tomasi corners inside the eroded region, topped up with k-medoids"

    def __init__(self, quality: float = 0.01, min_distance: float = 0.05) -> None:
        self.quality = quality
        self.min_distance = min_distance

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        diameter = equivalent_diameter(region)
        for fraction in EROSION_FRACTIONS:
            inner = erode(region, int(round(fraction * diameter)))
            if inner.any():
                break
        corners = cv2.goodFeaturesToTrack(
            target.gray,
            maxCorners=n,
            qualityLevel=self.quality,
            minDistance=max(1.0, self.min_distance * diameter),
            mask=inner.astype(np.uint8),
        )
        chosen = np.zeros((0, 2), np.int64) if corners is None else np.rint(corners.reshape(-1, 2)).astype(np.int64)
        # goodFeaturesToTrack masks by the pixel it tests, so rounding cannot leave the region.
        chosen = chosen[inner[chosen[:, 1], chosen[:, 0]]][:n]
        missing = n - len(chosen)
        if missing > 0:
            rest = inner.copy()
            rest[chosen[:, 1], chosen[:, 0]] = False
            if rest.any():
                xy = subsample(region_xy(rest), rng)
                chosen = np.concatenate([chosen, xy[kmedoids(xy.astype(np.float64), missing)]])
        return chosen
