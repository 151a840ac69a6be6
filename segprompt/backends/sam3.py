"""SAM 3 (Carion et al., 2025): promptable concept segmentation -> every matching instance.

A concept is a noun phrase (``text``) and/or exemplar boxes on the target
image (``exemplars``, each positive or negative). SAM 3's detector
(``Sam3Model``: the perception-encoder ViT, a DETR encoder/decoder conditioned
on the prompt, a presence head and a mask head) returns *all* instances of the
concept and a semantic map. The answer is an
:class:`~segprompt.instances.InstancesPrediction`: the instances best first
(``masks``/``scores``, one empty mask with score 0 when there is none) and
:class:`~segprompt.instances.Instances` with their boxes; ``probabilities`` is
the semantic map, used when several classes are merged.

Pipeline (equal to transformers' ``Sam3Processor`` -> ``Sam3Model`` ->
``post_process_instance_segmentation`` / ``post_process_semantic_segmentation``):

* :meth:`Sam3Segmenter.embed`: the image resized to 1008 x 1008 (no aspect
  kept; mean/std 0.5) through the vision encoder once; the four FPN levels
  (288, 144, 72 and 36 cells a side, 256 channels: about 112 MB at full size)
  are the embedding.
* each prompt: the phrase tokenised by segprompt's offline CLIP tokenizer
  (:func:`segprompt.text_tokenizer.clip_tokenizer`, 32 positions, SAM 3's own
  vocabulary and length); without text the processor's placeholder phrase
  ``"visual"``. Exemplar boxes are normalised by the image size and given as
  ``(cx, cy, w, h)`` with their labels.
* an instance's score is its detection probability x the presence
  probability; instances scoring at least ``threshold`` are kept; a mask is
  its sigmoid mask logits resized bilinearly to ``H x W`` and thresholded at
  ``mask_threshold``; boxes come from the box head in original-image pixels.

Weights: the gated ``facebook/sam3`` checkpoint (see :data:`SAM3_ACCESS_NOTE`);
the same folder serves the ``sam3-tracker`` backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..devices import AUTO, resolve_device
from ..errors import SegpromptError
from ..hub import PretrainedModel, load_pretrained
from ..instances import Instances, InstancesPrediction
from ..precision import check_precision, model_id_suffix
from ..prompts import Prompt
from ..text_tokenizer import clip_tokenizer
from . import register
from ..progress import ProgressCallback, no_progress
from .base import Embedding, Segmenter
from .sam3_tracker import SAM3_ACCESS_NOTE
from .sam3_vision import Sam3Backbone

DEFAULT_HUB_ID = "facebook/sam3"
#: SAM 3's text encoder has 32 positions.
TEXT_POSITIONS = 32

@dataclass(eq=False)
class Sam3Embedding(Embedding):
    """SAM 3's vision features of one image.

    Attributes:
        fpn_hidden_states: the detector neck's levels ``(1, 256, 4g, 4g)``,
            ``(1, 256, 2g, 2g)``, ``(1, 256, g, g)``, ``(1, 256, g/2, g/2)``
            (``g = 72`` for the 1008 input); the detector reads the first three.
    """

    fpn_hidden_states: tuple[torch.Tensor, ...]


def sam3_processor(image_processor: Any) -> Any:
    """A ``Sam3Processor`` around ``image_processor`` with segprompt's offline CLIP tokenizer (32 positions)."""
    from transformers import Sam3Processor

    return Sam3Processor(image_processor=image_processor, tokenizer=clip_tokenizer(model_max_length=TEXT_POSITIONS))


