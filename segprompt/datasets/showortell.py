"""Show-or-Tell's "general" dataset folders (Pizza, Trash, LoveDA, ZeroWaste, UECFood, ...).

The reference's downloader leaves each of these datasets as::

    <root>/classes.txt                    one class name per line; a "background" line is dropped
    <root>/<split>/<name>.jpg|.png         images, one folder per split (``train``, ``valid``, ...)
    <root>/annotations/<split>/<name>.png  class-index masks: 0 = background, k = line k, 255 = ignore

as its ``DatasetGENERAL`` reads them. ``class_names`` is ``("background",
*classes)``, so mask value ``k`` names ``class_names[k]``; 0 is the
background index (never an object, never prompted) and 255 forms
``Sample.ignore``. A sample's id is ``"<split>/<name>"``, the name the
released split lists (``data/splits/<name>_{train,val}.pkl``) use. The split
folders are the splits; ``valid`` and ``validation`` are called ``val``.
"""

from __future__ import annotations

from pathlib import Path

from .base import Problem, Sample
from .files import image_files
from .lazy import Entry, LazyDataset, OnError
from .plain import VOID_VALUE, read_classes_txt, read_semantic_sample
from .registry import Layout, register_layout

BACKGROUND = "background"
SPLIT_NAMES = {"valid": "val", "validation": "val"}


def general_classes(root: Path) -> tuple[str, ...]:
    """``("background", *classes.txt lines other than "background")``."""
    return (BACKGROUND, *(name for name in read_classes_txt(root / "classes.txt") if name != BACKGROUND))


@register_layout
class ShowOrTellGeneral(Layout):
    name = "showortell"
    summary = "Show-or-Tell general folder: classes.txt, <split>/ images, annotations/<split>/ index PNGs (255 = ignore)"
    specificity = 20
    background_index = 0

    @classmethod
    def detect(cls, root: Path) -> bool:
        annotations = root / "annotations"
        return (root / "classes.txt").is_file() and annotations.is_dir() and any(
            (root / split.name).is_dir() for split in annotations.iterdir() if split.is_dir()
        )

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        classes = general_classes(root)
        entries: list[Entry] = []
        problems: list[Problem] = []
        splits: dict[str, list[str]] = {}
        for folder in sorted(p for p in (root / "annotations").iterdir() if p.is_dir()):
            images = image_files(root / folder.name)
            split = splits.setdefault(SPLIT_NAMES.get(folder.name, folder.name), [])
            for stem, mask in image_files(folder).items():
                sample_id = f"{folder.name}/{stem}"
                if stem in images:
                    entries.append(Entry(sample_id, images[stem], info={"mask": mask, "split": folder.name}))
                    split.append(sample_id)
                else:
                    problems.append(Problem(str(mask), f"mask without image: no {folder.name}/{stem}.jpg or .png"))
        return LazyDataset(
            root.name, self.name, classes, entries, lambda entry: _read(entry, classes),
            on_error=on_error, problems=problems, splits={name: ids for name, ids in splits.items() if ids},
        )  # fmt: skip


def _read(entry: Entry, classes: tuple[str, ...]) -> Sample:
    allowed = [*range(len(classes)), VOID_VALUE]
    meta = {"background_index": ShowOrTellGeneral.background_index, "split": entry.info["split"]}
    return read_semantic_sample(entry, classes, allowed, "class-index", VOID_VALUE, meta)
