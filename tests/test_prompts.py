"""The prompt schema: every PromptError path and the JSON round trip of every kind."""

import json

import numpy as np
import pytest
import skimage.data

from segprompt.errors import PromptError
from segprompt.prompts import LOW_RES_SIDE, Box, Exemplars, MaskPrompt, Points, Prompt, Text, VisualReference


def _every_kind() -> Prompt:
    coffee = skimage.data.coffee()[:40, :60]
    reference_mask = np.zeros((40, 60), bool)
    reference_mask[10:20, 5:25] = True
    mask = np.zeros((30, 50), bool)
    mask[3:9, 4:12] = True
    return Prompt(
        points=Points.from_lists([[1.5, 2.0], [10, 20]], [[3, 4]]),
        box=Box(0, 1, 20.5, 30),
        mask=MaskPrompt(mask),
        text=Text("  a   polyp "),
        reference=VisualReference(coffee, reference_mask),
        exemplars=Exemplars.from_boxes([Box(1, 2, 10, 12)], [Box(20, 5, 30.5, 25)]),
    )


def test_json_round_trip_of_every_kind():
    prompt = _every_kind()
    again = Prompt.from_json(prompt.to_json())
    assert again == prompt
    assert again.kinds() == {"points", "box", "mask", "text", "reference", "exemplars"}
    assert again.text.phrase == "a polyp"  # whitespace normalised
    np.testing.assert_array_equal(again.points.labels, [1, 1, 0])
    assert again.reference.image.dtype == np.uint8 and again.reference.image.shape == (40, 60, 3)


@pytest.mark.parametrize("name", ["points", "box", "mask", "text", "reference", "exemplars"])
def test_json_round_trip_of_each_kind_alone(name):
    prompt = Prompt(**{name: getattr(_every_kind(), name)})
    assert Prompt.from_json(prompt.to_json(indent=2)) == prompt
    assert prompt.kinds() == {name}


def test_logits_mask_round_trip():
    logits = np.linspace(-3, 3, LOW_RES_SIDE * LOW_RES_SIDE, dtype=np.float32).reshape(1, LOW_RES_SIDE, LOW_RES_SIDE)
    prompt = Prompt(mask=MaskPrompt(logits, kind="logits"))
    again = Prompt.from_json(prompt.to_json())
    assert again.mask.kind == "logits" and again.mask.data.shape == (LOW_RES_SIDE, LOW_RES_SIDE)
    np.testing.assert_array_equal(again.mask.data, logits[0])


def test_exemplars_split_into_positive_and_negative_boxes():
    exemplars = Exemplars.from_boxes([Box(0, 0, 4, 4), Box(5, 5, 9, 9)], [Box(1, 1, 2, 2)])
    assert len(exemplars) == 3
    np.testing.assert_array_equal(exemplars.labels, [1, 1, 0])
    np.testing.assert_array_equal(exemplars.positive, [[0, 0, 4, 4], [5, 5, 9, 9]])
    np.testing.assert_array_equal(exemplars.negative, [[1, 1, 2, 2]])
    assert json.loads(Prompt(exemplars=exemplars).to_json())["exemplars"]["labels"] == [1, 1, 0]
    with pytest.raises(ValueError):
        exemplars.boxes[0, 0] = 3


def test_logits_of_sam3s_tracker_frame_round_trip():
    logits = np.zeros((288, 288), np.float32)
    assert Prompt.from_json(Prompt(mask=MaskPrompt(logits, kind="logits")).to_json()).mask.data.shape == (288, 288)


