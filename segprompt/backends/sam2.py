"""SAM 2.1 (Ravi et al., 2024) on single images: points, a box and/or a mask -> up to three masks.

``Sam2Model`` with a Hiera image encoder (tiny, small, base+ or large); the
rest is the family's (:mod:`segprompt.backends.sam_family`): square 1024
frame, 256 x 256 low-resolution logits. With ``multimask=False`` SAM 2's
decoder picks its single-mask token unless that mask is unstable, then the
best of the three (``dynamic_multimask_via_stability``).
"""

from __future__ import annotations

from typing import Any

from . import register
from .sam_family import SamFamilySegmenter

#: The released SAM 2.1 checkpoints (Apache-2.0).
HUB_IDS = {
    "tiny": "facebook/sam2.1-hiera-tiny",
    "small": "facebook/sam2.1-hiera-small",
    "base-plus": "facebook/sam2.1-hiera-base-plus",
    "large": "facebook/sam2.1-hiera-large",
}


@register
class Sam2Segmenter(SamFamilySegmenter):
    """SAM 2.1 through transformers' ``Sam2Model``; ``variant`` is ``tiny``, ``small``, ``base-plus`` or ``large``."""

    name = "sam2"
    description = "SAM 2.1 (Hiera tiny/small/base+/large); points, box, mask prompts"
    hub_ids = HUB_IDS
    default_variant = "large"

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        from transformers import Sam2Model, Sam2Processor

        return Sam2Model, Sam2Processor
