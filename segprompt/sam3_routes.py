"""Compositions that do what SAM 3 cannot do alone, as named backends.

SAM 3 (``sam3``) segments every instance of a concept given as a phrase and/or
exemplar boxes *on the image it segments*. It cannot

* take an exemplar from **another image** (facebookresearch/sam3 #490):
  ``sam3-reference`` has an exemplar proposer find the reference's object on
  the target first (OWLv2's image-guided detection by default, or PerSAM or
  SegGPT), whose boxes become SAM 3's exemplars;
* combine **text with points** (#337, #182): ``sam3-refine`` lets the
  include / exclude points (or a box, a mask) pick one of SAM 3's instances
  and refine it through SAM 3's tracker (``sam3-tracker``), which takes
  points on the *same* vision features: the image goes through SAM 3's ViT
  once for both models (:class:`~segprompt.backends.base.SharedBackbone`).

Both are :class:`~segprompt.compose.ComposedSegmenter` s (the rule is in
:mod:`segprompt.compose`) with SAM 3 as the proposer and its tracker as the
refiner, built from one SAM 3 model folder (the ``facebook/sam3`` layout
holds both models). Without points, box or mask the answer is SAM 3's
:class:`~segprompt.instances.InstancesPrediction` (every instance and the
semantic map); with them, the tracker's candidate masks of the chosen one.
"""

from __future__ import annotations

from pathlib import Path

from .backends import Segmenter, constructor_options, create, register
from .compose import ComposedSegmenter
from .devices import AUTO
from .errors import SegpromptError

#: The exemplar proposers ``sam3-reference`` takes (registry names).
EXEMPLAR_PROPOSERS = ("owlv2-sam", "persam", "seggpt")


def _sam3_pair(model_dir: str | Path | None, threshold: float, device: str, precision: str) -> tuple[Segmenter, Segmenter]:
    """SAM 3's detector and tracker from one model folder (one precision: they share the ViT's output)."""
    detector = create("sam3", model_dir=model_dir, threshold=threshold, device=device, precision=precision)
    return detector, create("sam3-tracker", model_dir=model_dir, device=device, precision=precision)


@register
class Sam3RefineSegmenter(ComposedSegmenter):
    """SAM 3's instances of a phrase / exemplars; points, a box or a mask pick one and SAM 3's tracker refines it.

    Args:
        model_dir: the SAM 3 model folder (both models); default see :mod:`segprompt.hub`.
        threshold: SAM 3's minimum instance score.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
        precision: the image encoders' autocast dtype (:mod:`segprompt.precision`).
    """

    name = "sam3-refine"
    accepts = frozenset({"text", "exemplars", "points", "box", "mask"})
    description = (
        "SAM 3 + its tracker on one encoder pass: a phrase/exemplars -> every instance; "
        "points, box or mask pick one and refine it"
    )

    def __init__(
        self, model_dir: str | Path | None = None, *, threshold: float = 0.5, device: str = AUTO, precision: str = "fp32"
    ) -> None:
        super().__init__(*_sam3_pair(model_dir, threshold, device, precision))


@register
class Sam3ReferenceSegmenter(ComposedSegmenter):
    """A visual reference from another image -> exemplar boxes on the target -> every instance by SAM 3.

    Also takes what ``sam3-refine`` takes (text, exemplars, and points / box /
    mask through SAM 3's tracker).

    Args:
        model_dir: the SAM 3 model folder (both models); default see :mod:`segprompt.hub`.
        exemplar_proposer: ``owlv2-sam`` (image-guided detection; its SAM stage
            is not run), ``persam`` or ``seggpt``.
        exemplar_model_dir: the exemplar proposer's model folder (``owlv2-sam``, ``seggpt``).
        model_type, checkpoint: the SAM of ``persam``.
        threshold: SAM 3's minimum instance score.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
        precision: the image encoders' autocast dtype (:mod:`segprompt.precision`).

    Raises:
        SegpromptError: an exemplar proposer not in :data:`EXEMPLAR_PROPOSERS`.
    """

    name = "sam3-reference"
    accepts = frozenset({"reference", "text", "exemplars", "points", "box", "mask"})
    description = (
        "a reference from another image -> exemplar boxes (owlv2-sam / persam / seggpt) -> every instance by SAM 3; "
        "points refine one through SAM 3's tracker"
    )

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        exemplar_proposer: str = "owlv2-sam",
        exemplar_model_dir: str | Path | None = None,
        model_type: str | None = None,
        checkpoint: str | None = None,
        threshold: float = 0.5,
        device: str = AUTO,
        precision: str = "fp32",
    ) -> None:
        if exemplar_proposer not in EXEMPLAR_PROPOSERS:
            raise SegpromptError(
                f"sam3-reference: exemplar proposer must be one of {', '.join(EXEMPLAR_PROPOSERS)}, got {exemplar_proposer!r}"
            )
        sam = {"model_type": model_type, "checkpoint": checkpoint} if exemplar_proposer == "persam" else {}
        options = constructor_options(exemplar_proposer, model_dir=exemplar_model_dir, device=device, precision=precision, **sam)
        detector, tracker = _sam3_pair(model_dir, threshold, device, precision)
        super().__init__(detector, tracker, exemplar_proposer=exemplar_proposer, exemplar_options=options)


__all__ = ["EXEMPLAR_PROPOSERS", "Sam3ReferenceSegmenter", "Sam3RefineSegmenter"]
