"""Volumes with exactly known ground truth, for tests and benchmarks (``data_cards/synthetic_volumes.md``).

There is no real annotated volume in ``../shared/data``, and its CT slices
(``sam_med2d_demo_ct``) are separate patients, not a volume; so:

* :func:`ellipsoid_volume`: an ellipsoid whose centre drifts sideways from
  slice to slice, in Gaussian intensity noise, with a background brightness
  drifting along the stack: exact geometry, where the object starts and ends;
* :func:`shifted_stack`: one real 2-D image (e.g. a ``dsb2018_nuclei``
  microscopy image) stacked as a window moving by small known random shifts,
  its ground truth moved the same way: real texture, known motion, but no
  change of shape between slices (so it measures tracking, not 3-D shape).

Everything is seeded; the same arguments give the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in a ``(Z, Y, X)`` volume whose centre moves ``drift_yx`` px per slice.

    Attributes:
        centre: ``(z, y, x)`` of the centre at its middle slice ``z``.
        radii: ``(rz, ry, rx)`` semi-axes in voxels.
        drift_yx: sideways motion of the centre per slice, ``(dy, dx)`` px.
    """

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    drift_yx: tuple[float, float] = (0.0, 0.0)

    def mask(self, index: int, image_hw: tuple[int, int]) -> np.ndarray:
        """``(H, W)`` bool cross-section on slice ``index`` (pixel centres inside the ellipse)."""
        cz, cy, cx = self.centre
        rz, ry, rx = self.radii
        t = 1.0 - ((index - cz) / rz) ** 2
        if t <= 0:
            return np.zeros(image_hw, bool)
        scale = np.sqrt(t)
        y0, x0 = cy + self.drift_yx[0] * (index - cz), cx + self.drift_yx[1] * (index - cz)
        rows, cols = np.ogrid[: image_hw[0], : image_hw[1]]
        return ((rows - y0) / (ry * scale)) ** 2 + ((cols - x0) / (rx * scale)) ** 2 <= 1.0

    def slices(self, n_slices: int) -> range:
        """The slices whose cross-section is not empty in theory (``|z - cz| < rz``), clipped to the volume."""
        cz, rz = self.centre[0], self.radii[0]
        first, last = int(np.floor(cz - rz)) + 1, int(np.ceil(cz + rz)) - 1
        return range(max(0, first), min(n_slices - 1, last) + 1)


def ellipsoid_volume(
    shape: tuple[int, int, int] = (40, 96, 112),
    ellipsoid: Ellipsoid | None = None,
    contrast: float = 70.0,
    background: tuple[float, float] = (50.0, 110.0),
    noise: float = 12.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, Ellipsoid]:
    """A uint8 ``(Z, Y, X)`` volume of one bright ellipsoid and its exact ground truth.

    Args:
        shape: ``(Z, Y, X)``.
        ellipsoid: the object; default centred, ``(rz, ry, rx) = (0.35 Z, 0.3 Y, 0.3 X)``,
            drifting ``(0.4, 0.6)`` px per slice.
        contrast: the object's brightness above the background.
        background: the background's brightness on the first and the last
            slice (a linear drift along the stack), plus a gentle left-to-right
            shading of 20 grey levels.
        noise: standard deviation of the Gaussian intensity noise.
        seed: the noise's seed.

    Returns:
        ``(volume uint8 (Z, Y, X), truth bool (Z, Y, X), ellipsoid)``.
    """
    depth, height, width = shape
    if ellipsoid is None:
        ellipsoid = Ellipsoid(
            centre=((depth - 1) / 2, (height - 1) / 2, (width - 1) / 2),
            radii=(0.35 * depth, 0.3 * height, 0.3 * width),
            drift_yx=(0.4, 0.6),
        )
    rng = np.random.default_rng(seed)
    truth = np.stack([ellipsoid.mask(z, (height, width)) for z in range(depth)])
    levels = np.linspace(background[0], background[1], depth)[:, None, None]
    shading = np.linspace(-10.0, 10.0, width)[None, None, :]
    volume = levels + shading + contrast * truth + rng.normal(0.0, noise, shape)
    return np.clip(np.rint(volume), 0, 255).astype(np.uint8), truth, ellipsoid


def random_shifts(n_slices: int, max_step: int = 2, seed: int = 0) -> np.ndarray:
    """``(n_slices, 2)`` int ``(dy, dx)`` offsets: a seeded random walk of steps in ``[-max_step, max_step]``, 0 at the middle slice."""
    rng = np.random.default_rng(seed)
    steps = rng.integers(-max_step, max_step + 1, size=(n_slices, 2))
    steps[0] = 0
    walk = np.cumsum(steps, axis=0)
    return walk - walk[n_slices // 2]


def shifted_stack(
    image: np.ndarray, labels: np.ndarray, n_slices: int = 21, max_step: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stack windows of one image moving by known shifts; the labels move the same way.

    Slice ``k`` is the window of ``image`` offset by ``shifts[k] = (dy, dx)``
    from the centred window (:func:`random_shifts`); the window is the image
    minus the largest offset on every side, so every slice is real pixels.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        labels: ``(H, W)`` ground truth (label ids or a mask).
        n_slices, max_step, seed: see :func:`random_shifts`.

    Returns:
        ``(stack (n_slices, h, w[, C]), truth (n_slices, h, w), shifts (n_slices, 2))``;
        an object at ``(row, col)`` of slice ``k`` is at ``(row + dy_k, col + dx_k)`` of ``image``.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match the image {image.shape[:2]}")
    shifts = random_shifts(n_slices, max_step, seed)
    margin = int(np.abs(shifts).max())
    height, width = image.shape[0] - 2 * margin, image.shape[1] - 2 * margin
    if height < 8 or width < 8:
        raise ValueError(f"shifts of up to {margin} px leave no window in a {image.shape[:2]} image")
    stack, truth = [], []
    for dy, dx in shifts:
        rows, cols = slice(margin + dy, margin + dy + height), slice(margin + dx, margin + dx + width)
        stack.append(image[rows, cols])
        truth.append(labels[rows, cols])
    return np.stack(stack), np.stack(truth), shifts


__all__ = ["Ellipsoid", "ellipsoid_volume", "random_shifts", "shifted_stack"]
