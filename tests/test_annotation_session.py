"""Objects, not pixels: edits of committed objects (rename, delete, re-prompt, refine, import, everything), their
undo/redo, hand edits, and replay of a saved session bit for bit (classical backend and a random-init tiny SAM).

Every expected mask is the backend's own answer to the same prompt, computed here independently of the session.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage import data

from segprompt.annotation import AnnotationSession
from segprompt.backends import create
from segprompt.errors import ImageError, SegpromptError, UnsupportedPromptError
from segprompt.everything import everything_settings, settings_from_strings
from segprompt.everything.classical import classical_labels
from segprompt.prompts import Box, MaskPrompt, Points, Prompt, Text
from segprompt.replay import check_image, check_model, check_replayable, replay, reproduces
from segprompt.session_file import SessionFileError, image_digest, read_session_record

IMAGE = data.coffee()[::5, ::5]  # (80, 120, 3): non-square
COINS = data.coins()[:120, :200]  # a handful of coins, a few seconds of classical everything


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sam_and_embedding(tiny_sam):
    return tiny_sam, tiny_sam.embed(IMAGE)


@pytest.fixture(scope="module")
def classical_and_embedding():
    classical = create("classical")
    return classical, classical.embed(COINS)


def click(x: float, y: float) -> Prompt:
    return Prompt(points=Points(np.array([[x, y]]), np.array([1])))


def state(session: AnnotationSession):
    """Everything an undo must restore: the pixels and every record field."""
    records = [(o.label, o.class_name, None if np.isnan(o.score) else o.score, o.backend, o.source, len(o.prompts))
               for o in session.objects]
    return session.labels.copy(), records


def assert_same_state(a, b):
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def test_objects_carry_class_score_backend_model_prompts_area_and_box(sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    session = AnnotationSession(segmenter, embedding)
    session.update(click(60, 40))
    session.cycle(1)  # the second-ranked candidate
    expected = session.preview.copy()
    score = session.preview_score
    label = session.accept("cup")
    record = session.object(label)
    assert (record.label, record.class_name, record.backend, record.model_id) == (1, "cup", "sam", segmenter.model_id)
    assert record.score == pytest.approx(score) and record.source == "prompt" and record.prompts == (click(60, 40),)
    assert session.history[-1] == {"op": "accept", "prompt": click(60, 40).to_dict(), "candidate": 1, "class_name": "cup"}
    (row,) = session.rows()
    assert row.area == int(expected.sum()) and row.box == tuple(int(v) for v in Box.from_mask(expected).as_array())
    assert (row.class_name, row.source, row.prompts) == ("cup", "prompt", 1)
    with pytest.raises(SegpromptError, match="class name '  ' is empty"):
        session.update(click(20, 20))
        session.accept("  ")


def test_rename_delete_and_reprompt_are_undone_and_redone_exactly(sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    session = AnnotationSession(segmenter, embedding)
    session.update(click(60, 40))
    session.accept("cup")
    session.update(Prompt(box=Box(0, 0, 50, 80)))
    session.accept("saucer")
    states = [state(session)]

    session.rename([1, 2], " mug  ")
    assert [o.class_name for o in session.objects] == ["mug", "mug"] and session.undo_description == "rename 2 objects to 'mug'"
    states.append(state(session))

    session.delete([2])
    assert not (session.labels == 2).any() and [o.label for o in session.objects] == [1]
    states.append(state(session))

    new_prompt = Prompt(box=Box(70, 10, 118, 70))
    answer = segmenter.predict(embedding, new_prompt, multimask=False)
    session.update(new_prompt)
    assert session.reprompt(1) == 1
    np.testing.assert_array_equal(session.labels == 1, answer.best_mask)  # nothing else left to collide with
    record = session.object(1)
    assert record.class_name == "mug" and record.prompts == (click(60, 40), new_prompt)
    assert record.score == pytest.approx(float(answer.scores[answer.best])) and session.preview is None
    states.append(state(session))

    for expected in reversed(states[:-1]):  # undo walks back through every edit of committed objects
        assert session.undo() is not None
        assert_same_state(state(session), expected)
    for expected in states[1:]:
        assert session.redo() is not None
        assert_same_state(state(session), expected)
    assert session.redo() is None
    with pytest.raises(SegpromptError, match="there is no object 9"):
        session.delete([9])
    with pytest.raises(SegpromptError, match="no preview"):
        session.reprompt(1)


def test_reprompt_keeps_id_and_class_and_never_takes_another_objects_pixels(sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    session = AnnotationSession(segmenter, embedding)
    session.update(Prompt(box=Box(0, 0, 60, 80)))
    session.accept("left")
    session.update(Prompt(box=Box(60, 0, 120, 80)))
    session.accept("right")
    left_before = session.labels == 1
    grown = Prompt(box=Box(0, 0, 120, 80))  # the whole image: it may only keep its own and free pixels
    answer = segmenter.predict(embedding, grown, multimask=False).best_mask
    session.update(grown)
    session.reprompt(2)
    np.testing.assert_array_equal(session.labels == 1, left_before)
    np.testing.assert_array_equal(session.labels == 2, answer & ~left_before)
    assert session.object(2).class_name == "right"


def test_import_then_refine_keeps_ids_and_classes(sam_and_embedding):
    segmenter, embedding = sam_and_embedding
    existing = np.zeros((80, 120), np.uint16)
    existing[5:40, 10:50] = 3
    existing[45:75, 60:110] = 7
    existing[2:6, 100:115] = 300
    session = AnnotationSession(segmenter, embedding)
    assert session.import_labels(existing, {3: "cup", 7: "saucer"}, "mine.png") == [3, 7, 300]
    np.testing.assert_array_equal(session.labels, existing)
    assert [(o.label, o.class_name, o.source) for o in session.objects] == [
        (3, "cup", "import"), (7, "saucer", "import"), (300, "object", "import")
    ]
    with pytest.raises(SegpromptError, match="ids 3, 7, 300 are already objects"):
        session.import_labels(existing)

    assert session.refine([3, 7]) == [3, 7]
    # Each object's prompt is its own box and mask; the refined mask is the decoder's answer to it.
    answers = {}
    for label in (3, 7):
        prompt = Prompt(box=Box.from_mask(existing == label), mask=MaskPrompt(existing == label))
        assert session.object(label).prompts == (prompt,)
        answers[label] = segmenter.predict(embedding, prompt, multimask=False)
    order = sorted((3, 7), key=lambda k: -float(answers[k].scores[0]))
    free = existing != 300
    for label in order:
        np.testing.assert_array_equal(session.labels == label, answers[label].best_mask & free)
        free &= ~answers[label].best_mask
    assert [(o.label, o.class_name) for o in session.objects] == [(3, "cup"), (7, "saucer"), (300, "object")]
    assert [o.source for o in session.objects] == ["refine", "refine", "import"]
    np.testing.assert_array_equal(session.labels == 300, existing == 300)  # not refined, not overwritten
    assert session.undo() == 3
    np.testing.assert_array_equal(session.labels, existing)


def test_refine_errors_name_the_object_or_backend(sam_and_embedding):
    session = AnnotationSession(*sam_and_embedding)
    with pytest.raises(SegpromptError, match="objects 4 have no pixels"):
        session.refine([4])
    with pytest.raises(ImageError, match=r"expected an integer \(80, 120\) label map"):
        session.import_labels(np.zeros((80, 120), np.float32))
    clipseg = create("clipseg", pretrained=_tiny_clipseg())
    text_only = AnnotationSession(clipseg, clipseg.embed(IMAGE))
    with pytest.raises(UnsupportedPromptError, match="takes neither a box nor a mask"):
        text_only.refine_prompt(np.ones((80, 120), bool))


def _tiny_clipseg():
    from segprompt.testing import random_clipseg

    return random_clipseg("tiny", seed=0)


def test_segment_everything_fills_only_the_background_in_one_undo_step(classical_and_embedding):
    classical, embedding = classical_and_embedding
    session = AnnotationSession(classical, embedding)
    session.update(Prompt(box=Box(0, 0, 60, 60)))
    session.accept("first")
    first = session.labels == 1
    before = state(session)
    settings = everything_settings("classical", h=4.0)
    added = session.everything(settings, "coin")
    expected = classical_labels(COINS, settings)
    assert len(added) >= 3 and added[0] == 2
    np.testing.assert_array_equal(session.labels > 0, first | (expected > 0))  # the accepted object stays whole
    assert all(session.object(label).class_name == "coin" and session.object(label).source == "everything" for label in added)
    scores = [session.object(label).score for label in added]
    assert scores == sorted(scores, reverse=True)  # ids best first
    assert session.history[-1]["settings"]["h"] == 4.0 and session.history[-1]["class_name"] == "coin"
    assert session.undo() == 2
    assert_same_state(state(session), before)


def test_hand_edits_are_recorded_kept_by_undo_and_named_manual(sam_and_embedding):
    session = AnnotationSession(*sam_and_embedding)
    session.update(Prompt(box=Box(10, 10, 60, 60)))
    session.accept()
    session.labels[70:75, 100:110] = 9  # painted by hand, a new id
    painted = np.flatnonzero(session.labels == 1)[:4]
    session.labels.flat[painted] = 5  # part of object 1 painted over
    assert session.sync() and session.history[-1]["op"] == "paint" and not session.sync()
    assert session.object(9).source == "manual" and session.object(5).source == "manual"
    assert session.undo() == 1  # the accept: its pixels that still hold 1 go back to 0
    assert (session.labels == 9).sum() == 50 and (session.labels.flat[painted] == 5).all() and not (session.labels == 1).any()


def test_a_label_map_given_at_the_start_becomes_manual_objects(sam_and_embedding):
    labels = np.zeros((80, 120), np.int32)
    labels[:10, :10] = 4
    session = AnnotationSession(*sam_and_embedding, labels=labels)
    assert [(o.label, o.source) for o in session.objects] == [(4, "manual")] and session.next_label == 5
    assert session.history[0]["op"] == "paint"


def _classical_session(classical, embedding):
    session = AnnotationSession(classical, embedding)
    session.everything(everything_settings("classical"))
    session.update(Prompt(box=Box(100, 10, 190, 110)))
    session.accept("big")
    session.rename([1, 2], "coin")
    session.delete([3])
    session.undo()
    session.labels[110:115, 0:20] = 77  # a hand edit between steps
    session.update(Prompt(box=Box(0, 0, 40, 40)))
    session.reprompt(1)
    session.undo()
    session.redo()
    return session


@pytest.mark.parametrize("backend", ["classical", "sam"])
def test_a_saved_session_replays_bit_for_bit(backend, tmp_path, classical_and_embedding, sam_and_embedding):
    if backend == "classical":
        segmenter, embedding = classical_and_embedding
        session = _classical_session(segmenter, embedding)
        fresh = create("classical")
    else:
        segmenter, embedding = sam_and_embedding
        session = AnnotationSession(segmenter, embedding)
        session.update(click(60, 40))
        session.cycle(2)
        session.accept("cup")
        session.update(Prompt(box=Box(0, 0, 50, 80), points=Points.from_lists([(20, 40)], [(5, 5)])))
        session.accept()
        session.refine()
        session.rename([2], "saucer")
        session.delete([1])
        session.undo()
        session.labels[0:3, 0:3] = 42
        fresh = segmenter  # the same weights
    path = session.save(tmp_path / "labels.tif")
    record = read_session_record(path)
    assert record["history"] == json.loads(json.dumps(session.history))

    replayed = replay(record, fresh, fresh.embed(embedding.image), "coffee")
    np.testing.assert_array_equal(replayed.labels, session.labels)
    assert reproduces(record, replayed)
    assert [(o.label, o.class_name, o.source, o.prompts) for o in replayed.objects] == [
        (o.label, o.class_name, o.source, o.prompts) for o in session.objects
    ]
    assert [o.score for o in replayed.objects] == pytest.approx([o.score for o in session.objects], nan_ok=True)
    assert replayed.history == record["history"]  # the replay logs the same steps


def test_a_changed_image_or_model_is_refused_by_name(sam_and_embedding, tmp_path):
    from segprompt.backends.sam import SamSegmenter
    from segprompt.backends.sam_arch import build_sam

    segmenter, embedding = sam_and_embedding
    session = AnnotationSession(segmenter, embedding)
    session.update(click(60, 40))
    session.accept()
    record = read_session_record(session.save(tmp_path / "labels.png"))
    assert record["image"]["sha256"] == image_digest(IMAGE)

    edited = IMAGE.copy()
    edited[40, 60, 0] ^= 1  # one bit of one pixel
    with pytest.raises(SegpromptError, match=r"image coffee\.png changed: its pixels \(sha256 "):
        check_image(record, edited, "coffee.png")
    with pytest.raises(SegpromptError, match=r"image coffee\.png changed: it is 60x80 \(W x H\)"):
        check_image(record, IMAGE[:, :60], "coffee.png")
    other = SamSegmenter(model=build_sam("tiny", seed=1))
    with pytest.raises(SegpromptError, match=rf"model changed: the session was made with sam model '{segmenter.model_id}', "
                                             rf"this is '{other.model_id}'"):
        replay(record, other, other.embed(IMAGE))
    with pytest.raises(SegpromptError, match="backend changed: the session was made with 'sam', this is 'classical'"):
        check_model(record, create("classical"))


def test_session_files_have_a_checked_schema(tmp_path, sam_and_embedding):
    path = tmp_path / "s.session.json"
    for content, message in (
        ({"format": "segprompt-annotation", "schema": 3}, "schema 3 was written by a newer segprompt"),
        ({"format": "segprompt-annotation", "schema": "2"}, "schema must be an integer"),
        ({"format": "other"}, "not a segprompt annotation file"),
    ):
        path.write_text(json.dumps(content))
        with pytest.raises(SessionFileError, match=message):
            read_session_record(path)
    path.write_text(json.dumps({"format": "segprompt-annotation", "objects": []}))  # schema 1: no history
    with pytest.raises(SessionFileError, match="schema 1 files record no history to replay"):
        check_replayable(read_session_record(path), str(path))
    session = AnnotationSession(*sam_and_embedding)
    with pytest.raises(SegpromptError, match="unknown op 'paint it black'"):
        session.perform({"op": "paint it black"})
    with pytest.raises(SegpromptError, match="accept: malformed action"):
        session.perform({"op": "accept"})


def test_load_goes_on_with_the_saved_history_or_restarts_it_with_an_import(sam_and_embedding, tmp_path):
    from segprompt.io import write_mask

    segmenter, embedding = sam_and_embedding
    session = AnnotationSession(segmenter, embedding)
    session.update(click(60, 40))
    session.accept("cup")
    session.save(tmp_path / "a.tif")
    loaded = AnnotationSession(segmenter, embedding)
    loaded.load(tmp_path / "a.tif")
    assert loaded.history == json.loads(json.dumps(session.history)) and loaded.object(1).class_name == "cup"

    edited = session.labels.copy()
    edited[:5, :5] = 1  # the labels file was changed outside segprompt
    write_mask(tmp_path / "a.tif", edited)
    loaded.load(tmp_path / "a.tif")
    assert [action["op"] for action in loaded.history] == ["import"] and loaded.object(1).class_name == "cup"
    again = replay(loaded.record(), segmenter, embedding)
    np.testing.assert_array_equal(again.labels, edited)


def test_sam3_everything_is_every_instance_of_a_concept(tmp_path):
    from segprompt.testing import tiny_sam3_dir

    sam3 = create("sam3", model_dir=tiny_sam3_dir(tmp_path / "sam3"))
    embedding = sam3.embed(IMAGE)
    settings = settings_from_strings("sam3", ["min_score=0.0"], text="cup")
    session = AnnotationSession(sam3, embedding)
    added = session.everything(settings)
    expected = sam3.segment_instances(embedding, Prompt(text=Text("cup")), threshold=0.0)
    assert len(expected) > 1 and {session.object(label).class_name for label in added} == {"cup"}
    np.testing.assert_array_equal(session.labels == added[0], expected.masks[0])  # the best instance, whole
    with pytest.raises(SegpromptError, match="give its phrase"):
        session.everything(everything_settings("sam3"))
    with pytest.raises(SegpromptError, match="min_score must lie in"):
        settings_from_strings("sam3", ["min_score=1.5"], text="cup")


def test_settings_are_parsed_from_text_by_their_types():
    assert settings_from_strings("classical", ["ridge_sigmas=1, 3", "min_area=5", "h=2.5"]) == everything_settings(
        "classical", ridge_sigmas=(1.0, 3.0), min_area=5, h=2.5
    )
    for assignment, message in (
        ("h", "expected NAME=VALUE"),
        ("min_area=1.5", r"min_area='1.5': expected an integer"),
        ("depth=3", "unknown setting depth"),
    ):
        with pytest.raises(SegpromptError, match=message):
            settings_from_strings("classical", [assignment])
