"""Run the PointPrompt benchmark on a dataset and write its results.

For every sample (image) the runner embeds the image once (through the
embedding cache when given) and, for every object of the sample, scores each
automatic strategy and each human prompt set at every timestep on that one
embedding: all prompts of an object in one call of
:func:`segprompt.evaluation.score_prompts` (batched on the model's device for
backends that declare :class:`~segprompt.backends.base.BatchPredictor`, such
as SAM; one ``predict`` each otherwise). Output folder::

    run.json          settings: the run identity (a resumed run must use the same) and options
    results.csv       one row per (image, object, strategy, timestep), see results.py
    inputs.jsonl      the dataset files the rows were scored on (see segprompt.runstore)
    summary.json      scoring.summarize + regression.regress_iou
    iou_by_category.png, human_vs_auto.png (when human prompts exist), feature_importance.png

How prompts are made and scored, and how the summary reads the rows, is the
:class:`~segprompt.pointprompt.config.BenchmarkConfig` (ours or the paper's
protocol); the protocol and every setting are in ``run.json`` and ``summary.json``.

Interrupt it at any point (Ctrl-C, kill) and run it again with the same
arguments: finished (image, object, strategy) units are skipped, so the final
``results.csv`` equals that of an uninterrupted run. A resume with other
settings (:func:`run_identity`) or on changed dataset files is refused.

With ``workers > 1`` the images are sharded over that many worker processes
of a local Dask cluster (:func:`segprompt.distributed.stream_results`); each
worker rebuilds the dataset, segmenter and embedding cache once from the
:class:`RunSource` and settings that ``run.json`` records
(:func:`pointprompt_worker`), this process appends every finished unit to the
same ``results.csv`` (skipping keys already written) and finally puts the rows
in dataset order, so the file holds what a one-process run writes.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from ..backends.base import Embedding, Segmenter
from ..progress import ProgressCallback, no_progress
from ..datasets.base import Dataset, Sample
from ..errors import PromptError
from ..evaluation import MaskSelection, MaskTarget, score_prompts, select_mask
from ..io import atomic_write_text
from ..metrics import iou
from ..prompts import Prompt
from ..runstore import FileDigests, RunStore, ScoredItem, WorkerJob, check_rebuilt, run_options
from .config import BenchmarkConfig
from .counts import human_reference
from .features import FEATURES, object_features, prompt_features
from .paper_features import PAPER_FEATURES, ObjectShape, paper_object_features, paper_prompt_features
from .plots import plot_categories, plot_human_vs_auto, plot_importance
from .regression import regress_iou
from .results import RESULTS_FILE, RESULTS_FORMAT, read_rows
from .scoring import AUTO, HUMAN, summarize
from .strategies import PointSet, Strategy, Target, strategy_rng

HUMAN_PREFIX = "human:"


class EmbeddingSource(Protocol):
    def embed(self, segmenter: Segmenter, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding: ...


def run_identity(dataset: Dataset, segmenter: Segmenter, config: BenchmarkConfig) -> dict[str, Any]:
    """What a run's rows depend on besides the dataset's files: the data's name, the model and the config."""
    return {"dataset": dataset.name, "backend": segmenter.name, "model": segmenter.model_id, **config.identity()}


@dataclass(frozen=True)
class RunSource:
    """Where a run's dataset, segmenter and embedding cache come from, as plain data.

    ``run.json`` records it, and every worker process of a sharded run
    rebuilds its objects from that record (:func:`pointprompt_worker`).

    Attributes:
        data, layout: dataset folder and layout, as :func:`segprompt.datasets.open_dataset` takes.
        backend: segmenter backend name.
        backend_options: options for :func:`segprompt.backends.create_from_options`.
        cache_root: embedding cache folder, or ``None`` for no cache.
    """

    data: str
    layout: str | None = None
    backend: str = "classical"
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    cache_root: str | None = None

    def build(self) -> tuple[Dataset, Segmenter, Any]:
        """The dataset, segmenter and embedding cache (or ``None``) this source describes."""
        from ..backends import create_from_options
        from ..cache import EmbeddingCache
        from ..datasets import open_dataset

        dataset = open_dataset(self.data, layout=self.layout)
        segmenter = create_from_options(self.backend, **dict(self.backend_options))
        cache = None if self.cache_root is None else EmbeddingCache(self.cache_root)
        return dataset, segmenter, cache


