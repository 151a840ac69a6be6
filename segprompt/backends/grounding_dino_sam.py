"""Grounding DINO (Liu et al., ECCV 2024) boxes -> SAM masks ("Grounded SAM").

Grounding DINO fuses text and image features from its first encoder layer on,
so nothing but the preprocessed pixels can be reused across prompts:
:meth:`GroundingDinoSamSegmenter.embed_detector` keeps ``pixel_values`` and
``pixel_mask`` (and SAM's embedding), and each text prompt runs the detector.

The phrase is tokenised by ``GroundingDinoProcessor``, which lower-cases it
and ends it with ``"."`` as the model was trained. Boxes come from the
processor's ``post_process_grounded_object_detection``: the model's boxes are
fractions of the resized image without its padding, so scaling by ``(W, H)``
gives original-image pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..hub import CHANNELS_LAST, PretrainedModel, load_pretrained
from ..prompts import Prompt
from . import register
from .base import Segmenter
from .detector_sam import Detections, DetectorSamSegmenter

DEFAULT_HUB_ID = "IDEA-Research/grounding-dino-tiny"


@register
class GroundingDinoSamSegmenter(DetectorSamSegmenter):
    """Grounding DINO text-grounded detection + SAM.

    Args:
        model_dir: local ``GroundingDinoForObjectDetection`` folder; default see
            :mod:`segprompt.hub`.
        hub_id: hub model used without ``model_dir``.
        box_threshold: minimum box score (max over tokens of the sigmoid
            logits); 0.35 as in the Grounding DINO demo.
        top_k, nms_threshold, sam, sam_model_type, sam_checkpoint: see
            :class:`~segprompt.backends.detector_sam.DetectorSamSegmenter`;
            0.8 is the IoU the Grounded-SAM demo suppresses at.
        device: torch device of the detector (and of the SAM built here).
        pretrained: an already loaded detector and processor; overrides
            ``model_dir`` and ``hub_id``.
    """

    name = "grounding-dino-sam"
    accepts = frozenset({"text"})
    description = "Grounding DINO boxes from a text phrase, each box segmented by SAM"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        hub_id: str = DEFAULT_HUB_ID,
        box_threshold: float = 0.35,
        top_k: int = 3,
        nms_threshold: float = 0.8,
        sam: Segmenter | None = None,
        sam_model_type: str = "vit_b",
        sam_checkpoint: str | None = None,
        device: str = "cpu",
        pretrained: PretrainedModel | None = None,
    ) -> None:
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        super().__init__(
            pretrained or load_pretrained(GroundingDinoForObjectDetection, GroundingDinoProcessor, hub_id, model_dir),
            box_threshold=box_threshold,
            sam=sam,
            sam_model_type=sam_model_type,
            sam_checkpoint=sam_checkpoint,
            top_k=top_k,
            nms_threshold=nms_threshold,
            device=device,
        )

    def embed_detector(self, rgb: np.ndarray) -> dict[str, Any]:
        """``pixel_values`` ``(1, 3, h, w)`` float32 (shortest side 800, longest at most 1333) and ``pixel_mask`` ``(1, h, w)``."""
        pixels = self.processor.image_processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST)
        return {"pixel_values": pixels["pixel_values"], "pixel_mask": pixels["pixel_mask"]}

    @torch.inference_mode()
    def detect_from(self, data: dict[str, Any], image_hw: tuple[int, int], prompt: Prompt) -> Detections:
        tokens = self.processor(text=[prompt.text.phrase], return_tensors="pt")
        inputs = {name: tensor.to(self.device) for name, tensor in {**tokens, **data}.items()}
        outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            target_sizes=[image_hw],
        )[0]
        return Detections(result["boxes"].cpu().numpy(), result["scores"].cpu().numpy())
