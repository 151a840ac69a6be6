"""The transformers SAM family: SAM 2.1, EdgeTAM, SAM 3's tracker and SAM-HQ behind one :class:`Segmenter`.

These models share SAM's promptable design: an image encoder run once per
image, then a prompt encoder and a two-way mask decoder per prompt. They
differ in the encoder (Hiera, RepViT, SAM 3's ViT, SAM's ViT) and in the frame
the processor puts the image in. :class:`SamFamilySegmenter` holds the common
part once; each backend module names its model classes, hub ids and frame.

Frames (``H x W`` original image, ``S`` the model's input side):

* ``"square"`` (SAM 2.1, EdgeTAM, SAM 3's tracker; ``Sam2Processor``): the image
  is resized to ``S x S`` without keeping its aspect ratio (1024, SAM 3: 1008);
  a point ``(x, y)`` goes to ``(x * S / W, y * S / H)``.
* ``"padded"`` (SAM-HQ; ``SamHQProcessor``, like segment-anything): the longest
  side is resized to ``S`` (``h x w``), the rest padded at the bottom and right;
  a point goes to ``(x * w / W, y * h / H)``.

Low-resolution logits (``Prediction.low_res_logits``, a ``"logits"`` mask
prompt) are ``L x L`` with ``L = 4 x`` the feature grid (256; 288 for SAM 3's
tracker) and cover the model input (``S x S``, padding included). A binary
mask prompt is put into that frame by the embedding's
:class:`~segprompt.backends.frame.ModelFrame` (``mask_logits``).

Masks and scores are those of the transformers pipeline (processor -> model
-> ``processor.post_process_masks``, threshold 0): the encoder runs in
:meth:`SamFamilySegmenter.embed` (``get_image_embeddings``), each prompt
through the model's ``forward`` with those embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from ..devices import AUTO, resolve_device
from ..errors import PromptError, SegpromptError
from ..hub import CHANNELS_LAST, PretrainedModel, load_pretrained
from ..precision import autocast, check_precision, model_id_suffix
from ..prompts import Prompt
from ..progress import ProgressCallback, no_progress
from .base import (
    CANDIDATE_SELECTIONS,
    BatchPredictor,
    CandidateBatch,
    CandidateSelection,
    Embedding,
    Prediction,
    Segmenter,
    chosen_candidates,
    chunk_size_for,
    prompt_groups,
)
from .frame import ModelFrame

def bytes_per_prompt(image_hw: tuple[int, int]) -> int:
    """Memory one prompt of a batch needs: about 16 MiB in the decoder, plus 16 bytes per image pixel.

    The decoder's two-way blocks work on the ``64 x 64`` (or ``72 x 72``)
    token grid; the chosen candidates' upsampled float32 logits and masks
    take 4 + 1 bytes per pixel of the ``(H, W)`` image, for up to three
    candidates.
    """
    return 16 * 2**20 + 16 * int(image_hw[0]) * int(image_hw[1])


@dataclass(eq=False)
class SamFamilyEmbedding(Embedding):
    """What the mask decoder of a transformers SAM-family model reads for one image.

    Attributes:
        image_embeddings: the encoder's outputs in the order the model's
            ``forward(image_embeddings=...)`` takes them: SAM 2 family
            ``((1, C/8, 4g, 4g), (1, C/4, 2g, 2g), (1, C, g, g))`` (two
            high-resolution maps already projected by the decoder's
            ``conv_s0``/``conv_s1``, then the ``g x g`` image embedding);
            SAM-HQ ``((1, C, 64, 64),)``.
        intermediate_embeddings: SAM-HQ only: the ViT's global-attention
            layers' outputs ``(1, 64, 64, D)`` the HQ decoder fuses; ``()`` otherwise.
        input_hw: ``(h, w)`` of the image inside the model input after resizing
            (``(S, S)`` in the square frame).
        input_side: ``S``, the side of the model's square input.
    """

    image_embeddings: tuple[torch.Tensor, ...]
    intermediate_embeddings: tuple[torch.Tensor, ...]
    input_hw: tuple[int, int]
    input_side: int

    @property
    def frame(self) -> ModelFrame:
        """The image inside the model's ``S x S`` input."""
        return ModelFrame(self.image_hw, self.input_hw, self.input_side)


@dataclass
class PromptTensors:
    """One prompt (or a batch of ``P`` prompts of the same parts and point count) in the model's input frame.

    Attributes:
        points: ``(1, P, N, 2)`` float32 ``(x, y)`` in input pixels, or ``None``.
        labels: ``(1, P, N)`` int64, 1 include / 0 exclude, or ``None``.
        boxes: ``(1, P, 4)`` float32 ``(x0, y0, x1, y1)`` in input pixels, or ``None``.
        masks: ``(1, 1, L, L)`` float32 low-resolution logits, or ``None``
            (the models take one dense prompt per image, shared by the batch).
    """

    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    boxes: torch.Tensor | None = None
    masks: torch.Tensor | None = None

    def as_kwargs(self) -> dict[str, torch.Tensor | None]:
        return {"input_points": self.points, "input_labels": self.labels, "input_boxes": self.boxes, "input_masks": self.masks}


