"""The official segment-anything checkpoints: where they live, how they are fetched and verified.

Checkpoints are kept in ``<cache root>/checkpoints/`` (the cache root is
``$SEGPROMPT_CACHE``, else the platform's user cache folder, see
:func:`segprompt.paths.cache_root`). An official checkpoint is downloaded with
pooch only when its file is missing, and its SHA-256 is always checked against
:data:`SAM_CHECKPOINTS`. Since hashing a 2.5 GB file takes seconds, a verified
file gets a small ``<file>.verified.json`` record (size, modification time,
hash) and is not hashed again until it changes.

Any failure (offline, download error, hash mismatch, a file that is not a SAM
state dict) raises :class:`~segprompt.errors.CheckpointError` telling the user
which file to put where, with the expected hash.

Weights are loaded with ``torch.load(..., weights_only=True)``: a checkpoint
can only hold tensors and plain containers, never arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from .progress import ProgressCallback, no_progress
from .paths import cache_root
from .errors import CheckpointError, WeightsUnavailableError
from .io import atomic_write_text

BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_HASH_CHUNK = 1 << 22
#: Keys every SAM state dict has; used to tell a SAM checkpoint from another file.
_SAM_KEY_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


@dataclass(frozen=True)
class CheckpointInfo:
    """One official checkpoint.

    Attributes:
        model_type: SAM architecture name (a key of
            :data:`segprompt.backends.sam_arch.SAM_ARCHITECTURES`).
        filename: file name under the checkpoint folder and on the download server.
        sha256: full lowercase hex SHA-256 of the file.
    """

    model_type: str
    filename: str
    sha256: str

    @property
    def url(self) -> str:
        return BASE_URL + self.filename

    @property
    def path(self) -> Path:
        """Where the file is (or will be) stored."""
        return checkpoint_dir() / self.filename


SAM_CHECKPOINTS: dict[str, CheckpointInfo] = {
    "vit_h": CheckpointInfo(
        "vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"
    ),
    "vit_l": CheckpointInfo(
        "vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"
    ),
    "vit_b": CheckpointInfo(
        "vit_b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"
    ),
}


def checkpoint_dir() -> Path:
    """``<cache root>/checkpoints``; not created here."""
    return cache_root() / "checkpoints"


def official_checkpoint(model_type: str) -> CheckpointInfo:
    """The registry entry of ``model_type``.

    Raises:
        CheckpointError: no official checkpoint exists for ``model_type``.
    """
    try:
        return SAM_CHECKPOINTS[model_type]
    except KeyError:
        raise WeightsUnavailableError(
            f"no official SAM checkpoint for model type {model_type!r}; known: {', '.join(SAM_CHECKPOINTS)}", kind="sam"
        ) from None


def file_sha256(path: Path, progress: ProgressCallback = no_progress) -> str:
    """Lowercase hex SHA-256 of a file, read in 4 MiB chunks."""
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            progress(done, total, f"hashing {path.name}")
    return digest.hexdigest()


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def checkpoint_sha256(path: Path, progress: ProgressCallback = no_progress) -> str:
    """SHA-256 of ``path``, reusing the ``.verified.json`` record while the file is unchanged."""
    record = _record_path(path)
    stamp = _file_stamp(path)
    try:
        stored = json.loads(record.read_text(encoding="utf-8"))
        if {key: stored[key] for key in stamp} == stamp:
            return str(stored["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no record, or a stale/corrupt one: hash the file again
    digest = file_sha256(path, progress)
    try:
        atomic_write_text(record, json.dumps({**stamp, "sha256": digest}))
    except OSError:
        pass  # a read-only folder only costs re-hashing next time
    return digest


class _PoochProgress:
    """Adapts a :data:`ProgressCallback` to the progress-bar object pooch drives."""

    def __init__(self, progress: ProgressCallback, message: str) -> None:
        self.progress = progress
        self.message = message
        self.total = 0
        self.done = 0

    def update(self, count: int) -> None:
        self.done += count
        self.progress(min(self.done, self.total) if self.total else self.done, self.total, self.message)

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        pass


def _missing_message(info: CheckpointInfo) -> str:
    return (
        f"download {info.url} to {info.path} (expected SHA-256 {info.sha256})"
    )


def fetch_checkpoint(model_type: str, progress: ProgressCallback = no_progress) -> Path:
    """Path of the verified official checkpoint of ``model_type``, downloading it if missing.

    Raises:
        CheckpointError: unknown model type; the file is missing and cannot be
            downloaded (offline, server error); or its SHA-256 differs from the
            registry's.
    """
    import pooch

    info = official_checkpoint(model_type)
    path = info.path
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        downloader = pooch.HTTPDownloader(progressbar=_PoochProgress(progress, f"downloading {info.filename}"))
        try:
            pooch.retrieve(
                info.url,
                known_hash=f"sha256:{info.sha256}",
                fname=info.filename,
                path=path.parent,
                downloader=downloader,
                progressbar=False,
            )
        except Exception as exc:  # offline, HTTP error, or pooch's own hash check: one message for all
            raise WeightsUnavailableError(
                f"cannot download SAM {model_type} checkpoint ({exc}); {_missing_message(info)}", kind="sam"
            ) from exc
    digest = checkpoint_sha256(path, progress)
    if digest != info.sha256:
        raise WeightsUnavailableError(
            f"{path}: SHA-256 {digest} does not match the official {info.filename} ({info.sha256}); "
            f"the file is corrupt or another file; delete it to download it again, or {_missing_message(info)}",
            kind="sam",
        )
    return path


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a SAM state dict (tensors only) from ``path``.

    Raises:
        CheckpointError: the file is missing, unreadable, holds pickled objects
            other than tensors and containers, or is not a SAM state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files (zip, pickle, unsafe globals)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({first_line})") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a SAM checkpoint (expected a state dict of tensors)")
    missing = [prefix for prefix in _SAM_KEY_PREFIXES if not any(str(k).startswith(prefix) for k in state)]
    if missing:
        raise CheckpointError(f"{path}: not a SAM checkpoint (no {', '.join(repr(p + '*') for p in missing)} weights)")
    return dict(state)


def resolve_checkpoint(
    model_type: str, checkpoint: str | os.PathLike | None, progress: ProgressCallback = no_progress
) -> tuple[Path, str]:
    """``(path, sha256)`` of the checkpoint to use.

    ``checkpoint=None`` picks the official file of ``model_type`` (fetched and
    verified); a given path is used as is and only hashed (any SAM-compatible
    file is allowed, its hash identifies the weights).
    """
    if checkpoint is None:
        path = fetch_checkpoint(model_type, progress)
        return path, official_checkpoint(model_type).sha256
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")
    return path, checkpoint_sha256(path, progress)


def cached_checkpoints() -> list[tuple[CheckpointInfo, bool]]:
    """Every official checkpoint with whether its file is present (not re-hashed)."""
    return [(info, info.path.is_file()) for info in SAM_CHECKPOINTS.values()]


__all__ = [
    "BASE_URL",
    "CheckpointInfo",
    "SAM_CHECKPOINTS",
    "cached_checkpoints",
    "checkpoint_dir",
    "checkpoint_sha256",
    "fetch_checkpoint",
    "file_sha256",
    "load_state_dict",
    "official_checkpoint",
    "resolve_checkpoint",
]
