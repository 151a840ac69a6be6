"""The Show-or-Tell protocol: class space, ground truth, text and visual prompts.

Label space of one evaluation: index 0 is *background* (pixels no class
claims), class ``i`` of :attr:`ClassSpace.names` is ``i + 1``. Every dataset
kind is mapped into it by :func:`semantic_target`:

* binary / instance samples: the object pixels get their class, the rest is
  background;
* semantic samples: each dataset class index is mapped by name; the class at
  the dataset's *background index* (``Sample.meta["background_index"]``,
  :attr:`Layout.background_index <segprompt.datasets.registry.Layout.background_index>`:
  VOC's ``background``, ADE20K's ``other``) becomes 0, whatever its name, and is
  never prompted as a class of its own; the sample's ``ignore`` pixels (VOC
  255, ADE20K 0, CamVid "Unlabelled", GrabCut's band) are left out of scoring,
  unless ``score_background`` asks to score background pixels the reader
  ignores (the paper's protocol does for ADE20K's "other").

Background handling follows the paper: datasets whose background is a real
class (PASCAL VOC, Cityscapes: :attr:`Layout.background_is_class
<segprompt.datasets.registry.Layout.background_is_class>`) *keep* it in the
mIoU; for the others it is *ignored* in the mean, though a class predicted on
background pixels still counts as a false positive.

Visual references are drawn by :class:`ReferencePool`: our way
(:meth:`ReferencePool.draw`, one shuffle per class and seed over the
candidates above the minimum area) or the reference code's
(:meth:`ReferencePool.draw_in_sequence`, one RNG for all classes in label
order, rejecting draws below the area after drawing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np

from ..datasets.base import Dataset, Sample
from ..datasets.lazy import BadFileError
from ..datasets.registry import Layout, layouts
from ..errors import DatasetError
from ..prompts import Text, VisualReference

DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

BackgroundMode = Literal["keep", "ignore"]


def layout_of(dataset: Dataset) -> type[Layout]:
    """The layout class ``dataset`` was read with (the :class:`Layout` defaults for an unregistered one)."""
    return layouts().get(dataset.layout, Layout)


@dataclass(frozen=True)
class ClassSpace:
    """The classes one evaluation prompts for.

    Attributes:
        names: class names, in label order ``1..len(names)`` (the dataset's
            classes less its background class).
        background: ``"keep"`` to average background IoU into the mIoU,
            ``"ignore"`` to leave it out of the mean.
        background_name: the dataset's name of its background class (at its
            background index), which the paper's protocol prompts as label 0
            where the background is a real class; ``None`` without one.
    """

    names: tuple[str, ...]
    background: BackgroundMode = "ignore"
    background_name: str | None = None

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
        layout = layout_of(dataset)
        index = layout.background_of(dataset.class_names)
        names = tuple(name for i, name in enumerate(dataset.class_names) if i != index)
        if background == "auto":
            background = "keep" if layout.background_is_class else "ignore"
        return cls(names, background, None if index is None else dataset.class_names[index])


def _background_index(sample: Sample) -> int | None:
    return sample.meta.get("background_index") if sample.mask_kind == "semantic" else None


def semantic_target(sample: Sample, space: ClassSpace, score_background: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of ``sample`` in the evaluation's label space.

    Args:
        score_background: score the pixels of the sample's background index
            as background (label 0) even where the reader marks them ignored
            (ADE20K's "other"): the paper's protocol.

    Returns:
        labels: ``(H, W)`` int64, 0 = background, ``i + 1`` = ``space.names[i]``.
        ignore: ``(H, W)`` bool, pixels left out of scoring.
    """
    mask = sample.mask
    ignore = np.zeros(mask.shape, bool) if sample.ignore is None else np.asarray(sample.ignore, bool).copy()
    labels = np.zeros(mask.shape, np.int64)
    if sample.mask_kind == "semantic":
        background = _background_index(sample)
        for index, name in enumerate(sample.class_names):
            if index == background:
                if score_background:
                    ignore &= mask != index
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
    """``(H, W)`` bool pixels of ``class_name`` in ``sample`` (empty when absent).

    The name of the sample's background class gives its background pixels
    (the paper's protocol shows PASCAL VOC's background by reference too).
    """
    background = _background_index(sample)
    if background is not None and sample.class_names[background] == class_name:
        out = sample.mask == background
    else:
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

    Without ``candidates`` it is built with one pass over the training set
    (each sample read once): a class's candidates are the training samples
    showing it, by sorted id. With ``candidates`` (a released split's
    per-class lists, in their order) nothing is read until a draw needs a
    sample's area.
    """

    def __init__(
        self, train: Dataset, class_names: Sequence[str], candidates: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.train = train
        self._position = {sample_id: index for index, sample_id in enumerate(train.ids)}
        self._fractions: dict[tuple[str, str], float] = {}
        self._read: set[str] = set()
        if candidates is not None:
            missing = [name for name in class_names if name not in candidates]
            if missing:
                raise DatasetError(f"the per-class candidate lists have no entry for class {missing[0]!r}")
            self._candidates = {name: tuple(i for i in candidates[name] if i in self._position) for name in class_names}
            return
        found: dict[str, list[str]] = {name: [] for name in class_names}
        for index in range(len(train)):
            self._read.add(train.ids[index])
            try:
                sample = train[index]
            except BadFileError:
                continue  # recorded in the dataset's problems
            for name in found:
                fraction = float(class_mask(sample, name).mean())
                if fraction > 0:
                    found[name].append(sample.id)
                    self._fractions[(name, sample.id)] = fraction
        self._candidates = {name: tuple(sorted(ids)) for name, ids in found.items()}

    def candidates(self, class_name: str) -> tuple[str, ...]:
        """Training sample ids showing ``class_name``."""
        if class_name not in self._candidates:
            raise DatasetError(f"class {class_name!r} is not in the reference pool {list(self._candidates)}")
        return self._candidates[class_name]

    def samples_read(self) -> list[str]:
        """Ids of the training samples read so far, in dataset order."""
        return [sample_id for sample_id in self.train.ids if sample_id in self._read]

    def area(self, class_name: str, sample_id: str) -> float:
        """Fraction of training sample ``sample_id`` covered by ``class_name`` (0 for an unreadable sample)."""
        key = (class_name, sample_id)
        if key not in self._fractions:
            self._read.add(sample_id)
            try:
                sample = self.train[self._position[sample_id]]
            except BadFileError:
                self._fractions[key] = 0.0  # recorded in the dataset's problems
            else:
                self._fractions[key] = float(class_mask(sample, class_name).mean())
        return self._fractions[key]

    def _drawn(self, class_name: str, sample_id: str) -> DrawnReference:
        sample = self.train[self._position[sample_id]]
        reference = VisualReference(sample.image, class_mask(sample, class_name))
        return DrawnReference(class_name, sample_id, self.area(class_name, sample_id), reference)

    def _none_shown(self, class_name: str, min_area_fraction: float) -> DatasetError:
        return DatasetError(
            f"no training image of {self.train.name!r} shows class {class_name!r} over more than "
            f"{min_area_fraction:.0%} of the image; lower the minimum reference area"
        )

    def draw(self, class_name: str, n_prompts: int, seed: int, min_area_fraction: float = 0.0) -> list[DrawnReference]:
        """Draw ``n_prompts`` visual references of ``class_name`` (our protocol).

        Candidates are the training samples where the class covers more than
        ``min_area_fraction`` of the image. They are shuffled with
        ``numpy.random.default_rng(seed)`` over their sorted ids, so the draw
        depends only on the data, the class and the seed; distinct images are
        used while there are enough, then the draw repeats images (in the same
        order).

        Raises:
            DatasetError: no training image holds the class above the minimum area.
        """
        if n_prompts < 1:
            raise DatasetError(f"n_prompts must be >= 1, got {n_prompts}")
        candidates = sorted(i for i in self.candidates(class_name) if self.area(class_name, i) > min_area_fraction)
        if not candidates:
            raise self._none_shown(class_name, min_area_fraction)
        order = np.random.default_rng(seed).permutation(len(candidates))
        return [self._drawn(class_name, candidates[order[i % len(order)]]) for i in range(n_prompts)]

    def draw_in_sequence(
        self, class_names: Sequence[str], n_prompts: int, seed: int, min_area_fraction: float = 0.0
    ) -> dict[str, list[DrawnReference]]:
        """References of every class as the Show-or-Tell reference code draws them (the paper's protocol).

        One ``numpy.random.RandomState(seed)`` (the generator ``numpy.random.seed(seed)``
        resets, local here) serves all classes in the order given: for each,
        ``choice(candidates, 1, replace=False)`` is drawn until ``n_prompts``
        images are kept; a draw is refused (and drawn again) when it repeats a
        kept image while the class has at least ``n_prompts`` candidates, or
        when the class covers no more than ``min_area_fraction`` of it. The
        candidates keep their order (a released split's lists).

        Raises:
            DatasetError: a class whose candidates cannot give ``n_prompts``
                references (where the reference code loops for ever).
        """
        if n_prompts < 1:
            raise DatasetError(f"n_prompts must be >= 1, got {n_prompts}")
        rng = np.random.RandomState(seed)
        out: dict[str, list[DrawnReference]] = {}
        for class_name in class_names:
            pool = self.candidates(class_name)
            if not pool:
                raise self._none_shown(class_name, min_area_fraction)
            distinct = len(pool) >= n_prompts
            kept: list[str] = []
            refused: set[str] = set()
            while len(kept) < n_prompts:
                pick = pool[int(rng.choice(len(pool), 1, replace=False)[0])]
                if distinct and pick in kept:
                    continue
                if self.area(class_name, pick) <= min_area_fraction:
                    refused.add(pick)
                    usable = set(pool) - refused
                    if not usable:
                        raise self._none_shown(class_name, min_area_fraction)
                    if distinct and usable <= set(kept):
                        raise DatasetError(
                            f"only {len(usable)} training images of {self.train.name!r} show class {class_name!r} "
                            f"over more than {min_area_fraction:.0%} of the image, fewer than the {n_prompts} "
                            "distinct references asked for"
                        )
                    continue
                kept.append(pick)
            out[class_name] = [self._drawn(class_name, sample_id) for sample_id in kept]
        return out


def text_prompts(class_name: str, templates: Sequence[str] = DEFAULT_TEMPLATES) -> list[Text]:
    """One :class:`Text` per template, ``{}`` replaced by the class name (underscores become spaces)."""
    readable = class_name.replace("_", " ")
    prompts = []
    for template in templates:
        if "{}" not in template:
            raise DatasetError(f"text template {template!r} has no '{{}}' placeholder for the class name")
        prompts.append(Text(template.format(readable)))
    return prompts
