"""Run the PointPrompt benchmark on a dataset and write its results.

For every sample (image) the runner embeds the image once (through the
embedding cache when given) and, for every object of the sample, scores each
automatic strategy and each human prompt set at every timestep on that one
embedding: all prompts of an object in one batched call where the backend has
``score_prompts`` (SAM), else one ``predict`` each. Output folder::

    run.json          settings: the run identity (a resumed run must use the same) and options
    results.csv       one row per (image, object, strategy, timestep), see results.py
    inputs.jsonl      the dataset files the rows were scored on (see segprompt.runstore)
    summary.json      scoring.summarize + regression.regress_iou
    iou_by_category.png, human_vs_auto.png (when human prompts exist), feature_importance.png

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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import numpy as np

from ..backends.base import Embedding, Segmenter
from ..progress import ProgressCallback, no_progress
from ..datasets.base import Dataset, Sample
from ..errors import PromptError
from ..io import atomic_write_text
from ..metrics import iou
from ..prompts import Prompt
from ..runstore import FileDigests, RunStore, ScoredItem, WorkerJob, check_rebuilt, run_options
from .counts import PointCounts, human_reference
from .features import object_features, prompt_features
from .plots import plot_categories, plot_human_vs_auto, plot_importance
from .regression import regress_iou
from .results import RESULTS_FILE, RESULTS_FORMAT, read_rows
from .scoring import AUTO, HUMAN, summarize
from .strategies import PointSet, Strategy, Target, create_strategy, strategy_names, strategy_rng

#: The strategies of the PointPrompt paper (saliency by spectral residual, see strategies.saliency).
PAPER_STRATEGIES: tuple[str, ...] = ("random", "kmedoids", "shi_tomasi", "entropy", "max_distance", "saliency")
HUMAN_PREFIX = "human:"


class EmbeddingSource(Protocol):
    def embed(self, segmenter: Segmenter, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding: ...


@dataclass(frozen=True)
class BenchmarkConfig:
    """Settings of one run.

    Attributes:
        strategies: automatic strategy names (see :func:`strategy_names`).
        counts: include/exclude points per category.
        seed: seeds every strategy (per image, object and strategy).
        human: also score the human prompt sets of the samples.
        max_images: score only the first ``max_images`` samples.
        multimask: SAM's multimask output, keeping the best-scored mask;
            ``None`` = only for single-point prompts (SAM's own advice).
    """

    strategies: tuple[str, ...] = field(default_factory=lambda: tuple(strategy_names()))
    counts: PointCounts = PointCounts()
    seed: int = 0
    human: bool = True
    max_images: int | None = None
    multimask: bool | None = None

    def identity(self) -> dict[str, Any]:
        """Every field but ``max_images`` (which may change between runs): a resumed run must give the same.

        A field added to this class joins the run identity by itself; only a
        value that is not plain JSON needs its encoding here and in :meth:`from_identity`.
        """
        values = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "max_images"}
        return {**values, "strategies": list(self.strategies), "counts": self.counts.describe()}

    @classmethod
    def from_identity(cls, identity: Mapping[str, Any], max_images: int | None = None) -> "BenchmarkConfig":
        """The config whose :meth:`identity` is ``identity`` (other keys, e.g. a run identity's model, are ignored)."""
        values = {item.name: identity[item.name] for item in fields(cls) if item.name != "max_images"}
        return cls(**{
            **values, "strategies": tuple(values["strategies"]), "counts": PointCounts.parse(values["counts"]),
            "max_images": max_images,
        })


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
    strategies = {name: create_strategy(name) for name in config.strategies}
    digests = FileDigests()

    def score(item: tuple[int, frozenset[tuple[str, ...]]]) -> ScoredItem:
        index, done = item
        rows: list[dict[str, Any]] = []
        _score_sample(dataset[index], dataset.name, segmenter, strategies, config, set(done), rows.extend, cache)
        return ScoredItem(rows, digests.states(dataset, dataset.files(index)))

    return score


def feature_grid(embedding: Embedding) -> np.ndarray | None:
    """``(h, w, C)`` float32 model features covering the image, or ``None``.

    SAM's ``(1, C, 64, 64)`` embedding covers the padded 1024 x 1024 input; the
    image occupies its top-left ``ceil(input_hw / 16)`` cells, which are kept.
    """
    features, input_hw = embedding.data.get("features"), embedding.data.get("input_hw")
    if features is None or input_hw is None or getattr(features, "ndim", 0) != 4:
        return None
    array = features.detach().float().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)
    from ..backends.sam_arch import IMAGE_SIZE

    stride = IMAGE_SIZE / array.shape[-1]
    rows, cols = math.ceil(input_hw[0] / stride), math.ceil(input_hw[1] / stride)
    return np.ascontiguousarray(array[0, :, :rows, :cols].transpose(1, 2, 0), dtype=np.float32)


class _Scorer:
    """Answers and scores prompts on one image's embedding.

    Interactive strategies call :meth:`predict` one prompt at a time; their
    answers are remembered until :meth:`reset`, so scoring their timesteps
    does not run the model again. :meth:`score` scores many prompts at once,
    through ``SamSegmenter.score_prompts`` (batched decoding, IoU on packed
    bits) where the backend has it, else one ``predict`` per prompt.
    """

    def __init__(self, segmenter: Segmenter, embedding: Embedding, multimask: bool | None) -> None:
        self.segmenter = segmenter
        self.embedding = embedding
        self.multimask = multimask
        self.memo: dict[bytes, tuple[np.ndarray, float, float]] = {}

    def reset(self) -> None:
        self.memo.clear()

    def _multimask(self, points: PointSet) -> bool:
        return len(points) == 1 if self.multimask is None else self.multimask

    @staticmethod
    def _key(points: PointSet) -> bytes:
        return points.include.tobytes() + b"|" + points.exclude.tobytes()

    def predict(self, points: PointSet) -> np.ndarray:
        """``(H, W)`` bool best-scored mask for ``points`` (remembered with its score and seconds)."""
        key = self._key(points)
        if key not in self.memo:
            start = time.perf_counter()
            # SamSegmenter.predict_best decodes fast and upsamples only the chosen mask.
            fast = getattr(self.segmenter, "predict_best", None)
            prediction = (fast or self.segmenter.predict)(self.embedding, points.to_prompt(), multimask=self._multimask(points))
            seconds = time.perf_counter() - start
            self.memo[key] = (prediction.best_mask, float(prediction.scores[prediction.best]), seconds)
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
        batch = getattr(self.segmenter, "score_prompts", None)
        if batch is None:
            for i in pending:
                mask = self.predict(prompts[i])
                _, model_score, seconds = self.memo[self._key(prompts[i])]
                out[i] = (iou(mask, gt, ignore), model_score, seconds)
            return out
        for multimask in (False, True):
            chosen = [i for i in pending if self._multimask(prompts[i]) == multimask]
            if not chosen:
                continue
            start = time.perf_counter()
            scored = batch(self.embedding, [prompts[i].to_prompt() for i in chosen], gt, multimask=multimask, ignore=ignore)
            seconds = (time.perf_counter() - start) / len(chosen)
            for j, i in enumerate(chosen):
                out[i] = (float(scored.iou[j]), float(scored.scores[j, scored.selected[j]]), seconds)
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


def _unit_rows(
    base: dict[str, Any], steps: list[tuple[int, PointSet]], scores: list[tuple[float, float, float]],
    mask: np.ndarray, select_seconds: float, object_feats: dict[str, float],
) -> list[dict[str, Any]]:
    return [
        {
            **base,
            "timestep": timestep,
            "unit_rows": len(steps),
            "iou": iou_value,
            "model_score": model_score,
            "select_seconds": select_seconds,
            "predict_seconds": seconds,
            "include_xy": _xy_text(points.include),
            "exclude_xy": _xy_text(points.exclude),
            **object_feats,
            **prompt_features(points, mask),
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
        return summarize_run(out)
    strategies = {name: create_strategy(name) for name in config.strategies}
    for index in range(total):
        sample = dataset[index]
        store.note_sample(dataset, index)
        _score_sample(sample, dataset.name, segmenter, strategies, config, store.log.done, store.log.append, cache)
        progress(index + 1, total, sample.id)
    return summarize_run(out)


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
    scorer = _Scorer(segmenter, embedding, config.multimask)
    grid = feature_grid(embedding)
    human_points = human_reference(sample) if len(objects) == 1 else None
    for obj in objects:
        if not todo[obj.object_id]:
            continue
        scorer.reset()
        units = []
        for name in todo[obj.object_id]:
            start = time.perf_counter()
            if name.startswith(HUMAN_PREFIX):
                steps = _human_steps(human[name[len(HUMAN_PREFIX):]], embedding.image_hw)
            else:
                target = Target(sample.image, obj.mask, sample.ignore, grid, predict=scorer.predict)
                n_include, n_exclude = config.counts.for_object(obj.class_name, human_points)
                rng = strategy_rng(config.seed, sample.id, obj.object_id, name)
                steps = list(enumerate(strategies[name].timesteps(target, n_include, n_exclude, rng)))
            units.append((name, steps, time.perf_counter() - start))  # includes error-driven clicking's model calls
        scores = iter(scorer.score([points for _, steps, _ in units for _, points in steps], obj.mask, sample.ignore))
        object_feats = object_features(sample.image, obj.mask, sample.ignore)
        for name, steps, select_seconds in units:
            base = {
                "dataset": dataset_name, "image_id": sample.id, "object_id": obj.object_id,
                "category": obj.class_name, "source": HUMAN if name.startswith(HUMAN_PREFIX) else AUTO,
                "strategy": name, "embed_seconds": embed_seconds,
            }
            unit_scores = [next(scores) for _ in steps]
            emit(_unit_rows(base, steps, unit_scores, obj.mask, select_seconds, object_feats))


def summarize_run(out_dir: str | os.PathLike) -> dict[str, Any]:
    """(Re)build ``summary.json`` and the plots from ``out_dir/results.csv``."""
    out = Path(out_dir)
    rows = read_rows(out / "results.csv")
    summary = summarize(rows)
    summary["regression"] = regress_iou(rows)
    atomic_write_text(out / "summary.json", json.dumps(_json_safe(summary), indent=1, allow_nan=False))
    if rows:
        plot_categories(summary, out / "iou_by_category.png")
    if summary["human_vs_auto"]:
        plot_human_vs_auto(summary, out / "human_vs_auto.png")
    if "random_forest" in summary["regression"]:
        plot_importance(summary["regression"], out / "feature_importance.png")
    return summary
