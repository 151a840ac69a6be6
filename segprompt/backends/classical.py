"""The zero-weight classical backend: GrabCut, colour floods and superpixels, scored by an estimate of quality.

Working resolution and coordinate mapping
-----------------------------------------
:meth:`ClassicalSegmenter.embed` keeps a working copy of the image whose
longest side is at most :data:`WORK_SIDE` (never upscaled), resized with
``cv2.INTER_AREA`` by the factor ``s = min(1, WORK_SIDE / max(H, W))``, and a
*proposal copy* the same way at :data:`PROPOSAL_SIDE` with its SLIC
superpixels. Boxes and masks are segmented on the working copy, click
proposals on the proposal copy, and every score is computed on the proposal
copy. Prompt coordinates map with the pixel-centre convention that
``cv2.resize`` uses: original ``(x, y)`` -> ``((x + 0.5) * s - 0.5, (y + 0.5)
* s - 0.5)``; box edges (which lie between pixels) map as ``x * s``. Masks go
back to ``(H, W)`` by bilinear resizing of the 0/1 mask thresholded at 0.5,
the inverse of the same mapping.

Box (optionally with points)
----------------------------
GrabCut (``cv2.grabCut`` initialised from a label mask, 5 iterations) on a
crop of the working image around the box (:data:`ROI_MARGIN` of context),
padded by reflection and the padding labelled background, so a box touching
every image border still leaves background pixels to learn from (plain
``cv2.grabCut`` asserts on it). Labels: outside the box "background"; inside the box "probably
background"; the ellipse inscribed in the box "probably foreground"; a central
ellipse of :data:`CORE_FRACTION` of the box size "foreground" (a tight box is
drawn around the object, so its centre region is almost always object, and
this keeps GrabCut from collapsing to nothing on low-contrast images such as
colonoscopy polyps; include points replace this core, which could bridge two
objects in one box); include / exclude points are foreground / background
discs. The result keeps the connected component that overlaps the inscribed
ellipse most (with include points: every component holding one), with its
holes filled; exclude discs stay out.

A box alone also runs GrabCut from plain GrabCut's initialisation (the whole
box "probably foreground", no ellipse, no core) on the same crop: it does
better on high-contrast objects that fill their box unevenly.

A tight box touches the object on all four sides. The *box consistency* of a
mask is the IoU between its bounding box and the prompt box (1 = touches all
four sides). The candidates are the two GrabCut masks and the inscribed
ellipse, named ``"fallback ellipse"``: the answer when GrabCut has lost the
object, a shape prior and no evidence from the image, and scored so (below).

Points inside a box also give a random-walker candidate (everything outside
the box is its background seed, the include discs its foreground), scored
like the GrabCut one. On the first 4 Kvasir-SEG polyps / 4 COCO objects with
the centre click inside the tight box, the picked mask went from mean IoU
0.54 / 0.62 (GrabCut alone) to 0.59 / 0.62; the walk itself scored 0.15 /
0.53. Each walk costs about 0.1 s at 160 px (``mode="bf"``).

Points only: ranked proposals (``click_method="proposals"``, the default)
-------------------------------------------------------------------------
Without a box nothing says how large the object is, or where it ends: a click
inside a CT organ also lies inside the body, a click on a polyp inside the
bowel wall. So the backend makes proposals of every size around the include
points, on the proposal copy, and lets the quality estimate pick:

* **colour floods** (:func:`~segprompt.backends.colour_flood.colour_floods`):
  16 nested regions connected to the clicks within growing CIELAB tolerances
  of the clicked colours. They find uniform objects of any size (an aorta of
  a few dozen pixels, a liver, a lesion) where GrabCut's colour models, fitted
  on a window around the click, mostly learn the window. A flood that reaches
  an exclude point ends the family (every larger one reaches it too);
* **GrabCut windows**: for each of :data:`PROPOSAL_WINDOWS` a square window
  reaching ``fraction * longest side`` beyond the include points is "probably
  background" (outside it "background"), a disc of half that reach around the
  include points "probably foreground", the points themselves foreground discs
  and exclude points background discs (radius :data:`SEED_RADIUS_FRACTION` of
  the longest side). They find textured objects (animals, people) that no
  colour tolerance separates.

Each proposal keeps the components holding include points, holes filled,
minus the exclude discs, and scores ``evidence * centredness ** 2``
(:mod:`~segprompt.backends.mask_quality`): how well it follows the image's
edges and how compact it is, and whether the clicks sit near its middle (a
flood grown into a larger region mostly has the click off its middle; a blob
stopped inside the object cuts its superpixels). The answer is the
:data:`CLICK_CANDIDATES` best proposals that do not overlap each other more
than :data:`DISTINCT_IOU`, best first; each names its maker
(``"colour flood (tolerance quantile 0.146)"``, ``"grabcut (click window 0.2)"``).

Several include clicks already outline the object's extent, and its middle
is no longer where they are: with two or more, the answer is the one mask the
previous click method picks (below: GrabCut windows on the working copy, one
per :data:`CLICK_SCALES`, the smallest the object ends inside), scored
``evidence * containment``. On PointPrompt's automatic multi-point prompts
(``segprompt bench pointprompt``, first 2 grabcut_scribbles images, mean of
the automatic strategies) the proposals reached mean IoU 0.69 and the windows
picked by containment 0.96; picking the windows by evidence as well lost
0.02 there and took the sky around the demo's rocket (a big convex region
follows its superpixels better than a thin rocket does).

Design notes, on the six shared datasets of ``benchmarks/eval_classical.py``
at design time: the best of all proposals (an oracle) averaged IoU 0.71 over
the datasets; choosing by any one cue alone (superpixel alignment, solidity,
colour contrast with a ring around the mask, edge strength along the border,
centredness, area) reached 0.06–0.34; the product above about 0.55. Its
exponents come from a grid of 0, 1/2, 1, 2: with any one dataset left out the
grid gives the same exponents on the other five, except without CT
(centredness and solidity to the power 1, and 0.32 on CT instead of 0.42).
Felzenszwalb segments and floods on a blurrier copy added nothing; superpixel
counts of 150-1000 changed little; refining the chosen
proposal with GrabCut at the working resolution lowered it. The click at each
object's most interior pixel is what ``centredness`` rewards most; a user's
first click near the middle of an object is what it assumes. The weak spot:
an object smaller than a superpixel of the proposal copy (a CT aorta of some
150 px there) cannot show that its border follows the image, so a larger
region around it that happens to be centred on the click (the body) wins.

Points only: the previous click methods
---------------------------------------
``click_method="grabcut"`` (the default until the proposals) makes one GrabCut
window per :data:`CLICK_SCALES` on the working copy, labelled as above, and
picks by *containment*: ``1 -`` the fraction of the window's 2-pixel inner
border band that the mask covers (1 = the object ends inside the window).
``"random_walker"`` (or ``"both"``) instead (or also) gives a scikit-image
random walker per window (:func:`_random_walker`: the window grown by
:data:`ROI_MARGIN`, downscaled to :data:`RW_SIDE` px, its outer ring and the
exclude discs background seeds, the include discs foreground), scored by the
same containment; a walk from one small seed stays small, ends well inside
its window and so scores near 1. They are kept so that
``benchmarks/eval_classical.py`` measures the default against them in one
run; their containment says whether the window was large enough, not whether
the mask is right.

Mask prompt
-----------
A binary mask prompt (refinement) initialises GrabCut: the mask eroded is
"foreground", the mask "probably foreground", a band around it
"probably background", the rest "background" (points add discs as above;
a box, when given, also makes everything outside it "background").

Scores
------
Every score is in ``[0, 1]``, is an estimate of the answer's quality (higher
is better; ``benchmarks/eval_classical.py`` prints its Spearman correlation
with the true IoU) and is the *evidence* of
:mod:`~segprompt.backends.mask_quality` (superpixel alignment and solidity on
the proposal copy) times the answer's agreement with its prompt:

* from one include click: ``centredness ** 2`` of the click (above); from
  several: containment of the picked window (below);
* from a box (with or without points): box consistency to the power
  :data:`BOX_CONSISTENCY_POWER`;
* refining a mask prompt: IoU with the mask prompt (how much of the user's
  mask survived);
* fallback shape priors (the inscribed ellipse, the mask prompt unchanged):
  :data:`FALLBACK_WEIGHT` times their own evidence, so they are named and
  score low, and are the answer only when the data-driven masks score lower
  still. As ``0.8 ** 3 ~ 0.5``, a GrabCut mask with the ellipse's evidence
  beats it when its box consistency passes 0.8, the acceptance threshold
  the backend used before. With points next to a box the ellipse scores 0:
  the clicks are the user correcting GrabCut, and the ellipse ignores them.
* the previous click methods: containment alone (above).

GrabCut's k-means initialisation draws from OpenCV's default random generator,
which is per thread (``cv::theRNG()`` is thread-local); it is re-seeded in the
calling thread before every call, so results are deterministic, also when
several threads segment at once. Floods, superpixels and scores involve no
randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import random_walker

from ..errors import SegpromptError, UnsupportedPromptError
from ..prompts import Prompt
from .base import Embedding, Prediction, Segmenter
from ..progress import ProgressCallback, no_progress
from . import register
from .colour_flood import colour_floods
from .mask_quality import centredness, evidence, superpixels

#: Longest side of the working copy, in pixels.
WORK_SIDE = 512
#: GrabCut iterations.
GRABCUT_ITERATIONS = 5
#: Size of the central "surely foreground" ellipse, as a fraction of the box width/height.
CORE_FRACTION = 0.3
#: A fallback shape prior (the inscribed ellipse, an unchanged mask prompt) scores this fraction of its evidence.
FALLBACK_WEIGHT = 0.5
#: A box answer's score is its evidence times its box consistency to this power (0.8 ** 3 ~ FALLBACK_WEIGHT).
BOX_CONSISTENCY_POWER = 3
#: Reach of the click-only windows beyond the include points, as fractions of the working longest side.
CLICK_SCALES = (0.2, 0.3, 0.45)
#: Radius of a point's seed disc, as a fraction of the working longest side (at least 2 px).
SEED_RADIUS_FRACTION = 0.01
#: Context kept around the box / window when cropping for GrabCut, as a fraction of its size.
ROI_MARGIN = 0.25
#: Seed of OpenCV's random generator before each GrabCut call.
GRABCUT_SEED = 0
#: How clicks without a box are answered: :class:`ClassicalSegmenter` ``click_method`` values.
CLICK_METHODS = ("proposals", "grabcut", "random_walker", "both")
#: Longest side of the proposal copy that click proposals and every score are computed on, in pixels.
PROPOSAL_SIDE = 256
#: Reach of the proposal GrabCut windows beyond the include points, as fractions of the proposal copy's longest side.
PROPOSAL_WINDOWS = (0.1, 0.2, 0.3, 0.45)
#: Candidates a click answer returns: the best-scoring proposals, no two overlapping more than :data:`DISTINCT_IOU`.
CLICK_CANDIDATES = 3
#: Proposals overlapping a better one more than this IoU are not returned as separate candidates.
DISTINCT_IOU = 0.9
#: Format of :meth:`ClassicalSegmenter.embed`'s data; part of the model id, so a cached older embedding is not reused.
EMBEDDING_VERSION = 3
#: Longest side of the crop the random walker solves on, in pixels.
RW_SIDE = 160
#: Edge sharpness of the random walker (scikit-image's ``beta``, applied to RGB in [0, 1]).
RW_BETA = 5000.0
#: scikit-image random-walker solver (direct; 0.1 s at 160 px where ``cg_j`` took 9.6 s).
RW_MODE = "bf"


def _ellipse(shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool ellipse inscribed in ``box = (x0, y0, x1, y1)`` (edges between pixels)."""
    x0, y0, x1, y1 = box
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    cx, cy = (x0 + x1) / 2 - 0.5, (y0 + y1) / 2 - 0.5
    rx, ry = max((x1 - x0) / 2, 0.5), max((y1 - y0) / 2, 0.5)
    return ((cols - cx) / rx) ** 2 + ((rows - cy) / ry) ** 2 <= 1.0


