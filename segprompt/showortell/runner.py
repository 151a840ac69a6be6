"""Run Show-or-Tell: text vs visual-reference prompts, scored by semantic mIoU.

For every dataset, method and seed, each test image is segmented for all
classes at once: a confidence map per class (text: averaged over the
templates; visual: averaged over the ``n_prompts`` references drawn for that
class and seed), merged by :func:`segprompt.showortell.confidence.merge`
(ours: confidence <= 0.2 -> 0, background map at index 0, argmax; the paper's
protocol differs where background is a real class, see
:mod:`segprompt.showortell.settings`), and its confusion
matrix against the ground truth is appended to ``per_image.jsonl`` through the
run store (:mod:`segprompt.runstore`: fsync per row, ``run.json`` with the
run's identity, ``inputs.jsonl`` with the dataset files read). A killed run
resumes from that file and skips the finished ``(dataset, method, seed,
image)`` keys; nothing is lost or counted twice; a resume with other settings
(:func:`run_identity`) or changed dataset files is refused by name.
``results.csv`` (method, dataset, domain, class, seed, IoU) and
``summary.json`` are written atomically from the per-image rows at the end.

With ``workers > 1`` the test images are sharded over that many worker
processes of a local Dask cluster (:func:`segprompt.distributed.stream_results`):
each rebuilds the datasets and methods once from the :class:`RunSource` and
settings that ``run.json`` records (:func:`show_or_tell_worker`); this
process appends the rows to the same ``per_image.jsonl`` (a key already there
is never written twice).
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from ..backends.base import Embedding, Segmenter
from ..progress import ProgressCallback, no_progress
from ..datasets.base import Dataset
from ..datasets.lazy import BadFileError
from ..datasets.released_splits import ReleasedSplits, read_released_splits
from ..errors import SegpromptError
from ..io import atomic_write_text
from ..prompts import Prompt
from ..runstore import FileDigests, JsonRows, RunStore, ScoredItem, WorkerJob, check_rebuilt, run_options
from .confidence import MergeRule, confidence_map, merge, resize_image, resize_labels, squash_reference
from .metrics import ConfusionMatrix
from .protocol import (
    BackgroundMode,
    ClassSpace,
    DrawnReference,
    ReferencePool,
    layout_of,
    semantic_target,
    text_prompts,
)
from .settings import RunSettings

Modality = Literal["text", "visual"]
TEXT_SEED = -1  # text prompts draw nothing at random: one "seed" stands for them


@dataclass(frozen=True)
class Method:
    """A backend asked through one prompt modality, e.g. ``clipseg`` with ``text``."""

    name: str
    segmenter: Segmenter
    modality: Modality

    def __post_init__(self) -> None:
        kind = "text" if self.modality == "text" else "reference"
        if kind not in self.segmenter.accepts:
            raise SegpromptError(
                f"method {self.name!r}: backend {self.segmenter.name!r} does not accept {kind} prompts "
                f"(it accepts {', '.join(sorted(self.segmenter.accepts))})"
            )


@dataclass(frozen=True)
class EvalDataset:
    """A dataset to score, with its split parts and protocol settings.

    Attributes:
        candidates: class name -> training sample ids to draw its references
            from, in the order of a released split's per-class lists; ``None``:
            the training samples showing the class (found by reading them).
        released_splits: the released split files the parts come from, or ``()``.
    """

    name: str
    domain: str
    train: Dataset
    test: Dataset
    space: ClassSpace
    min_reference_area: float
    candidates: Mapping[str, tuple[str, ...]] | None = None
    released_splits: tuple[str, ...] = ()

    def prompted_classes(self, settings: RunSettings) -> tuple[str, ...]:
        """The classes prompted for, in label order: the background class first where ``settings`` prompt it."""
        background = self.prompted_background(settings)
        return self.space.names if background is None else (background, *self.space.names)

    def prompted_background(self, settings: RunSettings) -> str | None:
        """The background class prompted as label 0 (the paper's rule where background is a real class), or ``None``."""
        keep = settings.background_rule == "paper" and self.space.background == "keep"
        return self.space.background_name if keep else None

    def merge_rule(self, settings: RunSettings) -> MergeRule:
        """Plain argmax where the paper's rule keeps the background as a class; else the 0.2 threshold."""
        return "argmax" if settings.background_rule == "paper" and self.space.background == "keep" else "threshold"


def prepare_dataset(
    dataset: Dataset,
    *,
    domain: str | None = None,
    background: BackgroundMode | Literal["auto"] = "auto",
    min_reference_area: float | None = None,
    split_seed: int = 0,
    released: ReleasedSplits | None = None,
) -> EvalDataset:
    """Split ``dataset`` into reference (train) and test parts and fix its protocol settings.

    ``released`` (:func:`~segprompt.datasets.released_splits.read_released_splits`)
    gives the reference's train / val lists and per-class reference
    candidates; otherwise the layout's own split files are used when present
    (``train`` and ``val``/``test``), else the deterministic seeded 80/20
    split of the datasets layer. ``min_reference_area`` defaults to the value
    the reference code applies for the layout
    (:attr:`~segprompt.datasets.registry.Layout.min_reference_area`: VOC 2 %,
    ADE20K 4 %, Cityscapes 1 %, others none).
    """
    space = ClassSpace.for_dataset(dataset, background)
    if min_reference_area is None:
        min_reference_area = layout_of(dataset).min_reference_area
    if released is not None:
        index = {name: i for i, name in enumerate(dataset.class_names)}
        return EvalDataset(
            name=dataset.name, domain=domain or dataset_domain(dataset), train=dataset.subset(released.train),
            test=dataset.subset(released.val), space=space, min_reference_area=min_reference_area,
            candidates={name: released.candidates.get(index[name], ()) for name in _drawable(space)},
            released_splits=tuple(path.name for path in released.files),
        )  # fmt: skip
    names = getattr(dataset, "split_names", ())
    if names:
        held_out = next((n for n in ("val", "test") if n in names), None)
        if "train" not in names or held_out is None:
            raise SegpromptError(f"{dataset.name}: Show-or-Tell needs 'train' and 'val' or 'test' splits, found {list(names)}")
        train, test = dataset.split("train"), dataset.split(held_out)
    else:
        train, test = dataset.split("train", seed=split_seed), dataset.split("test", seed=split_seed)
    return EvalDataset(
        name=dataset.name,
        domain=domain or dataset_domain(dataset),
        train=train,
        test=test,
        space=space,
        min_reference_area=min_reference_area,
    )


def _drawable(space: ClassSpace) -> tuple[str, ...]:
    """Every class a visual reference may be drawn for under either protocol (the background class included)."""
    return space.names if space.background_name is None else (space.background_name, *space.names)


def dataset_domain(dataset: Dataset, root: str | os.PathLike | None = None) -> str:
    """The domain tag: ``root/domain.txt`` when present, else the layout's :attr:`~segprompt.datasets.registry.Layout.domain`."""
    if root is not None and (Path(root) / "domain.txt").is_file():
        return (Path(root) / "domain.txt").read_text().strip() or "unknown"
    return layout_of(dataset).domain


def run_identity(datasets: Sequence[EvalDataset], methods: Sequence[Method], settings: RunSettings) -> dict[str, Any]:
    """What a run's rows depend on besides the dataset files: datasets' protocol, methods' models, settings."""
    return {
        "datasets": [{"name": d.name, "domain": d.domain, "classes": list(d.space.names), "background": d.space.background,
                      "background_class": d.space.background_name, "min_reference_area": d.min_reference_area,
                      "released_splits": list(d.released_splits), "test_ids": list(d.test.ids)} for d in datasets],
        "methods": [{"name": m.name, "backend": m.segmenter.name, "model": m.segmenter.model_id,
                     "modality": m.modality} for m in methods],
        **settings.identity(),
    }


MODALITIES: tuple[Modality, ...] = ("text", "visual")
#: Backends that take no visual reference themselves -> the composition their visual method runs. SAM 3 takes
#: exemplars only on the image it segments: ``sam3:visual`` has an exemplar proposer find the reference's object
#: on the test image first (:mod:`segprompt.sam3_routes`).
VISUAL_ROUTES = {"sam3": "sam3-reference"}


def parse_method(spec: str) -> tuple[str, Modality]:
    """``"clipseg:text"`` -> ``("clipseg", "text")``."""
    backend, sep, modality = spec.partition(":")
    if not sep or not backend or modality not in MODALITIES:
        raise SegpromptError(f"--method {spec!r}: expected BACKEND:MODALITY with MODALITY one of {', '.join(MODALITIES)}")
    return backend, modality  # type: ignore[return-value]


@dataclass(frozen=True)
class RunSource:
    """Where a run's datasets and methods come from, as plain data.

    ``run.json`` records it, and every worker process of a sharded run
    rebuilds its datasets and methods from that record (:func:`show_or_tell_worker`).

    Attributes:
        data: dataset folders.
        methods: ``"BACKEND:MODALITY"`` specs (see :func:`parse_method`).
        layout, domain, background, min_reference_area: as :func:`prepare_dataset` takes
            (``domain`` ``None``: ``domain.txt`` in the folder, else by layout).
        model_dirs: model folder per backend name; key ``""`` for every transformers backend.
            ``sam3:visual`` runs :data:`VISUAL_ROUTES`' ``sam3-reference``: the ``sam3`` folder, and the
            exemplar proposer's under its own name.
        exemplar_proposer: ``sam3:visual``'s exemplar proposer (``owlv2-sam``, ``persam``, ``seggpt``).
        model_type, checkpoint: SAM options for SAM-based backends (the paper's PersonalizeSAM:
            ``model_type="vit_h"``, :data:`~segprompt.showortell.settings.PAPER_SAM_MODEL`).
        device, precision: every backend's (:func:`segprompt.devices.resolve_device`,
            :mod:`segprompt.precision`).
        released_splits: the folder of the reference's ``<name>_{train,val}.pkl`` split lists to take
            every dataset's parts and reference candidates from (:func:`read_released_splits`), or ``None``.
    """

    data: Sequence[str]
    methods: Sequence[str]
    layout: str | None = None
    domain: str | None = None
    background: str = "auto"
    min_reference_area: float | None = None
    model_dirs: Mapping[str, str] = field(default_factory=dict)
    model_type: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    released_splits: str | None = None
    exemplar_proposer: str = "owlv2-sam"

    def build(self) -> tuple[list[EvalDataset], list[Method]]:
        """The evaluation datasets and methods this source describes."""
        from ..backends import create_from_options
        from ..datasets import open_dataset

        segmenters: dict[str, Segmenter] = {}
        methods = []
        for spec in self.methods:
            backend, modality = parse_method(spec)
            name = VISUAL_ROUTES.get(backend, backend) if modality == "visual" else backend
            if name not in segmenters:
                segmenters[name] = create_from_options(
                    name, model_dir=self.model_dirs.get(backend, self.model_dirs.get("")),
                    model_type=self.model_type, checkpoint=self.checkpoint, device=self.device,
                    exemplar_proposer=self.exemplar_proposer,
                    exemplar_model_dir=self.model_dirs.get(self.exemplar_proposer, self.model_dirs.get("")),
                    precision=self.precision,
                )
            methods.append(Method(f"{backend}:{modality}", segmenters[name], modality))
        datasets = []
        for folder in self.data:
            dataset = open_dataset(folder, layout=self.layout)
            released = None if self.released_splits is None else read_released_splits(self.released_splits, dataset)
            datasets.append(prepare_dataset(
                dataset, domain=self.domain or dataset_domain(dataset, folder), background=self.background,  # type: ignore[arg-type]
                min_reference_area=self.min_reference_area, released=released,
            ))
        return datasets, methods


def _resize_case(image: np.ndarray, labels: np.ndarray, ignore: np.ndarray, settings: RunSettings):
    side = settings.resize
    if side is None:
        return image, labels, ignore
    return resize_image(image, side, settings.antialias), resize_labels(labels, side), resize_labels(ignore, side)


#: Identifies a row of ``per_image.jsonl``.
ROW_KEY = ("dataset", "method", "seed", "image")
ROWS_FILE = "per_image.jsonl"


def _check_row(row: dict[str, Any]) -> None:
    matrix = row["matrix"]
    if not (isinstance(matrix, list) and matrix and all(isinstance(r, list) and len(r) == len(matrix) for r in matrix)):
        raise ValueError("'matrix' is not a square confusion matrix")
    if not all(isinstance(v, int) and v >= 0 for r in matrix for v in r):
        raise ValueError("'matrix' holds a value that is not a count")
    if not isinstance(row["seed"], int) or not isinstance(row["seconds"], (int, float)):
        raise ValueError("'seed' or 'seconds' is not a number")


#: ``per_image.jsonl``: one JSON row per (dataset, method, seed, image).
ROWS_FORMAT = JsonRows(ROW_KEY, required=("domain", "modality", "seconds", "matrix"), check=_check_row)

#: A sharded run's per-image task: ``(dataset index, image index, keys already written)``.
ShardItem = tuple[int, int, frozenset[tuple[str, str, int, str]]]


def run_show_or_tell(
    datasets: Sequence[EvalDataset],
    methods: Sequence[Method],
    out_dir: str | os.PathLike,
    settings: RunSettings = RunSettings(),
    progress: ProgressCallback = no_progress,
    workers: int = 1,
    source: RunSource | None = None,
    move_damaged: bool = False,
) -> dict[str, Any]:
    """Score every method on every dataset; write ``results.csv``, ``summary.json`` and plots.

    ``workers > 1`` shards the test images over that many processes, which
    rebuild the datasets and methods from ``source`` as ``run.json`` records
    it. ``move_damaged`` moves damaged run files aside and starts afresh.

    Returns:
        The summary (also written to ``summary.json``).

    Raises:
        RunStoreError: ``out_dir`` holds a run with other settings or on
            changed dataset files (naming them), or a damaged run file.
    """
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise SegpromptError(f"method names must be unique, got {names}")
    out = Path(out_dir)
    store = RunStore(
        out, benchmark="show-or-tell", identity=run_identity(datasets, methods, settings),
        options=run_options(source, settings.max_images, workers), rows_file=ROWS_FILE, rows=ROWS_FORMAT, datasets=[d.test for d in datasets], move_damaged=move_damaged,
    )
    references = ReferenceDraws(settings)
    if any(m.modality == "visual" for m in methods):
        for data in datasets:
            for seed in settings.seeds:
                for class_name in data.prompted_classes(settings):
                    references.get(data, class_name, seed)
            # the training samples the draws read are inputs of every visual row
            position = {sample_id: i for i, sample_id in enumerate(data.train.ids)}
            read = [position[sample_id] for sample_id in references.samples_read(data)]
            store.inputs.note(data.train, [path for i in read for path in data.train.files(i)])
    jobs = [(d, i) for d, data in enumerate(datasets) for i in range(min(len(data.test), settings.max_images or len(data.test)))]
    if workers > 1:
        _run_sharded(datasets, jobs, store, workers, progress)
    else:
        for done, (d, index) in enumerate(jobs):
            data = datasets[d]
            _score_image(data, index, methods, settings, store.log.done, lambda row: store.log.append([row]), references,
                         on_read=lambda: store.note_sample(data.test, index))
            progress(done + 1, len(jobs), f"{data.name} {data.test.ids[index]}")
    drawn = references.record()
    if drawn:
        atomic_write_text(out / "references.json", json.dumps(drawn, indent=2))
    rows = list(store.log.rows())
    summary = summarise(datasets, methods, rows, settings)
    _write_results(out, datasets, rows)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    from .plots import plot_domains, plot_text_vs_visual

    plot_domains(summary, out / "domains.png")
    plot_text_vs_visual(summary, out / "text_vs_visual.png")
    return summary


class ReferenceDraws:
    """The references of each (dataset, class, seed), drawn once per run (as ``settings`` say) and recorded."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self._pools: dict[str, ReferencePool] = {}
        self._drawn: dict[tuple[str, str, int], list[DrawnReference]] = {}
        self._prompts: dict[tuple[str, str, int], list[Prompt]] = {}

    def _pool(self, data: EvalDataset) -> ReferencePool:
        if data.name not in self._pools:
            self._pools[data.name] = ReferencePool(data.train, data.prompted_classes(self.settings), data.candidates)
        return self._pools[data.name]

    def get(self, data: EvalDataset, class_name: str, seed: int) -> list[DrawnReference]:
        key = (data.name, class_name, seed)
        if key not in self._drawn:
            pool, n_prompts = self._pool(data), self.settings.n_prompts
            if self.settings.reference_draw == "sequential":  # every class at once, from one generator
                drawn = pool.draw_in_sequence(data.prompted_classes(self.settings), n_prompts, seed, data.min_reference_area)
                self._drawn.update({(data.name, name, seed): value for name, value in drawn.items()})
            else:
                self._drawn[key] = pool.draw(class_name, n_prompts, seed, data.min_reference_area)
        return self._drawn[key]

    def prompts(self, data: EvalDataset, class_name: str, seed: int) -> list[Prompt]:
        """The class's references as prompts, squashed to the scoring side when the settings say so."""
        key = (data.name, class_name, seed)
        if key not in self._prompts:
            references = [drawn.reference for drawn in self.get(data, class_name, seed)]
            if self.settings.squash_references:
                assert self.settings.resize is not None  # RunSettings checks it
                references = [squash_reference(r, self.settings.resize, self.settings.antialias) for r in references]
            self._prompts[key] = [Prompt(reference=reference) for reference in references]
        return self._prompts[key]

    def samples_read(self, data: EvalDataset) -> list[str]:
        """Ids of the training samples of ``data`` the draws have read."""
        return self._pool(data).samples_read() if data.name in self._pools else []

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (dataset, class_name, seed), drawn in sorted(self._drawn.items()):
            out.setdefault(dataset, {}).setdefault(str(seed), {})[class_name] = [
                {"sample": d.sample_id, "area_fraction": round(d.area_fraction, 4)} for d in drawn
            ]
        return out


def _run_sharded(
    datasets: Sequence[EvalDataset], jobs: list[tuple[int, int]], store: RunStore, workers: int, progress: ProgressCallback,
) -> None:
    from ..distributed import stream_results

    done_by_image: dict[tuple[str, str], set[tuple[str, str, int, str]]] = {}
    for key in store.log.done:
        done_by_image.setdefault((key[0], key[3]), set()).add(key)
    items = [
        (d, index, frozenset(done_by_image.get((datasets[d].name, datasets[d].test.ids[index]), ())))
        for d, index in jobs
    ]
    job = WorkerJob(show_or_tell_worker, store.settings_json)
    stream_results(job, items, n_workers=workers, on_result=store.add, progress=progress)


def show_or_tell_worker(settings: Mapping[str, Any]) -> Callable[[ShardItem], ScoredItem]:
    """A worker process's scorer, built once from the run's ``run.json``.

    The datasets, methods and settings come from the record alone and must
    have the recorded identity. Each call scores one test image (the keys in
    ``item[2]`` are skipped) and returns its rows with the states of the files read.
    """
    options = settings["options"]
    datasets, methods = RunSource(**options["source"]).build()
    run_settings = RunSettings.from_identity(settings["identity"], options["max_images"])
    check_rebuilt(settings, run_identity(datasets, methods, run_settings))
    references = ReferenceDraws(run_settings)
    digests = FileDigests()

    def score(item: ShardItem) -> ScoredItem:
        d, index, done = item
        test = datasets[d].test
        scored = ScoredItem([])
        _score_image(datasets[d], index, methods, run_settings, done, scored.rows.append, references,
                     on_read=lambda: scored.inputs.extend(digests.states(test, test.files(index))))
        return scored

    return score


def _score_image(
    data: EvalDataset,
    index: int,
    methods: Sequence[Method],
    settings: RunSettings,
    done: set[tuple[str, str, int, str]] | frozenset[tuple[str, str, int, str]],
    emit: Callable[[dict[str, Any]], None],
    references: ReferenceDraws,
    on_read: Callable[[], None],
) -> None:
    """Score image ``index`` of ``data`` for every (method, seed) whose key is not in ``done``; ``emit`` each row.

    ``on_read()`` is called once the image is read, before the first row.
    """
    image_id = data.test.ids[index]
    pending = [
        (m, seed)
        for m in methods
        for seed in ((TEXT_SEED,) if m.modality == "text" else settings.seeds)
        if (data.name, m.name, seed, image_id) not in done
    ]
    if not pending:
        return
    try:
        sample = data.test[index]
    except BadFileError:
        return  # recorded in the dataset's problems; the image is simply not scored
    on_read()
    labels, ignore = semantic_target(sample, data.space, score_background=settings.background_rule == "paper")
    image, labels, ignore = _resize_case(sample.image, labels, ignore, settings)
    classes = data.prompted_classes(settings)
    with_background = data.prompted_background(settings) is not None
    embeddings: dict[str, Embedding] = {}
    for method, seed in pending:
        started = time.perf_counter()
        key = f"{method.segmenter.name}:{method.segmenter.model_id}"
        if key not in embeddings:
            embeddings[key] = method.segmenter.embed(image)
        embedding = embeddings[key]
        confidences = np.zeros((len(classes),) + labels.shape, np.float32)
        for c, class_name in enumerate(classes):
            if method.modality == "text":
                prompts = [Prompt(text=t) for t in text_prompts(class_name, settings.templates)]
            else:
                prompts = references.prompts(data, class_name, seed)
            confidences[c] = np.mean(
                [confidence_map(method.segmenter, embedding, p, settings.persam_confidence) for p in prompts], axis=0
            )
        background = confidences[0] if with_background else None
        prediction = merge(confidences[1:] if with_background else confidences, background, data.merge_rule(settings))
        matrix = ConfusionMatrix(data.space.n_labels).update(prediction, labels, ignore)
        emit(
            {
                "dataset": data.name,
                "domain": data.domain,
                "method": method.name,
                "modality": method.modality,
                "seed": seed,
                "image": image_id,
                "seconds": round(time.perf_counter() - started, 4),
                "matrix": matrix.matrix.tolist(),
            }
        )


def _accumulate(rows: Sequence[dict[str, Any]], n_labels: int) -> ConfusionMatrix:
    total = ConfusionMatrix(n_labels)
    for row in rows:
        total.matrix += np.asarray(row["matrix"], np.int64)
    return total


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(finite)), "std": float(np.std(finite)), "n": len(finite)}


