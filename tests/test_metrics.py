"""IoU and Dice, and the matched instance metrics (segmentation accuracy), against counts worked out by hand."""

import numpy as np
import pytest

from segprompt.metrics import SA_THRESHOLDS, dice, instance_iou, iou, segmentation_accuracy


def _masks():
    # pred covers columns 0-3 of a 4x6 image (16 px), gt columns 2-5 (16 px): overlap 8 px.
    pred = np.zeros((4, 6), bool)
    pred[:, :4] = True
    gt = np.zeros((4, 6), bool)
    gt[:, 2:] = True
    return pred, gt


def test_iou_and_dice_hand_computed():
    pred, gt = _masks()
    assert iou(pred, gt) == pytest.approx(8 / 24)
    assert dice(pred, gt) == pytest.approx(2 * 8 / 32)


def test_non_bool_inputs_are_read_as_foreground_nonzero():
    pred, gt = _masks()
    assert iou(pred.astype(np.uint8) * 255, gt.astype(np.int32)) == pytest.approx(8 / 24)


def test_ignore_removes_pixels_from_both_masks():
    pred, gt = _masks()
    ignore = np.zeros_like(gt)
    ignore[:, 0] = True  # 4 pred-only pixels
    ignore[:, 5] = True  # 4 gt-only pixels
    assert iou(pred, gt, ignore) == pytest.approx(8 / 16)
    assert dice(pred, gt, ignore) == pytest.approx(2 * 8 / 24)


def test_empty_conventions():
    empty = np.zeros((3, 3), bool)
    full = np.ones((3, 3), bool)
    assert iou(empty, empty) == 1.0
    assert dice(empty, empty) == 1.0
    assert iou(full, empty) == 0.0
    assert dice(empty, full) == 0.0


def test_identical_masks_score_one():
    pred, _ = _masks()
    assert iou(pred, pred) == 1.0
    assert dice(pred, pred) == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        iou(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ignore"):
        dice(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 3), bool))


# -- matched instance metrics (micro-sam / DSB 2018 segmentation accuracy) ---------------------------------


def _squares(*boxes, shape=(20, 20)):
    """A label map with object ``k + 1`` filling ``boxes[k] = (row0, row1, col0, col1)``."""
    labels = np.zeros(shape, np.int32)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        labels[r0:r1, c0:c1] = k + 1
    return labels


def test_segmentation_accuracy_of_a_perfect_segmentation_is_one_whatever_the_ids():
    gt = _squares((0, 4, 0, 4), (10, 15, 10, 15))
    pred = np.where(gt == 1, 7, np.where(gt == 2, 3, 0))  # other ids, same objects
    result = segmentation_accuracy(pred, gt)
    assert result.msa == 1.0 and result.at(0.5) == 1.0 and result.at(0.75) == 1.0
    assert (result.n_pred, result.n_true) == (2, 2)


def test_segmentation_accuracy_hand_computed():
    # gt: two 5x5 squares; pred: the first exactly, the second shifted by one column
    # (IoU 20 / 30 = 0.667), and a spurious 2x2 object.
    gt = _squares((0, 5, 0, 5), (10, 15, 10, 15))
    pred = _squares((0, 5, 0, 5), (10, 15, 11, 16), (18, 20, 18, 20))
    result = segmentation_accuracy(pred, gt)
    assert SA_THRESHOLDS[0] == 0.5 and len(SA_THRESHOLDS) == 10
    # t <= 0.667 (0.50 ... 0.65): TP 2, FP 1, FN 0 -> 2/3; t >= 0.7: TP 1, FP 2, FN 1 -> 1/4
    expected = np.array([2 / 3] * 4 + [1 / 4] * 6)
    np.testing.assert_allclose(result.accuracies, expected)
    assert result.msa == pytest.approx(expected.mean())
    assert result.at(0.5) == pytest.approx(2 / 3) and result.at(0.75) == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="not one of"):
        result.at(0.52)


def test_matching_is_one_to_one_and_maximises_the_true_positives():
    # One predicted object covering two true ones counts for at most one of them.
    gt = _squares((0, 4, 0, 4), (0, 4, 4, 6))  # areas 16 and 8
    merged = _squares((0, 4, 0, 6))  # IoU 16/24 with the first, 8/24 with the second
    result = segmentation_accuracy(merged, gt)
    assert result.true_positives[0] == 1  # t = 0.5: one match, one FN
    assert result.at(0.5) == pytest.approx(1 / 2)
    np.testing.assert_allclose(instance_iou(merged, gt), [[16 / 24, 8 / 24]])


def test_segmentation_accuracy_without_true_positives_or_objects():
    gt = _squares((0, 4, 0, 4))
    assert segmentation_accuracy(np.zeros_like(gt), gt).msa == 0.0
    assert segmentation_accuracy(gt, np.zeros_like(gt)).msa == 0.0
    with pytest.raises(ValueError, match="shape"):
        segmentation_accuracy(gt, gt[:5])
    with pytest.raises(ValueError, match="integer"):
        segmentation_accuracy(gt.astype(float), gt)
