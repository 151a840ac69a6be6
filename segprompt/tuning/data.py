"""Image / text / binary-mask pairs for prompt tuning, read through :mod:`segprompt.datasets`.

Any dataset :func:`segprompt.datasets.open_dataset` reads becomes a list of
pairs (see ``data_cards/tuning_format.md``):

* binary and instance samples give one pair: the union of all objects
  (an empty mask for images without the object, e.g. BUSI's normal cases);
* semantic samples give one pair per class present, with that class's mask.

A pair's id is the sample id, or ``"<sample id>#<class>"`` for semantic
samples (the ``object_id`` of :meth:`Sample.objects`). Its text comes from the
optional JSON overlay (``{"default": ..., "texts": {pair id: phrase}}``), else
from the dataset: the sample's own text prompt where the reader records some
(``Sample.meta["text_prompts"]``, the TuneVLSeg ``anns/*.json`` files; which one
is ``prompt_key``), else the class name, prefixed by the diagnosis where the
reader records a benign / malignant one (BUSI: ``"benign breast lesion"``).

Images are resized to ``size x size`` (bilinear, or bicubic as TuneVLSeg
does) and masks with nearest neighbour. Augmentations (training only, see
:data:`AUGMENTATIONS`): ``"ours"``, always a small random affine (shift up to
2 % of the side, rotation up to 5 degrees, reflected border, identical for
image and mask) and brightness / contrast jitter of up to 0.1 around the
image mean; ``"paper"``, the reference's albumentations pipeline after its
resize: with probability 0.2 an affine (scale 0.98-1.02 per axis, shift up to
2 %, rotation up to 5 degrees, bicubic, replicated border), and with
probability 0.2 ``clip(image * (1 + c) + 255 * b)``, ``b, c`` uniform in
±0.1 (``RandomBrightnessContrast``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import cv2
import numpy as np
import torch

from ..datasets.base import Dataset, Sample
from ..datasets.splits import train_groups
from ..errors import DatasetError

#: Diagnoses that name the object more precisely (BUSI's ``meta["diagnosis"]``).
DIAGNOSIS_PREFIXES = ("benign", "malignant")
#: Which of a sample's own text prompts (``meta["text_prompts"]``) to use: TuneVLSeg's ``prompt_index=1``.
DEFAULT_PROMPT_KEY = "p1"
#: ``prompt_key`` drawing among every prompt but ``p0`` (TuneVLSeg's ``prompt_index=-1``).
RANDOM_PROMPT_KEY = "random"
#: Image interpolation of the square resize, by name.
INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}
MAX_SHIFT = 0.02
MAX_ROTATION_DEG = 5.0
MAX_JITTER = 0.1
#: The reference's albumentations settings (configs/experiment/coop/clipseg.yaml).
PAPER_AFFINE_P = 0.2
PAPER_SCALE = (0.98, 1.02)
PAPER_JITTER_P = 0.2


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

    def lookup(self, pair_id: str) -> str | None:
        """The overlay's phrase for ``pair_id`` (its own, else the default), or ``None``."""
        if self.texts and pair_id in self.texts:
            return self.texts[pair_id]
        return self.default


def default_text(sample: Sample, class_name: str) -> str:
    """The dataset's own phrase for ``class_name`` in ``sample`` (see module docstring)."""
    diagnosis = sample.meta.get("diagnosis")
    if isinstance(diagnosis, str) and diagnosis.lower() in DIAGNOSIS_PREFIXES:
        return f"{diagnosis.lower()} {class_name}"
    return class_name


