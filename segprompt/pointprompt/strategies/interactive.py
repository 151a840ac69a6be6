"""Error-driven iterative clicking, the protocol of interactive-segmentation
benchmarks (Xu et al. 2016; RITM, Sofiiuk et al. 2022)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .base import PointSet, Strategy, StrategyError, Target, check_counts, register
from ...geometry import inner_distance


def next_click(gt: np.ndarray, pred: np.ndarray, valid: np.ndarray) -> tuple[tuple[int, int], bool] | None:
    """The next simulated click, or ``None`` when nothing is wrong.

    Finds the largest (by area, 8-connected) connected region of false
    negatives (``gt & ~pred``) or false positives (``pred & ~gt``) among the
    ``valid`` pixels and clicks the pixel of it farthest from its boundary.

    Returns:
        ``((x, y), is_include)``; ``is_include`` is ``True`` for a false-negative click.
    """
    best: tuple[int, np.ndarray, bool] | None = None
    for error, include in ((gt & ~pred & valid, True), (pred & ~gt & valid, False)):
        labels, count = ndimage.label(error, structure=np.ones((3, 3), bool))
        if count == 0:
            continue
        areas = np.bincount(labels.ravel())[1:]
        largest = int(np.argmax(areas))
        if best is None or areas[largest] > best[0]:
            best = (int(areas[largest]), labels == largest + 1, include)
    if best is None:
        return None
    depth = inner_distance(best[1])
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return (int(col), int(row)), best[2]


@register
class ErrorDrivenStrategy(Strategy):
    """Click, predict, click on the centre of the largest error, repeat.

    The click budget is ``n_include + n_exclude``; the errors decide which
    clicks are include and which exclude. Each click is one timestep (its
    prompt holds all clicks so far). Stops early when the prediction is
    perfect. Needs :attr:`Target.predict`.
    """

    name = "error_driven"
    description = "iterative clicks at the centre of the largest error region (needs the model)"

    def timesteps(self, target: Target, n_include: int, n_exclude: int, rng: np.random.Generator) -> list[PointSet]:
        check_counts(n_include, n_exclude)
        if target.predict is None:
            raise StrategyError("error_driven: the target has no predict function; this strategy needs the model")
        valid = np.ones_like(target.mask) if target.ignore is None else ~target.ignore
        pred = np.zeros_like(target.mask)
        include: list[tuple[int, int]] = []
        exclude: list[tuple[int, int]] = []
        steps: list[PointSet] = []
        for _ in range(n_include + n_exclude):
            click = next_click(target.mask, pred, valid)
            if click is None:
                break
            (include if click[1] else exclude).append(click[0])
            steps.append(PointSet(np.array(include).reshape(-1, 2), np.array(exclude).reshape(-1, 2)))
            pred = np.asarray(target.predict(steps[-1]), dtype=bool)
        return steps
