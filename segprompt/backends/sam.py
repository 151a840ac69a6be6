"""Segment Anything (SAM) backend.

:class:`SamSegmenter` gives the same masks, scores and low-resolution logits
as ``segment_anything.SamPredictor`` on the same weights and prompts; it only
splits ``set_image`` (:meth:`SamSegmenter.embed`, cacheable) from ``predict``
and upsamples logits faster (see :func:`~segprompt.backends.sam_decoder.upsample_logits`).
It also declares :class:`~segprompt.backends.base.BatchPredictor`: many prompts
on one image decoded in batches by the re-associated decoder
(:func:`~segprompt.backends.sam_decoder.decode_masks`), the path of the
benchmarks (:func:`segprompt.evaluation.score_prompts`) and of
:meth:`SamSegmenter.predict_best`.

Coordinate frames:

* prompts: original-image pixels, points and boxes as ``(x, y)`` =
  ``(column, row)``, exactly what ``SamPredictor.predict`` takes;
* model input: the image resized so its longest side is 1024
  (``input_hw = (h, w)``), padded at the bottom/right to 1024 x 1024
  (:meth:`ModelFrame.padded <segprompt.backends.frame.ModelFrame.padded>`);
* low-resolution logits: ``256 x 256``, covering the padded 1024 x 1024 input
  (one logit per 4 x 4 input pixels); the image occupies their top-left
  ``input_hw / 4`` corner.

A binary :class:`~segprompt.prompts.MaskPrompt` (``(H, W)`` bool in image
pixels) is converted into that low-resolution frame by the embedding's frame
(:meth:`ModelFrame.mask_logits <segprompt.backends.frame.ModelFrame.mask_logits>`);
a ``"logits"`` mask prompt is passed through unchanged, as ``SamPredictor``
takes ``mask_input``.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..devices import AUTO, resolve_device
from ..precision import autocast, check_precision, ieee_float32, model_id_suffix
from ..prompts import LOW_RES_SIDE, Prompt
from . import register
from .base import (
    CANDIDATE_SELECTIONS,
    BatchPredictor,
    CandidateBatch,
    CandidateSelection,
    Embedding,
    Prediction,
    Segmenter,
    chunk_size_for,
    prompt_groups,
)
from ..progress import ProgressCallback, no_progress
from .frame import ModelFrame
from .sam_arch import IMAGE_SIZE, PATCH_SIZE, SAM_ARCHITECTURES, build_sam
from .sam_decoder import DecoderContext, Guidance, decode_masks, upsample_logits

#: Side of SAM's image-feature grid (1024 / 16).
GRID_SIDE = IMAGE_SIZE // PATCH_SIZE


def binary_mask_to_logits(mask: np.ndarray, side: int = LOW_RES_SIDE, keep_aspect: bool = True) -> np.ndarray:
    """``(side, side)`` float32 mask-input logits of an ``(H, W)`` bool mask, for an image of the mask's size.

    The frame's conversion (:meth:`ModelFrame.mask_logits
    <segprompt.backends.frame.ModelFrame.mask_logits>`): with ``keep_aspect``
    SAM's padded frame (SAM, SAM-HQ), without it the squashed square (SAM 2.1,
    EdgeTAM, SAM 3's tracker).
    """
    make = ModelFrame.padded if keep_aspect else ModelFrame.squashed
    return make(np.shape(mask), IMAGE_SIZE).mask_logits(mask, side)


@dataclass(eq=False)
class SamEmbedding(Embedding):
    """SAM's embedding of one image: its features and where the image sits in SAM's input.

    Attributes:
        features: ``(1, 256, 64, 64)`` float32 image embedding (the encoder's
            output, equal to ``SamPredictor.features``), on the device it was
            made or loaded on.
        input_hw: ``(h, w)`` of the image after SAM's longest-side-1024 resize.

    The decoder's per-image context (:meth:`decoder_context`) lives here, one
    per device, built once.
    """

    features: torch.Tensor
    input_hw: tuple[int, int]
    _contexts: dict[str, DecoderContext] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def frame(self) -> ModelFrame:
        """The image inside SAM's padded 1024 x 1024 input."""
        return ModelFrame(self.image_hw, self.input_hw, IMAGE_SIZE)

    def decoder_context(self, model: Sam) -> DecoderContext:
        """The prompt-independent decoder inputs on ``model``'s device (built on first use, then shared)."""
        device = torch.device(model.device)
        with self._lock:
            context = self._contexts.get(str(device))
            if context is None:
                context = DecoderContext(model, self.features.to(device))
                self._contexts[str(device)] = context
            return context

    def feature_map(self) -> np.ndarray:
        """``(h, w, 256)`` float32 features of the feature-grid cells the image covers (``ceil(input_hw / 16)``)."""
        rows, cols = self.frame.grid_cells(GRID_SIDE)
        grid = self.features[0, :, :rows, :cols].detach().float().cpu().numpy()
        return np.ascontiguousarray(grid.transpose(1, 2, 0))

    def __getstate__(self) -> dict[str, Any]:
        # contexts and the lock are per process: a copy or another process rebuilds them
        state = dict(self.__dict__)
        state.pop("_contexts")
        state.pop("_lock")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _contexts={}, _lock=threading.Lock())


#: Below these margins the fast decoder's rounding (about 1e-6 relative) could flip a pixel
#: or the choice between candidates, so the prompt is decoded again with the exact decoder.
LOGIT_MARGIN = 1e-4
SCORE_MARGIN = 1e-5


def _uncertain(logits: torch.Tensor, scores: torch.Tensor, select: str) -> np.ndarray:
    """``(B,)`` bool: fast-decoded prompts whose mask or choice could differ from the exact decoder's.

    ``logits`` ``(B, K', H, W)`` are the upsampled candidates, ``scores`` ``(B, K)``.
    """
    near_zero = logits.abs().flatten(1).amin(dim=1) <= LOGIT_MARGIN
    if select == "best" and scores.shape[1] > 1:
        top2 = scores.topk(2, dim=1).values
        near_zero |= (top2[:, 0] - top2[:, 1]) <= SCORE_MARGIN
    return near_zero.cpu().numpy()


def bytes_per_prompt(image_hw: tuple[int, int]) -> int:
    """Memory one prompt of a batch needs in the fast decoder: about 48 MiB, plus 8 bytes per image pixel.

    The two-way blocks and the output upscaling hold a few ``64 x 64 x 256``
    float32 maps per prompt; the upsampled logits, the mask and the IoU's
    temporaries take 4 + 1 + 3 bytes per pixel of the ``(H, W)`` image.
    """
    return 48 * 2**20 + 8 * int(image_hw[0]) * int(image_hw[1])


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
class SamSegmenter(Segmenter, BatchPredictor):
    """Segment Anything with points, a box and/or a mask prompt.

    Args:
        model_type: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (official checkpoints)
            or ``"tiny"`` (random init only; tests).
        checkpoint: a local SAM state-dict file; ``None`` uses the official
            checkpoint of ``model_type`` from :mod:`segprompt.checkpoints`
            (downloaded once, SHA-256 verified).
        model: an already built ``Sam`` to use instead of loading weights
            (e.g. ``build_sam("tiny", seed=0)``); overrides ``checkpoint``.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda[:N]"``
            or ``"mps"`` (:func:`segprompt.devices.resolve_device`): where the
            model, embeddings and batch decoding live.
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the image encoder runs
            under autocast of that dtype (:mod:`segprompt.precision`); the
            decoder stays float32 (its arithmetic is small, and the batch
            scoring path's exactness is float32's).

    ``model_id`` is ``"<model_type>:<first 16 hex of the checkpoint SHA-256>"``,
    or for an injected model ``"<architecture>:state-<first 16 hex of its
    state-dict fingerprint>"``, followed by ``"+bf16"`` / ``"+fp16"`` at reduced
    precision (its embeddings differ).
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
        device: str | torch.device = AUTO,
        precision: str = "fp32",
        progress: ProgressCallback = no_progress,
    ) -> None:
        self.device = resolve_device(device)  # a bad name fails before any weights load
        self.precision = check_precision(precision)
        if model is None:
            from ..checkpoints import load_state_dict, resolve_checkpoint

            path, digest = resolve_checkpoint(model_type, checkpoint, progress)
            model = build_sam(model_type, load_state_dict(path))
            self._model_id: str | None = f"{model_type}:{digest[:16]}"
        else:
            self._model_id = None  # fingerprinted on first use: hashing ViT-H weights takes a second
        self.model: Sam = model.to(self.device).eval()
        self.transform = ResizeLongestSide(self.model.image_encoder.img_size)
        self._model_id_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        with self._model_id_lock:
            if self._model_id is None:
                self._model_id = f"{_architecture_name(self.model)}:state-{state_dict_fingerprint(self.model)[:16]}"
            return self._model_id + model_id_suffix(self.precision)

    @torch.inference_mode()
    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> SamEmbedding:
        """Run the image encoder on an ``(H, W[, C])`` image (what ``SamPredictor.set_image`` does)."""
        rgb = self._rgb(image)
        progress(0, 1, "encoding image")
        resized = self.transform.apply_image(rgb)
        pixels = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()[None]
        with autocast(self.device, self.precision):
            features = self.model.image_encoder(self.model.preprocess(pixels)).float()
        progress(1, 1, "image encoded")
        return SamEmbedding(
            backend=self.name,
            model_id=self.model_id,
            image_hw=(int(rgb.shape[0]), int(rgb.shape[1])),
            image=rgb,
            features=features,
            input_hw=(int(resized.shape[0]), int(resized.shape[1])),
        )

    def prompt_tensors(self, prompt: Prompt, frame: ModelFrame) -> dict[str, Any]:
        """The prompt encoder's inputs for one prompt, batch size 1, in the 1024 input frame.

        Returns ``{"points": (coords (1, N, 2) float32, labels (1, N) int32) | None,
        "boxes": (1, 4) float32 | None, "masks": (1, 1, 256, 256) float32 | None}``,
        converted exactly as ``SamPredictor.predict`` converts its arguments
        (a binary mask by ``frame``'s :meth:`~segprompt.backends.frame.ModelFrame.mask_logits`).
        """
        points = boxes = masks = None
        if prompt.points is not None:
            coords = self.transform.apply_coords(prompt.points.xy, frame.image_hw)
            points = (
                torch.as_tensor(coords, dtype=torch.float, device=self.device)[None],
                torch.tensor(prompt.points.labels, dtype=torch.int, device=self.device)[None],
            )
        if prompt.box is not None:
            box = self.transform.apply_boxes(prompt.box.as_array(), frame.image_hw)
            boxes = torch.as_tensor(box, dtype=torch.float, device=self.device)
        if prompt.mask is not None:
            data = prompt.mask.data if prompt.mask.kind == "logits" else frame.mask_logits(prompt.mask.data, LOW_RES_SIDE)
            masks = torch.tensor(data, dtype=torch.float, device=self.device)[None, None]
        return {"points": points, "boxes": boxes, "masks": masks}

    @torch.inference_mode()
    def encode_prompts(self, prompts: Sequence[Prompt], frame: ModelFrame) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sparse ``(B, n, 256)`` and dense ``(B, 256, 64, 64)`` prompt embeddings (``None`` without mask prompts).

        All prompts must have the same parts and point count (see :func:`~segprompt.backends.base.prompt_groups`).
        """
        parts = [self.prompt_tensors(prompt, frame) for prompt in prompts]
        points = boxes = masks = None
        if parts[0]["points"] is not None:
            points = (torch.cat([p["points"][0] for p in parts]), torch.cat([p["points"][1] for p in parts]))
        if parts[0]["boxes"] is not None:
            boxes = torch.cat([p["boxes"] for p in parts])
        if parts[0]["masks"] is not None:
            masks = torch.cat([p["masks"] for p in parts])
        sparse, dense = self.model.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return sparse, dense if masks is not None else None

    def decode(
        self,
        embedding: SamEmbedding,
        prompts: Sequence[Prompt],
        *,
        multimask: bool,
        select: CandidateSelection = "all",
        exact: bool = True,
        guidance: Guidance | None = None,
        crop: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompt encoder + :func:`~segprompt.backends.sam_decoder.decode_masks` on prompts of one shape.

        ``crop`` returns only the low-resolution block the image reads.
        Returns ``(low_res_logits (B, K', rows, cols), scores (B, K), chosen (B, K'))``.
        """
        sparse, dense = self.encode_prompts(prompts, embedding.frame)
        return decode_masks(
            self.model,
            embedding.decoder_context(self.model),
            sparse,
            dense,
            multimask=multimask,
            select=select,
            exact=exact,
            guidance=guidance,
            input_hw=embedding.input_hw if crop else None,
        )

    def prediction(self, embedding: SamEmbedding, low_res: torch.Tensor, scores: torch.Tensor) -> Prediction:
        """The :class:`Prediction` of one prompt's ``(1, K', 256, 256)`` logits and ``(1, K')`` scores."""
        logits = upsample_logits(low_res, embedding.input_hw, embedding.image_hw)
        return Prediction(
            masks=(logits[0] > self.model.mask_threshold).cpu().numpy(),
            scores=scores[0].float().cpu().numpy(),
            low_res_logits=low_res[0].float().cpu().numpy(),
        )

    def _predict(self, embedding: SamEmbedding, prompt: Prompt, multimask: bool) -> Prediction:
        low_res, scores, _ = self.decode(embedding, [prompt], multimask=multimask)
        return self.prediction(embedding, low_res, scores)

    def predict_best(
        self, embedding: SamEmbedding, prompt: Prompt, multimask: bool = True, *, exact: bool = False
    ) -> Prediction:
        """Like :meth:`predict`, but decode fast and upsample only the highest-scoring mask (``K = 1``).

        The interactive path: one click needs one mask. The re-associated
        decoder gives the same result as ``SamPredictor`` up to float rounding
        of the logits (about 1e-6) and computes and upsamples only the chosen
        candidate. ``low_res_logits`` is ``(1, 256, 256)``, ready to feed back
        as a ``"logits"`` mask prompt. ``exact=True`` decodes again with the
        exact decoder when a pixel or the choice could differ (see
        :meth:`predict_batches`), making the mask equal ``predict(...).best_mask``.
        """
        (batch,) = self.predict_batches(embedding, [prompt], multimask=multimask, keep_logits=True, exact=exact)
        scores = batch.scores.gather(1, batch.candidates)
        return Prediction(
            masks=batch.masks[0].cpu().numpy(),
            scores=scores[0].float().cpu().numpy(),
            low_res_logits=batch.low_res_logits[0].float().cpu().numpy(),
        )

    def predict_batches(
        self,
        embedding: Embedding,
        prompts: Sequence[Prompt],
        *,
        multimask: bool = True,
        select: CandidateSelection = "best",
        keep_logits: bool = False,
        exact: bool = False,
        chunk_size: int | None = None,
    ) -> Iterator[CandidateBatch]:
        """Decode ``prompts`` in batches of one shape (:class:`~segprompt.backends.base.BatchPredictor`).

        The re-associated decoder does the prompt-independent work once per
        embedding and computes and upsamples only the selected candidates
        (and only the image's part of the logits unless ``keep_logits``).
        ``exact=True`` decodes again with the exact decoder every prompt whose
        upsampled logits come within :data:`LOGIT_MARGIN` of zero (or, for
        ``"best"``, whose top two predicted IoUs within :data:`SCORE_MARGIN`),
        so masks and choices equal ``SamPredictor``'s. Trained weights give
        confident logits and few such prompts; random-init weights give logits
        of +-0.2 and nearly all. ``exact=False`` keeps the fast result: a pixel
        whose logit is within float rounding (~1e-7) of zero may flip.

        Memory grows about :func:`bytes_per_prompt` per prompt of a chunk;
        ``chunk_size=None`` takes :data:`~segprompt.backends.base.CPU_CHUNK_SIZE` on the CPU and, on
        CUDA, as many as half the free memory holds (at most
        :data:`~segprompt.backends.base.MAX_CHUNK_SIZE`). On CUDA, decoding runs in IEEE float32
        (:func:`segprompt.precision.ieee_float32`: no TF32), so the margins
        above hold there as on the CPU, and ``exact=True`` equals
        ``SamPredictor`` run without TF32.
        """
        if select not in CANDIDATE_SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(CANDIDATE_SELECTIONS)}, got {select!r}")
        chunk_size = chunk_size_for(chunk_size, self.device, bytes_per_prompt(embedding.image_hw))
        self.check_prompts(embedding, prompts)
        return self._decode_batches(embedding, prompts, multimask, select, keep_logits, exact, chunk_size)

    @torch.inference_mode()
    def _decode_batches(
        self,
        embedding: SamEmbedding,
        prompts: Sequence[Prompt],
        multimask: bool,
        select: CandidateSelection,
        keep_logits: bool,
        exact: bool,
        chunk_size: int,
    ) -> Iterator[CandidateBatch]:
        input_hw, image_hw = embedding.input_hw, embedding.image_hw
        for indices in prompt_groups(prompts, chunk_size):
            chunk = [prompts[i] for i in indices]
            with ieee_float32(self.device):  # per batch: never held while the caller has the batch
                low_res, scores, chosen = self.decode(
                    embedding, chunk, multimask=multimask, select=select, exact=False, crop=not keep_logits
                )
                logits = upsample_logits(low_res, input_hw, image_hw)
                redo = _uncertain(logits, scores, select) if exact else np.zeros(len(indices), bool)
                for row in np.flatnonzero(redo):
                    low_res[row], scores[row], chosen[row] = (
                        part[0]
                        for part in self.decode(embedding, [chunk[row]], multimask=multimask, select=select, crop=not keep_logits)
                    )
                    logits[row] = upsample_logits(low_res[row : row + 1], input_hw, image_hw)[0]
            yield CandidateBatch(
                indices=list(indices),
                masks=logits > self.model.mask_threshold,
                candidates=chosen,
                scores=scores,
                low_res_logits=low_res if keep_logits else None,
                n_exact=int(redo.sum()),
            )


__all__ = [
    "GRID_SIDE",
    "LOGIT_MARGIN",
    "SCORE_MARGIN",
    "SamEmbedding",
    "SamSegmenter",
    "binary_mask_to_logits",
    "bytes_per_prompt",
    "state_dict_fingerprint",
]
