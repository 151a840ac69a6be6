"""PerSAM and PerSAM-F: one-shot personalised SAM from a visual reference.

Given a reference image and the mask of a target in it
(:class:`~segprompt.prompts.VisualReference`), PerSAM (Zhang et al., 2023,
"Personalize Segment Anything Model with One Shot") segments the same target
in another image with a frozen SAM and no training:

1. **Target embedding**: the mean SAM image feature over the reference mask.
   The mask is brought to SAM's 64 x 64 feature grid in SAM's padded frame
   (resized like the image to the longest-side-1024 input, padded at the
   bottom/right); a grid cell belongs to the mask when the mask covers at
   least half of it (the best-covered cell when none does, so a small
   mask still has a feature).
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

Steps 3-4 wrap modules of ``segment_anything``'s decoder for the duration of
one decoding (:func:`guided_decoder`); SAM itself is never modified.

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
At test time the first stage decodes three masks with the same guidance and
blends them with the learned weights; the refinements are PerSAM's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
from collections import OrderedDict
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.transformer import Attention

from ..prompts import LOW_RES_SIDE, Box, MaskPrompt, Points, Prompt, VisualReference
from . import register
from .base import Embedding, Prediction, Segmenter
from ..progress import ProgressCallback, no_progress
from .sam import SamSegmenter, upsample_logits
from .sam_arch import IMAGE_SIZE, PATCH_SIZE

if TYPE_CHECKING:
    from segment_anything.modeling import Sam

    from ..cache import EmbeddingCache

#: Side of SAM's image-feature grid (1024 / 16).
GRID_SIDE = IMAGE_SIZE // PATCH_SIZE
#: A feature cell belongs to the reference mask when the mask covers at least this fraction of it.
MIN_CELL_COVERAGE = 0.5
#: PerSAM-F training defaults (the paper's).
FIT_ITERATIONS = 1000
FIT_LR = 1e-3
#: Personalisations kept in memory per segmenter, so a reference reused over many images is fitted once.
_MEMO_SIZE = 8


def grid_cells(image_hw: tuple[int, int]) -> tuple[int, int]:
    """``(rows, cols)`` of the 64 x 64 feature grid covered by an image of size ``image_hw``."""
    from segment_anything.utils.transforms import ResizeLongestSide

    h, w = ResizeLongestSide.get_preprocess_shape(image_hw[0], image_hw[1], IMAGE_SIZE)
    return -(-h // PATCH_SIZE), -(-w // PATCH_SIZE)


def mask_coverage(mask: np.ndarray, input_hw: tuple[int, int], cell: int = PATCH_SIZE) -> torch.Tensor:
    """Fraction of each ``cell x cell`` block of SAM's padded input covered by an ``(H, W)`` bool mask.

    The mask is resized to ``input_hw`` (SAM's longest-side-1024 size of the
    image), padded with background to 1024 x 1024 like SAM pads its input,
    and averaged over blocks, so entry ``(i, j)`` sees input rows
    ``cell * i .. cell * i + cell - 1``. ``cell = 16`` gives the feature grid
    ``(64, 64)``, ``cell = 4`` the low-resolution logit grid ``(256, 256)``;
    float32.
    """
    pixels = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    resized = F.interpolate(pixels, size=tuple(input_hw), mode="bilinear", align_corners=False)
    padded = F.pad(resized, (0, IMAGE_SIZE - input_hw[1], 0, IMAGE_SIZE - input_hw[0]))
    return F.avg_pool2d(padded, cell)[0, 0]


def target_embedding(features: torch.Tensor, mask: np.ndarray, input_hw: tuple[int, int]) -> torch.Tensor:
    """Mean SAM feature over the reference mask: ``(C,)`` float32.

    Args:
        features: ``(1, C, 64, 64)`` SAM image embedding of the reference image.
        mask: ``(H, W)`` bool reference mask in the reference image's pixels.
        input_hw: the reference image's size after SAM's longest-side-1024 resize.
    """
    coverage = mask_coverage(mask, input_hw)
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
    :func:`segprompt.backends.sam.upsample_logits` (bilinear to 1024, crop
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


class _GuidedAttention(torch.nn.Module):
    """Token-to-image attention whose probabilities get ``bias`` added and are re-normalised.

    Uses the wrapped ``segment_anything`` :class:`Attention`'s own projections,
    so its weights are SAM's.
    """

    def __init__(self, attention: Attention, bias: torch.Tensor) -> None:
        super().__init__()
        self.attention = attention
        self.bias = bias

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a = self.attention
        q = a._separate_heads(a.q_proj(q), a.num_heads)
        k = a._separate_heads(a.k_proj(k), a.num_heads)
        v = a._separate_heads(a.v_proj(v), a.num_heads)
        probabilities = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        probabilities = torch.softmax(probabilities + self.bias.to(probabilities), dim=-1)
        return a.out_proj(a._recombine_heads(probabilities @ v))


class _ShiftedInput(torch.nn.Module):
    """Calls ``module`` with ``shift`` added to its keyword argument ``argument``."""

    def __init__(self, module: torch.nn.Module, argument: str, shift: torch.Tensor) -> None:
        super().__init__()
        self.module = module
        self.argument = argument
        self.shift = shift

    def forward(self, **kwargs: torch.Tensor) -> object:
        kwargs[self.argument] = kwargs[self.argument] + self.shift.to(kwargs[self.argument])
        return self.module(**kwargs)


@contextlib.contextmanager
def guided_decoder(decoder: MaskDecoder, bias: torch.Tensor | None, target: torch.Tensor | None) -> Iterator[None]:
    """Within the block, ``decoder`` runs PerSAM's target guidance; restored afterwards.

    Args:
        decoder: SAM's mask decoder (its ``transformer`` a ``TwoWayTransformer``).
        bias: ``(1, 1, 1, 4096)`` attention bias (:func:`attention_bias`) or ``None``.
        target: ``(256,)`` target embedding added to the query tokens, or ``None``.
    """
    transformer = decoder.transformer
    blocks = list(transformer.layers)
    final = transformer.final_attn_token_to_image
    try:
        for index, block in enumerate(blocks):
            if bias is not None:
                block.cross_attn_token_to_image = _GuidedAttention(block.cross_attn_token_to_image, bias)
            if target is not None:
                transformer.layers[index] = _ShiftedInput(block, "queries", target)
        if target is not None:
            transformer.final_attn_token_to_image = _ShiftedInput(final, "q", target)
        yield
    finally:
        for index, block in enumerate(blocks):
            transformer.layers[index] = block
            wrapped = block.cross_attn_token_to_image
            if isinstance(wrapped, _GuidedAttention):
                block.cross_attn_token_to_image = wrapped.attention
        transformer.final_attn_token_to_image = final


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` with ``p = sigmoid(logits)``; any equal shapes."""
    p = torch.sigmoid(logits).flatten()
    t = target.flatten()
    return 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Mean sigmoid focal loss (Lin et al., 2017) of ``logits`` against ``target`` in ``[0, 1]``."""
    p = torch.sigmoid(logits)
    cross_entropy = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * cross_entropy * (1 - p_t) ** gamma).mean()


def blend(logits: torch.Tensor, free_weights: torch.Tensor) -> torch.Tensor:
    """Blend ``(3, ...)`` logits with weights ``(1 - a - b, a, b)`` from ``free_weights = (a, b)``."""
    weights = torch.cat([1 - free_weights.sum().reshape(1), free_weights])
    return torch.tensordot(weights, logits, dims=1)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    # A training step touches at most 3 x 256 x 256 values: spreading that over threads
    # costs more in synchronisation than it saves (40x slower on a busy 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_mask_weights(
    logits: torch.Tensor,
    target: torch.Tensor,
    iterations: int = FIT_ITERATIONS,
    lr: float = FIT_LR,
) -> tuple[np.ndarray, np.ndarray]:
    """PerSAM-F: learn the blend of three candidate masks' logits that best fits ``target``.

    Args:
        logits: ``(3, h, w)`` logits of SAM's three multimask outputs (fixed).
        target: ``(h, w)`` float target mask in ``[0, 1]`` (fractions allowed).
        iterations, lr: AdamW steps (cosine-annealed learning rate).

    Returns:
        ``(weights (3,) float32 summing to 1, losses (iterations,) float32)``,
        ``losses[i]`` being the Dice + focal loss before step ``i``.
    """
    logits = logits.detach().float().clone()
    target = target.detach().float().clone()
    free = torch.nn.Parameter(torch.full((2,), 1.0 / 3.0))
    optimiser = torch.optim.AdamW([free], lr=lr, eps=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    losses = np.empty(iterations, np.float32)
    with torch.enable_grad(), _single_thread():
        for step in range(iterations):
            blended = blend(logits, free)
            loss = dice_loss(blended, target) + focal_loss(blended, target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses[step] = float(loss.detach())
    weights = torch.cat([1 - free.detach().sum().reshape(1), free.detach()])
    return weights.numpy().astype(np.float32), losses


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
class PerSamSegmenter(Segmenter):
    """PerSAM: segment the target shown by a visual reference, training-free.

    Args:
        model_type, checkpoint, model, device: as for
            :class:`~segprompt.backends.sam.SamSegmenter` (ignored when ``sam`` is given).
        sam: an existing SAM backend to share (its weights, its embeddings' data).
        cache: an :class:`~segprompt.cache.EmbeddingCache` for the reference
            images' SAM embeddings; ``None`` encodes each new reference once
            per segmenter.
        fine_tune: PerSAM-F (learn the multimask blend on the reference).
        fit_iterations: PerSAM-F training iterations.

    The embedding of the *target* image is SAM's (backend ``"persam"``, same
    ``model_id`` as the SAM); the reference is embedded inside :meth:`predict`.
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
        device: str = "cpu",
        sam: SamSegmenter | None = None,
        cache: "EmbeddingCache | None" = None,
        fine_tune: bool | None = None,
        fit_iterations: int = FIT_ITERATIONS,
    ) -> None:
        self.sam = sam if sam is not None else SamSegmenter(model_type, checkpoint, model=model, device=device)
        self.cache = cache
        self.fine_tune = self.fine_tune_default if fine_tune is None else fine_tune
        self.fit_iterations = fit_iterations
        self._memo: OrderedDict[str, Personalisation] = OrderedDict()

    @property
    def model_id(self) -> str:
        return self.sam.model_id

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
        """SAM's embedding of the target image (``data`` as :meth:`SamSegmenter.embed`)."""
        return dataclasses.replace(self.sam.embed(image, progress), backend=self.name)

    def _as_sam(self, embedding: Embedding) -> Embedding:
        return dataclasses.replace(embedding, backend=self.sam.name, model_id=self.sam.model_id)

    def personalise(self, reference: VisualReference, progress: ProgressCallback = no_progress) -> Personalisation:
        """The target embedding (and PerSAM-F weights) of ``reference``; memoised per reference."""
        key = _reference_key(reference)
        if key in self._memo:
            self._memo.move_to_end(key)
            return self._memo[key]
        if self.cache is not None:
            embedding = self.cache.embed(self.sam, reference.image, progress)
        else:
            embedding = self.sam.embed(reference.image, progress)
        target = target_embedding(embedding.data["features"], reference.mask, embedding.data["input_hw"])
        personalisation = Personalisation(target)
        if self.fine_tune:
            progress(0, 1, "PerSAM-F: fitting the mask blend on the reference")
            personalisation = self._fit(embedding, reference.mask, personalisation)
            progress(1, 1, "PerSAM-F: mask blend fitted")
        self._memo[key] = personalisation
        if len(self._memo) > _MEMO_SIZE:
            self._memo.popitem(last=False)
        return personalisation

    def _fit(self, embedding: Embedding, mask: np.ndarray, personalisation: Personalisation) -> Personalisation:
        _, points = self.locate(embedding, personalisation.target)
        low_res, _ = self._first_stage_logits(embedding, personalisation.target, points, multimask=True)
        cell = IMAGE_SIZE // LOW_RES_SIDE
        h, w = embedding.data["input_hw"]
        rows, cols = -(-h // cell), -(-w // cell)  # the image's part of the 256 x 256 logits
        target = mask_coverage(mask, (h, w), cell)[:rows, :cols]
        weights, losses = fit_mask_weights(low_res[0, :, :rows, :cols], target, self.fit_iterations)
        return dataclasses.replace(personalisation, mask_weights=weights, losses=losses)

    def locate(self, embedding: Embedding, target: torch.Tensor) -> tuple[np.ndarray, Points]:
        """The similarity map ``(H, W)`` (image pixels) and the location prior points of ``target``."""
        grid = cosine_similarity_grid(embedding.data["features"], target)
        similarity = similarity_in_image(grid, embedding.data["input_hw"], embedding.image_hw).cpu().numpy()
        return similarity, location_prior(similarity)

    def _first_stage_logits(
        self, embedding: Embedding, target: torch.Tensor, points: Points, multimask: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Guided decoding: ``(low_res (1, K, 256, 256), scores (1, K))``."""
        features = embedding.data["features"]
        grid = cosine_similarity_grid(features, target)
        bias = attention_bias(grid, grid_cells(embedding.image_hw))
        tensors = self.sam.prompt_tensors(Prompt(points=points), embedding.image_hw)
        with guided_decoder(self.sam.model.mask_decoder, bias, target.to(features.device)):
            return self.sam.decode(self._as_sam(embedding), **tensors, multimask=multimask)

    def run(self, embedding: Embedding, personalisation: Personalisation) -> PerSamTrace:
        """PerSAM's full cascade on the image behind ``embedding`` (see the module docstring)."""
        similarity, points = self.locate(embedding, personalisation.target)
        sam_embedding = self._as_sam(embedding)
        weights = personalisation.mask_weights
        low_res, scores = self._first_stage_logits(
            embedding, personalisation.target, points, multimask=weights is not None
        )
        if weights is not None:
            low_res = blend(low_res[0].float(), torch.from_numpy(weights[1:]).to(low_res.device))[None, None]
            scores = (torch.from_numpy(weights).to(scores) * scores).sum(-1, keepdim=True)
        logits = upsample_logits(low_res, embedding.data["input_hw"], embedding.image_hw)
        first = Prediction(
            masks=(logits[0] > self.sam.model.mask_threshold).cpu().numpy(),
            scores=scores[0].float().cpu().numpy(),
            low_res_logits=low_res[0].float().cpu().numpy(),
        )
        stages = [first]
        second = self.sam.predict(
            sam_embedding, Prompt(points=points, mask=MaskPrompt(first.low_res_logits[0], "logits"))
        )
        stages.append(second)
        best = second.best
        if second.masks[best].any():
            refine = Prompt(
                points=points,
                box=Box.from_mask(second.masks[best]),
                mask=MaskPrompt(second.low_res_logits[best], "logits"),
            )
            stages.append(self.sam.predict(sam_embedding, refine))
        return PerSamTrace(similarity=similarity, points=points, stages=stages)

    def _predict(self, embedding: Embedding, prompt: Prompt, multimask: bool) -> Prediction:
        assert prompt.reference is not None  # the only kind accepted
        answer = self.run(embedding, self.personalise(prompt.reference)).stages[-1]
        if multimask:
            return answer
        best = answer.best
        logits = None if answer.low_res_logits is None else answer.low_res_logits[best : best + 1]
        return Prediction(answer.masks[best : best + 1], answer.scores[best : best + 1], logits)


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
    "dice_loss",
    "fit_mask_weights",
    "focal_loss",
    "grid_cells",
    "guided_decoder",
    "location_prior",
    "mask_coverage",
    "similarity_in_image",
    "target_embedding",
]
