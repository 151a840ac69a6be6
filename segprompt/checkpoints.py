"""The official segment-anything checkpoints: where they live, how they are fetched and verified.

Checkpoints are kept in ``<cache root>/checkpoints/`` (the cache root is
``$SEGPROMPT_CACHE``, else the platform's user cache folder, see
:func:`segprompt.paths.cache_root`). An official checkpoint is downloaded with
pooch only when its file is missing, and its SHA-256 is always checked against
:data:`SAM_CHECKPOINTS`.

The SHA-256 of a checkpoint names its weights in the embedding cache, so a
wrong one would serve another model's embeddings. :func:`checkpoint_sha256`
therefore hashes a file's content at least once in every process, and again
whenever its stamp (size, modification time, change time, inode, device)
differs from the one it was hashed at: a file replaced or rewritten in place
is always hashed again. Each hash is recorded in
``<cache root>/verified/<digest of the absolute path>.json`` (never beside the
user's file); a caller that only checks a file, like ``segprompt models
--fetch``, may trust a record whose stamp matches (``trust_record=True``)
instead of hashing 2.5 GB again.

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
from .errors import CheckpointError, WeightsUnavailableError, load_failure
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


#: ``absolute path -> (stamp, sha256)`` of every file this process hashed (see the module docstring).
_HASHED_IN_THIS_PROCESS: dict[str, tuple[dict[str, int], str]] = {}


def verified_dir() -> Path:
    """``<cache root>/verified``: the records of hashed checkpoints; not created here."""
    return cache_root() / "verified"


def _record_path(absolute: str) -> Path:
    return verified_dir() / f"{hashlib.sha256(os.fsencode(absolute)).hexdigest()[:32]}.json"


def _file_stamp(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "ctime_ns": stat.st_ctime_ns,
        "inode": stat.st_ino,
        "device": stat.st_dev,
    }


def _recorded_sha256(absolute: str, stamp: dict[str, int]) -> str | None:
    try:
        stored = json.loads(_record_path(absolute).read_text(encoding="utf-8"))
        if stored["path"] == absolute and {key: stored[key] for key in stamp} == stamp:
            return str(stored["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no record, or a corrupt one: hash the file
    return None


def checkpoint_sha256(path: Path, progress: ProgressCallback = no_progress, *, trust_record: bool = False) -> str:
    """SHA-256 of ``path``'s content, hashed at least once per process and whenever its stamp changes.

    Args:
        trust_record: accept the record of an earlier process when the
            file's stamp still matches it (for checks only: a digest that keys
            the embedding cache must come from this process's own hash).
    """
    path = Path(path)
    absolute = os.path.abspath(path)
    stamp = _file_stamp(path)
    known = _HASHED_IN_THIS_PROCESS.get(absolute)
    if known is not None and known[0] == stamp:
        return known[1]
    if trust_record and (recorded := _recorded_sha256(absolute, stamp)) is not None:
        return recorded
    digest = file_sha256(path, progress)
    _HASHED_IN_THIS_PROCESS[absolute] = (stamp, digest)
    try:
        atomic_write_text(_record_path(absolute), json.dumps({"path": absolute, **stamp, "sha256": digest}))
    except OSError:
        pass  # a read-only cache only costs hashing again in the next process
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


def fetch_checkpoint(model_type: str, progress: ProgressCallback = no_progress, *, trust_record: bool = False) -> Path:
    """Path of the verified official checkpoint of ``model_type``, downloading it if missing.

    ``trust_record``: see :func:`checkpoint_sha256`.

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
    digest = checkpoint_sha256(path, progress, trust_record=trust_record)
    if digest != info.sha256:
        raise WeightsUnavailableError(
            f"{path}: SHA-256 {digest} does not match the official {info.filename} ({info.sha256}); "
            f"the file is corrupt or another file; delete it to download it again, or {_missing_message(info)}",
            kind="sam",
        )
    return path


def _check_checkpoint_file(path: Path) -> None:
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file does not exist")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a SAM state dict (tensors only) from ``path``.

    Raises:
        CheckpointError: the file is missing, unreadable, holds pickled objects
            other than tensors and containers, or is not a SAM state dict.
    """
    path = Path(path)
    _check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files (zip, pickle, unsafe globals)
        raise CheckpointError(f"{path}: not a loadable PyTorch checkpoint ({load_failure(exc)})") from exc
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
    _check_checkpoint_file(path)
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
    "verified_dir",
]
