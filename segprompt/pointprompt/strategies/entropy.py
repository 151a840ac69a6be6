"""Points whose local texture differs most from a random first point."""

from __future__ import annotations

import numpy as np

from .base import RegionStrategy, Target, region_xy, register

#: Side of the square patch whose grey-level histogram entropy is compared.
PATCH = 9
#: Fraction of the region's pixels considered as candidates.
CANDIDATE_FRACTION = 0.15


@register
class EntropyStrategy(RegionStrategy):
    """A random first point, then the ``n - 1`` candidates whose 9x9-patch
    histogram entropy (``skimage.filters.rank.entropy``, bits) differs most
    from the first point's; candidates are a random 15 % of the region.

    Attributes:
        seed_point: the random point comes on top of the ``n`` entropy points
            (the reference code's ``n + 1``, see :class:`RegionStrategy`).
    """

    name = "entropy"
    description = "random first point, then the candidates of most different local entropy"

    def __init__(self, seed_point: bool = False) -> None:
        self.seed_point = seed_point

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = region_xy(region)
        first = int(rng.integers(len(xy)))
        if n == 1:
            return xy[[first]]
        others = np.delete(np.arange(len(xy)), first)
        size = min(len(others), max(n - 1, int(round(CANDIDATE_FRACTION * len(xy)))))
        candidates = np.sort(rng.choice(others, size, replace=False))
        entropy = local_entropy(target)
        difference = np.abs(entropy[xy[candidates, 1], xy[candidates, 0]] - entropy[xy[first, 1], xy[first, 0]])
        best = candidates[np.argsort(-difference, kind="stable")[: n - 1]]
        return xy[np.concatenate([[first], best])]


def local_entropy(target: Target) -> np.ndarray:
    """``(H, W)`` float64 entropy of the 9x9 grey-level histogram around each pixel (computed once)."""
    if "entropy" not in target.cache:
        from skimage.filters.rank import entropy

        target.cache["entropy"] = entropy(target.gray, np.ones((PATCH, PATCH), bool)).astype(np.float64)
    return target.cache["entropy"]
