"""Per-slice embeddings of a volume, computed once each, on demand.

A 200-slice volume is not embedded up front: :meth:`SliceEmbeddings.get`
embeds a slice the first time it is asked for (a prompt on it, or
propagation reaching it) and keeps it, so coming back to a slice (scrolling in
napari, a correction, the other direction of a propagation) costs nothing.
Two tiers:

* memory: the last :data:`IN_MEMORY_SLICES` embeddings used (LRU); SAM's
  ViT-B embedding is 4 MB, SAM 3's tracker's about 110 MB, so a whole volume
  is never held;
* disk: :class:`~segprompt.cache.EmbeddingCache` for the backends whose
  encoder is worth caching (the SAM family), keyed by each slice's pixels, so
  a volume re-opened later, or by another process, skips the encoder.

:meth:`SliceEmbeddings.precompute` runs the first pass over any slices with
progress ("embedding slice 12 (5/40)").

How one image becomes an :class:`~segprompt.backends.base.Embedding` is a
single function (:data:`~segprompt.backends.base.EmbedImage`, by default the
cache's or the backend's ``embed``). Large slices tile through it without
touching the propagation: with a
:class:`~segprompt.backends.tiled.TiledSegmenter` each slice becomes a
:class:`~segprompt.backends.tiled.TiledEmbedding`, its tiles stored in the
disk cache one by one (``segment-volume --tile-shape``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Iterable, Sequence

import numpy as np

from ..backends.base import EmbedImage, Embedding, Segmenter, plain_embed
from ..cache import EmbeddingCache
from ..progress import ProgressCallback, no_progress

#: Embeddings kept in memory (most recently used).
IN_MEMORY_SLICES = 8
#: Backends whose embeddings also go to the disk cache (as ``segprompt segment`` caches them).
DISK_CACHED_BACKENDS = ("sam", "sam2", "sam-hq", "edgetam", "sam3-tracker")


def default_embed_image(segmenter: Segmenter, cache: EmbeddingCache | None = None) -> EmbedImage:
    """``cache.embed`` for the backends in :data:`DISK_CACHED_BACKENDS` (a default cache when ``None``), else :func:`plain_embed`."""
    if segmenter.name not in DISK_CACHED_BACKENDS:
        return plain_embed
    return (cache or EmbeddingCache()).embed


class SliceEmbeddings:
    """The embeddings of ``images[k]`` by ``segmenter``, computed on first use.

    Args:
        segmenter: the backend.
        images: the slices, ``images[k]`` an ``(H, W[, C])`` image (e.g.
            :class:`~segprompt.volume.reader.SliceImages`), read only when a
            slice is embedded.
        embed_image: how a slice is embedded (default :func:`default_embed_image`).
        in_memory: how many embeddings to keep in memory.

    Thread-safe: a napari worker may propagate while the GUI thread asks for
    the current slice; a slice asked for by both is embedded once.
    """

    def __init__(
        self,
        segmenter: Segmenter,
        images: Sequence[np.ndarray],
        embed_image: EmbedImage | None = None,
        in_memory: int = IN_MEMORY_SLICES,
    ) -> None:
        if in_memory < 1:
            raise ValueError(f"in_memory must be >= 1, got {in_memory}")
        self.segmenter = segmenter
        self.images = images
        self.embed_image = embed_image or default_embed_image(segmenter)
        self.in_memory = in_memory
        self._kept: OrderedDict[int, Embedding] = OrderedDict()
        self._done: set[int] = set()
        self._lock = threading.Lock()
        self._slice_locks: dict[int, threading.Lock] = {}

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_hw(self) -> tuple[int, int]:
        """``(H, W)`` of the slices."""
        known = getattr(self.images, "image_hw", None)
        return tuple(known) if known is not None else tuple(np.asarray(self.images[0]).shape[:2])

    @property
    def embedded(self) -> frozenset[int]:
        """Slices embedded at least once by this object (in memory, or in the disk cache when it is used)."""
        with self._lock:
            return frozenset(self._done)

    def get(self, index: int, progress: ProgressCallback = no_progress) -> Embedding:
        """The embedding of slice ``index``: from memory, else computed (or read from the disk cache) and kept."""
        index = int(index)
        if not 0 <= index < len(self.images):
            raise IndexError(f"slice {index} is out of range (0 to {len(self.images) - 1})")
        with self._lock:
            if index in self._kept:
                self._kept.move_to_end(index)
                return self._kept[index]
            slice_lock = self._slice_locks.setdefault(index, threading.Lock())
        with slice_lock:  # another thread embedding the same slice: wait for it instead of doing it twice
            with self._lock:
                if index in self._kept:
                    self._kept.move_to_end(index)
                    return self._kept[index]
            embedding = self.embed_image(self.segmenter, self.images[index], progress)
            with self._lock:
                self._kept[index] = embedding
                self._done.add(index)
                while len(self._kept) > self.in_memory:
                    self._kept.popitem(last=False)
                self._slice_locks.pop(index, None)
        return embedding

    def precompute(self, indices: Iterable[int] | None = None, progress: ProgressCallback = no_progress) -> None:
        """Embed ``indices`` (default every slice) that were not embedded yet, reporting each slice.

        With the disk cache this is the first pass after which every slice
        opens without the encoder; without it only the last
        :attr:`in_memory` stay in memory, so it only warms those.
        """
        wanted = [int(i) for i in (range(len(self.images)) if indices is None else indices)]
        todo = [i for i in wanted if i not in self.embedded]
        for done, index in enumerate(todo):
            progress(done, len(todo), f"embedding slice {index} ({done + 1}/{len(todo)})")
            self.get(index)
        progress(len(todo), len(todo), f"{len(wanted)} slices embedded")


__all__ = ["DISK_CACHED_BACKENDS", "EmbedImage", "IN_MEMORY_SLICES", "SliceEmbeddings", "default_embed_image", "plain_embed"]