def _bbox_mask(shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool mask of the pixels whose centres lie inside ``box``."""
    x0, y0, x1, y1 = box
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (cols + 0.5 > x0) & (cols + 0.5 < x1) & (rows + 0.5 > y0) & (rows + 0.5 < y1)


def box_consistency(mask: np.ndarray, box: np.ndarray) -> float:
    """IoU between the bounding box of ``mask`` and ``box = (x0, y0, x1, y1)``; 0 for an empty mask."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return 0.0
    mx0, my0, mx1, my1 = cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0
    x0, y0, x1, y1 = box
    inter = max(0.0, min(mx1, x1) - max(mx0, x0)) * max(0.0, min(my1, y1) - max(my0, y0))
    union = (mx1 - mx0) * (my1 - my0) + (x1 - x0) * (y1 - y0) - inter
    return float(inter / union)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def _keep_component(mask: np.ndarray, anchor: np.ndarray, every: bool = False) -> np.ndarray:
    """The component of ``mask`` overlapping ``anchor`` most (``every``: all that overlap it), holes filled."""
    labels, count = ndi.label(mask)
    if count == 0:
        return mask
    overlap = ndi.sum(anchor, labels, index=np.arange(1, count + 1))
    if overlap.max() <= 0:
        return np.zeros_like(mask)
    keep = np.flatnonzero(overlap > 0) + 1 if every else [int(np.argmax(overlap)) + 1]
    return ndi.binary_fill_holes(np.isin(labels, keep))


def _discs(shape: tuple[int, int], xy: np.ndarray, radius: float) -> np.ndarray:
    """``(h, w)`` bool union of discs of ``radius`` around working-frame ``(x, y)`` points."""
    out = np.zeros(shape, bool)
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    for x, y in xy:
        out |= (cols - x) ** 2 + (rows - y) ** 2 <= radius**2
    return out


def _grabcut(image: np.ndarray, labels: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """GrabCut from a ``cv2.GC_*`` label map inside ``roi``; return the ``(h, w)`` bool foreground.

    Only ``roi = (x0, y0, x1, y1)`` (a box in the working frame, grown by
    :data:`ROI_MARGIN` of its size) is segmented: the colour models are then
    local to the object, and the cost does not grow with the image. The crop
    is padded by reflection and the padding labelled background, so a region
    touching every image border still has background to learn from.
    """
    height, width = labels.shape
    x0, y0, x1, y1 = roi
    grow_x, grow_y = max(8.0, ROI_MARGIN * (x1 - x0)), max(8.0, ROI_MARGIN * (y1 - y0))
    c0, r0 = max(0, int(np.floor(x0 - grow_x))), max(0, int(np.floor(y0 - grow_y)))
    c1, r1 = min(width, int(np.ceil(x1 + grow_x))), min(height, int(np.ceil(y1 + grow_y)))
    crop_labels = labels[r0:r1, c0:c1]
    out = np.zeros((height, width), bool)
    if not np.isin(crop_labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).any():
        return out
    pad = max(8, int(0.05 * max(r1 - r0, c1 - c0)))
    crop = cv2.cvtColor(np.ascontiguousarray(image[r0:r1, c0:c1]), cv2.COLOR_RGB2BGR)
    padded = cv2.copyMakeBorder(crop, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    padded_labels = cv2.copyMakeBorder(crop_labels, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=int(cv2.GC_BGD))
    # OpenCV's default RNG (cv::theRNG(), which GrabCut's k-means initialisation draws from) is
    # thread-local: seeding it here seeds this thread's only, so concurrent calls stay deterministic.
    cv2.setRNGSeed(GRABCUT_SEED)
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.grabCut(
        padded, padded_labels, None, background_model, foreground_model, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_MASK
    )
    result = padded_labels[pad:-pad, pad:-pad]
    out[r0:r1, c0:c1] = (result == cv2.GC_FGD) | (result == cv2.GC_PR_FGD)
    return out


def _random_walker(
    image: np.ndarray, foreground: np.ndarray, background: np.ndarray, roi: np.ndarray, beta: float = RW_BETA
) -> np.ndarray:
    """Random-walker foreground probability >= 0.5 inside ``roi``; return the ``(h, w)`` bool mask.

    ``foreground`` / ``background`` are ``(h, w)`` bool seed maps in the
    working frame and ``roi = (x0, y0, x1, y1)`` a box in it. The crop is
    ``roi`` grown by :data:`ROI_MARGIN` (like :func:`_grabcut`), its one-pixel
    outer ring added to the background seeds, and it is downscaled so its
    longest side is at most :data:`RW_SIDE` (the solver's cost grows with the
    pixel count). The label-1 probability is resized back to the crop
    bilinearly and thresholded at 0.5.
    """
    height, width = foreground.shape
    x0, y0, x1, y1 = roi
    grow_x, grow_y = max(8.0, ROI_MARGIN * (x1 - x0)), max(8.0, ROI_MARGIN * (y1 - y0))
    c0, r0 = max(0, int(np.floor(x0 - grow_x))), max(0, int(np.floor(y0 - grow_y)))
    c1, r1 = min(width, int(np.ceil(x1 + grow_x))), min(height, int(np.ceil(y1 + grow_y)))
    out = np.zeros((height, width), bool)
    if not foreground[r0:r1, c0:c1].any():
        return out
    factor = min(1.0, RW_SIDE / max(r1 - r0, c1 - c0))
    size = (max(3, round((c1 - c0) * factor)), max(3, round((r1 - r0) * factor)))

    def shrink(seeds: np.ndarray) -> np.ndarray:
        return cv2.resize(seeds[r0:r1, c0:c1].astype(np.float32), size, interpolation=cv2.INTER_AREA)

    crop = cv2.resize(np.ascontiguousarray(image[r0:r1, c0:c1]), size, interpolation=cv2.INTER_AREA)
    # Any trace of an include disc survives the downscale: a click is never lost.
    fore = shrink(foreground) > 0
    back = (shrink(background) >= 0.5) & ~fore
    back[[0, -1], :] = True
    back[:, [0, -1]] = True
    back &= ~fore
    labels = np.where(fore, 1, np.where(back, 2, 0)).astype(np.int32)
    probability = random_walker(
        crop.astype(np.float64) / 255.0, labels, beta=beta, mode=RW_MODE, channel_axis=-1, return_full_prob=True
    )[0]
    full = cv2.resize(probability.astype(np.float32), (c1 - c0, r1 - r0), interpolation=cv2.INTER_LINEAR)
    out[r0:r1, c0:c1] = full >= 0.5
    return out


@dataclass(eq=False)
class ClassicalEmbedding(Embedding):
    """The image, its working and proposal copies, and the proposal copy's superpixels.

    Attributes:
        work: ``(h, w, 3)`` uint8 RGB working copy (longest side <= :data:`WORK_SIDE`).
        scale: working size / original size (at most 1).
        proposal: ``(h', w', 3)`` uint8 RGB proposal copy (longest side <= :data:`PROPOSAL_SIDE`).
        proposal_scale: proposal size / original size (at most 1).
        superpixels: ``(S, h', w')`` int32 SLIC labels of the proposal copy at
            each scale (:func:`~segprompt.backends.mask_quality.superpixels`), which every score uses.
    """

    work: np.ndarray
    scale: float
    proposal: np.ndarray
    proposal_scale: float
    superpixels: np.ndarray


@register
class ClassicalSegmenter(Segmenter):
    """GrabCut segmentation with shape priors, without any learned weights (see the module docstring)."""

    name: ClassVar[str] = "classical"
    accepts: ClassVar[frozenset[str]] = frozenset({"points", "box", "mask"})
    description: ClassVar[str] = "GrabCut from boxes, clicks and masks with shape priors; no weights, CPU only"

    def __init__(self, click_method: str = "proposals") -> None:
        """``click_method``: how clicks without a box are answered (one of :data:`CLICK_METHODS`, see the module docstring)."""
        if click_method not in CLICK_METHODS:
            raise SegpromptError(f"click_method {click_method!r} is not one of {', '.join(CLICK_METHODS)}")
        self.click_method = click_method

    @property
    def model_id(self) -> str:
        """``"classical-v<EMBEDDING_VERSION>"``: no weights, but the embedding's format (a cache key part)."""
        return f"{self.name}-v{EMBEDDING_VERSION}"

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> ClassicalEmbedding:
        """Keep the RGB image, its working and proposal copies and superpixels (see :class:`ClassicalEmbedding`)."""
        rgb = self._rgb(image)
        progress(0, 2, "classical: preparing working copies")
        height, width = rgb.shape[:2]
        scale = min(1.0, WORK_SIDE / max(height, width))
        proposal_scale = min(1.0, PROPOSAL_SIDE / max(height, width))
        proposal = self._resize(rgb, proposal_scale)
        progress(1, 2, "classical: superpixels")
        labels = superpixels(proposal)
        progress(2, 2, "classical: ready")
        return ClassicalEmbedding(
            self.name, self.model_id, (height, width), rgb, self._resize(rgb, scale), scale, proposal, proposal_scale, labels
        )

    @staticmethod
    def _resize(image: np.ndarray, scale: float) -> np.ndarray:
        if scale >= 1.0:
            return image
        height, width = image.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        return cv2.resize(image, size, interpolation=cv2.INTER_AREA)

    def _predict(self, embedding: Embedding, prompt: Prompt, multimask: bool) -> Prediction:
        if prompt.box is not None or prompt.mask is not None:
            masks, scores, methods = self._grabcut_candidates(embedding, prompt)
        else:
            masks, scores, methods = self._click_candidates(embedding, prompt)
        full = np.stack([self._to_original(m, embedding.image_hw) for m in masks])
        prediction = Prediction(full, np.asarray(scores, dtype=np.float32), methods=tuple(methods))
        return prediction if multimask else prediction.subset([prediction.best])

    @staticmethod
    def _to_original(mask: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        height, width = image_hw
        if mask.shape == (height, width):
            return mask.astype(bool)
        resized = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        return resized >= 0.5

    @staticmethod
    def _points_in(prompt: Prompt, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """Include and exclude points mapped to a frame scaled by ``scale`` (pixel-centre convention)."""
        if prompt.points is None:
            empty = np.zeros((0, 2))
            return empty, empty
        return (prompt.points.include + 0.5) * scale - 0.5, (prompt.points.exclude + 0.5) * scale - 0.5

    def _grabcut_candidates(
        self, embedding: Embedding, prompt: Prompt
    ) -> tuple[list[np.ndarray], list[float], list[str]]:
        work, scale = embedding.work, embedding.scale
        shape = work.shape[:2]
        include, exclude = self._points_in(prompt, scale)
        radius = max(2.0, SEED_RADIUS_FRACTION * max(shape))
        labels = np.full(shape, cv2.GC_PR_BGD, np.uint8)
        if prompt.box is not None:
            box = prompt.box.as_array() * scale
            inside = _bbox_mask(shape, box)
            labels[~inside] = cv2.GC_BGD
        if prompt.mask is not None:
            prior = self._mask_prior(prompt, shape)
            # A band around the mask stays "probably background"; farther pixels are sure background.
            band = max(3, int(0.1 * np.sqrt(max(prior.sum(), 1))))
            near = ndi.binary_dilation(prior, iterations=band)
            labels[~near] = cv2.GC_BGD
            labels[near & (labels != cv2.GC_BGD)] = cv2.GC_PR_BGD
            labels[prior & (labels != cv2.GC_BGD)] = cv2.GC_PR_FGD
            labels[ndi.binary_erosion(prior, iterations=band) & (labels != cv2.GC_BGD)] = cv2.GC_FGD
        else:
            prior = _ellipse(shape, box) & inside
            labels[prior] = cv2.GC_PR_FGD
            if len(include) == 0:
                # Include clicks replace the assumed core (which could bridge two objects in the box).
                x0, y0, x1, y1 = box
                half_w, half_h = CORE_FRACTION * (x1 - x0) / 2, CORE_FRACTION * (y1 - y0) / 2
                cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
                core = _ellipse(shape, np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h]))
                labels[core & inside] = cv2.GC_FGD
        labels[_discs(shape, include, radius)] = cv2.GC_FGD
        excluded = _discs(shape, exclude, radius)
        labels[excluded] = cv2.GC_BGD
        # Include clicks name the object; without them the prior's largest overlap does.
        anchor = _discs(shape, include, radius) if len(include) else prior
        foreground = _grabcut(work, labels, self._roi(labels)) & ~excluded
        refined = _keep_component(foreground, anchor, every=len(include) > 0) & ~excluded
        if prompt.mask is not None:
            return (
                [refined, prior],
                [
                    self.mask_evidence(embedding, refined) * _mask_iou(refined, prior),
                    FALLBACK_WEIGHT * self.mask_evidence(embedding, prior),
                ],
                ["grabcut (mask refinement)", "fallback: the mask prompt unchanged"],
            )

        def box_score(mask: np.ndarray) -> float:
            return self.mask_evidence(embedding, mask) * box_consistency(mask, box) ** BOX_CONSISTENCY_POWER

        if prompt.points is not None:
            # Clicks with the box are the user correcting GrabCut: the ellipse ignores them, so it scores 0.
            masks, scores = [refined, prior & ~excluded], [box_score(refined), 0.0]
            methods = ["grabcut (box + clicks)", "fallback ellipse"]
            if len(include):
                # Everything outside the box is the random walker's background seed.
                walked = _random_walker(work, anchor, ~inside | excluded, box) & inside
                walked = _keep_component(walked & ~excluded, anchor, every=True) & ~excluded
                masks.append(walked)
                scores.append(box_score(walked))
                methods.append("random walker (box + clicks)")
            return masks, scores, methods
        # Box alone: also plain GrabCut's initialisation (the whole box "probably foreground"), which
        # does better than the ellipse and core on high-contrast objects that fill their box unevenly.
        plain_labels = np.where(inside, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
        plain = _keep_component(_grabcut(work, plain_labels, box), prior)
        return (
            [refined, plain, prior],
            [box_score(refined), box_score(plain), FALLBACK_WEIGHT * self.mask_evidence(embedding, prior)],
            ["grabcut (box prior)", "grabcut (plain box)", "fallback ellipse"],
        )

    @staticmethod
    def mask_evidence(embedding: Embedding, mask: np.ndarray) -> float:
        """Image evidence (:func:`~segprompt.backends.mask_quality.evidence`) of a ``(h, w)`` bool mask.

        ``mask`` may be in any frame of the embedding's image (original,
        working or proposal copy): it is brought to the proposal copy
        (area-weighted, kept where at least half covered) and scored against
        its superpixels. The image half of every score this backend gives.
        """
        labels = embedding.superpixels
        if mask.shape != labels.shape[1:]:
            size = (labels.shape[2], labels.shape[1])
            mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
        return evidence(mask, labels)

    @staticmethod
    def _roi(labels: np.ndarray) -> np.ndarray:
        """Bounding box ``(x0, y0, x1, y1)`` of the pixels not labelled sure background."""
        rows, cols = np.nonzero(labels != cv2.GC_BGD)
        if rows.size == 0:
            return np.array([0.0, 0.0, labels.shape[1], labels.shape[0]])
        return np.array([cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0])

    @staticmethod
    def _mask_prior(prompt: Prompt, shape: tuple[int, int]) -> np.ndarray:
        """The binary mask prompt at the working resolution."""
        if prompt.mask.kind != "binary":
            raise UnsupportedPromptError("backend 'classical' refines binary masks only, not SAM logits")
        data = prompt.mask.data
        if data.shape == shape:
            return data.copy()
        return cv2.resize(data.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA) >= 0.5

    def _click_candidates(
        self, embedding: Embedding, prompt: Prompt
    ) -> tuple[list[np.ndarray], list[float], list[str]]:
        # Prompt.validate_for refused exclude points alone: there is at least one include point.
        if self.click_method != "proposals":
            return self._window_candidates(embedding, prompt, with_evidence=False)
        if len(prompt.points.include) > 1:
            # Several include clicks outline the object's extent: GrabCut windows around them fit it better.
            return self._window_candidates(embedding, prompt, with_evidence=True)
        return self._proposal_candidates(embedding, prompt)

    @staticmethod
    def _click_window(
        shape: tuple[int, int], include: np.ndarray, seeds: np.ndarray, excluded: np.ndarray, fraction: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """GrabCut labels of a click window: ``(window box, (h, w) bool inside it, (h, w) uint8 labels)``.

        The square window reaches ``fraction`` of the longest side beyond the
        include points and is "probably background", outside it "background";
        a disc of half that reach around the include points is "probably
        foreground", the ``seeds`` "foreground", the ``excluded`` discs "background".
        """
        reach = fraction * max(shape)
        window = np.array(
            [
                max(0.0, include[:, 0].min() - reach),
                max(0.0, include[:, 1].min() - reach),
                min(float(shape[1]), include[:, 0].max() + reach + 1),
                min(float(shape[0]), include[:, 1].max() + reach + 1),
            ]
        )
        inside = _bbox_mask(shape, window)
        labels = np.where(inside, cv2.GC_PR_BGD, cv2.GC_BGD).astype(np.uint8)
        labels[_discs(shape, include, reach / 2) & inside] = cv2.GC_PR_FGD
        labels[seeds] = cv2.GC_FGD
        labels[excluded] = cv2.GC_BGD
        return window, inside, labels

    def _proposal_candidates(
        self, embedding: Embedding, prompt: Prompt
    ) -> tuple[list[np.ndarray], list[float], list[str]]:
        """Colour floods and GrabCut windows on the proposal copy, ranked by score (the module docstring)."""
        image = embedding.proposal
        shape = image.shape[:2]
        include, exclude = self._points_in(prompt, embedding.proposal_scale)
        radius = max(2.0, SEED_RADIUS_FRACTION * max(shape))
        seed_discs = [_discs(shape, point[None], radius) for point in include]
        seeds = np.logical_or.reduce(seed_discs)
        excluded = _discs(shape, exclude, radius) & ~seeds
        proposals = []
        for region, quantile in colour_floods(image, seed_discs):
            if (region & excluded).any():
                break  # the floods are nested: every larger one reaches the exclude click too
            proposals.append((region, f"colour flood (tolerance quantile {quantile:.3f})"))
        for fraction in PROPOSAL_WINDOWS:
            window, inside, labels = self._click_window(shape, include, seeds, excluded, fraction)
            proposals.append((_grabcut(image, labels, window) & inside, f"grabcut (click window {fraction:g})"))
        ranked = []
        for region, method in proposals:
            mask = _keep_component(region & ~excluded, seeds, every=True) & ~excluded
            score = evidence(mask, embedding.superpixels) * centredness(mask, include) ** 2
            ranked.append((score, mask, method))
        ranked.sort(key=lambda candidate: -candidate[0])
        kept: list[tuple[float, np.ndarray, str]] = []
        for candidate in ranked:
            if all(_mask_iou(candidate[1], other[1]) <= DISTINCT_IOU for other in kept):
                kept.append(candidate)
            if len(kept) == CLICK_CANDIDATES:
                break
        return [mask for _, mask, _ in kept], [score for score, _, _ in kept], [method for _, _, method in kept]

    def _window_candidates(
        self, embedding: Embedding, prompt: Prompt, with_evidence: bool
    ) -> tuple[list[np.ndarray], list[float], list[str]]:
        """The GrabCut / random-walker click windows on the working copy, scored by containment.

        ``with_evidence`` (several include clicks in ``"proposals"`` mode):
        only the window containment picks (the first of the best), scored by
        its containment times its image evidence; else every window, scored
        by containment alone (the previous click methods).
        """
        work = embedding.work
        shape = work.shape[:2]
        include, exclude = self._points_in(prompt, embedding.scale)
        radius = max(2.0, SEED_RADIUS_FRACTION * max(shape))
        seeds = _discs(shape, include, radius)
        excluded = _discs(shape, exclude, radius) & ~seeds
        masks: list[np.ndarray] = []
        scores: list[float] = []
        methods: list[str] = []
        for fraction in CLICK_SCALES:
            window, inside, labels = self._click_window(shape, include, seeds, excluded, fraction)
            # The window's inner border band, where a mask that overflows the window shows.
            band = inside & ~ndi.binary_erosion(inside, iterations=2, border_value=1)
            # The random walker's background seeds lie ROI_MARGIN beyond the window (the crop's ring),
            # so a walk that leaks past the window covers the band exactly as a leaking GrabCut does.
            foregrounds = []
            if self.click_method in ("proposals", "grabcut", "both"):
                foregrounds.append((_grabcut(work, labels, window), f"grabcut (click window {fraction:g})"))
            if self.click_method in ("random_walker", "both"):
                foregrounds.append((_random_walker(work, seeds, excluded, window), f"random walker (click window {fraction:g})"))
            for foreground, method in foregrounds:
                methods.append(method)
                mask = _keep_component(foreground & inside & ~excluded, seeds, every=True) & ~excluded
                masks.append(mask)
                scores.append(1.0 - np.count_nonzero(mask & band) / max(1, np.count_nonzero(band)))
        if with_evidence:
            # The smallest window the object ends inside (its GrabCut saw the least background), scored for quality.
            best = int(np.argmax(scores))
            return [masks[best]], [scores[best] * self.mask_evidence(embedding, masks[best])], [methods[best]]
        return masks, scores, methods

__all__ = ["ClassicalSegmenter", "box_consistency"]
