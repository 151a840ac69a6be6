"""Prompt tuning for vision-language segmentation (TuneVLSeg's methods on a frozen CLIPSeg).

* :mod:`~segprompt.tuning.methods`: the registry of prompt methods (CoOp,
  CoCoOp, VPT shallow / deep, MaPLe, Shared-Attention, Shared-Separate);
* :mod:`~segprompt.tuning.model`: :class:`PromptedCLIPSeg`, the frozen model read through prompts;
* :mod:`~segprompt.tuning.tuned`: :class:`TunedCLIPSeg`, tokenizer + normalisation + checkpoint files;
* :mod:`~segprompt.tuning.data`: image / text / mask pairs from any :mod:`segprompt.datasets` folder;
* :mod:`~segprompt.tuning.train`: the training loop (resumable);
* :mod:`~segprompt.tuning.segmenter`: a tuned checkpoint as a text-prompted :class:`~segprompt.backends.Segmenter`.
"""

from .data import Pair, TextOverlay, build_pairs
from .methods import BaseDims, PromptMethod, PromptSet, create_method, method_names
from .model import DEFAULT_BASE, PromptedCLIPSeg, load_base
from .train import Evaluation, TrainConfig, TrainResult, dice_bce_loss, evaluate, train
from .tuned import TunedCLIPSeg

__all__ = [
    "DEFAULT_BASE",
    "BaseDims",
    "Evaluation",
    "Pair",
    "PromptMethod",
    "PromptSet",
    "PromptedCLIPSeg",
    "TextOverlay",
    "TrainConfig",
    "TrainResult",
    "TunedCLIPSeg",
    "build_pairs",
    "create_method",
    "dice_bce_loss",
    "evaluate",
    "load_base",
    "method_names",
    "train",
]
