"""Uniformly random points."""

from __future__ import annotations

import numpy as np

from .base import RegionStrategy, Target, region_xy, register


@register
class RandomStrategy(RegionStrategy):
    """Distinct pixels drawn uniformly from the region."""

    name = "random"
    description = "uniformly random pixels of the region"

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = region_xy(region)
        return xy[rng.choice(len(xy), min(n, len(xy)), replace=False)]
