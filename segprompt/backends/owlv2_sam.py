"""OWLv2 (Minderer et al., NeurIPS 2023) boxes -> SAM masks.

OWLv2 scores one box per image patch against a query embedding. The image
half (:meth:`Owlv2SamSegmenter.embed_detector`: the patch feature map) is
computed once per image; a prompt costs a query embedding, the class head and
the box head.

Queries:

* ``text``: the phrase through OWLv2's CLIP text tower (padded to 16 tokens,
  as ``Owlv2Processor`` does).
* ``reference``: image-conditioned detection as in the OWL-ViT paper
  (section 3.2): the reference image is embedded like any image, and the class
  embedding of the reference's predicted box that overlaps the reference mask's
  bounding box best (IoU) becomes the query. (transformers'
  ``image_guided_detection`` instead takes the box of highest objectness,
  which ignores the mask.)

Frames: ``Owlv2ImageProcessor`` pads the image at the bottom and right to a
square of side ``max(H, W)`` and resizes that to 960 x 960, so normalised
boxes are fractions of ``max(H, W)``; ``post_process_object_detection``
scales them back accordingly and the result is in original-image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou
from transformers.image_transforms import center_to_corners_format

from ..hub import CHANNELS_LAST
from ..prompts import Box, Prompt, VisualReference
from . import register
from .base import Embedding, ExemplarProposer
from .detector_sam import Detections, DetectorSamSegmenter

DEFAULT_HUB_ID = "google/owlv2-base-patch16-ensemble"


@dataclass(eq=False)
class Owlv2Embedding(Embedding):
    """OWLv2's image half: the patch features every query is scored against.

    Attributes:
        feature_map: ``(1, h, w, D)`` float32 patch features (padded-square frame).
    """

    feature_map: torch.Tensor


@register
class Owlv2SamSegmenter(DetectorSamSegmenter, ExemplarProposer):
    """OWLv2 open-vocabulary detection + SAM (options: :class:`~segprompt.backends.detector_sam.DetectorSamSegmenter`).

    Also an :class:`~segprompt.backends.base.ExemplarProposer`: its
    image-guided detections of a reference become SAM 3's exemplar boxes
    (detector only; the SAM stage is not run).

    ``box_threshold`` is the minimum detection score (sigmoid of the class
    logit), 0.1 by default, transformers' default for OWLv2; ``nms_threshold``
    0.3, the IoU OWL's image-guided post-processing suppresses at.
    """

    name = "owlv2-sam"
    accepts = frozenset({"text", "reference"})
    description = "OWLv2 boxes from a text or a visual reference, each box segmented by SAM"
    default_hub_id = DEFAULT_HUB_ID
    default_box_threshold = 0.1
    default_nms_threshold = 0.3

    @classmethod
    def detector_classes(cls) -> tuple[Any, Any]:
        from transformers import Owlv2ForObjectDetection, Owlv2Processor

        return Owlv2ForObjectDetection, Owlv2Processor

    @torch.inference_mode()
    def feature_map(self, rgb: np.ndarray) -> torch.Tensor:
        """``(1, h, w, D)`` float32 patch features of an ``(H, W, 3)`` uint8 image (padded-square frame)."""
        pixel_values = self.processor.image_processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST).pixel_values
        return self.model.image_embedder(pixel_values=pixel_values.to(self.device))[0]

    def embed_detector(self, rgb: np.ndarray) -> Owlv2Embedding:
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        return Owlv2Embedding(self.name, self.detector_id, image_hw, rgb, self.feature_map(rgb).cpu())

    @torch.inference_mode()
    def text_query(self, phrase: str) -> torch.Tensor:
        """``(1, 1, D_text)`` query embedding of a phrase."""
        tokens = self.processor(text=[phrase], truncation=True, return_tensors="pt")
        features = self.model.owlv2.get_text_features(
            input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
        )
        return features.pooler_output[None]

    @torch.inference_mode()
    def reference_query(self, reference: VisualReference) -> torch.Tensor:
        """``(1, 1, D_text)`` class embedding of the reference box best overlapping the reference mask."""
        feature_map = self.feature_map(reference.image.copy())  # torch wants writable pixels
        features = feature_map.reshape(1, -1, feature_map.shape[-1])
        _, class_embeds = self.model.class_predictor(features)
        boxes = center_to_corners_format(self.model.box_predictor(features, feature_map))[0]
        side = float(max(reference.mask.shape))
        target = torch.as_tensor(Box.from_mask(reference.mask).as_array() / side, dtype=boxes.dtype)
        best = int(torch.argmax(box_iou(target[None].to(boxes.device), boxes)[0]))
        return class_embeds[:, best : best + 1]

    @torch.inference_mode()
    def detect_from(self, detector: Owlv2Embedding, prompt: Prompt) -> Detections:
        feature_map = detector.feature_map.to(self.device)
        features = feature_map.reshape(1, -1, feature_map.shape[-1])
        if prompt.text is not None:
            query = self.text_query(prompt.text.phrase)
            if prompt.reference is not None:
                # Both prompts: one query, the mean of the two unit embeddings.
                query = (_unit(query) + _unit(self.reference_query(prompt.reference))) / 2
        else:
            query = self.reference_query(prompt.reference)
        logits, _ = self.model.class_predictor(features, query)
        outputs = SimpleNamespace(logits=logits, pred_boxes=self.model.box_predictor(features, feature_map))
        result = self.processor.image_processor.post_process_object_detection(
            outputs, threshold=self.box_threshold, target_sizes=[detector.image_hw]
        )[0]
        return Detections(result["boxes"].cpu().numpy(), result["scores"].cpu().numpy())


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / torch.linalg.norm(vectors, dim=-1, keepdim=True).clamp_min(1e-6)
