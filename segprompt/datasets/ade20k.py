"""ADE20K-style scene parsing (ADEChallengeData2016 layout).

``images/{training,validation}/*.jpg`` + ``annotations/{training,validation}/*.png``
index maps. Convention: value 0 is "other" (pixels outside the 150 classes),
which segprompt's benchmarks ignore by default; values 1..150 are the classes.
The mask is kept as is, so ``class_names[0] == "other"`` and ``class_names[k]``
is class ``k``; value 0 also forms ``Sample.ignore`` and is the background
index (never an object, never prompted: ``Layout.background_index``, not the
name, says so). Show-or-Tell's paper protocol scores those pixels as
background instead (false positives on them count). Class names come from ``objectInfo150.csv`` (column ``Name``, first
synonym before ``;``) when present, else ``class_1`` ... ``class_150``.
The folders ``training``/``validation`` are the splits ``train``/``val``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .base import Problem, Sample
from .files import image_files
from .lazy import Entry, LazyDataset, OnError
from .plain import read_semantic_sample
from .registry import Layout, register_layout

NUM_CLASSES = 150
OTHER = "other"
SPLIT_FOLDERS = {"train": "training", "val": "validation"}


def read_class_names(root: Path) -> tuple[str, ...]:
    """``("other", name_1, ..., name_150)``."""
    for path in (root / "objectInfo150.csv", root / "objectInfo150.txt"):
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                delimiter = "\t" if path.suffix == ".txt" else ","
                names = [row["Name"].split(";")[0].strip() for row in csv.DictReader(handle, delimiter=delimiter)]
            if len(names) == NUM_CLASSES:
                return (OTHER, *names)
    return (OTHER, *(f"class_{k}" for k in range(1, NUM_CLASSES + 1)))


@register_layout
class Ade20k(Layout):
    name = "ade20k"
    domain = "common"
    background_index = 0
    min_reference_area = 0.04
    summary = "ADE20K scene parsing: index PNGs, 0 = other (ignore), 1..150 classes; training/validation splits"
    specificity = 30

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any((root / "images" / f).is_dir() and (root / "annotations" / f).is_dir() for f in SPLIT_FOLDERS.values())

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        entries: list[Entry] = []
        problems: list[Problem] = []
        splits: dict[str, list[str]] = {}
        for split, folder in SPLIT_FOLDERS.items():
            images, masks = image_files(root / "images" / folder), image_files(root / "annotations" / folder)
            if not images:
                continue
            splits[split] = []
            for stem, path in images.items():
                if stem in masks:
                    entries.append(Entry(stem, path, info={"mask": masks[stem], "split": split}))
                    splits[split].append(stem)
                else:
                    problems.append(Problem(str(path), f"missing mask: no annotations/{folder}/{stem}.png"))
        classes = read_class_names(root)
        return LazyDataset(
            root.name, self.name, classes, entries, lambda e: _read(e, classes),
            on_error=on_error, problems=problems, splits=splits,
        )  # fmt: skip


def _read(entry: Entry, classes: tuple[str, ...]) -> Sample:
    meta = {"background_index": Ade20k.background_index, "split": entry.info["split"]}
    return read_semantic_sample(entry, classes, range(NUM_CLASSES + 1), "ADE20K class-index", 0, meta)
