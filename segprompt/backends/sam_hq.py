"""SAM-HQ (Ke et al., NeurIPS 2023): SAM with a high-quality output token fed by early ViT features.

``SamHQModel`` and ``SamHQProcessor``: segment-anything's padded 1024 frame
(longest side 1024, padding at the bottom/right, 256 x 256 logits over the
padded square). The HQ decoder also reads the ViT's global-attention layer
outputs, so those are part of the cached features. ``hq_token_only=False``
(transformers' default) returns SAM's masks corrected by the HQ token's;
``True`` returns the HQ token's mask alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..devices import AUTO
from ..hub import CHANNELS_LAST, PretrainedModel
from ..precision import autocast
from ..prompts import Prompt
from . import register
from .sam_family import PromptTensors, SamFamilyEmbedding, SamFamilySegmenter

#: The released SAM-HQ checkpoints converted for transformers (Apache-2.0).
HUB_IDS = {
    "vit_b": "syscv-community/sam-hq-vit-base",
    "vit_l": "syscv-community/sam-hq-vit-large",
    "vit_h": "syscv-community/sam-hq-vit-huge",
}


@register
class SamHqSegmenter(SamFamilySegmenter):
    """SAM-HQ through transformers' ``SamHQModel``; ``variant`` is ``vit_b``, ``vit_l`` or ``vit_h``.

    Args:
        hq_token_only: return the HQ token's masks alone (see the module docstring).
        model_dir, variant, hub_id, device, precision, pretrained: see
            :class:`~segprompt.backends.sam_family.SamFamilySegmenter`.
    """

    name = "sam-hq"
    description = "SAM-HQ (ViT-B/L/H, high-quality output token); points, box, mask prompts"
    hub_ids = HUB_IDS
    default_variant = "vit_b"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        variant: str | None = None,
        hub_id: str | None = None,
        hq_token_only: bool = False,
        device: str | torch.device = AUTO,
        precision: str = "fp32",
        pretrained: PretrainedModel | None = None,
    ) -> None:
        super().__init__(model_dir, variant=variant, hub_id=hub_id, device=device, precision=precision, pretrained=pretrained)
        self.hq_token_only = bool(hq_token_only)

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        from transformers import SamHQModel, SamHQProcessor

        return SamHQModel, SamHQProcessor

    @property
    def low_res_side(self) -> int:
        # SAM's prompt encoder takes masks at 4 x its embedding grid (no mask_input_size attribute here).
        return 4 * int(self.model.prompt_encoder.image_embedding_size[0])

    def encode(self, rgb: np.ndarray) -> SamFamilyEmbedding:
        inputs = self.processor.image_processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST)
        with torch.inference_mode(), autocast(self.device, self.precision):
            image_embeddings, intermediate = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
        image_embeddings, intermediate = image_embeddings.float(), [level.float() for level in intermediate]
        height, width = (int(v) for v in inputs["reshaped_input_sizes"][0])
        side = int(inputs["pixel_values"].shape[-1])
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        return SamFamilyEmbedding(
            self.name, self.model_id, image_hw, rgb, (image_embeddings,), tuple(intermediate), (height, width), side
        )

    def geometry_tensors(
        self, prompts: Sequence[Prompt], image_hw: tuple[int, int], input_hw: tuple[int, int]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """As ``SamHQProcessor`` converts them: ``x * w / W``, ``y * h / H`` in float64 (boxes rounded to float32 first).

        Its processor needs the image for that, so the same arithmetic is done
        here; prompts must have the same point count.
        """
        first = prompts[0]
        scale = np.array([input_hw[1] / image_hw[1], input_hw[0] / image_hw[0]])
        points = labels = boxes = None
        if first.points is not None:
            points = torch.from_numpy(np.stack([p.points.xy * scale for p in prompts])[None]).to(self.device)
            labels = torch.from_numpy(np.stack([p.points.labels for p in prompts])[None]).to(self.device)
        if first.box is not None:
            corners = np.stack([p.box.as_array().astype(np.float32).astype(np.float64) for p in prompts])
            boxes = torch.from_numpy((corners * np.tile(scale, 2))[None]).to(self.device)
        return points, labels, boxes

    def forward(self, embedding: SamFamilyEmbedding, prompt: PromptTensors, multimask: bool) -> Any:
        return self.model(
            image_embeddings=embedding.image_embeddings[0].to(self.device),
            intermediate_embeddings=[tensor.to(self.device) for tensor in embedding.intermediate_embeddings],
            multimask_output=multimask,
            hq_token_only=self.hq_token_only,
            **prompt.as_kwargs(),
        )

    def post_process(self, pred_masks: torch.Tensor, embedding: SamFamilyEmbedding) -> torch.Tensor:
        return self.processor.post_process_masks(
            pred_masks.cpu(), [list(embedding.image_hw)], [list(embedding.input_hw)], binarize=False
        )[0]
