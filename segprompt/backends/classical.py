"""The zero-weight classical backend: GrabCut from boxes, clicks and masks, with shape priors.

Working resolution and coordinate mapping
-----------------------------------------
:meth:`ClassicalSegmenter.embed` keeps a working copy of the image whose
longest side is at most :data:`WORK_SIDE` (never upscaled), resized with
``cv2.INTER_AREA`` by the factor ``s = min(1, WORK_SIDE / max(H, W))``. All
segmentation happens on that copy. Prompt coordinates map with the pixel-centre
convention that ``cv2.resize`` uses: original ``(x, y)`` -> working
``((x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5)``; box edges (which lie between
pixels) map as ``x * s``. Working masks go back to ``(H, W)`` by bilinear
resizing of the 0/1 mask thresholded at 0.5, the inverse of the same mapping.

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
ellipse; when neither GrabCut mask reaches a box consistency of
:data:`BOX_CONSISTENCY_MIN` GrabCut has lost the object and the ellipse is the
best candidate.

Points only
-----------
Also GrabCut. Without a box nothing says how large the object is, so each of
:data:`CLICK_SCALES` gives one candidate: a square window reaching
``fraction * longest side`` beyond the include points is "probably
background" (outside it "background"), a disc of half that reach around the
include points "probably foreground", the points themselves foreground discs
and exclude points background discs (radius :data:`SEED_RADIUS_FRACTION` of
the working longest side). The mask keeps the components that contain include
points, holes filled, minus the exclude discs.

With ``click_method="random_walker"`` (or ``"both"``) each window instead
(or also) gives a scikit-image random walker (:func:`_random_walker`: the
window grown by :data:`ROI_MARGIN`, downscaled to :data:`RW_SIDE` px, its
outer ring and the exclude discs background seeds, the include discs
foreground), scored by the same containment. It is not the default: from one
centre click on the first 4 Kvasir-SEG polyps / 4 COCO objects, the best
random-walker window reached mean IoU 0.41 / 0.30 (GrabCut windows 0.40 /
0.38), but a walk from one small seed stays small, ends well inside its
window and so scores near 1: with ``"both"`` the picked mask fell to mean
IoU 0.03 / 0.36 (``"grabcut"``: 0.31 / 0.40 on the first 12 of each, see
``benchmarks/eval_classical.py``). Lower ``beta`` (10, 30, 130, 1000) did
worse. One click stays the weak prompt of this backend: give a box where
possible.

Points inside a box also give a random-walker candidate (everything outside
the box is its background seed, the include discs its foreground), scored by
box consistency like the GrabCut one. On the same 4 + 4 objects with the
centre click inside the tight box, the picked mask went from mean IoU 0.54 /
0.62 (GrabCut alone) to 0.59 / 0.62; the walk itself scored 0.15 / 0.53. Each
walk costs about 0.1 s at 160 px (``mode="bf"``).

Mask prompt
-----------
A binary mask prompt (refinement) initialises GrabCut: the mask eroded is
"foreground", the mask "probably foreground", a band around it
"probably background", the rest "background" (points add discs as above;
a box, when given, also makes everything outside it "background").

Scores
------
Every candidate's score is in ``[0, 1]`` and means:

* GrabCut and random-walker masks from a box: the box consistency defined above.
* GrabCut masks refining a mask prompt: IoU with the mask prompt (how much of
  the user's mask survived).
* GrabCut and random-walker masks from clicks: containment, ``1 -`` the fraction of the
  window's 2-pixel inner border band that the mask covers (1 = the object
  ends inside the window, so the window was large enough and the mask did not
  leak into the background).
* Fallback shape priors (the inscribed ellipse, the mask prompt itself) carry
  the acceptance threshold they stand in for (:data:`BOX_CONSISTENCY_MIN`,
  :data:`MASK_AGREEMENT_MIN`), so :attr:`Prediction.best` is the data-driven
  mask exactly when it passes its check. With points next to a box the
  ellipse scores 0: the clicks are the user correcting GrabCut, and a tight
  box no longer describes what they asked for.

GrabCut's k-means initialisation draws from OpenCV's default random generator,
which is per thread (``cv::theRNG()`` is thread-local); it is re-seeded in the
calling thread before every call, so results are deterministic, also when
several threads segment at once.
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

#: Longest side of the working copy, in pixels.
WORK_SIDE = 512
#: GrabCut iterations.
GRABCUT_ITERATIONS = 5
#: Size of the central "surely foreground" ellipse, as a fraction of the box width/height.
CORE_FRACTION = 0.3
#: Below this box consistency the GrabCut mask is rejected for the inscribed ellipse.
BOX_CONSISTENCY_MIN = 0.8
#: Below this IoU with the mask prompt a refinement is rejected for the mask prompt itself.
MASK_AGREEMENT_MIN = 0.5
#: Reach of the click-only windows beyond the include points, as fractions of the working longest side.
CLICK_SCALES = (0.2, 0.3, 0.45)
#: Radius of a point's seed disc, as a fraction of the working longest side (at least 2 px).
SEED_RADIUS_FRACTION = 0.01
#: Context kept around the box / window when cropping for GrabCut, as a fraction of its size.
ROI_MARGIN = 0.25
#: Seed of OpenCV's random generator before each GrabCut call.
GRABCUT_SEED = 0
#: Click candidates per window: :class:`ClassicalSegmenter` ``click_method`` values.
CLICK_METHODS = ("grabcut", "random_walker", "both")
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
    """The image and its working copy.

    Attributes:
        work: ``(h, w, 3)`` uint8 RGB working copy (longest side <= :data:`WORK_SIDE`).
        scale: working size / original size (at most 1).
    """

    work: np.ndarray
    scale: float


@register
class ClassicalSegmenter(Segmenter):
    """GrabCut segmentation with shape priors, without any learned weights (see the module docstring)."""

    name: ClassVar[str] = "classical"
    accepts: ClassVar[frozenset[str]] = frozenset({"points", "box", "mask"})
    description: ClassVar[str] = "GrabCut from boxes, clicks and masks with shape priors; no weights, CPU only"

    def __init__(self, click_method: str = "grabcut") -> None:
        """``click_method``: which candidates each click-only window gives (one of :data:`CLICK_METHODS`)."""
        if click_method not in CLICK_METHODS:
            raise SegpromptError(f"click_method {click_method!r} is not one of {', '.join(CLICK_METHODS)}")
        self.click_method = click_method

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> ClassicalEmbedding:
        """Keep the RGB image and its working copy (see :class:`ClassicalEmbedding`)."""
        rgb = self._rgb(image)
        progress(0, 1, "classical: preparing working copy")
        height, width = rgb.shape[:2]
        scale = min(1.0, WORK_SIDE / max(height, width))
        work = self._resize(rgb, scale)
        progress(1, 1, "classical: ready")
        return ClassicalEmbedding(self.name, self.model_id, (height, width), rgb, work, scale)

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
                [_mask_iou(refined, prior), MASK_AGREEMENT_MIN],
                ["grabcut (mask refinement)", "fallback: the mask prompt unchanged"],
            )
        if prompt.points is not None:
            # Clicks with the box are the user correcting GrabCut: the prior must not override them.
            masks, scores = [refined, prior & ~excluded], [box_consistency(refined, box), 0.0]
            methods = ["grabcut (box + clicks)", "fallback ellipse"]
            if len(include):
                # Everything outside the box is the random walker's background seed.
                walked = _random_walker(work, anchor, ~inside | excluded, box) & inside
                walked = _keep_component(walked & ~excluded, anchor, every=True) & ~excluded
                masks.append(walked)
                scores.append(box_consistency(walked, box))
                methods.append("random walker (box + clicks)")
            return masks, scores, methods
        # Box alone: also plain GrabCut's initialisation (the whole box "probably foreground"), which
        # does better than the ellipse and core on high-contrast objects that fill their box unevenly.
        plain_labels = np.where(inside, cv2.GC_PR_FGD, cv2.GC_BGD).astype(np.uint8)
        plain = _keep_component(_grabcut(work, plain_labels, box), prior)
        return (
            [refined, plain, prior],
            [box_consistency(refined, box), box_consistency(plain, box), BOX_CONSISTENCY_MIN],
            ["grabcut (box prior)", "grabcut (plain box)", "fallback ellipse"],
        )

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
        work = embedding.work
        shape = work.shape[:2]
        # Prompt.validate_for refused exclude points alone: there is at least one include point.
        include, exclude = self._points_in(prompt, embedding.scale)
        radius = max(2.0, SEED_RADIUS_FRACTION * max(shape))
        seeds = _discs(shape, include, radius)
        excluded = _discs(shape, exclude, radius) & ~seeds
        masks: list[np.ndarray] = []
        scores: list[float] = []
        methods: list[str] = []
        for fraction in CLICK_SCALES:
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
            # The window's inner border band, where a mask that overflows the window shows.
            band = inside & ~ndi.binary_erosion(inside, iterations=2, border_value=1)
            # The random walker's background seeds lie ROI_MARGIN beyond the window (the crop's ring),
            # so a walk that leaks past the window covers the band exactly as a leaking GrabCut does.
            foregrounds = []
            if self.click_method != "random_walker":
                foregrounds.append((_grabcut(work, labels, window), f"grabcut (click window {fraction:g})"))
            if self.click_method != "grabcut":
                foregrounds.append((_random_walker(work, seeds, excluded, window), f"random walker (click window {fraction:g})"))
            for foreground, method in foregrounds:
                methods.append(method)
                mask = _keep_component(foreground & inside & ~excluded, seeds, every=True) & ~excluded
                masks.append(mask)
                scores.append(1.0 - np.count_nonzero(mask & band) / max(1, np.count_nonzero(band)))
        return masks, scores, methods

__all__ = ["ClassicalSegmenter", "box_consistency"]
