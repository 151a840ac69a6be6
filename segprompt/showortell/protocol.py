"""The Show-or-Tell protocol: class space, ground truth, text and visual prompts.

Label space of one evaluation: index 0 is *background* (pixels no class
claims), class ``i`` of :attr:`ClassSpace.names` is ``i + 1``. Every dataset
kind is mapped into it by :func:`semantic_target`:

* binary / instance samples: the object pixels get their class, the rest is
  background;
* semantic samples: each dataset class index is mapped by name; classes named
  as background (``"background"``, ``"_background_"``) become 0 and the
  sample's ``ignore`` pixels (VOC 255, CamVid "Unlabelled", GrabCut's band)
  are left out of scoring.

Background handling follows the paper: datasets whose background is a real
class (PASCAL VOC, Cityscapes: :attr:`Layout.background_is_class
<segprompt.datasets.registry.Layout.background_is_class>`) *keep* it in the
mIoU; for the others it is *ignored* in the mean, though a class predicted on
background pixels still counts as a false positive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from ..datasets.base import Dataset, Sample
from ..datasets.lazy import BadFileError
from ..datasets.registry import Layout, layouts
from ..errors import DatasetError
from ..prompts import Text, VisualReference

BACKGROUND_NAMES = frozenset({"background", "_background_", "bg"})
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

BackgroundMode = Literal["keep", "ignore"]


def layout_of(dataset: Dataset) -> type[Layout]:
    """The layout class ``dataset`` was read with (the :class:`Layout` defaults for an unregistered one)."""
    return layouts().get(dataset.layout, Layout)


@dataclass(frozen=True)
class ClassSpace:
    """The classes one evaluation prompts for.

    Attributes:
        names: class names, in label order ``1..len(names)``.
        background: ``"keep"`` to average background IoU into the mIoU,
            ``"ignore"`` to leave it out of the mean.
    """

    names: tuple[str, ...]
    background: BackgroundMode = "ignore"

    @property
    def n_labels(self) -> int:
        """Size of the label space, background included."""
        return len(self.names) + 1

    def label_of(self, class_name: str) -> int:
        try:
            return self.names.index(class_name) + 1
        except ValueError:
            raise DatasetError(f"class {class_name!r} is not in the evaluated classes {list(self.names)}") from None

    @property
    def skipped_in_mean(self) -> tuple[int, ...]:
        return () if self.background == "keep" else (0,)

    @classmethod
    def for_dataset(cls, dataset: Dataset, background: BackgroundMode | Literal["auto"] = "auto") -> "ClassSpace":
        names = tuple(n for n in dataset.class_names if n.lower() not in BACKGROUND_NAMES)
        if background == "auto":
            background = "keep" if layout_of(dataset).background_is_class else "ignore"
        return cls(names, background)


def semantic_target(sample: Sample, space: ClassSpace) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of ``sample`` in the evaluation's label space.

    Returns:
        labels: ``(H, W)`` int64, 0 = background, ``i + 1`` = ``space.names[i]``.
        ignore: ``(H, W)`` bool, pixels left out of scoring.
    """
    mask = sample.mask
    ignore = np.zeros(mask.shape, bool) if sample.ignore is None else np.asarray(sample.ignore, bool).copy()
    labels = np.zeros(mask.shape, np.int64)
    if sample.mask_kind == "semantic":
        for index, name in enumerate(sample.class_names):
            if name.lower() in BACKGROUND_NAMES:
                continue
            hit = mask == index
            if hit.any():
                if name not in space.names:
                    ignore |= hit  # a class outside the evaluated ones is not scored
                else:
                    labels[hit] = space.label_of(name)
    else:
        for obj in sample.objects():
            labels[obj.mask] = space.label_of(obj.class_name)
    return labels, ignore


def class_mask(sample: Sample, class_name: str) -> np.ndarray:
    """``(H, W)`` bool pixels of ``class_name`` in ``sample`` (empty when absent)."""
    out = np.zeros(sample.mask.shape, bool)
    for obj in sample.objects():
        if obj.class_name == class_name:
            out |= obj.mask
    if sample.ignore is not None:
        out &= ~sample.ignore
    return out


@dataclass(frozen=True)
class DrawnReference:
    """A visual reference drawn for a class: where it came from, and the prompt."""

    class_name: str
    sample_id: str
    area_fraction: float
    reference: VisualReference


class ReferencePool:
    """Where each class can be shown: training samples and the class's area in them.

    Built with one pass over the training set (each sample read once), then
    :meth:`draw` picks references for any class and seed without rereading.
    """

    def __init__(self, train: Dataset, class_names: Sequence[str]) -> None:
        self.train = train
        self._areas: dict[str, list[tuple[str, int, float]]] = {name: [] for name in class_names}
        for index in range(len(train)):
            try:
                sample = train[index]
            except BadFileError:
                continue  # recorded in the dataset's problems
            for name in self._areas:
                fraction = float(class_mask(sample, name).mean())
                if fraction > 0:
                    self._areas[name].append((sample.id, index, fraction))

    def draw(self, class_name: str, n_prompts: int, seed: int, min_area_fraction: float = 0.0) -> list[DrawnReference]:
        """Draw ``n_prompts`` visual references of ``class_name``.

        Candidates are the training samples where the class covers more than
        ``min_area_fraction`` of the image. They are shuffled with
        ``numpy.random.default_rng(seed)`` over their sorted ids, so the draw
        depends only on the data and the seed; distinct images are used while
        there are enough, then the draw repeats images (in the same order).

        Raises:
            DatasetError: no training image holds the class above the minimum area.
        """
        if n_prompts < 1:
            raise DatasetError(f"n_prompts must be >= 1, got {n_prompts}")
        if class_name not in self._areas:
            raise DatasetError(f"class {class_name!r} is not in the reference pool {list(self._areas)}")
        candidates = sorted(c for c in self._areas[class_name] if c[2] > min_area_fraction)
        if not candidates:
            raise DatasetError(
                f"no training image of {self.train.name!r} shows class {class_name!r} over more than "
                f"{min_area_fraction:.0%} of the image; lower the minimum reference area"
            )
        order = np.random.default_rng(seed).permutation(len(candidates))
        drawn = []
        for i in range(n_prompts):
            sample_id, index, fraction = candidates[order[i % len(order)]]
            sample = self.train[index]
            reference = VisualReference(sample.image, class_mask(sample, class_name))
            drawn.append(DrawnReference(class_name, sample_id, fraction, reference))
        return drawn


def text_prompts(class_name: str, templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[Text]:
    """One :class:`Text` per template, ``{}`` replaced by the class name (underscores become spaces)."""
    readable = class_name.replace("_", " ")
    prompts = []
    for template in templates:
        if "{}" not in template:
            raise DatasetError(f"text template {template!r} has no '{{}}' placeholder for the class name")
        prompts.append(Text(template.format(readable)))
    return prompts
