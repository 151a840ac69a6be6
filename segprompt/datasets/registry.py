"""Layout registry and :func:`open_dataset`.

A layout is a small :class:`Layout` subclass in its own module, registered
with :func:`register_layout`. Detection asks the layouts in decreasing
``specificity`` (the plain ``images/`` + ``masks/`` folder, which most other
layouts also match, comes last). Adding a layout means adding a module and one
line to ``_LAYOUT_MODULES``.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar, TypeVar

from ..errors import DatasetError
from ..registry import Registry
from .lazy import ON_ERROR_CHOICES, LazyDataset, OnError

_LAYOUT_MODULES: tuple[str, ...] = (
    "segprompt.datasets.plain",
    "segprompt.datasets.voc",
    "segprompt.datasets.ade20k",
    "segprompt.datasets.coco",
    "segprompt.datasets.pointprompt",
    "segprompt.datasets.kvasir",
    "segprompt.datasets.busi",
    "segprompt.datasets.skin",
    "segprompt.datasets.ct_organs",
    "segprompt.datasets.nuclei",
    "segprompt.datasets.em_membranes",
    "segprompt.datasets.camvid",
    "segprompt.datasets.coco_mval",
    "segprompt.datasets.grabcut",
    "segprompt.datasets.tunevlseg",
    "segprompt.datasets.cityscapes",
    "segprompt.datasets.showortell",
)


class Layout(ABC):
    """How one folder layout is recognised and read."""

    #: Registry name, also accepted as ``open_dataset(layout=...)``.
    name: ClassVar[str]
    #: One line for ``segprompt datasets inspect`` and the docs.
    summary: ClassVar[str]
    #: Detection order: higher is asked first.
    specificity: ClassVar[int] = 10
    #: Image domain (``"medical"``, ``"microscopy"``, ``"urban"``, ``"common"``); Show-or-Tell groups
    #: results by it (a ``domain.txt`` in the dataset folder overrides it).
    domain: ClassVar[str] = "unknown"
    #: Whether every class index is a real class, the background index included, whose IoU counts in a
    #: semantic mIoU: Show-or-Tell's ``ignore_background = False`` (PASCAL VOC, whose background is class 0;
    #: Cityscapes, which has no background). Elsewhere a background is left out of the mean.
    background_is_class: ClassVar[bool] = False
    #: Index of the semantic class that is background (VOC's and ADE20K's 0), ``None`` when no class is.
    #: Background is found by this index, never by the class's name (ADE20K calls it "other").
    background_index: ClassVar[int | None] = None
    #: Show-or-Tell's minimum reference-mask area, as a fraction of the reference image: the value the
    #: reference code applies for the dataset (none where it sets none).
    min_reference_area: ClassVar[float] = 0.0

    @classmethod
    def background_of(cls, class_names: tuple[str, ...]) -> int | None:
        """The background index of a dataset of this layout with ``class_names`` (:attr:`background_index`)."""
        return cls.background_index

    @classmethod
    @abstractmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` looks like this layout (cheap: names, not pixels)."""

    @abstractmethod
    def open(self, root: Path, on_error: OnError) -> LazyDataset:
        """List the samples of ``root`` (reading no image)."""


#: Every layout, by name (detection order: see :func:`layouts`).
LAYOUTS: Registry[type[Layout]] = Registry("layout", _LAYOUT_MODULES, error=DatasetError)
L = TypeVar("L", bound=type[Layout])


def register_layout(cls: L) -> L:
    """Class decorator adding a :class:`Layout` under ``cls.name`` (a taken name raises)."""
    return LAYOUTS.register(cls)


def layouts() -> dict[str, type[Layout]]:
    """All layouts by name, in detection order."""
    ordered = sorted(LAYOUTS.loaded().values(), key=lambda cls: (-cls.specificity, cls.name))
    return {cls.name: cls for cls in ordered}


def detect_layout(root: str | os.PathLike) -> str:
    """Name of the first layout (by specificity) that recognises ``root``.

    Raises:
        DatasetError: ``root`` is not a folder or no layout recognises it.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    for name, cls in layouts().items():
        if cls.detect(root):
            return name
    raise DatasetError(
        f"{root}: unknown dataset layout; expected e.g. images/ + masks/ folders, a VOC or ADE20K tree, "
        f"a COCO JSON or a PointPrompt release (known layouts: {', '.join(sorted(layouts()))})"
    )


def open_dataset(path: str | os.PathLike, layout: str | None = None, on_error: OnError = "skip") -> LazyDataset:
    """Open the dataset at ``path`` (a folder, or a COCO ``.json`` file).

    Args:
        path: dataset root.
        layout: a layout name (see :func:`layouts`); detected when ``None``.
        on_error: ``"skip"`` bad files with a warning, or ``"raise"`` a
            :class:`~segprompt.errors.DatasetError` on the first one.

    A ``prompts.json`` at the root (see :mod:`segprompt.datasets.human_prompts`)
    adds its human prompts to the samples whatever the layout.
    """
    from .human_prompts import PROMPTS_FILE, read_prompts_json

    root = Path(path)
    if on_error not in ON_ERROR_CHOICES:
        raise DatasetError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
    if not root.exists():
        raise DatasetError(f"{root}: no such dataset folder")
    known = layouts()
    if layout is None:
        layout = detect_layout(root) if root.is_dir() else "coco"
    if layout not in known:
        raise DatasetError(f"unknown layout {layout!r}; known: {', '.join(sorted(known))}")
    dataset = known[layout]().open(root, on_error).located(root)
    prompts_path = (root if root.is_dir() else root.parent) / PROMPTS_FILE
    if prompts_path.is_file():
        dataset = dataset.with_prompts(read_prompts_json(prompts_path))
    return dataset
