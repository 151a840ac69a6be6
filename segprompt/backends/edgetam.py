"""EdgeTAM (Zhou et al., CVPR 2025): SAM 2's decoder on a RepViT-M1 encoder, 22x faster than SAM 2 on device.

``EdgeTamModel`` (its image encoder is a timm RepViT, so ``timm`` must be
installed); frames and decoding are SAM 2's (:mod:`segprompt.backends.sam_family`).
"""

from __future__ import annotations

from typing import Any

from . import register
from .sam_family import SamFamilySegmenter


@register
class EdgeTamSegmenter(SamFamilySegmenter):
    """EdgeTAM through transformers' ``EdgeTamModel`` and ``Sam2Processor``."""

    name = "edgetam"
    description = "EdgeTAM (RepViT encoder, SAM 2 decoder, on-device speed); points, box, mask prompts"
    hub_ids = {"edgetam": "yonigozlan/EdgeTAM-hf"}
    default_variant = "edgetam"

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        from transformers import EdgeTamModel, Sam2Processor

        return EdgeTamModel, Sam2Processor
