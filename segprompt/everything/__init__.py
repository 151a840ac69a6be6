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
  removal; :mod:`segprompt.everything.amg`) decoded in batches by SAM's
  decoder (:mod:`segprompt.everything.sam`);
* ``sam2``, ``sam-hq``, ``sam3-tracker``, ``edgetam``: the same procedure on
  the transformers SAM family's decoders (:mod:`segprompt.everything.sam_family`);
* ``sam3``: every instance of one concept, "everything of X"
  (:mod:`segprompt.everything.sam3`).

Settings travel as text (:func:`settings_from_strings`: the CLI's ``--set
NAME=VALUE``, the napari settings field) and as JSON
(:func:`settings_to_dict` -> :func:`everything_settings`: a saved session
re-runs the same generator with the same settings).

A tiled backend (:class:`~segprompt.backends.tiled.TiledSegmenter`) segments
everything tile by tile with its wrapped backend's generator, the objects of
the tiles merged across the halos (:mod:`segprompt.everything.tiled`).

The same ``progress(done, total, message)`` callback drives the CLI's tqdm bar
and napari's progress bar.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, Protocol, Sequence

from ..backends.base import Embedding, Segmenter
from ..backends.tiled import TiledSegmenter
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
    {
        "classical": "segprompt.everything.classical",
        "sam": "segprompt.everything.sam",
        "sam2": "segprompt.everything.sam_family",
        "sam-hq": "segprompt.everything.sam_family",
        "sam3-tracker": "segprompt.everything.sam_family",
        "edgetam": "segprompt.everything.sam_family",
        "sam3": "segprompt.everything.sam3",
    },
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

    A list value (JSON has no tuples) is taken as the tuple the settings hold.

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
    options = {name: tuple(value) if isinstance(value, list) else value for name, value in options.items()}
    try:
        return settings_type(**options)
    except (TypeError, ValueError) as exc:
        raise SegpromptError(f"segment everything with {backend!r}: {exc}") from exc


def settings_to_dict(settings: Any) -> dict[str, Any]:
    """``settings`` as a JSON-ready dict (tuples as lists); ``everything_settings(backend, **settings_to_dict(s)) == s``."""
    values = {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}
    return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


def settings_help(backend: str) -> str:
    """``name=default (type)`` of each setting of ``backend``'s generator, comma-separated."""
    settings_type = _generator(backend).Settings
    hints = typing.get_type_hints(settings_type)
    defaults = settings_type()
    return ", ".join(
        f"{field.name}={_format_value(getattr(defaults, field.name))} ({_type_name(hints[field.name])})"
        for field in dataclasses.fields(settings_type)
    )


def settings_from_strings(backend: str, assignments: Sequence[str], **options: Any) -> Any:
    """The settings of ``backend``'s generator from ``NAME=VALUE`` strings (and keyword ``options``).

    Each value is parsed by the field's type: numbers, ``true``/``false``,
    comma-separated tuples (``ridge_sigmas=1,2``), ``none`` for an optional
    field; text as given.

    Raises:
        SegpromptError: a malformed assignment, unknown name or bad value, naming it.
    """
    settings_type = _generator(backend).Settings
    hints = typing.get_type_hints(settings_type)
    parsed = dict(options)
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        name = name.strip()
        if not separator or not name:
            raise SegpromptError(f"everything setting {assignment!r}: expected NAME=VALUE")
        if name not in hints:
            known = ", ".join(field.name for field in dataclasses.fields(settings_type))
            raise SegpromptError(f"segment everything with {backend!r}: unknown setting {name}; known: {known}")
        try:
            parsed[name] = _parse(text.strip(), hints[name])
        except ValueError as exc:
            raise SegpromptError(f"everything setting {name}={text!r}: {exc}") from None
    return everything_settings(backend, **parsed)


def _parse(text: str, hint: Any) -> Any:
    """``text`` as a value of type ``hint`` (int, float, bool, str, tuple[X, ...], X | None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() == "none" and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return _parse(text, inner)
    if typing.get_origin(hint) is tuple:
        return tuple(_parse(part.strip(), args[0]) for part in text.split(",") if part.strip())
    if hint is bool:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected true or false")
    if hint in (int, float):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"expected {'an integer' if hint is int else 'a number'}") from None
    return text


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is tuple:
        return f"comma-separated {_type_name(typing.get_args(hint)[0])}s"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join("none" if arg is type(None) else _type_name(arg) for arg in typing.get_args(hint))
    return {int: "integer", float: "number", bool: "true/false", str: "text"}.get(hint, str(hint))


def _format_value(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


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

    A tiled backend runs its wrapped backend's generator on each tile
    (:func:`segprompt.everything.tiled.tiled_everything`).

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
    if isinstance(segmenter, TiledSegmenter):
        from .tiled import tiled_everything

        return tiled_everything(generator, segmenter, embedding, settings, progress)
    return generator.generate(segmenter, embedding, settings, progress)


__all__ = [
    "GENERATORS",
    "EverythingGenerator",
    "everything_backends",
    "everything_settings",
    "segment_everything",
    "settings_from_strings",
    "settings_help",
    "settings_to_dict",
]
