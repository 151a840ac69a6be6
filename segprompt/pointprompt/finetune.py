"""Finetune SAM's prompt encoder on automatic point prompts, by our recipe or the PointPrompt paper's.

Only SAM's prompt encoder is trained (optionally its mask decoder too); the
image encoder stays frozen, so each image is embedded once. Adam (learning
rate 1e-3) on the single-mask ``(256, 256)`` low-resolution logits, batch 1,
the best epoch's weights kept. Two recipes (:class:`FinetuneConfig`):

* ours (the defaults): loss = soft Dice + binary cross-entropy against the
  object's coverage of each low-resolution cell; seeded 80 / 20 train /
  validation split; at most 20 epochs, stopping after 3 epochs in a row
  without a lower validation loss, the untrained weights kept if no epoch
  beats them.
* the paper's (:data:`PAPER_FINETUNE`, olivesgatech/PointPrompt
  ``finetuning SAM/train.py``): MONAI's ``DiceCELoss(sigmoid=True,
  squared_pred=True)`` against the mask resized by bicubic interpolation
  (longest side 256, values 0/1) and padded; ``torch.manual_seed(42)``'s
  ``random_split`` 80 / 20; at most 50 epochs; an epoch whose validation loss,
  rounded to 3 decimals, is not below the best so far counts one, and so does
  every epoch after the second whose rounded training loss does not fall;
  training stops before the epoch once 5 have counted (never reset); the
  first epoch is always kept.

IoU is measured at full image resolution before and after training, on the
held-out test examples when there are any (the release's ``test.npy`` list,
:func:`segprompt.datasets.pointprompt.read_test_list`), else on the validation split.

Frames: points are original-image ``(x, y)`` pixels (mapped to SAM's 1024
input frame by ``ResizeLongestSide``, as ``SamPredictor`` does); the target is
our target is the fraction of each 256 x 256 low-resolution cell of SAM's
padded frame the ground-truth mask covers (:meth:`ModelFrame.mask_fraction
<segprompt.backends.frame.ModelFrame.mask_fraction>`: soft targets in ``[0, 1]``,
padding background); the paper's is the reference code's bicubic resize
(:func:`bicubic_target`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Collection, Literal, Sequence

import cv2
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
    from .config import BenchmarkConfig
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
    """Training settings (defaults: our recipe; :data:`PAPER_FINETUNE`: the paper's).

    Attributes:
        learning_rate: Adam's learning rate.
        max_epochs: epochs at most.
        patience: ``stopping="patience"``: epochs in a row without a lower
            validation loss; ``"cumulative"``: counted epochs in all (module docstring).
        stopping: ``"patience"`` or ``"cumulative"``.
        loss: ``"dice_bce"`` (soft Dice + BCE) or ``"dice_ce_squared"`` (MONAI's
            ``DiceCELoss`` with squared predictions and 1e-5 smoothing).
        target: ``"coverage"`` (fraction of each low-resolution cell inside the
            object) or ``"bicubic"`` (the mask resized bicubically to a 0/1 map).
        split: train / validation split: ``"seeded"`` (numpy, ``seed``) or
            ``"torch42"`` (``torch.manual_seed(42)``'s ``random_split``).
        validation_fraction: share of the training examples held out for stopping.
        train_decoder: train the mask decoder too.
        seed: split (``"seeded"``) and shuffling seed.
        test_fraction: without a test list, hold out this seeded share of the
            images as a test split (``None``: report on the validation split).
    """

    learning_rate: float = 1e-3
    max_epochs: int = 20
    patience: int = 3
    stopping: Literal["patience", "cumulative"] = "patience"
    loss: Literal["dice_bce", "dice_ce_squared"] = "dice_bce"
    target: Literal["coverage", "bicubic"] = "coverage"
    split: Literal["seeded", "torch42"] = "seeded"
    validation_fraction: float = 0.2
    train_decoder: bool = False
    seed: int = 0
    test_fraction: float | None = None


#: The PointPrompt reference code's recipe (module docstring); with no test list it holds out a seeded 10 %
#: of the images (the release's list holds 600 of the 6,400 images).
PAPER_FINETUNE = FinetuneConfig(
    max_epochs=50, patience=5, stopping="cumulative", loss="dice_ce_squared", target="bicubic", split="torch42",
    test_fraction=0.1,
)


@dataclass
class FinetuneResult:
    """Losses per epoch and IoU before / after training, on ``evaluated_on`` (``"test"`` or ``"validation"``)."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1
    iou_before: float = float("nan")
    iou_after: float = float("nan")
    evaluated_on: str = "validation"
    n_train: int = 0
    n_validation: int = 0
    n_test: int = 0

    @property
    def gain_percent(self) -> float:
        return 100.0 * (self.iou_after - self.iou_before) / self.iou_before if self.iou_before > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "gain_percent": self.gain_percent}


def low_res_target(mask: np.ndarray, frame: ModelFrame) -> torch.Tensor:
    """``(1, 1, 256, 256)`` float32 fraction of object in each low-resolution cell (module docstring)."""
    return torch.from_numpy(frame.mask_fraction(mask, LOW_RES_SIDE))[None, None]


def bicubic_target(mask: np.ndarray) -> torch.Tensor:
    """``(1, 1, 256, 256)`` float32 0/1 target of the reference code: the uint8 mask resized bicubically so its
    longest side is 256 (sides truncated), then padded with 0 at the bottom / right."""
    height, width = mask.shape
    scale = LOW_RES_SIDE / max(height, width)
    size = (int(width * scale), int(height * scale))
    resized = cv2.resize(np.asarray(mask, np.uint8), size, interpolation=cv2.INTER_CUBIC)
    padded = np.pad(resized, ((0, LOW_RES_SIDE - size[1]), (0, LOW_RES_SIDE - size[0])))
    return torch.as_tensor(padded.astype(np.float32))[None, None]


def make_target(mask: np.ndarray, frame: ModelFrame, config: FinetuneConfig) -> torch.Tensor:
    """The training target of ``mask`` (in the image of ``frame``) under ``config.target``."""
    return bicubic_target(mask) if config.target == "bicubic" else low_res_target(mask, frame)


def dice_bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice (smoothing 1) + binary cross-entropy, over the whole map."""
    probability = torch.sigmoid(logits)
    dice = 1 - (2 * (probability * target).sum() + 1) / (probability.sum() + target.sum() + 1)
    return dice + F.binary_cross_entropy_with_logits(logits, target)


def dice_ce_squared_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """MONAI's ``DiceCELoss(sigmoid=True, squared_pred=True)`` on one channel: per map
    ``1 - (2 sum(p t) + s) / (sum(p^2) + sum(t^2) + s)`` averaged, plus the mean binary cross-entropy."""
    probability = torch.sigmoid(logits)
    dims = tuple(range(2, logits.ndim))
    dice = 1 - (2 * (probability * target).sum(dims) + smooth) / ((probability**2).sum(dims) + (target**2).sum(dims) + smooth)
    return dice.mean() + F.binary_cross_entropy_with_logits(logits, target)


LOSSES = {"dice_bce": dice_bce_loss, "dice_ce_squared": dice_ce_squared_loss}


def _forward(sam: Sam, example: FinetuneExample, transform: ResizeLongestSide) -> torch.Tensor:
    """Single-mask ``(1, 1, 256, 256)`` low-resolution logits of the example's prompt."""
    prompt = example.points.to_prompt().points
    coords = transform.apply_coords(np.asarray(prompt.xy), example.mask.shape)
    device = sam.device
    points = (
        torch.as_tensor(coords, dtype=torch.float32, device=device)[None],
        torch.as_tensor(np.array(prompt.labels), dtype=torch.int64, device=device)[None],
    )
    sparse, dense = sam.prompt_encoder(points=points, boxes=None, masks=None)
    logits, _ = sam.mask_decoder(
        image_embeddings=example.features.to(device),
        image_pe=sam.prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=False,
    )
    return logits


@torch.no_grad()
def evaluate(sam: Sam, examples: Sequence[FinetuneExample], config: FinetuneConfig = FinetuneConfig()) -> tuple[float, float]:
    """``(mean loss, mean full-resolution IoU)`` of single-mask predictions (NaN, NaN without examples)."""
    if not examples:
        return float("nan"), float("nan")
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    losses, ious = [], []
    for example in examples:
        logits = _forward(sam, example, transform)
        losses.append(float(LOSSES[config.loss](logits, make_target(example.mask, example.frame, config).to(logits.device))))
        full = sam.postprocess_masks(logits, example.frame.input_hw, example.mask.shape)
        ious.append(iou((full[0, 0] > sam.mask_threshold).cpu().numpy(), example.mask))
    return float(np.mean(losses)), float(np.mean(ious))


def split_examples(n: int, config: FinetuneConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(train indices, validation indices)`` of ``n`` examples under ``config.split``."""
    if config.split == "torch42":  # random_split(dataset, [int(0.8 n), rest]) after torch.manual_seed(42)
        # a CPU generator on purpose: the reference's split is the CPU generator's draw, whatever the device
        order = torch.randperm(n, generator=torch.Generator().manual_seed(42)).numpy()
        n_train = max(1, min(n - 1, int((1 - config.validation_fraction) * n)))
        return order[:n_train], order[n_train:]
    order = np.random.default_rng(config.seed).permutation(n)
    n_validation = min(n - 1, max(1, int(round(config.validation_fraction * n))))
    return order[n_validation:], order[:n_validation]


class _Stopping:
    """When to keep an epoch's weights and when to stop (``config.stopping``, module docstring)."""

    def __init__(self, config: FinetuneConfig, untrained_loss: float) -> None:
        self.config = config
        cumulative = config.stopping == "cumulative"
        self.best = float("inf") if cumulative else untrained_loss
        self.count = 0

    def improved(self, epoch: int, validation_loss: float, train_losses: Sequence[float]) -> bool:
        """Record ``epoch`` (1-based); whether its weights are the best so far."""
        if self.config.stopping == "patience":
            better = validation_loss < self.best
            self.count = 0 if better else self.count + 1
        else:
            better = round(validation_loss, 3) < round(self.best, 3)
            self.count += not better
            if epoch > 2 and round(train_losses[-1], 3) >= round(train_losses[-2], 3):
                self.count += 1
        if better:
            self.best = validation_loss
        return better

    def stop(self) -> bool:
        return self.count >= self.config.patience


def finetune_sam(
    sam: Sam,
    examples: Sequence[FinetuneExample],
    config: FinetuneConfig = FinetuneConfig(),
    progress: ProgressCallback = no_progress,
    test: Sequence[FinetuneExample] = (),
) -> FinetuneResult:
    """Train ``sam``'s prompt encoder (and mask decoder if asked) in place on ``examples``; keep the best epoch.

    ``examples`` are split into training and validation (stopping) parts; the
    IoU before / after is measured on ``test`` when given, else on the validation part.

    Raises:
        SegpromptError: fewer than two examples (no validation split possible).
    """
    if len(examples) < 2:
        raise SegpromptError(f"finetuning needs at least 2 examples for a train / validation split, got {len(examples)}")
    train_index, validation_index = split_examples(len(examples), config)
    validation = [examples[i] for i in validation_index]
    train = [examples[i] for i in train_index]
    held_out = list(test) if test else validation
    trained = [sam.prompt_encoder] + ([sam.mask_decoder] if config.train_decoder else [])
    for parameter in sam.parameters():
        parameter.requires_grad_(False)
    parameters = [p for module in trained for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    targets = [make_target(example.mask, example.frame, config).to(sam.device) for example in train]
    result = FinetuneResult(
        evaluated_on="test" if test else "validation", n_train=len(train), n_validation=len(validation), n_test=len(test)
    )
    sam.eval()  # SAM has no dropout or batch norm; eval keeps that true for any variant
    untrained_loss, _ = evaluate(sam, validation, config)
    _, result.iou_before = evaluate(sam, held_out, config)
    best_state = copy.deepcopy([module.state_dict() for module in trained])
    result.best_epoch = 0
    stopping = _Stopping(config, untrained_loss)
    generator = np.random.default_rng(config.seed + 1)
    loss_of = LOSSES[config.loss]
    for epoch in range(1, config.max_epochs + 1):
        if stopping.stop():
            break
        losses = []
        for index in generator.permutation(len(train)):
            optimizer.zero_grad()
            loss = loss_of(_forward(sam, train[index], transform), targets[index])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        result.train_loss.append(float(np.mean(losses)))
        validation_loss, _ = evaluate(sam, validation, config)
        result.validation_loss.append(validation_loss)
        progress(epoch, config.max_epochs, f"epoch {epoch}: train {result.train_loss[-1]:.4f}, validation {validation_loss:.4f}")
        if stopping.improved(epoch, validation_loss, result.train_loss):
            result.best_epoch = epoch
            best_state = copy.deepcopy([module.state_dict() for module in trained])
    for module, state in zip(trained, best_state):
        module.load_state_dict(state)
    for parameter in parameters:
        parameter.requires_grad_(False)
    _, result.iou_after = evaluate(sam, held_out, config)
    return result


def held_out_ids(ids: Sequence[str], config: FinetuneConfig, test_ids: Collection[str] | None = None) -> set[str]:
    """The sample ids whose examples form the test split: those of ``test_ids`` present, else a seeded
    ``config.test_fraction`` of ``ids`` (none without one)."""
    if test_ids is not None:
        return set(test_ids) & set(ids)
    if config.test_fraction is None or len(ids) < 2:
        return set()
    from ..datasets.splits import train_groups

    return set(ids) - train_groups(ids, 1.0 - config.test_fraction, config.seed)


def finetune_strategies(
    dataset: "Dataset",
    segmenter: "SamSegmenter",
    benchmark: "BenchmarkConfig",
    config: FinetuneConfig = FinetuneConfig(),
    *,
    test_ids: Collection[str] | None = None,
    max_images: int | None = None,
    cache: "EmbeddingSource | None" = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, dict[str, Any]]:
    """Finetune a copy of ``segmenter.model`` (a :class:`~segprompt.backends.sam.SamSegmenter`) on each strategy's prompts.

    Every object of the first ``max_images`` samples gives one example per
    strategy of ``benchmark``, with the points the benchmark draws for it
    (same seed, counts, options and mask selection). The objects of the test
    samples (:func:`held_out_ids`) are held out and report the IoU before /
    after; the rest is split into training and validation. Each strategy
    starts from the original weights; ``segmenter`` is not changed.

    Returns:
        ``{strategy: FinetuneResult.to_dict()}``.
    """
    from .counts import human_reference
    from .strategies import Target, strategy_rng

    total = len(dataset) if max_images is None else min(len(dataset), max_images)
    held_out = held_out_ids(list(dataset.ids)[:total], config, test_ids)
    prepared = []
    for index in range(total):
        sample = dataset[index]
        objects = sample.objects()
        if objects:
            embedding = cache.embed(segmenter, sample.image) if cache is not None else segmenter.embed(sample.image)
            prepared.append((sample, objects, embedding))
        progress(index + 1, total, f"embedded {sample.id}")
    out = {}
    for name, strategy in benchmark.create_strategies().items():
        examples: list[FinetuneExample] = []
        test: list[FinetuneExample] = []
        for sample, objects, embedding in prepared:
            for obj in objects:
                def predict(points: PointSet, embedding: Embedding = embedding) -> np.ndarray:
                    answer = segmenter.predict(embedding, points.to_prompt(), multimask=benchmark.multimask_for(len(points)))
                    return answer.masks[0] if benchmark.selection == "first" else answer.best_mask

                target = Target(sample.image, obj.mask, sample.ignore, predict=predict)
                human = human_reference(sample) if len(objects) == 1 else None
                n_include, n_exclude = benchmark.counts.for_object(obj.class_name, human)
                rng = strategy_rng(benchmark.seed, sample.id, obj.object_id, name)
                points = strategy.select(target, n_include, n_exclude, rng)
                example = FinetuneExample.from_embedding(embedding, points, obj.mask)
                (test if sample.id in held_out else examples).append(example)
        model = copy.deepcopy(segmenter.model)
        out[name] = finetune_sam(model, examples, config, test=test).to_dict()
        progress(len(out), len(benchmark.strategies), f"finetuned on {name}")
    return out
