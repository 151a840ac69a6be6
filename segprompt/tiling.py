"""Tiles with a halo over a large 2-D image: the grid, where a prompt goes, how answers are stitched.

SAM-like encoders see a fixed square input (SAM: 1024 px), so a 4,000 x 4,000
slide resized whole loses every small object. Tiling embeds the image piece
by piece at (close to) full resolution instead, as micro-sam does with its
``tile_shape`` and ``halo``. Everything here is pure geometry on ``(row,
col)`` pixel coordinates of the original image; the segmenter that uses it
is :class:`segprompt.backends.tiled.TiledSegmenter`.

Grid (:func:`tile_grid`)
    The image is cut into ``ceil(H / tile_rows) x ceil(W / tile_cols)``
    *cores* of nearly equal size (they differ by at most one pixel, never
    exceed ``tile_shape``, and no thin sliver is left at the border). Each
    core, grown by ``halo`` pixels on every side and clipped to the image,
    is the tile's *window*: the pixels its encoder sees. Cores partition the
    image; windows overlap by twice the halo. Tiles are numbered row by row.

Routing (:func:`route`)
    A prompt's *extent* is the pixel box around its include points, its box
    and its binary mask (exclude points say where the object is not, so they
    do not count). When some window holds the whole extent, one tile answers:
    among those windows, the tile whose core centre lies nearest the
    extent's centre (ties: the lower index). Its answer equals segmenting
    that window on its own. Otherwise the prompt spans tiles, and every tile
    whose core the extent touches answers the part of the prompt inside its
    window (:func:`prompt_in_window`).

Stitching (:func:`ownership`, :func:`stitch`)
    Each pixel takes the answer of the answering tile whose core lies
    nearest to it (Euclidean distance to the core rectangle, 0 inside it;
    ties: the lower index), among the tiles whose window holds it; pixels no
    answering window holds are background. One answering tile therefore
    gives its whole window. Several give one core each (a core's border
    pixels were decided with ``halo`` pixels of context on the other side,
    so the answers meet without a seam) plus, at the outside of the group,
    the halo nearest to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .errors import SegpromptError
from .prompts import MIN_BOX_SIDE, Box, MaskPrompt, Points, Prompt

#: Cores are at least this many pixels along each axis (the image permitting): smaller ones hold too little context.
MIN_TILE_SIDE = 32


@dataclass(frozen=True)
class Region:
    """Rows ``row0 .. row1 - 1`` and columns ``col0 .. col1 - 1`` of an image (ends exclusive)."""

    row0: int
    col0: int
    row1: int
    col1: int

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return self.row1 - self.row0, self.col1 - self.col0

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(row slice, column slice)`` indexing the region in an ``(H, W, ...)`` array."""
        return slice(self.row0, self.row1), slice(self.col0, self.col1)

    @property
    def area(self) -> int:
        return max(0, self.row1 - self.row0) * max(0, self.col1 - self.col0)

    def contains(self, other: Region) -> bool:
        """Whether every pixel of ``other`` lies in this region."""
        return (
            self.row0 <= other.row0 and other.row1 <= self.row1 and self.col0 <= other.col0 and other.col1 <= self.col1
        )

    def intersection(self, other: Region) -> Region | None:
        """The pixels of both, or ``None`` when they share none."""
        region = Region(
            max(self.row0, other.row0), max(self.col0, other.col0), min(self.row1, other.row1), min(self.col1, other.col1)
        )
        return region if region.row0 < region.row1 and region.col0 < region.col1 else None

    def bounding(self, other: Region) -> Region:
        """The smallest region holding both."""
        return Region(
            min(self.row0, other.row0), min(self.col0, other.col0), max(self.row1, other.row1), max(self.col1, other.col1)
        )

    def centre(self) -> tuple[float, float]:
        """``(row, col)`` of the centre, in continuous pixel coordinates (pixel ``r`` spans ``[r, r + 1)``)."""
        return (self.row0 + self.row1) / 2.0, (self.col0 + self.col1) / 2.0

    def within(self, outer: Region) -> Region:
        """This region in ``outer``'s coordinates (shifted by ``outer``'s top-left corner)."""
        return Region(self.row0 - outer.row0, self.col0 - outer.col0, self.row1 - outer.row0, self.col1 - outer.col0)


