"""Training prompt parameters on image / text / mask pairs.

Loss: ``dice_weight * Dice + bce_weight * BCE`` (1.0 and 0.2, MONAI's
``DiceCELoss`` as TuneVLSeg configures it) on the logits at model resolution
(pixels marked invalid are left out of both terms). AdamW over the trainable
parameters only, weight decay on Linear / convolution weights (TuneVLSeg's
parameter groups); ``ReduceLROnPlateau`` (factor 0.2, patience 5) on the
validation loss; gradients optionally accumulated over several batches.
After every epoch the checkpoint is kept when the validation figure it is
selected on improves (``select_on``: the loss, or the Dice as the paper's
Lightning ``ModelCheckpoint`` does), and training stops early once the
validation loss has not fallen by more than ``early_stop_delta`` for
``early_stop_patience`` epochs (Lightning's ``EarlyStopping`` rule) or is not
finite. :class:`TrainConfig`'s defaults are our protocol;
:func:`segprompt.tuning.protocol.get_protocol` gives the paper's.

Metrics (:class:`Evaluation`): per-image Dice and IoU of ``sigmoid(logits) >
0.5`` averaged over images, both 1 when prediction and target are empty
(torchmetrics' ``zero_division=1``), and the binary Jaccard index of the
whole set (intersections and unions summed over images first, as
torchmetrics' ``JaccardIndex(task="binary")`` accumulates them).

Files in the output folder: the selected epoch's checkpoint
(``prompts.safetensors`` + ``tuning.json``, see :mod:`segprompt.tuning.tuned`)
and ``last.pt``, everything needed to resume after the last finished epoch
(trainable, optimizer and scheduler states, epoch, selection and
early-stopping counters, history, torch RNG state), written atomically after
every epoch.
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
from torch import nn

from ..atomic import atomic_write_bytes
from ..progress import ProgressCallback, no_progress
from ..errors import CheckpointError, SegpromptError, load_failure
from ..metrics import dice, iou
from .data import AUGMENTATIONS, Pair, batches, num_batches
from .tuned import TunedCLIPSeg

LAST_STATE = "last.pt"
#: Added to numerator and denominator of the soft Dice (MONAI's default smoothing).
DICE_SMOOTH = 1e-5
PROTOCOLS = ("ours", "paper")
#: Validation figures a checkpoint can be selected on, with the direction that is better.
SELECTIONS = {"val_loss": "min", "val_dice": "max"}


@dataclass
class TrainConfig:
    """Settings of a training run; the defaults are our protocol (``protocol="ours"``).

    ``protocol`` labels the run (recorded in its files; a resumed run must
    carry the same label); the other fields say what the run does.
    ``segprompt.tuning.protocol.get_protocol("paper").train_config(method)``
    gives the paper's settings.
    """

    protocol: str = "ours"
    epochs: int = 100
    batch_size: int = 4
    #: Optimizer step every this many batches (losses divided by it; the epoch's last batch always steps).
    accumulate_batches: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    plateau_factor: float = 0.2
    plateau_patience: int = 5
    early_stop_patience: int = 12
    #: The validation loss must fall by more than this to count as better for early stopping.
    early_stop_delta: float = 0.0
    #: The validation figure the kept checkpoint is chosen on (a key of :data:`SELECTIONS`).
    select_on: str = "val_loss"
    dice_weight: float = 1.0
    bce_weight: float = 0.2
    augment: bool = True
    #: Training augmentation, a key of :data:`segprompt.tuning.data.AUGMENTATIONS`.
    augmentation: str = "ours"
    seed: int = 0
    #: Stop an epoch after this many batches (``None``: the whole training set).
    max_steps_per_epoch: int | None = None

    def check(self) -> None:
        for name in ("epochs", "batch_size", "accumulate_batches", "plateau_patience", "early_stop_patience"):
            if getattr(self, name) < 1:
                raise SegpromptError(f"training option {name}={getattr(self, name)} must be at least 1")
        if not self.lr > 0:
            raise SegpromptError(f"training option lr={self.lr} must be positive")
        if self.weight_decay < 0 or self.early_stop_delta < 0:
            raise SegpromptError("training options weight_decay and early_stop_delta must not be negative")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise SegpromptError(f"training option max_steps_per_epoch={self.max_steps_per_epoch} must be at least 1")
        for name, value, choices in (
            ("protocol", self.protocol, PROTOCOLS),
            ("select_on", self.select_on, tuple(SELECTIONS)),
            ("augmentation", self.augmentation, tuple(AUGMENTATIONS)),
        ):
            if value not in choices:
                raise SegpromptError(f"training option {name}={value!r} must be one of {', '.join(choices)}")


@dataclass
class Evaluation:
    """Mean loss, per-image Dice / IoU averaged over images, and the set's accumulated binary Jaccard."""

    loss: float
    dice: float
    iou: float
    jaccard: float