def sample_phrases(sample: Sample, prompt_key: str = DEFAULT_PROMPT_KEY) -> tuple[str, ...]:
    """The phrases of ``sample``'s own text prompt ``prompt_key`` (empty when the reader records none).

    ``meta["text_prompts"]`` maps keys ``p0``, ``p1``, ... to a phrase or a list
    of phrases; ``prompt_key="random"`` gives every phrase but ``p0``'s.

    Raises:
        DatasetError: the sample has text prompts but not ``prompt_key``.
    """
    prompts = sample.meta.get("text_prompts")
    if not prompts:
        return ()
    if prompt_key == RANDOM_PROMPT_KEY:
        keys = [key for key in sorted(prompts, key=_prompt_order) if key != "p0"]
    elif prompt_key in prompts:
        keys = [prompt_key]
    else:
        known = ", ".join(sorted(prompts, key=_prompt_order))
        raise DatasetError(f"{sample.source or sample.id}: no text prompt {prompt_key!r} (has {known})")
    phrases = [phrase for key in keys for phrase in ([prompts[key]] if isinstance(prompts[key], str) else prompts[key])]
    if not phrases:
        raise DatasetError(f"{sample.source or sample.id}: text prompt {prompt_key!r} has no phrase")
    return tuple(phrases)


def _prompt_order(key: str) -> tuple[float, str]:
    """``p2`` before ``p10``; keys of another form last."""
    digits = key[1:]
    return (int(digits), key) if digits.isdigit() else (math.inf, key)


def with_full_stop(phrase: str) -> str:
    """``phrase`` ending with ``"."`` (TuneVLSeg's ``insert_stop_at_last``)."""
    return phrase if phrase.endswith(".") else phrase + "."


@dataclass
class Pair:
    """One training pair, resized.

    Attributes:
        id: pair id (sample id, or ``"<sample id>#<class>"``).
        text: the text prompt (the one evaluation uses).
        image: ``(size, size, 3)`` uint8 RGB.
        mask: ``(size, size)`` bool target.
        valid: ``(size, size)`` bool, False on pixels to ignore.
        alternatives: further phrases for the same target; each training draw
            picks uniformly among ``text`` and these.
    """

    id: str
    text: str
    image: np.ndarray
    mask: np.ndarray
    valid: np.ndarray
    alternatives: tuple[str, ...] = ()


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


def build_pairs(
    dataset: Dataset,
    size: int,
    overlay: TextOverlay | None = None,
    *,
    interpolation: str = "linear",
    full_stop: bool = False,
    prompt_key: str = DEFAULT_PROMPT_KEY,
) -> list[Pair]:
    """Read every sample of ``dataset`` (bad files skipped per its ``on_error``) into resized pairs.

    Args:
        interpolation: image resize, a key of :data:`INTERPOLATIONS` (masks: nearest neighbour).
        full_stop: end every phrase with ``"."``.
        prompt_key: which of the samples' own text prompts to use (see :func:`sample_phrases`).
    """
    if interpolation not in INTERPOLATIONS:
        raise DatasetError(f"interpolation {interpolation!r} must be one of {', '.join(INTERPOLATIONS)}")
    overlay = overlay or TextOverlay()
    pairs = []
    for sample in dataset:
        image = _resize(sample.image, size, INTERPOLATIONS[interpolation])
        ignore = np.zeros(sample.mask.shape, bool) if sample.ignore is None else sample.ignore
        valid = _resize((~ignore).astype(np.uint8), size, cv2.INTER_NEAREST) > 0
        own = sample_phrases(sample, prompt_key)
        for pair_id, class_name, mask in _targets(sample):
            chosen = overlay.lookup(pair_id)
            phrases = (chosen,) if chosen is not None else own or (default_text(sample, class_name),)
            if full_stop:
                phrases = tuple(with_full_stop(phrase) for phrase in phrases)
            target = _resize(mask.astype(np.uint8), size, cv2.INTER_NEAREST) > 0
            pairs.append(Pair(pair_id, phrases[0], image, target, valid, phrases[1:]))
    if not pairs:
        raise DatasetError(f"dataset {getattr(dataset, 'name', '?')}: no readable samples to tune on")
    return pairs


def augment(pair: Pair, rng: np.random.Generator) -> Pair:
    """Our augmentation: a randomly shifted / rotated / jittered copy of ``pair`` (module docstring gives the ranges)."""
    size = pair.image.shape[0]
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    shift = rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size
    matrix = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, 1.0)
    matrix[:, 2] += shift
    brightness = rng.uniform(-MAX_JITTER, MAX_JITTER)
    contrast = 1.0 + rng.uniform(-MAX_JITTER, MAX_JITTER)
    moved = _warp(pair, matrix, cv2.INTER_LINEAR, cv2.BORDER_REFLECT_101)
    image = moved.image.astype(np.float32) / 255.0
    image = np.clip((image - image.mean()) * contrast + image.mean() + brightness, 0.0, 1.0)
    return replace(moved, image=np.rint(image * 255.0).astype(np.uint8))


