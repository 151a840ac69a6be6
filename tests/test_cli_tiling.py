"""``--tile-shape`` / ``--halo`` through ``segprompt.cli.main``: a 4,000 x 4,000 image at full resolution on a
random-init tiny SAM, everything tile by tile with a session that replays, and one-line errors before any work."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from skimage.draw import disk

from segprompt.backends.classical import ClassicalSegmenter
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.cli import main
from segprompt.io import read_mask, write_image
from segprompt.metrics import iou
from segprompt.paths import cache_root
from segprompt.prompts import Points, Prompt
from segprompt.session_file import read_session_record
from segprompt.tiling import prompt_extent, prompt_in_window, route, tile_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), path)
    return path


def test_a_4000_px_image_is_segmented_at_full_resolution(tiny_checkpoint, tmp_path, capsys):
    """2 x 2 tiles of 2,000 px: the click's tile answers at its own resolution (each window is resized to
    SAM's 1024, not the whole 4,000 px image), exactly as SAM on that window cropped out; a second run reads
    every tile from the embedding cache."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (4000, 4000), dtype=np.uint8)
    path = tmp_path / "slide.npy"
    np.save(path, image)
    out = tmp_path / "mask.png"
    argv = ["segment", str(path), "--backend", "sam", "--model-type", "tiny", "--checkpoint", str(tiny_checkpoint),
            "--point", "2900.5,1234.5", "--tile-shape", "2000", "--halo", "64", "--out", str(out)]
    assert main(argv) == 0
    mask = read_mask(out) > 0
    assert mask.shape == (4000, 4000)
    assert "(sam)" in capsys.readouterr().err

    prompt = Prompt(points=Points(np.array([[2900.5, 1234.5]]), np.array([1])))
    grid = tile_grid((4000, 4000), 2000, 64)
    (index,) = route(grid, prompt_extent(prompt))
    window = grid.tiles[index].window
    sam = SamSegmenter(model=build_sam("tiny", seed=0))
    expected = np.zeros((4000, 4000), bool)
    expected[window.slices] = sam.predict(sam.embed(image[window.slices]), prompt_in_window(prompt, window), False).best_mask
    np.testing.assert_array_equal(mask, expected)

    assert len(list((cache_root() / "embeddings").rglob("*.pt"))) == 4  # one entry per tile
    assert main(argv) == 0
    np.testing.assert_array_equal(read_mask(out) > 0, mask)


def _disks(shape=(300, 420), seed=2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = rng.normal(40, 6, shape)
    for row in range(30, shape[0], 60):
        for col in range(30, shape[1], 60):
            grey[disk((row + rng.integers(-8, 9), col + rng.integers(-8, 9)), rng.integers(8, 14), shape=shape)] += 120
    return np.clip(grey, 0, 255).astype(np.uint8)


def test_everything_tile_by_tile_records_the_tiling_and_replays(tmp_path, capsys):
    image_path = tmp_path / "disks.png"
    write_image(image_path, _disks())
    out = tmp_path / "out"
    assert main(["everything", str(image_path), "--out", str(out), "--tile-shape", "128,160", "--halo", "32"]) == 0
    labels = tifffile.imread(out / "labels.tif")
    assert labels.max() == 35  # 5 x 7 disks, many across tile borders, each once
    untiled = tmp_path / "untiled"
    assert main(["everything", str(image_path), "--out", str(untiled)]) == 0
    assert (labels > 0).sum() == pytest.approx((tifffile.imread(untiled / "labels.tif") > 0).sum(), rel=0.01)
    record = read_session_record(out / "labels.session.json")
    assert record["backend"]["options"] == {"tile_shape": [128, 160], "halo": [32, 32]}
    assert record["backend"]["model_id"] == f"{ClassicalSegmenter().model_id} | tiles 128x160 halo 32x32"
    capsys.readouterr()
    assert main(["replay", str(out / "labels.session.json"), "--out", str(tmp_path / "again")]) == 0
    assert "labels identical to the saved session's" in capsys.readouterr().err


def test_segment_volume_tiles_large_slices(tmp_path, capsys):
    volume = np.stack([_disks(seed=2)] * 3)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, volume, metadata={"axes": "ZYX"})
    out = tmp_path / "labels.tif"
    argv = ["segment-volume", str(path), "--slice", "1", "--box", "22,10,47,35", "--tile-shape", "96", "--halo", "16",
            "--out", str(out)]
    assert main(argv) == 0
    labels = tifffile.imread(out)
    assert labels.shape == volume.shape and all(labels[z].any() for z in range(3))
    assert iou(labels[0] == 1, labels[1] == 1) > 0.9 and iou(labels[2] == 1, labels[1] == 1) > 0.9
    assert "1 object(s) on 3 of 3 slices" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["segment", "IMG", "--point", "5,5", "--halo", "16", "--out", "OUT.png"], "--halo needs --tile-shape"),
        (["segment", "IMG", "--point", "5,5", "--tile-shape", "16", "--out", "OUT.png"], "tiles must be at least 32 px"),
        (["segment", "IMG", "--text", "disk", "--backend", "clipseg", "--tile-shape", "256", "--out", "OUT.png"],
         "backend 'clipseg' cannot be tiled"),
        (["everything", "IMG", "--halo", "16", "--out", "OUT"], "--halo needs --tile-shape"),
        (["everything", "IMG", "--backend", "sam3", "--text", "disk", "--tile-shape", "256", "--out", "OUT"],
         "--tile-shape is not used by the 'sam3' backend"),
        (["segment-volume", "VOL", "--slice", "0", "--box", "1,1,9,9", "--backend", "sam2", "--tile-shape", "64",
          "--out", "OUT.tif"], "sam2's video model sees whole frames"),
    ],
)
def test_tiling_mistakes_are_one_line_before_any_work(tmp_path, capsys, argv, message):
    image, volume = tmp_path / "disks.png", tmp_path / "stack.tif"
    write_image(image, _disks())
    tifffile.imwrite(volume, np.stack([_disks()] * 2), metadata={"axes": "ZYX"})
    replace = {"IMG": str(image), "VOL": str(volume)}
    argv = [replace.get(a, a.replace("OUT", str(tmp_path / "out"))) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disks.png", "stack.tif"]  # nothing written


def test_a_malformed_tile_shape_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "x.png", "--point", "1,1", "--tile-shape", "big", "--out", "m.png"])
    assert exit_.value.code == 2
    assert "argument --tile-shape: expected PX or ROWS,COLS in whole pixels, got 'big'" in capsys.readouterr().err
