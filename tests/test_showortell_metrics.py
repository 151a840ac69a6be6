import numpy as np
import pytest

from segprompt.showortell.metrics import ConfusionMatrix


def test_miou_matches_hand_computed_values_with_ignore_and_absent_class():
    # 3 classes; class 2 never appears in the ground truth, 255 is ignored.
    truth = np.array([[0, 0, 1, 1], [0, 255, 1, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 1, 0]])
    cm = ConfusionMatrix(3).update(pred, truth)
    # class 0: truth pixels (0,0),(0,1),(1,0); predicted 0 at (0,0) and (1,3) [and (1,1), ignored]
    #   TP=1, FN=2 ((0,1)->1, (1,0)->2), FP=1 ((1,3) truth 1) -> IoU = 1/4
    # class 1: truth (0,2),(0,3),(1,2),(1,3); TP=3, FN=1, FP=1 ((0,1)) -> 3/5
    # class 2: absent from truth, one FP -> IoU 0 but excluded from the mean
    np.testing.assert_allclose(cm.iou(), [0.25, 0.6, 0.0])
    assert cm.miou() == pytest.approx((0.25 + 0.6) / 2 * 100)
    assert cm.matrix.sum() == 7  # the 255 pixel is not counted


def test_explicit_ignore_mask_and_accumulation_over_images():
    truth = np.array([[1, 1], [0, 0]])
    pred = np.array([[1, 0], [0, 0]])
    ignore = np.array([[False, True], [False, False]])
    cm = ConfusionMatrix(2).update(pred, truth, ignore=ignore)
    np.testing.assert_allclose(cm.iou(), [1.0, 1.0])
    cm2 = ConfusionMatrix(2).update(pred, truth)
    total = cm + cm2
    # class 1: TP 2, FN 1 -> 2/3 ; class 0: TP 4, FP 1 -> 4/5
    np.testing.assert_allclose(total.iou(), [0.8, 2 / 3])


def test_class_absent_everywhere_is_nan_and_errors_are_clear():
    cm = ConfusionMatrix(3).update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    assert np.isnan(cm.iou()[1]) and cm.miou() == 100.0
    with pytest.raises(ValueError, match="shape"):
        cm.update(np.zeros((2, 3), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cm.update(np.full((2, 2), 3), np.zeros((2, 2), int))
    assert np.isnan(ConfusionMatrix(2).miou())


def test_skipping_background_keeps_its_pixels_as_false_positives():
    truth = np.array([[0, 0, 1, 1]])
    pred = np.array([[1, 0, 1, 1]])
    cm = ConfusionMatrix(2).update(pred, truth)
    # class 1: TP 2, FP 1 -> 2/3; background IoU 1/2 is scored but not averaged
    assert cm.miou(skip=(0,)) == pytest.approx(200 / 3)
    assert cm.miou() == pytest.approx((0.5 + 2 / 3) / 2 * 100)
