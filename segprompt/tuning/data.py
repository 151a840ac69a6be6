"""Image / text / binary-mask pairs for prompt tuning, read through :mod:`segprompt.datasets`.

Any dataset :func:`segprompt.datasets.open_dataset` reads becomes a list of
pairs (see ``data_cards/tuning_format.md``):

* binary and instance samples give one pair: the union of all objects
  (an empty mask for images without the object, e.g. BUSI's normal cases);
* semantic samples give one pair per class present, with that class's mask.

A pair's id is the sample id, or ``"<sample id>#<class>"`` for semantic
samples (the ``object_id`` of :meth:`Sample.objects`). Its text comes from the
optional JSON overlay (``{"default": ..., "texts": {pair id: phrase}}``), else
from the dataset: the class name, prefixed by the diagnosis where the reader
records a benign / malignant one (BUSI: ``"benign breast lesion"``).

Images are resized to ``size x size`` (bilinear) and masks with nearest
neighbour; augmentation (training only) is a small random affine (shift up to
2 % of the side, rotation up to 5 degrees, identical for image and mask) and
brightness / contrast jitter of up to 0.1.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch

from ..datasets.base import Dataset, Sample
from ..errors import DatasetError

#: Diagnoses that name the object more precisely (BUSI's ``meta["diagnosis"]``).
DIAGNOSIS_PREFIXES = ("benign", "malignant")
MAX_SHIFT = 0.02
MAX_ROTATION_DEG = 5.0
MAX_JITTER = 0.1


@dataclass(frozen=True)
class TextOverlay:
    """Text prompts given by the user: a default phrase and phrases per pair id."""

    default: str | None = None
    texts: Mapping[str, str] | None = None

    @classmethod
    def read(cls, path: str | Path) -> "TextOverlay":
        """Read the JSON overlay ``{"default": str, "texts": {id: str}}`` (both keys optional).

        Raises:
            DatasetError: unreadable JSON or a field of the wrong type, naming the file and field.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{path}: cannot read the text-prompt JSON ({exc})") from exc
        if not isinstance(data, dict) or set(data) - {"default", "texts"}:
            raise DatasetError(f"{path}: expected an object with keys 'default' and/or 'texts'")
        default = data.get("default")
        texts = data.get("texts", {})
        if default is not None and (not isinstance(default, str) or not default.strip()):
            raise DatasetError(f"{path}: 'default' must be a non-empty string, got {default!r}")
        if not isinstance(texts, dict):
            raise DatasetError(f"{path}: 'texts' must map pair ids to phrases")
        for key, value in texts.items():
            if not isinstance(value, str) or not value.strip():
                raise DatasetError(f"{path}: texts[{key!r}] must be a non-empty string, got {value!r}")
        return cls(default, dict(texts))

    def text_for(self, pair_id: str, fallback: str) -> str:
        if self.texts and pair_id in self.texts:
            return self.texts[pair_id]
        return self.default if self.default is not None else fallback


def default_text(sample: Sample, class_name: str) -> str:
    """The dataset's own phrase for ``class_name`` in ``sample`` (see module docstring)."""
    diagnosis = sample.meta.get("diagnosis")
    if isinstance(diagnosis, str) and diagnosis.lower() in DIAGNOSIS_PREFIXES:
        return f"{diagnosis.lower()} {class_name}"
    return class_name


@dataclass
class Pair:
    """One training pair, resized.

    Attributes:
        id: pair id (sample id, or ``"<sample id>#<class>"``).
        text: the text prompt.
        image: ``(size, size, 3)`` uint8 RGB.
        mask: ``(size, size)`` bool target.
        valid: ``(size, size)`` bool, False on pixels to ignore.
    """

    id: str
    text: str
    image: np.ndarray
    mask: np.ndarray
    valid: np.ndarray


