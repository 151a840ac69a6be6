"""Shi-Tomasi corners inside the eroded region."""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

from .base import RegionStrategy, StrategyError, Target, region_xy, register
from ...geometry import equivalent_diameter, erode
from .kmedoids import INITS, kmedoids, subsample

#: Erosion sizes tried in turn, as fractions of the region's size, until enough of it is left; 0 = no erosion.
EROSION_FRACTIONS = (0.06, 0.02, 0.01, 0.0)
#: The reference code's erosion stops at the first size that leaves at least this many pixels.
REFERENCE_MIN_PIXELS = 10
#: The reference code tops missing corners up with k-medoids of this many region pixels.
REFERENCE_TOP_UP_SUBSAMPLE = 2000


def box_diagonal(region: np.ndarray) -> float:
    """Length of the diagonal of the region's bounding box, ``|max - min|`` of its pixel positions."""
    rows, cols = np.nonzero(region)
    return float(np.hypot(rows.max() - rows.min(), cols.max() - cols.min()))


def square_erosion(region: np.ndarray, fraction: float) -> np.ndarray:
    """``cv2.erode`` by a square of side ``int(fraction x box diagonal)``, as the PointPrompt reference does
    (OpenCV erodes an empty kernel, side 0, as 3 x 3; pixels off the image count as inside)."""
    side = int(box_diagonal(region) * fraction)
    return cv2.erode(region.astype(np.uint8), np.ones((side, side), np.uint8)).astype(bool)


@register
class ShiTomasiStrategy(RegionStrategy):
    """The strongest Shi-Tomasi corners (``cv2.goodFeaturesToTrack``) of the grey image
    inside the eroded region, so no point sits on the object's boundary; fewer
    corners than asked are topped up with k-medoids.

    Attributes:
        quality: ``qualityLevel``, corners weaker than this fraction of the
            strongest are dropped (the reference code: 0.001).
        min_distance: fraction of the region diameter two corners must be
            apart; ``None``: the eroded region's box diagonal divided by the
            number of points (the reference code's).
        erosion: ``"disk"`` erodes by a disk of radius 6 % of the region's
            equivalent diameter (2 %, 1 %, none while that empties it) and tops
            up from the eroded pixels left; ``"square"`` is the reference code's:
            a square of side 6 % of the box diagonal (2 %, 1 %, none while fewer
            than 10 pixels are left), top-up from a 2000-pixel subsample of the
            whole region.
        init: the top-up's k-medoids start, ``"build"`` or ``"heuristic"`` (the reference code's).
    """

    name = "shi_tomasi"
    description = "Shi-Tomasi corners inside the eroded region, topped up with k-medoids"

    def __init__(
        self, quality: float = 0.01, min_distance: float | None = 0.05, erosion: Literal["disk", "square"] = "disk",
        init: Literal["build", "heuristic"] = "build",
    ) -> None:
        if erosion not in ("disk", "square"):
            raise StrategyError(f"shi_tomasi: erosion must be 'disk' or 'square', got {erosion!r}")
        if init not in INITS:
            raise StrategyError(f"shi_tomasi: init must be one of {', '.join(INITS)}, got {init!r}")
        self.quality = quality
        self.min_distance = min_distance
        self.erosion = erosion
        self.init = init

    def _eroded(self, region: np.ndarray) -> np.ndarray:
        if self.erosion == "square":
            for fraction in EROSION_FRACTIONS[:-1]:
                inner = square_erosion(region, fraction)
                if inner.sum() >= REFERENCE_MIN_PIXELS:
                    return inner
            return region.copy()
        diameter = equivalent_diameter(region)
        for fraction in EROSION_FRACTIONS:
            inner = erode(region, int(round(fraction * diameter)))
            if inner.any():
                break
        return inner

    def _min_distance(self, region: np.ndarray, inner: np.ndarray, n: int) -> float:
        if self.min_distance is None:
            return box_diagonal(inner) / n
        return max(1.0, self.min_distance * equivalent_diameter(region))

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        inner = self._eroded(region)
        corners = cv2.goodFeaturesToTrack(
            target.gray,
            maxCorners=n,
            qualityLevel=self.quality,
            minDistance=self._min_distance(region, inner, n),
            mask=inner.astype(np.uint8),
            blockSize=3,
            gradientSize=3,
        )
        chosen = np.zeros((0, 2), np.int64) if corners is None else np.rint(corners.reshape(-1, 2)).astype(np.int64)
        # goodFeaturesToTrack masks by the pixel it tests, so rounding cannot leave the region.
        chosen = chosen[inner[chosen[:, 1], chosen[:, 0]]][:n]
        missing = n - len(chosen)
        if missing <= 0:
            return chosen
        if self.erosion == "square":
            xy = subsample(region_xy(region), rng, REFERENCE_TOP_UP_SUBSAMPLE)
        else:
            rest = inner.copy()
            rest[chosen[:, 1], chosen[:, 0]] = False
            if not rest.any():
                return chosen
            xy = subsample(region_xy(rest), rng)
        return np.concatenate([chosen, xy[kmedoids(xy.astype(np.float64), missing, init=self.init)]])
