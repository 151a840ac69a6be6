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
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..errors import SegpromptError
from ..prompts import LOW_RES_SIDE, Prompt
from . import register
from .base import Embedding, Prediction, Segmenter
from ..progress import ProgressCallback, no_progress
from .sam_arch import IMAGE_SIZE, SAM_ARCHITECTURES, build_sam
from .sam_fast import FastMaskDecoder, low_res_extent

#: Logit magnitude of a converted binary mask prompt: ``log(p / (1 - p))`` for
#: ``p`` clipped to ``[1e-3, 1 - 1e-3]``, so fully inside/outside cells get
#: about +-6.9, the range of confident SAM logits.
_MASK_PROMPT_EPS = 1e-3
#: Low-resolution logits per input pixel along each axis (256 / 1024).
_LOW_RES_STRIDE = IMAGE_SIZE // LOW_RES_SIDE


def binary_mask_to_logits(mask: np.ndarray, side: int = LOW_RES_SIDE, keep_aspect: bool = True) -> np.ndarray:
    """Convert an ``(H, W)`` bool mask in image pixels to SAM ``(side, side)`` float32 mask-input logits.

    The mask is resized the way the model resizes the image, with area
    averaging so each cell holds the covered fraction ``p``: with
    ``keep_aspect`` (SAM, SAM-HQ) the longest side to ``side`` (256 instead of
    1024), placed in the top-left corner like SAM pads its input, the padding
    counting as background; without it (SAM 2.1, EdgeTAM, SAM 3's tracker,
    whose processors squash the image to a square) to ``side x side``. The
    result is ``log(p / (1 - p))`` with ``p`` clipped to ``[1e-3, 1 - 1e-3]``.
    """
    height, width = mask.shape
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(height, width, side) if keep_aspect else (side, side)
    fraction = cv2.resize(mask.astype(np.float32), (new_w, new_h), interpolation=cv2.INTER_AREA)
    padded = np.zeros((side, side), np.float32)
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
    rows, cols = low_res_extent(input_hw)
    block = low_res[..., :rows, :cols]
    logits = F.interpolate(
        block, (rows * _LOW_RES_STRIDE, cols * _LOW_RES_STRIDE), mode="bilinear", align_corners=False
    )[..., :h, :w]
    if (h, w) != tuple(image_hw):
        logits = F.interpolate(logits, tuple(image_hw), mode="bilinear", align_corners=False)
    return logits


@dataclass
class PromptScores:
    """Result of :meth:`SamSegmenter.score_prompts` for ``N`` prompts with ``K`` candidates each.

    Attributes:
        iou: ``(N,)`` float64 IoU of the selected mask with the ground truth
            (:func:`segprompt.metrics.iou` convention: 1.0 when both are empty).
        selected: ``(N,)`` int64 index of the scored candidate in ``0..K-1``.
        scores: ``(N, K)`` float32 SAM predicted IoU of every candidate.
        low_res_logits: ``(N, 256, 256)`` float32 logits of the selected
            candidate (``keep_logits=True``), else ``None``.
        n_exact: how many prompts were decoded again with the reference
            decoder (``exact=True``).
    """

    iou: np.ndarray
    selected: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray | None = None
    n_exact: int = 0


