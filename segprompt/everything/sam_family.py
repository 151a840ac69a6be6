"""The transformers SAM family's everything: segment-anything's automatic mask generator on their decoders.

``sam2``, ``sam-hq``, ``sam3-tracker`` and ``edgetam`` take a batch of point
prompts per image, so the procedure of :mod:`segprompt.everything.amg` (point
grid, crops, predicted-IoU and stability filters, box NMS, small-region
removal; the same :class:`~segprompt.everything.amg.SamEverything` settings)
runs on them through the :class:`~segprompt.backends.base.BatchPredictor`
interface: :meth:`~segprompt.backends.base.BatchPredictor.predict_batches`
with all three candidates and their low-resolution logits, which the
backend's own post-processing (``post_process``: the processor's
``post_process_masks``) brings to the image for the stability score and the
masks.

This is segment-anything's procedure, not SAM 2's ``SAM2AutomaticMaskGenerator``
(which adds mask-to-mask refinement and other defaults): the same settings
mean the same steps whichever model decodes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backends.base import Embedding
from ..backends.sam_family import SamFamilySegmenter
from ..prompts import Points, Prompt
from . import GENERATORS
from .amg import Candidates, PointGridGenerator


class BatchPredictorPointDecoder:
    """A SAM-family backend's decoder on one embedding, for :func:`~segprompt.everything.amg.automatic_masks`."""

    def __init__(self, segmenter: SamFamilySegmenter, embedding: Embedding, exact: bool) -> None:
        segmenter.check_embedding(embedding)
        self.segmenter = segmenter
        self.embedding = embedding
        self.exact = exact
        self.image_hw = embedding.image_hw

    def decode(self, points: np.ndarray, min_iou: float | None) -> Candidates:
        prompts = [Prompt(points=Points(point[None, :], np.ones(1))) for point in points]
        order: list[int] = []
        scores, logits = [], []
        for batch in self.segmenter.predict_batches(
            self.embedding, prompts, multimask=True, select="all", keep_logits=True, exact=self.exact, chunk_size=len(prompts)
        ):
            order.extend(batch.indices)
            scores.append(batch.scores)
            logits.append(batch.low_res_logits)
        position = torch.as_tensor(np.argsort(order))
        iou = torch.cat(scores)[position.to(scores[0].device)]  # (B, K) in the order of the points
        low_res = torch.cat(logits)[position.to(logits[0].device)]  # (B, K, L, L)
        per_point = iou.shape[1]
        iou, low_res = iou.flatten(), low_res.flatten(0, 1)
        keep = torch.ones_like(iou, dtype=torch.bool) if min_iou is None else iou > min_iou
        index = torch.nonzero(keep).flatten()
        return Candidates(per_point, index, iou[index], low_res[index.to(low_res.device)])

    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits = self.segmenter.post_process(low_res[None, :, None], self.embedding)  # (n, 1, H, W)
        return logits[:, 0].to(low_res.device)


class _FamilyGenerator(PointGridGenerator):
    @staticmethod
    def decoder(segmenter: SamFamilySegmenter, embedding: Embedding, exact: bool) -> BatchPredictorPointDecoder:  # type: ignore[override]
        return BatchPredictorPointDecoder(segmenter, embedding, exact)


@GENERATORS.register
class Sam2Generator(_FamilyGenerator):
    """``sam2``: the automatic mask generator on SAM 2.1's decoder."""

    name = "sam2"


@GENERATORS.register
class SamHqGenerator(_FamilyGenerator):
    """``sam-hq``: the automatic mask generator on SAM-HQ's decoder (with its ``hq_token_only`` choice)."""

    name = "sam-hq"


@GENERATORS.register
class Sam3TrackerGenerator(_FamilyGenerator):
    """``sam3-tracker``: the automatic mask generator on SAM 3's tracker decoder."""

    name = "sam3-tracker"


@GENERATORS.register
class EdgeTamGenerator(_FamilyGenerator):
    """``edgetam``: the automatic mask generator on EdgeTAM's decoder."""

    name = "edgetam"


__all__ = [
    "BatchPredictorPointDecoder",
    "EdgeTamGenerator",
    "Sam2Generator",
    "Sam3TrackerGenerator",
    "SamHqGenerator",
]
