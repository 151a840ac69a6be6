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
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import UnsupportedPromptError
from ..io import to_rgb_uint8
from ..progress import ProgressCallback, no_progress
from ..prompts import Prompt

@dataclass
class Embedding:
    """The prompt-independent result of :meth:`Segmenter.embed` for one image.

    Attributes:
        backend: registry name of the backend that made it.
        model_id: identifies the weights (e.g. ``"vit_b:<sha256 prefix>"``);
            an embedding is only valid for the same backend and model id.
        image_hw: ``(H, W)`` of the original image.
        image: the ``(H, W, 3)`` uint8 RGB image itself (classical backends and
            composition need the pixels).
        data: backend-specific tensors/arrays (e.g. SAM's image features).
    """

    backend: str
    model_id: str
    image_hw: tuple[int, int]
    image: np.ndarray
    data: dict[str, Any] = field(default_factory=dict)


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
        if embedding.backend != self.name or embedding.model_id != self.model_id:
            raise ValueError(
                f"embedding was made by backend {embedding.backend!r} / model {embedding.model_id!r}, "
                f"not {self.name!r} / {self.model_id!r}"
            )
        prompt.validate_for(embedding.image_hw)
        return self._predict(embedding, prompt, multimask)

    def segment(self, image: np.ndarray, prompt: Prompt, multimask: bool = True) -> Prediction:
        """Embed and predict in one call (no cache)."""
        self.check_prompt(prompt)
        return self.predict(self.embed(image), prompt, multimask)

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
