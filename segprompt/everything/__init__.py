"""Segment everything: every object of an image, without prompts from the user.

:func:`segment_everything` answers with :class:`~segprompt.instances.Instances`
for any backend that has an *everything generator*: a class registered in
:data:`GENERATORS` under the backend's name, with a frozen dataclass
``Settings`` (its parameters and their defaults) and
``generate(segmenter, embedding, settings, progress) -> Instances``.
Generators live one per module, imported on first use as backends are:

* ``classical``: thresholding, dark-ridge cuts and a distance-transform
  watershed (:mod:`segprompt.everything.classical`), no weights;
* ``sam``: segment-anything's automatic mask generator (a point grid, optional
  crop layers, predicted-IoU and stability filtering, box NMS, small-region
  removal) decoded in batches (:mod:`segprompt.everything.sam`).

The same ``progress(done, total, message)`` callback drives the CLI's tqdm bar
and napari's progress bar.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Protocol

from ..backends.base import Embedding, Segmenter
from ..errors import SegpromptError
from ..instances import Instances
from ..progress import ProgressCallback, no_progress
from ..registry import Registry


class EverythingGenerator(Protocol):
    """What :data:`GENERATORS` holds: one class per backend name."""

    name: ClassVar[str]
    Settings: ClassVar[type]

    @staticmethod
    def generate(segmenter: Segmenter, embedding: Embedding, settings: Any, progress: ProgressCallback) -> Instances:
        """Every object of the image behind ``embedding``."""


#: Everything generators by backend name.
GENERATORS: Registry[type[EverythingGenerator]] = Registry(
    "everything generator",
    {"classical": "segprompt.everything.classical"},
)


def everything_backends() -> list[str]:
    """Backends that can segment everything, sorted."""
    return sorted(GENERATORS.names())


def _generator(backend: str) -> type[EverythingGenerator]:
    if backend not in GENERATORS:
        raise SegpromptError(f"backend {backend!r} cannot segment everything; these can: {', '.join(everything_backends())}")
    return GENERATORS.get(backend)


def everything_settings(backend: str, **options: Any) -> Any:
    """The settings of ``backend``'s generator: its defaults with ``options`` replaced.

    Raises:
        SegpromptError: no generator for ``backend``, an option it does not have, or a bad value.
    """
    settings_type = _generator(backend).Settings
    known = {field.name for field in dataclasses.fields(settings_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SegpromptError(
            f"segment everything with {backend!r}: unknown setting {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    try:
        return settings_type(**options)
    except (TypeError, ValueError) as exc:
        raise SegpromptError(f"segment everything with {backend!r}: {exc}") from exc


def segment_everything(
    segmenter: Segmenter,
    embedding: Embedding,
    settings: Any = None,
    progress: ProgressCallback = no_progress,
) -> Instances:
    """Every object ``segmenter`` finds in the image behind ``embedding``.

    Args:
        segmenter: the backend; it needs a registered generator (:func:`everything_backends`).
        embedding: ``segmenter``'s embedding of the whole image.
        settings: the generator's settings (:func:`everything_settings`); its defaults when ``None``.
        progress: ``progress(done, total, message)``.

    Returns:
        :class:`Instances` in original-image pixels.

    Raises:
        SegpromptError: no generator for this backend, or settings of another generator.
        ValueError: ``embedding`` was made by another backend or model.
    """
    generator = _generator(segmenter.name)
    segmenter.check_embedding(embedding)
    if settings is None:
        settings = generator.Settings()
    elif not isinstance(settings, generator.Settings):
        raise SegpromptError(
            f"segment everything with {segmenter.name!r} takes {generator.Settings.__name__}, got {type(settings).__name__}"
        )
    return generator.generate(segmenter, embedding, settings, progress)


__all__ = ["GENERATORS", "EverythingGenerator", "everything_backends", "everything_settings", "segment_everything"]
