"""Headless state of an interactive annotation session.

The napari plugin (and any other front end) drives one
:class:`AnnotationSession` per image: every prompt edit calls
:meth:`AnnotationSession.update`, which re-runs the backend's decoder on the
cached :class:`~segprompt.backends.base.Embedding` and yields a preview mask;
:meth:`~AnnotationSession.accept` writes the preview into a label map as the
next object id; :meth:`~AnnotationSession.undo` / :meth:`~AnnotationSession.redo`
take accepted objects back and forth; :meth:`~AnnotationSession.save` /
:meth:`~AnnotationSession.load` persist the label map together with the prompt
that produced each object.

Coordinate frames: napari stores positions as ``(row, col)`` (more axes in
front for stacks); segprompt prompts are ``(x, y)`` = ``(col, row)``. The only
conversion between the two is :func:`rowcol_to_xy`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends.base import Embedding, Prediction, Segmenter
from .errors import ImageError, PromptError, SegpromptError
from .instances import Instances, InstancesPrediction
from .io import atomic_write_text, read_mask, write_mask
from .prompts import Box, Prompt

#: ``"format"`` field of the prompts JSON written by :meth:`AnnotationSession.save`.
PROMPTS_FORMAT = "segprompt-annotation"
PROMPTS_SCHEMA = 1


def rowcol_to_xy(positions: np.ndarray) -> np.ndarray:
    """Convert napari positions to segprompt ``(x, y)`` pixels.

    Args:
        positions: ``(N, D)`` array, ``D >= 2``, of napari data coordinates
            whose last two axes are ``(row, col)`` (leading axes, e.g. the
            plane of a stack, are dropped). napari and segprompt both put pixel
            centres on integer coordinates, so no half-pixel shift is needed.

    Returns:
        ``(N, 2)`` float64 array of ``(x, y)`` = ``(col, row)``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] < 2:
        raise PromptError(f"napari positions: expected shape (N, D>=2) with (row, col) last, got {positions.shape}")
    return positions[:, [-1, -2]].copy()


def box_from_vertices(vertices: np.ndarray, image_hw: tuple[int, int]) -> Box:
    """The ``(x0, y0, x1, y1)`` box enclosing a napari shape, clipped to the image.

    Args:
        vertices: ``(V, D)`` napari shape vertices, ``(row, col)`` last.
        image_hw: ``(H, W)``; a box drawn partly outside the image is clipped
            to ``[0, W] x [0, H]`` rather than rejected, as users draw boxes
            up to the border.

    Raises:
        PromptError: the shape lies entirely outside the image.
    """
    xy = rowcol_to_xy(vertices)
    height, width = image_hw
    x0, y0 = np.clip(xy.min(axis=0), 0, [width, height])
    x1, y1 = np.clip(xy.max(axis=0), 0, [width, height])
    if x1 <= x0 or y1 <= y0:
        raise PromptError(f"box: the shape with corners {xy.min(axis=0).tolist()} - {xy.max(axis=0).tolist()} "
                          f"(x, y) does not overlap the {width}x{height} (W x H) image")
    return Box(float(x0), float(y0), float(x1), float(y1))


def wants_multimask(prompt: Prompt) -> bool:
    """Ask for several candidates only for an ambiguous prompt: a single point and nothing else.

    segment-anything recommends ``multimask_output=False`` once several
    prompts pin the object down; a single click is ambiguous (part, object,
    group), so its three candidates are worth cycling through.
    """
    return prompt.kinds() == {"points"} and prompt.points is not None and len(prompt.points) == 1


@dataclass(frozen=True, eq=False)
class AcceptedObject:
    """One object written into the label map.

    Attributes:
        label: its id in the label map (``>= 1``).
        prompt: the prompt that produced it (``None`` for an object loaded
            from a label map without a prompt record).
        score: the backend's score of the accepted candidate (NaN if unknown).
        pixels: ``(n,)`` int64 flat indices into the ``(H, W)`` label map of
            the pixels it took, so undo restores exactly them.
    """

    label: int
    prompt: Prompt | None
    score: float
    pixels: np.ndarray


