"""Headless annotation session: prompts -> preview -> accepted objects, undo/redo, save/load.

Runs a real random-initialised tiny SAM (no weights, no Qt) on a non-square
crop of scikit-image's coffee image; the masks are meaningless but every
code path (decoder, ranking, label bookkeeping, files) is the real one.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from segprompt.annotation import AnnotationSession, box_from_vertices, rowcol_to_xy, wants_multimask
from segprompt.errors import ImageError, PromptError, SegpromptError, UnsupportedPromptError
from segprompt.io import read_mask, write_mask
from segprompt.prompts import Box, Points, Prompt, Text
from segprompt.session_file import LEGACY_SUFFIX, SESSION_FORMAT, SESSION_SCHEMA

IMAGE = data.coffee()[::5, ::5]  # (80, 120, 3): non-square, so a (row, col) / (x, y) swap cannot pass


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sam_and_embedding(tiny_sam):
    return tiny_sam, tiny_sam.embed(IMAGE)


@pytest.fixture
def session(sam_and_embedding):
    return AnnotationSession(*sam_and_embedding)


def click(x: float, y: float, label: int = 1) -> Prompt:
    return Prompt(points=Points(np.array([[x, y]]), np.array([label])))


def test_rowcol_to_xy_swaps_axes_and_drops_leading_ones():
    napari_points = np.array([[10.0, 70.0], [79.0, 0.5]])  # (row, col) in an 80 x 120 image
    np.testing.assert_array_equal(rowcol_to_xy(napari_points), [[70.0, 10.0], [0.5, 79.0]])
    stack_points = np.array([[3.0, 10.0, 70.0]])  # (plane, row, col)
    np.testing.assert_array_equal(rowcol_to_xy(stack_points), [[70.0, 10.0]])
    # The converted point validates against the (H, W) = (80, 120) image only in (x, y) order.
    Prompt(points=Points(rowcol_to_xy(np.array([[10.0, 110.0]])), np.array([1]))).validate_for((80, 120))
    with pytest.raises(PromptError):
        Prompt(points=Points(np.array([[10.0, 110.0]]), np.array([1]))).validate_for((80, 120))
    with pytest.raises(PromptError, match="napari positions"):
        rowcol_to_xy(np.array([1.0, 2.0]))


def test_box_from_rectangle_vertices_is_xyxy_and_clipped():
    # napari rectangle corners (row, col): rows 5..30, cols 40..100.
    rectangle = np.array([[5.0, 40.0], [5.0, 100.0], [30.0, 100.0], [30.0, 40.0]])
    assert box_from_vertices(rectangle, (80, 120)) == Box(40.0, 5.0, 100.0, 30.0)
    overhanging = np.array([[-10.0, 90.0], [50.0, 150.0]])
    assert box_from_vertices(overhanging, (80, 120)) == Box(90.0, 0.0, 120.0, 50.0)
    with pytest.raises(PromptError, match="does not overlap"):
        box_from_vertices(np.array([[100.0, 10.0], [120.0, 30.0]]), (80, 120))


def test_multimask_only_for_a_single_click():
    assert wants_multimask(click(3, 4))
    assert not wants_multimask(Prompt(points=Points.from_lists([(3, 4), (5, 6)])))
    assert not wants_multimask(Prompt(points=Points.from_lists([(3, 4)]), box=Box(0, 0, 10, 10)))


def test_single_click_preview_is_best_candidate_and_cycles(session, sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    preview = session.update(click(60, 40))
    reference = segmenter.predict(embedding, click(60, 40), multimask=True)
    assert session.n_candidates == 3
    np.testing.assert_array_equal(preview, reference.best_mask)
    ranked = np.argsort(-reference.scores)
    for rank in (1, 2, 0):  # wraps around
        np.testing.assert_array_equal(session.cycle(1), reference.masks[ranked[rank]])
    np.testing.assert_array_equal(session.cycle(-1), reference.masks[ranked[2]])
    assert session.preview_score == pytest.approx(float(reference.scores[ranked[2]]))


def test_preview_method_follows_the_candidate_shown():
    from segprompt.backends import create

    classical = create("classical")
    session = AnnotationSession(classical, classical.embed(IMAGE))
    prediction = session.predict(Prompt(box=Box(30, 10, 90, 70)))
    session.set_preview(Prompt(box=Box(30, 10, 90, 70)), prediction)
    ranked = np.argsort(-prediction.scores, kind="stable")
    for rank in range(session.n_candidates):
        assert session.preview_method == prediction.methods[ranked[rank]]
        session.cycle(1)
    assert "fallback ellipse" in prediction.methods


def test_accept_undo_redo(session):
    first = session.update(click(60, 40)).copy()
    assert session.accept() == 1
    np.testing.assert_array_equal(session.labels == 1, first)
    assert session.preview is None and session.prompt is None

    second = session.update(Prompt(box=Box(0, 0, 60, 80))).copy()
    assert session.accept() == 2
    # The second object only took pixels the first left free.
    np.testing.assert_array_equal(session.labels == 2, second & ~first)
    np.testing.assert_array_equal(session.labels == 1, first)

    assert session.undo() == 2
    np.testing.assert_array_equal(session.labels, first.astype(np.int32))
    assert session.redo() == 2
    np.testing.assert_array_equal(session.labels == 2, second & ~first)
    assert session.undo() == 2 and session.undo() == 1
    assert not session.labels.any()
    assert session.undo() is None
    # A new accept forgets the redo history and reuses the lowest free id.
    session.update(click(60, 40))
    assert session.accept() == 1
    assert not session.can_redo and session.redo() is None


def test_accept_errors(session):
    with pytest.raises(SegpromptError, match="no preview"):
        session.accept()
    session.labels[:] = 7  # every pixel already belongs to an object
    session.update(click(60, 40))
    with pytest.raises(SegpromptError, match="entirely on objects"):
        session.accept()
    assert session.next_label == 8


def test_unsupported_prompt_clears_the_stale_preview(session):
    session.update(click(60, 40))
    with pytest.raises(UnsupportedPromptError, match="text"):
        session.update(Prompt(text=Text("cup")))
    assert session.preview is None


def test_save_load_round_trip(session, sam_and_embedding, tmp_path):
    prompts = [click(60, 40), Prompt(points=Points.from_lists([(10, 10)], [(100, 70)]), box=Box(0, 0, 60, 80))]
    for prompt in prompts:
        session.update(prompt)
        session.accept()
    expected = session.labels.copy()
    json_path = session.save(tmp_path / "objects.tif")
    assert json_path == tmp_path / "objects.session.json"
    np.testing.assert_array_equal(read_mask(tmp_path / "objects.tif"), expected)
    record = json.loads(json_path.read_text())
    assert record["format"] == SESSION_FORMAT and record["schema"] == SESSION_SCHEMA
    assert record["image"]["hw"] == [80, 120] and record["labels_file"] == "objects.tif"
    assert [o["label"] for o in record["objects"]] == [1, 2]
    assert [o["area"] for o in record["objects"]] == [int((expected == 1).sum()), int((expected == 2).sum())]

    fresh = AnnotationSession(*sam_and_embedding)
    fresh.load(tmp_path / "objects.tif")
    np.testing.assert_array_equal(fresh.labels, expected)
    assert [o.prompt for o in fresh.objects] == prompts
    assert [o.score for o in fresh.objects] == pytest.approx([o.score for o in session.objects])
    assert [o.source for o in fresh.objects] == ["prompt", "prompt"]
    # Loading starts a fresh undo history; edits of loaded objects are undoable.
    assert fresh.undo() is None
    fresh.delete([2])
    np.testing.assert_array_equal(fresh.labels, np.where(expected == 2, 0, expected))
    assert fresh.undo() == 2
    np.testing.assert_array_equal(fresh.labels, expected)


def test_png_labels_without_prompts_file(session, tmp_path):
    labels = np.zeros((80, 120), np.uint8)
    labels[10:20, 30:50] = 3
    labels[50:60, 5:9] = 5
    write_mask(tmp_path / "manual.png", labels)
    session.load(tmp_path / "manual.png")
    assert [o.label for o in session.objects] == [3, 5]
    assert all(o.prompt is None for o in session.objects)
    assert session.next_label == 6


def test_load_errors(session, tmp_path):
    write_mask(tmp_path / "small.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageError, match=r"\(10, 10\) does not match"):
        session.load(tmp_path / "small.png")

    labels = np.zeros((80, 120), np.uint8)
    labels[:5, :5] = 1
    write_mask(tmp_path / "objects.png", labels)
    prompts = tmp_path / f"objects{LEGACY_SUFFIX}"  # a schema 1 file, as the first plugin wrote them
    prompts.write_text(json.dumps({"format": SESSION_FORMAT, "objects": [{"label": 2, "prompt": None}]}))
    with pytest.raises(SegpromptError, match=r"objects\[0\].label=2 is not in"):
        session.load(tmp_path / "objects.png")
    prompts.write_text("{not json")
    with pytest.raises(SegpromptError, match="invalid JSON"):
        session.load(tmp_path / "objects.png")
    prompts.write_text(json.dumps({"objects": []}))
    with pytest.raises(SegpromptError, match="not a segprompt annotation file"):
        session.load(tmp_path / "objects.png")
    prompts.write_text(json.dumps({"format": SESSION_FORMAT, "objects": [{"label": 1, "prompt": {"pointz": 1}}]}))
    with pytest.raises(SegpromptError, match=r"objects\[0\] is malformed"):
        session.load(tmp_path / "objects.png")
    assert not session.labels.any()  # a failed load leaves the session as it was


def test_labels_argument_is_checked(sam_and_embedding):
    with pytest.raises(ImageError, match=r"integer \(80, 120\) map"):
        AnnotationSession(*sam_and_embedding, labels=np.zeros((80, 120), np.float32))


def test_undo_keeps_manual_edits_and_works_on_views(sam_and_embedding):
    canvas = np.zeros((80, 240), np.int32)
    session = AnnotationSession(*sam_and_embedding, labels=canvas[:, ::2])  # a non-contiguous view
    preview = session.update(click(60, 40)).copy()
    assert session.accept() == 1
    np.testing.assert_array_equal(canvas[:, ::2] == 1, preview)
    edited = np.flatnonzero(preview)[:5]
    session.labels.flat[edited] = 9  # the user repaints part of the object by hand
    assert session.undo() == 1
    np.testing.assert_array_equal(np.flatnonzero(session.labels), edited)
    assert (session.labels.flat[edited] == 9).all()


def test_a_concept_answer_is_accepted_as_one_object_per_instance_and_undone_at_once(session):
    from segprompt.instances import Instances, InstancesPrediction

    height, width = session.image_hw
    masks = np.zeros((3, height, width), bool)
    masks[0, 10:30, 10:40] = True
    masks[1, 20:50, 30:60] = True  # overlaps instance 0: the better one keeps the shared pixels
    masks[2, 60:70, 100:110] = True
    instances = Instances(masks, np.array([0.5, 0.9, 0.7]))
    prompt = Prompt(text=Text("cell"))
    session.set_preview(prompt, InstancesPrediction.from_instances(instances))
    assert len(session.instances) == 3
    first = session.accept()
    assert first == 1 and [o.label for o in session.objects] == [1, 2, 3]
    assert [o.score for o in session.objects] == pytest.approx([0.9, 0.7, 0.5])  # best first
    np.testing.assert_array_equal(session.labels == 1, masks[1])
    np.testing.assert_array_equal(session.labels == 3, masks[0] & ~masks[1])
    assert all(o.prompt == prompt for o in session.objects)
    before = session.labels.copy()
    assert session.undo() == 1 and not session.labels.any() and not session.objects
    assert session.redo() == 1
    np.testing.assert_array_equal(session.labels, before)
    session.update(Prompt(points=Points.from_lists([[100, 20]])))
    assert session.instances is None
    label = session.accept()
    assert label == 4 and session.undo() == 4 and len(session.objects) == 3  # a single accept undoes alone
