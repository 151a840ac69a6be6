"""Finetune SAM on automatic point prompts, as the PointPrompt paper does.

Only SAM's prompt encoder is trained (optionally its mask decoder too); the
image encoder stays frozen, so each image is embedded once. Training follows
the paper: Adam (learning rate 1e-3), loss = Dice + binary cross-entropy on
the single-mask ``(256, 256)`` low-resolution logits, 80 / 20 train /
validation split, early stopping on the validation loss (the best epoch's
weights are kept). IoU is measured on the validation split, at full image
resolution, before and after training.

Frames: points are original-image ``(x, y)`` pixels (mapped to SAM's 1024
input frame by ``ResizeLongestSide``, as ``SamPredictor`` does); the target is
the fraction of each 256 x 256 low-resolution cell of SAM's padded frame the
ground-truth mask covers (:meth:`ModelFrame.mask_fraction
<segprompt.backends.frame.ModelFrame.mask_fraction>`: soft targets in ``[0, 1]``,
padding background).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..backends.base import Embedding
from ..backends.frame import ModelFrame
from ..progress import ProgressCallback, no_progress
from ..errors import SegpromptError
from ..metrics import iou
from ..prompts import LOW_RES_SIDE
from .strategies import PointSet

if TYPE_CHECKING:
    from ..backends.sam import SamEmbedding, SamSegmenter
    from ..datasets.base import Dataset
    from .counts import PointCounts
    from .runner import EmbeddingSource


@dataclass
class FinetuneExample:
    """One training pair.

    Attributes:
        features: ``(1, 256, 64, 64)`` float32 SAM image embedding.
        frame: the image in SAM's padded 1024 input.
        points: the prompt, ``(x, y)`` original-image pixels.
        mask: ``(H, W)`` bool ground truth.
    """

    features: torch.Tensor
    frame: ModelFrame
    points: PointSet
    mask: np.ndarray

    @classmethod
    def from_embedding(cls, embedding: "SamEmbedding", points: PointSet, mask: np.ndarray) -> "FinetuneExample":
        return cls(embedding.features.detach(), embedding.frame, points, np.asarray(mask, bool))


@dataclass(frozen=True)
class FinetuneConfig:
    """Training settings (defaults: the paper's)."""

    learning_rate: float = 1e-3
    max_epochs: int = 20
    patience: int = 3
    validation_fraction: float = 0.2
    train_decoder: bool = False
    seed: int = 0


@dataclass
class FinetuneResult:
    """Losses per epoch and validation IoU before / after training."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    iou_before: float = float("nan")
    iou_after: float = float("nan")
    n_train: int = 0
    n_validation: int = 0

    @property
    def gain_percent(self) -> float:
        return 100.0 * (self.iou_after - self.iou_before) / self.iou_before if self.iou_before > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "gain_percent": self.gain_percent}


def low_res_target(mask: np.ndarray, frame: ModelFrame) -> torch.Tensor:
    """``(1, 1, 256, 256)`` float32 fraction of object in each low-resolution cell (module docstring)."""
    return torch.from_numpy(frame.mask_fraction(mask, LOW_RES_SIDE))[None, None]


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    probability = torch.sigmoid(logits)
    dice = 1 - (2 * (probability * target).sum() + 1) / (probability.sum() + target.sum() + 1)
    return dice + F.binary_cross_entropy_with_logits(logits, target)


def _forward(sam: Sam, example: FinetuneExample, transform: ResizeLongestSide) -> torch.Tensor:
    """Single-mask ``(1, 1, 256, 256)`` low-resolution logits of the example's prompt."""
    prompt = example.points.to_prompt().points
    coords = transform.apply_coords(np.asarray(prompt.xy), example.mask.shape)
    points = (torch.as_tensor(coords, dtype=torch.float32)[None], torch.as_tensor(prompt.labels, dtype=torch.int64)[None])
    sparse, dense = sam.prompt_encoder(points=points, boxes=None, masks=None)
    logits, _ = sam.mask_decoder(
        image_embeddings=example.features,
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return logits


@torch.no_grad()
def evaluate(sam: Sam, examples: Sequence[FinetuneExample]) -> tuple[float, float]:
    """``(mean loss, mean full-resolution IoU)`` of single-mask predictions."""
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    losses, ious = [], []
    for example in examples:
        logits = _forward(sam, example, transform)
        losses.append(float(_loss(logits, low_res_target(example.mask, example.frame))))
        full = sam.postprocess_masks(logits, example.frame.input_hw, example.mask.shape)
        ious.append(iou(full[0, 0].numpy() > sam.mask_threshold, example.mask))
    return float(np.mean(losses)), float(np.mean(ious))


def finetune_sam(
    sam: Sam,
    examples: Sequence[FinetuneExample],
    config: FinetuneConfig = FinetuneConfig(),
    progress: ProgressCallback = no_progress,
) -> FinetuneResult:
    """Train ``sam``'s prompt encoder (and mask decoder if asked) in place; keep the best epoch.

    Raises:
        SegpromptError: fewer than two examples (no validation split possible).
    """
    if len(examples) < 2:
        raise SegpromptError(f"finetuning needs at least 2 examples for an 80/20 split, got {len(examples)}")
    order = np.random.default_rng(config.seed).permutation(len(examples))
    n_validation = min(len(examples) - 1, max(1, int(round(config.validation_fraction * len(examples)))))
    validation = [examples[i] for i in order[:n_validation]]
    train = [examples[i] for i in order[n_validation:]]
    trained = [sam.prompt_encoder] + ([sam.mask_decoder] if config.train_decoder else [])
    for parameter in sam.parameters():
        parameter.requires_grad_(False)
    parameters = [p for module in trained for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    targets = [low_res_target(example.mask, example.frame) for example in train]
    result = FinetuneResult(n_train=len(train), n_validation=len(validation))
    sam.eval()  # SAM has no dropout or batch norm; eval keeps that true for any variant
    best_loss, result.iou_before = evaluate(sam, validation)
    best_state = copy.deepcopy([module.state_dict() for module in trained])
    result.best_epoch, stale = 0, 0
    generator = np.random.default_rng(config.seed + 1)
    for epoch in range(1, config.max_epochs + 1):
        losses = []
        for index in generator.permutation(len(train)):
            optimizer.zero_grad()
            loss = _loss(_forward(sam, train[index], transform), targets[index])
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
        result.train_loss.append(float(np.mean(losses)))
        validation_loss, _ = evaluate(sam, validation)
        result.validation_loss.append(validation_loss)
        progress(epoch, config.max_epochs, f"epoch {epoch}: train {result.train_loss[-1]:.4f}, validation {validation_loss:.4f}")
        if validation_loss < best_loss:
            best_loss, result.best_epoch, stale = validation_loss, epoch, 0
            best_state = copy.deepcopy([module.state_dict() for module in trained])
        else:
            stale += 1
            if stale >= config.patience:
                break
    for module, state in zip(trained, best_state):
        module.load_state_dict(state)
    for parameter in parameters:
        parameter.requires_grad_(False)
    _, result.iou_after = evaluate(sam, validation)
    return result


def finetune_strategies(
    dataset: "Dataset",
    segmenter: "SamSegmenter",
    strategies: Sequence[str],
    counts: "PointCounts",
    config: FinetuneConfig = FinetuneConfig(),
    *,
    max_images: int | None = None,
    seed: int = 0,
    cache: "EmbeddingSource | None" = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, dict[str, Any]]:
    """Finetune a copy of ``segmenter.model`` (a :class:`~segprompt.backends.sam.SamSegmenter`) on each strategy's prompts.

    Every object of the first ``max_images`` samples gives one example per
    strategy, with the points the benchmark draws for it (same seed). Each
    strategy starts from the original weights; ``segmenter`` is not changed.

    Returns:
        ``{strategy: FinetuneResult.to_dict()}``.
    """
    from .counts import human_reference
    from .strategies import Target, create_strategy, strategy_rng

    total = len(dataset) if max_images is None else min(len(dataset), max_images)
    prepared = []
    for index in range(total):
        sample = dataset[index]
        objects = sample.objects()
        if objects:
            embedding = cache.embed(segmenter, sample.image) if cache is not None else segmenter.embed(sample.image)
            prepared.append((sample, objects, embedding))
        progress(index + 1, total, f"embedded {sample.id}")
    out = {}
    for name in strategies:
        strategy = create_strategy(name)
        examples = []
        for sample, objects, embedding in prepared:
            for obj in objects:
                def predict(points: PointSet, embedding: Embedding = embedding) -> np.ndarray:
                    return segmenter.predict(embedding, points.to_prompt(), multimask=len(points) == 1).best_mask

                target = Target(sample.image, obj.mask, sample.ignore, predict=predict)
                human = human_reference(sample) if len(objects) == 1 else None
                n_include, n_exclude = counts.for_object(obj.class_name, human)
                points = strategy.select(target, n_include, n_exclude, strategy_rng(seed, sample.id, obj.object_id, name))
                examples.append(FinetuneExample.from_embedding(embedding, points, obj.mask))
        model = copy.deepcopy(segmenter.model)
        out[name] = finetune_sam(model, examples, config).to_dict()
        progress(len(out), len(strategies), f"finetuned on {name}")
    return out
