"""Prompt tuning for vision-language segmentation (TuneVLSeg's methods on a frozen CLIPSeg).

* :mod:`~segprompt.tuning.methods`: the registry of prompt methods (CoOp,
  CoCoOp, VPT shallow / deep, MaPLe, Shared-Attention, Shared-Separate);
* :mod:`~segprompt.tuning.model`: :class:`PromptedCLIPSeg`, the frozen model read through prompts;
* :mod:`~segprompt.tuning.tuned`: :class:`TunedCLIPSeg`, tokenizer + normalisation + checkpoint files;
* :mod:`~segprompt.tuning.data`: image / text / mask pairs from any :mod:`segprompt.datasets` folder;
* :mod:`~segprompt.tuning.train`: the training loop (resumable);
* :mod:`~segprompt.tuning.protocol`: our defaults and the paper's (TuneVLSeg's reference code);
* :mod:`~segprompt.tuning.run`: a run end to end (data parts, training, test report, ``summary.json``);
* :mod:`~segprompt.tuning.search`: the Optuna search over lr, weight decay and prompt depth (resumable);
* :mod:`~segprompt.tuning.segmenter`: a tuned checkpoint as a text-prompted :class:`~segprompt.backends.Segmenter`.
"""

from .data import Pair, TextOverlay, build_pairs, tuning_parts
from .methods import BaseDims, PromptMethod, PromptSet, create_method, method_names
from .model import DEFAULT_BASE, ModelOptions, PromptedCLIPSeg, load_base
from .protocol import Protocol, get_protocol
from .run import RunData, load_run_data, run_tuning
from .train import Evaluation, TrainConfig, TrainResult, dice_bce_loss, evaluate, train
from .tuned import TunedCLIPSeg

__all__ = [
    "DEFAULT_BASE",
    "BaseDims",
    "Evaluation",
    "ModelOptions",
    "Pair",
    "PromptMethod",
    "PromptSet",
    "PromptedCLIPSeg",
    "Protocol",
    "RunData",
    "TextOverlay",
    "TrainConfig",
    "TrainResult",
    "TunedCLIPSeg",
    "build_pairs",
    "create_method",
    "dice_bce_loss",
    "evaluate",
    "get_protocol",
    "load_base",
    "load_run_data",
    "method_names",
    "run_tuning",
    "train",
    "tuning_parts",
]
