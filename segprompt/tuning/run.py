"""One tuning run end to end: data parts, training, the kept checkpoint on the test part, ``summary.json``.

:func:`load_run_data` turns a dataset folder into training / validation /
test pairs as a :class:`~segprompt.tuning.protocol.Protocol` prepares them;
:func:`run_tuning` trains (resumable), restores the kept checkpoint, scores it
on the test part (when there is one) and writes ``summary.json``:

``{"protocol", "method", "hyperparameters", "model_options", "base_model",
"image_size", "settings" (the TrainConfig), "data" (dataset, layout, how the
parts were made, their sizes), "best_epoch", "selected_on", "epochs_run",
"stopped_early", "val" and "test" (``{"loss", "dice", "iou", "jaccard"}``, see
:class:`~segprompt.tuning.train.Evaluation`; ``test`` is ``null`` without a
test part)}``, plus ``"search"`` after a hyper-parameter search.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..progress import ProgressCallback, no_progress
from .data import DEFAULT_PROMPT_KEY, Pair, TextOverlay, build_pairs, tuning_parts
from .protocol import Protocol
from .train import TrainConfig, TrainResult, evaluate, train
from .tuned import TunedCLIPSeg

SUMMARY_FILE = "summary.json"
#: Seed of the 80 / 20 (/ 10) split of folders without split files, the same under both protocols
#: so that their runs see the same images.
SPLIT_SEED = 0


@dataclass
class RunData:
    """Pairs of one run and where they came from (``description`` goes into ``summary.json``)."""

    train: list[Pair]
    val: list[Pair]
    test: list[Pair] | None
    description: dict[str, Any]


def _limited(dataset: Any, limit: int | None) -> Any:
    return dataset if limit is None else dataset.subset(list(dataset.ids)[:limit])


def load_run_data(
    dataset: Any,
    protocol: Protocol,
    image_size: int,
    *,
    overlay: TextOverlay | None = None,
    val_split: str | None = None,
    test_split: str | None = None,
    limit: int | None = None,
    prompt_key: str = DEFAULT_PROMPT_KEY,
) -> RunData:
    """Pairs of ``dataset`` (a :class:`~segprompt.datasets.LazyDataset`) for a run under ``protocol``.

    Args:
        limit: keep at most this many images of each part (quick runs).
        val_split, test_split, prompt_key: see :func:`~segprompt.tuning.data.tuning_parts` and
            :func:`~segprompt.tuning.data.build_pairs`.

    Raises:
        DatasetError: missing splits, unreadable data, a missing text prompt.
    """
    with_test = True if protocol.with_test or test_split is not None else None
    parts = tuning_parts(dataset, with_test=with_test, val_split=val_split, test_split=test_split, seed=SPLIT_SEED)

    def pairs(part: Any) -> list[Pair]:
        return build_pairs(
            _limited(part, limit), image_size, overlay,
            interpolation=protocol.interpolation, full_stop=protocol.full_stop, prompt_key=prompt_key,
        )  # fmt: skip

    train_pairs, val_pairs = pairs(parts.train), pairs(parts.val)
    test_pairs = None if parts.test is None else pairs(parts.test)
    description = {
        "dataset": dataset.name,
        "layout": dataset.layout,
        "parts": parts.source,
        "limit": limit,
        "pairs": {"train": len(train_pairs), "val": len(val_pairs), "test": None if test_pairs is None else len(test_pairs)},
        "interpolation": protocol.interpolation,
        "full_stop": protocol.full_stop,
        "prompt_key": prompt_key,
    }
    return RunData(train_pairs, val_pairs, test_pairs, description)


def run_tuning(
    tuned: TunedCLIPSeg,
    data: RunData,
    out: str | Path,
    config: TrainConfig,
    progress: ProgressCallback = no_progress,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``tuned`` on ``data`` into ``out`` (see :func:`~segprompt.tuning.train.train`), then :func:`report`.

    Returns:
        The summary written to ``out/summary.json``; ``tuned`` ends with the kept checkpoint's prompts.
    """
    result = train(tuned, data.train, data.val, out, config, progress, resume=resume)
    return report(tuned, data, out, config, result)


def report(
    tuned: TunedCLIPSeg,
    data: RunData,
    out: str | Path,
    config: TrainConfig,
    result: TrainResult,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load the checkpoint kept in ``out`` into ``tuned``, score it on ``data.test`` and write ``summary.json``."""
    out = Path(out)
    tuned.load_prompts(out)
    selected = result.history[result.best_epoch - 1]
    test = None if data.test is None else asdict(evaluate(tuned, data.test, config.batch_size, config))
    method = tuned.net.method
    summary = {
        "protocol": config.protocol,
        "method": method.name,
        "hyperparameters": method.hyperparameters,
        "model_options": asdict(tuned.net.options),
        "base_model": tuned.base_model,
        "image_size": tuned.image_size,
        "trainable_parameters": tuned.net.num_trainable(),
        "settings": asdict(config),
        "data": data.description,
        "best_epoch": result.best_epoch,
        "selected_on": config.select_on,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "val": {key: selected[f"val_{key}"] for key in ("loss", "dice", "iou", "jaccard")},
        "test": test,
        **(extra or {}),
    }
    atomic_write_text(out / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def headline(summary: dict[str, Any]) -> str:
    """One line of the figures a protocol reports: the paper's test Dice and accumulated Jaccard, or our Dice and IoU."""
    part, figures = ("test", summary["test"]) if summary["test"] is not None else ("val", summary["val"])
    second = ("jaccard", "Jaccard (accumulated)") if summary["protocol"] == "paper" else ("iou", "IoU")
    return f"{part} Dice {figures['dice']:.3f}, {second[1]} {figures[second[0]]:.3f}"

