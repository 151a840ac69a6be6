"""Many objects per answer: :class:`Instances`.

A :class:`~segprompt.backends.base.Prediction` holds ``K`` *candidate* masks for
one object (SAM's three guesses; the caller keeps the best). A concept prompt
("every cell", SAM 3's text and exemplars) or segment-everything answers with
``N`` *distinct* objects instead: :class:`Instances`, one mask, score, box and
optional class name per object.

Frames: masks are ``(N, H, W)`` bool in original-image pixels (row, column);
boxes are ``(x0, y0, x1, y1)`` in original-image pixels with ``x`` the column
and ``x1``/``y1`` exclusive, the convention of :class:`~segprompt.prompts.Box`
(a box computed from a mask is its tight box, :func:`boxes_from_masks`).

Label maps (:meth:`Instances.to_label_map`, :meth:`Instances.from_label_map`)
are ``(H, W)`` integer images, ``0`` background and one value per object: the
object's :attr:`~Instances.ids` when set, else ``i + 1`` for object ``i``.
Where objects overlap, the higher-scoring one owns the pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .backends.probability import ProbabilityPrediction


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """``(N, 4)`` float64 tight boxes ``(x0, y0, x1, y1)`` of ``(N, H, W)`` masks (``x1``/``y1`` exclusive).

    An empty mask gets ``(0, 0, 0, 0)``.
    """
    masks = np.asarray(masks, dtype=bool)
    boxes = np.zeros((masks.shape[0], 4), np.float64)
    rows_any, cols_any = masks.any(axis=2), masks.any(axis=1)  # (N, H), (N, W)
    nonempty = rows_any.any(axis=1)
    if nonempty.any():
        height, width = masks.shape[1:]
        rows, cols = rows_any[nonempty], cols_any[nonempty]
        boxes[nonempty, 0] = np.argmax(cols, axis=1)
        boxes[nonempty, 1] = np.argmax(rows, axis=1)
        boxes[nonempty, 2] = width - np.argmax(cols[:, ::-1], axis=1)
        boxes[nonempty, 3] = height - np.argmax(rows[:, ::-1], axis=1)
    return boxes


@dataclass(eq=False)
class Instances:
    """``N`` distinct objects found in one ``(H, W)`` image.

    Attributes:
        masks: ``(N, H, W)`` bool, one mask per object, original-image pixels.
        scores: ``(N,)`` float32 confidences, higher is better (SAM 3: detection
            score x presence score).
        boxes: ``(N, 4)`` float64 ``(x0, y0, x1, y1)`` in original-image pixels,
            ``x1``/``y1`` exclusive; ``None`` at construction means the masks'
            tight boxes (:func:`boxes_from_masks`). A detector's box may be
            larger than its mask; an empty mask's box may be ``(0, 0, 0, 0)``.
        class_names: ``N`` class names, or ``None`` when the objects are not named.
        ids: ``(N,)`` int64 positive object ids (label values), or ``None``
            (then object ``i`` is label ``i + 1``).

    Raises:
        ValueError: arrays of the wrong shape or type, non-finite scores or
            boxes, inverted boxes, duplicate or non-positive ids.
    """

    masks: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        masks = np.asarray(self.masks)
        if masks.ndim != 3 or masks.dtype != bool:
            raise ValueError(f"Instances.masks must be (N, H, W) bool, got {masks.shape} {masks.dtype}")
        count = masks.shape[0]
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if scores.shape != (count,):
            raise ValueError(f"Instances.scores must be ({count},), got {scores.shape}")
        if not np.isfinite(scores).all():
            raise ValueError("Instances.scores contain NaN or infinite values")
        boxes = boxes_from_masks(masks) if self.boxes is None else np.asarray(self.boxes, dtype=np.float64)
        if boxes.shape != (count, 4):
            raise ValueError(f"Instances.boxes must be ({count}, 4), got {boxes.shape}")
        if not np.isfinite(boxes).all():
            raise ValueError("Instances.boxes contain NaN or infinite values")
        inverted = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if inverted.any():
            index = int(np.flatnonzero(inverted)[0])
            raise ValueError(f"Instances.boxes[{index}] is inverted: {tuple(boxes[index].tolist())}")
        class_names = self.class_names
        if class_names is not None:
            class_names = tuple(class_names)
            if len(class_names) != count or not all(isinstance(name, str) for name in class_names):
                raise ValueError(f"Instances.class_names must be {count} strings, got {class_names!r:.120}")
        ids = self.ids
        if ids is not None:
            ids = np.asarray(ids, dtype=np.int64).reshape(-1)
            if ids.shape != (count,):
                raise ValueError(f"Instances.ids must be ({count},), got {ids.shape}")
            if (ids <= 0).any() or len(np.unique(ids)) != count:
                raise ValueError(f"Instances.ids must be distinct positive integers, got {ids.tolist()[:10]}")
        self.masks, self.scores, self.boxes, self.class_names, self.ids = masks, scores, boxes, class_names, ids

    @classmethod
    def empty(cls, image_hw: tuple[int, int]) -> "Instances":
        """No object in an ``(H, W)`` image."""
        return cls(np.zeros((0, *image_hw), bool), np.zeros(0, np.float32), np.zeros((0, 4)))

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the image the masks cover."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 label value of each object: :attr:`ids`, else ``1..N``."""
        return self.ids if self.ids is not None else np.arange(1, len(self) + 1, dtype=np.int64)

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> "Instances":
        """The objects at ``index`` (an int, a slice, indices or a bool mask), as :class:`Instances`."""
        keep = np.arange(len(self))[index]
        keep = np.atleast_1d(keep)
        return Instances(
            self.masks[keep],
            self.scores[keep],
            self.boxes[keep],
            None if self.class_names is None else tuple(self.class_names[i] for i in keep),
            None if self.ids is None else self.ids[keep],
        )

    def sorted(self) -> "Instances":
        """The objects by decreasing score (stable: equal scores keep their order)."""
        return self[np.argsort(-self.scores, kind="stable")]

    def above(self, threshold: float) -> "Instances":
        """The objects scoring at least ``threshold``."""
        return self[self.scores >= threshold]

    def union(self) -> np.ndarray:
        """``(H, W)`` bool: pixels inside any object."""
        return self.masks.any(axis=0) if len(self) else np.zeros(self.image_hw, bool)

    def confidence_map(self) -> np.ndarray:
        """``(H, W)`` float32: each pixel's highest score among the objects covering it (0 outside all)."""
        if not len(self):
            return np.zeros(self.image_hw, np.float32)
        return np.where(self.masks, self.scores[:, None, None], 0.0).max(axis=0).astype(np.float32)

    def to_label_map(self) -> np.ndarray:
        """``(H, W)`` int32 label map: 0 background, :attr:`labels` inside each object.

        Where objects overlap, the pixel goes to the higher-scoring object
        (equal scores: the earlier object).
        """
        labels = np.zeros(self.image_hw, np.int32)
        # Paint the worst first so better objects overwrite it.
        for index in np.argsort(-self.scores, kind="stable")[::-1]:
            labels[self.masks[index]] = self.labels[index]
        return labels

    @classmethod
    def from_label_map(
        cls,
        label_map: np.ndarray,
        scores: Sequence[float] | np.ndarray | None = None,
        class_names: Sequence[str] | None = None,
    ) -> "Instances":
        """One object per distinct non-zero value of an ``(H, W)`` integer label map.

        Objects come in increasing label order and keep their label as
        :attr:`ids`, so ``from_label_map(m).to_label_map()`` returns ``m``.

        Args:
            label_map: ``(H, W)`` integer labels, 0 background.
            scores: one score per object (default 1.0 each).
            class_names: one class name per object.

        Raises:
            ValueError: not a 2-D integer array, negative labels, or ``scores``
                / ``class_names`` of another length than the object count.
        """
        label_map = np.asarray(label_map)
        if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
            raise ValueError(f"label map must be a 2-D integer array, got {label_map.shape} {label_map.dtype}")
        if label_map.size and label_map.min() < 0:
            raise ValueError(f"label map holds negative label {int(label_map.min())}")
        ids = np.unique(label_map)
        ids = ids[ids != 0].astype(np.int64)
        masks = label_map[None] == ids[:, None, None] if ids.size else np.zeros((0, *label_map.shape), bool)
        if scores is None:
            scores = np.ones(ids.size, np.float32)
        return cls(masks, np.asarray(scores, np.float32), None, None if class_names is None else tuple(class_names), ids)

    @classmethod
    def concatenate(cls, parts: Sequence["Instances"], image_hw: tuple[int, int] | None = None) -> "Instances":
        """All objects of ``parts`` in order; ``image_hw`` is needed only when ``parts`` is empty.

        Class names survive only when every part has them; ids only when every
        part has them and they stay distinct.

        Raises:
            ValueError: parts of different image sizes, or neither parts nor ``image_hw``.
        """
        if not parts:
            if image_hw is None:
                raise ValueError("Instances.concatenate: no parts and no image_hw")
            return cls.empty(image_hw)
        sizes = {part.image_hw for part in parts}
        if len(sizes) != 1:
            raise ValueError(f"Instances.concatenate: parts cover different image sizes {sorted(sizes)}")
        names = None
        if all(part.class_names is not None for part in parts):
            names = tuple(name for part in parts for name in part.class_names)
        ids = None
        if all(part.ids is not None for part in parts):
            joined = np.concatenate([part.ids for part in parts])
            ids = joined if len(np.unique(joined)) == joined.size else None
        return cls(
            np.concatenate([part.masks for part in parts]),
            np.concatenate([part.scores for part in parts]),
            np.concatenate([part.boxes for part in parts]),
            names,
            ids,
        )


