"""Fault injection (issue 21): full disks, unwritable folders, torn and hostile inputs, through the real code paths.

Each test reproduces one case of the campaign: a simulated full disk (``ENOSPC``
after what still fits, see the ``full_disk`` fixture) for every writer, a
read-only output folder, and bad input files. The outcome is always one
:class:`~segprompt.errors.SegpromptError` line (exit code 2 on the command
line), the old outputs intact and no temporary file left behind.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch

from segprompt.cli import main
from segprompt.errors import StorageError
from segprompt.io import read_mask, write_image, write_mask


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def coins_png(tmp_path):
    path = tmp_path / "in" / "coins.png"
    write_image(path, skimage.data.coins())
    return path


# --- every writer on a full disk: old file kept, no temporary, "no space left on device: PATH" --------------------


def _write_png(path):
    write_mask(path, np.ones((40, 50), bool))


def _write_tiff(path):
    write_mask(path, np.arange(2000, dtype=np.uint16).reshape(40, 50))


def _write_json(path):
    from segprompt.atomic import atomic_write_text

    atomic_write_text(path, json.dumps({"rows": list(range(500))}))


def _write_csv(path):
    from segprompt.distributed import write_rows_csv

    write_rows_csv(path, [{"image": f"img{i}", "iou": i / 100} for i in range(100)])


def _write_plot(path):
    from segprompt.pointprompt.plots import plot_categories

    summary = {"per_category": {"a": {"random": 0.5}, "b": {"random": 0.7}}, "strategies": {"random": {}}}
    plot_categories(summary, path)


def _write_tuned(path):
    from segprompt.atomic import write_files
    from safetensors.torch import save

    write_files({path: save({"prompt": torch.zeros(4, 8)}), path.with_suffix(".json"): b"{}"})


@pytest.mark.parametrize(
    "writer, name",
    [(_write_png, "mask.png"), (_write_tiff, "labels.tif"), (_write_json, "summary.json"),
     (_write_csv, "results.csv"), (_write_plot, "plot.png"), (_write_tuned, "prompts.safetensors")],
)
@pytest.mark.parametrize("free_bytes", [0, 100])
def test_every_writer_on_a_full_disk_keeps_the_old_file(tmp_path, full_disk, writer, name, free_bytes):
    target = tmp_path / name
    target.write_bytes(b"previous")
    full_disk(tmp_path, free_bytes)
    with pytest.raises(StorageError, match=f"^no space left on device: {target}$"):
        writer(target)
    assert _snapshot(tmp_path) == {name: b"previous"}


def test_embedding_cache_on_a_full_disk(tmp_path, full_disk, tiny_sam):
    from segprompt.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    image = skimage.data.coins()[:64, :64]
    entry = cache.path(cache.key(tiny_sam, cache_rgb := np.repeat(image[..., None], 3, axis=2)))
    full_disk(tmp_path)
    with pytest.raises(StorageError, match=f"^no space left on device: {entry}$"):
        cache.embed(tiny_sam, cache_rgb)
    assert not entry.exists() and list(entry.parent.iterdir()) == []


def test_tuning_checkpoint_on_a_full_disk(tmp_path, full_disk):
    from segprompt.tuning.train import _save_state

    target = tmp_path / "state.pt"
    target.write_bytes(b"epoch 1")
    full_disk(tmp_path, 50)
    with pytest.raises(StorageError, match="no space left on device"):
        _save_state(target, {"epoch": 2, "weights": torch.zeros(100)})
    assert _snapshot(tmp_path) == {"state.pt": b"epoch 1"}


# --- the segment command: checked before any work, all outputs or none ----------------------------------------------


def _segment(coins_png, *flags) -> int:
    return main(["segment", str(coins_png), "--box", "131,28,179,74", *map(str, flags)])


def test_segment_on_a_full_disk_exits_2_and_keeps_the_old_mask(coins_png, tmp_path, full_disk, capsys):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    write_mask(out_dir / "mask.png", np.zeros((303, 384), bool))
    before = _snapshot(out_dir)
    full_disk(out_dir, 500)
    assert _segment(coins_png, "--out", out_dir / "mask.png") == 2
    assert capsys.readouterr().err.strip() == f"segprompt segment: error: no space left on device: {out_dir / 'mask.png'}"
    assert _snapshot(out_dir) == before


def test_segment_outputs_are_all_written_or_none(coins_png, tmp_path, full_disk, capsys):
    out, over = tmp_path / "masks" / "mask.png", tmp_path / "overlays" / "overlay.png"
    full_disk(over.parent.parent / "overlays")
    over.parent.mkdir()
    assert _segment(coins_png, "--out", out, "--overlay", over, "--save-prompt", tmp_path / "masks" / "p.json") == 2
    assert "no space left on device" in capsys.readouterr().err
    assert not out.exists() and _listing(out.parent) == [] and _listing(over.parent) == []


@pytest.mark.parametrize("error, reason", [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_segment_refuses_an_unwritable_folder_before_any_work(coins_png, tmp_path, failing_folder, monkeypatch,
                                                              capsys, error, reason):
    from segprompt.cli import segment

    monkeypatch.setattr(segment, "read_image", lambda *a, **k: pytest.fail("the image was read before the check"))
    (tmp_path / "ro").mkdir()
    failing_folder(tmp_path / "ro", error)
    assert _segment(coins_png, "--out", tmp_path / "ro" / "mask.png") == 2
    assert capsys.readouterr().err.strip() == f"segprompt segment: error: {reason}: {tmp_path / 'ro' / 'mask.png'}"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--overlay", "{tmp}/overlay.gif"], "unsupported output type '.gif'"),
        (["--out", "{tmp}/mask.jpg"], "unsupported output type '.jpg'"),
        (["--overlay", "{tmp}/mask.png"], "--overlay {tmp}/mask.png is the same file as --out {tmp}/mask.png"),
        (["--save-prompt", "{tmp}/sub"], "is a directory: {tmp}/sub"),
        (["--overlay", "{tmp}/file.txt/overlay.png"], "not a directory: {tmp}/file.txt/overlay.png"),
    ],
)
def test_a_bad_output_flag_writes_nothing(coins_png, tmp_path, monkeypatch, capsys, flags, message):
    from segprompt.cli import segment

    monkeypatch.setattr(segment, "read_image", lambda *a, **k: pytest.fail("the image was read before the check"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "file.txt").write_text("x")
    argv = ["--out", f"{tmp_path}/mask.png"]
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    if flags[0] == "--out":
        argv = []
    assert _segment(coins_png, *argv, *flags) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(tmp=tmp_path) in err
    assert _listing(tmp_path) == ["file.txt", "in", "sub"] and _listing(tmp_path / "sub") == []


def test_bench_refuses_a_read_only_out_before_opening_the_data(tmp_path, failing_folder, monkeypatch, capsys):
    import segprompt.datasets

    monkeypatch.setattr(segprompt.datasets, "open_dataset", lambda *a, **k: pytest.fail("dataset opened first"))
    (tmp_path / "runs").mkdir()
    failing_folder(tmp_path / "runs", errno.EROFS)
    for benchmark in (["pointprompt"], ["show-or-tell", "--method", "clipseg:text"]):
        code = main(["bench", *benchmark, "--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs" / "r1")])
        assert code == 2
        assert capsys.readouterr().err.strip().endswith(f"error: read-only file system: {tmp_path / 'runs' / 'r1'}")


def test_an_os_error_naming_its_file_is_one_line_wherever_it_is_raised(monkeypatch, capsys):
    from segprompt.cli import models

    def fail(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/somewhere/file")

    monkeypatch.setattr(models, "run", fail)  # the parser is built per call and picks it up
    assert main(["models"]) == 2
    assert capsys.readouterr().err.strip() == "segprompt models: error: permission denied: /somewhere/file"


# --- a real full disk and a real read-only mount (needs root and mount rights; skipped elsewhere) -------------------


@pytest.fixture
def small_tmpfs(tmp_path):
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.decode().strip() or 'not root'})")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_real_full_tmpfs(small_tmpfs, coins_png):
    target = small_tmpfs / "mask.png"
    write_mask(target, np.ones((303, 384), bool))
    before = target.read_bytes()
    subprocess.run(["dd", "if=/dev/zero", f"of={small_tmpfs / 'fill'}", "bs=64k"], capture_output=True)
    result = subprocess.run(
        [sys.executable, "-m", "segprompt", "segment", str(coins_png), "--box", "131,28,179,74", "--out", str(target)],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"segprompt segment: error: no space left on device: {target}"
    assert target.read_bytes() == before and _listing(small_tmpfs) == ["fill", "mask.png"]
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    assert _segment(coins_png, "--out", small_tmpfs / "new" / "mask.png") == 2
    assert target.read_bytes() == before


# --- a benchmark whose disk fills up mid-run, then resumes ----------------------------------------------------------


def _bench_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return [{k: v for k, v in row.items() if not k.endswith("_seconds")} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_a_benchmark_on_a_disk_filling_up_exits_2_then_resumes_to_the_same_rows(tmp_path, full_disk, capsys, fraction):
    from segprompt.io import write_mask as save_mask

    data = tmp_path / "coins"
    coins = skimage.data.coins()
    for i, (row, col) in enumerate([(20, 30), (100, 150), (180, 40)]):
        crop = coins[row : row + 40, col : col + 56]
        write_image(data / "images" / f"c{i}.png", crop)
        save_mask(data / "masks" / f"c{i}.png", crop > 120)

    def bench(out: Path) -> int:
        return main(["bench", "pointprompt", "--data", str(data), "--out", str(out), "--strategies", "distance_centre",
                     "random", "--points", "1,0", "--no-cache"])

    clean = tmp_path / "clean"
    assert bench(clean) == 0
    total = sum(p.stat().st_size for p in clean.iterdir())
    capsys.readouterr()
    out = tmp_path / "full"
    out.mkdir()
    full_disk(out, int(total * fraction))
    assert bench(out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"segprompt bench: error: no space left on device: {out}{os.sep}")
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    full_disk(out, 1 << 30)  # space freed
    assert bench(out) == 0
    assert _bench_rows(out / "results.csv") == _bench_rows(clean / "results.csv")