def pointprompt_worker(settings: Mapping[str, Any]) -> Callable[[tuple[int, frozenset[tuple[str, ...]]]], ScoredItem]:
    """A worker process's scorer, built once from the run's ``run.json``.

    The worker's dataset, segmenter and config come from the record alone and
    must have the recorded identity. Each call scores sample ``item[0]`` less
    the units in ``item[1]`` (already written) and returns its rows with the
    states of the files read.
    """
    options = settings["options"]
    dataset, segmenter, cache = RunSource(**options["source"]).build()
    config = BenchmarkConfig.from_identity(settings["identity"], options["max_images"])
    check_rebuilt(settings, run_identity(dataset, segmenter, config))
    strategies = config.create_strategies()
    digests = FileDigests()

    def score(item: tuple[int, frozenset[tuple[str, ...]]]) -> ScoredItem:
        index, done = item
        rows: list[dict[str, Any]] = []
        _score_sample(dataset[index], dataset.name, segmenter, strategies, config, set(done), rows.extend, cache)
        return ScoredItem(rows, digests.states(dataset, dataset.files(index)))

    return score


class _Scorer:
    """Answers and scores prompts on one image's embedding.

    Interactive strategies call :meth:`predict` one prompt at a time; their
    answers are remembered until :meth:`reset`, so scoring their timesteps
    does not run the model again. :meth:`score` scores many prompts at once
    (:func:`segprompt.evaluation.score_prompts`: batched on the model's device
    for a :class:`~segprompt.backends.base.BatchPredictor`). Which mask stands
    for a prompt is the config's ``selection``.
    """

    def __init__(self, segmenter: Segmenter, embedding: Embedding, config: BenchmarkConfig) -> None:
        self.segmenter = segmenter
        self.embedding = embedding
        self.config = config
        # "single" decodes SAM's one mask (config.multimask_for), which "best" then takes
        self.select: MaskSelection = "first" if config.selection == "first" else "best"
        self.memo: dict[bytes, tuple[np.ndarray, float, float]] = {}

    def reset(self) -> None:
        self.memo.clear()

    @staticmethod
    def _key(points: PointSet) -> bytes:
        return points.include.tobytes() + b"|" + points.exclude.tobytes()

    def predict(self, points: PointSet) -> np.ndarray:
        """``(H, W)`` bool mask scored for ``points`` (remembered with its model score and seconds):
        the first of SAM's three masks for ``selection="first"``, else the best-scored one."""
        key = self._key(points)
        if key not in self.memo:
            start = time.perf_counter()
            multimask = self.config.multimask_for(len(points))
            mask, model_score = select_mask(
                self.segmenter, self.embedding, points.to_prompt(), multimask=multimask, select=self.select
            )
            self.memo[key] = (mask, model_score, time.perf_counter() - start)
        return self.memo[key][0]

    def score(self, prompts: list[PointSet], gt: np.ndarray, ignore: np.ndarray | None) -> list[tuple[float, float, float]]:
        """``(IoU with gt, model score, seconds)`` for each prompt, in order."""
        out: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * len(prompts)
        pending = []
        for i, points in enumerate(prompts):
            if self._key(points) in self.memo:
                mask, model_score, seconds = self.memo[self._key(points)]
                out[i] = (iou(mask, gt, ignore), model_score, seconds)
            else:
                pending.append(i)
        target = MaskTarget(gt, ignore, self.embedding.image_hw)  # on the model's device once for both calls
        for multimask in (False, True):
            chosen = [i for i in pending if self.config.multimask_for(len(prompts[i])) == multimask]
            if not chosen:
                continue
            start = time.perf_counter()
            scored = score_prompts(
                self.segmenter, self.embedding, [prompts[i].to_prompt() for i in chosen], target,
                multimask=multimask, select=self.select,
            )
            seconds = (time.perf_counter() - start) / len(chosen)
            for j, i in enumerate(chosen):
                out[i] = (float(scored.iou[j]), float(scored.selected_scores[j]), seconds)
        return out


