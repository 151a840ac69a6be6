"""Nested colour floods from seed points: region proposals for one click, without weights.

From the seeds, a flood takes every pixel connected to a seed through pixels
whose colour lies within a tolerance of a seed's colour. Growing the
tolerance gives a nested family of regions, from a blob around the click to
most of the image; somewhere in between the flood fills the clicked object and
stops at its border, if the object is roughly uniform in colour (an organ in
CT, a lesion, a polyp). Which member that is, is left to the caller's quality
estimate (:mod:`segprompt.backends.mask_quality`).

Colours are CIELAB after a small Gaussian blur (noise and JPEG blocks would
otherwise stop a flood early). The distance of a pixel is the Euclidean
CIELAB distance to the nearest seed's colour (the mean over that seed's disc),
so several clicks on differently coloured parts of one object each grow their
part. Tolerances are quantiles of that distance over the image, so the family
covers the same range of region sizes on low- and high-contrast images.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

#: Gaussian blur before the colour distance, in pixels of the flooded image.
FLOOD_SIGMA = 1.0
#: The tolerances: these quantiles of the colour distance over the image (geometric, 0.3 % to 60 % of the pixels).
FLOOD_QUANTILES = tuple(float(q) for q in np.geomspace(0.003, 0.6, 16))


def colour_distance(image: np.ndarray, seeds: list[np.ndarray]) -> np.ndarray:
    """``(h, w)`` float32 CIELAB distance of every pixel to the nearest seed colour.

    ``image`` is ``(h, w, 3)`` uint8 RGB; each of ``seeds`` an ``(h, w)`` bool
    disc whose mean (blurred) colour is that seed's colour.
    """
    lab = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32), (0, 0), FLOOD_SIGMA)
    distance = np.full(image.shape[:2], np.inf, np.float32)
    for seed in seeds:
        np.minimum(distance, np.linalg.norm(lab - lab[seed].mean(axis=0), axis=2), out=distance)
    return distance


def colour_floods(
    image: np.ndarray, seeds: list[np.ndarray], quantiles: tuple[float, ...] = FLOOD_QUANTILES
) -> list[tuple[np.ndarray, float]]:
    """The nested floods from ``seeds``: ``(region, quantile)`` pairs, smallest tolerance first.

    Each region is the ``(h, w)`` bool union of the connected components of
    ``distance <= tolerance`` that touch a seed disc, holes filled, where the
    tolerance is that ``quantile`` of :func:`colour_distance` over the image.
    A seed disc always belongs to its region.
    """
    distance = colour_distance(image, seeds)
    anywhere = np.logical_or.reduce(seeds)
    out = []
    for quantile, tolerance in zip(quantiles, np.quantile(distance, quantiles)):
        labels, count = ndi.label((distance <= tolerance) | anywhere)
        touched = np.unique(labels[anywhere])
        region = np.isin(labels, touched[touched > 0])
        out.append((ndi.binary_fill_holes(region), float(quantile)))
    return out


__all__ = ["FLOOD_QUANTILES", "FLOOD_SIGMA", "colour_distance", "colour_floods"]
