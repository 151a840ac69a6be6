"""The PointPrompt release (Zenodo 11187949): images, masks and human point prompts.

Layout (``<root>`` or ``<root>/Image datasets`` holds the categories)::

    <Category>/samples.npy      N images: (H, W, 3) uint8, or (H, W) float in [-1, 1] (seismic)
    <Category>/labels.npy       N ground-truth masks (H, W); nonzero = object
    Prompting Results/<Category>/st{1,2,3}/
        points/{i}_green.npy    include points per timestep (object array of (n_t, 2))
        points/{i}_red.npy      exclude points per timestep
        scores/{i}score.npy     SAM IoU at each timestep
        sorts/{i}_sort.npy      timestep indices sorted by score, best first
        eachround/{i}_.npy      which timesteps belong to each prompting round
        masks/{i}_{t}_mask.png  SAM's mask at timestep t

Sample ``i`` of a category has id ``"<Category>/<i>"``, one binary object of
class ``<Category>``, and one prompt set per annotator (``"st1"`` ...), a list
of one :class:`~segprompt.prompts.Prompt` per timestep. Points are ``(x, y)``
= ``(column, row)``: the reference code passes the arrays unchanged as
``point_coords`` to segment-anything's ``SamPredictor.predict``. The point
arrays appear cumulative (timestep ``t`` holds every point given so far), which
matches our per-timestep prompt semantics; a timestep with no point at all is
an empty ``Prompt()`` so that indices stay aligned with the scores. Scores,
sorts, rounds and the SAM mask paths are in ``meta["pointprompt"][annotator]``.

Seismic images (2-D floats in [-1, 1]) are mapped to uint8 by
``((x + 1) / 2) * 255`` as in the reference code, then to grey RGB.
The ``.npy`` files hold pickled object arrays, so they are loaded with
``allow_pickle=True``: open only releases you trust.

:func:`read_test_list` reads the reference code's fixed fine-tuning test list
(``finetuning SAM/test.npy`` of olivesgatech/PointPrompt, not in the Zenodo
release) as sample ids.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..io import to_rgb_uint8
from ..prompts import Points, Prompt
from .base import Problem, Sample
from .lazy import BadFileError, Entry, LazyDataset, OnError
from .registry import Layout, register_layout

RESULTS_FOLDER = "Prompting Results"
IMAGES_FOLDER = "Image datasets"


def _npy_length(path: Path) -> int:
    """First dimension of an ``.npy`` file, read from its header only."""
    with path.open("rb") as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = reader(handle)
    return int(shape[0]) if shape else 0


@functools.lru_cache(maxsize=4)
def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=True)
    except ValueError:  # object arrays cannot be memory-mapped
        return np.load(path, allow_pickle=True)


def read_test_list(path: str | Path) -> list[str]:
    """The sample ids (``"<Category>/<i>"``) of the reference code's ``test.npy``.

    The file is a plain array of paths ending ``.../samples/<Category>/<i>_sample.npy``
    (the reference's rearranged copy of the release); it is read without pickles.

    Raises:
        DatasetError: a missing or unreadable file, or a path of another form.
    """
    path = Path(path)
    try:
        names = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: unreadable test list ({exc})") from exc
    ids = []
    for name in np.asarray(names).ravel().tolist():
        parts = str(name).replace("\\", "/").split("/")
        stem = parts[-1]
        if len(parts) < 2 or not stem.endswith("_sample.npy") or not stem[: -len("_sample.npy")].isdigit():
            raise DatasetError(f"{path}: entry {name!r} is not a path ending <Category>/<i>_sample.npy")
        ids.append(f"{parts[-2]}/{int(stem[: -len('_sample.npy')])}")
    return ids


def seismic_to_uint8(image: np.ndarray) -> np.ndarray:
    """Map values in ``[-1, 1]`` to uint8 by ``((x + 1) / 2) * 255``."""
    return np.clip((np.asarray(image, np.float64) + 1.0) / 2.0 * 255.0, 0, 255).astype(np.uint8)


def _image_of(raw: np.ndarray) -> np.ndarray:
    data = np.asarray(raw)
    if data.ndim == 2 and np.issubdtype(data.dtype, np.floating) and data.min() >= -1.0 and data.max() <= 1.0:
        data = seismic_to_uint8(data)
    return to_rgb_uint8(data)


def _timesteps(path: Path) -> list[np.ndarray]:
    data = np.load(path, allow_pickle=True)
    if data.dtype != object and data.ndim == 2:
        return [data]  # a single timestep saved as one (n, 2) array
    return [np.asarray(step, dtype=np.float64).reshape(-1, 2) for step in data]


def read_annotator(folder: Path, index: int) -> tuple[list[Prompt], dict[str, Any]]:
    """Prompts per timestep and the recorded scores of one annotator for image ``index``."""
    green = _timesteps(folder / "points" / f"{index}_green.npy")
    red_path = folder / "points" / f"{index}_red.npy"
    red = _timesteps(red_path) if red_path.is_file() else [np.zeros((0, 2))] * len(green)
    if len(red) != len(green):
        raise BadFileError(red_path, f"{len(red)} timesteps of exclude points but {len(green)} of include points")
    prompts = [Prompt(points=Points.from_lists(g, r)) if len(g) + len(r) else Prompt() for g, r in zip(green, red)]
    record: dict[str, Any] = {}
    for key, name in (("scores", f"{index}score.npy"), ("sorts", f"{index}_sort.npy"), ("eachround", f"{index}_.npy")):
        path = folder / key / name
        if path.is_file():
            record[key] = np.load(path, allow_pickle=True)
    masks = folder / "masks"
    steps = sorted(masks.glob(f"{index}_*_mask.png"), key=lambda p: int(p.stem.split("_")[1])) if masks.is_dir() else []
    record["mask_paths"] = [str(p) for p in steps]
    return prompts, record


@register_layout
class PointPrompt(Layout):
    name = "pointprompt"
    summary = "PointPrompt release: <Category>/samples.npy + labels.npy, human points in Prompting Results/"
    specificity = 30

    @staticmethod
    def image_root(root: Path) -> Path:
        return root / IMAGES_FOLDER if (root / IMAGES_FOLDER).is_dir() else root

    @classmethod
    def detect(cls, root: Path) -> bool:
        base = cls.image_root(root)
        return (root / RESULTS_FOLDER).is_dir() or any(base.glob("*/samples.npy"))

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        base = self.image_root(root)
        entries: list[Entry] = []
        problems: list[Problem] = []
        categories = sorted(p.parent.name for p in base.glob("*/samples.npy"))
        for category in categories:
            samples, labels = base / category / "samples.npy", base / category / "labels.npy"
            try:
                count = _npy_length(samples)
                label_count = _npy_length(labels) if labels.is_file() else None
            except (OSError, ValueError) as exc:
                problems.append(Problem(str(samples), f"unreadable .npy header ({exc})"))
                continue
            if label_count is None:
                problems.append(Problem(str(labels), "missing labels.npy: no ground truth for this category"))
                continue
            if label_count != count:
                problems.append(Problem(str(labels), f"{label_count} labels for {count} samples"))
                count = min(count, label_count)
            annotators = sorted(p for p in (root / RESULTS_FOLDER / category).glob("st*") if p.is_dir())
            for index in range(count):
                # the human clicks that become prompts, named so that a run can record them (LazyDataset.files)
                clicks = [folder / "points" / f"{index}_{colour}.npy" for folder in annotators for colour in ("green", "red")]
                info = {"category": category, "index": index, "labels": labels, "annotators": annotators, "prompt_files": clicks}
                entries.append(Entry(f"{category}/{index}", samples, info=info))
        return LazyDataset(root.name, self.name, tuple(categories), entries, _read, on_error=on_error, problems=problems)


def _read(entry: Entry) -> Sample:
    info = entry.info
    index = info["index"]
    try:
        image = _image_of(_load_array(entry.path)[index])
        mask = (np.asarray(_load_array(info["labels"])[index]) != 0).astype(np.uint8)
    except (OSError, ValueError, IndexError, TypeError) as exc:
        raise BadFileError(entry.path, f"unreadable sample {index} ({type(exc).__name__}: {exc})") from exc
    if mask.shape != image.shape[:2]:
        raise BadFileError(info["labels"], f"size mismatch: label {index} is {mask.shape}, sample is {image.shape[:2]}")
    prompts: dict[str, list[Prompt]] = {}
    records: dict[str, dict[str, Any]] = {}
    for folder in info["annotators"]:
        if not (folder / "points" / f"{index}_green.npy").is_file():
            continue  # this annotator did not prompt this image
        try:
            prompts[folder.name], records[folder.name] = read_annotator(folder, index)
        except (OSError, ValueError, TypeError) as exc:
            raise BadFileError(folder / "points" / f"{index}_green.npy", f"unreadable points ({exc})") from exc
    meta = {"category": info["category"], "index": index, "pointprompt": records}
    return Sample(entry.id, image, mask, "binary", (info["category"],), prompts=prompts, source=f"{entry.path}[{index}]", meta=meta)
