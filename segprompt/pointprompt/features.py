"""Interpretable features of an object and of a point prompt for it.

Everything is computed in original-image pixels; distances are divided by the
image diagonal, so images of different sizes compare. Points are ``(x, y)`` =
``(column, row)`` (see :mod:`segprompt.pointprompt.strategies.base`).

Object features (one set per object, :func:`object_features`):

* ``mask_area_fraction``: object pixels / image pixels.
* ``mask_components``: number of 8-connected components of the object.
* ``edge_density``: fraction of object pixels that are Canny edges
  (``cv2.Canny`` thresholds 100 / 200 on the grey image).
* ``{object,background}_glcm_{contrast,dissimilarity,homogeneity,energy,correlation,ASM}``:
  ``skimage.feature.graycoprops`` of the grey-level co-occurrence matrix of
  the pixel pairs lying wholly inside the object (or the background: the
  rest, minus ignored pixels); grey levels quantised to 32, distance 1,
  angles 0, 45, 90, 135 degrees averaged, symmetric and normalised.

Prompt features (one set per prompt, :func:`prompt_features`):

* ``n_include``, ``n_exclude``: point counts.
* ``coverage``: area of (convex hull of the include points ∩ object) / object area.
* ``max_spread``: largest distance between two include points.
* ``mean_nn_distance``: mean distance from each include point to its nearest
  other include point (0 for one point).
* ``chamfer_include_exclude``: symmetric chamfer distance between the include
  and the exclude points, ``(mean_i min_e d + mean_e min_i d) / 2`` (NaN
  without exclude points).
* ``exclude_spread``: largest distance between two exclude points.
* ``include_efficiency``: ``coverage / n_include``, object covered per click.
* ``include_encasing``: fraction of the include points' convex hull that lies
  in the object (1: the points enclose only object; low: their hull spans
  background, e.g. around a concavity).
* ``exclude_encasing``: fraction of the object inside the exclude points'
  convex hull (1: the exclude points surround the object; 0: all on one side;
  NaN with fewer than three exclude points).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist

from .strategies.base import PointSet

GLCM_LEVELS = 32
GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)

OBJECT_FEATURES: tuple[str, ...] = (
    "mask_area_fraction",
    "mask_components",
    "edge_density",
    *(f"{side}_glcm_{prop}" for side in ("object", "background") for prop in GLCM_PROPERTIES),
)
PROMPT_FEATURES: tuple[str, ...] = (
    "n_include",
    "n_exclude",
    "coverage",
    "max_spread",
    "mean_nn_distance",
    "chamfer_include_exclude",
    "exclude_spread",
    "include_efficiency",
    "include_encasing",
    "exclude_encasing",
)
FEATURES: tuple[str, ...] = OBJECT_FEATURES + PROMPT_FEATURES


def glcm_properties(gray: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """GLCM properties of the pixel pairs inside ``region`` (NaN when it has no pair).

    Pixels outside the region get a sentinel level 0 that is dropped from the
    matrix, so pairs crossing the region's boundary do not count.
    """
    from skimage.feature import graycomatrix, graycoprops

    rows, cols = np.nonzero(region)
    if rows.size < 2:
        return {prop: float("nan") for prop in GLCM_PROPERTIES}
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    levels = (gray[box].astype(np.int64) * GLCM_LEVELS // 256 + 1).astype(np.uint8)
    levels[~region[box]] = 0
    counts = graycomatrix(levels, [1], list(GLCM_ANGLES), levels=GLCM_LEVELS + 1, symmetric=True)[1:, 1:]
    totals = counts.sum(axis=(0, 1), keepdims=True).astype(np.float64)
    if not totals.any():
        return {prop: float("nan") for prop in GLCM_PROPERTIES}
    keep = totals[0, 0, 0] > 0  # angles with at least one pair inside the region
    normalised = counts[..., keep] / totals[..., keep]
    return {prop: float(np.mean(graycoprops(normalised, prop))) for prop in GLCM_PROPERTIES}


def object_features(image: np.ndarray, mask: np.ndarray, ignore: np.ndarray | None = None) -> dict[str, float]:
    """The object features (module docstring) of an ``(H, W, 3)`` uint8 image and ``(H, W)`` bool mask."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    mask = np.asarray(mask, bool)
    background = ~mask if ignore is None else ~mask & ~ignore
    _, components = ndimage.label(mask, structure=np.ones((3, 3), bool))
    edges = cv2.Canny(gray, 100, 200) > 0
    area = int(mask.sum())
    out = {
        "mask_area_fraction": area / mask.size,
        "mask_components": float(components),
        "edge_density": float(edges[mask].mean()) if area else float("nan"),
    }
    for side, region in (("object", mask), ("background", background)):
        out.update({f"{side}_glcm_{k}": v for k, v in glcm_properties(gray, region).items()})
    return out


def _hull_mask(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool raster of the convex hull of ``(x, y)`` points (a dot or a segment for 1-2 points)."""
    canvas = np.zeros(shape, np.uint8)
    if len(xy):
        hull = cv2.convexHull(np.rint(xy).astype(np.int32).reshape(-1, 1, 2))
        cv2.fillConvexPoly(canvas, hull, 1)
    return canvas.astype(bool)


def _max_pairwise(xy: np.ndarray) -> float:
    return float(cdist(xy, xy).max()) if len(xy) > 1 else 0.0


def prompt_features(points: PointSet, mask: np.ndarray) -> dict[str, float]:
    """The prompt features (module docstring) of ``points`` for the ``(H, W)`` bool object ``mask``."""
    mask = np.asarray(mask, bool)
    diagonal = float(np.hypot(*mask.shape))
    include, exclude = points.include, points.exclude
    n_include, n_exclude = len(include), len(exclude)
    area = max(int(mask.sum()), 1)
    hull = _hull_mask(include, mask.shape)
    coverage = float((hull & mask).sum()) / area
    if n_include > 1:
        distance = cdist(include, include)
        np.fill_diagonal(distance, np.inf)
        mean_nn = float(distance.min(axis=1).mean())
    else:
        mean_nn = 0.0
    if n_include and n_exclude:
        cross = cdist(include, exclude)
        chamfer = float((cross.min(axis=1).mean() + cross.min(axis=0).mean()) / 2)
    else:
        chamfer = float("nan")
    exclude_encasing = float((_hull_mask(exclude, mask.shape) & mask).sum()) / area if n_exclude >= 3 else float("nan")
    return {
        "n_include": float(n_include),
        "n_exclude": float(n_exclude),
        "coverage": coverage,
        "max_spread": _max_pairwise(include) / diagonal,
        "mean_nn_distance": mean_nn / diagonal,
        "chamfer_include_exclude": chamfer / diagonal,
        "exclude_spread": _max_pairwise(exclude) / diagonal,
        "include_efficiency": coverage / n_include if n_include else 0.0,
        "include_encasing": float((hull & mask).sum()) / max(int(hull.sum()), 1) if n_include else float("nan"),
        "exclude_encasing": exclude_encasing,
    }
