"""Composite prompts: text or a visual reference together with points, a box and a mask.

One :class:`~segprompt.prompts.Prompt` may hold every kind at once (as in
SEEM's composite prompts). :class:`ComposedSegmenter` answers it with two
backends, a *proposer* that understands what to segment (text / reference /
exemplars: ``clipseg``, ``owlv2-sam``, ``grounding-dino-sam``, ``persam``,
``seggpt``, ``sam3``)
and a *refiner* that understands where (points / box / mask: ``sam``,
``classical``). The rule:

1. **Propose.** When the prompt holds text, a reference and/or exemplars, the proposer
   answers exactly those parts (multimask), giving candidate masks; empty
   candidates are dropped.
2. **Exclude.** A candidate containing any exclude point (label 0) is removed
   (:func:`remove_excluded`). The pixel of a point ``(x, y)`` is
   ``(row, col) = (floor(y), floor(x))``.
3. **Choose.** Among the survivors, the candidate containing the most include
   points wins; ties go to the candidate whose bounding box overlaps the
   explicit box most (IoU), then to the proposer's score
   (:func:`choose_candidate`).
4. **Refine.** When the prompt also holds include points, a box or a mask,
   the refiner answers: all explicit points (include and exclude), the
   explicit box or else the chosen candidate's bounding box, and the explicit
   mask or else the chosen candidate's low-resolution logits (when the
   proposer returned SAM logits, which the :class:`Prediction` contract makes
   SAM-compatible). Implicit parts the refiner does not accept are left out.
   If no candidate survived, the refiner answers the explicit parts alone.
5. **Without refinement** (only exclude points, or none) the surviving
   candidates are the answer, best score first; if none survived, one empty
   mask with score 0.

A prompt with no text or reference goes straight to the refiner (or, with no
refiner, to the proposer). A kind no backend in the composition accepts
raises :class:`~segprompt.errors.UnsupportedPromptError` naming the backend
and the kind.

The embedding of an image is a
:class:`~segprompt.backends.base.CompositeEmbedding` holding the proposer's and
the refiner's embeddings as parts ``"proposer"`` and ``"refiner"``, each as its
backend made it (so it goes back to that backend unchanged); it is cached like
any other.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .backends import create, register
from .backends.base import CompositeEmbedding, Prediction, Segmenter
from .progress import ProgressCallback, no_progress
from .errors import SegpromptError, UnsupportedPromptError
from .prompts import PROMPT_KINDS, Box, MaskPrompt, Prompt

#: Prompt kinds that say *what* to segment (answered by the proposer).
SEMANTIC_KINDS = frozenset({"text", "reference", "exemplars"})
#: Prompt kinds that say *where* (answered by the refiner).
GEOMETRIC_KINDS = frozenset({"points", "box", "mask"})


def _pixels(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of ``(N, 2)`` ``(x, y)`` points."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.floor(xy[:, 1]).astype(np.intp), np.floor(xy[:, 0]).astype(np.intp)


def points_inside(masks: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``(K, N)`` bool: whether mask ``k`` of ``(K, H, W)`` contains point ``n`` of ``(N, 2)`` ``(x, y)``."""
    rows, cols = _pixels(xy)
    return masks[:, rows, cols]


def remove_excluded(candidates: Prediction, exclude_xy: np.ndarray) -> Prediction | None:
    """The candidates that contain none of the exclude points, or ``None`` if none is left.

    Args:
        candidates: ``K`` candidate masks.
        exclude_xy: ``(N, 2)`` exclude points ``(x, y)`` in image pixels (``N`` may be 0).
    """
    keep = ~points_inside(candidates.masks, exclude_xy).any(axis=1)
    return candidates.subset(np.flatnonzero(keep)) if keep.any() else None


def _box_iou(a: Box, b: Box) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = lambda box: (box.x1 - box.x0) * (box.y1 - box.y0)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def choose_candidate(candidates: Prediction, include_xy: np.ndarray, box: Box | None = None) -> int:
    """Index of the candidate that best agrees with the explicit prompt (rule step 3).

    Sort key, largest first: the number of include points ``(x, y)`` inside
    the mask; the IoU of the mask's bounding box with ``box`` (when given);
    the candidate's score. The first candidate wins a complete tie.
    """
    inside = points_inside(candidates.masks, include_xy).sum(axis=1)
    overlap = [
        _box_iou(Box.from_mask(mask), box) if box is not None and mask.any() else 0.0 for mask in candidates.masks
    ]
    keys = [(int(inside[k]), overlap[k], float(candidates.scores[k])) for k in range(len(candidates.scores))]
    return max(range(len(keys)), key=lambda k: (keys[k], -k))


def _empty(image_hw: tuple[int, int]) -> Prediction:
    return Prediction(np.zeros((1, *image_hw), bool), np.zeros(1, np.float32))


def _best_only(prediction: Prediction) -> Prediction:
    return prediction.subset([prediction.best])


def _backend(value: Segmenter | str | None, options: Mapping[str, Any] | None) -> Segmenter | None:
    if value is None or isinstance(value, Segmenter):
        if options:
            raise SegpromptError("composed: backend options are only used with a backend given by name")
        return value
    return create(value, **dict(options or {}))


