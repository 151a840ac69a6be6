"""Overlap metrics between a predicted and a ground-truth mask.

Both masks are ``(H, W)`` arrays, read as bool (non-zero = foreground).
``ignore`` is an optional ``(H, W)`` bool array of pixels no metric counts
(GrabCut's 128 band, VOC's 255 border): they are removed from both masks
before counting.

Convention for empty masks: when prediction and ground truth are both empty
(after removing ignored pixels) the masks agree perfectly and the score is
``1.0``; when exactly one is empty it is ``0.0``.

Instance segmentations (two ``(H, W)`` integer label maps, ``0`` =
background) are compared by matching objects, as in the DSB 2018 challenge and
micro-sam's evaluation (its ``mean_segmentation_accuracy``, from ``elf``): at
each IoU threshold ``t`` the predicted and true objects are matched one-to-one
(the assignment maximising the number of pairs with IoU ``>= t``, IoU breaking
ties), matched pairs with IoU ``>= t`` are true positives, and the
segmentation accuracy is ``SA(t) = TP / (TP + FP + FN)`` (``0`` when there is
no true positive). The mean segmentation accuracy (mSA) averages ``SA`` over
``t = 0.50, 0.55, ..., 0.95``; ``SA50`` and ``SA75`` are ``SA(0.5)`` and
``SA(0.75)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

#: IoU thresholds of the mean segmentation accuracy: ``np.arange(0.5, 1.0, 0.05)``, as micro-sam uses.
SA_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.arange(0.5, 1.0, 0.05))


def _counts(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None) -> tuple[int, int, int]:
    """``(intersection, |pred|, |gt|)`` over the pixels not ignored."""
    pred = np.asarray(pred) != 0
    gt = np.asarray(gt) != 0
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    if ignore is not None:
        ignore = np.asarray(ignore, dtype=bool)
        if ignore.shape != gt.shape:
            raise ValueError(f"ignore shape {ignore.shape} differs from ground-truth shape {gt.shape}")
        keep = ~ignore
        pred = pred & keep
        gt = gt & keep
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred)), int(np.count_nonzero(gt))


def iou(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Intersection over union ``|P & G| / |P | G|`` in ``[0, 1]``."""
    inter, n_pred, n_gt = _counts(pred, gt, ignore)
    union = n_pred + n_gt - inter
    return 1.0 if union == 0 else inter / union


def dice(pred: np.ndarray, gt: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """Dice coefficient ``2 |P & G| / (|P| + |G|)`` in ``[0, 1]``."""
    inter, n_pred, n_gt = _counts(pred, gt, ignore)
    total = n_pred + n_gt
    return 1.0 if total == 0 else 2.0 * inter / total


def instance_iou(pred_labels: np.ndarray, gt_labels: np.ndarray) -> np.ndarray:
    """``(P, G)`` float64 IoU of every predicted object with every true object.

    Rows follow the sorted non-zero ids of ``pred_labels``, columns those of
    ``gt_labels``; a pixel counts towards an object's area wherever it lies
    (on the other map's background too).
    """
    pred = np.asarray(pred_labels)
    gt = np.asarray(gt_labels)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    for name, labels in (("prediction", pred), ("ground truth", gt)):
        if not np.issubdtype(labels.dtype, np.integer) or labels.min(initial=0) < 0:
            raise ValueError(f"{name}: expected non-negative integer instance labels, got {labels.dtype}")
    pred_ids, pred_index = np.unique(pred.ravel(), return_inverse=True)
    gt_ids, gt_index = np.unique(gt.ravel(), return_inverse=True)
    pairs = pred_index.astype(np.int64) * gt_ids.size + gt_index
    overlap = np.bincount(pairs, minlength=pred_ids.size * gt_ids.size).reshape(pred_ids.size, gt_ids.size)
    union = overlap.sum(axis=1, keepdims=True) + overlap.sum(axis=0, keepdims=True) - overlap
    ious = overlap / np.maximum(union, 1)
    return ious[pred_ids != 0][:, gt_ids != 0]


@dataclass(frozen=True)
class SegmentationAccuracy:
    """Matched-object scores of one instance segmentation against its ground truth.

    Attributes:
        thresholds: ``(T,)`` IoU thresholds.
        true_positives: ``(T,)`` int64 matched pairs with IoU ``>= t``.
        n_pred, n_true: objects in the prediction and in the ground truth.
    """

    thresholds: tuple[float, ...]
    true_positives: np.ndarray
    n_pred: int
    n_true: int

    @property
    def accuracies(self) -> np.ndarray:
        """``(T,)`` float64 ``SA(t) = TP / (TP + FP + FN)``, 0 without a true positive."""
        tp = self.true_positives
        return np.where(tp > 0, tp / np.maximum(self.n_pred + self.n_true - tp, 1), 0.0)

    @property
    def msa(self) -> float:
        """Mean of :attr:`accuracies` over the thresholds."""
        return float(self.accuracies.mean())

    def at(self, threshold: float) -> float:
        """``SA`` at one of :attr:`thresholds` (e.g. ``0.5`` for SA50)."""
        index = int(np.argmin(np.abs(np.asarray(self.thresholds) - threshold)))
        if not np.isclose(self.thresholds[index], threshold):
            raise ValueError(f"threshold {threshold} is not one of {self.thresholds}")
        return float(self.accuracies[index])


def _true_positives(ious: np.ndarray, threshold: float) -> int:
    """Pairs with IoU ``>= threshold`` in the one-to-one matching that has the most of them (IoU breaks ties)."""
    n_matched = min(ious.shape)
    if n_matched == 0 or not (ious >= threshold).any():
        return 0
    costs = -(ious >= threshold).astype(np.float64) - ious / (2 * n_matched)
    rows, cols = linear_sum_assignment(costs)
    return int(np.count_nonzero(ious[rows, cols] >= threshold))


def segmentation_accuracy(
    pred_labels: np.ndarray, gt_labels: np.ndarray, thresholds: tuple[float, ...] = SA_THRESHOLDS
) -> SegmentationAccuracy:
    """Match the objects of two ``(H, W)`` instance label maps (see the module docstring).

    Args:
        pred_labels: predicted instance ids, ``0`` = background.
        gt_labels: true instance ids, ``0`` = background.
        thresholds: IoU thresholds; :data:`SA_THRESHOLDS` by default.
    """
    ious = instance_iou(pred_labels, gt_labels)
    tps = np.array([_true_positives(ious, t) for t in thresholds], np.int64)
    return SegmentationAccuracy(tuple(thresholds), tps, n_pred=ious.shape[0], n_true=ious.shape[1])


__all__ = [
    "SA_THRESHOLDS",
    "SegmentationAccuracy",
    "dice",
    "instance_iou",
    "iou",
    "segmentation_accuracy",
]
