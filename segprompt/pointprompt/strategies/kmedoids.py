"""k-medoids clustering (PAM's BUILD start, then alternating refinement) and the
strategies built on it.

The medoids are data points, so a medoid of the pixels of a region always
lies inside that region, whatever its shape (a centroid of a ring would not).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist

from .base import RegionStrategy, Target, region_xy, register

#: Pixels clustered per region, as in the PointPrompt paper; keeps the
#: ``(N, N)`` distance matrix at 13 MB.
SUBSAMPLE = 1800


def kmedoids(data: np.ndarray, k: int, max_iter: int = 100) -> np.ndarray:
    """Indices of ``k`` medoids of the rows of ``data``.

    BUILD (Kaufman & Rousseeuw) places the medoids greedily, each one the point
    that most lowers the total distance to the nearest medoid; then the
    alternating step (assign every point to its nearest medoid, move each
    medoid to the member with the least total distance to its cluster) runs
    until no medoid moves. Deterministic: ties go to the lowest index.

    Args:
        data: ``(N, D)`` float array of points.
        k: number of medoids; all ``N`` indices when ``k >= N``.

    Returns:
        ``(min(k, N),)`` int64 distinct row indices into ``data``.
    """
    n = len(data)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    distance = cdist(data, data).astype(np.float32)
    medoids = [int(np.argmin(distance.sum(axis=1)))]
    nearest = distance[medoids[0]].copy()
    for _ in range(k - 1):
        gain = np.maximum(nearest[None, :] - distance, 0.0).sum(axis=1)
        gain[medoids] = -np.inf
        best = int(np.argmax(gain))
        medoids.append(best)
        np.minimum(nearest, distance[best], out=nearest)
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


def subsample(xy: np.ndarray, rng: np.random.Generator, size: int = SUBSAMPLE) -> np.ndarray:
    """At most ``size`` rows of ``xy`` drawn without replacement, in their original order."""
    if len(xy) <= size:
        return xy
    return xy[np.sort(rng.choice(len(xy), size, replace=False))]


@register
class KMedoidsStrategy(RegionStrategy):
    """Medoids of the pixel positions of the region (1800-pixel subsample): points spread over the object."""

    name = "kmedoids"
    description = "k-medoids of the region's pixel coordinates"

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        xy = subsample(region_xy(region), rng)
        return xy[kmedoids(xy.astype(np.float64), n)]


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
