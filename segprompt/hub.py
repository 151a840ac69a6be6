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
names the folder to fill and the command that fills it. A local folder is
checked before any model is built: its ``config.json`` must describe the model
the backend loads (a CLIPSeg folder given to SegGPT would otherwise load as a
randomly initialised SegGPT), and files that do not load (a truncated
``model.safetensors``, a pickle) are one :class:`~segprompt.errors.CheckpointError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .paths import cache_root
from .errors import CheckpointError, WeightsUnavailableError, load_failure

HUB_HOST = "huggingface.co"
#: ``input_data_format`` of every image given to a transformers processor: segprompt's images are ``(H, W, 3)``.
#: Left to guess, a processor reads an image 1 or 3 rows high as channels first (a silently wrong input).
CHANNELS_LAST = "channels_last"
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


def _model_types(config: dict[str, Any]) -> set[str]:
    """The ``model_type`` of a configuration and of the configurations it nests (a detector, a tracker...)."""
    nested = [value for value in config.values() if isinstance(value, dict)]
    return {str(part["model_type"]) for part in [config, *nested] if "model_type" in part}


def check_model_type(folder: Path, model_class: Any) -> None:
    """Refuse a model folder whose ``config.json`` describes another model than ``model_class``.

    A folder fits when its configuration, or one it nests, has the class's
    ``model_type`` or that type's video form (``sam2_video`` holds ``sam2``),
    the cases transformers itself loads.

    Raises:
        CheckpointError: naming the model type (and class) the folder's weights fit.
    """
    wanted = getattr(getattr(model_class, "config_class", None), "model_type", "")
    if not wanted:
        return
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot read the model configuration ({exc})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: not a model configuration (a JSON {type(config).__name__}, not an object)")
    found = _model_types(config)
    if wanted in found or f"{wanted}_video" in found:
        return
    kind = config.get("model_type", "unknown")
    classes = ", ".join(config.get("architectures") or [])
    raise CheckpointError(
        f"{folder}: holds a {kind!r} model{f' ({classes})' if classes else ''}, not the {wanted!r} model "
        f"{model_class.__name__} this backend loads; give it to the backend of {kind!r} models"
    )


def _folder_id(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return f"{folder.name}-{digest.hexdigest()[:12]}"


def _without_hub_kernels(model: Any) -> Any:
    """``model`` with transformers' Hub kernels off (on by default since 5.x when ``kernels`` is installed).

    With them on, ``model.train()`` on a GPU swaps layers for kernels fetched
    from the Hub: a download in the middle of a run (a failure offline), and
    other arithmetic than the CPU's. segprompt runs the model's own layers on
    every device.
    """
    if getattr(model, "use_kernels", False):
        model.use_kernels = False
    return model


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
    if source is not None:
        check_model_type(source, model_class)
        try:
            model = model_class.from_pretrained(str(source))
            processor = processor_class.from_pretrained(str(source))
        except Exception as exc:  # torch, safetensors and transformers raise many types for files that do not load
            raise CheckpointError(f"cannot load model {hub_id} from {source}: {load_failure(exc)}") from exc
        return PretrainedModel(_without_hub_kernels(model).eval(), processor, model_id)
    try:
        # Online this downloads; offline it succeeds only from the Hugging Face cache.
        model = model_class.from_pretrained(hub_id, local_files_only=not online)
        processor = processor_class.from_pretrained(hub_id, local_files_only=not online)
    except (OSError, ValueError) as exc:
        if not online:
            note = f" {access_note.strip()}" if access_note.strip() else ""
            raise WeightsUnavailableError(
                f"model {hub_id} is not available offline; put a copy in {local} "
                f"(`hf download {hub_id} --local-dir {local}` where the hub is reachable, or save_pretrained).{note}",
                kind="transformers",
            ) from exc
        raise CheckpointError(f"cannot load model {hub_id} from the hub: {load_failure(exc)}") from exc
    return PretrainedModel(_without_hub_kernels(model).eval(), processor, model_id)
