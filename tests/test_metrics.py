"""IoU and Dice against counts worked out by hand."""

import numpy as np
import pytest

from segprompt.metrics import dice, iou


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
