"""Loading transformers models from a local folder or the Hugging Face hub.

Where a model comes from, first match wins:

1. ``model_dir`` given by the user (``--model-dir``): must be a model folder
   (``config.json`` beside the weights and the processor files).
2. ``<cache root>/models/<owner>--<name>`` (see :func:`local_model_dir`; the
   cache root is ``$SEGPROMPT_CACHE``, see :func:`segprompt.paths.cache_root`),
   e.g. ``~/.cache/segprompt/models/CIDAS--clipseg-rd64-refined``: a copy
   made with ``save_pretrained`` or ``hf download <hub id> --local-dir <folder>``
   (the ``hf`` command of ``huggingface_hub``).
3. Online: the hub id itself (``from_pretrained`` downloads into the Hugging
   Face cache). Offline (``HF_HUB_OFFLINE=1`` or no connection to the hub): a
   copy already in the Hugging Face cache (``local_files_only``).

When nothing works a :class:`~segprompt.errors.WeightsUnavailableError`
names the folder to fill and the command that fills it.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .paths import cache_root
from .errors import CheckpointError, WeightsUnavailableError

HUB_HOST = "huggingface.co"
_TRUE = {"1", "true", "yes", "on"}


def local_model_dir(hub_id: str) -> Path:
    """Where a local copy of ``hub_id`` is looked for: ``<cache_root>/models/<owner>--<name>``."""
    return cache_root() / "models" / hub_id.replace("/", "--")


@lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=3.0):
            return True
    except OSError:
        return False


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE`` is set or the hub cannot be reached."""
    if any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    return not _hub_reachable()


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


@dataclass
class PretrainedModel:
    """A loaded model, its processor and the id that names these weights.

    Attributes:
        model: the transformers model, in eval mode.
        processor: its processor (or image processor).
        model_id: ``<owner>--<name>`` for a hub model or its local copy;
            ``<folder name>-<digest>`` for a ``model_dir``, the digest covering
            the folder's file names, sizes and modification times, so other
            weights never share an embedding-cache entry.
    """

    model: Any
    processor: Any
    model_id: str


def _folder_id(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return f"{folder.name}-{digest.hexdigest()[:12]}"


def load_pretrained(
    model_class: Any,
    processor_class: Any,
    hub_id: str,
    model_dir: str | Path | None = None,
    *,
    access_note: str = "",
) -> PretrainedModel:
    """Load the model and processor of ``hub_id`` by the rules in the module docstring.

    Args:
        model_class: a transformers model class (e.g. ``CLIPSegForImageSegmentation``).
        processor_class: its processor or image-processor class (e.g. ``CLIPSegProcessor``).
        hub_id: e.g. ``"CIDAS/clipseg-rd64-refined"``.
        model_dir: a local model folder that overrides every other source.
        access_note: added to the offline error, e.g. that the weights are
            gated behind a licence to accept on the hub before downloading.

    Raises:
        CheckpointError: ``model_dir`` is not a model folder, or the files do
            not load; :class:`WeightsUnavailableError` offline without a local
            copy (the message names the folder to provide).
    """
    local = local_model_dir(hub_id)
    model_id = hub_id.replace("/", "--")
    if model_dir is not None:
        source, online = Path(model_dir).expanduser(), False
        if not _is_model_dir(source):
            raise CheckpointError(f"{source}: not a model folder (no config.json) for {hub_id}")
        model_id = _folder_id(source)
    elif _is_model_dir(local):
        source, online = local, False
    else:
        source, online = None, not is_offline()
    try:
        if source is not None:
            model = model_class.from_pretrained(str(source))
            processor = processor_class.from_pretrained(str(source))
        else:
            # Online this downloads; offline it succeeds only from the Hugging Face cache.
            model = model_class.from_pretrained(hub_id, local_files_only=not online)
            processor = processor_class.from_pretrained(hub_id, local_files_only=not online)
    except (OSError, ValueError) as exc:
        if source is None and not online:
            note = f" {access_note.strip()}" if access_note.strip() else ""
            raise WeightsUnavailableError(
                f"model {hub_id} is not available offline; put a copy in {local} "
                f"(`hf download {hub_id} --local-dir {local}` where the hub is reachable, or save_pretrained).{note}",
                kind="transformers",
            ) from exc
        raise CheckpointError(f"cannot load model {hub_id} from {source or 'the hub'}: {exc}") from exc
    return PretrainedModel(model.eval(), processor, model_id)
