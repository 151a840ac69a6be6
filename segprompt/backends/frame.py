"""Where an image sits inside a model's square input, and the one binary-mask -> grid conversion.

SAM-like models resize the ``H x W`` image into a square input of side ``S``
(SAM: 1024) and read everything else on grids laid over that square: the
image features (SAM: 64 x 64), the low-resolution mask logits (256 x 256).
Two placements occur:

* **padded** (segment-anything, SAM-HQ): the longest side becomes ``S``, the
  image keeps its aspect ratio (``input_hw = (h, w)``, rounded as
  ``ResizeLongestSide`` rounds) and is padded at the bottom and right;
* **squashed** (SAM 2.1, EdgeTAM, SAM 3's tracker): the image is resized to
  ``S x S`` (``input_hw = (S, S)``).

Both are a :class:`ModelFrame`: original row ``r`` maps to input row
``r * h / H`` (columns likewise), top-left aligned. :meth:`ModelFrame.mask_fraction`
is the one conversion of a binary mask in original pixels to any grid over
the input: the exact fraction of each grid cell the mask covers, each image
pixel being a unit square; cells over the padding are background. Masks given
as prompts (:meth:`ModelFrame.mask_logits`), PerSAM's reference and PerSAM-F's
target, and the PointPrompt finetuning target all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A converted binary mask prompt's cells hold ``log(p / (1 - p))`` with ``p`` clipped to
#: ``[MASK_PROMPT_EPS, 1 - MASK_PROMPT_EPS]``: about +-6.9 for fully covered / empty cells,
#: the range of confident SAM logits.
MASK_PROMPT_EPS = 1e-3


def _preprocess_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """``ResizeLongestSide.get_preprocess_shape``: the longest side to ``side``, each side rounded half up."""
    scale = side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _integrate(values: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Integrals along axis 0 of piecewise-constant ``values`` (one unit per row) between consecutive ``bounds``.

    ``bounds`` ``(n + 1,)`` are row coordinates (clipped to ``[0, len(values)]``);
    the result is ``(n, ...)`` float64. The running sum keeps ``values``' dtype
    (int32 counts of a mask: exact, half of float64's memory); its linear
    interpolation at a fractional bound is exactly the integral of the step
    function up to there.
    """
    rows = values.shape[0]
    cumulative = np.zeros((rows + 1, *values.shape[1:]), values.dtype)
    np.cumsum(values, axis=0, out=cumulative[1:])
    bounds = np.clip(bounds, 0.0, rows)
    below = np.minimum(np.floor(bounds).astype(np.intp), rows - 1)
    part = (bounds - below).reshape(-1, *([1] * (values.ndim - 1)))
    at = cumulative[below] * (1.0 - part) + cumulative[below + 1] * part
    return np.diff(at, axis=0)


@dataclass(frozen=True)
class ModelFrame:
    """An ``image_hw`` image placed top-left in a model's ``input_side`` square, resized to ``input_hw``.

    Attributes:
        image_hw: ``(H, W)`` of the original image.
        input_hw: ``(h, w)`` the image occupies in the model input.
        input_side: ``S``, side of the model's square input in pixels.
    """

    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    input_side: int

    @classmethod
    def padded(cls, image_hw: tuple[int, int], input_side: int = 1024) -> "ModelFrame":
        """segment-anything's frame: longest side to ``input_side``, aspect kept, padding bottom/right."""
        height, width = int(image_hw[0]), int(image_hw[1])
        return cls((height, width), _preprocess_shape(height, width, input_side), int(input_side))

    @classmethod
    def squashed(cls, image_hw: tuple[int, int], input_side: int = 1024) -> "ModelFrame":
        """SAM 2's frame: the image resized to ``input_side x input_side`` whatever its aspect."""
        return cls((int(image_hw[0]), int(image_hw[1])), (int(input_side), int(input_side)), int(input_side))

    def grid_cells(self, grid_side: int) -> tuple[int, int]:
        """``(rows, cols)`` of a ``grid_side x grid_side`` grid over the input that the image touches."""
        rows, cols = (min(grid_side, -(-extent * grid_side // self.input_side)) for extent in self.input_hw)
        return rows, cols

    def mask_fraction(self, mask: np.ndarray, grid_side: int) -> np.ndarray:
        """``(grid_side, grid_side)`` float32: the fraction of each grid cell covered by an ``(H, W)`` mask.

        Cell ``(i, j)`` spans input rows ``[i, i + 1) * S / grid_side`` (columns
        likewise); the fraction is the area of the mask's pixels inside it
        over the cell's area, exact for any ratio of image to grid size (area
        averaging when the grid is coarser than the image, the covering
        pixel's value when it is finer). Cells beyond the image are 0.
        """
        mask = np.asarray(mask)
        if mask.shape != self.image_hw:
            raise ValueError(f"mask shape {mask.shape} differs from the frame's image shape {self.image_hw}")
        edges = np.arange(grid_side + 1, dtype=np.float64) * (self.input_side / grid_side)
        row_bounds = edges * (self.image_hw[0] / self.input_hw[0])  # in original rows
        col_bounds = edges * (self.image_hw[1] / self.input_hw[1])
        rows = _integrate(np.asarray(mask != 0, np.int32), row_bounds)  # (grid, W)
        area = _integrate(rows.T, col_bounds).T  # (grid, grid) original pixels covered
        cell_area = (row_bounds[1] - row_bounds[0]) * (col_bounds[1] - col_bounds[0])
        return np.clip(area / cell_area, 0.0, 1.0).astype(np.float32)

    def mask_logits(self, mask: np.ndarray, grid_side: int) -> np.ndarray:
        """``(grid_side, grid_side)`` float32 mask-input logits of a binary mask: ``log(p / (1 - p))``, ``p`` its clipped fraction."""
        p = np.clip(self.mask_fraction(mask, grid_side).astype(np.float64), MASK_PROMPT_EPS, 1.0 - MASK_PROMPT_EPS)
        return np.log(p / (1.0 - p)).astype(np.float32)


__all__ = ["MASK_PROMPT_EPS", "ModelFrame"]
