"""Plain folder layout: ``images/`` + ``masks/`` with matching file stems.

Masks are read by their values:

* with a ``classes.txt`` (one class name per line, line ``k`` = index ``k``)
  every mask is a **semantic** class-index map; value 255, when it is not a
  class index, is ignore; class 0 is background when it is named
  ``background``/``_background_``/``other``/``unlabelled``;
* without it, a mask holding only 0 and 255 (or 0 and 1) is **binary** (class
  ``object``); any other mask (e.g. uint16) is an **instance** label map,
  0 = background, one object per other value.

Optional split files ``splits/<name>.txt`` (one sample id per line) give the
dataset's own splits; a ``domain.txt`` (one word, e.g. ``medical``) tags the
dataset's domain for the Show-or-Tell benchmark (see
``data_cards/semantic_folder.md``).

:class:`PairedFolderLayout` is the base of every layout built on this pairing
(the shared-data folders); it reports an image without a mask or a mask
without an image as a problem when the dataset is opened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Collection, Mapping

import numpy as np

from .base import MaskKind, Problem, Sample
from .files import binary_mask, check_values, image_files, load_image, load_mask, read_index
from .lazy import BadFileError, Entry, LazyDataset, OnError
from .registry import Layout, register_layout

BACKGROUND_NAMES = frozenset({"background", "_background_", "other", "unlabelled", "unlabeled"})
VOID_VALUE = 255


def pair_files(images: Path, masks: Path) -> tuple[list[Entry], list[Problem]]:
    """Entries (``info["mask"]`` = mask path) for stems present in both folders; problems for the others."""
    image_paths, mask_paths = image_files(images), image_files(masks)
    entries = [Entry(stem, path, info={"mask": mask_paths[stem]}) for stem, path in image_paths.items() if stem in mask_paths]
    problems = [Problem(str(path), "missing mask: no file with this stem in masks/") for stem, path in image_paths.items() if stem not in mask_paths]
    problems += [Problem(str(path), "mask without image: no file with this stem in images/") for stem, path in mask_paths.items() if stem not in image_paths]
    return entries, problems


def read_classes_txt(path: Path) -> tuple[str, ...]:
    """Class names, one per non-empty line."""
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def source_of(entry: Entry) -> str:
    return f"{entry.path}|{entry.info['mask']}" if "mask" in entry.info else str(entry.path)


def meta_of(entry: Entry) -> dict[str, Any]:
    """The entry's reader fields other than file paths, for :attr:`Sample.meta`."""
    return {key: value for key, value in entry.info.items() if not isinstance(value, Path)}


def read_binary_sample(entry: Entry, class_name: str) -> Sample:
    """A sample whose mask (``info["mask"]``) is 0/255 or 0/1 for one class."""
    image = load_image(entry.path)
    mask_path = entry.info["mask"]
    mask = binary_mask(load_mask(mask_path, image.shape), mask_path)
    return Sample(entry.id, image, mask, "binary", (class_name,), source=source_of(entry), meta=meta_of(entry))


def read_semantic_sample(
    entry: Entry, class_names: tuple[str, ...], allowed: Collection[int], what: str, ignore_value: int, meta: dict[str, Any]
) -> Sample:
    """A sample whose mask (``info["mask"]``) holds class indices into ``class_names``.

    Values outside ``allowed`` make the file bad (reported as ``what``, e.g.
    ``"VOC class-index"``); pixels equal to ``ignore_value`` become
    :attr:`Sample.ignore`.
    """
    image = load_image(entry.path)
    mask_path = entry.info["mask"]
    mask = load_mask(mask_path, image.shape)
    check_values(mask, mask_path, allowed, what)
    return Sample(
        entry.id, image, mask, "semantic", class_names,
        ignore=mask == ignore_value, source=source_of(entry), meta=meta,
    )  # fmt: skip


