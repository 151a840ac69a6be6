"""Multi-class semantic segmentation from one prompt per class (Show-or-Tell's merge).

A promptable backend answers one class at a time. To label every pixel with
one of ``C`` classes, :func:`segment_classes` prompts the backend once per
class (a text phrase or a visual reference), turns each answer into a mask
and a per-pixel confidence map, and merges the maps with
:func:`merge_confidences`, the rule of the Show-or-Tell benchmark:

1. confidences ``<= 0.2`` are set to 0;
2. an all-zero background map is put in front, at index 0;
3. each pixel takes the index of the largest value, ties going to the lowest
   index, so a pixel no class claims is background.

Label ``0`` is background and class ``i`` (0-based, in the order given) is
label ``i + 1``.

Confidence of one class: the backend's per-pixel foreground probability when
it has one (:class:`~segprompt.backends.probability.ProbabilityPrediction`:
CLIPSeg, SegGPT); otherwise the best mask filled with its score clipped to
``[0, 1]`` (SAM-based backends score a whole mask, e.g. by predicted IoU).
Of several candidate masks the best-scoring one stands for the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .backends.base import Embedding, Prediction, Segmenter
from .progress import ProgressCallback, no_progress
from .backends.probability import ProbabilityPrediction
from .errors import PromptError
from .prompts import Prompt, Text, VisualReference

#: Show-or-Tell's confidence threshold: values at or below it count as 0.
CONFIDENCE_THRESHOLD = 0.2
BACKGROUND = "background"


def merge_confidences(
    confidences: np.ndarray,
    masks: np.ndarray | None = None,
    threshold: float = CONFIDENCE_THRESHOLD,
) -> np.ndarray:
    """Merge per-class confidence maps into a label map (see the module docstring).

    Args:
        confidences: ``(C, H, W)`` float confidences, class ``i`` at index ``i``.
        masks: optional ``(C, H, W)`` bool masks; a class's confidence is zeroed
            outside its mask before the merge (the mask-aware variant).
        threshold: confidences ``<= threshold`` become 0.

    Returns:
        ``(H, W)`` int32 labels: 0 background, ``i + 1`` for class ``i``.

    Raises:
        ValueError: wrong shapes or non-finite confidences.
    """
    confidences = np.asarray(confidences, dtype=np.float32)
    if confidences.ndim != 3:
        raise ValueError(f"confidences must be (C, H, W), got shape {confidences.shape}")
    if not np.isfinite(confidences).all():
        raise ValueError("confidences contain NaN or infinite values")
    if masks is not None:
        masks = np.asarray(masks)
        if masks.shape != confidences.shape:
            raise ValueError(f"masks shape {masks.shape} differs from confidences shape {confidences.shape}")
        confidences = np.where(masks.astype(bool), confidences, 0.0)
    kept = np.where(confidences > threshold, confidences, 0.0)
    with_background = np.concatenate([np.zeros((1, *kept.shape[1:]), np.float32), kept])
    return np.argmax(with_background, axis=0).astype(np.int32)  # argmax keeps the first of equal values


def class_confidence(prediction: Prediction) -> tuple[np.ndarray, np.ndarray]:
    """``(mask (H, W) bool, confidence (H, W) float32)`` standing for one class's answer."""
    mask = prediction.best_mask
    if isinstance(prediction, ProbabilityPrediction):
        return mask, prediction.probabilities
    score = float(np.clip(prediction.scores[prediction.best], 0.0, 1.0))
    return mask, mask.astype(np.float32) * np.float32(score)


@dataclass
class SemanticSegmentation:
    """The result of :func:`segment_classes`.

    Attributes:
        labels: ``(H, W)`` int32 label map, 0 = background, ``i + 1`` = class ``i``.
        class_names: ``("background", name_0, name_1, ...)``: ``class_names[label]``
            names a label.
        masks: ``(C, H, W)`` bool, each class's own mask before the merge.
        confidences: ``(C, H, W)`` float32, each class's confidence before the merge.
    """

    labels: np.ndarray
    class_names: tuple[str, ...]
    masks: np.ndarray
    confidences: np.ndarray


def _class_prompt(name: str, part: Text | VisualReference | str) -> Prompt:
    if isinstance(part, str):
        part = Text(part)
    if isinstance(part, Text):
        return Prompt(text=part)
    if isinstance(part, VisualReference):
        return Prompt(reference=part)
    raise PromptError(f"class {name!r}: expected a Text, a VisualReference or a string, got {type(part).__name__}")


def segment_classes(
    image: np.ndarray,
    classes: Mapping[str, Text | VisualReference | str],
    segmenter: Segmenter,
    *,
    threshold: float = CONFIDENCE_THRESHOLD,
    within_masks: bool = False,
    embedding: Embedding | None = None,
    progress: ProgressCallback = no_progress,
) -> SemanticSegmentation:
    """Label every pixel of ``image`` with one of ``classes`` or background.

    Args:
        image: ``(H, W[, C])`` image.
        classes: class name -> its prompt: a :class:`Text` (a plain string is
            taken as text) or a :class:`VisualReference`, in label order.
        segmenter: a backend accepting the prompt kinds used.
        threshold: Show-or-Tell's confidence threshold.
        within_masks: zero each class's confidence outside its mask first.
        embedding: ``segmenter``'s embedding of ``image`` if already computed
            (e.g. from :class:`~segprompt.cache.EmbeddingCache`).
        progress: called before and after the embedding and after each class.

    Raises:
        PromptError: no classes, an empty class name or a bad prompt.
        UnsupportedPromptError: ``segmenter`` does not accept a prompt kind used.
    """
    if not classes:
        raise PromptError("classes: at least one class is required")
    prompts = {}
    for name, part in classes.items():
        if not isinstance(name, str) or not name.strip():
            raise PromptError(f"classes: class names must be non-empty strings, got {name!r}")
        prompts[name] = _class_prompt(name, part)
        segmenter.check_prompt(prompts[name])
    total = len(prompts) + 1
    progress(0, total, "embedding the image")
    if embedding is None:
        embedding = segmenter.embed(image)
    progress(1, total, "image embedded")
    masks, confidences = [], []
    for index, (name, prompt) in enumerate(prompts.items(), start=2):
        mask, confidence = class_confidence(segmenter.predict(embedding, prompt))
        masks.append(mask)
        confidences.append(confidence)
        progress(index, total, f"class {name!r}")
    mask_stack = np.stack(masks)
    confidence_stack = np.stack(confidences).astype(np.float32)
    labels = merge_confidences(confidence_stack, mask_stack if within_masks else None, threshold)
    return SemanticSegmentation(labels, (BACKGROUND, *prompts), mask_stack, confidence_stack)


__all__ = [
    "BACKGROUND",
    "CONFIDENCE_THRESHOLD",
    "SemanticSegmentation",
    "class_confidence",
    "merge_confidences",
    "segment_classes",
]
