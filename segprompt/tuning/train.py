"""Training prompt parameters on image / text / mask pairs (TuneVLSeg's recipe).

Loss: ``1.0 * Dice + 0.2 * BCE`` on the logits at model resolution (pixels
marked invalid are left out of both terms). AdamW (lr 2e-4, weight decay 0)
over the prompt parameters only; ``ReduceLROnPlateau`` (factor 0.2, patience
5) on the validation loss; early stopping after 12 epochs without a better
validation loss. Metrics: per-image Dice and IoU of ``sigmoid(logits) > 0.5``
(:mod:`segprompt.metrics`), averaged over images.

Files in the output folder: the best epoch's checkpoint
(``prompts.safetensors`` + ``tuning.json``, see :mod:`segprompt.tuning.tuned`)
and ``last.pt``, everything needed to resume after the last finished epoch
(prompt, optimizer and scheduler states, epoch, early-stopping counters,
history, torch RNG state), written atomically after every epoch.
"""

from __future__ import annotations

import io
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..progress import ProgressCallback, no_progress
from ..errors import CheckpointError, SegpromptError
from ..metrics import dice, iou
from .data import Pair, batches, num_batches
from .tuned import TunedCLIPSeg

LAST_STATE = "last.pt"
#: Added to numerator and denominator of the soft Dice (MONAI's default smoothing).
DICE_SMOOTH = 1e-5


@dataclass
class TrainConfig:
    """Hyper-parameters of a training run (defaults: TuneVLSeg)."""

    epochs: int = 100
    batch_size: int = 4
    lr: float = 2e-4
    weight_decay: float = 0.0
    plateau_factor: float = 0.2
    plateau_patience: int = 5
    early_stop_patience: int = 12
    dice_weight: float = 1.0
    bce_weight: float = 0.2
    augment: bool = True
    seed: int = 0
    #: Stop an epoch after this many optimizer steps (``None``: the whole training set).
    max_steps_per_epoch: int | None = None

    def check(self) -> None:
        for name in ("epochs", "batch_size", "plateau_patience", "early_stop_patience"):
            if getattr(self, name) < 1:
                raise SegpromptError(f"training option {name}={getattr(self, name)} must be at least 1")
        if not self.lr > 0:
            raise SegpromptError(f"training option lr={self.lr} must be positive")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise SegpromptError(f"training option max_steps_per_epoch={self.max_steps_per_epoch} must be at least 1")


@dataclass
class Evaluation:
    """Mean loss and per-image Dice / IoU averaged over the images."""

    loss: float
    dice: float
    iou: float