class _PackedTarget:
    """A ground-truth mask bit-packed along rows, for IoU by popcount."""

    def __init__(self, gt_mask: np.ndarray, ignore: np.ndarray | None, image_hw: tuple[int, int]) -> None:
        gt = np.asarray(gt_mask) != 0
        if gt.shape != tuple(image_hw):
            raise ValueError(f"gt_mask shape {gt.shape} differs from the image shape {tuple(image_hw)}")
        keep = np.ones_like(gt)
        if ignore is not None:
            ignore = np.asarray(ignore, dtype=bool)
            if ignore.shape != gt.shape:
                raise ValueError(f"ignore shape {ignore.shape} differs from the image shape {gt.shape}")
            keep = ~ignore
        self.keep = np.packbits(keep, axis=-1)
        self.gt = np.packbits(gt & keep, axis=-1)
        self.n_gt = int(np.bitwise_count(self.gt).sum())

    def iou(self, masks: np.ndarray) -> np.ndarray:
        """``(..., H, W)`` bool masks -> ``(...)`` float64 IoU with the target."""
        pred = np.packbits(masks, axis=-1) & self.keep
        inter = np.bitwise_count(pred & self.gt).sum(axis=(-2, -1), dtype=np.int64)
        union = np.bitwise_count(pred).sum(axis=(-2, -1), dtype=np.int64) + self.n_gt - inter
        return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


#: Below these margins the fast decoder's rounding (about 1e-6 relative) could flip a pixel
#: or the choice between candidates, so the prompt is decoded again with the reference decoder.
LOGIT_MARGIN = 1e-4
SCORE_MARGIN = 1e-5


def _uncertain(logits: torch.Tensor, scores: torch.Tensor, best_only: bool) -> np.ndarray:
    """``(B,)`` bool: fast-decoded prompts whose mask or choice could differ from the reference decoder's.

    ``logits`` ``(B, K', H, W)`` are the upsampled candidates, ``scores`` ``(B, K)``.
    """
    near_zero = logits.abs().flatten(1).amin(dim=1) <= LOGIT_MARGIN
    if best_only and scores.shape[1] > 1:
        top2 = scores.topk(2, dim=1).values
        near_zero |= (top2[:, 0] - top2[:, 1]) <= SCORE_MARGIN
    return near_zero.cpu().numpy()