class AnnotationSession:
    """Prompts -> preview -> accepted objects, for one image.

    Args:
        segmenter: the backend answering prompts.
        embedding: ``segmenter``'s embedding of the image.
        labels: ``(H, W)`` integer label map to add objects to; it is changed
            in place (a napari Labels layer can share it), ``.flat`` indexing
            so a non-contiguous view works too. A new zero map when ``None``.

    Accepted objects only take background (``0``) pixels: an object never
    overwrites one accepted before it. A concept answer
    (:class:`~segprompt.instances.InstancesPrediction`, e.g. SAM 3's) is
    accepted whole: every instance becomes its own object, best first, and
    one undo takes them all back.
    """

    def __init__(self, segmenter: Segmenter, embedding: Embedding, labels: np.ndarray | None = None) -> None:
        self.segmenter = segmenter
        self.embedding = embedding
        height, width = embedding.image_hw
        if labels is None:
            labels = np.zeros((height, width), np.int32)
        elif labels.shape != (height, width) or not np.issubdtype(labels.dtype, np.integer):
            raise ImageError(f"labels: expected an integer ({height}, {width}) map, got {labels.dtype} {labels.shape}")
        self.labels = labels
        self.objects: list[AcceptedObject] = []
        self._redo: list[AcceptedObject] = []
        #: How many objects each accept added (one per instance of a concept answer), for undo/redo.
        self._accepted_counts: list[int] = []
        self._redo_counts: list[int] = []
        self.prompt: Prompt | None = None
        self.prediction: Prediction | None = None
        self._order: np.ndarray = np.zeros(0, np.int64)
        self._candidate = 0

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.embedding.image_hw

    # -- preview -----------------------------------------------------------

    def update(self, prompt: Prompt | None) -> np.ndarray | None:
        """Answer ``prompt`` and return the preview; ``None`` or an empty prompt clears it.

        The candidates are ranked by score, best first; the preview is the
        best one until :meth:`cycle` picks another.

        Raises:
            UnsupportedPromptError, PromptError: from the backend; the previous
                preview is cleared first so a stale mask is never accepted.
        """
        self.clear()
        if prompt is None or prompt.is_empty():
            return None
        return self.set_preview(prompt, self.predict(prompt))

    def predict(self, prompt: Prompt) -> Prediction:
        """The backend's answer to ``prompt``; changes nothing, so a worker thread may call it."""
        return self.segmenter.predict(self.embedding, prompt, multimask=wants_multimask(prompt))

    def set_preview(self, prompt: Prompt, prediction: Prediction) -> np.ndarray:
        """Show ``prediction``, the answer to ``prompt`` (from :meth:`predict`); return the preview."""
        self.prompt, self.prediction = prompt, prediction
        self._order, self._candidate = np.argsort(-prediction.scores, kind="stable"), 0
        return self.preview

    @property
    def n_candidates(self) -> int:
        return int(self._order.size)

    @property
    def candidate(self) -> int:
        """Rank (0 = best score) of the candidate shown as preview."""
        return self._candidate

    def cycle(self, step: int = 1) -> np.ndarray | None:
        """Show the candidate ``step`` ranks further (wrapping); return the preview."""
        if self.n_candidates:
            self._candidate = (self._candidate + step) % self.n_candidates
        return self.preview

    @property
    def preview(self) -> np.ndarray | None:
        """``(H, W)`` bool mask of the current candidate, or ``None``."""
        if self.prediction is None:
            return None
        return self.prediction.masks[self._order[self._candidate]]

    @property
    def instances(self) -> Instances | None:
        """Every object of the previewed concept answer, best first; ``None`` for a single-object answer."""
        if isinstance(self.prediction, InstancesPrediction):
            return self.prediction.instances
        return None

    @property
    def preview_score(self) -> float:
        if self.prediction is None:
            return float("nan")
        return float(self.prediction.scores[self._order[self._candidate]])

    @property
    def preview_method(self) -> str | None:
        """How the backend made the preview candidate (``Prediction.methods``), or ``None`` when it does not say."""
        if self.prediction is None or self.prediction.methods is None:
            return None
        return self.prediction.methods[self._order[self._candidate]]

    def clear(self) -> None:
        """Drop the prompt and the preview (accepted objects stay)."""
        self.prompt, self.prediction = None, None
        self._order, self._candidate = np.zeros(0, np.int64), 0

    # -- accepted objects --------------------------------------------------

    @property
    def next_label(self) -> int:
        """The id the next accepted object gets: one above every id in use."""
        in_use = max((o.label for o in self.objects), default=0)
        return int(max(in_use, int(self.labels.max(initial=0)))) + 1

    def accept(self) -> int:
        """Write the preview into :attr:`labels` as :attr:`next_label`; return that id.

        For a concept answer every instance is written, best first, each as
        the next id (the first id is returned). Clears the prompt and the
        preview and forgets the redo history.

        Raises:
            SegpromptError: there is no preview, or it covers no background pixel.
        """
        preview = self.preview
        if preview is None:
            raise SegpromptError("accept: there is no preview to accept; add a prompt first")
        instances = self.instances
        if instances is not None and len(instances):
            masks, scores = instances.masks, instances.scores
        else:
            masks, scores = preview[None], np.array([self.preview_score])
        added = []
        for mask, score in zip(masks, scores):
            pixels = np.flatnonzero(mask.ravel() & (self.labels.ravel() == 0))
            if pixels.size:
                label = self.next_label
                self.labels.flat[pixels] = label
                added.append(AcceptedObject(label, self.prompt, float(score), pixels))
                self.objects.append(added[-1])
        if not added:
            raise SegpromptError("accept: the preview is empty or lies entirely on objects accepted before")
        self._accepted_counts.append(len(added))
        self._redo.clear()
        self._redo_counts.clear()
        self.clear()
        return added[0].label

    def undo(self) -> int | None:
        """Remove the last accepted object (all instances of a concept accept); return its (first) id, or ``None``."""
        if not self.objects:
            return None
        count = self._accepted_counts.pop() if self._accepted_counts else 1
        undone = [self.objects.pop() for _ in range(min(count, len(self.objects)))]
        for obj in undone:
            # Only pixels still carrying the id: a later manual edit of the label map wins.
            mine = obj.pixels[self.labels.flat[obj.pixels] == obj.label]
            self.labels.flat[mine] = 0
        self._redo.extend(undone)
        self._redo_counts.append(len(undone))
        return undone[-1].label

    def redo(self) -> int | None:
        """Put back the last undone object(s) (on pixels still free); return the (first) id or ``None``."""
        if not self._redo:
            return None
        count = self._redo_counts.pop() if self._redo_counts else 1
        restored = [self._redo.pop() for _ in range(min(count, len(self._redo)))]
        for obj in restored:
            free = obj.pixels[self.labels.flat[obj.pixels] == 0]
            self.labels.flat[free] = obj.label
            self.objects.append(AcceptedObject(obj.label, obj.prompt, obj.score, free))
        self._accepted_counts.append(len(restored))
        return restored[0].label

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    # -- persistence -------------------------------------------------------

    def save(self, labels_path: str | os.PathLike, prompts_path: str | os.PathLike | None = None) -> Path:
        """Write the label map (PNG/TIFF) and the per-object prompts (JSON), each atomically.

        Args:
            labels_path: ``.png`` or ``.tif``/``.tiff`` file.
            prompts_path: JSON file; ``<labels_path without suffix>.prompts.json``
                when ``None``.

        Returns:
            The path of the prompts JSON.
        """
        labels_path = Path(labels_path)
        prompts_path = Path(prompts_path) if prompts_path is not None else default_prompts_path(labels_path)
        record = {
            "format": PROMPTS_FORMAT,
            "schema": PROMPTS_SCHEMA,
            "labels_file": labels_path.name,
            "image_hw": list(self.image_hw),
            "backend": self.segmenter.name,  # the backend that answered (PerSAM answers from SAM's embedding)
            "model_id": self.segmenter.model_id,
            "objects": [
                {
                    "label": o.label,
                    "score": None if np.isnan(o.score) else o.score,
                    "prompt": None if o.prompt is None else o.prompt.to_dict(),
                }
                for o in self.objects
            ],
        }
        write_mask(labels_path, self.labels)
        atomic_write_text(prompts_path, json.dumps(record, indent=1))
        return prompts_path

    def load(self, labels_path: str | os.PathLike, prompts_path: str | os.PathLike | None = None) -> None:
        """Replace the label map and objects by saved ones; the redo history is dropped.

        Without a prompts file (``prompts_path=None`` and no
        ``<stem>.prompts.json`` beside the labels), every id in the label map
        becomes an object without a prompt.

        Raises:
            ImageError: unreadable labels file, or its shape differs from the image.
            SegpromptError: the prompts JSON is malformed or names an id the
                label map does not hold.
        """
        labels_path = Path(labels_path)
        labels = read_mask(labels_path)
        if labels.shape != self.image_hw:
            raise ImageError(f"{labels_path}: label map shape {labels.shape} does not match the image {self.image_hw}")
        if prompts_path is None and default_prompts_path(labels_path).is_file():
            prompts_path = default_prompts_path(labels_path)
        entries = _read_prompt_entries(Path(prompts_path)) if prompts_path is not None else None
        flat = labels.ravel().astype(self.labels.dtype)
        if entries is None:
            entries = [{"label": int(v), "prompt": None, "score": None} for v in np.unique(flat) if v != 0]
        objects = []
        for index, entry in enumerate(entries):
            label = entry["label"]
            pixels = np.flatnonzero(flat == label)
            if pixels.size == 0:
                raise SegpromptError(f"{prompts_path}: objects[{index}].label={label} is not in {labels_path}")
            score = float("nan") if entry.get("score") is None else float(entry["score"])
            objects.append(AcceptedObject(label, entry["prompt"], score, pixels))
        self.labels[...] = flat.reshape(self.labels.shape)
        self.objects = objects
        self._accepted_counts = [1] * len(objects)
        self._redo.clear()
        self._redo_counts.clear()
        self.clear()


