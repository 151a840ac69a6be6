"""``segprompt models``: what can segment here.

Lists every registered backend with the prompt kinds it accepts (or why it
cannot be loaded), the official SAM checkpoints with whether each file is in
the cache, and the cache folder with the size of the embedding cache.
``segprompt models --fetch vit_b`` downloads (once) and verifies a checkpoint.
"""

from __future__ import annotations

import argparse

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


def backend_lines() -> list[str]:
    """One line per backend: name, accepted prompt kinds and description, or why it is unavailable."""
    lines = []
    for name in backend_names():
        try:
            cls = get_backend_class(name)
        except SegpromptError as exc:
            lines.append(f"  {name:<20} unavailable: {exc}")
            continue
        kinds = ", ".join(sorted(cls.accepts))
        lines.append(f"  {name:<20} {kinds:<24} {cls.description}".rstrip())
    return lines


def checkpoint_lines() -> list[str]:
    """One line per official SAM checkpoint: cached or missing, path, and where to get it."""
    lines = []
    for info, present in cached_checkpoints():
        if present:
            lines.append(f"  {info.model_type:<6} cached   {info.path} ({_size(info.path.stat().st_size)})")
        else:
            lines.append(f"  {info.model_type:<6} missing  {info.path} <- {info.url}")
    return lines


def run(args: argparse.Namespace) -> int:
    if args.fetch:
        with tqdm_progress(unit="B") as progress:
            path = fetch_checkpoint(args.fetch, progress)
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