def paper_affine_matrix(size: int, scale: tuple[float, float], shift: tuple[float, float], angle: float) -> np.ndarray:
    """``(2, 3)`` matrix of albumentations' ``Affine`` on a ``size`` square: scale ``(sx, sy)`` and rotate
    ``angle`` degrees about the centre, then shift by ``shift`` pixels ``(dx, dy)``."""
    centre = (size - 1) / 2
    rotation = cv2.getRotationMatrix2D((0.0, 0.0), angle, 1.0)[:, :2]
    linear = rotation @ np.diag(scale)
    offset = np.array([centre, centre]) - linear @ np.array([centre, centre]) + np.asarray(shift)
    return np.hstack([linear, offset[:, None]])


def brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """albumentations' ``RandomBrightnessContrast`` on uint8 (``brightness_by_max``): ``clip(image * alpha + 255 * beta)``,
    truncated to uint8 as its lookup table is."""
    return np.clip(image.astype(np.float32) * np.float32(alpha) + np.float32(255.0 * beta), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class PaperDraw:
    """One draw of the paper's augmentation: the affine ``(2, 3)`` matrix and the ``(alpha, beta)`` jitter, each
    ``None`` when not applied."""

    matrix: np.ndarray | None
    jitter: tuple[float, float] | None


def draw_paper_augmentation(rng: np.random.Generator, size: int) -> PaperDraw:
    """Draw whether and how the paper's affine (p 0.2) and brightness / contrast jitter (p 0.2) apply."""
    matrix = jitter = None
    if rng.random() < PAPER_AFFINE_P:
        scale = tuple(rng.uniform(*PAPER_SCALE, size=2))
        shift = tuple(rng.uniform(-MAX_SHIFT, MAX_SHIFT, size=2) * size)
        matrix = paper_affine_matrix(size, scale, shift, rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    if rng.random() < PAPER_JITTER_P:
        jitter = (1.0 + rng.uniform(-MAX_JITTER, MAX_JITTER), rng.uniform(-MAX_JITTER, MAX_JITTER))
    return PaperDraw(matrix, jitter)


def augment_paper(pair: Pair, rng: np.random.Generator) -> Pair:
    """The reference's training augmentation after its resize (module docstring gives the ranges and probabilities)."""
    draw = draw_paper_augmentation(rng, pair.image.shape[0])
    if draw.matrix is not None:
        pair = _warp(pair, draw.matrix, cv2.INTER_CUBIC, cv2.BORDER_REPLICATE)
    if draw.jitter is not None:
        pair = replace(pair, image=brightness_contrast(pair.image, *draw.jitter))
    return pair


def _warp(pair: Pair, matrix: np.ndarray, interpolation: int, border: int) -> Pair:
    """``pair`` with image (``interpolation``), mask and valid map (nearest) warped by the same ``(2, 3)`` matrix."""
    size = pair.image.shape[0]

    def warp(data: np.ndarray, flags: int) -> np.ndarray:
        return cv2.warpAffine(data, matrix, (size, size), flags=flags, borderMode=border)

    return replace(
        pair,
        image=warp(pair.image, interpolation),
        mask=warp(pair.mask.astype(np.uint8), cv2.INTER_NEAREST) > 0,
        valid=warp(pair.valid.astype(np.uint8), cv2.INTER_NEAREST) > 0,
    )


#: Training augmentations by name: ``(pair, rng) -> pair``.
AUGMENTATIONS: dict[str, Callable[[Pair, np.random.Generator], Pair]] = {"ours": augment, "paper": augment_paper}


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


def batches(
    pairs: Sequence[Pair], batch_size: int, rng: np.random.Generator | None = None, augmentation: str | None = "ours"
) -> Iterator[Batch]:
    """Batches in order; with ``rng``, shuffled, each pair's phrase drawn among its alternatives and,
    unless ``augmentation`` is ``None``, augmented (a key of :data:`AUGMENTATIONS`)."""
    order = np.arange(len(pairs)) if rng is None else rng.permutation(len(pairs))
    transform = None if rng is None or augmentation is None else AUGMENTATIONS[augmentation]
    for start in range(0, len(order), batch_size):
        chosen = [pairs[i] for i in order[start : start + batch_size]]
        if rng is not None:
            chosen = [_draw_text(pair, rng) for pair in chosen]
        if transform is not None:
            chosen = [transform(pair, rng) for pair in chosen]
        yield Batch(
            texts=[p.text for p in chosen],
            images=[p.image for p in chosen],
            masks=torch.from_numpy(np.stack([p.mask for p in chosen]).astype(np.float32)),
            valid=torch.from_numpy(np.stack([p.valid for p in chosen]).astype(np.float32)),
        )


def _draw_text(pair: Pair, rng: np.random.Generator) -> Pair:
    if not pair.alternatives:
        return pair
    options = (pair.text, *pair.alternatives)
    return replace(pair, text=options[int(rng.integers(len(options)))])


def num_batches(pairs: Sequence[Any], batch_size: int) -> int:
    return math.ceil(len(pairs) / batch_size)


@dataclass
class Parts:
    """The data of one tuning run: what it trains on, selects the checkpoint on, and reports.

    Attributes:
        train, val: the training and validation datasets.
        test: the held-out test dataset, or ``None`` (then only validation figures exist).
        source: how the parts were made (``"split files"``, ``"seeded 80/20"``, ``"seeded 80/10/10"``).
    """

    train: Dataset
    val: Dataset
    test: Dataset | None
    source: str


def tuning_parts(
    dataset: Any, *, with_test: bool | None = None, val_split: str | None = None, test_split: str | None = None, seed: int = 0
) -> Parts:
    """Train / validation / test parts of a :class:`~segprompt.datasets.LazyDataset`.

    With split files: ``train``, then ``val_split`` (default ``val``, else
    ``test`` when no test part is wanted) and ``test_split`` (default
    ``test``). Without them: the seeded 80 / 20 split of
    :meth:`LazyDataset.split`, whose held-out 20 % is halved (by split group,
    seeded) into validation and test when a test part is wanted.

    Args:
        with_test: ``True`` requires a test part, ``False`` makes none, ``None``
            takes the dataset's ``test`` split file when it has one besides the validation split.

    Raises:
        DatasetError: a named or required split is missing.
    """
    names = dataset.split_names
    if not names:
        if val_split is not None or test_split is not None:
            raise DatasetError(f"{dataset.name}: has no split files, so --val-split / --test-split cannot name one")
        held_out = dataset.split("val", seed=seed)
        if not with_test:
            return Parts(dataset.split("train", seed=seed), held_out, None, "seeded 80/20")
        entries = held_out.entries
        groups = [entry.split_group for entry in entries]
        if len(set(groups)) < 2:
            raise DatasetError(f"{dataset.name}: too few samples for separate validation and test parts")
        val_groups = train_groups(groups, 0.5, seed)
        val = held_out.subset(entry.id for entry in entries if entry.split_group in val_groups)
        test = held_out.subset(entry.id for entry in entries if entry.split_group not in val_groups)
        return Parts(dataset.split("train", seed=seed), val, test, "seeded 80/10/10")

    def named(name: str) -> Any:
        if name not in names:
            raise DatasetError(f"{dataset.name}: no split {name!r}; its split files give: {', '.join(names)}")
        return dataset.split(name)

    test_name = test_split or ("test" if "test" in names else None)
    val_name = val_split or ("val" if "val" in names or with_test or test_name is None else test_name)
    if with_test is False or test_name == val_name:
        test_name = None
    if with_test and test_name is None:
        raise DatasetError(f"{dataset.name}: a test split is needed beside '{val_name}'; its split files give: {', '.join(names)}")
    return Parts(named("train"), named(val_name), None if test_name is None else named(test_name), "split files")
