"""Segment Anything (SAM) backend.

:class:`SamSegmenter` gives the same masks, scores and low-resolution logits
as ``segment_anything.SamPredictor`` on the same weights and prompts; it only
splits ``set_image`` (:meth:`SamSegmenter.embed`, cacheable) from ``predict``
and upsamples logits faster (see :func:`upsample_logits`).

Coordinate frames:

* prompts: original-image pixels, points and boxes as ``(x, y)`` =
  ``(column, row)``, exactly what ``SamPredictor.predict`` takes;
* model input: the image resized so its longest side is 1024
  (``input_hw = (h, w)``), padded at the bottom/right to 1024 x 1024;
* low-resolution logits: ``256 x 256``, covering the padded 1024 x 1024 input
  (one logit per 4 x 4 input pixels); the image occupies their top-left
  ``input_hw / 4`` corner.

A binary :class:`~segprompt.prompts.MaskPrompt` (``(H, W)`` bool in image
pixels) is converted into that low-resolution frame by
:func:`binary_mask_to_logits`; a ``"logits"`` mask prompt is passed through
unchanged, as ``SamPredictor`` takes ``mask_input``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..prompts import LOW_RES_SIDE, Prompt
from . import register
from .base import Embedding, Prediction, ProgressCallback, Segmenter, no_progress
from .sam_arch import IMAGE_SIZE, SAM_ARCHITECTURES, build_sam

#: Logit magnitude of a converted binary mask prompt: ``log(p / (1 - p))`` for
#: ``p`` clipped to ``[1e-3, 1 - 1e-3]``, so fully inside/outside cells get
#: about +-6.9, the range of confident SAM logits.
_MASK_PROMPT_EPS = 1e-3
#: Low-resolution logits per input pixel along each axis (256 / 1024).
_LOW_RES_STRIDE = IMAGE_SIZE // LOW_RES_SIDE


def binary_mask_to_logits(mask: np.ndarray) -> np.ndarray:
    """Convert an ``(H, W)`` bool mask in image pixels to SAM ``(256, 256)`` float32 mask-input logits.

    The mask is resized the way SAM resizes the image (longest side to 256
    instead of 1024, area averaging so each cell holds the covered fraction
    ``p``), placed in the top-left corner like SAM pads its input, and turned
    into logits ``log(p / (1 - p))`` with ``p`` clipped to ``[1e-3, 1 - 1e-3]``.
    The padding counts as background.
    """
    height, width = mask.shape
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(height, width, LOW_RES_SIDE)
    fraction = cv2.resize(mask.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_AREA)
    padded = np.zeros((LOW_RES_SIDE, LOW_RES_SIDE), np.float32)
    padded[:new_h, :new_w] = fraction
    p = np.clip(padded, _MASK_PROMPT_EPS, 1.0 - _MASK_PROMPT_EPS)
    return np.log(p / (1.0 - p)).astype(np.float32)


def upsample_logits(
    low_res: torch.Tensor, input_hw: tuple[int, int], image_hw: tuple[int, int]
) -> torch.Tensor:
    """Upsample ``(B, C, 256, 256)`` logits to ``(B, C, H, W)`` image pixels.

    Gives the same values as ``Sam.postprocess_masks`` (bilinear to
    1024 x 1024, crop to ``input_hw``, bilinear to ``image_hw``) with less
    work: the low-resolution rows/columns that the crop discards are cut off
    first, which leaves every kept output value's bilinear weights and
    neighbours unchanged (the 4x upsampling of the cut block keeps the scale
    exactly 1/4). The second resize is skipped when ``input_hw == image_hw``
    (a bilinear resize to the same size is the identity).
    """
    h, w = input_hw
    # Output row i < h reads source rows floor((i + 0.5) / 4 - 0.5) and the next one, so
    # ceil(h / 4) + 1 rows cover every kept row (clamped to the 256 available).
    rows = min(LOW_RES_SIDE, -(-h // _LOW_RES_STRIDE) + 1)
    cols = min(LOW_RES_SIDE, -(-w // _LOW_RES_STRIDE) + 1)
    block = low_res[..., :rows, :cols]
    logits = F.interpolate(
        block, (rows * _LOW_RES_STRIDE, cols * _LOW_RES_STRIDE), mode="bilinear", align_corners=False
    )[..., :h, :w]
    if (h, w) != tuple(image_hw):
        logits = F.interpolate(logits, tuple(image_hw), mode="bilinear", align_corners=False)
    return logits


def state_dict_fingerprint(model: torch.nn.Module) -> str:
    """Hex SHA-256 over every parameter and buffer (name, dtype, shape, bytes) of ``model``."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


def _architecture_name(model: Sam) -> str:
    """The :data:`SAM_ARCHITECTURES` key matching ``model``'s encoder, else ``"custom"``."""
    encoder = model.image_encoder
    width = encoder.patch_embed.proj.out_channels
    depth = len(encoder.blocks)
    for name, arch in SAM_ARCHITECTURES.items():
        if (arch.embed_dim, arch.depth) == (width, depth):
            return name
    return "custom"


