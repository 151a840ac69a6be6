"""SAM's everything: segment-anything's automatic mask generator on SAM's own decoder.

:class:`SamGenerator` runs :func:`~segprompt.everything.amg.automatic_masks`
with :class:`SamPointDecoder`, and gives the records of
``segment_anything.SamAutomaticMaskGenerator`` on the same weights and
settings: bit for bit with ``exact=True`` (the exact decoder), and up to
float rounding of the logits (about 1e-6) with the default re-associated
decoder (:mod:`segprompt.backends.sam_decoder`).

The points reach the prompt encoder as the reference passes them: ``(x, y)``
image pixels resized by ``ResizeLongestSide.apply_coords`` and kept in float64
(``SamPredictor.predict`` would round them to float32 first), label 1, one
point per prompt, ``points_per_batch`` prompts per decoder call.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backends.sam import SamEmbedding, SamSegmenter
from ..backends.sam_decoder import decode_scoring_above, upsample_logits
from . import GENERATORS
from .amg import Candidates, PointGridGenerator


class SamPointDecoder:
    """SAM's decoder on one embedding, for :func:`~segprompt.everything.amg.automatic_masks`.

    Decodes with :func:`~segprompt.backends.sam_decoder.decode_scoring_above`:
    only the low-resolution block the image covers, and with the re-associated
    decoder no output upscaling for points without a candidate above the
    predicted-IoU threshold. Upsamples with
    :func:`~segprompt.backends.sam_decoder.upsample_logits` (the values of
    ``Sam.postprocess_masks`` without the padding).
    """

    def __init__(self, segmenter: SamSegmenter, embedding: SamEmbedding, exact: bool) -> None:
        segmenter.check_embedding(embedding)
        self.segmenter = segmenter
        self.embedding = embedding
        self.exact = exact
        self.image_hw = embedding.image_hw

    @torch.inference_mode()
    def decode(self, points: np.ndarray, min_iou: float | None) -> Candidates:
        model = self.segmenter.model
        coords = self.segmenter.transform.apply_coords(points, self.image_hw)  # float64, as the reference keeps them
        in_points = torch.as_tensor(coords, device=model.device)[:, None, :]
        labels = torch.ones((len(points), 1), dtype=torch.int, device=model.device)
        sparse, _ = model.prompt_encoder(points=(in_points, labels), boxes=None, masks=None)
        low_res, scores, prompts = decode_scoring_above(
            model,
            self.embedding.decoder_context(model),
            sparse,
            min_iou,
            multimask=True,
            exact=self.exact,
            input_hw=self.embedding.input_hw,
        )
        per_point = scores.shape[1]
        iou = scores[prompts]
        keep = iou > min_iou if min_iou is not None else torch.ones_like(iou, dtype=torch.bool)
        index = prompts[:, None] * per_point + torch.arange(per_point, device=prompts.device)
        return Candidates(per_point, index[keep], iou[keep], low_res[keep])

    @torch.inference_mode()
    def upsample(self, low_res: torch.Tensor) -> torch.Tensor:
        return upsample_logits(low_res[:, None], self.embedding.input_hw, self.image_hw)[:, 0]


@GENERATORS.register
class SamGenerator(PointGridGenerator):
    """``sam``: segment-anything's automatic mask generator (:mod:`segprompt.everything.amg`) on SAM's decoder."""

    name = "sam"

    @staticmethod
    def decoder(segmenter: SamSegmenter, embedding: SamEmbedding, exact: bool) -> SamPointDecoder:  # type: ignore[override]
        return SamPointDecoder(segmenter, embedding, exact)


__all__ = ["SamGenerator", "SamPointDecoder"]
