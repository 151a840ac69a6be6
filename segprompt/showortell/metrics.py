"""Semantic-segmentation scoring as Show-or-Tell does it.

One confusion matrix per (method, dataset) is accumulated over all images;
ground-truth labels outside ``[0, n_classes)`` (e.g. VOC's 255) are ignored,
and so are the pixels of an explicit ``ignore`` mask. Per-class IoU is
``TP / (TP + FP + FN)``; mIoU averages it over the classes present in the
ground truth, times 100.
"""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of ground-truth class ``t`` predicted as ``p``."""

    def __init__(self, n_classes: int, matrix: np.ndarray | None = None) -> None:
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.n_classes = n_classes
        self.matrix = np.zeros((n_classes, n_classes), np.int64) if matrix is None else np.asarray(matrix, np.int64).copy()
        if self.matrix.shape != (n_classes, n_classes):
            raise ValueError(f"matrix must be {n_classes}x{n_classes}, got {self.matrix.shape}")

    def update(self, prediction: np.ndarray, truth: np.ndarray, ignore: np.ndarray | None = None) -> "ConfusionMatrix":
        """Add one image: ``prediction`` and ``truth`` are ``(H, W)`` integer label maps."""
        prediction = np.asarray(prediction)
        truth = np.asarray(truth)
        if prediction.shape != truth.shape:
            raise ValueError(f"prediction shape {prediction.shape} != ground-truth shape {truth.shape}")
        valid = (truth >= 0) & (truth < self.n_classes)
        if ignore is not None:
            valid &= ~np.asarray(ignore, bool)
        t = truth[valid].astype(np.int64)
        p = prediction[valid].astype(np.int64)
        if p.size and (p.min() < 0 or p.max() >= self.n_classes):
            raise ValueError(f"predicted labels must lie in [0, {self.n_classes}), found {p.min()}..{p.max()}")
        self.matrix += np.bincount(t * self.n_classes + p, minlength=self.n_classes**2).reshape(self.n_classes, self.n_classes)
        return self

    def __add__(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.n_classes != self.n_classes:
            raise ValueError("cannot add confusion matrices of different sizes")
        return ConfusionMatrix(self.n_classes, self.matrix + other.matrix)

    def present(self) -> np.ndarray:
        """``(n,)`` bool: classes with at least one ground-truth pixel."""
        return self.matrix.sum(axis=1) > 0

    def iou(self) -> np.ndarray:
        """``(n,)`` float64 per-class IoU in [0, 1]; NaN for classes absent from both truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(axis=0) + self.matrix.sum(axis=1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / np.maximum(union, 1), np.nan)

    def miou(self, skip: tuple[int, ...] = ()) -> float:
        """Mean IoU over the classes present in the ground truth, x100 (NaN when none is).

        ``skip`` lists class indices left out of the mean though their pixels
        were scored: Show-or-Tell leaves out the background (index 0) on
        datasets whose background is not a real class, while a class predicted
        on background pixels still counts as a false positive.
        """
        present = self.present()
        present[list(skip)] = False
        if not present.any():
            return float("nan")
        return float(np.mean(self.iou()[present]) * 100.0)
