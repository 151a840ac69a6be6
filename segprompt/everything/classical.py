"""Zero-weight "segment everything": thresholding, dark-ridge cuts and a distance-transform watershed.

The offline default of :func:`segprompt.everything.segment_everything`, and the
Otsu + distance-transform watershed baseline it is measured against
(``benchmarks/eval_everything.py``).

Both work on the grey level ``g`` in ``[0, 1]`` (the mean of the RGB channels)
and both decide the *polarity* the same way: objects are either brighter or
darker than their surroundings. Thresholding splits the image into a bright and
a dark side; the background is the side that is one connected sea (its largest
connected component holds the larger share of its pixels), the objects the side
that falls apart into many pieces. That is right for fluorescence (bright
nuclei on a dark sea), brightfield and histology (dark nuclei on a bright sea)
and electron microscopy (bright cells in a connected net of dark membranes).

:func:`classical_labels` (ours), in order:

1. smooth ``g`` with a Gaussian of :attr:`ClassicalEverything.sigma` px and
   flip it so objects are bright (polarity above);
2. foreground = Li's minimum-cross-entropy threshold of the smoothed image,
   which keeps more of textured object interiors than Otsu's;
3. cut along dark ridges: a pixel whose Sato ridge response (dark lines of
   width ~ :attr:`~ClassicalEverything.ridge_sigmas`) exceeds
   :attr:`~ClassicalEverything.ridge_factor` x its Otsu threshold is
   background, which separates objects touching through a thin dark seam
   (membranes, the gap between touching nuclei);
4. fill holes (dark organelles inside a cell, a nucleus' textured core) and
   drop specks under :attr:`~ClassicalEverything.min_area` px;
5. split what still touches by a watershed of the smoothed distance transform
   from its h-maxima: a neck splits two objects only where the distance
   transform dips by at least :attr:`~ClassicalEverything.h` px, so an elongated
   or irregular object is not cut into pieces at every bump (the weak point of
   plain peak markers).

:func:`otsu_watershed_labels` (the baseline): Otsu on ``g`` with the same
polarity rule, then the textbook distance-transform watershed: markers at the
distance transform's local maxima at least :data:`BASELINE_MIN_DISTANCE` px
apart within each connected component, flooded over the negated distance inside
the foreground.

Every id in the returned ``(H, W)`` int32 label maps is one 4-connected object
(ids ``1..N``, ``0`` background); pixel frame = the image's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import feature, filters, measure, morphology, segmentation

from ..backends.base import Embedding, Segmenter
from ..errors import ImageError
from ..instances import Instances
from ..io import to_rgb_uint8
from ..progress import ProgressCallback, no_progress
from . import GENERATORS

#: Minimum distance (px) between two markers of the baseline watershed.
BASELINE_MIN_DISTANCE = 5


@dataclass(frozen=True)
class ClassicalEverything:
    """Settings of :func:`classical_labels` (see the module docstring for each step).

    Chosen on the first 12 images of ``dsb2018_nuclei`` and of
    ``isbi2012_em_membranes`` (one setting for both) and reported on all of them.
    """

    #: Gaussian smoothing before thresholding, px.
    sigma: float = 1.0
    #: Widths (Gaussian sigmas, px) of the dark ridges that cut objects apart.
    ridge_sigmas: tuple[float, ...] = (1.0, 2.0)
    #: A ridge response above this multiple of its Otsu threshold is background.
    ridge_factor: float = 1.5
    #: Depth (px of the distance transform) a neck must have to split two objects.
    h: float = 3.0
    #: Objects and specks smaller than this (px) are dropped.
    min_area: int = 8

    def __post_init__(self) -> None:
        for name in ("sigma", "ridge_factor", "h"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ClassicalEverything.{name} must be > 0, got {getattr(self, name)}")
        if not self.ridge_sigmas or min(self.ridge_sigmas) <= 0:
            raise ValueError(f"ClassicalEverything.ridge_sigmas must be positive widths, got {self.ridge_sigmas}")
        if self.min_area < 0:
            raise ValueError(f"ClassicalEverything.min_area must be >= 0, got {self.min_area}")


def grey_level(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float64 in ``[0, 1]``: the mean of the RGB channels of any image segprompt reads."""
    rgb = to_rgb_uint8(image)
    return rgb.mean(axis=2) / 255.0


