"""The PointPrompt reference code's interpretable features (``feature_extraction/`` of olivesgatech/PointPrompt).

The ``paper`` feature set of the IoU regression, beside ours
(:mod:`segprompt.pointprompt.features`). Every name starts with ``paper_``.
Points are ``(x, y)`` = ``(column, row)`` original-image pixels; the grey image
is OpenCV's ``COLOR_BGR2GRAY`` of the RGB image, as the reference converts it
(its weights fall on the swapped channels). Where the reference would divide
by nothing or crash (a prompt without exclude points, an object under 0.05 %
of the image) the value is NaN, which the regression imputes.

Object features (:func:`paper_object_features`, the reference's "data-level"):

* ``paper_mask_size``: object pixels / image pixels.
* ``paper_cc_density``: 4-connected components of the object (``ndimage.label``'s default).
* ``paper_texture``: Canny edges (100 / 200) of the grey image times the mask, per object pixel.
* ``paper_{object,background}_glcm_{contrast,...,ASM}``: ``graycoprops`` of the
  256-level co-occurrence matrix of the region (the rest set to a 257th level
  that is dropped), distance 1 % of the object's diameter (background: 1 % of
  the image diagonal when that is at least 100 pixels, else 1), angles 0 and
  90 degrees, not symmetric, each property summed over the two angles. The
  background is everything but the object, ignored pixels included.

Prompt features (:func:`paper_prompt_features`), with the object's *diameter*
(largest distance between two pixels of its convex hull) and the image's
*diagonal*:

* ``paper_n_include``, ``paper_n_exclude``.
* ``paper_coverage``: object fraction inside the include points' convex hull
  (0 with fewer than three points or collinear ones).
* ``paper_max_spread``: largest include-include distance / diameter.
* ``paper_mean_min_distance``: root mean square of the include points'
  nearest-neighbour distances / diameter (0 for one point).
* ``paper_include_exclude_distance``: symmetric chamfer distance (squared
  distances truncated to integers, as the reference's ``astype('int64')``) / diagonal.
* ``paper_exclude_spread``: largest exclude-exclude distance / diagonal.
* ``paper_include_efficiency``: coverage / include points.
* ``paper_exclude_encasing``: mean distance of the exclude points outside the
  object's contours (``-cv2.pointPolygonTest``, nearest contour, 0 when the
  mean is not positive) / diagonal.
* ``paper_include_encasing``: the same for the include points inside the object / diameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.spatial.distance import cdist

from .features import GLCM_PROPERTIES
from .strategies.base import PointSet

#: Objects smaller than this fraction of the image get no GLCM or prompt features (the reference's cut-off).
MIN_AREA_FRACTION = 0.0005
GLCM_LEVELS = 256
GLCM_ANGLES = (0.0, np.pi / 2)

PAPER_OBJECT_FEATURES: tuple[str, ...] = (
    "paper_mask_size",
    "paper_cc_density",
    "paper_texture",
    *(f"paper_{side}_glcm_{prop}" for side in ("object", "background") for prop in GLCM_PROPERTIES),
)
PAPER_PROMPT_FEATURES: tuple[str, ...] = (
    "paper_n_include",
    "paper_n_exclude",
    "paper_coverage",
    "paper_max_spread",
    "paper_mean_min_distance",
    "paper_include_exclude_distance",
    "paper_exclude_spread",
    "paper_include_efficiency",
    "paper_exclude_encasing",
    "paper_include_encasing",
)
PAPER_FEATURES: tuple[str, ...] = PAPER_OBJECT_FEATURES + PAPER_PROMPT_FEATURES


def reference_gray(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8: ``cv2.COLOR_BGR2GRAY`` of the RGB ``image``, as the reference converts it."""
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2GRAY)


def mask_diameter(mask: np.ndarray) -> float:
    """Largest distance between two pixels of the mask (over its convex hull's vertices), in pixels."""
    rows, cols = np.nonzero(mask)
    if rows.size < 2:
        return 0.0
    hull = cv2.convexHull(np.stack([cols, rows], axis=1).astype(np.int32)).reshape(-1, 2).astype(np.float64)
    return float(cdist(hull, hull).max())


def glcm_sums(gray: np.ndarray, region: np.ndarray, distance: int) -> dict[str, float]:
    """Each ``graycoprops`` property of the region's 256-level GLCM, summed over the angles 0 and 90 degrees."""
    from skimage.feature import graycomatrix, graycoprops

    levels = gray.astype(np.uint16)
    levels[~region] = GLCM_LEVELS  # a level of its own, cut from the matrix
    counts = graycomatrix(levels, [distance], list(GLCM_ANGLES), levels=GLCM_LEVELS + 1)[:GLCM_LEVELS, :GLCM_LEVELS]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {prop: float(np.sum(graycoprops(counts, prop))) for prop in GLCM_PROPERTIES}