@dataclass
class InstancesPrediction(ProbabilityPrediction):
    """A :class:`~segprompt.backends.base.Prediction` whose candidates are distinct objects.

    A concept backend answers a prompt through the ordinary ``predict`` with
    this: ``masks``/``scores`` are the objects best first (one empty mask with
    score 0 when there is none, so ``best_mask`` always exists), and
    ``instances`` holds them all with their boxes (and class names).

    Attributes:
        instances: every object found (``N >= 0``), best first.
        probabilities: ``(H, W)`` float32 foreground probability of the concept
            (SAM 3's semantic map), used when classes are merged.
    """

    instances: Instances | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.instances is None:
            raise ValueError("InstancesPrediction.instances is required")

    @classmethod
    def from_instances(cls, instances: Instances, probabilities: np.ndarray | None = None) -> "InstancesPrediction":
        """Wrap ``instances`` (sorted best first); the map defaults to :meth:`Instances.confidence_map`."""
        instances = instances.sorted()
        if len(instances):
            masks, scores = instances.masks, instances.scores
        else:
            masks, scores = np.zeros((1, *instances.image_hw), bool), np.zeros(1, np.float32)
        if probabilities is None:
            probabilities = instances.confidence_map()
        return cls(masks=masks, scores=scores, probabilities=probabilities, instances=instances)


__all__ = ["Instances", "InstancesPrediction", "boxes_from_masks"]