@dataclass
class TrainResult:
    """What a run did: one history row per finished epoch, the selected epoch (1-based) and its score."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_score: float = math.nan
    stopped_early: bool = False


@dataclass
class EarlyStopping:
    """Lightning's ``EarlyStopping`` on a value to minimise.

    A value improves when it is below the best so far by more than ``delta``;
    after ``patience`` values in a row that do not, :meth:`update` says stop.
    A value that is not finite stops at once (Lightning's ``check_finite``).
    """

    patience: int
    delta: float = 0.0
    best: float = math.inf
    bad_epochs: int = 0

    def update(self, value: float) -> bool:
        """Record ``value``; ``True`` when training should stop."""
        if not math.isfinite(value):
            return True
        if value < self.best - self.delta:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience


def improves(value: float, best: float, select_on: str) -> bool:
    """Whether ``value`` of ``select_on`` strictly beats ``best`` (``NaN``: nothing kept yet). A ``NaN`` value never does."""
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value < best if SELECTIONS[select_on] == "min" else value > best


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


def mask_scores(
    preds: Sequence[np.ndarray], targets: Sequence[np.ndarray], valid: Sequence[np.ndarray]
) -> tuple[float, float, float]:
    """``(mean Dice, mean IoU, accumulated Jaccard)`` of binary masks.

    Dice and IoU are per mask (1 when prediction and target are both empty,
    torchmetrics' ``zero_division=1``) averaged over masks; the Jaccard sums
    intersections and unions over all masks first (1 when the total union is
    empty). Pixels where ``valid`` is False count nowhere.
    """
    dices = [dice(p, t, ignore=~v) for p, t, v in zip(preds, targets, valid)]
    ious = [iou(p, t, ignore=~v) for p, t, v in zip(preds, targets, valid)]
    intersection = sum(int(np.count_nonzero(p & t & v)) for p, t, v in zip(preds, targets, valid))
    union = sum(int(np.count_nonzero((p | t) & v)) for p, t, v in zip(preds, targets, valid))
    return float(np.mean(dices)), float(np.mean(ious)), 1.0 if union == 0 else intersection / union


@torch.no_grad()
def evaluate(tuned: TunedCLIPSeg, pairs: Sequence[Pair], batch_size: int = 4, config: TrainConfig | None = None) -> Evaluation:
    """Loss, per-image Dice / IoU and accumulated Jaccard of ``tuned`` on ``pairs`` (no augmentation, eval mode)."""
    config = config or TrainConfig()
    tuned.net.eval()
    losses: list[float] = []
    preds: list[np.ndarray] = []
    for batch in batches(pairs, batch_size):
        logits = tuned.logits(batch.images, batch.texts)
        masks, valid = batch.masks.to(logits.device), batch.valid.to(logits.device)
        loss = dice_bce_loss(logits, masks, valid, config.dice_weight, config.bce_weight)
        losses.append(float(loss) * len(batch.texts))
        preds.extend((logits > 0).cpu().numpy())
    scores = mask_scores(preds, [pair.mask for pair in pairs], [pair.valid for pair in pairs])
    return Evaluation(sum(losses) / len(pairs), *scores)


def weight_decay_groups(parameters_of: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups as TuneVLSeg builds them (``get_optim_groups``).

    With ``weight_decay > 0`` only the weights of Linear and convolution layers
    and attention in-projection weights decay; prompt vectors, biases, norms
    and other scalars do not. Only parameters that require grad are included.
    """
    trainable = [p for p in parameters_of.parameters() if p.requires_grad]
    if weight_decay <= 0:
        return [{"params": trainable}]
    decayed: dict[int, nn.Parameter] = {}
    for module in parameters_of.modules():
        for name, parameter in module.named_parameters(recurse=False):
            linear_weight = name == "weight" and isinstance(module, (nn.Linear, nn.modules.conv._ConvNd))
            if parameter.requires_grad and (linear_weight or name.endswith("proj_weight")):
                decayed[id(parameter)] = parameter
    groups = [
        {"params": list(decayed.values()), "weight_decay": weight_decay},
        {"params": [p for p in trainable if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _save_state(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getbuffer())


def _load_state(path: Path, tuned: TunedCLIPSeg, config: TrainConfig) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a broken file
        raise CheckpointError(f"{path}: cannot read the training state ({load_failure(exc)})") from exc
    if "trainable_state" not in state:
        raise CheckpointError(f"{path}: written by an older segprompt, cannot be resumed; start a new run in another --out")
    protocol = state["protocol"]
    if protocol != config.protocol:
        raise CheckpointError(
            f"{path}: the run being resumed used protocol {protocol!r}, not {config.protocol!r}; "
            f"use another --out or --protocol {protocol}"
        )
    method = tuned.net.method
    if state.get("method") != method.name or state.get("hyperparameters") != method.hyperparameters:
        raise CheckpointError(
            f"{path}: the run being resumed used {state.get('method')!r} {state.get('hyperparameters')}, "
            f"not {method.name!r} {method.hyperparameters}; use another --out or the same options"
        )
    options = state["model_options"]
    if options != asdict(tuned.net.options):
        raise CheckpointError(f"{path}: the run being resumed used model options {options}, not {asdict(tuned.net.options)}")
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
    """Train ``tuned``'s prompt parameters (and extra layer); the backbone is never updated.

    Args:
        tuned: model with a tuning method (:meth:`TunedCLIPSeg.create`).
        train_pairs, val_pairs: resized pairs (:func:`segprompt.tuning.data.build_pairs`) at ``tuned.image_size``.
        out: output folder (selected checkpoint + ``last.pt``).
        config: settings.
        progress: called after every epoch as ``progress(epoch, epochs, summary)``.
        resume: continue from ``out/last.pt`` (after its last finished epoch).

    Returns:
        The history and selected epoch. ``tuned`` ends with the last epoch's
        prompts; ``TunedCLIPSeg.load(out)`` (or :meth:`TunedCLIPSeg.load_prompts`) gives the selected ones.

    Raises:
        SegpromptError: no trainable prompts, empty pair lists, bad options,
            ``out`` holding another run (without ``resume``), or a resumed run
            of another method, protocol or model options.
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
    trainable = nn.ModuleList(module for module in (method, tuned.net.extra_layer) if module is not None)
    optimizer = torch.optim.AdamW(weight_decay_groups(trainable, config.weight_decay), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.plateau_factor, patience=config.plateau_patience
    )
    result = TrainResult()
    stopping = EarlyStopping(config.early_stop_patience, config.early_stop_delta)
    start = 0
    if resume:
        state = _load_state(state_path, tuned, config)
        tuned.net.load_trainable_state(state["trainable_state"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and tuned.device.type == "cuda":  # dropout on the GPU draws from its own generator
            torch.cuda.set_rng_state(state["cuda_rng"], tuned.device)
        start = state["epoch"]
        stopping = EarlyStopping(config.early_stop_patience, config.early_stop_delta, *state["stopping"])
        result = TrainResult(state["history"], state["best_epoch"], state["best_score"], state["stopped_early"])
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
        optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(batches(train_pairs, config.batch_size, rng, config.augmentation if config.augment else None)):
            if step == steps:
                break
            logits = tuned.logits(batch.images, batch.texts)
            masks, valid = batch.masks.to(logits.device), batch.valid.to(logits.device)
            loss = dice_bce_loss(logits, masks, valid, config.dice_weight, config.bce_weight)
            (loss / config.accumulate_batches).backward()
            if (step + 1) % config.accumulate_batches == 0 or step + 1 == steps:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
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
            "val_jaccard": val.jaccard,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds_per_step": train_seconds / steps,
        }
        result.history.append(row)
        if improves(row[config.select_on], result.best_score, config.select_on):
            result.best_score, result.best_epoch = row[config.select_on], epoch + 1
            tuned.save(
                out, best_epoch=epoch + 1, selected_on=config.select_on, val_loss=val.loss, val_dice=val.dice,
                val_iou=val.iou, val_jaccard=val.jaccard, train_config=asdict(config),
            )  # fmt: skip
        result.stopped_early = stopping.update(val.loss)
        _save_state(
            state_path,
            {
                "method": method.name,
                "hyperparameters": method.hyperparameters,
                "model_options": asdict(tuned.net.options),
                "protocol": config.protocol,
                "trainable_state": tuned.net.trainable_state(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state(tuned.device)} if tuned.device.type == "cuda" else {}),
                "epoch": epoch + 1,
                "stopping": (stopping.best, stopping.bad_epochs),
                "history": result.history,
                "best_epoch": result.best_epoch,
                "best_score": result.best_score,
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