def summarise(
    datasets: Sequence[EvalDataset], methods: Sequence[Method], rows: Sequence[dict[str, Any]],
    settings: RunSettings | None = None,
) -> dict[str, Any]:
    """Per dataset and method: mIoU and per-class IoU (x100) as mean +- std over seeds; per domain; oracle.

    With ``settings`` the summary names the protocol and every setting of the run.
    """
    out: dict[str, Any] = {"datasets": {}, "domains": {}}
    if settings is not None:
        out = {"protocol": settings.protocol, "settings": settings.identity(), **out}
    for data in datasets:
        entry: dict[str, Any] = {"domain": data.domain, "classes": list(data.space.names),
                                 "background": data.space.background, "methods": {}}
        for method in methods:
            mine = [r for r in rows if r["dataset"] == data.name and r["method"] == method.name]
            if not mine:
                continue
            seeds = sorted({int(r["seed"]) for r in mine})
            per_seed = {s: _accumulate([r for r in mine if int(r["seed"]) == s], data.space.n_labels) for s in seeds}
            mious = [cm.miou(data.space.skipped_in_mean) for cm in per_seed.values()]
            per_class = {}
            for c, name in enumerate(data.space.names):
                label = c + 1
                values = [float(cm.iou()[label] * 100) for cm in per_seed.values() if cm.present()[label]]
                per_class[name] = _mean_std(values)
            entry["methods"][method.name] = {
                "modality": method.modality,
                "backend": method.segmenter.name,
                "miou": _mean_std(mious),
                "miou_per_seed": {str(s): m for s, m in zip(seeds, mious)},
                "per_class": per_class,
                "seconds_per_image": float(np.mean([r["seconds"] for r in mine])),  # each row: one image, one seed
                "images": len({r["image"] for r in mine}),
            }
        entry["oracle"] = _oracle(entry["methods"], data.space.names)
        out["datasets"][data.name] = entry
    for domain in sorted({d.domain for d in datasets}):
        scores: dict[str, list[float]] = {}
        for data in datasets:
            if data.domain != domain:
                continue
            for name, result in out["datasets"][data.name]["methods"].items():
                if result["miou"]["mean"] is not None:
                    scores.setdefault(name, []).append(result["miou"]["mean"])
        out["domains"][domain] = {name: float(np.mean(v)) for name, v in scores.items()}
    return out


