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
        candidate_fraction: the next points are chosen among this random
            fraction of the region's pixels (the reference code's 0.15, raised
            to 0.5, 0.6, ... 1.0 until there are enough); ``None``: all pixels.
        seed_point: the random point comes on top of the ``n`` far points
            (the reference code's ``n + 1``, see :class:`RegionStrategy`).
    """

    name = "max_distance"
    description = "random first point, then farthest-point sampling"

    def __init__(
        self, farthest_from: Literal["all", "first"] = "all", candidate_fraction: float | None = None,
        seed_point: bool = False,
    ) -> None:
        if farthest_from not in ("all", "first"):
            raise StrategyError(f"max_distance: farthest_from must be 'all' or 'first', got {farthest_from!r}")
        if candidate_fraction is not None and not 0.0 < candidate_fraction <= 1.0:
            raise StrategyError(f"max_distance: candidate_fraction must lie in (0, 1], got {candidate_fraction!r}")
        self.farthest_from = farthest_from
        self.candidate_fraction = candidate_fraction
        self.seed_point = seed_point

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = region_xy(region)
        first = int(rng.integers(len(xy)))
        candidates = np.arange(len(xy))
        if self.candidate_fraction is not None:
            count = candidate_count(len(xy), n - 1, self.candidate_fraction)
            drawn = rng.choice(np.delete(candidates, first), count, replace=False)
            candidates = np.sort(np.concatenate([[first], drawn]))
        start = int(np.searchsorted(candidates, first))
        if self.farthest_from == "all":
            return xy[candidates[farthest_point_order(xy[candidates], start, n)]]
        distance = np.linalg.norm((xy[candidates] - xy[first]).astype(np.float64), axis=1)
        distance[start] = -1.0
        return xy[np.concatenate([[first], candidates[np.argsort(-distance, kind="stable")[: n - 1]]])]


def candidate_count(n_pixels: int, wanted: int, fraction: float) -> int:
    """How many of ``n_pixels`` candidates the reference code samples for ``wanted`` points: ``fraction`` of
    them, then 50 %, 60 %, ... 100 % while that is fewer than ``wanted``; at most ``n_pixels - 1`` (the first
    point is not a candidate)."""
    count, share = int(fraction * n_pixels), 0.5
    while count < wanted and share <= 1.0 + 1e-9:
        count, share = int(share * n_pixels), share + 0.1
    return max(0, min(max(count, wanted), n_pixels - 1))
