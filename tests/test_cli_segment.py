"""``segprompt segment`` and ``segprompt demo`` through ``segprompt.cli.main`` on real images."""

import json
import re

import numpy as np
import pytest
import skimage.data
import torch

from segprompt.backends.sam_arch import build_sam
from segprompt.cli import main
from segprompt.io import read_image, read_mask, write_image, write_mask
from segprompt.metrics import iou
from segprompt.prompts import Box, Points, Prompt


@pytest.fixture
def coins_png(tmp_path):
    path = tmp_path / "coins.png"
    write_image(path, skimage.data.coins())
    return path


def _coin_truth():
    """The coin at about (155, 50) in ``skimage.data.coins()``: Otsu-bright pixels near it, holes filled."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    coins = skimage.data.coins()
    rows, cols = np.ogrid[: coins.shape[0], : coins.shape[1]]
    near = (cols - 155) ** 2 + (rows - 50) ** 2 <= 30**2
    return ndi.binary_fill_holes(ndi.binary_opening((coins > threshold_otsu(coins)) & near, iterations=2))


def test_segment_box_writes_mask_overlay_and_prompt(coins_png, tmp_path, capsys):
    out, over, saved = tmp_path / "out" / "mask.png", tmp_path / "overlay.png", tmp_path / "prompt.json"
    code = main(
        ["segment", str(coins_png), "--box", "131,28,179,74", "--out", str(out), "--overlay", str(over),
         "--save-prompt", str(saved), "--backend", "classical"]
    )
    assert code == 0
    mask = read_mask(out)
    assert set(np.unique(mask)) == {0, 255}
    assert iou(mask > 0, _coin_truth()) > 0.85
    assert read_image(over).shape == (303, 384, 3)
    assert Prompt.from_json(saved.read_text()) == Prompt(box=Box(131, 28, 179, 74))
    # The line says how the mask was made, e.g. "score 0.912 (classical: grabcut (box prior))".
    assert re.search(r"score \d\.\d{3} \(classical: (grabcut|random walker|fallback)", capsys.readouterr().err)
    # The overlay draws the box: its top-left corner pixel is the box colour.
    from segprompt.io import PROMPT_COLOURS

    np.testing.assert_array_equal(read_image(over)[28, 131], PROMPT_COLOURS["box"])
    # Only the outputs exist: no temporary files left behind.
    assert sorted(p.name for p in out.parent.iterdir()) == ["mask.png"]


def test_points_with_labels_and_prompt_file_round_trip(coins_png, tmp_path):
    first = tmp_path / "first.png"
    saved = tmp_path / "p.json"
    assert main(["segment", str(coins_png), "--point", "155,50", "--point", "212,50,0", "--out", str(first),
                 "--save-prompt", str(saved)]) == 0
    prompt = Prompt.from_json(saved.read_text())
    assert prompt.points == Points.from_lists([[155, 50]], [[212, 50]])
    # Replaying the saved prompt gives the same mask.
    second = tmp_path / "second.png"
    assert main(["segment", str(coins_png), "--prompt-file", str(saved), "--out", str(second)]) == 0
    np.testing.assert_array_equal(read_mask(first), read_mask(second))
    assert iou(read_mask(first) > 0, _coin_truth()) > 0.8


def test_flags_override_the_prompt_file_part_of_the_same_kind(coins_png, tmp_path):
    from segprompt.cli import build_parser
    from segprompt.cli.segment import prompt_from_args

    saved = tmp_path / "p.json"
    saved.write_text(Prompt(box=Box(0, 0, 10, 10), points=Points.from_lists([[1, 1]])).to_json())
    argv = ["segment", str(coins_png), "--prompt-file", str(saved), "--box", "1,2,30,40", "--out", "m.png"]
    prompt = prompt_from_args(build_parser().parse_args(argv))
    assert prompt.box == Box(1, 2, 30, 40)
    assert prompt.points == Points.from_lists([[1, 1]])


def test_mask_prompt_refines(coins_png, tmp_path):
    rows, cols = np.ogrid[:303, :384]
    rough = tmp_path / "rough.png"
    write_mask(rough, (cols - 155) ** 2 + (rows - 50) ** 2 <= 30**2)
    out = tmp_path / "refined.png"
    assert main(["segment", str(coins_png), "--mask-prompt", str(rough), "--out", str(out), "--multimask"]) == 0
    assert iou(read_mask(out) > 0, _coin_truth()) > 0.8


@pytest.mark.parametrize(
    "args, message",
    [
        (["--point", "1,x"], "--point '1,x': 'x' is not a number"),
        (["--point", "1,2,3,4"], "expected 2 or 3 comma-separated numbers"),
        (["--point", "1,2,5"], "label must be 1 (include) or 0 (exclude), got 5"),
        (["--box", "10,10,5,20"], "inverted or empty box"),
        (["--box", "1,2,3"], "--box '1,2,3': expected 4"),
        (["--point", "1000,5"], "point (x=1000, y=5) is outside the 384x303"),
        ([], "no prompt"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(coins_png, tmp_path, capsys, args, message):
    out = tmp_path / "mask.png"
    assert main(["segment", str(coins_png), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("segprompt segment: error:")
    assert not out.exists()


@pytest.mark.parametrize("name", ["mask.jpg", "mask.JPEG", "mask.gif", "mask"])
def test_lossy_or_unknown_mask_formats_are_refused_before_any_work(coins_png, tmp_path, capsys, name):
    out = tmp_path / name
    assert main(["segment", str(coins_png), "--box", "131,28,179,74", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out}: unsupported output type" in err and "use .png, .tif" in err
    assert not out.exists()


def test_bad_files_exit_2(tmp_path, capsys, coins_png):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert main(["segment", str(empty), "--box", "1,1,5,5", "--out", str(tmp_path / "m.png")]) == 2
    assert "file is empty" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["segment", str(coins_png), "--prompt-file", str(bad), "--out", str(tmp_path / "m.png")]) == 2
    assert f"{bad}: prompt: invalid JSON" in capsys.readouterr().err
    assert main(["segment", str(coins_png), "--point", "5,5", "--backend", "nope", "--out", str(tmp_path / "m.png")]) == 2
    assert "unknown backend 'nope'" in capsys.readouterr().err


def test_tiff_plane_selection(tmp_path):
    import tifffile

    stack = np.zeros((2, 60, 80), np.uint8)
    stack[1, 20:40, 30:60] = 220  # the object exists only in plane 1
    stack[1] += 20
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    out = tmp_path / "m.png"
    assert main(["segment", str(path), "--plane", "1", "--box", "30,20,60,40", "--out", str(out)]) == 0
    truth = np.zeros((60, 80), bool)
    truth[20:40, 30:60] = True
    assert iou(read_mask(out) > 0, truth) > 0.9
    assert main(["segment", str(path), "--plane", "5", "--box", "30,20,60,40", "--out", str(out)]) == 2


def test_sam_backend_with_a_tiny_checkpoint(coins_png, tmp_path, capsys):
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), checkpoint)
    out = tmp_path / "sam.png"
    args = ["segment", str(coins_png), "--backend", "sam", "--model-type", "tiny", "--checkpoint", str(checkpoint),
            "--point", "155,50", "--box", "131,28,179,74", "--out", str(out), "--multimask"]
    assert main(args) == 0
    first = read_mask(out)
    assert first.shape == (303, 384)  # random weights: the shape and frame are what can be checked
    assert "(sam)" in capsys.readouterr().err
    # A second run reads the embedding from the cache and gives the same mask.
    assert main(args) == 0
    np.testing.assert_array_equal(read_mask(out), first)


def test_checkpoint_with_classical_backend_is_an_error(coins_png, tmp_path, capsys):
    assert main(["segment", str(coins_png), "--point", "5,5", "--checkpoint", "x.pth", "--out", str(tmp_path / "m.png")]) == 2
    assert "--checkpoint is only used by the sam backend" in capsys.readouterr().err


def test_demo_writes_masks_overlays_and_summary(tmp_path, capsys):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    # Two of the committed example prompts, to keep the test short.
    from segprompt.cli.demo import DEFAULT_PROMPTS

    for name in ("coins", "chelsea"):
        (prompts / f"{name}.json").write_text((DEFAULT_PROMPTS / f"{name}.json").read_text())
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--prompts", str(prompts)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["images"]) == {"coins", "chelsea"}
    assert all(entry["method"] for entry in summary["images"].values())  # how each mask was made
    assert sorted(p.name for p in out.iterdir()) == [
        "chelsea_mask.png", "chelsea_overlay.png", "coins_mask.png", "coins_overlay.png", "summary.json"
    ]
    coin = read_mask(out / "coins_mask.png") > 0
    assert iou(coin, _coin_truth()) > 0.8
    assert summary["images"]["coins"]["mask_pixels"] == int(coin.sum())
    # The cat's left eye: the box is 70 x 65 px, the eye fills most of it.
    eye = read_mask(out / "chelsea_mask.png") > 0
    assert 0.5 * 70 * 65 < eye.sum() < 70 * 65


def test_demo_every_committed_prompt_names_a_bundled_image():
    from segprompt.cli.demo import BUNDLED_IMAGES, DEFAULT_PROMPTS

    names = [p.stem for p in DEFAULT_PROMPTS.glob("*.json")]
    assert len(names) >= 5
    for name in names:
        assert name in BUNDLED_IMAGES
        Prompt.from_json((DEFAULT_PROMPTS / f"{name}.json").read_text())


def test_demo_errors(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--prompts", str(tmp_path / "none")]) == 2
    assert "no prompt files" in capsys.readouterr().err
    bad = tmp_path / "p"
    bad.mkdir()
    (bad / "lena.json").write_text(Prompt(box=Box(0, 0, 5, 5)).to_json())
    assert main(["demo", "--out", str(tmp_path / "d"), "--prompts", str(bad)]) == 2
    assert "no bundled scikit-image sample named 'lena'" in capsys.readouterr().err
