"""Records and protocol shared by every dataset reader.

Mask conventions (``Sample.mask``, always ``(H, W)``, the image's size):

* ``mask_kind == "binary"``: uint8 0/1, one object of class ``class_names[0]``;
* ``mask_kind == "instance"``: integer instance ids, 0 = background, every
  instance of class ``class_names[0]`` unless ``meta["instance_classes"]`` maps
  id -> class name;
* ``mask_kind == "semantic"``: integer class indices into ``class_names``.

``ignore`` marks pixels that no metric may count (VOC's 255, GrabCut's 128
band, CamVid's "Unlabelled").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from ..prompts import Prompt

MaskKind = Literal["binary", "instance", "semantic"]


@dataclass(frozen=True)
class ObjectMask:
    """One object of a sample: what an interactive benchmark prompts for."""

    object_id: str
    class_name: str
    mask: np.ndarray  # (H, W) bool


@dataclass
class Sample:
    """One image with its annotation.

    Attributes:
        id: unique within the dataset (usually the file stem).
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` integer annotation, read according to ``mask_kind``.
        mask_kind: ``"binary"``, ``"instance"`` or ``"semantic"``.
        class_names: class names; for ``semantic`` indexed by mask value.
        ignore: ``(H, W)`` bool pixels to leave out of every metric, or ``None``.
        prompts: human prompts, ``{prompt_set_name: [Prompt per timestep]}``.
        source: path of the image file (and mask, ``"image|mask"``).
        meta: reader-specific extras (diagnosis, original size, domain, ...).
    """

    id: str
    image: np.ndarray
    mask: np.ndarray
    mask_kind: MaskKind
    class_names: tuple[str, ...]
    ignore: np.ndarray | None = None
    prompts: dict[str, list[Prompt]] = field(default_factory=dict)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def objects(self) -> list[ObjectMask]:
        """Split the annotation into binary objects.

        binary -> the one object (none when the mask is empty); instance -> one
        per instance id; semantic -> one per class present (class 0 included
        only when it is not a background/unlabelled class, see
        ``meta["background_index"]``).
        """
        mask = self.mask
        if self.mask_kind == "binary":
            return [ObjectMask(self.id, self.class_names[0], mask > 0)] if mask.any() else []
        if self.mask_kind == "instance":
            names = self.meta.get("instance_classes", {})
            return [
                ObjectMask(f"{self.id}#{int(i)}", names.get(int(i), self.class_names[0]), mask == i)
                for i in np.unique(mask)
                if i != 0
            ]
        skip = {self.meta.get("background_index")} - {None}
        present = [int(c) for c in np.unique(mask[~self.ignore] if self.ignore is not None else mask)]
        return [
            ObjectMask(f"{self.id}#{self.class_names[c]}", self.class_names[c], mask == c)
            for c in present
            if c not in skip and 0 <= c < len(self.class_names)
        ]


@dataclass(frozen=True)
class Problem:
    """A bad file found while reading: reported, not fatal (unless asked)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@runtime_checkable
class Dataset(Protocol):
    """What every reader returns. Samples are read lazily, on access."""

    name: str
    layout: str
    class_names: tuple[str, ...]
    root: Path | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...

    def __iter__(self) -> Iterator[Sample]: ...

    @property
    def ids(self) -> Sequence[str]: ...

    @property
    def problems(self) -> list[Problem]: ...

    def files(self, index: int) -> tuple[Path, ...]: ...

    def shared_files(self) -> tuple[Path, ...]: ...

    def split(self, name: str) -> "Dataset": ...