def objects_are_bright(grey: np.ndarray, threshold: float) -> bool:
    """Whether the objects lie above ``threshold``: the other side is one connected sea (module docstring)."""
    shares = []
    for side in (grey > threshold, grey <= threshold):
        labels, count = ndi.label(side)
        sizes = np.bincount(labels.ravel())[1:]
        shares.append(sizes.max() / sizes.sum() if count else 1.0)
    bright_share, dark_share = shares
    return bool(bright_share <= dark_share)


def _as_objects_bright(grey: np.ndarray) -> np.ndarray:
    """``grey``, or ``1 - grey`` when the objects are the dark side of Otsu's threshold."""
    if np.ptp(grey) == 0:
        return grey
    return grey if objects_are_bright(grey, filters.threshold_otsu(grey)) else 1.0 - grey


def classical_labels(
    image: np.ndarray, settings: ClassicalEverything = ClassicalEverything(), progress: ProgressCallback = no_progress
) -> np.ndarray:
    """Every object of ``image`` as an ``(H, W)`` int32 label map (see the module docstring).

    Args:
        image: ``(H, W[, C])`` image, any type :func:`segprompt.io.to_rgb_uint8` takes.
        settings: the parameters of each step.
        progress: ``progress(done, 3, message)`` after each stage.
    """
    grey = grey_level(image)
    if min(grey.shape) < 2:
        raise ImageError(f"segment everything: the image must be at least 2 x 2 pixels, got {grey.shape}")
    progress(0, 3, "classical everything: foreground")
    objects = _as_objects_bright(filters.gaussian(grey, settings.sigma))
    if np.ptp(objects) == 0:
        progress(3, 3, "classical everything: a constant image holds no object")
        return np.zeros(grey.shape, np.int32)
    foreground = objects > filters.threshold_li(objects)
    ridges = filters.sato(objects, sigmas=settings.ridge_sigmas, black_ridges=True)
    if np.ptp(ridges) > 0:
        foreground &= ridges <= settings.ridge_factor * filters.threshold_otsu(ridges)
    foreground = ndi.binary_fill_holes(foreground)
    foreground = morphology.remove_small_objects(foreground, max_size=max(settings.min_area - 1, 0))
    progress(1, 3, "classical everything: splitting touching objects")
    distance = filters.gaussian(ndi.distance_transform_edt(foreground), 1.0)
    markers = measure.label(morphology.h_maxima(distance, settings.h).astype(bool) & foreground)
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    progress(2, 3, "classical everything: cleaning up")
    labels = _split_disconnected(labels)
    labels = morphology.remove_small_objects(labels, max_size=max(settings.min_area - 1, 0))
    progress(3, 3, "classical everything: done")
    return segmentation.relabel_sequential(labels)[0].astype(np.int32)


@GENERATORS.register
class ClassicalGenerator:
    """The classical backend's everything: :func:`classical_labels` as :class:`Instances`.

    Each object's score is its solidity (area / convex-hull area, in ``(0, 1]``):
    a watershed piece that swallowed a neighbour or leaked into the background
    is concave.
    """

    name = "classical"
    Settings = ClassicalEverything

    @staticmethod
    def generate(
        segmenter: Segmenter, embedding: Embedding, settings: ClassicalEverything, progress: ProgressCallback
    ) -> Instances:
        labels = classical_labels(embedding.image, settings, progress)
        solidity = [region.solidity for region in measure.regionprops(labels)]
        return Instances.from_label_map(labels, solidity)


def _split_disconnected(labels: np.ndarray) -> np.ndarray:
    """Give every 4-connected piece of every id its own id (a watershed basin can fall apart)."""
    pieces = measure.label(labels, connectivity=1, background=0)
    return pieces.astype(np.int32)


def otsu_watershed_labels(image: np.ndarray, min_distance: int = BASELINE_MIN_DISTANCE) -> np.ndarray:
    """The baseline: Otsu foreground and the textbook distance-transform watershed (module docstring)."""
    grey = grey_level(image)
    if np.ptp(grey) == 0:
        return np.zeros(grey.shape, np.int32)
    threshold = filters.threshold_otsu(grey)
    foreground = grey > threshold if objects_are_bright(grey, threshold) else grey <= threshold
    distance = ndi.distance_transform_edt(foreground)
    peaks = feature.peak_local_max(distance, min_distance=min_distance, labels=measure.label(foreground))
    markers = np.zeros(grey.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    return segmentation.relabel_sequential(_split_disconnected(labels))[0].astype(np.int32)


__all__ = [
    "BASELINE_MIN_DISTANCE",
    "ClassicalGenerator",
    "ClassicalEverything",
    "classical_labels",
    "grey_level",
    "objects_are_bright",
    "otsu_watershed_labels",
]
