"""Segment everything tile by tile on a tiled embedding, with any backend's generator.

:func:`segment_everything <segprompt.everything.segment_everything>` comes
here for a :class:`~segprompt.backends.tiled.TiledSegmenter`: the wrapped
backend's generator (``classical``, ``sam``, ...) runs on each tile's
embedding as on any image, and :func:`merge_tiles` turns the tiles' objects
into the image's:

1. **Map back.** Each object's mask moves from its tile's window to image
   pixels. An object touching an edge of its window that lies inside the
   image is *cut* (the window ends there, not the object); the others are
   *whole*.
2. **Whole objects.** An object up to ``halo`` px across lies wholly inside
   some window, and one inside two windows is found twice. Whole objects are
   taken best first, those whose box centre lies in their own tile's core
   before the others (then by score); one overlapping an object already
   taken from another tile with mask IoU >= ``duplicate_iou`` is that
   object again and is dropped.
3. **Cut objects.** A cut object mostly (>= half its pixels) covered by
   whole objects taken is dropped (a window saw it whole). The remaining cut
   pieces are objects larger than the halo allows: pieces of different
   tiles that agree where their windows overlap (IoU >= ``duplicate_iou``
   inside the overlap) are one object, stitched by the nearest-core rule of
   :mod:`segprompt.tiling` (each pixel from the piece whose tile's core is
   nearest), scored by the pieces' scores weighted by their pixels. A
   piece nothing agrees with stays as it is (with ``halo = 0`` windows do
   not overlap, so objects crossing a tile border stay one piece per tile).

Objects of one tile are never merged with each other (the generator's own
rules hold there). The result is sorted best first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..backends.tiled import TiledEmbedding, TiledSegmenter
from ..instances import Instances
from ..progress import ProgressCallback, no_progress
from ..tiling import Region, TileGrid, stitch

#: Two objects with at least this mask IoU are one object found twice (the usual matching threshold).
DUPLICATE_IOU = 0.5
#: A cut piece this much covered by whole objects already taken is one of them.
COVERED_FRACTION = 0.5


@dataclass(eq=False)
class _Piece:
    """One object of one tile, in image pixels: its tight ``region`` and its mask cropped to it."""

    tile: int
    order: int
    score: float
    class_name: str | None
    region: Region
    mask: np.ndarray
    cut: bool

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def inside(self, region: Region) -> tuple[Region, np.ndarray] | None:
        """The part of the mask inside ``region``: its region and mask, or ``None`` when they do not meet."""
        common = self.region.intersection(region)
        if common is None:
            return None
        return common, self.mask[common.within(self.region).slices]


def _overlap(a: tuple[Region, np.ndarray] | None, b: tuple[Region, np.ndarray] | None) -> int:
    """Pixels two region-cropped masks share."""
    if a is None or b is None:
        return 0
    common = a[0].intersection(b[0])
    if common is None:
        return 0
    return int((a[1][common.within(a[0]).slices] & b[1][common.within(b[0]).slices]).sum())


def _iou(a: tuple[Region, np.ndarray] | None, b: tuple[Region, np.ndarray] | None) -> float:
    shared = _overlap(a, b)
    union = (0 if a is None else int(a[1].sum())) + (0 if b is None else int(b[1].sum())) - shared
    return shared / union if union else 0.0


def _pieces(grid: TileGrid, per_tile: Sequence[Instances]) -> list[_Piece]:
    """Every non-empty object of every tile in image pixels, cut or whole (step 1)."""
    named = all(instances.class_names is not None for instances in per_tile)
    pieces = []
    for tile, instances in zip(grid.tiles, per_tile):
        top, left, bottom, right = tile.interior_edges(grid.image_hw)
        height, width = tile.window.shape
        for k in range(len(instances)):
            mask = instances.masks[k]
            rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            if not rows.size:
                continue
            local = Region(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
            cut = (top and local.row0 == 0) or (left and local.col0 == 0) or (bottom and local.row1 == height) or (
                right and local.col1 == width
            )
            window = tile.window
            region = Region(local.row0 + window.row0, local.col0 + window.col0, local.row1 + window.row0, local.col1 + window.col0)
            name = instances.class_names[k] if named else None  # type: ignore[index]
            pieces.append(_Piece(tile.index, k, float(instances.scores[k]), name, region, mask[local.slices].copy(), cut))
    return pieces


def _owned(grid: TileGrid, piece: _Piece) -> bool:
    """Whether the piece's box centre lies in its own tile's core."""
    row, col = (int(np.floor(value)) for value in piece.region.centre())
    return grid.tiles[piece.tile].core.contains(Region(row, col, row + 1, col + 1))


def _whole(grid: TileGrid, pieces: list[_Piece], duplicate_iou: float) -> list[_Piece]:
    """Step 2: the whole objects kept, one per object found in several windows."""
    order = sorted(pieces, key=lambda p: (not _owned(grid, p), -p.score, p.tile, p.order))
    kept: list[_Piece] = []
    for piece in order:
        box = (piece.region, piece.mask)
        if not any(
            other.tile != piece.tile and _iou(box, (other.region, other.mask)) >= duplicate_iou for other in kept
        ):
            kept.append(piece)
    return kept


def _covered(piece: _Piece, kept: list[_Piece]) -> float:
    """Fraction of ``piece``'s pixels inside the kept objects."""
    canvas = np.zeros(piece.mask.shape, bool)
    for other in kept:
        part = other.inside(piece.region)
        if part is not None:
            canvas[part[0].within(piece.region).slices] |= part[1]
    return float((canvas & piece.mask).sum()) / max(piece.area, 1)


