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

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..hub import CHANNELS_LAST
from ..prompts import Prompt
from . import register
from .base import Embedding
from .detector_sam import Detections, DetectorSamSegmenter

DEFAULT_HUB_ID = "IDEA-Research/grounding-dino-tiny"


@dataclass(eq=False)
class GroundingDinoEmbedding(Embedding):
    """Grounding DINO's image input (its encoder fuses image and text, so it runs per prompt).

    Attributes:
        pixel_values: ``(1, 3, h, w)`` float32 (shortest side 800, longest at most 1333).
        pixel_mask: ``(1, h, w)`` int64, 1 on image pixels.
    """

    pixel_values: torch.Tensor
    pixel_mask: torch.Tensor


@register
class GroundingDinoSamSegmenter(DetectorSamSegmenter):
    """Grounding DINO text-grounded detection + SAM (options: :class:`~segprompt.backends.detector_sam.DetectorSamSegmenter`).

    ``box_threshold`` is the minimum box score (max over tokens of the sigmoid
    logits), 0.35 by default as in the Grounding DINO demo; ``nms_threshold``
    0.8, the IoU the Grounded-SAM demo suppresses at.
    """

    name = "grounding-dino-sam"
    accepts = frozenset({"text"})
    description = "Grounding DINO boxes from a text phrase, each box segmented by SAM"
    default_hub_id = DEFAULT_HUB_ID
    default_box_threshold = 0.35
    default_nms_threshold = 0.8

    @classmethod
    def detector_classes(cls) -> tuple[Any, Any]:
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        return GroundingDinoForObjectDetection, GroundingDinoProcessor

    def embed_detector(self, rgb: np.ndarray) -> GroundingDinoEmbedding:
        pixels = self.processor.image_processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST)
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        return GroundingDinoEmbedding(self.name, self.detector_id, image_hw, rgb, pixels["pixel_values"], pixels["pixel_mask"])

    @torch.inference_mode()
    def detect_from(self, detector: GroundingDinoEmbedding, prompt: Prompt) -> Detections:
        tokens = self.processor(text=[prompt.text.phrase], return_tensors="pt")
        image = {"pixel_values": detector.pixel_values, "pixel_mask": detector.pixel_mask}
        inputs = {name: tensor.to(self.device) for name, tensor in {**tokens, **image}.items()}
        outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            target_sizes=[detector.image_hw],
        )[0]
        return Detections(result["boxes"].cpu().numpy(), result["scores"].cpu().numpy())