def _batches(prompts: Sequence[Prompt], size: int) -> list[list[int]]:
    """Indices of ``prompts`` in groups of at most ``size`` that can be decoded together.

    The prompt encoder batches only prompts with the same parts and the same
    number of points; order within a group follows ``prompts``.
    """
    groups: dict[tuple[int, bool, bool], list[int]] = defaultdict(list)
    for index, prompt in enumerate(prompts):
        n_points = 0 if prompt.points is None else len(prompt.points)
        groups[(n_points, prompt.box is not None, prompt.mask is not None)].append(index)
    return [group[start : start + size] for group in groups.values() for start in range(0, len(group), max(1, size))]


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
        self.fast_decoder = FastMaskDecoder(self.model)

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
    def predict_best(
        self, embedding: Embedding, prompt: Prompt, multimask: bool = True, *, exact: bool = False
    ) -> Prediction:
        """Like :meth:`predict`, but decode fast and upsample only the highest-scoring mask (``K = 1``).

        The interactive path: one click needs one mask. It uses
        :class:`~segprompt.backends.sam_fast.FastMaskDecoder` (the same result
        as ``SamPredictor`` up to float rounding of the logits, about 1e-6),
        computes only the chosen candidate's logits and upsamples only that
        one. ``low_res_logits`` is ``(1, 256, 256)``, ready to feed back as a
        ``"logits"`` mask prompt. ``exact=True`` decodes again with the
        reference decoder when a pixel or the choice could differ (see
        :meth:`score_prompts`), making the mask equal ``predict(...).best_mask``.
        """
        self._check_scoring_inputs(embedding, [prompt])
        sparse, dense = self._encode_prompts([prompt], embedding.image_hw)
        low_res, scores = self.fast_decoder.decode(
            embedding.data["features"].to(self.device), sparse, dense, multimask, best_only=True
        )
        logits = upsample_logits(low_res, embedding.data["input_hw"], embedding.image_hw)
        if exact and _uncertain(logits, scores, best_only=True)[0]:
            low_res, scores, logits = self._exact_candidates(embedding, prompt, multimask, True, low_res.shape[-2:])
        return Prediction(
            masks=(logits[0] > self.model.mask_threshold).cpu().numpy(),
            scores=scores[0].max().reshape(1).float().cpu().numpy(),
            low_res_logits=low_res[0].float().cpu().numpy(),
        )

    @torch.inference_mode()
    def score_prompts(
        self,
        embedding: Embedding,
        prompts: Sequence[Prompt],
        gt_mask: np.ndarray,
        *,
        multimask: bool = True,
        select: Literal["best", "oracle"] = "best",
        ignore: np.ndarray | None = None,
        keep_logits: bool = False,
        exact: bool = False,
        chunk_size: int = 4,
        progress: ProgressCallback = no_progress,
    ) -> PromptScores:
        """IoU with ``gt_mask`` of SAM's answer to each of many prompts on one image: the batch-benchmark path.

        The same numbers as calling ``SamPredictor.predict`` for each prompt and
        scoring the chosen mask with :func:`segprompt.metrics.iou`, much faster:
        the decoder is :class:`~segprompt.backends.sam_fast.FastMaskDecoder`
        (prompt-independent work done once per embedding, equal logits up to
        float rounding), prompts with the same parts and point count are
        decoded ``chunk_size`` at a time, only the scored masks are upsampled
        (only the image area), and the IoU is counted on bit-packed masks.
        Reuse one ``embedding`` for every strategy and timestep of an image.

        Args:
            embedding: from :meth:`embed` (or :class:`~segprompt.cache.EmbeddingCache`).
            prompts: ``N`` prompts in original-image ``(x, y)`` pixels, each any
                mix of points, box and mask (as :meth:`predict` takes).
            gt_mask: ``(H, W)`` ground truth, non-zero = object.
            multimask: SAM's three candidates (``True``) or its single mask.
            select: ``"best"`` scores the candidate with the highest predicted
                IoU (what a user sees); ``"oracle"`` the candidate with the
                highest true IoU (upsamples all candidates).
            ignore: optional ``(H, W)`` bool mask of pixels left out of the IoU
                (as in :func:`segprompt.metrics.iou`).
            keep_logits: also return each selected candidate's ``(256, 256)``
                low-res logits (to feed back as a mask prompt at the next
                timestep); costs ``N * 256 KiB``.
            exact: decode again with the reference decoder every prompt whose
                upsampled logits come within :data:`LOGIT_MARGIN` of zero (or
                whose top two predicted IoUs within :data:`SCORE_MARGIN`), so
                masks, choices and IoUs equal ``SamPredictor``'s. Trained
                weights give confident logits and few such prompts; random-init
                weights give logits of +-0.2 and nearly all. ``False`` keeps
                the fast result: a pixel whose logit is within float rounding
                (~1e-7) of zero may flip, changing that IoU by ``1 / union``.
            chunk_size: prompts decoded together; memory grows about 40 MB per prompt.
            progress: ``progress(done, N, message)`` after each chunk.

        Returns:
            :class:`PromptScores` in the order of ``prompts``
            (``n_exact`` counts the prompts decoded again).

        Raises:
            UnsupportedPromptError, PromptError: as :meth:`predict`, naming the
                prompt index.
            ValueError: embedding from another model, ``gt_mask``/``ignore`` of
                another shape, unknown ``select``.
        """
        if select not in ("best", "oracle"):
            raise ValueError(f"select must be 'best' or 'oracle', got {select!r}")
        self._check_scoring_inputs(embedding, prompts)
        target = _PackedTarget(gt_mask, ignore, embedding.image_hw)
        n_prompts, n_candidates = len(prompts), 3 if multimask else 1
        result = PromptScores(
            iou=np.zeros(n_prompts),
            selected=np.zeros(n_prompts, np.int64),
            scores=np.zeros((n_prompts, n_candidates), np.float32),
            low_res_logits=np.zeros((n_prompts, LOW_RES_SIDE, LOW_RES_SIDE), np.float32) if keep_logits else None,
        )
        features = embedding.data["features"].to(self.device)
        input_hw, image_hw = embedding.data["input_hw"], embedding.image_hw
        done = 0
        for indices in _batches(prompts, chunk_size):
            sparse, dense = self._encode_prompts([prompts[i] for i in indices], image_hw)
            low_res, scores = self.fast_decoder.decode(
                features,
                sparse,
                dense,
                multimask,
                input_hw=None if keep_logits else input_hw,
                best_only=select == "best",
            )
            logits = upsample_logits(low_res, input_hw, image_hw)
            redo = _uncertain(logits, scores, best_only=select == "best") if exact else np.zeros(len(indices), bool)
            result.n_exact += int(redo.sum())
            for row in np.flatnonzero(redo):
                low_res[row], scores[row], logits[row] = self._exact_candidates(
                    embedding, prompts[indices[row]], multimask, select == "best", low_res.shape[-2:]
                )
            masks = (logits > self.model.mask_threshold).cpu().numpy()
            ious = target.iou(masks)  # (B, K')
            chosen = ious.argmax(axis=1) if select == "oracle" else scores.argmax(dim=1).cpu().numpy()
            rows = np.arange(len(indices))
            result.iou[indices] = ious[rows, chosen if select == "oracle" else 0]
            result.selected[indices] = chosen
            result.scores[indices] = scores.float().cpu().numpy()
            if keep_logits:
                result.low_res_logits[indices] = low_res[rows, chosen if select == "oracle" else 0].float().cpu().numpy()
            done += len(indices)
            progress(done, n_prompts, "scoring prompts")
        return result

    def _exact_candidates(
        self, embedding: Embedding, prompt: Prompt, multimask: bool, best_only: bool, low_res_hw: torch.Size
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reference decoder's ``(low_res (1, K', *low_res_hw), scores (1, K), logits (1, K', H, W))``.

        Used where the fast decoder's float rounding could change the answer.
        """
        low_res, scores = self.decode(embedding, **self.prompt_tensors(prompt, embedding.image_hw), multimask=multimask)
        if best_only:
            best = int(scores[0].argmax())
            low_res = low_res[:, best : best + 1]
        low_res = low_res[..., : low_res_hw[0], : low_res_hw[1]]
        return low_res, scores, upsample_logits(low_res, embedding.data["input_hw"], embedding.image_hw)

    def _encode_prompts(self, prompts: Sequence[Prompt], image_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sparse ``(B, n, 256)`` and dense ``(B, 256, 64, 64)`` embeddings (``None`` without mask prompts).

        All prompts must have the same parts and point count (see :func:`_batches`).
        """
        parts = [self.prompt_tensors(prompt, image_hw) for prompt in prompts]
        points = boxes = masks = None
        if parts[0]["points"] is not None:
            points = (torch.cat([p["points"][0] for p in parts]), torch.cat([p["points"][1] for p in parts]))
        if parts[0]["boxes"] is not None:
            boxes = torch.cat([p["boxes"] for p in parts])
        if parts[0]["masks"] is not None:
            masks = torch.cat([p["masks"] for p in parts])
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return sparse, dense if masks is not None else None

    def _check_scoring_inputs(self, embedding: Embedding, prompts: Sequence[Prompt]) -> None:
        self._check_embedding(embedding)
        for index, prompt in enumerate(prompts):
            try:
                self.check_prompt(prompt)
                prompt.validate_for(embedding.image_hw)
            except SegpromptError as exc:
                raise type(exc)(f"prompts[{index}]: {exc}") from exc

    def _check_embedding(self, embedding: Embedding) -> None:
        if embedding.backend != self.name or embedding.model_id != self.model_id:
            raise ValueError(
                f"embedding was made by backend {embedding.backend!r} / model {embedding.model_id!r}, "
                f"not {self.name!r} / {self.model_id!r}"
            )


__all__ = ["PromptScores", "SamSegmenter", "binary_mask_to_logits", "state_dict_fingerprint", "upsample_logits"]
