"""``--tile-shape`` and ``--halo``: the flags that segment a large image tile by tile.

The verbs that take them (``segment``, ``everything``, ``refine``,
``replay``, ``segment-volume``) pass them on as the backend options
``tile_shape`` / ``halo`` (:func:`segprompt.backends.create_from_options`), so
the backend is wrapped in a :class:`~segprompt.backends.tiled.TiledSegmenter`
and a saved session rebuilds the same tiling. Both are checked, with the
backend, before any weights load.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..backends import get_backend_class
from ..backends.tiled import DEFAULT_HALO, TiledSegmenter
from ..errors import SegpromptError
from ..tiling import check_tiling


def parse_pixels(text: str) -> tuple[int, int]:
    """``"1024"`` or ``"1024,768"`` (rows, cols) -> ``(rows, cols)`` (argparse type)."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (1, 2) or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected PX or ROWS,COLS in whole pixels, got {text!r}")
    return int(parts[0]), int(parts[-1])


def add_arguments(group: argparse._ActionsContainer) -> None:
    """Add ``--tile-shape`` and ``--halo`` to a parser or argument group."""
    group.add_argument(
        "--tile-shape", type=parse_pixels, metavar="PX|ROWS,COLS",
        help="embed the image in tiles of at most this size with a halo, at full resolution instead of resized "
        "whole; prompts go to the tiles they touch (e.g. 1024)",
    )
    group.add_argument(
        "--halo", type=parse_pixels, metavar="PX|ROWS,COLS",
        help=f"context added around each tile, px (default {DEFAULT_HALO} with --tile-shape); objects up to this "
        "size lie wholly inside one tile's window",
    )


def tiling_options(args: argparse.Namespace, backend: str) -> dict[str, Any]:
    """``{"tile_shape": [rows, cols], "halo": [rows, cols]}`` of the flags given (``{}`` without them), checked.

    Raises:
        SegpromptError: ``--halo`` without ``--tile-shape``, a tile too small,
            or a backend that cannot be tiled, naming the flag.
    """
    tile_shape, halo = getattr(args, "tile_shape", None), getattr(args, "halo", None)
    if tile_shape is None:
        if halo is not None:
            raise SegpromptError("--halo needs --tile-shape (the halo is the context around each tile)")
        return {}
    halo = (DEFAULT_HALO, DEFAULT_HALO) if halo is None else halo
    try:
        check_tiling(tile_shape, halo)
        TiledSegmenter.check_backend(get_backend_class(backend))
    except SegpromptError as exc:
        raise SegpromptError(f"--tile-shape: {exc}") from None
    return {"tile_shape": list(tile_shape), "halo": list(halo)}


__all__ = ["add_arguments", "parse_pixels", "tiling_options"]
