"""Fault injection, part 2 (issue 21): torn and hostile inputs, degenerate prompts, weights that do not fit.

The campaign's bad-input cases run through ``segprompt segment`` in this
process with the C libraries' own stderr captured (``capfd``): each must exit
with code 2, print exactly one line (no libpng / libjpeg warning before it, no
traceback, no advice to load weights unsafely), and write nothing. The rest
checks the core behind those lines: planar TIFFs read as colour, degenerate
prompts refused alike by every backend, checkpoints hashed again when changed
in place, stale temporary folders removed. Disk-full, read-only and resume
cases are in ``test_faults.py`` and ``test_runstore.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
import tifffile
import torch

from segprompt.cli import main
from segprompt.errors import CheckpointError, ImageError, PromptError
from segprompt.io import read_image, to_rgb_uint8, write_image, write_mask
from segprompt.prompts import Box, Exemplars, MaskPrompt, Points, Prompt, Text

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_claiming(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 100)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_sam_model, tiny_clipseg_folder):
    """Every bad input of the campaign, written once: ``bad["name"]`` -> Path."""
    root = tmp_path_factory.mktemp("bad_inputs")
    astronaut = skimage.data.astronaut()
    files = {"coins": root / "coins.png", "astronaut_jpg": root / "astronaut.jpg"}
    write_image(files["coins"], skimage.data.coins())
    write_image(files["astronaut_jpg"], astronaut)
    jpeg = files["astronaut_jpg"].read_bytes()
    png = files["coins"].read_bytes()
    idat = png.index(b"IDAT")
    contents = {
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "huge.png": _png_claiming(60000, 60000),
        "truncated.png": png[: len(png) // 2],
        "bad_crc.png": png[: idat + 20] + bytes([png[idat + 20] ^ 0xFF]) + png[idat + 21 :],
        "non_numeric.json": json.dumps({"points": {"xy": [["a", "b"]], "labels": [1]}}).encode(),
        "three_numbers.json": json.dumps({"points": {"xy": [1, 2, 3], "labels": [1]}}).encode(),
        "latin1.json": '{"text": {"phrase": "caf\xe9"}}'.encode("latin-1"),
    }
    for name, content in contents.items():
        files[name] = root / name
        files[name].write_bytes(content)
    files["thin.png"] = root / "thin.png"
    write_image(files["thin.png"], np.random.default_rng(0).integers(0, 255, (1, 3000), np.uint8))
    files["two_channels.npy"] = root / "two_channels.npy"
    np.save(files["two_channels.npy"], astronaut[..., :2])
    files["folder.png"] = root / "folder.png"
    files["folder.png"].mkdir()
    files["empty_mask.png"] = root / "empty_mask.png"
    write_mask(files["empty_mask.png"], np.zeros((303, 384), bool))
    files["coin_mask.png"] = root / "coin_mask.png"
    write_mask(files["coin_mask.png"], np.pad(np.ones((40, 40), bool), ((30, 233), (130, 214))))
    files["tiny.pth"] = root / "tiny.pth"
    torch.save(tiny_sam_model.state_dict(), files["tiny.pth"])
    files["clipseg"] = tiny_clipseg_folder
    files["clipseg_truncated"] = shutil.copytree(tiny_clipseg_folder, root / "clipseg_truncated")
    weights = files["clipseg_truncated"] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return files


def _sam(bad) -> list[str]:
    return ["--backend", "sam", "--model-type", "tiny", "--checkpoint", str(bad["tiny.pth"])]


#: ``(case, argv after "segment" with {name} for bad[name], words the one line must hold)``.
CAMPAIGN = [
    ("a directory as the image", ["{folder.png}", "--box", "1,1,9,9"], "{folder.png}: is a directory"),
    ("a directory as the mask prompt", ["{coins}", "--mask-prompt", "{folder.png}"], "{folder.png}: is a directory"),
    ("a truncated JPEG", ["{truncated.jpg}", "--box", "1,1,9,9"], "{truncated.jpg}: the JPEG file is truncated"),
    ("a PNG header claiming 60000 x 60000", ["{huge.png}", "--box", "1,1,9,9"],
     "{huge.png}: the PNG header claims 60000 x 60000 (W x H) pixels"),
    ("a truncated PNG", ["{truncated.png}", "--box", "1,1,9,9"], "{truncated.png}: the PNG file is truncated"),
    ("a PNG with a corrupt chunk", ["{bad_crc.png}", "--box", "1,1,9,9"],
     "{bad_crc.png}: the PNG file is corrupt (the CRC of its IDAT chunk is wrong)"),
    ("--plane on a single-plane PNG", ["{coins}", "--plane", "2", "--box", "1,1,9,9"],
     "{coins}: plane=2 requested but the file holds a single image"),
    ("--plane on a single-plane JPEG", ["{astronaut_jpg}", "--plane", "1", "--box", "1,1,9,9"],
     "plane=1 requested but the file holds a single image"),
    ("an (H, W, 2) array", ["{two_channels.npy}", "--box", "1,1,9,9"], "image with 2 channels"),
    ("a 1 x 3000 image (classical)", ["{thin.png}", "--box", "0,0,9,1"], "an image of 1 x 3000 (H x W) pixels is too thin"),
    ("SAM on a 1 x 3000 image", ["{thin.png}", "--box", "0,0,9,1", "SAM"], "an image of 1 x 3000 (H x W) pixels is too thin"),
    ("non-numeric prompt coordinates", ["{coins}", "--prompt-file", "{non_numeric.json}"],
     "{non_numeric.json}: points.xy: cannot convert"),
    ("three numbers for one point", ["{coins}", "--prompt-file", "{three_numbers.json}"],
     "{three_numbers.json}: prompt.points: malformed entry"),
    ("a prompt file that is not UTF-8", ["{coins}", "--prompt-file", "{latin1.json}"],
     "{latin1.json}: the prompt file is not UTF-8 text (byte 0xe9 at offset 24)"),
    ("only exclude points", ["{coins}", "--point", "50,50,0", "--point", "60,60,0"], "points: only exclude points"),
    ("only exclude points (SAM)", ["{coins}", "--point", "50,50,0", "SAM"], "points: only exclude points"),
    ("an empty mask prompt", ["{coins}", "--mask-prompt", "{empty_mask.png}"], "the mask prompt is empty"),
    ("a sub-pixel box", ["{coins}", "--box", "10,10,10.5,10.5"], "box: (10, 10, 10.5, 10.5) is 0.5 x 0.5 pixels"),
    ("a sub-pixel box (SAM)", ["{coins}", "--box", "10,10,10.5,10.5", "SAM"], "is 0.5 x 0.5 pixels"),
    ("a truncated model.safetensors", ["{coins}", "--backend", "clipseg", "--model-dir", "{clipseg_truncated}", "--text", "coin"],
     "cannot load model CIDAS/clipseg-rd64-refined from {clipseg_truncated}: Error while deserializing header"),
    ("a CLIPSeg folder given to seggpt",
     ["{coins}", "--backend", "seggpt", "--model-dir", "{clipseg}", "--reference", "{coins}", "--reference-mask", "{coin_mask.png}"],
     "{clipseg}: holds a 'clipseg' model (CLIPSegForImageSegmentation), not the 'seggpt' model"),
    ("a directory as the SAM checkpoint",
     ["{coins}", "--backend", "sam", "--model-type", "tiny", "--checkpoint", "{folder.png}", "--box", "1,1,9,9"],
     "{folder.png}: is a directory, not a checkpoint file"),
    ("tiny SAM weights as vit_b",
     ["{coins}", "--backend", "sam", "--model-type", "vit_b", "--checkpoint", "{tiny.pth}", "--box", "1,1,9,9"],
     "weights do not fit SAM 'vit_b': they are SAM 'tiny' weights"),
]


@pytest.mark.parametrize("case, argv, expected", CAMPAIGN, ids=[case for case, _, _ in CAMPAIGN])
def test_each_bad_input_is_one_line_exit_2_and_writes_nothing(bad, tmp_path, capfd, case, argv, expected):
    def fill(text: str) -> str:
        return re.sub(r"\{([\w.]+)\}", lambda match: str(bad[match.group(1)]), text)

    args = [fill(arg) for arg in argv if arg != "SAM"] + (_sam(bad) if "SAM" in argv else [])
    out = tmp_path / "out"
    assert main(["segment", *args, "--out", str(out / "mask.png"), "--overlay", str(out / "overlay.png")]) == 2
    err = capfd.readouterr().err
    assert err.startswith("segprompt segment: error: ") and err.count("\n") == 1, err  # nothing from libpng / libjpeg
    assert fill(expected) in err
    assert not out.exists() or list(out.iterdir()) == []


def test_the_message_is_the_first_thing_on_stderr_in_a_fresh_process(bad):
    """libpng and libjpeg write to the process's stderr directly; a new process shows what a user sees."""
    for name in ("bad_crc.png", "truncated.jpg"):
        result = subprocess.run(
            [sys.executable, "-m", "segprompt", "segment", str(bad[name]), "--box", "1,1,9,9", "--out", "unused.png"],
            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
        )
        assert result.returncode == 2 and result.stderr.startswith(f"segprompt segment: error: {bad[name]}: ")
        assert result.stderr.count("\n") == 1, result.stderr