def _targets(sample: Sample) -> list[tuple[str, str, np.ndarray]]:
    """``(pair id, class name, (H, W) bool mask)`` for each pair of ``sample``."""
    if sample.mask_kind == "semantic":
        return [(obj.object_id, obj.class_name, obj.mask) for obj in sample.objects()]
    mask = sample.mask > 0
    if sample.ignore is not None:
        mask &= ~sample.ignore
    return [(sample.id, sample.class_names[0], mask)]


def _resize(data: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    return cv2.resize(data, (size, size), interpolation=interpolation)


def build_pairs(dataset: Dataset, size: int, overlay: TextOverlay | None = None) -> list[Pair]:
    """Read every sample of ``dataset`` (bad files skipped per its ``on_error``) into resized pairs."""
    overlay = overlay or TextOverlay()
    pairs = []
    for sample in dataset:
        image = _resize(sample.image, size, cv2.INTER_LINEAR)
        ignore = np.zeros(sample.mask.shape, bool) if sample.ignore is None else sample.ignore
        valid = _resize((~ignore).astype(np.uint8), size, cv2.INTER_NEAREST) > 0
        for pair_id, class_name, mask in _targets(sample):
            text = overlay.text_for(pair_id, default_text(sample, class_name))
            pairs.append(Pair(pair_id, text, image, _resize(mask.astype(np.uint8), size, cv2.INTER_NEAREST) > 0, valid))
    if not pairs:
        raise DatasetError(f"dataset {getattr(dataset, 'name', '?')}: no readable samples to tune on")
    return pairs


def augment(pair: Pair, rng: np.random.Generator) -> Pair:
    """A randomly shifted / rotated / jittered copy of ``pair`` (module docstring gives the ranges)."""
    size = pair.image.shape[0]
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
    matrix[:, 2] += shift

    def warp(data: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.warpAffine(data, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REFLECT_101)

    brightness = rng.uniform(-MAX_JITTER, MAX_JITTER)
    contrast = 1.0 + rng.uniform(-MAX_JITTER, MAX_JITTER)
    image = warp(pair.image, cv2.INTER_LINEAR).astype(np.float32) / 255.0
    image = np.clip((image - image.mean()) * contrast + image.mean() + brightness, 0.0, 1.0)
    return Pair(
        pair.id,
        pair.text,
        np.rint(image * 255.0).astype(np.uint8),
        warp(pair.mask.astype(np.uint8), cv2.INTER_NEAREST) > 0,
        warp(pair.valid.astype(np.uint8), cv2.INTER_NEAREST) > 0,
    )


def pixel_values(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(B, 3, S, S)`` float32 from ``(S, S, 3)`` uint8 RGB images, normalised ``(x / 255 - mean) / std``."""
    batch = np.stack(images).astype(np.float32) / 255.0
    batch = (batch - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))


@dataclass
class Batch:
    """A batch of pairs: ``texts`` and ``images`` (``(S, S, 3)`` uint8) per pair,
    ``masks`` and ``valid`` as ``(B, S, S)`` float32 0/1 tensors."""

    texts: list[str]
    images: list[np.ndarray]
    masks: torch.Tensor
    valid: torch.Tensor


def batches(pairs: Sequence[Pair], batch_size: int, rng: np.random.Generator | None = None) -> Iterator[Batch]:
    """Batches in order, or shuffled and augmented when ``rng`` is given."""
    order = np.arange(len(pairs)) if rng is None else rng.permutation(len(pairs))
    for start in range(0, len(order), batch_size):
        chosen = [pairs[i] if rng is None else augment(pairs[i], rng) for i in order[start : start + batch_size]]
        yield Batch(
            texts=[p.text for p in chosen],
            images=[p.image for p in chosen],
            masks=torch.from_numpy(np.stack([p.mask for p in chosen]).astype(np.float32)),
            valid=torch.from_numpy(np.stack([p.valid for p in chosen]).astype(np.float32)),
        )


def num_batches(pairs: Sequence[Any], batch_size: int) -> int:
    return math.ceil(len(pairs) / batch_size)
