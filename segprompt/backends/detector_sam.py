"""Open-vocabulary detector boxes -> SAM masks ("Grounded SAM").

A :class:`DetectorSamSegmenter` pairs a detector that turns a text (or a
visual reference) into scored boxes with a SAM backend that turns each box
into a mask. Subclasses supply only the detector half
(:meth:`~DetectorSamSegmenter.embed_detector` and
:meth:`~DetectorSamSegmenter.detect_from`); box clipping, non-maximum
suppression, top-K selection, the SAM calls and the score combination live
here once.

Scores: a mask's score is ``detector score x SAM predicted IoU``; the masks
come best first. Boxes are in original-image pixels, ``(x0, y0, x1, y1)``,
``x`` the column. With no detection above the detector's threshold the
prediction is one empty mask with score 0, so callers always get ``K >= 1``.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torchvision.ops import nms

from ..devices import AUTO, resolve_device
from ..errors import SegpromptError
from ..hub import PretrainedModel, load_pretrained
from ..prompts import MIN_BOX_SIDE, Box, Exemplars, Prompt, VisualReference
from .base import CompositeEmbedding, Embedding, Prediction, Segmenter
from ..progress import ProgressCallback, no_progress


@dataclass
class Detections:
    """Scored boxes for one prompt, best first.

    Attributes:
        boxes: ``(N, 4)`` float64 ``(x0, y0, x1, y1)`` in original-image pixels.
        scores: ``(N,)`` float32 detector confidences in ``[0, 1]``.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        if self.scores.shape[0] != self.boxes.shape[0]:
            raise ValueError(f"Detections: {self.boxes.shape[0]} boxes but {self.scores.shape[0]} scores")
        order = np.argsort(-self.scores, kind="stable")
        self.boxes, self.scores = self.boxes[order], self.scores[order]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def suppressed(self, iou_threshold: float) -> "Detections":
        """Greedy non-maximum suppression: drop boxes overlapping a better one by IoU > ``iou_threshold``."""
        keep = nms(torch.from_numpy(self.boxes), torch.from_numpy(self.scores.astype(np.float64)), iou_threshold)
        return Detections(self.boxes[keep.numpy()], self.scores[keep.numpy()])

    def clipped(self, image_hw: tuple[int, int]) -> "Detections":
        """Boxes clipped to a ``(H, W)`` image, dropping those left narrower than a box prompt may be."""
        height, width = image_hw
        boxes = self.boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        keep = (boxes[:, 2] - boxes[:, 0] >= MIN_BOX_SIDE) & (boxes[:, 3] - boxes[:, 1] >= MIN_BOX_SIDE)
        return Detections(boxes[keep], self.scores[keep])


