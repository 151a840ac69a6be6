"""PerSAM and PerSAM-F: one-shot personalised SAM from a visual reference.

Given a reference image and the mask of a target in it
(:class:`~segprompt.prompts.VisualReference`), PerSAM (Zhang et al., 2023,
"Personalize Segment Anything Model with One Shot") segments the same target
in another image with a frozen SAM and no training:

1. **Target embedding**: the mean SAM image feature over the reference mask.
   The mask is brought to SAM's 64 x 64 feature grid in SAM's padded frame
   (:meth:`ModelFrame.mask_fraction <segprompt.backends.frame.ModelFrame.mask_fraction>`:
   the fraction of each cell the mask covers); a grid cell belongs to the mask
   when the mask covers at least half of it (the best-covered cell when none
   does, so a small mask still has a feature).
2. **Location prior**: the cosine similarity between the target embedding and
   every feature of the target image, upsampled to original-image pixels the
   way SAM upsamples mask logits. Its maximum is a positive point, its
   minimum a negative point, both ``(x, y)`` original pixels.
3. **Target-guided attention**: ``sigmoid`` of the standardised similarity,
   on the 64 x 64 grid, is added to the token-to-image attention
   probabilities of every two-way-transformer block of SAM's mask decoder
   (then re-normalised by a softmax).
4. **Target-semantic prompting**: the target embedding is added to the query
   tokens entering every decoder block and to the final token-to-image query.
5. **Cascaded refinement**: the first (guided, single-mask) prediction's logits
   are fed back as a mask prompt with the two points; then the best result's
   box is added as well.

Steps 3-4 are arguments of the one SAM decoder
(:class:`~segprompt.backends.sam_decoder.Guidance` to
:func:`~segprompt.backends.sam_decoder.decode_masks`, exact numerics, so the
masks are those of SAM's own modules); the shared SAM is never modified, so
PerSAM and SAM may decode at the same time. PerSAM answers from its SAM's
embeddings (:attr:`PerSamSegmenter.embedding_source`): the two share embeddings
and cache entries.

The guidance bias is computed on the feature grid in SAM's padded frame,
where the attention keys live, with the statistics over the grid cells the
image occupies and zero bias on padding cells. (The authors' code standardises
the map in original-image pixels and stretches it onto the 64 x 64 grid, which
misplaces it on non-square images.)

**PerSAM-F** (``"persam-f"``) learns, once per reference, two weights that blend
SAM's three multimask outputs of the first stage: the blend weights are
``(1 - a - b, a, b)``, initialised to thirds, trained with AdamW (lr 1e-3,
cosine schedule) for 1000 iterations on the reference image to minimise Dice +
focal loss against the reference mask. SAM is run once; only the blend is
optimised, on SAM's low-resolution logits (the image's part of the 256 x 256
grid; the blend is linear, so the weights apply unchanged after upsampling).
Two parameters need no autograd: :func:`fit_mask_weights` computes the loss and
its gradient in float64 NumPy (single-threaded, no global thread setting) and
takes AdamW's steps as ``torch.optim.AdamW`` does.
At test time the first stage decodes three masks with the same guidance and
blends them with the learned weights; the refinements are PerSAM's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..devices import AUTO
from ..prompts import LOW_RES_SIDE, Box, MaskPrompt, Points, Prompt, VisualReference
from . import register
from .base import Prediction, Segmenter
from .exemplars import MaskExemplars
from ..progress import ProgressCallback, no_progress
from .frame import ModelFrame
from .sam import GRID_SIDE, SamEmbedding, SamSegmenter
from .sam_decoder import Guidance, upsample_logits

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

    from ..cache import EmbeddingCache

#: A feature cell belongs to the reference mask when the mask covers at least this fraction of it.
MIN_CELL_COVERAGE = 0.5
#: PerSAM-F training defaults (the paper's).
FIT_ITERATIONS = 1000
FIT_LR = 1e-3
#: The focal loss's ``alpha`` and ``gamma`` (Lin et al., 2017; PerSAM's values).
FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 2.0
#: ``torch.optim.AdamW``'s defaults, which PerSAM-F trains with, and its ``eps``.
ADAM_BETAS = (0.9, 0.999)
ADAM_WEIGHT_DECAY = 1e-2
ADAM_EPS = 1e-4
#: Personalisations kept in memory per segmenter, so a reference reused over many images is fitted once.
_MEMO_SIZE = 8


def target_embedding(features: torch.Tensor, mask: np.ndarray, frame: ModelFrame) -> torch.Tensor:
    """Mean SAM feature over the reference mask: ``(C,)`` float32.

    Args:
        features: ``(1, C, 64, 64)`` SAM image embedding of the reference image.
        mask: ``(H, W)`` bool reference mask in the reference image's pixels.
        frame: the reference image in SAM's padded 1024 input.
    """
    coverage = torch.from_numpy(frame.mask_fraction(mask, GRID_SIDE))
    cells = coverage >= MIN_CELL_COVERAGE
    if not cells.any():
        cells = coverage == coverage.max()
    return features[0].float().permute(1, 2, 0)[cells.to(features.device)].mean(0)


def cosine_similarity_grid(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of ``target`` ``(C,)`` with every cell of ``(1, C, 64, 64)`` features: ``(64, 64)``."""
    grid = features[0].float()
    direction = target.float() / target.float().norm()
    return torch.einsum("chw,c->hw", grid / grid.norm(dim=0, keepdim=True).clamp_min(1e-12), direction.to(grid.device))


