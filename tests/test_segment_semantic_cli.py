"""The text / reference / classes flags of ``segprompt segment``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from skimage import data

from segprompt.cli.semantic_flags import add_arguments, classes_from_args, prompt_parts
from segprompt.errors import ImageError, PromptError
from segprompt.io import write_image, write_mask
from segprompt.prompts import Text, VisualReference

IMAGE = data.coffee()[::4, ::4]  # 100 x 150 RGB


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture
def reference_files(tmp_path):
    image, mask = tmp_path / "ref.png", tmp_path / "ref_mask.png"
    write_image(image, IMAGE)
    target = np.zeros(IMAGE.shape[:2], bool)
    target[20:60, 40:90] = True
    write_mask(mask, target)
    return image, mask, target


def test_text_and_reference_parts(reference_files):
    image, mask, target = reference_files
    parts = prompt_parts(_parse("--text", " coffee  cup ", "--reference", str(image), "--reference-mask", str(mask)))
    assert parts["text"] == Text("coffee cup")
    assert isinstance(parts["reference"], VisualReference)
    np.testing.assert_array_equal(parts["reference"].mask, target)
    np.testing.assert_array_equal(parts["reference"].image, IMAGE)
    assert prompt_parts(_parse()) == {}


def test_reference_flag_errors_name_the_flag_and_file(reference_files, tmp_path):
    image, mask, _ = reference_files
    with pytest.raises(PromptError, match="--reference and --reference-mask must be given together"):
        prompt_parts(_parse("--reference", str(image)))
    empty = tmp_path / "empty.png"
    write_mask(empty, np.zeros(IMAGE.shape[:2], bool))
    with pytest.raises(PromptError, match=r"--reference .*ref.png with mask .*empty.png: .*empty"):
        prompt_parts(_parse("--reference", str(image), "--reference-mask", str(empty)))
    with pytest.raises(ImageError, match="missing.png: no such file"):
        prompt_parts(_parse("--reference", str(tmp_path / "missing.png"), "--reference-mask", str(mask)))
    with pytest.raises(PromptError, match="--text: text.phrase: empty text"):
        prompt_parts(_parse("--text", "  "))


def test_classes_default_to_their_names_as_text_with_overrides(reference_files):
    image, mask, target = reference_files
    args = _parse(
        "--classes", "cup, table,saucer",
        "--class-text", "table", "wooden table",
        "--class-reference", "saucer", str(image), str(mask),
    )  # fmt: skip
    classes = classes_from_args(args)
    assert list(classes) == ["cup", "table", "saucer"]
    assert classes["cup"] == Text("cup") and classes["table"] == Text("wooden table")
    np.testing.assert_array_equal(classes["saucer"].mask, target)
    assert classes_from_args(_parse()) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--classes", "cup,,table"), "--classes: empty class name"),
        (("--classes", "cup,cup"), "--classes: class 'cup' is given twice"),
        (("--classes", "cup", "--class-text", "dog", "a dog"), r"--class-text: class 'dog' is not in --classes \(cup\)"),
        (("--class-text", "dog", "a dog"), "--class-text and --class-reference need --classes"),
    ],
)
def test_class_flag_errors(argv, message):
    with pytest.raises(PromptError, match=message):
        classes_from_args(_parse(*argv))


# ---- through the real CLI, with tiny random models saved to folders ----


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from segprompt.backends.sam_arch import build_sam
    from segprompt.testing import tiny_clipseg_dir

    root = tmp_path_factory.mktemp("models")
    checkpoint = root / "sam_tiny.pth"
    torch.save(build_sam("tiny", seed=0).state_dict(), checkpoint)
    return {"clipseg": tiny_clipseg_dir(root / "clipseg"), "sam": checkpoint}


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "coffee.png"
    write_image(path, IMAGE)
    return path


def _main(*argv) -> int:
    from segprompt.cli import main

    return main([str(arg) for arg in argv])


def test_cli_text_prompt_with_clipseg(models, image_file, tmp_path):
    from segprompt.backends import create
    from segprompt.io import read_mask
    from segprompt.prompts import Prompt

    out = tmp_path / "mask.png"
    code = _main(
        "segment", image_file, "--backend", "clipseg", "--model-dir", models["clipseg"],
        "--text", "coffee cup", "--out", out, "--overlay", tmp_path / "overlay.png",
    )  # fmt: skip
    assert code == 0 and (tmp_path / "overlay.png").is_file()
    clipseg = create("clipseg", model_dir=models["clipseg"])
    expected = clipseg.segment(IMAGE, Prompt(text=Text("coffee cup"))).best_mask
    np.testing.assert_array_equal(read_mask(out) > 0, expected)


def test_cli_reference_prompt_with_persam_and_composed_with_points(models, image_file, reference_files, tmp_path):
    from segprompt.backends.persam import PerSamSegmenter
    from segprompt.io import read_mask
    from segprompt.prompts import Points, Prompt

    reference_image, reference_mask, target = reference_files
    reference = ["--reference", reference_image, "--reference-mask", reference_mask]
    sam_flags = ["--model-type", "tiny", "--checkpoint", models["sam"]]
    out = tmp_path / "persam.png"
    assert _main("segment", image_file, "--backend", "persam", *sam_flags, *reference, "--out", out) == 0
    persam = PerSamSegmenter("tiny", models["sam"])
    prompt = Prompt(reference=VisualReference(IMAGE, target))
    np.testing.assert_array_equal(read_mask(out) > 0, persam.segment(IMAGE, prompt).best_mask)

    composed_out = tmp_path / "composed.png"
    code = _main(
        "segment", image_file, "--backend", "composed", "--proposer", "persam", *sam_flags, *reference,
        "--point", "110,30", "--point", "5,5,0", "--out", composed_out,
    )  # fmt: skip
    assert code == 0
    from segprompt.compose import ComposedSegmenter

    composed = ComposedSegmenter(persam, persam.sam)
    full = Prompt(reference=prompt.reference, points=Points.from_lists([(110, 30)], [(5, 5)]))
    expected = composed.segment(IMAGE, full, multimask=False).best_mask  # the CLI asks for one mask
    np.testing.assert_array_equal(read_mask(composed_out) > 0, expected)


def test_cli_classes_write_a_label_map_class_names_and_an_overlay(models, image_file, reference_files, tmp_path):
    import json

    from segprompt.backends import create
    from segprompt.io import read_mask
    from segprompt.semantic import segment_classes

    reference_image, reference_mask, target = reference_files
    out = tmp_path / "labels.png"
    code = _main(
        "segment", image_file, "--backend", "clipseg", "--model-dir", models["clipseg"],
        "--classes", "cup,table,saucer", "--class-text", "table", "wooden table",
        "--class-reference", "saucer", reference_image, reference_mask,
        "--out", out, "--overlay", tmp_path / "labels_overlay.png",
    )  # fmt: skip
    assert code == 0
    names = json.loads((tmp_path / "labels.classes.json").read_text())
    assert names == {"0": "background", "1": "cup", "2": "table", "3": "saucer"}
    classes = {"cup": Text("cup"), "table": Text("wooden table"), "saucer": VisualReference(IMAGE, target)}
    expected = segment_classes(IMAGE, classes, create("clipseg", model_dir=models["clipseg"])).labels
    np.testing.assert_array_equal(read_mask(out), expected)
    assert (tmp_path / "labels_overlay.png").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--backend", "classical", "--text", "cup"), "'classical' does not accept text"),
        (("--backend", "classical", "--classes", "cup", "--point", "3,3"), "--classes cannot be combined with --point"),
        (("--backend", "clipseg", "--checkpoint", "x.pth", "--text", "cup"), "--checkpoint is not used by the 'clipseg'"),
        (("--backend", "classical", "--reference", "ref.png"), "--reference and --reference-mask must be given together"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(image_file, tmp_path, capsys, argv, message):
    assert _main("segment", image_file, *argv, "--out", tmp_path / "out.png") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()