def _oracle(results: dict[str, Any], classes: Sequence[str]) -> dict[str, Any]:
    """Best of text and visual per class: which modality to use if one knew in advance."""
    per_class: dict[str, Any] = {}
    for name in classes:
        best: dict[str, tuple[float, str]] = {}
        for method_name, result in results.items():
            value = result["per_class"][name]["mean"]
            if value is None:
                continue
            modality = result["modality"]
            if modality not in best or value > best[modality][0]:
                best[modality] = (value, method_name)
        if best:
            winner = max(best.items(), key=lambda item: item[1][0])
            per_class[name] = {
                "iou": winner[1][0],
                "modality": winner[0],
                "method": winner[1][1],
                **{f"best_{m}": v[0] for m, v in best.items()},
            }
    values = [v["iou"] for v in per_class.values()]
    return {"per_class": per_class, "miou": float(np.mean(values)) if values else None}


def _write_results(out: Path, datasets: Sequence[EvalDataset], rows: Sequence[dict[str, Any]]) -> None:
    buffer = _io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["method", "modality", "dataset", "domain", "class", "seed", "iou"])
    by_dataset = {d.name: d for d in datasets}
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["method"], int(row["seed"])), []).append(row)
    for (dataset_name, method_name, seed), group in sorted(groups.items()):
        data = by_dataset.get(dataset_name)
        if data is None:
            continue
        cm = _accumulate(group, data.space.n_labels)
        iou, present = cm.iou(), cm.present()
        for c, class_name in enumerate(data.space.names):
            if present[c + 1]:
                writer.writerow([method_name, group[0]["modality"], dataset_name, data.domain, class_name,
                                 "" if seed == TEXT_SEED else seed, f"{iou[c + 1] * 100:.4f}"])
    atomic_write_text(out / "results.csv", buffer.getvalue())


__all__ = [
    "EvalDataset", "Method", "RunSettings", "RunSource", "parse_method", "prepare_dataset", "run_identity",
    "run_show_or_tell", "show_or_tell_worker", "summarise",
]
