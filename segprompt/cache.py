"""On-disk cache of image embeddings, so re-opening an image skips the encoder.

An entry is keyed by the SHA-256 of the image's ``(H, W, 3)`` uint8 RGB pixels
(after :func:`segprompt.io.to_rgb_uint8`), the backend name and the backend's
``model_id``; it lives at ``<root>/<backend>/<model_id>/<image sha256>.pt``.

Each entry is one ``torch.save`` file holding only tensors, strings and
numbers (loaded back with ``weights_only=True``, so no arbitrary object is
ever unpickled) plus a SHA-256 checksum over the key and every tensor's bytes.
A file that is truncated, is garbage, fails the checksum or belongs to another
key is deleted and the embedding recomputed. Files are written atomically
(temporary file + rename), so concurrent writers never expose half a file.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .backends.base import Embedding, Segmenter
from .io import to_rgb_uint8
from .paths import cache_root
from .progress import ProgressCallback, no_progress

FORMAT_VERSION = 1
#: Plain values an :attr:`Embedding.data` entry may hold besides tensors and arrays.
_PLAIN_TYPES = (bool, int, float, str)



def image_digest(rgb: np.ndarray) -> str:
    """Hex SHA-256 of an ``(H, W, 3)`` uint8 image's shape and pixels."""
    digest = hashlib.sha256(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def _is_plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_plain(item) for item in value)
    return isinstance(value, _PLAIN_TYPES)


def _checksum(key: str, tensors: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(key.encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings on disk under ``root`` (default ``<cache root>/embeddings``).

    Example::

        cache = EmbeddingCache()
        embedding = cache.embed(segmenter, image)   # encoder runs once per image and model
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else cache_root() / "embeddings"

    def key(self, segmenter: Segmenter, rgb: np.ndarray) -> str:
        """``"<backend>/<model_id>/<image sha256>"`` for an ``(H, W, 3)`` uint8 image."""
        return f"{segmenter.name}/{segmenter.model_id}/{image_digest(rgb)}"

    def path(self, key: str) -> Path:
        """The entry file of ``key``; characters unsafe in file names become ``_``."""
        backend, model_id, digest = key.split("/")
        safe = [re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in (backend, model_id)]
        return self.root.joinpath(*safe, f"{digest}.pt")

    def embed(self, segmenter: Segmenter, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
        """The embedding of ``image`` by ``segmenter``, from the cache or computed and stored."""
        rgb = to_rgb_uint8(image)
        key = self.key(segmenter, rgb)
        path = self.path(key)
        cached = self._load(path, key, rgb)
        if cached is not None:
            progress(1, 1, "embedding loaded from cache")
            return cached
        embedding = segmenter.embed(rgb, progress)
        self._store(path, key, embedding)
        return embedding

    def _store(self, path: Path, key: str, embedding: Embedding) -> None:
        tensors: dict[str, torch.Tensor] = {}
        arrays: list[str] = []
        values: dict[str, Any] = {}
        for name, value in embedding.data.items():
            if isinstance(value, torch.Tensor):
                tensors[name] = value.detach().cpu()
            elif isinstance(value, np.ndarray):
                tensors[name] = torch.from_numpy(np.ascontiguousarray(value))
                arrays.append(name)
            elif _is_plain(value):
                values[name] = value
            else:
                raise TypeError(f"embedding data {name!r} of type {type(value).__name__} cannot be cached")
        payload = {
            "format": FORMAT_VERSION,
            "key": key,
            "backend": embedding.backend,
            "model_id": embedding.model_id,
            "tensors": tensors,
            "arrays": arrays,
            "values": values,
            "checksum": _checksum(key, tensors),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getbuffer())

    def _load(self, path: Path, key: str, rgb: np.ndarray) -> Embedding | None:
        """The entry at ``path``, or ``None`` (deleting the file) when absent, corrupt or foreign."""
        if not path.is_file():
            return None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            valid = (
                payload["format"] == FORMAT_VERSION
                and payload["key"] == key
                and payload["checksum"] == _checksum(key, payload["tensors"])
            )
        except Exception:  # truncated zip, garbage bytes, missing fields: all mean "recompute"
            valid = False
        if not valid:
            path.unlink(missing_ok=True)
            return None
        data: dict[str, Any] = {}
        for name, tensor in payload["tensors"].items():
            data[name] = tensor.numpy() if name in payload["arrays"] else tensor
        data.update(payload["values"])
        return Embedding(
            backend=payload["backend"],
            model_id=payload["model_id"],
            image_hw=(int(rgb.shape[0]), int(rgb.shape[1])),
            image=rgb,
            data=data,
        )

    def size_bytes(self) -> int:
        """Total size of the cached entries."""
        if not self.root.is_dir():
            return 0
        return sum(path.stat().st_size for path in self.root.rglob("*.pt") if path.is_file())

    def clear(self) -> int:
        """Delete every entry; returns how many files were removed."""
        removed = 0
        if self.root.is_dir():
            for path in self.root.rglob("*.pt"):
                path.unlink(missing_ok=True)
                removed += 1
        return removed


__all__ = ["EmbeddingCache", "image_digest"]
