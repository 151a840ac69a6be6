"""Geometry of masks and point sets in pixels: distance to the outside, erosion, farthest-point sampling."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def equivalent_diameter(region: np.ndarray) -> float:
    """Diameter of the disk with the region's area, ``sqrt(4 A / pi)``, in pixels."""
    return float(np.sqrt(4.0 * np.count_nonzero(region) / np.pi))


def inner_distance(region: np.ndarray) -> np.ndarray:
    """``(H, W)`` float64 Euclidean distance of each region pixel to the nearest
    pixel outside it, the image border counting as outside (0 off the region)."""
    padded = np.pad(region, 1, constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def erode(region: np.ndarray, radius: int) -> np.ndarray:
    """The region eroded by a disk of ``radius`` pixels (the image border counts as outside)."""
    if radius <= 0:
        return region.copy()
    return inner_distance(region) > radius


def farthest_point_order(xy: np.ndarray, start: int, n: int, score: np.ndarray | None = None) -> np.ndarray:
    """Greedy farthest-point sampling.

    Starting from row ``start`` of the ``(N, 2)`` positions ``xy``, repeatedly
    take the row whose distance to the nearest taken row is largest; with
    ``score`` ``(N,)`` that distance is capped by the row's score (used to keep
    points away from the region boundary). Ties go to the lowest index.

    Returns:
        ``(min(n, N),)`` int64 row indices, ``start`` first.
    """
    points = xy.astype(np.float64)
    taken = [int(start)]
    nearest = np.linalg.norm(points - points[start], axis=1)
    for _ in range(min(n, len(xy)) - 1):
        value = nearest if score is None else np.minimum(nearest, score)
        value[taken] = -1.0
        best = int(np.argmax(value))
        taken.append(best)
        np.minimum(nearest, np.linalg.norm(points - points[best], axis=1), out=nearest)
    return np.asarray(taken, dtype=np.int64)
