"""SAM 3's shared vision backbone: one perception-encoder ViT read by the detector's and the tracker's necks.

In the ``facebook/sam3`` checkpoint the detector (``Sam3Model``, backend
``sam3``) and the tracker (``Sam3TrackerModel``, backend ``sam3-tracker``) read
the *same* ViT (``detector_model.vision_encoder.backbone``; transformers maps it
into both models), each through its own feature pyramid neck
(``detector_model.vision_encoder.neck`` and ``tracker_neck``). Both backends
declare :class:`~segprompt.backends.base.SharedBackbone` through
:class:`Sam3Backbone`, so a composition of the two runs the ViT once per image.

Frames: the processor resizes the image to ``S x S`` (1008, no aspect kept;
mean = std = 0.5); the ViT's 14-pixel patches give a ``g x g`` grid
(``g = S / 14 = 72``); :meth:`Sam3Backbone.run_backbone` returns its last
hidden state as ``(1, C, g, g)`` (``C = 1024`` at full size), exactly what
``Sam3VisionModel.forward`` hands its neck.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..hub import CHANNELS_LAST
from ..precision import autocast
from .base import SharedBackbone


class Sam3Backbone(SharedBackbone):
    """:class:`~segprompt.backends.base.SharedBackbone` for a backend whose ``model.vision_encoder`` is a ``Sam3VisionModel``.

    The backend sets ``model`` (its transformers model), ``processor`` (with
    an ``image_processor``), ``device`` and ``precision`` (the ViT and the
    neck run under its autocast, :mod:`segprompt.precision`; their outputs
    come back float32), and implements
    :meth:`~segprompt.backends.base.SharedBackbone.embed_from_backbone` from
    the neck on.
    """

    model: Any
    processor: Any
    device: torch.device
    precision: str

    def backbone_module(self) -> torch.nn.Module:
        return self.model.vision_encoder.backbone

    def preprocessing(self) -> dict:
        """The image processor's settings and the encoder's precision: what the ViT's output depends on besides its weights."""
        return {**self.processor.image_processor.to_dict(), "precision": self.precision}

    def pixel_values(self, rgb: np.ndarray) -> torch.Tensor:
        """``(1, 3, S, S)`` float32: the processor's resize and normalisation."""
        inputs = self.processor.image_processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST)
        return inputs["pixel_values"].to(self.device)

    def run_backbone(self, rgb: np.ndarray) -> torch.Tensor:
        """``(1, C, g, g)``: the ViT's last hidden state as a feature map (``Sam3VisionModel.forward`` before the neck)."""
        pixel_values = self.pixel_values(rgb)
        with torch.inference_mode(), autocast(self.device, self.precision):
            hidden = self.model.vision_encoder.backbone(pixel_values).last_hidden_state.float()  # (1, g * g, C)
        patch = self.model.vision_encoder.config.backbone_config.patch_size
        rows, cols = pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch
        return hidden.view(hidden.shape[0], rows, cols, -1).permute(0, 3, 1, 2)

    def neck(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's own feature-pyramid levels ``(1, D, 4g, 4g)``, ``(1, D, 2g, 2g)``, ``(1, D, g, g)``, ``(1, D, g/2, g/2)``."""
        with torch.inference_mode(), autocast(self.device, self.precision):
            levels, _ = self.model.vision_encoder.neck(features.to(self.device))
        return tuple(level.float() for level in levels)


__all__ = ["Sam3Backbone"]
