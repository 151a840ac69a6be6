"""The ``Segmenter`` interface every backend implements.

A backend works in two steps, as segment-anything's ``SamPredictor`` does:

1. :meth:`Segmenter.embed` runs the expensive, prompt-independent part on an
   image once and returns an :class:`Embedding`;
2. :meth:`Segmenter.predict` answers a :class:`~segprompt.prompts.Prompt`
   from that embedding, as often as the user clicks.

Masks are always returned in original-image pixels (``H x W``); the prompt's
coordinates are original-image ``(x, y)`` pixels (see :mod:`segprompt.prompts`).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar, Iterator, Literal, Sequence

import numpy as np

from ..errors import SegpromptError, UnsupportedPromptError
from ..io import to_rgb_uint8
from ..progress import ProgressCallback, no_progress
from ..prompts import Exemplars, Prompt, VisualReference

if TYPE_CHECKING:
    import torch


@dataclass(eq=False)
class Embedding:
    """The prompt-independent result of :meth:`Segmenter.embed` for one image.

    Each backend family returns its own subclass holding what its decoder
    reads as typed fields (e.g. :class:`~segprompt.backends.sam.SamEmbedding`:
    SAM's features and frame); this base holds what every embedding has.

    Attributes:
        backend: registry name of the backend whose encoder made it.
        model_id: identifies the weights (e.g. ``"vit_b:<sha256 prefix>"``);
            an embedding is only valid for the same backend and model id
            (see :attr:`Segmenter.embedding_source`).
        image_hw: ``(H, W)`` of the original image.
        image: the ``(H, W, 3)`` uint8 RGB image itself (classical backends and
            composition need the pixels).
    """

    backend: str
    model_id: str
    image_hw: tuple[int, int]
    image: np.ndarray

    @classmethod
    def stored_fields(cls) -> tuple[str, ...]:
        """The family's own fields, which :class:`~segprompt.cache.EmbeddingCache` stores.

        The base fields come from the cache key and the image; fields declared
        with ``init=False`` (per-process state such as a decoder context) are
        rebuilt, never stored.
        """
        base = {item.name for item in dataclasses.fields(Embedding)}
        return tuple(item.name for item in dataclasses.fields(cls) if item.init and item.name not in base)

    def feature_map(self) -> np.ndarray | None:
        """``(h, w, C)`` float32 model features over the image (for feature-based point strategies), or ``None``."""
        return None


@dataclass(eq=False)
class CompositeEmbedding(Embedding):
    """The embeddings of the backends that make up one backend, by role, on one image.

    E.g. :class:`~segprompt.compose.ComposedSegmenter`'s ``"proposer"`` and
    ``"refiner"``, a detector + SAM backend's ``"detector"`` and ``"sam"``.
    Each part keeps the backend and model id of the encoder that made it, so
    it goes to that backend unchanged.
    """

    parts: dict[str, Embedding]

    def part(self, role: str) -> Embedding:
        """The embedding of ``role``."""
        if role not in self.parts:
            raise SegpromptError(f"{self.backend}: the embedding has no {role!r} part; it has {sorted(self.parts)}")
        return self.parts[role]


@dataclass
class Prediction:
    """Candidate masks for one prompt.

    Attributes:
        masks: ``(K, H, W)`` bool masks in original-image pixels.
        scores: ``(K,)`` float32 quality scores (SAM: predicted IoU), higher is
            better.
        low_res_logits: ``(K, 256, 256)`` float32 logits that can be fed back as
            a :class:`~segprompt.prompts.MaskPrompt` of kind ``"logits"``, or
            ``None`` for backends without such logits.
        methods: ``(K,)`` short names of how each mask was made (e.g.
            ``"grabcut (box prior)"``, ``"fallback ellipse"``), so a user can
            tell a data-driven answer from a shape prior; ``None`` when the
            backend has only one way of answering.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray | None = None
    methods: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != bool:
            raise ValueError(f"Prediction.masks must be (K, H, W) bool, got {self.masks.shape} {self.masks.dtype}")
        if self.scores.shape != (self.masks.shape[0],):
            raise ValueError(f"Prediction.scores must be ({self.masks.shape[0]},), got {self.scores.shape}")
        if self.methods is not None and len(self.methods) != self.masks.shape[0]:
            raise ValueError(f"Prediction.methods must name {self.masks.shape[0]} masks, got {len(self.methods)}")

    @property
    def best(self) -> int:
        """Index of the highest-scoring mask."""
        return int(np.argmax(self.scores))

    @property
    def best_mask(self) -> np.ndarray:
        """``(H, W)`` bool mask with the highest score."""
        return self.masks[self.best]

    @property
    def method(self) -> str | None:
        """How the highest-scoring mask was made, or ``None`` when the backend does not say."""
        return None if self.methods is None else self.methods[self.best]

    def subset(self, indices: Sequence[int] | np.ndarray) -> Prediction:
        """The candidates at ``indices`` (in that order), every per-candidate field taken along."""
        keep = np.asarray(indices, dtype=np.intp)
        return dataclasses.replace(
            self,
            masks=self.masks[keep],
            scores=self.scores[keep],
            low_res_logits=None if self.low_res_logits is None else self.low_res_logits[keep],
            methods=None if self.methods is None else tuple(self.methods[k] for k in keep),
        )


class Segmenter(ABC):
    """A segmentation backend.

    Subclasses set :attr:`name` (the registry key) and :attr:`accepts` (the
    prompt kinds they answer), and register themselves with
    :func:`segprompt.backends.register`.
    """

    name: ClassVar[str]
    accepts: ClassVar[frozenset[str]]
    #: One line for ``segprompt models``.
    description: ClassVar[str] = ""

    @property
    def model_id(self) -> str:
        """Identifies the weights; part of the embedding cache key."""
        return self.name

    @property
    def embedding_source(self) -> tuple[str, str]:
        """``(backend, model_id)`` of the encoder whose embeddings this backend answers from.

        A backend's own by default; one that reuses another backend's encoder
        (PerSAM answers from its SAM's embeddings) names that one, so the two
        share embeddings and cache entries.
        """
        return self.name, self.model_id

    @abstractmethod
    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
        """Compute the prompt-independent embedding of an ``(H, W[, C])`` image."""

    @abstractmethod
    def _predict(self, embedding: Embedding, prompt: Prompt, multimask: bool) -> Prediction:
        """Answer a prompt already checked by :meth:`predict`."""

    def predict(self, embedding: Embedding, prompt: Prompt, multimask: bool = True) -> Prediction:
        """Answer ``prompt`` on the image behind ``embedding``.

        Raises:
            UnsupportedPromptError: the prompt holds a kind this backend does
                not accept, or is empty.
            PromptError: the prompt does not fit the image.
            ValueError: the embedding came from another backend or model.
        """
        self.check_prompt(prompt)
        self.check_embedding(embedding)
        prompt.validate_for(embedding.image_hw)
        return self._predict(embedding, prompt, multimask)

    def segment(self, image: np.ndarray, prompt: Prompt, multimask: bool = True) -> Prediction:
        """Embed and predict in one call (no cache)."""
        self.check_prompt(prompt)
        return self.predict(self.embed(image), prompt, multimask)

    def check_embedding(self, embedding: Embedding) -> None:
        """Raise ``ValueError`` unless ``embedding`` was made by :attr:`embedding_source`."""
        backend, model_id = self.embedding_source
        if embedding.backend != backend or embedding.model_id != model_id:
            raise ValueError(
                f"embedding was made by backend {embedding.backend!r} / model {embedding.model_id!r}, "
                f"not {backend!r} / {model_id!r}"
            )

    def check_prompts(self, embedding: Embedding, prompts: Sequence[Prompt]) -> None:
        """Check ``embedding`` and every prompt as :meth:`predict` does; an error names the prompt's index."""
        self.check_embedding(embedding)
        for index, prompt in enumerate(prompts):
            try:
                self.check_prompt(prompt)
                prompt.validate_for(embedding.image_hw)
            except SegpromptError as exc:
                raise type(exc)(f"prompts[{index}]: {exc}") from exc

    def check_prompt(self, prompt: Prompt) -> None:
        """Raise :class:`UnsupportedPromptError` unless every part of ``prompt`` is accepted."""
        if prompt.is_empty():
            raise UnsupportedPromptError(f"backend {self.name!r}: the prompt is empty; give at least one of {sorted(self.accepts)}")
        rejected = sorted(prompt.kinds() - self.accepts)
        if rejected:
            raise UnsupportedPromptError(
                f"backend {self.name!r} does not accept {', '.join(rejected)} prompts; "
                f"it accepts {', '.join(sorted(self.accepts))}"
            )

    @staticmethod
    def _rgb(image: np.ndarray) -> np.ndarray:
        return to_rgb_uint8(image)


#: ``embed_image(segmenter, image, progress) -> Embedding``: how one image becomes an embedding, e.g. the
#: segmenter's own :meth:`Segmenter.embed` or :meth:`EmbeddingCache.embed <segprompt.cache.EmbeddingCache.embed>`.
EmbedImage = Callable[[Segmenter, np.ndarray, ProgressCallback], Embedding]


def plain_embed(segmenter: Segmenter, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
    """The backend's own ``embed``, uncached (the :data:`EmbedImage` without a cache)."""
    return segmenter.embed(image, progress)


#: Prompts a :class:`BatchPredictor` decodes together on the CPU when not told (its caches, not its memory, bound the batch).
CPU_CHUNK_SIZE = 4
#: The largest batch a :class:`BatchPredictor` chooses by itself on an accelerator.
MAX_CHUNK_SIZE = 256


def chunk_size_for(chunk_size: int | None, device: torch.device, bytes_per_prompt: int) -> int:
    """The prompts to decode at once: ``chunk_size`` when given, else chosen for ``device``.

    ``None`` takes :data:`CPU_CHUNK_SIZE` on the CPU and, on CUDA, as many
    prompts of ``bytes_per_prompt`` as half the free memory holds (at most
    :data:`MAX_CHUNK_SIZE`; :func:`segprompt.devices.auto_chunk_size`).

    Raises:
        ValueError: ``chunk_size`` below 1.
    """
    from ..devices import auto_chunk_size

    if chunk_size is None:
        return auto_chunk_size(device, bytes_per_prompt, default=CPU_CHUNK_SIZE, limit=MAX_CHUNK_SIZE)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return chunk_size


#: Which of a prompt's candidate masks a batch returns: every one, the highest-scored, or ``masks[0]``.
CandidateSelection = Literal["all", "best", "first"]
CANDIDATE_SELECTIONS: tuple[str, ...] = ("all", "best", "first")


def chosen_candidates(scores: torch.Tensor, select: CandidateSelection) -> torch.Tensor:
    """``(B, K')`` int64 indices into the ``K`` candidates of ``(B, K)`` ``scores`` that ``select`` keeps."""
    import torch

    batch, count = scores.shape
    if select == "all":
        return torch.arange(count, device=scores.device).repeat(batch, 1)
    if select == "best":
        return scores.argmax(dim=1, keepdim=True)
    return torch.zeros((batch, 1), dtype=torch.int64, device=scores.device)


def prompt_groups(prompts: Sequence[Prompt], size: int, *, shared_mask: bool = False) -> list[list[int]]:
    """Indices of ``prompts`` in groups of at most ``size`` that a SAM-like decoder can decode together.

    A prompt encoder batches only prompts with the same parts and the same
    number of points; order within a group follows ``prompts``. With
    ``shared_mask`` (models that take one mask prompt per image, shared by the
    batch) every prompt holding a mask is a group of its own.
    """
    groups: dict[tuple[int, bool, int], list[int]] = {}
    for index, prompt in enumerate(prompts):
        n_points = 0 if prompt.points is None else len(prompt.points)
        mask_key = -1 if prompt.mask is None else (index if shared_mask else 0)
        groups.setdefault((n_points, prompt.box is not None, mask_key), []).append(index)
    return [group[start : start + size] for group in groups.values() for start in range(0, len(group), max(1, size))]


@dataclass
class CandidateBatch:
    """A backend's answers to some of the prompts given to :meth:`BatchPredictor.predict_batches`.

    Tensors stay on the model's device. ``K`` is the number of candidates per
    prompt (3 multimask, else 1), ``K'`` how many came back (``K`` for
    ``"all"``, else 1).

    Attributes:
        indices: the ``B`` positions of these prompts in the list given.
        masks: ``(B, K', H, W)`` bool masks in original-image pixels.
        candidates: ``(B, K')`` int64 index in ``0..K-1`` of each returned mask.
        scores: ``(B, K)`` float32 predicted quality of every candidate.
        low_res_logits: ``(B, K', L, L)`` float32 logits of the returned masks
            (``keep_logits=True`` and a backend that has them), else ``None``.
        n_exact: prompts the backend decoded again to be exact (see ``exact``).
    """

    indices: list[int]
    masks: torch.Tensor
    candidates: torch.Tensor
    scores: torch.Tensor
    low_res_logits: torch.Tensor | None = None
    n_exact: int = 0


class BatchPredictor(ABC):
    """Capability a backend declares by inheriting it: decoding many prompts on one embedding in batches.

    SAM-like backends answer a whole benchmark's prompts this way (see
    :func:`segprompt.evaluation.score_prompts`), computing only the selected
    candidates and keeping every tensor on the model's device.
    """

    @abstractmethod
    def predict_batches(
        self,
        embedding: Embedding,
        prompts: Sequence[Prompt],
        *,
        multimask: bool = True,
        select: CandidateSelection = "best",
        keep_logits: bool = False,
        exact: bool = False,
        chunk_size: int | None = None,
    ) -> Iterator[CandidateBatch]:
        """Answer every prompt, in batches of at most ``chunk_size``, each prompt exactly once.

        Checks the embedding and every prompt before decoding anything.

        Args:
            embedding: from this backend's :meth:`Segmenter.embed`.
            prompts: ``N`` prompts, checked as :meth:`Segmenter.predict` checks them.
            multimask: the backend's several candidates, or its single mask.
            select: which candidates come back (see :class:`CandidateBatch`).
            keep_logits: also return the returned masks' low-resolution logits.
            exact: the same masks as :meth:`Segmenter.predict` bit for bit
                where a faster numerical path could differ (backend-defined).
            chunk_size: prompts decoded together; ``None``: the backend's
                choice for its device (from the free memory on an accelerator).

        Raises:
            UnsupportedPromptError, PromptError: as :meth:`Segmenter.predict`,
                naming the prompt index.
            ValueError: embedding from another model, unknown ``select``.
        """


class SharedBackbone(ABC):
    """Capability: an image encoder made of a backbone, which other models can read, and the model's own neck.

    SAM 3's detector (``sam3``) and tracker (``sam3-tracker``) both read the
    output of one perception-encoder ViT, each through its own neck. A
    composition of two backends whose backbones are equal
    (:func:`same_backbone`: same preprocessing, same weights) runs the
    backbone once per image and gives its output to both
    (:meth:`embed_from_backbone`); each backend's own :meth:`Segmenter.embed`
    is ``embed_from_backbone(rgb, run_backbone(rgb))``.
    """

    @abstractmethod
    def backbone_module(self) -> torch.nn.Module:
        """The backbone whose weights :func:`same_backbone` compares."""

    @abstractmethod
    def preprocessing(self) -> dict:
        """The image preprocessing before the backbone (the image processor's settings), compared by :func:`same_backbone`."""

    @abstractmethod
    def run_backbone(self, rgb: np.ndarray) -> torch.Tensor:
        """``(1, C, h, w)`` backbone features of an ``(H, W, 3)`` uint8 image, on the model's device."""

    @abstractmethod
    def embed_from_backbone(self, rgb: np.ndarray, features: torch.Tensor) -> Embedding:
        """This backend's embedding of ``rgb`` from :meth:`run_backbone`'s ``features`` (its neck and heads' inputs)."""


def same_backbone(first: object, second: object) -> bool:
    """Whether two :class:`SharedBackbone` backends preprocess alike and have backbones with equal weights.

    Then ``first.run_backbone(rgb)`` serves ``second.embed_from_backbone``
    exactly. Compares every parameter and buffer (about a second for SAM 3's
    0.45 B-parameter ViT).
    """
    import torch

    if not (isinstance(first, SharedBackbone) and isinstance(second, SharedBackbone)):
        return False
    if first.preprocessing() != second.preprocessing():
        return False
    a, b = first.backbone_module().state_dict(), second.backbone_module().state_dict()
    return a.keys() == b.keys() and all(
        a[key].shape == b[key].shape and a[key].dtype == b[key].dtype and torch.equal(a[key], b[key].to(a[key].device))
        for key in a
    )


class ExemplarProposer(ABC):
    """Capability: finding on a target image the objects that a visual reference from *another* image shows, as boxes.

    Those boxes become the positive exemplars of a concept backend, which takes
    exemplars only on its own target image (SAM 3): see
    :class:`~segprompt.compose.ComposedSegmenter`'s ``exemplar_proposer``.
    """

    @abstractmethod
    def embed_for_exemplars(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
        """The target image's embedding :meth:`propose_exemplars` reads (no more than it needs)."""

    @abstractmethod
    def propose_exemplars(self, embedding: Embedding, reference: VisualReference) -> Exemplars | None:
        """Positive exemplar boxes, original-image ``(x0, y0, x1, y1)`` pixels of the target, best first; ``None`` when nothing matches."""


__all__ = [
    "CANDIDATE_SELECTIONS",
    "BatchPredictor",
    "CPU_CHUNK_SIZE",
    "CandidateBatch",
    "CandidateSelection",
    "CompositeEmbedding",
    "EmbedImage",
    "Embedding",
    "ExemplarProposer",
    "MAX_CHUNK_SIZE",
    "Prediction",
    "Segmenter",
    "SharedBackbone",
    "chosen_candidates",
    "chunk_size_for",
    "prompt_groups",
    "same_backbone",
    "plain_embed",
]
