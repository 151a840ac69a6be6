"""Per-class confidence maps and their merge into one label map, under either protocol.

Frames: every map is ``(H, W)`` in the pixels of the image the segmenter was
given (the squashed image when the run resizes). Label 0 is background and
class ``i`` of the evaluation's :class:`~segprompt.showortell.protocol.ClassSpace`
is ``i + 1``.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from PIL import Image

from ..backends.base import Embedding, Segmenter
from ..prompts import Prompt, VisualReference
from ..semantic import class_confidence, merge_confidences

MergeRule = Literal["threshold", "argmax"]


def resize_image(image: np.ndarray, side: int, antialias: bool) -> np.ndarray:
    """``image`` squashed to ``(side, side)``: PIL's bilinear filter (``antialias``) or OpenCV's bilinear sampling."""
    if antialias:
        return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((side, side), Image.BILINEAR))
    return cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)


def resize_labels(labels: np.ndarray, side: int) -> np.ndarray:
    """An integer or bool map squashed to ``(side, side)`` by nearest neighbour (source pixel ``floor(i * n / side)``)."""
    resized = cv2.resize(np.asarray(labels).astype(np.int32), (side, side), interpolation=cv2.INTER_NEAREST)
    return resized.astype(bool) if labels.dtype == bool else resized.astype(labels.dtype)


def squash_reference(reference: VisualReference, side: int, antialias: bool) -> VisualReference:
    """The reference image and mask both squashed to ``(side, side)``, as the reference code feeds them."""
    return VisualReference(resize_image(reference.image, side, antialias), resize_labels(reference.mask, side))


def persam_similarity_confidence(segmenter: Segmenter, embedding: Embedding, reference: VisualReference) -> np.ndarray:
    """PerSAM's answer as the reference's PersonalizeSAM scores it: its final mask times the mean cosine
    similarity to the target inside that mask (``(H, W)`` float32; zeros for an empty mask)."""
    trace = segmenter.run(embedding, segmenter.personalise(reference))  # type: ignore[attr-defined]
    mask = trace.stages[-1].best_mask
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    return mask.astype(np.float32) * np.float32(trace.similarity[mask].mean())


def confidence_map(
    segmenter: Segmenter, embedding: Embedding, prompt: Prompt, persam_confidence: Literal["score", "similarity"]
) -> np.ndarray:
    """``(H, W)`` float32 confidence of one class from one prompt.

    The backend's probabilities or its best mask times its score
    (:func:`segprompt.semantic.class_confidence`); a PerSAM backend with
    ``persam_confidence="similarity"`` gives :func:`persam_similarity_confidence`.
    """
    from ..backends.persam import PerSamSegmenter

    if persam_confidence == "similarity" and isinstance(segmenter, PerSamSegmenter) and prompt.reference is not None:
        return persam_similarity_confidence(segmenter, embedding, prompt.reference)
    return class_confidence(segmenter.predict(embedding, prompt))[1]


def merge(confidences: np.ndarray, background: np.ndarray | None, rule: MergeRule) -> np.ndarray:
    """``(H, W)`` int32 labels from ``(C, H, W)`` class confidences.

    ``"threshold"``: :func:`segprompt.semantic.merge_confidences` (values
    <= 0.2 dropped, an all-zero background map at label 0, argmax).
    ``"argmax"``: no threshold; the prompted ``background`` map ``(H, W)``
    competes as label 0, and without one (a dataset with no background class,
    e.g. Cityscapes) every pixel takes a class. Ties go to the lowest label.
    """
    if rule == "threshold":
        return merge_confidences(confidences)
    if background is None:
        return (np.argmax(confidences, axis=0) + 1).astype(np.int32)
    return np.argmax(np.concatenate([background[None], confidences]), axis=0).astype(np.int32)
