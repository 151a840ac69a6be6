"""Show-or-Tell's confidence merge and multi-class segmentation with real (tiny) backends."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from segprompt.backends.base import Prediction
from segprompt.backends.persam import PerSamSegmenter
from segprompt.backends.probability import ProbabilityPrediction
from segprompt.backends.sam import SamSegmenter
from segprompt.backends.sam_arch import build_sam
from segprompt.cache import EmbeddingCache
from segprompt.errors import PromptError, UnsupportedPromptError
from segprompt.prompts import Prompt, Text, VisualReference
from segprompt.semantic import class_confidence, merge_confidences, segment_classes

IMAGE = data.coffee()[::4, ::4]  # 100 x 150 RGB


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_merge_thresholds_at_0_2_adds_background_and_breaks_ties_to_the_lowest_index():
    confidences = np.array(
        [
            [[0.1, 0.2, 0.21, 0.5, 0.5, 0.9]],
            [[0.3, 0.2, 0.2, 0.5, 0.6, 0.1]],
        ]
    )
    # pixel 0: only class 1 above 0.2; pixel 1: both exactly 0.2 -> 0 -> background;
    # pixel 2: 0.21 beats a zeroed 0.2; pixel 3: tie -> class 0; pixels 4, 5: the larger.
    expected = np.array([[2, 0, 1, 1, 2, 1]], np.int32)
    labels = merge_confidences(confidences)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, expected)


def test_merge_all_below_threshold_is_background():
    confidences = np.full((3, 4, 5), 0.2)
    confidences[1, 2, 3] = 0.05
    np.testing.assert_array_equal(merge_confidences(confidences), np.zeros((4, 5), np.int32))


def test_merge_with_masks_zeroes_confidence_outside_each_mask():
    confidences = np.array([[[0.9, 0.9]], [[0.5, 0.5]]])
    masks = np.array([[[True, False]], [[True, True]]])
    np.testing.assert_array_equal(merge_confidences(confidences, masks), [[1, 2]])
    np.testing.assert_array_equal(merge_confidences(confidences, masks, threshold=0.6), [[1, 0]])


def test_merge_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        merge_confidences(np.zeros((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        merge_confidences(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="masks shape"):
        merge_confidences(np.zeros((2, 3, 3)), np.zeros((1, 3, 3), bool))


def test_class_confidence_uses_probabilities_else_the_clipped_score_over_the_mask():
    masks = np.array([[[True, False]], [[True, True]]])
    high = Prediction(masks, np.array([0.4, 1.3], np.float32))
    mask, confidence = class_confidence(high)
    np.testing.assert_array_equal(mask, [[True, True]])
    np.testing.assert_array_equal(confidence, [[1.0, 1.0]])
    _, negative = class_confidence(Prediction(masks[:1], np.array([-0.2], np.float32)))
    np.testing.assert_array_equal(negative, [[0.0, 0.0]])
    probabilities = np.array([[0.7, 0.3]], np.float32)
    dense = ProbabilityPrediction(masks[:1], np.array([0.7], np.float32), probabilities=probabilities)
    np.testing.assert_array_equal(class_confidence(dense)[1], probabilities)


def test_segment_classes_with_clipseg_merges_its_probability_maps(tiny_clipseg):
    mask = np.zeros(IMAGE.shape[:2], bool)
    mask[20:60, 40:90] = True
    classes = {"cup": "coffee cup", "table": Text("wooden table"), "saucer": VisualReference(IMAGE, mask)}
    calls = []
    result = segment_classes(IMAGE, classes, tiny_clipseg, progress=lambda done, total, message: calls.append((done, total)))

    assert result.class_names == ("background", "cup", "table", "saucer")
    assert calls[0] == (0, 4) and calls[-1] == (4, 4)
    embedding = tiny_clipseg.embed(IMAGE)
    expected = np.stack(
        [
            tiny_clipseg.probabilities(embedding, Prompt(text=Text("coffee cup"))),
            tiny_clipseg.probabilities(embedding, Prompt(text=Text("wooden table"))),
            tiny_clipseg.probabilities(embedding, Prompt(reference=classes["saucer"])),
        ]
    )
    np.testing.assert_allclose(result.confidences, expected, atol=1e-6)
    np.testing.assert_array_equal(result.labels, merge_confidences(expected))
    assert result.labels.shape == IMAGE.shape[:2]
    within = segment_classes(IMAGE, classes, tiny_clipseg, embedding=embedding, within_masks=True)
    np.testing.assert_array_equal(within.labels, merge_confidences(expected, result.masks))


def test_segment_classes_with_persam_uses_mask_scores(tmp_path):
    sam = SamSegmenter(model=build_sam("tiny", seed=0))
    persam = PerSamSegmenter(sam=sam, cache=EmbeddingCache(tmp_path))
    left = np.zeros(IMAGE.shape[:2], bool)
    left[30:80, 10:60] = True
    right = np.zeros(IMAGE.shape[:2], bool)
    right[20:70, 90:140] = True
    classes = {"left": VisualReference(IMAGE, left), "right": VisualReference(IMAGE, right)}
    result = segment_classes(IMAGE, classes, persam)
    embedding = persam.embed(IMAGE)
    for index, reference in enumerate(classes.values()):
        answer = persam.predict(embedding, Prompt(reference=reference))
        np.testing.assert_array_equal(result.masks[index], answer.best_mask)
        score = np.clip(answer.scores[answer.best], 0, 1)
        np.testing.assert_allclose(result.confidences[index], answer.best_mask * score, atol=1e-6)
    np.testing.assert_array_equal(result.labels, merge_confidences(result.confidences))


def test_segment_classes_rejects_bad_classes_before_embedding():
    sam = SamSegmenter(model=build_sam("tiny", seed=0))
    with pytest.raises(PromptError, match="at least one class"):
        segment_classes(IMAGE, {}, sam)
    with pytest.raises(PromptError, match="class 'cup': expected a Text"):
        segment_classes(IMAGE, {"cup": 3}, sam)
    with pytest.raises(PromptError, match="non-empty strings"):
        segment_classes(IMAGE, {" ": "cup"}, sam)
    with pytest.raises(UnsupportedPromptError, match="'sam' does not accept text"):
        segment_classes(IMAGE, {"cup": "cup"}, sam)
