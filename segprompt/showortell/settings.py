"""How a Show-or-Tell run prompts and scores: :class:`RunSettings` and the two protocols.

``ours`` (the defaults) and ``paper`` (FocoosAI/ShowOrTell's reference code,
``benchmark.py``, ``data/*_fss.py``, ``models/base_model.py`` and
``models/PersonalizeSAM/PERSAM_model.py``) differ in these settings; the
README's table says why ours differ. :meth:`RunSettings.for_protocol` gives a
protocol's settings with any setting given explicitly winning, and every
setting but ``max_images`` joins the run identity.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping

from ..errors import SegpromptError
from ..protocols import PROTOCOLS, check_choices, preset
from .protocol import DEFAULT_TEMPLATES
#: The side the reference squashes every image and reference to (``--img-size``).
PAPER_SIDE = 518
#: The SAM the reference's PersonalizeSAM loads (``sam_vit_h_4b8939.pth``).
PAPER_SAM_MODEL = "vit_h"


@dataclass
class RunSettings:
    """How each image is prompted and scored.

    Attributes:
        protocol: ``"ours"`` or ``"paper"``: the name of the defaults these settings started from.
        seeds: visual-reference draws to repeat.
        n_prompts: references per class.
        templates: text templates (``{}`` = the class name).
        resize: square side the query (and, with ``squash_references``, every
            reference) is resized to and scored at; ``None``: original size.
        antialias: resize with PIL's bilinear filter, which averages the whole
            source footprint when shrinking (torchvision's ``Resize`` on PIL
            images, the reference's), instead of OpenCV's 2 x 2 bilinear sampling.
        squash_references: resize the references' images and masks to ``resize`` as well.
        reference_draw: ``"per_class"`` (:meth:`ReferencePool.draw
            <segprompt.showortell.protocol.ReferencePool.draw>`) or
            ``"sequential"`` (the reference code's, :meth:`~segprompt.showortell.protocol.ReferencePool.draw_in_sequence`).
        background_rule: ``"ours"``: every dataset gets a zero background map
            and the 0.2 threshold, and background pixels the reader ignores
            stay ignored; ``"paper"``: where the background is a real class
            (VOC, Cityscapes) its class is prompted as label 0 with its own
            prompts and the maps are merged by plain argmax, and elsewhere
            background pixels are scored (ADE20K's "other").
        persam_confidence: a PerSAM answer's confidence map: ``"score"`` (mask x
            SAM's predicted IoU) or ``"similarity"`` (mask x the mean cosine
            similarity to the target inside the mask, the reference's).
        max_images: score only the first ``max_images`` test images of each dataset.
    """

    protocol: str = "ours"
    seeds: tuple[int, ...] = (0,)
    n_prompts: int = 1
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    resize: int | None = None
    antialias: bool = False
    squash_references: bool = False
    reference_draw: Literal["per_class", "sequential"] = "per_class"
    background_rule: Literal["ours", "paper"] = "ours"
    persam_confidence: Literal["score", "similarity"] = "score"
    max_images: int | None = None

    def __post_init__(self) -> None:
        check_choices(self, {"protocol": PROTOCOLS, "reference_draw": ("per_class", "sequential"),
                             "background_rule": PROTOCOLS, "persam_confidence": ("score", "similarity")})  # fmt: skip
        if self.squash_references and self.resize is None:
            raise SegpromptError("squash_references needs a resize side to squash the references to")

    @classmethod
    def for_protocol(cls, protocol: str, **overrides: Any) -> "RunSettings":
        """The settings of ``protocol`` with ``overrides`` (explicit choices) applied.

        Raises:
            SegpromptError: an unknown protocol.
        """
        return cls(**preset(protocol, PAPER_DEFAULTS, overrides))

    def identity(self) -> dict[str, Any]:
        """Every field but ``max_images`` (which may change between runs): each changes a row.

        A field added to this class joins the run identity by itself.
        """
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name != "max_images"}

    @classmethod
    def from_identity(cls, identity: Mapping[str, Any], max_images: int | None = None) -> "RunSettings":
        """The settings whose :meth:`identity` is ``identity`` (as JSON gives it back: lists for tuples;
        other keys, e.g. a run identity's methods, are ignored)."""
        values = {item.name: identity[item.name] for item in fields(cls) if item.name != "max_images"}
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()},
                   max_images=max_images)


#: What the paper's protocol sets (everything else as ours).
PAPER_DEFAULTS: Mapping[str, Any] = {
    "resize": PAPER_SIDE,
    "antialias": True,
    "squash_references": True,
    "reference_draw": "sequential",
    "background_rule": "paper",
    "persam_confidence": "similarity",
}
