"""SAM 3's tracker (Carion et al., 2025) on single images: SAM 2's promptable decoder on SAM 3's backbone.

``Sam3TrackerModel``: the SAM 3 perception encoder (ViT, 1008 x 1008 input,
14-pixel patches, a 72 x 72 grid) with the tracker's own feature neck, and a
SAM 2 prompt encoder and mask decoder. Square frame, 288 x 288 low-resolution
logits (:mod:`segprompt.backends.sam_family`). The weights are the tracker
part of the gated ``facebook/sam3`` checkpoint (see :mod:`segprompt.backends.sam3`).
"""

from __future__ import annotations

from typing import Any

from . import register
from .sam_family import SamFamilySegmenter

#: Said when the SAM 3 weights are missing offline.
SAM3_ACCESS_NOTE = (
    "The SAM 3 weights are gated: accept the licence on https://huggingface.co/facebook/sam3 while logged in, "
    "run `hf auth login`, then `hf download facebook/sam3 --local-dir <folder>`."
)


@register
class Sam3TrackerSegmenter(SamFamilySegmenter):
    """SAM 3's tracker through transformers' ``Sam3TrackerModel`` and ``Sam3TrackerProcessor``."""

    name = "sam3-tracker"
    description = "SAM 3 tracker (SAM 2 decoder on SAM 3's backbone); points, box, mask prompts"
    hub_ids = {"sam3": "facebook/sam3"}
    default_variant = "sam3"
    access_note = SAM3_ACCESS_NOTE

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        from transformers import Sam3TrackerModel, Sam3TrackerProcessor

        return Sam3TrackerModel, Sam3TrackerProcessor
