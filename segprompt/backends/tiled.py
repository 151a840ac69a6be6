"""Tiled embeddings for large 2-D images: any point / box / mask backend, tile by tile.

:class:`TiledSegmenter` wraps a backend (SAM, SAM 2, SAM-HQ, EdgeTAM, SAM 3's
tracker, classical, ...) so that a large image is embedded as tiles with a
halo at (close to) full resolution instead of being resized whole into the
encoder's input. Its embedding, :class:`TiledEmbedding`, holds the tiling
geometry (a :class:`~segprompt.tiling.TileGrid`) and one embedding of the
wrapped backend per tile, each made from the tile's window exactly as that
backend embeds any image. Prompts go to the tiles they touch and the answers
are stitched by the rules of :mod:`segprompt.tiling`:

* a prompt that fits inside one tile's window is answered by that tile alone:
  the mask equals what the backend answers on the window cropped out of the
  image, pasted back (``K`` candidates, the tile's scores);
* a prompt spanning tiles is answered by every tile whose core it touches
  (points and box clipped to each window, a mask cropped), each pixel taken
  from the nearest answering core. Candidate ``k`` of the answer stitches
  every tile's candidate ``k`` when all tiles gave the same number (SAM's
  multimask outputs are the same output tokens in every tile), else each
  tile's best; a candidate's score is the tiles' scores weighted by the
  pixels each contributed to it.

Masks are in original-image pixels; prompts in original-image ``(x, y)``.
A tiled answer has no low-resolution logits (they would belong to one tile's
frame), so a ``"logits"`` mask prompt is refused; binary mask prompts work.

The embedding cache stores a tiled embedding tile by tile under the wrapped
backend's key (:meth:`TiledSegmenter.embed_tiles`, used by
:meth:`segprompt.cache.EmbeddingCache.embed`): re-opening the image skips the
encoder for every tile, and an image no larger than one tile shares its entry
with the untiled backend. Segment-everything runs tile by tile
(:mod:`segprompt.everything.tiled`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SegpromptError, UnsupportedPromptError
from ..progress import ProgressCallback, no_progress
from ..prompts import Prompt
from ..tiling import TileGrid, check_tiling, prompt_extent, prompt_in_window, route, stitch, tile_grid
from .base import EmbedImage, Embedding, Prediction, Segmenter, plain_embed

#: Prompt kinds that say where the object is: the ones a tiled backend can route.
ROUTABLE_KINDS = frozenset({"points", "box", "mask"})
#: Context added on each side of a tile when only the tile shape is given, px.
DEFAULT_HALO = 128


@dataclass(eq=False)
class TiledEmbedding(Embedding):
    """A large image's embedding: the tiling and one embedding of the wrapped backend per tile.

    Attributes:
        grid: the tiles (cores, windows) over ``image_hw``.
        tiles: ``tiles[i]`` is the wrapped backend's embedding of the
            ``grid.tiles[i].window`` crop of the image (its ``image_hw`` is the
            window's shape, its frame the window's pixels).
    """

    grid: TileGrid
    tiles: tuple[Embedding, ...]

    def __post_init__(self) -> None:
        if len(self.tiles) != len(self.grid):
            raise ValueError(f"TiledEmbedding: {len(self.tiles)} tile embeddings for a grid of {len(self.grid)} tiles")


class TiledSegmenter(Segmenter):
    """A backend answering on a large image tile by tile (see the module docstring).

    Args:
        inner: the backend embedding and answering each tile; it must take
            points, boxes or masks (text and references say nothing about
            where, so they cannot be routed to a tile).
        tile_shape: largest tile core, ``(rows, cols)`` or one side for both, px.
        halo: context on each side of a core, ``(rows, cols)`` or one value, px.
            An object up to ``halo`` px across lies wholly inside some tile's
            window. ``tile_shape + 2 * halo = 1024`` feeds SAM its native
            resolution (e.g. 768 and 128).

    The wrapper answers under the inner backend's :attr:`name` (so its
    everything generator and cache policy apply); its :attr:`model_id`
    appends the tiling, so a tiled and an untiled embedding are never mixed.
    """

    description = "any point/box/mask backend on a large image, tile by tile with a halo"

    def __init__(self, inner: Segmenter, tile_shape: int | tuple[int, int] = 1024, halo: int | tuple[int, int] = DEFAULT_HALO) -> None:
        if isinstance(inner, TiledSegmenter):
            raise SegpromptError(f"backend {inner.name!r} is already tiled ({inner.tiling})")
        self.check_backend(inner)
        self.inner = inner
        self.tile_shape, self.halo = check_tiling(tile_shape, halo)

    @staticmethod
    def check_backend(backend: Segmenter | type[Segmenter]) -> None:
        """Raise :class:`SegpromptError` unless ``backend`` (an instance or class) takes points, boxes or masks."""
        if not backend.accepts & ROUTABLE_KINDS:
            raise SegpromptError(
                f"backend {backend.name!r} cannot be tiled: it takes {', '.join(sorted(backend.accepts))} prompts, "
                "and tiling routes points, boxes and masks to the tiles they touch"
            )

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def accepts(self) -> frozenset[str]:  # type: ignore[override]
        return self.inner.accepts & ROUTABLE_KINDS

    @property
    def tiling(self) -> str:
        """``"tiles 1024x1024 halo 128x128"``: the tiling, as it appears in :attr:`model_id`."""
        return f"tiles {self.tile_shape[0]}x{self.tile_shape[1]} halo {self.halo[0]}x{self.halo[1]}"

    @property
    def model_id(self) -> str:
        return f"{self.inner.model_id} | {self.tiling}"

    @property
    def embedding_source(self) -> tuple[str, str]:
        backend, model_id = self.inner.embedding_source
        return backend, f"{model_id} | {self.tiling}"

    def grid(self, image_hw: tuple[int, int]) -> TileGrid:
        """The tiles of an ``(H, W)`` image."""
        return tile_grid(image_hw, self.tile_shape, self.halo)

    def embed(self, image: np.ndarray, progress: ProgressCallback = no_progress) -> TiledEmbedding:
        """Embed every tile of an ``(H, W[, C])`` image with the wrapped backend's ``embed``."""
        return self.embed_tiles(image, plain_embed, progress)

    def embed_tiles(self, image: np.ndarray, embed_image: EmbedImage, progress: ProgressCallback = no_progress) -> TiledEmbedding:
        """Embed every tile's window with ``embed_image(inner, window, progress)`` (e.g. the cache's ``embed``).

        Reports ``progress(i, n, "embedding tile i+1/n")`` per tile.
        """
        rgb = self._rgb(image)
        grid = self.grid((int(rgb.shape[0]), int(rgb.shape[1])))
        count = len(grid)
        tiles = []
        for tile in grid.tiles:
            progress(tile.index, count, f"{self.name}: embedding tile {tile.index + 1}/{count}")
            tiles.append(embed_image(self.inner, np.ascontiguousarray(rgb[tile.window.slices]), no_progress))
        progress(count, count, f"{self.name}: {count} tiles embedded ({self.tiling})")
        backend, model_id = self.embedding_source
        return TiledEmbedding(backend, model_id, grid.image_hw, rgb, grid, tuple(tiles))

    def check_prompt(self, prompt: Prompt) -> None:
        super().check_prompt(prompt)
        if prompt.mask is not None and prompt.mask.kind == "logits":
            raise UnsupportedPromptError(
                f"backend {self.name!r} with {self.tiling}: give the mask prompt as a binary mask; "
                "low-resolution logits belong to one tile's frame"
            )

    def check_embedding(self, embedding: Embedding) -> None:
        super().check_embedding(embedding)
        if not isinstance(embedding, TiledEmbedding):
            raise ValueError(f"a tiled backend answers from a TiledEmbedding, got {type(embedding).__name__}")

    def _predict(self, embedding: TiledEmbedding, prompt: Prompt, multimask: bool) -> Prediction:
        grid = embedding.grid
        extent = prompt_extent(prompt)  # never None: validate_for refused prompts saying nothing about where
        answers: dict[int, Prediction] = {}
        for index in route(grid, extent):
            local = prompt_in_window(prompt, grid.tiles[index].window)
            if local is not None:  # a spanning prompt always leaves something in the tile holding one of its parts
                answers[index] = self.inner.predict(embedding.tiles[index], local, multimask)
        return stitch_predictions(grid, answers)