@dataclass
class TrainResult:
    """What a run did: one history row per finished epoch, and the best epoch (1-based)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stopped_early: bool = False


def dice_bce_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, dice_weight: float = 1.0, bce_weight: float = 0.2
) -> torch.Tensor:
    """``dice_weight * soft Dice loss + bce_weight * BCE``, both over valid pixels.

    Args:
        logits, target, valid: ``(B, S, S)`` float tensors; ``target`` and ``valid`` are 0/1.

    Returns:
        Scalar tensor: the soft Dice loss is ``1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)``
        per image (``p = sigmoid(logits)``), averaged over the batch; BCE is averaged over valid pixels.
    """
    probs = torch.sigmoid(logits) * valid
    target = target * valid
    dims = (-2, -1)
    overlap = (probs * target).sum(dims)
    soft_dice = 1.0 - (2.0 * overlap + DICE_SMOOTH) / (probs.sum(dims) + target.sum(dims) + DICE_SMOOTH)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, weight=valid, reduction="sum")
    return dice_weight * soft_dice.mean() + bce_weight * bce / valid.sum().clamp_min(1.0)


@torch.no_grad()
def evaluate(tuned: TunedCLIPSeg, pairs: Sequence[Pair], batch_size: int = 4, config: TrainConfig | None = None) -> Evaluation:
    """Loss and per-image Dice / IoU of ``tuned`` on ``pairs`` (no augmentation, eval mode)."""
    config = config or TrainConfig()
    tuned.net.eval()
    losses, dices, ious = [], [], []
    for batch in batches(pairs, batch_size):
        logits = tuned.logits(batch.images, batch.texts)
        loss = dice_bce_loss(logits, batch.masks, batch.valid, config.dice_weight, config.bce_weight)
        losses.append(float(loss) * len(batch.texts))
        for pred, gt, valid in zip((logits > 0).numpy(), batch.masks.numpy() > 0, batch.valid.numpy() > 0):
            dices.append(dice(pred, gt, ignore=~valid))
            ious.append(iou(pred, gt, ignore=~valid))
    return Evaluation(sum(losses) / len(pairs), float(np.mean(dices)), float(np.mean(ious)))


def _save_state(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def _load_state(path: Path, tuned: TunedCLIPSeg) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a broken file
        raise CheckpointError(f"{path}: cannot read the training state ({exc})") from exc
    method = tuned.net.method
    if state.get("method") != method.name or state.get("hyperparameters") != method.hyperparameters:
        raise CheckpointError(
            f"{path}: the run being resumed used {state.get('method')!r} {state.get('hyperparameters')}, "
            f"not {method.name!r} {method.hyperparameters}; use another --out or the same options"
        )
    return state


def train(
    tuned: TunedCLIPSeg,
    train_pairs: Sequence[Pair],
    val_pairs: Sequence[Pair],
    out: str | Path,
    config: TrainConfig | None = None,
    progress: ProgressCallback = no_progress,
    resume: bool = False,
) -> TrainResult:
    """Train ``tuned``'s prompt parameters; the backbone is never updated.

    Args:
        tuned: model with a tuning method (:meth:`TunedCLIPSeg.create`).
        train_pairs, val_pairs: resized pairs (:func:`segprompt.tuning.data.build_pairs`) at ``tuned.image_size``.
        out: output folder (best checkpoint + ``last.pt``).
        config: hyper-parameters.
        progress: called after every epoch as ``progress(epoch, epochs, summary)``.
        resume: continue from ``out/last.pt`` (after its last finished epoch).

    Returns:
        The history and best epoch. ``tuned`` ends with the last epoch's prompts;
        ``TunedCLIPSeg.load(out)`` gives the best ones.

    Raises:
        SegpromptError: no trainable prompts, empty pair lists, bad options,
            or ``out`` holding another run (without ``resume``).
    """
    config = config or TrainConfig()
    config.check()
    method = tuned.net.method
    if method is None:
        raise SegpromptError("training needs a tuning method")
    if not train_pairs or not val_pairs:
        raise SegpromptError(f"training needs training and validation pairs, got {len(train_pairs)} and {len(val_pairs)}")
    out = Path(out)
    state_path = out / LAST_STATE
    if state_path.exists() and not resume:
        raise SegpromptError(f"{out} already holds a training run ({LAST_STATE}); resume it or choose another output folder")
    if resume and not state_path.exists():
        raise SegpromptError(f"nothing to resume: {state_path} does not exist")
    tuned.default_text = Counter(p.text for p in train_pairs).most_common(1)[0][0]

    torch.manual_seed(config.seed)
    parameters = tuned.net.prompt_parameters()
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
    )
    result = TrainResult()
    start, bad_epochs = 0, 0
    if resume:
        state = _load_state(state_path, tuned)
        method.load_state_dict(state["method_state"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start, bad_epochs = state["epoch"], state["bad_epochs"]
        result = TrainResult(state["history"], state["best_epoch"], state["best_val_loss"], state["stopped_early"])
        if result.stopped_early:
            return result

    steps = num_batches(train_pairs, config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps = min(steps, config.max_steps_per_epoch)
    for epoch in range(start, config.epochs):
        began = time.perf_counter()
        tuned.net.train()
        rng = np.random.default_rng([config.seed, epoch])
        total = 0.0
        for step, batch in enumerate(batches(train_pairs, config.batch_size, rng if config.augment else None)):
            if step == steps:
                break
            logits = tuned.logits(batch.images, batch.texts)
            loss = dice_bce_loss(logits, batch.masks, batch.valid, config.dice_weight, config.bce_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        train_seconds = time.perf_counter() - began
        val = evaluate(tuned, val_pairs, config.batch_size, config)
        scheduler.step(val.loss)
        row = {
            "epoch": epoch + 1,
            "train_loss": total / steps,
            "val_loss": val.loss,
            "val_dice": val.dice,
            "val_iou": val.iou,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds_per_step": train_seconds / steps,
        }
        result.history.append(row)
        if val.loss < result.best_val_loss:
            result.best_val_loss, result.best_epoch, bad_epochs = val.loss, epoch + 1, 0
            tuned.save(out, best_epoch=epoch + 1, val_loss=val.loss, val_dice=val.dice, val_iou=val.iou, train_config=asdict(config))
        else:
            bad_epochs += 1
        result.stopped_early = bad_epochs >= config.early_stop_patience
        _save_state(
            state_path,
            {
                "method": method.name,
                "hyperparameters": method.hyperparameters,
                "method_state": method.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "bad_epochs": bad_epochs,
                "history": result.history,
                "best_epoch": result.best_epoch,
                "best_val_loss": result.best_val_loss,
                "stopped_early": result.stopped_early,
            },
        )
        progress(
            epoch + 1,
            config.epochs,
            f"epoch {epoch + 1}: train loss {row['train_loss']:.4f}, val loss {val.loss:.4f}, "
            f"val Dice {val.dice:.3f}, IoU {val.iou:.3f}",
        )
        if result.stopped_early:
            break
    return result
