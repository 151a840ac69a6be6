"""A zero-weight estimate of how well a mask fits its image: the classical backend's scores.

Nothing here is learned. A mask earns its *image evidence* from two classical
cues that need no threshold tuned to a domain:

* **superpixel alignment** (the "superpixel straddling" cue of Alexe et al.,
  *Measuring the objectness of image windows*, TPAMI 2012): the image is cut
  into SLIC superpixels at two scales (:data:`SUPERPIXEL_SCALES`), small regions of uniform colour whose borders
  follow the image's edges at the local contrast. A mask whose border runs
  along edges takes whole superpixels; one that cuts through uniform colour
  (a region stopped short of the object, or leaking past it) splits them.
  ``1 - sum_s min(|s & M|, |s - M|) / |M|`` over the superpixels ``s``: 1 when
  every superpixel lies inside or outside, 0 or less when the mask is mostly
  split pieces (a mask smaller than half a superpixel); floored at
  :data:`ALIGNMENT_FLOOR`, so that masks which cut through everything are still
  ranked by their other cues. The cue needs superpixels smaller than the
  object: a small one (a nucleus of 150 px on a 256 px copy) often lies
  inside a coarse superpixel that also takes its background, which says
  nothing against the mask. So a mask is measured at the coarsest scale
  whose mean superpixel covers at most 1 / :data:`SUPERPIXELS_PER_MASK` of
  it, else at the finest;
* **solidity**: the mask's area over its convex hull's. Objects are mostly
  compact; a region that leaks through a gap into the background grows arms.

``evidence = sqrt(alignment * solidity)``, in ``[0, 1]``. The backend
multiplies it by how well the mask agrees with the prompt it answers
(:func:`centredness` of the clicks, box consistency, agreement with a mask
prompt), so a score near 1 means "fits the image and the prompt". On the
shared data (``benchmarks/eval_classical.py``) the score of the returned mask
correlates with its true IoU; the script prints the Spearman correlation.

Frames: every function takes arrays of one frame (the backend's proposal
copy); points are ``(x, y)`` = ``(column, row)`` in that frame.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.segmentation import slic

from ..geometry import inner_distance

#: SLIC superpixels per image at each scale (for the <= 256 px proposal copy: regions of about 15 x 15 and 7 x 7 px).
SUPERPIXEL_SCALES = (300, 1200)
#: Superpixels of a scale's mean area a mask must span for that scale to measure it.
SUPERPIXELS_PER_MASK = 4
#: SLIC's balance of colour against space (scikit-image's default scale, for CIELAB).
SUPERPIXEL_COMPACTNESS = 10.0
#: The lowest superpixel alignment of a non-empty mask.
ALIGNMENT_FLOOR = 1e-3


def superpixels(image: np.ndarray) -> np.ndarray:
    """``(S, h, w)`` int32 SLIC labels ``0..n-1`` of an ``(h, w, 3)`` uint8 RGB image, one map per :data:`SUPERPIXEL_SCALES` (deterministic)."""
    maps = [
        slic(image, n_segments=count, compactness=SUPERPIXEL_COMPACTNESS, start_label=0, channel_axis=-1)
        for count in SUPERPIXEL_SCALES
    ]
    return np.stack(maps).astype(np.int32)


def superpixel_alignment(mask: np.ndarray, labels: np.ndarray) -> float:
    """``1 - sum_s min(|s & mask|, |s - mask|) / |mask|`` over the superpixels ``labels``.

    ``mask`` is ``(h, w)`` bool and ``labels`` one ``(h, w)`` int superpixel
    map or the ``(S, h, w)`` maps of :func:`superpixels`, coarsest first: the
    coarsest whose mean superpixel is at most ``|mask| /``
    :data:`SUPERPIXELS_PER_MASK` is used, else the finest. Clipped to
    ``[ALIGNMENT_FLOOR, 1]``; an empty mask scores 0.
    """
    area = np.count_nonzero(mask)
    if area == 0:
        return 0.0
    for level in labels.reshape(-1, *mask.shape):  # coarsest first; the finest when none is fine enough
        count = int(level.max()) + 1
        if level.size / count <= area / SUPERPIXELS_PER_MASK:
            break
    inside = np.bincount(level[mask], minlength=count)
    total = np.bincount(level.ravel(), minlength=count)
    return float(np.clip(1.0 - np.minimum(inside, total - inside).sum() / area, ALIGNMENT_FLOOR, 1.0))


def solidity(mask: np.ndarray) -> float:
    """Area of ``mask`` over the area of its convex hull (pixel polygons), at most 1; 0 for an empty mask."""
    area = np.count_nonzero(mask)
    if area == 0:
        return 0.0
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    # A polygon through pixel centres has less area than its pixels: a 1-px-wide mask has a hull of area 0.
    return float(min(1.0, area / max(cv2.contourArea(hull), 1.0)))


def evidence(mask: np.ndarray, labels: np.ndarray) -> float:
    """How well ``mask`` fits the image on its own: ``sqrt(superpixel alignment * solidity)``, in ``[0, 1]``."""
    return float(np.sqrt(superpixel_alignment(mask, labels) * solidity(mask)))


def centredness(mask: np.ndarray, points_xy: np.ndarray) -> float:
    """How near the middle of ``mask`` the clicks ``points_xy`` ``(N, 2)`` lie, in ``[0, 1]``.

    A first click lands inside the object, usually well inside it; a region
    that the clicks sit near the edge of is more often a larger region the
    object belongs to (or a leak). For each click: its distance to the outside
    of the mask over the largest such distance in the mask (1 at the most
    interior pixel, 0 outside); the mean over the clicks. The image border
    counts as outside.
    """
    depth = inner_distance(mask)
    deepest = depth.max()
    if deepest <= 0 or len(points_xy) == 0:
        return 0.0
    rows = np.clip(np.round(points_xy[:, 1]).astype(int), 0, mask.shape[0] - 1)
    cols = np.clip(np.round(points_xy[:, 0]).astype(int), 0, mask.shape[1] - 1)
    return float(np.mean(depth[rows, cols]) / deepest)


__all__ = ["ALIGNMENT_FLOOR", "SUPERPIXELS_PER_MASK", "SUPERPIXEL_SCALES", "centredness", "evidence", "solidity", "superpixel_alignment", "superpixels"]
