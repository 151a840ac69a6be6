"""Overlap metrics between a predicted and a ground-truth mask.

Both masks are ``(H, W)`` arrays, read as bool (non-zero = foreground).
``ignore`` is an optional ``(H, W)`` bool array of pixels no metric counts
(GrabCut's 128 band, VOC's 255 border): they are removed from both masks
before counting.

Convention for empty masks: when prediction and ground truth are both empty
(after removing ignored pixels) the masks agree perfectly and the score is
``1.0``; when exactly one is empty it is ``0.0``.
"""

from __future__ import annotations

import numpy as np


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


__all__ = ["dice", "iou"]
