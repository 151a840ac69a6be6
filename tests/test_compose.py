"""Composite prompts: every combination of kinds, the candidate rule, and the error messages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from skimage import data

from segprompt.backends import create
from segprompt.backends.base import Prediction
from segprompt.backends.persam import PerSamSegmenter
from segprompt.cache import EmbeddingCache
from segprompt.compose import ComposedSegmenter, choose_candidate, points_inside, remove_excluded
from segprompt.errors import SegpromptError, UnsupportedPromptError
from segprompt.prompts import Box, Exemplars, MaskPrompt, Points, Prompt, Text, VisualReference
from segprompt.testing import tiny_clipseg_dir

IMAGE = data.coffee()[::4, ::4]  # 100 x 150 RGB
#: Every kind a clipseg + sam composition answers (exemplars need a concept proposer: sam3).
CLIPSEG_SAM_KINDS = ("points", "box", "mask", "text", "reference")
H, W = IMAGE.shape[:2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def composed(tiny_clipseg, tiny_sam) -> ComposedSegmenter:
    return ComposedSegmenter(tiny_clipseg, tiny_sam)


@pytest.fixture(scope="module")
def embedding(composed):
    return composed.embed(IMAGE)


@pytest.fixture(scope="module")
def reference() -> VisualReference:
    mask = np.zeros((H, W), bool)
    mask[20:60, 40:90] = True
    return VisualReference(IMAGE, mask)


def _candidates() -> Prediction:
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :, :5] = True  # left half
    masks[1, :, 5:] = True  # right half
    masks[2, 3:7, 3:7] = True  # centre square, straddling both halves
    logits = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 256, 256), np.float32)
    return Prediction(masks, np.array([0.9, 0.5, 0.7], np.float32), logits)


def test_points_inside_uses_floor_of_x_as_column_and_y_as_row():
    masks = np.zeros((1, 4, 6), bool)
    masks[0, 1, 5] = True
    np.testing.assert_array_equal(points_inside(masks, np.array([[5.9, 1.2], [1.0, 5.0 - 4.0]])), [[True, False]])


def test_remove_excluded_drops_every_candidate_containing_an_exclude_point():
    candidates = _candidates()
    kept = remove_excluded(candidates, np.array([[4.5, 5.0]]))  # column 4: left half and centre square
    np.testing.assert_array_equal(kept.masks, candidates.masks[[1]])
    np.testing.assert_array_equal(kept.scores, [0.5])
    np.testing.assert_array_equal(kept.low_res_logits, candidates.low_res_logits[[1]])
    both = remove_excluded(candidates, np.array([[0.0, 0.0], [9.0, 9.0]]))  # one in each half
    np.testing.assert_array_equal(both.masks, candidates.masks[[2]])
    assert remove_excluded(candidates, np.array([[1.0, 1.0], [8.0, 1.0], [5.0, 5.0]])) is None
    assert len(remove_excluded(candidates, np.zeros((0, 2))).scores) == 3


def test_choose_candidate_orders_by_include_points_then_box_overlap_then_score():
    candidates = _candidates()
    none = np.zeros((0, 2))
    assert choose_candidate(candidates, none) == 0  # best score 0.9
    assert choose_candidate(candidates, np.array([[6.0, 4.0]])) == 2  # right half and centre: score 0.7 > 0.5
    assert choose_candidate(candidates, np.array([[6.0, 4.0], [9.0, 0.0]])) == 1  # only the right half has both
    assert choose_candidate(candidates, none, Box(3, 3, 7, 7)) == 2  # IoU 1 with the centre square
    assert choose_candidate(candidates, np.array([[6.0, 4.0]]), Box(5, 0, 10, 10)) == 1
    tied = Prediction(candidates.masks[[0, 0]], np.array([0.5, 0.5], np.float32))
    assert choose_candidate(tied, none) == 0


def _prompt(kinds: tuple[str, ...], reference: VisualReference) -> Prompt:
    parts = {
        "points": Points.from_lists([(110, 30)], [(10, 90)]),
        "box": Box(60, 10, 140, 80),
        "mask": MaskPrompt(np.pad(np.ones((40, 40), bool), ((30, 30), (70, 40)))),
        "text": Text("coffee cup"),
        "reference": reference,
    }
    return Prompt(**{kind: parts[kind] for kind in kinds})


@pytest.mark.parametrize(
    "kinds",
    [combo for size in range(1, 6) for combo in itertools.combinations(CLIPSEG_SAM_KINDS, size)],
    ids=lambda kinds: "+".join(kinds),
)
def test_every_combination_of_kinds_is_answered(composed, embedding, reference, kinds):
    prompt = _prompt(kinds, reference)
    answer = composed.predict(embedding, prompt)
    assert answer.masks.shape[1:] == (H, W) and answer.masks.shape[0] >= 1
    assert answer.scores.shape == (answer.masks.shape[0],)
    single = composed.predict(embedding, prompt, multimask=False)
    assert single.masks.shape == (1, H, W)


def test_text_with_an_include_point_refines_the_candidate_box_through_sam(composed, embedding, tiny_clipseg, tiny_sam):
    text = Text("coffee cup")
    candidate = tiny_clipseg.predict(embedding.part("proposer"), Prompt(text=text))
    assert candidate.masks[0].any()
    points = Points.from_lists([(110, 30)])
    answer = composed.predict(embedding, Prompt(text=text, points=points))
    expected = tiny_sam.predict(
        embedding.part("refiner"), Prompt(points=points, box=Box.from_mask(candidate.masks[0]))
    )
    np.testing.assert_array_equal(answer.masks, expected.masks)
    np.testing.assert_array_equal(answer.scores, expected.scores)


def test_an_explicit_box_and_mask_replace_the_candidate_box_and_logits(composed, embedding, tiny_sam, reference):
    prompt = _prompt(("points", "box", "mask", "text"), reference)
    answer = composed.predict(embedding, prompt)
    explicit = Prompt(points=prompt.points, box=prompt.box, mask=prompt.mask)
    expected = tiny_sam.predict(embedding.part("refiner"), explicit)
    np.testing.assert_array_equal(answer.masks, expected.masks)


def test_exclude_points_remove_the_candidate(composed, embedding, tiny_clipseg):
    text = Text("coffee cup")
    candidate = tiny_clipseg.predict(embedding.part("proposer"), Prompt(text=text)).masks[0]
    rows, cols = np.nonzero(candidate)
    inside = Points.from_lists([], [(cols[0], rows[0])])
    answer = composed.predict(embedding, Prompt(text=text, points=inside))
    assert answer.masks.shape == (1, H, W) and not answer.masks.any() and answer.scores[0] == 0
    rows, cols = np.nonzero(~candidate)
    outside = Points.from_lists([], [(cols[0], rows[0])])
    kept = composed.predict(embedding, Prompt(text=text, points=outside))
    np.testing.assert_array_equal(kept.masks[0], candidate)


def test_geometric_prompts_alone_go_to_the_refiner(composed, embedding, tiny_sam):
    prompt = Prompt(box=Box(60, 10, 140, 80))
    np.testing.assert_array_equal(
        composed.predict(embedding, prompt).masks, tiny_sam.predict(embedding.part("refiner"), prompt).masks
    )


def test_persam_proposer_passes_its_sam_logits_to_the_refiner(tiny_sam, reference):
    persam = PerSamSegmenter(sam=tiny_sam)
    composed = ComposedSegmenter(persam, tiny_sam)
    embedding = composed.embed(IMAGE)
    candidates = persam.predict(embedding.part("proposer"), Prompt(reference=reference))
    points = Points.from_lists([(110, 30)])
    chosen = choose_candidate(candidates, points.include)
    answer = composed.predict(embedding, Prompt(reference=reference, points=points))
    refine = Prompt(
        points=points,
        box=Box.from_mask(candidates.masks[chosen]),
        mask=MaskPrompt(candidates.low_res_logits[chosen], "logits"),
    )
    np.testing.assert_array_equal(answer.masks, tiny_sam.predict(embedding.part("refiner"), refine).masks)
    message = "proposer backend 'persam' does not accept text prompts; it accepts reference"
    with pytest.raises(UnsupportedPromptError, match=message):
        composed.predict(embedding, Prompt(text=Text("cup"), points=points))


def test_without_a_refiner_points_select_and_box_or_mask_fail(tiny_clipseg, reference):
    composed = ComposedSegmenter(tiny_clipseg, None)
    embedding = composed.embed(IMAGE)
    answer = composed.predict(embedding, Prompt(text=Text("cup"), points=Points.from_lists([(1, 1)])))
    assert answer.masks.shape == (1, H, W)
    message = r"box prompts with text need a refiner backend .*'clipseg' has none"
    with pytest.raises(UnsupportedPromptError, match=message):
        composed.predict(embedding, Prompt(text=Text("cup"), box=Box(0, 0, 10, 10)))
    with pytest.raises(UnsupportedPromptError, match="proposer backend 'clipseg' does not accept points prompts"):
        composed.predict(embedding, Prompt(points=Points.from_lists([(1, 1)])))


def test_a_refiner_lacking_a_kind_is_named(tiny_clipseg, tiny_sam):
    composed = ComposedSegmenter(tiny_clipseg, PerSamSegmenter(sam=tiny_sam))
    with pytest.raises(UnsupportedPromptError, match="refiner backend 'persam' does not accept box, points prompts"):
        composed.check_prompt(Prompt(text=Text("cup"), box=Box(0, 0, 5, 5), points=Points.from_lists([(1, 1)])))
    with pytest.raises(UnsupportedPromptError, match="the prompt is empty"):
        composed.check_prompt(Prompt())
    exemplars = Exemplars.from_boxes([Box(0, 0, 5, 5)])
    with pytest.raises(UnsupportedPromptError, match="proposer backend 'clipseg' does not accept exemplars prompts"):
        composed.check_prompt(Prompt(exemplars=exemplars, points=Points.from_lists([(1, 1)])))


def test_created_by_name_and_cached(tmp_path, tiny_sam):
    model_dir = tiny_clipseg_dir(tmp_path / "clipseg")
    composed = create("composed", proposer="clipseg", proposer_options={"model_dir": model_dir}, refiner=tiny_sam)
    assert composed.model_id.startswith("clipseg:") and composed.model_id.endswith(f"+sam:{tiny_sam.model_id}")
    cache = EmbeddingCache(tmp_path / "cache")
    first = cache.embed(composed, IMAGE)
    again = cache.embed(composed, IMAGE)
    assert sorted(again.parts) == sorted(first.parts)
    assert set(first.parts) == {"proposer", "refiner"}
    prompt = Prompt(text=Text("cup"), points=Points.from_lists([(110, 30)]))
    np.testing.assert_array_equal(composed.predict(first, prompt).masks, composed.predict(again, prompt).masks)
    with pytest.raises(SegpromptError, match="options are only used with a backend given by name"):
        ComposedSegmenter(composed.proposer, tiny_sam, refiner_options={"model_type": "tiny"})


def test_classical_refiner_takes_the_candidate_box_but_not_logits(tiny_clipseg):
    classical = create("classical")
    composed = ComposedSegmenter(tiny_clipseg, classical)
    embedding = composed.embed(IMAGE)
    text = Text("coffee cup")
    candidate = tiny_clipseg.predict(embedding.part("proposer"), Prompt(text=text)).masks[0]
    points = Points.from_lists([(110, 30)])
    answer = composed.predict(embedding, Prompt(text=text, points=points), multimask=False)
    expected = classical.predict(
        embedding.part("refiner"), Prompt(points=points, box=Box.from_mask(candidate)), multimask=False
    )
    np.testing.assert_array_equal(answer.masks, expected.masks)
