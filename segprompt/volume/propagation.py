"""Propagators: carry objects from one slice to the next, and the rules that stop them.

A :class:`Propagator` answers two questions for a
:class:`~segprompt.volume.session.VolumeSession`:

* :meth:`Propagator.segment`: the mask of object ``label`` on slice ``k``
  from a user prompt (an *anchor*);
* :meth:`Propagator.step`: the masks of several objects on slice ``k`` given
  their results on the neighbouring slice (``k - 1`` going up, ``k + 1``
  going down). All objects of a run advance together, so each slice is
  embedded once per run however many objects there are.

Two kinds:

* :class:`ProjectionPropagator`: any backend that takes a mask, box or point
  prompt (``sam``, ``sam2``, ``sam-hq``, ``edgetam``, ``sam3-tracker``,
  ``classical``, ``composed`` ...): the previous slice's mask becomes the next
  slice's prompt (:mod:`segprompt.volume.projection`). Works offline with the
  zero-weight ``classical`` backend.
* the video models of ``sam2`` and ``sam3-tracker``
  (:mod:`segprompt.volume.video`): their memory of earlier slices, as in
  video object tracking.

Where a run stops (:class:`StopRule`): at the end of the volume, before the
object's next prompted slice (that slice's own prompt wins), or on the first
slice whose answer fails a rule; that slice is not written. The rules: the
backend fell back to a shape prior (a ``Prediction.methods`` entry starting
with ``"fallback"``: it found nothing there), the mask is smaller than
``min_area`` pixels (the object vanished), its score is below ``min_score``
(predicted IoU for SAM-family models, agreement with the previous slice's
mask for ``classical``, object presence for the video models), or, when
``min_iou`` is set, its IoU with the previous slice's mask is below it
(micro-sam's criterion; it also stops near an object's tips, where the cross
section legitimately shrinks fast, which is why it is off by default), or the
backend does not confirm the mask when asked again with its box
(``min_confirmation``, see :class:`ProjectionPropagator`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np

from ..annotation import wants_multimask
from ..backends.base import Embedding, Prediction, Segmenter
from ..errors import SegpromptError
from ..metrics import iou as mask_iou
from ..registry import Registry
from ..prompts import Box, Prompt
from .embeddings import SliceEmbeddings
from .projection import PROJECTIONS, Projection, project

#: Prefix of ``Prediction.methods`` entries that are shape priors, not found in the image.
FALLBACK_PREFIX = "fallback"


@dataclass(frozen=True, eq=False)
class SliceResult:
    """One object's answer on one slice.

    Attributes:
        mask: ``(H, W)`` bool, original-image pixels.
        score: the backend's score of it (see the module docstring).
        method: how it was made (``Prediction.methods``), when the backend says.
        logits: the backend's low-resolution logits of it, to prompt the next
            slice with (SAM family), or ``None``.
        confirmation: how far the backend confirms it when asked again with
            its tight box (IoU of the two answers; 0 when it falls back to a
            shape prior), or ``None`` when not checked.
    """

    mask: np.ndarray
    score: float
    method: str | None = None
    logits: np.ndarray | None = None
    confirmation: float | None = None

    @classmethod
    def from_prediction(cls, prediction: Prediction) -> SliceResult:
        """The backend's chosen (best-scoring) candidate."""
        best = prediction.best
        logits = None if prediction.low_res_logits is None else prediction.low_res_logits[best]
        return cls(prediction.masks[best], float(prediction.scores[best]), prediction.method, logits)


@dataclass(frozen=True)
class StopRule:
    """When propagation stops (see the module docstring).

    Attributes:
        min_area: fewer mask pixels than this: the object vanished.
        min_score: a lower score stops; ``None``: scores are not checked.
        min_iou: a lower IoU with the previous slice's mask stops; ``None``: not checked.
        min_confirmation: a lower :attr:`SliceResult.confirmation` stops; ``None``: not checked.
    """

    min_area: int = 4
    min_score: float | None = 0.5
    min_iou: float | None = None
    min_confirmation: float | None = 0.5

    def reason(self, result: SliceResult, previous: SliceResult) -> str | None:
        """Why ``result`` (following ``previous``) stops the run, or ``None`` to go on."""
        if result.method is not None and result.method.startswith(FALLBACK_PREFIX):
            return f"nothing found (the backend fell back to {result.method.removeprefix(FALLBACK_PREFIX).lstrip(': ')})"
        area = int(np.count_nonzero(result.mask))
        if area < self.min_area:
            return f"the object vanished ({area} px < {self.min_area})"
        if self.min_score is not None and result.score < self.min_score:
            return f"score {result.score:.3f} < {self.min_score:g}"
        if self.min_iou is not None:
            overlap = mask_iou(result.mask, previous.mask)
            if overlap < self.min_iou:
                return f"IoU {overlap:.3f} with the previous slice < {self.min_iou:g}"
        if self.min_confirmation is not None and result.confirmation is not None:
            if result.confirmation < self.min_confirmation:
                return f"not confirmed by its box (IoU {result.confirmation:.3f} < {self.min_confirmation:g})"
        return None


#: Runs through the whole volume: only an empty mask stops it (for comparisons with a reference).
NEVER_STOP = StopRule(min_area=1, min_score=None, min_iou=None, min_confirmation=None)