@register
class SamSegmenter(Segmenter):
    """Segment Anything with points, a box and/or a mask prompt.

    Args:
        model_type: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (official checkpoints)
            or ``"tiny"`` (random init only; tests).
        checkpoint: a local SAM state-dict file; ``None`` uses the official
            checkpoint of ``model_type`` from :mod:`segprompt.checkpoints`
            (downloaded once, SHA-256 verified).
        model: an already built ``Sam`` to use instead of loading weights
            (e.g. ``build_sam("tiny", seed=0)``); overrides ``checkpoint``.
        device: torch device for the model and embeddings.

    ``model_id`` is ``"<model_type>:<first 16 hex of the checkpoint SHA-256>"``,
    or for an injected model ``"<architecture>:state-<first 16 hex of its
    state-dict fingerprint>"``.
    """

    name = "sam"
    accepts = frozenset({"points", "box", "mask"})
    description = "Segment Anything (ViT-B/L/H official checkpoints); points, box, mask prompts"

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: str | os.PathLike | None = None,
        *,
        model: Sam | None = None,
        device: str = "cpu",
        progress: ProgressCallback = no_progress,
    ) -> None:
        if model is None:
            from ..checkpoints import load_state_dict, resolve_checkpoint

            path, digest = resolve_checkpoint(model_type, checkpoint, progress)
            model = build_sam(model_type, load_state_dict(path))
            self._model_id: str | None = f"{model_type}:{digest[:16]}"
        else:
            self._model_id = None  # fingerprinted on first use: hashing ViT-H weights takes a second
        self.model: Sam = model.to(device).eval()
        self.device = torch.device(device)
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = f"{_architecture_name(self.model)}:state-{state_dict_fingerprint(self.model)[:16]}"
        return self._model_id

    @torch.inference_mode()
    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
        """Run the image encoder on an ``(H, W[, C])`` image (what ``SamPredictor.set_image`` does).

        Returns:
            an :class:`Embedding` whose ``data`` holds ``"features"``, the
            ``(1, 256, 64, 64)`` float32 image embedding, and ``"input_hw"``,
            the ``(h, w)`` of the image after the longest-side-1024 resize.
        """
        rgb = self._rgb(image)
        progress(0, 1, "encoding image")
        resized = self.transform.apply_image(rgb)
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        features = self.model.image_encoder(self.model.preprocess(pixels))
        progress(1, 1, "image encoded")
        return Embedding(
            backend=self.name,
            model_id=self.model_id,
            image_hw=(int(rgb.shape[0]), int(rgb.shape[1])),
            image=rgb,
            data={"features": features, "input_hw": (int(resized.shape[0]), int(resized.shape[1]))},
        )

    def prompt_tensors(self, prompt: Prompt, image_hw: tuple[int, int]) -> dict[str, Any]:
        """The prompt encoder's inputs for one prompt, batch size 1, in the 1024 input frame.

        Returns ``{"points": (coords (1, N, 2) float32, labels (1, N) int32) | None,
        "boxes": (1, 4) float32 | None, "masks": (1, 1, 256, 256) float32 | None}``,
        converted exactly as ``SamPredictor.predict`` converts its arguments.
        """
        points = boxes = masks = None
        if prompt.points is not None:
            coords = self.transform.apply_coords(prompt.points.xy, image_hw)
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=self.device)[None],
                torch.tensor(prompt.points.labels, dtype=torch.int, device=self.device)[None],
            )
        if prompt.box is not None:
            box = self.transform.apply_boxes(prompt.box.as_array(), image_hw)
            boxes = torch.as_tensor(box, dtype=torch.float, device=self.device)
        if prompt.mask is not None:
            data = prompt.mask.data if prompt.mask.kind == "logits" else binary_mask_to_logits(prompt.mask.data)
            masks = torch.tensor(data, dtype=torch.float, device=self.device)[None, None]
        return {"points": points, "boxes": boxes, "masks": masks}

    @torch.inference_mode()
    def decode(
        self, embedding: Embedding, points: Any, boxes: Any, masks: Any, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on batched prompt tensors (see :meth:`prompt_tensors`).

        Returns ``(low_res_logits (B, K, 256, 256), scores (B, K))`` with
        ``K = 3`` when ``multimask`` else ``1``.
        """
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return self.model.mask_decoder(
            image_embeddings=embedding.data["features"].to(self.device),
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    @torch.inference_mode()
    def _predict(self, embedding: Embedding, prompt: Prompt, multimask: bool) -> Prediction:
        low_res, scores = self.decode(embedding, **self.prompt_tensors(prompt, embedding.image_hw), multimask=multimask)
        logits = upsample_logits(low_res, embedding.data["input_hw"], embedding.image_hw)
        return Prediction(
            masks=(logits[0] > self.model.mask_threshold).cpu().numpy(),
            scores=scores[0].float().cpu().numpy(),
            low_res_logits=low_res[0].float().cpu().numpy(),
        )

    @torch.inference_mode()
    def predict_best(self, embedding: Embedding, prompt: Prompt, multimask: bool = True) -> Prediction:
        """Like :meth:`predict`, but upsample and return only the highest-scoring mask (``K = 1``).

        The interactive path: one click needs one mask, and upsampling the
        other candidates to full resolution is most of a click's cost on
        large images. The mask equals ``predict(...).best_mask``.
        """
        self.check_prompt(prompt)
        prompt.validate_for(embedding.image_hw)
        self._check_embedding(embedding)
        low_res, scores = self.decode(embedding, **self.prompt_tensors(prompt, embedding.image_hw), multimask=multimask)
        best = int(torch.argmax(scores[0]))
        chosen = low_res[:, best : best + 1]
        logits = upsample_logits(chosen, embedding.data["input_hw"], embedding.image_hw)
        return Prediction(
            masks=(logits[0] > self.model.mask_threshold).cpu().numpy(),
            scores=scores[0, best : best + 1].float().cpu().numpy(),
            low_res_logits=chosen[0].float().cpu().numpy(),
        )

    def _check_embedding(self, embedding: Embedding) -> None:
        if embedding.backend != self.name or embedding.model_id != self.model_id:
            raise ValueError(
                f"embedding was made by backend {embedding.backend!r} / model {embedding.model_id!r}, "
                f"not {self.name!r} / {self.model_id!r}"
            )


__all__ = ["SamSegmenter", "binary_mask_to_logits", "state_dict_fingerprint", "upsample_logits"]