# --- images ---------------------------------------------------------------------------------------------------------


def test_planar_rgb_tiff_is_read_as_colour(tmp_path):
    astronaut = skimage.data.astronaut()
    planar, stack = tmp_path / "planar.tif", tmp_path / "planar_stack.tif"
    tifffile.imwrite(planar, np.moveaxis(astronaut, 2, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(stack, np.stack([np.moveaxis(astronaut, 2, 0), np.moveaxis(255 - astronaut, 2, 0)]),
                     photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(planar), astronaut)
    np.testing.assert_array_equal(read_image(stack, plane=1), 255 - astronaut)
    # a grey stack of three planes stays a stack: the file's axes, not its shape, decide
    grey = tmp_path / "grey_stack.tif"
    tifffile.imwrite(grey, np.moveaxis(astronaut, 2, 0), photometric="minisblack")
    np.testing.assert_array_equal(read_image(grey, plane=2), np.repeat(astronaut[..., 2:], 3, axis=2))


@pytest.mark.parametrize("write", ["samples", "shaped"])
def test_a_two_channel_tiff_names_its_channel_count(tmp_path, write):
    path = tmp_path / "two.tif"
    data = skimage.data.astronaut()[..., :2]
    if write == "samples":
        tifffile.imwrite(path, data, photometric="minisblack", planarconfig="contig")
    else:
        tifffile.imwrite(path, data)  # saved with its shape only
    with pytest.raises(ImageError, match=r"image with 2 channels \(shape \(512, 512, 2\)\); expected 1 \(grey\), 3"):
        read_image(path)
    with pytest.raises(ImageError, match="image with 2 channels"):
        to_rgb_uint8(data)


def test_a_complete_jpeg_with_trailing_bytes_still_reads(tmp_path):
    path = tmp_path / "trailer.jpg"
    write_image(path, skimage.data.astronaut())
    expected = read_image(path)
    path.write_bytes(path.read_bytes() + b"camera maker's trailer")
    np.testing.assert_array_equal(read_image(path), expected)


def test_a_png_named_jpg_and_a_jpeg_named_png_still_read(tmp_path):
    """The structure checks follow the content, as OpenCV's decoder does, not the file name."""
    astronaut = skimage.data.astronaut()
    write_image(tmp_path / "real.png", astronaut)
    write_image(tmp_path / "real.jpg", astronaut)
    shutil.copy(tmp_path / "real.png", tmp_path / "png.jpg")
    shutil.copy(tmp_path / "real.jpg", tmp_path / "jpeg.png")
    np.testing.assert_array_equal(read_image(tmp_path / "png.jpg"), astronaut)
    np.testing.assert_array_equal(read_image(tmp_path / "jpeg.png"), read_image(tmp_path / "real.jpg"))


def test_images_one_or_three_rows_high_are_given_to_transformers_as_rows(tiny_clipseg):
    """Left to guess, transformers' processors read a ``(1, W, 3)`` or ``(3, W, 3)`` image as channels first."""
    from transformers.image_utils import ChannelDimension

    for height in (1, 3):
        rgb = np.random.default_rng(height).integers(0, 255, (height, 500, 3), np.uint8)
        prediction = tiny_clipseg.segment(rgb, Prompt(text=Text("a coin")))
        assert prediction.masks.shape[1:] == (height, 500)
        expected = tiny_clipseg.processor.image_processor(
            images=rgb, return_tensors="pt", input_data_format=ChannelDimension.LAST
        ).pixel_values
        torch.testing.assert_close(tiny_clipseg._pixel_values(rgb), expected, rtol=0, atol=0)


# --- degenerate prompts: refused alike by every backend -----------------------------------------------------------


@pytest.fixture(scope="module")
def backends(tiny_sam):
    from segprompt.backends import create

    return {"classical": create("classical"), "sam": tiny_sam}


@pytest.mark.parametrize("backend", ["classical", "sam"])
def test_degenerate_prompts_are_refused_by_every_backend(backends, backend):
    segmenter = backends[backend]
    image = skimage.data.coins()[:64, :64]
    embedding = segmenter.embed(image)
    exclude_only = Prompt(points=Points.from_lists(exclude=[(10, 10), (20, 20)]))
    with pytest.raises(PromptError, match=r"^points: only exclude points \(label 0\)"):
        segmenter.predict(embedding, exclude_only)
    with pytest.raises(PromptError, match=r"^mask.data: the mask prompt is empty"):
        segmenter.predict(embedding, Prompt(mask=MaskPrompt(np.zeros((64, 64), bool))))
    # the same exclude points beside a box, or a non-empty mask, are an ordinary prompt
    box = Box(5, 5, 40, 40)
    assert segmenter.predict(embedding, Prompt(points=exclude_only.points, box=box)).masks.shape[1:] == (64, 64)
    filled = np.zeros((64, 64), bool)
    filled[10:30, 10:30] = True
    assert segmenter.predict(embedding, Prompt(mask=MaskPrompt(filled))).masks.shape[1:] == (64, 64)


def test_sub_pixel_boxes_are_refused_where_they_are_made():
    with pytest.raises(PromptError, match=r"^box: \(10, 10, 10.5, 12\) is 0.5 x 2 pixels; a box must be at least 1"):
        Box(10, 10, 10.5, 12)
    with pytest.raises(PromptError, match=r"^exemplars.boxes\[1\]: .* is 2 x 0.25 pixels"):
        Exemplars(np.array([[0, 0, 5, 5], [1, 1, 3, 1.25]]), np.array([1, 0]))
    with pytest.raises(PromptError, match="0.5 x 0.5 pixels"):
        Prompt.from_json(json.dumps({"box": {"x0": 1, "y0": 1, "x1": 1.5, "y1": 1.5}}))
    Box(10, 10, 11, 11)  # one pixel is a box


def test_detections_narrower_than_a_pixel_are_dropped_not_prompted():
    from segprompt.backends.detector_sam import Detections

    boxes = np.array([[10, 10, 20, 20], [79.6, 5, 90, 30], [0, 47.5, 30, 60]], np.float32)  # 0.4 and 0.5 px once clipped
    clipped = Detections(boxes, np.array([0.9, 0.8, 0.7], np.float32)).clipped((48, 80))
    np.testing.assert_allclose(clipped.boxes, [[10, 10, 20, 20]])


# --- weights that do not load or do not fit -------------------------------------------------------------------------


def _assert_no_unsafe_advice(message: str) -> None:
    assert "weights_only" not in message and "Re-running" not in message and "\x1b[" not in message
    assert "\n" not in message


def test_a_pickled_checkpoint_names_the_object_and_never_advises_loading_it_unsafely(tmp_path):
    from fractions import Fraction

    from segprompt.checkpoints import load_state_dict

    path = tmp_path / "pickled.pth"
    torch.save({"image_encoder.x": torch.zeros(1), "ratio": Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    assert str(caught.value) == (
        f"{path}: not a loadable PyTorch checkpoint (it holds a pickled fractions.Fraction object, "
        "and segprompt loads only tensors)"
    )


def test_a_model_folder_with_pickled_weights_never_advises_loading_them_unsafely(tmp_path, tiny_clipseg_folder):
    from fractions import Fraction

    from segprompt.hub import load_pretrained
    from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

    folder = shutil.copytree(tiny_clipseg_folder, tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    torch.save({"ratio": Fraction(1, 3)}, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="it holds a pickled fractions.Fraction object") as caught:
        load_pretrained(CLIPSegForImageSegmentation, CLIPSegProcessor, "CIDAS/clipseg-rd64-refined", folder)
    _assert_no_unsafe_advice(str(caught.value))


def test_a_training_state_with_pickled_objects_never_advises_loading_it_unsafely(tmp_path):
    from fractions import Fraction

    from segprompt.tuning.train import _load_state

    path = tmp_path / "last.pt"
    torch.save({"ratio": Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="cannot read the training state") as caught:
        _load_state(path, None, None)
    _assert_no_unsafe_advice(str(caught.value))


def test_truncated_tuned_prompts_are_a_checkpoint_error(tmp_path, tiny_clipseg_base, tiny_clipseg_folder):
    from segprompt.tuning import TunedCLIPSeg

    tuned = TunedCLIPSeg.create(tiny_clipseg_base, str(tiny_clipseg_folder), "coop", 64)
    folder = tuned.save(tmp_path / "tuned")
    prompts = folder / "prompts.safetensors"
    prompts.write_bytes(prompts.read_bytes()[:40])
    with pytest.raises(CheckpointError, match=f"^{prompts}: cannot read the tuned prompts") as caught:
        tuned.load_prompts(folder)
    _assert_no_unsafe_advice(str(caught.value))


def test_a_folder_of_another_model_is_refused_before_a_model_is_built(tmp_path, tiny_clipseg_folder, monkeypatch):
    import transformers

    from segprompt.hub import load_pretrained

    monkeypatch.setattr(transformers.SegGptForImageSegmentation, "from_pretrained",
                        classmethod(lambda *a, **k: pytest.fail("a random SegGPT was built")))
    with pytest.raises(CheckpointError) as caught:
        load_pretrained(transformers.SegGptForImageSegmentation, transformers.SegGptImageProcessor, "BAAI/seggpt-vit-large",
                        tiny_clipseg_folder)
    assert str(caught.value).startswith(f"{tiny_clipseg_folder}: holds a 'clipseg' model (CLIPSegForImageSegmentation)")


@pytest.mark.parametrize(
    "config, model_class, fits",
    [
        ({"model_type": "sam3_video", "detector_config": {"model_type": "sam3"},
          "tracker_config": {"model_type": "sam3_tracker_video"}}, "Sam3Model", True),
        ({"model_type": "sam3_video", "detector_config": {"model_type": "sam3"},
          "tracker_config": {"model_type": "sam3_tracker_video"}}, "Sam3TrackerModel", True),
        ({"model_type": "sam2_video"}, "Sam2Model", True),  # the hub's SAM 2.1 releases
        ({"model_type": "sam2"}, "SamHQModel", False),
        ({"model_type": "sam3_video", "detector_config": {"model_type": "sam3"}}, "Sam2Model", False),
    ],
)
def test_which_model_folders_fit_which_class(tmp_path, config, model_class, fits):
    import transformers

    from segprompt.hub import check_model_type

    (tmp_path / "config.json").write_text(json.dumps(config))
    if fits:
        check_model_type(tmp_path, getattr(transformers, model_class))
    else:
        with pytest.raises(CheckpointError, match=f"holds a {config['model_type']!r} model"):
            check_model_type(tmp_path, getattr(transformers, model_class))


def test_sam_weights_of_no_known_type_say_their_encoder_shape(tmp_path, tiny_sam_model):
    from segprompt.backends.sam_arch import build_sam

    state = dict(tiny_sam_model.state_dict())
    state = {k: v for k, v in state.items() if not k.startswith("image_encoder.blocks.1.")}  # one block, not two
    with pytest.raises(CheckpointError, match=r"their image encoder \(64 wide, 1 blocks\) matches no SAM model type"):
        build_sam("tiny", state)


# --- checkpoints changed in place -----------------------------------------------------------------------------------


@pytest.fixture
def fresh_process(monkeypatch):
    """Forget what this process hashed, as a new process would."""
    from segprompt import checkpoints

    def forget() -> None:
        monkeypatch.setattr(checkpoints, "_HASHED_IN_THIS_PROCESS", {})

    forget()
    return forget


def _hash_count(monkeypatch) -> list[Path]:
    from segprompt import checkpoints

    hashed: list[Path] = []
    real = checkpoints.file_sha256

    def counting(path, progress=None):
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(checkpoints, "file_sha256", counting)
    return hashed


def test_verification_records_live_in_the_cache_folder_not_beside_the_file(tmp_path, fresh_process):
    from segprompt.checkpoints import checkpoint_sha256, verified_dir

    weights = tmp_path / "user" / "random.bin"
    weights.parent.mkdir()
    weights.write_bytes(os.urandom(1000))
    checkpoint_sha256(weights)
    assert sorted(p.name for p in weights.parent.iterdir()) == ["random.bin"]
    records = list(verified_dir().iterdir())
    assert len(records) == 1 and json.loads(records[0].read_text())["path"] == str(weights)


def test_a_file_changed_in_place_with_its_old_stamp_is_hashed_again(tmp_path, fresh_process, monkeypatch):
    import hashlib

    from segprompt.checkpoints import checkpoint_sha256

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"A" * 4096)
    old = checkpoint_sha256(weights)
    stat = weights.stat()
    with open(weights, "r+b") as handle:  # same inode, same size...
        handle.write(b"B")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and its old modification time back
    assert (weights.stat().st_size, weights.stat().st_mtime_ns, weights.stat().st_ino) == (
        stat.st_size, stat.st_mtime_ns, stat.st_ino)
    new = checkpoint_sha256(weights)  # the change time gave it away, in this process too
    assert new != old and new == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_a_file_replaced_by_another_inode_is_hashed_again(tmp_path, fresh_process, monkeypatch):
    from segprompt.checkpoints import checkpoint_sha256

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"A" * 4096)
    checkpoint_sha256(weights)
    hashed = _hash_count(monkeypatch)
    checkpoint_sha256(weights)
    assert hashed == []  # unchanged, hashed in this process already
    copy = tmp_path / "copy.pth"
    shutil.copy2(weights, copy)
    os.replace(copy, weights)
    checkpoint_sha256(weights)
    assert hashed == [weights]


def test_a_digest_keying_the_cache_is_hashed_once_per_process_whatever_the_record_says(tmp_path, fresh_process,
                                                                                      monkeypatch):
    """A record whose stamp matches but whose digest is wrong (an edit no stamp shows) is never trusted for the cache."""
    from segprompt import checkpoints

    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"A" * 4096)
    truth = checkpoints.checkpoint_sha256(weights)
    record = next(checkpoints.verified_dir().iterdir())
    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": "0" * 64}))
    fresh_process()
    assert checkpoints.checkpoint_sha256(weights, trust_record=True) == "0" * 64  # a mere check may trust it
    assert checkpoints.resolve_checkpoint("tiny", weights)[1] == truth  # the cache key never does
    hashed = _hash_count(monkeypatch)
    assert checkpoints.resolve_checkpoint("tiny", weights)[1] == truth and hashed == []  # once per process


# --- stale temporary files and folders of our own naming ------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_folders_of_a_killed_folder_write_are_removed_on_the_next_write(tmp_path):
    from segprompt.atomic import atomic_directory

    target = tmp_path / "labels.zarr"
    dead = _dead_pid()
    stale = [tmp_path / f".labels.zarr.{dead}-0123abcd.tmp", tmp_path / f".labels.zarr.{dead}-4567abcd.old"]
    live = tmp_path / f".labels.zarr.{os.getpid()}-89abcdef.tmp"  # a writer of this process, still running
    other = tmp_path / f".other.zarr.{dead}-0123abcd.tmp"
    for folder in [*stale, live, other]:
        (folder / "c").mkdir(parents=True)
    with atomic_directory(target) as folder:
        (folder / "zarr.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "labels.zarr"])


def test_a_stale_write_check_probe_is_removed_by_the_next_check(tmp_path):
    from segprompt.atomic import check_writable

    probe = tmp_path / f"..segprompt-write-check.{_dead_pid()}-0123abcd.tmp"
    probe.write_bytes(b"")
    check_writable([tmp_path / "mask.png"])
    assert list(tmp_path.iterdir()) == []
