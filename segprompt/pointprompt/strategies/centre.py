"""Points at the centres of the region (maxima of its distance transform)."""

from __future__ import annotations

import numpy as np

from .base import RegionStrategy, Target, region_xy, register
from ...geometry import farthest_point_order, inner_distance


@register
class DistanceCentreStrategy(RegionStrategy):
    """The pixel farthest from the region's boundary, then each next pixel
    maximising ``min(distance to the boundary, distance to the points so far)``:
    deep inside the region and apart from each other. Deterministic."""

    name = "distance_centre"
    description = "maxima of the distance transform, spread apart"

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = region_xy(region)
        depth = inner_distance(region)[xy[:, 1], xy[:, 0]]
        return xy[farthest_point_order(xy, int(np.argmax(depth)), n, score=depth)]
