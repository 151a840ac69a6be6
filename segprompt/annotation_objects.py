"""Objects, not pixels: the record of each annotated object and its measured table row.

An :class:`~segprompt.annotation.AnnotationSession` keeps one
:class:`AnnotatedObject` per object id: class name, score, the backend and
model that made it, how it was made (:data:`SOURCES`) and every prompt that
made it, in order (the last one made the current mask). Area and box are not
stored: they are measured on the label map (:func:`object_rows`), so an
object corrected by hand is described as painted.

Boxes are ``(x0, y0, x1, y1)`` in original-image pixels, ``x`` the column,
``x1`` / ``y1`` exclusive (the :class:`~segprompt.prompts.Box` convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy import ndimage as ndi

from .errors import PromptError, SegpromptError
from .export import DEFAULT_CLASS
from .prompts import Prompt

#: How an object was made: a user's prompt (accept or re-prompt), segment everything, a refined imported
#: mask, an imported label map, or pixels the session did not make (painted by hand, or there when it started).
SOURCES = ("prompt", "everything", "refine", "import", "manual")


@dataclass(frozen=True, eq=False)
class AnnotatedObject:
    """One object of an annotation session.

    Attributes:
        label: its id in the label map (``>= 1``).
        class_name: its class (:data:`~segprompt.export.DEFAULT_CLASS` until named).
        score: the backend's score of its mask (NaN when unknown: imported, painted).
        backend: the backend that made its mask (``""``: none).
        model_id: the weights that made it (``""``: none).
        source: one of :data:`SOURCES`.
        prompts: every prompt that made it, in order; the last made its current mask.
    """

    label: int
    class_name: str = DEFAULT_CLASS
    score: float = float("nan")
    backend: str = ""
    model_id: str = ""
    source: str = "manual"
    prompts: tuple[Prompt, ...] = ()

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"AnnotatedObject.source must be one of {SOURCES}, got {self.source!r}")

    @property
    def prompt(self) -> Prompt | None:
        """The prompt that made the current mask, or ``None``."""
        return self.prompts[-1] if self.prompts else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (score ``None`` when unknown)."""
        return {
            "label": self.label,
            "class_name": self.class_name,
            "score": None if math.isnan(self.score) else self.score,
            "backend": self.backend,
            "model_id": self.model_id,
            "source": self.source,
            "prompts": [prompt.to_dict() for prompt in self.prompts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> "AnnotatedObject":
        """The object :meth:`to_dict` wrote; ``where`` (file and field) is named in errors.

        Raises:
            SegpromptError: a missing or malformed field.
        """
        try:
            label = int(data["label"])
            score = data.get("score")
            record = cls(
                label,
                str(data.get("class_name") or DEFAULT_CLASS),
                float("nan") if score is None else float(score),
                str(data.get("backend", "")),
                str(data.get("model_id", "")),
                str(data.get("source", "manual")),
                tuple(Prompt.from_dict(prompt) for prompt in data.get("prompts", [])),
            )
        except (KeyError, TypeError, ValueError, PromptError) as exc:
            raise SegpromptError(f"{where} is malformed ({exc})") from exc
        if label < 1:
            raise SegpromptError(f"{where}.label must be >= 1, got {label}")
        return record


@dataclass(frozen=True)
class ObjectRow:
    """One object as a table shows it: its record plus what the label map says.

    Attributes:
        area: its pixel count in the label map now (0: painted away).
        box: its tight ``(x0, y0, x1, y1)`` box, ``None`` when it has no pixel.
        prompts: how many prompts made it.
    """

    label: int
    class_name: str
    score: float
    area: int
    box: tuple[int, int, int, int] | None
    backend: str
    model_id: str
    source: str
    prompts: int


def object_rows(labels: np.ndarray, records: Mapping[int, AnnotatedObject]) -> list[ObjectRow]:
    """One row per object, by id: every record, and every id of ``labels`` without one (as ``"manual"``).

    Args:
        labels: ``(H, W)`` integer label map, 0 background.
        records: the objects' records by id.
    """
    labels = np.asarray(labels)
    ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    # Boxes from the ids' ranks (find_objects lists every value up to the largest id, which may be huge).
    shift = 0 if ids.size and ids[0] == 0 else 1
    windows = ndi.find_objects(inverse.reshape(labels.shape) + shift)
    found = {int(label): (int(count), windows[rank + shift - 1]) for rank, (label, count) in enumerate(zip(ids, counts))
             if label != 0}
    rows = []
    for label in sorted(set(records) | set(found)):
        record = records.get(label) or AnnotatedObject(label)
        area, window = found.get(label, (0, None))
        box = None if window is None else (window[1].start, window[0].start, window[1].stop, window[0].stop)
        rows.append(
            ObjectRow(label, record.class_name, record.score, area, box, record.backend, record.model_id,
                      record.source, len(record.prompts))
        )
    return rows


__all__ = ["SOURCES", "AnnotatedObject", "ObjectRow", "object_rows"]
