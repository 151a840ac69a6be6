"""The PointPrompt benchmark: human versus automatic point prompts on SAM.

Reproduces and extends "Benchmarking Human and Automated Prompting in the
Segment Anything Model" (PointPrompt, olivesgatech): automatic point
strategies (:mod:`.strategies`), interpretable prompt features
(:mod:`.features`; the reference code's: :mod:`.paper_features`), scoring
against human prompts (:mod:`.scoring`), IoU regression (:mod:`.regression`),
prompt-encoder finetuning (:mod:`.finetune`) and a resumable runner
(:mod:`.runner`), under our protocol or the paper's (:mod:`.config`:
``BenchmarkConfig.for_protocol("paper")``).

Example::

    from segprompt.backends import create
    from segprompt.datasets import open_dataset
    from segprompt.pointprompt import BenchmarkConfig, run_benchmark

    summary = run_benchmark(open_dataset("../shared/data/kvasir_seg"), create("classical"), "runs/kvasir",
                            BenchmarkConfig(max_images=10))
"""

from .config import PAPER_STRATEGIES, BenchmarkConfig
from .counts import PAPER_COUNTS, PointCounts
from .features import FEATURES, object_features, prompt_features
from .paper_features import PAPER_FEATURES, paper_object_features, paper_prompt_features
from .regression import regress_iou
from .runner import run_benchmark, summarize_run
from .scoring import summarize
from .strategies import PointSet, Strategy, Target, create_strategy, strategy_names

__all__ = [
    "FEATURES",
    "PAPER_COUNTS",
    "PAPER_FEATURES",
    "PAPER_STRATEGIES",
    "BenchmarkConfig",
    "PointCounts",
    "PointSet",
    "Strategy",
    "Target",
    "create_strategy",
    "object_features",
    "paper_object_features",
    "paper_prompt_features",
    "prompt_features",
    "regress_iou",
    "run_benchmark",
    "strategy_names",
    "summarize",
    "summarize_run",
]