def test_parts_are_read_only():
    points = Points.from_lists([[1, 2]])
    with pytest.raises(ValueError):
        points.xy[0, 0] = 5


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Points(np.array([[1.0, np.nan]]), [1]), "points.xy: non-finite coordinate"),
        (lambda: Points(np.zeros((0, 2)), []), "at least one point"),
        (lambda: Points(np.zeros((2, 3)), [1, 1]), "expected shape (N, 2)"),
        (lambda: Points(np.zeros((2, 2)), [1]), "points.labels: expected shape (2,)"),
        (lambda: Points(np.zeros((1, 2)), [2]), "label must be 1 (include) or 0 (exclude)"),
        (lambda: Points([["a", "b"]], [1]), "cannot convert"),
        (lambda: Box(10, 0, 5, 5), "inverted or empty box, x1=5.0 <= x0=10.0"),
        (lambda: Box(0, 5, 5, 5), "y1=5.0 <= y0=5.0"),
        (lambda: Box(0, 0, float("nan"), 5), "box.x1: non-finite value"),
        (lambda: Box(0, 0, "wide", 5), "box.x1: not a number"),
        (lambda: Box.from_mask(np.zeros((4, 4), bool)), "empty mask"),
        (lambda: MaskPrompt(np.array([[0, 2], [1, 0]])), "only 0/1 (or 0/255)"),
        (lambda: MaskPrompt(np.zeros((4, 4)), kind="soft"), "mask.kind"),
        (lambda: MaskPrompt(np.zeros((64, 64), np.float32), kind="logits"), "logits must have shape (256, 256)"),
        (lambda: MaskPrompt(np.full((256, 256), np.nan, np.float32), kind="logits"), "NaN or infinite"),
        (lambda: MaskPrompt(np.zeros((2, 3, 4), bool)), "expected a 2-D (H, W) mask"),
        (lambda: Text("   "), "empty text"),
        (lambda: Text(3), "expected a string"),
        (lambda: VisualReference(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), bool)), "reference mask is empty"),
        (lambda: VisualReference(np.zeros((8, 8, 3), np.uint8), np.ones((4, 4), bool)), "does not match"),
        (lambda: VisualReference(np.zeros((8, 8, 2), np.uint8), np.ones((8, 8), bool)), "reference.image"),
        (lambda: Prompt(box=(0, 0, 1, 1)), "prompt.box: expected Box"),
        (lambda: MaskPrompt(np.zeros((288, 256), np.float32), kind="logits"), "(256, 256) or (288, 288)"),
        (lambda: Exemplars(np.zeros((0, 4)), []), "exemplars.boxes: at least one box"),
        (lambda: Exemplars(np.zeros((2, 3)), [1, 1]), "exemplars.boxes: expected shape (N, 4)"),
        (lambda: Exemplars([[0, 0, 5, 5], [4, 0, 2, 5]], [1, 0]), "exemplars.boxes[1]: inverted or empty box (4, 0, 2, 5)"),
        (lambda: Exemplars([[0, 0, np.inf, 5]], [1]), "exemplars.boxes[0]: non-finite"),
        (lambda: Exemplars([[0, 0, 5, 5]], [1, 0]), "exemplars.labels: expected shape (1,)"),
        (lambda: Exemplars([[0, 0, 5, 5]], [-1]), "label must be 1 (positive) or 0 (negative)"),
        (lambda: Exemplars([["a", 0, 5, 5]], [1]), "exemplars.boxes: cannot convert"),
        (lambda: Prompt(exemplars=Box(0, 0, 1, 1)), "prompt.exemplars: expected Exemplars"),
    ],
)
def test_malformed_parts_raise_prompt_error(build, message):
    with pytest.raises(PromptError) as info:
        build()
    assert message in str(info.value)


