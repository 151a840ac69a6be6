"""SegGPT (Wang et al., ICCV 2023): in-context segmentation from one example.

SegGPT paints: it sees the reference image above the target image and the
reference mask (as colours) above a blank canvas, and fills the canvas. The
reference and the target pass through the encoder together, so only the
preprocessed target (``pixel_values``, 448 x 448) is reusable across prompts.

Masks and confidence come from ``SegGptImageProcessor``'s
``post_process_semantic_segmentation`` with one label: the painted canvas is
resized (nearest) to the original ``H x W`` and each pixel takes the nearer
palette colour (background black, object the palette's label-1 colour). The
per-pixel confidence is ``d_bg / (d_bg + d_obj)`` from the squared colour
distances ``d`` the processor returns: 1 on the object colour, 0 on black, 0.5
halfway. The score is its mean inside the mask (0 for an empty mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch

from ..devices import AUTO, resolve_device
from ..hub import CHANNELS_LAST, PretrainedModel, load_pretrained
from ..prompts import Prompt
from . import register
from .base import Embedding, Segmenter
from .exemplars import MaskExemplars
from ..progress import ProgressCallback, no_progress
from .probability import ProbabilityPrediction

DEFAULT_HUB_ID = "BAAI/seggpt-vit-large"
#: SegGPT paints one object class: palette entry 0 is background, 1 the object.
NUM_LABELS = 1


@dataclass(eq=False)
class SegGptEmbedding(Embedding):
    """SegGPT's input image; its encoder runs per prompt, since the prompt pair enters it.

    Attributes:
        pixel_values: ``(1, 3, 448, 448)`` float32, the processor's resize and ImageNet normalisation.
    """

    pixel_values: torch.Tensor


@register
class SegGptSegmenter(Segmenter, MaskExemplars):
    """SegGPT through transformers' ``SegGptForImageSegmentation``.

    Args:
        model_dir: local model folder; default see :mod:`segprompt.hub`.
        hub_id: hub model used without ``model_dir``.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
        pretrained: an already loaded model and processor; overrides
            ``model_dir`` and ``hub_id``.
    """

    name = "seggpt"
    accepts = frozenset({"reference"})
    description = "SegGPT: in-context segmentation from a reference image and its mask"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        hub_id: str = DEFAULT_HUB_ID,
        device: str | torch.device = AUTO,
        pretrained: PretrainedModel | None = None,
    ) -> None:
        self.device = resolve_device(device)
        from transformers import SegGptForImageSegmentation, SegGptImageProcessor

        loaded = pretrained or load_pretrained(SegGptForImageSegmentation, SegGptImageProcessor, hub_id, model_dir)
        self.model = loaded.model.to(self.device)
        self.processor = loaded.processor
        self._model_id = loaded.model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> SegGptEmbedding:
        """Prepare the image (see :class:`SegGptEmbedding`)."""
        rgb = self._rgb(image)
        pixel_values = self.processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST)["pixel_values"]
        progress(1, 1, "SegGPT: image prepared")
        return SegGptEmbedding(self.name, self.model_id, (rgb.shape[0], rgb.shape[1]), rgb, pixel_values)

    @torch.inference_mode()
    def _predict(self, embedding: SegGptEmbedding, prompt: Prompt, multimask: bool) -> ProbabilityPrediction:
        # multimask is moot: SegGPT paints one mask per prompt, hence K = 1.
        reference = prompt.reference
        inputs = self.processor.preprocess(
            prompt_images=reference.image.copy(),  # torch wants writable pixels
            prompt_masks=reference.mask.astype(np.uint8),
            num_labels=NUM_LABELS,
            return_tensors="pt",
        )
        outputs = self.model(
            pixel_values=embedding.pixel_values.to(self.device),
            prompt_pixel_values=inputs["prompt_pixel_values"].to(self.device),
            prompt_masks=inputs["prompt_masks"].to(self.device),
        )
        result = self.processor.post_process_semantic_segmentation(
            outputs, target_sizes=[embedding.image_hw], num_labels=NUM_LABELS, return_segmentation_scores=True
        )[0]
        distance_bg, distance_obj = (-result.segmentation_scores).clamp_min(0).double().cpu()
        total = distance_bg + distance_obj
        confidence = torch.where(total > 0, distance_bg / total.clamp_min(1e-12), 0.5).float().numpy()
        mask = result.segmentation.cpu().numpy() == 1
        score = float(confidence[mask].mean()) if mask.any() else 0.0
        return ProbabilityPrediction(masks=mask[None], scores=np.array([score], np.float32), probabilities=confidence)

    def probabilities(self, embedding: Embedding, prompt: Prompt) -> np.ndarray:
        """``(H, W)`` float32 per-pixel object confidence (see module docstring) in original-image pixels."""
        return cast(ProbabilityPrediction, self.predict(embedding, prompt)).probabilities
