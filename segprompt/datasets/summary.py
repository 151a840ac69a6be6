"""Statistics and contact sheets of a dataset (what ``segprompt datasets inspect`` prints).

Statistics are over the samples actually read (the first ``max_samples``):

* foreground fraction: pixels inside any object / pixels not ignored (1 for
  label maps where every labelled pixel belongs to a class, e.g. CamVid);
* ignored fraction: pixels the sample's ``ignore`` mask leaves out / all pixels;
* objects per image: ``len(Sample.objects())``;
* object size: pixels per object;
* classes: how many objects of each class.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from ..progress import ProgressCallback, no_progress
from ..io import overlay, write_image
from .base import Problem, Sample
from .lazy import BadFileError, LazyDataset

@dataclass
class DatasetSummary:
    """What was found in (the first ``samples_read`` samples of) a dataset."""

    name: str
    layout: str
    num_samples: int
    class_names: tuple[str, ...]
    samples_read: int = 0
    object_counts: list[int] = field(default_factory=list)
    object_sizes: list[int] = field(default_factory=list)
    foreground_fractions: list[float] = field(default_factory=list)
    ignored_fractions: list[float] = field(default_factory=list)
    image_sizes: Counter = field(default_factory=Counter)
    class_counts: Counter = field(default_factory=Counter)
    prompt_sets: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    @property
    def num_objects(self) -> int:
        return sum(self.object_counts)

    def add(self, sample: Sample) -> None:
        objects = sample.objects()
        union = np.zeros(sample.mask.shape, bool)
        for obj in objects:
            union |= obj.mask
            self.object_sizes.append(int(obj.mask.sum()))
            self.class_counts[obj.class_name] += 1
        valid = ~sample.ignore if sample.ignore is not None else np.ones(union.shape, bool)
        self.foreground_fractions.append(float((union & valid).sum() / max(int(valid.sum()), 1)))
        self.ignored_fractions.append(1.0 - float(valid.mean()))
        self.object_counts.append(len(objects))
        self.image_sizes[f"{sample.image.shape[1]}x{sample.image.shape[0]}"] += 1
        self.prompt_sets.update(list(sample.prompts))
        self.samples_read += 1

    def format(self) -> str:
        """A human-readable multi-line report."""
        lines = [
            f"dataset : {self.name}",
            f"layout  : {self.layout}",
            f"samples : {self.num_samples} (read {self.samples_read})",
            f"objects : {self.num_objects} in the samples read",
            f"classes : {len(self.class_names)}: {_shorten(', '.join(self.class_names), 300)}",
        ]
        if self.samples_read:
            lines += [
                f"objects per image : {_stats(self.object_counts)}",
                f"object size (px)  : {_stats(self.object_sizes)}",
                f"foreground frac.  : {_stats(self.foreground_fractions, '.3f')} (of the pixels not ignored)",
                f"ignored pixels    : {_ignored(self.ignored_fractions)}",
                f"image sizes (WxH) : {_shorten(', '.join(f'{k} x{v}' for k, v in self.image_sizes.most_common()), 200)}",
                f"objects by class  : {_shorten(', '.join(f'{k} {v}' for k, v in self.class_counts.most_common()), 300)}",
            ]
        if self.prompt_sets:
            lines.append("human prompt sets : " + ", ".join(f"{k} ({v} samples)" for k, v in sorted(self.prompt_sets.items())))
        lines.append(f"problems : {len(self.problems)}")
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


def _count(value: float) -> str:
    """A count or pixel size: whole numbers as such, others to one decimal (``9.6``, never ``9.62963``)."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _stats(values: Sequence[float], fmt: str | None = None) -> str:
    """``min .. median .. mean .. max``, in ``fmt`` or, without it, as counts (:func:`_count`)."""
    if not values:
        return "none"
    array = np.asarray(values, np.float64)
    show = _count if fmt is None else (lambda value: f"{value:{fmt}}")
    return f"min {show(array.min())}  median {show(np.median(array))}  mean {show(array.mean())}  max {show(array.max())}"


def _ignored(fractions: Sequence[float]) -> str:
    """The share of ignored pixels over the samples read, and the largest per image."""
    array = np.asarray(fractions, np.float64)
    if not array.any():
        return "none"
    return f"{100 * array.mean():.1f} % (max {100 * array.max():.1f} % in one image, {np.count_nonzero(array)} images)"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize(dataset: LazyDataset, max_samples: int | None = None, progress: ProgressCallback = no_progress) -> DatasetSummary:
    """Read up to ``max_samples`` samples (all when ``None``) and collect statistics and problems."""
    summary = DatasetSummary(dataset.name, dataset.layout, len(dataset), dataset.class_names)
    total = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    for index in range(total):
        try:
            summary.add(dataset[index])
        except BadFileError:
            if dataset.on_error == "raise":
                raise
        progress(index + 1, total, dataset.entries[index].id)
    summary.problems = dataset.problems
    return summary


def sample_thumbnail(sample: Sample, side: int = 192) -> np.ndarray:
    """``(side, side, 3)`` uint8: the image with its objects overlaid (one colour each), the
    last timestep of the first human prompt set as dots (green include, red exclude), the id below."""
    labels = np.zeros(sample.mask.shape, np.int32)
    for k, obj in enumerate(sample.objects(), start=1):
        labels[obj.mask] = k
    steps = sample.prompts[sorted(sample.prompts)[0]] if sample.prompts else None
    picture = overlay(sample.image, labels, prompt=steps[-1] if steps else None)
    height, width = picture.shape[:2]
    scale = side / max(height, width)
    picture = cv2.resize(picture, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)
    tile = np.zeros((side + 14, side, 3), np.uint8)
    tile[: picture.shape[0], : picture.shape[1]] = picture
    cv2.putText(tile, _shorten(sample.id, side // 7), (2, side + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(samples: Sequence[Sample], columns: int = 6, side: int = 192) -> np.ndarray:
    """A grid of :func:`sample_thumbnail` tiles, ``(rows * (side + 14), columns * side, 3)`` uint8."""
    if not samples:
        raise ValueError("contact_sheet: no samples")
    tiles = [sample_thumbnail(sample, side) for sample in samples]
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    tile_h, tile_w = tiles[0].shape[:2]
    sheet = np.zeros((rows * tile_h, columns * tile_w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * tile_h : (r + 1) * tile_h, c * tile_w : (c + 1) * tile_w] = tile
    return sheet


def write_contact_sheet(path: str | os.PathLike, dataset: LazyDataset, max_samples: int = 24, columns: int = 6) -> int:
    """Write a contact sheet of the first ``max_samples`` readable samples atomically; return how many it shows."""
    samples = []
    for index in range(len(dataset)):
        if len(samples) >= max_samples:
            break
        try:
            samples.append(dataset[index])
        except BadFileError:
            if dataset.on_error == "raise":
                raise
    if not samples:
        raise BadFileError(dataset.name, "no readable sample to show in a contact sheet")
    write_image(path, contact_sheet(samples, columns))
    return len(samples)
