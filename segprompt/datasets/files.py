"""Reading and validating the files of one sample.

Every function raises :class:`~segprompt.datasets.lazy.BadFileError` naming
the file and the reason, which the dataset turns into a problem report.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Collection

import numpy as np

from ..errors import ImageError
from ..io import IMAGE_SUFFIXES, read_image, read_mask
from .lazy import BadFileError


def _reason(path: Path, exc: Exception) -> str:
    return str(exc).removeprefix(f"{path}: ")


def load_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of ``path``."""
    try:
        return read_image(path)
    except ImageError as exc:
        raise BadFileError(path, f"unreadable image: {_reason(path, exc)}") from exc


def load_mask(path: Path, image_hw: tuple[int, ...] | None = None) -> np.ndarray:
    """The 2-D integer label map of ``path``, checked against the image size ``(H, W)``."""
    try:
        mask = read_mask(path)
    except ImageError as exc:
        raise BadFileError(path, f"unreadable mask: {_reason(path, exc)}") from exc
    if image_hw is not None and mask.shape != tuple(image_hw[:2]):
        raise BadFileError(
            path, f"size mismatch: mask is {mask.shape[1]}x{mask.shape[0]} (W x H), image is {image_hw[1]}x{image_hw[0]}"
        )
    return mask


def check_values(mask: np.ndarray, path: Path, allowed: Collection[int], what: str) -> None:
    """Raise when ``mask`` holds a value outside ``allowed``."""
    values = np.unique(mask)
    bad = values[~np.isin(values, list(allowed))]
    if bad.size:
        raise BadFileError(path, f"bad label values {bad[:5].tolist()} in a {what} mask (allowed: {sorted(allowed)[:12]})")


def binary_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """A 0/255 (or 0/1) mask as uint8 0/1."""
    check_values(mask, path, (0, 1, 255), "binary")
    return (mask > 0).astype(np.uint8)


def image_files(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the image files directly in ``folder`` (hidden files skipped)."""
    if not folder.is_dir():
        return {}
    return {
        path.stem: path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    }


def read_index(path: Path, key: str) -> dict[str, dict[str, Any]]:
    """Rows of an index file (``.csv`` with a header, or ``.json`` list of objects) by their ``key`` field."""
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="", encoding="utf-8") as handle:
                rows: list[dict[str, Any]] = list(csv.DictReader(handle))
        else:
            rows = json.loads(path.read_text(encoding="utf-8"))
        return {str(row[key]): row for row in rows}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadFileError(path, f"unreadable index file ({type(exc).__name__}: {exc})") from exc
