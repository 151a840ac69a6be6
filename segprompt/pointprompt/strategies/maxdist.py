"""Points far from each other, starting at a random point."""

from __future__ import annotations

from typing import Literal

import numpy as np

from .base import RegionStrategy, StrategyError, Target, region_xy, register
from ...geometry import farthest_point_order


@register
class MaxDistanceStrategy(RegionStrategy):
    """A random first point, then points far from it.

    Attributes:
        farthest_from: ``"all"`` (default) takes each next point farthest from
            every point so far (farthest-point sampling), spreading the points
            over the region; ``"first"`` takes the ``n - 1`` pixels farthest
            from the first point alone, as the PointPrompt paper describes,
            which bunches them at the far end of the region.
    """

    name = "max_distance"
    description = "random first point, then farthest-point sampling"

    def __init__(self, farthest_from: Literal["all", "first"] = "all") -> None:
        if farthest_from not in ("all", "first"):
            raise StrategyError(f"max_distance: farthest_from must be 'all' or 'first', got {farthest_from!r}")
        self.farthest_from = farthest_from

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = region_xy(region)
        first = int(rng.integers(len(xy)))
        if self.farthest_from == "all":
            return xy[farthest_point_order(xy, first, n)]
        distance = np.linalg.norm((xy - xy[first]).astype(np.float64), axis=1)
        distance[first] = -1.0
        return xy[np.concatenate([[first], np.argsort(-distance, kind="stable")[: n - 1]])]
