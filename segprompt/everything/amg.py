"""Segment-anything's automatic mask generation (AMG) over any SAM-like decoder that takes batches of points.

The procedure of ``segment_anything.SamAutomaticMaskGenerator`` (Kirillov et
al., 2023) with its settings (:class:`SamEverything`), on the whole image and,
with crop layers, on overlapping crops of it (each crop encoded on its own):

1. a regular grid of include points (``points_per_side`` per side, divided by
   ``crop_n_points_downscale_factor`` per crop layer), decoded
   ``points_per_batch`` at a time, each point giving the decoder's three
   candidate masks;
2. candidates whose predicted IoU is not above ``pred_iou_thresh`` are dropped
   (no filter at 0);
3. the stability score of the rest: the IoU of the full-resolution logits
   thresholded at ``mask_threshold + stability_score_offset`` and at
   ``mask_threshold - stability_score_offset``; kept at ``>=
   stability_score_thresh`` (no filter at 0);
4. the mask (logits ``> mask_threshold``) and its box; in a crop, a mask whose
   box lies within 20 px of a crop edge that is not an image edge is dropped;
5. per crop, box NMS by predicted IoU (``box_nms_thresh``); across crops, box
   NMS preferring masks of smaller crops (``crop_nms_thresh``);
6. with ``min_mask_region_area > 0``: holes, then islands, smaller than it are
   removed from each mask (8-connected), and box NMS preferring unchanged masks
   runs again at ``max(box_nms_thresh, crop_nms_thresh)``.

The arithmetic of each step is the reference's own: its utilities
(``segment_anything.utils.amg``: point grids, crop boxes, stability score, mask
boxes, crop-edge test, small-region removal) and torchvision's
``batched_nms`` are called as they are, on the same values in the same order,
so the same decoder outputs give the same records (:class:`MaskRecords`).
What differs is the bookkeeping, which changes no result but much of the work:

* step 2 runs on the decoder's scores before anything is upsampled (the
  reference upsamples all three candidates of every point to 1024 x 1024 and
  then to the image, and filters afterwards); a decoder may skip more (SAM's
  skips the output upscaling of points with no candidate left,
  :func:`~segprompt.backends.sam_decoder.decode_scoring_above`);
* upsampling covers the image only, never the model's padding, and runs on a
  few candidates at a time (:data:`UPSAMPLE_CHUNK`), so memory does not grow
  with ``points_per_batch`` x image size;
* a kept mask stays on the model's device as the pixels of its box (the
  reference run-length encodes every kept mask on the CPU and decodes it again).

Frames: points are ``(x, y)`` = ``(column, row)`` pixels; crop boxes
``(x0, y0, x1, y1)`` with ``x1``/``y1`` exclusive; masks and boxes in
original-image pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol

import numpy as np
import torch
from segment_anything.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    is_box_near_crop_edge,
    remove_small_regions,
)
from torchvision.ops.boxes import batched_nms, box_area

from ..backends.base import Embedding, Segmenter
from ..instances import Instances, boxes_from_masks
from ..progress import ProgressCallback, no_progress

#: Candidates upsampled to the image at once (bounds memory: this many float32 images).
UPSAMPLE_CHUNK = 16

#: ``(x0, y0, x1, y1)`` pixels, ``x1``/``y1`` exclusive.
CropBox = tuple[int, int, int, int]


@dataclass(frozen=True)
class SamEverything:
    """Settings of the SAM-like everything generators: ``SamAutomaticMaskGenerator``'s, same names and defaults.

    See the module docstring for the step each one controls. ``mask_threshold``
    is the model's logit threshold (0 for every SAM); ``exact`` asks the
    decoder for the reference's numerics bit for bit (SAM: the exact decoder
    instead of the re-associated one, whose logits differ by float rounding,
    about 1e-6, which can flip a pixel whose logit is that close to a threshold).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    mask_threshold: float = 0.0
    exact: bool = False

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field, low in (("points_per_side", 1), ("points_per_batch", 1), ("crop_n_layers", 0),
                           ("crop_n_points_downscale_factor", 1), ("min_mask_region_area", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}.{field} must be an integer >= {low}, got {value!r}")
        for field in ("pred_iou_thresh", "stability_score_thresh"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(f"{name}.{field} must lie in [0, 1], got {getattr(self, field)}")
        for field in ("box_nms_thresh", "crop_nms_thresh"):
            if not 0.0 < getattr(self, field) <= 1.0:
                raise ValueError(f"{name}.{field} must lie in (0, 1], got {getattr(self, field)}")
        if not self.stability_score_offset >= 0.0:
            raise ValueError(f"{name}.stability_score_offset must be >= 0, got {self.stability_score_offset}")
        if not 0.0 <= self.crop_overlap_ratio < 1.0:
            raise ValueError(f"{name}.crop_overlap_ratio must lie in [0, 1), got {self.crop_overlap_ratio}")
        if not math.isfinite(self.mask_threshold):
            raise ValueError(f"{name}.mask_threshold must be finite, got {self.mask_threshold}")
        deepest = int(self.points_per_side / self.crop_n_points_downscale_factor**self.crop_n_layers)
        if deepest < 1:
            raise ValueError(
                f"{name}: points_per_side={self.points_per_side} divided by crop_n_points_downscale_factor="
                f"{self.crop_n_points_downscale_factor} per crop layer leaves no point on layer {self.crop_n_layers}"
            )

    def point_grids(self) -> list[np.ndarray]:
        """Per crop layer, ``(n * n, 2)`` float64 ``(x, y)`` points in ``[0, 1]`` (cell centres, row by row)."""
        return build_all_layer_point_grids(self.points_per_side, self.crop_n_layers, self.crop_n_points_downscale_factor)


@dataclass
class Candidates:
    """The candidates of ``B`` decoded points whose predicted IoU passed step 2, in point-then-candidate order.

    Attributes:
        per_point: ``K``, candidates per point.
        index: ``(n,)`` int64 increasing ``point * K + candidate``.
        iou: ``(n,)`` float32 predicted IoU.
        low_res: ``(n, rows, cols)`` float32 logits in the decoder's low-resolution frame.
    """

    per_point: int
    index: torch.Tensor
    iou: torch.Tensor
    low_res: torch.Tensor


class PointDecoder(Protocol):
    """A SAM-like decoder on one image (the whole image or a crop) for automatic mask generation."""

    image_hw: tuple[int, int]

    def decode(self, points: np.ndarray, min_iou: float | None) -> Candidates:
        """Decode ``(B, 2)`` float64 ``(x, y)`` include points (one prompt each) in this image's pixels.

        Candidates whose predicted IoU is not above ``min_iou`` are left out (none when ``None``).
        """

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        """``(n, rows, cols)`` low-resolution logits -> ``(n, H, W)`` logits in this image's pixels."""


@dataclass
class MaskRecords:
    """The records ``SamAutomaticMaskGenerator.generate`` returns, as arrays in its order (``N`` records).

    Attributes:
        masks: ``(N, H, W)`` bool, original-image pixels.
        predicted_iou: ``(N,)`` float32 the decoder's predicted IoU.
        stability_score: ``(N,)`` float32 (step 3).
        boxes: ``(N, 4)`` float64 tight ``(x0, y0, x1, y1)`` of the masks, ``x1``/``y1``
            exclusive (the reference's ``bbox`` is ``(x0, y0, x1 - 1 - x0, y1 - 1 - y0)``).
        points: ``(N, 2)`` float64 ``(x, y)`` point that made each mask, image pixels.
        crop_boxes: ``(N, 4)`` int64 the crop each mask was found in.
    """

    masks: np.ndarray
    predicted_iou: np.ndarray
    stability_score: np.ndarray
    boxes: np.ndarray
    points: np.ndarray
    crop_boxes: np.ndarray

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def to_instances(self) -> Instances:
        """The records as :class:`Instances`, scored by predicted IoU, in the same order."""
        return Instances(self.masks, self.predicted_iou, self.boxes)


@dataclass
class _Kept:
    """Masks kept so far, on the decoder's device: each as the pixels of its box.

    ``boxes`` are the reference's (``batched_mask_to_box``: ``x1``/``y1``
    inclusive, ``(0, 0, 0, 0)`` for an empty mask); ``pieces[i]`` is mask
    ``i`` cut to its box, whose top-left corner is ``boxes[i, :2]``.
    """

    iou: torch.Tensor
    stability: torch.Tensor
    boxes: torch.Tensor
    points: torch.Tensor
    pieces: list[torch.Tensor]
    crop_boxes: torch.Tensor | None = None

    def take(self, indices: torch.Tensor) -> "_Kept":
        """The masks at ``indices``, in that order."""
        positions = indices.tolist()
        return _Kept(
            self.iou[indices],
            self.stability[indices],
            self.boxes[indices],
            self.points[indices.to(self.points.device)],
            [self.pieces[i] for i in positions],
            None if self.crop_boxes is None else self.crop_boxes[indices.to(self.crop_boxes.device)],
        )

    @staticmethod
    def cat(parts: list["_Kept"]) -> "_Kept":
        crop_boxes = [p.crop_boxes for p in parts]
        return _Kept(
            torch.cat([p.iou for p in parts]),
            torch.cat([p.stability for p in parts]),
            torch.cat([p.boxes for p in parts]),
            torch.cat([p.points for p in parts]),
            [piece for p in parts for piece in p.pieces],
            None if any(c is None for c in crop_boxes) else torch.cat(crop_boxes),  # type: ignore[arg-type]
        )

    def paste(self, image_hw: tuple[int, int]) -> torch.Tensor:
        """``(N, H, W)`` bool full masks (boxes in image pixels)."""
        masks = torch.zeros((len(self.pieces), *image_hw), dtype=torch.bool, device=self.boxes.device)
        for i, (piece, (x0, y0)) in enumerate(zip(self.pieces, self.boxes[:, :2].tolist())):
            masks[i, y0 : y0 + piece.shape[0], x0 : x0 + piece.shape[1]] = piece
        return masks


def _nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices kept by box NMS, best first, exactly as the reference calls it (one category)."""
    return batched_nms(boxes.float(), scores, torch.zeros(len(boxes), device=boxes.device), iou_threshold=threshold)


def _batch_masks(
    decoder: PointDecoder, points: np.ndarray, crop_box: CropBox, image_hw: tuple[int, int], settings: SamEverything
) -> _Kept:
    """Steps 1-4 for one batch of points of one crop; boxes and points in crop pixels."""
    found = decoder.decode(points, settings.pred_iou_thresh if settings.pred_iou_thresh > 0.0 else None)
    device = found.iou.device
    points_of = torch.as_tensor(points)[(found.index // found.per_point).cpu()]
    image_box = [0, 0, image_hw[1], image_hw[0]]
    kept: list[_Kept] = []
    for start in range(0, len(found.index), UPSAMPLE_CHUNK):
        chunk = slice(start, start + UPSAMPLE_CHUNK)
        logits = decoder.upsample(found.low_res[chunk])
        stability = calculate_stability_score(logits, settings.mask_threshold, settings.stability_score_offset)
        keep = torch.ones_like(stability, dtype=torch.bool)
        if settings.stability_score_thresh > 0.0:
            keep = stability >= settings.stability_score_thresh
        masks = logits[keep] > settings.mask_threshold
        del logits
        boxes = batched_mask_to_box(masks).to(torch.int64)  # float zeros when no mask is left
        inside = ~is_box_near_crop_edge(boxes, list(crop_box), image_box)
        masks, boxes = masks[inside], boxes[inside]
        rows = torch.arange(len(stability), device=device)[keep][inside]
        pieces = [mask[y0 : y1 + 1, x0 : x1 + 1].clone() for mask, (x0, y0, x1, y1) in zip(masks, boxes.tolist())]
        iou = found.iou[chunk][rows]
        kept.append(_Kept(iou, stability[rows], boxes, points_of[chunk][rows.cpu()], pieces))
    if not kept:
        empty = torch.zeros(0, device=device)
        return _Kept(empty, empty, torch.zeros((0, 4), dtype=torch.int64, device=device),
                     torch.zeros((0, 2), dtype=torch.float64), [])
    return _Kept.cat(kept)


def _crop_masks(
    decoder: PointDecoder,
    grid: np.ndarray,
    crop_box: CropBox,
    image_hw: tuple[int, int],
    settings: SamEverything,
    step: Callable[[int], None],
) -> _Kept:
    """Steps 1-5 on one crop: its kept masks, boxes and points in image pixels."""
    x0, y0, x1, y1 = crop_box
    points = grid * np.array([[x1 - x0, y1 - y0]])
    batches = []
    for start in range(0, len(points), settings.points_per_batch):
        batches.append(_batch_masks(decoder, points[start : start + settings.points_per_batch], crop_box, image_hw, settings))
        step(min(start + settings.points_per_batch, len(points)))
    kept = _Kept.cat(batches)
    kept = kept.take(_nms(kept.boxes, kept.iou, settings.box_nms_thresh))
    kept.boxes = kept.boxes + torch.tensor([[x0, y0, x0, y0]], device=kept.boxes.device)
    kept.points = kept.points + torch.tensor([[x0, y0]])
    kept.crop_boxes = torch.tensor([list(crop_box)] * len(kept.pieces), dtype=torch.int64).reshape(-1, 4)
    return kept


def _without_small_regions(masks: np.ndarray, min_area: int, nms_threshold: float) -> tuple[np.ndarray, torch.Tensor]:
    """Step 6: ``(masks with small holes and islands removed, indices kept by NMS preferring unchanged masks)``."""
    cleaned, unchanged = [], []
    for mask in masks:
        mask, filled = remove_small_regions(mask, min_area, mode="holes")
        mask, cut = remove_small_regions(mask, min_area, mode="islands")
        cleaned.append(mask)
        unchanged.append(float(not (filled or cut)))
    stacked = np.stack(cleaned)
    boxes = batched_mask_to_box(torch.as_tensor(stacked))
    return stacked, _nms(boxes, torch.as_tensor(unchanged), nms_threshold)


def automatic_masks(
    image_hw: tuple[int, int],
    open_decoder: Callable[[CropBox], PointDecoder],
    settings: SamEverything,
    progress: ProgressCallback = no_progress,
    label: str = "everything",
) -> MaskRecords:
    """The records of the automatic mask generator on an ``(H, W)`` image.

    Args:
        image_hw: ``(H, W)`` of the image.
        open_decoder: the decoder on a crop of the image (``(0, 0, W, H)``: the whole image).
        settings: the generator's settings.
        progress: ``progress(done, total, message)``: points decoded over all crops.
        label: names the generator in progress messages.
    """
    height, width = image_hw
    crop_boxes, layers = generate_crop_boxes((height, width), settings.crop_n_layers, settings.crop_overlap_ratio)
    grids = settings.point_grids()
    total = sum(len(grids[layer]) for layer in layers)
    found = []
    done = 0
    for number, (crop_box, layer) in enumerate(zip(crop_boxes, layers), start=1):
        where = f"crop {number}/{len(crop_boxes)}" if len(crop_boxes) > 1 else "the image"
        progress(done, total, f"{label}: encoding {where}" if number > 1 else f"{label}: {total} points")
        decoder = open_decoder(tuple(crop_box))  # type: ignore[arg-type]

        def step(points_done: int, before: int = done, where: str = where) -> None:
            progress(before + points_done, total, f"{label}: points on {where}")

        found.append(_crop_masks(decoder, grids[layer], tuple(crop_box), image_hw, settings, step))  # type: ignore[arg-type]
        done += len(grids[layer])
    kept = _Kept.cat(found)
    if len(crop_boxes) > 1:
        assert kept.crop_boxes is not None
        prefer_small_crops = (1 / box_area(kept.crop_boxes)).to(kept.boxes.device)
        kept = kept.take(_nms(kept.boxes, prefer_small_crops, settings.crop_nms_thresh))
    masks = kept.paste(image_hw).cpu().numpy()
    order = torch.arange(len(masks))
    if settings.min_mask_region_area > 0 and len(masks):
        nms_threshold = max(settings.box_nms_thresh, settings.crop_nms_thresh)
        masks, order = _without_small_regions(masks, settings.min_mask_region_area, nms_threshold)
        masks = masks[order.numpy()]
    progress(total, total, f"{label}: {len(masks)} masks")
    assert kept.crop_boxes is not None
    return MaskRecords(
        masks=masks,
        predicted_iou=kept.iou[order.to(kept.iou.device)].float().cpu().numpy(),
        stability_score=kept.stability[order.to(kept.iou.device)].float().cpu().numpy(),
        boxes=boxes_from_masks(masks),
        points=kept.points[order].numpy(),
        crop_boxes=kept.crop_boxes[order].numpy(),
    )


class PointGridGenerator:
    """Base of the SAM-like everything generators: :func:`automatic_masks` with the backend's :class:`PointDecoder`.

    A subclass sets ``name`` (the backend's) and :meth:`decoder`; crops other
    than the whole image are encoded with the backend's own :meth:`~segprompt.backends.base.Segmenter.embed`.
    """

    name: ClassVar[str]
    Settings: ClassVar[type] = SamEverything

    @staticmethod
    def decoder(segmenter: Segmenter, embedding: Embedding, exact: bool) -> PointDecoder:
        """The backend's decoder on ``embedding``."""
        raise NotImplementedError

    @classmethod
    def records(
        cls,
        segmenter: Segmenter,
        embedding: Embedding,
        settings: SamEverything = SamEverything(),
        progress: ProgressCallback = no_progress,
    ) -> MaskRecords:
        """Every record of the automatic mask generator on the image behind ``embedding``."""
        height, width = embedding.image_hw

        def open_decoder(crop_box: CropBox) -> PointDecoder:
            x0, y0, x1, y1 = crop_box
            whole = crop_box == (0, 0, width, height)
            crop = embedding if whole else segmenter.embed(embedding.image[y0:y1, x0:x1])
            return cls.decoder(segmenter, crop, settings.exact)

        return automatic_masks(embedding.image_hw, open_decoder, settings, progress, f"{cls.name} everything")

    @classmethod
    def generate(cls, segmenter: Segmenter, embedding: Embedding, settings: SamEverything, progress: ProgressCallback) -> Instances:
        """:meth:`records` as :class:`Instances` scored by predicted IoU."""
        return cls.records(segmenter, embedding, settings, progress).to_instances()


__all__ = [
    "UPSAMPLE_CHUNK",
    "Candidates",
    "CropBox",
    "MaskRecords",
    "PointDecoder",
    "PointGridGenerator",
    "SamEverything",
    "automatic_masks",
]
