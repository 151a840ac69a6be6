"""SAM 3's everything: every instance of one concept ("everything of X").

SAM 3 has no prompt-free mode: it finds every instance of a noun phrase. So
its generator's setting is the concept, :attr:`ConceptEverything.text`, and a
minimum instance score; the instances are
:meth:`~segprompt.backends.sam3.Sam3Segmenter.segment_instances` (detection
score x presence score, best first), each named after the phrase. Exemplar
boxes refine a concept interactively (``segprompt segment --exemplar``, the
napari exemplars layer), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backends.base import Embedding
from ..errors import SegpromptError
from ..instances import Instances
from ..progress import ProgressCallback
from ..prompts import Prompt, Text
from . import GENERATORS


@dataclass(frozen=True)
class ConceptEverything:
    """Settings of SAM 3's everything."""

    #: The concept, a noun phrase ("cell", "yellow school bus"); required.
    text: str = ""
    #: Instances scoring below this (detection x presence) are dropped, in ``[0, 1)``.
    min_score: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score < 1.0:
            raise ValueError(f"ConceptEverything.min_score must lie in [0, 1), got {self.min_score}")


@GENERATORS.register
class Sam3Generator:
    """``sam3``: every instance of :attr:`ConceptEverything.text` on the image."""

    name = "sam3"
    Settings = ConceptEverything

    @staticmethod
    def generate(segmenter: Any, embedding: Embedding, settings: ConceptEverything, progress: ProgressCallback) -> Instances:
        if not settings.text.strip():
            raise SegpromptError("sam3 segments every instance of a concept: give its phrase (--text, or the setting text=...)")
        progress(0, 1, f"sam3: every {settings.text!r}")
        instances = segmenter.segment_instances(embedding, Prompt(text=Text(settings.text)), threshold=settings.min_score)
        progress(1, 1, f"sam3: {len(instances)} instances of {settings.text!r}")
        return instances


__all__ = ["ConceptEverything", "Sam3Generator"]