class PairedFolderLayout(Layout):
    """Base of layouts with ``images/`` + ``masks/`` of matching stems."""

    #: Classes of the whole dataset (a subclass may compute them in :meth:`dataset_classes`).
    class_names: ClassVar[tuple[str, ...]] = ("object",)
    #: Folder name that identifies the layout when no file does (``""``: none).
    folder_name: ClassVar[str] = ""
    #: Optional index file (``.csv``/``.json``): its row for a sample (found by the ``index_key``
    #: column) adds the ``index_fields`` columns to the sample meta, as ``{column: meta key}``.
    index_file: ClassVar[str] = ""
    index_key: ClassVar[str] = "name"
    index_fields: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def has_pairs(cls, root: Path) -> bool:
        return (root / "images").is_dir() and (root / "masks").is_dir()

    @classmethod
    def detect(cls, root: Path) -> bool:
        return bool(cls.folder_name) and root.name == cls.folder_name and cls.has_pairs(root)

    def list_entries(self, root: Path) -> tuple[list[Entry], list[Problem]]:
        entries, problems = pair_files(root / "images", root / "masks")
        index_path = root / self.index_file
        if not self.index_file or not index_path.is_file():
            return entries, problems
        try:
            rows = read_index(index_path, self.index_key)
        except BadFileError as exc:
            return entries, problems + [exc.problem]
        return [self._with_row(entry, rows.get(entry.id)) for entry in entries], problems

    def _with_row(self, entry: Entry, row: dict[str, Any] | None) -> Entry:
        fields = {meta_key: row[column] for column, meta_key in self.index_fields.items() if column in row} if row else {}
        return Entry(entry.id, entry.path, entry.group, {**entry.info, **fields})

    def dataset_classes(self, root: Path) -> tuple[str, ...]:
        return self.class_names

    def dataset_splits(self, root: Path, entries: list[Entry]) -> tuple[dict[str, list[str]], list[Problem]]:
        """The layout's own split files, ``{split name: sample ids}``; none by default."""
        return {}, []

    def read(self, entry: Entry) -> Sample:
        return read_binary_sample(entry, self.class_names[0])

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        entries, problems = self.list_entries(root)
        splits, split_problems = self.dataset_splits(root, entries)
        return LazyDataset(
            root.name, self.name, self.dataset_classes(root), entries, self.read,
            on_error=on_error, problems=problems + split_problems, splits=splits,
        )  # fmt: skip


@register_layout
class PlainFolder(PairedFolderLayout):
    name = "folder"
    summary = "images/ + masks/ with matching stems; binary 0/255, instance labels, or class maps with classes.txt"
    specificity = 0

    @classmethod
    def detect(cls, root: Path) -> bool:
        return cls.has_pairs(root)

    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        classes_file = root / "classes.txt"
        self._classes = read_classes_txt(classes_file) if classes_file.is_file() else None
        return super().open(root, on_error)

    def dataset_classes(self, root: Path) -> tuple[str, ...]:
        return self._classes or self.class_names

    @classmethod
    def background_of(cls, class_names: tuple[str, ...]) -> int | None:
        """0 when ``classes.txt`` names class 0 background (``background``, ``other``, ``unlabelled``...), else ``None``."""
        return 0 if class_names and class_names[0].lower() in BACKGROUND_NAMES else None

    def dataset_splits(self, root: Path, entries: list[Entry]) -> tuple[dict[str, list[str]], list[Problem]]:
        """``splits/<name>.txt`` files, one sample id (file stem) per line, e.g. ``train.txt`` and ``val.txt``.

        An id that names no sample is reported as a problem and left out of the split.
        """
        folder = root / "splits"
        if not folder.is_dir():
            return {}, []
        known = {entry.id for entry in entries}
        splits: dict[str, list[str]] = {}
        problems: list[Problem] = []
        for path in sorted(folder.glob("*.txt")):
            ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            problems += [Problem(str(path), f"split names unknown sample {i!r}") for i in ids if i not in known]
            splits[path.stem] = [i for i in ids if i in known]
        return splits, problems

    def read(self, entry: Entry) -> Sample:
        image = load_image(entry.path)
        mask_path: Path = entry.info["mask"]
        mask = load_mask(mask_path, image.shape)
        meta: dict[str, Any] = meta_of(entry)
        ignore = None
        kind: MaskKind
        if self._classes:
            allowed = set(range(len(self._classes))) | {VOID_VALUE}
            check_values(mask, mask_path, allowed, "class-index")
            kind, classes = "semantic", self._classes
            if VOID_VALUE >= len(classes):
                ignore = mask == VOID_VALUE
            if self.background_of(classes) is not None:
                meta["background_index"] = self.background_of(classes)
        elif np.isin(np.unique(mask), (0, 1, 255)).all() and mask.dtype == np.uint8:
            kind, classes, mask = "binary", self.class_names, binary_mask(mask, mask_path)
        else:
            kind, classes = "instance", self.class_names
        return Sample(entry.id, image, mask, kind, classes, ignore=ignore, source=source_of(entry), meta=meta)
