"""The prompt one slice's result gives the next slice (micro-sam's "projection").

micro-sam (``segment_mask_in_volume``) prompts slice ``z + 1`` from the mask
found on slice ``z`` in one of five ways: ``mask`` (the mask and its box),
``box``, ``points``, ``points_and_mask`` and ``single_point``. The same modes
are here, as :class:`Projection` presets in :data:`PROJECTIONS`:

* mask: the backend's low-resolution logits of the chosen candidate when it
  returns them (SAM family, ``Prediction.low_res_logits``: the model's own
  frame, exactly what it takes back), else the binary mask itself;
* box: the mask's bounding box grown by ``box_margin`` of its size on every
  side (at least one pixel), clipped to the image, so an object that grows
  from one slice to the next is not cut by last slice's box (micro-sam's
  ``box_extension``);
* points: include points at the most interior pixel of each of the mask's
  largest components (the maximum of the distance transform), and an exclude
  point at the background pixel of the grown box farthest from the mask, when
  one lies at least :data:`MIN_EXCLUDE_DISTANCE` pixels away.

Coordinates are original-image ``(x, y) = (col, row)`` with pixel centres on
integers (:mod:`segprompt.prompts`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..errors import UnsupportedPromptError
from ..prompts import Box, MaskPrompt, Points, Prompt

#: An exclude point is only added this far (px) from the mask: closer, it would sit on the object's edge.
MIN_EXCLUDE_DISTANCE = 3.0


@dataclass(frozen=True)
class Projection:
    """Which prompt parts the previous slice's mask becomes.

    Attributes:
        mask: pass the mask (logits when the backend gave them, else binary).
        box: pass its bounding box, grown by ``box_margin``.
        points: pass points re-derived from it (see the module docstring).
        max_points: include points at most (one per component, largest first).
        exclude_point: also add the exclude point.
        box_margin: growth of the box on each side, as a fraction of its width / height.
    """

    mask: bool = True
    box: bool = True
    points: bool = False
    max_points: int = 3
    exclude_point: bool = True
    box_margin: float = 0.1

    def kinds(self) -> frozenset[str]:
        """The prompt kinds this projection gives."""
        return frozenset(k for k, used in (("mask", self.mask), ("box", self.box), ("points", self.points)) if used)

    def check_backend(self, backend: str, accepts: frozenset[str]) -> None:
        """Raise :class:`UnsupportedPromptError` unless the backend accepts every part this projection gives."""
        missing = sorted(self.kinds() - accepts)
        if missing:
            raise UnsupportedPromptError(
                f"backend {backend!r} does not accept {', '.join(missing)} prompts, which this projection passes "
                f"from slice to slice; it accepts {', '.join(sorted(accepts))}"
            )


#: micro-sam's projection modes (and their names).
PROJECTIONS: dict[str, Projection] = {
    "mask": Projection(mask=True, box=True, points=False),
    "box": Projection(mask=False, box=True, points=False),
    "points": Projection(mask=False, box=False, points=True),
    "points_and_mask": Projection(mask=True, box=False, points=True),
    "single_point": Projection(mask=False, box=False, points=True, max_points=1, exclude_point=False),
}


def grown_box(mask: np.ndarray, margin: float) -> Box:
    """The bounding box of a non-empty ``(H, W)`` mask grown by ``margin`` of its size per side (>= 1 px), clipped."""
    box = Box.from_mask(mask)
    height, width = mask.shape
    grow_x = max(1.0, np.ceil(margin * (box.x1 - box.x0))) if margin > 0 else 0.0
    grow_y = max(1.0, np.ceil(margin * (box.y1 - box.y0))) if margin > 0 else 0.0
    return Box(max(0.0, box.x0 - grow_x), max(0.0, box.y0 - grow_y), min(float(width), box.x1 + grow_x),
               min(float(height), box.y1 + grow_y))


def points_from_mask(mask: np.ndarray, max_points: int = 3, exclude_margin: float | None = 0.1) -> Points:
    """Include points at the most interior pixel of the ``max_points`` largest components, plus an exclude point.

    Args:
        mask: ``(H, W)`` bool, not empty.
        max_points: include points at most.
        exclude_margin: add an exclude point at the background pixel of the
            box grown by this fraction that lies farthest from the mask (if at
            least :data:`MIN_EXCLUDE_DISTANCE` px away); ``None``: none.

    Returns:
        :class:`Points` in ``(x, y)`` pixels, include points first.
    """
    mask = np.asarray(mask, bool)
    components, count = ndi.label(mask)
    sizes = ndi.sum(mask, components, index=np.arange(1, count + 1))
    include = []
    for label in np.argsort(-sizes, kind="stable")[:max_points] + 1:
        inside = ndi.distance_transform_edt(components == label)
        row, col = np.unravel_index(int(np.argmax(inside)), inside.shape)
        include.append((float(col), float(row)))
    exclude = []
    if exclude_margin is not None:
        box = grown_box(mask, exclude_margin)
        rows, cols = slice(int(box.y0), int(box.y1)), slice(int(box.x0), int(box.x1))
        outside = ndi.distance_transform_edt(~mask[rows, cols])
        if outside.max(initial=0.0) >= MIN_EXCLUDE_DISTANCE:
            row, col = np.unravel_index(int(np.argmax(outside)), outside.shape)
            exclude.append((float(col + cols.start), float(row + rows.start)))
    return Points.from_lists(include=include, exclude=exclude)


def project(mask: np.ndarray, logits: np.ndarray | None, projection: Projection) -> Prompt:
    """The prompt for the next slice from this slice's ``(H, W)`` bool ``mask`` (not empty).

    ``logits``: the backend's low-resolution logits of that mask
    (``Prediction.low_res_logits[k]``), used for the mask part when given.
    """
    parts: dict[str, object] = {}
    if projection.mask:
        parts["mask"] = MaskPrompt(logits, kind="logits") if logits is not None else MaskPrompt(mask)
    if projection.box:
        parts["box"] = grown_box(mask, projection.box_margin)
    if projection.points:
        margin = projection.box_margin if projection.exclude_point else None
        parts["points"] = points_from_mask(mask, projection.max_points, exclude_margin=margin)
    return Prompt(**parts)


__all__ = ["MIN_EXCLUDE_DISTANCE", "PROJECTIONS", "Projection", "grown_box", "points_from_mask", "project"]