@pytest.mark.parametrize(
    "prompt, message",
    [
        (Prompt(points=Points.from_lists([[10, 2], [60, 5]])), "points.xy[1]: point (x=60, y=5) is outside the 60x40"),
        (Prompt(points=Points.from_lists([[-0.5, 2]])), "point (x=-0.5, y=2)"),
        (Prompt(points=Points.from_lists([[3, 40]])), "outside"),
        (Prompt(box=Box(0, 0, 61, 10)), "box: (0, 0, 61, 10) is outside the 60x40"),
        (Prompt(box=Box(-1, 0, 10, 10)), "is outside"),
        (Prompt(mask=MaskPrompt(np.ones((40, 61), bool))), "mask shape (40, 61) does not match the image shape (40, 60)"),
        (
            Prompt(exemplars=Exemplars.from_boxes([Box(0, 0, 10, 10)], [Box(50, 30, 60, 41)])),
            "exemplars.boxes[1]: (50, 30, 60, 41) is outside the 60x40",
        ),
    ],
)
def test_validate_for_rejects_what_lies_outside_the_image(prompt, message):
    with pytest.raises(PromptError) as info:
        prompt.validate_for((40, 60))
    assert message in str(info.value)


def test_validate_for_accepts_the_edges():
    # Points at the last pixel and a box covering the whole image are inside.
    prompt = Prompt(points=Points.from_lists([[59.9, 39.9], [0, 0]]), box=Box(0, 0, 60, 40), mask=MaskPrompt(np.ones((40, 60))))
    assert prompt.validate_for((40, 60)) is prompt


@pytest.mark.parametrize(
    "text, message",
    [
        ("{bad", "prompt: invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"boxes": {}}', "unknown field(s) ['boxes']"),
        ('{"box": {"x0": 1}}', "prompt.box: malformed entry"),
        ('{"mask": {"kind": "binary", "data": {"npy_zlib_base64": "AAAA"}}}', "stored array is not a valid encoded array"),
    ],
)
def test_bad_json_raises_prompt_error(text, message):
    with pytest.raises(PromptError) as info:
        Prompt.from_json(text)
    assert message in str(info.value)


def test_json_is_plain_and_versioned():
    data = json.loads(Prompt(box=Box(1, 2, 3, 4), points=Points.from_lists([[1, 1]])).to_json())
    assert data == {"schema": 1, "points": {"xy": [[1.0, 1.0]], "labels": [1]}, "box": {"x0": 1.0, "y0": 2.0, "x1": 3.0, "y1": 4.0}}
    assert Prompt().is_empty()


@pytest.mark.parametrize("copy_of", ["pickle", "deepcopy"])
def test_copies_stay_read_only(copy_of):
    """A prompt sent to a Dask worker (pickled) or deep-copied keeps its read-only promise."""
    import copy
    import pickle

    prompt = _every_kind()
    twin = pickle.loads(pickle.dumps(prompt)) if copy_of == "pickle" else copy.deepcopy(prompt)
    assert twin == prompt
    arrays = {
        "points.xy": twin.points.xy, "points.labels": twin.points.labels, "mask.data": twin.mask.data,
        "reference.image": twin.reference.image, "reference.mask": twin.reference.mask,
        "exemplars.boxes": twin.exemplars.boxes, "exemplars.labels": twin.exemplars.labels,
    }
    for name, array in arrays.items():
        assert not array.flags.writeable, name
        with pytest.raises(ValueError):
            array.flat[0] = array.flat[0]
    assert prompt.points.xy is not twin.points.xy  # the copy froze its own arrays


def test_a_newer_schema_is_refused_naming_the_field_and_version(tmp_path):
    data = json.loads(Prompt(box=Box(1, 2, 3, 4)).to_json())
    data["schema"] = Prompt.SCHEMA_VERSION + 1
    with pytest.raises(PromptError, match=r"prompt\.schema: version 2 is newer than this segprompt reads \(version 1\)"):
        Prompt.from_dict(data)
    for bad in ("1", 0, True, None):
        with pytest.raises(PromptError, match="prompt.schema: expected a positive integer version"):
            Prompt.from_dict({**data, "schema": bad})
    assert Prompt.from_dict({"box": data["box"]}).box == Box(1, 2, 3, 4)  # no schema: version 1
    # a file names itself (the CLI's reader)
    from segprompt.cli.segment import read_prompt_file

    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PromptError, match=rf"{path.name}: prompt\.schema: version 2"):
        read_prompt_file(path)