def _too_small(mask: np.ndarray) -> bool:
    return mask.sum() < mask.size * MIN_AREA_FRACTION


def paper_object_features(image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The object features (module docstring) of an ``(H, W, 3)`` uint8 image and ``(H, W)`` bool mask."""
    mask = np.asarray(mask, bool)
    gray = reference_gray(image)
    area = int(mask.sum())
    edges = cv2.Canny(gray * mask.astype(np.uint8), 100, 200) > 0
    out = {
        "paper_mask_size": area / mask.size,
        "paper_cc_density": float(ndimage.label(mask)[1]),
        "paper_texture": float((edges & mask).sum() / area) if area else float("nan"),
    }
    diagonal = float(np.hypot(*mask.shape))
    distances = {
        "object": max(int(mask_diameter(mask) * 0.01), 1),
        "background": max(int(diagonal * 0.01), 1) if diagonal >= 100 else 1,
    }
    for side, region in (("object", mask), ("background", ~mask)):
        values = (
            dict.fromkeys(GLCM_PROPERTIES, float("nan"))
            if _too_small(region)
            else glcm_sums(gray, region, distances[side])
        )
        out.update({f"paper_{side}_glcm_{k}": v for k, v in values.items()})
    return out


@dataclass(frozen=True)
class ObjectShape:
    """What the prompt features need of one object, computed once: its mask, contours, diameter and the image diagonal."""

    mask: np.ndarray
    contours: tuple[np.ndarray, ...]
    diameter: float
    diagonal: float

    @classmethod
    def of(cls, mask: np.ndarray) -> "ObjectShape":
        mask = np.asarray(mask, bool)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        return cls(mask, tuple(contours), mask_diameter(mask), float(np.hypot(*mask.shape)))


def _max_distance(xy: np.ndarray) -> float:
    return float(cdist(xy, xy).max()) if len(xy) else float("nan")


def _rms_nearest(xy: np.ndarray) -> float:
    if len(xy) < 2:
        return 0.0
    squared = cdist(xy, xy, "sqeuclidean")
    np.fill_diagonal(squared, np.inf)
    return float(np.sqrt(squared.min(axis=1).mean()))


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a) or not len(b):
        return float("nan")
    distance = np.sqrt(cdist(a, b, "sqeuclidean").astype(np.int64))
    return float((distance.min(axis=1).mean() + distance.min(axis=0).mean()) / 2)


def _contour_distance(xy: np.ndarray, contours: tuple[np.ndarray, ...], sign: float) -> float:
    """Mean over the points of ``sign x`` signed distance to the nearest-by-value contour, 0 when not positive."""
    if not len(xy) or not contours:
        return float("nan")
    nearest = [min(sign * cv2.pointPolygonTest(c, (float(x), float(y)), True) for c in contours) for x, y in xy]
    return max(float(np.mean(nearest)), 0.0)


def _coverage(include: np.ndarray, mask: np.ndarray) -> float:
    if len(include) < 3:
        return 0.0
    hull = cv2.convexHull(include.astype(np.float32)).reshape(-1, 2)
    if len(hull) < 3:  # collinear points
        return 0.0
    canvas = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(canvas, [hull.astype(np.int64).astype(np.int32)], 1)
    return float((canvas.astype(bool) & mask).sum() / mask.sum())


def paper_prompt_features(points: PointSet, shape: ObjectShape) -> dict[str, float]:
    """The prompt features (module docstring) of ``points`` for the object ``shape``."""
    include, exclude = points.include, points.exclude
    if _too_small(shape.mask):
        values = dict.fromkeys(PAPER_PROMPT_FEATURES, float("nan"))
        values.update(paper_n_include=float(len(include)), paper_n_exclude=float(len(exclude)))
        return values
    coverage = _coverage(include, shape.mask)
    diameter = shape.diameter if shape.diameter > 0 else float("nan")
    return {
        "paper_n_include": float(len(include)),
        "paper_n_exclude": float(len(exclude)),
        "paper_coverage": coverage,
        "paper_max_spread": _max_distance(include) / diameter,
        "paper_mean_min_distance": _rms_nearest(include) / diameter,
        "paper_include_exclude_distance": _chamfer(include, exclude) / shape.diagonal,
        "paper_exclude_spread": _max_distance(exclude) / shape.diagonal,
        "paper_include_efficiency": coverage / len(include) if len(include) else float("nan"),
        "paper_exclude_encasing": _contour_distance(exclude, shape.contours, -1.0) / shape.diagonal,
        "paper_include_encasing": _contour_distance(include, shape.contours, 1.0) / diameter,
    }
