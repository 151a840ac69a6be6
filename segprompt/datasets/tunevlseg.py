"""TuneVLSeg / "medvlsm" layout: ``images/`` + ``masks/`` + ``anns/{train,val,test}.json``.

Each ``anns/<split>.json`` (every ``.json`` in ``anns/`` is a split, named by
its stem) is a list of tasks, as the reference's ``ImageTextMaskDataset``
reads them::

    [{"img_name": "ck2bxiswtxuw80838qkisqjwz.jpg",
      "mask_name": "ck2bxiswtxuw80838qkisqjwz.png",
      "prompts": {"p0": "", "p1": "polyp", "p2": ["a pink polyp", "one polyp"], ...}}, ...]

One sample per task: id = ``mask_name`` without its suffix (several tasks may
share an image, e.g. one per CAMUS structure); binary target, class
``object``; ``Sample.meta["text_prompts"]`` = the ``prompts`` mapping (a phrase
or a list of phrases per key; tuning picks ``p1`` by default, see
:func:`segprompt.tuning.data.sample_phrases`). ``img_name`` / ``mask_name``
are paths below ``images/`` / ``masks/``, or below their ``<split>/``
subfolder, or ``train/`` for the validation split (CAMUS keeps its validation
images under ``images/train/``). Masks: 0/1 or 0/255; other grey values (JPEG
masks) count as object from 128 up. A task naming a missing file, or
malformed, is a problem naming the JSON file and the task index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .base import Problem, Sample
from .files import load_image, load_mask
from .lazy import Entry, LazyDataset, OnError
from .registry import Layout, register_layout

ANNS = "anns"
CLASS_NAME = "object"


@register_layout
class TuneVLSegLayout(Layout):
    name = "tunevlseg"
    summary = "TuneVLSeg / medvlsm: images/ + masks/ + anns/<split>.json tasks with per-image text prompts (p0, p1, ...)"
    specificity = 20
    domain = "medical"  # the medvlsm datasets (a domain.txt overrides it)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return (root / "images").is_dir() and (root / "masks").is_dir() and any((root / ANNS).glob("*.json"))

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        entries: dict[str, Entry] = {}
        splits: dict[str, list[str]] = {}
        problems: list[Problem] = []
        for path in sorted((root / ANNS).glob("*.json")):
            tasks, problem = _read_tasks(path)
            if problem is not None:
                problems.append(problem)
                continue
            ids = splits.setdefault(path.stem, [])
            for index, task in enumerate(tasks):
                entry, reason = _entry(root, path.stem, task)
                if entry is None:
                    problems.append(Problem(str(path), f"task {index}: {reason}"))
                elif entry.id in entries and entries[entry.id] != entry:
                    reason = f"task {index}: mask {task['mask_name']!r} is listed with another image or prompts"
                    problems.append(Problem(str(path), reason))
                else:
                    entries[entry.id] = entry
                    ids.append(entry.id)
        return LazyDataset(
            root.name, self.name, (CLASS_NAME,), entries.values(), _read, on_error=on_error, problems=problems, splits=splits
        )


def _read_tasks(path: Path) -> tuple[list[Any], Problem | None]:
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return [], Problem(str(path), f"cannot read the task list ({exc})")
    if not isinstance(tasks, list):
        return [], Problem(str(path), "expected a JSON list of tasks {img_name, mask_name, prompts}")
    return tasks, None


def _prompts_reason(prompts: Any) -> str | None:
    if not isinstance(prompts, dict) or not prompts:
        return "'prompts' must map keys (p0, p1, ...) to phrases"
    for key, value in prompts.items():
        phrases = [value] if isinstance(value, str) else value
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            return f"prompts[{key!r}] must be a phrase or a list of phrases"
    return None


def _find(folder: Path, split: str, name: str) -> Path | None:
    for candidate in (folder / name, folder / split / name, folder / "train" / name):
        if candidate.is_file():
            return candidate
    return None


def _entry(root: Path, split: str, task: Any) -> tuple[Entry | None, str]:
    if not isinstance(task, dict):
        return None, "expected an object {img_name, mask_name, prompts}"
    for key in ("img_name", "mask_name"):
        if not isinstance(task.get(key), str) or not task[key]:
            return None, f"{key!r} must be a file name"
    reason = _prompts_reason(task.get("prompts"))
    if reason is not None:
        return None, reason
    image = _find(root / "images", split, task["img_name"])
    mask = _find(root / "masks", split, task["mask_name"])
    if image is None or mask is None:
        missing = f"images/{task['img_name']}" if image is None else f"masks/{task['mask_name']}"
        return None, f"no file {missing} (nor below its split folder)"
    sample_id = Path(task["mask_name"]).with_suffix("").as_posix()
    return Entry(sample_id, image, info={"mask": mask, "text_prompts": task["prompts"]}), ""


def _read(entry: Entry) -> Sample:
    image = load_image(entry.path)
    mask = load_mask(entry.info["mask"], image.shape)
    binary = mask if np.isin(np.unique(mask), (0, 1)).all() else mask >= 128
    return Sample(
        entry.id, image, binary.astype(np.uint8), "binary", (CLASS_NAME,),
        source=f"{entry.path}|{entry.info['mask']}", meta={"text_prompts": entry.info["text_prompts"]},
    )  # fmt: skip