@register
class ComposedSegmenter(Segmenter):
    """A proposer for text / reference prompts refined by a point / box / mask backend.

    Args:
        proposer: a backend (or registry name) answering text and/or reference prompts.
        refiner: a backend (or registry name) answering points / box / mask
            prompts, or ``None`` (then only exclude points can accompany text
            or a reference).
        proposer_options, refiner_options: keyword options when the backend
            is given by name (e.g. ``{"model_type": "vit_b"}``).

    See the module docstring for the composition rule.
    """

    name = "composed"
    accepts = frozenset(PROMPT_KINDS)
    description = "Composite prompts: a text/reference proposer refined by points, box and mask (e.g. clipseg + sam)"

    def __init__(
        self,
        proposer: Segmenter | str,
        refiner: Segmenter | str | None = "sam",
        *,
        proposer_options: Mapping[str, Any] | None = None,
        refiner_options: Mapping[str, Any] | None = None,
    ) -> None:
        built = _backend(proposer, proposer_options)
        if built is None:
            raise SegpromptError("composed: a proposer backend is required")
        self.proposer: Segmenter = built
        self.refiner: Segmenter | None = _backend(refiner, refiner_options)

    @property
    def model_id(self) -> str:
        parts = [f"{self.proposer.name}:{self.proposer.model_id}"]
        if self.refiner is not None:
            parts.append(f"{self.refiner.name}:{self.refiner.model_id}")
        return "+".join(parts)

    def supported_kinds(self) -> frozenset[str]:
        """The kinds this composition can answer."""
        kinds = self.proposer.accepts & SEMANTIC_KINDS
        if self.refiner is not None:
            return kinds | (self.refiner.accepts & GEOMETRIC_KINDS)
        # Without a refiner, points only select among the proposer's candidates.
        return kinds | (self.proposer.accepts & GEOMETRIC_KINDS) | ({"points"} if kinds else set())

    def check_prompt(self, prompt: Prompt) -> None:
        if prompt.is_empty():
            raise UnsupportedPromptError(
                f"backend {self.name!r}: the prompt is empty; give at least one of {sorted(self.supported_kinds())}"
            )
        kinds = prompt.kinds()
        semantic = kinds & SEMANTIC_KINDS
        geometric = kinds & GEOMETRIC_KINDS
        lacking = sorted(semantic - self.proposer.accepts)
        if lacking:
            raise UnsupportedPromptError(
                f"composed: proposer backend {self.proposer.name!r} does not accept {', '.join(lacking)} prompts; "
                f"it accepts {', '.join(sorted(self.proposer.accepts))}"
            )
        answering = self.refiner if self.refiner is not None else (None if semantic else self.proposer)
        if answering is not None:
            lacking = sorted(geometric - answering.accepts)
            role = "refiner" if answering is self.refiner else "proposer"
            if lacking:
                raise UnsupportedPromptError(
                    f"composed: {role} backend {answering.name!r} does not accept {', '.join(lacking)} prompts; "
                    f"it accepts {', '.join(sorted(answering.accepts))}"
                )
            return
        lacking = sorted(geometric - {"points"})
        if lacking:
            raise UnsupportedPromptError(
                f"composed: {', '.join(lacking)} prompts with {', '.join(sorted(semantic))} need a refiner backend "
                f"(e.g. refiner='sam'); this composition of {self.proposer.name!r} has none"
            )

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> CompositeEmbedding:
        """Both backends' embeddings of ``image``, as parts ``"proposer"`` and ``"refiner"``."""
        rgb = self._rgb(image)
        parts = {"proposer": self.proposer.embed(rgb, progress)}
        if self.refiner is not None:
            parts["refiner"] = self.refiner.embed(rgb, progress)
        return CompositeEmbedding(self.name, self.model_id, parts["proposer"].image_hw, rgb, parts)

    def _predict(self, embedding: CompositeEmbedding, prompt: Prompt, multimask: bool) -> Prediction:
        semantic = Prompt(text=prompt.text, reference=prompt.reference, exemplars=prompt.exemplars)
        explicit = Prompt(points=prompt.points, box=prompt.box, mask=prompt.mask)
        if semantic.is_empty():
            answerer = self.refiner if self.refiner is not None else self.proposer
            role = "refiner" if answerer is self.refiner else "proposer"
            return answerer.predict(embedding.part(role), explicit, multimask)

        proposer_embedding = embedding.part("proposer")
        candidates: Prediction | None = self.proposer.predict(proposer_embedding, semantic, multimask=True)
        nonempty = np.flatnonzero(candidates.masks.reshape(len(candidates.masks), -1).any(axis=1))
        candidates = candidates.subset(nonempty) if nonempty.size else None
        points = prompt.points
        if candidates is not None and points is not None:
            candidates = remove_excluded(candidates, points.exclude)
        include = points.include if points is not None else np.zeros((0, 2))
        refine = include.size > 0 or prompt.box is not None or prompt.mask is not None

        if not refine or self.refiner is None:
            if candidates is None:
                return _empty(embedding.image_hw)
            if include.size:
                candidates = candidates.subset([choose_candidate(candidates, include, prompt.box)])
            order = np.argsort(-candidates.scores, kind="stable")
            answer = candidates.subset(order)
            return answer if multimask else _best_only(answer)

        refined = explicit
        if candidates is not None:
            refined = self._with_candidate(explicit, candidates, choose_candidate(candidates, include, prompt.box))
        return self.refiner.predict(embedding.part("refiner"), refined, multimask)

    def _with_candidate(self, explicit: Prompt, candidates: Prediction, index: int) -> Prompt:
        """The refiner's prompt: explicit parts, completed by the chosen candidate's box and logits."""
        assert self.refiner is not None
        box, mask = explicit.box, explicit.mask
        if box is None and "box" in self.refiner.accepts:
            box = Box.from_mask(candidates.masks[index])
        if mask is None and candidates.low_res_logits is not None and "mask" in self.refiner.accepts:
            mask = MaskPrompt(candidates.low_res_logits[index], "logits")
        return Prompt(points=explicit.points, box=box, mask=mask)


__all__ = [
    "GEOMETRIC_KINDS",
    "SEMANTIC_KINDS",
    "ComposedSegmenter",
    "choose_candidate",
    "points_inside",
    "remove_excluded",
]