def _groups(grid: TileGrid, pieces: list[_Piece], duplicate_iou: float) -> list[list[_Piece]]:
    """Step 3: cut pieces of different tiles agreeing where their windows overlap, grouped (union-find)."""
    parent = list(range(len(pieces)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(pieces):
        for j in range(i + 1, len(pieces)):
            b = pieces[j]
            if a.tile == b.tile or a.region.intersection(b.region) is None:
                continue
            shared = grid.tiles[a.tile].window.intersection(grid.tiles[b.tile].window)
            if shared is not None and _iou(a.inside(shared), b.inside(shared)) >= duplicate_iou:
                parent[root(j)] = root(i)
    groups: dict[int, list[_Piece]] = {}
    for i, piece in enumerate(pieces):
        groups.setdefault(root(i), []).append(piece)
    return list(groups.values())


def _stitched(grid: TileGrid, group: list[_Piece]) -> _Piece:
    """One object from a group of cut pieces: each pixel from the piece whose tile's core is nearest."""
    if len(group) == 1:
        return group[0]
    answers: dict[int, np.ndarray] = {}
    for piece in group:
        window = grid.tiles[piece.tile].window
        canvas = answers.setdefault(piece.tile, np.zeros((1, *window.shape), bool))
        canvas[(0, *piece.region.within(window).slices)] |= piece.mask
    masks, pixels = stitch(grid, answers)
    mask = masks[0]
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    region = Region(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    weight = {tile: float(count[0]) for tile, count in pixels.items()}
    scores = {tile: max(p.score for p in group if p.tile == tile) for tile in answers}
    total = sum(weight.values())
    score = sum(weight[t] * scores[t] for t in answers) / total if total else float(np.mean(list(scores.values())))
    main = max(group, key=lambda p: (weight[p.tile], p.area))
    return _Piece(main.tile, main.order, score, main.class_name, region, mask[region.slices], True)


def merge_tiles(grid: TileGrid, per_tile: Sequence[Instances], duplicate_iou: float = DUPLICATE_IOU) -> Instances:
    """The image's objects from each tile's (module docstring).

    Args:
        grid: the tiles.
        per_tile: ``per_tile[i]`` the objects found in tile ``i``'s window,
            masks over the window (``(N_i, h_i, w_i)``).
        duplicate_iou: the IoU above which two objects are one.

    Returns:
        :class:`Instances` over the whole image, best first; class names kept
        when every tile has them.
    """
    if len(per_tile) != len(grid):
        raise ValueError(f"merge_tiles: {len(per_tile)} tile results for a grid of {len(grid)} tiles")
    pieces = _pieces(grid, per_tile)
    kept = _whole(grid, [p for p in pieces if not p.cut], duplicate_iou)
    remaining = [p for p in pieces if p.cut and _covered(p, kept) < COVERED_FRACTION]
    kept += [_stitched(grid, group) for group in _groups(grid, remaining, duplicate_iou)]
    masks = np.zeros((len(kept), *grid.image_hw), bool)
    for index, piece in enumerate(kept):
        masks[(index, *piece.region.slices)] = piece.mask
    named = all(instances.class_names is not None for instances in per_tile)
    names = tuple(piece.class_name or "" for piece in kept) if named else None
    return Instances(masks, np.array([piece.score for piece in kept], np.float32), class_names=names).sorted()


def tiled_everything(
    generator: Any, segmenter: TiledSegmenter, embedding: TiledEmbedding, settings: Any, progress: ProgressCallback = no_progress
) -> Instances:
    """Run ``generator`` (a :data:`~segprompt.everything.GENERATORS` entry) on every tile, then :func:`merge_tiles`."""
    grid = embedding.grid
    count = len(grid)
    per_tile = []
    for tile in grid.tiles:
        progress(tile.index, count + 1, f"{segmenter.name} everything: tile {tile.index + 1}/{count}")
        per_tile.append(generator.generate(segmenter.inner, embedding.tiles[tile.index], settings, no_progress))
    progress(count, count + 1, f"{segmenter.name} everything: merging {count} tiles")
    instances = merge_tiles(grid, per_tile)
    progress(count + 1, count + 1, f"{segmenter.name} everything: {len(instances)} objects")
    return instances


__all__ = ["COVERED_FRACTION", "DUPLICATE_IOU", "merge_tiles", "tiled_everything"]
