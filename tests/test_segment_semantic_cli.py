"""The text / reference / classes flags of ``segprompt segment``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from skimage import data

from segprompt.cli.semantic_flags import add_arguments, classes_from_args, prompt_parts
from segprompt.errors import ImageError, PromptError
from segprompt.io import write_image, write_mask
from segprompt.prompts import Text, VisualReference

IMAGE = data.coffee()[::4, ::4]  # 100 x 150 RGB


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