@dataclass(frozen=True)
class Tile:
    """One tile of a :class:`TileGrid`.

    Attributes:
        index: position in :attr:`TileGrid.tiles` (row by row).
        position: ``(grid row, grid column)``.
        core: the pixels this tile owns (cores partition the image).
        window: the core grown by the halo, clipped to the image: what its encoder sees.
    """

    index: int
    position: tuple[int, int]
    core: Region
    window: Region

    def interior_edges(self, image_hw: tuple[int, int]) -> tuple[bool, bool, bool, bool]:
        """Whether the window's ``(top, left, bottom, right)`` edge lies inside the image (not on its border)."""
        window = self.window
        return window.row0 > 0, window.col0 > 0, window.row1 < image_hw[0], window.col1 < image_hw[1]


@dataclass(frozen=True)
class TileGrid:
    """Tiles with a halo over an ``image_hw`` image (see the module docstring).

    Attributes:
        image_hw: ``(H, W)`` of the image.
        tile_shape: ``(rows, cols)``, the largest core.
        halo: ``(rows, cols)`` added to each side of a core to make its window.
        tiles: every tile, row by row.
    """

    image_hw: tuple[int, int]
    tile_shape: tuple[int, int]
    halo: tuple[int, int]
    tiles: tuple[Tile, ...]

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def grid_hw(self) -> tuple[int, int]:
        """``(tile rows, tile columns)``."""
        last = self.tiles[-1].position
        return last[0] + 1, last[1] + 1


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """``value`` as ``(rows, cols)``: one integer for both axes, or two.

    Raises:
        SegpromptError: not one or two integers, naming ``name``.
    """
    values = [value] if isinstance(value, (int, np.integer)) or not isinstance(value, Sequence) else list(value)
    if len(values) not in (1, 2) or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        raise SegpromptError(f"{name}: expected one integer or two (rows, cols), got {value!r}")
    return int(values[0]), int(values[-1])


