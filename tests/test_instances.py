"""Instances: validation, boxes, sorting, subsets, label maps, the empty case, the prediction wrapper."""

import numpy as np
import pytest

from segprompt.instances import Instances, InstancesPrediction, boxes_from_masks
from segprompt.prompts import Box


def _three() -> Instances:
    masks = np.zeros((3, 6, 8), bool)
    masks[0, 1:3, 1:4] = True  # rows 1-2, cols 1-3
    masks[1, 2:6, 3:8] = True  # overlaps object 0 at row 2, col 3
    masks[2, 5, 0] = True  # one pixel
    return Instances(masks, np.array([0.5, 0.9, 0.5]), class_names=("cell", "cell", "debris"))


def test_boxes_are_tight_with_exclusive_far_edges_like_box_from_mask():
    instances = _three()
    for mask, box in zip(instances.masks, instances.boxes):
        np.testing.assert_array_equal(box, Box.from_mask(mask).as_array())
    np.testing.assert_array_equal(instances.boxes[2], [0, 5, 1, 6])
    assert instances.boxes.dtype == np.float64 and instances.scores.dtype == np.float32


def test_an_empty_mask_gets_a_zero_box():
    masks = np.zeros((2, 4, 4), bool)
    masks[1, 3, 3] = True
    np.testing.assert_array_equal(boxes_from_masks(masks), [[0, 0, 0, 0], [3, 3, 4, 4]])


def test_sorted_is_by_decreasing_score_and_stable():
    ordered = _three().sorted()
    np.testing.assert_array_equal(ordered.scores, np.float32([0.9, 0.5, 0.5]))
    assert ordered.class_names == ("cell", "cell", "debris")  # object 1, then 0 before 2 (tie keeps order)
    np.testing.assert_array_equal(ordered.boxes[0], [3, 2, 8, 6])


def test_indexing_and_threshold_keep_every_field_aligned():
    instances = _three()
    one = instances[1]
    assert len(one) == 1 and one.class_names == ("cell",) and one.scores[0] == np.float32(0.9)
    kept = instances.above(0.6)
    assert len(kept) == 1 and kept.masks[0].sum() == 20
    picked = instances[np.array([True, False, True])]
    assert picked.class_names == ("cell", "debris")


def test_label_map_gives_overlaps_to_the_higher_score_and_round_trips():
    instances = _three()
    labels = instances.to_label_map()
    assert labels.dtype == np.int32
    assert labels[2, 3] == 2  # object 1 (label 2, score 0.9) wins the shared pixel
    assert labels[1, 1] == 1 and labels[5, 0] == 3 and labels[0, 0] == 0
    again = Instances.from_label_map(labels)
    np.testing.assert_array_equal(again.to_label_map(), labels)
    np.testing.assert_array_equal(again.ids, [1, 2, 3])


def test_from_label_map_keeps_ids_scores_and_classes():
    label_map = np.zeros((5, 5), np.uint16)
    label_map[0, 0] = 7
    label_map[2:4, 2:4] = 3
    instances = Instances.from_label_map(label_map, scores=[0.4, 0.8], class_names=["b", "a"])
    np.testing.assert_array_equal(instances.ids, [3, 7])
    assert instances.class_names == ("b", "a")
    np.testing.assert_array_equal(instances.to_label_map(), label_map)
    np.testing.assert_array_equal(instances.sorted().ids, [7, 3])


def test_empty_instances():
    empty = Instances.empty((4, 6))
    assert len(empty) == 0 and empty.image_hw == (4, 6)
    assert empty.boxes.shape == (0, 4) and empty.sorted().masks.shape == (0, 4, 6)
    assert not empty.to_label_map().any() and not empty.union().any()
    assert len(Instances.from_label_map(np.zeros((4, 6), int))) == 0
    assert len(Instances.concatenate([], image_hw=(4, 6))) == 0


def test_concatenate_joins_and_drops_ids_that_would_clash():
    a = Instances.from_label_map(np.array([[1, 0], [0, 0]]))
    b = Instances.from_label_map(np.array([[0, 1], [0, 0]]))
    joined = Instances.concatenate([a, b])
    assert len(joined) == 2 and joined.ids is None
    np.testing.assert_array_equal(joined.to_label_map(), [[1, 2], [0, 0]])
    with pytest.raises(ValueError, match="different image sizes"):
        Instances.concatenate([a, Instances.empty((3, 3))])


def test_confidence_map_is_the_best_covering_score():
    confidence = _three().confidence_map()
    assert confidence.dtype == np.float32
    assert confidence[2, 3] == np.float32(0.9) and confidence[1, 1] == np.float32(0.5) and confidence[0, 0] == 0


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Instances(np.zeros((2, 3, 3), np.uint8), np.zeros(2)), "masks must be (N, H, W) bool"),
        (lambda: Instances(np.zeros((2, 3, 3), bool), np.zeros(3)), "scores must be (2,)"),
        (lambda: Instances(np.zeros((1, 3, 3), bool), [np.nan]), "scores contain NaN"),
        (lambda: Instances(np.zeros((1, 3, 3), bool), [1], np.zeros((1, 3))), "boxes must be (1, 4)"),
        (lambda: Instances(np.zeros((1, 3, 3), bool), [1], [[2, 0, 1, 1]]), "boxes[0] is inverted"),
        (lambda: Instances(np.zeros((1, 3, 3), bool), [1], None, ("a", "b")), "class_names must be 1 strings"),
        (lambda: Instances(np.zeros((2, 3, 3), bool), [1, 1], None, None, [4, 4]), "distinct positive"),
        (lambda: Instances.from_label_map(np.zeros((3, 3), np.float32)), "2-D integer array"),
        (lambda: Instances.from_label_map(-np.ones((3, 3), int)), "negative label -1"),
    ],
)
def test_malformed_instances_raise(build, message):
    with pytest.raises(ValueError) as info:
        build()
    assert message in str(info.value)


def test_instances_prediction_is_best_first_and_never_without_a_mask():
    prediction = InstancesPrediction.from_instances(_three())
    np.testing.assert_array_equal(prediction.scores, np.float32([0.9, 0.5, 0.5]))
    np.testing.assert_array_equal(prediction.best_mask, _three().masks[1])
    np.testing.assert_array_equal(prediction.probabilities, _three().confidence_map())
    nothing = InstancesPrediction.from_instances(Instances.empty((6, 8)))
    assert nothing.masks.shape == (1, 6, 8) and not nothing.best_mask.any() and nothing.scores[0] == 0
    assert len(nothing.instances) == 0