def default_prompts_path(labels_path: Path) -> Path:
    """``masks/img.tif`` -> ``masks/img.prompts.json``."""
    return labels_path.with_name(labels_path.stem + ".prompts.json")


def _read_prompt_entries(path: Path) -> list[dict[str, Any]]:
    """Objects of a prompts JSON, each ``{"label": int, "prompt": Prompt | None, "score": float | None}``."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SegpromptError(f"{path}: cannot read the prompts file ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise SegpromptError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != PROMPTS_FORMAT:
        raise SegpromptError(f"{path}: not a segprompt annotation file (expected \"format\": \"{PROMPTS_FORMAT}\")")
    entries = []
    for index, entry in enumerate(record.get("objects", [])):
        try:
            label = int(entry["label"])
            prompt = None if entry.get("prompt") is None else Prompt.from_dict(entry["prompt"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SegpromptError(f"{path}: objects[{index}] is malformed ({exc})") from exc
        if label < 1:
            raise SegpromptError(f"{path}: objects[{index}].label must be >= 1, got {label}")
        entries.append({"label": label, "prompt": prompt, "score": entry.get("score")})
    return entries


__all__ = [
    "AcceptedObject",
    "AnnotationSession",
    "PROMPTS_FORMAT",
    "box_from_vertices",
    "default_prompts_path",
    "rowcol_to_xy",
    "wants_multimask",
]