class Propagator(ABC):
    """Segments objects slice by slice (see the module docstring).

    Attributes:
        embeddings: the per-slice embeddings it works on (embedded on demand;
            :meth:`SliceEmbeddings.precompute` for a first pass).
    """

    #: Short name of the method, e.g. ``"projection (mask)"``, ``"sam2 video memory"``.
    method: ClassVar[str] = ""
    embeddings: SliceEmbeddings

    @property
    def n_slices(self) -> int:
        return len(self.embeddings)

    @property
    def image_hw(self) -> tuple[int, int]:
        return self.embeddings.image_hw

    @abstractmethod
    def segment(self, label: int, index: int, prompt: Prompt) -> SliceResult:
        """Object ``label``'s mask on slice ``index`` from a user prompt (an anchor)."""

    @abstractmethod
    def step(self, index: int, previous: Mapping[int, SliceResult], reverse: bool) -> dict[int, SliceResult]:
        """Each object's mask on slice ``index`` from its result on the neighbouring slice.

        ``reverse``: the run goes down (``previous`` holds slice ``index + 1``).
        """

    def anchor_mask(self, label: int, index: int, mask: np.ndarray) -> None:
        """Take a mask the user drew on slice ``index`` as object ``label``'s anchor there (memory models condition on it)."""

    def start(self, label: int, index: int, result: SliceResult) -> None:
        """A run of ``label`` starts from ``result`` on slice ``index`` (memory models make sure they hold it)."""

    def discard(self, label: int, indices: list[int]) -> None:
        """Object ``label``'s masks on ``indices`` are being dropped (memory models forget them)."""

    def forget(self, label: int) -> None:
        """Object ``label`` is gone."""


#: Propagators that use a backend's video model (its memory of earlier slices), by backend name.
VIDEO_PROPAGATORS: Registry[type[Propagator]] = Registry(
    "video propagator", {"sam2": "segprompt.volume.video", "sam3-tracker": "segprompt.volume.video"}
)


class ProjectionPropagator(Propagator):
    """Propagation by prompting each slice with the previous slice's mask (micro-sam's projection).

    Args:
        segmenter: any backend accepting the parts ``projection`` passes.
        embeddings: the slices' embeddings by ``segmenter``.
        projection: a :class:`Projection` or a name of :data:`PROJECTIONS` (default ``"mask"``: mask + box).

    A single point (user prompt or ``single_point`` projection) asks for
    several candidates, as in the 2-D annotator
    (:func:`~segprompt.annotation.wants_multimask`); the backend's best is used.

    ``confirm`` (backends that take boxes): each propagated mask is checked by
    asking the backend again with the mask's tight box; the overlap of the two
    answers is :attr:`SliceResult.confirmation` (0 when the backend falls back
    to a shape prior), which :attr:`StopRule.min_confirmation` judges. A mask
    prompt tells a refining backend where the object *was*, and it may keep
    a shrinking trace of it past the object's end (``classical`` trusts the
    eroded prompt as sure foreground); a box alone makes it find the object
    in the slice's own pixels. It costs one more decoder call per slice.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        embeddings: SliceEmbeddings,
        projection: Projection | str = "mask",
        confirm: bool = True,
    ) -> None:
        if isinstance(projection, str):
            if projection not in PROJECTIONS:
                raise SegpromptError(f"unknown projection {projection!r}; known: {', '.join(PROJECTIONS)}")
            projection = PROJECTIONS[projection]
        self.method = f"projection ({' + '.join(k for k in ('mask', 'box', 'points') if k in projection.kinds())})"
        projection.check_backend(segmenter.name, segmenter.accepts)
        if embeddings.segmenter is not segmenter:
            raise ValueError("the embeddings were made by another segmenter")
        self.segmenter = segmenter
        self.embeddings = embeddings
        self.projection = projection
        self.confirm = confirm and "box" in segmenter.accepts

    def _answer(self, embedding: Embedding, prompt: Prompt) -> SliceResult:
        prediction = self.segmenter.predict(embedding, prompt, multimask=wants_multimask(prompt))
        return SliceResult.from_prediction(prediction)

    def segment(self, label: int, index: int, prompt: Prompt) -> SliceResult:
        self.segmenter.check_prompt(prompt)
        return self._answer(self.embeddings.get(index), prompt)

    def _confirmation(self, embedding: Embedding, result: SliceResult) -> float:
        if not result.mask.any():
            return 0.0
        check = self._answer(embedding, Prompt(box=Box.from_mask(result.mask)))
        if check.method is not None and check.method.startswith(FALLBACK_PREFIX):
            return 0.0
        return mask_iou(check.mask, result.mask)

    def step(self, index: int, previous: Mapping[int, SliceResult], reverse: bool) -> dict[int, SliceResult]:
        embedding = self.embeddings.get(index)
        answers = {}
        for label, result in previous.items():
            answer = self._answer(embedding, project(result.mask, result.logits, self.projection))
            if self.confirm:
                answer = dataclasses.replace(answer, confirmation=self._confirmation(embedding, answer))
            answers[label] = answer
        return answers


__all__ = [
    "FALLBACK_PREFIX",
    "NEVER_STOP",
    "ProjectionPropagator",
    "Propagator",
    "SliceResult",
    "StopRule",
    "VIDEO_PROPAGATORS",
]
