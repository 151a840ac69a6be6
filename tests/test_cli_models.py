"""``segprompt models`` lists backends, checkpoints with their status, and the cache."""

from __future__ import annotations

import argparse
import socket

import numpy as np
import pytest

from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.cache import EmbeddingCache
from segprompt.paths import cache_root
from segprompt.checkpoints import SAM_CHECKPOINTS
from segprompt.cli import models
from segprompt.errors import CheckpointError


def main(argv: list[str]) -> int:
    """Run the ``models`` verb through its own sub-parser (independent of the other verbs)."""
    parser = argparse.ArgumentParser(prog="segprompt")
    models.add_parser(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_lists_backends_checkpoints_and_cache(capsys):
    vit_l = SAM_CHECKPOINTS["vit_l"].path
    vit_l.parent.mkdir(parents=True)
    vit_l.write_bytes(b"\0" * 2500)
    cache = EmbeddingCache()
    cache.embed(SamSegmenter(model=build_sam("tiny", seed=0)), np.zeros((40, 60, 3), np.uint8))

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    sam_line = next(line for line in lines if line.split()[:1] == ["sam"])
    assert "box, mask, points" in sam_line
    # every backend, the compositions too, is listed with the prompt kinds it takes (a cell wraps onto the next lines)
    from segprompt.backends import backend_names, get_backend_class
    from segprompt.cli.models import KINDS_WIDTH

    start = 2 + max(len(name) for name in backend_names()) + 2
    for name in ("sam3", "sam3-refine", "sam3-reference", "composed", "sam2"):
        first = next(k for k, line in enumerate(lines) if line.split()[:1] == [name])
        end = first + 1
        while end < len(lines) and lines[end].startswith("   "):
            end += 1
        kinds = " ".join(line[start : start + KINDS_WIDTH].strip() for line in lines[first:end]).strip()
        assert kinds == ", ".join(sorted(get_backend_class(name).accepts)), name
    assert get_backend_class("sam3-reference").accepts == {"reference", "text", "exemplars", "points", "box", "mask"}
    row = next(k for k, line in enumerate(lines) if line.split()[:2] == ["vit_l", "cached"])
    assert str(vit_l) in lines[row] and "2.5 KB" in " ".join(lines[row : row + 2])
    for model_type in ("vit_b", "vit_h"):
        info = SAM_CHECKPOINTS[model_type]
        row = next(k for k, line in enumerate(lines) if line.split()[:2] == [model_type, "missing"])
        assert info.url in " ".join(lines[row : row + 2])  # a wrapped cell continues on the next line
    assert f"Cache: {cache_root()}" in out
    assert f"1 entries, {cache.size_bytes() / 1e6:.1f} MB" in out  # one 256x64x64 float32 embedding


def test_fetch_offline_names_file_and_hash(monkeypatch):
    def no_network(*args, **kwargs):
        raise socket.gaierror(-3, "offline")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    info = SAM_CHECKPOINTS["vit_b"]
    with pytest.raises(CheckpointError) as caught:
        main(["models", "--fetch", "vit_b"])
    assert info.sha256 in str(caught.value) and str(info.path) in str(caught.value)


def test_unknown_fetch_target_is_rejected_by_argparse():
    with pytest.raises(SystemExit):
        main(["models", "--fetch", "vit_x"])


def test_tables_fit_the_terminal_width():
    from segprompt.cli.models import backend_lines, checkpoint_lines, table

    for width in (80, 120):
        for line in backend_lines(width) + checkpoint_lines(width):
            # Only a single word too long for any column (a path, a URL) may overflow.
            assert len(line) <= width or max(map(len, line.split())) > width - 30, line
    # Columns line up: every continuation starts at its column.
    lines = table([("a", "one two three four", "x"), ("bb", "five", "y")], [2, 8], 40)
    assert lines == ["  a   one two   x", "      three", "      four", "  bb  five      y"]