class DetectorSamSegmenter(Segmenter):
    """Base of the detector + SAM backends.

    Subclasses name their detector (:meth:`detector_classes`,
    :attr:`default_hub_id`) and its default thresholds, and implement
    :meth:`embed_detector` and :meth:`detect_from`.

    Args:
        model_dir: local detector folder (``save_pretrained`` layout); default see :mod:`segprompt.hub`.
        hub_id: hub model used without ``model_dir`` (default :attr:`default_hub_id`).
        box_threshold: minimum detection score, read by the subclass's
            :meth:`detect_from` (default :attr:`default_box_threshold`).
        top_k: at most this many detections become masks.
        nms_threshold: detections overlapping a better one by more than this
            IoU are dropped before the top-K, so the K masks are K objects
            (default :attr:`default_nms_threshold`).
        sam: the SAM backend that turns boxes into masks (any
            :class:`Segmenter` accepting ``"box"``); default
            ``create("sam", model_type=sam_model_type, checkpoint=sam_checkpoint, device=device)``.
        sam_model_type, sam_checkpoint: used only when ``sam`` is ``None``.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a device name
            (:func:`segprompt.devices.resolve_device`) of the detector and of
            the SAM built here.
        precision: the SAM built here's (its image encoder's autocast dtype,
            :mod:`segprompt.precision`); the detector runs in float32.
        pretrained: an already loaded detector and processor; overrides
            ``model_dir`` and ``hub_id``.
    """

    #: The released detector used without ``model_dir``.
    default_hub_id: ClassVar[str]
    default_box_threshold: ClassVar[float]
    default_nms_threshold: ClassVar[float]

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        hub_id: str | None = None,
        box_threshold: float | None = None,
        top_k: int = 3,
        nms_threshold: float | None = None,
        sam: Segmenter | None = None,
        sam_model_type: str = "vit_b",
        sam_checkpoint: str | None = None,
        device: str | torch.device = AUTO,
        precision: str = "fp32",
        pretrained: PretrainedModel | None = None,
    ) -> None:
        from . import create  # the registry imports this module's subclasses: import at call time

        self.device = resolve_device(device)
        if top_k < 1:
            raise SegpromptError(f"{self.name}: top_k must be at least 1, got {top_k}")
        if pretrained is None:
            model_class, processor_class = self.detector_classes()
            pretrained = load_pretrained(model_class, processor_class, hub_id or self.default_hub_id, model_dir)
        if sam is None:
            sam = create("sam", model_type=sam_model_type, checkpoint=sam_checkpoint, device=self.device, precision=precision)
        self.sam = sam
        self.top_k = int(top_k)
        self.nms_threshold = float(self.default_nms_threshold if nms_threshold is None else nms_threshold)
        self.box_threshold = float(self.default_box_threshold if box_threshold is None else box_threshold)
        self.model = pretrained.model.to(self.device)
        self.processor = pretrained.processor
        self._detector_id = pretrained.model_id

    @classmethod
    def detector_classes(cls) -> tuple[Any, Any]:
        """``(model class, processor class)`` of the detector (transformers, imported on use)."""
        raise NotImplementedError

    @property
    def detector_id(self) -> str:
        """Identifies the detector weights."""
        return self._detector_id

    @property
    def model_id(self) -> str:
        return f"{self.detector_id}+sam-{self.sam.model_id}"

    @abstractmethod
    def embed_detector(self, rgb: np.ndarray) -> Embedding:
        """The detector's prompt-independent part for an ``(H, W, 3)`` uint8 image (backend :attr:`name`, model :attr:`detector_id`)."""

    @abstractmethod
    def detect_from(self, detector: Embedding, prompt: Prompt) -> Detections:
        """Detections for ``prompt`` from :meth:`embed_detector`'s embedding (boxes in original pixels)."""

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> CompositeEmbedding:
        """The detector's embedding (part ``"detector"``) and SAM's (part ``"sam"``)."""
        rgb = self._rgb(image)
        progress(0, 2, f"{self.name}: detector image features")
        detector = self.embed_detector(rgb)
        progress(1, 2, f"{self.name}: SAM image embedding")
        parts = {"detector": detector, "sam": self.sam.embed(rgb)}
        progress(2, 2, f"{self.name}: image encoded")
        return CompositeEmbedding(self.name, self.model_id, (int(rgb.shape[0]), int(rgb.shape[1])), rgb, parts)

    def embed_for_exemplars(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> CompositeEmbedding:
        """The detector's embedding alone (part ``"detector"``): proposing exemplars needs no SAM."""
        rgb = self._rgb(image)
        progress(0, 1, f"{self.name}: detector image features")
        parts = {"detector": self.embed_detector(rgb)}
        progress(1, 1, f"{self.name}: image encoded")
        return CompositeEmbedding(self.name, self.model_id, (int(rgb.shape[0]), int(rgb.shape[1])), rgb, parts)

    def propose_exemplars(self, embedding: CompositeEmbedding, reference: VisualReference) -> Exemplars | None:
        """The top-``top_k`` detections of ``reference`` (threshold, clipping and suppression as :meth:`detect`) as positive exemplars.

        For a subclass that declares :class:`~segprompt.backends.base.ExemplarProposer`
        (a detector taking ``reference`` prompts: OWLv2's image-guided detection).
        """
        detections = self.detect(embedding, Prompt(reference=reference))
        count = min(len(detections), self.top_k)
        return Exemplars(detections.boxes[:count], np.ones(count, np.int64)) if count else None

    def detect(self, embedding: CompositeEmbedding, prompt: Prompt) -> Detections:
        """Detections for ``prompt`` above the threshold, clipped to the image, suppressed, best first."""
        self.check_prompt(prompt)
        self.check_embedding(embedding)
        prompt.validate_for(embedding.image_hw)
        return self._detections(embedding, prompt)

    def _detections(self, embedding: CompositeEmbedding, prompt: Prompt) -> Detections:
        detections = self.detect_from(embedding.part("detector"), prompt)
        return detections.clipped(embedding.image_hw).suppressed(self.nms_threshold)

    def _predict(self, embedding: CompositeEmbedding, prompt: Prompt, multimask: bool) -> Prediction:
        """Top-``top_k`` detections (top 1 without ``multimask``), each a SAM box prompt."""
        detections = self._detections(embedding, prompt)
        count = min(len(detections), self.top_k if multimask else 1)
        height, width = embedding.image_hw
        if count == 0:
            return Prediction(np.zeros((1, height, width), bool), np.zeros(1, np.float32))
        sam_embedding = embedding.part("sam")
        masks, scores, logits = [], [], []
        for box, detector_score in zip(detections.boxes[:count], detections.scores[:count]):
            # One mask per box: SAM's own advice for box prompts, which are unambiguous.
            answer = self.sam.predict(sam_embedding, Prompt(box=Box(*box)), multimask=False)
            masks.append(answer.masks[0])
            scores.append(detector_score * answer.scores[0])
            if answer.low_res_logits is not None:
                logits.append(answer.low_res_logits[0])
        order = np.argsort(-np.asarray(scores), kind="stable")
        return Prediction(
            masks=np.stack(masks)[order],
            scores=np.asarray(scores, np.float32)[order],
            low_res_logits=np.stack(logits)[order] if len(logits) == count else None,
        )