class SamFamilySegmenter(Segmenter, BatchPredictor):
    """Base of the transformers SAM-family backends (points, box, mask prompts).

    Declares :class:`~segprompt.backends.base.BatchPredictor`: the models take
    ``P`` prompts of one image at once (``input_points (1, P, N, 2)``), so
    :meth:`predict_batches` decodes a benchmark's prompts in batches.

    Subclasses set :attr:`name`, :attr:`description`, :attr:`hub_ids`
    (variant -> hub id), :attr:`default_variant` and :meth:`model_classes`;
    SAM-HQ overrides the encoder/decoder hooks (and so its frame).

    Args:
        model_dir: a local model folder (``save_pretrained`` layout); default
            see :mod:`segprompt.hub`.
        variant: which released size to use without ``model_dir``
            (a key of :attr:`hub_ids`).
        hub_id: a hub model overriding ``variant``.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the image encoder's
            autocast dtype (:mod:`segprompt.precision`).
        pretrained: an already loaded model and processor (e.g. random-init);
            overrides ``model_dir``, ``variant`` and ``hub_id``.
    """

    accepts = frozenset({"points", "box", "mask"})
    #: Variant -> hub id of the released weights.
    hub_ids: ClassVar[dict[str, str]]
    default_variant: ClassVar[str]
    #: Said when the weights cannot be found offline (e.g. SAM 3's licence gate).
    access_note: ClassVar[str] = ""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        variant: str | None = None,
        hub_id: str | None = None,
        device: str | torch.device = AUTO,
        precision: str = "fp32",
        pretrained: PretrainedModel | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        variant = self.default_variant if variant is None else variant
        if hub_id is None:
            if variant not in self.hub_ids:
                raise SegpromptError(f"{self.name}: unknown variant {variant!r}; known: {', '.join(self.hub_ids)}")
            hub_id = self.hub_ids[variant]
        if pretrained is None:
            model_class, processor_class = self.model_classes()
            pretrained = load_pretrained(model_class, processor_class, hub_id, model_dir, access_note=self.access_note)
        self.model = pretrained.model.to(self.device).eval()
        self.processor = pretrained.processor
        self._model_id = pretrained.model_id
        self.hub_id = hub_id

    @classmethod
    def model_classes(cls) -> tuple[Any, Any]:
        """``(model class, processor class)`` of the family member."""
        raise NotImplementedError

    @property
    def model_id(self) -> str:
        return self._model_id + model_id_suffix(self.precision)

    @property
    def low_res_side(self) -> int:
        """``L``: side of the low-resolution logits (4 x the prompt encoder's feature grid)."""
        return int(self.model.prompt_encoder.mask_input_size[0])

    # -- the per-family hooks -------------------------------------------------------------------

    def encode(self, rgb: np.ndarray) -> SamFamilyEmbedding:
        """Run the processor and the image encoder on an ``(H, W, 3)`` uint8 image."""
        inputs = self.processor.image_processor(images=rgb, return_tensors="pt", input_data_format=CHANNELS_LAST)
        side = int(inputs["pixel_values"].shape[-1])
        with torch.inference_mode(), autocast(self.device, self.precision):
            embeddings = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device))
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        levels = tuple(level.float() for level in embeddings)
        return SamFamilyEmbedding(self.name, self.model_id, image_hw, rgb, levels, (), (side, side), side)

    def forward(self, embedding: SamFamilyEmbedding, prompt: PromptTensors, multimask: bool) -> Any:
        """The model's forward on an embedding's features; returns its output (``pred_masks``, ``iou_scores``)."""
        image_embeddings = [tensor.to(self.device) for tensor in embedding.image_embeddings]
        return self.model(image_embeddings=image_embeddings, multimask_output=multimask, **prompt.as_kwargs())

    def post_process(self, pred_masks: torch.Tensor, embedding: SamFamilyEmbedding) -> torch.Tensor:
        """``(1, P, K, L, L)`` logits -> ``(P, K, H, W)`` upsampled logits on their device (the processor's ``post_process_masks``)."""
        return self.processor.post_process_masks(pred_masks, [list(embedding.image_hw)], binarize=False)[0]

    # -- Segmenter ----------------------------------------------------------------------------

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> SamFamilyEmbedding:
        """Encode the image once (see :class:`SamFamilyEmbedding`)."""
        rgb = self._rgb(image)
        progress(0, 1, f"{self.name}: encoding the image")
        embedding = self.encode(rgb)
        progress(1, 1, f"{self.name}: image encoded")
        return embedding

    def prompt_tensors(self, prompts: Sequence[Prompt], frame: ModelFrame) -> PromptTensors:
        """The model inputs of ``P`` prompts with the same parts (one mask at most, shared), in the input frame."""
        first = prompts[0]
        tensors = PromptTensors()
        if first.points is not None or first.box is not None:
            tensors.points, tensors.labels, tensors.boxes = self.geometry_tensors(prompts, frame.image_hw, frame.input_hw)
        if first.mask is not None:
            tensors.masks = torch.as_tensor(self.mask_logits(first, frame), device=self.device)[None, None]
        return tensors

    def geometry_tensors(
        self, prompts: Sequence[Prompt], image_hw: tuple[int, int], input_hw: tuple[int, int]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """``(points, labels, boxes)`` of ``P`` prompts, converted by the family's processor.

        The square family's processor scales the coordinates itself
        (``x * S / W``, ``y * S / H``, in float32) and pads prompts with fewer
        points (label -10), so prompts of different point counts batch.
        """
        first = prompts[0]
        kwargs: dict[str, Any] = {"original_sizes": [list(image_hw)], "return_tensors": "pt"}
        if first.points is not None:
            kwargs["input_points"] = [[p.points.xy.tolist() for p in prompts]]
            kwargs["input_labels"] = [[p.points.labels.tolist() for p in prompts]]
        if first.box is not None:
            kwargs["input_boxes"] = [[p.box.as_array().tolist() for p in prompts]]
        encoded = self.processor(**kwargs)
        points, labels, boxes = (encoded.get(key) for key in ("input_points", "input_labels", "input_boxes"))
        return tuple(None if t is None else t.to(self.device) for t in (points, labels, boxes))  # type: ignore[return-value]

    def mask_logits(self, prompt: Prompt, frame: ModelFrame) -> np.ndarray:
        """``(L, L)`` float32 low-resolution logits of the prompt's mask, in this model's frame."""
        side = self.low_res_side
        mask = prompt.mask
        if mask.kind == "logits":
            if mask.data.shape != (side, side):
                raise PromptError(
                    f"mask.data: backend {self.name!r} takes ({side}, {side}) logits (its low-resolution frame), "
                    f"got {mask.data.shape}"
                )
            return np.array(mask.data, np.float32)  # a writable copy for torch
        return frame.mask_logits(mask.data, side)

    def _predict(self, embedding: SamFamilyEmbedding, prompt: Prompt, multimask: bool) -> Prediction:
        with torch.inference_mode():
            output = self.forward(embedding, self.prompt_tensors([prompt], embedding.frame), multimask)
            logits = self.post_process(output.pred_masks, embedding)[0].cpu()
        return Prediction(
            masks=(logits > 0).numpy(),
            scores=output.iou_scores[0, 0].float().cpu().numpy(),
            low_res_logits=output.pred_masks[0, 0].float().cpu().numpy(),
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
        """Decode ``prompts`` ``chunk_size`` at a time through the model's prompt batch dimension.

        Prompts decoded together have the same parts and point count; a
        prompt holding a mask is decoded alone (the models take one mask
        prompt per image). Only the selected candidates are upsampled, on the
        model's device. The arithmetic is the model's own, as in
        :meth:`predict`; ``exact=True`` decodes every prompt alone, which
        gives :meth:`predict`'s masks and scores bit for bit also where a
        batched matrix product rounds differently.

        ``chunk_size=None`` takes :data:`~segprompt.backends.base.CPU_CHUNK_SIZE` on the CPU and, on
        CUDA, as many prompts as half the free memory holds at
        :func:`bytes_per_prompt` each (at most :data:`~segprompt.backends.base.MAX_CHUNK_SIZE`).
        """
        if select not in CANDIDATE_SELECTIONS:
            raise ValueError(f"select must be one of {', '.join(CANDIDATE_SELECTIONS)}, got {select!r}")
        chunk_size = chunk_size_for(chunk_size, self.device, bytes_per_prompt(embedding.image_hw))
        self.check_prompts(embedding, prompts)
        return self._decode_batches(embedding, prompts, multimask, select, keep_logits, 1 if exact else chunk_size)

    def _decode_batches(
        self,
        embedding: SamFamilyEmbedding,
        prompts: Sequence[Prompt],
        multimask: bool,
        select: CandidateSelection,
        keep_logits: bool,
        chunk_size: int,
    ) -> Iterator[CandidateBatch]:
        for indices in prompt_groups(prompts, chunk_size, shared_mask=True):
            with torch.inference_mode():
                tensors = self.prompt_tensors([prompts[i] for i in indices], embedding.frame)
                output = self.forward(embedding, tensors, multimask)
                scores = output.iou_scores[0].float()  # (B, K)
                chosen = chosen_candidates(scores, select)
                rows = torch.arange(len(indices), device=chosen.device)[:, None]
                low_res = output.pred_masks[0][rows, chosen]  # (B, K', L, L)
                masks = self.post_process(low_res[None], embedding) > 0
            yield CandidateBatch(
                indices=list(indices),
                masks=masks,
                candidates=chosen,
                scores=scores,
                low_res_logits=low_res.float() if keep_logits else None,
            )


__all__ = ["PromptTensors", "SamFamilyEmbedding", "SamFamilySegmenter"]