def stitch_predictions(grid: TileGrid, answers: dict[int, Prediction]) -> Prediction:
    """One :class:`Prediction` over the image from the answering tiles' (module docstring)."""
    if len(answers) == 1:  # its whole window, its candidates and scores as they are
        ((index, prediction),) = answers.items()
        masks = np.zeros((len(prediction.scores), *grid.image_hw), bool)
        masks[(slice(None), *grid.tiles[index].window.slices)] = prediction.masks
        return Prediction(masks=masks, scores=prediction.scores, methods=prediction.methods)
    positional = len({len(prediction.scores) for prediction in answers.values()}) == 1
    chosen = {index: prediction if positional else prediction.subset([prediction.best]) for index, prediction in answers.items()}
    masks, pixels = stitch(grid, {index: prediction.masks for index, prediction in chosen.items()})
    order = sorted(chosen)
    weights = np.stack([pixels[index] for index in order]).astype(np.float64)  # (T, K)
    scores = np.stack([chosen[index].scores for index in order]).astype(np.float64)  # (T, K)
    total = weights.sum(axis=0)
    mean = np.where(total > 0, (weights * scores).sum(axis=0) / np.maximum(total, 1.0), scores.mean(axis=0))
    methods = None
    if all(chosen[index].methods is not None for index in order):
        main = np.argmax(weights, axis=0)  # per candidate, the tile giving most pixels
        methods = tuple(chosen[order[tile]].methods[k] for k, tile in enumerate(main))  # type: ignore[index]
    return Prediction(masks=masks, scores=mean.astype(np.float32), methods=methods)


__all__ = ["DEFAULT_HALO", "ROUTABLE_KINDS", "TiledEmbedding", "TiledSegmenter", "stitch_predictions"]
