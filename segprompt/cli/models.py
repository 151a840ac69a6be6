"""``segprompt models``: what can segment here.

Lists every registered backend with the prompt kinds it accepts (or why it
cannot be loaded), the official SAM checkpoints with whether each file is in
the cache, and the cache folder with the size of the embedding cache.
``segprompt models --fetch vit_b`` downloads (once) and verifies a checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
import textwrap
from itertools import zip_longest

from ..backends import backend_names, get_backend_class
from ..cache import EmbeddingCache
from ..paths import cache_root
from ..checkpoints import SAM_CHECKPOINTS, cached_checkpoints, checkpoint_dir, fetch_checkpoint
from ..errors import SegpromptError
from .progress import tqdm_progress


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list backends, SAM checkpoints and the cache")
    parser.add_argument(
        "--fetch",
        choices=sorted(SAM_CHECKPOINTS),
        metavar="MODEL_TYPE",
        help=f"download (if missing) and verify the official SAM checkpoint ({', '.join(SAM_CHECKPOINTS)})",
    )
    parser.set_defaults(func=run)


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    raise AssertionError("unreachable")


#: Width of the accepted-prompts column of the backend table.
KINDS_WIDTH = 24


def table(rows: list[tuple[str, ...]], widths: list[int], width: int) -> list[str]:
    """Rows as lines indented by two, columns two spaces apart, each cell wrapped to its column.

    ``widths`` holds every column's width but the last, which gets the rest of
    ``width`` (at least 30 characters). A word longer than its column (a path,
    a URL) is never broken: it overflows instead.
    """
    last = max(30, width - 2 - sum(w + 2 for w in widths))
    lines = []
    for row in rows:
        wrapped = [textwrap.wrap(cell, w, break_long_words=False, break_on_hyphens=False) or [""]
                   for cell, w in zip(row, [*widths, last])]
        for parts in zip_longest(*wrapped, fillvalue=""):
            cells = [f"{part:<{w}}" for part, w in zip(parts[:-1], widths)] + [parts[-1]]
            lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def _width() -> int:
    return shutil.get_terminal_size((100, 24)).columns


def backend_lines(width: int | None = None) -> list[str]:
    """Backends as a table: name, accepted prompt kinds and description (or why it is unavailable), wrapped to ``width``."""
    rows = []
    for name in backend_names():
        try:
            cls = get_backend_class(name)
        except SegpromptError as exc:
            rows.append((name, "unavailable", str(exc)))
            continue
        rows.append((name, ", ".join(sorted(cls.accepts)), cls.description))
    return table(rows, [max(len(row[0]) for row in rows), KINDS_WIDTH], width or _width())


def checkpoint_lines(width: int | None = None) -> list[str]:
    """Official SAM checkpoints as a table: model type, cached or missing, the path and size or where to get it."""
    rows = []
    for info, present in cached_checkpoints():
        if present:
            rows.append((info.model_type, "cached", f"{info.path} ({_size(info.path.stat().st_size)})"))
        else:
            rows.append((info.model_type, "missing", f"{info.path} from {info.url}"))
    return table(rows, [6, 7], width or _width())


def run(args: argparse.Namespace) -> int:
    if args.fetch:
        with tqdm_progress(unit="B") as progress:
            path = fetch_checkpoint(args.fetch, progress, trust_record=True)
        print(f"{args.fetch}: verified {path}")
        return 0
    embeddings = EmbeddingCache()
    entries = len(list(embeddings.root.rglob("*.pt"))) if embeddings.root.is_dir() else 0
    print("Backends (name, accepted prompts):")
    print("\n".join(backend_lines()))
    print(f"SAM checkpoints ({checkpoint_dir()}):")
    print("\n".join(checkpoint_lines()))
    print(f"Cache: {cache_root()} (set SEGPROMPT_CACHE to move it)")
    print(f"  embeddings: {embeddings.root}, {entries} entries, {_size(embeddings.size_bytes())}")
    return 0
