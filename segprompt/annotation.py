"""Headless state of an interactive annotation session: prompts, objects, undoable edits, history.

The napari plugin, the ``everything`` / ``refine`` / ``replay`` verbs and any
other front end drive one :class:`AnnotationSession` per image:

* **preview**: every prompt edit calls :meth:`~AnnotationSession.update` (or
  :meth:`~AnnotationSession.predict` in a worker, then
  :meth:`~AnnotationSession.set_preview`), which re-runs the backend's decoder
  on the cached :class:`~segprompt.backends.base.Embedding`;
  :meth:`~AnnotationSession.cycle` steps through the candidates.
* **edits**, each one step of :meth:`~AnnotationSession.undo` /
  :meth:`~AnnotationSession.redo`: :meth:`~AnnotationSession.accept` the
  preview as a new object (a concept answer: one object per instance),
  :meth:`~AnnotationSession.accept_everything` (segment everything),
  :meth:`~AnnotationSession.import_labels` (an existing label map, ids
  kept), :meth:`~AnnotationSession.refine` (each object's own mask as its
  prompt), :meth:`~AnnotationSession.reprompt` (an object's mask replaced by
  the preview, id and class kept), :meth:`~AnnotationSession.rename`,
  :meth:`~AnnotationSession.delete`.
* **objects, not pixels**: each id has an
  :class:`~segprompt.annotation_objects.AnnotatedObject` (class, score,
  backend, model id, source, its prompts in order);
  :meth:`~AnnotationSession.rows` adds area and box measured on the map.
* **hand edits**: the label map may be painted directly (a napari Labels
  layer shares it). :meth:`~AnnotationSession.sync`, run before every edit and
  on save, records what changed as a ``paint`` step; undo and redo only touch
  pixels that still hold what the step wrote, so a hand edit is never undone
  by accident.
* **history**: every step, undo and redo included, is appended to
  :attr:`~AnnotationSession.history` as a JSON-ready action;
  :meth:`~AnnotationSession.perform` runs one, and :mod:`segprompt.replay`
  runs a saved history to reproduce the label map bit for bit.
* **files**: :meth:`~AnnotationSession.save` / :meth:`~AnnotationSession.load`
  write and read the label map with its session file
  (:mod:`segprompt.session_file`).

Pixel rules: a new object (accept, everything, import) only takes background
(``0``) pixels, best-scoring first; a re-prompted or refined object takes
background and its own old pixels, never another object's. Ids never change.

Coordinate frames: napari stores positions as ``(row, col)`` (more axes in
front for stacks); segprompt prompts are ``(x, y)`` = ``(col, row)``. The only
conversion between the two is :func:`rowcol_to_xy`. Flat pixel indices are
row-major into the ``(H, W)`` map.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .annotation_objects import AnnotatedObject, ObjectRow, object_rows
from .atomic import write_files
from .backends.base import Embedding, Prediction, Segmenter
from .errors import ImageError, PromptError, SegpromptError, UnsupportedPromptError
from .everything import everything_settings, segment_everything, settings_to_dict
from .export import DEFAULT_CLASS
from .instances import Instances, InstancesPrediction
from .io import mask_bytes, read_mask
from .progress import ProgressCallback, no_progress
from .prompts import Box, MaskPrompt, Prompt, decode_array, encode_array
from .session_file import (
    SESSION_FORMAT,
    SESSION_SCHEMA,
    default_session_path,
    find_session_file,
    image_digest,
    labels_digest,
    read_session_record,
    session_json,
)


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
class Answer:
    """The candidate chosen for one object: what :meth:`AnnotationSession.reprompt` and ``refine`` write.

    Attributes:
        label: the object's id.
        prompt: the prompt answered.
        candidate: rank (0 = best score) of the chosen candidate.
        pixels: ``(n,)`` int64 flat indices of its mask.
        score: its score.
    """

    label: int
    prompt: Prompt
    candidate: int
    pixels: np.ndarray
    score: float


@dataclass(frozen=True, eq=False)
class _Edit:
    """One undoable step: pixels ``before`` -> ``after`` and the records of the ids it touched."""

    description: str
    labels: tuple[int, ...]
    pixels: np.ndarray
    before: np.ndarray
    after: np.ndarray
    records_before: dict[int, AnnotatedObject | None]
    records_after: dict[int, AnnotatedObject | None]


def _ranked(prediction: Prediction) -> np.ndarray:
    """Candidate indices by decreasing score (stable): rank ``k`` is the ``k``-th best."""
    return np.argsort(-prediction.scores, kind="stable")


class AnnotationSession:
    """Prompts -> preview -> objects with undoable edits, for one image.

    Args:
        segmenter: the backend answering prompts.
        embedding: ``segmenter``'s embedding of the image.
        labels: ``(H, W)`` integer label map to hold the objects; it is changed
            in place (a napari Labels layer can share it), ``.flat`` indexing
            so a non-contiguous view works too. A new zero map when ``None``;
            ids already in it become ``"manual"`` objects (the first
            :meth:`sync`).
        backend_options: how to build ``segmenter`` again
            (:func:`segprompt.backends.create_from_options` options: model
            type, checkpoint, model folder, variant), saved for replay.

    Attributes:
        history: every step taken, as JSON-ready actions (see :meth:`perform`).
        image_path: the image file, saved so a replay finds it (``None``: unknown).
        image_plane: the plane of a stack that file holds, or ``None``.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        embedding: Embedding,
        labels: np.ndarray | None = None,
        backend_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.segmenter = segmenter
        self.embedding = embedding
        height, width = embedding.image_hw
        if labels is None:
            labels = np.zeros((height, width), np.int32)
        elif labels.shape != (height, width) or not np.issubdtype(labels.dtype, np.integer):
            raise ImageError(f"labels: expected an integer ({height}, {width}) map, got {labels.dtype} {labels.shape}")
        self.labels = labels
        self.backend_options = dict(backend_options or {})
        self.image_path: str | None = None
        self.image_plane: int | None = None
        self.history: list[dict[str, Any]] = []
        self._records: dict[int, AnnotatedObject] = {}
        self._undo: list[_Edit] = []
        self._redo: list[_Edit] = []
        #: The label map as of the last step; where ``labels`` differs, it was painted by hand since.
        self._synced = np.zeros((height, width), labels.dtype)
        self.sync()
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
        self._order, self._candidate = _ranked(prediction), 0
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
        """Drop the prompt and the preview (objects stay)."""
        self.prompt, self.prediction = None, None
        self._order, self._candidate = np.zeros(0, np.int64), 0

    # -- objects -------------------------------------------------------------

    @property
    def objects(self) -> list[AnnotatedObject]:
        """The records of every object, by id."""
        return [self._records[label] for label in sorted(self._records)]

    def object(self, label: int) -> AnnotatedObject:
        """The record of object ``label`` (a ``"manual"`` one for an id only painted so far).

        Raises:
            SegpromptError: no object has that id.
        """
        if label in self._records:
            return self._records[label]
        if label > 0 and (np.asarray(self.labels) == label).any():
            return AnnotatedObject(label)
        raise SegpromptError(f"there is no object {label}")

    def rows(self) -> list[ObjectRow]:
        """Every object with its area and box measured on the label map now, by id."""
        return object_rows(self.labels, self._records)

    @property
    def next_label(self) -> int:
        """The id the next new object gets: one above every id in use."""
        return int(max(max(self._records, default=0), int(np.asarray(self.labels).max(initial=0)))) + 1

    # -- edits ---------------------------------------------------------------

    def _flat(self) -> np.ndarray:
        """A row-major 1-D copy of the label map."""
        return np.array(self.labels).ravel()

    def _record(self, label: int, score: float, source: str, prompts: tuple[Prompt, ...], class_name: str) -> AnnotatedObject:
        return AnnotatedObject(label, class_name, float(score), self.segmenter.name, self.segmenter.model_id, source, prompts)

    def sync(self) -> bool:
        """Record hand edits of the label map since the last step as a ``paint`` step; return whether there were any.

        An id painted without a record gets a ``"manual"`` object. Not undoable
        here (the painting tool has its own undo); replayed like any step.
        """
        current = self._flat()
        changed = np.flatnonzero(current != self._synced.ravel())
        if not changed.size:
            return False
        values = current[changed]
        self._synced.flat[changed] = values
        for label in np.unique(values):
            if label != 0 and int(label) not in self._records:
                self._records[int(label)] = AnnotatedObject(int(label))
        self.history.append({"op": "paint", "pixels": encode_array(changed), "values": encode_array(values)})
        return True

    def _commit(
        self,
        pixels: np.ndarray,
        after: np.ndarray,
        records: dict[int, AnnotatedObject | None],
        description: str,
        action: dict[str, Any],
    ) -> None:
        """Apply one step (pixels -> ``after``, the records of its ids), make it undoable and log ``action``."""
        pixels = np.asarray(pixels, np.int64)
        after = np.asarray(after)
        dtype = self.labels.dtype
        if after.size and after.max() > np.iinfo(dtype).max:
            raise SegpromptError(f"{description}: id {int(after.max())} does not fit the {dtype} label map")
        after = after.astype(dtype)
        before = self._synced.flat[pixels]
        changed = before != after
        edit = _Edit(
            description,
            tuple(records),
            pixels[changed],
            before[changed],
            after[changed],
            {label: self._records.get(label) for label in records},
            records,
        )
        self._apply(edit, forward=True)
        self._undo.append(edit)
        self._redo.clear()
        self.history.append(action)

    def _apply(self, edit: _Edit, forward: bool) -> None:
        """Do (or undo) ``edit`` on the pixels that still hold what it found (or wrote)."""
        source, target = (edit.before, edit.after) if forward else (edit.after, edit.before)
        still = self.labels.flat[edit.pixels] == source
        self.labels.flat[edit.pixels[still]] = target[still]
        self._synced.flat[edit.pixels[still]] = target[still]
        for label, record in (edit.records_after if forward else edit.records_before).items():
            if record is None:
                self._records.pop(label, None)
            else:
                self._records[label] = record

    def _add_objects(
        self,
        masks: Iterable[np.ndarray],
        scores: Iterable[float],
        class_names: Iterable[str],
        source: str,
        prompts: tuple[Prompt, ...],
        description: str,
        action: dict[str, Any],
    ) -> list[int]:
        """New objects, one per mask in the order given, each on the background it finds; return their ids."""
        free = self._flat() == 0
        label = self.next_label
        pixels, values, records = [], [], {}
        for mask, score, name in zip(masks, scores, class_names):
            taken = np.flatnonzero(np.asarray(mask).ravel())
            taken = taken[free[taken]]
            if not taken.size:
                continue
            free[taken] = False
            pixels.append(taken)
            values.append(np.full(taken.size, label, np.int64))
            records[label] = self._record(label, score, source, prompts, name)
            label += 1
        if records:
            self._commit(np.concatenate(pixels), np.concatenate(values), records, description, action)
        return list(records)

    def accept(self, class_name: str | None = None) -> int:
        """Make the preview a new object (a concept answer: every instance, best first); return its (first) id.

        Args:
            class_name: the class of the new object(s); default: the concept's
                phrase for a concept answer, else :data:`~segprompt.export.DEFAULT_CLASS`.

        Clears the prompt and the preview and forgets the redo history.

        Raises:
            SegpromptError: there is no preview, or it covers no background pixel.
        """
        preview = self.preview
        if preview is None or self.prompt is None:
            raise SegpromptError("accept: there is no preview to accept; add a prompt first")
        self.sync()
        instances = self.instances
        if instances is not None and len(instances):
            masks, scores = instances.masks, instances.scores
            names = instances.class_names or (DEFAULT_CLASS,) * len(instances)
        else:
            masks, scores, names = preview[None], [self.preview_score], (DEFAULT_CLASS,)
        if class_name is not None:
            names = (_class_name(class_name),) * len(masks)
        action = {"op": "accept", "prompt": self.prompt.to_dict(), "candidate": self.candidate, "class_name": class_name}
        added = self._add_objects(masks, scores, names, "prompt", (self.prompt,), "accept", action)
        if not added:
            raise SegpromptError("accept: the preview is empty or lies entirely on objects accepted before")
        self.clear()
        return added[0]

    def find_everything(self, settings: Any = None, progress: ProgressCallback = no_progress) -> Instances:
        """Every object the backend's everything generator finds; changes nothing, so a worker may call it.

        ``settings`` default to the generator's (:func:`segprompt.everything.everything_settings`).
        """
        return segment_everything(self.segmenter, self.embedding, settings, progress)

    def accept_everything(self, instances: Instances, settings: Any, class_name: str | None = None) -> list[int]:
        """Add the objects :meth:`find_everything` found with ``settings``, best first on free pixels; return their ids.

        One step of undo. Objects get ``class_name``, else the instances' own
        (SAM 3's phrase), else :data:`~segprompt.export.DEFAULT_CLASS`.
        """
        instances = instances.sorted()
        if class_name is not None:
            names = (_class_name(class_name),) * len(instances)
        else:
            names = instances.class_names or (DEFAULT_CLASS,) * len(instances)
        action = {"op": "everything", "backend": self.segmenter.name, "settings": settings_to_dict(settings),
                  "class_name": class_name}
        self.sync()
        return self._add_objects(instances.masks, instances.scores, names, "everything", (), "segment everything", action)

    def everything(self, settings: Any = None, class_name: str | None = None, progress: ProgressCallback = no_progress) -> list[int]:
        """:meth:`find_everything` then :meth:`accept_everything` (one thread); return the new ids."""
        if settings is None:
            settings = everything_settings(self.segmenter.name)
        return self.accept_everything(self.find_everything(settings, progress), settings, class_name)

    def import_labels(
        self, label_map: np.ndarray, class_names: Mapping[int, str] | None = None, name: str = ""
    ) -> list[int]:
        """Add every object of an ``(H, W)`` label map, keeping its id, on free pixels; return the ids added.

        Args:
            label_map: integer labels, 0 background (a label file, a napari Labels layer).
            class_names: class of each id (from a COCO file, ``objects.csv`` or
                layer features); others get :data:`~segprompt.export.DEFAULT_CLASS`.
            name: where it came from, for the history (a file or layer name).

        Raises:
            ImageError: not an integer map of the image's size, or negative ids.
            SegpromptError: an id is already an object of this session.
        """
        label_map = np.asarray(label_map)
        if label_map.shape != self.image_hw or not np.issubdtype(label_map.dtype, np.integer):
            raise ImageError(f"import {name or 'labels'}: expected an integer {self.image_hw} label map, "
                             f"got {label_map.dtype} {label_map.shape}")
        if label_map.min(initial=0) < 0:
            raise ImageError(f"import {name or 'labels'}: label ids must be >= 0, found {label_map.min()}")
        self.sync()
        ids = np.unique(label_map)
        ids = [int(i) for i in ids if i != 0]
        current = self._flat()
        taken = sorted(set(ids) & (set(self._records) | {int(i) for i in np.unique(current) if i != 0}))
        if taken:
            raise SegpromptError(f"import {name or 'labels'}: ids {', '.join(map(str, taken[:10]))} are already objects "
                                 "of this session; delete them first or import into an empty session")
        flat = label_map.ravel()
        pixels = np.flatnonzero((flat != 0) & (current == 0))
        names = {int(k): _class_name(v) for k, v in (class_names or {}).items()}
        records = {
            label: AnnotatedObject(label, names.get(label, DEFAULT_CLASS), source="import")
            for label in ids
        }
        action = {"op": "import", "labels": encode_array(label_map), "class_names": {str(k): v for k, v in names.items()},
                  "name": name}
        self._commit(pixels, flat[pixels], records, f"import {name or 'labels'}", action)
        return ids

    def refine_prompt(self, mask: np.ndarray) -> Prompt:
        """The prompt that refines an object's ``(H, W)`` bool mask: its box and the mask, as far as the backend takes them.

        Raises:
            UnsupportedPromptError: the backend takes neither a box nor a mask.
        """
        parts: dict[str, Any] = {}
        if "box" in self.segmenter.accepts:
            parts["box"] = Box.from_mask(mask)
        if "mask" in self.segmenter.accepts:
            parts["mask"] = MaskPrompt(mask)
        if not parts:
            raise UnsupportedPromptError(f"refine: backend {self.segmenter.name!r} takes neither a box nor a mask prompt")
        return Prompt(**parts)

    def refinement_targets(self, labels: Iterable[int] | None = None) -> tuple[np.ndarray, list[int]]:
        """``(snapshot of the label map, ids)`` to refine: ``labels``, or every object with pixels.

        Raises:
            SegpromptError: an id with no pixels.
        """
        snapshot = np.array(self.labels)
        present = {int(i) for i in np.unique(snapshot) if i != 0}
        ids = sorted(present) if labels is None else [int(label) for label in labels]
        missing = [label for label in ids if label not in present]
        if missing:
            raise SegpromptError(f"refine: objects {', '.join(map(str, missing[:10]))} have no pixels to use as a prompt")
        return snapshot, ids

    def answer(self, label: int, prompt: Prompt, candidate: int = 0, prediction: Prediction | None = None) -> Answer:
        """Candidate ``candidate`` (rank by score) of ``prompt``'s answer, for object ``label``; changes nothing.

        ``prediction`` is :meth:`predict`'s answer when already computed.
        """
        prediction = self.predict(prompt) if prediction is None else prediction
        order = _ranked(prediction)
        if not 0 <= candidate < order.size:
            raise SegpromptError(f"object {label}: candidate {candidate} of {order.size}")
        index = order[candidate]
        return Answer(label, prompt, candidate, np.flatnonzero(prediction.masks[index].ravel()),
                      float(prediction.scores[index]))

    def predict_refinements(
        self, snapshot: np.ndarray, labels: Sequence[int], progress: ProgressCallback = no_progress
    ) -> list[Answer]:
        """Each object of ``snapshot`` in ``labels`` answered with :meth:`refine_prompt`; changes nothing (worker-safe)."""
        answers = []
        for index, label in enumerate(labels):
            progress(index, len(labels), f"refining object {label}")
            answers.append(self.answer(label, self.refine_prompt(snapshot == label)))
        progress(len(labels), len(labels), f"refined {len(labels)} objects")
        return answers

    def refine(self, labels: Iterable[int] | None = None, progress: ProgressCallback = no_progress) -> list[int]:
        """Refine objects (default: all) with their own masks as prompts, in one step; return the ids changed.

        Each keeps its id and class; see :meth:`apply_answers`.
        """
        snapshot, ids = self.refinement_targets(labels)
        return self.apply_answers(self.predict_refinements(snapshot, ids, progress), "refine")

    def reprompt(self, label: int) -> int:
        """Replace object ``label``'s mask by the preview, keeping its id and class; return ``label``.

        Raises:
            SegpromptError: no preview, no such object, or the preview takes no free pixel.
        """
        if self.preview is None or self.prompt is None:
            raise SegpromptError("re-prompt: there is no preview; prompt the object anew first")
        self.object(label)
        answer = self.answer(label, self.prompt, self.candidate, self.prediction)
        self.apply_answers([answer], "prompt")
        self.clear()
        return label

    def apply_answers(self, answers: Sequence[Answer], source: str) -> list[int]:
        """Replace each answered object's mask by its answer, in one step; return the ids changed.

        The objects' old pixels are freed, then the answers take free pixels
        best-scoring first; an answer left with no pixel keeps its old mask
        (and record). Each changed object keeps its id and class, its prompt
        is appended to its prompts, and ``source`` (``"prompt"`` or
        ``"refine"``) says how it was made.

        Raises:
            SegpromptError: no answer took any pixel.
        """
        current = self._flat()
        ids = [answer.label for answer in answers]
        for label in ids:
            self.object(label)
        proposed = np.where(np.isin(current, ids), 0, current)
        free = proposed == 0
        records: dict[int, AnnotatedObject | None] = {}
        for answer in sorted(answers, key=lambda a: -a.score):
            taken = answer.pixels[free[answer.pixels]]
            if not taken.size:
                continue
            free[taken] = False
            proposed[taken] = answer.label
            old = self.object(answer.label)
            records[answer.label] = dataclasses.replace(
                old, score=answer.score, backend=self.segmenter.name, model_id=self.segmenter.model_id, source=source,
                prompts=old.prompts + (answer.prompt,),
            )
        if not records:
            raise SegpromptError(f"{'refine' if source == 'refine' else 're-prompt'}: every new mask lies on other objects; "
                                 "nothing changed")
        for label in set(ids) - set(records):  # kept: its old mask, where nothing else took it
            proposed[(current == label) & (proposed == 0)] = label
        records = {label: records[label] for label in ids if label in records}  # in the order asked
        self.sync()
        changed = np.flatnonzero(proposed != current)
        action = {"op": "reprompt", "source": source,
                  "objects": [{"label": a.label, "prompt": a.prompt.to_dict(), "candidate": a.candidate} for a in answers]}
        self._commit(changed, proposed[changed], records, f"{source} {len(records)} objects", action)
        return sorted(records)

    def rename(self, labels: Iterable[int], class_name: str) -> None:
        """Give objects ``labels`` the class ``class_name`` (one step).

        Raises:
            SegpromptError: an empty name or an unknown id.
        """
        name = _class_name(class_name)
        labels = [int(label) for label in labels]
        self.sync()
        records: dict[int, AnnotatedObject | None] = {
            label: dataclasses.replace(self.object(label), class_name=name) for label in labels
        }
        empty = np.zeros(0, np.int64)
        self._commit(empty, empty, records, f"rename {len(labels)} objects to {name!r}",
                     {"op": "rename", "labels": labels, "class_name": name})

    def delete(self, labels: Iterable[int]) -> None:
        """Remove objects ``labels``: their pixels become background (one step).

        Raises:
            SegpromptError: an unknown id.
        """
        labels = [int(label) for label in labels]
        self.sync()
        for label in labels:
            self.object(label)
        pixels = np.flatnonzero(np.isin(self._flat(), labels))
        records: dict[int, AnnotatedObject | None] = {label: None for label in labels}
        self._commit(pixels, np.zeros(pixels.size, np.int64), records, f"delete {len(labels)} objects",
                     {"op": "delete", "labels": labels})

    def undo(self) -> int | None:
        """Take the last step back; return its (first) object id, or ``None`` when there is nothing to undo.

        Pixels changed by hand since the step keep the hand edit.
        """
        self.sync()
        if not self._undo:
            return None
        edit = self._undo.pop()
        self._apply(edit, forward=False)
        self._redo.append(edit)
        self.history.append({"op": "undo"})
        return edit.labels[0] if edit.labels else None

    def redo(self) -> int | None:
        """Do the last undone step again (on pixels still as it left them); return its (first) id or ``None``."""
        self.sync()
        if not self._redo:
            return None
        edit = self._redo.pop()
        self._apply(edit, forward=True)
        self._undo.append(edit)
        self.history.append({"op": "redo"})
        return edit.labels[0] if edit.labels else None

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_description(self) -> str | None:
        """What :meth:`undo` would take back (``"accept"``, ``"rename 2 objects to 'cell'"``, ...), or ``None``."""
        return self._undo[-1].description if self._undo else None

    # -- history -------------------------------------------------------------

    def perform(self, action: Mapping[str, Any]) -> None:
        """Run one logged action again (what :mod:`segprompt.replay` does with a saved history).

        Actions (``"op"``): ``accept`` (``prompt``, ``candidate``,
        ``class_name``), ``everything`` (``settings``, ``class_name``),
        ``import`` (``labels``, ``class_names``, ``name``), ``reprompt``
        (``source``, ``objects``: ``label``, ``prompt``, ``candidate``),
        ``rename`` (``labels``, ``class_name``), ``delete`` (``labels``),
        ``paint`` (``pixels``, ``values``), ``undo``, ``redo``.

        Raises:
            SegpromptError: an unknown or malformed action, or one the backend refuses.
        """
        op = action.get("op")
        try:
            if op == "accept":
                prompt = Prompt.from_dict(action["prompt"])
                self.set_preview(prompt, self.predict(prompt))
                candidate = int(action.get("candidate", 0))
                if not 0 <= candidate < self.n_candidates:
                    raise SegpromptError(f"candidate {candidate} of {self.n_candidates}")
                self._candidate = candidate
                self.accept(action.get("class_name"))
            elif op == "everything":
                if action.get("backend", self.segmenter.name) != self.segmenter.name:
                    raise SegpromptError(f"made by backend {action['backend']!r}, not {self.segmenter.name!r}")
                self.everything(everything_settings(self.segmenter.name, **action["settings"]), action.get("class_name"))
            elif op == "import":
                names = {int(k): v for k, v in action.get("class_names", {}).items()}
                self.import_labels(decode_array(action["labels"], "labels"), names, action.get("name", ""))
            elif op == "reprompt":
                answers = [
                    self.answer(int(entry["label"]), Prompt.from_dict(entry["prompt"]), int(entry.get("candidate", 0)))
                    for entry in action["objects"]
                ]
                self.apply_answers(answers, action.get("source", "prompt"))
            elif op == "rename":
                self.rename(action["labels"], action["class_name"])
            elif op == "delete":
                self.delete(action["labels"])
            elif op == "paint":
                pixels, values = decode_array(action["pixels"], "pixels"), decode_array(action["values"], "values")
                self.sync()
                self.labels.flat[pixels] = values
                self.sync()
            elif op == "undo":
                self.undo()
            elif op == "redo":
                self.redo()
            else:
                raise SegpromptError(f"unknown op {op!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise SegpromptError(f"{op}: malformed action ({exc})") from exc

    # -- persistence -------------------------------------------------------

    def record(self, labels_file: str | None = None, session_dir: str | os.PathLike | None = None) -> dict[str, Any]:
        """The session file's content (:mod:`segprompt.session_file`, schema 2).

        Args:
            labels_file: name of the label map saved with it, if any.
            session_dir: the folder the file goes to; :attr:`image_path` is
                stored relative to it when it can be.
        """
        self.sync()
        rows = {row.label: row for row in self.rows()}
        image_path = self.image_path
        if image_path is not None and session_dir is not None:
            try:
                image_path = os.path.relpath(Path(image_path).resolve(), Path(session_dir).resolve())
            except ValueError:  # another drive (Windows): keep it absolute
                image_path = str(Path(image_path).resolve())
        objects = []
        for record in self.objects:
            row = rows[record.label]
            objects.append({**record.to_dict(), "area": row.area, "box": None if row.box is None else list(row.box)})
        return {
            "format": SESSION_FORMAT,
            "schema": SESSION_SCHEMA,
            "image": {"path": image_path, "plane": self.image_plane, "sha256": image_digest(self.embedding.image),
                      "hw": list(self.image_hw)},
            "backend": {"name": self.segmenter.name, "model_id": self.segmenter.model_id, "options": self.backend_options},
            "labels_file": labels_file,
            "labels_sha256": labels_digest(self.labels),
            "objects": objects,
            "history": self.history,
        }

    def save(self, labels_path: str | os.PathLike, session_path: str | os.PathLike | None = None) -> Path:
        """Write the label map (PNG/TIFF) and the session file (JSON), both or neither.

        Args:
            labels_path: ``.png`` or ``.tif``/``.tiff`` file.
            session_path: JSON file; ``<labels_path without suffix>.session.json`` when ``None``.

        Returns:
            The path of the session file.
        """
        labels_path = Path(labels_path)
        session_path = Path(session_path) if session_path is not None else default_session_path(labels_path)
        record = self.record(labels_path.name, session_path.parent)
        write_files({
            labels_path: mask_bytes(labels_path, self.labels),
            session_path: session_json(record).encode("utf-8"),
        })
        return session_path

    def load(self, labels_path: str | os.PathLike, session_path: str | os.PathLike | None = None) -> None:
        """Replace the label map and objects by saved ones; undo and redo start empty.

        The session file defaults to the one beside the labels
        (``<stem>.session.json``, or a schema 1 ``<stem>.prompts.json``);
        without one every id becomes a ``"manual"`` object. The history goes on
        from the file's when it describes this label map, image and model;
        otherwise it restarts with one ``import`` of the loaded map, so a
        later save still replays to it.

        Raises:
            ImageError: unreadable labels file, or its shape differs from the image.
            SegpromptError: the session file is malformed, of an unknown
                schema, or names an id the label map does not hold.
        """
        labels_path = Path(labels_path)
        labels = read_mask(labels_path)
        if labels.shape != self.image_hw:
            raise ImageError(f"{labels_path}: label map shape {labels.shape} does not match the image {self.image_hw}")
        if session_path is None:
            session_path = find_session_file(labels_path)
        record = read_session_record(session_path) if session_path is not None else None
        present = {int(i) for i in np.unique(labels) if i != 0}
        records = {label: AnnotatedObject(label) for label in present}
        if record is not None:
            for index, data in enumerate(record.get("objects", [])):
                where = f"{session_path}: objects[{index}]"
                loaded = _schema1_object(data, record, where) if record["schema"] == 1 else AnnotatedObject.from_dict(data, where)
                if loaded.label not in present and (record["schema"] == 1 or data.get("area")):
                    raise SegpromptError(f"{where}.label={loaded.label} is not in {labels_path}")
                records[loaded.label] = loaded
        continues = (
            record is not None
            and record["schema"] >= 2
            and record.get("labels_sha256") == labels_digest(labels)
            and record.get("image", {}).get("sha256") == image_digest(self.embedding.image)
            and record.get("backend", {}).get("name") == self.segmenter.name
            and record.get("backend", {}).get("model_id") == self.segmenter.model_id
            and isinstance(record.get("history"), list)
        )
        self.labels[...] = labels.astype(self.labels.dtype)
        self._synced[...] = self.labels
        self._records = records
        self._undo.clear()
        self._redo.clear()
        if continues:
            self.history = list(record["history"])
        else:
            names = {label: r.class_name for label, r in records.items() if r.class_name != DEFAULT_CLASS}
            self.history = [{"op": "import", "labels": encode_array(labels), "name": labels_path.name,
                             "class_names": {str(k): v for k, v in names.items()}}]
        self.clear()


def _class_name(name: str) -> str:
    """A class name with its whitespace tidied; an empty one is refused."""
    tidy = " ".join(str(name).split())
    if not tidy:
        raise SegpromptError(f"class name {name!r} is empty")
    return tidy


def _schema1_object(data: Mapping[str, Any], record: Mapping[str, Any], where: str) -> AnnotatedObject:
    """An object of a schema 1 prompts file (``label``, ``score``, ``prompt``)."""
    try:
        label = int(data["label"])
        prompt = None if data.get("prompt") is None else Prompt.from_dict(data["prompt"])
        score = float("nan") if data.get("score") is None else float(data["score"])
    except (KeyError, TypeError, ValueError, PromptError) as exc:
        raise SegpromptError(f"{where} is malformed ({exc})") from exc
    if label < 1:
        raise SegpromptError(f"{where}.label must be >= 1, got {label}")
    if prompt is None:
        return AnnotatedObject(label, score=score)
    return AnnotatedObject(label, DEFAULT_CLASS, score, str(record.get("backend", "")), str(record.get("model_id", "")),
                           "prompt", (prompt,))


__all__ = [
    "AnnotatedObject",
    "AnnotationSession",
    "Answer",
    "ObjectRow",
    "box_from_vertices",
    "rowcol_to_xy",
    "wants_multimask",
]