def check_tiling(tile_shape: int | Sequence[int], halo: int | Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(tile_shape, halo)`` as ``(rows, cols)`` pairs, checked.

    Raises:
        SegpromptError: not integers, a tile side below :data:`MIN_TILE_SIDE`
            or a negative halo, naming the value.
    """
    tile_rows, tile_cols = pair(tile_shape, "tile_shape")
    halo_rows, halo_cols = pair(halo, "halo")
    if min(tile_rows, tile_cols) < MIN_TILE_SIDE:
        raise SegpromptError(f"tile_shape: tiles must be at least {MIN_TILE_SIDE} px per side, got {tile_rows} x {tile_cols}")
    if min(halo_rows, halo_cols) < 0:
        raise SegpromptError(f"halo: must be >= 0 px, got {halo_rows} x {halo_cols}")
    return (tile_rows, tile_cols), (halo_rows, halo_cols)


def tile_grid(image_hw: tuple[int, int], tile_shape: int | Sequence[int], halo: int | Sequence[int]) -> TileGrid:
    """The tiles of an ``(H, W)`` image: near-equal cores of at most ``tile_shape``, windows grown by ``halo``.

    Args:
        image_hw: ``(H, W)`` of the image.
        tile_shape: largest core, ``(rows, cols)`` or one side for both (at
            least :data:`MIN_TILE_SIDE`).
        halo: context added on each side of a core, ``(rows, cols)`` or one
            value for both (``>= 0``).

    Raises:
        SegpromptError: a tile side below :data:`MIN_TILE_SIDE` or a negative halo, naming the value.
    """
    (tile_rows, tile_cols), (halo_rows, halo_cols) = check_tiling(tile_shape, halo)
    height, width = int(image_hw[0]), int(image_hw[1])
    row_edges = _edges(height, tile_rows)
    col_edges = _edges(width, tile_cols)
    tiles = []
    for i in range(len(row_edges) - 1):
        for j in range(len(col_edges) - 1):
            core = Region(int(row_edges[i]), int(col_edges[j]), int(row_edges[i + 1]), int(col_edges[j + 1]))
            window = Region(
                max(0, core.row0 - halo_rows), max(0, core.col0 - halo_cols),
                min(height, core.row1 + halo_rows), min(width, core.col1 + halo_cols),
            )
            tiles.append(Tile(len(tiles), (i, j), core, window))
    return TileGrid((height, width), (tile_rows, tile_cols), (halo_rows, halo_cols), tuple(tiles))


def _edges(length: int, side: int) -> np.ndarray:
    """``n + 1`` edges of ``n = ceil(length / side)`` near-equal parts of ``0 .. length``."""
    count = max(1, -(-length // side))
    return (np.arange(count + 1) * length) // count


def prompt_extent(prompt: Prompt) -> Region | None:
    """The pixels around the prompt's include points, box and binary mask; ``None`` when it has none of them.

    A point ``(x, y)`` is pixel ``(floor(y), floor(x))``; a box covers the
    pixels it overlaps.
    """
    extent: Region | None = None
    parts: list[Region] = []
    if prompt.points is not None and len(prompt.points.include):
        include = np.floor(prompt.points.include).astype(np.int64)
        parts.append(Region(int(include[:, 1].min()), int(include[:, 0].min()),
                            int(include[:, 1].max()) + 1, int(include[:, 0].max()) + 1))
    if prompt.box is not None:
        box = prompt.box
        parts.append(Region(int(np.floor(box.y0)), int(np.floor(box.x0)), int(np.ceil(box.y1)), int(np.ceil(box.x1))))
    if prompt.mask is not None and prompt.mask.kind == "binary" and prompt.mask.data.any():
        rows, cols = np.nonzero(prompt.mask.data)
        parts.append(Region(int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
    for part in parts:
        extent = part if extent is None else extent.bounding(part)
    return extent


def route(grid: TileGrid, extent: Region) -> tuple[int, ...]:
    """Indices of the tiles that answer a prompt of ``extent`` (module docstring, "Routing").

    One tile when a window holds the whole extent (the one whose core centre
    is nearest the extent's centre), else every tile whose core it touches.
    """
    holding = [tile for tile in grid.tiles if tile.window.contains(extent)]
    if holding:
        row, col = extent.centre()

        def distance(tile: Tile) -> tuple[float, int]:
            core_row, core_col = tile.core.centre()
            return (core_row - row) ** 2 + (core_col - col) ** 2, tile.index

        return (min(holding, key=distance).index,)
    return tuple(tile.index for tile in grid.tiles if tile.core.intersection(extent) is not None)


def prompt_in_window(prompt: Prompt, window: Region) -> Prompt | None:
    """The parts of ``prompt`` inside ``window``, in the window's pixel frame; ``None`` when nothing says where.

    Points outside the window are dropped; the box is clipped to the window
    (and widened to :data:`~segprompt.prompts.MIN_BOX_SIDE` inside it if
    clipping left a sliver); a binary mask is cropped (dropped if nothing of
    it is left). When neither an include point, nor a box, nor a mask is left
    the tile has nothing to answer. Only points, box and mask are kept
    (other kinds say nothing about where).
    """
    offset = np.array([window.col0, window.row0], np.float64)  # (x, y)
    height, width = window.shape
    parts: dict[str, object] = {"points": None, "box": None, "mask": None}
    if prompt.points is not None:
        xy = prompt.points.xy - offset
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
        if inside.any():
            parts["points"] = Points(xy[inside], prompt.points.labels[inside])
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box.as_array() - np.concatenate([offset, offset])
        x0, x1 = _clip_span(x0, x1, width)
        y0, y1 = _clip_span(y0, y1, height)
        if x0 is not None and y0 is not None:
            parts["box"] = Box(x0, y0, x1, y1)
    if prompt.mask is not None:
        crop = prompt.mask.data[window.slices]
        if crop.any():
            parts["mask"] = MaskPrompt(crop)
    points = parts["points"]
    has_include = isinstance(points, Points) and len(points.include) > 0
    if not has_include and parts["box"] is None and parts["mask"] is None:
        return None
    return Prompt(**parts)  # type: ignore[arg-type]


def _clip_span(start: float, end: float, length: int) -> tuple[float | None, float | None]:
    """``[start, end)`` clipped to ``[0, length]``, widened to :data:`MIN_BOX_SIDE` inside it; ``(None, None)`` if disjoint."""
    start, end = max(0.0, float(start)), min(float(length), float(end))
    if end <= start:
        return None, None
    if end - start < MIN_BOX_SIDE:
        end = min(float(length), start + MIN_BOX_SIDE)
        start = max(0.0, end - MIN_BOX_SIDE)
    return start, end


def ownership(grid: TileGrid, indices: Sequence[int]) -> tuple[Region, np.ndarray]:
    """Which of the tiles ``indices`` owns each pixel (module docstring, "Stitching").

    Returns:
        ``(region, owner)``: the bounding region of the tiles' windows and an
        ``owner`` array of its shape holding, per pixel, the owning tile's
        index (``-1`` where no window of ``indices`` reaches).
    """
    tiles = [grid.tiles[i] for i in sorted(set(indices))]
    region = tiles[0].window
    for tile in tiles[1:]:
        region = region.bounding(tile.window)
    owner = np.full(region.shape, -1, np.int32)
    nearest = np.full(region.shape, np.iinfo(np.int32).max, np.int32)  # squared distance to the owner's core
    for tile in tiles:  # ascending index: a tie keeps the lower index (strict <)
        window, core = tile.window, tile.core
        rows = np.arange(window.row0, window.row1)
        cols = np.arange(window.col0, window.col1)
        row_gap = np.maximum(np.maximum(core.row0 - rows, rows - (core.row1 - 1)), 0)
        col_gap = np.maximum(np.maximum(core.col0 - cols, cols - (core.col1 - 1)), 0)
        distance = (row_gap[:, None] ** 2 + col_gap[None, :] ** 2).astype(np.int32)
        local = window.within(region).slices
        closer = distance < nearest[local]
        nearest[local][closer] = distance[closer]
        owner[local][closer] = tile.index
    return region, owner


def stitch(grid: TileGrid, answers: Mapping[int, np.ndarray]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Stitch per-tile masks into image masks by :func:`ownership`.

    Args:
        grid: the tiles.
        answers: tile index -> ``(K, h, w)`` bool masks over that tile's
            window (the same ``K`` for every tile).

    Returns:
        ``(masks, counts)``: ``(K, H, W)`` bool masks in image pixels, and per
        answering tile the ``(K,)`` number of mask pixels it contributed.
    """
    first = next(iter(answers.values()))
    masks = np.zeros((first.shape[0], *grid.image_hw), bool)
    region, owner = ownership(grid, list(answers))
    counts = {}
    for index, tile_masks in answers.items():
        window = grid.tiles[index].window
        owned = owner[window.within(region).slices] == index  # (h, w)
        kept = tile_masks & owned[None]
        masks[(slice(None), *window.slices)] |= kept
        counts[index] = kept.reshape(kept.shape[0], -1).sum(axis=1)
    return masks, counts


__all__ = [
    "MIN_TILE_SIDE",
    "Region",
    "Tile",
    "TileGrid",
    "check_tiling",
    "ownership",
    "pair",
    "prompt_extent",
    "prompt_in_window",
    "route",
    "stitch",
    "tile_grid",
]