@register
class Sam3Segmenter(Segmenter, Sam3Backbone):
    """SAM 3 concept segmentation through transformers' ``Sam3Model``.

    Args:
        model_dir: a local model folder (the ``facebook/sam3`` layout, or a
            ``Sam3Model`` saved with ``save_pretrained``); default see
            :mod:`segprompt.hub`.
        hub_id: hub model used without ``model_dir``.
        threshold: minimum instance score (detection x presence), in ``[0, 1)``.
        mask_threshold: probability above which a pixel is in an instance's
            mask, in ``(0, 1)``.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``: the image encoder's
            autocast dtype (:mod:`segprompt.precision`).
        pretrained: an already loaded ``Sam3Model`` and processor (any
            processor whose ``image_processor`` is SAM 3's); overrides
            ``model_dir`` and ``hub_id``. The tokenizer is always segprompt's.
    """

    name = "sam3"
    accepts = frozenset({"text", "exemplars"})
    description = "SAM 3 concept segmentation: a phrase and/or exemplar boxes -> every instance + semantic map"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        hub_id: str = DEFAULT_HUB_ID,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        device: str | torch.device = AUTO,
        precision: str = "fp32",
        pretrained: PretrainedModel | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.precision = check_precision(precision)
        if not 0.0 <= threshold < 1.0:
            raise SegpromptError(f"sam3: threshold must lie in [0, 1), got {threshold}")
        if not 0.0 < mask_threshold < 1.0:
            raise SegpromptError(f"sam3: mask_threshold must lie in (0, 1), got {mask_threshold}")
        if pretrained is None:
            from transformers import Sam3ImageProcessor, Sam3Model

            pretrained = load_pretrained(Sam3Model, Sam3ImageProcessor, hub_id, model_dir, access_note=SAM3_ACCESS_NOTE)
        image_processor = getattr(pretrained.processor, "image_processor", pretrained.processor)
        self.model = pretrained.model.to(self.device).eval()
        self.processor = sam3_processor(image_processor)
        self.threshold = float(threshold)
        self.mask_threshold = float(mask_threshold)
        self._model_id = pretrained.model_id

    @property
    def model_id(self) -> str:
        return self._model_id + model_id_suffix(self.precision)

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> Sam3Embedding:
        """Run SAM 3's vision encoder once (see :class:`Sam3Embedding`): the shared ViT, then the detector's neck."""
        rgb = self._rgb(image)
        progress(0, 1, "SAM 3: encoding the image")
        embedding = self.embed_from_backbone(rgb, self.run_backbone(rgb))
        progress(1, 1, "SAM 3: image encoded")
        return embedding

    def embed_from_backbone(self, rgb: np.ndarray, features: torch.Tensor) -> Sam3Embedding:
        """The detector's feature pyramid over the ViT's ``features`` (:mod:`segprompt.backends.sam3_vision`)."""
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        return Sam3Embedding(self.name, self.model_id, image_hw, rgb, self.neck(features))

    def vision_embeds(self, embedding: Sam3Embedding) -> Any:
        """The ``Sam3VisionEncoderOutput`` the model's ``forward(vision_embeds=...)`` takes, rebuilt from the embedding."""
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        levels = tuple(level.to(self.device) for level in embedding.fpn_hidden_states)
        encoding = self.model.vision_encoder.neck.position_encoding
        positions = tuple(encoding(level.shape, level.device, level.dtype) for level in levels)
        return Sam3VisionEncoderOutput(fpn_hidden_states=levels, fpn_position_encoding=positions)

    def prompt_inputs(self, prompt: Prompt, image_hw: tuple[int, int]) -> dict[str, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and (with exemplars) ``input_boxes``/``input_boxes_labels``, as the processor makes them."""
        kwargs: dict[str, Any] = {"original_sizes": [list(image_hw)], "return_tensors": "pt"}
        if prompt.text is not None:
            kwargs["text"] = prompt.text.phrase
        if prompt.exemplars is not None:
            kwargs["input_boxes"] = [prompt.exemplars.boxes.tolist()]
            kwargs["input_boxes_labels"] = [prompt.exemplars.labels.tolist()]
        encoded = self.processor(**kwargs)
        keys = ("input_ids", "attention_mask", "input_boxes", "input_boxes_labels")
        return {key: encoded[key].to(self.device) for key in keys if key in encoded}

    def _outputs(self, embedding: Sam3Embedding, prompt: Prompt) -> Any:
        """The model's output for ``prompt`` on ``embedding`` (call under ``torch.inference_mode``)."""
        return self.model(vision_embeds=self.vision_embeds(embedding), **self.prompt_inputs(prompt, embedding.image_hw))

    def _predict(self, embedding: Sam3Embedding, prompt: Prompt, multimask: bool) -> InstancesPrediction:
        with torch.inference_mode():
            outputs = self._outputs(embedding, prompt)
            instances = self.instances_from(outputs, embedding.image_hw, prompt)
            semantic = self.processor.post_process_semantic_segmentation(
                outputs, target_sizes=[embedding.image_hw], return_segmentation_scores=True
            )[0]
        probabilities = semantic.segmentation_scores[0].float().cpu().numpy()
        answer = InstancesPrediction.from_instances(instances, probabilities)
        return answer if multimask else answer.subset([0])

    def instances_from(
        self, outputs: Any, image_hw: tuple[int, int], prompt: Prompt, threshold: float | None = None
    ) -> Instances:
        """The instances of a model output scoring at least ``threshold`` (default :attr:`threshold`), best first,
        named after the phrase (if any)."""
        result = self.processor.post_process_instance_segmentation(
            outputs,
            threshold=self.threshold if threshold is None else threshold,
            mask_threshold=self.mask_threshold,
            target_sizes=[image_hw],
        )[0]
        count = int(result["scores"].shape[0])
        names = None if prompt.text is None else (prompt.text.phrase,) * count
        masks = result["masks"].bool().cpu().numpy().reshape(count, *image_hw)
        instances = Instances(masks, result["scores"].float().cpu().numpy(), result["boxes"].double().cpu().numpy(), names)
        return instances.sorted()

    def segment_instances(self, embedding: Sam3Embedding, prompt: Prompt, threshold: float | None = None) -> Instances:
        """Every instance of the concept in ``prompt`` scoring at least ``threshold``, best first, without the semantic map.

        ``threshold`` defaults to :attr:`threshold`; the prompt is checked like
        :meth:`predict`'s, the embedding is not (its caller,
        :func:`segprompt.everything.segment_everything`, checks it is this model's).

        Raises:
            SegpromptError: ``threshold`` outside ``[0, 1)``.
        """
        if threshold is not None and not 0.0 <= threshold < 1.0:
            raise SegpromptError(f"sam3: threshold must lie in [0, 1), got {threshold}")
        self.check_prompt(prompt)
        prompt.validate_for(embedding.image_hw)
        with torch.inference_mode():
            return self.instances_from(self._outputs(embedding, prompt), embedding.image_hw, prompt, threshold)


__all__ = ["DEFAULT_HUB_ID", "Sam3Embedding", "Sam3Segmenter", "sam3_processor"]
