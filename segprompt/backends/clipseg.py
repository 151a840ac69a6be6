"""CLIPSeg (Lüddecke & Ecker, CVPR 2022): a text or a visual reference -> one mask.

The image goes through CLIP's vision tower once (:meth:`ClipSegSegmenter.embed`
keeps the activations CLIPSeg's decoder reads); each prompt then costs only a
text (or reference-image) encoding and the small decoder.

Frames: CLIPSeg's processor squashes the whole image to ``S x S`` (352 for the
released model) without keeping the aspect ratio, and the decoder's logits
cover that square, so they map back to the original ``H x W`` by a plain
bilinear resize; the probability map is the sigmoid of the resized logits.

Prompts:

* ``text``: the phrase, tokenised by the model's CLIP tokenizer.
* ``reference``: the reference image prepared as the best visual prompt of
  the CLIPSeg paper's visual-prompt-engineering study (crop to the object,
  blur the background and darken it to 10 %), see :func:`highlight_reference`,
  then CLIP-encoded through ``conditional_pixel_values``.
* both: the mean of the two conditional embeddings (CLIPSeg is trained with
  interpolations between text and visual embeddings, so their mean is an
  embedding of the same space).

The mask is ``probability >= threshold`` (default 0.5); its score is the mean
probability inside the mask (0 for an empty mask).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import torch

from ..devices import AUTO, resolve_device
from ..errors import SegpromptError
from ..hub import CHANNELS_LAST, PretrainedModel, load_pretrained
from ..precision import autocast, check_precision, model_id_suffix
from ..prompts import Prompt, VisualReference
from . import register
from .base import Embedding, Segmenter
from ..progress import ProgressCallback, no_progress
from .probability import ProbabilityPrediction

DEFAULT_HUB_ID = "CIDAS/clipseg-rd64-refined"


@dataclass(eq=False)
class ClipSegEmbedding(Embedding):
    """CLIP's vision tower on one image, as CLIPSeg's decoder reads it.

    Attributes:
        activations: ``(L, 1, 1 + P, D)`` float32 hidden states of the layers
            ``config.extract_layers`` (``L`` of them) for the ``P`` patches plus
            the class token.
    """

    activations: torch.Tensor


def highlight_reference(
    reference: VisualReference,
    *,
    background: float = 0.1,
    blur_fraction: float = 0.02,
    context: float = 0.1,
) -> np.ndarray:
    """The reference image as a CLIPSeg visual prompt.

    The background (outside the mask) is Gaussian-blurred with sigma
    ``blur_fraction`` x the crop side and scaled to ``background`` of its
    brightness; the result is cropped to a square around the mask's bounding
    box, ``context`` x the box side larger on each side, clipped to the image.

    Returns:
        ``(s, s', 3)`` uint8 RGB (square unless clipped at the image border).
    """
    image = reference.image.astype(np.float32)
    rows, cols = np.nonzero(reference.mask)
    height, width = reference.mask.shape
    centre_y, centre_x = (rows.min() + rows.max() + 1) / 2, (cols.min() + cols.max() + 1) / 2
    half = max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min()) * (0.5 + context)
    y0, y1 = max(0, int(np.floor(centre_y - half))), min(height, int(np.ceil(centre_y + half)))
    x0, x1 = max(0, int(np.floor(centre_x - half))), min(width, int(np.ceil(centre_x + half)))
    sigma = max(blur_fraction * 2 * half, 0.5)
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    foreground = reference.mask[..., None]
    composed = np.where(foreground, image, blurred * background)
    return np.clip(np.rint(composed[y0:y1, x0:x1]), 0, 255).astype(np.uint8)


@register
class ClipSegSegmenter(Segmenter):
    """CLIPSeg through transformers' ``CLIPSegForImageSegmentation``.

    Args:
        model_dir: a local model folder (``config.json``, weights, processor and
            tokenizer files); default: see :mod:`segprompt.hub`.
        hub_id: the hub model to use when no ``model_dir`` is given.
        threshold: probability above which a pixel is in the mask, in ``(0, 1)``.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the image encoder's
            autocast dtype (:mod:`segprompt.precision`).
        pretrained: an already loaded model and processor (e.g. random-init for
            benchmarks); overrides ``model_dir`` and ``hub_id``.
    """

    name = "clipseg"
    accepts = frozenset({"text", "reference"})
    description = "CLIPSeg: a text phrase or a visual reference -> one mask and a probability map"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        hub_id: str = DEFAULT_HUB_ID,
        threshold: float = 0.5,
        device: str | torch.device = AUTO,
        precision: str = "fp32",
        pretrained: PretrainedModel | None = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise SegpromptError(f"clipseg: threshold must lie in (0, 1), got {threshold}")
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        loaded = pretrained or load_pretrained(CLIPSegForImageSegmentation, CLIPSegProcessor, hub_id, model_dir)
        self.model = loaded.model.to(self.device)
        self.processor = loaded.processor
        self.threshold = float(threshold)
        self._model_id = loaded.model_id

    @property
    def model_id(self) -> str:
        return self._model_id + model_id_suffix(self.precision)

    def _pixel_values(self, rgb: np.ndarray) -> torch.Tensor:
        """``(1, 3, S, S)`` float32: the processor's resize to ``S x S`` and ImageNet normalisation."""
        return self.processor.image_processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST).pixel_values.to(self.device)

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> ClipSegEmbedding:
        """Run CLIP's vision tower once (see :class:`ClipSegEmbedding`)."""
        rgb = self._rgb(image)
        progress(0, 1, "CLIPSeg: encoding the image")
        with torch.inference_mode(), autocast(self.device, self.precision):
            vision = self.model.clip.get_image_features(
                pixel_values=self._pixel_values(rgb), output_hidden_states=True
            )
        activations = torch.stack([vision.hidden_states[i + 1].float() for i in self.model.extract_layers])
        progress(1, 1, "CLIPSeg: image encoded")
        return ClipSegEmbedding(self.name, self.model_id, (rgb.shape[0], rgb.shape[1]), rgb, activations)

    def conditional_embedding(self, prompt: Prompt) -> torch.Tensor:
        """``(1, projection_dim)`` float32: what CLIPSeg's decoder is conditioned on (see module docstring)."""
        parts = []
        with torch.inference_mode():
            if prompt.text is not None:
                tokens = self.processor.tokenizer([prompt.text.phrase], truncation=True, return_tensors="pt")
                parts.append(
                    self.model.get_conditional_embeddings(
                        batch_size=1,
                        input_ids=tokens.input_ids.to(self.device),
                        attention_mask=tokens.attention_mask.to(self.device),
                    )
                )
            if prompt.reference is not None:
                visual = self._pixel_values(highlight_reference(prompt.reference))
                parts.append(self.model.get_conditional_embeddings(batch_size=1, conditional_pixel_values=visual))
        return torch.stack(parts).mean(dim=0)

    def logits(self, embedding: ClipSegEmbedding, prompt: Prompt) -> torch.Tensor:
        """``(S, S)`` float32 decoder logits on the processor's square (no checks; :meth:`predict` checks)."""
        activations = embedding.activations.to(self.device)
        with torch.inference_mode():
            decoded = self.model.decoder(tuple(activations), self.conditional_embedding(prompt))
        return decoded.logits.reshape(decoded.logits.shape[-2:])

    def _predict(self, embedding: Embedding, prompt: Prompt, multimask: bool) -> ProbabilityPrediction:
        # multimask is moot: CLIPSeg makes one map per prompt, hence K = 1.
        height, width = embedding.image_hw
        logits = self.logits(embedding, prompt)[None, None]
        resized = torch.nn.functional.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
        probabilities = torch.sigmoid(resized)[0, 0].float().cpu().numpy()
        mask = probabilities >= self.threshold
        score = float(probabilities[mask].mean()) if mask.any() else 0.0
        return ProbabilityPrediction(
            masks=mask[None], scores=np.array([score], np.float32), probabilities=probabilities
        )

    def probabilities(self, embedding: Embedding, prompt: Prompt) -> np.ndarray:
        """``(H, W)`` float32 foreground probability of ``prompt`` in original-image pixels."""
        return cast(ProbabilityPrediction, self.predict(embedding, prompt)).probabilities
