"""Exemplar boxes on a target image from a mask-painting reference backend (PerSAM, SegGPT).

SAM 3 takes exemplars only as boxes on the image it segments. A backend that
paints the object of a visual reference onto the target (PerSAM: a
location prior and SAM; SegGPT: in-context painting) proposes those boxes
through :class:`MaskExemplars`: its best mask is split into 8-connected
components, and the box of each component large enough to be an object
(:data:`MIN_COMPONENT_FRACTION` of the largest, both sides at least
:data:`~segprompt.prompts.MIN_BOX_SIDE`) becomes a positive exemplar, largest
first, at most :data:`MAX_EXEMPLARS`. Boxes are original-image
``(x0, y0, x1, y1)`` pixels, ``x1``/``y1`` exclusive (:class:`~segprompt.prompts.Box`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..prompts import MIN_BOX_SIDE, Exemplars, Prompt, VisualReference
from ..progress import ProgressCallback, no_progress
from .base import Embedding, ExemplarProposer

#: At most this many exemplars come from one mask.
MAX_EXEMPLARS = 5
#: A component smaller than this fraction of the mask's largest is a fragment, not an object.
MIN_COMPONENT_FRACTION = 0.1


def component_boxes(
    mask: np.ndarray, min_fraction: float = MIN_COMPONENT_FRACTION, max_count: int = MAX_EXEMPLARS
) -> np.ndarray:
    """``(N, 4)`` float64 boxes of the 8-connected components of an ``(H, W)`` bool mask, largest first.

    Components under ``min_fraction`` of the largest one's area, or whose box
    is narrower or lower than ``MIN_BOX_SIDE``, are left out; at most
    ``max_count`` boxes (ties in area keep the components' scan order).
    """
    labels, count = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros((0, 4))
    areas = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    extents = ndimage.find_objects(labels)
    boxes = []
    for index in np.argsort(-areas, kind="stable"):
        if areas[index] < min_fraction * areas.max() or len(boxes) == max_count:
            break
        rows, cols = extents[index]
        box = (cols.start, rows.start, cols.stop, rows.stop)
        if box[2] - box[0] >= MIN_BOX_SIDE and box[3] - box[1] >= MIN_BOX_SIDE:
            boxes.append(box)
    return np.asarray(boxes, np.float64).reshape(-1, 4)


class MaskExemplars(ExemplarProposer):
    """:class:`~segprompt.backends.base.ExemplarProposer` of a :class:`~segprompt.backends.base.Segmenter`
    that answers ``reference`` prompts with masks: the components of its best mask (see the module docstring)."""

    def embed_for_exemplars(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
        return self.embed(image, progress)  # type: ignore[attr-defined]

    def propose_exemplars(self, embedding: Embedding, reference: VisualReference) -> Exemplars | None:
        answer = self.predict(embedding, Prompt(reference=reference))  # type: ignore[attr-defined]
        boxes = component_boxes(answer.best_mask)
        return Exemplars(boxes, np.ones(len(boxes), np.int64)) if len(boxes) else None


__all__ = ["MAX_EXEMPLARS", "MIN_COMPONENT_FRACTION", "MaskExemplars", "component_boxes"]
