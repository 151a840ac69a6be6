"""The annotation session file: its format, schema version and fingerprints.

:meth:`segprompt.annotation.AnnotationSession.save` writes a label map and,
beside it, ``<stem>.session.json``; ``segprompt replay SESSION.json``
re-runs it (:mod:`segprompt.replay`). This module only knows the file: the
``format`` marker, the schema version checked on every read, where the file
lies next to its labels, and the SHA-256 fingerprints of the image and the
label map that let a replay refuse a changed image by name.

Schema 2 (written now)::

    {"format": "segprompt-annotation", "schema": 2,
     "image": {"path": "cells.png" (relative to this file) | null, "plane": null, "sha256": "...", "hw": [H, W]},
     "backend": {"name": "sam", "model_id": "vit_b:...", "options": {"model_type": "vit_b", ...}},
     "labels_file": "cells.tif", "labels_sha256": "...",
     "objects": [{"label": 1, "class_name": "cell", "score": 0.93, "area": 412, "box": [x0, y0, x1, y1],
                  "backend": "sam", "model_id": "...", "source": "prompt", "prompts": [Prompt.to_dict(), ...]}],
     "history": [{"op": "accept", ...}, {"op": "undo"}, ...]}

Schema 1 (the first napari plugin's ``<stem>.prompts.json``: ``objects`` with
``label``, ``score``, ``prompt`` only) is still read, but holds no history to
replay.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SegpromptError

#: ``"format"`` of every session file.
SESSION_FORMAT = "segprompt-annotation"
#: The schema this version writes; files of a higher schema are refused.
SESSION_SCHEMA = 2
#: Schemas this version reads.
READABLE_SCHEMAS = (1, 2)
#: ``<stem>`` + this suffix beside the labels file.
SESSION_SUFFIX = ".session.json"
#: What schema 1 files were called.
LEGACY_SUFFIX = ".prompts.json"


class SessionFileError(SegpromptError):
    """A session file that cannot be read, naming the file and the field."""


def default_session_path(labels_path: str | os.PathLike) -> Path:
    """``masks/img.tif`` -> ``masks/img.session.json``."""
    labels_path = Path(labels_path)
    return labels_path.with_name(labels_path.stem + SESSION_SUFFIX)


def find_session_file(labels_path: str | os.PathLike) -> Path | None:
    """The session file beside ``labels_path`` (``.session.json``, else a schema 1 ``.prompts.json``), or ``None``."""
    labels_path = Path(labels_path)
    for candidate in (default_session_path(labels_path), labels_path.with_name(labels_path.stem + LEGACY_SUFFIX)):
        if candidate.is_file():
            return candidate
    return None


def image_digest(rgb: np.ndarray) -> str:
    """SHA-256 (hex) of an ``(H, W, 3)`` uint8 image's shape and pixels: what the backend saw, whatever the file type."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.dtype != np.uint8:
        raise ValueError(f"image_digest takes the uint8 RGB image, got {rgb.dtype}")
    digest = hashlib.sha256(repr(tuple(rgb.shape)).encode("ascii"))
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def labels_digest(labels: np.ndarray) -> str:
    """SHA-256 (hex) of an ``(H, W)`` label map's shape and values, whatever its integer type (PNG uint8 = int32 map)."""
    labels = np.asarray(labels)
    digest = hashlib.sha256(repr(tuple(labels.shape)).encode("ascii"))
    digest.update(np.ascontiguousarray(labels, dtype="<i8").tobytes())
    return digest.hexdigest()


def session_json(record: dict[str, Any]) -> str:
    """The text of a session file (``record`` as built by :meth:`~segprompt.annotation.AnnotationSession.record`)."""
    return json.dumps(record, indent=1) + "\n"


def read_session_record(path: str | os.PathLike) -> dict[str, Any]:
    """Read a session file and check its format and schema version.

    Returns:
        The record, with ``"schema"`` an int in :data:`READABLE_SCHEMAS`.

    Raises:
        SessionFileError: unreadable, not JSON, not a segprompt session, or a
            schema this version does not read (naming the file and the schema).
    """
    path = Path(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SessionFileError(f"{path}: cannot read the session file ({exc.strerror or exc})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SessionFileError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != SESSION_FORMAT:
        raise SessionFileError(f'{path}: not a segprompt annotation file (expected "format": "{SESSION_FORMAT}")')
    schema = record.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise SessionFileError(f"{path}: schema must be an integer, got {schema!r}")
    if schema > SESSION_SCHEMA:
        raise SessionFileError(
            f"{path}: schema {schema} was written by a newer segprompt; this version reads schemas "
            f"{', '.join(map(str, READABLE_SCHEMAS))} (upgrade segprompt)"
        )
    if schema not in READABLE_SCHEMAS:
        raise SessionFileError(f"{path}: unknown schema {schema}; this version reads {', '.join(map(str, READABLE_SCHEMAS))}")
    if not isinstance(record.get("objects", []), list):
        raise SessionFileError(f"{path}: objects must be a list")
    record["schema"] = schema
    return record


__all__ = [
    "LEGACY_SUFFIX",
    "READABLE_SCHEMAS",
    "SESSION_FORMAT",
    "SESSION_SCHEMA",
    "SESSION_SUFFIX",
    "SessionFileError",
    "default_session_path",
    "find_session_file",
    "image_digest",
    "labels_digest",
    "read_session_record",
    "session_json",
]
