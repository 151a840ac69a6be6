"""SAM 3's tracker (Carion et al., 2025) on single images: SAM 2's promptable decoder on SAM 3's backbone.

``Sam3TrackerModel``: the SAM 3 perception encoder (ViT, 1008 x 1008 input,
14-pixel patches, a 72 x 72 grid) with the tracker's own feature neck, and a
SAM 2 prompt encoder and mask decoder. Square frame, 288 x 288 low-resolution
logits (:mod:`segprompt.backends.sam_family`). The weights are the tracker
part of the gated ``facebook/sam3`` checkpoint (see :mod:`segprompt.backends.sam3`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import register
from .sam3_vision import Sam3Backbone
from .sam_family import SamFamilyEmbedding, SamFamilySegmenter

#: Said when the SAM 3 weights are missing offline.
SAM3_ACCESS_NOTE = (
    "The SAM 3 weights are gated: accept the licence on https://huggingface.co/facebook/sam3 while logged in, "
    "run `hf auth login`, then `hf download facebook/sam3 --local-dir <folder>`."
)


@register
class Sam3TrackerSegmenter(SamFamilySegmenter, Sam3Backbone):
    """SAM 3's tracker through transformers' ``Sam3TrackerModel`` and ``Sam3TrackerProcessor``.

    Its ViT is SAM 3's detector's (:mod:`segprompt.backends.sam3_vision`):
    :meth:`encode` runs it, then :meth:`embed_from_backbone` the tracker's
    neck, as ``Sam3TrackerModel.get_image_embeddings`` does.
    """

    name = "sam3-tracker"
    description = "SAM 3 tracker (SAM 2 decoder on SAM 3's backbone); points, box, mask prompts"
    hub_ids = {"sam3": "facebook/sam3"}
    default_variant = "sam3"
    access_note = SAM3_ACCESS_NOTE

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        from transformers import Sam3TrackerModel, Sam3TrackerProcessor

        return Sam3TrackerModel, Sam3TrackerProcessor

    def encode(self, rgb: np.ndarray) -> SamFamilyEmbedding:
        return self.embed_from_backbone(rgb, self.run_backbone(rgb))

    def embed_from_backbone(self, rgb: np.ndarray, features: torch.Tensor) -> SamFamilyEmbedding:
        """The decoder's inputs from the ViT's ``features``, as ``Sam3TrackerModel.get_image_embeddings`` makes them.

        The decoder's ``conv_s0`` / ``conv_s1`` project the neck's two finest
        levels once per image, the model's ``no_memory_embedding`` (a single
        image has no memory) is added to the last level, and the embedding is
        the levels that ``backbone_feature_sizes`` lists (the first three of
        the neck's four: the coarsest is dropped, its memory term with it).
        """
        levels = list(self.neck(features))
        with torch.inference_mode():
            levels[0] = self.model.mask_decoder.conv_s0(levels[0])
            levels[1] = self.model.mask_decoder.conv_s1(levels[1])
            levels[-1] = levels[-1] + self.model.no_memory_embedding.reshape(1, -1, 1, 1)
        sizes = self.model.backbone_feature_sizes
        embeddings = tuple(level for level, _ in zip(levels, sizes))
        side = int(features.shape[-1]) * int(self.model.vision_encoder.config.backbone_config.patch_size)
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        return SamFamilyEmbedding(self.name, self.model_id, image_hw, rgb, embeddings, (), (side, side), side)
