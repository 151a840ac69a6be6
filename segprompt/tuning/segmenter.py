"""A tuning checkpoint as a text-prompted :class:`~segprompt.backends.Segmenter`.

The image is squashed to the checkpoint's ``image_size`` square exactly as in
training (:mod:`segprompt.tuning.data`); the logits on that square are resized
bilinearly back to the original ``H x W`` and thresholded at probability 0.5.
The score of the one returned mask is its mean probability (0 when empty), as
for the plain ``clipseg`` backend.

Registered as backend ``"clipseg-tuned"``:
``segprompt.backends.create("clipseg-tuned", checkpoint="runs/kvasir-coop")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..backends import register
from ..backends.base import Embedding, Segmenter
from ..devices import AUTO, resolve_device
from ..progress import ProgressCallback, no_progress
from ..backends.probability import ProbabilityPrediction
from ..hub import PretrainedModel
from ..prompts import Prompt
from .tuned import TunedCLIPSeg


@dataclass(eq=False)
class SquashedImageEmbedding(Embedding):
    """The image squashed to the tuned model's square, as in training.

    Attributes:
        resized: ``(S, S, 3)`` uint8 RGB. The vision tower itself runs per
            prompt, since visual prompts enter it.
    """

    resized: np.ndarray


@register
class TunedClipSegSegmenter(Segmenter):
    """CLIPSeg with prompts learnt by ``segprompt tune``.

    Args:
        checkpoint: the ``--out`` folder of ``segprompt tune``.
        base: the base model, when already loaded (default: the checkpoint's ``base_model``).
        threshold: probability above which a pixel is in the mask.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
    """

    name = "clipseg-tuned"
    accepts = frozenset({"text"})
    description = "CLIPSeg with learnt prompts (segprompt tune): a text phrase -> one mask"

    def __init__(
        self, checkpoint: str | Path, base: PretrainedModel | None = None, threshold: float = 0.5, device: str | torch.device = AUTO
    ) -> None:
        self.device = resolve_device(device)
        self.tuned = TunedCLIPSeg.load(checkpoint, base)
        self.tuned.net.to(self.device)
        self.threshold = threshold
        self._model_id = f"{self.tuned.base_model}+{self.tuned.method_name}:{Path(checkpoint).resolve()}"

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def default_text(self) -> str | None:
        """The checkpoint's default phrase (the most common training text)."""
        return self.tuned.default_text

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> SquashedImageEmbedding:
        """Keep the image squashed to the model's square (see :class:`SquashedImageEmbedding`)."""
        rgb = self._rgb(image)
        size = self.tuned.image_size
        resized = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
        progress(1, 1, "image resized")
        return SquashedImageEmbedding(self.name, self.model_id, (int(rgb.shape[0]), int(rgb.shape[1])), rgb, resized)

    def _predict(self, embedding: SquashedImageEmbedding, prompt: Prompt, multimask: bool) -> ProbabilityPrediction:
        height, width = embedding.image_hw
        self.tuned.net.eval()
        with torch.inference_mode():
            logits = self.tuned.logits([embedding.resized], [prompt.text.phrase])
            resized = torch.nn.functional.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)
        probabilities = torch.sigmoid(resized)[0, 0].float().cpu().numpy()
        mask = probabilities >= self.threshold
        score = float(probabilities[mask].mean()) if mask.any() else 0.0
        return ProbabilityPrediction(masks=mask[None], scores=np.array([score], np.float32), probabilities=probabilities)
