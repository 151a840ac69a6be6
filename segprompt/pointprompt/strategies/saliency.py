"""Points at the most salient pixels of the region.

The PointPrompt paper ranks pixels by the saliency map of a VST transformer;
segprompt uses the classical spectral-residual saliency of Hou & Zhang
("Saliency Detection: A Spectral Residual Approach", CVPR 2007) instead, which
needs no weights: the log-amplitude spectrum of the 64-pixel-wide grey image
minus its 3x3 local mean, recombined with the phase, inverted, squared and
smoothed (Gaussian, sigma 8 % of the width), then resized to the image.
"""

from __future__ import annotations

import cv2
import numpy as np

from .base import PointSet, RegionStrategy, StrategyError, Target, check_counts, region_xy, register
from ...geometry import equivalent_diameter

#: Width at which the spectrum is taken (the paper's choice).
SPECTRUM_WIDTH = 64


def spectral_residual(gray: np.ndarray) -> np.ndarray:
    """``(H, W)`` float64 saliency in ``[0, 1]`` of a ``(H, W)`` uint8 grey image."""
    height, width = gray.shape
    small_h = max(1, int(round(height * SPECTRUM_WIDTH / width)))
    small = cv2.resize(gray, (SPECTRUM_WIDTH, small_h), interpolation=cv2.INTER_AREA).astype(np.float64)
    spectrum = np.fft.fft2(small)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - cv2.blur(log_amplitude, (3, 3), borderType=cv2.BORDER_REPLICATE)
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    saliency = cv2.GaussianBlur(saliency, (0, 0), 0.08 * SPECTRUM_WIDTH)
    saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    span = saliency.max() - saliency.min()
    return (saliency - saliency.min()) / span if span > 0 else np.zeros_like(saliency)


#: Seed draws the reference code repeats while SAM answers its seed prompt with an empty mask (it loops for
#: ever); after these the object itself is the region.
SEED_ATTEMPTS = 10


@register
class SaliencyStrategy(RegionStrategy):
    """The most salient pixels of the region, each at least
    ``diameter / (2 sqrt(n))`` from the ones before (so the ``n`` points do
    not all land on one peak), topped up by saliency alone when the region is
    too small for that spacing.

    Attributes:
        seed_point: the reference code's procedure: a random include point in
            the object and a random exclude point in the background first;
            the model's answer to those two (:attr:`Target.predict`, drawn
            again while it is empty) is the region of the ``n`` salient include
            points, and its complement that of the ``m`` exclude points, which
            follow the seeds (``n + 1`` include, ``m + 1`` exclude).
    """

    name = "saliency"
    description = "peaks of spectral-residual saliency (replaces the paper's VST)"

    def __init__(self, seed_point: bool = False) -> None:
        self.seed_point = seed_point

    def pick(self, target: Target, region: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        if "saliency" not in target.cache:
            target.cache["saliency"] = spectral_residual(target.gray)
        xy = region_xy(region)
        order = np.argsort(-target.cache["saliency"][xy[:, 1], xy[:, 0]], kind="stable")
        spacing = equivalent_diameter(region) / (2.0 * np.sqrt(n))
        candidates = xy[order].astype(np.float64)
        free = np.ones(len(order), bool)
        chosen: list[int] = []
        while len(chosen) < n and free.any():
            best = int(np.argmax(free))
            chosen.append(best)
            free &= np.linalg.norm(candidates - candidates[best], axis=1) >= spacing
        if len(chosen) < n:
            rest = np.setdiff1d(np.arange(len(order)), chosen)[: n - len(chosen)]
            chosen.extend(int(i) for i in rest)
        return xy[order[chosen]]

    def timesteps(self, target: Target, n_include: int, n_exclude: int, rng: np.random.Generator) -> list[PointSet]:
        if not self.seed_point:
            return super().timesteps(target, n_include, n_exclude, rng)
        check_counts(n_include, n_exclude)
        if target.predict is None:
            raise StrategyError("saliency with seed_point: the target has no predict function; it needs the model")
        background = target.background
        if not background.any():
            return super().timesteps(target, n_include, n_exclude, rng)
        inside, outside = region_xy(target.mask), region_xy(background)
        answer = np.zeros_like(target.mask)
        for _ in range(SEED_ATTEMPTS):
            seeds = PointSet(inside[[rng.integers(len(inside))]], outside[[rng.integers(len(outside))]])
            answer = np.asarray(target.predict(seeds), bool)
            if answer.any():
                break
        if not answer.any():
            answer = target.mask
        valid = ~answer if target.ignore is None else ~answer & ~target.ignore
        include = np.concatenate([seeds.include, self.pick(target, answer, n_include, rng)])
        exclude = seeds.exclude if not (n_exclude and valid.any()) else np.concatenate(
            [seeds.exclude, self.pick(target, valid, n_exclude, rng)]
        )
        return [PointSet(include, exclude)]
