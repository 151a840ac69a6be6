"""Replay a saved annotation session: the same steps, image and model give the same label map.

A session file (:mod:`segprompt.session_file`, schema 2) records the image's
SHA-256, the backend, its model id and the options that built it, and every
step in order (accepted prompts with the candidate chosen, segment-everything
settings, imports, refinements, re-prompts, renames, deletions, hand-painted
pixels, undo and redo). :func:`replay` checks that the image and the model are
the ones recorded, refusing a changed one by name, then runs the steps through
a fresh :class:`~segprompt.annotation.AnnotationSession`
(:meth:`~segprompt.annotation.AnnotationSession.perform`). On the same
weights and device every decoder call repeats bit for bit, so the label map
does too: ``labels_sha256`` of the file says whether it did.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from .annotation import AnnotationSession
from .backends.base import Embedding, Segmenter
from .errors import SegpromptError
from .progress import ProgressCallback, no_progress
from .session_file import SessionFileError, image_digest, labels_digest


def _field(record: Mapping[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            raise SessionFileError(f"the session file has no {'.'.join(keys)}")
        value = value[key]
    return value


def check_replayable(record: Mapping[str, Any], where: str) -> None:
    """Refuse a record with nothing to replay (schema 1) or without the fields a replay needs."""
    if record.get("schema", 1) < 2:
        raise SessionFileError(
            f"{where}: schema 1 files record no history to replay; open the labels in this version "
            "(napari load, or AnnotationSession.load) and save them again"
        )
    for keys in (("image", "sha256"), ("image", "hw"), ("backend", "name"), ("backend", "model_id"), ("history",)):
        try:
            _field(record, *keys)
        except SessionFileError as exc:
            raise SessionFileError(f"{where}: {exc}") from None
    if not isinstance(record["history"], list):
        raise SessionFileError(f"{where}: history must be a list")


def image_path(record: Mapping[str, Any], session_path: str | os.PathLike) -> Path | None:
    """The recorded image file (a relative path is relative to the session file's folder), or ``None``."""
    path = record.get("image", {}).get("path")
    if not path:
        return None
    return Path(session_path).parent / path


def backend_options(record: Mapping[str, Any]) -> dict[str, Any]:
    """The options that built the recorded backend (:func:`segprompt.backends.create_from_options`)."""
    options = record.get("backend", {}).get("options") or {}
    if not isinstance(options, Mapping):
        raise SessionFileError(f"backend.options must be an object, got {options!r}")
    return dict(options)


def check_image(record: Mapping[str, Any], rgb: Any, name: str) -> None:
    """Refuse an image other than the recorded one.

    Args:
        rgb: the ``(H, W, 3)`` uint8 image as the backend sees it.
        name: the image's file (or layer) name, for the message.

    Raises:
        SegpromptError: naming the image and both fingerprints.
    """
    expected, hw = _field(record, "image", "sha256"), list(_field(record, "image", "hw"))
    if list(rgb.shape[:2]) != hw:
        raise SegpromptError(
            f"image {name} changed: it is {rgb.shape[1]}x{rgb.shape[0]} (W x H), the session was made on a "
            f"{hw[1]}x{hw[0]} image"
        )
    found = image_digest(rgb)
    if found != expected:
        raise SegpromptError(
            f"image {name} changed: its pixels (sha256 {found[:12]}…) are not those the session was made on "
            f"(sha256 {expected[:12]}…)"
        )


def check_model(record: Mapping[str, Any], segmenter: Segmenter) -> None:
    """Refuse a backend or model other than the recorded one, naming both."""
    name, model_id = _field(record, "backend", "name"), _field(record, "backend", "model_id")
    if segmenter.name != name:
        raise SegpromptError(f"backend changed: the session was made with {name!r}, this is {segmenter.name!r}")
    if segmenter.model_id != model_id:
        raise SegpromptError(
            f"model changed: the session was made with {name} model {model_id!r}, this is {segmenter.model_id!r}"
        )


def replay(
    record: Mapping[str, Any],
    segmenter: Segmenter,
    embedding: Embedding,
    image_name: str = "image",
    progress: ProgressCallback = no_progress,
) -> AnnotationSession:
    """Run a saved session's history again on ``embedding``; return the new session.

    Args:
        record: a schema 2 session record (:func:`segprompt.session_file.read_session_record`).
        segmenter: the backend, built as recorded (:func:`backend_options`).
        embedding: ``segmenter``'s embedding of the image.
        image_name: the image's name for messages.
        progress: ``progress(steps done, steps, op)``.

    Raises:
        SessionFileError: nothing to replay.
        SegpromptError: a changed image or model (by name), or a step that
            fails, naming its index in the history.
    """
    check_replayable(record, "session")
    check_model(record, segmenter)
    check_image(record, embedding.image, image_name)
    session = AnnotationSession(segmenter, embedding, backend_options=backend_options(record))
    image = record.get("image", {})
    session.image_path, session.image_plane = image.get("path"), image.get("plane")
    history = record["history"]
    for index, action in enumerate(history):
        op = action.get("op") if isinstance(action, Mapping) else None
        progress(index, len(history), f"replaying {op}")
        if op is None:
            raise SessionFileError(f"history[{index}] is not an action with an op")
        try:
            session.perform(action)
        except SegpromptError as exc:
            raise SegpromptError(f"history[{index}] ({op}): {exc}") from exc
    progress(len(history), len(history), "replayed")
    return session


def reproduces(record: Mapping[str, Any], session: AnnotationSession) -> bool:
    """Whether ``session``'s label map is the one the record was saved with (``labels_sha256``)."""
    return record.get("labels_sha256") == labels_digest(session.labels)


__all__ = [
    "backend_options",
    "check_image",
    "check_model",
    "check_replayable",
    "image_path",
    "replay",
    "reproduces",
]
