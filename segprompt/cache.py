"""On-disk cache of image embeddings, so re-opening an image skips the encoder.

An entry is keyed by the SHA-256 of the image's ``(H, W, 3)`` uint8 RGB pixels
(after :func:`segprompt.io.to_rgb_uint8`) and the backend name and ``model_id``
of the encoder that makes the embedding (:attr:`Segmenter.embedding_source
<segprompt.backends.base.Segmenter.embedding_source>`: PerSAM shares SAM's
entries); it lives at ``<root>/<backend>/<model_id>/<image sha256>.pt``.

Each entry is one ``torch.save`` file holding only tensors, strings, numbers
and lists/dicts of them (loaded back with ``weights_only=True``, so no
arbitrary object is ever unpickled): the typed embedding as a tree (its class,
backend, model id and :meth:`~segprompt.backends.base.Embedding.stored_fields`,
parts of a composite embedding nested), its tensors, and a SHA-256 checksum
over the key, the whole tree and every tensor's bytes, so every value read
back is covered. A file that is truncated, is garbage, fails the checksum,
belongs to another key or names an embedding class not loaded in this process
is deleted and the embedding recomputed. Files are written atomically
(temporary file + rename), so concurrent writers never expose half a file.

A tiled backend's embedding (:class:`~segprompt.backends.tiled.TiledEmbedding`)
is stored tile by tile: each tile's window is an image of its own, keyed by
its pixels under the wrapped backend's ``(backend, model_id)``, so re-opening
a large image skips the encoder for every tile.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .atomic import atomic_write_bytes
from .backends.base import Embedding, Segmenter
from .backends.tiled import TiledSegmenter
from .io import to_rgb_uint8
from .paths import cache_root
from .progress import ProgressCallback, no_progress

FORMAT_VERSION = 2


def image_digest(rgb: np.ndarray) -> str:
    """Hex SHA-256 of an ``(H, W, 3)`` uint8 image's shape and pixels."""
    digest = hashlib.sha256(repr(rgb.shape).encode())
    digest.update(np.ascontiguousarray(rgb).data)
    return digest.hexdigest()


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _embedding_classes() -> dict[str, type[Embedding]]:
    """Every :class:`Embedding` class defined in this process (its backend's module imported), by name."""
    found: dict[str, type[Embedding]] = {}
    pending: list[type[Embedding]] = [Embedding]
    while pending:
        cls = pending.pop()
        found[_class_name(cls)] = cls
        pending.extend(cls.__subclasses__())
    return found


def _encode(value: Any, tensors: list[torch.Tensor]) -> Any:
    """A JSON-able tree of ``value`` whose tensors and arrays are appended to ``tensors`` (and referenced by index)."""
    if isinstance(value, torch.Tensor):
        tensors.append(value.detach().cpu().contiguous())
        return {"tensor": len(tensors) - 1}
    if isinstance(value, np.ndarray):
        tensors.append(torch.from_numpy(np.ascontiguousarray(value)))
        return {"array": len(tensors) - 1}
    if isinstance(value, Embedding):
        return {
            "embedding": _class_name(type(value)),
            "backend": value.backend,
            "model_id": value.model_id,
            "fields": {name: _encode(getattr(value, name), tensors) for name in value.stored_fields()},
        }
    if isinstance(value, (tuple, list)):
        return {type(value).__name__: [_encode(item, tensors) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"dict": {key: _encode(item, tensors) for key, item in value.items()}}
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"embedding value of type {type(value).__name__} cannot be cached")


def _decode(node: Any, tensors: list[torch.Tensor], rgb: np.ndarray, classes: dict[str, type[Embedding]]) -> Any:
    """The value :func:`_encode` made ``node`` of; embeddings get the image ``rgb``."""
    if not isinstance(node, dict):
        return node
    if "embedding" in node:
        fields = {name: _decode(item, tensors, rgb, classes) for name, item in node["fields"].items()}
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        return classes[node["embedding"]](node["backend"], node["model_id"], image_hw, rgb, **fields)
    (tag, content), = node.items()
    if tag == "tensor":
        return tensors[content]
    if tag == "array":
        return tensors[content].numpy()
    if tag == "dict":
        return {key: _decode(item, tensors, rgb, classes) for key, item in content.items()}
    items = [_decode(item, tensors, rgb, classes) for item in content]
    return tuple(items) if tag == "tuple" else items


def _checksum(key: str, tree: Any, tensors: list[torch.Tensor]) -> str:
    """SHA-256 over the key, the tree (every non-tensor value) and each tensor's dtype, shape and bytes."""
    digest = hashlib.sha256(key.encode())
    digest.update(json.dumps(tree, sort_keys=True).encode())
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
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
        """``"<backend>/<model_id>/<image sha256>"`` for an ``(H, W, 3)`` uint8 image (the embedding's source)."""
        backend, model_id = segmenter.embedding_source
        return f"{backend}/{model_id}/{image_digest(rgb)}"

    def path(self, key: str) -> Path:
        """The entry file of ``key``; characters unsafe in file names become ``_``."""
        backend, model_id, digest = key.split("/")
        safe = [re.sub(r"[^A-Za-z0-9._-]", "_", part) for part in (backend, model_id)]
        return self.root.joinpath(*safe, f"{digest}.pt")

    def embed(self, segmenter: Segmenter, image: np.ndarray, progress: ProgressCallback = no_progress) -> Embedding:
        """The embedding of ``image`` by ``segmenter``, from the cache or computed and stored (a tiled one per tile)."""
        if isinstance(segmenter, TiledSegmenter):
            return segmenter.embed_tiles(image, self.embed, progress)
        rgb = to_rgb_uint8(image)
        key = self.key(segmenter, rgb)
        path = self.path(key)
        cached = self._load(path, key, rgb, segmenter)
        if cached is not None:
            progress(1, 1, "embedding loaded from cache")
            return cached
        embedding = segmenter.embed(rgb, progress)
        self._store(path, key, embedding)
        return embedding

    def _store(self, path: Path, key: str, embedding: Embedding) -> None:
        tensors: list[torch.Tensor] = []
        tree = _encode(embedding, tensors)
        payload = {
            "format": FORMAT_VERSION,
            "key": key,
            "tree": tree,
            "tensors": tensors,
            "checksum": _checksum(key, tree, tensors),
        }
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(path, buffer.getbuffer())

    def _load(self, path: Path, key: str, rgb: np.ndarray, segmenter: Segmenter) -> Embedding | None:
        """The entry at ``path``, or ``None`` (deleting the file) when absent, corrupt or foreign."""
        if not path.is_file():
            return None
        embedding = None
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if (
                payload["format"] == FORMAT_VERSION
                and payload["key"] == key
                and payload["checksum"] == _checksum(key, payload["tree"], payload["tensors"])
            ):
                embedding = _decode(payload["tree"], payload["tensors"], rgb, _embedding_classes())
        except Exception:  # truncated zip, garbage bytes, missing fields or classes: all mean "recompute"
            embedding = None
        if not isinstance(embedding, Embedding) or (embedding.backend, embedding.model_id) != segmenter.embedding_source:
            path.unlink(missing_ok=True)
            return None
        return embedding

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