def similarity_in_image(similarity: torch.Tensor, input_hw: tuple[int, int], image_hw: tuple[int, int]) -> torch.Tensor:
    """Upsample a ``(64, 64)`` grid map to ``(H, W)`` original-image pixels.

    The same path SAM's mask logits take: bilinear x4 to 256 x 256, then
    :func:`segprompt.backends.sam_decoder.upsample_logits` (bilinear to 1024, crop
    to ``input_hw``, bilinear to ``image_hw``).
    """
    side = (LOW_RES_SIDE, LOW_RES_SIDE)
    low_res = F.interpolate(similarity[None, None], size=side, mode="bilinear", align_corners=False)
    return upsample_logits(low_res, input_hw, image_hw)[0, 0]


def location_prior(similarity: np.ndarray) -> Points:
    """Positive point at the maximum and negative point at the minimum of an ``(H, W)`` map.

    Returns :class:`Points` ``[(x_max, y_max), (x_min, y_min)]`` with labels
    ``[1, 0]``, in the map's pixels (``x`` = column). Ties go to the first
    pixel in row-major order.
    """
    rows, cols = similarity.shape
    top_row, top_col = divmod(int(np.argmax(similarity)), cols)
    low_row, low_col = divmod(int(np.argmin(similarity)), cols)
    return Points(np.array([[top_col, top_row], [low_col, low_row]], dtype=np.float64), np.array([1, 0]))


def attention_bias(similarity: torch.Tensor, image_cells: tuple[int, int]) -> torch.Tensor:
    """Target-guided attention bias ``(1, 1, 1, 4096)`` from a ``(64, 64)`` similarity grid.

    ``sigmoid((s - mean) / std)`` over the ``image_cells = (rows, cols)`` the
    image occupies; zero on padding cells. The flattened layout (row-major)
    is the order of the image tokens in SAM's two-way transformer.
    """
    rows, cols = image_cells
    inside = similarity[:rows, :cols]
    std = inside.std() if inside.numel() > 1 else inside.new_tensor(0.0)
    bias = torch.zeros_like(similarity)
    bias[:rows, :cols] = torch.sigmoid((inside - inside.mean()) / std.clamp_min(1e-6))
    return bias.reshape(1, 1, 1, -1)


def blend(logits: torch.Tensor, free_weights: torch.Tensor) -> torch.Tensor:
    """Blend ``(3, ...)`` logits with weights ``(1 - a - b, a, b)`` from ``free_weights = (a, b)``."""
    weights = torch.cat([1 - free_weights.sum().reshape(1), free_weights])
    return torch.tensordot(weights, logits, dims=1)


