"""k-medoids clustering (PAM's BUILD start or the "heuristic" one, then alternating
refinement) and the strategies built on it.

The medoids are data points, so a medoid of the pixels of a region always
lies inside that region, whatever its shape (a centroid of a ring would not).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.spatial.distance import cdist

from .base import RegionStrategy, StrategyError, Target, region_xy, register

#: Pixels clustered per region, as in the PointPrompt paper; keeps the
#: ``(N, N)`` distance matrix at 13 MB.
SUBSAMPLE = 1800


#: Ways to place the first medoids: PAM's greedy BUILD, or scikit-learn-extra's default ``"heuristic"``
#: (the ``k`` points of least total distance to all others), which the PointPrompt reference code uses.
INITS = ("build", "heuristic")


def kmedoids(data: np.ndarray, k: int, max_iter: int = 100, init: Literal["build", "heuristic"] = "build") -> np.ndarray:
    """Indices of ``k`` medoids of the rows of ``data``.

    ``init="build"`` (Kaufman & Rousseeuw) places the medoids greedily, each
    one the point that most lowers the total distance to the nearest medoid;
    ``init="heuristic"`` takes the ``k`` points with the least total distance to
    all others (``sklearn_extra.cluster.KMedoids``' default, which tends to
    bunch them near the centre). Then the alternating step (assign every
    point to its nearest medoid, move each medoid to the member with the least
    total distance to its cluster) runs until no medoid moves. Deterministic:
    ties go to the lowest index.

    Args:
        data: ``(N, D)`` float array of points.
        k: number of medoids; all ``N`` indices when ``k >= N``.
        init: ``"build"`` or ``"heuristic"``.

    Returns:
        ``(min(k, N),)`` int64 distinct row indices into ``data``.
    """
    if init not in INITS:
        raise StrategyError(f"k-medoids init must be one of {', '.join(INITS)}, got {init!r}")
    n = len(data)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    distance = cdist(data, data).astype(np.float32)
    if init == "heuristic":
        medoids = [int(i) for i in np.argsort(distance.sum(axis=1), kind="stable")[:k]]
    else:
        medoids = _build(distance, k)
    for _ in range(max_iter):
        labels = np.argmin(distance[medoids], axis=0)
        # A medoid duplicating another point must still own its own cluster.
        labels[medoids] = np.arange(k)
        moved = []
        for cluster in range(k):
            members = np.flatnonzero(labels == cluster)
            within = distance[np.ix_(members, members)].sum(axis=1)
            moved.append(int(members[np.argmin(within)]))
        if moved == medoids:
            break
        medoids = moved
    return np.asarray(medoids, dtype=np.int64)


def _build(distance: np.ndarray, k: int) -> list[int]:
    """PAM's BUILD: ``k`` row indices placed greedily on the ``(N, N)`` distance matrix."""
    medoids = [int(np.argmin(distance.sum(axis=1)))]
    nearest = distance[medoids[0]].copy()
    for _ in range(k - 1):
        gain = np.maximum(nearest[None, :] - distance, 0.0).sum(axis=1)
        gain[medoids] = -np.inf
        best = int(np.argmax(gain))
        medoids.append(best)
        np.minimum(nearest, distance[best], out=nearest)
    return medoids


def subsample(xy: np.ndarray, rng: np.random.Generator, size: int = SUBSAMPLE) -> np.ndarray:
    """At most ``size`` rows of ``xy`` drawn without replacement, in their original order."""
    if len(xy) <= size:
        return xy
    return xy[np.sort(rng.choice(len(xy), size, replace=False))]


@register
class KMedoidsStrategy(RegionStrategy):
    """Medoids of the pixel positions of the region (1800-pixel subsample): points spread over the object.

    Attributes:
        init: how the medoids start, ``"build"`` or ``"heuristic"`` (the reference code's; see :func:`kmedoids`).
    """

    name = "kmedoids"
    description = "k-medoids of the region's pixel coordinates"

    def __init__(self, init: Literal["build", "heuristic"] = "build") -> None:
        if init not in INITS:
            raise StrategyError(f"kmedoids: init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = subsample(region_xy(region), rng)
        return xy[kmedoids(xy.astype(np.float64), n, init=self.init)]


@register
class FeatureKMedoidsStrategy(RegionStrategy):
    """Medoids of the region's pixels in the model's feature space: one point per visual part.

    The features are :attr:`Target.features` (SAM's image embedding upsampled
    to the image); a backend without features falls back to CIELAB colour,
    which makes this a colour-clustering strategy.
    """

    name = "feature_kmedoids"
    description = "k-medoids of the pixels' model features (CIELAB colour without features)"

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = subsample(region_xy(region), rng)
        features = target.features if target.features is not None else _lab(target)
        height, width = region.shape
        rows = xy[:, 1] * features.shape[0] // height
        cols = xy[:, 0] * features.shape[1] // width
        values = features[rows, cols].astype(np.float64)
        scale = values.std(axis=0)
        values = values / np.where(scale > 0, scale, 1.0)
        return xy[kmedoids(values, n)]


def _lab(target: Target) -> np.ndarray:
    if "lab" not in target.cache:
        from skimage.color import rgb2lab

        target.cache["lab"] = rgb2lab(target.image).astype(np.float32)
    return target.cache["lab"]
