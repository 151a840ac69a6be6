"""Human scribbles (stroke maps) as click prompts.

A scribble map is ``(H, W)`` uint8: 0 = no stroke, 1 = foreground stroke,
2 = background stroke. :func:`scribble_points` turns it into
:class:`~segprompt.prompts.Points`: foreground stroke pixels get label 1,
background stroke pixels label 0. Strokes hold thousands of pixels, far more
than a point prompt should, so each label's pixels are subsampled to at most
``max_points_per_label`` by farthest-point sampling: start at the stroke pixel
nearest the strokes' centroid, then repeatedly add the pixel farthest from
those already chosen (ties to the first in row-major order). This is
deterministic and spreads the points over the whole length of every stroke.
"""

from __future__ import annotations

import numpy as np

from ..prompts import Points

FOREGROUND_STROKE = 1
BACKGROUND_STROKE = 2
MAX_POINTS_PER_LABEL = 24


def farthest_point_subsample(xy: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows of ``xy`` ``(N, 2)`` chosen by farthest-point sampling (all rows when ``N <= count``)."""
    if len(xy) <= count:
        return xy
    points = xy.astype(np.float64)
    first = int(np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    distance = ((points - points[first]) ** 2).sum(axis=1)
    for _ in range(count - 1):
        nearest_far = int(np.argmax(distance))
        chosen.append(nearest_far)
        distance = np.minimum(distance, ((points - points[nearest_far]) ** 2).sum(axis=1))
    return xy[chosen]


def scribble_points(scribble: np.ndarray, max_points_per_label: int = MAX_POINTS_PER_LABEL) -> Points | None:
    """Points ``(x, y)`` from a scribble map; ``None`` when it holds no stroke."""
    parts_xy, parts_label = [], []
    for value, label in ((FOREGROUND_STROKE, 1), (BACKGROUND_STROKE, 0)):
        rows, cols = np.nonzero(scribble == value)
        xy = farthest_point_subsample(np.stack([cols, rows], axis=1), max_points_per_label)
        parts_xy.append(xy)
        parts_label.append(np.full(len(xy), label))
    xy = np.concatenate(parts_xy)
    if len(xy) == 0:
        return None
    return Points(xy.astype(np.float64), np.concatenate(parts_label))