def dice_focal_loss(logits: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """PerSAM-F's loss of flat float64 ``logits`` against ``target`` in ``[0, 1]``, and its gradient.

    Dice ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` with ``p = sigmoid(logits)``,
    plus the mean sigmoid focal loss (``alpha`` :data:`FOCAL_ALPHA`, ``gamma``
    :data:`FOCAL_GAMMA`, as ``torchvision.ops.sigmoid_focal_loss``).

    Returns:
        ``(loss, d loss / d logits)``, the gradient shaped like ``logits``.
    """
    e = np.exp(-np.abs(logits))
    p = np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    dp = p * (1.0 - p)
    # Dice
    total = p.sum() + target.sum() + 1.0
    overlap = 2.0 * (p * target).sum() + 1.0
    dice = 1.0 - overlap / total
    d_dice = -(2.0 * target * total - overlap) / total**2 * dp
    # focal: alpha_t * CE * (1 - p_t)^gamma, CE = BCE with logits
    cross_entropy = np.maximum(logits, 0.0) - logits * target + np.log1p(e)
    miss = p + target - 2.0 * p * target  # 1 - p_t
    alpha_t = FOCAL_ALPHA * target + (1.0 - FOCAL_ALPHA) * (1.0 - target)
    weight = miss**FOCAL_GAMMA
    focal = float((alpha_t * cross_entropy * weight).mean())
    d_miss = dp * (1.0 - 2.0 * target)
    d_focal = alpha_t * ((p - target) * weight + cross_entropy * FOCAL_GAMMA * miss ** (FOCAL_GAMMA - 1) * d_miss)
    return float(dice) + focal, d_dice + d_focal / logits.size


def fit_mask_weights(
    logits: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    iterations: int = FIT_ITERATIONS,
    lr: float = FIT_LR,
) -> tuple[np.ndarray, np.ndarray]:
    """PerSAM-F: learn the blend of three candidate masks' logits that best fits ``target``.

    The free weights ``(a, b)`` start at thirds and take ``iterations``
    AdamW steps (betas :data:`ADAM_BETAS`, weight decay
    :data:`ADAM_WEIGHT_DECAY`, eps :data:`ADAM_EPS`) with the learning rate
    cosine-annealed from ``lr`` to 0, as ``torch.optim.AdamW`` with
    ``CosineAnnealingLR`` steps them; loss and gradient are computed in float64
    (:func:`dice_focal_loss`), which agrees with the float32 autograd
    training to about 1e-6 in the weights.

    Args:
        logits: ``(3, h, w)`` logits of SAM's three multimask outputs (fixed).
        target: ``(h, w)`` float target mask in ``[0, 1]`` (fractions allowed).
        iterations, lr: AdamW steps and the initial learning rate.

    Returns:
        ``(weights (3,) float32 summing to 1, losses (iterations,) float32)``,
        ``losses[i]`` being the Dice + focal loss before step ``i``.
    """
    candidates = np.asarray(logits.detach().cpu() if isinstance(logits, torch.Tensor) else logits, np.float64)
    candidates = candidates.reshape(3, -1)
    goal = np.asarray(target.detach().cpu() if isinstance(target, torch.Tensor) else target, np.float64).reshape(-1)
    differences = candidates[1:] - candidates[0]  # d logits / d (a, b)
    beta1, beta2 = ADAM_BETAS
    free = np.full(2, 1.0 / 3.0)
    mean, second = np.zeros(2), np.zeros(2)
    losses = np.empty(iterations, np.float32)
    for step in range(iterations):
        weights = np.concatenate([[1.0 - free.sum()], free])
        loss, d_logits = dice_focal_loss(weights @ candidates, goal)
        losses[step] = loss
        gradient = differences @ d_logits
        rate = lr * (1.0 + math.cos(math.pi * step / iterations)) / 2.0
        free *= 1.0 - rate * ADAM_WEIGHT_DECAY
        mean = beta1 * mean + (1.0 - beta1) * gradient
        second = beta2 * second + (1.0 - beta2) * gradient**2
        denominator = np.sqrt(second) / math.sqrt(1.0 - beta2 ** (step + 1)) + ADAM_EPS
        free -= rate / (1.0 - beta1 ** (step + 1)) * mean / denominator
    weights = np.concatenate([[1.0 - free.sum()], free])
    return weights.astype(np.float32), losses


@dataclasses.dataclass(frozen=True)
class Personalisation:
    """What PerSAM learns from one reference.

    Attributes:
        target: ``(256,)`` float32 target embedding (SAM feature space).
        mask_weights: PerSAM-F's ``(3,)`` blend weights of the multimask
            outputs (sum 1), or ``None`` for training-free PerSAM.
        losses: PerSAM-F's training losses per iteration, or ``None``.
    """

    target: torch.Tensor
    mask_weights: np.ndarray | None = None
    losses: np.ndarray | None = None


@dataclasses.dataclass
class PerSamTrace:
    """Every intermediate result of one PerSAM run on one image.

    Attributes:
        similarity: ``(H, W)`` float32 cosine similarity to the target, image pixels.
        points: the location prior, ``[(x, y) positive, (x, y) negative]`` in image pixels.
        stages: the prediction of each cascade stage (first stage, refinement
            with its logits, refinement with logits and box); the last is the
            answer. The box stage is skipped when the previous mask is empty.
    """

    similarity: np.ndarray
    points: Points
    stages: list[Prediction]


def _reference_key(reference: VisualReference) -> str:
    digest = hashlib.sha256(repr(reference.image.shape).encode())
    digest.update(reference.image.data)
    digest.update(np.packbits(reference.mask).data)
    return digest.hexdigest()


@register
class PerSamSegmenter(Segmenter, MaskExemplars):
    """PerSAM: segment the target shown by a visual reference, training-free.

    Args:
        model_type, checkpoint, model, device, precision: as for
            :class:`~segprompt.backends.sam.SamSegmenter` (ignored when ``sam`` is given).
        sam: an existing SAM backend to share (its weights, its embeddings).
        cache: an :class:`~segprompt.cache.EmbeddingCache` for the reference
            images' SAM embeddings; ``None`` encodes each new reference once
            per segmenter.
        fine_tune: PerSAM-F (learn the multimask blend on the reference).
        fit_iterations: PerSAM-F training iterations.

    The embedding of the *target* image is its SAM's
    (:class:`~segprompt.backends.sam.SamEmbedding`, backend ``"sam"``); the
    reference is embedded inside :meth:`predict`. Safe to call from several
    threads at once.
    """

    name = "persam"
    accepts = frozenset({"reference"})
    description = "PerSAM: training-free one-shot SAM from a visual reference (reference prompts)"
    fine_tune_default = False

    def __init__(
        self,
        model_type: str = "vit_b",
        checkpoint: str | os.PathLike | None = None,
        *,
        model: "Sam | None" = None,
        device: str | torch.device = AUTO,
        precision: str = "fp32",
        sam: SamSegmenter | None = None,
        cache: "EmbeddingCache | None" = None,
        fine_tune: bool | None = None,
        fit_iterations: int = FIT_ITERATIONS,
    ) -> None:
        self.sam = sam if sam is not None else SamSegmenter(model_type, checkpoint, model=model, device=device, precision=precision)
        self.cache = cache
        self.fine_tune = self.fine_tune_default if fine_tune is None else fine_tune
        self.fit_iterations = fit_iterations
        self._memo: OrderedDict[str, Personalisation] = OrderedDict()
        self._memo_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.sam.model_id

    @property
    def device(self) -> torch.device:
        """Its SAM's device."""
        return self.sam.device

    @property
    def embedding_source(self) -> tuple[str, str]:
        """Its SAM's: PerSAM answers from SAM embeddings."""
        return self.sam.embedding_source

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> SamEmbedding:
        """Its SAM's embedding of the target image."""
        return self.sam.embed(image, progress)

    def personalise(self, reference: VisualReference, progress: ProgressCallback = no_progress) -> Personalisation:
        """The target embedding (and PerSAM-F weights) of ``reference``; memoised per reference."""
        key = _reference_key(reference)
        with self._memo_lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        if self.cache is not None:
            embedding = self.cache.embed(self.sam, reference.image, progress)
        else:
            embedding = self.sam.embed(reference.image, progress)
        personalisation = Personalisation(target_embedding(embedding.features, reference.mask, embedding.frame))
        if self.fine_tune:
            progress(0, 1, "PerSAM-F: fitting the mask blend on the reference")
            personalisation = self._fit(embedding, reference.mask, personalisation)
            progress(1, 1, "PerSAM-F: mask blend fitted")
        with self._memo_lock:  # a concurrent call may have fitted the same reference: both results are equal
            personalisation = self._memo.setdefault(key, personalisation)
            if len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        return personalisation

    def _fit(self, embedding: SamEmbedding, mask: np.ndarray, personalisation: Personalisation) -> Personalisation:
        _, points = self.locate(embedding, personalisation.target)
        low_res, _ = self._first_stage_logits(embedding, personalisation.target, points, multimask=True)
        rows, cols = embedding.frame.grid_cells(LOW_RES_SIDE)  # the image's part of the 256 x 256 logits
        target = embedding.frame.mask_fraction(mask, LOW_RES_SIDE)[:rows, :cols]
        weights, losses = fit_mask_weights(low_res[0, :, :rows, :cols], target, self.fit_iterations)
        return dataclasses.replace(personalisation, mask_weights=weights, losses=losses)

    def locate(self, embedding: SamEmbedding, target: torch.Tensor) -> tuple[np.ndarray, Points]:
        """The similarity map ``(H, W)`` (image pixels) and the location prior points of ``target``."""
        grid = cosine_similarity_grid(embedding.features, target)
        similarity = similarity_in_image(grid, embedding.input_hw, embedding.image_hw).cpu().numpy()
        return similarity, location_prior(similarity)

    def guidance(self, embedding: SamEmbedding, target: torch.Tensor) -> Guidance:
        """PerSAM's decoder guidance towards ``target`` on the image behind ``embedding``."""
        grid = cosine_similarity_grid(embedding.features, target)
        bias = attention_bias(grid, embedding.frame.grid_cells(GRID_SIDE))
        return Guidance(attention_bias=bias, target=target.to(embedding.features.device))

    def _first_stage_logits(
        self, embedding: SamEmbedding, target: torch.Tensor, points: Points, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Guided decoding: ``(low_res (1, K, 256, 256), scores (1, K))``."""
        guidance = self.guidance(embedding, target)
        low_res, scores, _ = self.sam.decode(embedding, [Prompt(points=points)], multimask=multimask, guidance=guidance)
        return low_res, scores

    def run(self, embedding: SamEmbedding, personalisation: Personalisation) -> PerSamTrace:
        """PerSAM's full cascade on the image behind ``embedding`` (see the module docstring)."""
        similarity, points = self.locate(embedding, personalisation.target)
        weights = personalisation.mask_weights
        low_res, scores = self._first_stage_logits(
            embedding, personalisation.target, points, multimask=weights is not None
        )
        if weights is not None:
            low_res = blend(low_res[0].float(), torch.from_numpy(weights[1:]).to(low_res.device))[None, None]
            scores = (torch.from_numpy(weights).to(scores) * scores).sum(-1, keepdim=True)
        first = self.sam.prediction(embedding, low_res, scores)
        stages = [first]
        second = self.sam.predict(embedding, Prompt(points=points, mask=MaskPrompt(first.low_res_logits[0], "logits")))
        stages.append(second)
        best = second.best
        if second.masks[best].any():
            refine = Prompt(
                points=points,
                box=Box.from_mask(second.masks[best]),
                mask=MaskPrompt(second.low_res_logits[best], "logits"),
            )
            stages.append(self.sam.predict(embedding, refine))
        return PerSamTrace(similarity=similarity, points=points, stages=stages)

    def _predict(self, embedding: SamEmbedding, prompt: Prompt, multimask: bool) -> Prediction:
        assert prompt.reference is not None  # the only kind accepted
        answer = self.run(embedding, self.personalise(prompt.reference)).stages[-1]
        return answer if multimask else answer.subset([answer.best])


@register
class PerSamFSegmenter(PerSamSegmenter):
    """PerSAM-F: PerSAM plus a two-weight blend of SAM's multimask outputs learned on the reference."""

    name = "persam-f"
    description = "PerSAM-F: PerSAM with a 2-parameter multimask blend fitted on the reference (seconds)"
    fine_tune_default = True


__all__ = [
    "PerSamFSegmenter",
    "PerSamSegmenter",
    "PerSamTrace",
    "Personalisation",
    "attention_bias",
    "blend",
    "cosine_similarity_grid",
    "dice_focal_loss",
    "fit_mask_weights",
    "location_prior",
    "similarity_in_image",
    "target_embedding",
]
