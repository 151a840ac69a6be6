"""Composite prompts: text, a visual reference or exemplars together with points, a box and a mask.

One :class:`~segprompt.prompts.Prompt` may hold every kind at once (as in
SEEM's composite prompts). :class:`ComposedSegmenter` answers it with up to
three backends: a *proposer* that understands what to segment (text /
reference / exemplars: ``clipseg``, ``owlv2-sam``, ``grounding-dino-sam``,
``persam``, ``seggpt``, ``sam3``), a *refiner* that understands where
(points / box / mask: ``sam``, ``sam3-tracker``, ``sam2``, ``classical``, ...)
and, optionally, an *exemplar proposer* that turns a reference from another
image into exemplar boxes on the target for a proposer that takes exemplars
only on its own image (SAM 3: ``owlv2-sam``, ``persam``, ``seggpt``). The rule:

0. **Exemplars from a reference** (with an exemplar proposer). The reference
   is not given to the proposer: the exemplar proposer finds its object on
   the target (:meth:`~segprompt.backends.base.ExemplarProposer.propose_exemplars`:
   OWLv2's image-guided detections, the components of PerSAM's or SegGPT's
   mask), and those boxes join the prompt's exemplars as positives. With no
   box found and no text or exemplar left, there is no candidate.
1. **Propose.** When the prompt holds text, a reference and/or exemplars, the proposer
   answers exactly those parts (multimask), giving candidate masks; empty
   candidates are dropped. A concept proposer (SAM 3) answers with every
   instance (:class:`~segprompt.instances.InstancesPrediction`): each
   instance is a candidate.
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
   mask with score 0. A concept proposer's answer stays an
   :class:`~segprompt.instances.InstancesPrediction`: the surviving
   instances (an include point without a refiner keeps the one chosen), the
   removed instances' pixels taken out of its semantic map.

A prompt with no text, reference or exemplars goes straight to the refiner
(or, with no refiner, to the proposer). A kind no backend in the composition
accepts raises :class:`~segprompt.errors.UnsupportedPromptError` naming the
backend and the kind.

The embedding of an image is a
:class:`~segprompt.backends.base.CompositeEmbedding` holding the backends'
embeddings as parts ``"proposer"``, ``"refiner"`` and ``"exemplars"``, each as
its backend made it (so it goes back to that backend unchanged); it is cached
like any other. When the proposer and the refiner read one backbone
(:func:`~segprompt.backends.base.same_backbone`: SAM 3's detector and tracker
loaded from one checkpoint) the image goes through it once and both parts are
made from its output.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .backends import create, register
from .backends.base import CompositeEmbedding, ExemplarProposer, Prediction, Segmenter, same_backbone
from .errors import SegpromptError, UnsupportedPromptError
from .instances import Instances, InstancesPrediction
from .progress import ProgressCallback, no_progress
from .prompts import PROMPT_KINDS, Box, Exemplars, MaskPrompt, Prompt

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


def _without(answer: InstancesPrediction, keep: np.ndarray) -> InstancesPrediction:
    """``answer`` with only the instances at ``keep``; pixels of the others that no kept instance covers leave the map."""
    instances = answer.instances
    kept = instances[keep]
    removed = instances[np.setdiff1d(np.arange(len(instances)), keep)]
    probabilities = np.where(removed.union() & ~kept.union(), np.float32(0), answer.probabilities).astype(np.float32)
    return InstancesPrediction.from_instances(kept, probabilities)


def _backend(value: Segmenter | str | None, options: Mapping[str, Any] | None) -> Segmenter | None:
    if value is None or isinstance(value, Segmenter):
        if options:
            raise SegpromptError("composed: backend options are only used with a backend given by name")
        return value
    return create(value, **dict(options or {}))


def _exemplar_backend(
    value: Segmenter | str | None, options: Mapping[str, Any] | None, refiner: Segmenter | None
) -> Segmenter | None:
    """The exemplar proposer; a detector given by name without SAM options gets ``refiner`` as its (unused) SAM stage."""
    if isinstance(value, str) and refiner is not None and "box" in refiner.accepts:
        from .backends import get_backend_class
        from .backends.detector_sam import DetectorSamSegmenter

        options = dict(options or {})
        if issubclass(get_backend_class(value), DetectorSamSegmenter) and not {"sam", "sam_model_type", "sam_checkpoint"} & set(options):
            options["sam"] = refiner
    built = _backend(value, options)
    if built is not None and not isinstance(built, ExemplarProposer):
        raise SegpromptError(
            f"composed: backend {built.name!r} cannot propose exemplars from a reference; use owlv2-sam, persam or seggpt"
        )
    return built


@register
class ComposedSegmenter(Segmenter):
    """A proposer for text / reference / exemplar prompts refined by a point / box / mask backend.

    Args:
        proposer: a backend (or registry name) answering text, reference
            and/or exemplar prompts.
        refiner: a backend (or registry name) answering points / box / mask
            prompts, or ``None`` (then only points, to select, can accompany
            text or a reference).
        exemplar_proposer: a backend (or registry name) declaring
            :class:`~segprompt.backends.base.ExemplarProposer` (``owlv2-sam``,
            ``persam``, ``seggpt``), which turns a reference into exemplar
            boxes for a proposer that takes exemplars (``sam3``); or ``None``.
            A detector given by name without SAM options gets the refiner as
            its SAM stage, which proposing exemplars never runs.
        proposer_options, refiner_options, exemplar_options: keyword options
            when the backend is given by name (e.g. ``{"model_type": "vit_b"}``).

    See the module docstring for the composition rule.

    Raises:
        SegpromptError: no proposer, backend options with a built backend, an
            exemplar proposer that cannot propose exemplars or a proposer that
            takes none.
    """

    name = "composed"
    accepts = frozenset(PROMPT_KINDS)
    description = "Composite prompts: a text/reference/exemplar proposer refined by points, box and mask (e.g. clipseg + sam)"

    def __init__(
        self,
        proposer: Segmenter | str = "clipseg",
        refiner: Segmenter | str | None = "sam",
        *,
        exemplar_proposer: Segmenter | str | None = None,
        proposer_options: Mapping[str, Any] | None = None,
        refiner_options: Mapping[str, Any] | None = None,
        exemplar_options: Mapping[str, Any] | None = None,
    ) -> None:
        built = _backend(proposer, proposer_options)
        if built is None:
            raise SegpromptError("composed: a proposer backend is required")
        self.proposer: Segmenter = built
        self.refiner: Segmenter | None = _backend(refiner, refiner_options)
        self.exemplar_proposer: Segmenter | None = _exemplar_backend(exemplar_proposer, exemplar_options, self.refiner)
        if self.exemplar_proposer is not None and "exemplars" not in self.proposer.accepts:
            raise SegpromptError(
                f"composed: an exemplar proposer needs a proposer taking exemplars (sam3); "
                f"{self.proposer.name!r} accepts {', '.join(sorted(self.proposer.accepts))}"
            )
        #: Whether the proposer's and the refiner's embeddings come from one backbone run.
        self.shares_backbone = self.refiner is not None and same_backbone(self.proposer, self.refiner)

    @property
    def model_id(self) -> str:
        parts = [f"{self.proposer.name}:{self.proposer.model_id}"]
        if self.refiner is not None:
            parts.append(f"{self.refiner.name}:{self.refiner.model_id}")
        if self.exemplar_proposer is not None:
            parts.append(f"exemplars={self.exemplar_proposer.name}:{self.exemplar_proposer.model_id}")
        return "+".join(parts)

    def _semantic_accepts(self) -> frozenset[str]:
        """The what-to-segment kinds: the proposer's, and ``reference`` through an exemplar proposer."""
        kinds = self.proposer.accepts & SEMANTIC_KINDS
        return kinds | {"reference"} if self.exemplar_proposer is not None else kinds

    def supported_kinds(self) -> frozenset[str]:
        """The kinds this composition can answer."""
        kinds = self._semantic_accepts()
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
        lacking = sorted(semantic - self._semantic_accepts())
        if lacking:
            raise UnsupportedPromptError(
                f"composed: proposer backend {self.proposer.name!r} does not accept {', '.join(lacking)} prompts; "
                f"it accepts {', '.join(sorted(self.proposer.accepts))}"
                + ("" if "reference" not in lacking else " (an exemplar proposer turns a reference into exemplars)")
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
        """The backends' embeddings of ``image``: parts ``"proposer"``, ``"refiner"`` and ``"exemplars"`` (those present).

        With :attr:`shares_backbone` the backbone runs once for the first two.
        """
        rgb = self._rgb(image)
        if self.shares_backbone:
            assert self.refiner is not None
            progress(0, 1, f"composed: {self.proposer.name} + {self.refiner.name} backbone")
            features = self.proposer.run_backbone(rgb)  # type: ignore[attr-defined]
            parts = {
                "proposer": self.proposer.embed_from_backbone(rgb, features),  # type: ignore[attr-defined]
                "refiner": self.refiner.embed_from_backbone(rgb, features),  # type: ignore[attr-defined]
            }
            progress(1, 1, "composed: image encoded once for both")
        else:
            parts = {"proposer": self.proposer.embed(rgb, progress)}
            if self.refiner is not None:
                parts["refiner"] = self.refiner.embed(rgb, progress)
        if self.exemplar_proposer is not None:
            parts["exemplars"] = self.exemplar_proposer.embed_for_exemplars(rgb, progress)  # type: ignore[attr-defined]
        return CompositeEmbedding(self.name, self.model_id, parts["proposer"].image_hw, rgb, parts)

    def semantic_prompt(self, embedding: CompositeEmbedding, prompt: Prompt) -> Prompt:
        """The proposer's prompt: the text, reference and exemplars, a reference turned into exemplars (rule step 0)."""
        semantic = Prompt(text=prompt.text, reference=prompt.reference, exemplars=prompt.exemplars)
        if prompt.reference is None or self.exemplar_proposer is None:
            return semantic
        proposed = self.exemplar_proposer.propose_exemplars(embedding.part("exemplars"), prompt.reference)  # type: ignore[attr-defined]
        given = [item for item in (prompt.exemplars, proposed) if item is not None]
        exemplars = None
        if given:
            exemplars = Exemplars(np.concatenate([e.boxes for e in given]), np.concatenate([e.labels for e in given]))
        return Prompt(text=prompt.text, exemplars=exemplars)

    def _predict(self, embedding: CompositeEmbedding, prompt: Prompt, multimask: bool) -> Prediction:
        semantic = Prompt(text=prompt.text, reference=prompt.reference, exemplars=prompt.exemplars)
        explicit = Prompt(points=prompt.points, box=prompt.box, mask=prompt.mask)
        if semantic.is_empty():
            answerer = self.refiner if self.refiner is not None else self.proposer
            role = "refiner" if answerer is self.refiner else "proposer"
            return answerer.predict(embedding.part(role), explicit, multimask)

        semantic = self.semantic_prompt(embedding, prompt)
        points = prompt.points
        include = points.include if points is not None else np.zeros((0, 2))
        exclude = points.exclude if points is not None else np.zeros((0, 2))
        refine = include.size > 0 or prompt.box is not None or prompt.mask is not None
        answer: Prediction | None = None
        if not semantic.is_empty():
            answer = self.proposer.predict(embedding.part("proposer"), semantic, multimask=True)

        if isinstance(answer, InstancesPrediction) and not (refine and self.refiner is not None):
            keep = np.flatnonzero(~points_inside(answer.instances.masks, exclude).any(axis=1))
            if include.size and keep.size:
                keep = keep[[choose_candidate(answer.instances[keep], include, prompt.box)]]
            answer = _without(answer, keep)
            return answer if multimask else answer.subset([0])

        candidates = answer
        if candidates is not None:
            nonempty = np.flatnonzero(candidates.masks.reshape(len(candidates.masks), -1).any(axis=1))
            candidates = candidates.subset(nonempty) if nonempty.size else None
        if candidates is not None:
            candidates = remove_excluded(candidates, exclude)

        if not refine or self.refiner is None:
            if candidates is None:
                if answer is None and "exemplars" in self.proposer.accepts:
                    return InstancesPrediction.from_instances(Instances.empty(embedding.image_hw))
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