def _json_safe(value: Any) -> Any:
    """NaN -> ``None`` throughout, so summary.json is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _xy_text(xy: np.ndarray) -> str:
    return json.dumps(np.asarray(xy).astype(int).tolist() if np.all(xy == np.round(xy)) else np.asarray(xy).tolist())


def _human_steps(prompts: list[Prompt], image_hw: tuple[int, int]) -> list[tuple[int, PointSet]]:
    """``(timestep, points)`` of the human timesteps that can be replayed: points inside the image, one include."""
    steps = []
    for timestep, prompt in enumerate(prompts):
        if prompt.points is None:
            continue
        try:
            prompt.validate_for(image_hw)
        except PromptError:
            continue  # a click off the image, or exclude clicks alone (no backend answers them), cannot be replayed
        steps.append((timestep, PointSet.from_points(prompt.points)))
    return steps


@dataclass(frozen=True)
class _StepRecord:
    """What the dataset records of one prompt set's timesteps (the PointPrompt release, ``meta["pointprompt"]``).

    Attributes:
        ious: ``{timestep: recorded IoU}`` (the release's ``scores``), empty when not used.
        rounds: ``{timestep: prompting round}`` (``eachround``).
        ranks: ``{timestep: place in the recorded sort, 0 = best}`` (``sorts``), empty when the IoUs are not used.
    """

    ious: Mapping[int, float] = field(default_factory=dict)
    rounds: Mapping[int, int] = field(default_factory=dict)
    ranks: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, sample: Sample, prompt_set: str, n_timesteps: int, use_scores: bool) -> "_StepRecord":
        """The record of ``prompt_set``; a per-timestep array of another length than ``n_timesteps`` is not used."""
        record = sample.meta.get("pointprompt", {}).get(prompt_set, {})
        rounds = _per_timestep(record.get("eachround"), n_timesteps, np.int64)
        scores = _per_timestep(record.get("scores"), n_timesteps, np.float64)
        rounds_by_step = {} if rounds is None else dict(enumerate(rounds.tolist()))
        if not use_scores or scores is None:
            return cls(rounds=rounds_by_step)
        sorts = _per_timestep(record.get("sorts"), n_timesteps, np.int64)
        order = np.argsort(-scores, kind="stable") if sorts is None else sorts
        return cls(dict(enumerate(scores.tolist())), rounds_by_step, {int(t): rank for rank, t in enumerate(order)})


def _per_timestep(values: Any, n_timesteps: int, dtype: type) -> np.ndarray | None:
    """``values`` as a 1-D array of ``n_timesteps`` numbers, or ``None`` (absent, ragged or of another length)."""
    if values is None:
        return None
    try:
        array = np.asarray(values, dtype=dtype).ravel()
    except (TypeError, ValueError):
        return None
    return array if len(array) == n_timesteps else None


def _unit_rows(
    base: dict[str, Any], steps: list[tuple[int, PointSet]], scores: list[tuple[float, float, float]],
    shape: ObjectShape, select_seconds: float, object_feats: dict[str, float], record: _StepRecord,
) -> list[dict[str, Any]]:
    return [
        {
            **base,
            "timestep": timestep,
            "unit_rows": len(steps),
            "round": record.rounds.get(timestep, 0),
            "recorded_rank": record.ranks.get(timestep, -1),
            "iou": iou_value,
            "model_score": model_score,
            "select_seconds": select_seconds,
            "predict_seconds": seconds,
            "include_xy": _xy_text(points.include),
            "exclude_xy": _xy_text(points.exclude),
            **object_feats,
            **prompt_features(points, shape.mask),
            **paper_prompt_features(points, shape),
        }
        for (timestep, points), (iou_value, model_score, seconds) in zip(steps, scores)
    ]


def run_benchmark(
    dataset: Dataset,
    segmenter: Segmenter,
    out_dir: str | os.PathLike,
    config: BenchmarkConfig = BenchmarkConfig(),
    *,
    cache: EmbeddingSource | None = None,
    progress: ProgressCallback = no_progress,
    workers: int = 1,
    source: RunSource | None = None,
    move_damaged: bool = False,
) -> dict[str, Any]:
    """Score every sample, append rows to ``out_dir/results.csv``, then summarise.

    Resumes a run found in ``out_dir`` when it has the same identity
    (:func:`run_identity`) and the dataset files it read are unchanged;
    otherwise raises :class:`~segprompt.runstore.RunStoreError` naming the
    setting or file. ``progress(done, total, image id)`` is called after each
    image (``"images done"`` in place of the id with workers); an exception it
    raises (e.g. ``KeyboardInterrupt``) stops the run with every finished unit
    on disk. ``workers > 1`` shards the images over that many processes, which
    rebuild ``dataset`` and ``segmenter`` from ``source`` as ``run.json``
    records it. ``move_damaged`` moves damaged run files aside and starts afresh.

    Returns:
        the summary also written to ``summary.json``.
    """
    out = Path(out_dir)
    store = RunStore(
        out, benchmark="pointprompt", identity=run_identity(dataset, segmenter, config),
        options=run_options(source, config.max_images, workers), rows_file=RESULTS_FILE, rows=RESULTS_FORMAT, datasets=[dataset], move_damaged=move_damaged,
    )
    total = len(dataset) if config.max_images is None else min(len(dataset), config.max_images)
    if workers > 1:
        _run_sharded(store, dataset, total, workers, progress)
        return summarize_run(out, config)
    strategies = config.create_strategies()
    for index in range(total):
        sample = dataset[index]
        store.note_sample(dataset, index)
        _score_sample(sample, dataset.name, segmenter, strategies, config, store.log.done, store.log.append, cache)
        progress(index + 1, total, sample.id)
    return summarize_run(out, config)


def _run_sharded(store: RunStore, dataset: Dataset, total: int, workers: int, progress: ProgressCallback) -> None:
    from ..distributed import stream_results

    done_by_image: dict[str, set[tuple[str, ...]]] = {}
    for unit in store.log.done:
        done_by_image.setdefault(unit[0], set()).add(unit)
    ids = list(dataset.ids)[:total]
    items = [(index, frozenset(done_by_image.get(ids[index], ()))) for index in range(total)]
    job = WorkerJob(pointprompt_worker, store.settings_json)
    stream_results(job, items, n_workers=workers, on_result=store.add, progress=progress)
    # workers finish in any order: put the rows where a one-process run writes them
    position = {image_id: index for index, image_id in enumerate(dataset.ids)}
    store.log.reorder(lambda row: position.get(row["image_id"], len(position)))


def _score_sample(
    sample: Sample, dataset_name: str, segmenter: Segmenter, strategies: dict[str, Strategy], config: BenchmarkConfig,
    done: set[tuple[str, ...]], emit: Callable[[list[dict[str, Any]]], None], cache: EmbeddingSource | None,
) -> None:
    """Score every unit of ``sample`` not in ``done``; ``emit`` receives each unit's rows."""
    objects = sample.objects()
    human = sample.prompts if config.human and len(objects) == 1 else {}
    names = list(strategies) + [HUMAN_PREFIX + name for name in human]
    todo = {obj.object_id: [n for n in names if (sample.id, obj.object_id, n) not in done] for obj in objects}
    if not any(todo.values()):
        return
    start = time.perf_counter()
    embedding = cache.embed(segmenter, sample.image) if cache is not None else segmenter.embed(sample.image)
    embed_seconds = time.perf_counter() - start
    scorer = _Scorer(segmenter, embedding, config)
    grid = embedding.feature_map()
    human_points = human_reference(sample) if len(objects) == 1 else None
    for obj in objects:
        if not todo[obj.object_id]:
            continue
        scorer.reset()
        units = []
        for name in todo[obj.object_id]:
            start = time.perf_counter()
            record = _StepRecord()
            if name.startswith(HUMAN_PREFIX):
                prompt_set = name[len(HUMAN_PREFIX):]
                steps = _human_steps(human[prompt_set], embedding.image_hw)
                record = _StepRecord.of(sample, prompt_set, len(human[prompt_set]), config.human_scores == "recorded")
            else:
                target = Target(sample.image, obj.mask, sample.ignore, grid, predict=scorer.predict)
                n_include, n_exclude = config.counts.for_object(obj.class_name, human_points)
                rng = strategy_rng(config.seed, sample.id, obj.object_id, name)
                steps = list(enumerate(strategies[name].timesteps(target, n_include, n_exclude, rng)))
            units.append((name, steps, time.perf_counter() - start, record))  # includes error-driven clicking's model calls
        to_model = [points for _, steps, _, record in units if not record.ious for _, points in steps]
        scores = iter(scorer.score(to_model, obj.mask, sample.ignore))
        object_feats = {**object_features(sample.image, obj.mask, sample.ignore), **paper_object_features(sample.image, obj.mask)}
        shape = ObjectShape.of(obj.mask)
        for name, steps, select_seconds, record in units:
            base = {
                "dataset": dataset_name, "image_id": sample.id, "object_id": obj.object_id,
                "category": obj.class_name, "source": HUMAN if name.startswith(HUMAN_PREFIX) else AUTO,
                "strategy": name, "embed_seconds": embed_seconds,
            }
            if record.ious:  # the recorded IoUs, as they are: no model call
                unit_scores = [(record.ious[t], float("nan"), 0.0) for t, _ in steps]
            else:
                unit_scores = [next(scores) for _ in steps]
            emit(_unit_rows(base, steps, unit_scores, shape, select_seconds, object_feats, record))


def summarize_run(out_dir: str | os.PathLike, config: BenchmarkConfig | None = None) -> dict[str, Any]:
    """(Re)build ``summary.json`` and the plots from ``out_dir/results.csv``.

    ``config`` (default: the one ``run.json`` records) says how: which
    strategies the human-automatic gap averages, whether human units follow
    the recorded best timestep and its round, and which feature set and rows
    the regression uses. The summary names the protocol and every setting.
    """
    out = Path(out_dir)
    if config is None:
        config = BenchmarkConfig.from_identity(json.loads((out / "run.json").read_text())["identity"])
    rows = read_rows(out / "results.csv")
    summary: dict[str, Any] = {"protocol": config.protocol, "settings": config.identity()}
    summary.update(summarize(rows, gap_strategies=config.gap_strategies, recorded_best=config.human_scores == "recorded"))
    regression_rows = rows if config.regression_rows == "all" else [row for row in rows if row["source"] == HUMAN]
    features = PAPER_FEATURES if config.features == "paper" else FEATURES
    summary["regression"] = {
        "feature_set": config.features, "row_selection": config.regression_rows, **regress_iou(regression_rows, features)
    }
    atomic_write_text(out / "summary.json", json.dumps(_json_safe(summary), indent=1, allow_nan=False))
    if rows:
        plot_categories(summary, out / "iou_by_category.png")
    if summary["human_vs_auto"]:
        plot_human_vs_auto(summary, out / "human_vs_auto.png")
    if "random_forest" in summary["regression"]:
        plot_importance(summary["regression"], out / "feature_importance.png")
    return summary
